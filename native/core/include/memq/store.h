// The retrieval store behind MemoryIndex: one interface over the CPU key store (key_store.h)
// and the device-resident CUDA key store (cuda/cuda_backend.h). The N-API addon only unwraps
// typed arrays, calls a Store and maps its Status to JS errors; everything here is plain C++.
//
// Values are validated here (once): the kernel parameter (Create, set_kernel), ids, keys,
// values and capacity (the backends), m and the estimate's void weight and value (bind_search).
// The search kernels check queries (finite, norms) when a job runs.
// Shapes and types are the caller's (lib/retrieval.ts): pointers must hold the counts passed.
//
// Threads and snapshot reads. One writer thread (the JS main thread in the addon) calls every
// method; bind_search also runs on it. The SearchJob it returns may run at once or later on any
// thread, concurrently with later writes and other jobs, and gives the result of searching the
// store as it was when bind_search was called (a search never sees a half-applied write, nor any
// write made after it was bound):
//   - CPU: the job holds a KeyStore Snapshot; writers never wait for readers and readers never
//     wait for writers.
//   - CUDA: the device store has no snapshots, so each write first WAITS until every job bound
//     before it has run or been destroyed (a reader gate). Writers may therefore wait for
//     readers on CUDA; jobs never wait for the writer, so the wait always ends as long as bound
//     jobs are eventually run or dropped. (CudaKeyStore serialises its own operations.)
// A job must be run at most once; dropping it unrun releases what it holds.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "memq/kernels.h"
#include "memq/status.h"

namespace memq {

enum class StoreBackend : int { kCpu = 0, kCuda = 1 };

// How keys are held: a parameter of the backend. CPU: float32, bf16, int8 (key_store.h,
// kernels.h KeyType); CUDA: float32, bf16, fp16.
enum class StoreKeyType : int { kFloat32 = 0, kBFloat16 = 1, kFloat16 = 2, kInt8 = 3 };
const char* store_key_type_name(StoreKeyType t);  // "float32" | "bf16" | "fp16" | "int8"

struct StoreOptions {
  StoreBackend backend = StoreBackend::kCpu;
  StoreKeyType key_type = StoreKeyType::kFloat32;
  int64_t dim = 0;
  int64_t capacity = 0;  // max live cases; 0 = unlimited (bounded by int32 ids)
  KernelParams kernel;
  // CPU with bf16/int8 keys only: keep rerank_oversample * m candidates found on the compressed
  // keys and return the exact float32 top-m among them (0: off; results exact for the
  // converted keys).
  int64_t rerank_oversample = 0;
};

// One search (top-m ids/kernel/dist2) or estimate (value/confidence of kernels.h's
// kernel_weighted_value over the top m). queries are b x dim; outputs hold b*m (search) or b
// (estimate) elements or are null when not wanted. Pointers must stay valid until the job ran.
struct SearchRequest {
  const float* queries = nullptr;
  int64_t b = 0, m = 0;
  int32_t* ids = nullptr;
  float* kernel = nullptr;
  float* dist2 = nullptr;
  bool estimate = false;
  float* value = nullptr;
  float* confidence = nullptr;
  double void_weight = 0.0, void_value = 0.0;  // checked in double, used as float32
};

using SearchJob = std::function<Status()>;

class Store {
 public:
  // InvalidArgument for a key type the backend does not hold, OutOfRange for a bad kernel
  // parameter, Unavailable (CUDA) without a device or driver.
  static Status Create(const StoreOptions& opts, std::unique_ptr<Store>* out);
  virtual ~Store() = default;

  virtual const char* name() const = 0;  // "cpu" | "cuda"
  virtual StoreKeyType key_type() const = 0;

  // Mutations (writer thread). Same contracts as KeyStore's.
  virtual Status add(int32_t* ids_out, const float* keys, const float* values, int64_t n) = 0;
  virtual Status add_with_ids(const int32_t* ids, const float* keys, const float* values, int64_t n) = 0;
  virtual Status update_values(const int32_t* ids, const float* values, int64_t n) = 0;
  virtual Status remove(const int32_t* ids, int64_t n) = 0;
  virtual Status compact() = 0;
  virtual void clear() = 0;
  Status set_kernel(const KernelParams& p);  // OutOfRange (and the kernel unchanged) if invalid
  const KernelParams& kernel() const { return kernel_; }

  // Point reads (writer thread).
  virtual Status get_keys(float* keys_out, const int32_t* ids, int64_t n) const = 0;
  virtual Status get_values(float* values_out, const int32_t* ids, int64_t n) const = 0;
  virtual void live_ids(int32_t* ids_out) const = 0;  // size() ids
  virtual void contains(uint8_t* out, const int32_t* ids, int64_t n) const = 0;
  virtual int64_t size() const = 0;
  virtual int64_t rows() const = 0;
  virtual int64_t reserved_rows() const = 0;
  virtual int64_t dim() const = 0;
  virtual int64_t capacity() const = 0;
  virtual int32_t next_id() const = 0;
  virtual int64_t memory_bytes() const = 0;  // host (cpu) or device (cuda) memory held
  // Memory-mapped keys (KeyStore::map_keys): the CPU backend; others answer InvalidArgument.
  virtual Status map_keys(const std::string& file, const int32_t* ids, const float* values, int64_t n) {
    (void)file, (void)ids, (void)values, (void)n;
    return Status::Invalid(std::string("mapKeys: the ") + name() + " backend cannot map keys from a file; use the cpu backend");
  }
  virtual int64_t mapped_rows() const { return 0; }

  // Snapshot read: checks the request's values (b >= 0, m in [1, limits::kMaxM], estimate's
  // void weight finite >= 0 and void value finite) and binds it to the store as it is now, with
  // the current kernel. On error *job is left empty. The caller sizes the outputs (b*m, or b).
  Status bind_search(const SearchRequest& r, SearchJob* job);

 protected:
  explicit Store(const KernelParams& k) : kernel_(k) {}
  virtual SearchJob bind(const SearchRequest& r, const KernelParams& k) = 0;

 private:
  KernelParams kernel_;
};

}  // namespace memq
