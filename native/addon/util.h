// Helpers shared by the N-API layer: typed-array access without copies, Status -> JS errors.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "memq/status.h"

namespace memq_addon {

// The JS error for a core Status: shape/type problems are TypeErrors, out-of-range values,
// unknown ids and capacity are RangeErrors, the rest plain Errors. The message keeps the core's
// wording (which names the argument) and is prefixed with the API call.
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

// A borrowed view of a typed array argument (no copy). Throws a TypeError naming the argument
// when the value is not a typed array of the right element type.
template <typename T>
struct ArrayArg {
  T* data = nullptr;
  size_t length = 0;
  Napi::Value value;
};

template <typename T>
ArrayArg<T> typed_array_arg(const Napi::Value& v, const char* name) {
  Napi::Env env = v.Env();
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != TypedArrayTraits<T>::type) {
    throw Napi::TypeError::New(env, std::string(name) + " must be a " + TypedArrayTraits<T>::name);
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
  if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string(name) + " must be an integer");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d) throw Napi::TypeError::New(env, std::string(name) + " must be an integer");
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

// One AsyncWorker for every Promise-returning call: `body` runs on a libuv worker thread and
// returns a Status; on success the Promise resolves to `result(env)` (built on the main
// thread), else it rejects with status_error(). `keep` holds the caller's typed arrays (and
// the wrapper object) referenced until the Promise settles, so their memory cannot go away
// while the worker reads or writes it.
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
  void Execute() override { status_ = body_(); }
  void OnOK() override {
    Napi::HandleScope scope(Env());
    if (status_.ok()) deferred_.Resolve(result_(Env()));
    else deferred_.Reject(status_error(Env(), status_, where_).Value());
    keep_.Reset();
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

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
