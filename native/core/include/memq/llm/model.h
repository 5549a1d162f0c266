// Llama / Qwen2 decoder-only transformer, fp32 CPU reference (llm.c style).
//
// Batches are packed ragged sequences: a flat int32 token buffer plus int64 offsets[B+1]
// (sequence b = tokens[offsets[b] .. offsets[b+1])), no padding, so a thin N-API layer passes
// typed arrays straight through. Inference methods are const and allocate their activations
// per call, so several may run at once on one Model; training (forward_backward) writes only
// to the gradient buffers it is given.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "memq/json.h"
#include "memq/status.h"

namespace memq {
namespace llm {

class LoraAdapter;
class DeviceEngine;
struct LlmDeviceOptions;
struct LlmDeviceChoice;
enum class LlmDevice : int;

struct ModelConfig {
  // "qwen2" (q/k/v biases) | "llama" (attention_bias: q/k/v/o biases) | "qwen3" (per-head
  // RMSNorm of q and k before RoPE, attention_bias as llama)
  std::string model_type = "qwen2";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // 0 = hidden_size / num_attention_heads
  int64_t max_position_embeddings = 32768;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // llama/qwen3; qwen2 always has q/k/v biases and no o bias
  int64_t bos_token_id = -1;    // -1 = absent
  int64_t eos_token_id = -1;

  int64_t dim_head() const { return head_dim > 0 ? head_dim : hidden_size / num_attention_heads; }
  bool qkv_bias() const { return model_type == "qwen2" || attention_bias; }
  bool o_bias() const { return model_type != "qwen2" && attention_bias; }
  bool qk_norm() const { return model_type == "qwen3"; }

  // Range checks, incl. limits.h (num_hidden_layers <= kMaxLayers, param_count() <= kMaxParams).
  Status validate() const;
  // Parameters of the layout param_layout() builds, computed in double (never overflows).
  double param_count() const;
  // HF config.json <-> config. `where` names the file in errors.
  static Status from_json(const Json& j, const std::string& where, ModelConfig* out);
  Json to_json() const;
};

// Views into the single parameter allocation (also used for full-model gradients).
struct LayerParams {
  float* input_layernorm = nullptr;  // [C]
  float* q_w = nullptr;              // [H*D, C]
  float* q_b = nullptr;              // [H*D] or null
  float* q_norm = nullptr;           // [D] (qwen3) or null
  float* k_norm = nullptr;           // [D] (qwen3) or null
  float* k_w = nullptr;              // [KV*D, C]
  float* k_b = nullptr;
  float* v_w = nullptr;              // [KV*D, C]
  float* v_b = nullptr;
  float* o_w = nullptr;              // [C, H*D]
  float* o_b = nullptr;              // [C] or null
  float* post_attention_layernorm = nullptr;  // [C]
  float* gate_w = nullptr;           // [I, C]
  float* up_w = nullptr;             // [I, C]
  float* down_w = nullptr;           // [C, I]
};

struct ParamViews {
  float* embed = nullptr;  // [V, C]
  std::vector<LayerParams> layers;
  float* norm = nullptr;     // [C]
  float* lm_head = nullptr;  // [V, C]; == embed when tied
};

// One named tensor of the layout: HF name, shape, offset into the flat buffer.
struct ParamTensor {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;
  int64_t numel() const {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    return n;
  }
};

// The HF tensor names and shapes of a config, in file order, and their total size.
std::vector<ParamTensor> param_layout(const ModelConfig& cfg, int64_t* total);
ParamViews bind_params(const ModelConfig& cfg, float* base);

// A training batch: packed sequences + per-token loss weights (MATH §11). weights[t] weighs
// -log p(tokens[t] | tokens[offsets[b]..t)); the first token of each sequence has no
// prediction and must have weight 0; prompt tokens have weight 0.
struct TokenBatch {
  const int32_t* tokens = nullptr;
  const int64_t* offsets = nullptr;  // [n_seqs + 1], offsets[0] == 0
  int64_t n_seqs = 0;
  const float* weights = nullptr;    // [offsets[n_seqs]] (training only)
};

enum class LossNorm : int {
  kSum = 0,        // L = sum_t w_t nll_t
  kWeightSum = 1,  // L = sum_t w_t nll_t / sum_t w_t   (default)
};

// Scoring request: B prompts, each with its candidates (K_b continuations).
struct ScoreRequest {
  const int32_t* prompt_tokens = nullptr;
  const int64_t* prompt_offsets = nullptr;  // [n_prompts + 1]; every prompt non-empty
  int64_t n_prompts = 0;
  const int32_t* cand_tokens = nullptr;
  const int64_t* cand_offsets = nullptr;    // [n_cands + 1]
  const int64_t* cand_groups = nullptr;     // [n_prompts + 1]: prompt b owns candidates cand_groups[b]..cand_groups[b+1]
  int64_t n_cands = 0;
  bool length_normalize = false;            // divide each sum by the candidate's token count
};

class Model {
 public:
  // Loads an HF model directory: config.json + model.safetensors or the shards listed in
  // model.safetensors.index.json; F32/F16/BF16 converted to float32.
  static Status load(const std::string& dir, std::unique_ptr<Model>* out);
  // Random init: normal(0, init_std) matrices and embeddings, zero biases, unit norms.
  static Status create_random(const ModelConfig& cfg, uint64_t seed, float init_std, std::unique_ptr<Model>* out);
  // Every weight zero, norms included: for callers that fill param_data() themselves (the GPU
  // benchmark fills billions of weights in parallel, which create_random does one at a time).
  static Status create_zeros(const ModelConfig& cfg, std::unique_ptr<Model>* out);
  // A deep copy (e.g. to merge an adapter into while keeping the base model), placed on the same
  // device as this model (with the same options).
  Status clone(std::unique_ptr<Model>* out) const;
  ~Model();

  // Device placement (memq/llm/device.h). "cpu" drops the device copy; "cuda" makes one (an error
  // says why when no device is usable, or when the weights do not fit its free memory; the model
  // is then unchanged); "auto" uses CUDA when it is usable and the CPU otherwise. The float32
  // host weights stay the master. Not safe while other calls on this model are in flight.
  Status set_device(const LlmDeviceOptions& opts, LlmDeviceChoice* choice = nullptr);
  LlmDevice device() const;
  // The device engine (null on the CPU).
  DeviceEngine* engine() const { return engine_.get(); }
  // Unique across the process for each device copy made (0 on the CPU): trainers remember it to
  // notice that the model was moved.
  uint64_t placement() const { return placement_; }
  // Why the model is where it is (the LlmDeviceChoice reason; "cpu: default" before set_device).
  const std::string& device_reason() const { return device_reason_; }
  // After host weights were changed in place (param_data(), mutable_weights(), merge_lora):
  // copies them to the device again. Ok and nothing to do on the CPU.
  Status sync_device();
  // Writes config.json + model.safetensors (F32, or BF16 when bf16) in HF layout.
  Status save(const std::string& dir, bool bf16 = false) const;

  const ModelConfig& config() const { return cfg_; }
  const ParamViews& weights() const { return w_; }
  ParamViews& mutable_weights() { return w_; }
  const std::vector<ParamTensor>& layout() const { return layout_; }
  float* param_data() { return params_.data(); }
  const float* param_data() const { return params_.data(); }
  int64_t num_params() const { return int64_t(params_.size()); }
  // Pointer to the named HF tensor (null when absent); shape written when non-null.
  float* find_param(const std::string& name, std::vector<int64_t>* shape = nullptr);

  // Forward FLOPs per token (2 per multiply-add of the matmuls + attention at context `ctx`).
  double forward_flops_per_token(int64_t ctx) const;

  // logits [N, V] for every token of the batch.
  Status logits(float* out, const TokenBatch& batch, const LoraAdapter* lora = nullptr) const;
  // out[t] = log p(tokens[t] | earlier tokens of its sequence); 0 for each sequence's first token.
  Status token_logprobs(float* out, const TokenBatch& batch, const LoraAdapter* lora = nullptr) const;
  // scores[c] = sum_t log p(cand_t | prompt, cand_<t) (length-normalised when asked). The prompt
  // is run once and its K/V reused for every candidate. token_logprobs_out (nullable) gets
  // the per-token terms, laid out like cand_tokens.
  Status score(float* scores, float* token_logprobs_out, const ScoreRequest& req,
               const LoraAdapter* lora = nullptr) const;
  // Mean over each sequence's tokens of the last hidden state (after the final norm): [B, C].
  Status embed_mean(float* out, const TokenBatch& batch, const LoraAdapter* lora = nullptr) const;

  // Weighted cross-entropy (MATH §11) and its gradient. lora_grad (adapter-sized, nullable)
  // accumulates dL/d(A,B); full_grad (num_params(), nullable) accumulates dL/d(all weights).
  // `grad_scale` multiplies the gradient (e.g. 1/accumulation steps); loss_out gets L.
  Status forward_backward(const TokenBatch& batch, LossNorm norm, const LoraAdapter* lora, float* lora_grad,
                          float* full_grad, float grad_scale, double* loss_out, double* weight_sum_out = nullptr) const;

 private:
  ModelConfig cfg_;
  std::vector<ParamTensor> layout_;
  std::vector<float> params_;
  ParamViews w_;
  std::unique_ptr<DeviceEngine> engine_;
  // forward_backward's activation, gradient and head buffers, kept across calls (grown when a
  // batch needs more, never zero-filled where every element is written before it is read).
  // One caller at a time uses it; a concurrent caller gets fresh buffers. Freed with the model.
  struct TrainWorkspace;
  mutable std::unique_ptr<TrainWorkspace> ws_;
  static std::unique_ptr<TrainWorkspace> new_train_workspace();
  uint64_t placement_ = 0;
  std::string device_reason_ = "cpu: default";
  Status init_storage(const ModelConfig& cfg);
  friend struct ModelRunner;
};

// Checks a packed batch (offsets monotone, tokens in [0, vocab)); `what` names it in errors.
Status validate_batch(const int32_t* tokens, const int64_t* offsets, int64_t n_seqs, int64_t vocab,
                      const std::string& what);

// Deterministic RNG used for every random init (same numbers on every platform).
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed ? seed : 0x9E3779B97F4A7C15ull) {}
  uint64_t next() {  // splitmix64
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
  double normal();

 private:
  uint64_t s_;
};

}  // namespace llm
}  // namespace memq
