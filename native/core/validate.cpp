#include "memq/validate.h"

#include "memq/limits.h"

#include <cmath>
#include <limits>
#include <string>

namespace memq {

namespace {
std::string at(const char* what, int64_t i) { return std::string(what) + "[" + std::to_string(i) + "]"; }
bool finite(float x) { return std::isfinite(x); }
const float kInf = std::numeric_limits<float>::infinity();
}  // namespace

Status validate_key_view(const KeyView& keys) {
  if (keys.n < 0) return Status::OutOfRange("keys.n must be >= 0");
  if (keys.d < 1) return Status::OutOfRange("keys.d must be >= 1");
  switch (keys.type) {
    case KeyType::kFloat32:
      if (keys.n > 0 && !keys.keys) return Status::Invalid("keys.keys is null");
      break;
    case KeyType::kBF16:
      if (keys.n > 0 && !keys.keys_bf16) return Status::Invalid("keys.keys_bf16 is null (key type bf16)");
      break;
    case KeyType::kInt8:
      if (keys.n > 0 && (!keys.keys_i8 || !keys.scales))
        return Status::Invalid("keys.keys_i8 and keys.scales must be set (key type int8)");
      for (int64_t i = 0; i < (keys.trusted ? 0 : keys.n); ++i)
        if (!(finite(keys.scales[i]) && keys.scales[i] >= 0.0f))
          return Status::OutOfRange(at("keys.scales", i) + " is not a finite scale >= 0");
      break;
    default: return Status::Invalid("keys.type must be float32 (0), bf16 (1) or int8 (2)");
  }
  if (keys.type != KeyType::kFloat32 && keys.oversample < 1)
    return Status::OutOfRange("keys.oversample must be >= 1");
  if (keys.norms2 && !keys.trusted) {
    for (int64_t i = 0; i < keys.n; ++i)
      if ((!keys.alive || keys.alive[i]) && !(finite(keys.norms2[i]) && keys.norms2[i] >= 0.0f))
        return Status::OutOfRange(at("keys.norms2", i) + " is not a finite squared norm");
  }
  return Status::Ok();
}

Status validate_kernel_weighted_value_args(const int64_t* rows, const float* kernel, const float* row_values,
                                           int64_t n_rows, int64_t b, int64_t m, float void_weight,
                                           float void_value, const float* value_out) {
  if (b < 0) return Status::OutOfRange("b must be >= 0");
  if (m < 1) return Status::OutOfRange("m must be >= 1");
  if (n_rows < 0) return Status::OutOfRange("n_rows must be >= 0");
  if (!(std::isfinite(void_weight) && void_weight >= 0.0f))
    return Status::OutOfRange("void_weight must be finite and >= 0");
  if (!std::isfinite(void_value)) return Status::OutOfRange("void_value must be finite");
  if (b == 0) return Status::Ok();
  if (!value_out) return Status::Invalid("value_out is null");
  if (!rows) return Status::Invalid("rows is null");
  if (!kernel) return Status::Invalid("kernel is null");
  if (n_rows > 0 && !row_values) return Status::Invalid("row_values is null");
  for (int64_t e = 0; e < b * m; ++e) {
    const int64_t r = rows[e];
    if (r == -1) continue;
    if (r < -1 || r >= n_rows)
      return Status::OutOfRange(at("rows", e) + " = " + std::to_string(r) + " is outside [0, n_rows = " +
                                std::to_string(n_rows) + ")");
    if (!(std::isfinite(kernel[e]) && kernel[e] >= 0.0f))
      return Status::OutOfRange(at("kernel", e) + " must be finite and >= 0");
    if (!std::isfinite(row_values[r])) return Status::OutOfRange(at("row_values", r) + " is not finite");
  }
  return Status::Ok();
}

Status validate_kl_improve_args(const float* log_prior, const float* q, int64_t rows, int64_t cols,
                                const int32_t* row_lengths, float alpha, const float* policy_out,
                                const float* value_out) {
  if (rows < 0) return Status::OutOfRange("rows must be >= 0");
  if (cols < 0) return Status::OutOfRange("cols must be >= 0");
  if (rows > limits::kMaxResultElements)
    return Status::OutOfRange("rows = " + std::to_string(rows) + " is over the limit of " +
                              limits::kMaxResultElementsText + " result elements");
  if (cols > 0 && rows > limits::kMaxResultElements / cols)
    return Status::OutOfRange("rows*cols = " + std::to_string(rows) + "*" + std::to_string(cols) +
                              " is over the limit of " + limits::kMaxResultElementsText + " result elements");
  if (std::isnan(alpha) || !(alpha >= 0.0f) || std::isinf(alpha))
    return Status::OutOfRange("alpha must be finite and >= 0");
  if (rows == 0) return Status::Ok();
  if (!policy_out && cols > 0) return Status::Invalid("policy_out is null");
  if (!value_out) return Status::Invalid("value_out is null");
  if (cols > 0 && !log_prior) return Status::Invalid("log_prior is null");
  if (cols > 0 && !q) return Status::Invalid("q is null");
  for (int64_t i = 0; i < rows; ++i) {
    int64_t len = cols;
    if (row_lengths) {
      len = row_lengths[i];
      if (len < 0 || len > cols)
        return Status::OutOfRange(at("row_lengths", i) + " = " + std::to_string(len) + " is outside [0, cols = " +
                                  std::to_string(cols) + "]");
    }
    for (int64_t c = 0; c < len; ++c) {
      const int64_t e = i * cols + c;
      const float lp = log_prior[e];
      if (std::isnan(lp) || lp == kInf)
        return Status::OutOfRange(at("log_prior", e) + " is NaN or +inf (only -inf, mu = 0, is allowed)");
      if (!std::isfinite(q[e])) return Status::OutOfRange(at("q", e) + " is not finite");
    }
  }
  return Status::Ok();
}

Status validate_queries(const float* queries, int64_t b, int64_t d) {
  if (b <= 0) return Status::Ok();
  if (!queries) return Status::Invalid("queries is null");
  for (int64_t r = 0; r < b; ++r) {
    const float* row = queries + r * d;
    double s = 0.0;
    for (int64_t c = 0; c < d; ++c) {
      const float x = row[c];
      if (!finite(x)) {
        return Status::OutOfRange("queries must be finite: queries[" + std::to_string(r * d + c) + "] (row " +
                                  std::to_string(r) + ", column " + std::to_string(c) + ") is " +
                                  (std::isnan(x) ? "NaN" : x > 0 ? "Infinity" : "-Infinity"));
      }
      s += static_cast<double>(x) * static_cast<double>(x);
    }
    if (s > limits::kMaxSquaredNorm)
      return Status::OutOfRange("queries: the squared norm of row " + std::to_string(r) + " is over the limit of " +
                                limits::kMaxSquaredNormText + ", so that distances stay finite in float32");
  }
  return Status::Ok();
}

}  // namespace memq
