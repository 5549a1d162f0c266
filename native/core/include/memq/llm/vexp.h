// Vectorised float exp for the engine's softmaxes (attention, cross-entropy). One algorithm
// (Cody-Waite reduction x = n ln2 + r, degree-6 polynomial for e^r, 2^n applied as two factors),
// compiled for generic SSE2, AVX2+FMA and AVX-512, picked at run time like the GEMM
// (memq::simd_level(); MEMQ_SIMD caps it). expf_scalar is its plain scalar twin.
//
// Accuracy (test_llm_ops: every float in [-104, 89] at a stride, and random points): relative error
// against exp in double <= 2.5e-7 (tested; measured max 8.5e-8, under 1 ulp, on every variant) for
// results >= FLT_MIN (x >= -87.33); below that
// the result is subnormal (absolute error <= 2^-149 + 2.5e-7 exp(x)) and 0 for x < -103.97; +inf for x > 88.72;
// NaN in, NaN out; exp(-inf) = 0. Variants may differ from each other by an ulp (FMA contraction).
#pragma once
#include <cstdint>

namespace memq {
namespace llm {

// out[i] = exp(x[i] - shift) for i < n (out may be x, or null: sum only); returns the sum of the
// float results, accumulated in double in a fixed order (per kernel variant, not per thread count).
double expf_shift_sum(float* out, const float* x, float shift, int64_t n);

// The same through the named kernel ("generic", "avx2", "avx512"): false (nothing done) when this
// CPU or build cannot run it. For tests.
bool expf_shift_sum_variant(const char* variant, float* out, const float* x, float shift, int64_t n, double* sum);

// The scalar twin (same reduction and polynomial, with std::fma).
float expf_scalar(float x);

}  // namespace llm
}  // namespace memq
