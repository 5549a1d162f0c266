// Compressed keys (bf16, int8) against memq's own float32 search in the same run: search_topm
// queries/s at B = 1 (bandwidth-bound) and B = 256 (compute-bound), M = 32, with the ratios to
// float32; and recall@M against the float32 top-M, with and without the exact re-rank
// (oversample x M candidates re-ranked on the float32 keys), on uniform random keys and on
// embedding-like keys (unit-norm, clustered: 256 centres + noise, queries near the centres).
//
// Speed: the three stores timed in interleaved rounds (medians of >= 5 rounds and >= --min-time
// seconds each), wall time (queries_per_s, ratio_vs_float32) and the process's CPU time per call
// (cpu_ms, cpu_ratio_vs_float32: float32's CPU time over this row's; steadier on a shared machine).
//
//   build/bench_qkeys [--n N] [--d D] [--m M] [--oversample K] [--recall 0|1] [--min-time S]
//                     [--ab 1 (also the compressed searches with the filter unfused)] [--bs 1|256 (one b)]
//                     -> JSON on stdout
//   build/bench_qkeys --only float32|bf16|int8 --b B [--secs S | --calls C] [--fused 0|1]
//                     -> one type's search in a loop for S seconds or C calls (to profile it:
//                     perf record -g build/bench_qkeys --only ...)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "../core/cpu/internal.h"
#include "memq/cpu_features.h"
#include "memq/kernels.h"
#include "memq/thread_pool.h"

using namespace memq;

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
// CPU seconds of the whole process (every thread): a measure of work that a core taken by another
// process does not inflate (the pool's threads wait on condition variables, not spinning).
double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
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
  // as the key store's views: norms checked on the way in, their bounds known
  float mx = 0.0f, mn = std::numeric_limits<float>::infinity();
  for (float z : s.norms) {
    mx = std::max(mx, z);
    if (z > 0.0f) mn = std::min(mn, z);
  }
  s.v.norms2_max = mx;
  s.v.norms2_min_pos = mn;
  s.v.trusted = true;
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
  int64_t n = 500000, d = 384, m = 32, over = 4, pb = 256, only_b = 0, max_calls = 0;
  bool fused = true;
  int only = -1, recall_on = 1, ab = 0;
  double min_time = 1.5, secs = 10.0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    int64_t v = std::atoll(argv[i + 1]);
    if (a == "--n") n = v;
    else if (a == "--d") d = v;
    else if (a == "--m") m = v;
    else if (a == "--oversample") over = v;
    else if (a == "--recall") recall_on = (int)v;
    else if (a == "--ab") ab = (int)v;
    else if (a == "--bs") only_b = v;
    else if (a == "--calls") max_calls = v;
    else if (a == "--fused") fused = v != 0;
    else if (a == "--min-time") min_time = std::atof(argv[i + 1]);
    else if (a == "--secs") secs = std::atof(argv[i + 1]);
    else if (a == "--b") pb = v;
    else if (a == "--only") only = std::string(argv[i + 1]) == "float32" ? 0 : std::string(argv[i + 1]) == "bf16" ? 1 : 2;
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
  // Every key type's store is built first, then timed in interleaved rounds (one call of each
  // type per round, medians), so that the ratios do not ride on one type's stretch of a shared
  // machine.
  Store st[3];
  for (int ti = 0; ti < 3; ++ti) build(st[ti], types[ti], x, n, d);
  if (only >= 0) {
    // profiling mode: one type, one b, for `secs` seconds (perf record around it)
    std::vector<int64_t> rows(pb * m);
    std::vector<float> kern(pb * m), d2(pb * m);
    int64_t calls = 0;
    const double t0 = now();
    cpu::set_filter_fused(fused);
    const double c0 = cpu_now();
    while (max_calls ? calls < max_calls : now() - t0 < secs) {
      search_topm(rows.data(), kern.data(), d2.data(), q.data(), pb, st[only].v, m, kp);
      ++calls;
    }
    std::printf("  \"profile\": {\"key_type\": \"%s\", \"b\": %lld, \"queries_per_s\": %.1f, \"cpu_ms_per_call\": %.3f}\n}\n",
                names[only], (long long)pb, (double)(calls * pb) / (now() - t0), 1e3 * (cpu_now() - c0) / (double)calls);
    return 0;
  }
  // Rows: float32, bf16, int8; with --ab 1 also bf16 and int8 with the filter not fused into the
  // dot-product kernels (cpu::set_filter_fused(false)), timed in the same rounds.
  struct Variant {
    int ti;
    bool fused;
    std::string name;
  };
  std::vector<Variant> vars{{0, true, "float32"}, {1, true, "bf16"}, {2, true, "int8"}};
  if (ab) vars.insert(vars.end(), {{1, false, "bf16 unfused"}, {2, false, "int8 unfused"}});
  const size_t nv = vars.size();
  auto run = [&](const Variant& v, int64_t b, int64_t* rows, float* kern, float* d2) {
    cpu::set_filter_fused(v.fused);
    search_topm(rows, kern, d2, q.data(), b, st[v.ti].v, m, kp);
    cpu::set_filter_fused(true);
  };
  std::printf("  \"speed\": [\n");
  for (int bi = 0; bi < 2; ++bi) {
    const int64_t b = bi == 0 ? 1 : 256;
    if (only_b && b != only_b) continue;
    std::vector<int64_t> rows(b * m);
    std::vector<float> kern(b * m), d2(b * m);
    std::vector<std::vector<double>> times(nv), cpus(nv);
    std::vector<double> spent(nv, 0.0);
    for (const Variant& v : vars) run(v, b, rows.data(), kern.data(), d2.data());
    for (int r = 0; r < 5 || *std::min_element(spent.begin(), spent.end()) < min_time; ++r)
      for (size_t k = 0; k < nv; ++k) {
        const double t1 = now(), c1 = cpu_now();
        run(vars[k], b, rows.data(), kern.data(), d2.data());
        const double dt = now() - t1;
        cpus[k].push_back(cpu_now() - c1);
        times[k].push_back(dt);
        spent[k] += dt;
      }
    std::vector<double> qps(nv), cpu_ms(nv);
    for (size_t k = 0; k < nv; ++k) {
      std::sort(times[k].begin(), times[k].end());
      std::sort(cpus[k].begin(), cpus[k].end());
      qps[k] = b / times[k][times[k].size() / 2];
      cpu_ms[k] = 1e3 * cpus[k][cpus[k].size() / 2];
    }
    for (size_t k = 0; k < nv; ++k) {
      const int ti = vars[k].ti;
      std::printf("    {\"key_type\": \"%s\", \"b\": %lld, \"queries_per_s\": %.1f, \"ratio_vs_float32\": %.3f, \"key_bytes_per_s\": %.4g, \"rounds\": %zu, \"cpu_ms\": %.3f, \"cpu_ratio_vs_float32\": %.3f}%s\n",
                  vars[k].name.c_str(), (long long)b, qps[k], qps[k] / qps[0], (double)n * d * (ti == 0 ? 4 : ti == 1 ? 2 : 1) * qps[k] / b,
                  times[k].size(), cpu_ms[k], cpu_ms[0] / cpu_ms[k], (k + 1 == nv && (bi == 1 || only_b == 1)) ? "" : ",");
    }
  }
  if (!recall_on) {
    std::printf("  ]\n}\n");
    return 0;
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
