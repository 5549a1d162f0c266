// Device discovery, error mapping and device-memory helpers of the CUDA backend.
// With the static CUDA runtime, every call here is safe on a machine without a driver: the
// runtime returns cudaErrorInsufficientDriver / cudaErrorNoDevice, which become reasons.
#include <dlfcn.h>

#include <cstdio>
#include <string>

#include "common.cuh"

namespace memq {
namespace cudak {

namespace {
std::string mib(double bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024.0));
  return buf;
}
std::string version_text(int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); }

__global__ void probe_kernel(int* x) {
  if (x) *x = 1;
}
}  // namespace

Status to_status(cudaError_t e, const char* what, const char* file, int line) {
  cudaGetLastError();  // clear a non-sticky error so that later calls start clean
  std::string msg = std::string("CUDA error in ") + what + ": " + cudaGetErrorName(e) + " (" +
                    cudaGetErrorString(e) + ") at " + file + ":" + std::to_string(line);
  switch (e) {
    case cudaErrorMemoryAllocation: return Status::NoMemory(msg);
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorInvalidDeviceFunction: return Status::Unavailable(msg);
    default: return Status::Internal(msg);
  }
}

Status device_props(int device, DeviceProps* out) {
  DeviceProps p;
  p.device = device;
  MEMQ_CUDA_TRY(cudaDeviceGetAttribute(&p.sm_count, cudaDevAttrMultiProcessorCount, device));
  int smem = 0;
  MEMQ_CUDA_TRY(cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  p.max_smem_optin = smem;
  *out = p;
  return Status::Ok();
}

Status check_free_memory(size_t bytes, int64_t reserve, const char* what) {
  size_t free_b = 0, total_b = 0;
  MEMQ_CUDA_TRY(cudaMemGetInfo(&free_b, &total_b));
  const double need = (double)bytes + (double)(reserve > 0 ? reserve : 0);
  if (need > (double)free_b)
    return Status::NoMemory(std::string(what) + ": needs " + mib((double)bytes) + " of device memory (+ " +
                            mib((double)reserve) + " kept free), but only " + mib((double)free_b) +
                            " of " + mib((double)total_b) + " are free");
  return Status::Ok();
}

DevBuf::~DevBuf() { release(); }

void DevBuf::release() {
  if (p) cudaFree(p);  // error ignored: nothing useful to do in a destructor
  p = nullptr;
  bytes = 0;
}

Status DevBuf::ensure(size_t n, int64_t reserve, cudaStream_t stream, const char* what) {
  if (n <= bytes && p) return Status::Ok();
  if (p) {
    MEMQ_CUDA_TRY(cudaStreamSynchronize(stream));
    release();
  }
  if (n == 0) n = 256;
  MEMQ_RETURN_IF_ERROR(check_free_memory(n, reserve, what));
  void* q = nullptr;
  cudaError_t e = cudaMalloc(&q, n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return Status::NoMemory(std::string(what) + ": cudaMalloc of " + mib((double)n) + " failed: " +
                            cudaGetErrorString(e));
  }
  p = q;
  bytes = n;
  return Status::Ok();
}

Status ensure_device(int device) {
  CudaDeviceInfo info;
  Status st = cuda_device_info(&info);
  if (!st.ok()) return st;
  if (device < 0 || device >= info.device_count)
    return Status::OutOfRange("device " + std::to_string(device) + " does not exist (" +
                           std::to_string(info.device_count) + " found)");
  MEMQ_CUDA_TRY(cudaSetDevice(device));
  return Status::Ok();
}

}  // namespace cudak

Status cuda_device_info(CudaDeviceInfo* out) {
  if (!out) return Status::Invalid("out is null");
  CudaDeviceInfo info;
  info.compiled = true;
  cudaRuntimeGetVersion(&info.runtime_version);  // needs no driver
  if (cudaDriverGetVersion(&info.driver_version) != cudaSuccess) info.driver_version = 0;
  cudaGetLastError();
  auto unavailable = [&](std::string why) {
    info.reason = std::move(why);
    *out = info;
    return Status::Unavailable(info.reason);
  };
  if (info.driver_version == 0) {
    void* h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (!h) return unavailable("no CUDA driver (libcuda.so.1 not found)");
    dlclose(h);
  }
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  cudaGetLastError();
  if (e != cudaSuccess) {
    if (e == cudaErrorNoDevice) return unavailable("no CUDA device");
    if (e == cudaErrorInsufficientDriver) {
      if (info.driver_version == 0) return unavailable("no CUDA driver (cudaErrorInsufficientDriver)");
      return unavailable("CUDA driver " + cudak::version_text(info.driver_version) + " too old for runtime " +
                         cudak::version_text(info.runtime_version));
    }
    return unavailable(std::string("cudaGetDeviceCount failed: ") + cudaGetErrorName(e) + " (" +
                       cudaGetErrorString(e) + ")");
  }
  info.device_count = count;
  if (count <= 0) return unavailable("no CUDA device");
  cudaDeviceProp prop;
  e = cudaGetDeviceProperties(&prop, 0);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return unavailable(std::string("cudaGetDeviceProperties(0) failed: ") + cudaGetErrorString(e));
  }
  info.device = 0;
  info.name = prop.name;
  info.cc_major = prop.major;
  info.cc_minor = prop.minor;
  info.sm_count = prop.multiProcessorCount;
  info.total_bytes = (int64_t)prop.totalGlobalMem;
  if (prop.major < 8)
    return unavailable("device 0 (" + info.name + ") has compute capability " + std::to_string(prop.major) + "." +
                       std::to_string(prop.minor) + "; memq needs >= 8.0 (bf16 tensor cores)");
  int cur = 0;
  cudaGetDevice(&cur);
  if (cudaSetDevice(0) != cudaSuccess) {
    cudaGetLastError();
    return unavailable("cudaSetDevice(0) failed");
  }
  size_t free_b = 0, total_b = 0;
  e = cudaMemGetInfo(&free_b, &total_b);  // creates the context: the first call that needs a working driver
  if (e != cudaSuccess) {
    cudaGetLastError();
    return unavailable(std::string("cannot create a CUDA context on device 0: ") + cudaGetErrorName(e) + " (" +
                       cudaGetErrorString(e) + ")");
  }
  info.free_bytes = (int64_t)free_b;
  info.total_bytes = (int64_t)total_b;
  // Whether this binary has code for the device (the build targets CMAKE_CUDA_ARCHITECTURES).
  cudaFuncAttributes fa;
  e = cudaFuncGetAttributes(&fa, cudak::probe_kernel);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return unavailable("no kernel image for device 0 (compute capability " + std::to_string(prop.major) + "." +
                       std::to_string(prop.minor) + "): rebuild with -DCMAKE_CUDA_ARCHITECTURES=" +
                       std::to_string(prop.major) + std::to_string(prop.minor));
  }
  if (cur != 0) cudaSetDevice(cur);
  *out = info;
  return Status::Ok();
}

}  // namespace memq
