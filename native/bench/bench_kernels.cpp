// search_topm throughput against this machine's own ceilings, measured in the same run:
//   - FMA peak (a register-only AVX-512 FMA loop), 1 thread and all threads
//   - the built-in GEMM (the C^T = K Q^T kernel search_topm runs) on a large product
//   - OpenBLAS' sgemm on the same product, when the build has it
//   - memory read bandwidth: a multi-threaded streaming sum over 1 GiB
// then search_topm for N in {10k, 100k, 1M}, d in {128, 384, 768}, B in {1, 32, 256}, M = 32:
// queries/s, GFLOP/s (2 B N d per call), % of the GEMM ceiling, and key bytes/s vs bandwidth.
//
//   build-native/bench_kernels [--quick] [--json] [--threads N] [--m M]
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../core/cpu/internal.h"
#include "memq/cpu_features.h"
#include "memq/kernels.h"
#include "memq/thread_pool.h"

#ifdef MEMQ_HAVE_CBLAS
#include <cblas.h>
#endif

using namespace memq;

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Seconds per call: one warm-up, then the fastest of >= 3 calls and >= min_time seconds
// (the fastest: on a shared machine the slow ones measure the neighbours).
template <class F>
double time_call(F&& f, double min_time = 0.3) {
  f();
  double best = 1e30, t0 = now();
  for (int reps = 0; reps < 3 || now() - t0 < min_time; ++reps) {
    double t1 = now();
    f();
    best = std::min(best, now() - t1);
  }
  return best;
}

void fill_random(float* x, int64_t n, uint64_t seed) {
  parallel_for(0, n, 1 << 20, [&](int64_t lo, int64_t hi) {
    uint64_t s = seed ^ (uint64_t)lo * 0x9E3779B97F4A7C15ull;
    for (int64_t i = lo; i < hi; ++i) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      x[i] = (float)((s >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;  // uniform in [-1, 1)
    }
  });
}

// ---- ceilings ------------------------------------------------------------------------------------

__attribute__((target("avx512f"))) double fma_loop_avx512(int64_t iters) {
  __m512 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_set1_ps((float)i * 1e-3f);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  float s = 0;
  for (int i = 0; i < 16; ++i) s += _mm512_reduce_add_ps(acc[i]);
  return s;
}
__attribute__((target("avx2,fma"))) double fma_loop_avx2(int64_t iters) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps((float)i * 1e-3f);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  float s = 0;
  alignas(32) float tmp[8];
  for (int i = 0; i < 12; ++i) {
    _mm256_store_ps(tmp, acc[i]);
    for (float v : tmp) s += v;
  }
  return s;
}

// GFLOP/s of the FMA units with `threads` threads busy (2 flops per lane per FMA).
double fma_peak(int threads) {
  const bool z = simd_level() == SimdLevel::kAVX512;
  const int64_t iters = 20'000'000;
  const double flops_per_call = z ? 2.0 * 16 * 16 * iters : 2.0 * 8 * 12 * iters;
  std::atomic<int> sink{0};
  double t = time_call([&] {
    parallel_for(0, threads, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) sink += (int)(z ? fma_loop_avx512(iters) : fma_loop_avx2(iters));
    });
  }, 0.2);
  return threads * flops_per_call / t / 1e9;
}

// Built-in GEMM: the search's kernel on the search's shapes (a block of 256 queries, C^T
// tiles of 72 keys as at d = 768), 256 queries x 9216 keys x d = 768.
double builtin_gemm(int threads_used) {
  const int64_t b = 256, n = 9216, d = 768, tile = 72;
  std::vector<float> q(b * d), k(n * d);
  fill_random(q.data(), q.size(), 1);
  fill_random(k.data(), k.size(), 2);
  SimdLevel lv = simd_level();
  int64_t pw = cpu::panel_width(lv, b), bp = cpu::round_up(b, pw);
  cpu::AlignedBuf packed;
  cpu::pack_queries(packed.get(bp * d), q.data(), b, d, pw);
  const int64_t ntiles = n / tile;
  double t = time_call([&] {
    parallel_for(0, threads_used == 1 ? 1 : ntiles, 1, [&](int64_t lo, int64_t hi) {
      thread_local cpu::AlignedBuf ct;
      float* c = ct.get(tile * bp);
      int64_t T0 = threads_used == 1 ? 0 : lo, T1 = threads_used == 1 ? ntiles : hi;
      for (int64_t T = T0; T < T1; ++T) cpu::gemm_kat(lv, c, bp, packed.p, bp, pw, k.data() + T * tile * d, d, tile, d);
    });
  });
  return 2.0 * b * n * d / t / 1e9;
}

#ifdef MEMQ_HAVE_CBLAS
double openblas_gemm(int threads) {
  const int64_t b = 256, n = 9216, d = 768;
  std::vector<float> q(b * d), k(n * d), c(b * n);
  fill_random(q.data(), q.size(), 1);
  fill_random(k.data(), k.size(), 2);
  openblas_set_num_threads(threads);
  double t = time_call([&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b, n, d, 1.0f, q.data(), d, k.data(), d, 0.0f, c.data(), n);
  });
  openblas_set_num_threads(1);
  return 2.0 * b * n * d / t / 1e9;
}
#endif

__attribute__((target("avx2"))) float sum_avx2(const float* x, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i + 32 <= n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
    a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_loadu_ps(x + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_loadu_ps(x + i + 24));
  }
  alignas(32) float t[8];
  _mm256_store_ps(t, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}

// GB/s of a multi-threaded streaming read over 1 GiB (best of a few passes).
double read_bandwidth() {
  const int64_t n = (int64_t(1) << 30) / sizeof(float);
  std::vector<float> x(n);
  fill_random(x.data(), n, 3);
  std::atomic<int> sink{0};
  double best = 1e30;
  for (int rep = 0; rep < 4; ++rep) {
    double t0 = now();
    parallel_for(0, n, 1 << 22, [&](int64_t lo, int64_t hi) { sink += (int)sum_avx2(x.data() + lo, hi - lo); });
    best = std::min(best, now() - t0);
  }
  return n * sizeof(float) / best / 1e9;
}

struct Row {
  int64_t n, d, b, m;
  double sec, qps, gflops, pct_gemm, gbps, pct_bw;
};

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, json = false;
  int threads = 0;
  int64_t m = 32;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--json")) json = true;
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--m") && i + 1 < argc) m = std::atoll(argv[++i]);
  }
  if (threads > 0) set_num_threads(threads);
  const int P = num_threads();
  FILE* log = json ? stderr : stdout;
  double load = -1;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &load) != 1) load = -1;
    std::fclose(f);
  }
  std::fprintf(log, "memq bench_kernels: simd %s, blas %s, %d threads%s, load average %.2f at start\n",
               simd_name(simd_level()), blas_name().c_str(), P, quick ? " (quick)" : "", load);

  const double fma1 = simd_level() >= SimdLevel::kAVX2 ? fma_peak(1) : 0, fmaP = simd_level() >= SimdLevel::kAVX2 ? fma_peak(P) : 0;
  const double g1 = builtin_gemm(1), gP = builtin_gemm(P);
  double b1 = 0, bP = 0;
#ifdef MEMQ_HAVE_CBLAS
  b1 = openblas_gemm(1);
  bP = openblas_gemm(P);
#endif
  const double bw = read_bandwidth();
  const double ceiling = bP > 0 ? std::max(gP, bP) : gP;  // what the search's GEMM could reach
  std::fprintf(log, "ceilings: FMA peak %.1f GFLOP/s (1 thread) %.1f (%d); built-in GEMM %.1f (1 thread, %.0f%% of peak) %.1f (%d)",
               fma1, fmaP, P, g1, fma1 > 0 ? 100 * g1 / fma1 : 0.0, gP, P);
  if (bP > 0) std::fprintf(log, "; OpenBLAS sgemm %.1f (1 thread) %.1f (%d)", b1, bP, P);
  std::fprintf(log, "; read bandwidth %.1f GB/s\n", bw);

  std::vector<int64_t> Ns = quick ? std::vector<int64_t>{10000, 100000} : std::vector<int64_t>{10000, 100000, 1000000};
  std::vector<int64_t> Ds = quick ? std::vector<int64_t>{128, 768} : std::vector<int64_t>{128, 384, 768};
  std::vector<int64_t> Bs = quick ? std::vector<int64_t>{1, 32} : std::vector<int64_t>{1, 32, 256};
  std::vector<Row> rows;
  std::fprintf(log, "\n%8s %5s %4s %4s %10s %12s %9s %7s %9s %7s\n", "N", "d", "B", "M", "ms/call", "queries/s",
               "GFLOP/s", "%gemm", "keys GB/s", "%bw");
  KernelParams kp;
  kp.type = KernelType::kGaussian;
  kp.bandwidth = 1.0f;
  for (int64_t n : Ns)
    for (int64_t d : Ds) {
      std::vector<float> keys(n * d), norms(n);
      fill_random(keys.data(), keys.size(), 10 + n + d);
      row_norms2(norms.data(), keys.data(), n, d);  // the store caches norms
      KeyView kv;
      kv.keys = keys.data();
      kv.norms2 = norms.data();
      kv.n = n;
      kv.d = d;
      for (int64_t b : Bs) {
        std::vector<float> q(b * d), kern(b * m), d2(b * m);
        std::vector<int64_t> out(b * m);
        fill_random(q.data(), q.size(), 7 + b);
        double sec = time_call([&] {
          Status st = search_topm(out.data(), kern.data(), d2.data(), q.data(), b, kv, m, kp);
          if (!st.ok()) std::fprintf(stderr, "search_topm: %s\n", st.message().c_str()), std::exit(1);
        });
        Row r{n, d, b, m, sec, b / sec, 2.0 * b * n * d / sec / 1e9, 0, n * d * 4.0 / sec / 1e9, 0};
        r.pct_gemm = 100 * r.gflops / ceiling;
        r.pct_bw = 100 * r.gbps / bw;
        rows.push_back(r);
        std::fprintf(log, "%8lld %5lld %4lld %4lld %10.3f %12.1f %9.1f %6.0f%% %9.1f %6.0f%%\n", (long long)n,
                     (long long)d, (long long)b, (long long)m, sec * 1e3, r.qps, r.gflops, r.pct_gemm, r.gbps, r.pct_bw);
      }
    }

  if (json) {
    std::printf("{\"simd\":\"%s\",\"blas\":\"%s\",\"threads\":%d,\"quick\":%s,\"load_average\":%.2f,\n",
                simd_name(simd_level()), blas_name().c_str(), P, quick ? "true" : "false", load);
    std::printf(" \"ceilings\":{\"fma_peak_gflops_1t\":%.2f,\"fma_peak_gflops\":%.2f,\"builtin_gemm_gflops_1t\":%.2f,"
                "\"builtin_gemm_gflops\":%.2f,\"openblas_gemm_gflops_1t\":%.2f,\"openblas_gemm_gflops\":%.2f,"
                "\"read_bandwidth_gbps\":%.2f},\n \"search_topm\":[\n",
                fma1, fmaP, g1, gP, b1, bP, bw);
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::printf("  {\"n\":%lld,\"d\":%lld,\"b\":%lld,\"m\":%lld,\"ms_per_call\":%.4f,\"queries_per_s\":%.2f,"
                  "\"gflops\":%.2f,\"pct_gemm_ceiling\":%.1f,\"keys_gbps\":%.2f,\"pct_bandwidth\":%.1f}%s\n",
                  (long long)r.n, (long long)r.d, (long long)r.b, (long long)r.m, r.sec * 1e3, r.qps, r.gflops,
                  r.pct_gemm, r.gbps, r.pct_bw, i + 1 < rows.size() ? "," : "");
    }
    std::printf(" ]}\n");
  }
  return 0;
}
