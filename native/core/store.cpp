// memq::Store (store.h) over the CPU KeyStore (snapshots) and the CUDA CudaKeyStore (reader gate).
#include "memq/store.h"

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "memq/cuda/cuda_backend.h"
#include "memq/validate.h"
#include "memq/key_store.h"
#include "memq/limits.h"

namespace memq {

const char* store_key_type_name(StoreKeyType t) {
  switch (t) {
    case StoreKeyType::kFloat32:
      return "float32";
    case StoreKeyType::kBFloat16:
      return "bf16";
    case StoreKeyType::kFloat16:
      return "fp16";
    case StoreKeyType::kInt8:
      return "int8";
  }
  return "unknown";
}

namespace {
// A number as JavaScript's String() spells the special values.
std::string js_number(double x) {
  if (std::isnan(x)) return "NaN";
  if (std::isinf(x)) return x > 0 ? "Infinity" : "-Infinity";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}
}  // namespace

Status Store::set_kernel(const KernelParams& p) {
  MEMQ_RETURN_IF_ERROR(validate_kernel(p));
  kernel_ = p;
  return Status::Ok();
}

Status Store::bind_search(const SearchRequest& r, SearchJob* job) {
  *job = SearchJob();
  if (r.b < 0) return Status::Invalid("the number of queries must be >= 0, got " + std::to_string(r.b));
  if (r.m < 1 || r.m > limits::kMaxM) {
    return Status::OutOfRange("m must be an integer in [1, " + std::to_string(limits::kMaxM) + "], got " +
                              std::to_string(r.m));
  }
  MEMQ_RETURN_IF_ERROR(validate_queries(r.queries, r.b, dim()));
  if (r.estimate) {
    // In double, as the caller passed them (a float32 cast would turn -1e-50 into -0).
    if (!(std::isfinite(r.void_weight) && r.void_weight >= 0.0)) {
      return Status::OutOfRange("voidWeight must be a finite number >= 0, got " + js_number(r.void_weight));
    }
    if (!std::isfinite(r.void_value)) return Status::OutOfRange("voidValue must be a finite number, got " + js_number(r.void_value));
  }
  *job = bind(r, kernel_);
  return Status::Ok();
}

namespace {

Status rows_scratch(std::vector<int64_t>* rows, const SearchRequest& r) {
  try {
    rows->resize(static_cast<size_t>(r.b * r.m));
  } catch (const std::bad_alloc&) {
    return Status::NoMemory("out of memory while allocating " + std::to_string(r.b * r.m) +
                            " rows for search results (b*m = " + std::to_string(r.b) + "*" + std::to_string(r.m) + ")");
  }
  return Status::Ok();
}

// Mutations forward unchanged; before_write() runs first (the CUDA store waits there).
template <class S>
class ForwardingStore : public Store {
 public:
  ForwardingStore(std::shared_ptr<S> s, const KernelParams& k) : Store(k), s_(std::move(s)) {}
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
  std::shared_ptr<S> s_;  // shared with bound jobs where the backend needs that
};

// ---- CPU: a job reads the Snapshot taken when it was bound ---------------------------------------
class CpuStore final : public ForwardingStore<KeyStore> {
 public:
  CpuStore(std::unique_ptr<KeyStore> s, const KernelParams& k)
      : ForwardingStore(std::shared_ptr<KeyStore>(std::move(s)), k) {}
  const char* name() const override { return "cpu"; }
  StoreKeyType key_type() const override {
    switch (s_->key_type()) {
      case KeyType::kBF16:
        return StoreKeyType::kBFloat16;
      case KeyType::kInt8:
        return StoreKeyType::kInt8;
      default:
        return StoreKeyType::kFloat32;
    }
  }
  int64_t memory_bytes() const override { return static_cast<int64_t>(s_->memory_bytes()); }
  Status map_keys(const std::string& file, const int32_t* ids, const float* values, int64_t n) override {
    return s_->map_keys(file, ids, values, n);
  }
  int64_t mapped_rows() const override { return s_->mapped_rows(); }

 protected:
  SearchJob bind(const SearchRequest& r, const KernelParams& k) override {
    Snapshot snap = s_->snapshot();
    return [snap, r, k]() { return run(snap, r, k); };
  }

 private:
  static Status run(const Snapshot& snap, const SearchRequest& r, const KernelParams& k) {
    const int64_t bm = r.b * r.m;
    std::vector<int64_t> rows;
    std::vector<float> kbuf, dbuf;
    float* kout = r.kernel;
    float* dout = r.dist2;
    MEMQ_RETURN_IF_ERROR(rows_scratch(&rows, r));
    try {
      if (!kout) kbuf.resize(static_cast<size_t>(bm));
      if (!dout) dbuf.resize(static_cast<size_t>(bm));
    } catch (const std::bad_alloc&) {
      return Status::NoMemory("out of memory while allocating " + std::to_string(bm) +
                              " rows for search results (b*m = " + std::to_string(r.b) + "*" + std::to_string(r.m) + ")");
    }
    if (!kout) kout = kbuf.data();
    if (!dout) dout = dbuf.data();
    MEMQ_RETURN_IF_ERROR(snap.prepare());  // mapped keys: their norms, once
    MEMQ_RETURN_IF_ERROR(search_topm(rows.data(), kout, dout, r.queries, r.b, snap.view(), r.m, k));
    if (r.ids) {
      const int32_t* row_ids = snap.ids();
      for (int64_t i = 0; i < bm; ++i) {
        const int64_t row = rows[static_cast<size_t>(i)];
        r.ids[i] = row < 0 ? -1 : row_ids[row];
      }
    }
    if (r.estimate) {
      MEMQ_RETURN_IF_ERROR(kernel_weighted_value(r.value, r.confidence, rows.data(), kout, snap.values(), snap.rows(),
                                                 r.b, r.m, static_cast<float>(r.void_weight),
                                                 static_cast<float>(r.void_value)));
    }
    return Status::Ok();
  }
};

// ---- CUDA: writes wait for the jobs bound before them ----------------------------------------------
// Counts jobs bound but not yet run (or dropped). Jobs never wait for the writer, so wait_idle ends.
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

// A bound job's hold on the gate: released after the job ran, or when the job is destroyed unrun.
struct ReaderToken {
  explicit ReaderToken(std::shared_ptr<ReaderGate> g) : gate(std::move(g)) { gate->enter(); }
  ~ReaderToken() { release(); }
  void release() {
    if (!done.exchange(true)) gate->leave();
  }
  std::shared_ptr<ReaderGate> gate;
  std::atomic<bool> done{false};
};

class CudaStore final : public ForwardingStore<CudaKeyStore> {
 public:
  CudaStore(std::unique_ptr<CudaKeyStore> s, const KernelParams& k)
      : ForwardingStore(std::shared_ptr<CudaKeyStore>(std::move(s)), k), gate_(std::make_shared<ReaderGate>()) {}
  const char* name() const override { return "cuda"; }
  StoreKeyType key_type() const override { return static_cast<StoreKeyType>(static_cast<int>(s_->key_type())); }
  int64_t memory_bytes() const override { return s_->device_bytes(); }

 protected:
  SearchJob bind(const SearchRequest& r, const KernelParams& k) override {
    auto token = std::make_shared<ReaderToken>(gate_);
    std::shared_ptr<CudaKeyStore> store = s_;
    return [store, token, r, k]() {
      Status st = run(*store, r, k);
      token->release();
      return st;
    };
  }
  void before_write() override { gate_->wait_idle(); }

 private:
  static Status run(CudaKeyStore& s, const SearchRequest& r, const KernelParams& k) {
    if (r.estimate) return s.search_value(r.value, r.confidence, r.queries, r.b, r.m, k, static_cast<float>(r.void_weight),
                                            static_cast<float>(r.void_value));
    // search_topm writes ids (-1 in empty slots), kernel (0) and dist2 (+inf) like the CPU path.
    std::vector<int64_t> rows;
    MEMQ_RETURN_IF_ERROR(rows_scratch(&rows, r));
    return s.search_topm(rows.data(), r.ids, r.kernel, r.dist2, r.queries, r.b, r.m, k);
  }
  std::shared_ptr<ReaderGate> gate_;
};

static_assert(static_cast<int>(StoreKeyType::kBFloat16) == static_cast<int>(CudaKeyType::kBFloat16) &&
                  static_cast<int>(StoreKeyType::kFloat16) == static_cast<int>(CudaKeyType::kFloat16),
              "StoreKeyType and CudaKeyType must agree");

}  // namespace

Status Store::Create(const StoreOptions& opts, std::unique_ptr<Store>* out) {
  MEMQ_RETURN_IF_ERROR(validate_kernel(opts.kernel));
  if (opts.backend == StoreBackend::kCpu) {
    if (opts.key_type == StoreKeyType::kFloat16) {
      return Status::Invalid("keyType 'fp16' needs backend 'cuda'; the CPU backend stores float32, bf16 or int8 keys");
    }
    if (opts.rerank_oversample < 0) return Status::OutOfRange("rerank must be >= 0, got " + std::to_string(opts.rerank_oversample));
    if (opts.rerank_oversample > 0 && opts.key_type == StoreKeyType::kFloat32) {
      return Status::Invalid("rerank needs keyType 'bf16' or 'int8' (float32 search is already exact)");
    }
    KeyStoreOptions ko;
    ko.dim = opts.dim;
    ko.capacity = opts.capacity;
    ko.key_type = opts.key_type == StoreKeyType::kBFloat16 ? KeyType::kBF16
                  : opts.key_type == StoreKeyType::kInt8   ? KeyType::kInt8
                                                            : KeyType::kFloat32;
    ko.rerank_oversample = opts.rerank_oversample;
    std::unique_ptr<KeyStore> ks;
    MEMQ_RETURN_IF_ERROR(KeyStore::Create(ko, &ks));
    out->reset(new CpuStore(std::move(ks), opts.kernel));
    return Status::Ok();
  }
  if (opts.key_type == StoreKeyType::kInt8) {
    return Status::Invalid("keyType 'int8' is not supported on backend 'cuda' (use 'bf16' or 'fp16'), or use backend 'cpu'");
  }
  if (opts.rerank_oversample != 0) return Status::Invalid("rerank is not supported on backend 'cuda'");
  CudaKeyStoreOptions co;  // compaction thresholds as KeyStoreOptions' defaults
  co.dim = opts.dim;
  co.capacity = opts.capacity;
  co.key_type = static_cast<CudaKeyType>(static_cast<int>(opts.key_type));
  std::unique_ptr<CudaKeyStore> cs;
  MEMQ_RETURN_IF_ERROR(CudaKeyStore::Create(co, &cs));
  out->reset(new CudaStore(std::move(cs), opts.kernel));
  return Status::Ok();
}

}  // namespace memq
