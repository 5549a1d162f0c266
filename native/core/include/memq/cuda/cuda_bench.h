// Small device helpers for benches and tests that are compiled without the CUDA headers
// (native/bench, native/tests): raw device buffers, copies, timing on a stream with CUDA
// events, and the measured device-copy bandwidth (the B = 1 roofline). Stubs without CUDA.
#pragma once
#include <cstddef>
#include <functional>
#include <vector>

#include "memq/status.h"

namespace memq {

Status cuda_bench_alloc(void** ptr, size_t bytes);   // checks free memory first
void cuda_bench_free(void* ptr);
Status cuda_bench_copy_to_device(void* dst, const void* src, size_t bytes);
Status cuda_bench_copy_to_host(void* dst, const void* src, size_t bytes);

// Runs fn() `warmup` times, then `reps` times with CUDA events recorded on `stream` (a
// cudaStream_t, e.g. CudaKeyStore::stream()) around each call; ms_out gets one time per rep.
Status cuda_bench_time(void* stream, int warmup, int reps, const std::function<Status()>& fn,
                       std::vector<double>* ms_out);

// Device-to-device cudaMemcpy of `bytes` (read + write counted: 2 * bytes per copy), best of reps.
Status cuda_bench_copy_bandwidth(size_t bytes, int reps, double* gb_per_s);

}  // namespace memq
