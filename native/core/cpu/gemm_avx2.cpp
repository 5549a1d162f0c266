// AVX2 + FMA kernels (this file alone is compiled with -mavx2 -mfma): the same C^T = K A^T
// micro-kernel, row norms and search filter as gemm_avx512.cpp, 8 lanes at a time.
#if defined(__AVX2__) && defined(__FMA__)
// GCC 12 flags its own intrinsics (_mm512_undefined_ps) as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>

#include "internal.h"

namespace memq {
namespace cpu {

namespace {

// MR keys x NV*8 queries. 16 ymm registers: MR*NV accumulators + NV query vectors + 1 broadcast.
template <int MR, int NV>
inline void micro_kernel(int64_t kc, const float* k, int64_t ldk, const float* ap, float* c,
                         int64_t ldc, bool first) {
  constexpr int PW = 8 * NV;
  __m256 acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v)
      acc[r][v] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(c + r * ldc + v * 8);
  const float* kr[MR];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) kr[r] = k + r * ldk;
  auto step = [&](int64_t p) {
    __m256 av[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) av[v] = _mm256_load_ps(ap + p * PW + v * 8);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      __m256 kb = _mm256_broadcast_ss(kr[r] + p);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(kb, av[v], acc[r][v]);
    }
  };
  // Every 16 steps, prefetch the same cache line of the next MR keys: with few queries the
  // kernel streams keys from memory, and MR rows of a few lines each are too short for the
  // hardware prefetcher to pick up.
  int64_t p = 0;
  for (; p + 16 <= kc; p += 16) {
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) _mm_prefetch(reinterpret_cast<const char*>(kr[r] + MR * ldk + p), _MM_HINT_T0);
#pragma GCC unroll 16
    for (int u = 0; u < 16; ++u) step(p + u);
  }
  for (; p < kc; ++p) step(p);
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(c + r * ldc + v * 8, acc[r][v]);
}

template <int NV>
void gemm_kat_nv(float* ct, int64_t ldc, const float* packed, int64_t bp, const float* k,
                 int64_t ldk, int64_t t, int64_t d, bool accumulate) {
  constexpr int PW = 8 * NV;
  constexpr int MR = NV == 2 ? 6 : 8;
  constexpr int64_t KC = 256;
  for (int64_t p0 = 0; p0 < d; p0 += KC) {
    int64_t kc = std::min<int64_t>(KC, d - p0);
    bool first = p0 == 0 && !accumulate;
    for (int64_t P = 0; P < bp / PW; ++P) {
      const float* ap = packed + P * d * PW + p0 * PW;
      float* c0 = ct + P * PW;
      int64_t j = 0;
      for (; j + MR <= t; j += MR)
        micro_kernel<MR, NV>(kc, k + j * ldk + p0, ldk, ap, c0 + j * ldc, ldc, first);
      const float* kj = k + j * ldk + p0;
      float* cj = c0 + j * ldc;
      switch (t - j) {
        case 0: break;
        case 1: micro_kernel<1, NV>(kc, kj, ldk, ap, cj, ldc, first); break;
        case 2: micro_kernel<2, NV>(kc, kj, ldk, ap, cj, ldc, first); break;
        case 3: micro_kernel<3, NV>(kc, kj, ldk, ap, cj, ldc, first); break;
        case 4: micro_kernel<4, NV>(kc, kj, ldk, ap, cj, ldc, first); break;
        case 5: micro_kernel<5, NV>(kc, kj, ldk, ap, cj, ldc, first); break;
        case 6: micro_kernel<6, NV>(kc, kj, ldk, ap, cj, ldc, first); break;
        default: micro_kernel<7, NV>(kc, kj, ldk, ap, cj, ldc, first); break;
      }
    }
  }
}

inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

}  // namespace

void gemm_kat_avx2(float* ct, int64_t ldc, const float* packed, int64_t bp, int64_t pw,
                   const float* k, int64_t ldk, int64_t t, int64_t d, bool accumulate) {
  if (pw == 8) gemm_kat_nv<1>(ct, ldc, packed, bp, k, ldk, t, d, accumulate);
  else gemm_kat_nv<2>(ct, ldc, packed, bp, k, ldk, t, d, accumulate);
}

// One query, dot-product form (see gemm_avx512.cpp): lane 0 of each C^T row, others zeroed.
void gemv_kat_avx2(float* ct, int64_t ldc, const float* q, const float* k, int64_t ldk, int64_t t,
                   int64_t d) {
  alignas(32) int32_t mask_bits[8];
  for (int w = 0; w < 8; ++w) mask_bits[w] = w < d % 8 ? -1 : 0;
  const __m256i tail = _mm256_load_si256(reinterpret_cast<const __m256i*>(mask_bits));
  const bool has_tail = d % 8 != 0;
  const int64_t d8 = d / 8 * 8;
  auto put = [&](int64_t j, float dot) {
    _mm256_storeu_ps(ct + j * ldc, _mm256_setr_ps(dot, 0, 0, 0, 0, 0, 0, 0));
  };
  int64_t j = 0;
  for (; j + 4 <= t; j += 4) {
    const float* k0 = k + j * ldk;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t p = 0; p < d8; p += 8) {
      __m256 qv = _mm256_loadu_ps(q + p);
      a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + p), a0);
      a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + ldk + p), a1);
      a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + 2 * ldk + p), a2);
      a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + 3 * ldk + p), a3);
    }
    if (has_tail) {
      __m256 qv = _mm256_maskload_ps(q + d8, tail);
      a0 = _mm256_fmadd_ps(qv, _mm256_maskload_ps(k0 + d8, tail), a0);
      a1 = _mm256_fmadd_ps(qv, _mm256_maskload_ps(k0 + ldk + d8, tail), a1);
      a2 = _mm256_fmadd_ps(qv, _mm256_maskload_ps(k0 + 2 * ldk + d8, tail), a2);
      a3 = _mm256_fmadd_ps(qv, _mm256_maskload_ps(k0 + 3 * ldk + d8, tail), a3);
    }
    put(j, hsum(a0));
    put(j + 1, hsum(a1));
    put(j + 2, hsum(a2));
    put(j + 3, hsum(a3));
  }
  for (; j < t; ++j) {
    const float* k0 = k + j * ldk;
    __m256 a0 = _mm256_setzero_ps();
    for (int64_t p = 0; p < d8; p += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + p), _mm256_loadu_ps(k0 + p), a0);
    if (has_tail) a0 = _mm256_fmadd_ps(_mm256_maskload_ps(q + d8, tail), _mm256_maskload_ps(k0 + d8, tail), a0);
    put(j, hsum(a0));
  }
}

void row_norms2_avx2(float* out, const float* x, int64_t n, int64_t d) {
  alignas(32) int32_t mask_bits[8];
  for (int w = 0; w < 8; ++w) mask_bits[w] = w < d % 8 ? -1 : 0;
  const __m256i tail = _mm256_load_si256(reinterpret_cast<const __m256i*>(mask_bits));
  for (int64_t i = 0; i < n; ++i) {
    const float* r = x + i * d;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t p = 0;
    for (; p + 16 <= d; p += 16) {
      __m256 v0 = _mm256_loadu_ps(r + p), v1 = _mm256_loadu_ps(r + p + 8);
      a0 = _mm256_fmadd_ps(v0, v0, a0);
      a1 = _mm256_fmadd_ps(v1, v1, a1);
    }
    if (p + 8 <= d) {
      __m256 v0 = _mm256_loadu_ps(r + p);
      a0 = _mm256_fmadd_ps(v0, v0, a0);
      p += 8;
    }
    if (d % 8) {
      __m256 v1 = _mm256_maskload_ps(r + p, tail);
      a1 = _mm256_fmadd_ps(v1, v1, a1);
    }
    out[i] = hsum(_mm256_add_ps(a0, a1));
  }
}

int64_t filter_tile_avx2(Hit* hits, const FilterArgs& a) {
  int64_t nh = 0;
  const __m256 zero = _mm256_setzero_ps(), inf = _mm256_set1_ps(kInf);
  const __m256 m2 = _mm256_set1_ps(-2.0f), one = _mm256_set1_ps(1.0f), mone = _mm256_set1_ps(-1.0f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  alignas(32) float s_lanes[8];
  for (int64_t j = 0; j < a.t; ++j) {
    if (a.alive && !a.alive[j]) continue;
    const float* row = a.ct + j * a.ldc;
    const __m256 kn = _mm256_set1_ps(a.kn[j]);
    const __m256 kinv = a.cosine ? _mm256_set1_ps(a.kinv[j]) : zero;
    for (int64_t g = 0; g < a.bp; g += 8) {
      __m256 dot = _mm256_loadu_ps(row + g);
      if (!a.cosine) {
        // Unclamped e < tau: a superset of the exact test (see gemm_avx512.cpp).
        __m256 e = _mm256_fmadd_ps(m2, dot, _mm256_add_ps(_mm256_loadu_ps(a.qn + g), kn));
        int mk = _mm256_movemask_ps(_mm256_cmp_ps(e, _mm256_loadu_ps(a.tau + g), _CMP_NGE_UQ));
        if (!mk) continue;
        _mm256_store_ps(s_lanes, e);
        for (unsigned bits = (unsigned)mk; bits; bits &= bits - 1) {
          int l = __builtin_ctz(bits);
          float x = s_lanes[l];
          hits[nh++] = Hit{(int32_t)(g + l), (int32_t)j, x > 0.0f ? x : (x == x ? 0.0f : kInf), 0.0f};
        }
        continue;
      }
      __m256 c = _mm256_mul_ps(_mm256_mul_ps(dot, _mm256_loadu_ps(a.qinv + g)), kinv);
      c = _mm256_min_ps(one, _mm256_max_ps(mone, c));
      __m256 s = _mm256_xor_ps(c, sign);
      s = _mm256_blendv_ps(s, inf, _mm256_cmp_ps(c, c, _CMP_UNORD_Q));
      int mk = _mm256_movemask_ps(_mm256_cmp_ps(s, _mm256_loadu_ps(a.tau + g), _CMP_NGE_UQ));
      if (!mk) continue;
      _mm256_store_ps(s_lanes, s);
      for (unsigned bits = (unsigned)mk; bits; bits &= bits - 1) {
        int l = __builtin_ctz(bits);
        hits[nh++] = Hit{(int32_t)(g + l), (int32_t)j, s_lanes[l], dist2_of(a.qn[g + l], a.kn[j], row[g + l])};
      }
    }
  }
  return nh;
}

}  // namespace cpu
}  // namespace memq
#endif  // __AVX2__ && __FMA__
