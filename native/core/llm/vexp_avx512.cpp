// avx512 exp kernel (see vexp_kernels.inc; ISA flags for this file from CMakeLists.txt / binding.gyp).
#define MEMQ_VEXP_NS avx512
#define MEMQ_VEXP_VF 16
#include "vexp_kernels.inc"
