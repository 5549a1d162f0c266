// Internals shared by the .cu files of the CUDA backend (not a public header).
// Every CUDA call goes through MEMQ_CUDA_TRY (turning a cudaError_t into a Status with the
// call's text and location) and every launch is followed by MEMQ_CUDA_LAUNCH (cudaGetLastError).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <string>

#include "memq/cuda/cuda_backend.h"
#include "memq/kernels.h"
#include "memq/status.h"

namespace memq {
namespace cudak {

constexpr float kInfF = std::numeric_limits<float>::infinity();

// cudaError_t -> Status (OutOfMemory for allocation failures, Unavailable for missing
// driver/device, Internal otherwise). Clears the sticky-free last error.
Status to_status(cudaError_t e, const char* what, const char* file, int line);

#define MEMQ_CUDA_TRY(expr)                                                               \
  do {                                                                                    \
    cudaError_t _memq_e = (expr);                                                         \
    if (_memq_e != cudaSuccess) return ::memq::cudak::to_status(_memq_e, #expr, __FILE__, __LINE__); \
  } while (0)

#define MEMQ_CUDA_LAUNCH(what)                                                            \
  do {                                                                                    \
    cudaError_t _memq_e = cudaGetLastError();                                             \
    if (_memq_e != cudaSuccess) return ::memq::cudak::to_status(_memq_e, what, __FILE__, __LINE__); \
  } while (0)

// Properties of the current device, read once per process (device 0 unless set).
struct DeviceProps {
  int device = 0;
  int sm_count = 0;
  int64_t max_smem_optin = 0;  // bytes of dynamic shared memory a block may opt into
  std::string name;
};
Status device_props(int device, DeviceProps* out);

// Fails with OutOfMemory unless `bytes` more can be allocated leaving `reserve` free.
Status check_free_memory(size_t bytes, int64_t reserve, const char* what);

// Grow-only device scratch. ensure() synchronizes `stream` before freeing an old buffer (work
// enqueued earlier may still read it), checks free memory, then allocates.
struct DevBuf {
  void* p = nullptr;
  size_t bytes = 0;
  DevBuf() = default;
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  ~DevBuf();
  Status ensure(size_t n, int64_t reserve, cudaStream_t stream, const char* what);
  void release();
  template <class T>
  T* as() const { return static_cast<T*>(p); }
};

// Row strides: keys and queries are padded with zeros to a multiple of 64 elements, so every
// row starts 128-byte aligned and the tiles need no tail handling along d.
inline int64_t padded_dim(int64_t d) { return (d + 63) / 64 * 64; }
inline size_t key_type_size(CudaKeyType t) { return t == CudaKeyType::kFloat32 ? 4 : 2; }

// Keys on the device (row-major n x ld of `type`, zero padded), squared norms, alive flags.
struct DevKeys {
  const void* keys = nullptr;
  int64_t ld = 0, n = 0, d = 0;
  const float* norms2 = nullptr;  // n
  const uint8_t* alive = nullptr; // n or null (all alive)
  CudaKeyType type = CudaKeyType::kFloat32;
};

// Queries converted to the key type (b_alloc x ld, zero padded), with norms of the converted rows.
struct DevQueries {
  const void* q = nullptr;
  int64_t ld = 0, b = 0;
  const float* qn2 = nullptr;
  const float* qinv = nullptr;
};

// Converts b x d float32 rows (device, contiguous) to `type` rows of stride ld (zero padded)
// and writes their squared norms (float32, from the converted values) and 1/norm.
// Also used for keys (qinv may be null).
Status convert_rows(void* dst, float* norms2, float* inv, const float* src, int64_t rows, int64_t d,
                    int64_t ld, CudaKeyType type, cudaStream_t stream);

// Converts stored rows back to float32 (rows listed in `row_idx`, device) for get_keys.
Status gather_rows_f32(float* dst, const void* keys, const int32_t* row_idx, int64_t n, int64_t d,
                       int64_t ld, CudaKeyType type, cudaStream_t stream);

// Outputs of a search (device pointers). rows is required; ids (with id_map) optional.
struct SearchOut {
  int64_t* rows = nullptr;
  int32_t* ids = nullptr;
  const int32_t* id_map = nullptr;  // row -> id, needed when ids != null
  float* kernel = nullptr;
  float* dist2 = nullptr;
};

// Fused similarity + top-M (search.cu). `ws` is grown as needed (queries are processed in
// batches when the candidate lists would not fit the workspace budget).
Status search_device(const DevKeys& keys, const DevQueries& queries, int64_t m, const KernelParams& p,
                     const SearchOut& out, DevBuf& ws, int64_t reserve, cudaStream_t stream);

// Dense B x N kernel values / squared distances (search.cu); dist2_out may be null.
Status similarity_device(float* kernel_out, float* dist2_out, const DevKeys& keys,
                         const DevQueries& queries, const KernelParams& p, cudaStream_t stream);

// Kernel-weighted value (MATH §3) on device pointers (small_kernels.cu). Inputs pre-validated.
Status kwv_device(float* value_out, float* confidence_out, const int64_t* rows, const float* kernel,
                  const float* row_values, int64_t b, int64_t m, float void_weight, float void_value,
                  cudaStream_t stream);

// KL improvement (MATH §5) on device pointers (small_kernels.cu). Inputs pre-validated.
Status kl_device(float* policy_out, float* value_out, const float* log_prior, const float* q,
                 int64_t rows, int64_t cols, const int32_t* row_lengths, float alpha, cudaStream_t stream);


// The device's own stream-less helpers.
Status ensure_device(int device);  // cudaSetDevice after checking a usable device exists

}  // namespace cudak
}  // namespace memq
