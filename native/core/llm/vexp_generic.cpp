// Generic (SSE2) exp kernel (see vexp_kernels.inc).
#define MEMQ_VEXP_NS generic
#define MEMQ_VEXP_VF 4
#include "vexp_kernels.inc"
