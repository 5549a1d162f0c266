// Retrieval kernels of docs/math.md §2-§5 on the CPU. Every CUDA kernel in native/core/cuda has
// the same signature with a `cuda_` prefix and uses these as its oracle.
//
// Conventions (llm.c style): outputs first, inputs const, dimensions last. Matrices are
// row-major float32. All functions are batched, multi-threaded through memq::parallel_for
// (thread_pool.h) and vectorised (AVX-512 / AVX2 / scalar, chosen at run time).
// Every function validates its arguments and returns a Status; on error no output is written.
#pragma once
#include <cstdint>
#include <limits>

#include "memq/status.h"

namespace memq {

enum class KernelType : int { kGaussian = 0, kCosine = 1, kInverse = 2 };

// MATH §2:
//   gaussian: k = exp(-dist2 / (2 h^2))      (bandwidth h > 0)
//   cosine:   k = exp(kappa * cos(x, x_i))   (kappa > 0; cos = 0 when either norm is 0)
//   inverse:  k = 1 / (dist2 + delta)        (delta > 0, NEC's DND uses 1e-3)
struct KernelParams {
  KernelType type = KernelType::kGaussian;
  float bandwidth = 1.0f;
  float kappa = 1.0f;
  float delta = 1e-3f;
};

// Checks the kernel's parameter: bandwidth finite > 0, kappa in (0, 88], delta finite >= 1e-30
// (limits.h). OutOfRange names the parameter, its range and the value.
Status validate_kernel(const KernelParams& p);

// Kernel parameters from a kernel type and its one parameter as the caller holds it (double),
// checked before and after narrowing to float32 (validate_kernel's messages).
Status make_kernel_params(KernelType type, double param, KernelParams* out);

// Kernel value from the squared distance and the cosine (only the one the kernel needs is read).
float kernel_value(const KernelParams& p, float dist2, float cosine);

// out[i] = ||x_i||^2 for n rows of dimension d.
void row_norms2(float* out, const float* x, int64_t n, int64_t d);

// C (b x n, leading dimension ldc) = A (b x d) * K^T, K (n x d). Uses OpenBLAS' cblas_sgemm
// when the build found it (MEMQ_HAVE_CBLAS), else the built-in AVX-512/AVX2 kernel.
// Single-threaded: callers parallelise over tiles.
void gemm_abt(float* c, int64_t ldc, const float* a, int64_t b, const float* k, int64_t n, int64_t d);

// A read-only view of keys. `alive` (nullable = all alive) marks tombstoned rows with 0;
// tombstoned rows are never returned. `norms2` (nullable = computed on the fly) caches ||k_i||^2.
//
// Compressed keys (docs/math.md §2b): `type` says which pointer holds the n x d keys.
//   kFloat32: `keys`.
//   kBF16:    `keys_bf16`, each the float32 key rounded to nearest-even to its top 16 bits;
//             the dequantised key is that bf16 value exactly (a float32 with 16 zero low bits).
//   kInt8:    `keys_i8` and `scales` (n): per-row symmetric scale s_i = max_p |k_ip| / 127,
//             q_ip = round(k_ip / s_i) in [-127, 127]; the dequantised key is the float32
//             product float(q_ip) * s_i (rounded once). A zero row has s_i = 0.
// Distances and kernel values are then exact (to float32 rounding) for the dequantised keys.
// `exact` (nullable): the full-precision float32 keys of the same rows (in RAM or memory-mapped)
// for a re-rank: search_topm keeps `oversample` * m candidates on the compressed keys and returns
// the exact float32 top-m of those, with distances from `exact`.
enum class KeyType : int { kFloat32 = 0, kBF16 = 1, kInt8 = 2 };
struct KeyView {
  const float* keys = nullptr;
  const float* norms2 = nullptr;
  const uint8_t* alive = nullptr;
  int64_t n = 0;
  int64_t d = 0;
  KeyType type = KeyType::kFloat32;
  const uint16_t* keys_bf16 = nullptr;
  const int8_t* keys_i8 = nullptr;
  const float* scales = nullptr;
  const float* exact = nullptr;
  int64_t oversample = 4;
  // Optional facts the key store knows (search skips recomputing them): an upper bound on the
  // alive rows' squared norms and a lower bound on their nonzero ones (NaN: unknown, scanned),
  // and `trusted`: every norm and scale was checked when written, so validate_key_view skips its
  // per-row scans. Views built by hand leave the defaults.
  float norms2_max = std::numeric_limits<float>::quiet_NaN();
  float norms2_min_pos = std::numeric_limits<float>::quiet_NaN();
  bool trusted = false;
};

// Quantisers (docs/math.md §2b). Every input must be finite, with ||row||^2 <= 2^125 (limits.h);
// otherwise OutOfRange naming the row and nothing is written. Single call, parallel inside.
Status quantize_bf16(uint16_t* out, const float* x, int64_t n, int64_t d);
Status quantize_int8(int8_t* out, float* scales, const float* x, int64_t n, int64_t d);
// The dequantised float32 keys of rows [0, n) of a compressed view (for tests and re-ranks).
void dequantize_rows(float* out, const KeyView& keys, int64_t row0, int64_t n);

// Dense B x N kernel values and squared distances (dist2 clamped at >= 0). dist2_out may be
// null. Meant for small N and for tests; large N goes through search_topm.
Status similarity(float* kernel_out, float* dist2_out, const float* queries, int64_t b,
                  const KeyView& keys, const KernelParams& p);

// Fused similarity + top-M (MATH §2): per query, the M alive rows with the largest kernel
// value, sorted descending; equal scores go to the lower row; no row twice. Tiles over the
// keys and keeps per-query candidates, so no B x N matrix is ever materialised.
// Selection uses the exact monotone score behind the kernel (dist2 ascending for gaussian and
// inverse, cosine descending for cosine), so when float32 kernel values saturate the nearer
// case still wins. Where fewer than m rows are alive, trailing slots get row -1, kernel 0 and
// dist2 +inf. Outputs are b*m each; m >= 1 (up to at least 4096).
Status search_topm(int64_t* rows_out, float* kernel_out, float* dist2_out, const float* queries,
                   int64_t b, const KeyView& keys, int64_t m, const KernelParams& p);

// Kernel-weighted value with the void case (MATH §3), from search results:
//   value_i = (sum_j k_ij q_ij + void_weight * void_value) / (sum_j k_ij + void_weight)
//   confidence_i = sum_j k_ij / (sum_j k_ij + void_weight)
// `rows` (b*m, -1 = empty slot, skipped) index `row_values`. With no hits and void_weight > 0,
// value = void_value and confidence = 0; with no hits and void_weight == 0, value = void_value,
// confidence = 0 as well (an empty sum has no opinion). Accumulates in double.
Status kernel_weighted_value(float* value_out, float* confidence_out, const int64_t* rows,
                             const float* kernel, const float* row_values, int64_t n_rows,
                             int64_t b, int64_t m, float void_weight, float void_value);

// Log-sum-exp KL policy improvement (MATH §5), row-wise over `rows` rows of up to `cols`
// candidates:  l_c = log_prior_c + q_c / alpha,  V = alpha * logsumexp(l),  pi = softmax(l).
// log_prior may hold -inf (mu_c = 0 -> pi_c = 0); NaN anywhere, +inf, or non-finite q is an
// error. row_lengths (nullable) gives ragged rows: entries past a row's length are ignored and
// their policy is written as 0. alpha > 0 finite; alpha == 0 is the hard limit: pi uniform over
// the argmax of q on the support of mu, V = that max. A row with no support (all -inf, or
// length 0) gets pi = 0 and V = -inf. Stable for |q/alpha| up to 1e4 (and beyond): the max
// is subtracted and the sum accumulated in double.
Status kl_improve(float* policy_out, float* value_out, const float* log_prior, const float* q,
                  int64_t rows, int64_t cols, const int32_t* row_lengths, float alpha);

// A language-model prior's normalisation and §5 in one pass (MemQ's step, one native call with
// the prior's scoring: LlmModel.score with an improvement). Groups g = 0..groups-1 hold the
// candidates group_offsets[g] .. group_offsets[g+1] (offsets non-decreasing from 0) of one state;
// on entry log_prior holds their scores s (log p(action | prompt)), on return
//   log mu = s/temperature - logsumexp_group(s/temperature)   (in double, then float32),
// and policy / value are kl_improve of each group's row (log mu, q) with alpha. A group of no
// candidates gets value -inf. With q = nullptr only log mu is computed (policy_out and value_out
// are not read or written: the prior alone, LlmModel.score with a temperature). temperature must
// be finite and > 0; the rest as kl_improve.
// The checks prior_improve makes on temperature, alpha and q (n values; q may be null), for a
// caller that wants them before the scoring that produces the scores (the addon does).
Status check_prior_args(double temperature, const float* q, int64_t n, float alpha);
Status prior_improve(float* log_prior_inout, float* policy_out, float* value_out, const float* q,
                     const int64_t* group_offsets, int64_t groups, double temperature, float alpha);

}  // namespace memq
