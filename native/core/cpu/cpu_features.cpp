// Run-time CPU feature detection: the kernels dispatch on simd_level() at every call, so one
// binary runs everywhere and tests can force each path (MEMQ_SIMD or set_simd_override).
#include "memq/cpu_features.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#ifdef MEMQ_HAVE_CBLAS
extern "C" char* openblas_get_config(void);
#endif

namespace memq {

namespace {

#if defined(__x86_64__) || defined(__i386__)
#define MEMQ_X86 1
#endif

SimdLevel detect_hw() {
#ifdef MEMQ_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("fma"))
    return SimdLevel::kAVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SimdLevel::kAVX2;
#endif
  return SimdLevel::kScalar;
}

// MEMQ_SIMD caps the level (read once). Only scalar | avx2 | avx512 are accepted; anything else
// is rejected (no cap) and the reason kept for simd_env_error().
struct SimdEnv {
  std::string value;  // the accepted value, "" when unset or rejected
  std::string error;
};
SimdEnv parse_simd_env() {
  SimdEnv r;
  const char* env = std::getenv("MEMQ_SIMD");
  if (!env || !*env) return r;
  if (!std::strcmp(env, "scalar") || !std::strcmp(env, "avx2") || !std::strcmp(env, "avx512")) {
    r.value = env;
  } else {
    r.error = std::string("MEMQ_SIMD='") + env + "' is not one of scalar, avx2, avx512; ignored";
  }
  return r;
}
const SimdEnv& simd_env() {
  static const SimdEnv e = parse_simd_env();
  return e;
}

SimdLevel detect() {
  SimdLevel hw = detect_hw();
  const std::string& v = simd_env().value;
  if (!v.empty()) {
    SimdLevel cap = v == "scalar" ? SimdLevel::kScalar : v == "avx2" ? SimdLevel::kAVX2 : SimdLevel::kAVX512;
    if (static_cast<int>(cap) < static_cast<int>(hw)) hw = cap;
  }
  return hw;
}

std::atomic<int> g_override{-1};

}  // namespace

SimdLevel simd_level() {
  static const SimdLevel detected = detect();
  int o = g_override.load(std::memory_order_relaxed);
  if (o >= 0 && o < static_cast<int>(detected)) return static_cast<SimdLevel>(o);
  return detected;
}

std::string simd_env_value() { return simd_env().value; }
std::string simd_env_error() { return simd_env().error; }

const char* simd_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::kAVX512: return "avx512";
    case SimdLevel::kAVX2: return "avx2";
    default: return "scalar";
  }
}

std::string blas_name() {
#ifdef MEMQ_HAVE_CBLAS
  // openblas_get_config() reads like "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY ...".
  std::string cfg = openblas_get_config();
  std::string version;
  if (cfg.rfind("OpenBLAS ", 0) == 0) {
    size_t end = cfg.find(' ', 9);
    version = cfg.substr(9, end == std::string::npos ? std::string::npos : end - 9);
  }
  return version.empty() ? std::string("openblas") : "openblas " + version;
#else
  return "builtin";
#endif
}

namespace cpu {
void set_simd_override(int level) { g_override.store(level, std::memory_order_relaxed); }

// AVX512_BF16 (vdpbf16ps) and AVX512_VNNI (vpdpbusd) from CPUID directly: leaf 7 sub-leaf 0
// ECX bit 11 (VNNI), leaf 7 sub-leaf 1 EAX bit 5 (BF16; sub-leaf 1 exists when leaf 7 sub-leaf
// 0's EAX >= 1). The OS's saving of the zmm state is what detect_hw() checked for AVX-512
// (libgcc's __builtin_cpu_supports reads XCR0), so both count only with the AVX-512 level.
bool cpu_has_avx512_dp() {
  static const bool has = [] {
#ifdef MEMQ_X86
    if (detect_hw() != SimdLevel::kAVX512) return false;
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    const bool vnni = (c >> 11) & 1u;
    const unsigned max_sub = a;
    if (max_sub < 1) return false;
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
    const bool bf16 = (a >> 5) & 1u;
    return vnni && bf16;
#else
    return false;
#endif
  }();
  return has;
}
}  // namespace cpu

}  // namespace memq
