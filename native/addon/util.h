// Helpers shared by the N-API layer: typed-array access without copies, Status -> JS errors.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstring>
#include <exception>
#include <new>
#include <stdexcept>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "memq/limits.h"
#include "memq/status.h"

namespace memq_addon {

// The JS error for a core Status (status.h): wrong type/shape/kind is a TypeError; values out of
// range (NaN/Inf, limits, order, duplicates), unknown ids and capacity are RangeErrors; out of
// memory, unavailable devices, corrupt files, I/O and internal errors are plain Errors. The
// message keeps the core's wording (which names the argument) and is prefixed with the API call.
inline Napi::Error status_error(Napi::Env env, const memq::Status& st, const char* where) {
  std::string msg = std::string(where) + ": " + st.message();
  switch (st.code()) {
    case memq::StatusCode::kInvalidArgument:
      return Napi::TypeError::New(env, msg);
    case memq::StatusCode::kOutOfRange:
    case memq::StatusCode::kNotFound:
    case memq::StatusCode::kCapacityExceeded:
      return Napi::RangeError::New(env, msg);
    default:
      return Napi::Error::New(env, msg);
  }
}

template <typename T>
struct TypedArrayTraits;
template <>
struct TypedArrayTraits<float> {
  static constexpr napi_typedarray_type type = napi_float32_array;
  static constexpr const char* name = "Float32Array";
};
template <>
struct TypedArrayTraits<int32_t> {
  static constexpr napi_typedarray_type type = napi_int32_array;
  static constexpr const char* name = "Int32Array";
};
template <>
struct TypedArrayTraits<uint8_t> {
  static constexpr napi_typedarray_type type = napi_uint8_array;
  static constexpr const char* name = "Uint8Array";
};

// A borrowed view of a typed array argument (no copy). Throws a TypeError naming the argument
// when the value is not a typed array of the right element type.
template <typename T>
struct ArrayArg {
  T* data = nullptr;
  size_t length = 0;
  Napi::Value value;
};

// True when the typed array's ArrayBuffer was detached (transferred, e.g. by structuredClone
// with `transfer`): its length then reads 0 and its memory belongs to someone else.
// A detached view reads as length 0, so only an empty view needs the (ArrayBuffer-only) napi
// query; a view over a SharedArrayBuffer (which cannot be detached) makes that query fail, and
// counts as attached.
inline bool is_detached(const Napi::TypedArray& ta) {
  napi_env env = ta.Env();
  napi_typedarray_type type;
  size_t length = 0, offset = 0;
  void* data = nullptr;
  napi_value ab = nullptr;
  if (napi_get_typedarray_info(env, ta, &type, &length, &data, &ab, &offset) != napi_ok) return false;
  if (length > 0 || !ab) return false;
  bool detached = false;
  if (napi_is_detached_arraybuffer(env, ab, &detached) != napi_ok) return false;
  return detached;
}

// The first byte of a typed array's view (ArrayBuffer or SharedArrayBuffer), or null when empty.
inline char* typed_data(const Napi::TypedArray& ta) {
  napi_typedarray_type type;
  size_t length = 0, offset = 0;
  void* data = nullptr;
  napi_value ab = nullptr;
  if (napi_get_typedarray_info(ta.Env(), ta, &type, &length, &data, &ab, &offset) != napi_ok) return nullptr;
  return static_cast<char*>(data);
}

template <typename T>
ArrayArg<T> typed_array_arg(const Napi::Value& v, const char* name) {
  Napi::Env env = v.Env();
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != TypedArrayTraits<T>::type) {
    throw Napi::TypeError::New(env, std::string(name) + " must be a " + TypedArrayTraits<T>::name);
  }
  if (is_detached(v.As<Napi::TypedArray>())) {
    throw Napi::TypeError::New(env, std::string(name) + " is detached (its ArrayBuffer was transferred); pass a live " +
                                        TypedArrayTraits<T>::name);
  }
  auto ta = v.As<Napi::TypedArrayOf<T>>();
  ArrayArg<T> a;
  a.data = ta.Data();
  a.length = ta.ElementLength();
  a.value = v;
  return a;
}

inline int64_t int_arg(const Napi::Value& v, const char* name, int64_t lo, int64_t hi) {
  Napi::Env env = v.Env();
  if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string(name) + " must be an integer (a number)");
  double d = v.As<Napi::Number>().DoubleValue();
  // A number that is not an integer (1.5, NaN, Infinity) is a value out of range, as in JS
  // itself (new Array(1.5) is a RangeError).
  if (!std::isfinite(d) || std::floor(d) != d) {
    throw Napi::RangeError::New(env, std::string(name) + " must be an integer in [" + std::to_string(lo) + ", " +
                                         std::to_string(hi) + "], got " + Napi::Value(v).ToString().Utf8Value());
  }
  if (d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
    throw Napi::RangeError::New(env, std::string(name) + " must be in [" + std::to_string(lo) + ", " +
                                         std::to_string(hi) + "], got " + std::to_string(static_cast<int64_t>(d)));
  }
  return static_cast<int64_t>(d);
}

inline double number_arg(const Napi::Value& v, const char* name) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(name) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

// ---- sizes, allocation, exceptions -------------------------------------------------------------

// RangeError unless `count` result elements (any one output array of a call) is within
// limits::kMaxResultElements. `what` names the product, e.g. "b*m = 200*16777216".
inline void check_result_elements(Napi::Env env, const char* where, const std::string& what, double count) {
  if (count > static_cast<double>(memq::limits::kMaxResultElements)) {
    throw Napi::RangeError::New(env, std::string(where) + ": " + what + " = " + std::to_string(static_cast<uint64_t>(count)) +
                                         " result elements is over the limit of " +
                                         memq::limits::kMaxResultElementsText + " (split the call)");
  }
}

// A new zero-filled typed array of `length` elements, allocated through the JS constructor
// (which throws a RangeError when the allocation fails) instead of napi_create_arraybuffer
// (which aborts the process: "v8::ArrayBuffer::New Allocation failed"). A failed allocation is
// an Error "out of memory while allocating ... for <what>".
template <typename T>
Napi::TypedArrayOf<T> new_typed_array(Napi::Env env, size_t length, const std::string& what) {
  Napi::Value ctor = env.Global().Get(TypedArrayTraits<T>::name);
  if (ctor.IsFunction()) {
    Napi::Value v;
    try {
      v = ctor.As<Napi::Function>().New({Napi::Number::New(env, static_cast<double>(length))});
    } catch (const Napi::Error&) {
      throw Napi::Error::New(env, "out of memory while allocating " + std::to_string(length) + " x " +
                                      std::to_string(sizeof(T)) + " bytes for " + what);
    }
    if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == TypedArrayTraits<T>::type &&
        v.As<Napi::TypedArray>().ElementLength() == length) {
      return v.As<Napi::TypedArrayOf<T>>();
    }
  }
  // The global constructor was replaced: napi's own allocation (sizes are limit-checked first).
  return Napi::TypedArrayOf<T>::New(env, length);
}

// Turns the exception being handled into a JS exception: Napi errors pass through; a failed
// allocation (std::bad_alloc, std::length_error) becomes an Error "<where>: out of memory ...";
// any other std::exception an Error with its text. Nothing escapes to std::terminate.
[[noreturn]] inline void rethrow_as_js(Napi::Env env, const std::string& where) {
  try {
    throw;
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, where + ": out of memory (an allocation failed; try a smaller call)");
  } catch (const std::length_error&) {
    throw Napi::Error::New(env, where + ": out of memory (a requested size was too large to allocate)");
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, where + ": internal error: " + e.what());
  } catch (...) {
    throw Napi::Error::New(env, where + ": internal error (unknown native exception)");
  }
}

template <typename F>
auto guard(Napi::Env env, const std::string& where, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (...) {
    rethrow_as_js(env, where);
  }
}

// The same for a core call that may throw: std::bad_alloc -> Status::NoMemory naming `what`.
template <typename F>
memq::Status guard_status(const std::string& what, F&& f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return memq::Status::NoMemory("out of memory while " + what);
  } catch (const std::length_error&) {
    return memq::Status::NoMemory("out of memory while " + what + " (a size was too large to allocate)");
  } catch (const std::exception& e) {
    return memq::Status::Internal(what + ": " + e.what());
  } catch (...) {
    return memq::Status::Internal(what + ": unknown native exception");
  }
}

// The bytes a typed array argument occupies, for overlap checks.
struct MemRange {
  std::string name;
  const char* begin = nullptr;
  size_t bytes = 0;
};
inline MemRange mem_range(const std::string& name, const Napi::TypedArray& ta) {
  MemRange r;
  r.name = name;
  r.bytes = ta.ByteLength();
  if (r.bytes > 0) r.begin = typed_data(ta);
  return r;
}
// TypeError when two of the ranges share memory (the same buffer twice, or overlapping views of
// one ArrayBuffer): outputs would overwrite each other or the inputs they are computed from.
inline void check_no_overlap(Napi::Env env, const char* where, const std::vector<MemRange>& rs) {
  for (size_t i = 0; i < rs.size(); ++i)
    for (size_t j = i + 1; j < rs.size(); ++j) {
      const MemRange& a = rs[i];
      const MemRange& b = rs[j];
      if (!a.bytes || !b.bytes) continue;
      if (a.begin < b.begin + b.bytes && b.begin < a.begin + a.bytes) {
        throw Napi::TypeError::New(env, std::string(where) + ": " + a.name + " and " + b.name +
                                            " share memory (the same array, or overlapping views of one "
                                            "ArrayBuffer); pass separate arrays");
      }
    }
}

// One AsyncWorker for every Promise-returning call: `body` runs on a libuv worker thread and
// returns a Status; on success the Promise resolves to `result(env)` (built on the main
// thread), else it rejects with status_error(). `keep` holds JS values (the wrapper object,
// result arrays) referenced until the Promise settles. A body must never read or write a
// caller's typed array directly: the caller could detach (transfer) it meanwhile and its memory
// would go with it. Async calls copy their inputs when called and write caller-owned outputs
// in `result` (on the main thread, after checking they are still attached).
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, const char* where, std::function<memq::Status()> body,
                std::function<Napi::Value(Napi::Env)> result, const std::vector<Napi::Value>& keep)
      : Napi::AsyncWorker(env, where), where_(where), body_(std::move(body)), result_(std::move(result)),
        deferred_(Napi::Promise::Deferred::New(env)) {
    Napi::Object holder = Napi::Object::New(env);
    uint32_t i = 0;
    for (const auto& v : keep) holder.Set(i++, v);
    keep_ = Napi::Persistent(holder);
  }
  // Queues the worker and returns its Promise (the worker deletes itself when done).
  static Napi::Promise Start(Napi::Env env, const char* where, std::function<memq::Status()> body,
                             std::function<Napi::Value(Napi::Env)> result, const std::vector<Napi::Value>& keep) {
    auto* w = new PromiseWorker(env, where, std::move(body), std::move(result), keep);
    Napi::Promise p = w->deferred_.Promise();
    w->Queue();
    return p;
  }
  // A throwing body (std::bad_alloc from an allocation inside the core) becomes a Status, so
  // the Promise rejects with an Error naming the call instead of a bare "std::bad_alloc".
  void Execute() override { status_ = guard_status(std::string("running ") + where_, body_); }
  // Never lets an exception escape: the result builder may throw (a failed allocation, an out
  // array detached while the work ran), and an exception here would be uncaught in JS.
  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (!status_.ok()) {
      deferred_.Reject(status_error(env, status_, where_).Value());
    } else {
      try {
        Napi::Value v = guard(env, where_, [&] { return result_(env); });
        deferred_.Resolve(v);
      } catch (const Napi::Error& e) {
        deferred_.Reject(e.Value());
      }
    }
    keep_.Reset();
  }
  void OnError(const Napi::Error& e) override {
    deferred_.Reject(e.Value());
    keep_.Reset();
  }

 private:
  const char* where_;
  std::function<memq::Status()> body_;
  std::function<Napi::Value(Napi::Env)> result_;
  memq::Status status_;
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference keep_;
};

// A result that is an object made on the main thread before the work was queued.
inline std::function<Napi::Value(Napi::Env)> resolve_to(Napi::Object obj) {
  auto ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(obj));
  return [ref](Napi::Env) -> Napi::Value {
    Napi::Value v = ref->Value();
    ref->Reset();
    return v;
  };
}

}  // namespace memq_addon
