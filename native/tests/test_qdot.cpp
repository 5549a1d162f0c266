// Quantised-query kernels (internal.h "quantised queries", docs/math.md §2b) against their
// scalar twins and against references written here; and search_topm's exactness on compressed
// keys (the rounded-query scan plus the slack of kernels.cpp) against a brute-force double top-M.
// Tolerances:
//   int8: the integer dot (qscale null) equals an int64 reference exactly; the float output
//         equals float(I) * (s_q * s_k) and the twin bit for bit; lanes past b are 0.
//   bf16: kernel == twin bit for bit (the twin emulates vdpbf16ps' order and flushing; see
//         the bf16_* tests); |kernel - sum_p q~_p k_p (double)| <= (d + 2) 2^-24 sum_p |q~_p k_p|
//         + (2d + 2) 2^-126 (flushed denormals).
//   one query: the same, lane 0, lanes 1..ldc-1 exactly 0.
//   search: ids equal the brute-force top-M (double distances rounded to float32, ties to the
//         lower row) slot by slot, exactly; dist2 and kernel values exactly the float32 roundings
//         of that reference's double values.
#include <algorithm>
#include <functional>
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

// Compressed keys and the squared norms of their dequantised rows (double, rounded once).
struct QKeysLite {
  std::vector<uint16_t> bf;
  std::vector<int8_t> i8;
  std::vector<float> scales, norms2;
};
QKeysLite make_lite(int kind, const std::vector<float>& x, int64_t n, int64_t d) {
  QKeysLite k;
  k.norms2.assign(n, 0.0f);
  if (kind == 1) {
    k.bf.resize(n * d);
    CHECK(quantize_bf16(k.bf.data(), x.data(), n, d).ok());
  } else {
    k.i8.resize(n * d);
    k.scales.resize(n);
    CHECK(quantize_int8(k.i8.data(), k.scales.data(), x.data(), n, d).ok());
  }
  for (int64_t j = 0; j < n; ++j) {
    double a = 0;
    for (int64_t p = 0; p < d; ++p) {
      const double v = kind == 1 ? (double)cpu::bf16_to_f32(k.bf[j * d + p]) : (double)k.i8[j * d + p] * k.scales[j];
      a += v * v;
    }
    k.norms2[j] = (float)a;
  }
  return k;
}

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
    for (int64_t t : {1, 3, 4, 5, 13, 16, 37}) {  // 16-key blocks (int8), 4-key blocks, single keys
      const int64_t j0 = 1, n = j0 + t + 1, pad = 5;  // pad: entries past t stay NaN
      auto x = randn(g, n * d);
      auto qf = randn(g, d);
      // bf16
      std::vector<uint16_t> kb(n * d), qb(d);
      CHECK(quantize_bf16(kb.data(), x.data(), n, d).ok());
      cpu::round_query_bf16(qb.data(), qf.data(), d);
      std::vector<float> tw(t + pad, kNaN), ve(t + pad, kNaN);
      cpu::qgemv_bf16_scalar(tw.data(), qb.data(), kb.data(), j0, t, d);
      if (dp) cpu::qgemv_bf16_avx512dp(ve.data(), qb.data(), kb.data(), j0, t, d);
      for (int64_t j = 0; j < t; ++j) {
        double ref = 0, mag = 0;
        for (int64_t p = 0; p < d; ++p) {
          const double v = (double)cpu::bf16_to_f32(qb[p]) * cpu::bf16_to_f32(kb[(j0 + j) * d + p]);
          ref += v;
          mag += std::fabs(v);
        }
        CHECK_NEAR(tw[j], ref, 0, (d + 2) * std::ldexp(1.0, -24) * mag + 1e-37);
        if (dp) CHECK(bits(ve[j]) == bits(tw[j]));
      }
      for (int64_t j = t; j < t + pad; ++j) CHECK(std::isnan(tw[j]) && (!dp || std::isnan(ve[j])));
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
        cpu::qgemv_i8_scalar(tw.data(), q8.data(), qs, k8.data(), ksp, j0, t, d);
        if (dp) cpu::qgemv_i8_avx512dp(ve.data(), q8.data(), qs, k8.data(), ksp, j0, t, d);
        for (int64_t j = 0; j < t; ++j) {
          int64_t I = 0;
          for (int64_t p = 0; p < d; ++p) I += (int64_t)q8[p] * k8[(j0 + j) * d + p];
          if (int_out) {
            int32_t got;
            std::memcpy(&got, &tw[j], 4);
            CHECK(got == I);
          } else {
            CHECK(tw[j] == float(I) * (qs * ks[j0 + j]));
          }
          if (dp) CHECK(bits(ve[j]) == bits(tw[j]));
        }
        for (int64_t j = t; j < t + pad; ++j) CHECK(std::isnan(tw[j]) && (!dp || std::isnan(ve[j])));
      }
    }
}

// The one-query filter over dense dots: the same hits (keys, scores, aux) as the scalar filter
// on that layout, with alive masks, NaN thresholds (not full yet), ties with tau, NaN dots.
MEMQ_TEST(filter_dots_matches_the_scalar_filter) {
  cpu::set_simd_override(-1);
  if (simd_level() != SimdLevel::kAVX512) return;
  std::mt19937 g(8);
  for (bool cosine : {false, true})
    for (int64_t t : {1, 15, 16, 17, 40})
      for (int variant = 0; variant < 3; ++variant) {
        auto dots = randn(g, t), kn = randn(g, t);
        for (auto& v : kn) v = std::fabs(v) * 4.0f;
        if (t > 3) dots[2] = kNaN;
        std::vector<float> kinv(t);
        for (int64_t j = 0; j < t; ++j) kinv[j] = cpu::inv_norm(kn[j]);
        float qn = 2.5f, qinv = cpu::inv_norm(qn);
        float tau = variant == 0 ? kNaN : (cosine ? -0.2f : 3.0f);
        if (variant == 2 && !cosine) tau = cpu::dist2_of(qn, kn[0], dots[0]);  // a tie with key 0
        std::vector<uint8_t> alive(t);
        for (auto& a : alive) a = g() % 3 != 0;
        cpu::FilterArgs fa{dots.data(), 1, t, 1, &qn, &qinv, kn.data(), cosine ? kinv.data() : nullptr,
                           variant == 1 ? alive.data() : nullptr, &tau, cosine};
        std::vector<cpu::Hit> h1(t), h2(t);
        const int64_t n1 = cpu::filter_tile_scalar(h1.data(), fa), n2 = cpu::filter_dots_avx512(h2.data(), fa);
        // the vector filter may pass a few more (unclamped dist2); each scalar hit must be there, equal
        int64_t k = 0;
        for (int64_t i = 0; i < n1; ++i) {
          while (k < n2 && h2[k].j != h1[i].j) {
            CHECK(!(h2[k].score < tau) || std::isnan(tau) || h2[k].score >= tau);
            ++k;
          }
          CHECK(k < n2);
          if (k >= n2) break;
          CHECK(h2[k].q == 0 && bits(h2[k].score) == bits(h1[i].score) && bits(h2[k].aux) == bits(h1[i].aux));
          ++k;
        }
      }
}

// The threshold filter fused into the b > 1 kernels (qgemm_*_filter_avx512dp) against the two
// passes it replaces, on the same tile: the kernel's C^T tile then filter_tile_avx512 must give
// the same hits (query, key, score and aux bits), and per query in increasing key order; and
// every hit of the scalar twin (qgemm_*_scalar then filter_tile_scalar) must be there, bit for
// bit, the fused kernel's extra hits being exactly those the scalar filter drops (score >= tau:
// the vector filters test the unclamped dist2). Near-ties: thresholds equal to a tile element's
// exact score, or one float step either side; NaN thresholds (not full yet), -inf padding lanes,
// alive masks, dist2 and cosine, a lone last panel (b <= 16, or 17..32 past a pair), tile tails
// (t not a multiple of 12), d spanning several blocks of groups (bf16 d > 256, int8 d > 512).
struct FilterCase {
  std::vector<float> qn, qinv, kn, kinv, tau;
  std::vector<uint8_t> alive;
};
std::vector<cpu::Hit> sorted_hits(const std::vector<cpu::Hit>& h, int64_t nh) {
  std::vector<cpu::Hit> v(h.begin(), h.begin() + nh);
  std::sort(v.begin(), v.end(), [](const cpu::Hit& a, const cpu::Hit& b) { return a.q < b.q || (a.q == b.q && a.j < b.j); });
  return v;
}
bool same_hit(const cpu::Hit& a, const cpu::Hit& b) {
  return a.q == b.q && a.j == b.j && bits(a.score) == bits(b.score) && bits(a.aux) == bits(b.aux);
}
// ct: the kernel's tile (t x ldc) for the thresholds; returns the number of mismatches.
int check_fused_filter(const char* what, const std::vector<float>& ct, int64_t ldc, int64_t t, int64_t b, int64_t bp,
                       FilterCase& fc, bool cosine, int tau_mode, std::mt19937& g,
                       const std::function<int64_t(cpu::Hit*, const cpu::FilterArgs&)>& fused,
                       const std::vector<float>& twin) {
  // thresholds: 0 NaN, 1 a random element's exact score, 2 one step below it, 3 one step above
  fc.tau.assign(bp, -std::numeric_limits<float>::infinity());
  for (int64_t i = 0; i < b; ++i) {
    if (tau_mode == 0) {
      fc.tau[i] = kNaN;
      continue;
    }
    const int64_t j = g() % t;
    const float dot = ct[j * ldc + i];
    float sc = cosine ? -cpu::cos_of(fc.qinv[i], fc.kinv[j], dot) : cpu::dist2_of(fc.qn[i], fc.kn[j], dot);
    if (tau_mode == 2) sc = std::nextafter(sc, -1e30f);
    if (tau_mode == 3) sc = std::nextafter(sc, 1e30f);
    fc.tau[i] = sc;
  }
  cpu::FilterArgs fa{ct.data(), ldc, t, bp, fc.qn.data(), fc.qinv.data(), fc.kn.data(), cosine ? fc.kinv.data() : nullptr,
                     fc.alive.empty() ? nullptr : fc.alive.data(), fc.tau.data(), cosine};
  std::vector<cpu::Hit> h1(t * bp + 1), h2(t * bp + 1), h3(t * bp + 1);
  const int64_t n1 = cpu::filter_tile_avx512(h1.data(), fa);
  cpu::FilterArgs fb = fa;
  fb.ct = nullptr;  // not read by the fused kernels
  const int64_t n2 = fused(h2.data(), fb);
  cpu::FilterArgs ft = fa;
  ft.ct = twin.data();
  const int64_t n3 = cpu::filter_tile_scalar(h3.data(), ft);
  int bad = 0;
  // per query, increasing keys
  std::vector<int32_t> last(bp, -1);
  for (int64_t k = 0; k < n2; ++k) {
    if (h2[k].q < 0 || h2[k].q >= b || h2[k].j <= last[h2[k].q]) ++bad;
    else last[h2[k].q] = h2[k].j;
  }
  auto a = sorted_hits(h1, n1), f = sorted_hits(h2, n2), tw = sorted_hits(h3, n3);
  if (a.size() != f.size()) ++bad;
  for (size_t k = 0; k < std::min(a.size(), f.size()); ++k)
    if (!same_hit(a[k], f[k])) ++bad;
  size_t k = 0;
  for (const cpu::Hit& x : tw) {
    while (k < f.size() && (f[k].q < x.q || (f[k].q == x.q && f[k].j < x.j))) {
      if (f[k].score < fc.tau[f[k].q]) ++bad;  // an extra hit must fail the exact test
      ++k;
    }
    if (k >= f.size() || !same_hit(f[k], x)) {
      ++bad;
      continue;
    }
    ++k;
  }
  for (; k < f.size(); ++k)
    if (f[k].score < fc.tau[f[k].q]) ++bad;
  if (bad) {
    CHECK(bad == 0);
    std::printf("  %s b=%lld t=%lld cosine=%d tau_mode=%d: %d mismatches (%lld / %lld / %lld hits)\n", what, (long long)b,
                (long long)t, (int)cosine, tau_mode, bad, (long long)n1, (long long)n2, (long long)n3);
  }
  return bad;
}

MEMQ_TEST(fused_filter_matches_kernel_then_filter) {
  if (!have_dp()) {
    std::printf("  (no AVX512_BF16 + AVX512_VNNI here: nothing to compare)\n");
    return;
  }
  std::mt19937 g(515);
  int cases = 0;
  for (int64_t d : {33, 384, 600})
    for (int64_t b : {5, 16, 17, 40, 64})
      for (int64_t t : {1, 13, 40}) {
        const int64_t j0 = 2, n = j0 + t + 1, bp = cpu::round_up(b, cpu::kQPanel), ldc = bp;
        // keys: random, with near-duplicates of a few rows (equal or nearly equal scores)
        auto x = randn(g, n * d);
        for (int64_t j = j0 + 3; j < n; j += 5)
          for (int64_t p = 0; p < d; ++p) x[j * d + p] = x[(j0 + 1) * d + p] * (1.0f + 1e-6f * (float)(j % 3));
        auto qf = randn(g, b * d);
        for (int64_t p = 0; p < d; ++p) qf[p] = x[(j0 + 1) * d + p];  // query 0 on key 1
        FilterCase fc;
        fc.qn.assign(bp, 0.0f);
        fc.qinv.assign(bp, 0.0f);
        for (int64_t i = 0; i < b; ++i) {
          double a = 0;
          for (int64_t p = 0; p < d; ++p) a += (double)qf[i * d + p] * qf[i * d + p];
          fc.qn[i] = (float)a;
          fc.qinv[i] = cpu::inv_norm(fc.qn[i]);
        }
        for (int kind : {1, 2}) {
          QKeysLite k = make_lite(kind, x, n, d);
          fc.kn.assign(k.norms2.begin() + j0, k.norms2.begin() + j0 + t);
          fc.kinv.resize(t);
          for (int64_t j = 0; j < t; ++j) fc.kinv[j] = cpu::inv_norm(fc.kn[j]);
          std::vector<float> ct(t * ldc, kNaN), tw(t * ldc, kNaN), scratch(t * ldc, kNaN);
          std::function<int64_t(cpu::Hit*, const cpu::FilterArgs&)> fused;
          std::vector<uint16_t> qb16, pb16;
          std::vector<int8_t> q8;
          std::vector<uint8_t> pu8;
          std::vector<float> qs(bp, 0.0f);
          if (kind == 1) {
            qb16.resize(b * d);
            for (int64_t i = 0; i < b; ++i) cpu::round_query_bf16(qb16.data() + i * d, qf.data() + i * d, d);
            pb16.assign(bp * ((d + 1) / 2) * 2, 0);
            cpu::pack_qpanels_bf16(pb16.data(), qb16.data(), b, bp, d);
            cpu::qgemm_bf16_avx512dp(ct.data(), ldc, pb16.data(), bp, k.bf.data(), j0, t, d);
            cpu::qgemm_bf16_scalar(tw.data(), ldc, pb16.data(), bp, k.bf.data(), j0, t, d);
            fused = [&](cpu::Hit* h, const cpu::FilterArgs& fa) {
              return cpu::qgemm_bf16_filter_avx512dp(h, fa, scratch.data(), ldc, pb16.data(), k.bf.data(), j0, d);
            };
          } else {
            q8.resize(b * d);
            for (int64_t i = 0; i < b; ++i) cpu::round_query_i8(q8.data() + i * d, &qs[i], qf.data() + i * d, d);
            pu8.assign(bp * ((d + 3) / 4) * 4, 0);
            cpu::pack_qpanels_u8(pu8.data(), q8.data(), b, bp, d);
            cpu::qgemm_i8_avx512dp(ct.data(), ldc, pu8.data(), qs.data(), bp, k.i8.data(), k.scales.data(), j0, t, d);
            cpu::qgemm_i8_scalar(tw.data(), ldc, pu8.data(), qs.data(), bp, k.i8.data(), k.scales.data(), j0, t, d);
            fused = [&](cpu::Hit* h, const cpu::FilterArgs& fa) {
              return cpu::qgemm_i8_filter_avx512dp(h, fa, scratch.data(), ldc, pu8.data(), qs.data(), k.i8.data(),
                                                   k.scales.data(), j0, d);
            };
          }
          for (bool cosine : {false, true})
            for (int masked = 0; masked < 2; ++masked) {
              fc.alive.clear();
              if (masked) {
                fc.alive.resize(t);
                for (auto& a : fc.alive) a = g() % 3 != 0;
              }
              for (int tau_mode = 0; tau_mode < 4; ++tau_mode) {
                check_fused_filter(kind == 1 ? "bf16" : "int8", ct, ldc, t, b, bp, fc, cosine, tau_mode, g, fused, tw);
                ++cases;
              }
            }
        }
      }
  CHECK(cases > 0);
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


// ---- search exactness ------------------------------------------------------------------------

// Compressed keys with their dequantised values computed here (not through the library).
struct QKeys {
  KeyType type;
  int64_t n, d;
  std::vector<uint16_t> bf;
  std::vector<int8_t> i8;
  std::vector<float> scales, deq, norms2;
  KeyView view() const {
    KeyView v;
    v.n = n;
    v.d = d;
    v.type = type;
    v.keys_bf16 = bf.empty() ? nullptr : bf.data();
    v.keys_i8 = i8.empty() ? nullptr : i8.data();
    v.scales = scales.empty() ? nullptr : scales.data();
    v.norms2 = norms2.data();
    return v;
  }
};
QKeys make_keys(KeyType type, const std::vector<float>& x, int64_t n, int64_t d) {
  QKeys q{type, n, d, {}, {}, {}, {}, {}};
  q.deq.resize(n * d);
  if (type == KeyType::kBF16) {
    q.bf.assign(n * d, 0xFFFF);
    CHECK(quantize_bf16(q.bf.data(), x.data(), n, d).ok());
    for (int64_t i = 0; i < n * d; ++i) {
      const uint32_t u = uint32_t(q.bf[i]) << 16;
      std::memcpy(&q.deq[i], &u, 4);
    }
  } else {
    q.i8.assign(n * d, 0);
    q.scales.assign(n, kNaN);
    CHECK(quantize_int8(q.i8.data(), q.scales.data(), x.data(), n, d).ok());
    for (int64_t i = 0; i < n * d; ++i) q.deq[i] = float(q.i8[i]) * q.scales[i / d];
  }
  q.norms2.resize(n);
  for (int64_t j = 0; j < n; ++j) {
    double s = 0;
    for (int64_t p = 0; p < d; ++p) s += (double)q.deq[j * d + p] * q.deq[j * d + p];
    q.norms2[j] = (float)s;  // as the key store caches them
  }
  return q;
}

struct RefHit {
  float score, d2;
  int64_t row;
};
bool ref_better(const RefHit& a, const RefHit& b) { return a.score < b.score || (a.score == b.score && a.row < b.row); }
// The exact score of q against key row kv, in double, rounded to float32 (the documented order).
RefHit ref_score(const float* q, const float* kv, int64_t d, bool cosine, int64_t row) {
  double s2 = 0, dot = 0, qq = 0, kk = 0;
  for (int64_t p = 0; p < d; ++p) {
    const double a = q[p], c = kv[p], t = a - c;
    s2 += t * t;
    dot += a * c, qq += a * a, kk += c * c;
  }
  double cs = (qq > 0 && kk > 0) ? dot / std::sqrt(qq * kk) : 0.0;
  cs = cs < -1.0 ? -1.0 : (cs > 1.0 ? 1.0 : cs);
  return RefHit{cosine ? -(float)cs : (float)s2, (float)s2, row};
}

// Brute force: the exact top-m over the dequantised keys (alive rows), or with `exact` the
// exact top-(m * oversample) there, then the top-m of those on the float32 keys.
std::vector<RefHit> brute_topm(const QKeys& qk, const float* q, const uint8_t* alive, int64_t m, bool cosine,
                               const float* exact, int64_t oversample) {
  std::vector<RefHit> all;
  for (int64_t j = 0; j < qk.n; ++j)
    if (!alive || alive[j]) all.push_back(ref_score(q, qk.deq.data() + j * qk.d, qk.d, cosine, j));
  std::sort(all.begin(), all.end(), ref_better);
  if (exact) {
    if ((int64_t)all.size() > m * oversample) all.resize(m * oversample);
    for (RefHit& h : all) h = ref_score(q, exact + h.row * qk.d, qk.d, cosine, h.row);
    std::sort(all.begin(), all.end(), ref_better);
  }
  if ((int64_t)all.size() > m) all.resize(m);
  return all;
}

// Every dispatch path: scalar, AVX2, AVX-512 (dequantise), AVX-512 with the dot-product kernels.
struct Path {
  SimdLevel level;
  bool qdot;
  const char* name;
};
std::vector<Path> paths() {
  cpu::set_simd_override(-1);
  const SimdLevel top = simd_level();
  std::vector<Path> out{{SimdLevel::kScalar, false, "scalar"}};
  if (top >= SimdLevel::kAVX2) out.push_back({SimdLevel::kAVX2, false, "avx2"});
  if (top >= SimdLevel::kAVX512) out.push_back({SimdLevel::kAVX512, false, "avx512 dequantise"});
  if (top >= SimdLevel::kAVX512 && cpu::cpu_has_avx512_dp()) out.push_back({SimdLevel::kAVX512, true, "avx512 bf16/vnni"});
  return out;
}

int g_search_failures = 0;

// search_topm on (x -> qk) and queries qs vs brute_topm, slot by slot, for every path.
void check_exact(const char* what, KeyType type, const std::vector<float>& x, int64_t n, int64_t d,
                 const std::vector<float>& qs, int64_t b, int64_t m, KernelType kt, const uint8_t* alive, bool rerank,
                 int64_t oversample = 3) {
  QKeys qk = make_keys(type, x, n, d);
  KeyView v = qk.view();
  v.alive = alive;
  if (rerank) {
    v.exact = x.data();
    v.oversample = oversample;
  }
  KernelParams kp;
  kp.type = kt;
  if (kt == KernelType::kGaussian) kp.bandwidth = 0.7f;
  if (kt == KernelType::kInverse) kp.delta = 1e-3f;
  const bool cosine = kt == KernelType::kCosine;
  std::vector<std::vector<RefHit>> ref(b);
  for (int64_t i = 0; i < b; ++i)
    ref[i] = brute_topm(qk, qs.data() + i * d, alive, m, cosine, rerank ? x.data() : nullptr, oversample);
  for (const Path& path : paths()) {
    cpu::set_simd_override(static_cast<int>(path.level));
    cpu::set_qdot_enabled(path.qdot);
    std::vector<int64_t> rows(b * m, -7);
    std::vector<float> kern(b * m, kNaN), d2(b * m, kNaN);
    Status s = search_topm(rows.data(), kern.data(), d2.data(), qs.data(), b, v, m, kp);
    CHECK(s.ok());
    if (!s.ok()) continue;
    int shown = 0;
    for (int64_t i = 0; i < b; ++i)
      for (int64_t sl = 0; sl < m; ++sl) {
        const int64_t o = i * m + sl;
        if (sl >= (int64_t)ref[i].size()) {
          CHECK(rows[o] == -1 && kern[o] == 0.0f && std::isinf(d2[o]));
          continue;
        }
        const RefHit& e = ref[i][sl];
        const float want_k = kernel_value(kp, e.d2, cosine ? -e.score : 0.0f);
        if (rows[o] != e.row || bits(d2[o]) != bits(e.d2) || bits(kern[o]) != bits(want_k)) {
          ++g_search_failures;
          CHECK(rows[o] == e.row && bits(d2[o]) == bits(e.d2) && bits(kern[o]) == bits(want_k));
          if (shown++ < 3)
            std::printf("  %s %s %s kernel %d b=%lld q%lld slot %lld: row %lld (d2 %.9g) want %lld (d2 %.9g)\n", what,
                        type == KeyType::kBF16 ? "bf16" : "int8", path.name, (int)kt, (long long)b, (long long)i,
                        (long long)sl, (long long)rows[o], d2[o], (long long)e.row, e.d2);
        }
      }
  }
  cpu::set_simd_override(-1);
  cpu::set_qdot_enabled(true);
}

// Random keys; near-ties: keys on a sphere around a query (equal exact distances, separated
// only by the quantisation), keys = base + tiny perturbations (many collapse to duplicates
// when compressed), exact duplicates; with and without alive masks and re-rank.
MEMQ_TEST(search_on_compressed_keys_is_exact_on_every_path) {
  std::mt19937 g(2024);
  set_num_threads(2);
  for (KeyType type : {KeyType::kBF16, KeyType::kInt8})
    for (KernelType kt : {KernelType::kGaussian, KernelType::kCosine, KernelType::kInverse})
      for (int64_t b : {1, 3, 40})
        for (int variant = 0; variant < 4; ++variant) {
          const int64_t n = 900, d = variant == 1 ? 64 : 33, m = 8;
          std::vector<float> x, qs = randn(g, b * d);
          if (variant == 0) {  // random keys, a query near a key
            x = randn(g, n * d);
            if (b > 1) for (int64_t p = 0; p < d; ++p) qs[d + p] = x[7 * d + p] + 1e-3f;
          } else if (variant == 1) {  // a sphere of radius 0.3 around query 0 (and 1)
            x.resize(n * d);
            for (int64_t j = 0; j < n; ++j) {
              auto u = randn(g, d);
              double nu = 0;
              for (float z : u) nu += (double)z * z;
              const int64_t c = (b > 1 && j % 2) ? 1 : 0;
              for (int64_t p = 0; p < d; ++p) x[j * d + p] = qs[c * d + p] + (float)(0.3 * u[p] / std::sqrt(nu));
            }
          } else if (variant == 2) {  // base + tiny perturbations
            auto base = randn(g, d);
            x.resize(n * d);
            for (int64_t j = 0; j < n; ++j)
              for (int64_t p = 0; p < d; ++p) x[j * d + p] = base[p] * (1.0f + 1e-4f * std::normal_distribution<float>()(g));
            for (int64_t i = 0; i < b; ++i)
              for (int64_t p = 0; p < d; ++p) qs[i * d + p] = base[p] + 0.05f * qs[i * d + p];
          } else {  // exact duplicates: 30 distinct keys, each 30 times
            auto u = randn(g, 30 * d);
            x.resize(n * d);
            for (int64_t j = 0; j < n; ++j) std::copy(u.begin() + (j % 30) * d, u.begin() + (j % 30 + 1) * d, x.begin() + j * d);
          }
          std::vector<uint8_t> alive(n, 1);
          for (int64_t j = 0; j < n; j += 3) alive[j] = 0;
          check_exact("plain", type, x, n, d, qs, b, m, kt, nullptr, false);
          check_exact("alive", type, x, n, d, qs, b, m, kt, alive.data(), false);
          check_exact("rerank", type, x, n, d, qs, b, m, kt, variant % 2 ? alive.data() : nullptr, true);
        }
  set_num_threads(0);
}

// Enough keys that the search splits them into ranges (merged per query), tails of the tile,
// an odd d (partial bf16 pair, partial int8 quad), more panels than one query block, and m
// larger than the alive rows.
MEMQ_TEST(search_exact_across_ranges_blocks_and_small_sets) {
  std::mt19937 g(99);
  set_num_threads(2);
  for (KeyType type : {KeyType::kBF16, KeyType::kInt8}) {
    {
      const int64_t n = 45007, d = 97, m = 16;
      auto x = randn(g, n * d);
      auto qs = randn(g, d);
      for (int64_t p = 0; p < d; ++p) qs[p] = x[44000 * d + p] + 0.01f * qs[p];
      check_exact("ranges", type, x, n, d, qs, 1, m, KernelType::kGaussian, nullptr, false);
      check_exact("ranges", type, x, n, d, qs, 1, m, KernelType::kCosine, nullptr, true, 4);
    }
    {
      const int64_t n = 700, d = 35, b = 257, m = 5;
      auto x = randn(g, n * d);
      auto qs = randn(g, b * d);
      check_exact("blocks", type, x, n, d, qs, b, m, KernelType::kInverse, nullptr, false);
    }
    {
      const int64_t n = 6, d = 3, m = 8;
      auto x = randn(g, n * d);
      auto qs = randn(g, 2 * d);
      std::vector<uint8_t> alive{1, 0, 1, 1, 0, 1};
      check_exact("small", type, x, n, d, qs, 2, m, KernelType::kGaussian, alive.data(), false);
      check_exact("small", type, x, n, d, qs, 1, m, KernelType::kCosine, alive.data(), true, 2);
    }
  }
  set_num_threads(0);
}

// The key tiles are claimed at run time by the work items (kernels.cpp), so which item scans
// which tile changes from run to run: the answer must not. Every path, thread counts 1..5 and
// repeated runs, bit for bit the same, and exact (brute force) at 3 threads; B = 1 (one query
// split over the threads) and B = 20, keys near-tied around the queries, tombstones.
MEMQ_TEST(search_on_compressed_keys_same_whatever_the_threads) {
  std::mt19937 g(7031);
  const int64_t n = 60000, d = 80, m = 12;  // 74 tiles of 816 keys, b * n * d > 4e6: split
  for (int64_t b : {1, 20}) {
    auto qs = randn(g, b * d);
    std::vector<float> x(n * d);
    for (int64_t j = 0; j < n; ++j) {  // shells of radius 1.5 (+-1e-4) around the queries
      auto u = randn(g, d);
      double nu = 0;
      for (float z : u) nu += (double)z * z;
      const int64_t c = j % b;
      const double r = 1.5 * (1.0 + 1e-4 * (double)(j % 3));
      for (int64_t p = 0; p < d; ++p) x[j * d + p] = qs[c * d + p] + (float)(r * u[p] / std::sqrt(nu));
    }
    std::vector<uint8_t> alive(n, 1);
    for (int64_t j = 5; j < n; j += 7) alive[j] = 0;
    for (KeyType type : {KeyType::kBF16, KeyType::kInt8}) {
      set_num_threads(3);
      check_exact("threads", type, x, n, d, qs, b, m, KernelType::kGaussian, alive.data(), false);
      QKeys qk = make_keys(type, x, n, d);
      KeyView v = qk.view();
      v.alive = alive.data();
      KernelParams kp;
      kp.type = KernelType::kCosine;
      for (const Path& path : paths()) {
        cpu::set_simd_override(static_cast<int>(path.level));
        cpu::set_qdot_enabled(path.qdot);
        std::vector<int64_t> rows0;
        std::vector<float> d20;
        for (int threads : {1, 2, 3, 5, 2, 3, 2}) {
          set_num_threads(threads);
          std::vector<int64_t> rows(b * m, -7);
          std::vector<float> kern(b * m), d2(b * m);
          CHECK(search_topm(rows.data(), kern.data(), d2.data(), qs.data(), b, v, m, kp).ok());
          if (rows0.empty()) {
            rows0 = rows;
            d20 = d2;
          } else if (rows != rows0 || std::memcmp(d2.data(), d20.data(), d2.size() * 4) != 0) {
            CHECK(rows == rows0);
            std::printf("  %s %s b=%lld threads=%d: another answer than with 1 thread\n", path.name,
                        type == KeyType::kBF16 ? "bf16" : "int8", (long long)b, threads);
          }
        }
      }
      cpu::set_simd_override(-1);
      cpu::set_qdot_enabled(true);
    }
  }
  set_num_threads(0);
}

}  // namespace

MEMQ_TEST_MAIN()
