// Start-up self-test of the CUDA backend (cuda_backend.h): small random problems on the device,
// each compared with its CPU twin. Host code only (public APIs), compiled by the host compiler;
// without MEMQ_HAVE_CUDA the stub in cuda_host.cpp reports "not compiled".
#ifdef MEMQ_HAVE_CUDA

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "memq/cuda/cuda_backend.h"
#include "memq/cuda/topm_check.h"
#include "memq/kernels.h"

namespace memq {

namespace {

struct Report {
  std::string text;
  int failed = 0;
  void line(const std::string& s) { text += s + "\n"; }
  void check(const std::string& what, const Status& st, const std::string& diff) {
    if (!st.ok()) {
      ++failed;
      line("FAIL " + what + ": " + st.message());
    } else if (!diff.empty()) {
      ++failed;
      line("FAIL " + what + ": differs from the CPU twin:\n" + diff);
    } else {
      line("ok   " + what);
    }
  }
};

std::vector<float> gaussian(std::mt19937& rng, size_t n, float scale = 1.0f) {
  std::normal_distribution<float> g(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = g(rng);
  return v;
}

std::string compare_floats(const float* a, const float* b, size_t n, double rtol, double atol, const char* what) {
  for (size_t i = 0; i < n; ++i) {
    const double x = a[i], y = b[i];
    if (std::isinf(x) || std::isinf(y)) {
      if (x != y) return std::string(what) + "[" + std::to_string(i) + "]: " + std::to_string(x) + " vs " + std::to_string(y);
      continue;
    }
    if (!(std::fabs(x - y) <= atol + rtol * std::fabs(y)))
      return std::string(what) + "[" + std::to_string(i) + "]: " + std::to_string(x) + " vs CPU " + std::to_string(y);
  }
  return "";
}

KernelParams kernel(KernelType t) {
  KernelParams p;
  p.type = t;
  p.bandwidth = 6.0f;
  p.kappa = 4.0f;
  p.delta = 1e-3f;
  return p;
}

}  // namespace

Status cuda_self_test(std::string* report) {
  Report R;
  CudaDeviceInfo info;
  Status st = cuda_device_info(&info);
  if (!st.ok()) {
    if (report) *report = "cuda self-test: not run: " + info.reason;
    return st;
  }
  R.line("cuda self-test on " + info.name + " (cc " + std::to_string(info.cc_major) + "." +
         std::to_string(info.cc_minor) + ")");
  std::mt19937 rng(20240611u);
  const int64_t n = 3001, d = 96, b = 5;
  std::vector<float> keys = gaussian(rng, n * d), queries = gaussian(rng, b * d);
  for (int64_t j = 10; j < n; j += 97)  // duplicates: ties go to the lower row
    std::copy_n(&keys[(j - 7) * d], d, &keys[j * d]);
  std::copy_n(&keys[123 * d], d, &queries[2 * d]);  // a query equal to a key (dist2 = 0)
  std::vector<uint8_t> alive(n, 1);
  for (int64_t j = 0; j < n; j += 11) alive[j] = 0;

  // 1. float32 search (3xTF32) vs search_topm, three kernels, m < n and m > live rows.
  for (KernelType t : {KernelType::kGaussian, KernelType::kCosine, KernelType::kInverse}) {
    for (int64_t m : {int64_t(17), int64_t(300)}) {
      const KernelParams p = kernel(t);
      KeyView kv;
      kv.keys = keys.data();
      kv.alive = alive.data();
      kv.n = (m == 300) ? 250 : n;  // m > n: trailing slots empty
      kv.d = d;
      std::vector<int64_t> r(b * m), rr(b * m);
      std::vector<float> k(b * m), rk(b * m), d2(b * m), rd2(b * m);
      Status s = cuda_search_topm(r.data(), k.data(), d2.data(), queries.data(), b, kv, m, p);
      Status s2 = search_topm(rr.data(), rk.data(), rd2.data(), queries.data(), b, kv, m, p);
      if (!s2.ok()) return Status::Internal("self-test: the CPU twin failed: " + s2.message());
      std::string diff;
      if (s.ok()) {
        cudacheck::TopmProblem P;
        P.b = b, P.m = m, P.n = kv.n, P.d = d, P.keys = keys.data(), P.queries = queries.data(), P.alive = alive.data();
        P.p = p;
        diff = cudacheck::check_topm(P, r.data(), k.data(), d2.data(), rr.data(), rk.data(), rd2.data());
      }
      R.check(std::string("search float32 kernel=") + std::to_string((int)t) + " m=" + std::to_string(m), s, diff);
    }
  }

  // 2. bf16 store: add, remove, search vs the CPU twin on the rounded keys and queries.
  {
    CudaKeyStoreOptions o;
    o.dim = d;
    o.key_type = CudaKeyType::kBFloat16;
    std::unique_ptr<CudaKeyStore> store;
    Status s = CudaKeyStore::Create(o, &store);
    std::string diff;
    const int64_t m = 40;
    if (s.ok()) {
      std::vector<float> vals(n, 0.5f);
      std::vector<int32_t> ids(n);
      s = store->add(ids.data(), keys.data(), vals.data(), n);
      std::vector<int32_t> dead;
      for (int64_t j = 0; j < n; ++j)
        if (!alive[j]) dead.push_back(ids[j]);
      if (s.ok()) s = store->remove(dead.data(), (int64_t)dead.size());
      std::vector<int64_t> r(b * m), rr(b * m);
      std::vector<float> k(b * m), rk(b * m), d2(b * m), rd2(b * m);
      const KernelParams p = kernel(KernelType::kGaussian);
      if (s.ok()) s = store->search_topm(r.data(), nullptr, k.data(), d2.data(), queries.data(), b, m, p);
      if (s.ok()) {
        std::vector<float> kr(keys), qr(queries);
        for (auto& x : kr) x = round_to_bf16(x);
        for (auto& x : qr) x = round_to_bf16(x);
        KeyView kv;
        kv.keys = kr.data();
        kv.alive = alive.data();
        kv.n = n;
        kv.d = d;
        Status s2 = search_topm(rr.data(), rk.data(), rd2.data(), qr.data(), b, kv, m, p);
        if (!s2.ok()) return Status::Internal("self-test: the CPU twin failed: " + s2.message());
        cudacheck::TopmProblem P;
        P.b = b, P.m = m, P.n = n, P.d = d, P.keys = kr.data(), P.queries = qr.data(), P.alive = alive.data();
        P.p = p;
        diff = cudacheck::check_topm(P, r.data(), k.data(), d2.data(), rr.data(), rk.data(), rd2.data());
      }
    }
    R.check("search bf16 store (tombstones)", s, diff);
  }

  // 3. kernel-weighted value with the void case.
  {
    const int64_t bb = 7, m = 9, nr = 50;
    std::vector<int64_t> rows(bb * m);
    std::vector<float> kern(bb * m), rv(nr);
    std::uniform_int_distribution<int> ri(-1, (int)nr - 1);
    std::uniform_real_distribution<float> u(0.0f, 2.0f);
    for (auto& r : rows) r = ri(rng);
    for (int64_t s = 0; s < m; ++s) rows[3 * m + s] = -1;  // a query with no hits
    for (auto& x : kern) x = u(rng);
    for (auto& x : rv) x = u(rng) - 1.0f;
    std::vector<float> v(bb), c(bb), rvv(bb), rc(bb);
    Status s = cuda_kernel_weighted_value(v.data(), c.data(), rows.data(), kern.data(), rv.data(), nr, bb, m, 0.3f, 0.1f);
    Status s2 = kernel_weighted_value(rvv.data(), rc.data(), rows.data(), kern.data(), rv.data(), nr, bb, m, 0.3f, 0.1f);
    if (!s2.ok()) return Status::Internal("self-test: the CPU twin failed: " + s2.message());
    std::string diff;
    if (s.ok()) {
      diff = compare_floats(v.data(), rvv.data(), bb, 1e-6, 1e-7, "value");
      if (diff.empty()) diff = compare_floats(c.data(), rc.data(), bb, 1e-6, 1e-7, "confidence");
    }
    R.check("kernel-weighted value", s, diff);
  }

  // 4. KL improvement: -inf priors, ragged rows, alpha > 0 and the alpha = 0 limit.
  for (float alpha : {0.7f, 0.0f}) {
    const int64_t rows = 6, cols = 37;
    std::vector<float> lp = gaussian(rng, rows * cols), q = gaussian(rng, rows * cols, 3.0f);
    for (int64_t e = 0; e < rows * cols; e += 5) lp[e] = -std::numeric_limits<float>::infinity();
    for (int64_t c = 0; c < cols; ++c) lp[4 * cols + c] = -std::numeric_limits<float>::infinity();  // no support
    std::vector<int32_t> len = {37, 1, 0, 20, 37, 36};
    std::vector<float> pi(rows * cols, -1.0f), v(rows), rpi(rows * cols), rvv(rows);
    Status s = cuda_kl_improve(pi.data(), v.data(), lp.data(), q.data(), rows, cols, len.data(), alpha);
    Status s2 = kl_improve(rpi.data(), rvv.data(), lp.data(), q.data(), rows, cols, len.data(), alpha);
    if (!s2.ok()) return Status::Internal("self-test: the CPU twin failed: " + s2.message());
    std::string diff;
    if (s.ok()) {
      diff = compare_floats(pi.data(), rpi.data(), pi.size(), 1e-5, 1e-7, "policy");
      if (diff.empty()) diff = compare_floats(v.data(), rvv.data(), rows, 1e-5, 1e-6, "value");
    }
    R.check("kl_improve alpha=" + std::to_string(alpha), s, diff);
  }

  if (report) *report = R.text;
  if (R.failed) return Status::Internal("cuda self-test: " + std::to_string(R.failed) + " check(s) failed:\n" + R.text);
  return Status::Ok();
}

}  // namespace memq

#endif  // MEMQ_HAVE_CUDA
