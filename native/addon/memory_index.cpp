// N-API wrapper of the key store + the retrieval kernels: the native half of MemoryIndex.
// Two stores sit behind one internal interface (StoreBackend): the CPU memq::KeyStore
// (snapshot-isolated) and the device-resident memq::CudaKeyStore (cuda_backend.h). The wrapper
// validates arguments and lays out results once for both.
// Inputs are borrowed typed arrays (no copies); long calls run in an AsyncWorker that keeps the
// caller's buffers referenced until the Promise settles. A search sees the index as it was when
// it was called: the CPU store reads a Snapshot taken then; the CUDA store has no snapshots, so
// a write waits until the async searches issued before it have finished (CudaKeyStore itself
// serialises its operations).
#include <napi.h>

#include <atomic>
#include <cstring>
#include <new>
#include <cmath>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "memq/cuda/cuda_backend.h"
#include "memq/kernels.h"
#include "memq/key_store.h"
#include "memq/limits.h"
#include "util.h"

namespace memq_addon {

using memq::KernelParams;
using memq::KernelType;
using memq::Snapshot;
using memq::Status;

namespace {

// One search (+ optional estimate): the arguments shared by both stores. Outputs are
// pre-allocated typed arrays (or null when not wanted); queries are b x dim.
struct SearchArgs {
  KernelParams params;
  const float* queries = nullptr;
  int64_t b = 0, m = 0;
  int32_t* ids = nullptr;
  float* kernel = nullptr;
  float* dist2 = nullptr;
  float* value = nullptr;  // estimate: value and confidence instead of ids/kernel/dist2
  float* confidence = nullptr;
  float void_weight = 0.f, void_value = 0.f;
};

// What MemoryIndex needs from a store. Arguments are validated by the wrapper before they get
// here (shapes, types) and by the store itself (values, ids, capacity).
class StoreBackend {
 public:
  virtual ~StoreBackend() = default;
  virtual const char* name() const = 0;      // "cpu" | "cuda"
  virtual const char* key_type() const = 0;  // "float32" | "bf16" | "fp16"
  virtual Status add(int32_t* ids_out, const float* keys, const float* values, int64_t n) = 0;
  virtual Status add_with_ids(const int32_t* ids, const float* keys, const float* values, int64_t n) = 0;
  virtual Status update_values(const int32_t* ids, const float* values, int64_t n) = 0;
  virtual Status remove(const int32_t* ids, int64_t n) = 0;
  virtual Status get_keys(float* keys_out, const int32_t* ids, int64_t n) const = 0;
  virtual Status get_values(float* values_out, const int32_t* ids, int64_t n) const = 0;
  virtual void live_ids(int32_t* ids_out) const = 0;
  virtual void contains(uint8_t* out, const int32_t* ids, int64_t n) const = 0;
  virtual Status compact() = 0;
  virtual void clear() = 0;
  virtual int64_t size() const = 0;
  virtual int64_t rows() const = 0;
  virtual int64_t reserved_rows() const = 0;
  virtual int64_t dim() const = 0;
  virtual int64_t capacity() const = 0;
  virtual int32_t next_id() const = 0;
  virtual int64_t memory_bytes() const = 0;  // host memory (cpu) or device memory (cuda) held
  // Binds a search to the store as it is now; the returned body runs at once or later on a
  // worker thread, and gives the result of running at this instant.
  virtual std::function<Status()> bind_search(const SearchArgs& a) = 0;
};

// The store calls both backends forward unchanged; before_write() runs before every write (the
// CUDA store waits there for its searches in flight). memory_bytes and searching differ.
template <class S>
class ForwardingStore : public StoreBackend {
 public:
  explicit ForwardingStore(std::shared_ptr<S> s) : s_(std::move(s)) {}
  Status add(int32_t* ids_out, const float* k, const float* v, int64_t n) override {
    before_write();
    return s_->add(ids_out, k, v, n);
  }
  Status add_with_ids(const int32_t* ids, const float* k, const float* v, int64_t n) override {
    before_write();
    return s_->add_with_ids(ids, k, v, n);
  }
  Status update_values(const int32_t* ids, const float* v, int64_t n) override {
    before_write();
    return s_->update_values(ids, v, n);
  }
  Status remove(const int32_t* ids, int64_t n) override {
    before_write();
    return s_->remove(ids, n);
  }
  Status compact() override {
    before_write();
    return s_->compact();
  }
  void clear() override {
    before_write();
    s_->clear();
  }
  Status get_keys(float* out, const int32_t* ids, int64_t n) const override { return s_->get_keys(out, ids, n); }
  Status get_values(float* out, const int32_t* ids, int64_t n) const override { return s_->get_values(out, ids, n); }
  void live_ids(int32_t* out) const override { s_->live_ids(out); }
  void contains(uint8_t* out, const int32_t* ids, int64_t n) const override { s_->contains(out, ids, n); }
  int64_t size() const override { return s_->size(); }
  int64_t rows() const override { return s_->rows(); }
  int64_t reserved_rows() const override { return s_->reserved_rows(); }
  int64_t dim() const override { return s_->dim(); }
  int64_t capacity() const override { return s_->capacity(); }
  int32_t next_id() const override { return s_->next_id(); }

 protected:
  virtual void before_write() {}
  std::shared_ptr<S> s_;  // shared with in-flight searches where the store needs that
};

// ---- CPU: memq::KeyStore, searches read a Snapshot ---------------------------------------------
class CpuStore final : public ForwardingStore<memq::KeyStore> {
 public:
  explicit CpuStore(std::unique_ptr<memq::KeyStore> s) : ForwardingStore(std::shared_ptr<memq::KeyStore>(std::move(s))) {}
  const char* name() const override { return "cpu"; }
  const char* key_type() const override {
    switch (s_->key_type()) {
      case memq::KeyType::kBF16: return "bf16";
      case memq::KeyType::kInt8: return "int8";
      default: return "float32";
    }
  }
  int64_t memory_bytes() const override { return static_cast<int64_t>(s_->memory_bytes()); }

  std::function<Status()> bind_search(const SearchArgs& a) override {
    Snapshot snap = s_->snapshot();
    return [snap, a]() { return run(snap, a); };
  }

 private:
  static Status run(const Snapshot& snap, const SearchArgs& a) {
    const int64_t bm = a.b * a.m;  // <= limits::kMaxResultElements (checked by make_job)
    std::vector<int64_t> rows;
    std::vector<float> kbuf, dbuf;
    float* kout = a.kernel;
    float* dout = a.dist2;
    try {
      rows.resize(static_cast<size_t>(bm));
      if (!kout) kbuf.resize(static_cast<size_t>(bm));
      if (!dout) dbuf.resize(static_cast<size_t>(bm));
    } catch (const std::bad_alloc&) {
      return Status::NoMemory("out of memory while allocating " + std::to_string(bm) +
                              " rows for search results (b*m = " + std::to_string(a.b) + "*" + std::to_string(a.m) + ")");
    }
    if (!kout) kout = kbuf.data();
    if (!dout) dout = dbuf.data();
    MEMQ_RETURN_IF_ERROR(memq::search_topm(rows.data(), kout, dout, a.queries, a.b, snap.view(), a.m, a.params));
    if (a.ids) {
      const int32_t* row_ids = snap.ids();
      for (int64_t i = 0; i < bm; ++i) {
        const int64_t r = rows[static_cast<size_t>(i)];
        a.ids[i] = r < 0 ? -1 : row_ids[r];
      }
    }
    if (a.value) {
      MEMQ_RETURN_IF_ERROR(memq::kernel_weighted_value(a.value, a.confidence, rows.data(), kout, snap.values(),
                                                       snap.rows(), a.b, a.m, a.void_weight, a.void_value));
    }
    return Status::Ok();
  }
};

// ---- CUDA: memq::CudaKeyStore -------------------------------------------------------------------
// Counts the searches bound but not yet finished, so that a write can wait for them (the device
// store has no snapshots). Searches never wait for the main thread, so the wait always ends.
struct ReaderGate {
  std::mutex mu;
  std::condition_variable cv;
  int64_t pending = 0;
  void enter() {
    std::lock_guard<std::mutex> l(mu);
    ++pending;
  }
  void leave() {
    {
      std::lock_guard<std::mutex> l(mu);
      --pending;
    }
    cv.notify_all();
  }
  void wait_idle() {
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [this] { return pending == 0; });
  }
};

// One bound search's hold on the gate: released when the search has run (on its worker thread),
// or when the job is dropped without running.
struct ReaderToken {
  explicit ReaderToken(std::shared_ptr<ReaderGate> g) : gate(std::move(g)) { gate->enter(); }
  ~ReaderToken() { release(); }
  void release() {
    if (!done.exchange(true)) gate->leave();
  }
  std::shared_ptr<ReaderGate> gate;
  std::atomic<bool> done{false};
};

class CudaStore final : public ForwardingStore<memq::CudaKeyStore> {
 public:
  explicit CudaStore(std::unique_ptr<memq::CudaKeyStore> s)
      : ForwardingStore(std::shared_ptr<memq::CudaKeyStore>(std::move(s))), gate_(std::make_shared<ReaderGate>()) {}
  const char* name() const override { return "cuda"; }
  const char* key_type() const override { return memq::cuda_key_type_name(s_->key_type()); }
  int64_t memory_bytes() const override { return s_->device_bytes(); }

  std::function<Status()> bind_search(const SearchArgs& a) override {
    auto token = std::make_shared<ReaderToken>(gate_);
    std::shared_ptr<memq::CudaKeyStore> store = s_;
    return [store, token, a]() {
      Status st = run(*store, a);
      token->release();
      return st;
    };
  }

 private:
  static Status run(memq::CudaKeyStore& s, const SearchArgs& a) {
    if (a.value) {
      return s.search_value(a.value, a.confidence, a.queries, a.b, a.m, a.params, a.void_weight, a.void_value);
    }
    // search_topm writes ids (-1 in empty slots), kernel (0) and dist2 (+inf) like the CPU path.
    std::vector<int64_t> rows;
    try {
      rows.resize(static_cast<size_t>(a.b * a.m));
    } catch (const std::bad_alloc&) {
      return Status::NoMemory("out of memory while allocating " + std::to_string(a.b * a.m) +
                              " rows for search results (b*m = " + std::to_string(a.b) + "*" + std::to_string(a.m) + ")");
    }
    return s.search_topm(rows.data(), a.ids, a.kernel, a.dist2, a.queries, a.b, a.m, a.params);
  }

  void before_write() override { gate_->wait_idle(); }
  std::shared_ptr<ReaderGate> gate_;
};

}  // namespace

class MemoryIndexWrap : public Napi::ObjectWrap<MemoryIndexWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeMemoryIndex",
                       {
                           InstanceMethod("add", &MemoryIndexWrap::G<&MemoryIndexWrap::Add>),
                           InstanceMethod("addWithIds", &MemoryIndexWrap::G<&MemoryIndexWrap::AddWithIds>),
                           InstanceMethod("updateValues", &MemoryIndexWrap::G<&MemoryIndexWrap::UpdateValues>),
                           InstanceMethod("remove", &MemoryIndexWrap::G<&MemoryIndexWrap::Remove>),
                           InstanceMethod("getKeys", &MemoryIndexWrap::G<&MemoryIndexWrap::GetKeys>),
                           InstanceMethod("getValues", &MemoryIndexWrap::G<&MemoryIndexWrap::GetValues>),
                           InstanceMethod("liveIds", &MemoryIndexWrap::G<&MemoryIndexWrap::LiveIds>),
                           InstanceMethod("contains", &MemoryIndexWrap::G<&MemoryIndexWrap::Contains>),
                           InstanceMethod("compact", &MemoryIndexWrap::G<&MemoryIndexWrap::Compact>),
                           InstanceMethod("clear", &MemoryIndexWrap::G<&MemoryIndexWrap::Clear>),
                           InstanceMethod("setKernel", &MemoryIndexWrap::G<&MemoryIndexWrap::SetKernel>),
                           InstanceMethod("search", &MemoryIndexWrap::G<&MemoryIndexWrap::Search>),
                           InstanceMethod("searchSync", &MemoryIndexWrap::G<&MemoryIndexWrap::SearchSync>),
                           InstanceMethod("estimate", &MemoryIndexWrap::G<&MemoryIndexWrap::Estimate>),
                           InstanceMethod("estimateSync", &MemoryIndexWrap::G<&MemoryIndexWrap::EstimateSync>),
                           InstanceMethod("stats", &MemoryIndexWrap::G<&MemoryIndexWrap::Stats>),
                       });
  }

  // new NativeMemoryIndex(dim, kernelType (0|1|2), param, capacity[, backend 'cpu'|'cuda'[, keyType]])
  // backend is the resolved one (lib/retrieval.ts asks selectBackend for 'auto'); keyType
  // 'float32' | 'bf16' | 'fp16', the last two with 'cuda' only.
  explicit MemoryIndexWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<MemoryIndexWrap>(info) {
    guard(info.Env(), "MemoryIndex", [&] { init(info); });
  }

 private:
  // Every method runs through G: any C++ exception (std::bad_alloc from an allocation) becomes a
  // JS Error instead of std::terminate.
  template <Napi::Value (MemoryIndexWrap::*M)(const Napi::CallbackInfo&)>
  Napi::Value G(const Napi::CallbackInfo& info) {
    return guard(info.Env(), "MemoryIndex", [&] { return (this->*M)(info); });
  }

  void init(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 4) {
      throw Napi::TypeError::New(env, "NativeMemoryIndex(dim, kernel, param, capacity[, backend, keyType])");
    }
    const int64_t dim = int_arg(info[0], "dim", 1, 1 << 20);
    params_ = kernel_from_args(info[1], info[2]);
    const int64_t capacity = int_arg(info[3], "capacity", 0, 2147483647);
    const std::string backend = string_option(info, 4, "backend", "cpu");
    const std::string key_type = string_option(info, 5, "keyType", "float32");
    // info[6]: re-rank oversample factor for compressed CPU keys (0 / absent = off).
    const int64_t rerank = info.Length() > 6 && !info[6].IsUndefined() ? int_arg(info[6], "rerank", 0, 4096) : 0;
    if (backend != "cpu" && backend != "cuda") {
      throw Napi::TypeError::New(env, "MemoryIndex: backend must be 'cpu' or 'cuda' (resolved), got '" + backend + "'");
    }
    memq::CudaKeyType ktype = memq::CudaKeyType::kFloat32;
    if (key_type == "bf16") ktype = memq::CudaKeyType::kBFloat16;
    else if (key_type == "fp16") ktype = memq::CudaKeyType::kFloat16;
    else if (key_type != "float32" && key_type != "int8") {
      throw Napi::TypeError::New(env, "MemoryIndex: keyType must be 'float32', 'bf16', 'int8' or 'fp16', got '" + key_type + "'");
    }
    if (backend == "cpu") {
      if (key_type == "fp16") {
        throw Napi::TypeError::New(env, "MemoryIndex: keyType 'fp16' needs backend 'cuda'; the CPU backend stores float32, bf16 or int8 keys");
      }
      memq::KeyStoreOptions opts;
      opts.dim = dim;
      opts.capacity = capacity;
      opts.key_type = key_type == "bf16" ? memq::KeyType::kBF16 : key_type == "int8" ? memq::KeyType::kInt8 : memq::KeyType::kFloat32;
      if (rerank > 0 && opts.key_type == memq::KeyType::kFloat32) {
        throw Napi::TypeError::New(env, "MemoryIndex: rerank needs keyType 'bf16' or 'int8' (float32 search is already exact)");
      }
      opts.rerank_oversample = rerank;
      std::unique_ptr<memq::KeyStore> store;
      Status st = memq::KeyStore::Create(opts, &store);
      if (!st.ok()) throw status_error(env, st, "MemoryIndex");
      store_ = std::make_unique<CpuStore>(std::move(store));
    } else {
      if (key_type == "int8") {
        throw Napi::TypeError::New(env, "MemoryIndex: keyType 'int8' is not supported on backend 'cuda' (use 'bf16' or 'fp16'), or use backend 'cpu'");
      }
      if (rerank > 0) throw Napi::TypeError::New(env, "MemoryIndex: rerank is not supported on backend 'cuda'");
      memq::CudaKeyStoreOptions opts;  // compaction thresholds as KeyStoreOptions' defaults
      opts.dim = dim;
      opts.capacity = capacity;
      opts.key_type = ktype;
      std::unique_ptr<memq::CudaKeyStore> store;
      Status st = memq::CudaKeyStore::Create(opts, &store);
      // No device, no driver, out of device memory: a plain Error with the reason.
      if (!st.ok()) throw status_error(env, st, "MemoryIndex (backend 'cuda')");
      store_ = std::make_unique<CudaStore>(std::move(store));
    }
  }

  static std::string string_option(const Napi::CallbackInfo& info, size_t i, const char* name, const char* dflt) {
    if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull()) return dflt;
    if (!info[i].IsString()) throw Napi::TypeError::New(info.Env(), std::string("MemoryIndex: ") + name + " must be a string");
    return info[i].As<Napi::String>().Utf8Value();
  }

  static KernelParams kernel_from_args(const Napi::Value& type, const Napi::Value& param) {
    Napi::Env env = type.Env();
    KernelParams p;
    int64_t t = int_arg(type, "kernel", 0, 2);
    double v = number_arg(param, "kernel parameter");
    p.type = static_cast<KernelType>(t);
    if (p.type == KernelType::kGaussian) p.bandwidth = static_cast<float>(v);
    if (p.type == KernelType::kCosine) p.kappa = static_cast<float>(v);
    if (p.type == KernelType::kInverse) p.delta = static_cast<float>(v);
    Status st = memq::validate_kernel(p);
    if (!st.ok()) throw Napi::RangeError::New(env, "MemoryIndex: " + st.message());
    return p;
  }

  int64_t rows_of(size_t length, const char* name, Napi::Env env) {
    int64_t d = store_->dim();
    if (length % static_cast<size_t>(d) != 0) {
      throw Napi::RangeError::New(env, std::string(name) + ".length must be a multiple of dim (" + std::to_string(d) +
                                           "), got " + std::to_string(length));
    }
    return static_cast<int64_t>(length) / d;
  }

  Napi::Value Add(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto keys = typed_array_arg<float>(info[0], "keys");
    auto values = typed_array_arg<float>(info[1], "values");
    int64_t n = rows_of(keys.length, "keys", env);
    if (static_cast<int64_t>(values.length) != n) {
      throw Napi::RangeError::New(env, "values.length must equal the number of keys (" + std::to_string(n) + "), got " +
                                           std::to_string(values.length));
    }
    auto out = new_typed_array<int32_t>(env, static_cast<size_t>(n), "MemoryIndex.add ids");
    Status st = store_->add(out.Data(), keys.data, values.data, n);
    if (!st.ok()) throw status_error(env, st, "MemoryIndex.add");
    return out;
  }

  Napi::Value AddWithIds(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto ids = typed_array_arg<int32_t>(info[0], "ids");
    auto keys = typed_array_arg<float>(info[1], "keys");
    auto values = typed_array_arg<float>(info[2], "values");
    int64_t n = rows_of(keys.length, "keys", env);
    if (static_cast<int64_t>(values.length) != n || static_cast<int64_t>(ids.length) != n) {
      throw Napi::RangeError::New(env, "ids.length and values.length must equal the number of keys (" +
                                           std::to_string(n) + ")");
    }
    Status st = store_->add_with_ids(ids.data, keys.data, values.data, n);
    if (!st.ok()) throw status_error(env, st, "MemoryIndex.addWithIds");
    return env.Undefined();
  }

  Napi::Value UpdateValues(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto ids = typed_array_arg<int32_t>(info[0], "ids");
    auto values = typed_array_arg<float>(info[1], "values");
    if (ids.length != values.length) throw Napi::RangeError::New(env, "ids and values must have the same length");
    Status st = store_->update_values(ids.data, values.data, static_cast<int64_t>(ids.length));
    if (!st.ok()) throw status_error(env, st, "MemoryIndex.updateValues");
    return env.Undefined();
  }

  Napi::Value Remove(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto ids = typed_array_arg<int32_t>(info[0], "ids");
    Status st = store_->remove(ids.data, static_cast<int64_t>(ids.length));
    if (!st.ok()) throw status_error(env, st, "MemoryIndex.remove");
    return env.Undefined();
  }

  Napi::Value GetKeys(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto ids = typed_array_arg<int32_t>(info[0], "ids");
    check_result_elements(env, "MemoryIndex.getKeys", "ids.length*dim = " + std::to_string(ids.length) + "*" +
                          std::to_string(store_->dim()), static_cast<double>(ids.length) * static_cast<double>(store_->dim()));
    auto out = new_typed_array<float>(env, ids.length * static_cast<size_t>(store_->dim()), "MemoryIndex.getKeys");
    Status st = store_->get_keys(out.Data(), ids.data, static_cast<int64_t>(ids.length));
    if (!st.ok()) throw status_error(env, st, "MemoryIndex.getKeys");
    return out;
  }

  Napi::Value GetValues(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto ids = typed_array_arg<int32_t>(info[0], "ids");
    auto out = new_typed_array<float>(env, ids.length, "MemoryIndex.getValues");
    Status st = store_->get_values(out.Data(), ids.data, static_cast<int64_t>(ids.length));
    if (!st.ok()) throw status_error(env, st, "MemoryIndex.getValues");
    return out;
  }

  Napi::Value LiveIds(const Napi::CallbackInfo& info) {
    auto out = new_typed_array<int32_t>(info.Env(), static_cast<size_t>(store_->size()), "MemoryIndex.ids");
    store_->live_ids(out.Data());
    return out;
  }

  Napi::Value Contains(const Napi::CallbackInfo& info) {
    auto ids = typed_array_arg<int32_t>(info[0], "ids");
    auto out = new_typed_array<uint8_t>(info.Env(), ids.length, "MemoryIndex.has");
    store_->contains(out.Data(), ids.data, static_cast<int64_t>(ids.length));
    return out;
  }

  Napi::Value Compact(const Napi::CallbackInfo& info) {
    Status st = store_->compact();
    if (!st.ok()) throw status_error(info.Env(), st, "MemoryIndex.compact");
    return info.Env().Undefined();
  }

  Napi::Value Clear(const Napi::CallbackInfo& info) {
    store_->clear();
    return info.Env().Undefined();
  }

  Napi::Value SetKernel(const Napi::CallbackInfo& info) {
    params_ = kernel_from_args(info[0], info[1]);
    return info.Env().Undefined();
  }

  // An output of an async search that the caller supplied: the worker writes `scratch`, and
  // the result builder copies it into the caller's array on the main thread (the caller could
  // detach that array while the work runs; its memory would then be gone).
  struct PendingCopy {
    std::string key;  // property of the result object ("kernel", "value", ...)
    std::shared_ptr<std::vector<char>> scratch;
  };

  // Builds a search from (queries, m[, voidWeight, voidValue][, out]), allocates its outputs and
  // binds it to the store as it is now. Sizes are checked against limits.h before anything is
  // allocated; out arrays must be live, of the right type and length, and share no memory with
  // each other or with the queries. Async jobs copy the queries (the caller may reuse or
  // transfer them at once) and route caller-owned outputs through `copies`.
  std::function<Status()> make_job(const Napi::CallbackInfo& info, bool estimate, bool async, const char* where,
                                   Napi::Object* result, std::vector<PendingCopy>* copies) {
    Napi::Env env = info.Env();
    auto q = typed_array_arg<float>(info[0], "queries");
    int64_t b = rows_of(q.length, "queries", env);
    int64_t m = int_arg(info[1], "m", 1, memq::limits::kMaxM);
    // b*m elements of ids/kernel/dist2 (and of the internal rows, for estimate too).
    check_result_elements(env, where, "b*m = " + std::to_string(b) + "*" + std::to_string(m),
                          static_cast<double>(b) * static_cast<double>(m));
    SearchArgs job;
    job.params = params_;
    job.b = b;
    job.m = m;
    *result = Napi::Object::New(env);
    // Optional caller-owned outputs (zero allocation in hot loops; tests poison them).
    const size_t out_arg = estimate ? 4 : 2;
    Napi::Object out;
    if (info.Length() > out_arg && !info[out_arg].IsUndefined() && !info[out_arg].IsNull()) {
      if (!info[out_arg].IsObject()) throw Napi::TypeError::New(env, "out must be an object of typed arrays");
      out = info[out_arg].As<Napi::Object>();
    }
    std::vector<MemRange> ranges{mem_range("queries", q.value.As<Napi::TypedArray>())};
    // The caller's out.<name> (checked), or an empty value when absent.
    auto given = [&](const char* name, auto tag, size_t len) -> Napi::Value {
      using T = decltype(tag);
      if (out.IsEmpty() || !out.Has(name) || out.Get(name).IsUndefined()) return Napi::Value();
      const std::string full = std::string("out.") + name;
      auto a = typed_array_arg<T>(out.Get(name), full.c_str());
      if (a.length != len) {
        throw Napi::RangeError::New(env, full + ".length must be " + std::to_string(len) + ", got " +
                                             std::to_string(a.length));
      }
      ranges.push_back(mem_range(full, a.value.template As<Napi::TypedArray>()));
      return a.value;
    };
    const size_t bm = static_cast<size_t>(b * m);
    const size_t nb = static_cast<size_t>(b);
    Napi::Value g_value, g_conf, g_ids, g_kernel, g_dist2;
    if (estimate) {
      job.void_weight = static_cast<float>(number_arg(info[2], "voidWeight"));
      job.void_value = static_cast<float>(number_arg(info[3], "voidValue"));
      if (!(job.void_weight >= 0.f) || !std::isfinite(job.void_weight)) {
        throw Napi::RangeError::New(env, "voidWeight must be a finite number >= 0");
      }
      if (!std::isfinite(job.void_value)) throw Napi::RangeError::New(env, "voidValue must be finite");
      g_value = given("value", float{}, nb);
      g_conf = given("confidence", float{}, nb);
    } else {
      g_ids = given("ids", int32_t{}, bm);
      g_kernel = given("kernel", float{}, bm);
      g_dist2 = given("dist2", float{}, bm);
    }
    check_no_overlap(env, where, ranges);

    // Each output: the caller's array (sync: written directly; async: through scratch), or a
    // new array only this call holds until the Promise settles.
    auto bind = [&](const char* key, const Napi::Value& g, size_t len, auto tag) -> decltype(tag)* {
      using T = decltype(tag);
      if (!g.IsEmpty() && async) {
        auto scratch = std::make_shared<std::vector<char>>(len * sizeof(T));
        copies->push_back(PendingCopy{key, scratch});
        result->Set(key, g);
        return reinterpret_cast<T*>(scratch->data());
      }
      Napi::TypedArrayOf<T> arr = g.IsEmpty() ? new_typed_array<T>(env, len, std::string(where) + " results (" + key + ")")
                                              : g.template As<Napi::TypedArrayOf<T>>();
      result->Set(key, arr);
      return arr.Data();
    };
    if (estimate) {
      job.value = bind("value", g_value, nb, float{});
      job.confidence = bind("confidence", g_conf, nb, float{});
    } else {
      job.ids = bind("ids", g_ids, bm, int32_t{});
      job.kernel = bind("kernel", g_kernel, bm, float{});
      job.dist2 = bind("dist2", g_dist2, bm, float{});
    }
    if (!async) {
      job.queries = q.data;
      return store_->bind_search(job);  // last: nothing may throw after the search is bound
    }
    auto qcopy = std::make_shared<std::vector<float>>(q.data, q.data + q.length);
    job.queries = qcopy->data();
    std::function<Status()> run = store_->bind_search(job);
    return [run, qcopy]() { return run(); };
  }

  Napi::Value run_sync(const Napi::CallbackInfo& info, bool estimate, const char* where) {
    Napi::Object result;
    std::function<Status()> job = make_job(info, estimate, false, where, &result, nullptr);
    Status st = job();
    if (!st.ok()) throw status_error(info.Env(), st, where);
    return result;
  }

  Napi::Value run_async(const Napi::CallbackInfo& info, bool estimate, const char* where) {
    Napi::Object result;
    auto copies = std::make_shared<std::vector<PendingCopy>>();
    std::function<Status()> job = make_job(info, estimate, true, where, &result, copies.get());
    auto ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(result));
    std::string w = where;
    auto finish = [ref, copies, w](Napi::Env env) -> Napi::Value {
      Napi::Object r = ref->Value();
      ref->Reset();
      for (const PendingCopy& c : *copies) {
        Napi::Value v = r.Get(c.key);
        Napi::TypedArray ta = v.As<Napi::TypedArray>();
        if (is_detached(ta) || ta.ByteLength() != c.scratch->size()) {
          throw Napi::TypeError::New(env, w + ": out." + c.key +
                                              " was detached (transferred) or shrunk before the call finished; its results "
                                              "are lost. Do not transfer or resize out arrays until the Promise settles");
        }
        if (!c.scratch->empty()) {
          std::memcpy(typed_data(ta), c.scratch->data(), c.scratch->size());
        }
      }
      return r;
    };
    return PromiseWorker::Start(info.Env(), where, std::move(job), finish, {info.This()});
  }

  Napi::Value Search(const Napi::CallbackInfo& info) { return run_async(info, false, "MemoryIndex.search"); }
  Napi::Value SearchSync(const Napi::CallbackInfo& info) { return run_sync(info, false, "MemoryIndex.searchSync"); }
  Napi::Value Estimate(const Napi::CallbackInfo& info) { return run_async(info, true, "MemoryIndex.estimate"); }
  Napi::Value EstimateSync(const Napi::CallbackInfo& info) { return run_sync(info, true, "MemoryIndex.estimateSync"); }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("size", Napi::Number::New(env, static_cast<double>(store_->size())));
    o.Set("rows", Napi::Number::New(env, static_cast<double>(store_->rows())));
    o.Set("reservedRows", Napi::Number::New(env, static_cast<double>(store_->reserved_rows())));
    o.Set("dim", Napi::Number::New(env, static_cast<double>(store_->dim())));
    o.Set("capacity", Napi::Number::New(env, static_cast<double>(store_->capacity())));
    o.Set("nextId", Napi::Number::New(env, static_cast<double>(store_->next_id())));
    o.Set("memoryBytes", Napi::Number::New(env, static_cast<double>(store_->memory_bytes())));
    o.Set("backend", Napi::String::New(env, store_->name()));
    o.Set("keyType", Napi::String::New(env, store_->key_type()));
    return o;
  }

  std::unique_ptr<StoreBackend> store_;
  KernelParams params_;
};

Napi::Function InitMemoryIndex(Napi::Env env) { return MemoryIndexWrap::Init(env); }

}  // namespace memq_addon
