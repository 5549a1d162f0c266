// avx2 exp kernel (see vexp_kernels.inc; ISA flags for this file from CMakeLists.txt / binding.gyp).
#define MEMQ_VEXP_NS avx2
#define MEMQ_VEXP_VF 8
#include "vexp_kernels.inc"
