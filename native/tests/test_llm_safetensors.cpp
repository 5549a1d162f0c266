// The strict JSON parser and the safetensors reader's refusal of bad files: every header field
// is checked (length vs file size, JSON validity, dtype, shape x dtype size == byte length,
// offsets inside the data area, no overlap, no hole, truncation), with errors naming the file
// and the field; plus a byte-flip fuzz over a real header (no crash, no out-of-bounds read).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "memq/json.h"
#include "memq/llm/safetensors.h"
#include "test_llm_util.h"
#include "testing.h"

using namespace memq;
using namespace memq::llm;

namespace {

std::string dir() {
  static std::string d = llm_test::temp_dir("st");
  return d;
}

// Writes [u64 len][header][data] and returns the path.
std::string craft(const std::string& name, const std::string& header, const std::string& data, int64_t len_override = -1) {
  const std::string path = dir() + "/" + name + ".safetensors";
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  uint64_t n = len_override >= 0 ? uint64_t(len_override) : header.size();
  for (int k = 0; k < 8; ++k) f.put(char((n >> (8 * k)) & 0xFF));
  f << header << data;
  return path;
}

Status open_path(const std::string& path) {
  std::unique_ptr<SafetensorsFile> f;
  return SafetensorsFile::open(path, &f);
}

// Expects a refusal whose message names the file and contains `what`.
void expect_refused(const std::string& name, const std::string& header, const std::string& data, const std::string& what,
                    int64_t len_override = -1) {
  const std::string path = craft(name, header, data, len_override);
  Status st = open_path(path);
  if (st.ok()) {
    memq_test::fail(__FILE__, __LINE__, name + ": accepted a bad file");
    return;
  }
  if (st.message().find(path) == std::string::npos || st.message().find(what) == std::string::npos)
    memq_test::fail(__FILE__, __LINE__, name + ": message \"" + st.message() + "\" lacks \"" + what + "\"");
}

}  // namespace

MEMQ_TEST(json_parses_and_round_trips) {
  Json j;
  const char* text = R"( {"a": [1, -2, 3.5e2, true, false, null], "b": {"c": "x\ny\u00e9\ud83d\ude00"}, "big": 9007199254740993} )";
  Status st = Json::parse(text, &j);
  CHECK(st.ok());
  CHECK(j.find("a")->at(1).as_int() == -2);
  CHECK(j.find("a")->at(2).as_double() == 350.0 && !j.find("a")->at(2).is_integer());
  CHECK(j.find("big")->as_int() == 9007199254740993LL);
  CHECK(j.find("b")->find("c")->as_string() == "x\ny\xC3\xA9\xF0\x9F\x98\x80");
  Json k;
  CHECK(Json::parse(j.dump(), &k).ok());
  CHECK(k.dump() == j.dump());
  CHECK(Json::parse(j.dump(2), &k).ok());
  CHECK(k.dump() == j.dump());
}

MEMQ_TEST(json_rejects_invalid_documents) {
  const char* bad[] = {"",         "{",          "{\"a\":1,}",   "[1,]",          "01",          "-",
                       "1.",       ".5",         "NaN",          "Infinity",      "\"abc",       "\"a\x01\"",
                       "\"\\x\"",  "\"\\ud800\"", "\"\\udc00x\"", "\"\xff\"",      "\"\xc0\xaf\"", "{\"a\":1 \"b\":2}",
                       "{\"a\":1,\"a\":2}", "[1] 2", "tru", "nul", "{1:2}", "1e999"};
  for (const char* s : bad) {
    Json j;
    Status st = Json::parse(s, std::strlen(s), &j);
    if (st.ok()) memq_test::fail(__FILE__, __LINE__, std::string("accepted: ") + s);
  }
  std::string deep(200, '[');
  deep += std::string(200, ']');
  Json j;
  CHECK(!Json::parse(deep, &j).ok());
  std::string ok_deep(100, '[');
  ok_deep += std::string(100, ']');
  CHECK(Json::parse(ok_deep, &j).ok());
}

MEMQ_TEST(half_precision_conversions) {
  CHECK(f16_to_f32(0x3C00) == 1.0f);
  CHECK(f16_to_f32(0xC000) == -2.0f);
  CHECK(f16_to_f32(0x7BFF) == 65504.0f);
  CHECK(f16_to_f32(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(f16_to_f32(0x03FF) == std::ldexp(1023.0f, -24));
  CHECK(std::isinf(f16_to_f32(0x7C00)) && std::isnan(f16_to_f32(0x7E00)));
  CHECK(f16_to_f32(0x8000) == 0.0f && std::signbit(f16_to_f32(0x8000)));
  CHECK(bf16_to_f32(0x3F80) == 1.0f);
  CHECK(f32_to_bf16(1.0f) == 0x3F80);
  CHECK(bf16_to_f32(f32_to_bf16(3.14159f)) == 3.140625f);
  CHECK(f32_to_bf16(1.00390625f) == 0x3F80);  // tie -> even
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
}

MEMQ_TEST(reads_f32_f16_bf16_and_metadata) {
  std::string data;
  float f[3] = {1.5f, -2.0f, 0.25f};
  data.append(reinterpret_cast<const char*>(f), 12);
  uint16_t h[2] = {0x3C00, 0xC000};  // f16 1, -2
  data.append(reinterpret_cast<const char*>(h), 4);
  uint16_t b[2] = {0x3F80, 0x4040};  // bf16 1, 3
  data.append(reinterpret_cast<const char*>(b), 4);
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},)"
      R"("h":{"dtype":"F16","shape":[2,1],"data_offsets":[12,16]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[16,20]}})";
  const std::string path = craft("good", header + "   ", data);  // trailing spaces are allowed padding
  std::unique_ptr<SafetensorsFile> sf;
  Status st = SafetensorsFile::open(path, &sf);
  CHECK(st.ok());
  if (!sf) return;
  CHECK(sf->metadata().at("format") == "pt");
  float out[3];
  CHECK(sf->read_f32("a", {3}, out).ok() && out[0] == 1.5f && out[2] == 0.25f);
  CHECK(sf->read_f32("h", {2, 1}, out).ok() && out[0] == 1.0f && out[1] == -2.0f);
  CHECK(sf->read_f32("b", {}, out).ok() && out[0] == 1.0f && out[1] == 3.0f);
  st = sf->read_f32("h", {2}, out);
  CHECK(!st.ok() && st.message().find("shape") != std::string::npos);
  CHECK(sf->read_f32("nope", {}, out).code() == StatusCode::kNotFound);
  // writer round trip, F32 and BF16
  std::vector<float> v = {1, 2, 3, 4, 5, 6};
  CHECK(write_safetensors(dir() + "/w.safetensors", {{"x", {2, 3}, v.data()}, {"e", {0}, nullptr}}, {{"k", "v"}}).ok());
  CHECK(SafetensorsFile::open(dir() + "/w.safetensors", &sf).ok());
  std::vector<float> back(6);
  CHECK(sf->read_f32("x", {2, 3}, back.data()).ok() && back == v);
  CHECK(sf->metadata().at("k") == "v");
  CHECK(write_safetensors(dir() + "/w2.safetensors", {{"x", {6}, v.data()}}, {}, true).ok());
  CHECK(SafetensorsFile::open(dir() + "/w2.safetensors", &sf).ok() && sf->find("x")->dtype == DType::kBF16);
  CHECK(sf->read_f32("x", {6}, back.data()).ok() && back == v);
  CHECK(!write_safetensors(dir() + "/w3.safetensors", {{"x", {1}, v.data()}, {"x", {1}, v.data()}}).ok());
}

MEMQ_TEST(refuses_bad_headers_and_offsets) {
  const std::string d8(8, '\0');
  auto one = [](const std::string& dtype, const std::string& shape, const std::string& offs) {
    return "{\"t\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + offs + "}}";
  };
  // the 8-byte length
  {
    const std::string path = dir() + "/short.safetensors";
    std::ofstream(path, std::ios::binary) << "abc";
    Status st = open_path(path);
    CHECK(!st.ok() && st.message().find("8-byte") != std::string::npos);
  }
  expect_refused("len_past_eof", one("F32", "[2]", "[0,8]"), d8, "exceeds the file size", 1000);
  expect_refused("len_huge", one("F32", "[2]", "[0,8]"), d8, "exceeds the file size", int64_t(1) << 62);
  expect_refused("len_zero", one("F32", "[2]", "[0,8]"), d8, "too small", 0);
  // JSON validity and structure
  expect_refused("not_json", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", d8, "not valid JSON");
  expect_refused("not_object", "[1,2,3]", "", "start with '{'");
  expect_refused("dup_key", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", d8, "duplicate");
  expect_refused("entry_not_object", "{\"t\":5}", "", "not an object");
  expect_refused("unknown_field", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", d8, "unknown field");
  expect_refused("bad_metadata", "{\"__metadata__\":{\"a\":1}}", "", "__metadata__");
  // dtype
  expect_refused("unknown_dtype", one("F31", "[2]", "[0,8]"), d8, "unknown dtype");
  expect_refused("dtype_not_string", "{\"t\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", d8, "dtype");
  // shape
  expect_refused("shape_mismatch", one("F32", "[3]", "[0,8]"), d8, "shape x dtype size");
  expect_refused("shape_dtype_mismatch", one("F16", "[2]", "[0,8]"), d8, "shape x dtype size");
  expect_refused("shape_negative", one("F32", "[-2]", "[0,8]"), d8, "non-negative");
  expect_refused("shape_float", one("F32", "[2.0]", "[0,8]"), d8, "non-negative integers");
  expect_refused("shape_overflow", one("F32", "[4294967296,4294967296,16]", "[0,8]"), d8, "shape x dtype size");
  expect_refused("shape_missing", "{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", d8, "shape");
  // offsets
  expect_refused("offsets_past_data", one("F32", "[4]", "[0,16]"), d8, "beyond the data area");
  expect_refused("offsets_reversed", one("F32", "[0]", "[8,0]"), d8, "begin > end");
  expect_refused("offsets_three", one("F32", "[2]", "[0,8,8]"), d8, "data_offsets");
  expect_refused("offsets_negative", one("F32", "[2]", "[-8,0]"), d8, "non-negative");
  expect_refused("offsets_overlap",
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                 std::string(12, '\0'), "overlaps");
  expect_refused("offsets_hole", one("F32", "[1]", "[4,8]"), d8, "hole");
  expect_refused("trailing_bytes", one("F32", "[1]", "[0,4]"), d8, "cover");
  // truncated data: header promises 8 bytes, only 5 present
  expect_refused("truncated", one("F32", "[2]", "[0,8]"), std::string(5, '\0'), "truncated");
}

// The format does not require aligned offsets (a U8 tensor of odd length may precede an F32
// one), and the reader copies bytewise: unaligned tensors read their exact values. Malformed
// headers are kCorrupt (a JS Error), a missing file kIOError.
MEMQ_TEST(unaligned_offsets_read_correctly_and_error_codes) {
  std::string data = "\x01\x02\x03";
  float f[2] = {1.25f, -7.5f};
  data.append(reinterpret_cast<const char*>(f), 8);
  double g = 3.0;
  data.append(reinterpret_cast<const char*>(&g), 8);
  const std::string header =
      R"({"pad":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},"x":{"dtype":"F32","shape":[2],"data_offsets":[3,11]},)"
      R"("y":{"dtype":"F64","shape":[1],"data_offsets":[11,19]}})";
  std::unique_ptr<SafetensorsFile> sf;
  CHECK(SafetensorsFile::open(craft("unaligned", header, data), &sf).ok());
  if (!sf) return;
  float out[2] = {0, 0};
  CHECK(sf->read_f32("x", {2}, out).ok() && out[0] == 1.25f && out[1] == -7.5f);
  CHECK(sf->read_f32("y", {1}, out).ok() && out[0] == 3.0f);
  CHECK(sf->read_f32("pad", {3}, out).code() == StatusCode::kCorrupt);  // U8 does not convert
  CHECK(open_path(craft("bad_json", "{\"x\":", "")).code() == StatusCode::kCorrupt);
  CHECK(open_path(dir() + "/no-such-file.safetensors").code() == StatusCode::kIOError);
}

MEMQ_TEST(byte_flip_fuzz_never_crashes_and_never_reads_out_of_bounds) {
  // Flip every header byte of a real file (several patterns); each file must be either refused
  // or, when still valid, readable within its own bounds.
  std::vector<float> a(6, 1.0f), b(4, 2.0f);
  const std::string base = dir() + "/fuzz_base.safetensors";
  CHECK(write_safetensors(base, {{"model.a.weight", {2, 3}, a.data()}, {"model.b.bias", {4}, b.data()}}).ok());
  std::ifstream in(base, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = (n << 8) | (unsigned char)bytes[size_t(k)];
  int refused = 0, accepted = 0;
  const unsigned char patterns[] = {0x01, 0x20, 0x80, 0xFF};
  for (size_t i = 0; i < 8 + n; ++i)
    for (unsigned char pat : patterns) {
      std::string m = bytes;
      m[i] = char(m[i] ^ pat);
      const std::string path = dir() + "/fuzz.safetensors";
      {
        std::ofstream f(path, std::ios::binary | std::ios::trunc);
        f << m;
      }
      std::unique_ptr<SafetensorsFile> sf;
      Status st = SafetensorsFile::open(path, &sf);
      if (!st.ok()) {
        ++refused;
        continue;
      }
      ++accepted;
      for (const auto& t : sf->tensors()) {
        std::vector<float> out(size_t(std::max<int64_t>(t.numel(), 1)));
        (void)sf->read_f32(t.name, {}, out.data());  // may refuse a dtype, must not overrun
      }
    }
  std::printf("  %d flipped files refused, %d still valid (e.g. a changed name)\n", refused, accepted);
  CHECK(refused > 0);
}

MEMQ_TEST_MAIN()
