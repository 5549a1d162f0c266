// Quantised-query dot products for compressed keys (docs/math.md §2b): the rounded queries,
// their panels, the scalar twins of the AVX512_BF16 / AVX512_VNNI kernels (qdot_avx512dp.cpp)
// and the run-time dispatch. The twins are the reference arithmetic: the int8 twin and kernel
// agree bit for bit (exact integer sums, then the same two float products); the bf16 twin
// emulates vdpbf16ps' per-pair order and denormal flushing.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "internal.h"

namespace memq {
namespace cpu {

namespace {
std::atomic<bool> g_qdot_enabled{true};
std::atomic<bool> g_filter_fused{true};
inline float ftz(float x) { return std::fabs(x) < std::numeric_limits<float>::min() ? std::copysign(0.0f, x) : x; }
}  // namespace

float dpbf16_step(float acc, uint16_t a0, uint16_t a1, uint16_t b0, uint16_t b1) {
  acc = ftz(acc);
  acc = ftz(std::fma(ftz(bf16_to_f32(a1)), ftz(bf16_to_f32(b1)), acc));
  return ftz(std::fma(ftz(bf16_to_f32(a0)), ftz(bf16_to_f32(b0)), acc));
}

void set_qdot_enabled(bool on) { g_qdot_enabled.store(on, std::memory_order_relaxed); }
void set_filter_fused(bool on) { g_filter_fused.store(on, std::memory_order_relaxed); }

bool filter_fused(SimdLevel lv) {
  return lv == SimdLevel::kAVX512 && g_filter_fused.load(std::memory_order_relaxed) && cpu_has_avx512_dp();
}

bool qdot_supported(SimdLevel lv, int kind, int64_t d) {
  if (lv != SimdLevel::kAVX512 || !g_qdot_enabled.load(std::memory_order_relaxed) || !cpu_has_avx512_dp()) return false;
  if (kind == 1) return true;
  return kind == 2 && d < kQdotMaxD8;
}

double round_query_bf16(uint16_t* out, const float* q, int64_t d) {
  double e2 = 0.0;
  for (int64_t p = 0; p < d; ++p) {
    out[p] = f32_to_bf16(q[p]);
    const double r = (double)q[p] - (double)bf16_to_f32(out[p]);
    e2 += r * r;
  }
  return std::sqrt(e2);
}

double round_query_i8(int8_t* out, float* scale, const float* q, int64_t d) {
  const float s = quantize_int8_row(out, q, d);
  *scale = s;
  double e2 = 0.0;
  for (int64_t p = 0; p < d; ++p) {
    const double r = (double)q[p] - (double)s * (double)out[p];  // exact product in double
    e2 += r * r;
  }
  return std::sqrt(e2);
}

namespace {
// Rounded queries into panels of kQPanel queries with E consecutive elements per query
// interleaved (the dot-product instructions' operand layout), zero past b and d, each element
// mapped by `f` (u8: the +128 that makes it unsigned).
template <int E, typename In, typename Out, typename F>
void pack_qpanels(Out* dst, const In* q, int64_t b, int64_t bp, int64_t d, F f) {
  const int64_t h = (d + E - 1) / E;
  for (int64_t P = 0; P < bp / kQPanel; ++P) {
    Out* o = dst + P * h * E * kQPanel;
    for (int64_t g = 0; g < h; ++g)
      for (int64_t w = 0; w < kQPanel; ++w) {
        const int64_t i = P * kQPanel + w;
        for (int64_t e = 0; e < E; ++e) {
          const int64_t p = E * g + e;
          o[(g * kQPanel + w) * E + e] = f((i < b && p < d) ? q[i * d + p] : In(0));
        }
      }
  }
}
}  // namespace

void pack_qpanels_bf16(uint16_t* dst, const uint16_t* q, int64_t b, int64_t bp, int64_t d) {
  pack_qpanels<2>(dst, q, b, bp, d, [](uint16_t x) { return x; });
}

void pack_qpanels_u8(uint8_t* dst, const int8_t* q, int64_t b, int64_t bp, int64_t d) {
  pack_qpanels<4>(dst, q, b, bp, d, [](int8_t x) { return uint8_t(int(x) + 128); });
}

void qgemm_bf16_scalar(float* ct, int64_t ldc, const uint16_t* panels, int64_t bp, const uint16_t* keys, int64_t j0,
                       int64_t t, int64_t d) {
  const int64_t h = (d + 1) / 2;
  for (int64_t j = 0; j < t; ++j) {
    const uint16_t* k = keys + (j0 + j) * d;
    for (int64_t i = 0; i < bp; ++i) {
      const uint16_t* a = panels + (i / kQPanel) * h * 2 * kQPanel + (i % kQPanel) * 2;
      float acc = 0.0f;
      for (int64_t g = 0; g < h; ++g) {
        const uint16_t k0 = k[2 * g], k1 = 2 * g + 1 < d ? k[2 * g + 1] : uint16_t(0);
        acc = dpbf16_step(acc, k0, k1, a[g * 2 * kQPanel], a[g * 2 * kQPanel + 1]);
      }
      ct[j * ldc + i] = acc;
    }
  }
}

void qgemm_i8_scalar(float* ct, int64_t ldc, const uint8_t* panels, const float* qscale, int64_t bp, const int8_t* keys,
                     const float* kscale, int64_t j0, int64_t t, int64_t d) {
  const int64_t h = (d + 3) / 4;
  for (int64_t j = 0; j < t; ++j) {
    const int8_t* k = keys + (j0 + j) * d;
    int32_t sum = 0;
    for (int64_t p = 0; p < d; ++p) sum += k[p];
    for (int64_t i = 0; i < bp; ++i) {
      const uint8_t* a = panels + (i / kQPanel) * h * 4 * kQPanel + (i % kQPanel) * 4;
      int32_t acc = -128 * sum;
      for (int64_t p = 0; p < d; ++p) acc += int32_t(a[(p / 4) * 4 * kQPanel + p % 4]) * int32_t(k[p]);
      if (qscale) {
        ct[j * ldc + i] = float(acc) * (qscale[i] * kscale[j0 + j]);
      } else {
        std::memcpy(ct + j * ldc + i, &acc, 4);
      }
    }
  }
}

void qgemv_bf16_scalar(float* out, const uint16_t* q, const uint16_t* keys, int64_t j0, int64_t t, int64_t d) {
  const int64_t h = (d + 1) / 2;
  for (int64_t j = 0; j < t; ++j) {
    const uint16_t* k = keys + (j0 + j) * d;
    float lane[16] = {0};
    for (int64_t g = 0; g < h; ++g) {
      const bool full = 2 * g + 1 < d;
      lane[g % 16] = dpbf16_step(lane[g % 16], k[2 * g], full ? k[2 * g + 1] : uint16_t(0), q[2 * g],
                                 full ? q[2 * g + 1] : uint16_t(0));
    }
    for (int w = 8; w >= 1; w /= 2)
      for (int l = 0; l < w; ++l) lane[l] = lane[l] + lane[l + w];
    out[j] = lane[0];
  }
}

void qgemv_i8_scalar(float* out, const int8_t* q, float qscale, const int8_t* keys, const float* kscale, int64_t j0,
                     int64_t t, int64_t d) {
  for (int64_t j = 0; j < t; ++j) {
    const int8_t* k = keys + (j0 + j) * d;
    int32_t acc = 0;
    for (int64_t p = 0; p < d; ++p) acc += int32_t(q[p]) * int32_t(k[p]);
    if (kscale) out[j] = float(acc) * (qscale * kscale[j0 + j]);
    else std::memcpy(out + j, &acc, 4);
  }
}

#if defined(__x86_64__) || defined(__i386__)
#define MEMQ_QDOT_X86 1
#endif

namespace {
bool use_dp(SimdLevel lv) {
#ifdef MEMQ_QDOT_X86
  return lv == SimdLevel::kAVX512 && cpu_has_avx512_dp();
#else
  (void)lv;
  return false;
#endif
}
}  // namespace

void qgemm_bf16(SimdLevel lv, float* ct, int64_t ldc, const uint16_t* panels, int64_t bp, const uint16_t* keys,
                int64_t j0, int64_t t, int64_t d) {
#ifdef MEMQ_QDOT_X86
  if (use_dp(lv)) return qgemm_bf16_avx512dp(ct, ldc, panels, bp, keys, j0, t, d);
#endif
  qgemm_bf16_scalar(ct, ldc, panels, bp, keys, j0, t, d);
}

void qgemm_i8(SimdLevel lv, float* ct, int64_t ldc, const uint8_t* panels, const float* qscale, int64_t bp,
              const int8_t* keys, const float* kscale, int64_t j0, int64_t t, int64_t d) {
#ifdef MEMQ_QDOT_X86
  if (use_dp(lv)) return qgemm_i8_avx512dp(ct, ldc, panels, qscale, bp, keys, kscale, j0, t, d);
#endif
  qgemm_i8_scalar(ct, ldc, panels, qscale, bp, keys, kscale, j0, t, d);
}

void qgemv_bf16(SimdLevel lv, float* out, const uint16_t* q, const uint16_t* keys, int64_t j0, int64_t t, int64_t d) {
#ifdef MEMQ_QDOT_X86
  if (use_dp(lv)) return qgemv_bf16_avx512dp(out, q, keys, j0, t, d);
#endif
  qgemv_bf16_scalar(out, q, keys, j0, t, d);
}

void qgemv_i8(SimdLevel lv, float* out, const int8_t* q, float qscale, const int8_t* keys, const float* kscale,
              int64_t j0, int64_t t, int64_t d) {
#ifdef MEMQ_QDOT_X86
  if (use_dp(lv)) return qgemv_i8_avx512dp(out, q, qscale, keys, kscale, j0, t, d);
#endif
  qgemv_i8_scalar(out, q, qscale, keys, kscale, j0, t, d);
}

}  // namespace cpu
}  // namespace memq
