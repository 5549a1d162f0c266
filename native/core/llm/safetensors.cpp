// safetensors reader/writer with a fully validated header (see memq/llm/safetensors.h).
#include "memq/llm/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>

#include "memq/json.h"

namespace memq {
namespace llm {

namespace {

struct DTypeEntry { const char* name; DType dtype; int64_t size; };
const DTypeEntry kDTypes[] = {
    {"BOOL", DType::kBool, 1}, {"U8", DType::kU8, 1},   {"I8", DType::kI8, 1},
    {"F8_E5M2", DType::kF8E5M2, 1}, {"F8_E4M3", DType::kF8E4M3, 1},
    {"I16", DType::kI16, 2},   {"U16", DType::kU16, 2}, {"F16", DType::kF16, 2},
    {"BF16", DType::kBF16, 2}, {"I32", DType::kI32, 4}, {"U32", DType::kU32, 4},
    {"F32", DType::kF32, 4},   {"F64", DType::kF64, 8}, {"I64", DType::kI64, 8},
    {"U64", DType::kU64, 8},
};

// The safetensors crate refuses headers above 100 MB; so do we.
constexpr uint64_t kMaxHeader = 100ull * 1000 * 1000;

// A malformed file: kCorrupt (a JS Error), naming the file and the field.
Status bad(const std::string& path, const std::string& what) {
  return Status::Corrupt("safetensors " + path + ": " + what);
}

}  // namespace

bool dtype_from_name(const std::string& name, DType* out) {
  for (const auto& e : kDTypes)
    if (name == e.name) { *out = e.dtype; return true; }
  return false;
}

const char* dtype_name(DType d) {
  for (const auto& e : kDTypes)
    if (e.dtype == d) return e.name;
  return "?";
}

int64_t dtype_size(DType d) {
  for (const auto& e : kDTypes)
    if (e.dtype == d) return e.size;
  return 0;
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h >> 15) << 31;
  uint32_t exp = (h >> 10) & 0x1F;
  uint32_t man = h & 0x3FF;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do { ++e; man <<= 1; } while ((man & 0x400) == 0);
      bits = sign | (uint32_t(127 - 15 - e) << 23) | ((man & 0x3FF) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float bf16_to_f32(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7F800000u) == 0x7F800000u && (bits & 0x7FFFFFu)) return uint16_t((bits >> 16) | 0x40);
  bits += 0x7FFFu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

Status SafetensorsFile::open(const std::string& path, std::unique_ptr<SafetensorsFile>* out) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return Status::IOError("safetensors " + path + ": cannot open file");
  const uint64_t file_size = uint64_t(in.tellg());
  if (file_size < 8) return bad(path, "file is " + std::to_string(file_size) + " bytes, shorter than the 8-byte header length");
  in.seekg(0);
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  if (!in) return bad(path, "cannot read the header length");
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = (n << 8) | len_bytes[k];
  if (n > file_size - 8) return bad(path, "header length " + std::to_string(n) + " exceeds the file size " + std::to_string(file_size));
  if (n > kMaxHeader) return bad(path, "header length " + std::to_string(n) + " above the 100 MB limit");
  if (n < 2) return bad(path, "header length " + std::to_string(n) + " too small for a JSON object");
  std::string header(size_t(n), '\0');
  in.read(&header[0], std::streamsize(n));
  if (!in) return bad(path, "cannot read the header");
  if (header[0] != '{') return bad(path, "header does not start with '{'");

  Json root;
  Status st = Json::parse(header, &root);
  if (!st.ok()) return bad(path, "header is not valid JSON (" + st.message() + ")");
  if (!root.is_object()) return bad(path, "header is not a JSON object");

  auto f = std::unique_ptr<SafetensorsFile>(new SafetensorsFile());
  f->path_ = path;
  f->data_start_ = 8 + n;
  const uint64_t data_size = file_size - 8 - n;

  for (const auto& [name, v] : root.members()) {
    if (name == "__metadata__") {
      if (!v.is_object()) return bad(path, "__metadata__ must be an object");
      for (const auto& [mk, mv] : v.members()) {
        if (!mv.is_string()) return bad(path, "__metadata__." + mk + " must be a string");
        f->metadata_[mk] = mv.as_string();
      }
      continue;
    }
    const std::string where = "tensor \"" + name + "\"";
    if (!v.is_object()) return bad(path, where + " is not an object");
    for (const auto& m : v.members())
      if (m.first != "dtype" && m.first != "shape" && m.first != "data_offsets")
        return bad(path, where + " has unknown field \"" + m.first + "\"");
    TensorInfo t;
    t.name = name;
    const Json* dt = v.find("dtype");
    if (!dt || !dt->is_string()) return bad(path, where + ": dtype missing or not a string");
    if (!dtype_from_name(dt->as_string(), &t.dtype)) return bad(path, where + ": unknown dtype \"" + dt->as_string() + "\"");
    const Json* shape = v.find("shape");
    if (!shape || !shape->is_array()) return bad(path, where + ": shape missing or not an array");
    uint64_t numel = 1;
    bool overflow = false;
    for (const Json& s : shape->items()) {
      if (!s.is_integer() || s.as_int() < 0) return bad(path, where + ": shape entries must be non-negative integers");
      uint64_t d = uint64_t(s.as_int());
      if (d != 0 && numel > std::numeric_limits<uint64_t>::max() / d) overflow = true;
      numel *= d;
      t.shape.push_back(s.as_int());
    }
    const Json* off = v.find("data_offsets");
    if (!off || !off->is_array() || off->size() != 2) return bad(path, where + ": data_offsets must be [begin, end]");
    for (const Json& o : off->items())
      if (!o.is_integer() || o.as_int() < 0) return bad(path, where + ": data_offsets must be non-negative integers");
    t.begin = uint64_t(off->at(0).as_int());
    t.end = uint64_t(off->at(1).as_int());
    if (t.begin > t.end) return bad(path, where + ": data_offsets begin > end");
    if (t.end > data_size)
      return bad(path, where + ": data_offsets end " + std::to_string(t.end) + " beyond the data area (" +
                           std::to_string(data_size) + " bytes; file truncated?)");
    const uint64_t esize = uint64_t(dtype_size(t.dtype));
    if (overflow || (numel != 0 && esize > std::numeric_limits<uint64_t>::max() / numel) || numel * esize != t.end - t.begin)
      return bad(path, where + ": shape x dtype size does not equal the byte length " + std::to_string(t.end - t.begin));
    f->index_[name] = f->tensors_.size();
    f->tensors_.push_back(std::move(t));
  }

  // The tensors must tile [0, data_size) exactly (the format allows no overlap and no holes).
  std::vector<const TensorInfo*> order;
  for (const auto& t : f->tensors_) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t cursor = 0;
  for (const TensorInfo* t : order) {
    if (t->begin < cursor) return bad(path, "tensor \"" + t->name + "\" overlaps the previous tensor");
    if (t->begin > cursor) return bad(path, "hole in the data area before tensor \"" + t->name + "\"");
    cursor = t->end;
  }
  if (cursor != data_size)
    return bad(path, "data area is " + std::to_string(data_size) + " bytes but the tensors cover " + std::to_string(cursor));
  *out = std::move(f);
  return Status::Ok();
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Status SafetensorsFile::read_f32(const std::string& name, const std::vector<int64_t>& expect_shape, float* dst) const {
  const TensorInfo* t = find(name);
  if (!t) return Status::NotFound("safetensors " + path_ + ": no tensor \"" + name + "\"");
  if (!expect_shape.empty() && expect_shape != t->shape) {
    std::string a, b;
    for (auto s : t->shape) a += (a.empty() ? "" : ",") + std::to_string(s);
    for (auto s : expect_shape) b += (b.empty() ? "" : ",") + std::to_string(s);
    return Status::Corrupt("safetensors " + path_ + ": tensor \"" + name + "\" has shape [" + a + "], expected [" + b + "]");
  }
  if (t->dtype != DType::kF32 && t->dtype != DType::kF16 && t->dtype != DType::kBF16 && t->dtype != DType::kF64)
    return Status::Corrupt("safetensors " + path_ + ": tensor \"" + name + "\" has dtype " + dtype_name(t->dtype) +
                           "; only F32, F16, BF16 and F64 convert to float32");
  std::ifstream in(path_, std::ios::binary);
  if (!in) return Status::IOError("safetensors " + path_ + ": cannot open file");
  const uint64_t bytes = t->end - t->begin;
  std::vector<char> buf;
  try {
    buf.resize(static_cast<size_t>(bytes));  // <= the file's size (open() checked the offsets)
  } catch (const std::bad_alloc&) {
    return Status::NoMemory("safetensors " + path_ + ": out of memory reading tensor \"" + name + "\" (" +
                            std::to_string(bytes) + " bytes)");
  }
  in.seekg(std::streamoff(data_start_ + t->begin));
  if (bytes) in.read(buf.data(), std::streamsize(bytes));
  if (!in) return Status::IOError("safetensors " + path_ + ": cannot read tensor \"" + name + "\" (file changed?)");
  const int64_t n = t->numel();
  const char* p = buf.data();
  for (int64_t i = 0; i < n; ++i) {
    switch (t->dtype) {
      case DType::kF32: { float v; std::memcpy(&v, p + 4 * i, 4); dst[i] = v; break; }
      case DType::kF64: { double v; std::memcpy(&v, p + 8 * i, 8); dst[i] = float(v); break; }
      case DType::kF16: { uint16_t v; std::memcpy(&v, p + 2 * i, 2); dst[i] = f16_to_f32(v); break; }
      case DType::kBF16: { uint16_t v; std::memcpy(&v, p + 2 * i, 2); dst[i] = bf16_to_f32(v); break; }
      default: break;
    }
  }
  return Status::Ok();
}

Status write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                         const std::map<std::string, std::string>& metadata, bool bf16) {
  Json header = Json::object();
  Json meta = Json::object();
  meta.set("format", Json::string("pt"));
  for (const auto& [k, v] : metadata) meta.set(k, Json::string(v));
  header.set("__metadata__", std::move(meta));
  const int64_t esize = bf16 ? 2 : 4;
  uint64_t offset = 0;
  std::map<std::string, int> seen;
  for (const auto& t : tensors) {
    if (t.name == "__metadata__" || seen[t.name]++) return Status::Invalid("write_safetensors " + path + ": duplicate or reserved name \"" + t.name + "\"");
    int64_t numel = 1;
    Json shape = Json::array();
    for (int64_t s : t.shape) {
      if (s < 0) return Status::Invalid("write_safetensors " + path + ": negative dimension in \"" + t.name + "\"");
      numel *= s;
      shape.push(Json::integer(s));
    }
    if (numel > 0 && !t.data) return Status::Invalid("write_safetensors " + path + ": null data for \"" + t.name + "\"");
    Json e = Json::object();
    e.set("dtype", Json::string(bf16 ? "BF16" : "F32"));
    e.set("shape", std::move(shape));
    Json offs = Json::array();
    offs.push(Json::integer(int64_t(offset)));
    offset += uint64_t(numel * esize);
    offs.push(Json::integer(int64_t(offset)));
    e.set("data_offsets", std::move(offs));
    header.set(t.name, std::move(e));
  }
  std::string h = header.dump();
  while (h.size() % 8 != 0) h.push_back(' ');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Status::IOError("write_safetensors " + path + ": cannot create file");
  unsigned char len_bytes[8];
  uint64_t n = h.size();
  for (int k = 0; k < 8; ++k) len_bytes[k] = (unsigned char)((n >> (8 * k)) & 0xFF);
  out.write(reinterpret_cast<const char*>(len_bytes), 8);
  out.write(h.data(), std::streamsize(h.size()));
  for (const auto& t : tensors) {
    int64_t numel = 1;
    for (int64_t s : t.shape) numel *= s;
    if (bf16) {
      std::vector<uint16_t> tmp(static_cast<size_t>(numel));
      for (int64_t i = 0; i < numel; ++i) tmp[size_t(i)] = f32_to_bf16(t.data[i]);
      out.write(reinterpret_cast<const char*>(tmp.data()), std::streamsize(numel * 2));
    } else if (numel) {
      out.write(reinterpret_cast<const char*>(t.data), std::streamsize(numel * 4));
    }
  }
  if (!out) return Status::IOError("write_safetensors " + path + ": write failed");
  return Status::Ok();
}

}  // namespace llm
}  // namespace memq
