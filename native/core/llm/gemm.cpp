// GEMM dispatch and tiling over memq::parallel_for (see memq/llm/gemm.h).
#include "memq/llm/gemm.h"

#include <algorithm>

#include "memq/cpu_features.h"
#include "memq/thread_pool.h"
#include "../cpu/internal.h"

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

// ---- the packed-panel path (AVX2 / AVX-512) -------------------------------------------------------
// The retrieval core's micro-kernel (cpu::gemm_kat with accumulate: MR rows of A, one broadcast per element,
// against a panel of 2 vectors of B packed k-major, MR x 2 accumulators; one FMA chain per output
// over k in order, so results do not depend on the tiling or the threads). B is packed per task
// (PN columns x K): O(N K) per M-block against O(M N K) of work. The older dot-product tiles
// (gemm_kernels.inc) read A and B in place and ran at about a third of this kernel's rate on
// the engine's shapes (bench_llm --gemm-only); they remain for small or skinny products (LoRA's
// rank-r factors), the generic build, and A^T operands.
constexpr int64_t PM = 240;  // rows of C per task (a multiple of the kernels' 12 and 6 rows)
constexpr int64_t PN = 128;  // columns of C per task (a multiple of both panel widths)

bool use_packed(int64_t M, int64_t N, int64_t K) { return variant() != kGeneric && M >= 4 && N >= 32 && K >= 16; }

// dst[panel][k][w] = B[(j0 + panel*pw + w) * ldb + k], zero past n rows.
void pack_rows(float* dst, const float* B, int64_t ldb, int64_t j0, int64_t n, int64_t K, int64_t pw) {
  if (pw % 16 == 0 && simd_level() == SimdLevel::kAVX512) return cpu::pack_rows_avx512(dst, B, ldb, j0, n, K, pw);
  const int64_t panels = (n + pw - 1) / pw;
  constexpr int64_t KB = 64;  // a 64 x pw block of the panel (8 KiB) stays in L1 while written
  for (int64_t P = 0; P < panels; ++P) {
    float* out = dst + P * K * pw;
    for (int64_t k0 = 0; k0 < K; k0 += KB) {
      const int64_t k1 = std::min(K, k0 + KB);
      for (int64_t w = 0; w < pw; ++w) {
        const int64_t j = P * pw + w;
        if (j < n) {
          const float* row = B + (j0 + j) * ldb;
          for (int64_t k = k0; k < k1; ++k) out[k * pw + w] = row[k];
        } else {
          for (int64_t k = k0; k < k1; ++k) out[k * pw + w] = 0.0f;
        }
      }
    }
  }
}

// c[mb x nb] (=|+=) a[mb x K] times the packed block (nb columns, panels of pw); a partial last
// panel goes through a scratch tile so nothing past column nb is written.
void run_packed(SimdLevel lv, int64_t pw, float* c, int64_t ldc, const float* a, int64_t lda, const float* packed,
                int64_t mb, int64_t nb, int64_t K, bool accumulate, cpu::AlignedBuf* sbuf) {
  const int64_t full = nb / pw * pw;
  if (full > 0) cpu::gemm_kat(lv, c, ldc, packed, full, pw, a, lda, mb, K, accumulate);
  if (nb > full) {
    const int64_t w = nb - full;
    float* sc = sbuf->get(static_cast<size_t>(mb * pw));
    if (accumulate)
      for (int64_t r = 0; r < mb; ++r) std::copy(c + r * ldc + full, c + r * ldc + nb, sc + r * pw);
    cpu::gemm_kat(lv, sc, pw, packed + (full / pw) * K * pw, pw, pw, a, lda, mb, K, accumulate);
    for (int64_t r = 0; r < mb; ++r) std::copy(sc + r * pw, sc + r * pw + w, c + r * ldc + full);
  }
}

SimdLevel packed_level() { return simd_level() == SimdLevel::kAVX512 ? SimdLevel::kAVX512 : SimdLevel::kAVX2; }
int64_t panel_width(SimdLevel lv) { return lv == SimdLevel::kAVX512 ? 32 : 16; }

// Columns [j0, j0 + n) of B' packed: B' = B^T (b_rows, B is N x K) or B (K x N).
void pack_b(bool b_rows, float* dst, const float* B, int64_t ldb, int64_t j0, int64_t n, int64_t K, int64_t pw) {
  if (b_rows) pack_rows(dst, B, ldb, j0, n, K, pw);
  else cpu::pack_columns(dst, B, ldb, j0, n, K, pw);
}

// The serial forms: all of B' packed once, then every row of C on this thread.
void serial_packed(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb, bool b_rows,
                   int64_t M, int64_t N, int64_t K, bool accumulate) {
  const SimdLevel lv = packed_level();
  const int64_t pw = panel_width(lv);
  thread_local cpu::AlignedBuf pbuf, sbuf;
  float* packed = pbuf.get(static_cast<size_t>((N + pw - 1) / pw * pw * K));
  pack_b(b_rows, packed, B, ldb, 0, N, K, pw);
  run_packed(lv, pw, C, ldc, A, lda, packed, M, N, K, accumulate, &sbuf);
}

// C (=|+=) A B' where B' is B^T (b_rows: B is N x K, rows ldb apart) or B (K x N, rows ldb apart).
void packed_gemm(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb, bool b_rows,
                 int64_t M, int64_t N, int64_t K, bool accumulate) {
  const SimdLevel lv = packed_level();
  const int64_t pw = panel_width(lv);
  // Column blocks of pn: the widest (up to PN) that still gives every thread two tasks, so each
  // task packs its B block once and runs every row; only when N is too narrow for that are the
  // rows split too (and a block packed once per row block).
  const int64_t want = 2 * std::max<int64_t>(1, num_threads());
  int64_t pn = PN;
  while (pn > pw && (N + pn - 1) / pn < want) pn /= 2;
  const int64_t tn = (N + pn - 1) / pn;
  const int64_t pm = tn >= want ? M : PM;
  const int64_t tm = (M + pm - 1) / pm;
  // Tasks column-block major: a thread's consecutive tasks share the packed B block.
  parallel_for(0, tm * tn, 1, [&](int64_t t0, int64_t t1) {
    thread_local cpu::AlignedBuf pbuf, sbuf;
    int64_t packed_j0 = -1;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t j0 = (t / tm) * pn, m0 = (t % tm) * pm;
      const int64_t nb = std::min(pn, N - j0), mb = std::min(pm, M - m0);
      const int64_t padded = (nb + pw - 1) / pw * pw;
      float* packed = pbuf.get(static_cast<size_t>(padded * K));
      if (packed_j0 != j0) {
        pack_b(b_rows, packed, B, ldb, j0, nb, K, pw);
        packed_j0 = j0;
      }
      run_packed(lv, pw, C + m0 * ldc + j0, ldc, A + m0 * lda, lda, packed, mb, nb, K, accumulate, &sbuf);
    }
  });
}

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
  if (use_packed(M, N, K)) return packed_gemm(C, ldc, A, lda, B, ldb, true, M, N, K, accumulate);
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
  if (sak == 1 && use_packed(M, N, K)) return packed_gemm(C, ldc, A, sam, B, ldb, false, M, N, K, true);
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

void sgemm_nt_serial(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t M,
                     int64_t N, int64_t K, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  const Variant v = variant();
  if (v == kGeneric || K <= 0) return generic::nt_block(C, ldc, A, lda, B, ldb, M, N, K, accumulate);
  serial_packed(C, ldc, A, lda, B, ldb, true, M, N, K, accumulate);
}

void sgemm_nn_serial(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t M,
                     int64_t N, int64_t K, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  const Variant v = variant();
  if (v == kGeneric || K <= 0) {
    if (!accumulate)
      for (int64_t m = 0; m < M; ++m) std::fill(C + m * ldc, C + m * ldc + N, 0.0f);
    if (K > 0) generic::acc_block(C, ldc, A, lda, 1, B, ldb, M, N, K);
    return;
  }
  serial_packed(C, ldc, A, lda, B, ldb, false, M, N, K, accumulate);
}

}  // namespace llm
}  // namespace memq
