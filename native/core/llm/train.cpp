// Full-weight trainer (see memq/llm/train.h).
#include "memq/llm/train.h"

#include <algorithm>
#include <cmath>

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
  if (micro_ == 0) return Status::Invalid("model trainer: step() without accumulate()");
  const int64_t n = int64_t(grad_.size());
  const float inv = 1.0f / float(micro_);
  for (auto& g : grad_) g *= inv;
  const double norm = global_norm(grad_.data(), n);
  if (!std::isfinite(norm)) {
    std::fill(grad_.begin(), grad_.end(), 0.0f);
    micro_ = 0;
    loss_sum_ = 0.0;
    return Status::Internal("model trainer: non-finite gradient norm; step skipped");
  }
  if (opts_.clip_norm > 0 && norm > opts_.clip_norm) {
    const float c = float(opts_.clip_norm / (norm + 1e-6));
    for (auto& g : grad_) g *= c;
  }
  ++t_;
  adamw_step(model_->param_data(), grad_.data(), m_.data(), v_.data(), n, t_, opts_.adamw);
  if (out) {
    out->loss = loss_sum_ / double(micro_);
    out->grad_norm = norm;
    out->step = t_;
    out->micro_batches = micro_;
  }
  std::fill(grad_.begin(), grad_.end(), 0.0f);
  micro_ = 0;
  loss_sum_ = 0.0;
  return Status::Ok();
}

}  // namespace llm
}  // namespace memq
