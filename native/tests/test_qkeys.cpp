// Compressed keys (bf16, int8; kernels.h, docs/math.md §2b) against plain double-precision
// references written here, computed on the dequantised keys (the float32 values the quantiser
// defines), under every SIMD level this CPU has, several thread counts, random inputs and
// NaN-poisoned outputs. Tolerances:
//   quantisers: bf16 = the nearest bf16 (ties to even) found by search in double, bit for bit;
//               int8 |deq - x| <= s/2 (1 + 1e-6), |q| <= 127, max |q| = 127 on a nonzero row.
//   dequantise tile (each level) == the scalar dequantise, bit for bit.
//   one-query dots: |dot - ref| <= 1e-5 * sum_p |q_p k_p| + 1e-30; lanes 1..pw-1 exactly 0.
//   search: dist2 vs the direct double sum on the dequantised keys: |err| <= 1e-5 (||q||^2 + ||k||^2)
//   + 1e-6 (cosine: 2e-5); ids equal slot by slot except where the reference scores are within
//   that tolerance; no duplicate.
//   re-rank with oversample >= n: ids, dist2 and kernel values equal the float32 search's exactly.
#include <algorithm>
#include <cstring>
#include <limits>
#include <set>
#include <vector>

#include "../core/cpu/internal.h"
#include "memq/cpu_features.h"
#include "memq/kernels.h"
#include "memq/thread_pool.h"
#include "testing.h"

using namespace memq;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<SimdLevel> levels() {
  cpu::set_simd_override(-1);
  std::vector<SimdLevel> out;
  for (int l = 0; l <= static_cast<int>(simd_level()); ++l) out.push_back(static_cast<SimdLevel>(l));
  return out;
}
void use_level(SimdLevel l) {
  cpu::set_simd_override(static_cast<int>(l));
  if (simd_level() != l) memq_test::fail(__FILE__, __LINE__, "could not force the SIMD level");
}

std::vector<float> randn(std::mt19937& g, int64_t n, float scale = 1.0f) {
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(g);
  return v;
}

// Compressed copy of float32 keys, with its dequantised float32 values.
struct QKeys {
  KeyType type;
  int64_t n, d;
  std::vector<uint16_t> bf;
  std::vector<int8_t> i8;
  std::vector<float> scales, deq;
  KeyView view() const {
    KeyView v;
    v.n = n;
    v.d = d;
    v.type = type;
    v.keys_bf16 = bf.empty() ? nullptr : bf.data();
    v.keys_i8 = i8.empty() ? nullptr : i8.data();
    v.scales = scales.empty() ? nullptr : scales.data();
    return v;
  }
};
QKeys make(KeyType type, const std::vector<float>& x, int64_t n, int64_t d) {
  QKeys q{type, n, d, {}, {}, {}, {}};
  if (type == KeyType::kBF16) {
    q.bf.assign(n * d, 0xFFFF);
    CHECK(quantize_bf16(q.bf.data(), x.data(), n, d).ok());
  } else {
    q.i8.assign(n * d, 0);
    q.scales.assign(n, kNaN);
    CHECK(quantize_int8(q.i8.data(), q.scales.data(), x.data(), n, d).ok());
  }
  q.deq.assign(n * d, kNaN);
  if (n) dequantize_rows(q.deq.data(), q.view(), 0, n);
  return q;
}

// The bf16 nearest to x (ties to even) by search over the two truncation neighbours, in double.
uint16_t ref_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  uint16_t lo = uint16_t(u >> 16), hi = uint16_t(lo + 1);
  double dl = std::fabs((double)cpu::bf16_to_f32(lo) - x), dh = std::fabs((double)cpu::bf16_to_f32(hi) - x);
  if (dl < dh) return lo;
  if (dh < dl) return hi;
  return (lo & 1) ? hi : lo;
}

MEMQ_TEST(quantisers_match_references) {
  std::mt19937 g(17);
  for (int64_t d : {1, 3, 16, 31, 64, 385}) {
    const int64_t n = 37;
    auto x = randn(g, n * d, 3.0f);
    for (int64_t p = 0; p < d; ++p) x[5 * d + p] = 0.0f;  // a zero row
    x[7 * d] = 1e-30f;                                   // tiny value
    QKeys b = make(KeyType::kBF16, x, n, d);
    for (int64_t i = 0; i < n * d; ++i)
      if (b.bf[i] != ref_bf16(x[i])) { CHECK(b.bf[i] == ref_bf16(x[i])); break; }
    QKeys q = make(KeyType::kInt8, x, n, d);
    CHECK(q.scales[5] == 0.0f);
    for (int64_t i = 0; i < n; ++i) {
      int mx = 0;
      for (int64_t p = 0; p < d; ++p) {
        int v = q.i8[i * d + p];
        CHECK(v >= -127 && v <= 127);
        mx = std::max(mx, std::abs(v));
        double err = std::fabs((double)q.deq[i * d + p] - (double)x[i * d + p]);
        if (!(err <= q.scales[i] * 0.5 * (1 + 1e-6) + 1e-45)) { CHECK_NEAR(q.deq[i * d + p], x[i * d + p], 0, q.scales[i] * 0.5); break; }
      }
      if (i != 5) CHECK(mx == 127);
    }
  }
}

MEMQ_TEST(quantisers_refuse_bad_rows_and_write_nothing) {
  const int64_t n = 4, d = 5;
  std::vector<float> x(n * d, 1.0f);
  x[2 * d + 3] = kNaN;
  std::vector<uint16_t> bf(n * d, 0xABCD);
  Status s = quantize_bf16(bf.data(), x.data(), n, d);
  CHECK(!s.ok() && s.message().find("row 2") != std::string::npos);
  CHECK(std::all_of(bf.begin(), bf.end(), [](uint16_t v) { return v == 0xABCD; }));
  x[2 * d + 3] = 1.0f;
  x[1 * d] = 3e19f;  // squared norm 9e38 > 2^125
  std::vector<int8_t> i8(n * d, 99);
  std::vector<float> sc(n, -5.0f);
  s = quantize_int8(i8.data(), sc.data(), x.data(), n, d);
  CHECK(!s.ok() && s.message().find("row 1") != std::string::npos);
  CHECK(std::all_of(i8.begin(), i8.end(), [](int8_t v) { return v == 99; }));
  CHECK(std::all_of(sc.begin(), sc.end(), [](float v) { return v == -5.0f; }));
  // A negative or NaN scale in a view is refused by the search.
  x[1 * d] = 1.0f;
  s = quantize_int8(i8.data(), sc.data(), x.data(), n, d);
  CHECK(s.ok());
  sc[3] = kNaN;
  KeyView v;
  v.type = KeyType::kInt8;
  v.keys_i8 = i8.data();
  v.scales = sc.data();
  v.n = n;
  v.d = d;
  std::vector<float> q(d, 1.0f);
  std::vector<int64_t> rows(2, 77);
  KernelParams kp;
  s = search_topm(rows.data(), nullptr, nullptr, q.data(), 1, v, 2, kp);
  CHECK(!s.ok() && s.message().find("scales") != std::string::npos && rows[0] == 77);
}

MEMQ_TEST(dequantise_and_one_query_dots_every_level) {
  std::mt19937 g(3);
  for (KeyType type : {KeyType::kBF16, KeyType::kInt8})
    for (int64_t d : {1, 7, 15, 16, 17, 33, 100, 384})
      for (int64_t t : {1, 3, 4, 5, 13}) {
        const int64_t j0 = 2, n = j0 + t;
        auto x = randn(g, n * d);
        QKeys qk = make(type, x, n, d);
        auto q = randn(g, d);
        const void* kp = type == KeyType::kBF16 ? (const void*)qk.bf.data() : (const void*)qk.i8.data();
        for (SimdLevel lv : levels()) {
          std::vector<float> tile(t * d, kNaN);
          cpu::dequant_tile(lv, tile.data(), (int)type, kp, qk.scales.data(), j0, t, d);
          CHECK(std::memcmp(tile.data(), qk.deq.data() + j0 * d, t * d * 4) == 0);
          for (int64_t pw : {8, 16, 32}) {
            if (lv == SimdLevel::kAVX512 && pw < 16) continue;  // the AVX-512 gemv writes whole zmm rows
            std::vector<float> ct(t * pw, kNaN);
            cpu::qgemv(lv, ct.data(), pw, (int)type, q.data(), kp, qk.scales.data(), j0, t, d);
            for (int64_t j = 0; j < t; ++j) {
              double ref = 0, mag = 0;
              for (int64_t p = 0; p < d; ++p) {
                double v = (double)q[p] * qk.deq[(j0 + j) * d + p];
                ref += v;
                mag += std::fabs(v);
              }
              CHECK_NEAR(ct[j * pw], ref, 0, 1e-5 * mag + 1e-30);
              for (int64_t w = 1; w < pw; ++w) CHECK(ct[j * pw + w] == 0.0f);
            }
          }
        }
      }
  cpu::set_simd_override(-1);
}

struct Ref {
  double score, d2;
  int64_t row;
};

void check_search_case(std::mt19937& g, KeyType type, int64_t n, int64_t d, int64_t b, int64_t m, KernelType kt,
                       bool with_norms, bool with_alive, int threads) {
  auto x = randn(g, n * d);
  auto qs = randn(g, b * d);
  if (b > 1) std::copy(x.begin(), x.begin() + d, qs.begin() + d);  // a near-duplicate query
  QKeys qk = make(type, x, n, d);
  std::vector<uint8_t> alive(n, 1);
  if (with_alive)
    for (int64_t j = 0; j < n; j += 3) alive[j] = 0;
  std::vector<float> norms(n);
  for (int64_t j = 0; j < n; ++j) {
    double s = 0;
    for (int64_t p = 0; p < d; ++p) s += (double)qk.deq[j * d + p] * qk.deq[j * d + p];
    norms[j] = (float)s;
  }
  KeyView v = qk.view();
  if (with_alive) v.alive = alive.data();
  if (with_norms) v.norms2 = norms.data();
  KernelParams kp;
  kp.type = kt;
  const bool cosine = kt == KernelType::kCosine;
  set_num_threads(threads);
  for (SimdLevel lv : levels()) {
    use_level(lv);
    std::vector<int64_t> rows(b * m, -7);
    std::vector<float> kern(b * m, kNaN), d2(b * m, kNaN);
    Status s = search_topm(rows.data(), kern.data(), d2.data(), qs.data(), b, v, m, kp);
    CHECK(s.ok());
    if (!s.ok()) { std::printf("  %s\n", s.message().c_str()); return; }
    for (int64_t i = 0; i < b; ++i) {
      std::vector<Ref> ref;
      double qq = 0;
      for (int64_t p = 0; p < d; ++p) qq += (double)qs[i * d + p] * qs[i * d + p];
      for (int64_t j = 0; j < n; ++j) {
        if (!alive[j] && with_alive) continue;
        double s2 = 0, dot = 0, kk = 0;
        for (int64_t p = 0; p < d; ++p) {
          double a = qs[i * d + p], c = qk.deq[j * d + p];
          s2 += (a - c) * (a - c);
          dot += a * c;
          kk += c * c;
        }
        double cs = (qq > 0 && kk > 0) ? dot / std::sqrt(qq * kk) : 0.0;
        ref.push_back({cosine ? -cs : s2, s2, j});
      }
      std::sort(ref.begin(), ref.end(), [](const Ref& a, const Ref& c) {
        return a.score < c.score || (a.score == c.score && a.row < c.row);
      });
      std::set<int64_t> seen;
      for (int64_t sl = 0; sl < m; ++sl) {
        const int64_t o = i * m + sl, r = rows[o];
        if (sl >= (int64_t)ref.size()) {
          CHECK(r == -1 && kern[o] == 0.0f && std::isinf(d2[o]));
          continue;
        }
        CHECK(r >= 0 && r < n && seen.insert(r).second);
        if (r < 0 || r >= n) continue;
        const Ref& e = ref[sl];
        double kn = norms[e.row];
        double tol = cosine ? 2e-5 : 1e-5 * (qq + kn) + 1e-6;
        // A different row only for a near tie: its reference score within tol of the slot's.
        const Ref* got = nullptr;
        for (const Ref& z : ref) if (z.row == r) got = &z;
        CHECK(got != nullptr);
        if (!got) continue;
        if (r != e.row) CHECK_NEAR(got->score, e.score, 0, tol);
        CHECK_NEAR(d2[o], got->d2, 0, 1e-5 * (qq + norms[r]) + 1e-6);
        CHECK(kern[o] == kern[o]);
      }
    }
  }
  cpu::set_simd_override(-1);
  set_num_threads(0);
}

MEMQ_TEST(search_on_compressed_keys_every_level) {
  std::mt19937 g(11);
  for (KeyType type : {KeyType::kBF16, KeyType::kInt8})
    for (KernelType kt : {KernelType::kGaussian, KernelType::kCosine})
      for (int64_t b : {1, 5, 40})
        for (int threads : {1, 2}) {
          check_search_case(g, type, 700, 33, b, 8, kt, false, false, threads);
          check_search_case(g, type, 2500, 64, b, 16, kt, true, true, threads);
          check_search_case(g, type, 5, 7, b, 8, kt, b == 1, false, threads);  // fewer rows than m
        }
}

MEMQ_TEST(rerank_with_full_oversample_equals_float32_search) {
  std::mt19937 g(5);
  for (KeyType type : {KeyType::kBF16, KeyType::kInt8})
    for (KernelType kt : {KernelType::kGaussian, KernelType::kInverse, KernelType::kCosine})
      for (int64_t b : {1, 9}) {
        const int64_t n = 600, d = 24, m = 10;
        auto x = randn(g, n * d);
        auto qs = randn(g, b * d);
        QKeys qk = make(type, x, n, d);
        KeyView f;
        f.keys = x.data();
        f.n = n;
        f.d = d;
        KeyView v = qk.view();
        v.exact = x.data();
        v.oversample = n;
        KernelParams kp;
        kp.type = kt;
        for (SimdLevel lv : levels()) {
          use_level(lv);
          std::vector<int64_t> r1(b * m, -7), r2(b * m, -9);
          std::vector<float> k1(b * m, kNaN), k2(b * m, kNaN), e1(b * m, kNaN), e2(b * m, kNaN);
          CHECK(search_topm(r1.data(), k1.data(), e1.data(), qs.data(), b, f, m, kp).ok());
          CHECK(search_topm(r2.data(), k2.data(), e2.data(), qs.data(), b, v, m, kp).ok());
          CHECK(r1 == r2);
          CHECK(std::memcmp(k1.data(), k2.data(), 4 * b * m) == 0);
          CHECK(std::memcmp(e1.data(), e2.data(), 4 * b * m) == 0);
        }
      }
  cpu::set_simd_override(-1);
}

}  // namespace

MEMQ_TEST_MAIN()
