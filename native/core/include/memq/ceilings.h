// This machine's own ceilings, measured in the same run as a benchmark so that kernel figures
// can be quoted as a fraction of them: the GEMM rate of the faster of gemm_abt (OpenBLAS when
// built with it, else the built-in one) and the search's own tile kernel, and the memory read
// bandwidth.
#pragma once
#include <cstdint>

namespace memq {

struct GemmCeiling {
  double gflops = 0;    // all threads together: the faster of the two below
  double gemm_abt_gflops = 0;  // gemm_abt (OpenBLAS when linked, else built-in + a transposed copy of C)
  double tile_gflops = 0;      // the fused search's own product: packed queries x key tiles, C^T in place
  const char* kernel = "";     // which of the two gflops is
  int64_t b = 0, n = 0, d = 0;
  int threads = 0;
};

// Every pool thread multiplies its own (b x d) by (n x d)^T for ~`seconds`, once with gemm_abt
// and once with the search's tile kernel; the ceiling is the faster.
GemmCeiling measure_gemm_ceiling(int64_t b, int64_t n, int64_t d, double seconds);

struct BandwidthCeiling {
  double gbytes_per_s = 0;  // read bandwidth, all threads together
  int64_t bytes = 0;
  int threads = 0;
};

// Multi-threaded streaming sum over a buffer of `bytes` (>= 4x the last-level cache), best of
// `reps` passes.
BandwidthCeiling measure_read_bandwidth(int64_t bytes, int reps);

}  // namespace memq
