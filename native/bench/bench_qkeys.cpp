// Compressed keys (bf16, int8) against memq's own float32 search in the same run: search_topm
// queries/s at B = 1 (bandwidth-bound) and B = 256 (compute-bound), M = 32, with the ratios to
// float32; and recall@M against the float32 top-M, with and without the exact re-rank
// (oversample x M candidates re-ranked on the float32 keys), on uniform random keys and on
// embedding-like keys (unit-norm, clustered: 256 centres + noise, queries near the centres).
//
//   build/bench_qkeys [--n N] [--d D] [--m M] [--oversample K]   -> JSON on stdout
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "memq/cpu_features.h"
#include "memq/kernels.h"
#include "memq/thread_pool.h"

using namespace memq;

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
template <class F>
double time_call(F&& f, double min_time) {
  f();
  double best = 1e30, t0 = now();
  for (int reps = 0; reps < 3 || now() - t0 < min_time; ++reps) {
    double t1 = now();
    f();
    best = std::min(best, now() - t1);
  }
  return best;
}
struct Store {
  KeyType type;
  std::vector<uint16_t> bf;
  std::vector<int8_t> i8;
  std::vector<float> sc, norms;
  KeyView v;
};
void build(Store& s, KeyType type, const std::vector<float>& x, int64_t n, int64_t d) {
  s.type = type;
  s.v = KeyView();
  s.v.n = n;
  s.v.d = d;
  s.v.type = type;
  std::vector<float> deq;
  if (type == KeyType::kFloat32) {
    s.v.keys = x.data();
  } else if (type == KeyType::kBF16) {
    s.bf.resize(n * d);
    if (!quantize_bf16(s.bf.data(), x.data(), n, d).ok()) std::abort();
    s.v.keys_bf16 = s.bf.data();
  } else {
    s.i8.resize(n * d);
    s.sc.resize(n);
    if (!quantize_int8(s.i8.data(), s.sc.data(), x.data(), n, d).ok()) std::abort();
    s.v.keys_i8 = s.i8.data();
    s.v.scales = s.sc.data();
  }
  // cached norms, as the index keeps them (of the dequantised keys)
  s.norms.resize(n);
  parallel_for(0, n, 4096, [&](int64_t lo, int64_t hi) {
    std::vector<float> row(d);
    for (int64_t j = lo; j < hi; ++j) {
      dequantize_rows(row.data(), s.v, j, 1);
      double a = 0;
      for (float z : row) a += (double)z * z;
      s.norms[j] = (float)a;
    }
  });
  s.v.norms2 = s.norms.data();
}
double recall(const std::vector<int64_t>& got, const std::vector<int64_t>& ref, int64_t b, int64_t m) {
  int64_t hit = 0;
  for (int64_t i = 0; i < b; ++i) {
    std::set<int64_t> r(ref.begin() + i * m, ref.begin() + (i + 1) * m);
    for (int64_t s = 0; s < m; ++s) hit += r.count(got[i * m + s]);
  }
  return (double)hit / (double)(b * m);
}
}  // namespace

int main(int argc, char** argv) {
  int64_t n = 500000, d = 384, m = 32, over = 4;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    int64_t v = std::atoll(argv[i + 1]);
    if (a == "--n") n = v;
    else if (a == "--d") d = v;
    else if (a == "--m") m = v;
    else if (a == "--oversample") over = v;
  }
  const KeyType types[3] = {KeyType::kFloat32, KeyType::kBF16, KeyType::kInt8};
  const char* names[3] = {"float32", "bf16", "int8"};
  std::printf("{\n  \"n\": %lld, \"d\": %lld, \"m\": %lld, \"oversample\": %lld, \"simd\": \"%s\", \"threads\": %d,\n",
              (long long)n, (long long)d, (long long)m, (long long)over, simd_name(simd_level()), num_threads());
  KernelParams kp;
  // --- speed on uniform random keys
  std::mt19937 g(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(n * d), q(256 * d);
  for (auto& z : x) z = u(g);
  for (auto& z : q) z = u(g);
  std::printf("  \"speed\": [\n");
  double base[2] = {0, 0};
  for (int ti = 0; ti < 3; ++ti) {
    Store s;
    build(s, types[ti], x, n, d);
    for (int bi = 0; bi < 2; ++bi) {
      int64_t b = bi == 0 ? 1 : 256;
      std::vector<int64_t> rows(b * m);
      std::vector<float> kern(b * m), d2(b * m);
      double t = time_call([&] { search_topm(rows.data(), kern.data(), d2.data(), q.data(), b, s.v, m, kp); }, 1.0);
      double qps = b / t;
      if (ti == 0) base[bi] = qps;
      std::printf("    {\"key_type\": \"%s\", \"b\": %lld, \"queries_per_s\": %.1f, \"ratio_vs_float32\": %.3f, \"key_bytes_per_s\": %.4g}%s\n",
                  names[ti], (long long)b, qps, qps / base[bi],
                  (double)n * d * (ti == 0 ? 4 : ti == 1 ? 2 : 1) / t, (ti == 2 && bi == 1) ? "" : ",");
    }
  }
  std::printf("  ],\n  \"recall\": [\n");
  // --- recall@m vs float32, uniform and clustered unit-norm data
  for (int data = 0; data < 2; ++data) {
    const int64_t nr = std::min<int64_t>(n, 200000), b = 256;
    std::vector<float> xr(nr * d), qr(b * d);
    if (data == 0) {
      for (auto& z : xr) z = u(g);
      for (auto& z : qr) z = u(g);
    } else {
      std::normal_distribution<float> nd(0.0f, 1.0f);
      const int64_t C = 256;
      std::vector<float> cen(C * d);
      for (auto& z : cen) z = nd(g);
      auto unit = [&](float* r) {
        double a = 0;
        for (int64_t p = 0; p < d; ++p) a += (double)r[p] * r[p];
        float inv = (float)(1.0 / std::sqrt(a));
        for (int64_t p = 0; p < d; ++p) r[p] *= inv;
      };
      for (int64_t c = 0; c < C; ++c) unit(&cen[c * d]);
      const float noise = 0.35f / std::sqrt((float)d);
      for (int64_t j = 0; j < nr; ++j) {
        int64_t c = g() % C;
        for (int64_t p = 0; p < d; ++p) xr[j * d + p] = cen[c * d + p] + noise * nd(g);
        unit(&xr[j * d]);
      }
      for (int64_t i = 0; i < b; ++i) {
        int64_t c = g() % C;
        for (int64_t p = 0; p < d; ++p) qr[i * d + p] = cen[c * d + p] + noise * nd(g);
        unit(&qr[i * d]);
      }
    }
    Store f;
    build(f, KeyType::kFloat32, xr, nr, d);
    std::vector<int64_t> ref(b * m);
    search_topm(ref.data(), nullptr, nullptr, qr.data(), b, f.v, m, kp);
    for (int ti = 1; ti < 3; ++ti) {
      Store s;
      build(s, types[ti], xr, nr, d);
      std::vector<int64_t> got(b * m), rr(b * m);
      search_topm(got.data(), nullptr, nullptr, qr.data(), b, s.v, m, kp);
      s.v.exact = xr.data();
      s.v.oversample = over;
      search_topm(rr.data(), nullptr, nullptr, qr.data(), b, s.v, m, kp);
      std::printf("    {\"data\": \"%s\", \"n\": %lld, \"key_type\": \"%s\", \"recall_at_m\": %.4f, \"recall_at_m_rerank\": %.4f}%s\n",
                  data == 0 ? "uniform" : "clustered_unit_norm", (long long)nr, names[ti], recall(got, ref, b, m),
                  recall(rr, ref, b, m), (data == 1 && ti == 2) ? "" : ",");
    }
  }
  std::printf("  ]\n}\n");
  return 0;
}
