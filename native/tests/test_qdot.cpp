// Quantised-query kernels (internal.h "quantised queries", docs/math.md §2b) against their
// scalar twins and against references written here.
// Tolerances:
//   int8: the integer dot (qscale null) equals an int64 reference exactly; the float output
//         equals float(I) * (s_q * s_k) and the twin bit for bit; lanes past b are 0.
//   bf16: kernel == twin bit for bit (the twin emulates vdpbf16ps' order and flushing; see
//         the bf16_* tests); |kernel - sum_p q~_p k_p (double)| <= (d + 2) 2^-24 sum_p |q~_p k_p|
//         + (2d + 2) 2^-126 (flushed denormals).
//   one query: the same, lane 0, lanes 1..ldc-1 exactly 0.
#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "../core/cpu/internal.h"
#include "memq/cpu_features.h"
#include "memq/kernels.h"
#include "memq/thread_pool.h"
#include "testing.h"

using namespace memq;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<float> randn(std::mt19937& g, int64_t n, float scale = 1.0f) {
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(g);
  return v;
}

bool have_dp() {
  cpu::set_simd_override(-1);
  return simd_level() == SimdLevel::kAVX512 && cpu::cpu_has_avx512_dp();
}

uint32_t bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}

struct Case {
  int64_t d, b, t, j0;
};

// Random bf16 keys and rounded queries, the kernel (when the CPU has it) vs the twin vs double.
void check_bf16(std::mt19937& g, int64_t d, int64_t b, int64_t t, float kscale_mag, float qmag) {
  const int64_t j0 = 3, n = j0 + t + 2, bp = cpu::round_up(b, cpu::kQPanel), ldc = bp + 16;
  auto x = randn(g, n * d, kscale_mag);
  std::vector<uint16_t> keys(n * d);
  CHECK(quantize_bf16(keys.data(), x.data(), n, d).ok());
  auto qf = randn(g, b * d, qmag);
  std::vector<uint16_t> q(b * d);
  for (int64_t i = 0; i < b; ++i) cpu::round_query_bf16(q.data() + i * d, qf.data() + i * d, d);
  std::vector<uint16_t> panels(bp * ((d + 1) / 2) * 2, 0xFFFF);
  cpu::pack_qpanels_bf16(panels.data(), q.data(), b, bp, d);
  std::vector<float> twin(t * ldc, kNaN), vec(t * ldc, kNaN);
  cpu::qgemm_bf16_scalar(twin.data(), ldc, panels.data(), bp, keys.data(), j0, t, d);
  const bool dp = have_dp();
  if (dp) cpu::qgemm_bf16_avx512dp(vec.data(), ldc, panels.data(), bp, keys.data(), j0, t, d);
  int bad = 0;
  for (int64_t j = 0; j < t; ++j)
    for (int64_t i = 0; i < ldc; ++i) {
      const float tw = twin[j * ldc + i];
      if (i >= bp) {  // never written
        CHECK(std::isnan(tw));
        if (dp) CHECK(std::isnan(vec[j * ldc + i]));
        continue;
      }
      if (dp && bits(vec[j * ldc + i]) != bits(tw) && bad++ < 3) {
        CHECK(bits(vec[j * ldc + i]) == bits(tw));
        std::printf("  bf16 d=%lld b=%lld t=%lld j=%lld i=%lld: kernel %.9g twin %.9g\n", (long long)d, (long long)b,
                    (long long)t, (long long)j, (long long)i, vec[j * ldc + i], tw);
      }
      if (i >= b) {
        CHECK(tw == 0.0f);
        continue;
      }
      double ref = 0, mag = 0;
      for (int64_t p = 0; p < d; ++p) {
        const double v = (double)cpu::bf16_to_f32(q[i * d + p]) * cpu::bf16_to_f32(keys[(j0 + j) * d + p]);
        ref += v;
        mag += std::fabs(v);
      }
      CHECK_NEAR(tw, ref, 0, (d + 2) * std::ldexp(1.0, -24) * mag + (2 * d + 2) * std::ldexp(1.0, -126));
    }
}

void check_i8(std::mt19937& g, int64_t d, int64_t b, int64_t t, bool int_out) {
  const int64_t j0 = 2, n = j0 + t + 2, bp = cpu::round_up(b, cpu::kQPanel), ldc = bp + 16;
  auto x = randn(g, n * d, 2.0f);
  if (n > 4) for (int64_t p = 0; p < d; ++p) x[(j0 + 1) * d + p] = 0.0f;  // a zero row (scale 0)
  std::vector<int8_t> keys(n * d);
  std::vector<float> ks(n);
  CHECK(quantize_int8(keys.data(), ks.data(), x.data(), n, d).ok());
  // Extreme rows: all +127 / all -127 keys against +-127 queries exercise the int32 range.
  if (t > 2) std::fill(keys.begin() + j0 * d, keys.begin() + (j0 + 1) * d, int8_t(-127));
  auto qf = randn(g, b * d);
  std::vector<int8_t> q(b * d);
  std::vector<float> qs(bp, 0.0f);
  for (int64_t i = 0; i < b; ++i) cpu::round_query_i8(q.data() + i * d, &qs[i], qf.data() + i * d, d);
  if (b > 1) std::fill(q.begin() + d, q.begin() + 2 * d, int8_t(-127));
  std::vector<uint8_t> panels(bp * ((d + 3) / 4) * 4, 0x55);
  cpu::pack_qpanels_u8(panels.data(), q.data(), b, bp, d);
  std::vector<float> twin(t * ldc, kNaN), vec(t * ldc, kNaN);
  const float* qsp = int_out ? nullptr : qs.data();
  const float* ksp = int_out ? nullptr : ks.data();
  cpu::qgemm_i8_scalar(twin.data(), ldc, panels.data(), qsp, bp, keys.data(), ksp, j0, t, d);
  const bool dp = have_dp();
  if (dp) cpu::qgemm_i8_avx512dp(vec.data(), ldc, panels.data(), qsp, bp, keys.data(), ksp, j0, t, d);
  int bad = 0;
  for (int64_t j = 0; j < t; ++j)
    for (int64_t i = 0; i < ldc; ++i) {
      const float tw = twin[j * ldc + i];
      if (i >= bp) {
        CHECK(std::isnan(tw));
        if (dp) CHECK(std::isnan(vec[j * ldc + i]));
        continue;
      }
      if (dp && bits(vec[j * ldc + i]) != bits(tw) && bad++ < 3) CHECK(bits(vec[j * ldc + i]) == bits(tw));
      int64_t I = 0;
      if (i < b)
        for (int64_t p = 0; p < d; ++p) I += (int64_t)q[i * d + p] * keys[(j0 + j) * d + p];
      if (int_out) {
        int32_t got;
        std::memcpy(&got, &tw, 4);
        if (got != I && bad++ < 3) CHECK(got == I);
      } else {
        const float want = float(I) * (qs[i] * ks[j0 + j]);
        if (bits(tw) != bits(want) && !(tw == 0.0f && want == 0.0f) && bad++ < 3) CHECK(tw == want);
      }
    }
}

MEMQ_TEST(qgemm_kernels_vs_twins_and_references) {
  if (!have_dp()) std::printf("  (no AVX512_BF16 + AVX512_VNNI here: twins against references only)\n");
  std::mt19937 g(101);
  for (int64_t d : {1, 3, 31, 32, 33, 64, 384, 385, 1000})
    for (int64_t b : {1, 2, 15, 16, 17, 255, 256, 257}) {
      // tile tails: one row, a 12-row block plus one, three blocks plus one
      for (int64_t t : {1, 13, 37}) {
        if (b > 100 && d > 100 && t != 13) continue;  // keep the run short; 13 covers the block and its tail
        check_bf16(g, d, b, t, 1.0f, 1.0f);
        check_i8(g, d, b, t, true);
        check_i8(g, d, b, t, false);
      }
    }
}

MEMQ_TEST(qgemm_bf16_denormals_flush_like_vdpbf16ps) {
  std::mt19937 g(7);
  // Products near and below float32's normal range: vdpbf16ps flushes denormal inputs and
  // results; the twin must agree bit for bit, and the reference within its absolute term.
  for (float mag : {1e-19f, 3e-20f, 1e-38f})
    for (int64_t d : {2, 33, 64})
      for (int64_t b : {1, 17}) check_bf16(g, d, b, 13, mag, mag < 1e-30f ? 1.0f : mag);
}

MEMQ_TEST(qgemv_kernels_vs_twins_and_references) {
  std::mt19937 g(33);
  const bool dp = have_dp();
  for (int64_t d : {1, 3, 31, 32, 33, 63, 64, 65, 384, 385, 1000})
    for (int64_t t : {1, 3, 4, 5, 13})
      for (int64_t ldc : {16, 32}) {
        const int64_t j0 = 1, n = j0 + t + 1;
        auto x = randn(g, n * d);
        auto qf = randn(g, d);
        // bf16
        std::vector<uint16_t> kb(n * d), qb(d);
        CHECK(quantize_bf16(kb.data(), x.data(), n, d).ok());
        cpu::round_query_bf16(qb.data(), qf.data(), d);
        std::vector<float> tw(t * ldc, kNaN), ve(t * ldc, kNaN);
        cpu::qgemv_bf16_scalar(tw.data(), ldc, qb.data(), kb.data(), j0, t, d);
        if (dp) cpu::qgemv_bf16_avx512dp(ve.data(), ldc, qb.data(), kb.data(), j0, t, d);
        for (int64_t j = 0; j < t; ++j) {
          double ref = 0, mag = 0;
          for (int64_t p = 0; p < d; ++p) {
            const double v = (double)cpu::bf16_to_f32(qb[p]) * cpu::bf16_to_f32(kb[(j0 + j) * d + p]);
            ref += v;
            mag += std::fabs(v);
          }
          CHECK_NEAR(tw[j * ldc], ref, 0, (d + 2) * std::ldexp(1.0, -24) * mag + 1e-37);
          if (dp) CHECK(bits(ve[j * ldc]) == bits(tw[j * ldc]));
          for (int64_t w = 1; w < ldc; ++w) {
            CHECK(tw[j * ldc + w] == 0.0f);
            if (dp) CHECK(ve[j * ldc + w] == 0.0f);
          }
        }
        // int8, integer and float outputs
        std::vector<int8_t> k8(n * d), q8(d);
        std::vector<float> ks(n);
        CHECK(quantize_int8(k8.data(), ks.data(), x.data(), n, d).ok());
        float qs = 0;
        cpu::round_query_i8(q8.data(), &qs, qf.data(), d);
        for (bool int_out : {true, false}) {
          std::fill(tw.begin(), tw.end(), kNaN);
          std::fill(ve.begin(), ve.end(), kNaN);
          const float* ksp = int_out ? nullptr : ks.data();
          cpu::qgemv_i8_scalar(tw.data(), ldc, q8.data(), qs, k8.data(), ksp, j0, t, d);
          if (dp) cpu::qgemv_i8_avx512dp(ve.data(), ldc, q8.data(), qs, k8.data(), ksp, j0, t, d);
          for (int64_t j = 0; j < t; ++j) {
            int64_t I = 0;
            for (int64_t p = 0; p < d; ++p) I += (int64_t)q8[p] * k8[(j0 + j) * d + p];
            if (int_out) {
              int32_t got;
              std::memcpy(&got, &tw[j * ldc], 4);
              CHECK(got == I);
            } else {
              CHECK(tw[j * ldc] == float(I) * (qs * ks[j0 + j]));
            }
            if (dp) CHECK(bits(ve[j * ldc]) == bits(tw[j * ldc]));
            for (int64_t w = 1; w < ldc; ++w) {
              CHECK(tw[j * ldc + w] == 0.0f);
              if (dp) CHECK(ve[j * ldc + w] == 0.0f);
            }
          }
        }
      }
}

MEMQ_TEST(rounded_queries_and_their_errors) {
  std::mt19937 g(4);
  for (int64_t d : {1, 5, 384}) {
    auto q = randn(g, d, 3.0f);
    std::vector<uint16_t> qb(d);
    double e = cpu::round_query_bf16(qb.data(), q.data(), d), e2 = 0;
    for (int64_t p = 0; p < d; ++p) {
      CHECK(qb[p] == cpu::f32_to_bf16(q[p]));
      e2 += std::pow((double)q[p] - cpu::bf16_to_f32(qb[p]), 2);
    }
    CHECK_NEAR(e, std::sqrt(e2), 1e-12, 0);
    std::vector<int8_t> q8(d), k8(d);
    std::vector<float> ks(1);
    float s = -1;
    e = cpu::round_query_i8(q8.data(), &s, q.data(), d);
    CHECK(quantize_int8(k8.data(), ks.data(), q.data(), 1, d).ok());  // the same rule as the keys
    CHECK(s == ks[0] && std::equal(q8.begin(), q8.end(), k8.begin()));
    e2 = 0;
    for (int64_t p = 0; p < d; ++p) e2 += std::pow((double)q[p] - (double)s * q8[p], 2);
    CHECK_NEAR(e, std::sqrt(e2), 1e-12, 0);
    CHECK(e <= std::sqrt((double)d) * s * 0.5 * (1 + 1e-6));
  }
  // The zero query: scale 0, no error.
  std::vector<float> z(7, 0.0f);
  std::vector<int8_t> q8(7, 5);
  float s = -1;
  CHECK(cpu::round_query_i8(q8.data(), &s, z.data(), 7) == 0.0 && s == 0.0f && q8[3] == 0);
}


}  // namespace

MEMQ_TEST_MAIN()
