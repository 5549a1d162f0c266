// Dispatch of the exp kernels (see memq/llm/vexp.h) and the scalar twin.
#include "memq/llm/vexp.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "memq/cpu_features.h"

namespace memq {
namespace llm {

namespace generic { double exp_shift_sum(float* out, const float* x, float shift, int64_t n); }
namespace avx2 { double exp_shift_sum(float* out, const float* x, float shift, int64_t n); }
namespace avx512 { double exp_shift_sum(float* out, const float* x, float shift, int64_t n); }

namespace {
using Fn = double (*)(float*, const float*, float, int64_t);
Fn pick() {
  switch (simd_level()) {
    case SimdLevel::kAVX512: return avx512::exp_shift_sum;
    case SimdLevel::kAVX2: return avx2::exp_shift_sum;
    default: return generic::exp_shift_sum;
  }
}
}  // namespace

double expf_shift_sum(float* out, const float* x, float shift, int64_t n) {
  static const Fn fn = pick();
  return n > 0 ? fn(out, x, shift, n) : 0.0;
}

bool expf_shift_sum_variant(const char* variant, float* out, const float* x, float shift, int64_t n, double* sum) {
  const SimdLevel have = simd_level();
  Fn fn = nullptr;
  if (!std::strcmp(variant, "generic")) fn = generic::exp_shift_sum;
  else if (!std::strcmp(variant, "avx2") && (have == SimdLevel::kAVX2 || have == SimdLevel::kAVX512)) fn = avx2::exp_shift_sum;
  else if (!std::strcmp(variant, "avx512") && have == SimdLevel::kAVX512) fn = avx512::exp_shift_sum;
  if (!fn) return false;
  *sum = n > 0 ? fn(out, x, shift, n) : 0.0;
  return true;
}

float expf_scalar(float x) {
  const float kHi = 88.72283935546875f, kLo = -103.97207641601562f;
  if (x != x) return x;
  if (x > kHi) return std::numeric_limits<float>::infinity();
  if (x < kLo) return 0.0f;
  const float big = 12582912.0f;
  const float n = std::fma(x, 1.44269504088896341f, big) - big;
  float r = std::fma(-n, 0.693359375f, x);
  r = std::fma(-n, -2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = std::fma(p, r, 1.3981999507e-3f);
  p = std::fma(p, r, 8.3334519073e-3f);
  p = std::fma(p, r, 4.1665795894e-2f);
  p = std::fma(p, r, 1.6666665459e-1f);
  p = std::fma(p, r, 5.0000001201e-1f);
  float y = std::fma(p, r * r, r) + 1.0f;
  const int32_t ni = int32_t(n), a = ni >> 1, b = ni - a;
  const int32_t ba = (a + 127) << 23, bb = (b + 127) << 23;
  float fa, fb;
  std::memcpy(&fa, &ba, sizeof fa);
  std::memcpy(&fb, &bb, sizeof fb);
  return (y * fa) * fb;
}

}  // namespace llm
}  // namespace memq
