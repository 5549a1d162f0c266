// Generic (baseline ISA) GEMM kernels; see gemm_kernels.inc.
#define MEMQ_GEMM_NS generic
#define MEMQ_GEMM_VF 4
#define MEMQ_GEMM_NT_MR 2
#define MEMQ_GEMM_NT_NR 4
#define MEMQ_GEMM_ACC_NV 2
#include "gemm_kernels.inc"
