// N-API wrapper of memq::KeyStore + the retrieval kernels: the native half of MemoryIndex.
// Inputs are borrowed typed arrays (no copies); long calls run in an AsyncWorker that keeps the
// caller's buffers referenced until the Promise settles and reads a store Snapshot, so writes
// made while it runs do not change its result.
#include <napi.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "memq/kernels.h"
#include "memq/key_store.h"
#include "util.h"

namespace memq_addon {

using memq::KernelParams;
using memq::KernelType;
using memq::Snapshot;
using memq::Status;

namespace {

// Search (+ optional estimate) on a snapshot: the shared body of the sync and async paths.
struct SearchJob {
  Snapshot snap;
  KernelParams params;
  const float* queries = nullptr;
  int64_t b = 0, m = 0;
  // outputs (pre-allocated typed arrays, or null when not wanted)
  int32_t* ids = nullptr;
  float* kernel = nullptr;
  float* dist2 = nullptr;
  float* value = nullptr;
  float* confidence = nullptr;
  float void_weight = 0.f, void_value = 0.f;

  Status run() {
    const int64_t bm = b * m;
    std::vector<int64_t> rows(static_cast<size_t>(bm));
    std::vector<float> kbuf, dbuf;
    float* kout = kernel;
    float* dout = dist2;
    if (!kout) {
      kbuf.resize(static_cast<size_t>(bm));
      kout = kbuf.data();
    }
    if (!dout) {
      dbuf.resize(static_cast<size_t>(bm));
      dout = dbuf.data();
    }
    MEMQ_RETURN_IF_ERROR(memq::search_topm(rows.data(), kout, dout, queries, b, snap.view(), m, params));
    if (ids) {
      const int32_t* row_ids = snap.ids();
      for (int64_t i = 0; i < bm; ++i) ids[i] = rows[static_cast<size_t>(i)] < 0 ? -1 : row_ids[rows[static_cast<size_t>(i)]];
    }
    if (value) {
      MEMQ_RETURN_IF_ERROR(memq::kernel_weighted_value(value, confidence, rows.data(), kout, snap.values(),
                                                       snap.rows(), b, m, void_weight, void_value));
    }
    return Status::Ok();
  }
};


}  // namespace

class MemoryIndexWrap : public Napi::ObjectWrap<MemoryIndexWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeMemoryIndex",
                       {
                           InstanceMethod("add", &MemoryIndexWrap::Add),
                           InstanceMethod("addWithIds", &MemoryIndexWrap::AddWithIds),
                           InstanceMethod("updateValues", &MemoryIndexWrap::UpdateValues),
                           InstanceMethod("remove", &MemoryIndexWrap::Remove),
                           InstanceMethod("getKeys", &MemoryIndexWrap::GetKeys),
                           InstanceMethod("getValues", &MemoryIndexWrap::GetValues),
                           InstanceMethod("liveIds", &MemoryIndexWrap::LiveIds),
                           InstanceMethod("contains", &MemoryIndexWrap::Contains),
                           InstanceMethod("compact", &MemoryIndexWrap::Compact),
                           InstanceMethod("clear", &MemoryIndexWrap::Clear),
                           InstanceMethod("setKernel", &MemoryIndexWrap::SetKernel),
                           InstanceMethod("search", &MemoryIndexWrap::Search),
                           InstanceMethod("searchSync", &MemoryIndexWrap::SearchSync),
                           InstanceMethod("estimate", &MemoryIndexWrap::Estimate),
                           InstanceMethod("estimateSync", &MemoryIndexWrap::EstimateSync),
                           InstanceMethod("stats", &MemoryIndexWrap::Stats),
                       });
  }

  // new NativeMemoryIndex(dim, kernelType (0|1|2), param, capacity)
  explicit MemoryIndexWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<MemoryIndexWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 4) throw Napi::TypeError::New(env, "NativeMemoryIndex(dim, kernel, param, capacity)");
    memq::KeyStoreOptions opts;
    opts.dim = int_arg(info[0], "dim", 1, 1 << 20);
    params_ = kernel_from_args(info[1], info[2]);
    opts.capacity = int_arg(info[3], "capacity", 0, 2147483647);
    std::unique_ptr<memq::KeyStore> store;
    Status st = memq::KeyStore::Create(opts, &store);
    if (!st.ok()) throw status_error(env, st, "MemoryIndex");
    store_ = std::move(store);
  }

 private:
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
    auto out = Napi::Int32Array::New(env, static_cast<size_t>(n));
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
    auto out = Napi::Float32Array::New(env, ids.length * static_cast<size_t>(store_->dim()));
    Status st = store_->get_keys(out.Data(), ids.data, static_cast<int64_t>(ids.length));
    if (!st.ok()) throw status_error(env, st, "MemoryIndex.getKeys");
    return out;
  }

  Napi::Value GetValues(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto ids = typed_array_arg<int32_t>(info[0], "ids");
    auto out = Napi::Float32Array::New(env, ids.length);
    Status st = store_->get_values(out.Data(), ids.data, static_cast<int64_t>(ids.length));
    if (!st.ok()) throw status_error(env, st, "MemoryIndex.getValues");
    return out;
  }

  Napi::Value LiveIds(const Napi::CallbackInfo& info) {
    auto out = Napi::Int32Array::New(info.Env(), static_cast<size_t>(store_->size()));
    store_->live_ids(out.Data());
    return out;
  }

  Napi::Value Contains(const Napi::CallbackInfo& info) {
    auto ids = typed_array_arg<int32_t>(info[0], "ids");
    auto out = Napi::Uint8Array::New(info.Env(), ids.length);
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

  // Builds a job from (queries, m[, voidWeight, voidValue]) and allocates its outputs.
  SearchJob make_job(const Napi::CallbackInfo& info, bool estimate, Napi::Object* result) {
    Napi::Env env = info.Env();
    auto q = typed_array_arg<float>(info[0], "queries");
    int64_t b = rows_of(q.length, "queries", env);
    int64_t m = int_arg(info[1], "m", 1, 1 << 24);
    SearchJob job;
    job.snap = store_->snapshot();
    job.params = params_;
    job.queries = q.data;
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
    auto out_f32 = [&](const char* name, size_t len) {
      if (!out.IsEmpty() && out.Has(name) && !out.Get(name).IsUndefined()) {
        auto a = typed_array_arg<float>(out.Get(name), (std::string("out.") + name).c_str());
        if (a.length != len) {
          throw Napi::RangeError::New(env, std::string("out.") + name + ".length must be " + std::to_string(len) +
                                               ", got " + std::to_string(a.length));
        }
        return a.value.As<Napi::Float32Array>();
      }
      return Napi::Float32Array::New(env, len);
    };
    if (estimate) {
      job.void_weight = static_cast<float>(number_arg(info[2], "voidWeight"));
      job.void_value = static_cast<float>(number_arg(info[3], "voidValue"));
      if (!(job.void_weight >= 0.f) || !std::isfinite(job.void_weight)) {
        throw Napi::RangeError::New(env, "voidWeight must be a finite number >= 0");
      }
      if (!std::isfinite(job.void_value)) throw Napi::RangeError::New(env, "voidValue must be finite");
      auto value = out_f32("value", static_cast<size_t>(b));
      auto conf = out_f32("confidence", static_cast<size_t>(b));
      job.value = value.Data();
      job.confidence = conf.Data();
      result->Set("value", value);
      result->Set("confidence", conf);
    } else {
      size_t bm = static_cast<size_t>(b * m);
      Napi::Int32Array ids;
      if (!out.IsEmpty() && out.Has("ids") && !out.Get("ids").IsUndefined()) {
        auto a = typed_array_arg<int32_t>(out.Get("ids"), "out.ids");
        if (a.length != bm) throw Napi::RangeError::New(env, "out.ids.length must be " + std::to_string(bm));
        ids = a.value.As<Napi::Int32Array>();
      } else {
        ids = Napi::Int32Array::New(env, bm);
      }
      auto kernel = out_f32("kernel", bm);
      auto dist2 = out_f32("dist2", bm);
      job.ids = ids.Data();
      job.kernel = kernel.Data();
      job.dist2 = dist2.Data();
      result->Set("ids", ids);
      result->Set("kernel", kernel);
      result->Set("dist2", dist2);
    }
    return job;
  }

  Napi::Value run_sync(const Napi::CallbackInfo& info, bool estimate, const char* where) {
    Napi::Object result;
    SearchJob job = make_job(info, estimate, &result);
    Status st = job.run();
    if (!st.ok()) throw status_error(info.Env(), st, where);
    return result;
  }

  Napi::Value run_async(const Napi::CallbackInfo& info, bool estimate, const char* where) {
    Napi::Object result;
    SearchJob job = make_job(info, estimate, &result);
    auto shared_job = std::make_shared<SearchJob>(std::move(job));
    return PromiseWorker::Start(info.Env(), where, [shared_job]() { return shared_job->run(); }, resolve_to(result),
                                {info[0], info.This()});
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
    return o;
  }

  std::unique_ptr<memq::KeyStore> store_;
  KernelParams params_;
};

Napi::Function InitMemoryIndex(Napi::Env env) { return MemoryIndexWrap::Init(env); }

}  // namespace memq_addon
