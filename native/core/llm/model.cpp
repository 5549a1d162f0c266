// Llama / Qwen2 decoder: config, parameter layout, load/save, forward, backward, scoring.
#include "memq/llm/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <atomic>
#include <limits>
#include <map>
#include <mutex>
#include <new>
#include <sstream>

#include "engine_common.h"
#include "memq/llm/device.h"
#include "memq/limits.h"
#include "memq/llm/lora.h"
#include "memq/llm/ops.h"
#include "memq/llm/safetensors.h"
#include "memq/thread_pool.h"

namespace memq {
namespace llm {

double Rng::normal() {
  double u1 = uniform(), u2 = uniform();
  if (u1 < 1e-300) u1 = 1e-300;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

// ---------------------------------------------------------------------------------------------
// config

// Values are range-checked (kOutOfRange) including the limits of limits.h, before anything is
// sized from them: the layer count and the parameter count (computed in double, no overflow).
Status ModelConfig::validate() const {
  if (model_type != "qwen2" && model_type != "llama" && model_type != "qwen3")
    return Status::OutOfRange("model config: model_type must be \"qwen2\", \"qwen3\" or \"llama\", got \"" + model_type + "\"");
  const std::pair<const char*, int64_t> sizes[] = {
      {"vocab_size", vocab_size}, {"hidden_size", hidden_size}, {"intermediate_size", intermediate_size},
      {"num_hidden_layers", num_hidden_layers}, {"num_attention_heads", num_attention_heads},
      {"num_key_value_heads", num_key_value_heads}};
  for (const auto& [name, v] : sizes) {
    if (v <= 0) return Status::OutOfRange(std::string("model config: ") + name + " must be positive, got " + std::to_string(v));
    if (v > (int64_t(1) << 31) - 1)
      return Status::OutOfRange(std::string("model config: ") + name + " = " + std::to_string(v) + " is over 2^31 - 1");
  }
  if (head_dim < 0 || head_dim > (int64_t(1) << 31) - 1)
    return Status::OutOfRange("model config: head_dim must be in [0, 2^31 - 1], got " + std::to_string(head_dim));
  if (num_hidden_layers > limits::kMaxLayers)
    return Status::OutOfRange("model config: num_hidden_layers = " + std::to_string(num_hidden_layers) +
                              " is over the limit of " + std::to_string(limits::kMaxLayers));
  if (num_attention_heads % num_key_value_heads != 0)
    return Status::OutOfRange("model config: num_attention_heads must be a multiple of num_key_value_heads");
  if (head_dim <= 0 && hidden_size % num_attention_heads != 0)
    return Status::OutOfRange("model config: hidden_size must be a multiple of num_attention_heads");
  if (dim_head() % 2 != 0) return Status::OutOfRange("model config: head_dim must be even (RoPE)");
  if (!(rms_norm_eps > 0) || !(rope_theta > 0)) return Status::OutOfRange("model config: rms_norm_eps and rope_theta must be > 0");
  if (max_position_embeddings <= 0) return Status::OutOfRange("model config: max_position_embeddings must be positive");
  const double n = param_count();
  if (n > double(limits::kMaxParams))
    return Status::OutOfRange("model config: " + std::to_string(int64_t(n)) + " parameters is over the limit of 2^32 (" +
                              std::to_string(limits::kMaxParams) + ")");
  return Status::Ok();
}

double ModelConfig::param_count() const {
  const double C = double(hidden_size), I = double(intermediate_size), D = double(dim_head());
  const double QD = double(num_attention_heads) * D, KD = double(num_key_value_heads) * D;
  double layer = 2 * C + QD * C + 2 * KD * C + C * QD + 3 * I * C;
  if (qkv_bias()) layer += QD + 2 * KD;
  if (qk_norm()) layer += 2 * D;
  if (o_bias()) layer += C;
  return double(vocab_size) * C * (tie_word_embeddings ? 1 : 2) + double(num_hidden_layers) * layer + C;
}

Status ModelConfig::from_json(const Json& j, const std::string& where, ModelConfig* out) {
  if (!j.is_object()) return Status::Invalid(where + ": not a JSON object");
  ModelConfig c;
  MEMQ_RETURN_IF_ERROR(json_get_string(j, "model_type", where, &c.model_type));
  if (c.model_type != "qwen2" && c.model_type != "llama" && c.model_type != "qwen3")
    return Status::OutOfRange(where + ": model_type \"" + c.model_type + "\" is not supported (qwen2 | qwen3 | llama)");
  MEMQ_RETURN_IF_ERROR(json_get_int(j, "vocab_size", where, &c.vocab_size));
  MEMQ_RETURN_IF_ERROR(json_get_int(j, "hidden_size", where, &c.hidden_size));
  MEMQ_RETURN_IF_ERROR(json_get_int(j, "intermediate_size", where, &c.intermediate_size));
  MEMQ_RETURN_IF_ERROR(json_get_int(j, "num_hidden_layers", where, &c.num_hidden_layers));
  MEMQ_RETURN_IF_ERROR(json_get_int(j, "num_attention_heads", where, &c.num_attention_heads));
  c.num_key_value_heads = c.num_attention_heads;
  if (j.find("num_key_value_heads") && !j.find("num_key_value_heads")->is_null())
    MEMQ_RETURN_IF_ERROR(json_get_int(j, "num_key_value_heads", where, &c.num_key_value_heads));
  if (j.find("head_dim") && !j.find("head_dim")->is_null()) {
    MEMQ_RETURN_IF_ERROR(json_get_int(j, "head_dim", where, &c.head_dim));
    // 0 inside the struct means "hidden_size / num_attention_heads"; a given head_dim is >= 1.
    if (c.head_dim < 1) return Status::OutOfRange(where + ": head_dim must be >= 1 when given, got " + std::to_string(c.head_dim));
  }
  if (j.find("max_position_embeddings"))
    MEMQ_RETURN_IF_ERROR(json_get_int(j, "max_position_embeddings", where, &c.max_position_embeddings));
  if (j.find("rms_norm_eps")) MEMQ_RETURN_IF_ERROR(json_get_double(j, "rms_norm_eps", where, &c.rms_norm_eps));
  if (j.find("rope_theta")) MEMQ_RETURN_IF_ERROR(json_get_double(j, "rope_theta", where, &c.rope_theta));
  if (j.find("tie_word_embeddings")) MEMQ_RETURN_IF_ERROR(json_get_bool(j, "tie_word_embeddings", where, &c.tie_word_embeddings));
  if (j.find("attention_bias")) MEMQ_RETURN_IF_ERROR(json_get_bool(j, "attention_bias", where, &c.attention_bias));
  if (const Json* mb = j.find("mlp_bias"); mb && mb->is_bool() && mb->as_bool())
    return Status::Invalid(where + ": mlp_bias = true is not supported");
  if (const Json* rs = j.find("rope_scaling"); rs && !rs->is_null())
    return Status::Invalid(where + ": rope_scaling is not supported (only plain RoPE)");
  if (const Json* sw = j.find("use_sliding_window"); sw && sw->is_bool() && sw->as_bool())
    return Status::Invalid(where + ": use_sliding_window = true is not supported");
  if (const Json* act = j.find("hidden_act"); act && !act->is_null() && !act->is_string())
    return Status::Invalid(where + ": field \"hidden_act\" must be a string");
  if (const Json* act = j.find("hidden_act"); act && act->is_string() && act->as_string() != "silu")
    return Status::Invalid(where + ": hidden_act \"" + act->as_string() + "\" is not supported (silu)");
  if (const Json* b = j.find("bos_token_id"); b && b->is_integer()) c.bos_token_id = b->as_int();
  if (const Json* e = j.find("eos_token_id"); e && e->is_integer()) c.eos_token_id = e->as_int();
  Status st = c.validate();
  if (!st.ok()) return Status(st.code(), where + ": " + st.message());
  *out = c;
  return Status::Ok();
}

Json ModelConfig::to_json() const {
  Json j = Json::object();
  Json arch = Json::array();
  arch.push(Json::string(model_type == "qwen2" ? "Qwen2ForCausalLM" : model_type == "qwen3" ? "Qwen3ForCausalLM" : "LlamaForCausalLM"));
  j.set("architectures", std::move(arch));
  j.set("model_type", Json::string(model_type));
  j.set("vocab_size", Json::integer(vocab_size));
  j.set("hidden_size", Json::integer(hidden_size));
  j.set("intermediate_size", Json::integer(intermediate_size));
  j.set("num_hidden_layers", Json::integer(num_hidden_layers));
  j.set("num_attention_heads", Json::integer(num_attention_heads));
  j.set("num_key_value_heads", Json::integer(num_key_value_heads));
  if (head_dim > 0) j.set("head_dim", Json::integer(head_dim));
  j.set("max_position_embeddings", Json::integer(max_position_embeddings));
  j.set("rms_norm_eps", Json::number(rms_norm_eps));
  j.set("rope_theta", Json::number(rope_theta));
  j.set("tie_word_embeddings", Json::boolean(tie_word_embeddings));
  j.set("hidden_act", Json::string("silu"));
  if (model_type == "llama") {
    j.set("attention_bias", Json::boolean(attention_bias));
    j.set("mlp_bias", Json::boolean(false));
  } else {
    if (model_type == "qwen3") j.set("attention_bias", Json::boolean(attention_bias));
    j.set("use_sliding_window", Json::boolean(false));
  }
  j.set("rope_scaling", Json::null());
  if (bos_token_id >= 0) j.set("bos_token_id", Json::integer(bos_token_id));
  if (eos_token_id >= 0) j.set("eos_token_id", Json::integer(eos_token_id));
  j.set("torch_dtype", Json::string("float32"));
  return j;
}

// ---------------------------------------------------------------------------------------------
// parameter layout: one allocation, HF names

std::vector<ParamTensor> param_layout(const ModelConfig& c, int64_t* total) {
  std::vector<ParamTensor> t;
  int64_t off = 0;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    ParamTensor p;
    p.name = name;
    p.shape = std::move(shape);
    p.offset = off;
    off += p.numel();
    t.push_back(std::move(p));
  };
  const int64_t C = c.hidden_size, I = c.intermediate_size, D = c.dim_head();
  const int64_t QD = c.num_attention_heads * D, KD = c.num_key_value_heads * D;
  add("model.embed_tokens.weight", {c.vocab_size, C});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {C});
    add(p + "self_attn.q_proj.weight", {QD, C});
    if (c.qkv_bias()) add(p + "self_attn.q_proj.bias", {QD});
    if (c.qk_norm()) add(p + "self_attn.q_norm.weight", {D});
    add(p + "self_attn.k_proj.weight", {KD, C});
    if (c.qkv_bias()) add(p + "self_attn.k_proj.bias", {KD});
    if (c.qk_norm()) add(p + "self_attn.k_norm.weight", {D});
    add(p + "self_attn.v_proj.weight", {KD, C});
    if (c.qkv_bias()) add(p + "self_attn.v_proj.bias", {KD});
    add(p + "self_attn.o_proj.weight", {C, QD});
    if (c.o_bias()) add(p + "self_attn.o_proj.bias", {C});
    add(p + "post_attention_layernorm.weight", {C});
    add(p + "mlp.gate_proj.weight", {I, C});
    add(p + "mlp.up_proj.weight", {I, C});
    add(p + "mlp.down_proj.weight", {C, I});
  }
  add("model.norm.weight", {C});
  if (!c.tie_word_embeddings) add("lm_head.weight", {c.vocab_size, C});
  if (total) *total = off;
  return t;
}

ParamViews bind_params(const ModelConfig& c, float* base) {
  int64_t total = 0;
  std::vector<ParamTensor> layout = param_layout(c, &total);
  std::map<std::string, float*> at;
  for (const auto& p : layout) at[p.name] = base + p.offset;
  auto get = [&](const std::string& n) -> float* {
    auto it = at.find(n);
    return it == at.end() ? nullptr : it->second;
  };
  ParamViews v;
  v.embed = get("model.embed_tokens.weight");
  v.layers.resize(size_t(c.num_hidden_layers));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerParams& L = v.layers[size_t(l)];
    L.input_layernorm = get(p + "input_layernorm.weight");
    L.q_w = get(p + "self_attn.q_proj.weight");
    L.q_b = get(p + "self_attn.q_proj.bias");
    L.q_norm = get(p + "self_attn.q_norm.weight");
    L.k_norm = get(p + "self_attn.k_norm.weight");
    L.k_w = get(p + "self_attn.k_proj.weight");
    L.k_b = get(p + "self_attn.k_proj.bias");
    L.v_w = get(p + "self_attn.v_proj.weight");
    L.v_b = get(p + "self_attn.v_proj.bias");
    L.o_w = get(p + "self_attn.o_proj.weight");
    L.o_b = get(p + "self_attn.o_proj.bias");
    L.post_attention_layernorm = get(p + "post_attention_layernorm.weight");
    L.gate_w = get(p + "mlp.gate_proj.weight");
    L.up_w = get(p + "mlp.up_proj.weight");
    L.down_w = get(p + "mlp.down_proj.weight");
  }
  v.norm = get("model.norm.weight");
  v.lm_head = c.tie_word_embeddings ? v.embed : get("lm_head.weight");
  return v;
}

Status Model::init_storage(const ModelConfig& cfg) {
  MEMQ_RETURN_IF_ERROR(cfg.validate());
  cfg_ = cfg;
  int64_t total = 0;
  layout_ = param_layout(cfg, &total);
  try {
    params_.assign(size_t(total), 0.0f);
  } catch (...) {
    return Status::NoMemory("model: cannot allocate " + std::to_string(total) + " parameters");
  }
  w_ = bind_params(cfg, params_.data());
  ws_ = new_train_workspace();
  return Status::Ok();
}

float* Model::find_param(const std::string& name, std::vector<int64_t>* shape) {
  for (const auto& p : layout_)
    if (p.name == name) {
      if (shape) *shape = p.shape;
      return params_.data() + p.offset;
    }
  if (name == "lm_head.weight" && cfg_.tie_word_embeddings) {
    if (shape) *shape = {cfg_.vocab_size, cfg_.hidden_size};
    return w_.embed;
  }
  return nullptr;
}

namespace {

bool read_text_file(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

bool file_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

namespace {

// Which config fields give a tensor's expected shape (for errors naming them).
std::string shape_fields(const std::string& name) {
  auto has = [&](const char* suffix) { return ends_with(name, suffix); };
  if (has("embed_tokens.weight") || name == "lm_head.weight") return "[vocab_size, hidden_size]";
  if (has("q_proj.weight")) return "[num_attention_heads*head_dim, hidden_size]";
  if (has("q_proj.bias")) return "[num_attention_heads*head_dim]";
  if (has("k_proj.weight") || has("v_proj.weight")) return "[num_key_value_heads*head_dim, hidden_size]";
  if (has("k_proj.bias") || has("v_proj.bias")) return "[num_key_value_heads*head_dim]";
  if (has("o_proj.weight")) return "[hidden_size, num_attention_heads*head_dim]";
  if (has("q_norm.weight") || has("k_norm.weight")) return "[head_dim]";
  if (has("gate_proj.weight") || has("up_proj.weight")) return "[intermediate_size, hidden_size]";
  if (has("down_proj.weight")) return "[hidden_size, intermediate_size]";
  return "[hidden_size]";  // the norms and o_proj.bias
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string t;
  for (int64_t v : shape) t += (t.empty() ? "" : ", ") + std::to_string(v);
  return "[" + t + "]";
}

// The layer index of "model.layers.<i>.<...>", or -1.
int64_t layer_of(const std::string& name) {
  static const std::string pre = "model.layers.";
  if (name.compare(0, pre.size(), pre) != 0) return -1;
  size_t i = pre.size();
  int64_t v = 0;
  size_t digits = 0;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9' && digits < 10) v = v * 10 + (name[i++] - '0'), ++digits;
  return digits > 0 && i < name.size() && name[i] == '.' ? v : -1;
}

}  // namespace

// Opens every weight file first (headers only, each validated and bounded), then checks the
// config against the tensors actually present (names, shapes, dtypes) BEFORE allocating the
// parameters: the allocation is then bounded by what the files hold. Errors: a file that cannot
// be read is kIOError; malformed or inconsistent files (config.json included) are kCorrupt.
Status Model::load(const std::string& dir, std::unique_ptr<Model>* out) {
  const std::string cfg_path = dir + "/config.json";
  std::string text;
  if (!read_text_file(cfg_path, &text)) return Status::IOError(cfg_path + ": cannot read");
  Json cj;
  Status st = Json::parse(text, &cj);
  if (!st.ok()) return Status::Corrupt(cfg_path + ": " + st.message());
  ModelConfig cfg;
  MEMQ_RETURN_IF_ERROR(ModelConfig::from_json(cj, cfg_path, &cfg).with_code(StatusCode::kCorrupt));

  // tensor name -> shard file
  std::map<std::string, std::unique_ptr<SafetensorsFile>> files;
  std::map<std::string, SafetensorsFile*> where;
  const std::string single = dir + "/model.safetensors", index = dir + "/model.safetensors.index.json";
  if (file_exists(single)) {
    std::unique_ptr<SafetensorsFile> f;
    MEMQ_RETURN_IF_ERROR(SafetensorsFile::open(single, &f));
    for (const auto& t : f->tensors()) where[t.name] = f.get();
    files[single] = std::move(f);
  } else if (file_exists(index)) {
    if (!read_text_file(index, &text)) return Status::IOError(index + ": cannot read");
    Json ij;
    st = Json::parse(text, &ij);
    if (!st.ok()) return Status::Corrupt(index + ": " + st.message());
    const Json* wm = ij.find("weight_map");
    if (!wm || !wm->is_object()) return Status::Corrupt(index + ": missing object \"weight_map\"");
    for (const auto& [name, fv] : wm->members()) {
      if (!fv.is_string()) return Status::Corrupt(index + ": weight_map[\"" + name + "\"] must be a file name");
      const std::string& fname = fv.as_string();
      if (fname.empty() || fname.find('/') != std::string::npos || fname.find('\\') != std::string::npos || fname == "..")
        return Status::Corrupt(index + ": weight_map[\"" + name + "\"] is not a plain file name");
      const std::string path = dir + "/" + fname;
      if (!files.count(path)) {
        std::unique_ptr<SafetensorsFile> f;
        MEMQ_RETURN_IF_ERROR(SafetensorsFile::open(path, &f));
        files[path] = std::move(f);
      }
      SafetensorsFile* f = files[path].get();
      if (!f->find(name)) return Status::Corrupt(index + ": tensor \"" + name + "\" is not in " + path);
      where[name] = f;
    }
  } else {
    return Status::IOError(dir + ": neither model.safetensors nor model.safetensors.index.json");
  }

  // The layer count first (param_layout is linear in it): the layers the files hold.
  int64_t file_layers = 0;
  for (const auto& kv : where) file_layers = std::max(file_layers, layer_of(kv.first) + 1);
  if (cfg.num_hidden_layers != file_layers)
    return Status::Corrupt(cfg_path + ": num_hidden_layers = " + std::to_string(cfg.num_hidden_layers) +
                           " but the weight files hold tensors for " + std::to_string(file_layers) + " layers" +
                           (cfg.num_hidden_layers > file_layers
                                ? " (no tensor \"model.layers." + std::to_string(file_layers) + ".input_layernorm.weight\")"
                                : ""));
  // Every tensor of the layout present, with the shape the config gives and a float dtype.
  int64_t total = 0;
  const std::vector<ParamTensor> layout = param_layout(cfg, &total);
  for (const auto& p : layout) {
    auto it = where.find(p.name);
    if (it == where.end())
      return Status::Corrupt(dir + ": config.json expects tensor \"" + p.name + "\" (shape " + shape_fields(p.name) +
                             " = " + shape_text(p.shape) + "), which no weight file holds");
    const TensorInfo* t = it->second->find(p.name);
    if (t->shape != p.shape)
      return Status::Corrupt(dir + ": config.json does not match the weights: tensor \"" + p.name + "\" in " +
                             it->second->path() + " has shape " + shape_text(t->shape) + ", but config.json's " +
                             shape_fields(p.name) + " = " + shape_text(p.shape));
    if (t->dtype != DType::kF32 && t->dtype != DType::kF16 && t->dtype != DType::kBF16 && t->dtype != DType::kF64)
      return Status::Corrupt(it->second->path() + ": tensor \"" + p.name + "\" has dtype " + dtype_name(t->dtype) +
                             "; weights must be F32, F16, BF16 or F64");
  }
  // Unknown tensors would mean a different architecture; the rotary inv_freq buffers some
  // exporters keep are harmless.
  {
    std::map<std::string, bool> known;
    for (const auto& p : layout) known[p.name] = true;
    for (const auto& [name, f] : where)
      if (!known.count(name) && !ends_with(name, "rotary_emb.inv_freq") && !(name == "lm_head.weight" && cfg.tie_word_embeddings))
        return Status::Corrupt(f->path() + ": unexpected tensor \"" + name + "\" for a " + cfg.model_type + " model");
  }

  auto m = std::unique_ptr<Model>(new Model());
  MEMQ_RETURN_IF_ERROR(m->init_storage(cfg));
  for (const auto& p : m->layout_)
    MEMQ_RETURN_IF_ERROR(where[p.name]->read_f32(p.name, p.shape, m->params_.data() + p.offset));
  *out = std::move(m);
  return Status::Ok();
}

Status Model::create_random(const ModelConfig& cfg, uint64_t seed, float init_std, std::unique_ptr<Model>* out) {
  auto m = std::unique_ptr<Model>(new Model());
  MEMQ_RETURN_IF_ERROR(m->init_storage(cfg));
  Rng rng(seed);
  for (const auto& p : m->layout_) {
    float* d = m->params_.data() + p.offset;
    const bool norm = ends_with(p.name, "norm.weight");
    const bool bias = ends_with(p.name, ".bias");
    for (int64_t i = 0; i < p.numel(); ++i) d[i] = norm ? 1.0f : bias ? 0.0f : float(init_std * rng.normal());
  }
  *out = std::move(m);
  return Status::Ok();
}

Status Model::create_zeros(const ModelConfig& cfg, std::unique_ptr<Model>* out) {
  auto m = std::unique_ptr<Model>(new Model());
  MEMQ_RETURN_IF_ERROR(m->init_storage(cfg));
  *out = std::move(m);
  return Status::Ok();
}

Status Model::clone(std::unique_ptr<Model>* out) const {
  auto m = std::unique_ptr<Model>(new Model());
  MEMQ_RETURN_IF_ERROR(m->init_storage(cfg_));
  std::copy(params_.begin(), params_.end(), m->params_.begin());
  if (engine_) {
    MEMQ_RETURN_IF_ERROR(create_cuda_engine(*m, engine_->options(), &m->engine_));
    m->placement_ = detail::next_stamp();
    m->device_reason_ = device_reason_;
  }
  *out = std::move(m);
  return Status::Ok();
}


LlmDevice Model::device() const { return engine_ ? engine_->device() : LlmDevice::kCpu; }

Status Model::set_device(const LlmDeviceOptions& opts, LlmDeviceChoice* choice_out) {
  LlmDeviceChoice choice;
  MEMQ_RETURN_IF_ERROR(select_llm_device(opts.device, &choice, opts.require_self_test));
  if (choice.device == LlmDevice::kCuda) {
    LlmDeviceOptions o = opts;
    o.device = "cuda";
    std::unique_ptr<DeviceEngine> e;
    Status st = create_cuda_engine(*this, o, &e);
    if (!st.ok()) {
      if (choice.requested != "auto") return st;
      // auto: a usable device that cannot take this model (memory, unsupported shape) -> CPU
      choice.device = LlmDevice::kCpu;
      choice.reason = "auto: CUDA not used: " + st.message();
    } else {
      choice.reason += "; " + e->description();
      engine_ = std::move(e);
      placement_ = detail::next_stamp();
    }
  }
  if (choice.device == LlmDevice::kCpu) {
    engine_.reset();
    placement_ = 0;
  }
  device_reason_ = choice.reason;
  if (choice_out) *choice_out = choice;
  return Status::Ok();
}

Status Model::sync_device() { return engine_ ? engine_->upload_weights(params_.data()) : Status::Ok(); }

Status Model::save(const std::string& dir, bool bf16) const {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);  // an error shows up when the files are written
  {
    std::ofstream f(dir + "/config.json", std::ios::trunc);
    if (!f) return Status::IOError(dir + "/config.json: cannot write");
    f << cfg_.to_json().dump(2) << "\n";
    if (!f) return Status::IOError(dir + "/config.json: write failed");
  }
  std::vector<TensorToWrite> ts;
  for (const auto& p : layout_) ts.push_back({p.name, p.shape, params_.data() + p.offset});
  return write_safetensors(dir + "/model.safetensors", ts, {}, bf16);
}

double Model::forward_flops_per_token(int64_t ctx) const {
  const double C = double(cfg_.hidden_size), I = double(cfg_.intermediate_size), D = double(cfg_.dim_head());
  const double QD = double(cfg_.num_attention_heads) * D, KD = double(cfg_.num_key_value_heads) * D;
  const double per_layer = 2.0 * (C * QD + 2.0 * C * KD + QD * C + 3.0 * C * I) +
                           2.0 * 2.0 * double(cfg_.num_attention_heads) * D * double(ctx);  // QK^T and PV
  return double(cfg_.num_hidden_layers) * per_layer + 2.0 * C * double(cfg_.vocab_size);
}

Status validate_batch(const int32_t* tokens, const int64_t* offsets, int64_t n_seqs, int64_t vocab,
                      const std::string& what) {
  if (n_seqs < 0) return Status::Invalid(what + ": negative sequence count");
  if (!offsets) return Status::Invalid(what + ": null offsets");
  if (offsets[0] != 0) return Status::OutOfRange(what + ": offsets[0] must be 0");
  for (int64_t b = 0; b < n_seqs; ++b)
    if (offsets[b + 1] < offsets[b]) return Status::OutOfRange(what + ": offsets must be non-decreasing (at " + std::to_string(b) + ")");
  const int64_t N = offsets[n_seqs];
  if (N > 0 && !tokens) return Status::Invalid(what + ": null tokens");
  for (int64_t i = 0; i < N; ++i)
    if (tokens[i] < 0 || tokens[i] >= vocab)
      return Status::OutOfRange(what + ": token " + std::to_string(tokens[i]) + " at " + std::to_string(i) +
                                " outside the vocabulary [0, " + std::to_string(vocab) + ")");
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// the forward/backward engine

namespace detail {
namespace {
std::atomic<bool> g_scratch_poison{false};
}
void set_scratch_poison(bool on) { g_scratch_poison.store(on); }
bool scratch_poison() { return g_scratch_poison.load(); }
}  // namespace detail

namespace {

// A float buffer that keeps its allocation between uses: get(n) grows it (uninitialised: new
// float[], no zero-fill) only when n exceeds what it holds. Callers write every element they read
// or zero what they accumulate into; detail::set_scratch_poison fills it with NaN to check that.
struct Scratch {
  std::unique_ptr<float[]> buf;
  size_t cap = 0;
  float* get(size_t n) {
    if (n > cap || !buf) {
      buf.reset();
      cap = 0;
      buf.reset(new (std::nothrow) float[std::max<size_t>(n, 1)]);
      if (!buf) return nullptr;
      cap = n;
    }
    if (detail::scratch_poison()) std::fill(buf.get(), buf.get() + n, std::numeric_limits<float>::quiet_NaN());
    return buf.get();
  }
};

// Activations of one pass. With keep = false every layer shares one set of buffers
// (inference); with keep = true each layer has its own (training).
struct Acts {
  int64_t N = 0, L = 0, C = 0, I = 0, QD = 0, KD = 0, S = 0, R = 0, D = 1;
  bool keep = false;
  Scratch arena;
  float *resid, *ln1, *rstd1, *q, *k, *v, *att, *atty, *resid_mid, *ln2, *rstd2, *gate, *up, *act, *lora_t;
  float *proj, *lnf, *rstdf;
  float *qpre, *kpre, *qr, *kr;  // qwen3: q/k before their per-head RMSNorm, and its rstd
  // pointers for layer l
  int64_t ls(int64_t per) const { return keep ? per : 0; }
  float* res_at(int64_t l) const { return resid + (keep ? l * N * C : 0); }  // x_l (l = 0..L)
  float* L1(int64_t l) const { return ln1 + ls(N * C) * l; }
  float* R1(int64_t l) const { return rstd1 + ls(N) * l; }
  float* Q(int64_t l) const { return q + ls(N * QD) * l; }
  float* K(int64_t l) const { return k + ls(N * KD) * l; }
  float* V(int64_t l) const { return v + ls(N * KD) * l; }
  float* ATT(int64_t l) const { return att + ls(S) * l; }
  float* ATTY(int64_t l) const { return atty + ls(N * QD) * l; }
  float* MID(int64_t l) const { return resid_mid + ls(N * C) * l; }
  float* L2(int64_t l) const { return ln2 + ls(N * C) * l; }
  float* R2(int64_t l) const { return rstd2 + ls(N) * l; }
  float* G(int64_t l) const { return gate + ls(N * I) * l; }
  float* U(int64_t l) const { return up + ls(N * I) * l; }
  float* A(int64_t l) const { return act + ls(N * I) * l; }
  float* QP(int64_t l) const { return qpre + ls(N * QD) * l; }
  float* KP(int64_t l) const { return kpre + ls(N * KD) * l; }
  float* QR(int64_t l) const { return qr + ls(N * (QD / D)) * l; }
  float* KR(int64_t l) const { return kr + ls(N * (KD / D)) * l; }
  float* T(int64_t l, int t) const { return lora_t + (ls(N * R * kLoraNumTargets) * l) + int64_t(t) * N * R; }

  Status alloc(int64_t n, const ModelConfig& c, int64_t att_size, int64_t lora_r, bool keep_all) {
    N = n; L = c.num_hidden_layers; C = c.hidden_size; I = c.intermediate_size;
    QD = c.num_attention_heads * c.dim_head(); KD = c.num_key_value_heads * c.dim_head();
    S = att_size; R = lora_r; keep = keep_all; D = c.dim_head();
    const int64_t nl = keep ? L : 1;
    const int64_t qkn = c.qk_norm() ? 1 : 0;
    const int64_t sizes[] = {
        (keep ? L + 1 : 1) * N * C,  // resid
        nl * N * C, nl * N, nl * N * QD, nl * N * KD, nl * N * KD, keep ? nl * S : 0, nl * N * QD, nl * N * C,
        nl * N * C, nl * N, nl * N * I, nl * N * I, nl * N * I, nl * N * R * kLoraNumTargets,
        N * C, N * C, N,
        qkn * nl * N * QD, qkn * nl * N * KD, qkn * nl * N * QD / D, qkn * nl * N * KD / D};
    // Sized from the batch (tokens, sequence lengths): checked against limits.h in double first.
    double dtotal = 0;
    for (int64_t s : sizes) dtotal += s < 0 ? 1e300 : double(s);
    if (dtotal > double(limits::kMaxActivationFloats))
      return Status::OutOfRange("batch too large: one forward pass over " + std::to_string(n) + " tokens needs " +
                                std::to_string(int64_t(dtotal)) + " activation floats, over the limit of 2^32; " +
                                "split it into smaller batches (or shorter sequences)");
    int64_t total = 0;
    for (int64_t s : sizes) total += s;
    // Not zero-filled: the forward writes every element it (or the backward) reads.
    float* p = arena.get(size_t(total));
    if (!p) return Status::NoMemory("model: cannot allocate " + std::to_string(total) + " activation floats");
    float** dst[] = {&resid, &ln1, &rstd1, &q, &k, &v, &att, &atty, &resid_mid, &ln2, &rstd2, &gate, &up, &act, &lora_t,
                     &proj, &lnf, &rstdf, &qpre, &kpre, &qr, &kr};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); ++i) {
      *dst[i] = p;
      p += sizes[i];
    }
    return Status::Ok();
  }
};

// Keys/values of an earlier pass that each sequence of this pass continues (scoring).
struct Prefix {
  const float* k = nullptr;  // [L][rows][KD]
  const float* v = nullptr;
  int64_t rows = 0;
  const int64_t* start = nullptr;  // per sequence of this pass: first prefix row
  const int64_t* len = nullptr;    // and count
};

using detail::RopeTable;

const float* lora_A(const LoraAdapter* lora, int64_t l, LoraTarget t) {
  return (lora && lora->targets(t)) ? lora->module(l, t).A : nullptr;
}

}  // namespace

struct ModelRunner {
  const Model& m;
  const ModelConfig& c;
  const ParamViews& w;
  const LoraAdapter* lora;
  explicit ModelRunner(const Model& model, const LoraAdapter* l) : m(model), c(model.cfg_), w(model.w_), lora(l) {}

  Status check_lora() const { return detail::check_lora(c, lora); }

  // out = inp W^T + b (+ scale (inp A^T) B^T)
  void linear(float* out, float* t, const float* inp, const float* W, const float* b, int64_t l, LoraTarget tg,
              int64_t N, int64_t in, int64_t outd) const {
    matmul_forward<float>(out, inp, W, b, N, in, outd);
    if (const float* A = lora_A(lora, l, tg)) {
      const LoraModule& mod = lora->module(l, tg);
      lora_forward<float>(out, t, inp, A, mod.B, lora->scale(), N, in, outd, lora->config().r);
    }
  }

  void linear_back(float* dinp, float* dW, float* db, float* lora_grad, const float* dout, const float* inp,
                   const float* t, const float* W, int64_t l, LoraTarget tg, int64_t N, int64_t in, int64_t outd) const {
    matmul_backward<float>(dinp, dW, db, dout, inp, W, N, in, outd);
    if (const float* A = lora_A(lora, l, tg)) {
      const LoraModule& mod = lora->module(l, tg);
      lora_backward<float>(dinp, lora_grad ? lora_grad + mod.a_offset : nullptr,
                           lora_grad ? lora_grad + mod.b_offset : nullptr, dout, inp, t, A, mod.B, lora->scale(), N,
                           in, outd, lora->config().r);
    }
  }

  // Runs the decoder over N packed tokens; leaves the final-normed hidden states in a.lnf.
  // cache_k/cache_v (nullable, [L][N][KD]) receive this pass's post-RoPE keys/values.
  Status forward(Acts& a, const int32_t* tokens, const int64_t* offsets, int64_t B, const int32_t* pos,
                 const RopeTable& rope, const Prefix* prefix, float* cache_k, float* cache_v, bool keep) const {
    const int64_t N = offsets[B];
    const int64_t C = c.hidden_size, I = c.intermediate_size, D = c.dim_head();
    const int64_t H = c.num_attention_heads, KVH = c.num_key_value_heads, QD = H * D, KD = KVH * D;
    // attention bookkeeping
    std::vector<int64_t> kv_off(size_t(B + 1), 0), att_off(size_t(B + 1), 0);
    double att_total = 0, kv_total = 0;  // in double first: the int64 sums below must not overflow
    for (int64_t b = 0; b < B; ++b) {
      const double lq = double(offsets[b + 1] - offsets[b]);
      const double lk = lq + (prefix ? double(prefix->len[b]) : 0.0);
      att_total += double(H) * lq * lk;
      kv_total += lk * double(KD);
    }
    // The attention probabilities are kept only for training; prefix keys/values are gathered only
    // when scoring.
    if ((keep && att_total > double(limits::kMaxActivationFloats)) ||
        (prefix && kv_total > double(limits::kMaxActivationFloats)))
      return Status::OutOfRange("batch too large: attention over these sequences needs " +
                                std::to_string(int64_t(std::min(att_total, 9.0e18))) +
                                " floats, over the limit of 2^32; split it into smaller batches (or shorter sequences)");
    for (int64_t b = 0; b < B; ++b) {
      const int64_t Lq = offsets[b + 1] - offsets[b];
      const int64_t Lk = Lq + (prefix ? prefix->len[b] : 0);
      kv_off[size_t(b + 1)] = kv_off[size_t(b)] + Lk;
      att_off[size_t(b + 1)] = att_off[size_t(b)] + H * Lq * Lk;
    }
    MEMQ_RETURN_IF_ERROR(a.alloc(N, c, att_off[size_t(B)], lora ? lora->config().r : 0, keep));
    std::vector<float> kfull, vfull;
    if (prefix) {
      kfull.resize(size_t(kv_off[size_t(B)] * KD));
      vfull.resize(size_t(kv_off[size_t(B)] * KD));
    }
    embedding_forward<float>(a.res_at(0), tokens, w.embed, N, C);
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const LayerParams& P = w.layers[size_t(l)];
      float* x = a.res_at(l);
      rmsnorm_forward<float>(a.L1(l), a.R1(l), x, P.input_layernorm, c.rms_norm_eps, N, C);
      if (c.qk_norm()) {  // qwen3: RMSNorm over each head of q and k, before RoPE
        linear(a.QP(l), a.T(l, kLoraQ), a.L1(l), P.q_w, P.q_b, l, kLoraQ, N, C, QD);
        linear(a.KP(l), a.T(l, kLoraK), a.L1(l), P.k_w, P.k_b, l, kLoraK, N, C, KD);
        rmsnorm_forward<float>(a.Q(l), a.QR(l), a.QP(l), P.q_norm, c.rms_norm_eps, N * H, D);
        rmsnorm_forward<float>(a.K(l), a.KR(l), a.KP(l), P.k_norm, c.rms_norm_eps, N * KVH, D);
      } else {
        linear(a.Q(l), a.T(l, kLoraQ), a.L1(l), P.q_w, P.q_b, l, kLoraQ, N, C, QD);
        linear(a.K(l), a.T(l, kLoraK), a.L1(l), P.k_w, P.k_b, l, kLoraK, N, C, KD);
      }
      linear(a.V(l), a.T(l, kLoraV), a.L1(l), P.v_w, P.v_b, l, kLoraV, N, C, KD);
      rope_forward<float>(a.Q(l), a.Q(l), rope.cos.data(), rope.sin.data(), pos, N, H, D);
      rope_forward<float>(a.K(l), a.K(l), rope.cos.data(), rope.sin.data(), pos, N, KVH, D);
      if (cache_k) {
        std::memcpy(cache_k + l * N * KD, a.K(l), sizeof(float) * size_t(N * KD));
        std::memcpy(cache_v + l * N * KD, a.V(l), sizeof(float) * size_t(N * KD));
      }
      const float* kk = a.K(l);
      const float* vv = a.V(l);
      if (prefix) {
        for (int64_t b = 0; b < B; ++b) {
          const int64_t pl = prefix->len[b], lq = offsets[b + 1] - offsets[b];
          const float* pk = prefix->k + (l * prefix->rows + prefix->start[b]) * KD;
          const float* pv = prefix->v + (l * prefix->rows + prefix->start[b]) * KD;
          float* dk = kfull.data() + kv_off[size_t(b)] * KD;
          float* dv = vfull.data() + kv_off[size_t(b)] * KD;
          std::memcpy(dk, pk, sizeof(float) * size_t(pl * KD));
          std::memcpy(dv, pv, sizeof(float) * size_t(pl * KD));
          std::memcpy(dk + pl * KD, a.K(l) + offsets[b] * KD, sizeof(float) * size_t(lq * KD));
          std::memcpy(dv + pl * KD, a.V(l) + offsets[b] * KD, sizeof(float) * size_t(lq * KD));
        }
        kk = kfull.data();
        vv = vfull.data();
      }
      attention_forward<float>(a.ATTY(l), keep ? a.ATT(l) : nullptr, a.Q(l), kk, vv, offsets, kv_off.data(),
                               att_off.data(), B, H, KVH, D);
      linear(a.proj, a.T(l, kLoraO), a.ATTY(l), P.o_w, P.o_b, l, kLoraO, N, QD, C);
      float* mid = a.MID(l);
      for (int64_t i = 0; i < N * C; ++i) mid[i] = x[i] + a.proj[i];
      rmsnorm_forward<float>(a.L2(l), a.R2(l), mid, P.post_attention_layernorm, c.rms_norm_eps, N, C);
      linear(a.G(l), a.T(l, kLoraGate), a.L2(l), P.gate_w, nullptr, l, kLoraGate, N, C, I);
      linear(a.U(l), a.T(l, kLoraUp), a.L2(l), P.up_w, nullptr, l, kLoraUp, N, C, I);
      swiglu_forward<float>(a.A(l), a.G(l), a.U(l), N * I);
      linear(a.proj, a.T(l, kLoraDown), a.A(l), P.down_w, nullptr, l, kLoraDown, N, I, C);
      float* nx = a.res_at(l + 1);
      for (int64_t i = 0; i < N * C; ++i) nx[i] = mid[i] + a.proj[i];
    }
    rmsnorm_forward<float>(a.lnf, a.rstdf, a.res_at(c.num_hidden_layers), w.norm, c.rms_norm_eps, N, C);
    return Status::Ok();
  }

  // Backward from dlnf (d loss / d final-normed hidden) to the LoRA and/or full gradients.
  Status backward(const Acts& a, const float* dlnf, const int32_t* tokens, const int64_t* offsets, int64_t B,
                const int32_t* pos, const RopeTable& rope, float* lora_grad, ParamViews* g, Scratch& scratch) const {
    const int64_t N = offsets[B];
    const int64_t C = c.hidden_size, I = c.intermediate_size, D = c.dim_head();
    const int64_t H = c.num_attention_heads, KVH = c.num_key_value_heads, QD = H * D, KD = KVH * D;
    std::vector<int64_t> att_off(size_t(B + 1), 0);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t Lq = offsets[b + 1] - offsets[b];
      att_off[size_t(b + 1)] = att_off[size_t(b)] + H * Lq * Lq;
    }
    // One scratch allocation, reused across calls. Every buffer is accumulated into, so each is
    // zeroed before its first use below (dres once, the others per layer).
    struct Buf {
      float* p;
      size_t n;
      float* data() const { return p; }
    };
    const size_t NC = size_t(N * C), NI = size_t(N * I), NQ = size_t(N * QD), NK = size_t(N * KD);
    float* base = scratch.get(2 * NC + 3 * NI + 3 * NQ + 5 * NK);
    if (!base) return Status::NoMemory("model: cannot allocate the backward's gradient buffers");
    auto take = [&](size_t n) { Buf b{base, n}; base += n; return b; };
    Buf dres = take(NC), dln = take(NC), dact = take(NI), dgate = take(NI), dup = take(NI), datty = take(NQ),
        dq = take(NQ), dk = take(NK), dv = take(NK), dq2 = take(NQ), dk2 = take(NK);
    auto zero = [](const Buf& x) { std::fill(x.p, x.p + x.n, 0.0f); };
    zero(dres);
    rmsnorm_backward<float>(dres.data(), g ? g->norm : nullptr, dlnf, a.res_at(c.num_hidden_layers), w.norm, a.rstdf,
                            N, C);
    for (int64_t l = c.num_hidden_layers - 1; l >= 0; --l) {
      const LayerParams& P = w.layers[size_t(l)];
      LayerParams* G = g ? &g->layers[size_t(l)] : nullptr;
      // x_{l+1} = mid + down(swiglu(gate(ln2), up(ln2)))
      zero(dact);
      linear_back(dact.data(), G ? G->down_w : nullptr, nullptr, lora_grad, dres.data(), a.A(l), a.T(l, kLoraDown),
                  P.down_w, l, kLoraDown, N, I, C);
      zero(dgate);
      zero(dup);
      swiglu_backward<float>(dgate.data(), dup.data(), dact.data(), a.G(l), a.U(l), N * I);
      zero(dln);
      linear_back(dln.data(), G ? G->gate_w : nullptr, nullptr, lora_grad, dgate.data(), a.L2(l), a.T(l, kLoraGate),
                  P.gate_w, l, kLoraGate, N, C, I);
      linear_back(dln.data(), G ? G->up_w : nullptr, nullptr, lora_grad, dup.data(), a.L2(l), a.T(l, kLoraUp), P.up_w,
                  l, kLoraUp, N, C, I);
      rmsnorm_backward<float>(dres.data(), G ? G->post_attention_layernorm : nullptr, dln.data(), a.MID(l),
                              P.post_attention_layernorm, a.R2(l), N, C);
      // mid = x_l + o(attention(rope(q(ln1)), rope(k(ln1)), v(ln1)))
      zero(datty);
      linear_back(datty.data(), G ? G->o_w : nullptr, G ? G->o_b : nullptr, lora_grad, dres.data(), a.ATTY(l),
                  a.T(l, kLoraO), P.o_w, l, kLoraO, N, QD, C);
      zero(dq);
      zero(dk);
      zero(dv);
      attention_backward<float>(dq.data(), dk.data(), dv.data(), datty.data(), a.Q(l), a.K(l), a.V(l), a.ATT(l),
                                offsets, offsets, att_off.data(), B, H, KVH, D);
      zero(dq2);
      zero(dk2);
      rope_backward<float>(dq2.data(), dq.data(), rope.cos.data(), rope.sin.data(), pos, N, H, D);
      rope_backward<float>(dk2.data(), dk.data(), rope.cos.data(), rope.sin.data(), pos, N, KVH, D);
      float* dqp = dq2.data();
      float* dkp = dk2.data();
      if (c.qk_norm()) {  // through the per-head RMSNorm of q and k (dq, dk reused as outputs)
        zero(dq);
        zero(dk);
        rmsnorm_backward<float>(dq.data(), G ? G->q_norm : nullptr, dq2.data(), a.QP(l), P.q_norm, a.QR(l), N * H, D);
        rmsnorm_backward<float>(dk.data(), G ? G->k_norm : nullptr, dk2.data(), a.KP(l), P.k_norm, a.KR(l), N * KVH, D);
        dqp = dq.data();
        dkp = dk.data();
      }
      zero(dln);
      linear_back(dln.data(), G ? G->q_w : nullptr, G ? G->q_b : nullptr, lora_grad, dqp, a.L1(l), a.T(l, kLoraQ),
                  P.q_w, l, kLoraQ, N, C, QD);
      linear_back(dln.data(), G ? G->k_w : nullptr, G ? G->k_b : nullptr, lora_grad, dkp, a.L1(l), a.T(l, kLoraK),
                  P.k_w, l, kLoraK, N, C, KD);
      linear_back(dln.data(), G ? G->v_w : nullptr, G ? G->v_b : nullptr, lora_grad, dv.data(), a.L1(l),
                  a.T(l, kLoraV), P.v_w, l, kLoraV, N, C, KD);
      rmsnorm_backward<float>(dres.data(), G ? G->input_layernorm : nullptr, dln.data(), a.res_at(l),
                              P.input_layernorm, a.R1(l), N, C);
    }
    if (g) embedding_backward<float>(g->embed, dres.data(), tokens, N, C);
    return Status::Ok();
  }

  // nll[m] for hidden rows `rows[m]` of `hidden` predicting `targets[m]`, computed in chunks
  // so at most ~4M logits exist at once. With dnll (and dhidden) also the backward:
  // dhidden[rows[m]] += dnll[m] * d nll / d hidden, dlm_head += ... (nullable).
  Status head(float* nll, const float* hidden, const int64_t* rows, const int32_t* targets, int64_t M,
            const float* dnll, float* dhidden, float* dlm_head, Scratch* scratch = nullptr) const {
    const int64_t C = c.hidden_size, V = c.vocab_size;
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(M, (int64_t(1) << 22) / V));
    // h and logits are overwritten per chunk, dh zeroed per chunk (accumulated into).
    Scratch local;
    Scratch& sc = scratch ? *scratch : local;
    float* base = sc.get(size_t(chunk * (2 * C + V)));
    if (!base) return Status::NoMemory("model: cannot allocate the LM head's logits");
    struct View {
      float* p;
      size_t n;
      float* data() const { return p; }
      float* begin() const { return p; }
      float* end() const { return p + n; }
      float& operator[](size_t i) const { return p[i]; }
    };
    View h{base, size_t(chunk * C)}, logits{base + chunk * C, size_t(chunk * V)}, dh{base + chunk * (C + V), size_t(chunk * C)};
    for (int64_t m0 = 0; m0 < M; m0 += chunk) {
      const int64_t mc = std::min(chunk, M - m0);
      for (int64_t i = 0; i < mc; ++i)
        std::memcpy(h.data() + i * C, hidden + rows[m0 + i] * C, sizeof(float) * size_t(C));
      matmul_forward<float>(logits.data(), h.data(), w.lm_head, nullptr, mc, C, V);
      crossentropy_forward<float>(nll + m0, logits.data(), targets + m0, mc, V);
      if (dnll) {
        crossentropy_backward<float>(logits.data(), logits.data(), targets + m0, dnll + m0, mc, V);
        std::fill(dh.begin(), dh.end(), 0.0f);
        matmul_backward<float>(dhidden ? dh.data() : nullptr, dlm_head, nullptr, logits.data(), h.data(), w.lm_head, mc,
                               C, V);
        if (dhidden)
          for (int64_t i = 0; i < mc; ++i) {
            float* d = dhidden + rows[m0 + i] * C;
            for (int64_t cc = 0; cc < C; ++cc) d[cc] += dh[size_t(i * C + cc)];
          }
      }
    }
    return Status::Ok();
  }
};

struct Model::TrainWorkspace {
  std::mutex mu;
  Acts acts;
  Scratch back, head, dlnf;
};

namespace {

using detail::positions_for;

// Positions, RoPE table and the forward pass of a packed batch: the shared prologue of
// logits, token_logprobs, embed_mean and forward_backward (keep: activations for backward).
struct BatchForward {
  std::vector<int32_t> pos;
  RopeTable rope;
  Acts a;
};
Status forward_batch(ModelRunner& run, const ModelConfig& cfg, const TokenBatch& batch, bool keep, BatchForward* f) {
  int64_t max_pos = 0;
  positions_for(&f->pos, batch.offsets, batch.n_seqs, nullptr, &max_pos);
  f->rope.build(max_pos, cfg.dim_head(), cfg.rope_theta);
  return run.forward(f->a, batch.tokens, batch.offsets, batch.n_seqs, f->pos.data(), f->rope, nullptr, nullptr,
                     nullptr, keep);
}

}  // namespace

Status Model::logits(float* out, const TokenBatch& batch, const LoraAdapter* lora) const {
  if (engine_) return engine_->logits(out, batch, lora);
  MEMQ_RETURN_IF_ERROR(validate_batch(batch.tokens, batch.offsets, batch.n_seqs, cfg_.vocab_size, "logits"));
  ModelRunner run(*this, lora);
  MEMQ_RETURN_IF_ERROR(run.check_lora());
  BatchForward f;
  MEMQ_RETURN_IF_ERROR(forward_batch(run, cfg_, batch, false, &f));
  const Acts& a = f.a;
  matmul_forward<float>(out, a.lnf, w_.lm_head, nullptr, batch.offsets[batch.n_seqs], cfg_.hidden_size, cfg_.vocab_size);
  return Status::Ok();
}

Status Model::token_logprobs(float* out, const TokenBatch& batch, const LoraAdapter* lora) const {
  if (engine_) return engine_->token_logprobs(out, batch, lora);
  MEMQ_RETURN_IF_ERROR(validate_batch(batch.tokens, batch.offsets, batch.n_seqs, cfg_.vocab_size, "token_logprobs"));
  ModelRunner run(*this, lora);
  MEMQ_RETURN_IF_ERROR(run.check_lora());
  const int64_t N = batch.offsets[batch.n_seqs];
  BatchForward f;
  MEMQ_RETURN_IF_ERROR(forward_batch(run, cfg_, batch, false, &f));
  const Acts& a = f.a;
  std::vector<int64_t> rows;
  std::vector<int32_t> targets;
  std::vector<int64_t> where;
  for (int64_t b = 0; b < batch.n_seqs; ++b)
    for (int64_t t = batch.offsets[b] + 1; t < batch.offsets[b + 1]; ++t) {
      rows.push_back(t - 1);
      targets.push_back(batch.tokens[t]);
      where.push_back(t);
    }
  std::vector<float> nll(rows.size());
  MEMQ_RETURN_IF_ERROR(
      run.head(nll.data(), a.lnf, rows.data(), targets.data(), int64_t(rows.size()), nullptr, nullptr, nullptr));
  std::fill(out, out + N, 0.0f);
  for (size_t i = 0; i < rows.size(); ++i) out[where[i]] = -nll[i];
  return Status::Ok();
}

Status Model::embed_mean(float* out, const TokenBatch& batch, const LoraAdapter* lora) const {
  if (engine_) return engine_->embed_mean(out, batch, lora);
  MEMQ_RETURN_IF_ERROR(validate_batch(batch.tokens, batch.offsets, batch.n_seqs, cfg_.vocab_size, "embed_mean"));
  ModelRunner run(*this, lora);
  MEMQ_RETURN_IF_ERROR(run.check_lora());
  BatchForward f;
  MEMQ_RETURN_IF_ERROR(forward_batch(run, cfg_, batch, false, &f));
  const Acts& a = f.a;
  const int64_t C = cfg_.hidden_size;
  for (int64_t b = 0; b < batch.n_seqs; ++b) {
    const int64_t n = batch.offsets[b + 1] - batch.offsets[b];
    for (int64_t cc = 0; cc < C; ++cc) {
      double s = 0.0;
      for (int64_t t = batch.offsets[b]; t < batch.offsets[b + 1]; ++t) s += a.lnf[t * C + cc];
      out[b * C + cc] = n > 0 ? float(s / double(n)) : 0.0f;
    }
  }
  return Status::Ok();
}

Status Model::score(float* scores, float* token_logprobs_out, const ScoreRequest& r, const LoraAdapter* lora) const {
  if (engine_) return engine_->score(scores, token_logprobs_out, r, lora);
  MEMQ_RETURN_IF_ERROR(detail::validate_score_request(r, cfg_.vocab_size));
  ModelRunner run(*this, lora);
  MEMQ_RETURN_IF_ERROR(run.check_lora());
  const int64_t L = cfg_.num_hidden_layers, C = cfg_.hidden_size;
  const int64_t KD = cfg_.num_key_value_heads * cfg_.dim_head();
  const int64_t NP = r.prompt_offsets[r.n_prompts];
  // pass 1: prompts, keeping their keys/values
  std::vector<int32_t> ppos;
  int64_t max_pos = 0;
  positions_for(&ppos, r.prompt_offsets, r.n_prompts, nullptr, &max_pos);
  std::vector<int64_t> cand_prompt(size_t(r.n_cands)), pstart(size_t(r.n_cands)), plen(size_t(r.n_cands));
  for (int64_t b = 0; b < r.n_prompts; ++b)
    for (int64_t k = r.cand_groups[b]; k < r.cand_groups[b + 1]; ++k) {
      cand_prompt[size_t(k)] = b;
      pstart[size_t(k)] = r.prompt_offsets[b];
      plen[size_t(k)] = r.prompt_offsets[b + 1] - r.prompt_offsets[b];
    }
  std::vector<int32_t> cpos;
  int64_t max_pos2 = 0;
  positions_for(&cpos, r.cand_offsets, r.n_cands, plen.data(), &max_pos2);
  RopeTable rope;
  rope.build(std::max(max_pos, max_pos2), cfg_.dim_head(), cfg_.rope_theta);
  if (double(L) * double(NP) * double(KD) > double(limits::kMaxActivationFloats))
    return Status::OutOfRange("score: the prompts' key/value cache (" + std::to_string(NP) +
                              " tokens) is over the limit of 2^32 floats; split the request");
  std::vector<float> cache_k(size_t(L * NP * KD)), cache_v(size_t(L * NP * KD)), last_hidden(size_t(r.n_prompts * C));
  {
    Acts a;
    MEMQ_RETURN_IF_ERROR(run.forward(a, r.prompt_tokens, r.prompt_offsets, r.n_prompts, ppos.data(), rope, nullptr,
                                     cache_k.data(), cache_v.data(), false));
    for (int64_t b = 0; b < r.n_prompts; ++b)
      std::memcpy(last_hidden.data() + b * C, a.lnf + (r.prompt_offsets[b + 1] - 1) * C, sizeof(float) * size_t(C));
  }
  // pass 2: every candidate continues its prompt's cached keys/values
  const int64_t NC = r.cand_offsets[r.n_cands];
  Acts a;
  Prefix prefix;
  prefix.k = cache_k.data();
  prefix.v = cache_v.data();
  prefix.rows = NP;
  prefix.start = pstart.data();
  prefix.len = plen.data();
  if (NC > 0)
    MEMQ_RETURN_IF_ERROR(run.forward(a, r.cand_tokens, r.cand_offsets, r.n_cands, cpos.data(), rope, &prefix, nullptr,
                                     nullptr, false));
  // hidden rows predicting each candidate token: [prompt last hidden, cand hidden 0..L-2]
  std::vector<float> hidden(size_t((r.n_prompts + NC) * C));
  std::memcpy(hidden.data(), last_hidden.data(), sizeof(float) * size_t(r.n_prompts * C));
  if (NC > 0) std::memcpy(hidden.data() + r.n_prompts * C, a.lnf, sizeof(float) * size_t(NC * C));
  std::vector<int64_t> rows(static_cast<size_t>(NC));
  for (int64_t k = 0; k < r.n_cands; ++k)
    for (int64_t t = r.cand_offsets[k]; t < r.cand_offsets[k + 1]; ++t)
      rows[size_t(t)] = t == r.cand_offsets[k] ? cand_prompt[size_t(k)] : r.n_prompts + t - 1;
  std::vector<float> nll(static_cast<size_t>(NC));
  MEMQ_RETURN_IF_ERROR(run.head(nll.data(), hidden.data(), rows.data(), r.cand_tokens, NC, nullptr, nullptr, nullptr));
  for (int64_t k = 0; k < r.n_cands; ++k) {
    double s = 0.0;
    for (int64_t t = r.cand_offsets[k]; t < r.cand_offsets[k + 1]; ++t) {
      s -= nll[size_t(t)];
      if (token_logprobs_out) token_logprobs_out[t] = -nll[size_t(t)];
    }
    const int64_t n = r.cand_offsets[k + 1] - r.cand_offsets[k];
    scores[k] = float(r.length_normalize && n > 0 ? s / double(n) : s);
  }
  return Status::Ok();
}

Status Model::forward_backward(const TokenBatch& batch, LossNorm norm, const LoraAdapter* lora, float* lora_grad,
                               float* full_grad, float grad_scale, double* loss_out, double* weight_sum_out) const {
  if (engine_)
    return engine_->forward_backward(batch, norm, lora, lora_grad, full_grad, false, grad_scale, loss_out, weight_sum_out);
  MEMQ_RETURN_IF_ERROR(validate_batch(batch.tokens, batch.offsets, batch.n_seqs, cfg_.vocab_size, "train batch"));
  if (!batch.weights) return Status::Invalid("train batch: null weights");
  ModelRunner run(*this, lora);
  MEMQ_RETURN_IF_ERROR(run.check_lora());
  const int64_t N = batch.offsets[batch.n_seqs], C = cfg_.hidden_size;
  detail::LossRows lr;
  MEMQ_RETURN_IF_ERROR(detail::loss_rows(batch, norm, cfg_.vocab_size, &lr));
  const std::vector<int64_t>& rows = lr.rows;
  const std::vector<int32_t>& targets = lr.targets;
  const std::vector<float>& wts = lr.wts;
  const double wsum = lr.wsum;
  if (weight_sum_out) *weight_sum_out = wsum;
  const double denom = (norm == LossNorm::kWeightSum && wsum > 0) ? wsum : 1.0;
  // The activation, gradient and head buffers: the model's workspace (kept across steps) unless
  // another call holds it, then buffers of this call's own.
  TrainWorkspace local;
  std::unique_lock<std::mutex> held;
  TrainWorkspace* ws = &local;
  if (ws_) {
    held = std::unique_lock<std::mutex>(ws_->mu, std::try_to_lock);
    if (held.owns_lock()) ws = ws_.get();
  }
  std::vector<int32_t> pos;
  int64_t max_pos = 0;
  positions_for(&pos, batch.offsets, batch.n_seqs, nullptr, &max_pos);
  RopeTable rope;
  rope.build(max_pos, cfg_.dim_head(), cfg_.rope_theta);
  Acts& a = ws->acts;
  MEMQ_RETURN_IF_ERROR(
      run.forward(a, batch.tokens, batch.offsets, batch.n_seqs, pos.data(), rope, nullptr, nullptr, nullptr, true));
  const int64_t M = int64_t(rows.size());
  std::vector<float> nll(static_cast<size_t>(M)), dnll(static_cast<size_t>(M));
  for (int64_t i = 0; i < M; ++i) dnll[size_t(i)] = float(double(wts[size_t(i)]) / denom * double(grad_scale));
  float* dlnf = ws->dlnf.get(size_t(N * C));  // accumulated into by head: zeroed
  if (!dlnf) return Status::NoMemory("model: cannot allocate the final hidden gradient");
  std::fill(dlnf, dlnf + N * C, 0.0f);
  ParamViews g;
  if (full_grad) g = bind_params(cfg_, full_grad);
  MEMQ_RETURN_IF_ERROR(run.head(nll.data(), a.lnf, rows.data(), targets.data(), M, dnll.data(), dlnf,
                                full_grad ? g.lm_head : nullptr, &ws->head));
  double loss = 0.0;
  for (int64_t i = 0; i < M; ++i) loss += double(wts[size_t(i)]) * double(nll[size_t(i)]);
  if (loss_out) *loss_out = loss / denom;
  if (M > 0 && (lora_grad || full_grad))
    MEMQ_RETURN_IF_ERROR(run.backward(a, dlnf, batch.tokens, batch.offsets, batch.n_seqs, pos.data(), rope, lora_grad,
                                      full_grad ? &g : nullptr, ws->back));
  return Status::Ok();
}

std::unique_ptr<Model::TrainWorkspace> Model::new_train_workspace() { return std::make_unique<TrainWorkspace>(); }

Model::~Model() = default;

}  // namespace llm
}  // namespace memq
