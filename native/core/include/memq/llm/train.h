// Full-weight training of a (tiny) model: the same weighted loss and AdamW as LoraTrainer, over
// every parameter (for `memq model pretrain` on expert transcripts). Tied embeddings receive the
// LM head's gradient too.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "memq/llm/lora.h"
#include "memq/llm/model.h"
#include "memq/status.h"

namespace memq {
namespace llm {

// On a model placed on a device the gradient and the AdamW moments live there; each step
// updates the host weights (the master) and copies them to the device again (cheap for the tiny
// models this trainer is for; see docs/cuda.md).
class ModelTrainer {
 public:
  ModelTrainer(Model* model, const TrainOptions& opts);
  ~ModelTrainer();
  Status accumulate(const TokenBatch& batch, double* loss_out = nullptr);
  Status step(StepStats* out = nullptr);  // average, clip, AdamW on all weights, zero
  int64_t steps() const { return t_; }
  int64_t micro_batches() const { return micro_; }  // accumulated since the last step
  int64_t num_params() const { return n_; }
  // The accumulated gradient (copied from the device first when the model is on one).
  const std::vector<float>& grad() const;
  TrainOptions& options() { return opts_; }
  const TrainOptions& options() const { return opts_; }
  // As LoraTrainer's: copies / restores {m, v, t} (validated; the accumulated gradient is kept).
  Status get_state(TrainerState* out) const;
  Status set_state(const TrainerState& s);
  Status set_state(TrainerState&& s);

 private:
  Status device_state(DeviceOptimizer** out) const;  // null on the CPU; Invalid when the model moved
  Model* model_;
  TrainOptions opts_;
  int64_t n_ = 0;
  mutable std::vector<float> grad_;
  std::vector<float> m_, v_;
  int64_t t_ = 0;
  int64_t micro_ = 0;
  double loss_sum_ = 0.0;
  DeviceEngine* engine_ = nullptr;
  uint64_t placement_ = 0;
  mutable std::unique_ptr<DeviceOptimizer> dev_;
};

}  // namespace llm
}  // namespace memq
