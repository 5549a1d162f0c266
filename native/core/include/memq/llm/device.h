// Where the transformer engine runs (issue #20): the CPU (the reference, always available) or a
// CUDA device. No CUDA type appears here: this header is included by code built without CUDA,
// where create_cuda_engine() and the self-test report "CUDA support not compiled in".
//
// A Model placed on a device keeps its float32 host copy of the weights as the master (save,
// clone, merge and the host accessors read it) and a device copy (bf16 or float32) that the
// inference calls and the trainers use. Each Model method then runs on the device with the same
// validation, semantics and outputs as on the CPU, up to floating-point rounding (docs/cuda.md
// gives the tolerances the tests hold it to).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "memq/llm/lora.h"
#include "memq/llm/model.h"
#include "memq/status.h"

namespace memq {
namespace llm {

enum class LlmDevice : int { kCpu = 0, kCuda = 1 };
const char* llm_device_name(LlmDevice d);  // "cpu" | "cuda"

// Precision of the device copy of the weights and of the matrix products' inputs.
//   kBF16: matrices stored in bf16, every matrix-product operand rounded to bf16 (tensor cores,
//          float32 accumulation); activations, norms, softmax, LoRA masters and optimizer state
//          in float32. The default on CUDA.
//   kFP32: weights stored in float32, products as 3xTF32 on the tensor cores (float32-level
//          accuracy; what the tests compare with tight tolerances).
enum class LlmPrecision : int { kBF16 = 0, kFP32 = 1 };
const char* llm_precision_name(LlmPrecision p);  // "bf16" | "fp32"
bool llm_precision_from_name(const std::string& name, LlmPrecision* out);

struct LlmDeviceOptions {
  std::string device = "cpu";  // "cpu" | "cuda" | "auto"
  LlmPrecision precision = LlmPrecision::kBF16;
  // Device memory every allocation of the engine leaves free (other processes, the retrieval
  // store, the CUDA context's own needs); weights or activations that would cut into it fail
  // with OutOfMemory before anything is allocated.
  int64_t reserve_bytes = int64_t(512) << 20;
  // Upper bound on the LM head's logits chunk (rows x vocabulary floats): the B x T x V logits
  // of a batch are never stored, only one chunk at a time.
  int64_t logits_chunk_bytes = int64_t(1) << 30;
  // Whether choosing CUDA ("cuda" / "auto") needs llm_cuda_self_test() to pass (the self-test
  // itself places its models with this off).
  bool require_self_test = true;
};

struct LlmDeviceChoice {
  LlmDevice device = LlmDevice::kCpu;
  std::string requested;         // "cpu" | "cuda" | "auto"
  std::string reason;            // why this device, e.g. "auto: CUDA not used: no CUDA device"
  std::string self_test_report;  // the LLM self-test's report when it ran
};

// requested: "cpu" -> CPU; "cuda" -> CUDA when a device exists and the LLM self-test passes
// (Unavailable naming why not); "auto" -> CUDA under the same conditions, else the CPU with the
// reason. Anything else -> InvalidArgument. The device probe and the self-test run once per
// process (cached). With require_self_test = false only the device probe decides.
Status select_llm_device(const std::string& requested, LlmDeviceChoice* out, bool require_self_test = true);

// A tiny random Qwen2/Qwen3 model (GQA, biases, q/k norms) on the device against the CPU engine:
// token log-probs, scoring with a shared prompt, embeddings and one LoRA training step (loss,
// gradient, updated adapter), in both precisions. Ok only when a device exists and everything
// agrees; the report says what ran and what failed (or why nothing could run).
Status llm_cuda_self_test(std::string* report);

class DeviceOptimizer;

// The device side of a Model (implemented in native/core/llm/cuda). Calls on one engine are
// serialised by the engine (one CUDA stream); every method validates its inputs like the CPU
// engine before touching the device, and host pointers in/out have the CPU engine's layouts.
class DeviceEngine {
 public:
  virtual ~DeviceEngine() = default;
  // e.g. "cuda:0 NVIDIA H100 80GB HBM3 (bf16 weights, 988 MiB on the device)"
  virtual std::string description() const = 0;
  virtual LlmDevice device() const = 0;
  virtual const LlmDeviceOptions& options() const = 0;
  virtual int64_t device_bytes() const = 0;  // device memory held now (weights, caches, scratch)

  // The host weights (Model::param_data()) changed: copy them to the device again.
  virtual Status upload_weights(const float* host_params) = 0;

  // The inference calls of Model, with its semantics (host pointers in and out).
  virtual Status logits(float* out, const TokenBatch& batch, const LoraAdapter* lora) = 0;
  virtual Status token_logprobs(float* out, const TokenBatch& batch, const LoraAdapter* lora) = 0;
  virtual Status score(float* scores, float* token_logprobs_out, const ScoreRequest& req, const LoraAdapter* lora) = 0;
  virtual Status embed_mean(float* out, const TokenBatch& batch, const LoraAdapter* lora) = 0;

  // Model::forward_backward. With device_grads, lora_grad / full_grad are DEVICE pointers (an
  // optimizer's grad()) that accumulate; otherwise host pointers that the gradient is added to.
  virtual Status forward_backward(const TokenBatch& batch, LossNorm norm, const LoraAdapter* lora, float* lora_grad,
                                  float* full_grad, bool device_grads, float grad_scale, double* loss_out,
                                  double* weight_sum_out) = 0;

  // Frees the scratch buffers (activations, backward scratch, LM-head chunk, prompt caches, LoRA
  // copies), which otherwise stay at the largest size a call needed; the weights stay.
  virtual void trim() = 0;

  // Optimizer state for n parameters on this device (gradient, AdamW moments).
  virtual Status create_optimizer(int64_t n, std::unique_ptr<DeviceOptimizer>* out) = 0;
};

// Gradient and AdamW state of n parameters on a device (see accumulated_adamw_step in lora.h;
// the step has exactly its semantics).
class DeviceOptimizer {
 public:
  virtual ~DeviceOptimizer() = default;
  virtual int64_t size() const = 0;
  virtual float* grad() = 0;  // device pointer, n floats
  virtual Status zero_grad() = 0;
  virtual Status download_grad(float* host) = 0;
  // Averages grad over `micro` micro-batches, measures its global norm (written to *norm_out),
  // and unless it is non-finite (then *skipped = true and params are not touched) clips it to
  // clip_norm (> 0) and applies AdamW step t (1-based) to the n HOST parameters `params` (copied
  // to the device, updated there, copied back). Does not zero grad.
  virtual Status step(float* params, int64_t micro, double clip_norm, const AdamWOptions& o, int64_t t,
                      double* norm_out, bool* skipped) = 0;
  virtual Status get_moments(float* m, float* v) = 0;  // host outputs, n floats each
  virtual Status set_moments(const float* m, const float* v) = 0;
};

// A CUDA engine holding a device copy of `model`'s weights. Unavailable when CUDA is not compiled
// in or no device is usable (the text says why), OutOfMemory when the weights (+ reserve) do not
// fit the free device memory (nothing allocated then), InvalidArgument for a model the device
// engine does not support (head_dim > 256).
Status create_cuda_engine(const Model& model, const LlmDeviceOptions& opts, std::unique_ptr<DeviceEngine>* out);

// Bytes of device memory the weights of `cfg` take in `precision` (what create_cuda_engine checks).
int64_t cuda_weight_bytes(const ModelConfig& cfg, LlmPrecision precision);

}  // namespace llm
}  // namespace memq
