// N-API wrappers of LoRA adapters and the trainers (MATH §11-§12):
//   NativeLoraAdapter  create/load (PEFT layout)/save/config/params/clone
//   NativeLoraTrainer  accumulate(tokens, offsets, weights) / step() over the adapter's A, B
//   NativeModelTrainer the same over every weight of the model (pretraining a tiny prior)
// The trainers wrap the core's memq::llm::LoraTrainer / ModelTrainer; their optimizer state
// {m, v, t} is read and restored (get_state / set_state) for bit-exact resumption. Locking: see
// llm_common.h; each trainer also serialises its own calls with its own mutex.
#include <napi.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "llm_common.h"
#include "memq/json.h"
#include "memq/llm/lora.h"
#include "memq/llm/model.h"
#include "memq/llm/train.h"
#include "util.h"

namespace memq_addon {

using memq::Json;
using memq::Status;
using memq::llm::LoraAdapter;
using memq::llm::LoraConfig;
using memq::llm::ModelConfig;

namespace {

// A JSON-object string argument, parsed; TypeError naming it otherwise. Keys outside `allowed`
// are refused (a misspelt option must not be silently ignored).
Json json_object_arg(const Napi::Value& v, const char* name, const std::vector<std::string>& allowed) {
  Napi::Env env = v.Env();
  if (!v.IsString()) throw Napi::TypeError::New(env, std::string(name) + " must be a JSON object string");
  Json j;
  Status st = Json::parse(v.As<Napi::String>().Utf8Value(), &j);
  if (!st.ok()) throw Napi::TypeError::New(env, std::string(name) + ": " + st.message());
  if (!j.is_object()) throw Napi::TypeError::New(env, std::string(name) + " must be a JSON object");
  for (const auto& kv : j.members()) {
    bool known = false;
    for (const auto& a : allowed) known = known || kv.first == a;
    if (!known) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      throw Napi::TypeError::New(env, std::string(name) + ": unknown key \"" + kv.first + "\" (expected " + list + ")");
    }
  }
  return j;
}

// Optional number member; TypeError when present and not a finite number (JSON.stringify turns
// NaN and ±Infinity into null, so null is refused too).
bool opt_number(Napi::Env env, const Json& j, const char* name, const char* key, double* out) {
  const Json* v = j.find(key);
  if (!v) return false;
  if (!v->is_number() || !std::isfinite(v->as_double()))
    throw Napi::TypeError::New(env, std::string(name) + "." + key + " must be a finite number");
  *out = v->as_double();
  return true;
}

[[noreturn]] void range_error(Napi::Env env, const std::string& what, const std::string& expected, double got) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", got);
  throw Napi::RangeError::New(env, what + " must be " + expected + ", got " + buf);
}

// optionsJson {lr, beta1, beta2, eps, weightDecay, clipNorm, lossNorm: "weightSum" | "sum"}.
memq::llm::TrainOptions train_options_arg(const Napi::Value& v) {
  Napi::Env env = v.Env();
  const char* name = "options";
  Json j = json_object_arg(v, name, {"lr", "beta1", "beta2", "eps", "weightDecay", "clipNorm", "lossNorm"});
  memq::llm::TrainOptions o;
  double x;
  if (opt_number(env, j, name, "lr", &x)) {
    if (!(x > 0)) range_error(env, "options.lr", "> 0", x);
    o.adamw.lr = x;
  }
  if (opt_number(env, j, name, "beta1", &x)) {
    if (!(x >= 0 && x < 1)) range_error(env, "options.beta1", "in [0, 1)", x);
    o.adamw.beta1 = x;
  }
  if (opt_number(env, j, name, "beta2", &x)) {
    if (!(x >= 0 && x < 1)) range_error(env, "options.beta2", "in [0, 1)", x);
    o.adamw.beta2 = x;
  }
  if (opt_number(env, j, name, "eps", &x)) {
    if (!(x > 0)) range_error(env, "options.eps", "> 0", x);
    o.adamw.eps = x;
  }
  if (opt_number(env, j, name, "weightDecay", &x)) {
    if (!(x >= 0)) range_error(env, "options.weightDecay", ">= 0", x);
    o.adamw.weight_decay = x;
  }
  if (opt_number(env, j, name, "clipNorm", &x)) {
    if (!(x >= 0)) range_error(env, "options.clipNorm", ">= 0 (0 = no clipping)", x);
    o.clip_norm = x;
  }
  if (const Json* ln = j.find("lossNorm"); ln) {
    if (!ln->is_string() || (ln->as_string() != "weightSum" && ln->as_string() != "sum"))
      throw Napi::RangeError::New(env, "options.lossNorm must be \"weightSum\" or \"sum\"");
    o.loss_norm = ln->as_string() == "sum" ? memq::llm::LossNorm::kSum : memq::llm::LossNorm::kWeightSum;
  }
  return o;
}

// configJson {r, lora_alpha, target_modules, use_rslora, base_model_name_or_path} (PEFT names).
LoraConfig lora_config_arg(const Napi::Value& v) {
  Napi::Env env = v.Env();
  const char* name = "config";
  Json j = json_object_arg(v, name, {"r", "lora_alpha", "target_modules", "use_rslora", "base_model_name_or_path"});
  LoraConfig c;
  double x;
  if (opt_number(env, j, name, "r", &x)) {
    if (std::floor(x) != x) range_error(env, "config.r", "an integer in [1, 65536]", x);
    if (!(x >= 1 && x <= 65536)) range_error(env, "config.r", "an integer in [1, 65536]", x);
    c.r = static_cast<int64_t>(x);
  }
  if (opt_number(env, j, name, "lora_alpha", &x)) c.alpha = x;
  if (const Json* tm = j.find("target_modules"); tm) {
    if (!tm->is_array()) throw Napi::TypeError::New(env, "config.target_modules must be an array of module names");
    if (tm->size() == 0)
      throw Napi::RangeError::New(env, "config.target_modules must name at least one module");
    c.target_modules.clear();
    for (size_t i = 0; i < tm->size(); ++i) {
      const Json& t = tm->at(i);
      const std::string where = "config.target_modules[" + std::to_string(i) + "]";
      if (!t.is_string()) throw Napi::TypeError::New(env, where + " must be a string");
      memq::llm::LoraTarget target;
      if (!memq::llm::lora_target_from_name(t.as_string(), &target)) {
        throw Napi::RangeError::New(env, where + ": unknown module \"" + t.as_string() +
                                             "\" (expected q_proj k_proj v_proj o_proj gate_proj up_proj down_proj, "
                                             "or q k v o gate up down)");
      }
      c.target_modules.push_back(t.as_string());
    }
  }
  if (const Json* b = j.find("use_rslora"); b) {
    if (!b->is_bool()) throw Napi::TypeError::New(env, "config.use_rslora must be a boolean");
    c.use_rslora = b->as_bool();
  }
  if (const Json* b = j.find("base_model_name_or_path"); b) {
    if (!b->is_string()) throw Napi::TypeError::New(env, "config.base_model_name_or_path must be a string");
    c.base_model_name_or_path = b->as_string();
  }
  return c;
}

}  // namespace

void check_adapter_fits(Napi::Env env, const ModelConfig& m, const AdapterHolder& a, const char* name) {
  const ModelConfig& c = a.model_cfg;
  auto same = [&](const char* field, int64_t made_for, int64_t have) {
    if (made_for != have) {
      throw Napi::TypeError::New(env, std::string(name) + " was made for a model with " + field + " = " +
                                          std::to_string(made_for) + ", but this model has " + std::to_string(have));
    }
  };
  same("num_hidden_layers", c.num_hidden_layers, m.num_hidden_layers);
  same("hidden_size", c.hidden_size, m.hidden_size);
  same("intermediate_size", c.intermediate_size, m.intermediate_size);
  same("num_attention_heads", c.num_attention_heads, m.num_attention_heads);
  same("num_key_value_heads", c.num_key_value_heads, m.num_key_value_heads);
  same("head_dim", c.dim_head(), m.dim_head());
}

// ---------------------------------------------------------------------------------------------

class LoraAdapterWrap : public Napi::ObjectWrap<LoraAdapterWrap> {
 public:
  static Napi::FunctionReference* ctor;

  static Napi::Function Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "NativeLoraAdapter",
                                   {
                                       StaticMethod("create", &LoraAdapterWrap::SG<&LoraAdapterWrap::Create>),
                                       StaticMethod("load", &LoraAdapterWrap::SG<&LoraAdapterWrap::Load>),
                                       InstanceMethod("save", &LoraAdapterWrap::G<&LoraAdapterWrap::Save>),
                                       InstanceMethod("config", &LoraAdapterWrap::G<&LoraAdapterWrap::Config>),
                                       InstanceMethod("numParams", &LoraAdapterWrap::G<&LoraAdapterWrap::NumParams>),
                                       InstanceMethod("getParams", &LoraAdapterWrap::G<&LoraAdapterWrap::GetParams>),
                                       InstanceMethod("setParams", &LoraAdapterWrap::G<&LoraAdapterWrap::SetParams>),
                                       InstanceMethod("clone", &LoraAdapterWrap::G<&LoraAdapterWrap::Clone>),
                                   });
    ctor = new Napi::FunctionReference(Napi::Persistent(f));
    return f;
  }

  explicit LoraAdapterWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<LoraAdapterWrap>(info) {}

  // Methods run through G / SG: a C++ exception becomes a JS Error, never std::terminate.
  template <Napi::Value (LoraAdapterWrap::*M)(const Napi::CallbackInfo&)>
  Napi::Value G(const Napi::CallbackInfo& info) {
    return guard(info.Env(), "LoraAdapter", [&] { return (this->*M)(info); });
  }
  template <Napi::Value (*F)(const Napi::CallbackInfo&)>
  static Napi::Value SG(const Napi::CallbackInfo& info) {
    return guard(info.Env(), "LoraAdapter", [&] { return F(info); });
  }

  static Napi::Object Wrap(Napi::Env env, std::shared_ptr<AdapterHolder> h) {
    Napi::Object o = ctor->New({});
    Unwrap(o)->h_ = std::move(h);
    return o;
  }

  std::shared_ptr<AdapterHolder> holder(Napi::Env env) {
    if (!h_) throw Napi::Error::New(env, "LoraAdapter: not initialised (use LoraAdapter.create or LoraAdapter.load)");
    return h_;
  }

 private:
  std::shared_ptr<AdapterHolder> h_;

  // create(model, configJson, seed) -> NativeLoraAdapter (A Kaiming-uniform from seed, B = 0)
  static Napi::Value Create(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = model_arg(info[0], "model");
    LoraConfig cfg = lora_config_arg(info[1]);
    const int64_t seed = int_arg(info[2], "seed", 0, int64_t{1} << 52);
    std::unique_ptr<LoraAdapter> a;
    Status st = LoraAdapter::create(m->cfg, cfg, static_cast<uint64_t>(seed), &a);
    if (!st.ok()) throw status_error(env, st, "LoraAdapter.create");
    return Wrap(env, std::make_shared<AdapterHolder>(std::move(a), m->cfg));
  }

  // load(dir, model) -> Promise<NativeLoraAdapter> (PEFT adapter_config.json + adapter_model.safetensors)
  static Napi::Value Load(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "dir must be a string");
    auto m = model_arg(info[1], "model");
    auto dir = std::make_shared<std::string>(info[0].As<Napi::String>().Utf8Value());
    auto result = std::make_shared<std::unique_ptr<LoraAdapter>>();
    const ModelConfig cfg = m->cfg;
    auto body = [dir, cfg, result]() { return LoraAdapter::load(*dir, cfg, result.get()); };
    return PromiseWorker::Start(
        env, "LoraAdapter.load", body,
        [result, cfg](Napi::Env e) -> Napi::Value {
          return Wrap(e, std::make_shared<AdapterHolder>(std::move(*result), cfg));
        },
        {info[0], info[1]});
  }

  // save(dir): shared lock on the JS thread (waits at most for a step's AdamW update or a setParams copy)
  Napi::Value Save(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto h = holder(env);
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "dir must be a string");
    Status st;
    {
      UrgentSharedLock lock(h->mu);
      st = h->lora->save(info[0].As<Napi::String>().Utf8Value());
    }
    if (!st.ok()) throw status_error(env, st, "LoraAdapter.save");
    return env.Undefined();
  }

  Napi::Value Config(const Napi::CallbackInfo& info) {
    auto h = holder(info.Env());
    const LoraConfig& c = h->lora->config();  // immutable after creation
    Json j = Json::object();
    j.set("r", Json::integer(c.r));
    j.set("lora_alpha", Json::number(c.alpha));
    Json tm = Json::array();
    for (const auto& t : c.target_modules) tm.push(Json::string(t));
    j.set("target_modules", std::move(tm));
    j.set("use_rslora", Json::boolean(c.use_rslora));
    j.set("scale", Json::number(h->lora->scale()));
    j.set("base_model_name_or_path",
          c.base_model_name_or_path.empty() ? Json::null() : Json::string(c.base_model_name_or_path));
    return Napi::String::New(info.Env(), j.dump());
  }

  Napi::Value NumParams(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(holder(info.Env())->size));
  }

  // getParams() -> Float32Array copy of all A and B matrices (adapter layout order)
  Napi::Value GetParams(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto h = holder(env);
    auto out = new_typed_array<float>(env, static_cast<size_t>(h->size), "LoraAdapter.getParams");
    UrgentSharedLock lock(h->mu);
    if (h->size > 0) std::memcpy(out.Data(), h->lora->params(), sizeof(float) * static_cast<size_t>(h->size));
    return out;
  }

  // setParams(Float32Array) -> Promise<void>: copied now, written under the exclusive lock on a
  // worker (in-flight inference and accumulate calls finish with the old values first).
  Napi::Value SetParams(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto h = holder(env);
    auto p = typed_array_arg<float>(info[0], "params");
    if (p.length != static_cast<size_t>(h->size)) {
      throw Napi::RangeError::New(env, "params.length must equal the adapter's numParams (" + std::to_string(h->size) +
                                           "), got " + std::to_string(p.length));
    }
    auto copy = std::make_shared<std::vector<float>>(p.data, p.data + p.length);
    auto body = [h, copy]() {
      std::unique_lock<RwLock> lock(h->mu);
      if (!copy->empty()) std::memcpy(h->lora->params(), copy->data(), sizeof(float) * copy->size());
      h->lora->touch();  // device engines upload it again
      return Status::Ok();
    };
    return PromiseWorker::Start(env, "LoraAdapter.setParams", body,
                                [](Napi::Env e) -> Napi::Value { return e.Undefined(); }, {info.This()});
  }

  // clone() -> NativeLoraAdapter (same config and params, for the same model config)
  Napi::Value Clone(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto h = holder(env);
    std::unique_ptr<LoraAdapter> a;
    Status st = LoraAdapter::create(h->model_cfg, h->lora->config(), 0, &a);
    if (!st.ok()) throw status_error(env, st, "LoraAdapter.clone");
    {
      UrgentSharedLock lock(h->mu);
      if (h->size > 0) std::memcpy(a->params(), h->lora->params(), sizeof(float) * static_cast<size_t>(h->size));
    }
    a->touch();
    return Wrap(env, std::make_shared<AdapterHolder>(std::move(a), h->model_cfg));
  }
};

Napi::FunctionReference* LoraAdapterWrap::ctor = nullptr;

std::shared_ptr<AdapterHolder> adapter_arg(const Napi::Value& v, const char* name, bool optional) {
  Napi::Env env = v.Env();
  if (optional && (v.IsUndefined() || v.IsNull())) return nullptr;
  if (!v.IsObject() || !LoraAdapterWrap::ctor || !v.As<Napi::Object>().InstanceOf(LoraAdapterWrap::ctor->Value())) {
    throw Napi::TypeError::New(env, std::string(name) + " must be a NativeLoraAdapter (LoraAdapter)" +
                                        (optional ? " or undefined" : ""));
  }
  return LoraAdapterWrap::Unwrap(v.As<Napi::Object>())->holder(env);
}

// ---------------------------------------------------------------------------------------------

namespace {

// One core trainer and what it points into: the holders own the Model and LoraAdapter the
// trainer holds raw pointers to, so a worker that captures the box keeps them alive. `mu`
// serialises the trainer's calls (taken before any holder lock).
template <class Trainer>
struct TrainerBox {
  std::mutex mu;
  std::shared_ptr<ModelHolder> model;
  std::shared_ptr<AdapterHolder> adapter;  // null for the full-weight trainer
  std::unique_ptr<Trainer> trainer;
  std::atomic<int64_t> steps{0};  // mirror of trainer->steps() for the JS thread
};

}  // namespace

// kLora: NativeLoraTrainer(model, adapter, optionsJson) trains the adapter's A, B (base frozen)
// with memq::llm::LoraTrainer; else NativeModelTrainer(model, optionsJson) trains every weight
// of the model with memq::llm::ModelTrainer.
template <bool kLora>
class TrainerWrap : public Napi::ObjectWrap<TrainerWrap<kLora>> {
  using Base = Napi::ObjectWrap<TrainerWrap<kLora>>;
  using Trainer = std::conditional_t<kLora, memq::llm::LoraTrainer, memq::llm::ModelTrainer>;
  using Box = TrainerBox<Trainer>;
  static constexpr const char* kName = kLora ? "LoraTrainer" : "ModelTrainer";

 public:
  static Napi::Function Init(Napi::Env env) {
    return Base::DefineClass(env, kLora ? "NativeLoraTrainer" : "NativeModelTrainer",
                             {
                                 Base::InstanceMethod("accumulate", &TrainerWrap::template G<&TrainerWrap::Accumulate>),
                                 Base::InstanceMethod("step", &TrainerWrap::template G<&TrainerWrap::Step>),
                                 Base::InstanceMethod("steps", &TrainerWrap::template G<&TrainerWrap::Steps>),
                                 Base::InstanceMethod("getState", &TrainerWrap::template G<&TrainerWrap::GetState>),
                                 Base::InstanceMethod("setState", &TrainerWrap::template G<&TrainerWrap::SetState>),
                             });
  }

  explicit TrainerWrap(const Napi::CallbackInfo& info) : Base(info) {
    guard(info.Env(), kName, [&] { init(info); });
  }

 private:
  // Methods run through G: a C++ exception becomes a JS Error, never std::terminate.
  template <Napi::Value (TrainerWrap::*M)(const Napi::CallbackInfo&)>
  Napi::Value G(const Napi::CallbackInfo& info) {
    return guard(info.Env(), kName, [&] { return (this->*M)(info); });
  }

  void init(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info.IsConstructCall()) throw Napi::TypeError::New(env, std::string(kName) + " must be called with new");
    auto box = std::make_shared<Box>();
    box->model = model_arg(info[0], "model");
    if constexpr (kLora) {
      box->adapter = adapter_arg(info[1], "adapter", false);
      check_adapter_fits(env, box->model->cfg, *box->adapter, "adapter");
    }
    const memq::llm::TrainOptions opts = train_options_arg(info[kLora ? 2 : 1]);
    // The constructors only size the gradient and moments from the parameter count, which is
    // fixed at creation (read without the holders' locks, as before).
    if constexpr (kLora) {
      box->trainer = std::make_unique<Trainer>(box->model->model.get(), box->adapter->lora.get(), opts);
    } else {
      box->trainer = std::make_unique<Trainer>(box->model->model.get(), opts);
    }
    size_ = box->trainer->num_params();
    box_ = std::move(box);
  }

  std::shared_ptr<Box> box_;
  int64_t size_ = 0;

  // accumulate(tokens Int32Array, offsets Int32Array [B+1], weights Float32Array [N]) -> Promise<loss>
  Napi::Value Accumulate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto tk = typed_array_arg<int32_t>(info[0], "tokens");
    auto off = std::make_shared<std::vector<int64_t>>(offsets_arg(info[1], "offsets", tk.length));
    auto w = typed_array_arg<float>(info[2], "weights");
    if (w.length != tk.length) {
      throw Napi::RangeError::New(env, "weights.length must equal tokens.length (" + std::to_string(tk.length) +
                                           "), got " + std::to_string(w.length));
    }
    auto loss = std::make_shared<double>(0.0);
    // Copies: the caller may reuse or transfer its arrays while the worker runs.
    auto tkv = std::make_shared<std::vector<int32_t>>(tk.data, tk.data + tk.length);
    auto wv = std::make_shared<std::vector<float>>(w.data, w.data + w.length);
    const int64_t n_seqs = static_cast<int64_t>(off->size() - 1);
    auto box = box_;
    auto body = [box, off, tkv, wv, n_seqs, loss]() {
      const int32_t* tkd = tkv->data();
      const float* wd = wv->data();
      // Shared locks: the forward/backward reads the model (and adapter) and writes only the
      // trainer's gradient. Validation (batch, weights, shapes) precedes any write to it.
      std::lock_guard<std::mutex> tl(box->mu);
      std::shared_lock<RwLock> ml(box->model->mu);
      std::shared_lock<RwLock> al;
      if (box->adapter) al = std::shared_lock<RwLock>(box->adapter->mu);
      memq::llm::TokenBatch b;
      b.tokens = tkd;
      b.offsets = off->data();
      b.n_seqs = n_seqs;
      b.weights = wd;
      return box->trainer->accumulate(b, loss.get());
    };
    static const std::string where = std::string(kName) + ".accumulate";
    return PromiseWorker::Start(
        env, where.c_str(), body, [loss](Napi::Env e) -> Napi::Value { return Napi::Number::New(e, *loss); },
        {info.This()});
  }

  // step() -> Promise<{loss, gradNorm, step, microBatches}>: average, clip, AdamW, zero.
  Napi::Value Step(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto stats = std::make_shared<memq::llm::StepStats>();
    auto box = box_;
    auto body = [box, stats]() {
      std::lock_guard<std::mutex> tl(box->mu);
      Status st;
      {
        // The exclusive lock on what the step updates: the adapter's A, B, or the model's weights.
        std::unique_lock<RwLock> xl(box->adapter ? box->adapter->mu : box->model->mu);
        st = box->trainer->step(stats.get());
      }
      box->steps.store(box->trainer->steps());
      return st;
    };
    static const std::string where = std::string(kName) + ".step";
    return PromiseWorker::Start(
        env, where.c_str(), body,
        [stats](Napi::Env e) -> Napi::Value {
          Napi::Object o = Napi::Object::New(e);
          o.Set("loss", Napi::Number::New(e, stats->loss));
          o.Set("gradNorm", Napi::Number::New(e, stats->grad_norm));
          o.Set("step", Napi::Number::New(e, static_cast<double>(stats->step)));
          o.Set("microBatches", Napi::Number::New(e, static_cast<double>(stats->micro_batches)));
          return o;
        },
        {info.This()});
  }

  // steps() -> optimizer steps taken so far (as of the last finished step/setState)
  Napi::Value Steps(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(box_->steps.load()));
  }

  // getState() -> Promise<{m: Float32Array, v: Float32Array, t}> (copies; AdamW moments and step count)
  Napi::Value GetState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto box = box_;
    auto s = std::make_shared<memq::llm::TrainerState>();
    auto body = [box, s]() {
      std::lock_guard<std::mutex> tl(box->mu);
      return box->trainer->get_state(s.get());
    };
    static const std::string where = std::string(kName) + ".getState";
    return PromiseWorker::Start(
        env, where.c_str(), body,
        [s](Napi::Env e) -> Napi::Value {
          Napi::Object o = Napi::Object::New(e);
          auto m = new_typed_array<float>(e, s->m.size(), "trainer state m");
          auto v = new_typed_array<float>(e, s->v.size(), "trainer state v");
          if (!s->m.empty()) std::memcpy(m.Data(), s->m.data(), sizeof(float) * s->m.size());
          if (!s->v.empty()) std::memcpy(v.Data(), s->v.data(), sizeof(float) * s->v.size());
          o.Set("m", m);
          o.Set("v", v);
          o.Set("t", Napi::Number::New(e, static_cast<double>(s->t)));
          return o;
        },
        {info.This()});
  }

  // setState({m, v, t}) -> Promise<void>: restores the AdamW moments and step count (the
  // accumulated gradient, if any, is kept).
  Napi::Value SetState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throw Napi::TypeError::New(env, "state must be an object {m, v, t}");
    Napi::Object o = info[0].As<Napi::Object>();
    auto m = typed_array_arg<float>(o.Get("m"), "state.m");
    auto v = typed_array_arg<float>(o.Get("v"), "state.v");
    for (auto* a : {&m, &v}) {
      if (a->length != static_cast<size_t>(size_)) {
        throw Napi::RangeError::New(env, std::string(a == &m ? "state.m" : "state.v") + ".length must equal " +
                                             std::to_string(size_) + ", got " + std::to_string(a->length));
      }
    }
    const int64_t t = int_arg(o.Get("t"), "state.t", 0, int64_t{1} << 52);
    auto s = std::make_shared<memq::llm::TrainerState>();
    s->m.assign(m.data, m.data + m.length);
    s->v.assign(v.data, v.data + v.length);
    s->t = t;
    auto box = box_;
    auto body = [box, s]() {
      std::lock_guard<std::mutex> tl(box->mu);
      MEMQ_RETURN_IF_ERROR(box->trainer->set_state(std::move(*s)));  // checked above; validated again
      box->steps.store(box->trainer->steps());
      return Status::Ok();
    };
    static const std::string where = std::string(kName) + ".setState";
    return PromiseWorker::Start(env, where.c_str(), body, [](Napi::Env e) -> Napi::Value { return e.Undefined(); },
                                {info.This()});
  }
};

void InitLlmTrain(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeLoraAdapter", LoraAdapterWrap::Init(env));
  exports.Set("NativeLoraTrainer", TrainerWrap<true>::Init(env));
  exports.Set("NativeModelTrainer", TrainerWrap<false>::Init(env));
}

}  // namespace memq_addon
