// AVX2+FMA GEMM kernels (this file gets -mavx2 -mfma from CMakeLists.txt); see gemm_kernels.inc.
#define MEMQ_GEMM_NS avx2
#define MEMQ_GEMM_VF 8
#define MEMQ_GEMM_NT_MR 2
#define MEMQ_GEMM_NT_NR 4
#define MEMQ_GEMM_ACC_NV 2
#include "gemm_kernels.inc"
