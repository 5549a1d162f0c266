// LoRA adapters, PEFT save/load, merging, AdamW and the trainer (MATH §11-§12).
#include "memq/llm/lora.h"

#include <cmath>
#include <fstream>
#include <sstream>
#include <utility>
#include <filesystem>

#include <atomic>

#include "engine_common.h"
#include "memq/json.h"
#include "memq/llm/device.h"
#include "memq/limits.h"
#include "memq/llm/safetensors.h"

namespace memq {
namespace llm {

namespace {
const char* kTargetNames[kLoraNumTargets] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
const char* kShortNames[kLoraNumTargets] = {"q", "k", "v", "o", "gate", "up", "down"};


float* base_weight(ParamViews& w, int64_t l, LoraTarget t) {
  LayerParams& L = w.layers[size_t(l)];
  switch (t) {
    case kLoraQ: return L.q_w;
    case kLoraK: return L.k_w;
    case kLoraV: return L.v_w;
    case kLoraO: return L.o_w;
    case kLoraGate: return L.gate_w;
    case kLoraUp: return L.up_w;
    default: return L.down_w;
  }
}
}  // namespace

const char* lora_target_name(LoraTarget t) { return kTargetNames[t]; }

bool lora_target_from_name(const std::string& name, LoraTarget* out) {
  for (int t = 0; t < kLoraNumTargets; ++t)
    if (name == kTargetNames[t] || name == kShortNames[t]) {
      *out = LoraTarget(t);
      return true;
    }
  return false;
}

namespace detail {
uint64_t next_stamp() {
  static std::atomic<uint64_t> counter{0};
  return ++counter;
}
}  // namespace detail

void LoraAdapter::touch() { version_ = detail::next_stamp(); }

double LoraAdapter::scale() const {
  return cfg_.use_rslora ? cfg_.alpha / std::sqrt(double(cfg_.r)) : cfg_.alpha / double(cfg_.r);
}

std::string LoraAdapter::peft_key(int64_t layer, LoraTarget t, bool is_b) {
  const bool attn = t <= kLoraO;
  return "base_model.model.model.layers." + std::to_string(layer) + (attn ? ".self_attn." : ".mlp.") +
         kTargetNames[t] + (is_b ? ".lora_B.weight" : ".lora_A.weight");
}

Status LoraAdapter::init_storage(const ModelConfig& model, const LoraConfig& cfg) {
  MEMQ_RETURN_IF_ERROR(model.validate());
  if (cfg.r <= 0 || cfg.r > limits::kMaxLoraRank)
    return Status::OutOfRange("lora: r must be in [1, " + std::to_string(limits::kMaxLoraRank) + "], got " +
                              std::to_string(cfg.r));
  if (!std::isfinite(cfg.alpha)) return Status::OutOfRange("lora: lora_alpha must be finite");
  if (cfg.target_modules.empty()) return Status::OutOfRange("lora: target_modules is empty");
  cfg_ = cfg;
  cfg_.target_modules.clear();
  for (int t = 0; t < kLoraNumTargets; ++t) targeted_[t] = false;
  for (const auto& name : cfg.target_modules) {
    LoraTarget t;
    if (!lora_target_from_name(name, &t))
      return Status::OutOfRange("lora: unknown target module \"" + name + "\" (q_proj k_proj v_proj o_proj gate_proj up_proj down_proj)");
    if (targeted_[t]) return Status::OutOfRange("lora: target module \"" + name + "\" listed twice");
    targeted_[t] = true;
  }
  for (int t = 0; t < kLoraNumTargets; ++t)
    if (targeted_[t]) cfg_.target_modules.push_back(kTargetNames[t]);
  // The parameter count before anything is sized from it (limits.h), in double.
  {
    double total = 0;
    for (int t = 0; t < kLoraNumTargets; ++t) {
      if (!targeted_[t]) continue;
      int64_t in = 0, out = 0;
      detail::linear_dims(model, LoraTarget(t), &in, &out);
      total += double(model.num_hidden_layers) * double(cfg.r) * double(in + out);
    }
    if (total > double(limits::kMaxParams))
      return Status::OutOfRange("lora: r = " + std::to_string(cfg.r) + " gives " + std::to_string(int64_t(total)) +
                                " adapter parameters, over the limit of 2^32");
  }
  n_layers_ = model.num_hidden_layers;
  modules_.assign(size_t(n_layers_ * kLoraNumTargets), LoraModule());
  int64_t off = 0;
  for (int64_t l = 0; l < n_layers_; ++l)
    for (int t = 0; t < kLoraNumTargets; ++t) {
      LoraModule& m = modules_[size_t(l * kLoraNumTargets + t)];
      detail::linear_dims(model, LoraTarget(t), &m.in, &m.out);
      if (!targeted_[t]) continue;
      m.a_offset = off;
      off += cfg.r * m.in;
      m.b_offset = off;
      off += m.out * cfg.r;
    }
  try {
    params_.assign(size_t(off), 0.0f);
  } catch (const std::bad_alloc&) {
    return Status::NoMemory("lora: out of memory allocating " + std::to_string(off) + " adapter parameters");
  }
  touch();
  for (int64_t l = 0; l < n_layers_; ++l)
    for (int t = 0; t < kLoraNumTargets; ++t) {
      LoraModule& m = modules_[size_t(l * kLoraNumTargets + t)];
      if (!targeted_[t]) continue;
      m.A = params_.data() + m.a_offset;
      m.B = params_.data() + m.b_offset;
    }
  return Status::Ok();
}

Status LoraAdapter::create(const ModelConfig& model, const LoraConfig& cfg, uint64_t seed,
                           std::unique_ptr<LoraAdapter>* out) {
  auto a = std::unique_ptr<LoraAdapter>(new LoraAdapter());
  MEMQ_RETURN_IF_ERROR(a->init_storage(model, cfg));
  Rng rng(seed);
  for (int64_t l = 0; l < a->n_layers_; ++l)
    for (int t = 0; t < kLoraNumTargets; ++t) {
      if (!a->targeted_[t]) continue;
      LoraModule& m = a->modules_[size_t(l * kLoraNumTargets + t)];
      // kaiming_uniform_(a = sqrt(5)): bound = gain * sqrt(3 / fan_in), gain = sqrt(2 / (1 + 5))
      const double bound = 1.0 / std::sqrt(double(m.in));
      for (int64_t i = 0; i < cfg.r * m.in; ++i) m.A[i] = float((2.0 * rng.uniform() - 1.0) * bound);
    }
  a->touch();
  *out = std::move(a);
  return Status::Ok();
}

Status LoraAdapter::save(const std::string& dir) const {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);  // an error shows up when the files are written
  Json j = Json::object();
  j.set("alpha_pattern", Json::object());
  j.set("base_model_name_or_path", cfg_.base_model_name_or_path.empty() ? Json::null() : Json::string(cfg_.base_model_name_or_path));
  j.set("bias", Json::string("none"));
  j.set("fan_in_fan_out", Json::boolean(false));
  j.set("inference_mode", Json::boolean(true));
  j.set("init_lora_weights", Json::boolean(true));
  j.set("layers_to_transform", Json::null());
  j.set("lora_alpha", std::floor(cfg_.alpha) == cfg_.alpha && std::fabs(cfg_.alpha) < 1e15 ? Json::integer(int64_t(cfg_.alpha))
                                                                                          : Json::number(cfg_.alpha));
  j.set("lora_dropout", Json::number(0.0));
  j.set("modules_to_save", Json::null());
  j.set("peft_type", Json::string("LORA"));
  j.set("r", Json::integer(cfg_.r));
  j.set("rank_pattern", Json::object());
  j.set("revision", Json::null());
  Json tm = Json::array();
  for (const auto& t : cfg_.target_modules) tm.push(Json::string(t));
  j.set("target_modules", std::move(tm));
  j.set("task_type", Json::string("CAUSAL_LM"));
  j.set("use_dora", Json::boolean(false));
  j.set("use_rslora", Json::boolean(cfg_.use_rslora));
  {
    std::ofstream f(dir + "/adapter_config.json", std::ios::trunc);
    if (!f) return Status::IOError(dir + "/adapter_config.json: cannot write");
    f << j.dump(2) << "\n";
    if (!f) return Status::IOError(dir + "/adapter_config.json: write failed");
  }
  std::vector<TensorToWrite> ts;
  for (int64_t l = 0; l < n_layers_; ++l)
    for (int t = 0; t < kLoraNumTargets; ++t) {
      if (!targeted_[t]) continue;
      const LoraModule& m = modules_[size_t(l * kLoraNumTargets + t)];
      ts.push_back({peft_key(l, LoraTarget(t), false), {cfg_.r, m.in}, m.A});
      ts.push_back({peft_key(l, LoraTarget(t), true), {m.out, cfg_.r}, m.B});
    }
  return write_safetensors(dir + "/adapter_model.safetensors", ts);
}

Status LoraAdapter::load(const std::string& dir, const ModelConfig& model, std::unique_ptr<LoraAdapter>* out) {
  const std::string cpath = dir + "/adapter_config.json";
  std::ifstream in(cpath, std::ios::binary);
  if (!in) return Status::IOError(cpath + ": cannot read");
  std::stringstream ss;
  ss << in.rdbuf();
  Json j;
  Status st = Json::parse(ss.str(), &j);
  if (!st.ok()) return Status::Corrupt(cpath + ": " + st.message());
  if (!j.is_object()) return Status::Corrupt(cpath + ": not a JSON object");
  std::string peft_type;
  MEMQ_RETURN_IF_ERROR(json_get_string(j, "peft_type", cpath, &peft_type).with_code(StatusCode::kCorrupt));
  if (peft_type != "LORA") return Status::Corrupt(cpath + ": peft_type \"" + peft_type + "\" is not LORA");
  LoraConfig cfg;
  MEMQ_RETURN_IF_ERROR(json_get_int(j, "r", cpath, &cfg.r).with_code(StatusCode::kCorrupt));
  MEMQ_RETURN_IF_ERROR(json_get_double(j, "lora_alpha", cpath, &cfg.alpha).with_code(StatusCode::kCorrupt));
  const Json* tm = j.find("target_modules");
  cfg.target_modules.clear();
  if (tm && tm->is_string() && tm->as_string() == "all-linear") {  // PEFT's shorthand
    for (int t = 0; t < kLoraNumTargets; ++t) cfg.target_modules.push_back(kTargetNames[t]);
  } else {
    if (!tm || !tm->is_array())
      return Status::Corrupt(cpath + ": target_modules must be a list of module names (or \"all-linear\")");
    for (const Json& t : tm->items()) {
      if (!t.is_string()) return Status::Corrupt(cpath + ": target_modules entries must be strings");
      cfg.target_modules.push_back(t.as_string());
    }
  }
  if (const Json* v = j.find("use_rslora"); v && v->is_bool()) cfg.use_rslora = v->as_bool();
  if (const Json* v = j.find("use_dora"); v && v->is_bool() && v->as_bool()) return Status::Corrupt(cpath + ": use_dora is not supported");
  if (const Json* v = j.find("fan_in_fan_out"); v && v->is_bool() && v->as_bool())
    return Status::Corrupt(cpath + ": fan_in_fan_out is not supported");
  if (const Json* v = j.find("bias"); v && v->is_string() && v->as_string() != "none")
    return Status::Corrupt(cpath + ": bias \"" + v->as_string() + "\" is not supported (none)");
  for (const char* k : {"rank_pattern", "alpha_pattern"})
    if (const Json* v = j.find(k); v && v->is_object() && v->size() > 0)
      return Status::Corrupt(cpath + ": " + k + " is not supported");
  for (const char* k : {"layers_to_transform", "modules_to_save"})
    if (const Json* v = j.find(k); v && !v->is_null()) return Status::Corrupt(cpath + ": " + k + " is not supported");
  if (const Json* v = j.find("base_model_name_or_path"); v && v->is_string()) cfg.base_model_name_or_path = v->as_string();
  if (cfg.r <= 0 || cfg.r > limits::kMaxLoraRank)
    return Status::Corrupt(cpath + ": r must be in [1, " + std::to_string(limits::kMaxLoraRank) + "], got " +
                           std::to_string(cfg.r));

  // The tensors first (header only): every targeted module of every layer must be present with
  // the shapes r and the model give and a float dtype, and nothing else, BEFORE the adapter's
  // storage is allocated (its size then is bounded by the file's).
  std::unique_ptr<SafetensorsFile> f;
  MEMQ_RETURN_IF_ERROR(SafetensorsFile::open(dir + "/adapter_model.safetensors", &f));
  std::vector<LoraTarget> targets;
  for (const auto& name : cfg.target_modules) {
    LoraTarget t;
    if (!lora_target_from_name(name, &t))
      return Status::Corrupt(cpath + ": unknown target module \"" + name + "\" (q_proj k_proj v_proj o_proj gate_proj up_proj down_proj)");
    targets.push_back(t);
  }
  MEMQ_RETURN_IF_ERROR(model.validate());
  size_t expected = 0;
  for (LoraTarget t : targets) {
    int64_t in = 0, out = 0;
    detail::linear_dims(model, t, &in, &out);
    for (int64_t l = 0; l < model.num_hidden_layers; ++l)
      for (bool is_b : {false, true}) {
        const std::string key = peft_key(l, t, is_b);
        const std::vector<int64_t> want = is_b ? std::vector<int64_t>{out, cfg.r} : std::vector<int64_t>{cfg.r, in};
        const TensorInfo* ti = f->find(key);
        if (!ti)
          return Status::Corrupt(f->path() + ": no tensor \"" + key + "\", which adapter_config.json's target_modules (" +
                                 lora_target_name(t) + ") and the model's " + std::to_string(model.num_hidden_layers) +
                                 " layers require");
        if (ti->shape != want) {
          std::string have, exp;
          for (int64_t v : ti->shape) have += (have.empty() ? "" : ", ") + std::to_string(v);
          for (int64_t v : want) exp += (exp.empty() ? "" : ", ") + std::to_string(v);
          return Status::Corrupt(f->path() + ": tensor \"" + key + "\" has shape [" + have + "], but adapter_config.json's r = " +
                                 std::to_string(cfg.r) + " and the model give [" + exp + "]");
        }
        if (ti->dtype != DType::kF32 && ti->dtype != DType::kF16 && ti->dtype != DType::kBF16 && ti->dtype != DType::kF64)
          return Status::Corrupt(f->path() + ": tensor \"" + key + "\" has dtype " + dtype_name(ti->dtype) +
                                 "; adapter weights must be F32, F16, BF16 or F64");
        ++expected;
      }
  }
  if (f->tensors().size() != expected) {
    for (const auto& t : f->tensors()) {
      bool known = false;
      for (LoraTarget tt : targets)
        for (int64_t l = 0; l < model.num_hidden_layers && !known; ++l)
          known = t.name == peft_key(l, tt, false) || t.name == peft_key(l, tt, true);
      if (!known) return Status::Corrupt(f->path() + ": unexpected tensor \"" + t.name + "\" for this adapter config");
    }
    return Status::Corrupt(f->path() + ": duplicate target modules in adapter_config.json");
  }

  auto a = std::unique_ptr<LoraAdapter>(new LoraAdapter());
  st = a->init_storage(model, cfg);
  if (!st.ok()) return Status(st.code() == StatusCode::kOutOfMemory ? st.code() : StatusCode::kCorrupt, cpath + ": " + st.message());
  for (int64_t l = 0; l < a->n_layers_; ++l)
    for (int t = 0; t < kLoraNumTargets; ++t) {
      if (!a->targeted_[t]) continue;
      LoraModule& m = a->modules_[size_t(l * kLoraNumTargets + t)];
      MEMQ_RETURN_IF_ERROR(f->read_f32(peft_key(l, LoraTarget(t), false), {cfg.r, m.in}, m.A));
      MEMQ_RETURN_IF_ERROR(f->read_f32(peft_key(l, LoraTarget(t), true), {m.out, cfg.r}, m.B));
    }
  a->touch();
  *out = std::move(a);
  return Status::Ok();
}

Status merge_lora(Model* model, const LoraAdapter& lora) {
  const ModelConfig& c = model->config();
  if (lora.num_layers() != c.num_hidden_layers) return Status::Invalid("merge_lora: adapter layer count differs from the model's");
  const double s = lora.scale();
  const int64_t r = lora.config().r;
  ParamViews& w = model->mutable_weights();
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    for (int t = 0; t < kLoraNumTargets; ++t) {
      if (!lora.targets(LoraTarget(t))) continue;
      const LoraModule& m = lora.module(l, LoraTarget(t));
      int64_t in = 0, out = 0;
      detail::linear_dims(c, LoraTarget(t), &in, &out);
      if (in != m.in || out != m.out) return Status::Invalid("merge_lora: adapter shapes do not match the model");
      float* W = base_weight(w, l, LoraTarget(t));
      for (int64_t o = 0; o < out; ++o)
        for (int64_t i = 0; i < in; ++i) {
          double acc = 0.0;
          for (int64_t k = 0; k < r; ++k) acc += double(m.B[o * r + k]) * double(m.A[k * in + i]);
          W[o * in + i] += float(s * acc);
        }
    }
  return model->sync_device();
}

void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, int64_t t, const AdamWOptions& o) {
  const double bc1 = 1.0 - std::pow(o.beta1, double(t));
  const double bc2 = 1.0 - std::pow(o.beta2, double(t));
  for (int64_t i = 0; i < n; ++i) {
    double pi = p[i];
    pi -= o.lr * o.weight_decay * pi;
    const double mi = o.beta1 * m[i] + (1.0 - o.beta1) * g[i];
    const double vi = o.beta2 * v[i] + (1.0 - o.beta2) * double(g[i]) * double(g[i]);
    m[i] = float(mi);
    v[i] = float(vi);
    pi -= o.lr * (mi / bc1) / (std::sqrt(vi / bc2) + o.eps);
    p[i] = float(pi);
  }
}

double global_norm(const float* g, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += double(g[i]) * double(g[i]);
  return std::sqrt(s);
}

LoraTrainer::LoraTrainer(const Model* model, LoraAdapter* lora, const TrainOptions& opts)
    : model_(model), lora_(lora), opts_(opts), n_(lora->size()), engine_(model->engine()),
      placement_(model->placement()) {
  if (!engine_) {  // on a device these live there (created on first use)
    grad_.assign(size_t(n_), 0.0f);
    m_.assign(size_t(n_), 0.0f);
    v_.assign(size_t(n_), 0.0f);
  }
}

LoraTrainer::~LoraTrainer() = default;

Status LoraTrainer::device_state(DeviceOptimizer** out) const {
  *out = nullptr;
  if (model_->placement() != placement_)
    return Status::Invalid("lora trainer: the model was moved to another device after the trainer was created");
  if (!engine_) return Status::Ok();
  if (!dev_) MEMQ_RETURN_IF_ERROR(engine_->create_optimizer(n_, &dev_));
  *out = dev_.get();
  return Status::Ok();
}

const std::vector<float>& LoraTrainer::grad() const {
  DeviceOptimizer* dev = nullptr;
  if (device_state(&dev).ok() && dev) {
    grad_.assign(size_t(n_), 0.0f);
    if (!dev->download_grad(grad_.data()).ok()) std::fill(grad_.begin(), grad_.end(), std::nanf(""));
  }
  return grad_;
}

Status LoraTrainer::accumulate(const TokenBatch& batch, double* loss_out) {
  DeviceOptimizer* dev = nullptr;
  MEMQ_RETURN_IF_ERROR(device_state(&dev));
  double loss = 0.0;
  if (dev) {
    MEMQ_RETURN_IF_ERROR(engine_->forward_backward(batch, opts_.loss_norm, lora_, dev->grad(), nullptr, true, 1.0f,
                                                   &loss, nullptr));
  } else {
    MEMQ_RETURN_IF_ERROR(model_->forward_backward(batch, opts_.loss_norm, lora_, grad_.data(), nullptr, 1.0f, &loss));
  }
  loss_sum_ += loss;
  ++micro_;
  if (loss_out) *loss_out = loss;
  return Status::Ok();
}

Status accumulated_adamw_step(const char* who, float* params, std::vector<float>& grad, std::vector<float>& m,
                              std::vector<float>& v, int64_t& t, int64_t& micro, double& loss_sum,
                              double clip_norm, const AdamWOptions& adamw, StepStats* out) {
  if (micro == 0) return Status::Invalid(std::string(who) + ": step() without accumulate()");
  const int64_t n = int64_t(grad.size());
  const float inv = 1.0f / float(micro);
  for (auto& g : grad) g *= inv;
  const double norm = global_norm(grad.data(), n);
  auto reset = [&] {
    std::fill(grad.begin(), grad.end(), 0.0f);
    micro = 0;
    loss_sum = 0.0;
  };
  if (!std::isfinite(norm)) {
    reset();
    return Status::Internal(std::string(who) + ": non-finite gradient norm; step skipped");
  }
  if (clip_norm > 0 && norm > clip_norm) {
    const float c = float(clip_norm / (norm + 1e-6));
    for (auto& g : grad) g *= c;
  }
  ++t;
  adamw_step(params, grad.data(), m.data(), v.data(), n, t, adamw);
  if (out) {
    out->loss = loss_sum / double(micro);
    out->grad_norm = norm;
    out->step = t;
    out->micro_batches = micro;
  }
  reset();
  return Status::Ok();
}

Status LoraTrainer::step(StepStats* out) {
  DeviceOptimizer* dev = nullptr;
  MEMQ_RETURN_IF_ERROR(device_state(&dev));
  if (dev) {
    Status st = detail::device_adamw_step("lora trainer", dev, lora_->params(), t_, micro_, loss_sum_, opts_.clip_norm,
                                          opts_.adamw, out);
    lora_->touch();  // the host parameters changed (or may have, after a device error)
    return st;
  }
  Status st = accumulated_adamw_step("lora trainer", lora_->params(), grad_, m_, v_, t_, micro_, loss_sum_,
                                     opts_.clip_norm, opts_.adamw, out);
  lora_->touch();
  return st;
}

namespace detail {
Status device_adamw_step(const char* who, DeviceOptimizer* dev, float* host_params, int64_t& t, int64_t& micro,
                         double& loss_sum, double clip_norm, const AdamWOptions& adamw, StepStats* out) {
  if (micro == 0) return Status::Invalid(std::string(who) + ": step() without accumulate()");
  double norm = 0.0;
  bool skipped = false;
  MEMQ_RETURN_IF_ERROR(dev->step(host_params, micro, clip_norm, adamw, t + 1, &norm, &skipped));
  const int64_t micro_batches = micro;
  const double loss = loss_sum / double(micro);
  MEMQ_RETURN_IF_ERROR(dev->zero_grad());
  micro = 0;
  loss_sum = 0.0;
  if (skipped) return Status::Internal(std::string(who) + ": non-finite gradient norm; step skipped");
  ++t;
  if (out) {
    out->loss = loss;
    out->grad_norm = norm;
    out->step = t;
    out->micro_batches = micro_batches;
  }
  return Status::Ok();
}
}  // namespace detail

namespace detail {
Status device_get_state(DeviceOptimizer* dev, int64_t n, int64_t t, TrainerState* out) {
  if (!out) return Status::Invalid("get_state(nullptr)");
  TrainerState s;
  s.m.assign(size_t(n), 0.0f);
  s.v.assign(size_t(n), 0.0f);
  MEMQ_RETURN_IF_ERROR(dev->get_moments(s.m.data(), s.v.data()));
  s.t = t;
  *out = std::move(s);
  return Status::Ok();
}
}  // namespace detail

Status check_trainer_state(const char* who, const TrainerState& s, int64_t n) {
  if (int64_t(s.m.size()) != n || int64_t(s.v.size()) != n) {
    return Status::Invalid(std::string(who) + ": state m and v must hold " + std::to_string(n) + " values, got " +
                           std::to_string(s.m.size()) + " and " + std::to_string(s.v.size()));
  }
  if (s.t < 0) return Status::Invalid(std::string(who) + ": state t must be >= 0, got " + std::to_string(s.t));
  return Status::Ok();
}

Status export_trainer_state(const char* who, const std::vector<float>& m, const std::vector<float>& v, int64_t t,
                            TrainerState* out) {
  if (!out) return Status::Invalid(std::string(who) + ": get_state(nullptr)");
  out->m = m;
  out->v = v;
  out->t = t;
  return Status::Ok();
}

Status import_trainer_state(const char* who, TrainerState&& s, int64_t n, std::vector<float>& m, std::vector<float>& v,
                            int64_t& t) {
  MEMQ_RETURN_IF_ERROR(check_trainer_state(who, s, n));
  m = std::move(s.m);
  v = std::move(s.v);
  t = s.t;
  return Status::Ok();
}

Status LoraTrainer::get_state(TrainerState* out) const {
  DeviceOptimizer* dev = nullptr;
  MEMQ_RETURN_IF_ERROR(device_state(&dev));
  if (dev) return detail::device_get_state(dev, n_, t_, out);
  return export_trainer_state("lora trainer", m_, v_, t_, out);
}

Status LoraTrainer::set_state(const TrainerState& s) { return set_state(TrainerState(s)); }

Status LoraTrainer::set_state(TrainerState&& s) {
  DeviceOptimizer* dev = nullptr;
  MEMQ_RETURN_IF_ERROR(device_state(&dev));
  if (dev) {
    MEMQ_RETURN_IF_ERROR(check_trainer_state("lora trainer", s, n_));
    MEMQ_RETURN_IF_ERROR(dev->set_moments(s.m.data(), s.v.data()));
    t_ = s.t;
    return Status::Ok();
  }
  return import_trainer_state("lora trainer", std::move(s), num_params(), m_, v_, t_);
}

}  // namespace llm
}  // namespace memq
