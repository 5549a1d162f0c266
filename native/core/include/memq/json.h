// A small strict JSON (RFC 8259) value, parser and writer for config.json, safetensors headers
// and adapter_config.json. Bounds-checked, depth-limited, no exceptions: parse() returns a Status.
// Objects keep their insertion order (so written files read like the ones HF writes).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "memq/status.h"

namespace memq {

class Json {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };

  Json() = default;
  static Json null() { return Json(); }
  static Json boolean(bool b) { Json j; j.type_ = Type::kBool; j.bool_ = b; return j; }
  static Json number(double x) { Json j; j.type_ = Type::kNumber; j.num_ = x; return j; }
  // An integer kept exactly (up to 2^63) alongside its double value.
  static Json integer(int64_t x) { Json j; j.type_ = Type::kNumber; j.num_ = double(x); j.int_ = x; j.is_int_ = true; return j; }
  static Json string(std::string s) { Json j; j.type_ = Type::kString; j.str_ = std::move(s); return j; }
  static Json array() { Json j; j.type_ = Type::kArray; return j; }
  static Json object() { Json j; j.type_ = Type::kObject; return j; }

  // Strict parse of the whole buffer (only whitespace may follow the value). Errors name the
  // byte offset. Nesting deeper than 128 levels, invalid UTF-8 escapes, duplicate object keys,
  // leading zeros, NaN/Infinity and control characters in strings are all rejected.
  static Status parse(const char* data, size_t n, Json* out);
  static Status parse(const std::string& s, Json* out) { return parse(s.data(), s.size(), out); }

  // Compact when indent < 0, else pretty-printed with `indent` spaces.
  std::string dump(int indent = -1) const;

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }
  bool is_bool() const { return type_ == Type::kBool; }
  bool is_number() const { return type_ == Type::kNumber; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_object() const { return type_ == Type::kObject; }
  // True for numbers written without fraction/exponent that fit int64 (or made by integer()).
  bool is_integer() const { return type_ == Type::kNumber && is_int_; }

  bool as_bool() const { return bool_; }
  double as_double() const { return num_; }
  int64_t as_int() const { return is_int_ ? int_ : int64_t(num_); }
  const std::string& as_string() const { return str_; }

  // Arrays.
  size_t size() const { return type_ == Type::kArray ? items_.size() : members_.size(); }
  const Json& at(size_t i) const { return items_[i]; }
  const std::vector<Json>& items() const { return items_; }
  Json& push(Json v) { items_.push_back(std::move(v)); return items_.back(); }

  // Objects: find returns nullptr when absent (or when this is not an object).
  const Json* find(const std::string& key) const;
  const std::vector<std::pair<std::string, Json>>& members() const { return members_; }
  // Sets (replacing an existing key in place).
  Json& set(const std::string& key, Json v);

 private:
  Type type_ = Type::kNull;
  bool bool_ = false;
  bool is_int_ = false;
  double num_ = 0.0;
  int64_t int_ = 0;
  std::string str_;
  std::vector<Json> items_;
  std::vector<std::pair<std::string, Json>> members_;
};

// Typed getters for config files: `where` names the file in the error message.
Status json_get_int(const Json& obj, const std::string& key, const std::string& where, int64_t* out);
Status json_get_double(const Json& obj, const std::string& key, const std::string& where, double* out);
Status json_get_string(const Json& obj, const std::string& key, const std::string& where, std::string* out);
Status json_get_bool(const Json& obj, const std::string& key, const std::string& where, bool* out);

}  // namespace memq
