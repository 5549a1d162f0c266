// N-API wrapper of the transformer engine (memq::llm::Model): create/load/save, and the
// inference calls the model prior needs (score K candidates per prompt sharing the prompt's
// K/V, token log-probs, mean-pooled embeddings). Heavy calls run in AsyncWorkers that hold a
// shared reference to the model and to the caller's typed arrays.
#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "memq/json.h"
#include "memq/llm/model.h"
#include "util.h"

namespace memq_addon {

using memq::Status;
using memq::llm::Model;

namespace {

// Int32Array offsets from JS, widened to the engine's int64 offsets, checked to be a valid
// partition of `total` tokens.
std::vector<int64_t> offsets_arg(const Napi::Value& v, const char* name, size_t total) {
  auto a = typed_array_arg<int32_t>(v, name);
  Napi::Env env = v.Env();
  if (a.length < 1) throw Napi::RangeError::New(env, std::string(name) + " must hold at least one entry (0)");
  std::vector<int64_t> out(a.length);
  for (size_t i = 0; i < a.length; ++i) {
    out[i] = a.data[i];
    if ((i == 0 && out[i] != 0) || (i > 0 && out[i] < out[i - 1])) {
      throw Napi::RangeError::New(env, std::string(name) + " must start at 0 and never decrease; " + name + "[" +
                                           std::to_string(i) + "] = " + std::to_string(out[i]));
    }
  }
  if (static_cast<size_t>(out.back()) != total) {
    throw Napi::RangeError::New(env, std::string(name) + " must end at the number of tokens (" + std::to_string(total) +
                                         "), got " + std::to_string(out.back()));
  }
  return out;
}


}  // namespace

class LlmModelWrap : public Napi::ObjectWrap<LlmModelWrap> {
 public:
  static Napi::FunctionReference* ctor;

  static Napi::Function Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "NativeLlmModel",
                                   {
                                       InstanceMethod("save", &LlmModelWrap::Save),
                                       InstanceMethod("config", &LlmModelWrap::Config),
                                       InstanceMethod("numParams", &LlmModelWrap::NumParams),
                                       InstanceMethod("score", &LlmModelWrap::Score),
                                       InstanceMethod("tokenLogprobs", &LlmModelWrap::TokenLogprobs),
                                       InstanceMethod("embedMean", &LlmModelWrap::EmbedMean),
                                   });
    ctor = new Napi::FunctionReference(Napi::Persistent(f));
    return f;
  }

  explicit LlmModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<LlmModelWrap>(info) {}

  static Napi::Object Wrap(Napi::Env env, std::shared_ptr<Model> m) {
    Napi::Object o = ctor->New({});
    Unwrap(o)->model_ = std::move(m);
    return o;
  }

  std::shared_ptr<Model> model_;

 private:
  Model& model(Napi::Env env) {
    if (!model_) throw Napi::Error::New(env, "LlmModel: not initialised (use LlmModel.load or LlmModel.createRandom)");
    return *model_;
  }

  Napi::Value Save(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "dir must be a string");
    bool bf16 = info.Length() > 1 && info[1].ToBoolean().Value();
    Status st = model(env).save(info[0].As<Napi::String>().Utf8Value(), bf16);
    if (!st.ok()) throw status_error(env, st, "LlmModel.save");
    return env.Undefined();
  }

  Napi::Value Config(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), model(info.Env()).config().to_json().dump());
  }

  Napi::Value NumParams(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(model(info.Env()).num_params()));
  }

  // score(promptTokens, promptOffsets, candTokens, candOffsets, candGroups, lengthNormalize)
  Napi::Value Score(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = model_;
    model(env);
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
    auto out = Napi::Float32Array::New(env, n_cands);
    float* outp = out.Data();
    const int32_t* ptd = pt.data;
    const int32_t* ctd = ct.data;
    auto body = [m, po, co, cg, ptd, ctd, n_prompts, n_cands, norm, outp]() {
      memq::llm::ScoreRequest req;
      req.prompt_tokens = ptd;
      req.prompt_offsets = po->data();
      req.n_prompts = static_cast<int64_t>(n_prompts);
      req.cand_tokens = ctd;
      req.cand_offsets = co->data();
      req.cand_groups = cg->data();
      req.n_cands = static_cast<int64_t>(n_cands);
      req.length_normalize = norm;
      return m->score(outp, nullptr, req, nullptr);
    };
    return PromiseWorker::Start(env, "LlmModel.score", body, resolve_to(out),
                                {info[0], info[1], info[2], info[3], info[4], info.This()});
  }

  // Shared by tokenLogprobs and embedMean: (tokens, offsets) -> Float32Array of `per` floats.
  Napi::Value BatchCall(const Napi::CallbackInfo& info, bool embed) {
    Napi::Env env = info.Env();
    auto m = model_;
    model(env);
    auto tk = typed_array_arg<int32_t>(info[0], "tokens");
    auto off = std::make_shared<std::vector<int64_t>>(offsets_arg(info[1], "offsets", tk.length));
    const int64_t n_seqs = static_cast<int64_t>(off->size() - 1);
    const size_t n_out = embed ? static_cast<size_t>(n_seqs * m->config().hidden_size) : tk.length;
    auto out = Napi::Float32Array::New(env, n_out);
    float* outp = out.Data();
    const int32_t* tkd = tk.data;
    auto body = [m, off, tkd, n_seqs, outp, embed]() {
      memq::llm::TokenBatch b;
      b.tokens = tkd;
      b.offsets = off->data();
      b.n_seqs = n_seqs;
      return embed ? m->embed_mean(outp, b, nullptr) : m->token_logprobs(outp, b, nullptr);
    };
    return PromiseWorker::Start(env, embed ? "LlmModel.embedMean" : "LlmModel.tokenLogprobs", body, resolve_to(out),
                                {info[0], info[1], info.This()});
  }
  Napi::Value TokenLogprobs(const Napi::CallbackInfo& info) { return BatchCall(info, false); }
  Napi::Value EmbedMean(const Napi::CallbackInfo& info) { return BatchCall(info, true); }
};

Napi::FunctionReference* LlmModelWrap::ctor = nullptr;

// llmCreateRandom(configJson, seed, initStd) -> NativeLlmModel
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
  st = Model::create_random(cfg, static_cast<uint64_t>(seed), static_cast<float>(stdv), &m);
  if (!st.ok()) throw status_error(env, st, "LlmModel.createRandom");
  return LlmModelWrap::Wrap(env, std::shared_ptr<Model>(std::move(m)));
}

// llmLoad(dir) -> Promise<NativeLlmModel>
Napi::Value LlmLoad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "dir must be a string");
  auto dir = std::make_shared<std::string>(info[0].As<Napi::String>().Utf8Value());
  auto holder = std::make_shared<std::shared_ptr<Model>>();
  auto body = [dir, holder]() {
    std::unique_ptr<Model> m;
    Status st = Model::load(*dir, &m);
    if (st.ok()) *holder = std::shared_ptr<Model>(std::move(m));
    return st;
  };
  return PromiseWorker::Start(env, "LlmModel.load", body,
                              [holder](Napi::Env e) -> Napi::Value { return LlmModelWrap::Wrap(e, *holder); }, {info[0]});
}

void InitLlm(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeLlmModel", LlmModelWrap::Init(env));
  exports.Set("llmCreateRandom", Napi::Function::New(env, LlmCreateRandom, "llmCreateRandom"));
  exports.Set("llmLoad", Napi::Function::New(env, LlmLoad, "llmLoad"));
}

}  // namespace memq_addon
