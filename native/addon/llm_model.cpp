// N-API wrapper of the transformer engine (memq::llm::Model): create/load/save/clone, merging a
// LoRA adapter into a copy, and the inference calls the model prior needs (score K candidates
// per prompt sharing the prompt's K/V, token log-probs, mean-pooled embeddings), each with an
// optional LoRA adapter. Heavy calls run in PromiseWorkers that hold the model's holder (and the
// adapter's) by shared_ptr, take shared locks inside Execute (see llm_common.h), and keep the
// caller's typed arrays referenced.
#include <napi.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "llm_common.h"
#include "memq/json.h"
#include "memq/kernels.h"
#include "memq/llm/device.h"
#include "memq/llm/lora.h"
#include "memq/llm/model.h"
#include "util.h"

namespace memq_addon {

using memq::Status;
using memq::llm::LoraAdapter;
using memq::llm::Model;

namespace {

// Shared locks of a model and (when given) an adapter, in the global lock order.
struct InferenceLocks {
  InferenceLocks(ModelHolder& m, AdapterHolder* a) : ml(m.mu) {
    if (a) al = std::shared_lock<RwLock>(a->mu);
  }
  std::shared_lock<RwLock> ml;
  std::shared_lock<RwLock> al;
};

}  // namespace

class LlmModelWrap : public Napi::ObjectWrap<LlmModelWrap> {
 public:
  static Napi::FunctionReference* ctor;

  static Napi::Function Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "NativeLlmModel",
                                   {
                                       InstanceMethod("save", &LlmModelWrap::G<&LlmModelWrap::Save>),
                                       InstanceMethod("config", &LlmModelWrap::G<&LlmModelWrap::Config>),
                                       InstanceMethod("numParams", &LlmModelWrap::G<&LlmModelWrap::NumParams>),
                                       InstanceMethod("score", &LlmModelWrap::G<&LlmModelWrap::Score>),
                                       InstanceMethod("tokenLogprobs", &LlmModelWrap::G<&LlmModelWrap::TokenLogprobs>),
                                       InstanceMethod("embedMean", &LlmModelWrap::G<&LlmModelWrap::EmbedMean>),
                                       InstanceMethod("clone", &LlmModelWrap::G<&LlmModelWrap::Clone>),
                                       InstanceMethod("mergeLora", &LlmModelWrap::G<&LlmModelWrap::MergeLora>),
                                       InstanceMethod("device", &LlmModelWrap::G<&LlmModelWrap::Device>),
                                   });
    ctor = new Napi::FunctionReference(Napi::Persistent(f));
    return f;
  }

  explicit LlmModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<LlmModelWrap>(info) {}

  // Every method runs through G: a C++ exception becomes a JS Error, never std::terminate.
  template <Napi::Value (LlmModelWrap::*M)(const Napi::CallbackInfo&)>
  Napi::Value G(const Napi::CallbackInfo& info) {
    return guard(info.Env(), "LlmModel", [&] { return (this->*M)(info); });
  }

  static Napi::Object Wrap(Napi::Env env, std::shared_ptr<ModelHolder> h) {
    Napi::Object o = ctor->New({});
    Unwrap(o)->h_ = std::move(h);
    return o;
  }

  std::shared_ptr<ModelHolder> h_;

  std::shared_ptr<ModelHolder> holder(Napi::Env env) {
    if (!h_) throw Napi::Error::New(env, "LlmModel: not initialised (use LlmModel.load or LlmModel.createRandom)");
    return h_;
  }

 private:
  Napi::Value Save(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto h = holder(env);
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "dir must be a string");
    bool bf16 = info.Length() > 1 && info[1].ToBoolean().Value();
    Status st;
    {
      UrgentSharedLock lock(h->mu);  // waits at most for a trainer's AdamW update
      st = h->model->save(info[0].As<Napi::String>().Utf8Value(), bf16);
    }
    if (!st.ok()) throw status_error(env, st, "LlmModel.save");
    return env.Undefined();
  }

  Napi::Value Config(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), holder(info.Env())->cfg.to_json().dump());
  }

  // device() -> {device: 'cpu' | 'cuda', precision: 'bf16' | 'fp32' | null, reason, description}
  // (fixed at load/creation: read without the lock)
  Napi::Value Device(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto h = holder(env);
    Napi::Object o = Napi::Object::New(env);
    const memq::llm::DeviceEngine* e = h->model->engine();
    o.Set("device", Napi::String::New(env, memq::llm::llm_device_name(h->model->device())));
    o.Set("precision", e ? Napi::Value(Napi::String::New(env, memq::llm::llm_precision_name(e->options().precision)))
                         : env.Null());
    o.Set("reason", Napi::String::New(env, h->model->device_reason()));
    o.Set("description", Napi::String::New(env, e ? e->description() : std::string("cpu (float32)")));
    return o;
  }

  Napi::Value NumParams(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(holder(info.Env())->model->num_params()));
  }

  // The optional trailing adapter argument: undefined/null = none.
  std::shared_ptr<AdapterHolder> lora_arg(const Napi::CallbackInfo& info, size_t i, const ModelHolder& h) {
    if (info.Length() <= i) return nullptr;
    auto a = adapter_arg(info[i], "lora", true);
    if (a) check_adapter_fits(info.Env(), h.cfg, *a, "lora");
    return a;
  }

  // score(promptTokens, promptOffsets, candTokens, candOffsets, candGroups, lengthNormalize, lora?,
  //       prior?) -> Promise<Float32Array>: log p(candidate | prompt) per candidate; with
  //       prior = {temperature} the prior's log mu over each prompt's candidates instead
  //       (memq::prior_improve), and with prior = {temperature, q, alpha} (q: one value per
  //       candidate) -> Promise<{logPrior, policy, value}>, MATH §5 too. The normalisation and
  //       the improvement run in the scoring's worker job: an agent's step crosses into native
  //       once for both.
  Napi::Value Score(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto h = holder(env);
    auto pt = typed_array_arg<int32_t>(info[0], "promptTokens");
    auto po = std::make_shared<std::vector<int64_t>>(offsets_arg(info[1], "promptOffsets", pt.length));
    auto ct = typed_array_arg<int32_t>(info[2], "candTokens");
    auto co = std::make_shared<std::vector<int64_t>>(offsets_arg(info[3], "candOffsets", ct.length));
    const size_t n_prompts = po->size() - 1, n_cands = co->size() - 1;
    auto cg = std::make_shared<std::vector<int64_t>>(offsets_arg(info[4], "candGroups", n_cands));
    if (cg->size() != n_prompts + 1) {
      throw Napi::RangeError::New(env, "candGroups.length must be the number of prompts + 1 (" +
                                           std::to_string(n_prompts + 1) + ")");
    }
    const bool norm = info.Length() > 5 && info[5].ToBoolean().Value();
    auto lora = lora_arg(info, 6, *h);
    // The optional prior / improvement: shapes and types here, values (temperature, alpha, q) in the core.
    const bool as_prior = info.Length() > 7 && !info[7].IsUndefined() && !info[7].IsNull();
    bool improve = false;
    std::shared_ptr<std::vector<float>> qv;
    double alpha = 0, temperature = 1;
    if (as_prior) {
      if (!info[7].IsObject()) {
        throw Napi::TypeError::New(env, "LlmModel.score: prior must be an object {temperature[, q, alpha]}");
      }
      Napi::Object o = info[7].As<Napi::Object>();
      temperature = number_arg(o.Get("temperature"), "prior.temperature");
      improve = !o.Get("q").IsUndefined();
      if (improve) {
        auto q = typed_array_arg<float>(o.Get("q"), "prior.q");
        if (q.length != n_cands) {
          throw Napi::RangeError::New(env, "LlmModel.score: prior.q.length must be the number of candidates (" +
                                               std::to_string(n_cands) + "), got " + std::to_string(q.length));
        }
        alpha = number_arg(o.Get("alpha"), "prior.alpha");
        qv = std::make_shared<std::vector<float>>(q.data, q.data + q.length);  // a copy (see below)
      }
      // the core's checks now, so that a bad value fails before the scoring job runs
      memq::Status st = memq::check_prior_args(temperature, qv ? qv->data() : nullptr, qv ? (int64_t)qv->size() : 0,
                                               static_cast<float>(alpha));
      if (!st.ok()) throw status_error(env, st, "LlmModel.score");
    }
    auto out = new_typed_array<float>(env, n_cands, "LlmModel.score scores");
    float* outp = out.Data();
    Napi::Object result = out;
    float *policyp = nullptr, *valuep = nullptr;
    if (improve) {
      auto policy = new_typed_array<float>(env, n_cands, "LlmModel.score policy");
      auto value = new_typed_array<float>(env, n_prompts, "LlmModel.score value");
      policyp = policy.Data();
      valuep = value.Data();
      result = Napi::Object::New(env);
      result.Set("logPrior", out);
      result.Set("policy", policy);
      result.Set("value", value);
    }
    // Copies: the caller may reuse or transfer its arrays while the worker runs.
    auto ptv = std::make_shared<std::vector<int32_t>>(pt.data, pt.data + pt.length);
    auto ctv = std::make_shared<std::vector<int32_t>>(ct.data, ct.data + ct.length);
    auto body = [h, lora, po, co, cg, ptv, ctv, n_prompts, n_cands, norm, outp, as_prior, qv, policyp, valuep,
                 alpha, temperature]() {
      const int32_t* ptd = ptv->data();
      const int32_t* ctd = ctv->data();
      memq::llm::ScoreRequest req;
      req.prompt_tokens = ptd;
      req.prompt_offsets = po->data();
      req.n_prompts = static_cast<int64_t>(n_prompts);
      req.cand_tokens = ctd;
      req.cand_offsets = co->data();
      req.cand_groups = cg->data();
      req.n_cands = static_cast<int64_t>(n_cands);
      req.length_normalize = norm;
      {
        InferenceLocks locks(*h, lora.get());
        MEMQ_RETURN_IF_ERROR(h->model->score(outp, nullptr, req, lora ? lora->lora.get() : nullptr));
      }
      if (!as_prior) return memq::Status::Ok();
      return memq::prior_improve(outp, policyp, valuep, qv ? qv->data() : nullptr, cg->data(),
                                 static_cast<int64_t>(n_prompts), temperature,
                                 static_cast<float>(alpha));
    };
    return PromiseWorker::Start(env, "LlmModel.score", body, resolve_to(result), {info.This()});
  }

  // Shared by tokenLogprobs and embedMean: (tokens, offsets, lora?) -> Float32Array of `per` floats.
  Napi::Value BatchCall(const Napi::CallbackInfo& info, bool embed) {
    Napi::Env env = info.Env();
    auto h = holder(env);
    auto tk = typed_array_arg<int32_t>(info[0], "tokens");
    auto off = std::make_shared<std::vector<int64_t>>(offsets_arg(info[1], "offsets", tk.length));
    auto lora = lora_arg(info, 2, *h);
    const int64_t n_seqs = static_cast<int64_t>(off->size() - 1);
    const char* where = embed ? "LlmModel.embedMean" : "LlmModel.tokenLogprobs";
    if (embed) {
      check_result_elements(env, where, "sequences*hidden_size = " + std::to_string(n_seqs) + "*" +
                            std::to_string(h->cfg.hidden_size),
                            static_cast<double>(n_seqs) * static_cast<double>(h->cfg.hidden_size));
    }
    const size_t n_out = embed ? static_cast<size_t>(n_seqs * h->cfg.hidden_size) : tk.length;
    auto out = new_typed_array<float>(env, n_out, std::string(where) + " result");
    float* outp = out.Data();
    auto tkv = std::make_shared<std::vector<int32_t>>(tk.data, tk.data + tk.length);  // a copy (see score)
    auto body = [h, lora, off, tkv, n_seqs, outp, embed]() {
      memq::llm::TokenBatch b;
      b.tokens = tkv->data();
      b.offsets = off->data();
      b.n_seqs = n_seqs;
      InferenceLocks locks(*h, lora.get());
      const LoraAdapter* l = lora ? lora->lora.get() : nullptr;
      return embed ? h->model->embed_mean(outp, b, l) : h->model->token_logprobs(outp, b, l);
    };
    return PromiseWorker::Start(env, where, body, resolve_to(out), {info.This()});
  }
  Napi::Value TokenLogprobs(const Napi::CallbackInfo& info) { return BatchCall(info, false); }
  Napi::Value EmbedMean(const Napi::CallbackInfo& info) { return BatchCall(info, true); }

  // clone() -> Promise<NativeLlmModel> (a deep copy of the weights as they are when the worker runs)
  Napi::Value Clone(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto h = holder(env);
    auto result = std::make_shared<std::unique_ptr<Model>>();
    auto body = [h, result]() {
      std::shared_lock<RwLock> lock(h->mu);
      return h->model->clone(result.get());
    };
    return PromiseWorker::Start(
        env, "LlmModel.clone", body,
        [result](Napi::Env e) -> Napi::Value { return Wrap(e, std::make_shared<ModelHolder>(std::move(*result))); },
        {info.This()});
  }

  // mergeLora(adapter) -> Promise<NativeLlmModel>: a copy with W += scale * B A folded in; this
  // model is unchanged.
  Napi::Value MergeLora(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto h = holder(env);
    auto lora = adapter_arg(info[0], "adapter", false);
    check_adapter_fits(env, h->cfg, *lora, "adapter");
    auto result = std::make_shared<std::unique_ptr<Model>>();
    auto body = [h, lora, result]() {
      InferenceLocks locks(*h, lora.get());
      MEMQ_RETURN_IF_ERROR(h->model->clone(result.get()));
      return memq::llm::merge_lora(result->get(), *lora->lora);
    };
    return PromiseWorker::Start(
        env, "LlmModel.mergeLora", body,
        [result](Napi::Env e) -> Napi::Value { return Wrap(e, std::make_shared<ModelHolder>(std::move(*result))); },
        {info[0], info.This()});
  }
};

Napi::FunctionReference* LlmModelWrap::ctor = nullptr;

std::shared_ptr<ModelHolder> model_arg(const Napi::Value& v, const char* name) {
  Napi::Env env = v.Env();
  if (!v.IsObject() || !LlmModelWrap::ctor || !v.As<Napi::Object>().InstanceOf(LlmModelWrap::ctor->Value())) {
    throw Napi::TypeError::New(env, std::string(name) + " must be a NativeLlmModel (LlmModel)");
  }
  return LlmModelWrap::Unwrap(v.As<Napi::Object>())->holder(env);
}

Napi::Object wrap_model(Napi::Env env, std::shared_ptr<ModelHolder> h) { return LlmModelWrap::Wrap(env, std::move(h)); }

namespace {
// (device, precision) trailing arguments: undefined -> 'cpu' (nothing to place: the model's reason
// stays "cpu: default") / 'bf16'. *place says whether a device was asked for.
memq::llm::LlmDeviceOptions device_args(const Napi::CallbackInfo& info, size_t i, bool* place) {
  Napi::Env env = info.Env();
  memq::llm::LlmDeviceOptions o;
  *place = false;
  if (info.Length() > i && !info[i].IsUndefined()) {
    *place = true;
    const std::string d = info[i].IsString() ? info[i].As<Napi::String>().Utf8Value() : "";
    if (d != "cpu" && d != "cuda" && d != "auto")
      throw Napi::TypeError::New(env, "device must be 'cpu', 'cuda' or 'auto'");
    o.device = d;
  }
  if (info.Length() > i + 1 && !info[i + 1].IsUndefined()) {
    const std::string p = info[i + 1].IsString() ? info[i + 1].As<Napi::String>().Utf8Value() : "";
    if (!memq::llm::llm_precision_from_name(p, &o.precision))
      throw Napi::TypeError::New(env, "precision must be 'bf16' or 'fp32'");
  }
  return o;
}
}  // namespace

// llmCreateRandom(configJson, seed, initStd, device?, precision?) -> NativeLlmModel
Napi::Value LlmCreateRandom(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "config must be a JSON string of an HF config");
  std::string text = info[0].As<Napi::String>().Utf8Value();
  memq::Json j;
  Status st = memq::Json::parse(text, &j);
  if (!st.ok()) throw status_error(env, st, "LlmModel.createRandom: config");
  memq::llm::ModelConfig cfg;
  st = memq::llm::ModelConfig::from_json(j, "config", &cfg);
  if (!st.ok()) throw status_error(env, st, "LlmModel.createRandom");
  const int64_t seed = int_arg(info[1], "seed", 0, int64_t{1} << 52);
  const double stdv = number_arg(info[2], "initStd");
  if (!(stdv > 0 && stdv < 10)) throw Napi::RangeError::New(env, "initStd must be in (0, 10)");
  std::unique_ptr<Model> m;
  bool place = false;
  const memq::llm::LlmDeviceOptions dopts = device_args(info, 3, &place);
  st = Model::create_random(cfg, static_cast<uint64_t>(seed), static_cast<float>(stdv), &m);
  if (!st.ok()) throw status_error(env, st, "LlmModel.createRandom");
  if (place) st = m->set_device(dopts);
  if (!st.ok()) throw status_error(env, st, "LlmModel.createRandom");
  return LlmModelWrap::Wrap(env, std::make_shared<ModelHolder>(std::move(m)));
}

// llmLoad(dir, device?, precision?) -> Promise<NativeLlmModel>
Napi::Value LlmLoad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "dir must be a string");
  auto dir = std::make_shared<std::string>(info[0].As<Napi::String>().Utf8Value());
  bool place = false;
  const memq::llm::LlmDeviceOptions dopts = device_args(info, 1, &place);
  auto result = std::make_shared<std::unique_ptr<Model>>();
  auto body = [dir, dopts, place, result]() {
    MEMQ_RETURN_IF_ERROR(Model::load(*dir, result.get()));
    return place ? (*result)->set_device(dopts) : Status::Ok();
  };
  return PromiseWorker::Start(
      env, "LlmModel.load", body,
      [result](Napi::Env e) -> Napi::Value {
        return LlmModelWrap::Wrap(e, std::make_shared<ModelHolder>(std::move(*result)));
      },
      {info[0]});
}

void InitLlm(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeLlmModel", LlmModelWrap::Init(env));
  exports.Set("llmCreateRandom", Napi::Function::New(
                                     env,
                                     [](const Napi::CallbackInfo& info) {
                                       return guard(info.Env(), "LlmModel.createRandom", [&] { return LlmCreateRandom(info); });
                                     },
                                     "llmCreateRandom"));
  exports.Set("llmLoad", Napi::Function::New(
                             env,
                             [](const Napi::CallbackInfo& info) {
                               return guard(info.Env(), "LlmModel.load", [&] { return LlmLoad(info); });
                             },
                             "llmLoad"));
  InitLlmTrain(env, exports);
}

}  // namespace memq_addon
