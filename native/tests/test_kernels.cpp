// The CPU retrieval kernels (kernels.h) against plain double-precision references written
// here: a full distance matrix in double and a stable sort by (score, row).
//
// Every kernel runs under every SIMD level this CPU has (scalar / avx2 / avx512) and several
// thread counts, on fresh random inputs, with outputs poisoned (NaN, 0x7f bytes) before each
// call. Tolerances:
//   dist2 (GEMM expansion, float32) vs the direct double sum:   |err| <= 1e-5 (||q||^2 + ||k||^2) + 1e-6
//   cosine vs double:                                             |err| <= 2e-5
//   kernel values vs the double formula on the returned dist2:    rel 1e-5
//   top-M ids: equal to the reference slot by slot, except where the two rows' reference
//   scores are within the tolerance above; never a duplicate; always the right count.
//   Inputs of small integers make every float operation exact: there the ids must be equal.
#include <algorithm>
#include <atomic>
#include <thread>
#include <cstring>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "../core/cpu/internal.h"
#include "memq/cpu_features.h"
#include "memq/kernels.h"
#include "memq/key_store.h"
#include "memq/thread_pool.h"
#include "testing.h"

using namespace memq;

namespace {

const double kInfD = std::numeric_limits<double>::infinity();
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

struct Data {
  int64_t n = 0, d = 0, b = 0;
  std::vector<float> keys, queries;
  std::vector<uint8_t> alive;  // empty = all alive
  std::vector<std::vector<int64_t>> groups;  // rows with identical key bytes, ascending
  std::vector<int64_t> group;                // row -> index into groups
  bool is_alive(int64_t j) const { return alive.empty() || alive[j]; }
  KeyView view(const float* norms2 = nullptr) const {
    KeyView v;
    v.keys = keys.empty() ? nullptr : keys.data();
    v.norms2 = norms2;
    v.alive = alive.empty() ? nullptr : alive.data();
    v.n = n;
    v.d = d;
    return v;
  }
};

// Gaussian data (or small integers, where float arithmetic is exact), with duplicate keys,
// a zero key, queries that copy keys (dist2 = 0), a zero query, and tombstones.
Data make_data(int64_t n, int64_t d, int64_t b, uint32_t seed, double dead, double dup, bool integer) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::uniform_int_distribution<int> ints(-2, 2);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  auto draw = [&]() { return integer ? (float)ints(rng) : g(rng); };
  Data x;
  x.n = n, x.d = d, x.b = b;
  x.keys.resize(n * d);
  for (auto& v : x.keys) v = draw();
  for (int64_t j = 1; j < n; ++j)
    if (u(rng) < dup) {
      int64_t src = std::uniform_int_distribution<int64_t>(0, j - 1)(rng);
      std::copy_n(&x.keys[src * d], d, &x.keys[j * d]);
    }
  if (n > 3) std::fill_n(&x.keys[3 * d], d, 0.0f);
  x.queries.resize(b * d);
  for (auto& v : x.queries) v = draw();
  for (int64_t i = 0; i < b; ++i)
    if (n > 0 && i % 3 == 1) std::copy_n(&x.keys[((i * 7919) % n) * d], d, &x.queries[i * d]);
  if (b > 2) std::fill_n(&x.queries[2 * d], d, 0.0f);
  if (dead > 0) {
    x.alive.resize(n);
    for (auto& a : x.alive) a = u(rng) < dead ? 0 : 1;
  }
  std::map<std::string, int64_t> ids;
  x.group.resize(n);
  for (int64_t j = 0; j < n; ++j) {
    std::string bytes(reinterpret_cast<const char*>(&x.keys[j * d]), d * sizeof(float));
    auto it = ids.emplace(bytes, (int64_t)x.groups.size()).first;
    if (it->second == (int64_t)x.groups.size()) x.groups.emplace_back();
    x.groups[it->second].push_back(j);
    x.group[j] = it->second;
  }
  return x;
}

double ref_dist2(const float* q, const float* k, int64_t d) {
  double s = 0;
  for (int64_t p = 0; p < d; ++p) s += ((double)q[p] - k[p]) * ((double)q[p] - k[p]);
  return s;
}
double ref_norm2(const float* x, int64_t d) {
  double s = 0;
  for (int64_t p = 0; p < d; ++p) s += (double)x[p] * x[p];
  return s;
}
double ref_cos(const float* q, const float* k, int64_t d) {
  double dot = 0;
  for (int64_t p = 0; p < d; ++p) dot += (double)q[p] * k[p];
  double nq = std::sqrt(ref_norm2(q, d)), nk = std::sqrt(ref_norm2(k, d));
  return (nq == 0 || nk == 0) ? 0.0 : dot / (nq * nk);
}
// Smaller is better: dist2, or -cos for the cosine kernel.
double ref_score(const Data& x, KernelType t, int64_t i, int64_t j) {
  const float* q = &x.queries[i * x.d];
  const float* k = &x.keys[j * x.d];
  return t == KernelType::kCosine ? -ref_cos(q, k, x.d) : ref_dist2(q, k, x.d);
}
double ref_kernel(const KernelParams& p, double dist2, double cosv) {
  switch (p.type) {
    case KernelType::kGaussian: return std::exp(-dist2 / (2.0 * (double)p.bandwidth * p.bandwidth));
    case KernelType::kCosine: return std::exp((double)p.kappa * cosv);
    default: return 1.0 / (dist2 + (double)p.delta);
  }
}
double score_tol(const Data& x, KernelType t, int64_t i, int64_t j) {
  if (t == KernelType::kCosine) return 2e-5;
  return 1e-5 * (ref_norm2(&x.queries[i * x.d], x.d) + ref_norm2(&x.keys[j * x.d], x.d)) + 1e-6;
}

// Per query: every alive row, stable-sorted by reference score.
std::vector<std::vector<std::pair<double, int64_t>>> ref_ranking(const Data& x, KernelType t) {
  std::vector<std::vector<std::pair<double, int64_t>>> out(x.b);
  for (int64_t i = 0; i < x.b; ++i) {
    for (int64_t j = 0; j < x.n; ++j)
      if (x.is_alive(j)) out[i].push_back({ref_score(x, t, i, j), j});
    std::stable_sort(out[i].begin(), out[i].end(),
                     [](const auto& a, const auto& c) { return a.first < c.first; });
  }
  return out;
}

struct SearchOut {
  std::vector<int64_t> rows;
  std::vector<float> kernel, dist2;
  Status st;
};
SearchOut run_search(const Data& x, const KernelParams& p, int64_t m, const float* norms2 = nullptr) {
  SearchOut o;
  o.rows.resize(x.b * m);
  std::memset(o.rows.data(), 0x7f, o.rows.size() * sizeof(int64_t));
  o.kernel.assign(x.b * m, kNaN);
  o.dist2.assign(x.b * m, kNaN);
  o.st = search_topm(o.rows.data(), o.kernel.data(), o.dist2.data(), x.queries.data(), x.b,
                     x.view(norms2), m, p);
  return o;
}

// The checks of the header comment for one search result.
void check_search(const Data& x, const KernelParams& p, int64_t m, const SearchOut& o,
                  const std::vector<std::vector<std::pair<double, int64_t>>>& ref, bool exact) {
  CHECK(o.st.ok());
  if (!o.st.ok()) return;
  for (int64_t i = 0; i < x.b; ++i) {
    const auto& r = ref[i];
    const int64_t expect = std::min<int64_t>(m, (int64_t)r.size());
    std::set<int64_t> seen;
    const double qn = ref_norm2(&x.queries[i * x.d], x.d);
    for (int64_t s = 0; s < m; ++s) {
      const int64_t row = o.rows[i * m + s];
      const float kv = o.kernel[i * m + s], d2 = o.dist2[i * m + s];
      if (s >= expect) {
        CHECK(row == -1);
        CHECK(kv == 0.0f);
        CHECK(std::isinf(d2) && d2 > 0);
        continue;
      }
      CHECK(row >= 0 && row < x.n);
      if (!(row >= 0 && row < x.n)) continue;
      CHECK(x.is_alive(row));
      CHECK(seen.insert(row).second);  // never a duplicate
      const int64_t rrow = r[s].second;
      if (exact) {
        CHECK(row == rrow);
      } else if (row != rrow) {
        double tol = std::max(score_tol(x, p.type, i, row), score_tol(x, p.type, i, rrow));
        CHECK_NEAR(ref_score(x, p.type, i, row), r[s].first, 0.0, tol);
      }
      // dist2 and kernel values of the returned row.
      const double rd2 = ref_dist2(&x.queries[i * x.d], &x.keys[row * x.d], x.d);
      const double kn = ref_norm2(&x.keys[row * x.d], x.d);
      CHECK_NEAR(d2, rd2, 0.0, exact ? 0.0 : 1e-5 * (qn + kn) + 1e-6);
      if (p.type == KernelType::kCosine) {
        const double c = ref_cos(&x.queries[i * x.d], &x.keys[row * x.d], x.d);
        CHECK_NEAR(kv, ref_kernel(p, 0, c), 1e-5 + 2e-5 * p.kappa, 0.0);
      } else {
        CHECK_NEAR(kv, ref_kernel(p, d2, 0), 1e-5, 0.0);
      }
    }
    // Ties go to the lower row: duplicates of a returned key appear in row order, and a
    // lower alive duplicate of a returned row is returned too.
    std::map<int64_t, int64_t> last_in_group;
    for (int64_t s = 0; s < expect; ++s) {
      const int64_t row = o.rows[i * m + s];
      if (row < 0 || row >= x.n) continue;
      const int64_t g = x.group[row];
      auto it = last_in_group.find(g);
      if (it != last_in_group.end()) CHECK(it->second < row);
      last_in_group[g] = row;
      for (int64_t lower : x.groups[g]) {
        if (lower >= row) break;
        if (x.is_alive(lower)) CHECK(seen.count(lower) == 1);
      }
    }
  }
}

bool same_bits(const SearchOut& a, const SearchOut& c) {
  return a.rows == c.rows &&
         std::memcmp(a.kernel.data(), c.kernel.data(), a.kernel.size() * sizeof(float)) == 0 &&
         std::memcmp(a.dist2.data(), c.dist2.data(), a.dist2.size() * sizeof(float)) == 0;
}

KernelParams kernel_of(KernelType t) {
  KernelParams p;
  p.type = t;
  p.bandwidth = 3.0f;
  p.kappa = 4.0f;
  p.delta = 1e-3f;
  return p;
}

struct Shape {
  int64_t n, d, b, m;
  double dead, dup;
};

// The main sweep: every shape x kernel x level x thread count, against the reference, and
// bit-identical across thread counts and with cached norms.
void sweep(const std::vector<Shape>& shapes, bool integer, uint32_t seed) {
  const KernelType types[] = {KernelType::kGaussian, KernelType::kCosine, KernelType::kInverse};
  for (const Shape& sh : shapes) {
    Data x = make_data(sh.n, sh.d, sh.b, seed++, sh.dead, sh.dup, integer);
    for (KernelType t : types) {
      const KernelParams p = kernel_of(t);
      const auto ref = ref_ranking(x, t);
      // Exact arithmetic: integers, and not cosine (sqrt and division round).
      const bool exact = integer && t != KernelType::kCosine;
      for (SimdLevel lv : levels()) {
        use_level(lv);
        std::vector<float> norms(x.n);
        row_norms2(norms.data(), x.keys.data(), x.n, x.d);
        SearchOut first;
        for (int threads : {1, 2, 3}) {
          set_num_threads(threads);
          SearchOut o = run_search(x, p, sh.m);
          check_search(x, p, sh.m, o, ref, exact);
          if (threads == 1) first = o;
          else CHECK(same_bits(first, o));  // deterministic whatever the thread count
          if (threads == 2) CHECK(same_bits(first, run_search(x, p, sh.m, norms.data())));
        }
        // A query's answer does not depend on the rest of its batch (for
        // batches of 2 or more; b = 1 takes the GEMV path, another summation order).
        if (x.b > 2) {
          Data two = x;
          two.b = 2;
          two.queries.assign(x.queries.begin() + (x.b - 2) * x.d, x.queries.end());
          SearchOut o2 = run_search(two, p, sh.m);
          CHECK(std::equal(o2.rows.begin(), o2.rows.end(), first.rows.begin() + (x.b - 2) * sh.m));
          CHECK(std::memcmp(o2.dist2.data(), first.dist2.data() + (x.b - 2) * sh.m, 2 * sh.m * 4) == 0);
        }
      }
    }
  }
  cpu::set_simd_override(-1);
  set_num_threads(0);
}

}  // namespace

MEMQ_TEST(simd_levels_and_blas_name) {
  auto lv = levels();
  CHECK(!lv.empty() && lv[0] == SimdLevel::kScalar);
  for (SimdLevel l : lv) {
    use_level(l);
    CHECK(std::string(simd_name(l)).size() > 0);
  }
  cpu::set_simd_override(-1);
  std::printf("  simd levels available: %zu (best %s), blas: %s\n", lv.size(), simd_name(simd_level()),
              blas_name().c_str());
#ifdef MEMQ_HAVE_CBLAS
  CHECK(blas_name().rfind("openblas", 0) == 0);
#else
  CHECK(blas_name() == "builtin");
#endif
}

MEMQ_TEST(kernel_values_and_validation) {
  KernelParams g = kernel_of(KernelType::kGaussian), c = kernel_of(KernelType::kCosine),
               v = kernel_of(KernelType::kInverse);
  CHECK(validate_kernel(g).ok() && validate_kernel(c).ok() && validate_kernel(v).ok());
  CHECK_NEAR(kernel_value(g, 2.5f, 0), std::exp(-2.5 / 18.0), 1e-6, 0);
  CHECK_NEAR(kernel_value(c, 0, 0.25f), std::exp(1.0), 1e-6, 0);
  CHECK_NEAR(kernel_value(v, 0.5f, 0), 1.0 / 0.501, 1e-6, 0);
  CHECK(kernel_value(g, std::numeric_limits<float>::infinity(), 0) == 0.0f);
  for (float bad : {0.0f, -1.0f, kNaN, std::numeric_limits<float>::infinity()}) {
    KernelParams p = g;
    p.bandwidth = bad;
    Status s = validate_kernel(p);
    CHECK(s.code() == StatusCode::kOutOfRange && s.message().find("bandwidth") != std::string::npos);
    p = c;
    p.kappa = bad;
    CHECK(validate_kernel(p).code() == StatusCode::kOutOfRange);
    p = v;
    p.delta = bad;
    CHECK(validate_kernel(p).code() == StatusCode::kOutOfRange);
  }
  // Bounds for which the kernel values stay finite in float32 (limits.h): kappa <= 88, delta >= 1e-30.
  {
    KernelParams q = c;
    q.kappa = 88.0f;
    CHECK(validate_kernel(q).ok());
    CHECK(std::isfinite(kernel_value(q, 0, 1.0f)) && kernel_value(q, 0, 1.0f) > 1e38f);
    q.kappa = 88.01f;
    Status s = validate_kernel(q);
    CHECK(s.code() == StatusCode::kOutOfRange && s.message().find("(0, 88]") != std::string::npos);
    q = v;
    q.delta = 1e-30f;
    CHECK(validate_kernel(q).ok());
    CHECK(std::isfinite(kernel_value(q, 0, 0)) && kernel_value(q, 0, 0) > 9.9e29f);
    q.delta = 1e-31f;
    s = validate_kernel(q);
    CHECK(s.code() == StatusCode::kOutOfRange && s.message().find(">= 1e-30") != std::string::npos);
  }
  KernelParams p = g;
  p.bandwidth = 0;
  p.type = KernelType::kCosine;  // only the parameter of the chosen kernel is checked
  CHECK(validate_kernel(p).ok());
  p.type = static_cast<KernelType>(7);
  CHECK(validate_kernel(p).code() == StatusCode::kInvalidArgument);
}

MEMQ_TEST(gemm_and_row_norms_vs_double) {
  std::mt19937 rng(7);
  std::normal_distribution<float> g;
  for (SimdLevel lv : levels()) {
    use_level(lv);
    for (auto [b, n, d] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {3, 50, 17}, {17, 33, 300},
                           {40, 1100, 64}, {300, 70, 9}}) {
      std::vector<float> a(b * d), k(n * d), c((b) * (n + 3), kNaN), nr(n, kNaN);
      for (auto& v : a) v = g(rng);
      for (auto& v : k) v = g(rng);
      gemm_abt(c.data(), n + 3, a.data(), b, k.data(), n, d);
      row_norms2(nr.data(), k.data(), n, d);
      for (int64_t i = 0; i < b; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double ref = 0, mag = 0;
          for (int64_t p = 0; p < d; ++p) ref += (double)a[i * d + p] * k[j * d + p], mag += std::fabs((double)a[i * d + p] * k[j * d + p]);
          CHECK_NEAR(c[i * (n + 3) + j], ref, 0, 1e-6 * mag + 1e-6);
        }
      for (int64_t i = 0; i < b; ++i)
        for (int64_t j = n; j < n + 3; ++j) CHECK(std::isnan(c[i * (n + 3) + j]));  // ldc respected
      for (int64_t j = 0; j < n; ++j) CHECK_NEAR(nr[j], ref_norm2(&k[j * d], d), 1e-6, 0);
    }
  }
  cpu::set_simd_override(-1);
}

MEMQ_TEST(search_topm_random_shapes) {
  sweep({{0, 16, 3, 5, 0, 0},          // N = 0: all padding
         {7, 5, 2, 10, 0.3, 0.3},      // N < m, tombstones
         {1, 3, 1, 1, 0, 0},
         {130, 17, 1, 1, 0, 0.2},      // B = 1, m = 1, d not a multiple of 16
         {70000, 67, 1, 40, 0.1, 0.05},  // B = 1 (GEMV path) over several key ranges
         {1000, 33, 4, 16, 0.2, 0.1},
         {3000, 64, 37, 100, 0.1, 0.05},
         {2500, 20, 300, 64, 0, 0.1},  // two query blocks
         {24000, 48, 5, 50, 0.05, 0.01},  // several tiles and key ranges
         {40000, 8, 13, 4096, 0.1, 0.02}, // m = 4096, several key ranges
         {6000, 8, 2, 5000, 0, 0.02}},    // m beyond 4096
        false, 11);
}

MEMQ_TEST(search_topm_exact_ties_integer_data) {
  // Small integers: every dot product and norm is exact in float32, duplicates are
  // common, and the result must equal the reference exactly (ties to the lower row).
  sweep({{200, 5, 7, 20, 0, 0.3}, {3000, 3, 5, 300, 0.2, 0.5}, {12000, 4, 2, 40, 0.1, 0.5},
         {5000, 6, 1, 50, 0.1, 0.4}},  // B = 1: the GEMV path
        true, 99);
}

MEMQ_TEST(similarity_vs_double_and_search) {
  Data x = make_data(700, 37, 9, 5, 0.2, 0.1, false);
  for (KernelType t : {KernelType::kGaussian, KernelType::kCosine, KernelType::kInverse}) {
    KernelParams p = kernel_of(t);
    for (SimdLevel lv : levels()) {
      use_level(lv);
      for (int threads : {1, 3}) {
        set_num_threads(threads);
        std::vector<float> kv(x.b * x.n, kNaN), d2(x.b * x.n, kNaN);
        Status st = similarity(kv.data(), d2.data(), x.queries.data(), x.b, x.view(), p);
        CHECK(st.ok());
        for (int64_t i = 0; i < x.b; ++i)
          for (int64_t j = 0; j < x.n; ++j) {
            float k = kv[i * x.n + j], dd = d2[i * x.n + j];
            if (!x.is_alive(j)) {
              CHECK(k == 0.0f && std::isinf(dd));
              continue;
            }
            const float* q = &x.queries[i * x.d];
            const float* kk = &x.keys[j * x.d];
            CHECK_NEAR(dd, ref_dist2(q, kk, x.d), 0, 1e-5 * (ref_norm2(q, x.d) + ref_norm2(kk, x.d)) + 1e-6);
            if (t == KernelType::kCosine) CHECK_NEAR(k, ref_kernel(p, 0, ref_cos(q, kk, x.d)), 1e-5 + 2e-5 * p.kappa, 0);
            else CHECK_NEAR(k, ref_kernel(p, dd, 0), 1e-5, 0);
          }
        // search_topm refines its winners directly: its dist2 and kernel values are the exact
        // ones (float64 reference, rounded), tighter than similarity's GEMM expansion.
        const int64_t m = 25;
        SearchOut o = run_search(x, p, m);
        for (int64_t i = 0; i < x.b; ++i)
          for (int64_t s = 0; s < m; ++s) {
            int64_t row = o.rows[i * m + s];
            CHECK(row >= 0);
            if (row < 0) continue;
            const float* q = &x.queries[i * x.d];
            const float* kk = &x.keys[row * x.d];
            const double rd = ref_dist2(q, kk, x.d);
            CHECK_NEAR(o.dist2[i * m + s], rd, 1e-6, 1e-9);
            const double rk = t == KernelType::kCosine ? ref_kernel(p, 0, ref_cos(q, kk, x.d)) : ref_kernel(p, rd, 0);
            CHECK_NEAR(o.kernel[i * m + s], rk, 4e-6, 0);
          }
        // dist2_out may be null.
        std::vector<float> kv2(x.b * x.n, kNaN);
        CHECK(similarity(kv2.data(), nullptr, x.queries.data(), x.b, x.view(), p).ok());
        CHECK(std::memcmp(kv2.data(), kv.data(), kv.size() * 4) == 0);
      }
    }
  }
  cpu::set_simd_override(-1);
  set_num_threads(0);
}

MEMQ_TEST(concurrent_searches_agree_with_sequential) {
  // Several callers at once (async searches from JS): the pool is shared, scratch is per
  // thread, and every caller gets exactly its sequential answer.
  Data x = make_data(30000, 40, 6, 21, 0.1, 0.01, false);
  set_num_threads(3);
  const KernelType types[] = {KernelType::kGaussian, KernelType::kCosine, KernelType::kInverse};
  std::vector<SearchOut> expect;
  for (KernelType t : types) expect.push_back(run_search(x, kernel_of(t), 17 + (int)t));
  std::atomic<int> mismatches{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 6; ++c)
    callers.emplace_back([&, c] {
      for (int rep = 0; rep < 3; ++rep) {
        KernelType t = types[(c + rep) % 3];
        if (!same_bits(run_search(x, kernel_of(t), 17 + (int)t), expect[(int)t])) mismatches++;
      }
    });
  for (auto& th : callers) th.join();
  CHECK(mismatches.load() == 0);
  set_num_threads(0);
}

MEMQ_TEST(search_saturated_kernel_still_orders_by_distance) {
  // Far apart: every gaussian kernel value underflows to 0, the nearer case must still win.
  Data x = make_data(300, 8, 2, 3, 0, 0, false);
  for (auto& v : x.keys) v *= 100.0f;
  KernelParams p = kernel_of(KernelType::kGaussian);
  p.bandwidth = 0.01f;
  SearchOut o = run_search(x, p, 10);
  check_search(x, p, 10, o, ref_ranking(x, p.type), false);
  CHECK(o.kernel[0] == 0.0f);
}

MEMQ_TEST(search_invalid_arguments_write_nothing) {
  Data x = make_data(50, 6, 3, 1, 0, 0, false);
  const int64_t m = 4;
  KernelParams p = kernel_of(KernelType::kGaussian);
  auto untouched = [&](const SearchOut& o) {
    for (auto r : o.rows) if (r != 0x7f7f7f7f7f7f7f7fLL) return false;
    for (auto v : o.kernel) if (!std::isnan(v)) return false;
    for (auto v : o.dist2) if (!std::isnan(v)) return false;
    return true;
  };
  auto expect = [&](const Data& d, KernelParams kp, int64_t mm, StatusCode code, const char* word,
                    const float* norms = nullptr) {
    SearchOut o = run_search(d, kp, mm, norms);
    CHECK(o.st.code() == code);
    CHECK(o.st.message().find(word) != std::string::npos);
    if (o.st.message().find(word) == std::string::npos) std::printf("  message: %s\n", o.st.message().c_str());
    CHECK(untouched(o));
  };
  KernelParams bad = p;
  bad.bandwidth = kNaN;
  expect(x, bad, m, StatusCode::kOutOfRange, "bandwidth");
  expect(x, p, 0, StatusCode::kOutOfRange, "m");
  Data y = x;
  y.queries[7] = kNaN;
  expect(y, p, m, StatusCode::kOutOfRange, "queries");
  y = x;
  y.queries[7] = 1e30f;  // finite, but the squared norm overflows
  expect(y, p, m, StatusCode::kOutOfRange, "queries");
  y = x;
  y.keys[6 * 40 + 2] = std::numeric_limits<float>::infinity();
  expect(y, p, m, StatusCode::kOutOfRange, "keys");
  std::vector<float> norms(x.n);
  row_norms2(norms.data(), x.keys.data(), x.n, x.d);
  norms[9] = kNaN;
  expect(x, p, m, StatusCode::kOutOfRange, "keys.norms2", norms.data());
  y = x;
  y.d = 0;
  expect(y, p, m, StatusCode::kOutOfRange, "keys.d");
  // A tombstoned row may hold anything.
  y = x;
  y.alive.assign(x.n, 1);
  y.alive[40] = 0;
  y.keys[40 * 6 + 1] = kNaN;
  SearchOut o = run_search(y, p, m);
  CHECK(o.st.ok());
  check_search(y, p, m, o, ref_ranking(y, p.type), false);
  // b = 0 and null outputs of optional values.
  CHECK(search_topm(nullptr, nullptr, nullptr, nullptr, 0, x.view(), m, p).ok());
  std::vector<int64_t> rows(x.b * m);
  CHECK(search_topm(rows.data(), nullptr, nullptr, x.queries.data(), x.b, x.view(), m, p).ok());
  CHECK(search_topm(nullptr, nullptr, nullptr, x.queries.data(), x.b, x.view(), m, p).code() ==
        StatusCode::kInvalidArgument);
}

// ---- kernel_weighted_value (MATH §3) -------------------------------------------------------------

MEMQ_TEST(kernel_weighted_value_vs_double) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  const int64_t b = 40, m = 7, n_rows = 30;
  std::vector<int64_t> rows(b * m);
  std::vector<float> kernel(b * m), values(n_rows);
  for (auto& v : values) v = u(rng) * 10 - 5;
  for (int64_t e = 0; e < b * m; ++e) {
    rows[e] = u(rng) < 0.25f ? -1 : (int64_t)(u(rng) * n_rows);
    kernel[e] = u(rng) < 0.1f ? 0.0f : u(rng);
  }
  for (int64_t s = 0; s < m; ++s) rows[5 * m + s] = -1;  // query 5: no hits
  for (int64_t s = 0; s < m; ++s) kernel[6 * m + s] = 0;  // query 6: hits, all kernel 0
  for (float vw : {0.0f, 0.5f}) {
    for (int threads : {1, 3}) {
      set_num_threads(threads);
      std::vector<float> val(b, kNaN), conf(b, kNaN);
      CHECK(kernel_weighted_value(val.data(), conf.data(), rows.data(), kernel.data(), values.data(), n_rows,
                                  b, m, vw, 1.25f)
                .ok());
      for (int64_t i = 0; i < b; ++i) {
        double sk = 0, skq = 0;
        for (int64_t s = 0; s < m; ++s)
          if (rows[i * m + s] >= 0) sk += kernel[i * m + s], skq += (double)kernel[i * m + s] * values[rows[i * m + s]];
        double rv = (sk + vw) > 0 ? (skq + vw * 1.25) / (sk + vw) : 1.25;
        double rc = (sk + vw) > 0 ? sk / (sk + vw) : 0.0;
        CHECK_NEAR(val[i], rv, 1e-6, 1e-6);
        CHECK_NEAR(conf[i], rc, 1e-6, 1e-7);
      }
      CHECK(val[5] == 1.25f && conf[5] == 0.0f);
      CHECK(val[6] == 1.25f && conf[6] == 0.0f);
    }
  }
  set_num_threads(0);
  // Invalid inputs: the right code, and nothing written.
  auto expect = [&](std::vector<int64_t> r, std::vector<float> k, std::vector<float> v, float vw, float vv,
                    StatusCode code, const char* word) {
    std::vector<float> val(b, kNaN), conf(b, kNaN);
    Status st = kernel_weighted_value(val.data(), conf.data(), r.data(), k.data(), v.data(), n_rows, b, m, vw, vv);
    CHECK(st.code() == code);
    CHECK(st.message().find(word) != std::string::npos);
    for (int64_t i = 0; i < b; ++i) CHECK(std::isnan(val[i]) && std::isnan(conf[i]));
  };
  auto r2 = rows;
  r2[11] = n_rows;
  expect(r2, kernel, values, 0, 0, StatusCode::kOutOfRange, "rows");
  r2[11] = -2;
  expect(r2, kernel, values, 0, 0, StatusCode::kOutOfRange, "rows");
  auto k2 = kernel;
  k2[0] = kNaN;
  rows[0] = 1;
  expect(rows, k2, values, 0, 0, StatusCode::kOutOfRange, "kernel");
  k2[0] = -1;
  expect(rows, k2, values, 0, 0, StatusCode::kOutOfRange, "kernel");
  auto v2 = values;
  v2[1] = std::numeric_limits<float>::infinity();
  expect(rows, kernel, v2, 0, 0, StatusCode::kOutOfRange, "row_values");
  expect(rows, kernel, values, -0.5f, 0, StatusCode::kOutOfRange, "void_weight");
  expect(rows, kernel, values, kNaN, 0, StatusCode::kOutOfRange, "void_weight");
  expect(rows, kernel, values, 0, kNaN, StatusCode::kOutOfRange, "void_value");
}

// ---- kl_improve (MATH §5) ---------------------------------------------------------------------------
// Reference: long double without any max subtraction (exp(1e4) fits in its range), so it is
// obviously the formula: pi_c = mu_c e^{q_c/a} / Z, V = a log Z.

MEMQ_TEST(kl_improve_vs_long_double) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  const float ninf = -std::numeric_limits<float>::infinity();
  for (float alpha : {1.0f, 0.05f, 1e-3f, 0.0f}) {
    const int64_t rows = 60, cols = 9;
    std::vector<float> lp(rows * cols), q(rows * cols);
    std::vector<int32_t> len(rows);
    for (int64_t i = 0; i < rows; ++i) {
      len[i] = (int32_t)(u(rng) * (cols + 1));
      if (len[i] > cols) len[i] = cols;
      for (int64_t c = 0; c < cols; ++c) {
        lp[i * cols + c] = u(rng) < 0.2f ? ninf : std::log(u(rng) + 1e-3f);
        // |q / alpha| up to 1e4 for alpha = 1e-3.
        q[i * cols + c] = (u(rng) * 2 - 1) * (alpha == 1e-3f ? 10.0f : 3.0f);
      }
    }
    for (int64_t c = 0; c < cols; ++c) lp[3 * cols + c] = ninf;  // no support at all
    len[4] = 0;                                                    // an empty row
    len[7] = cols;
    q[7 * cols + 1] = q[7 * cols + 2] = 5.0f;                      // a tie for the hard limit
    lp[7 * cols + 1] = lp[7 * cols + 2] = -1.0f;
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      for (bool ragged : {false, true}) {
        std::vector<float> pi(rows * cols, kNaN), v(rows, kNaN);
        Status st = kl_improve(pi.data(), v.data(), lp.data(), q.data(), rows, cols, ragged ? len.data() : nullptr, alpha);
        CHECK(st.ok());
        for (int64_t i = 0; i < rows; ++i) {
          const int64_t L = ragged ? len[i] : cols;
          for (int64_t c = L; c < cols; ++c) CHECK(pi[i * cols + c] == 0.0f);
          std::vector<long double> w(L, 0.0L);
          long double Z = 0;
          long double qmax = -INFINITY;
          int ties = 0;
          for (int64_t c = 0; c < L; ++c) {
            if (lp[i * cols + c] == ninf) continue;
            long double qc = q[i * cols + c];
            if (alpha == 0) {
              if (qc > qmax) qmax = qc, ties = 1;
              else if (qc == qmax) ++ties;
            } else {
              w[c] = std::exp((long double)lp[i * cols + c]) * std::exp(qc / (long double)alpha);
              Z += w[c];
            }
          }
          if (alpha == 0) {
            for (int64_t c = 0; c < L; ++c) {
              bool arg = lp[i * cols + c] != ninf && (long double)q[i * cols + c] == qmax;
              CHECK_NEAR(pi[i * cols + c], arg ? 1.0 / ties : 0.0, 1e-6, 0);
            }
            if (ties == 0) CHECK(v[i] == ninf);
            else CHECK(v[i] == (float)qmax);
            continue;
          }
          if (Z == 0) {  // no support
            for (int64_t c = 0; c < L; ++c) CHECK(pi[i * cols + c] == 0.0f);
            CHECK(v[i] == ninf);
            continue;
          }
          double sum = 0;
          for (int64_t c = 0; c < L; ++c) {
            CHECK_NEAR(pi[i * cols + c], (double)(w[c] / Z), 1e-5, 1e-7);
            sum += pi[i * cols + c];
          }
          CHECK_NEAR(sum, 1.0, 1e-5, 0);
          CHECK_NEAR(v[i], (double)((long double)alpha * std::log(Z)), 2e-6, 1e-6);
        }
        if (alpha == 0) CHECK(pi[7 * cols + 1] == 0.5f && pi[7 * cols + 2] == 0.5f && v[7] == 5.0f);
      }
    }
  }
  set_num_threads(0);
}

MEMQ_TEST(kl_improve_limits_and_invalid) {
  // alpha -> infinity gives pi = mu; a large alpha gets close.
  const float lp[3] = {std::log(0.2f), std::log(0.3f), std::log(0.5f)};
  const float q[3] = {1, -2, 0.5f};
  float pi[3], v;
  CHECK(kl_improve(pi, &v, lp, q, 1, 3, nullptr, 1e6f).ok());
  CHECK_NEAR(pi[0], 0.2, 1e-5, 0);
  CHECK_NEAR(pi[2], 0.5, 1e-5, 0);
  auto expect = [&](const float* l, const float* qq, const int32_t* len, float alpha, StatusCode code, const char* word) {
    float p2[3] = {kNaN, kNaN, kNaN}, v2 = kNaN;
    Status st = kl_improve(p2, &v2, l, qq, 1, 3, len, alpha);
    CHECK(st.code() == code);
    CHECK(st.message().find(word) != std::string::npos);
    CHECK(std::isnan(p2[0]) && std::isnan(p2[1]) && std::isnan(p2[2]) && std::isnan(v2));
  };
  for (float a : {kNaN, -1.0f, std::numeric_limits<float>::infinity()})
    expect(lp, q, nullptr, a, StatusCode::kOutOfRange, "alpha");
  float l2[3] = {lp[0], kNaN, lp[2]};
  expect(l2, q, nullptr, 1, StatusCode::kOutOfRange, "log_prior");
  l2[1] = std::numeric_limits<float>::infinity();
  expect(l2, q, nullptr, 1, StatusCode::kOutOfRange, "log_prior");
  float q2[3] = {1, std::numeric_limits<float>::infinity(), 0};
  expect(lp, q2, nullptr, 1, StatusCode::kOutOfRange, "q");
  int32_t len = 4;
  expect(lp, q, &len, 1, StatusCode::kOutOfRange, "row_lengths");
  len = -1;
  expect(lp, q, &len, 1, StatusCode::kOutOfRange, "row_lengths");
  // Entries past a row's length are not read, even when invalid.
  len = 1;
  CHECK(kl_improve(pi, &v, lp, q2, 1, 3, &len, 1).ok());
  CHECK(pi[0] == 1.0f && pi[1] == 0.0f && pi[2] == 0.0f);
  CHECK_NEAR(v, std::log(0.2) + 1.0, 1e-6, 0);
  // Sizes over limits.h are refused before anything is read (no buffers behind these).
  Status big = kl_improve(pi, &v, lp, q, int64_t{1} << 40, 0, nullptr, 1);
  CHECK(big.code() == StatusCode::kOutOfRange && big.message().find("2^28") != std::string::npos);
  big = kl_improve(pi, &v, lp, q, int64_t{1} << 20, int64_t{1} << 20, nullptr, 1);
  CHECK(big.code() == StatusCode::kOutOfRange && big.message().find("rows*cols") != std::string::npos);
}

// ---- prior_improve: log mu = s/tau - logsumexp(s/tau) per group, then kl_improve --------------------
// Reference: long double, the formula written out (no max subtraction; |s/tau| stays small here).

MEMQ_TEST(prior_improve_vs_long_double) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (float tau : {1.0f, 0.7f, 2.5f}) {
    for (float alpha : {1.0f, 0.1f}) {
      // groups of 0..7 candidates, one empty group in the middle
      std::vector<int64_t> off{0};
      for (int g = 0; g < 40; ++g) off.push_back(off.back() + (g == 17 ? 0 : 1 + (int64_t)(u(rng) * 7)));
      const int64_t groups = (int64_t)off.size() - 1, n = off.back();
      std::vector<float> s(n), q(n);
      for (int64_t i = 0; i < n; ++i) s[i] = -20.0f * u(rng), q[i] = 4.0f * u(rng) - 2.0f;
      for (bool with_q : {false, true}) {
        std::vector<float> lp = s, pi(n, kNaN), v(groups, kNaN);
        Status st = prior_improve(lp.data(), with_q ? pi.data() : nullptr, with_q ? v.data() : nullptr,
                                  with_q ? q.data() : nullptr, off.data(), groups, tau, alpha);
        CHECK(st.ok());
        for (int64_t g = 0; g < groups; ++g) {
          const int64_t o = off[g], L = off[g + 1] - o;
          long double z = 0, zq = 0;
          for (int64_t c = 0; c < L; ++c) z += std::exp((long double)s[o + c] / tau);
          for (int64_t c = 0; c < L; ++c) {
            const long double lmu = (long double)s[o + c] / tau - std::log(z);
            CHECK_NEAR(lp[o + c], (double)lmu, 2e-6, 1e-6);
            zq += std::exp(lmu + (long double)q[o + c] / alpha);
          }
          if (!with_q) continue;
          if (L == 0) {
            CHECK(v[g] == -std::numeric_limits<float>::infinity());
            continue;
          }
          for (int64_t c = 0; c < L; ++c) {
            const long double lmu = (long double)s[o + c] / tau - std::log(z);
            CHECK_NEAR(pi[o + c], (double)(std::exp(lmu + (long double)q[o + c] / alpha) / zq), 1e-5, 1e-7);
          }
          CHECK_NEAR(v[g], (double)((long double)alpha * std::log(zq)), 2e-6, 1e-6);
        }
        if (!with_q) CHECK(std::isnan(pi[0]) && std::isnan(v[0]));  // not touched without q
      }
    }
  }
}

MEMQ_TEST(prior_improve_invalid) {
  const int64_t off[3] = {0, 2, 3};
  const float s[3] = {-1, -2, -3}, q[3] = {0, 1, 2};
  auto expect = [&](const int64_t* o, int64_t groups, float tau, float alpha, const float* scores, const char* word) {
    float lp[3] = {scores[0], scores[1], scores[2]}, pi[3] = {kNaN, kNaN, kNaN}, v[2] = {kNaN, kNaN};
    Status st = prior_improve(lp, pi, v, q, o, groups, tau, alpha);
    CHECK(!st.ok());
    CHECK(st.message().find(word) != std::string::npos);
    CHECK(std::isnan(pi[0]) && std::isnan(v[0]));
  };
  for (float tau : {0.0f, -1.0f, kNaN, std::numeric_limits<float>::infinity()}) expect(off, 2, tau, 1, s, "temperature");
  for (float alpha : {-1.0f, kNaN}) expect(off, 2, 1, alpha, s, "alpha");
  const int64_t bad0[3] = {1, 2, 3}, dec[3] = {0, 2, 1};
  expect(bad0, 2, 1, 1, s, "group_offsets[0]");
  expect(dec, 2, 1, 1, s, "non-decreasing");
  const float nan_s[3] = {-1, kNaN, -3};
  expect(off, 2, 1, 1, nan_s, "scores[1]");
  float lp[3] = {-1, -2, -3}, v[2];
  CHECK(prior_improve(lp, nullptr, v, q, off, 2, 1, 1).code() == StatusCode::kInvalidArgument);
}

// A key whose squared norm overflows float32 would make every later search fail on its cached
// norm, and one near FLT_MAX would give infinite distances: the store refuses squared norms over
// 2^125 (naming the row), unchanged, and keeps searching.
MEMQ_TEST(key_store_refuses_norm_overflow) {
  KeyStoreOptions o;
  o.dim = 4;
  std::unique_ptr<KeyStore> s;
  CHECK(KeyStore::Create(o, &s).ok());
  const float ok[8] = {1, 0, 0, 0, 0, 1, 0, 0}, vals[2] = {1, 2};
  int32_t ids[2];
  CHECK(s->add(ids, ok, vals, 2).ok());
  const float bad[8] = {0, 0, 1, 0, 3e38f, 0, 0, 0};
  Status st = s->add(ids, bad, vals, 2);
  CHECK(st.code() == StatusCode::kOutOfRange &&
        st.message() == "keys: the squared norm of row 1 is over the limit of 2^125 (about 4.25e37), so that "
                        "distances stay finite in float32");
  const float bad2[4] = {1.5e19f, 1.5e19f, 0, 0};  // each finite, ||k||^2 = 4.5e38
  CHECK(s->add(ids, bad2, vals, 1).code() == StatusCode::kOutOfRange);
  const int32_t new_ids[2] = {5, 6};
  CHECK(s->add_with_ids(new_ids, bad, vals, 2).code() == StatusCode::kOutOfRange);
  CHECK(s->size() == 2 && s->rows() == 2 && s->next_id() == 2);
  const float over[4] = {7e18f, 0, 0, 0};  // ||k||^2 = 4.9e37 > 2^125: finite, but distances could overflow
  CHECK(s->add(ids, over, vals, 1).code() == StatusCode::kOutOfRange);
  const float big[4] = {6e18f, 0, 0, 0};  // ||k||^2 = 3.6e37 fits
  CHECK(s->add(ids, big, vals, 1).ok());
  // The farthest query allowed from it: dist2 = (1.2e19)^2 = 1.44e38, finite in a filled slot.
  const float far[4] = {-6e18f, 0, 0, 0};
  int64_t frow[4];
  float fk[4], fd[4];
  CHECK(search_topm(frow, fk, fd, far, 1, s->snapshot().view(), 4, KernelParams()).ok());
  for (int j = 0; j < 3; ++j) CHECK(frow[j] >= 0 && std::isfinite(fd[j]));
  CHECK(frow[0] != 2 && frow[2] == 2 && std::fabs(fd[2] / 1.44e38 - 1.0) < 1e-6);
  const float qv[4] = {0, 1, 0, 0};
  int64_t rows[3];
  float kern[3], d2[3];
  KernelParams p;
  CHECK(search_topm(rows, kern, d2, qv, 1, s->snapshot().view(), 3, p).ok());
  CHECK(rows[0] == 1);
  // Order and repeats are values out of range too.
  const int32_t back[1] = {1};
  CHECK(s->add_with_ids(back, ok, vals, 1).code() == StatusCode::kOutOfRange);
  const int32_t rep[2] = {0, 0};
  CHECK(s->remove(rep, 2).code() == StatusCode::kOutOfRange);
}

MEMQ_TEST_MAIN()
