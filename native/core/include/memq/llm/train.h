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
  TrainOptions& options() { return opts_; }

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
