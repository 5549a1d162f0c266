// AVX-512 kernels for compressed keys (this file alone gets -mavx512f ...; called only after
// simd_level() says so): dequantise a tile, and the one-query dot products read straight from
// bf16 / int8 rows (each key widened exactly to float32 in registers, then one FMA chain).
#if defined(__AVX512F__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// GCC 12 also flags _mm512_undefined_* inside its own cvt intrinsics, depending on inlining.
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include "internal.h"

namespace memq {
namespace cpu {

namespace {
inline __m512 load_bf16(const uint16_t* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)p)), 16));
}
inline __m512 load_bf16_tail(__mmask16 m, const uint16_t* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
inline __m512 load_i8(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)p)));
}
inline __m512 load_i8_tail(__mmask16 m, const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, p)));
}

// R keys at a time, independent FMA chains; K loads one key's 16 elements as float32.
template <int R, typename T, typename Load, typename LoadTail>
inline void dots(float* out, const float* q, const T* k, int64_t d, Load load, LoadTail load_tail) {
  const int64_t d16 = d / 16 * 16;
  const __mmask16 tail = (__mmask16)((1u << (d % 16)) - 1);
  __m512 a[R];
  for (int r = 0; r < R; ++r) a[r] = _mm512_setzero_ps();
  for (int64_t p = 0; p < d16; p += 16) {
    __m512 qv = _mm512_loadu_ps(q + p);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) a[r] = _mm512_fmadd_ps(qv, load(k + r * d + p), a[r]);
  }
  if (tail) {
    __m512 qv = _mm512_maskz_loadu_ps(tail, q + d16);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) a[r] = _mm512_fmadd_ps(qv, load_tail(tail, k + r * d + d16), a[r]);
  }
  for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(a[r]);
}
}  // namespace

namespace {
// bf16 rows, 32 elements a load: unpacking the words against zero puts each bf16 in the high
// half of a dword, which is that float32 exactly, one instruction per 16 elements. The unpack
// works within 128-bit lanes, so the two halves hold elements {8L..8L+3} and {8L+4..8L+7} of
// lane L: the query is permuted the same way once per call (qp, zero padded to 32).
template <int R>
inline void dots_bf16_32(float* out, const float* qp, const uint16_t* k, int64_t d) {
  const int64_t d32 = d / 32 * 32;
  const __mmask32 tail = (__mmask32)((d % 32) ? ((1ull << (d % 32)) - 1) : 0);
  const __m512i zero = _mm512_setzero_si512();
  __m512 a[R][2];
  for (int r = 0; r < R; ++r) a[r][0] = a[r][1] = _mm512_setzero_ps();
  int64_t p = 0;
  for (; p < d32; p += 32) {
    __m512 qlo = _mm512_load_ps(qp + p), qhi = _mm512_load_ps(qp + p + 16);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      __m512i x = _mm512_loadu_si512((const void*)(k + r * d + p));
      a[r][0] = _mm512_fmadd_ps(qlo, _mm512_castsi512_ps(_mm512_unpacklo_epi16(zero, x)), a[r][0]);
      a[r][1] = _mm512_fmadd_ps(qhi, _mm512_castsi512_ps(_mm512_unpackhi_epi16(zero, x)), a[r][1]);
    }
  }
  if (tail) {
    __m512 qlo = _mm512_load_ps(qp + p), qhi = _mm512_load_ps(qp + p + 16);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      __m512i x = _mm512_maskz_loadu_epi16(tail, k + r * d + p);
      a[r][0] = _mm512_fmadd_ps(qlo, _mm512_castsi512_ps(_mm512_unpacklo_epi16(zero, x)), a[r][0]);
      a[r][1] = _mm512_fmadd_ps(qhi, _mm512_castsi512_ps(_mm512_unpackhi_epi16(zero, x)), a[r][1]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(_mm512_add_ps(a[r][0], a[r][1]));
}
}  // namespace

void qgemv_avx512(float* ct, int64_t ldc, int kind, const float* q, const void* keys, const float* scales, int64_t j0,
                  int64_t t, int64_t d) {
  auto put = [&](int64_t j, float dot) {
    for (int64_t w = 0; w < ldc; w += 16)
      _mm512_storeu_ps(ct + j * ldc + w, _mm512_maskz_mov_ps(w == 0 ? 1 : 0, _mm512_set1_ps(dot)));
  };
  float o[4];
  int64_t j = 0;
  if (kind == 1) {
    const uint16_t* k = static_cast<const uint16_t*>(keys) + j0 * d;
    const int64_t dp = (d + 31) / 32 * 32;
    thread_local AlignedBuf qbuf;
    float* qp = qbuf.get(dp);
    for (int64_t b0 = 0; b0 < dp; b0 += 32)
      for (int L = 0; L < 4; ++L)
        for (int i = 0; i < 4; ++i) {
          const int64_t lo = b0 + 8 * L + i, hi = lo + 4;
          qp[b0 + 4 * L + i] = lo < d ? q[lo] : 0.0f;
          qp[b0 + 16 + 4 * L + i] = hi < d ? q[hi] : 0.0f;
        }
    for (; j + 4 <= t; j += 4) {
      dots_bf16_32<4>(o, qp, k + j * d, d);
      for (int r = 0; r < 4; ++r) put(j + r, o[r]);
    }
    for (; j < t; ++j) {
      dots_bf16_32<1>(o, qp, k + j * d, d);
      put(j, o[0]);
    }
  } else {
    const int8_t* k = static_cast<const int8_t*>(keys) + j0 * d;
    for (; j + 4 <= t; j += 4) {
      dots<4>(o, q, k + j * d, d, load_i8, load_i8_tail);
      for (int r = 0; r < 4; ++r) put(j + r, o[r] * scales[j0 + j + r]);
    }
    for (; j < t; ++j) {
      dots<1>(o, q, k + j * d, d, load_i8, load_i8_tail);
      put(j, o[0] * scales[j0 + j]);
    }
  }
}

void dequant_tile_avx512(float* dst, int kind, const void* keys, const float* scales, int64_t j0, int64_t t,
                         int64_t d) {
  const int64_t d16 = d / 16 * 16;
  const __mmask16 tail = (__mmask16)((1u << (d % 16)) - 1);
  for (int64_t j = 0; j < t; ++j) {
    float* o = dst + j * d;
    if (kind == 1) {
      const uint16_t* k = static_cast<const uint16_t*>(keys) + (j0 + j) * d;
      for (int64_t p = 0; p < d16; p += 16) _mm512_storeu_ps(o + p, load_bf16(k + p));
      if (tail) _mm512_mask_storeu_ps(o + d16, tail, load_bf16_tail(tail, k + d16));
    } else {
      const int8_t* k = static_cast<const int8_t*>(keys) + (j0 + j) * d;
      const __m512 s = _mm512_set1_ps(scales[j0 + j]);
      for (int64_t p = 0; p < d16; p += 16) _mm512_storeu_ps(o + p, _mm512_mul_ps(load_i8(k + p), s));
      if (tail) _mm512_mask_storeu_ps(o + d16, tail, _mm512_mul_ps(load_i8_tail(tail, k + d16), s));
    }
  }
}

}  // namespace cpu
}  // namespace memq
#endif  // __AVX512F__
