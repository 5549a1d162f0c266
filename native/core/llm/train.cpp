// Full-weight trainer (see memq/llm/train.h).
#include "memq/llm/train.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "engine_common.h"
#include "memq/llm/device.h"

namespace memq {
namespace llm {

ModelTrainer::ModelTrainer(Model* model, const TrainOptions& opts)
    : model_(model), opts_(opts), n_(model->num_params()), engine_(model->engine()), placement_(model->placement()) {
  if (!engine_) {  // on a device these live there (created on first use)
    grad_.assign(size_t(n_), 0.0f);
    m_.assign(size_t(n_), 0.0f);
    v_.assign(size_t(n_), 0.0f);
  }
}

ModelTrainer::~ModelTrainer() = default;

Status ModelTrainer::device_state(DeviceOptimizer** out) const {
  *out = nullptr;
  if (model_->placement() != placement_)
    return Status::Invalid("model trainer: the model was moved to another device after the trainer was created");
  if (!engine_) return Status::Ok();
  if (!dev_) MEMQ_RETURN_IF_ERROR(engine_->create_optimizer(n_, &dev_));
  *out = dev_.get();
  return Status::Ok();
}

const std::vector<float>& ModelTrainer::grad() const {
  DeviceOptimizer* dev = nullptr;
  if (device_state(&dev).ok() && dev) {
    grad_.assign(size_t(n_), 0.0f);
    if (!dev->download_grad(grad_.data()).ok()) std::fill(grad_.begin(), grad_.end(), std::nanf(""));
  }
  return grad_;
}

Status ModelTrainer::accumulate(const TokenBatch& batch, double* loss_out) {
  DeviceOptimizer* dev = nullptr;
  MEMQ_RETURN_IF_ERROR(device_state(&dev));
  double loss = 0.0;
  if (dev) {
    MEMQ_RETURN_IF_ERROR(engine_->forward_backward(batch, opts_.loss_norm, nullptr, nullptr, dev->grad(), true, 1.0f,
                                                   &loss, nullptr));
  } else {
    MEMQ_RETURN_IF_ERROR(model_->forward_backward(batch, opts_.loss_norm, nullptr, nullptr, grad_.data(), 1.0f, &loss));
  }
  loss_sum_ += loss;
  ++micro_;
  if (loss_out) *loss_out = loss;
  return Status::Ok();
}

Status ModelTrainer::step(StepStats* out) {
  DeviceOptimizer* dev = nullptr;
  MEMQ_RETURN_IF_ERROR(device_state(&dev));
  if (dev) {
    const int64_t t0 = t_;
    Status st = detail::device_adamw_step("model trainer", dev, model_->param_data(), t_, micro_, loss_sum_,
                                          opts_.clip_norm, opts_.adamw, out);
    if (t_ != t0) MEMQ_RETURN_IF_ERROR(model_->sync_device());  // the forward pass reads the device copy
    return st;
  }
  return accumulated_adamw_step("model trainer", model_->param_data(), grad_, m_, v_, t_, micro_, loss_sum_,
                                opts_.clip_norm, opts_.adamw, out);
}

Status ModelTrainer::get_state(TrainerState* out) const {
  DeviceOptimizer* dev = nullptr;
  MEMQ_RETURN_IF_ERROR(device_state(&dev));
  if (dev) return detail::device_get_state(dev, n_, t_, out);
  return export_trainer_state("model trainer", m_, v_, t_, out);
}

Status ModelTrainer::set_state(const TrainerState& s) { return set_state(TrainerState(s)); }

Status ModelTrainer::set_state(TrainerState&& s) {
  DeviceOptimizer* dev = nullptr;
  MEMQ_RETURN_IF_ERROR(device_state(&dev));
  if (dev) {
    MEMQ_RETURN_IF_ERROR(check_trainer_state("model trainer", s, n_));
    MEMQ_RETURN_IF_ERROR(dev->set_moments(s.m.data(), s.v.data()));
    t_ = s.t;
    return Status::Ok();
  }
  return import_trainer_state("model trainer", std::move(s), num_params(), m_, v_, t_);
}

}  // namespace llm
}  // namespace memq
