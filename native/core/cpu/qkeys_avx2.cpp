// AVX2 kernels for compressed keys (this file alone gets -mavx2 -mfma; called only after
// simd_level() says so): the converting path of qkeys_avx512.cpp, 8 lanes, scalar tails.
#if defined(__AVX2__)
#include <immintrin.h>

#include <cmath>

#include "internal.h"

namespace memq {
namespace cpu {

namespace {
inline __m256 load_bf16(const uint16_t* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)p)), 16));
}
inline __m256 load_i8(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)p)));
}
inline float widen(uint16_t h) { return bf16_to_f32(h); }
inline float widen(int8_t v) { return float(v); }
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
template <int R, typename T, typename Load>
inline void dots(float* out, const float* q, const T* k, int64_t d, Load load) {
  const int64_t d8 = d / 8 * 8;
  __m256 a[R];
  for (int r = 0; r < R; ++r) a[r] = _mm256_setzero_ps();
  for (int64_t p = 0; p < d8; p += 8) {
    __m256 qv = _mm256_loadu_ps(q + p);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) a[r] = _mm256_fmadd_ps(qv, load(k + r * d + p), a[r]);
  }
  for (int r = 0; r < R; ++r) {
    float s = hsum(a[r]);
    for (int64_t p = d8; p < d; ++p) s = std::fma(q[p], widen(k[r * d + p]), s);
    out[r] = s;
  }
}
}  // namespace

void qgemv_avx2(float* ct, int64_t ldc, int kind, const float* q, const void* keys, const float* scales, int64_t j0,
                int64_t t, int64_t d) {
  auto put = [&](int64_t j, float dot) {
    ct[j * ldc] = dot;
    for (int64_t w = 1; w < ldc; ++w) ct[j * ldc + w] = 0.0f;
  };
  float o[4];
  int64_t j = 0;
  if (kind == 1) {
    const uint16_t* k = static_cast<const uint16_t*>(keys) + j0 * d;
    for (; j + 4 <= t; j += 4) {
      dots<4>(o, q, k + j * d, d, load_bf16);
      for (int r = 0; r < 4; ++r) put(j + r, o[r]);
    }
    for (; j < t; ++j) {
      dots<1>(o, q, k + j * d, d, load_bf16);
      put(j, o[0]);
    }
  } else {
    const int8_t* k = static_cast<const int8_t*>(keys) + j0 * d;
    for (; j + 4 <= t; j += 4) {
      dots<4>(o, q, k + j * d, d, load_i8);
      for (int r = 0; r < 4; ++r) put(j + r, o[r] * scales[j0 + j + r]);
    }
    for (; j < t; ++j) {
      dots<1>(o, q, k + j * d, d, load_i8);
      put(j, o[0] * scales[j0 + j]);
    }
  }
}

void dequant_tile_avx2(float* dst, int kind, const void* keys, const float* scales, int64_t j0, int64_t t,
                       int64_t d) {
  const int64_t d8 = d / 8 * 8;
  for (int64_t j = 0; j < t; ++j) {
    float* o = dst + j * d;
    if (kind == 1) {
      const uint16_t* k = static_cast<const uint16_t*>(keys) + (j0 + j) * d;
      for (int64_t p = 0; p < d8; p += 8) _mm256_storeu_ps(o + p, load_bf16(k + p));
      for (int64_t p = d8; p < d; ++p) o[p] = bf16_to_f32(k[p]);
    } else {
      const int8_t* k = static_cast<const int8_t*>(keys) + (j0 + j) * d;
      const float sc = scales[j0 + j];
      const __m256 s = _mm256_set1_ps(sc);
      for (int64_t p = 0; p < d8; p += 8) _mm256_storeu_ps(o + p, _mm256_mul_ps(load_i8(k + p), s));
      for (int64_t p = d8; p < d; ++p) o[p] = float(k[p]) * sc;
    }
  }
}

}  // namespace cpu
}  // namespace memq
#endif  // __AVX2__
