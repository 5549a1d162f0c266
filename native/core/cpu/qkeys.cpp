// Compressed keys (docs/math.md §2b): the bf16 and int8 quantisers, the scalar twins of the
// dequantise / one-query kernels and their run-time dispatch. kind: 1 = bf16, 2 = int8
// (KeyType's values).
#include <algorithm>
#include <cmath>
#include <string>

#include "internal.h"
#include "memq/kernels.h"
#include "memq/limits.h"
#include "memq/thread_pool.h"

namespace memq {

namespace {
// The first offending row (finite values, squared norm within limits.h), or -1.
int64_t bad_row(const float* x, int64_t n, int64_t d) {
  for (int64_t i = 0; i < n; ++i) {
    double s2 = 0.0;
    for (int64_t p = 0; p < d; ++p) {
      const double v = x[i * d + p];
      if (!std::isfinite(v)) return i;
      s2 += v * v;
    }
    if (!(s2 <= limits::kMaxSquaredNorm)) return i;
  }
  return -1;
}
Status bad_row_status(const char* what, int64_t row) {
  return Status::OutOfRange(std::string(what) + ": row " + std::to_string(row) +
                            " has a non-finite value or a squared norm over " + limits::kMaxSquaredNormText);
}
}  // namespace

Status quantize_bf16(uint16_t* out, const float* x, int64_t n, int64_t d) {
  if (n < 0 || d < 1) return Status::OutOfRange("quantize_bf16: n must be >= 0 and d >= 1");
  if (n > 0 && (!out || !x)) return Status::Invalid("quantize_bf16: null buffer");
  if (int64_t r = bad_row(x, n, d); r >= 0) return bad_row_status("keys", r);
  parallel_for(0, n, 256, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo * d; i < hi * d; ++i) out[i] = cpu::f32_to_bf16(x[i]);
  });
  return Status::Ok();
}

Status quantize_int8(int8_t* out, float* scales, const float* x, int64_t n, int64_t d) {
  if (n < 0 || d < 1) return Status::OutOfRange("quantize_int8: n must be >= 0 and d >= 1");
  if (n > 0 && (!out || !x || !scales)) return Status::Invalid("quantize_int8: null buffer");
  if (int64_t r = bad_row(x, n, d); r >= 0) return bad_row_status("keys", r);
  parallel_for(0, n, 256, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) scales[i] = cpu::quantize_int8_row(out + i * d, x + i * d, d);
  });
  return Status::Ok();
}

void dequantize_rows(float* out, const KeyView& keys, int64_t row0, int64_t n) {
  if (keys.type == KeyType::kFloat32) {
    std::copy(keys.keys + row0 * keys.d, keys.keys + (row0 + n) * keys.d, out);
    return;
  }
  const void* k = keys.type == KeyType::kBF16 ? (const void*)keys.keys_bf16 : (const void*)keys.keys_i8;
  cpu::dequant_tile_scalar(out, (int)keys.type, k, keys.scales, row0, n, keys.d);
}

namespace cpu {

float quantize_int8_row(int8_t* out, const float* r, int64_t d) {
  float mx = 0.0f;
  for (int64_t p = 0; p < d; ++p) mx = std::max(mx, std::fabs(r[p]));
  const float s = mx / 127.0f;
  for (int64_t p = 0; p < d; ++p) {
    float v = s > 0.0f ? std::nearbyint(r[p] / s) : 0.0f;
    v = std::min(127.0f, std::max(-127.0f, v));  // r/s can round to 127.00001
    out[p] = (int8_t)v;
  }
  return s;
}

void dequant_tile_scalar(float* dst, int kind, const void* keys, const float* scales, int64_t j0, int64_t t,
                         int64_t d) {
  if (kind == 1) {
    const uint16_t* k = static_cast<const uint16_t*>(keys) + j0 * d;
    for (int64_t i = 0; i < t * d; ++i) dst[i] = bf16_to_f32(k[i]);
  } else {
    const int8_t* k = static_cast<const int8_t*>(keys) + j0 * d;
    for (int64_t j = 0; j < t; ++j) {
      const float s = scales[j0 + j];
      for (int64_t p = 0; p < d; ++p) dst[j * d + p] = float(k[j * d + p]) * s;
    }
  }
}

void qgemv_scalar(float* ct, int64_t ldc, int kind, const float* q, const void* keys, const float* scales, int64_t j0,
                  int64_t t, int64_t d) {
  for (int64_t j = 0; j < t; ++j) {
    float acc = 0.0f;
    if (kind == 1) {
      const uint16_t* k = static_cast<const uint16_t*>(keys) + (j0 + j) * d;
      for (int64_t p = 0; p < d; ++p) acc = std::fma(q[p], bf16_to_f32(k[p]), acc);
    } else {
      const int8_t* k = static_cast<const int8_t*>(keys) + (j0 + j) * d;
      for (int64_t p = 0; p < d; ++p) acc = std::fma(q[p], float(k[p]), acc);
      acc *= scales[j0 + j];
    }
    ct[j * ldc] = acc;
    for (int64_t w = 1; w < ldc; ++w) ct[j * ldc + w] = 0.0f;
  }
}

void dequant_tile(SimdLevel lv, float* dst, int kind, const void* keys, const float* scales, int64_t j0, int64_t t,
                  int64_t d) {
  switch (lv) {
#if defined(__x86_64__) || defined(__i386__)
    case SimdLevel::kAVX512: dequant_tile_avx512(dst, kind, keys, scales, j0, t, d); return;
    case SimdLevel::kAVX2: dequant_tile_avx2(dst, kind, keys, scales, j0, t, d); return;
#endif
    default: dequant_tile_scalar(dst, kind, keys, scales, j0, t, d); return;
  }
}

void qgemv(SimdLevel lv, float* ct, int64_t ldc, int kind, const float* q, const void* keys, const float* scales,
           int64_t j0, int64_t t, int64_t d) {
  switch (lv) {
#if defined(__x86_64__) || defined(__i386__)
    case SimdLevel::kAVX512: qgemv_avx512(ct, ldc, kind, q, keys, scales, j0, t, d); return;
    case SimdLevel::kAVX2: qgemv_avx2(ct, ldc, kind, q, keys, scales, j0, t, d); return;
#endif
    default: qgemv_scalar(ct, ldc, kind, q, keys, scales, j0, t, d); return;
  }
}

}  // namespace cpu
}  // namespace memq
