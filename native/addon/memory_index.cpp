// N-API wrapper of memq::Store (memq/store.h): the native half of MemoryIndex. It unwraps typed
// arrays, calls the Store and maps its Status to JS errors; the CPU/CUDA choice, snapshot reads
// (a search sees the index as it was when it was called) and value checks live in the core.
// Shapes and types are checked in lib/retrieval.ts; the lengths checked here are those the
// pointers handed to the core depend on (memory safety for direct callers of the addon).
// Inputs are borrowed typed arrays (no copies); long calls run in a PromiseWorker that keeps the
// caller's buffers referenced until the Promise settles.
#include <napi.h>

#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "memq/kernels.h"
#include "memq/limits.h"
#include "memq/store.h"
#include "util.h"

namespace memq_addon {

using memq::KernelParams;
using memq::KernelType;
using memq::Status;

class MemoryIndexWrap : public Napi::ObjectWrap<MemoryIndexWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeMemoryIndex",
                       {
                           InstanceMethod("add", &MemoryIndexWrap::G<&MemoryIndexWrap::Add>),
                           InstanceMethod("addWithIds", &MemoryIndexWrap::G<&MemoryIndexWrap::AddWithIds>),
                           InstanceMethod("mapKeys", &MemoryIndexWrap::G<&MemoryIndexWrap::MapKeys>),
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
      throw Napi::TypeError::New(env, "NativeMemoryIndex(dim, kernel, param, capacity[, backend, keyType[, rerank]])");
    }
    memq::StoreOptions opts;
    opts.dim = int_arg(info[0], "dim", 1, 1 << 20);
    opts.kernel = kernel_from_args(env, info[1], info[2]);
    opts.capacity = int_arg(info[3], "capacity", 0, 2147483647);
    const std::string backend = string_option(info, 4, "backend", "cpu");
    const std::string key_type = string_option(info, 5, "keyType", "float32");
    if (backend != "cpu" && backend != "cuda") {
      throw Napi::TypeError::New(env, "MemoryIndex: backend must be 'cpu' or 'cuda' (resolved), got '" + backend + "'");
    }
    opts.backend = backend == "cuda" ? memq::StoreBackend::kCuda : memq::StoreBackend::kCpu;
    if (key_type == "bf16") opts.key_type = memq::StoreKeyType::kBFloat16;
    else if (key_type == "fp16") opts.key_type = memq::StoreKeyType::kFloat16;
    else if (key_type == "int8") opts.key_type = memq::StoreKeyType::kInt8;
    else if (key_type != "float32") {
      throw Napi::TypeError::New(env, "MemoryIndex: keyType must be 'float32', 'bf16', 'int8' or 'fp16', got '" + key_type + "'");
    }
    // info[6]: the re-rank oversample factor of compressed CPU keys (0 / absent: off).
    opts.rerank_oversample = info.Length() > 6 && !info[6].IsUndefined() ? int_arg(info[6], "rerank", 0, 4096) : 0;
    Status st = memq::Store::Create(opts, &store_);
    // No device, no driver, out of device memory: a plain Error with the reason.
    const bool device_error = opts.backend == memq::StoreBackend::kCuda && st.code() != memq::StatusCode::kOutOfRange &&
                              st.code() != memq::StatusCode::kInvalidArgument;
    if (!st.ok()) throw status_error(env, st, device_error ? "MemoryIndex (backend 'cuda')" : "MemoryIndex");
  }

  static std::string string_option(const Napi::CallbackInfo& info, size_t i, const char* name, const char* dflt) {
    if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull()) return dflt;
    if (!info[i].IsString()) throw Napi::TypeError::New(info.Env(), std::string("MemoryIndex: ") + name + " must be a string");
    return info[i].As<Napi::String>().Utf8Value();
  }

  // Unwraps (kernel code, parameter); the core checks the parameter's value (make_kernel_params).
  static KernelParams kernel_from_args(const Napi::Env& env, const Napi::Value& type, const Napi::Value& param) {
    KernelParams p;
    int64_t t = int_arg(type, "kernel", 0, 2);
    double v = number_arg(param, "kernel parameter");
    Status st = memq::make_kernel_params(static_cast<KernelType>(t), v, &p);
    if (!st.ok()) throw status_error(env, st, "MemoryIndex");
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

  // mapKeys(file, ids, values): the store's first rows from a float32 key file (KeyStore::map_keys).
  Napi::Value MapKeys(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "file must be a path string");
    const std::string file = info[0].As<Napi::String>().Utf8Value();
    auto ids = typed_array_arg<int32_t>(info[1], "ids");
    auto values = typed_array_arg<float>(info[2], "values");
    if (ids.length != values.length) throw Napi::RangeError::New(env, "ids and values must have the same length");
    Status st = store_->map_keys(file, ids.data, values.data, static_cast<int64_t>(ids.length));
    if (!st.ok()) throw status_error(env, st, "MemoryIndex.mapKeys");
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
    Status st = store_->set_kernel(kernel_from_args(info.Env(), info[0], info[1]));
    if (!st.ok()) throw status_error(info.Env(), st, "MemoryIndex");
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
    memq::SearchRequest job;
    job.estimate = estimate;
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
      job.void_weight = number_arg(info[2], "voidWeight");  // values: checked by the Store
      job.void_value = number_arg(info[3], "voidValue");
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
    std::shared_ptr<std::vector<float>> qcopy;
    if (async) {
      qcopy = std::make_shared<std::vector<float>>(q.data, q.data + q.length);
      job.queries = qcopy->data();
    } else {
      job.queries = q.data;
    }
    memq::SearchJob run;
    Status st = store_->bind_search(job, &run);  // last: nothing may throw after the search is bound
    if (!st.ok()) throw status_error(env, st, where);
    if (!async) return run;
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
    o.Set("mappedRows", Napi::Number::New(env, static_cast<double>(store_->mapped_rows())));
    o.Set("backend", Napi::String::New(env, store_->name()));
    o.Set("keyType", Napi::String::New(env, memq::store_key_type_name(store_->key_type())));
    return o;
  }

  std::unique_ptr<memq::Store> store_;
};

Napi::Function InitMemoryIndex(Napi::Env env) { return MemoryIndexWrap::Init(env); }

}  // namespace memq_addon
