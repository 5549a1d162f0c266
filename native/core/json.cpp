// Strict JSON parser/writer (see memq/json.h). Recursive descent over a bounds-checked cursor.
#include "memq/json.h"

#include <cmath>
#include <cstdio>
#include <cerrno>
#include <cstdlib>
#include <unordered_set>

namespace memq {

namespace {

constexpr int kMaxDepth = 128;

struct Parser {
  const char* p;
  size_t n;
  size_t i = 0;
  std::string error;

  bool fail(const std::string& what) {
    if (error.empty()) error = what + " at byte " + std::to_string(i);
    return false;
  }
  void skip_ws() {
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r')) ++i;
  }
  bool literal(const char* word, size_t len) {
    if (n - i < len || std::string(p + i, len) != std::string(word, len)) return fail("invalid literal");
    i += len;
    return true;
  }
  static int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  bool read_hex4(uint32_t* out) {
    if (n - i < 4) return fail("truncated \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      int h = hex(p[i + k]);
      if (h < 0) return fail("invalid \\u escape");
      v = v * 16 + uint32_t(h);
    }
    i += 4;
    *out = v;
    return true;
  }
  static void put_utf8(std::string* s, uint32_t cp) {
    if (cp < 0x80) {
      s->push_back(char(cp));
    } else if (cp < 0x800) {
      s->push_back(char(0xC0 | (cp >> 6)));
      s->push_back(char(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      s->push_back(char(0xE0 | (cp >> 12)));
      s->push_back(char(0x80 | ((cp >> 6) & 0x3F)));
      s->push_back(char(0x80 | (cp & 0x3F)));
    } else {
      s->push_back(char(0xF0 | (cp >> 18)));
      s->push_back(char(0x80 | ((cp >> 12) & 0x3F)));
      s->push_back(char(0x80 | ((cp >> 6) & 0x3F)));
      s->push_back(char(0x80 | (cp & 0x3F)));
    }
  }
  // Validates one UTF-8 sequence starting at p[i] (i < n, p[i] >= 0x80) and copies it.
  bool utf8_seq(std::string* s) {
    unsigned char c = (unsigned char)p[i];
    int len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else return fail("invalid UTF-8 in string");
    if (n - i < size_t(len)) return fail("truncated UTF-8 in string");
    for (int k = 1; k < len; ++k) {
      unsigned char d = (unsigned char)p[i + k];
      if ((d & 0xC0) != 0x80) return fail("invalid UTF-8 in string");
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
      return fail("invalid UTF-8 in string");
    s->append(p + i, size_t(len));
    i += size_t(len);
    return true;
  }
  bool string(std::string* s) {
    // p[i] == '"'
    ++i;
    while (true) {
      if (i >= n) return fail("unterminated string");
      unsigned char c = (unsigned char)p[i];
      if (c == '"') { ++i; return true; }
      if (c < 0x20) return fail("control character in string");
      if (c == '\\') {
        ++i;
        if (i >= n) return fail("unterminated escape");
        char e = p[i++];
        switch (e) {
          case '"': s->push_back('"'); break;
          case '\\': s->push_back('\\'); break;
          case '/': s->push_back('/'); break;
          case 'b': s->push_back('\b'); break;
          case 'f': s->push_back('\f'); break;
          case 'n': s->push_back('\n'); break;
          case 'r': s->push_back('\r'); break;
          case 't': s->push_back('\t'); break;
          case 'u': {
            uint32_t cp = 0;
            if (!read_hex4(&cp)) return false;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              uint32_t lo = 0;
              if (n - i < 2 || p[i] != '\\' || p[i + 1] != 'u') return fail("unpaired surrogate");
              i += 2;
              if (!read_hex4(&lo)) return false;
              if (lo < 0xDC00 || lo > 0xDFFF) return fail("unpaired surrogate");
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
              return fail("unpaired surrogate");
            }
            put_utf8(s, cp);
            break;
          }
          default: --i; return fail("invalid escape");
        }
      } else if (c < 0x80) {
        s->push_back(char(c));
        ++i;
      } else if (!utf8_seq(s)) {
        return false;
      }
    }
  }
  bool number(Json* out) {
    size_t start = i;
    bool integral = true;
    if (p[i] == '-') ++i;
    if (i >= n) return fail("invalid number");
    if (p[i] == '0') {
      ++i;
    } else if (p[i] >= '1' && p[i] <= '9') {
      while (i < n && p[i] >= '0' && p[i] <= '9') ++i;
    } else {
      return fail("invalid number");
    }
    if (i < n && p[i] == '.') {
      integral = false;
      ++i;
      if (i >= n || !(p[i] >= '0' && p[i] <= '9')) return fail("invalid number");
      while (i < n && p[i] >= '0' && p[i] <= '9') ++i;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
      integral = false;
      ++i;
      if (i < n && (p[i] == '+' || p[i] == '-')) ++i;
      if (i >= n || !(p[i] >= '0' && p[i] <= '9')) return fail("invalid number");
      while (i < n && p[i] >= '0' && p[i] <= '9') ++i;
    }
    std::string text(p + start, i - start);
    double v = std::strtod(text.c_str(), nullptr);
    if (!std::isfinite(v)) return fail("number out of range");
    if (integral) {
      errno = 0;
      char* end = nullptr;
      long long iv = std::strtoll(text.c_str(), &end, 10);
      if (errno == 0 && end && *end == '\0') {
        *out = Json::integer(int64_t(iv));
        return true;
      }
    }
    *out = Json::number(v);
    return true;
  }
  bool value(Json* out, int depth) {
    if (depth > kMaxDepth) return fail("nesting too deep");
    skip_ws();
    if (i >= n) return fail("unexpected end of input");
    char c = p[i];
    if (c == '{') {
      ++i;
      *out = Json::object();
      std::unordered_set<std::string> seen;
      skip_ws();
      if (i < n && p[i] == '}') { ++i; return true; }
      while (true) {
        skip_ws();
        if (i >= n || p[i] != '"') return fail("expected object key");
        std::string key;
        if (!string(&key)) return false;
        if (!seen.insert(key).second) return fail("duplicate key \"" + key + "\"");
        skip_ws();
        if (i >= n || p[i] != ':') return fail("expected ':'");
        ++i;
        Json v;
        if (!value(&v, depth + 1)) return false;
        out->set(key, std::move(v));
        skip_ws();
        if (i < n && p[i] == ',') { ++i; continue; }
        if (i < n && p[i] == '}') { ++i; return true; }
        return fail("expected ',' or '}'");
      }
    }
    if (c == '[') {
      ++i;
      *out = Json::array();
      skip_ws();
      if (i < n && p[i] == ']') { ++i; return true; }
      while (true) {
        Json v;
        if (!value(&v, depth + 1)) return false;
        out->push(std::move(v));
        skip_ws();
        if (i < n && p[i] == ',') { ++i; continue; }
        if (i < n && p[i] == ']') { ++i; return true; }
        return fail("expected ',' or ']'");
      }
    }
    if (c == '"') {
      std::string s;
      if (!string(&s)) return false;
      *out = Json::string(std::move(s));
      return true;
    }
    if (c == 't') { if (!literal("true", 4)) return false; *out = Json::boolean(true); return true; }
    if (c == 'f') { if (!literal("false", 5)) return false; *out = Json::boolean(false); return true; }
    if (c == 'n') { if (!literal("null", 4)) return false; *out = Json::null(); return true; }
    if (c == '-' || (c >= '0' && c <= '9')) return number(out);
    return fail("unexpected character");
  }
};

void dump_string(std::string* o, const std::string& s) {
  o->push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': *o += "\\\""; break;
      case '\\': *o += "\\\\"; break;
      case '\n': *o += "\\n"; break;
      case '\r': *o += "\\r"; break;
      case '\t': *o += "\\t"; break;
      case '\b': *o += "\\b"; break;
      case '\f': *o += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          *o += buf;
        } else {
          o->push_back(char(c));
        }
    }
  }
  o->push_back('"');
}

void dump_value(std::string* o, const Json& j, int indent, int level) {
  auto newline = [&](int lvl) {
    if (indent < 0) return;
    o->push_back('\n');
    o->append(size_t(indent * lvl), ' ');
  };
  switch (j.type()) {
    case Json::Type::kNull: *o += "null"; break;
    case Json::Type::kBool: *o += j.as_bool() ? "true" : "false"; break;
    case Json::Type::kNumber: {
      char buf[40];
      if (j.is_integer()) std::snprintf(buf, sizeof buf, "%lld", (long long)j.as_int());
      else if (std::isfinite(j.as_double())) std::snprintf(buf, sizeof buf, "%.17g", j.as_double());
      else std::snprintf(buf, sizeof buf, "null");  // JSON has no NaN/Inf
      *o += buf;
      break;
    }
    case Json::Type::kString: dump_string(o, j.as_string()); break;
    case Json::Type::kArray: {
      o->push_back('[');
      for (size_t k = 0; k < j.items().size(); ++k) {
        if (k) o->push_back(',');
        newline(level + 1);
        dump_value(o, j.items()[k], indent, level + 1);
      }
      if (!j.items().empty()) newline(level);
      o->push_back(']');
      break;
    }
    case Json::Type::kObject: {
      o->push_back('{');
      for (size_t k = 0; k < j.members().size(); ++k) {
        if (k) o->push_back(',');
        newline(level + 1);
        dump_string(o, j.members()[k].first);
        o->push_back(':');
        if (indent >= 0) o->push_back(' ');
        dump_value(o, j.members()[k].second, indent, level + 1);
      }
      if (!j.members().empty()) newline(level);
      o->push_back('}');
      break;
    }
  }
}

}  // namespace

Status Json::parse(const char* data, size_t n, Json* out) {
  if (data == nullptr && n > 0) return Status::Invalid("json: null buffer");
  Parser ps{data, n, 0, std::string()};
  Json v;
  if (!ps.value(&v, 0)) return Status::Invalid("json: " + ps.error);
  ps.skip_ws();
  if (ps.i != n) {
    ps.fail("trailing characters");
    return Status::Invalid("json: " + ps.error);
  }
  *out = std::move(v);
  return Status::Ok();
}

std::string Json::dump(int indent) const {
  std::string o;
  dump_value(&o, *this, indent, 0);
  return o;
}

const Json* Json::find(const std::string& key) const {
  if (type_ != Type::kObject) return nullptr;
  for (const auto& m : members_)
    if (m.first == key) return &m.second;
  return nullptr;
}

Json& Json::set(const std::string& key, Json v) {
  for (auto& m : members_)
    if (m.first == key) { m.second = std::move(v); return m.second; }
  members_.emplace_back(key, std::move(v));
  return members_.back().second;
}

Status json_get_int(const Json& obj, const std::string& key, const std::string& where, int64_t* out) {
  const Json* v = obj.find(key);
  if (!v) return Status::Invalid(where + ": missing field \"" + key + "\"");
  if (!v->is_integer()) {
    // A whole number too large for int64 (1e300) is a value out of range, not a wrong type.
    if (v->is_number() && std::isfinite(v->as_double()) && std::floor(v->as_double()) == v->as_double()) {
      char buf[40];
      std::snprintf(buf, sizeof buf, "%.17g", v->as_double());
      return Status::OutOfRange(where + ": field \"" + key + "\" is " + buf + ", beyond the integers this reader takes (|x| < 2^63)");
    }
    return Status::Invalid(where + ": field \"" + key + "\" must be an integer");
  }
  *out = v->as_int();
  return Status::Ok();
}

Status json_get_double(const Json& obj, const std::string& key, const std::string& where, double* out) {
  const Json* v = obj.find(key);
  if (!v) return Status::Invalid(where + ": missing field \"" + key + "\"");
  if (!v->is_number()) return Status::Invalid(where + ": field \"" + key + "\" must be a number");
  *out = v->as_double();
  return Status::Ok();
}

Status json_get_string(const Json& obj, const std::string& key, const std::string& where, std::string* out) {
  const Json* v = obj.find(key);
  if (!v) return Status::Invalid(where + ": missing field \"" + key + "\"");
  if (!v->is_string()) return Status::Invalid(where + ": field \"" + key + "\" must be a string");
  *out = v->as_string();
  return Status::Ok();
}

Status json_get_bool(const Json& obj, const std::string& key, const std::string& where, bool* out) {
  const Json* v = obj.find(key);
  if (!v) return Status::Invalid(where + ": missing field \"" + key + "\"");
  if (!v->is_bool()) return Status::Invalid(where + ": field \"" + key + "\" must be a boolean");
  *out = v->as_bool();
  return Status::Ok();
}

}  // namespace memq
