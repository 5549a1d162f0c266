// AVX-512 kernels (this file alone is compiled with -mavx512f ...; called only after
// simd_level() says the CPU has them): the C^T = K A^T micro-kernel, row norms, and the
// threshold filter of search_topm.
#if defined(__AVX512F__)
// GCC 12 flags its own intrinsics (_mm512_undefined_ps) as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>

#include "internal.h"

namespace memq {
namespace cpu {

namespace {

// C^T block of MR keys x NV*16 queries: per key element one broadcast, NV FMAs. The queries'
// panel (kc x 16*NV floats) stays in L1; the keys stream from L2 / memory in place.
// Registers: MR*NV accumulators (<= 24) + NV query vectors + 1 broadcast.
template <int MR, int NV>
inline void micro_kernel(int64_t kc, const float* k, int64_t ldk, const float* ap, float* c,
                         int64_t ldc, bool first) {
  constexpr int PW = 16 * NV;
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v)
      acc[r][v] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(c + r * ldc + v * 16);
  const float* kr[MR];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) kr[r] = k + r * ldk;
  auto step = [&](int64_t p) {
    __m512 av[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) av[v] = _mm512_load_ps(ap + p * PW + v * 16);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      __m512 kb = _mm512_set1_ps(kr[r][p]);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(kb, av[v], acc[r][v]);
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
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(c + r * ldc + v * 16, acc[r][v]);
}

template <int NV>
void gemm_kat_nv(float* ct, int64_t ldc, const float* packed, int64_t bp, const float* k,
                 int64_t ldk, int64_t t, int64_t d, bool accumulate) {
  constexpr int PW = 16 * NV;
  constexpr int MR = NV == 2 ? 12 : 8;
  constexpr int64_t KC = 256;  // a 256 x 32 query panel is 32 KiB: it stays in L1
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
        case 7: micro_kernel<7, NV>(kc, kj, ldk, ap, cj, ldc, first); break;
        case 8: micro_kernel<8, NV>(kc, kj, ldk, ap, cj, ldc, first); break;
        case 9: micro_kernel<9, NV>(kc, kj, ldk, ap, cj, ldc, first); break;
        case 10: micro_kernel<10, NV>(kc, kj, ldk, ap, cj, ldc, first); break;
        default: micro_kernel<11, NV>(kc, kj, ldk, ap, cj, ldc, first); break;
      }
    }
  }
}

inline float hsum(__m512 v) { return _mm512_reduce_add_ps(v); }

}  // namespace

void gemm_kat_avx512(float* ct, int64_t ldc, const float* packed, int64_t bp, int64_t pw,
                     const float* k, int64_t ldk, int64_t t, int64_t d, bool accumulate) {
  if (pw == 16) gemm_kat_nv<1>(ct, ldc, packed, bp, k, ldk, t, d, accumulate);
  else gemm_kat_nv<2>(ct, ldc, packed, bp, k, ldk, t, d, accumulate);
}

// dst[panel][k][w] = B[(j0 + panel*pw + w) * ldb + k] (zero past n rows), pw a multiple of 16:
// 16 x 16 blocks transposed in registers (unpack 32-bit, unpack 64-bit, two 128-bit shuffles).
void pack_rows_avx512(float* dst, const float* B, int64_t ldb, int64_t j0, int64_t n, int64_t K, int64_t pw) {
  const int64_t panels = (n + pw - 1) / pw, k16 = K / 16 * 16;
  for (int64_t P = 0; P < panels; ++P) {
    float* out = dst + P * K * pw;
    for (int64_t w0 = 0; w0 < pw; w0 += 16) {
      const int64_t rows = std::max<int64_t>(0, std::min<int64_t>(16, n - (P * pw + w0)));
      const float* src = B + (j0 + P * pw + w0) * ldb;
      for (int64_t k0 = 0; k0 < k16; k0 += 16) {
        __m512 r[16], t[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i) r[i] = i < rows ? _mm512_loadu_ps(src + i * ldb + k0) : _mm512_setzero_ps();
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) {
          t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
          t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {
          const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
          const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
          r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));      // column 4L of rows 4i..4i+3
          r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));  // column 4L + 1
          r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));  // column 4L + 2
          r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));  // column 4L + 3
        }
#pragma GCC unroll 4
        for (int c = 0; c < 4; ++c) {
          const __m512 vlo = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x44), vhi = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xEE);
          const __m512 wlo = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x44), whi = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xEE);
          _mm512_storeu_ps(out + (k0 + c) * pw + w0, _mm512_shuffle_f32x4(vlo, wlo, 0x88));
          _mm512_storeu_ps(out + (k0 + 4 + c) * pw + w0, _mm512_shuffle_f32x4(vlo, wlo, 0xDD));
          _mm512_storeu_ps(out + (k0 + 8 + c) * pw + w0, _mm512_shuffle_f32x4(vhi, whi, 0x88));
          _mm512_storeu_ps(out + (k0 + 12 + c) * pw + w0, _mm512_shuffle_f32x4(vhi, whi, 0xDD));
        }
      }
      for (int64_t k = k16; k < K; ++k)
        for (int64_t i = 0; i < 16; ++i) out[k * pw + w0 + i] = i < rows ? src[i * ldb + k] : 0.0f;
    }
  }
}

// One query: the dot-product form. Each key row is read as whole vectors (16 floats a load,
// a plain sequential stream the hardware prefetcher follows), then reduced; 4 keys at a time
// for independent FMA chains. Writes lane 0 of each C^T row, zeroes the other pw - 1 lanes.
void gemv_kat_avx512(float* ct, int64_t ldc, const float* q, const float* k, int64_t ldk,
                     int64_t t, int64_t d) {
  const __mmask16 tail = (__mmask16)((1u << (d % 16)) - 1);
  const int64_t d16 = d / 16 * 16;
  auto put = [&](int64_t j, float dot) {
    _mm512_storeu_ps(ct + j * ldc, _mm512_maskz_mov_ps(1, _mm512_set1_ps(dot)));
  };
  int64_t j = 0;
  for (; j + 4 <= t; j += 4) {
    const float* k0 = k + j * ldk;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t p = 0; p < d16; p += 16) {
      __m512 qv = _mm512_loadu_ps(q + p);
      a0 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k0 + p), a0);
      a1 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k0 + ldk + p), a1);
      a2 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k0 + 2 * ldk + p), a2);
      a3 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k0 + 3 * ldk + p), a3);
    }
    if (tail) {
      __m512 qv = _mm512_maskz_loadu_ps(tail, q + d16);
      a0 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(tail, k0 + d16), a0);
      a1 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(tail, k0 + ldk + d16), a1);
      a2 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(tail, k0 + 2 * ldk + d16), a2);
      a3 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(tail, k0 + 3 * ldk + d16), a3);
    }
    put(j, hsum(a0));
    put(j + 1, hsum(a1));
    put(j + 2, hsum(a2));
    put(j + 3, hsum(a3));
  }
  for (; j < t; ++j) {  // same arithmetic per key as above
    const float* k0 = k + j * ldk;
    __m512 a0 = _mm512_setzero_ps();
    for (int64_t p = 0; p < d16; p += 16)
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + p), _mm512_loadu_ps(k0 + p), a0);
    if (tail)
      a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, q + d16), _mm512_maskz_loadu_ps(tail, k0 + d16), a0);
    put(j, hsum(a0));
  }
}

void row_norms2_avx512(float* out, const float* x, int64_t n, int64_t d) {
  __mmask16 tail = (__mmask16)((1u << (d % 16)) - 1);
  for (int64_t i = 0; i < n; ++i) {
    const float* r = x + i * d;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t p = 0;
    for (; p + 32 <= d; p += 32) {
      __m512 v0 = _mm512_loadu_ps(r + p), v1 = _mm512_loadu_ps(r + p + 16);
      a0 = _mm512_fmadd_ps(v0, v0, a0);
      a1 = _mm512_fmadd_ps(v1, v1, a1);
    }
    if (p + 16 <= d) {
      __m512 v0 = _mm512_loadu_ps(r + p);
      a0 = _mm512_fmadd_ps(v0, v0, a0);
      p += 16;
    }
    if (tail) {
      __m512 v1 = _mm512_maskz_loadu_ps(tail, r + p);
      a1 = _mm512_fmadd_ps(v1, v1, a1);
    }
    out[i] = hsum(_mm512_add_ps(a0, a1));
  }
}

// The exact expressions of internal.h's dist2_of / cos_of, 16 queries at a time.
int64_t filter_tile_avx512(Hit* hits, const FilterArgs& a) {
  int64_t nh = 0;
  const __m512 zero = _mm512_setzero_ps(), inf = _mm512_set1_ps(kInf);
  const __m512 m2 = _mm512_set1_ps(-2.0f), one = _mm512_set1_ps(1.0f), mone = _mm512_set1_ps(-1.0f);
  alignas(64) float s_lanes[16];
  for (int64_t j = 0; j < a.t; ++j) {
    if (a.alive && !a.alive[j]) continue;
    const float* row = a.ct + j * a.ldc;
    const __m512 kn = _mm512_set1_ps(a.kn[j]);
    const __m512 kinv = a.cosine ? _mm512_set1_ps(a.kinv[j]) : zero;
    for (int64_t g = 0; g < a.bp; g += 16) {
      __m512 dot = _mm512_loadu_ps(row + g);
      if (!a.cosine) {
        // e = ||q||^2 + ||k||^2 - 2 q.k unclamped: e < tau is a superset of max(0, e) < tau,
        // and a NaN passes; the exact score is made for the few hits only (and rechecked).
        __m512 e = _mm512_fmadd_ps(m2, dot, _mm512_add_ps(_mm512_loadu_ps(a.qn + g), kn));
        __mmask16 mk = _mm512_cmp_ps_mask(e, _mm512_loadu_ps(a.tau + g), _CMP_NGE_UQ);
        if (!mk) continue;
        _mm512_store_ps(s_lanes, e);
        for (unsigned bits = mk; bits; bits &= bits - 1) {
          int l = __builtin_ctz(bits);
          float x = s_lanes[l];
          hits[nh++] = Hit{(int32_t)(g + l), (int32_t)j, x > 0.0f ? x : (x == x ? 0.0f : kInf), 0.0f};
        }
        continue;
      }
      __m512 c = _mm512_mul_ps(_mm512_mul_ps(dot, _mm512_loadu_ps(a.qinv + g)), kinv);
      c = _mm512_min_ps(one, _mm512_max_ps(mone, c));  // NaN passes through (2nd operand)
      __m512 s = _mm512_xor_ps(c, _mm512_set1_ps(-0.0f));  // -c, as the scalar code
      s = _mm512_mask_mov_ps(s, _mm512_cmp_ps_mask(c, c, _CMP_UNORD_Q), inf);
      __mmask16 mk = _mm512_cmp_ps_mask(s, _mm512_loadu_ps(a.tau + g), _CMP_NGE_UQ);
      if (!mk) continue;
      _mm512_store_ps(s_lanes, s);
      for (unsigned bits = mk; bits; bits &= bits - 1) {
        int l = __builtin_ctz(bits);
        hits[nh++] = Hit{(int32_t)(g + l), (int32_t)j, s_lanes[l], dist2_of(a.qn[g + l], a.kn[j], row[g + l])};
      }
    }
  }
  return nh;
}

// One query, dense dot products: 16 keys a vector, the same expressions as filter_tile_avx512.
int64_t filter_dots_avx512(Hit* hits, const FilterArgs& a) {
  int64_t nh = 0;
  const __m512 m2 = _mm512_set1_ps(-2.0f), one = _mm512_set1_ps(1.0f), mone = _mm512_set1_ps(-1.0f);
  const __m512 inf = _mm512_set1_ps(kInf), qn = _mm512_set1_ps(a.qn[0]), tau = _mm512_set1_ps(a.tau[0]);
  const __m512 qinv = a.cosine ? _mm512_set1_ps(a.qinv[0]) : _mm512_setzero_ps();
  alignas(64) float s_lanes[16];
  for (int64_t j = 0; j < a.t; j += 16) {
    __mmask16 m = a.t - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (a.t - j)) - 1);
    if (a.alive) m = _mm_mask_cmpneq_epi8_mask(m, _mm_maskz_loadu_epi8(m, a.alive + j), _mm_setzero_si128());
    if (!m) continue;
    const __m512 dot = _mm512_maskz_loadu_ps(m, a.ct + j), kn = _mm512_maskz_loadu_ps(m, a.kn + j);
    if (!a.cosine) {
      // unclamped, as filter_tile_avx512: a superset; the exact score for the hits only
      const __m512 e = _mm512_fmadd_ps(m2, dot, _mm512_add_ps(qn, kn));
      __mmask16 mk = _mm512_mask_cmp_ps_mask(m, e, tau, _CMP_NGE_UQ);
      if (!mk) continue;
      _mm512_store_ps(s_lanes, e);
      for (unsigned bits = mk; bits; bits &= bits - 1) {
        const int l = __builtin_ctz(bits);
        const float x = s_lanes[l];
        hits[nh++] = Hit{0, (int32_t)(j + l), x > 0.0f ? x : (x == x ? 0.0f : kInf), 0.0f};
      }
      continue;
    }
    __m512 c = _mm512_mul_ps(_mm512_mul_ps(dot, qinv), _mm512_maskz_loadu_ps(m, a.kinv + j));
    c = _mm512_min_ps(one, _mm512_max_ps(mone, c));
    __m512 sc = _mm512_xor_ps(c, _mm512_set1_ps(-0.0f));
    sc = _mm512_mask_mov_ps(sc, _mm512_cmp_ps_mask(c, c, _CMP_UNORD_Q), inf);
    __mmask16 mk = _mm512_mask_cmp_ps_mask(m, sc, tau, _CMP_NGE_UQ);
    if (!mk) continue;
    _mm512_store_ps(s_lanes, sc);
    for (unsigned bits = mk; bits; bits &= bits - 1) {
      const int l = __builtin_ctz(bits);
      hits[nh++] = Hit{0, (int32_t)(j + l), s_lanes[l], dist2_of(a.qn[0], a.kn[j + l], a.ct[j + l])};
    }
  }
  return nh;
}

}  // namespace cpu
}  // namespace memq
#endif  // __AVX512F__
