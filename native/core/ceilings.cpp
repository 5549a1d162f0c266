#include "memq/ceilings.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cpu/internal.h"
#include "memq/cpu_features.h"
#include "memq/kernels.h"
#include "memq/thread_pool.h"

namespace memq {

namespace {
double now_s() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}
}  // namespace

namespace {

// Every pool thread runs `product` on its own data for ~`seconds` (after one warm-up call);
// returns GFLOP/s of all threads together, 2·b·n·d per call.
template <class Product>
double time_products(int64_t b, int64_t n, int64_t d, double seconds, Product product) {
  const int t = num_threads();
  std::atomic<int64_t> products{0};
  auto body = [&](bool timed) {
    parallel_for(0, t, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t w = lo; w < hi; ++w) {
        std::vector<float> a(static_cast<size_t>(b * d)), k(static_cast<size_t>(n * d));
        for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>((i * 2654435761u) % 1000) * 1e-3f;
        for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<float>((i * 40503u) % 1000) * 1e-3f;
        double start = now_s();
        do {
          product(a.data(), k.data());
          if (timed) products.fetch_add(1);
        } while (timed && now_s() - start < seconds);
      }
    });
  };
  body(false);
  const double t0 = now_s();
  body(true);
  const double t1 = now_s();
  return 2.0 * static_cast<double>(b) * static_cast<double>(n) * static_cast<double>(d) *
         static_cast<double>(products.load()) / (t1 - t0) * 1e-9;
}

}  // namespace

GemmCeiling measure_gemm_ceiling(int64_t b, int64_t n, int64_t d, double seconds) {
  GemmCeiling out;
  out.b = b;
  out.n = n;
  out.d = d;
  out.threads = num_threads();
  // (1) gemm_abt: OpenBLAS's sgemm when linked, else the built-in kernels plus a transposed
  // copy of C.
  out.gemm_abt_gflops = time_products(b, n, d, seconds, [&](const float* a, const float* k) {
    thread_local std::vector<float> c;
    if (c.size() < static_cast<size_t>(b * n)) c.resize(static_cast<size_t>(b * n));
    gemm_abt(c.data(), n, a, b, k, n, d);
  });
  // (2) the fused search's own product: key tiles of cpu::tile_rows(d) rows times packed
  // query blocks, C^T consumed in place (not copied out).
  const SimdLevel lv = simd_level();
  const int64_t tile = cpu::tile_rows(d);
  out.tile_gflops = time_products(b, n, d, seconds, [&](const float* a, const float* k) {
    cpu::gemm_tiles(lv, a, b, k, n, d, tile, nullptr);
  });
  out.gflops = std::max(out.gemm_abt_gflops, out.tile_gflops);
  out.kernel = out.tile_gflops >= out.gemm_abt_gflops ? "built-in tile kernel (gemm_kat, the search's)" : "gemm_abt";
  return out;
}

BandwidthCeiling measure_read_bandwidth(int64_t bytes, int reps) {
  BandwidthCeiling out;
  const int64_t n = std::max<int64_t>(bytes / 4, 1 << 20);
  out.bytes = n * 4;
  out.threads = num_threads();
  float* buf = static_cast<float*>(std::aligned_alloc(64, static_cast<size_t>(n) * 4));
  if (!buf) return out;
  // First touch in parallel, so pages land near the threads that read them.
  parallel_for(0, n, 1 << 16, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) buf[i] = static_cast<float>(i & 1023);
  });
  std::atomic<uint32_t> sink{0};
  double best = 1e300;
  for (int r = 0; r < std::max(1, reps); ++r) {
    double t0 = now_s();
    parallel_for(0, n, 1 << 18, [&](int64_t lo, int64_t hi) {
      // 8 independent accumulators: the loop is bound by loads, not by the add latency.
      float s[16] = {0};
      int64_t i = lo;
      for (; i + 16 <= hi; i += 16) {
        for (int j = 0; j < 16; ++j) s[j] += buf[i + j];
      }
      for (; i < hi; ++i) s[0] += buf[i];
      float tot = 0;
      for (float v : s) tot += v;
      uint32_t bits;
      std::memcpy(&bits, &tot, 4);
      sink.fetch_xor(bits);
    });
    best = std::min(best, now_s() - t0);
  }
  std::free(buf);
  out.gbytes_per_s = static_cast<double>(out.bytes) / best * 1e-9;
  if (sink.load() == 0xffffffffu) out.gbytes_per_s += 0;  // keep the sums observable
  return out;
}

}  // namespace memq
