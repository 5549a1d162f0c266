// Module entry of the memq N-API addon: MemoryIndex, klImprove, backendInfo.
#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "memq/cpu_features.h"
#include "memq/cuda/cuda_backend.h"
#include "memq/kernels.h"
#include "memq/llm/device.h"
#include "memq/limits.h"
#include "memq/thread_pool.h"
#include "util.h"

#ifndef MEMQ_BUILD_SYSTEM
#define MEMQ_BUILD_SYSTEM "node-gyp"
#endif

namespace memq_addon {

Napi::Function InitMemoryIndex(Napi::Env env);
void InitLlm(Napi::Env env, Napi::Object exports);
Napi::Value MapFile(const Napi::CallbackInfo& info);  // mapped_file.cpp

namespace {

struct KlJob {
  const float* log_prior = nullptr;
  const float* q = nullptr;
  const int32_t* row_lengths = nullptr;
  int64_t rows = 0, cols = 0;
  float alpha = 1.f;
  float* policy = nullptr;
  float* value = nullptr;
  // Async: copies of the inputs (the caller may reuse or transfer its arrays at once).
  std::shared_ptr<std::vector<float>> lp_copy, q_copy;
  std::shared_ptr<std::vector<int32_t>> rl_copy;
  memq::Status run() const {
    return memq::kl_improve(policy, value, log_prior, q, rows, cols, row_lengths, alpha);
  }
};

// klImprove(logPrior, q, rows, cols, alpha, rowLengths | undefined) -> { policy, value }. rows,
// rows*cols are checked against limits::kMaxResultElements before the outputs are allocated.
KlJob make_kl_job(const Napi::CallbackInfo& info, bool async, const char* where, Napi::Object* result) {
  Napi::Env env = info.Env();
  auto lp = typed_array_arg<float>(info[0], "logPrior");
  auto q = typed_array_arg<float>(info[1], "q");
  KlJob job;
  job.rows = int_arg(info[2], "rows", 0, memq::limits::kMaxResultElements);
  job.cols = int_arg(info[3], "cols", 0, memq::limits::kMaxResultElements);
  job.alpha = static_cast<float>(number_arg(info[4], "alpha"));
  check_result_elements(env, where, "rows*cols = " + std::to_string(job.rows) + "*" + std::to_string(job.cols),
                        static_cast<double>(job.rows) * static_cast<double>(job.cols));
  size_t expect = static_cast<size_t>(job.rows * job.cols);
  if (lp.length != expect) {
    throw Napi::RangeError::New(env, "logPrior.length must be rows*cols (" + std::to_string(expect) + "), got " +
                                         std::to_string(lp.length));
  }
  if (q.length != expect) {
    throw Napi::RangeError::New(env, "q.length must be rows*cols (" + std::to_string(expect) + "), got " +
                                         std::to_string(q.length));
  }
  ArrayArg<int32_t> rl;
  if (info.Length() > 5 && !info[5].IsUndefined() && !info[5].IsNull()) {
    rl = typed_array_arg<int32_t>(info[5], "rowLengths");
    if (rl.length != static_cast<size_t>(job.rows)) {
      throw Napi::RangeError::New(env, "rowLengths.length must equal rows (" + std::to_string(job.rows) + ")");
    }
  }
  if (async) {
    job.lp_copy = std::make_shared<std::vector<float>>(lp.data, lp.data + lp.length);
    job.q_copy = std::make_shared<std::vector<float>>(q.data, q.data + q.length);
    job.log_prior = job.lp_copy->data();
    job.q = job.q_copy->data();
    if (rl.data) {
      job.rl_copy = std::make_shared<std::vector<int32_t>>(rl.data, rl.data + rl.length);
      job.row_lengths = job.rl_copy->data();
    }
  } else {
    job.log_prior = lp.data;
    job.q = q.data;
    job.row_lengths = rl.data;
  }
  auto policy = new_typed_array<float>(env, expect, std::string(where) + " policy (rows*cols)");
  auto value = new_typed_array<float>(env, static_cast<size_t>(job.rows), std::string(where) + " value (rows)");
  job.policy = policy.Data();
  job.value = value.Data();
  *result = Napi::Object::New(env);
  result->Set("policy", policy);
  result->Set("value", value);
  return job;
}

Napi::Value KlImprove(const Napi::CallbackInfo& info) {
  Napi::Object result;
  KlJob job = make_kl_job(info, false, "klImprove", &result);
  memq::Status st = job.run();
  if (!st.ok()) throw status_error(info.Env(), st, "klImprove");
  return result;
}

Napi::Value KlImproveAsync(const Napi::CallbackInfo& info) {
  Napi::Object result;
  KlJob job = make_kl_job(info, true, "klImproveAsync", &result);
  return PromiseWorker::Start(info.Env(), "klImproveAsync", [job]() { return job.run(); }, resolve_to(result), {});
}

Napi::Value BackendInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("threads", Napi::Number::New(env, memq::num_threads()));
  o.Set("simd", Napi::String::New(env, memq::simd_name(memq::simd_level())));
  o.Set("blas", Napi::String::New(env, memq::blas_name()));
  o.Set("cudaCompiled", Napi::Boolean::New(env, memq::cuda_compiled()));
  // What 'auto' would choose, and why (device present + self-test against the CPU twin).
  memq::BackendChoice choice;
  memq::Status st = memq::select_backend("auto", &choice);
  o.Set("autoBackend", Napi::String::New(env, st.ok() ? memq::backend_name(choice.backend) : "cpu"));
  o.Set("autoReason", Napi::String::New(env, st.ok() ? choice.reason : st.message()));
  memq::CudaDeviceInfo dev;
  if (memq::cuda_device_info(&dev).ok() && dev.device >= 0) {
    o.Set("device", Napi::String::New(env, dev.name + " (cc " + std::to_string(dev.cc_major) + "." +
                                               std::to_string(dev.cc_minor) + ", " +
                                               std::to_string(dev.total_bytes >> 20) + " MiB)"));
  }
  // Where LlmModel {device: 'auto'} would run, and why (device present + the LLM self-test).
  memq::llm::LlmDeviceChoice llm;
  memq::Status lst = memq::llm::select_llm_device("auto", &llm);
  o.Set("llmDevice", Napi::String::New(env, lst.ok() ? memq::llm::llm_device_name(llm.device) : "cpu"));
  o.Set("llmReason", Napi::String::New(env, lst.ok() ? llm.reason : lst.message()));
  if (!llm.self_test_report.empty()) o.Set("llmSelfTest", Napi::String::New(env, llm.self_test_report));
  o.Set("buildSystem", Napi::String::New(env, MEMQ_BUILD_SYSTEM));
  // MEMQ_SIMD / MEMQ_THREADS as the native side parsed them, and why a value was rejected
  // (a rejected value is ignored: no SIMD cap, the hardware thread count).
  Napi::Object parsed = Napi::Object::New(env);
  parsed.Set("MEMQ_SIMD", memq::simd_env_value().empty() ? env.Null() : Napi::String::New(env, memq::simd_env_value()));
  parsed.Set("MEMQ_THREADS", memq::threads_env_value() > 0 ? Napi::Number::New(env, memq::threads_env_value())
                                                           : env.Null());
  o.Set("envParsed", parsed);
  Napi::Array errors = Napi::Array::New(env);
  uint32_t ne = 0;
  for (const std::string& e : {memq::simd_env_error(), memq::threads_env_error()})
    if (!e.empty()) errors.Set(ne++, Napi::String::New(env, e));
  o.Set("envErrors", errors);
  // limits.h, so that lib/retrieval.ts can be held to the same numbers.
  Napi::Object lim = Napi::Object::New(env);
  lim.Set("maxResultElements", Napi::Number::New(env, static_cast<double>(memq::limits::kMaxResultElements)));
  lim.Set("maxM", Napi::Number::New(env, static_cast<double>(memq::limits::kMaxM)));
  lim.Set("maxKappa", Napi::Number::New(env, memq::limits::kMaxKappa));
  lim.Set("minDelta", Napi::Number::New(env, 1e-30));  // kMinDelta = 1e-30f: any double >= 1e-30 rounds to >= it
  lim.Set("maxLayers", Napi::Number::New(env, static_cast<double>(memq::limits::kMaxLayers)));
  lim.Set("maxParams", Napi::Number::New(env, static_cast<double>(memq::limits::kMaxParams)));
  lim.Set("maxActivationFloats", Napi::Number::New(env, static_cast<double>(memq::limits::kMaxActivationFloats)));
  o.Set("limits", lim);
  return o;
}

// selectBackend(requested: 'auto' | 'cpu' | 'cuda') -> { ok, backend, requested, reason, selfTestReport }:
// memq::select_backend for MemoryIndex. ok is false (backend 'cpu', reason the Status text) when
// 'cuda' is requested and cannot be used; anything but the three names is a TypeError.
Napi::Value SelectBackend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "selectBackend: requested must be a string");
  const std::string requested = info[0].As<Napi::String>().Utf8Value();
  if (requested.empty()) throw Napi::TypeError::New(env, "selectBackend: requested must be 'auto', 'cpu' or 'cuda'");
  memq::BackendChoice choice;
  memq::Status st = memq::select_backend(requested.c_str(), &choice);
  if (st.code() == memq::StatusCode::kInvalidArgument) throw status_error(env, st, "selectBackend");
  Napi::Object o = Napi::Object::New(env);
  o.Set("ok", Napi::Boolean::New(env, st.ok()));
  o.Set("backend", Napi::String::New(env, st.ok() ? memq::backend_name(choice.backend) : "cpu"));
  o.Set("requested", Napi::String::New(env, requested));
  o.Set("reason", Napi::String::New(env, st.ok() ? choice.reason : st.message()));
  o.Set("selfTestReport", Napi::String::New(env, choice.self_test_report));
  return o;
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  int64_t n = int_arg(info[0], "threads", 0, 4096);
  memq::set_num_threads(static_cast<int>(n));
  return Napi::Number::New(info.Env(), memq::num_threads());
}

// Every exported function runs through guard(): a C++ exception becomes a JS Error.
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Function fn(Napi::Env env, const char* name) {
  return Napi::Function::New(
      env, [name](const Napi::CallbackInfo& info) { return guard(info.Env(), name, [&] { return F(info); }); }, name);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeMemoryIndex", InitMemoryIndex(env));
  InitLlm(env, exports);
  exports.Set("klImprove", fn<KlImprove>(env, "klImprove"));
  exports.Set("klImproveAsync", fn<KlImproveAsync>(env, "klImproveAsync"));
  exports.Set("backendInfo", fn<BackendInfo>(env, "backendInfo"));
  exports.Set("selectBackend", fn<SelectBackend>(env, "selectBackend"));
  exports.Set("setThreads", fn<SetThreads>(env, "setThreads"));
  exports.Set("mapFile", fn<MapFile>(env, "mapFile"));
  return exports;
}

}  // namespace
}  // namespace memq_addon

static Napi::Object InitMemq(Napi::Env env, Napi::Object exports) { return memq_addon::Init(env, exports); }
NODE_API_MODULE(memq, InitMemq)
