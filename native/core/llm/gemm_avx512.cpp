// AVX-512 GEMM kernels (this file gets -mavx512f... from CMakeLists.txt); see gemm_kernels.inc.
#define MEMQ_GEMM_NS avx512
#define MEMQ_GEMM_VF 16
#define MEMQ_GEMM_NT_MR 4
#define MEMQ_GEMM_NT_NR 4
#define MEMQ_GEMM_ACC_NV 4
#include "gemm_kernels.inc"
