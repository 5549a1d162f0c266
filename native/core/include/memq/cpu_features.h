// Run-time CPU feature detection for kernel dispatch and backendInfo().
#pragma once
#include <string>

namespace memq {

enum class SimdLevel : int { kScalar = 0, kAVX2 = 1, kAVX512 = 2 };

// The best level this CPU supports AND this build compiled (MEMQ_SIMD=scalar|avx2|avx512 in the
// environment caps it, for testing every path on one machine).
SimdLevel simd_level();
const char* simd_name(SimdLevel level);
// MEMQ_SIMD as accepted ("" when unset or rejected) and, when set but rejected, why.
std::string simd_env_value();
std::string simd_env_error();
// "openblas <version>" when cblas_sgemm comes from OpenBLAS, else "builtin".
std::string blas_name();

}  // namespace memq
