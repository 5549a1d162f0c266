// LoRA adapters (MATH §12): W' = W + (alpha / r) B A with A [r, in] (Kaiming-uniform init, as
// PEFT), B [out, r] (zero init); only A and B are trained, with AdamW. Saved/loaded in the PEFT
// layout: adapter_config.json + adapter_model.safetensors with keys
//   base_model.model.model.layers.{i}.self_attn.{q,k,v,o}_proj.lora_{A,B}.weight
//   base_model.model.model.layers.{i}.mlp.{gate,up,down}_proj.lora_{A,B}.weight
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "memq/llm/model.h"
#include "memq/status.h"

namespace memq {
namespace llm {

enum LoraTarget : int { kLoraQ = 0, kLoraK, kLoraV, kLoraO, kLoraGate, kLoraUp, kLoraDown, kLoraNumTargets };
// "q_proj" ... "down_proj" (PEFT target_modules names).
const char* lora_target_name(LoraTarget t);
// Accepts "q_proj" or the short "q" (and so on).
bool lora_target_from_name(const std::string& name, LoraTarget* out);

struct LoraConfig {
  int64_t r = 8;
  double alpha = 16.0;
  std::vector<std::string> target_modules = {"q_proj", "v_proj"};
  bool use_rslora = false;  // scale alpha / sqrt(r) instead of alpha / r (PEFT's option)
  std::string base_model_name_or_path;
};

struct LoraModule {
  float* A = nullptr;  // [r, in]   (null when this module is not targeted)
  float* B = nullptr;  // [out, r]
  int64_t in = 0, out = 0;
  int64_t a_offset = 0, b_offset = 0;  // into params() (and an adapter-sized gradient buffer)
};

class LoraAdapter {
 public:
  // A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform with a = sqrt(5), as PEFT), B = 0.
  static Status create(const ModelConfig& model, const LoraConfig& cfg, uint64_t seed,
                       std::unique_ptr<LoraAdapter>* out);
  // Reads adapter_config.json + adapter_model.safetensors; every expected key must be present
  // with its shape, and no other key.
  static Status load(const std::string& dir, const ModelConfig& model, std::unique_ptr<LoraAdapter>* out);
  Status save(const std::string& dir) const;

  const LoraConfig& config() const { return cfg_; }
  double scale() const;
  bool targets(LoraTarget t) const { return targeted_[t]; }
  const LoraModule& module(int64_t layer, LoraTarget t) const { return modules_[size_t(layer * kLoraNumTargets + t)]; }
  // Writes through params() must be followed by touch() (device engines keep a copy of the
  // parameters and upload them again only when version() changed).
  float* params() { return params_.data(); }
  const float* params() const { return params_.data(); }
  // A stamp unique across every adapter of the process, renewed by touch().
  uint64_t version() const { return version_; }
  void touch();
  int64_t size() const { return int64_t(params_.size()); }
  int64_t num_layers() const { return n_layers_; }
  // PEFT key of a module's A (is_b = false) or B matrix.
  static std::string peft_key(int64_t layer, LoraTarget t, bool is_b);

 private:
  Status init_storage(const ModelConfig& model, const LoraConfig& cfg);
  LoraConfig cfg_;
  int64_t n_layers_ = 0;
  bool targeted_[kLoraNumTargets] = {};
  std::vector<float> params_;
  std::vector<LoraModule> modules_;
  uint64_t version_ = 0;
};

// W += scale * B A for every targeted module (the merged model then needs no adapter).
Status merge_lora(Model* model, const LoraAdapter& lora);

// AdamW (decoupled weight decay, bias-corrected), as torch.optim.AdamW:
//   p -= lr * wd * p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//   p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
struct AdamWOptions {
  double lr = 1e-4;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};
void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, int64_t t, const AdamWOptions& o);

struct StepStats;
class DeviceEngine;
class DeviceOptimizer;
// The optimizer step shared by the LoRA and full-weight trainers: average the gradient
// accumulated over `micro` micro-batches, clip it by global norm (clip_norm <= 0: off), apply
// AdamW to params (t is incremented), fill `out`, and reset grad, micro and loss_sum. A
// non-finite norm skips the step (state reset, Internal error naming `who`).
Status accumulated_adamw_step(const char* who, float* params, std::vector<float>& grad, std::vector<float>& m,
                              std::vector<float>& v, int64_t& t, int64_t& micro, double& loss_sum,
                              double clip_norm, const AdamWOptions& adamw, StepStats* out);
// sqrt(sum g^2), accumulated in double.
double global_norm(const float* g, int64_t n);

struct TrainOptions {
  AdamWOptions adamw;
  double clip_norm = 1.0;  // global-norm clipping of the (averaged) gradient; <= 0 = off
  LossNorm loss_norm = LossNorm::kWeightSum;
};

struct StepStats {
  double loss = 0.0;       // mean over the accumulated micro-batches
  double grad_norm = 0.0;  // before clipping
  int64_t step = 0;        // optimizer steps taken so far
  int64_t micro_batches = 0;
};

// A trainer's AdamW state (first and second moments, one entry per trained parameter, and the
// number of optimizer steps taken): get_state() then set_state() on a trainer over the same
// parameter values resumes training bit-exactly. The accumulated gradient is not part of it.
struct TrainerState {
  std::vector<float> m, v;
  int64_t t = 0;
};
// Ok when `s` fits a trainer of `n` parameters (m and v of size n, t >= 0); else Invalid naming `who`.
Status check_trainer_state(const char* who, const TrainerState& s, int64_t n);
// The state accessors shared by the LoRA and full-weight trainers: copy m, v, t out; or check s
// against n parameters and move it in (nothing changes on error).
Status export_trainer_state(const char* who, const std::vector<float>& m, const std::vector<float>& v, int64_t t,
                            TrainerState* out);
Status import_trainer_state(const char* who, TrainerState&& s, int64_t n, std::vector<float>& m, std::vector<float>& v,
                            int64_t& t);

// LoRA trainer: accumulate() any number of micro-batches, then step() = average, clip, AdamW,
// zero the gradient. Deterministic for a given seed and data (no dependence on thread count).
// On a model placed on a device (Model::set_device) the gradient and the AdamW moments live on
// that device and every pass runs there; after each step the adapter's host parameters hold the
// new values (and the adapter is touch()ed). The model must stay where it was when the trainer
// was created (calls fail with InvalidArgument otherwise).
class LoraTrainer {
 public:
  LoraTrainer(const Model* model, LoraAdapter* lora, const TrainOptions& opts);
  ~LoraTrainer();
  Status accumulate(const TokenBatch& batch, double* loss_out = nullptr);
  Status step(StepStats* out = nullptr);
  // The accumulated gradient (copied from the device first when the model is on one).
  const std::vector<float>& grad() const;
  int64_t steps() const { return t_; }
  int64_t micro_batches() const { return micro_; }  // accumulated since the last step
  int64_t num_params() const { return n_; }
  TrainOptions& options() { return opts_; }
  const TrainOptions& options() const { return opts_; }
  // Copies / restores {m, v, t}. set_state() refuses a state of another size or t < 0 (Invalid,
  // nothing changed); the accumulated gradient is kept.
  Status get_state(TrainerState* out) const;
  Status set_state(const TrainerState& s);
  Status set_state(TrainerState&& s);  // moves m and v in (on success)

 private:
  Status device_state(DeviceOptimizer** out) const;  // null on the CPU; Invalid when the model moved
  const Model* model_;
  LoraAdapter* lora_;
  TrainOptions opts_;
  int64_t n_ = 0;
  mutable std::vector<float> grad_;
  std::vector<float> m_, v_;
  int64_t t_ = 0;
  int64_t micro_ = 0;
  double loss_sum_ = 0.0;
  DeviceEngine* engine_ = nullptr;  // the model's engine at construction (null: CPU)
  uint64_t placement_ = 0;          // and its placement stamp
  mutable std::unique_ptr<DeviceOptimizer> dev_;
};

}  // namespace llm
}  // namespace memq
