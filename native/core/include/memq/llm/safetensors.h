// safetensors reader and writer (https://github.com/huggingface/safetensors format):
//   [u64 little-endian N][N bytes of JSON header][data area]
// The header maps tensor names to {dtype, shape, data_offsets:[begin,end]} (offsets relative to
// the data area) plus an optional "__metadata__" object of string -> string.
//
// open() checks every field before any tensor is read: N within the file, the header valid JSON
// (an object), each dtype known, each shape a list of non-negative integers, shape product x
// dtype size == end - begin (no overflow), offsets inside the data area, and the tensors tiling
// the data area exactly (sorted by offset: no overlap, no hole, nothing after the last one).
// Errors are Status values naming the file and the field.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "memq/status.h"

namespace memq {
namespace llm {

enum class DType : int { kBool, kU8, kI8, kF8E5M2, kF8E4M3, kI16, kU16, kF16, kBF16, kI32, kU32, kF32, kF64, kI64, kU64 };

// "F32" -> kF32 etc.; false for an unknown name.
bool dtype_from_name(const std::string& name, DType* out);
const char* dtype_name(DType d);
int64_t dtype_size(DType d);

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets inside the data area
  uint64_t end = 0;
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
  }
};

class SafetensorsFile {
 public:
  // Opens and validates the header; tensor data is read on demand.
  static Status open(const std::string& path, std::unique_ptr<SafetensorsFile>* out);

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Reads tensor `name` converted to float32 (from F32, F16, BF16 or F64) into dst[0..numel).
  // `expect_shape` (non-empty) must match the stored shape exactly.
  Status read_f32(const std::string& name, const std::vector<int64_t>& expect_shape, float* dst) const;

 private:
  std::string path_;
  uint64_t data_start_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// A tensor to write: float32 data, saved as F32 (or BF16 when `bf16` is set).
struct TensorToWrite {
  std::string name;
  std::vector<int64_t> shape;
  const float* data = nullptr;
};

// Writes a safetensors file (header padded with spaces to a multiple of 8 bytes, tensors in the
// given order, "__metadata__": {"format": "pt"} plus `metadata`). Names must be unique.
Status write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                         const std::map<std::string, std::string>& metadata = {}, bool bf16 = false);

// Half-precision conversions used by the reader/writer (exposed for tests).
float f16_to_f32(uint16_t h);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);  // round to nearest even, NaN kept NaN

}  // namespace llm
}  // namespace memq
