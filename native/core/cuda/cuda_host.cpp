// Host-only parts of the CUDA backend, compiled into memq_core by the host compiler in every
// build. With MEMQ_HAVE_CUDA (the CMake build found nvcc) the real implementations live in the
// .cu files of this directory; without it (node-gyp, CPU-only CMake) every entry point of
// memq/cuda/cuda_backend.h is a stub that reports "CUDA support not compiled in".
// No CUDA header is included here.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "memq/cuda/cuda_backend.h"
#include "memq/cuda/cuda_bench.h"

namespace memq {

bool cuda_compiled() {
#ifdef MEMQ_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

const char* cuda_key_type_name(CudaKeyType t) {
  switch (t) {
    case CudaKeyType::kFloat32: return "float32";
    case CudaKeyType::kBFloat16: return "bf16";
    case CudaKeyType::kFloat16: return "fp16";
  }
  return "unknown";
}

// Round to nearest even at bit 16 (what __float2bfloat16_rn does); NaN stays NaN.
float round_to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return x;  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  u &= 0xffff0000u;
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

// Round to the nearest float16 value, ties to even (what __float2half_rn does), as a float.
float round_to_fp16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  const uint32_t sign = u & 0x80000000u, a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return x;  // NaN
  if (a >= 0x477ff000u) return sign ? -INFINITY : INFINITY;  // >= 65520 rounds to inf
  float r;
  if (a < 0x38800000u) {  // below 2^-14: float16 subnormals, multiples of 2^-24
    float f;
    std::memcpy(&f, &a, 4);
    r = std::nearbyint(f * 16777216.0f) / 16777216.0f;  // exact scaling, round half even
  } else {
    uint32_t v = (a + 0xfffu + ((a >> 13) & 1u)) & 0xffffe000u;
    std::memcpy(&r, &v, 4);
  }
  return sign ? -r : r;
}

#ifndef MEMQ_HAVE_CUDA

namespace {
const char* kNotCompiled = "CUDA support not compiled in";
Status not_compiled() { return Status::Unavailable(kNotCompiled); }
}  // namespace

Status cuda_device_info(CudaDeviceInfo* out) {
  if (!out) return Status::Invalid("out is null");
  *out = CudaDeviceInfo();
  out->reason = kNotCompiled;
  return not_compiled();
}

Status cuda_self_test(std::string* report) {
  if (report) *report = std::string("cuda self-test: not run: ") + kNotCompiled;
  return not_compiled();
}

Status cuda_similarity(float*, float*, const float*, int64_t, const KeyView&, const KernelParams&) {
  return not_compiled();
}
Status cuda_search_topm(int64_t*, float*, float*, const float*, int64_t, const KeyView&, int64_t,
                        const KernelParams&) {
  return not_compiled();
}
Status cuda_kernel_weighted_value(float*, float*, const int64_t*, const float*, const float*, int64_t,
                                  int64_t, int64_t, float, float) {
  return not_compiled();
}
Status cuda_kl_improve(float*, float*, const float*, const float*, int64_t, int64_t, const int32_t*,
                       float) {
  return not_compiled();
}

struct CudaKeyStore::Impl {};
CudaKeyStore::CudaKeyStore() = default;
CudaKeyStore::~CudaKeyStore() = default;
Status CudaKeyStore::Create(const CudaKeyStoreOptions&, std::unique_ptr<CudaKeyStore>* out) {
  if (out) out->reset();
  return not_compiled();
}
// A CudaKeyStore cannot be created in this build; the members exist only so that code using
// the class links.
Status CudaKeyStore::add(int32_t*, const float*, const float*, int64_t) { return not_compiled(); }
Status CudaKeyStore::add_with_ids(const int32_t*, const float*, const float*, int64_t) { return not_compiled(); }
Status CudaKeyStore::update_values(const int32_t*, const float*, int64_t) { return not_compiled(); }
Status CudaKeyStore::remove(const int32_t*, int64_t) { return not_compiled(); }
Status CudaKeyStore::get_keys(float*, const int32_t*, int64_t) const { return not_compiled(); }
Status CudaKeyStore::get_values(float*, const int32_t*, int64_t) const { return not_compiled(); }
void CudaKeyStore::live_ids(int32_t*) const {}
void CudaKeyStore::contains(uint8_t* out, const int32_t*, int64_t n) const {
  for (int64_t i = 0; i < n; ++i) out[i] = 0;
}
Status CudaKeyStore::compact() { return not_compiled(); }
void CudaKeyStore::clear() {}
Status CudaKeyStore::search_topm(int64_t*, int32_t*, float*, float*, const float*, int64_t, int64_t,
                                 const KernelParams&) {
  return not_compiled();
}
Status CudaKeyStore::search_value(float*, float*, const float*, int64_t, int64_t, const KernelParams&, float,
                                  float) {
  return not_compiled();
}
Status CudaKeyStore::search_topm_device(int64_t*, float*, float*, const float*, int64_t, int64_t,
                                        const KernelParams&) {
  return not_compiled();
}
Status CudaKeyStore::synchronize() const { return not_compiled(); }
void* CudaKeyStore::stream() const { return nullptr; }
int64_t CudaKeyStore::size() const { return 0; }
int64_t CudaKeyStore::rows() const { return 0; }
int64_t CudaKeyStore::dim() const { return 0; }
int64_t CudaKeyStore::capacity() const { return 0; }
int32_t CudaKeyStore::next_id() const { return 0; }
int64_t CudaKeyStore::reserved_rows() const { return 0; }
int64_t CudaKeyStore::device_bytes() const { return 0; }
CudaKeyType CudaKeyStore::key_type() const { return CudaKeyType::kFloat32; }

Status cuda_bench_alloc(void** ptr, size_t) {
  if (ptr) *ptr = nullptr;
  return not_compiled();
}
void cuda_bench_free(void*) {}
Status cuda_bench_copy_to_device(void*, const void*, size_t) { return not_compiled(); }
Status cuda_bench_copy_to_host(void*, const void*, size_t) { return not_compiled(); }
Status cuda_bench_time(void*, int, int, const std::function<Status()>&, std::vector<double>*) { return not_compiled(); }
Status cuda_bench_copy_bandwidth(size_t, int, double*) { return not_compiled(); }

#endif  // !MEMQ_HAVE_CUDA

}  // namespace memq
