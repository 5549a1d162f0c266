// Internal: the host-side pieces shared by the CPU engine (model.cpp) and the device engines
// (native/core/llm/cuda): validation of requests, positions, the RoPE table, the rows of the
// weighted loss. One implementation, so that both engines accept, refuse and prepare exactly the
// same inputs. Not a public header.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "memq/llm/device.h"
#include "memq/llm/lora.h"
#include "memq/llm/model.h"
#include "memq/status.h"

namespace memq {
namespace llm {
namespace detail {

// A process-wide increasing stamp (> 0): adapter versions, device placements.
uint64_t next_stamp();

// Tests only: when on, every float scratch buffer the CPU engine hands out (activations, backward
// gradients, LM-head chunks; reused across calls or fresh) is first filled with NaN, so that a
// read of an element not written in the current call shows up in the results. Off by default.
void set_scratch_poison(bool on);
bool scratch_poison();


// pos[i] = start_at[b] + (i - offsets[b]) for the tokens of sequence b; *max_pos = the largest
// position + 1 (at least 1).
inline void positions_for(std::vector<int32_t>* pos, const int64_t* offsets, int64_t B, const int64_t* start_at,
                          int64_t* max_pos) {
  pos->resize(size_t(offsets[B]));
  int64_t mx = 1;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t s = start_at ? start_at[b] : 0;
    for (int64_t i = offsets[b]; i < offsets[b + 1]; ++i) (*pos)[size_t(i)] = int32_t(s + i - offsets[b]);
    mx = std::max(mx, s + offsets[b + 1] - offsets[b]);
  }
  *max_pos = mx;
}

// cos/sin tables [max_pos, D/2], as HF computes them: inv_freq = 1 / theta^(2i/D) in float32,
// angle = pos * inv_freq in float32.
struct RopeTable {
  std::vector<float> cos, sin;
  void build(int64_t max_pos, int64_t D, double theta) {
    const int64_t half = D / 2;
    cos.resize(size_t(max_pos * half));
    sin.resize(size_t(max_pos * half));
    for (int64_t i = 0; i < half; ++i) {
      const float inv = 1.0f / std::pow(float(theta), float(2 * i) / float(D));
      for (int64_t p = 0; p < max_pos; ++p) {
        const float a = float(p) * inv;
        cos[size_t(p * half + i)] = std::cos(a);
        sin[size_t(p * half + i)] = std::sin(a);
      }
    }
  }
};

// Input and output widths of a LoRA-targetable projection.
inline void linear_dims(const ModelConfig& c, LoraTarget t, int64_t* in, int64_t* out) {
  const int64_t C = c.hidden_size, I = c.intermediate_size, D = c.dim_head();
  const int64_t QD = c.num_attention_heads * D, KD = c.num_key_value_heads * D;
  switch (t) {
    case kLoraQ: *in = C; *out = QD; break;
    case kLoraK: case kLoraV: *in = C; *out = KD; break;
    case kLoraO: *in = QD; *out = C; break;
    case kLoraGate: case kLoraUp: *in = C; *out = I; break;
    default: *in = I; *out = C; break;
  }
}

// Ok for no adapter, or one with the model's layer count and projection shapes.
inline Status check_lora(const ModelConfig& c, const LoraAdapter* lora) {
  if (!lora) return Status::Ok();
  if (lora->num_layers() != c.num_hidden_layers) return Status::Invalid("lora: adapter layer count differs from the model's");
  for (int t = 0; t < kLoraNumTargets; ++t) {
    if (!lora->targets(LoraTarget(t))) continue;
    const LoraModule& mod = lora->module(0, LoraTarget(t));
    int64_t in = 0, out = 0;
    linear_dims(c, LoraTarget(t), &in, &out);
    if (mod.in != in || mod.out != out) return Status::Invalid("lora: adapter shapes do not match the model");
  }
  return Status::Ok();
}

// The checks of Model::score.
inline Status validate_score_request(const ScoreRequest& r, int64_t vocab) {
  MEMQ_RETURN_IF_ERROR(validate_batch(r.prompt_tokens, r.prompt_offsets, r.n_prompts, vocab, "score prompts"));
  MEMQ_RETURN_IF_ERROR(validate_batch(r.cand_tokens, r.cand_offsets, r.n_cands, vocab, "score candidates"));
  if (!r.cand_groups || r.cand_groups[0] != 0 || r.cand_groups[r.n_prompts] != r.n_cands)
    return Status::Invalid("score: cand_groups must start at 0 and end at n_cands");
  for (int64_t b = 0; b < r.n_prompts; ++b) {
    if (r.cand_groups[b + 1] < r.cand_groups[b]) return Status::OutOfRange("score: cand_groups must be non-decreasing");
    if (r.prompt_offsets[b + 1] == r.prompt_offsets[b]) return Status::OutOfRange("score: prompt " + std::to_string(b) + " is empty");
  }
  return Status::Ok();
}

// The weighted-loss terms of a training batch (MATH §11): for every token t with weight != 0,
// the hidden row t - 1 predicts tokens[t] with weight w_t. Checks the batch and the weights as
// Model::forward_backward documents.
struct LossRows {
  std::vector<int64_t> rows;
  std::vector<int32_t> targets;
  std::vector<float> wts;
  double wsum = 0.0;
};
inline Status loss_rows(const TokenBatch& batch, LossNorm norm, int64_t vocab, LossRows* out) {
  MEMQ_RETURN_IF_ERROR(validate_batch(batch.tokens, batch.offsets, batch.n_seqs, vocab, "train batch"));
  if (!batch.weights) return Status::Invalid("train batch: null weights");
  LossRows r;
  for (int64_t b = 0; b < batch.n_seqs; ++b) {
    for (int64_t t = batch.offsets[b]; t < batch.offsets[b + 1]; ++t) {
      const float wt = batch.weights[t];
      // Signed weights are allowed with LossNorm::kSum (the loss is then any linear functional of
      // the token NLLs, e.g. the listwise KL gradient of Mem-EM); kWeightSum divides by sum w and
      // needs w >= 0.
      if (!std::isfinite(wt) || (wt < 0.0f && norm != LossNorm::kSum))
        return Status::OutOfRange("train batch: weight " + std::to_string(t) + " must be finite" +
                               (norm == LossNorm::kSum ? "" : " and >= 0 (negative weights need LossNorm::kSum)"));
      if (wt == 0.0f) continue;
      if (t == batch.offsets[b])
        return Status::OutOfRange("train batch: the first token of sequence " + std::to_string(b) +
                               " has no prediction; its weight must be 0");
      r.rows.push_back(t - 1);
      r.targets.push_back(batch.tokens[t]);
      r.wts.push_back(wt);
      r.wsum += wt;
    }
  }
  *out = std::move(r);
  return Status::Ok();
}

// The device counterpart of accumulated_adamw_step (lora.h), with the same semantics: step()
// without accumulate() is Invalid; a non-finite norm skips the step (gradient, micro and
// loss_sum reset) with an Internal error naming `who`; else the step updates host_params (through
// the device) and t, fills out, and resets the gradient, micro and loss_sum.
Status device_adamw_step(const char* who, DeviceOptimizer* dev, float* host_params, int64_t& t, int64_t& micro,
                         double& loss_sum, double clip_norm, const AdamWOptions& adamw, StepStats* out);

// {m, v, t} of a device optimizer of n parameters (downloaded).
Status device_get_state(DeviceOptimizer* dev, int64_t n, int64_t t, TrainerState* out);

}  // namespace detail
}  // namespace llm
}  // namespace memq
