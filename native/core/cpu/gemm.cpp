// The GEMM behind every distance (MATH §2: ||x - x_i||^2 = ||x||^2 + ||x_i||^2 - 2 x.x_i):
// run-time dispatch to the AVX-512 / AVX2 / scalar kernels, query packing, and gemm_abt,
// which goes to OpenBLAS when the build found it.
#include <algorithm>
#include <cstring>

#include "internal.h"
#include "memq/kernels.h"
#include "memq/thread_pool.h"

#ifdef MEMQ_HAVE_CBLAS
#include <cblas.h>
#endif

namespace memq {
namespace cpu {

#ifdef MEMQ_HAVE_CBLAS
// gemm_abt is single-threaded by contract (callers parallelise over tiles): OpenBLAS' own
// threads would oversubscribe the pool. Process-wide, set once.
void blas_single_thread() {
  static const bool once = [] {
    openblas_set_num_threads(1);
    return true;
  }();
  (void)once;
}
#endif

int64_t panel_width(SimdLevel lv, int64_t b) {
  switch (lv) {
    case SimdLevel::kAVX512: return b <= 16 ? 16 : 32;  // one or two zmm of queries
    case SimdLevel::kAVX2: return b <= 8 ? 8 : 16;
    default: return 8;
  }
}

// dst[panel][p][w] = a[panel*pw + w][p], zero past b: the micro-kernels load one vector of
// queries per key element and broadcast the key.
void pack_queries(float* dst, const float* a, int64_t b, int64_t d, int64_t pw) {
  int64_t panels = round_up(b, pw) / pw;
  for (int64_t P = 0; P < panels; ++P) {
    float* out = dst + P * d * pw;
    for (int64_t w = 0; w < pw; ++w) {
      int64_t i = P * pw + w;
      if (i < b) {
        const float* row = a + i * d;
        for (int64_t p = 0; p < d; ++p) out[p * pw + w] = row[p];
      } else {
        for (int64_t p = 0; p < d; ++p) out[p * pw + w] = 0.0f;
      }
    }
  }
}

// Plain C: each output an ordered sum over p; the w loop vectorises with the baseline ISA.
void gemm_kat_scalar(float* ct, int64_t ldc, const float* packed, int64_t bp, int64_t pw,
                     const float* k, int64_t ldk, int64_t t, int64_t d, bool accumulate) {
  for (int64_t j = 0; j < t; ++j) {
    const float* kr = k + j * ldk;
    for (int64_t P = 0; P < bp / pw; ++P) {
      const float* ap = packed + P * d * pw;
      float acc[32] = {0};
      if (accumulate) std::memcpy(acc, ct + j * ldc + P * pw, sizeof(float) * pw);
      for (int64_t p = 0; p < d; ++p) {
        float kv = kr[p];
        for (int64_t w = 0; w < pw; ++w) acc[w] += kv * ap[p * pw + w];
      }
      std::memcpy(ct + j * ldc + P * pw, acc, sizeof(float) * pw);
    }
  }
}

void row_norms2_scalar(float* out, const float* x, int64_t n, int64_t d) {
  for (int64_t i = 0; i < n; ++i) {
    const float* r = x + i * d;
    float acc[8] = {0};
    int64_t p = 0;
    for (; p + 8 <= d; p += 8)
      for (int w = 0; w < 8; ++w) acc[w] += r[p + w] * r[p + w];
    for (; p < d; ++p) acc[0] += r[p] * r[p];
    out[i] = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  }
}

void gemm_kat(SimdLevel lv, float* ct, int64_t ldc, const float* packed, int64_t bp, int64_t pw,
              const float* k, int64_t ldk, int64_t t, int64_t d, bool accumulate) {
  switch (lv) {
#if defined(__x86_64__) || defined(__i386__)
    case SimdLevel::kAVX512: gemm_kat_avx512(ct, ldc, packed, bp, pw, k, ldk, t, d, accumulate); return;
    case SimdLevel::kAVX2: gemm_kat_avx2(ct, ldc, packed, bp, pw, k, ldk, t, d, accumulate); return;
#endif
    default: gemm_kat_scalar(ct, ldc, packed, bp, pw, k, ldk, t, d, accumulate); return;
  }
}

void pack_columns(float* dst, const float* b, int64_t ldb, int64_t col0, int64_t ncols, int64_t d, int64_t pw) {
  const int64_t panels = round_up(ncols, pw) / pw;
  for (int64_t P = 0; P < panels; ++P) {
    float* out = dst + P * d * pw;
    const int64_t c0 = P * pw, w_have = std::min<int64_t>(pw, ncols - c0);
    for (int64_t p = 0; p < d; ++p) {
      const float* src = b + p * ldb + col0 + c0;
      float* o = out + p * pw;
      std::memcpy(o, src, sizeof(float) * w_have);
      for (int64_t w = w_have; w < pw; ++w) o[w] = 0.0f;
    }
  }
}

void row_norms2_level(SimdLevel lv, float* out, const float* x, int64_t n, int64_t d) {
  switch (lv) {
#if defined(__x86_64__) || defined(__i386__)
    case SimdLevel::kAVX512: row_norms2_avx512(out, x, n, d); return;
    case SimdLevel::kAVX2: row_norms2_avx2(out, x, n, d); return;
#endif
    default: row_norms2_scalar(out, x, n, d); return;
  }
}

void gemm_tiles(SimdLevel lv, const float* a, int64_t b, const float* k, int64_t n, int64_t d, int64_t tile,
                const TileConsumer& consume) {
  thread_local AlignedBuf packed_buf, ct_buf;
  for (int64_t q0 = 0; q0 < b; q0 += 256) {
    const int64_t qb = std::min<int64_t>(256, b - q0);
    const int64_t pw = panel_width(lv, qb), bp = round_up(qb, pw);
    float* packed = packed_buf.get(bp * d);
    pack_queries(packed, a + q0 * d, qb, d, pw);
    float* ct = ct_buf.get(tile * bp);
    for (int64_t j0 = 0; j0 < n; j0 += tile) {
      const int64_t t = std::min(tile, n - j0);
      gemm_kat(lv, ct, bp, packed, bp, pw, k + j0 * d, d, t, d);
      if (consume) consume(ct, bp, q0, qb, j0, t);
    }
  }
}

}  // namespace cpu

void row_norms2(float* out, const float* x, int64_t n, int64_t d) {
  if (n <= 0) return;
  if (d <= 0) {
    std::fill(out, out + n, 0.0f);
    return;
  }
  SimdLevel lv = simd_level();
  int64_t grain = std::max<int64_t>(1, (int64_t(1) << 18) / d);  // ~1 MiB of rows per chunk
  parallel_for(0, n, grain, [&](int64_t lo, int64_t hi) {
    cpu::row_norms2_level(lv, out + lo, x + lo * d, hi - lo, d);
  });
}

void gemm_abt(float* c, int64_t ldc, const float* a, int64_t b, const float* k, int64_t n, int64_t d) {
  if (b <= 0 || n <= 0) return;
  if (d <= 0) {
    for (int64_t i = 0; i < b; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
    return;
  }
#ifdef MEMQ_HAVE_CBLAS
  cpu::blas_single_thread();
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)b, (blasint)n, (blasint)d, 1.0f, a,
              (blasint)d, k, (blasint)d, 0.0f, c, (blasint)ldc);
#else
  // Built-in: C^T per key tile of ~256 KiB, copied out transposed (the search consumes C^T
  // directly and skips that copy).
  const int64_t tile = std::max<int64_t>(32, std::min<int64_t>(1024, (64 * 1024) / d) / 8 * 8);
  cpu::gemm_tiles(simd_level(), a, b, k, n, d, tile, [&](const float* ct, int64_t bp, int64_t q0, int64_t qb, int64_t j0, int64_t t) {
    for (int64_t i = 0; i < qb; ++i) {
      float* crow = c + (q0 + i) * ldc + j0;
      for (int64_t j = 0; j < t; ++j) crow[j] = ct[j * bp + i];
    }
  });
#endif
}

}  // namespace memq
