// The CUDA kernels (memq/cuda/cuda_backend.h) against their CPU twins (memq/kernels.h).
//
// Without a usable device (this includes builds without CUDA) the device tests print
// "SKIPPED: no CUDA device: <reason>" and pass; what needs no device is still tested: device
// discovery never crashes and gives a reason, the self-test reports unavailability cleanly,
// every invalid input gets the same status code as the CPU twin (validation runs before the
// device is touched) and leaves the outputs untouched, and the host rounding helpers.
//
// Device tests: fresh random inputs (seeded per case), outputs poisoned (NaN) before each call,
// duplicates and a query equal to a key (ties), tombstones, N < M, M up to 4096, b across the
// 16- and 64-query tiles, d not a multiple of the 64-element padding. Tolerances: see
// memq/cuda/topm_check.h (dist2 within 2e-5 (|q|^2 + |k|^2) + 1e-6; a different row in a slot
// only when its exact score is within that of the CPU's row; small-integer inputs: rows equal).
// Dense similarity: dist2 as above, kernels recomputed from dist2 (rel 1e-6). Kernel-weighted
// value and KL improvement: rel 1e-6 (both accumulate in double; only the order differs).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "memq/cuda/cuda_backend.h"
#include "memq/cuda/topm_check.h"
#include "memq/kernels.h"
#include "testing.h"

using namespace memq;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

bool device_ready(std::string* why) {
  static bool done = false, ok = false;
  static std::string reason;
  if (!done) {
    CudaDeviceInfo info;
    Status st = cuda_device_info(&info);
    ok = st.ok();
    reason = ok ? "" : info.reason;
    done = true;
  }
  *why = reason;
  return ok;
}

#define REQUIRE_DEVICE()                                           \
  do {                                                             \
    std::string _why;                                              \
    if (!device_ready(&_why)) {                                    \
      std::printf("  SKIPPED: no CUDA device: %s\n", _why.c_str()); \
      return;                                                      \
    }                                                              \
  } while (0)

std::vector<float> gauss(std::mt19937& rng, size_t n, float s = 1.0f) {
  std::normal_distribution<float> g(0.0f, s);
  std::vector<float> v(n);
  for (auto& x : v) x = g(rng);
  return v;
}
std::vector<float> ints(std::mt19937& rng, size_t n) {
  std::uniform_int_distribution<int> u(-2, 2);
  std::vector<float> v(n);
  for (auto& x : v) x = (float)u(rng);
  return v;
}

KernelParams kp(KernelType t, double scale) {
  KernelParams p;
  p.type = t;
  p.bandwidth = (float)scale;
  p.kappa = 3.0f;
  p.delta = 1e-3f;
  return p;
}

struct Case {
  int64_t n, d, b, m;
  double dead, dup;
  bool integer;
};

void run_search_case(const Case& c, KernelType t, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> keys = c.integer ? ints(rng, c.n * c.d) : gauss(rng, c.n * c.d);
  std::vector<float> q = c.integer ? ints(rng, c.b * c.d) : gauss(rng, c.b * c.d);
  std::uniform_real_distribution<double> u(0, 1);
  for (int64_t j = 1; j < c.n; ++j)
    if (u(rng) < c.dup) {
      int64_t src = std::uniform_int_distribution<int64_t>(0, j - 1)(rng);
      std::memcpy(&keys[j * c.d], &keys[src * c.d], c.d * 4);
    }
  if (c.n > 3) std::fill(&keys[2 * c.d], &keys[3 * c.d], 0.0f);         // a zero key
  if (c.b > 1 && c.n > 5) std::memcpy(&q[1 * c.d], &keys[5 * c.d], c.d * 4);  // dist2 = 0
  if (c.b > 2) std::fill(&q[2 * c.d], &q[3 * c.d], 0.0f);               // a zero query
  std::vector<uint8_t> alive(c.n, 1);
  for (int64_t j = 0; j < c.n; ++j)
    if (u(rng) < c.dead) alive[j] = 0;
  KeyView kv;
  kv.keys = keys.data();
  kv.alive = c.dead > 0 ? alive.data() : nullptr;
  kv.n = c.n;
  kv.d = c.d;
  const KernelParams p = kp(t, std::sqrt((double)c.d));
  const size_t tot = c.b * c.m;
  std::vector<int64_t> r(tot, 77), rr(tot);
  std::vector<float> k(tot, kNaN), d2(tot, kNaN), rk(tot), rd2(tot);
  Status st = cuda_search_topm(r.data(), k.data(), d2.data(), q.data(), c.b, kv, c.m, p);
  Status st2 = search_topm(rr.data(), rk.data(), rd2.data(), q.data(), c.b, kv, c.m, p);
  CHECK(st2.ok());
  if (!st.ok()) {
    memq_test::fail(__FILE__, __LINE__, "cuda_search_topm: " + st.message());
    return;
  }
  cudacheck::TopmProblem P;
  P.b = c.b, P.m = c.m, P.n = c.n, P.d = c.d, P.keys = keys.data(), P.queries = q.data(), P.alive = kv.alive;
  P.p = p;
  P.exact = c.integer;
  const std::string diff = cudacheck::check_topm(P, r.data(), k.data(), d2.data(), rr.data(), rk.data(), rd2.data());
  if (!diff.empty()) {
    char head[200];
    std::snprintf(head, sizeof head, "n=%lld d=%lld b=%lld m=%lld kernel=%d integer=%d:\n",
                  (long long)c.n, (long long)c.d, (long long)c.b, (long long)c.m, (int)t, (int)c.integer);
    memq_test::fail(__FILE__, __LINE__, head + diff);
  }
}

}  // namespace

// ---- no device needed -------------------------------------------------------------------------

MEMQ_TEST(device_info_never_crashes) {
  CudaDeviceInfo info;
  Status st = cuda_device_info(&info);
  CHECK(info.compiled == cuda_compiled());
  if (st.ok()) {
    CHECK(info.device_count >= 1);
    CHECK(info.device == 0);
    CHECK(!info.name.empty());
    CHECK(info.total_bytes > 0);
    CHECK(info.reason.empty());
    std::printf("  device: %s, cc %d.%d, %d SMs, %.1f GiB (%.1f free), driver %d, runtime %d\n", info.name.c_str(),
                info.cc_major, info.cc_minor, info.sm_count, info.total_bytes / 1073741824.0,
                info.free_bytes / 1073741824.0, info.driver_version, info.runtime_version);
  } else {
    CHECK(st.code() == StatusCode::kUnavailable);
    CHECK(!info.reason.empty());
    CHECK(st.message() == info.reason);
    CHECK(info.device == -1 || info.device == 0);
    if (!info.compiled) CHECK(info.reason == "CUDA support not compiled in");
    else CHECK(info.runtime_version > 0);
    std::printf("  no usable device: %s (compiled: %d, runtime %d, driver %d)\n", info.reason.c_str(),
                (int)info.compiled, info.runtime_version, info.driver_version);
  }
  // Repeated calls agree (no sticky state from the first one).
  CudaDeviceInfo again;
  Status st2 = cuda_device_info(&again);
  CHECK(st2.code() == st.code());
  CHECK(again.reason == info.reason);
  CHECK(cuda_device_info(nullptr).code() == StatusCode::kInvalidArgument);
}

MEMQ_TEST(self_test_reports_cleanly) {
  std::string report;
  Status st = cuda_self_test(&report);
  std::string why;
  if (!device_ready(&why)) {
    CHECK(st.code() == StatusCode::kUnavailable);
    CHECK(report.find("not run") != std::string::npos);
    CHECK(report.find(why) != std::string::npos);
    std::printf("  %s\n", report.c_str());
    return;
  }
  if (!st.ok()) memq_test::fail(__FILE__, __LINE__, st.message());
  std::printf("%s", report.c_str());
}

// Backend selection: without a usable device `auto` falls back to the CPU and says why, `cuda`
// is refused; with one, `auto` picks CUDA only after the self-test passed.
MEMQ_TEST(backend_selection_falls_back) {
  std::string why;
  const bool dev = device_ready(&why);
  BackendChoice c;
  CHECK(select_backend("cpu", &c).ok() && c.backend == Backend::kCpu);
  CHECK(select_backend("gpu", &c).code() == StatusCode::kInvalidArgument);
  Status st = select_backend("auto", &c);
  CHECK(st.ok());
  std::printf("  auto -> %s (%s)\n", backend_name(c.backend), c.reason.c_str());
  Status sc = select_backend("cuda", &c);
  if (dev) {
    std::string report;
    const bool passed = cuda_self_test(&report).ok();
    CHECK(sc.ok() == passed);
    CHECK(select_backend("auto", &c).ok() && (c.backend == Backend::kCuda) == passed);
  } else {
    CHECK(select_backend("auto", &c).ok() && c.backend == Backend::kCpu);
    CHECK(c.reason.find(why) != std::string::npos);
    CHECK(sc.code() == StatusCode::kUnavailable);
    CHECK(sc.message().find(why) != std::string::npos);
  }
  setenv("MEMQ_BACKEND", "cpu", 1);
  CHECK(select_backend(nullptr, &c).ok() && c.backend == Backend::kCpu && c.requested == "cpu");
  setenv("MEMQ_BACKEND", "bogus", 1);
  CHECK(select_backend("", &c).code() == StatusCode::kInvalidArgument);
  unsetenv("MEMQ_BACKEND");
  CHECK(select_backend(nullptr, &c).ok() && c.requested == "auto");
}

MEMQ_TEST(rounding_helpers) {
  CHECK(round_to_bf16(1.0f) == 1.0f);
  CHECK(round_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 1.0f);  // tie -> even
  CHECK(round_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)) == 1.0f + std::ldexp(1.0f, -6));  // tie -> even (up)
  CHECK(round_to_bf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)) == 1.0f + std::ldexp(1.0f, -7));
  CHECK(round_to_bf16(-2.5f) == -2.5f);
  CHECK(std::isinf(round_to_bf16(3.4e38f)));
  CHECK(std::isnan(round_to_bf16(kNaN)));
  CHECK(round_to_fp16(65504.0f) == 65504.0f);
  CHECK(round_to_fp16(65519.0f) == 65504.0f);
  CHECK(std::isinf(round_to_fp16(65520.0f)) && round_to_fp16(-65520.0f) < 0);
  CHECK(round_to_fp16(1.0f + std::ldexp(1.0f, -11)) == 1.0f);  // tie -> even
  CHECK(round_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)) == 1.0f + std::ldexp(1.0f, -9));
  CHECK(round_to_fp16(std::ldexp(1.0f, -25)) == 0.0f);                           // subnormal tie -> 0
  CHECK(round_to_fp16(3 * std::ldexp(1.0f, -25)) == std::ldexp(1.0f, -23));      // 1.5 ulp -> 2 ulp
  CHECK(round_to_fp16(std::ldexp(1.0f, -14)) == std::ldexp(1.0f, -14));         // smallest normal
  CHECK(round_to_fp16(0.1f) == 0.0999755859375f);
  CHECK(std::string(cuda_key_type_name(CudaKeyType::kBFloat16)) == "bf16");
}

#define REQUIRE_COMPILED()                                                          \
  do {                                                                              \
    if (!cuda_compiled()) {                                                         \
      std::printf("  SKIPPED: CUDA support not compiled in (nothing to validate)\n"); \
      return;                                                                       \
    }                                                                               \
  } while (0)

// Invalid arguments: the same status code as the CPU twin, and the outputs untouched.
// Validation runs on the host before the device is touched, so this needs no GPU.
MEMQ_TEST(validation_matches_cpu) {
  REQUIRE_COMPILED();
  std::mt19937 rng(5);
  const int64_t n = 40, d = 8, b = 3, m = 4;
  std::vector<float> keys = gauss(rng, n * d), q = gauss(rng, b * d);
  KeyView kv;
  kv.keys = keys.data();
  kv.n = n;
  kv.d = d;
  const KernelParams good = kp(KernelType::kGaussian, 1.0);
  auto search_codes = [&](const float* qq, int64_t bb, const KeyView& v, int64_t mm, const KernelParams& p,
                          bool null_rows) {
    std::vector<int64_t> r1(b * 8, 99), r2(b * 8, 99);
    Status a = search_topm(null_rows ? nullptr : r1.data(), nullptr, nullptr, qq, bb, v, mm, p);
    Status c = cuda_search_topm(null_rows ? nullptr : r2.data(), nullptr, nullptr, qq, bb, v, mm, p);
    CHECK(!a.ok());
    CHECK(a.code() == c.code());
    for (auto x : r2) CHECK(x == 99);
    if (a.code() != c.code())
      std::printf("  CPU: %s | CUDA: %s\n", a.message().c_str(), c.message().c_str());
  };
  KernelParams bad = good;
  bad.bandwidth = 0.0f;
  search_codes(q.data(), b, kv, m, bad, false);
  bad = good;
  bad.type = KernelType::kCosine;
  bad.kappa = kNaN;
  search_codes(q.data(), b, kv, m, bad, false);
  search_codes(q.data(), -1, kv, m, good, false);
  search_codes(q.data(), b, kv, 0, good, false);
  search_codes(nullptr, b, kv, m, good, false);
  search_codes(q.data(), b, kv, m, good, true);
  std::vector<float> q2(q);
  q2[5] = kInf;
  search_codes(q2.data(), b, kv, m, good, false);
  std::vector<float> k2(keys);
  k2[3 * d + 1] = kNaN;  // a non-finite key (norm computed on the fly)
  KeyView kv2 = kv;
  kv2.keys = k2.data();
  search_codes(q.data(), b, kv2, m, good, false);
  std::vector<float> norms(n, 1.0f);
  norms[7] = -1.0f;
  KeyView kv3 = kv;
  kv3.norms2 = norms.data();
  search_codes(q.data(), b, kv3, m, good, false);
  KeyView kv4 = kv;
  kv4.d = 0;
  search_codes(q.data(), b, kv4, m, good, false);

  // similarity
  {
    std::vector<float> o1(b * n, 5.0f), o2(b * n, 5.0f);
    Status a = similarity(o1.data(), nullptr, q2.data(), b, kv, good);
    Status c = cuda_similarity(o2.data(), nullptr, q2.data(), b, kv, good);
    CHECK(!a.ok() && a.code() == c.code());
    for (auto x : o2) CHECK(x == 5.0f);
    a = similarity(nullptr, nullptr, q.data(), b, kv, good);
    c = cuda_similarity(nullptr, nullptr, q.data(), b, kv, good);
    CHECK(!a.ok() && a.code() == c.code());
  }
  // kernel-weighted value
  {
    std::vector<int64_t> rows = {0, 1, -1, 2, 3, 9};
    std::vector<float> kern = {1, 1, 1, 1, 1, 1}, rv = {1, 2, 3, 4};
    std::vector<float> v1(3, 7.0f), v2(3, 7.0f);
    auto codes = [&](const int64_t* r, const float* k, const float* vals, int64_t nr, int64_t bb, int64_t mm, float vw,
                     float vv) {
      Status a = kernel_weighted_value(v1.data(), nullptr, r, k, vals, nr, bb, mm, vw, vv);
      Status c = cuda_kernel_weighted_value(v2.data(), nullptr, r, k, vals, nr, bb, mm, vw, vv);
      CHECK(!a.ok() && a.code() == c.code());
      for (auto x : v2) CHECK(x == 7.0f);
    };
    codes(rows.data(), kern.data(), rv.data(), 4, 3, 2, 0.1f, 0.0f);  // row 9 out of range
    rows[5] = 3;
    kern[1] = -1.0f;
    codes(rows.data(), kern.data(), rv.data(), 4, 3, 2, 0.1f, 0.0f);  // negative kernel
    kern[1] = 1.0f;
    codes(rows.data(), kern.data(), rv.data(), 4, 3, 2, -0.1f, 0.0f);
    codes(rows.data(), kern.data(), rv.data(), 4, 3, 2, 0.1f, kInf);
    codes(rows.data(), kern.data(), rv.data(), 4, 3, 0, 0.1f, 0.0f);
    rv[2] = kNaN;
    codes(rows.data(), kern.data(), rv.data(), 4, 3, 2, 0.1f, 0.0f);
  }
  // KL improvement
  {
    std::vector<float> lp = {0, -1, -kInf, 0, 0, 0}, qq = {1, 2, 3, 4, 5, 6};
    std::vector<float> p1(6, 3.0f), p2(6, 3.0f), v1(2), v2(2, 3.0f);
    auto codes = [&](const float* l, const float* qv, const int32_t* lens, float alpha) {
      Status a = kl_improve(p1.data(), v1.data(), l, qv, 2, 3, lens, alpha);
      Status c = cuda_kl_improve(p2.data(), v2.data(), l, qv, 2, 3, lens, alpha);
      CHECK(!a.ok() && a.code() == c.code());
      for (auto x : p2) CHECK(x == 3.0f);
    };
    codes(lp.data(), qq.data(), nullptr, -1.0f);
    codes(lp.data(), qq.data(), nullptr, kInf);
    codes(lp.data(), qq.data(), nullptr, kNaN);
    std::vector<int32_t> lens = {3, 4};
    codes(lp.data(), qq.data(), lens.data(), 1.0f);
    lp[4] = kInf;
    codes(lp.data(), qq.data(), nullptr, 1.0f);
    lp[4] = 0.0f;
    qq[0] = kNaN;
    codes(lp.data(), qq.data(), nullptr, 1.0f);
  }
}

// Valid inputs without a device: Unavailable with the reason, never a crash.
MEMQ_TEST(unavailable_without_device) {
  REQUIRE_COMPILED();
  std::string why;
  if (device_ready(&why)) return;
  std::vector<float> keys(16, 1.0f), q(4, 0.5f);
  KeyView kv;
  kv.keys = keys.data();
  kv.n = 4;
  kv.d = 4;
  std::vector<int64_t> r(2);
  Status st = cuda_search_topm(r.data(), nullptr, nullptr, q.data(), 1, kv, 2, KernelParams());
  CHECK(st.code() == StatusCode::kUnavailable);
  CHECK(!st.message().empty());
  std::vector<float> pi(3), v(1), lp(3, 0.0f), qq(3, 1.0f);
  CHECK(cuda_kl_improve(pi.data(), v.data(), lp.data(), qq.data(), 1, 3, nullptr, 1.0f).code() ==
        StatusCode::kUnavailable);
  // Empty problems are Ok without touching the device, as on the CPU.
  CHECK(cuda_search_topm(r.data(), nullptr, nullptr, q.data(), 0, kv, 2, KernelParams()).ok());
  CHECK(cuda_kl_improve(pi.data(), v.data(), lp.data(), qq.data(), 0, 3, nullptr, 1.0f).ok());
}

// ---- device tests ------------------------------------------------------------------------------

MEMQ_TEST(search_float32_random) {
  REQUIRE_DEVICE();
  const Case cases[] = {
      {1, 1, 1, 1, 0.0, 0.0, false},       {7, 3, 2, 10, 0.0, 0.0, false},      // N < M
      {300, 5, 3, 7, 0.2, 0.1, false},     {1000, 64, 17, 32, 0.1, 0.05, false},  // b crosses the 16-tile
      {2049, 96, 70, 50, 0.3, 0.05, false},                                     // 64-tiles, 2 query blocks
      {5000, 200, 5, 100, 0.0, 0.02, false}, {40000, 32, 1, 16, 0.05, 0.0, false},  // many splits
      {3000, 130, 65, 1, 0.5, 0.0, false},
  };
  uint32_t seed = 100;
  for (const Case& c : cases)
    for (KernelType t : {KernelType::kGaussian, KernelType::kCosine, KernelType::kInverse}) run_search_case(c, t, ++seed);
}

MEMQ_TEST(search_integer_inputs_exact_ties) {
  REQUIRE_DEVICE();
  // Small integers: every product and sum is exact on both sides, so scores tie exactly and the
  // rows must equal the CPU's slot by slot (ties -> the lower row).
  const Case cases[] = {{500, 8, 3, 40, 0.1, 0.3, true}, {3000, 64, 20, 200, 0.2, 0.2, true},
                        {10000, 4, 66, 64, 0.0, 0.5, true}};
  uint32_t seed = 900;
  for (const Case& c : cases)
    for (KernelType t : {KernelType::kGaussian, KernelType::kInverse}) run_search_case(c, t, ++seed);
}

MEMQ_TEST(search_large_m) {
  REQUIRE_DEVICE();
  const Case cases[] = {{20000, 48, 3, 1024, 0.1, 0.01, false}, {30000, 16, 2, 4096, 0.0, 0.0, false},
                        {3000, 16, 2, 4096, 0.2, 0.0, false},  // N < M with tombstones
                        {9000, 8, 70, 1500, 0.0, 0.1, true}};
  uint32_t seed = 4000;
  for (const Case& c : cases) run_search_case(c, KernelType::kGaussian, ++seed);
  run_search_case(cases[0], KernelType::kCosine, 4100);
}

MEMQ_TEST(similarity_random) {
  REQUIRE_DEVICE();
  std::mt19937 rng(77);
  for (int64_t d : {1, 70, 128}) {
    const int64_t n = 517, b = 19;
    std::vector<float> keys = gauss(rng, n * d), q = gauss(rng, b * d);
    std::vector<uint8_t> alive(n, 1);
    for (int64_t j = 0; j < n; j += 9) alive[j] = 0;
    KeyView kv;
    kv.keys = keys.data();
    kv.alive = alive.data();
    kv.n = n;
    kv.d = d;
    for (KernelType t : {KernelType::kGaussian, KernelType::kCosine, KernelType::kInverse}) {
      const KernelParams p = kp(t, std::sqrt((double)d));
      std::vector<float> k(b * n, kNaN), d2(b * n, kNaN), rk(b * n), rd2(b * n);
      Status st = cuda_similarity(k.data(), d2.data(), q.data(), b, kv, p);
      CHECK(similarity(rk.data(), rd2.data(), q.data(), b, kv, p).ok());
      if (!st.ok()) {
        memq_test::fail(__FILE__, __LINE__, st.message());
        continue;
      }
      for (int64_t i = 0; i < b; ++i) {
        double qn = 0;
        for (int64_t c = 0; c < d; ++c) qn += (double)q[i * d + c] * q[i * d + c];
        for (int64_t j = 0; j < n; ++j) {
          const size_t o = i * n + j;
          double kn = 0;
          for (int64_t c = 0; c < d; ++c) kn += (double)keys[j * d + c] * keys[j * d + c];
          if (!alive[j]) {
            CHECK(k[o] == 0.0f && std::isinf(d2[o]));
            continue;
          }
          CHECK_NEAR(d2[o], rd2[o], 0.0, 2e-5 * (qn + kn) + 1e-6);
          if (t != KernelType::kCosine) CHECK_NEAR(k[o], kernel_value(p, d2[o], 0.0f), 1e-6, 1e-30);
          else CHECK_NEAR(k[o], rk[o], p.kappa * 2e-5 * (qn + kn) / std::max(1e-30, std::sqrt(qn * kn)) + 2e-6, 1e-30);
        }
      }
    }
  }
}

MEMQ_TEST(kernel_weighted_value_random) {
  REQUIRE_DEVICE();
  std::mt19937 rng(31);
  for (int64_t m : {1, 5, 64, 1000}) {
    const int64_t b = 45, nr = 300;
    std::vector<int64_t> rows(b * m);
    std::vector<float> kern(b * m), rv(nr);
    std::uniform_int_distribution<int> ri(-1, (int)nr - 1);
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    for (auto& r : rows) r = ri(rng);
    for (int64_t s = 0; s < m; ++s) rows[7 * m + s] = -1;
    for (auto& x : kern) x = u(rng);
    for (int64_t s = 0; s < m; ++s) kern[8 * m + s] = 0.0f;  // all-zero kernels
    for (auto& x : rv) x = 4 * u(rng) - 2;
    for (float vw : {0.0f, 0.25f}) {
      std::vector<float> v(b, kNaN), c(b, kNaN), rv1(b), rc(b);
      Status st = cuda_kernel_weighted_value(v.data(), c.data(), rows.data(), kern.data(), rv.data(), nr, b, m, vw, 0.5f);
      CHECK(kernel_weighted_value(rv1.data(), rc.data(), rows.data(), kern.data(), rv.data(), nr, b, m, vw, 0.5f).ok());
      if (!st.ok()) {
        memq_test::fail(__FILE__, __LINE__, st.message());
        continue;
      }
      for (int64_t i = 0; i < b; ++i) {
        CHECK_NEAR(v[i], rv1[i], 1e-6, 1e-7);
        CHECK_NEAR(c[i], rc[i], 1e-6, 1e-7);
      }
    }
  }
}

MEMQ_TEST(kl_improve_random) {
  REQUIRE_DEVICE();
  std::mt19937 rng(8);
  for (int64_t cols : {0, 1, 7, 100, 600, 2000}) {  // > 512: the second pass re-reads the inputs
    const int64_t rows = 33;
    for (float alpha : {0.0f, 1e-3f, 0.5f, 1e6f}) {
      std::vector<float> lp = gauss(rng, rows * cols), q = gauss(rng, rows * cols, 10.0f);
      std::uniform_int_distribution<int> li(0, (int)cols);
      std::vector<int32_t> lens(rows);
      for (auto& l : lens) l = li(rng);
      for (int64_t e = 0; e < rows * cols; e += 3) lp[e] = -kInf;
      if (cols > 0)
        for (int64_t c = 0; c < cols; ++c) lp[5 * cols + c] = -kInf;
      if (cols > 2) q[6 * cols + 1] = q[6 * cols + 2] = 50.0f;  // ties for the alpha = 0 limit
      for (bool ragged : {false, true}) {
        std::vector<float> pi(rows * cols, kNaN), v(rows, kNaN), rpi(rows * cols), rv(rows);
        const int32_t* L = ragged ? lens.data() : nullptr;
        Status st = cuda_kl_improve(pi.data(), v.data(), lp.data(), q.data(), rows, cols, L, alpha);
        CHECK(kl_improve(rpi.data(), rv.data(), lp.data(), q.data(), rows, cols, L, alpha).ok());
        if (!st.ok()) {
          memq_test::fail(__FILE__, __LINE__, st.message());
          continue;
        }
        for (size_t e = 0; e < pi.size(); ++e) CHECK_NEAR(pi[e], rpi[e], 1e-6, 1e-9);
        for (int64_t i = 0; i < rows; ++i) CHECK_NEAR(v[i], rv[i], 1e-6, 1e-6);
      }
    }
  }
}

MEMQ_TEST_MAIN()
