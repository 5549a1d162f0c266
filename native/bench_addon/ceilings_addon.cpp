// Module entry of memq_bench.node, the benchmarks' own addon (bench/ceilings.ts loads it): this
// machine's ceilings, measured in the same run as a benchmark. It is built next to memq.node by
// a source build (cmake-js: build/Release/memq_bench.node; node-gyp: the memq_bench target) and
// is not part of the portable prebuild or of an installed package's source build: the
// production addon has no benchmark-only exports.
#include <napi.h>

#include <string>

#include "memq/ceilings.h"
#include "memq/cpu_features.h"
#include "util.h"

namespace memq_bench_addon {
namespace {

using memq_addon::check_result_elements;
using memq_addon::guard;
using memq_addon::int_arg;
using memq_addon::number_arg;

// measureCeilings(b, n, d, seconds, bandwidthBytes) -> { gemmGflops, bandwidthGBs, ... } (synchronous).
Napi::Value MeasureCeilings(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t b = int_arg(info[0], "b", 1, 1 << 16);
  int64_t n = int_arg(info[1], "n", 1, 1 << 24);
  int64_t d = int_arg(info[2], "d", 1, 1 << 16);
  double seconds = number_arg(info[3], "seconds");
  int64_t bytes = int_arg(info[4], "bandwidthBytes", 1 << 20, int64_t{1} << 32);
  // Each pool thread allocates b*d, n*d and b*n floats (and a packed block and a C^T tile).
  check_result_elements(env, "measureCeilings", "b*d", static_cast<double>(b) * static_cast<double>(d));
  check_result_elements(env, "measureCeilings", "n*d", static_cast<double>(n) * static_cast<double>(d));
  check_result_elements(env, "measureCeilings", "b*n", static_cast<double>(b) * static_cast<double>(n));
  memq::GemmCeiling g = memq::measure_gemm_ceiling(b, n, d, seconds);
  memq::BandwidthCeiling bw = memq::measure_read_bandwidth(bytes, 5);
  Napi::Object o = Napi::Object::New(env);
  o.Set("gemmGflops", Napi::Number::New(env, g.gflops));
  o.Set("gemmShape", Napi::String::New(env, std::to_string(b) + "x" + std::to_string(n) + "x" + std::to_string(d)));
  o.Set("bandwidthGBs", Napi::Number::New(env, bw.gbytes_per_s));
  o.Set("bandwidthBytes", Napi::Number::New(env, static_cast<double>(bw.bytes)));
  o.Set("threads", Napi::Number::New(env, g.threads));
  o.Set("blas", Napi::String::New(env, memq::blas_name()));
  o.Set("gemmKernel", Napi::String::New(env, g.kernel));
  o.Set("gemmAbtGflops", Napi::Number::New(env, g.gemm_abt_gflops));
  o.Set("tileGflops", Napi::Number::New(env, g.tile_gflops));
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("measureCeilings",
              Napi::Function::New(
                  env,
                  [](const Napi::CallbackInfo& info) {
                    return guard(info.Env(), "measureCeilings", [&] { return MeasureCeilings(info); });
                  },
                  "measureCeilings"));
  return exports;
}

}  // namespace
}  // namespace memq_bench_addon

static Napi::Object InitMemqBench(Napi::Env env, Napi::Object exports) { return memq_bench_addon::Init(env, exports); }
NODE_API_MODULE(memq_bench, InitMemqBench)
