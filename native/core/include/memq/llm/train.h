// Full-weight training of a (tiny) model: the same weighted loss and AdamW as LoraTrainer, over
// every parameter (for `memq model pretrain` on expert transcripts). Tied embeddings receive the
// LM head's gradient too.
#pragma once
#include <cstdint>
#include <vector>

#include "memq/llm/lora.h"
#include "memq/llm/model.h"
#include "memq/status.h"

namespace memq {
namespace llm {

class ModelTrainer {
 public:
  ModelTrainer(Model* model, const TrainOptions& opts);
  Status accumulate(const TokenBatch& batch, double* loss_out = nullptr);
  Status step(StepStats* out = nullptr);  // average, clip, AdamW on all weights, zero
  int64_t steps() const { return t_; }
  int64_t micro_batches() const { return micro_; }  // accumulated since the last step
  int64_t num_params() const { return int64_t(grad_.size()); }
  const std::vector<float>& grad() const { return grad_; }
  TrainOptions& options() { return opts_; }
  const TrainOptions& options() const { return opts_; }
  // As LoraTrainer's: copies / restores {m, v, t} (validated; the accumulated gradient is kept).
  Status get_state(TrainerState* out) const;
  Status set_state(const TrainerState& s);
  Status set_state(TrainerState&& s);

 private:
  Model* model_;
  TrainOptions opts_;
  std::vector<float> grad_, m_, v_;
  int64_t t_ = 0;
  int64_t micro_ = 0;
  double loss_sum_ = 0.0;
};

}  // namespace llm
}  // namespace memq
