// GEMM dispatch and tiling over memq::parallel_for (see memq/llm/gemm.h).
#include "memq/llm/gemm.h"

#include <algorithm>

#include "memq/cpu_features.h"
#include "memq/thread_pool.h"

namespace memq {
namespace llm {

#define MEMQ_DECLARE_GEMM(ns)                                                                          \
  namespace ns {                                                                                       \
  void nt_block(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb,       \
                int64_t M, int64_t N, int64_t K, bool accumulate);                                     \
  void acc_block(float* C, int64_t ldc, const float* A, int64_t sam, int64_t sak, const float* B,      \
                 int64_t ldb, int64_t M, int64_t N, int64_t K);                                        \
  }
MEMQ_DECLARE_GEMM(generic)
MEMQ_DECLARE_GEMM(avx2)
MEMQ_DECLARE_GEMM(avx512)

namespace {

enum Variant { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };

// The level cpu_features.h reports (this CPU, this build, capped by MEMQ_SIMD).
Variant detect() {
  switch (simd_level()) {
    case SimdLevel::kAVX512: return kAvx512;
    case SimdLevel::kAVX2: return kAvx2;
    default: return kGeneric;
  }
}

Variant variant() {
  static const Variant v = detect();
  return v;
}

// Tiles of the output: TM rows x TN columns per task, K never split (determinism).
constexpr int64_t TM = 64, TN = 128;

}  // namespace

const char* gemm_variant() {
  switch (variant()) {
    case kAvx512: return "avx512";
    case kAvx2: return "avx2";
    default: return "generic";
  }
}

void sgemm_nt(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t M,
              int64_t N, int64_t K, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  const int64_t tm = (M + TM - 1) / TM, tn = (N + TN - 1) / TN;
  const Variant v = variant();
  // Small products run inline: a task switch costs more than ~64K multiply-adds.
  const int64_t grain = (M * N * std::max<int64_t>(K, 1) < (int64_t(1) << 16)) ? tm * tn : 1;
  parallel_for(0, tm * tn, grain, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t m0 = (t / tn) * TM, j0 = (t % tn) * TN;
      const int64_t mb = std::min(TM, M - m0), nb = std::min(TN, N - j0);
      float* c = C + m0 * ldc + j0;
      const float* a = A + m0 * lda;
      const float* b = B + j0 * ldb;
      if (v == kAvx512) avx512::nt_block(c, ldc, a, lda, b, ldb, mb, nb, K, accumulate);
      else if (v == kAvx2) avx2::nt_block(c, ldc, a, lda, b, ldb, mb, nb, K, accumulate);
      else generic::nt_block(c, ldc, a, lda, b, ldb, mb, nb, K, accumulate);
    }
  });
}

void sgemm_acc(float* C, int64_t ldc, const float* A, int64_t sam, int64_t sak, const float* B, int64_t ldb,
               int64_t M, int64_t N, int64_t K) {
  if (M <= 0 || N <= 0 || K <= 0) return;
  const int64_t tm = (M + TM - 1) / TM, tn = (N + TN - 1) / TN;
  const Variant v = variant();
  const int64_t grain = (M * N * K < (int64_t(1) << 16)) ? tm * tn : 1;
  parallel_for(0, tm * tn, grain, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t m0 = (t / tn) * TM, j0 = (t % tn) * TN;
      const int64_t mb = std::min(TM, M - m0), nb = std::min(TN, N - j0);
      float* c = C + m0 * ldc + j0;
      const float* a = A + m0 * sam;
      const float* b = B + j0;
      if (v == kAvx512) avx512::acc_block(c, ldc, a, sam, sak, b, ldb, mb, nb, K);
      else if (v == kAvx2) avx2::acc_block(c, ldc, a, sam, sak, b, ldb, mb, nb, K);
      else generic::acc_block(c, ldc, a, sam, sak, b, ldb, mb, nb, K);
    }
  });
}

}  // namespace llm
}  // namespace memq
