// The CUDA backend of the retrieval core (issue 6). No CUDA type appears here: this header is
// included by code built without CUDA (node-gyp, CPU-only CMake), where every function is a
// stub that returns Status::Unavailable("CUDA support not compiled in").
//
// The free functions have the same signatures as their CPU twins in memq/kernels.h with a
// `cuda_` prefix (host pointers in, host pointers out: they upload, compute on the device and
// download), validate exactly like the twins (on error nothing is written), and are tested
// against them. CudaKeyStore keeps the keys resident on the device for real workloads.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "memq/kernels.h"
#include "memq/status.h"

namespace memq {

// True when this binary contains the CUDA kernels (MEMQ_HAVE_CUDA), whatever the machine.
bool cuda_compiled();

struct CudaDeviceInfo {
  bool compiled = false;        // cuda_compiled()
  int device_count = 0;         // 0 when no driver / no device
  int device = -1;              // the device used (0), -1 when none
  std::string name;             // e.g. "NVIDIA H100 80GB HBM3"
  int cc_major = 0, cc_minor = 0;
  int sm_count = 0;
  int64_t total_bytes = 0, free_bytes = 0;
  int driver_version = 0;       // e.g. 12080 (0: no driver)
  int runtime_version = 0;      // the CUDA runtime linked in
  std::string reason;           // why no device is usable ("" when one is)
};

// Fills *out. Ok when a usable device exists (compute capability >= 8.0, the kernels are built
// for sm_90); otherwise Unavailable with the same text as out->reason: "CUDA support not
// compiled in", "no CUDA driver (libcuda.so.1 not found)", "CUDA driver too old for runtime
// 13.0", "no CUDA device", "device 0 has compute capability 7.5; memq needs >= 8.0", ...
// Never crashes and never aborts, also in a binary linked with the static CUDA runtime on a
// machine without a driver.
Status cuda_device_info(CudaDeviceInfo* out);

// Start-up self-test: small random searches (float32 and bf16 keys, gaussian/cosine/inverse,
// tombstones, N < M), kernel-weighted values and KL improvement on the device, each compared
// with its CPU twin. Ok only when a device exists and everything agrees; the report says what
// ran and what failed (or why nothing could run). `auto` backend selection uses CUDA only on Ok.
Status cuda_self_test(std::string* report);

// ---- backend selection ---------------------------------------------------------------------------
enum class Backend : int { kCpu = 0, kCuda = 1 };
struct BackendChoice {
  Backend backend = Backend::kCpu;
  std::string requested;         // "auto", "cpu" or "cuda" (after MEMQ_BACKEND)
  std::string reason;            // why this backend, e.g. "auto: CUDA not used: no CUDA device"
  std::string self_test_report;  // the self-test's report when it ran
};
// requested: "auto" | "cpu" | "cuda"; null or "" reads MEMQ_BACKEND from the environment
// (default "auto"). auto -> CUDA only when a device exists and cuda_self_test passes (run once
// per process, cached), else CPU with the reason; cuda -> Unavailable when it cannot be used;
// cpu -> CPU. Anything else -> InvalidArgument.
Status select_backend(const char* requested, BackendChoice* out);
const char* backend_name(Backend b);

// ---- the CPU twins' signatures (kernels.h), on the device --------------------------------------
// Keys are float32 here (the same KeyView as the CPU); the dot products use 3xTF32 tensor-core
// products (see docs/cuda.md for the accuracy argument). rows are < 2^31 - 1.
Status cuda_similarity(float* kernel_out, float* dist2_out, const float* queries, int64_t b,
                       const KeyView& keys, const KernelParams& p);
Status cuda_search_topm(int64_t* rows_out, float* kernel_out, float* dist2_out, const float* queries,
                        int64_t b, const KeyView& keys, int64_t m, const KernelParams& p);
Status cuda_kernel_weighted_value(float* value_out, float* confidence_out, const int64_t* rows,
                                  const float* kernel, const float* row_values, int64_t n_rows,
                                  int64_t b, int64_t m, float void_weight, float void_value);
Status cuda_kl_improve(float* policy_out, float* value_out, const float* log_prior, const float* q,
                       int64_t rows, int64_t cols, const int32_t* row_lengths, float alpha);

// ---- device-resident key store ------------------------------------------------------------------
enum class CudaKeyType : int { kFloat32 = 0, kBFloat16 = 1, kFloat16 = 2 };
const char* cuda_key_type_name(CudaKeyType t);

// Host-side rounding used by the store (round to nearest even), for tests and oracles.
float round_to_bf16(float x);
float round_to_fp16(float x);  // finite |x| > 65504 -> +-inf

struct CudaKeyStoreOptions {
  int64_t dim = 0;
  int64_t capacity = 0;             // max live cases; 0 = unlimited (bounded by int32 ids)
  int64_t initial_rows = 0;         // rows to reserve up front
  double compact_fraction = 0.25;   // compact when tombstones exceed this fraction of rows
  int64_t compact_min_rows = 1024;  // ... and at least this many
  CudaKeyType key_type = CudaKeyType::kFloat32;
  int device = 0;
  // Device memory that must stay free after any allocation of the store (other processes,
  // search workspaces). Allocations that would cut into it fail with OutOfMemory.
  int64_t reserve_bytes = 256ll << 20;
};

// Mirrors KeyStore (key_store.h): add with amortised growth, add_with_ids, update_values,
// remove with tombstones + compaction, get_*, live_ids, contains. Keys, norms, alive flags,
// values and ids live on the device (keys padded to a row stride of a multiple of 64 elements,
// stored as float32, bf16 or fp16; squared norms precomputed in float32 from the stored keys);
// values, ids and alive flags are mirrored on the host for validation and lookups. Adds upload
// only the new rows; value updates and removals upload only the touched rows; growth copies
// device to device.
//
// Consistency: every operation takes the store's mutex and runs in order on the store's own
// stream, and the host-pointer calls return only when their results are in host memory, so
// concurrent callers observe the same results as some sequential order (a search sees every
// write that returned before it started and none that started after it).
//
// Keys stored as bf16/fp16 are rounded on upload; queries are rounded to the same type before
// the tensor-core product (both operands must share a type), and query norms are taken from the
// rounded queries: the results equal the CPU twin run on the rounded keys and rounded queries,
// up to float32 summation order. fp16 rejects keys/queries with |x| > 65504.
class CudaKeyStore {
 public:
  static Status Create(const CudaKeyStoreOptions& opts, std::unique_ptr<CudaKeyStore>* out);
  ~CudaKeyStore();
  CudaKeyStore(const CudaKeyStore&) = delete;
  CudaKeyStore& operator=(const CudaKeyStore&) = delete;

  Status add(int32_t* ids_out, const float* keys, const float* values, int64_t n);
  Status add_with_ids(const int32_t* ids, const float* keys, const float* values, int64_t n);
  Status update_values(const int32_t* ids, const float* values, int64_t n);
  Status remove(const int32_t* ids, int64_t n);
  Status get_keys(float* keys_out, const int32_t* ids, int64_t n) const;  // the stored (rounded) keys
  Status get_values(float* values_out, const int32_t* ids, int64_t n) const;
  void live_ids(int32_t* ids_out) const;
  void contains(uint8_t* out, const int32_t* ids, int64_t n) const;
  Status compact();
  void clear();

  // search_topm of kernels.h over the store: rows_out are store rows (as Snapshot rows), ids_out
  // (nullable) their ids, -1 in empty slots. Any output but rows_out may be null.
  Status search_topm(int64_t* rows_out, int32_t* ids_out, float* kernel_out, float* dist2_out,
                     const float* queries, int64_t b, int64_t m, const KernelParams& p);
  // search_topm fused with kernel_weighted_value (MATH §3) over the stored values, on the device.
  Status search_value(float* value_out, float* confidence_out, const float* queries, int64_t b,
                      int64_t m, const KernelParams& p, float void_weight, float void_value);
  // For benches: queries (b x dim float32) and outputs (b*m each; any but rows may be null) are
  // DEVICE pointers, the work is enqueued on the store's stream and not waited for; inputs are
  // not validated beyond shapes. Call synchronize() before reading the outputs.
  Status search_topm_device(int64_t* rows_out, float* kernel_out, float* dist2_out,
                            const float* queries_device, int64_t b, int64_t m, const KernelParams& p);
  Status synchronize() const;
  void* stream() const;  // the cudaStream_t the store runs on

  int64_t size() const;
  int64_t rows() const;
  int64_t dim() const;
  int64_t capacity() const;
  int32_t next_id() const;
  int64_t reserved_rows() const;
  int64_t device_bytes() const;  // device memory held by the store (keys, norms, flags, values, ids, workspace)
  CudaKeyType key_type() const;

  struct Impl;

 private:
  CudaKeyStore();
  std::unique_ptr<Impl> impl_;
};

}  // namespace memq
