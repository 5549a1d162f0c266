// Backend selection (cuda_backend.h): `auto` uses CUDA only when a device exists and the
// start-up self-test against the CPU twins passes. Host code, compiled in every build (without
// CUDA the device query says "CUDA support not compiled in" and auto falls back to the CPU).
#include <cstdlib>
#include <mutex>
#include <string>

#include "memq/cuda/cuda_backend.h"

namespace memq {

namespace {
struct Probe {
  Status device;
  CudaDeviceInfo info;
  Status self_test;
  std::string report;
};
const Probe& probe() {
  static Probe p;
  static std::once_flag once;
  std::call_once(once, [] {
    p.device = cuda_device_info(&p.info);
    if (p.device.ok()) p.self_test = cuda_self_test(&p.report);
  });
  return p;
}
}  // namespace

const char* backend_name(Backend b) { return b == Backend::kCuda ? "cuda" : "cpu"; }

Status select_backend(const char* requested, BackendChoice* out) {
  if (!out) return Status::Invalid("out is null");
  std::string req = requested && *requested ? requested : "";
  if (req.empty()) {
    const char* env = std::getenv("MEMQ_BACKEND");
    req = env && *env ? env : "auto";
  }
  BackendChoice c;
  c.requested = req;
  if (req == "cpu") {
    c.backend = Backend::kCpu;
    c.reason = "cpu: requested";
    *out = c;
    return Status::Ok();
  }
  if (req != "auto" && req != "cuda")
    return Status::Invalid("backend must be 'auto', 'cpu' or 'cuda', got '" + req + "'");
  const Probe& p = probe();
  c.self_test_report = p.report;
  std::string why;
  if (!p.device.ok()) why = p.info.reason;
  else if (!p.self_test.ok()) why = "the CUDA self-test failed: " + p.self_test.message();
  if (why.empty()) {
    c.backend = Backend::kCuda;
    c.reason = req + ": " + p.info.name + " passed the self-test against the CPU twins";
    *out = c;
    return Status::Ok();
  }
  if (req == "cuda") return Status::Unavailable("backend 'cuda' requested but unusable: " + why);
  c.backend = Backend::kCpu;
  c.reason = "auto: CUDA not used: " + why;
  *out = c;
  return Status::Ok();
}

}  // namespace memq
