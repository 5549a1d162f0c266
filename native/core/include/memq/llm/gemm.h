// Float32 GEMM for the transformer engine (row-major, strided). Multi-threaded through
// memq::parallel_for; the inner kernels are vectorised with GCC/Clang vector extensions and
// compiled three times (generic SSE2, AVX2+FMA, AVX-512), picked at run time
// (memq::simd_level(); MEMQ_SIMD=scalar|avx2|avx512 caps it). Every output element is produced by one task
// summing in a fixed order, so results do not depend on the thread count.
#pragma once
#include <cstdint>

namespace memq {
namespace llm {

// "A B^T":  C[m*ldc + j] (=|+=) sum_k A[m*lda + k] * B[j*ldb + k]   for m < M, j < N, k < K.
void sgemm_nt(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb,
              int64_t M, int64_t N, int64_t K, bool accumulate);

// "A B" with a strided A:  C[m*ldc + j] += sum_k A[m*sam + k*sak] * B[k*ldb + j].
// (sam, sak) = (K, 1) is A row-major; (1, M) is A^T of a row-major K x M matrix.
void sgemm_acc(float* C, int64_t ldc, const float* A, int64_t sam, int64_t sak, const float* B,
               int64_t ldb, int64_t M, int64_t N, int64_t K);

// Single-threaded forms for callers that already run in parallel tasks (attention's per-head
// products): C (=|+=) A B^T (B: N x K, rows ldb apart) and C (=|+=) A B (B: K x N, rows ldb apart),
// A row-major (rows lda apart). Same kernels and summation order as the threaded calls.
void sgemm_nt_serial(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb,
                     int64_t M, int64_t N, int64_t K, bool accumulate);
void sgemm_nn_serial(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb,
                     int64_t M, int64_t N, int64_t K, bool accumulate);

// The kernel variant in use: "avx512", "avx2" or "generic".
const char* gemm_variant();

}  // namespace llm
}  // namespace memq
