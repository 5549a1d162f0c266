// Helpers shared by the N-API layer: typed-array access without copies, Status -> JS errors.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <string>

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

}  // namespace memq_addon
