// memq/cuda/cuda_bench.h: device buffers, copies and event timing for benches and tests.
#include <algorithm>

#include "common.cuh"
#include "memq/cuda/cuda_bench.h"

namespace memq {

using namespace cudak;

Status cuda_bench_alloc(void** ptr, size_t bytes) {
  if (!ptr) return Status::Invalid("ptr is null");
  *ptr = nullptr;
  MEMQ_RETURN_IF_ERROR(check_free_memory(bytes, 64ll << 20, "bench buffer"));
  MEMQ_CUDA_TRY(cudaMalloc(ptr, bytes ? bytes : 256));
  return Status::Ok();
}

void cuda_bench_free(void* ptr) {
  if (ptr) cudaFree(ptr);
}

Status cuda_bench_copy_to_device(void* dst, const void* src, size_t bytes) {
  MEMQ_CUDA_TRY(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
  return Status::Ok();
}

Status cuda_bench_copy_to_host(void* dst, const void* src, size_t bytes) {
  MEMQ_CUDA_TRY(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
  return Status::Ok();
}

namespace {
struct Events {
  cudaEvent_t a = nullptr, b = nullptr;
  ~Events() {
    if (a) cudaEventDestroy(a);
    if (b) cudaEventDestroy(b);
  }
};
}  // namespace

Status cuda_bench_time(void* stream, int warmup, int reps, const std::function<Status()>& fn,
                       std::vector<double>* ms_out) {
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  Events ev;
  MEMQ_CUDA_TRY(cudaEventCreate(&ev.a));
  MEMQ_CUDA_TRY(cudaEventCreate(&ev.b));
  for (int i = 0; i < warmup; ++i) MEMQ_RETURN_IF_ERROR(fn());
  MEMQ_CUDA_TRY(cudaStreamSynchronize(st));
  if (ms_out) ms_out->clear();
  for (int i = 0; i < reps; ++i) {
    MEMQ_CUDA_TRY(cudaEventRecord(ev.a, st));
    MEMQ_RETURN_IF_ERROR(fn());
    MEMQ_CUDA_TRY(cudaEventRecord(ev.b, st));
    MEMQ_CUDA_TRY(cudaEventSynchronize(ev.b));
    float ms = 0.0f;
    MEMQ_CUDA_TRY(cudaEventElapsedTime(&ms, ev.a, ev.b));
    if (ms_out) ms_out->push_back(ms);
  }
  return Status::Ok();
}

Status cuda_bench_copy_bandwidth(size_t bytes, int reps, double* gb_per_s) {
  void *src = nullptr, *dst = nullptr;
  MEMQ_RETURN_IF_ERROR(cuda_bench_alloc(&src, bytes));
  Status st = cuda_bench_alloc(&dst, bytes);
  if (!st.ok()) {
    cudaFree(src);
    return st;
  }
  cudaStream_t s = nullptr;
  std::vector<double> ms;
  cudaError_t e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  if (e == cudaSuccess) {
    cudaMemsetAsync(src, 1, bytes, s);
    st = cuda_bench_time(s, 2, reps, [&]() -> Status {
      MEMQ_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s));
      return Status::Ok();
    }, &ms);
    cudaStreamDestroy(s);
  } else {
    st = to_status(e, "cudaStreamCreate", __FILE__, __LINE__);
  }
  cudaFree(src);
  cudaFree(dst);
  MEMQ_RETURN_IF_ERROR(st);
  const double best = *std::min_element(ms.begin(), ms.end());
  if (gb_per_s) *gb_per_s = 2.0 * (double)bytes / (best * 1e-3) / 1e9;
  return Status::Ok();
}

}  // namespace memq
