// Full-weight trainer (see memq/llm/train.h).
#include "memq/llm/train.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace memq {
namespace llm {

ModelTrainer::ModelTrainer(Model* model, const TrainOptions& opts) : model_(model), opts_(opts) {
  grad_.assign(size_t(model->num_params()), 0.0f);
  m_.assign(size_t(model->num_params()), 0.0f);
  v_.assign(size_t(model->num_params()), 0.0f);
}

Status ModelTrainer::accumulate(const TokenBatch& batch, double* loss_out) {
  double loss = 0.0;
  MEMQ_RETURN_IF_ERROR(model_->forward_backward(batch, opts_.loss_norm, nullptr, nullptr, grad_.data(), 1.0f, &loss));
  loss_sum_ += loss;
  ++micro_;
  if (loss_out) *loss_out = loss;
  return Status::Ok();
}

Status ModelTrainer::step(StepStats* out) {
  return accumulated_adamw_step("model trainer", model_->param_data(), grad_, m_, v_, t_, micro_, loss_sum_,
                                opts_.clip_norm, opts_.adamw, out);
}

Status ModelTrainer::get_state(TrainerState* out) const { return export_trainer_state("model trainer", m_, v_, t_, out); }

Status ModelTrainer::set_state(const TrainerState& s) { return set_state(TrainerState(s)); }

Status ModelTrainer::set_state(TrainerState&& s) {
  return import_trainer_state("model trainer", std::move(s), num_params(), m_, v_, t_);
}

}  // namespace llm
}  // namespace memq
