// The CUDA transformer engine (memq/llm/device.h: create_cuda_engine): the device twin of
// model.cpp's ModelRunner, written against memq/llm/cuda_ops.h (host code, compiled by the host
// compiler; the kernels live in the .cu files of this directory). Only in builds with
// MEMQ_HAVE_CUDA; device_select.cpp has the stub otherwise.
//
// Structure (mirrors model.cpp line by line, so that the two can be read side by side):
//   * weights: one device copy in the host layout, bf16 (matrices; the 1-D tensors, norms and
//     biases, again packed in float32) or float32 (LlmPrecision);
//   * requests are validated on the host with the CPU engine's own checks (engine_common.h)
//     before the device is touched; token ids, offsets, positions, rows are uploaded once;
//   * forward(): embedding, per layer RMSNorm, q/k/v (+ LoRA, + qwen3 q/k norms), RoPE, attention
//     (keys/values of a scored prompt gathered in front of the candidates'), o, residual, RMSNorm,
//     gate/up (+ LoRA), SwiGLU, down (+ LoRA), residual; final RMSNorm;
//   * head(): the LM head and the weighted cross-entropy (MATH §11) in chunks of rows, so at most
//     logits_chunk_bytes of logits exist at once (never B x T x V);
//   * backward(): the reverse, into device LoRA gradients and/or full gradients (host layout).
// Scratch buffers grow and are kept (device_bytes() reports them); calls are serialised by mu_.
#ifdef MEMQ_HAVE_CUDA

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "../engine_common.h"
#include "memq/cuda/cuda_backend.h"
#include "memq/llm/cuda_ops.h"
#include "memq/llm/device.h"
#include "memq/llm/safetensors.h"

namespace memq {
namespace llm {

namespace {

namespace dev = ::memq::llm::cuda;
using dev::Buffer;
using dev::GemmPrecision;
using dev::GemmWorkspace;
using dev::WeightRef;

std::string mib(double bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024.0));
  return buf;
}

// Offsets of several arrays carved out of one buffer (256-byte aligned).
struct Carve {
  size_t off = 0;
  template <class T>
  size_t add(int64_t n) {
    const size_t o = (off + 255) / 256 * 256;
    off = o + size_t(std::max<int64_t>(n, 0)) * sizeof(T);
    return o;
  }
};
template <class T>
T* at(const Buffer& b, size_t off) {
  return reinterpret_cast<T*>(b.as<char>() + off);
}

struct DevLayer {
  WeightRef q_w, k_w, v_w, o_w, gate_w, up_w, down_w;
  const float *ln1 = nullptr, *q_b = nullptr, *q_norm = nullptr, *k_norm = nullptr, *k_b = nullptr, *v_b = nullptr,
              *o_b = nullptr, *ln2 = nullptr;
};
struct DevWeights {
  WeightRef embed, lm_head;
  const float* norm = nullptr;
  std::vector<DevLayer> layers;
};

// The LoRA matrices of one pass on the device.
struct DevLora {
  const float* base = nullptr;  // device copy of the adapter's params
  const LoraAdapter* host = nullptr;
  double scale = 0.0;
  int64_t r = 0;
  bool on(int64_t l, LoraTarget t) const { return host && host->targets(t) && l >= 0; }
  const float* A(int64_t l, LoraTarget t) const { return base + host->module(l, t).a_offset; }
  const float* B(int64_t l, LoraTarget t) const { return base + host->module(l, t).b_offset; }
};

// Activations of one pass (device), as model.cpp's Acts; att always exists (one layer of scratch
// when not keeping activations).
struct DevActs {
  int64_t N = 0, L = 0, C = 0, I = 0, QD = 0, KD = 0, S = 0, R = 0, D = 1;
  bool keep = false;
  float *resid, *ln1, *rstd1, *q, *k, *v, *att, *atty, *resid_mid, *ln2, *rstd2, *gate, *up, *act, *lora_t;
  float *proj, *lnf, *rstdf, *qpre, *kpre, *qr, *kr;
  int64_t ls(int64_t per) const { return keep ? per : 0; }
  float* res_at(int64_t l) const { return resid + (keep ? l * N * C : 0); }
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
};

// Per-pass geometry on the host and its device copy.
struct PassGeom {
  int64_t B = 0, N = 0, max_lq = 0, max_lk = 0, kv_rows = 0, att_size = 0;
  std::vector<int64_t> kv_off, att_off;
  const int32_t* d_tokens = nullptr;
  const int64_t* d_offsets = nullptr;
  const int64_t* d_kv_off = nullptr;
  const int64_t* d_att_off = nullptr;
  const int32_t* d_pos = nullptr;
  const int64_t* d_kv_src = nullptr;  // prefix gather (scoring), or null
};

// Keys/values of the prompts (scoring): [L][rows][KD] on the device.
struct DevPrefix {
  const float* k = nullptr;
  const float* v = nullptr;
  int64_t rows = 0;
};

class CudaOptimizer final : public DeviceOptimizer {
 public:
  static Status create(int64_t n, int64_t reserve, std::unique_ptr<DeviceOptimizer>* out) {
    auto o = std::unique_ptr<CudaOptimizer>(new CudaOptimizer());
    o->n_ = n;
    MEMQ_RETURN_IF_ERROR(dev::set_device(0));
    MEMQ_RETURN_IF_ERROR(dev::stream_create(&o->stream_));
    const size_t bytes = size_t(std::max<int64_t>(n, 1)) * sizeof(float);
    MEMQ_RETURN_IF_ERROR(o->grad_.ensure(bytes, reserve, o->stream_, "trainer gradient"));
    MEMQ_RETURN_IF_ERROR(o->m_.ensure(bytes, reserve, o->stream_, "AdamW first moments"));
    MEMQ_RETURN_IF_ERROR(o->v_.ensure(bytes, reserve, o->stream_, "AdamW second moments"));
    MEMQ_RETURN_IF_ERROR(o->p_.ensure(bytes, reserve, o->stream_, "trained parameters"));
    MEMQ_RETURN_IF_ERROR(o->partials_.ensure(sizeof(double) * dev::kSumSquaresPartials, 0, o->stream_, "norm partials"));
    MEMQ_RETURN_IF_ERROR(dev::fill_zero(o->grad_.as<void>(), bytes, o->stream_));
    MEMQ_RETURN_IF_ERROR(dev::fill_zero(o->m_.as<void>(), bytes, o->stream_));
    MEMQ_RETURN_IF_ERROR(dev::fill_zero(o->v_.as<void>(), bytes, o->stream_));
    MEMQ_RETURN_IF_ERROR(dev::stream_sync(o->stream_));
    *out = std::move(o);
    return Status::Ok();
  }
  ~CudaOptimizer() override {
    grad_.release();  // buffers before the stream they were used on
    m_.release();
    v_.release();
    p_.release();
    partials_.release();
    dev::stream_destroy(stream_);
  }
  int64_t size() const override { return n_; }
  float* grad() override { return grad_.as<float>(); }
  Status zero_grad() override {
    MEMQ_RETURN_IF_ERROR(dev::set_device(0));
    MEMQ_RETURN_IF_ERROR(dev::fill_zero(grad_.as<void>(), size_t(n_) * sizeof(float), stream_));
    return dev::stream_sync(stream_);
  }
  Status download_grad(float* host) override {
    MEMQ_RETURN_IF_ERROR(dev::set_device(0));
    return dev::copy_to_host(host, grad_.as<void>(), size_t(n_) * sizeof(float), stream_);
  }
  Status step(float* params, int64_t micro, double clip_norm, const AdamWOptions& o, int64_t t, double* norm_out,
              bool* skipped) override {
    MEMQ_RETURN_IF_ERROR(dev::set_device(0));
    *skipped = false;
    const size_t bytes = size_t(n_) * sizeof(float);
    MEMQ_RETURN_IF_ERROR(dev::copy_to_device(p_.as<void>(), params, bytes, stream_));
    // as accumulated_adamw_step: average (a float product), norm, clip (a float product), AdamW
    MEMQ_RETURN_IF_ERROR(dev::scale(grad_.as<float>(), 1.0f / float(micro), n_, stream_));
    double ss = 0.0;
    MEMQ_RETURN_IF_ERROR(dev::sum_squares(&ss, grad_.as<float>(), n_, partials_.as<double>(), stream_));
    const double norm = std::sqrt(ss);
    *norm_out = norm;
    if (!std::isfinite(norm)) {
      *skipped = true;
      return Status::Ok();
    }
    const float c = (clip_norm > 0 && norm > clip_norm) ? float(clip_norm / (norm + 1e-6)) : 1.0f;
    MEMQ_RETURN_IF_ERROR(dev::adamw(p_.as<float>(), grad_.as<float>(), m_.as<float>(), v_.as<float>(), n_, t, o, c, stream_));
    return dev::copy_to_host(params, p_.as<void>(), bytes, stream_);
  }
  Status get_moments(float* m, float* v) override {
    MEMQ_RETURN_IF_ERROR(dev::set_device(0));
    MEMQ_RETURN_IF_ERROR(dev::copy_to_host(m, m_.as<void>(), size_t(n_) * sizeof(float), stream_));
    return dev::copy_to_host(v, v_.as<void>(), size_t(n_) * sizeof(float), stream_);
  }
  Status set_moments(const float* m, const float* v) override {
    MEMQ_RETURN_IF_ERROR(dev::set_device(0));
    MEMQ_RETURN_IF_ERROR(dev::copy_to_device(m_.as<void>(), m, size_t(n_) * sizeof(float), stream_));
    MEMQ_RETURN_IF_ERROR(dev::copy_to_device(v_.as<void>(), v, size_t(n_) * sizeof(float), stream_));
    return dev::stream_sync(stream_);
  }

 private:
  CudaOptimizer() = default;
  int64_t n_ = 0;
  dev::Stream stream_ = nullptr;
  Buffer grad_, m_, v_, p_, partials_;
};

class CudaEngine final : public DeviceEngine {
 public:
  static Status create(const Model& model, const LlmDeviceOptions& opts, std::unique_ptr<DeviceEngine>* out) {
    const ModelConfig& cfg = model.config();
    MEMQ_RETURN_IF_ERROR(cfg.validate());
    const int64_t D = cfg.dim_head();
    if (D > dev::kMaxHeadDim)
      return Status::Invalid("the CUDA engine supports head_dim <= " + std::to_string(dev::kMaxHeadDim) + ", got " +
                             std::to_string(D));
    CudaDeviceInfo info;
    MEMQ_RETURN_IF_ERROR(cuda_device_info(&info));
    MEMQ_RETURN_IF_ERROR(dev::set_device(0));
    auto e = std::unique_ptr<CudaEngine>(new CudaEngine());
    e->cfg_ = cfg;
    e->opts_ = opts;
    e->opts_.device = "cuda";
    e->prec_ = opts.precision == LlmPrecision::kFP32 ? GemmPrecision::kTF32x3 : GemmPrecision::kBF16;
    e->name_ = info.name;
    int64_t total = 0;
    e->layout_ = param_layout(cfg, &total);
    e->total_ = total;
    // The weights must fit before anything is allocated.
    const int64_t need = cuda_weight_bytes(cfg, opts.precision);
    int64_t free_b = 0, total_b = 0;
    MEMQ_RETURN_IF_ERROR(dev::mem_info(&free_b, &total_b));
    if (need + std::max<int64_t>(opts.reserve_bytes, 0) > free_b)
      return Status::NoMemory("the model's weights need " + mib(double(need)) + " of device memory in " +
                              llm_precision_name(opts.precision) + " (+ " + mib(double(std::max<int64_t>(opts.reserve_bytes, 0))) +
                              " kept free), but only " + mib(double(free_b)) + " of " + mib(double(total_b)) +
                              " are free on " + info.name);
    MEMQ_RETURN_IF_ERROR(dev::stream_create(&e->stream_));
    const bool bf16 = opts.precision == LlmPrecision::kBF16;
    MEMQ_RETURN_IF_ERROR(e->weights_.ensure(size_t(total) * (bf16 ? 2 : 4), opts.reserve_bytes, e->stream_, "model weights"));
    if (bf16) {
      int64_t nvec = 0;
      for (const auto& t : e->layout_)
        if (t.shape.size() == 1) {
          e->vec_off_.push_back({t.offset, nvec, t.numel()});
          nvec += t.numel();
        }
      e->nvec_ = nvec;
      MEMQ_RETURN_IF_ERROR(e->vec32_.ensure(size_t(std::max<int64_t>(nvec, 1)) * 4, opts.reserve_bytes, e->stream_,
                                            "model norms and biases"));
    }
    MEMQ_RETURN_IF_ERROR(e->ws_.ensure(size_t(kWorkspaceFloats) * 4, opts.reserve_bytes, e->stream_, "GEMM workspace"));
    MEMQ_RETURN_IF_ERROR(e->upload_locked(model.param_data()));
    e->bind();
    *out = std::move(e);
    return Status::Ok();
  }

  ~CudaEngine() override {
    // every buffer before the stream
    weights_.release();
    vec32_.release();
    ws_.release();
    rope_.release();
    io_.release();
    acts_.release();
    work_.release();
    head_.release();
    cache_.release();
    grads_.release();
    for (auto& c : lora_) c.buf.release();
    dev::stream_destroy(stream_);
  }

  std::string description() const override {
    return "cuda:0 " + name_ + " (" + llm_precision_name(opts_.precision) + " weights, " +
           mib(double(weights_.bytes() + vec32_.bytes())) + " on the device)";
  }
  LlmDevice device() const override { return LlmDevice::kCuda; }
  const LlmDeviceOptions& options() const override { return opts_; }
  int64_t device_bytes() const override {
    std::lock_guard<std::mutex> l(mu_);
    size_t s = weights_.bytes() + vec32_.bytes() + ws_.bytes() + rope_.bytes() + io_.bytes() + acts_.bytes() +
               work_.bytes() + head_.bytes() + cache_.bytes() + grads_.bytes();
    for (const auto& c : lora_) s += c.buf.bytes();
    return int64_t(s);
  }

  Status upload_weights(const float* host) override {
    std::lock_guard<std::mutex> l(mu_);
    MEMQ_RETURN_IF_ERROR(dev::set_device(0));
    return upload_locked(host);
  }

  Status logits(float* out, const TokenBatch& batch, const LoraAdapter* lora) override {
    MEMQ_RETURN_IF_ERROR(validate_batch(batch.tokens, batch.offsets, batch.n_seqs, cfg_.vocab_size, "logits"));
    MEMQ_RETURN_IF_ERROR(detail::check_lora(cfg_, lora));
    std::lock_guard<std::mutex> l(mu_);
    MEMQ_RETURN_IF_ERROR(dev::set_device(0));
    DevLora dl;
    MEMQ_RETURN_IF_ERROR(lora_device(lora, &dl));
    PassGeom g;
    DevActs a;
    MEMQ_RETURN_IF_ERROR(forward_batch(batch, false, dl, &g, &a));
    const int64_t N = g.N, V = cfg_.vocab_size;
    if (N == 0) return Status::Ok();
    MEMQ_RETURN_IF_ERROR(head_.ensure(size_t(N * V) * 4, opts_.reserve_bytes, stream_, "logits"));
    MEMQ_RETURN_IF_ERROR(dev::matmul_forward(head_.as<float>(), a.lnf, w_.lm_head, nullptr, N, cfg_.hidden_size, V,
                                             prec_, stream_));
    return dev::copy_to_host(out, head_.as<void>(), size_t(N * V) * 4, stream_);
  }

  Status token_logprobs(float* out, const TokenBatch& batch, const LoraAdapter* lora) override {
    MEMQ_RETURN_IF_ERROR(validate_batch(batch.tokens, batch.offsets, batch.n_seqs, cfg_.vocab_size, "token_logprobs"));
    MEMQ_RETURN_IF_ERROR(detail::check_lora(cfg_, lora));
    std::lock_guard<std::mutex> l(mu_);
    MEMQ_RETURN_IF_ERROR(dev::set_device(0));
    DevLora dl;
    MEMQ_RETURN_IF_ERROR(lora_device(lora, &dl));
    const int64_t N = batch.offsets[batch.n_seqs];
    std::vector<int64_t> rows, where;
    std::vector<int32_t> targets;
    for (int64_t b = 0; b < batch.n_seqs; ++b)
      for (int64_t t = batch.offsets[b] + 1; t < batch.offsets[b + 1]; ++t) {
        rows.push_back(t - 1);
        targets.push_back(batch.tokens[t]);
        where.push_back(t);
      }
    PassGeom g;
    DevActs a;
    MEMQ_RETURN_IF_ERROR(forward_batch(batch, false, dl, &g, &a));
    std::vector<float> nll(rows.size());
    MEMQ_RETURN_IF_ERROR(head_host(nll.data(), a.lnf, rows, targets));
    std::fill(out, out + N, 0.0f);
    for (size_t i = 0; i < rows.size(); ++i) out[where[i]] = -nll[i];
    return Status::Ok();
  }

  Status embed_mean(float* out, const TokenBatch& batch, const LoraAdapter* lora) override {
    MEMQ_RETURN_IF_ERROR(validate_batch(batch.tokens, batch.offsets, batch.n_seqs, cfg_.vocab_size, "embed_mean"));
    MEMQ_RETURN_IF_ERROR(detail::check_lora(cfg_, lora));
    std::lock_guard<std::mutex> l(mu_);
    MEMQ_RETURN_IF_ERROR(dev::set_device(0));
    DevLora dl;
    MEMQ_RETURN_IF_ERROR(lora_device(lora, &dl));
    PassGeom g;
    DevActs a;
    MEMQ_RETURN_IF_ERROR(forward_batch(batch, false, dl, &g, &a));
    const int64_t B = batch.n_seqs, C = cfg_.hidden_size;
    if (B == 0) return Status::Ok();
    MEMQ_RETURN_IF_ERROR(head_.ensure(size_t(B * C) * 4, opts_.reserve_bytes, stream_, "embeddings"));
    MEMQ_RETURN_IF_ERROR(dev::mean_rows(head_.as<float>(), a.lnf, g.d_offsets, B, C, stream_));
    return dev::copy_to_host(out, head_.as<void>(), size_t(B * C) * 4, stream_);
  }

  Status score(float* scores, float* token_logprobs_out, const ScoreRequest& r, const LoraAdapter* lora) override {
    MEMQ_RETURN_IF_ERROR(detail::validate_score_request(r, cfg_.vocab_size));
    MEMQ_RETURN_IF_ERROR(detail::check_lora(cfg_, lora));
    std::lock_guard<std::mutex> l(mu_);
    MEMQ_RETURN_IF_ERROR(dev::set_device(0));
    DevLora dl;
    MEMQ_RETURN_IF_ERROR(lora_device(lora, &dl));
    const int64_t L = cfg_.num_hidden_layers, C = cfg_.hidden_size;
    const int64_t KD = cfg_.num_key_value_heads * cfg_.dim_head();
    const int64_t NP = r.prompt_offsets[r.n_prompts], NC = r.cand_offsets[r.n_cands];
    // positions, as model.cpp: prompts from 0, candidates after their prompt
    std::vector<int32_t> ppos, cpos;
    int64_t max_pos = 0, max_pos2 = 0;
    detail::positions_for(&ppos, r.prompt_offsets, r.n_prompts, nullptr, &max_pos);
    std::vector<int64_t> cand_prompt(static_cast<size_t>(r.n_cands)), pstart(size_t(r.n_cands)), plen(size_t(r.n_cands));
    for (int64_t b = 0; b < r.n_prompts; ++b)
      for (int64_t k = r.cand_groups[b]; k < r.cand_groups[b + 1]; ++k) {
        cand_prompt[size_t(k)] = b;
        pstart[size_t(k)] = r.prompt_offsets[b];
        plen[size_t(k)] = r.prompt_offsets[b + 1] - r.prompt_offsets[b];
      }
    detail::positions_for(&cpos, r.cand_offsets, r.n_cands, plen.data(), &max_pos2);
    MEMQ_RETURN_IF_ERROR(ensure_rope(std::max(max_pos, max_pos2)));
    // pass 1: prompts, keeping their keys/values and each prompt's last hidden state
    MEMQ_RETURN_IF_ERROR(cache_.ensure(size_t(2 * L * NP * KD + r.n_prompts * C) * 4, opts_.reserve_bytes, stream_,
                                       "prompt key/value cache"));
    float* cache_k = cache_.as<float>();
    float* cache_v = cache_k + L * NP * KD;
    float* last_hidden = cache_v + L * NP * KD;
    {
      PassGeom g;
      DevActs a;
      MEMQ_RETURN_IF_ERROR(prepare_pass(r.prompt_tokens, r.prompt_offsets, r.n_prompts, ppos, nullptr, nullptr, &g));
      MEMQ_RETURN_IF_ERROR(alloc_acts(g, false, dl, &a));
      MEMQ_RETURN_IF_ERROR(forward(a, g, nullptr, cache_k, cache_v, false, dl));
      std::vector<int64_t> last_rows(static_cast<size_t>(r.n_prompts));
      for (int64_t b = 0; b < r.n_prompts; ++b) last_rows[size_t(b)] = r.prompt_offsets[b + 1] - 1;
      MEMQ_RETURN_IF_ERROR(gather_host_rows(last_hidden, a.lnf, last_rows));
    }
    // pass 2: every candidate continues its prompt's cached keys/values
    std::vector<float> nll(static_cast<size_t>(NC));
    if (NC > 0) {
      PassGeom g;
      DevActs a;
      MEMQ_RETURN_IF_ERROR(prepare_pass(r.cand_tokens, r.cand_offsets, r.n_cands, cpos, pstart.data(), plen.data(), &g));
      MEMQ_RETURN_IF_ERROR(alloc_acts(g, false, dl, &a));
      DevPrefix prefix;
      prefix.k = cache_k;
      prefix.v = cache_v;
      prefix.rows = NP;
      MEMQ_RETURN_IF_ERROR(forward(a, g, &prefix, nullptr, nullptr, false, dl));
      // hidden rows predicting each candidate token: [prompt last hidden, cand hidden 0..L-2]
      // (the prompt rows live in last_hidden, the candidate rows in a.lnf: two gathers)
      std::vector<int64_t> rows_first, rows_next, pos_first, pos_next;
      std::vector<int32_t> t_first, t_next;
      for (int64_t k = 0; k < r.n_cands; ++k)
        for (int64_t t = r.cand_offsets[k]; t < r.cand_offsets[k + 1]; ++t) {
          if (t == r.cand_offsets[k]) {
            rows_first.push_back(cand_prompt[size_t(k)]);
            t_first.push_back(r.cand_tokens[t]);
            pos_first.push_back(t);
          } else {
            rows_next.push_back(t - 1);
            t_next.push_back(r.cand_tokens[t]);
            pos_next.push_back(t);
          }
        }
      std::vector<float> n1(rows_first.size()), n2(rows_next.size());
      MEMQ_RETURN_IF_ERROR(head_host(n1.data(), last_hidden, rows_first, t_first));
      MEMQ_RETURN_IF_ERROR(head_host(n2.data(), a.lnf, rows_next, t_next));
      for (size_t i = 0; i < n1.size(); ++i) nll[size_t(pos_first[i])] = n1[i];
      for (size_t i = 0; i < n2.size(); ++i) nll[size_t(pos_next[i])] = n2[i];
    }
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

  Status forward_backward(const TokenBatch& batch, LossNorm norm, const LoraAdapter* lora, float* lora_grad,
                          float* full_grad, bool device_grads, float grad_scale, double* loss_out,
                          double* weight_sum_out) override {
    // the CPU engine's checks, in its order
    MEMQ_RETURN_IF_ERROR(validate_batch(batch.tokens, batch.offsets, batch.n_seqs, cfg_.vocab_size, "train batch"));
    if (!batch.weights) return Status::Invalid("train batch: null weights");
    MEMQ_RETURN_IF_ERROR(detail::check_lora(cfg_, lora));
    detail::LossRows lr;
    MEMQ_RETURN_IF_ERROR(detail::loss_rows(batch, norm, cfg_.vocab_size, &lr));
    if (weight_sum_out) *weight_sum_out = lr.wsum;
    const double denom = (norm == LossNorm::kWeightSum && lr.wsum > 0) ? lr.wsum : 1.0;
    const int64_t M = int64_t(lr.rows.size()), N = batch.offsets[batch.n_seqs], C = cfg_.hidden_size;
    std::vector<float> dnll(static_cast<size_t>(M));
    for (int64_t i = 0; i < M; ++i) dnll[size_t(i)] = float(double(lr.wts[size_t(i)]) / denom * double(grad_scale));

    std::lock_guard<std::mutex> l(mu_);
    MEMQ_RETURN_IF_ERROR(dev::set_device(0));
    DevLora dl;
    MEMQ_RETURN_IF_ERROR(lora_device(lora, &dl));
    // gradients: the caller's device arrays, or zeroed device arrays copied out at the end
    float* dlora = nullptr;
    float* dfull = nullptr;
    const int64_t nl = lora_grad && lora ? lora->size() : 0, nf = full_grad ? total_ : 0;
    if (device_grads) {
      dlora = lora ? lora_grad : nullptr;
      dfull = full_grad;
    } else if (nl + nf > 0) {
      MEMQ_RETURN_IF_ERROR(grads_.ensure(size_t(nl + nf) * 4, opts_.reserve_bytes, stream_, "gradients"));
      MEMQ_RETURN_IF_ERROR(dev::fill_zero(grads_.as<void>(), size_t(nl + nf) * 4, stream_));
      if (nl) dlora = grads_.as<float>();
      if (nf) dfull = grads_.as<float>() + nl;
    }
    PassGeom g;
    DevActs a;
    MEMQ_RETURN_IF_ERROR(forward_batch(batch, true, dl, &g, &a));
    // backward scratch (allocated before any gradient is written)
    MEMQ_RETURN_IF_ERROR(alloc_backward(g, dl));
    float* dlnf = bw_.dlnf;
    MEMQ_RETURN_IF_ERROR(dev::fill_zero(dlnf, size_t(N * C) * 4, stream_));
    ParamViews gv;
    if (dfull) gv = bind_params(cfg_, dfull);
    std::vector<float> nll(static_cast<size_t>(M));
    MEMQ_RETURN_IF_ERROR(head_train(nll.data(), a.lnf, lr.rows, lr.targets, dnll, dlnf, dfull ? gv.lm_head : nullptr));
    double loss = 0.0;
    for (int64_t i = 0; i < M; ++i) loss += double(lr.wts[size_t(i)]) * double(nll[size_t(i)]);
    if (loss_out) *loss_out = loss / denom;
    if (M > 0 && (dlora || dfull)) MEMQ_RETURN_IF_ERROR(backward(a, g, dlnf, batch.tokens, dl, dlora, dfull ? &gv : nullptr));
    if (!device_grads) {
      if (nl) {
        std::vector<float> h(static_cast<size_t>(nl));
        MEMQ_RETURN_IF_ERROR(dev::copy_to_host(h.data(), dlora, size_t(nl) * 4, stream_));
        for (int64_t i = 0; i < nl; ++i) lora_grad[i] += h[size_t(i)];
      }
      if (nf) {
        std::vector<float> h(static_cast<size_t>(nf));
        MEMQ_RETURN_IF_ERROR(dev::copy_to_host(h.data(), dfull, size_t(nf) * 4, stream_));
        for (int64_t i = 0; i < nf; ++i) full_grad[i] += h[size_t(i)];
      }
    }
    return dev::stream_sync(stream_);
  }

  void trim() override {
    std::lock_guard<std::mutex> l(mu_);
    if (dev::set_device(0).ok()) (void)dev::stream_sync(stream_);
    io_.release();
    acts_.release();
    work_.release();
    head_.release();
    cache_.release();
    grads_.release();
    for (auto& c : lora_) {
      c.buf.release();
      c.version = 0;
      c.n = 0;
    }
  }

  Status create_optimizer(int64_t n, std::unique_ptr<DeviceOptimizer>* out) override {
    return CudaOptimizer::create(n, opts_.reserve_bytes, out);
  }

 private:
  static constexpr int64_t kWorkspaceFloats = int64_t(4) << 20;  // split-K partials (16 MiB)

  CudaEngine() = default;

  // ---- weights -------------------------------------------------------------------------------
  Status upload_locked(const float* host) {
    if (opts_.precision == LlmPrecision::kFP32) {
      MEMQ_RETURN_IF_ERROR(dev::copy_to_device(weights_.as<void>(), host, size_t(total_) * 4, stream_));
      return dev::stream_sync(stream_);
    }
    // bf16: stream float32 chunks through a staging buffer and convert on the device
    const int64_t chunk = int64_t(16) << 20;
    Buffer staging;
    MEMQ_RETURN_IF_ERROR(staging.ensure(size_t(std::min(chunk, std::max<int64_t>(total_, 1))) * 4, opts_.reserve_bytes,
                                        stream_, "weight upload staging"));
    for (int64_t o = 0; o < total_; o += chunk) {
      const int64_t n = std::min(chunk, total_ - o);
      MEMQ_RETURN_IF_ERROR(dev::copy_to_device(staging.as<void>(), host + o, size_t(n) * 4, stream_));
      MEMQ_RETURN_IF_ERROR(dev::to_bf16(weights_.as<char>() + o * 2, staging.as<float>(), n, stream_));
    }
    std::vector<float> vec(static_cast<size_t>(nvec_));
    for (const auto& v : vec_off_) std::memcpy(vec.data() + v.packed, host + v.offset, size_t(v.n) * 4);
    MEMQ_RETURN_IF_ERROR(dev::copy_to_device(vec32_.as<void>(), vec.data(), vec.size() * 4, stream_));
    return dev::stream_sync(stream_);  // staging and vec are freed / reused after this
  }

  // Device pointers of every tensor, from the host layout's offsets (by HF name, as bind_params).
  void bind() {
    const bool bf16 = opts_.precision == LlmPrecision::kBF16;
    std::map<std::string, int64_t> off;
    for (const auto& t : layout_) off[t.name] = t.offset;
    auto find = [&](const std::string& n) -> int64_t {
      auto it = off.find(n);
      return it == off.end() ? -1 : it->second;
    };
    auto mat = [&](const std::string& n) -> WeightRef {
      const int64_t o = find(n);
      if (o < 0) return WeightRef();
      return bf16 ? WeightRef::bf16_bits(weights_.as<char>() + o * 2) : WeightRef(weights_.as<float>() + o);
    };
    auto vec = [&](const std::string& n) -> const float* {
      const int64_t o = find(n);
      if (o < 0) return nullptr;
      if (!bf16) return weights_.as<float>() + o;
      for (const auto& v : vec_off_)
        if (v.offset == o) return vec32_.as<float>() + v.packed;
      return nullptr;  // unreachable: every 1-D tensor is packed
    };
    w_.embed = mat("model.embed_tokens.weight");
    w_.lm_head = cfg_.tie_word_embeddings ? w_.embed : mat("lm_head.weight");
    w_.norm = vec("model.norm.weight");
    w_.layers.assign(size_t(cfg_.num_hidden_layers), DevLayer());
    for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      DevLayer& d = w_.layers[size_t(l)];
      d.q_w = mat(p + "self_attn.q_proj.weight");
      d.k_w = mat(p + "self_attn.k_proj.weight");
      d.v_w = mat(p + "self_attn.v_proj.weight");
      d.o_w = mat(p + "self_attn.o_proj.weight");
      d.gate_w = mat(p + "mlp.gate_proj.weight");
      d.up_w = mat(p + "mlp.up_proj.weight");
      d.down_w = mat(p + "mlp.down_proj.weight");
      d.ln1 = vec(p + "input_layernorm.weight");
      d.q_b = vec(p + "self_attn.q_proj.bias");
      d.q_norm = vec(p + "self_attn.q_norm.weight");
      d.k_norm = vec(p + "self_attn.k_norm.weight");
      d.k_b = vec(p + "self_attn.k_proj.bias");
      d.v_b = vec(p + "self_attn.v_proj.bias");
      d.o_b = vec(p + "self_attn.o_proj.bias");
      d.ln2 = vec(p + "post_attention_layernorm.weight");
    }
  }

  // ---- LoRA ----------------------------------------------------------------------------------
  Status lora_device(const LoraAdapter* lora, DevLora* out) {
    *out = DevLora();
    if (!lora) return Status::Ok();
    ++use_clock_;
    LoraSlot* slot = nullptr;
    for (auto& c : lora_)
      if (c.version == lora->version() && c.n == lora->size()) slot = &c;
    if (!slot) {
      slot = &lora_[0];
      for (auto& c : lora_)
        if (c.last_use < slot->last_use) slot = &c;
      slot->version = 0;
      MEMQ_RETURN_IF_ERROR(slot->buf.ensure(size_t(std::max<int64_t>(lora->size(), 1)) * 4, opts_.reserve_bytes, stream_,
                                            "LoRA adapter"));
      MEMQ_RETURN_IF_ERROR(dev::copy_to_device(slot->buf.as<void>(), lora->params(), size_t(lora->size()) * 4, stream_));
      slot->version = lora->version();
      slot->n = lora->size();
    }
    slot->last_use = use_clock_;
    out->base = slot->buf.as<float>();
    out->host = lora;
    out->scale = lora->scale();
    out->r = lora->config().r;
    return Status::Ok();
  }

  // ---- per-pass inputs -----------------------------------------------------------------------
  Status ensure_rope(int64_t max_pos) {
    if (max_pos <= rope_rows_) return Status::Ok();
    const int64_t rows = std::max<int64_t>(max_pos, std::max<int64_t>(256, 2 * rope_rows_));
    detail::RopeTable t;
    t.build(rows, cfg_.dim_head(), cfg_.rope_theta);  // entries of row p do not depend on `rows`
    const size_t half = size_t(cfg_.dim_head() / 2);
    MEMQ_RETURN_IF_ERROR(rope_.ensure(2 * size_t(rows) * half * 4, opts_.reserve_bytes, stream_, "RoPE table"));
    MEMQ_RETURN_IF_ERROR(dev::copy_to_device(rope_.as<void>(), t.cos.data(), t.cos.size() * 4, stream_));
    MEMQ_RETURN_IF_ERROR(dev::copy_to_device(rope_.as<float>() + size_t(rows) * half, t.sin.data(), t.sin.size() * 4, stream_));
    MEMQ_RETURN_IF_ERROR(dev::stream_sync(stream_));  // t is freed on return
    rope_rows_ = rows;
    return Status::Ok();
  }
  const float* rope_cos() const { return rope_.as<float>(); }
  const float* rope_sin() const { return rope_.as<float>() + size_t(rope_rows_) * size_t(cfg_.dim_head() / 2); }

  // Uploads tokens, offsets, positions and the attention bookkeeping of one pass. With a prefix
  // (pstart/plen per sequence), keys/values are gathered from the prompt cache in front of the
  // pass's own.
  Status prepare_pass(const int32_t* tokens, const int64_t* offsets, int64_t B, const std::vector<int32_t>& pos,
                      const int64_t* pstart, const int64_t* plen, PassGeom* g) {
    const int64_t H = cfg_.num_attention_heads;
    g->B = B;
    g->N = offsets[B];
    g->kv_off.assign(size_t(B + 1), 0);
    g->att_off.assign(size_t(B + 1), 0);
    g->max_lq = 0;
    g->max_lk = 0;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t Lq = offsets[b + 1] - offsets[b];
      const int64_t Lk = Lq + (plen ? plen[b] : 0);
      g->kv_off[size_t(b + 1)] = g->kv_off[size_t(b)] + Lk;
      g->att_off[size_t(b + 1)] = g->att_off[size_t(b)] + H * Lq * Lk;
      g->max_lq = std::max(g->max_lq, Lq);
      g->max_lk = std::max(g->max_lk, Lk);
    }
    g->kv_rows = g->kv_off[size_t(B)];
    g->att_size = g->att_off[size_t(B)];
    std::vector<int64_t> src;
    if (plen) {
      src.reserve(size_t(g->kv_rows));
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t r = 0; r < plen[b]; ++r) src.push_back(pstart[b] + r);
        for (int64_t t = offsets[b]; t < offsets[b + 1]; ++t) src.push_back(-t - 1);
      }
    }
    Carve cv;
    const size_t o_tok = cv.add<int32_t>(g->N), o_off = cv.add<int64_t>(B + 1), o_kv = cv.add<int64_t>(B + 1),
                 o_att = cv.add<int64_t>(B + 1), o_pos = cv.add<int32_t>(g->N), o_src = cv.add<int64_t>(int64_t(src.size()));
    MEMQ_RETURN_IF_ERROR(io_.ensure(cv.off, opts_.reserve_bytes, stream_, "batch indices"));
    MEMQ_RETURN_IF_ERROR(dev::copy_to_device(io_.as<char>() + o_tok, tokens, size_t(g->N) * 4, stream_));
    MEMQ_RETURN_IF_ERROR(dev::copy_to_device(io_.as<char>() + o_off, offsets, size_t(B + 1) * 8, stream_));
    MEMQ_RETURN_IF_ERROR(dev::copy_to_device(io_.as<char>() + o_kv, g->kv_off.data(), size_t(B + 1) * 8, stream_));
    MEMQ_RETURN_IF_ERROR(dev::copy_to_device(io_.as<char>() + o_att, g->att_off.data(), size_t(B + 1) * 8, stream_));
    MEMQ_RETURN_IF_ERROR(dev::copy_to_device(io_.as<char>() + o_pos, pos.data(), size_t(g->N) * 4, stream_));
    if (!src.empty()) MEMQ_RETURN_IF_ERROR(dev::copy_to_device(io_.as<char>() + o_src, src.data(), src.size() * 8, stream_));
    g->d_tokens = at<int32_t>(io_, o_tok);
    g->d_offsets = at<int64_t>(io_, o_off);
    g->d_kv_off = at<int64_t>(io_, o_kv);
    g->d_att_off = at<int64_t>(io_, o_att);
    g->d_pos = at<int32_t>(io_, o_pos);
    g->d_kv_src = plen ? at<int64_t>(io_, o_src) : nullptr;
    // host vectors (pos, src) are freed by the callers: wait for the copies
    return dev::stream_sync(stream_);
  }

  Status alloc_acts(const PassGeom& g, bool keep, const DevLora& dl, DevActs* a) {
    const ModelConfig& c = cfg_;
    a->N = g.N;
    a->L = c.num_hidden_layers;
    a->C = c.hidden_size;
    a->I = c.intermediate_size;
    a->D = c.dim_head();
    a->QD = c.num_attention_heads * a->D;
    a->KD = c.num_key_value_heads * a->D;
    a->S = g.att_size;
    a->R = dl.host ? dl.r : 0;
    a->keep = keep;
    const int64_t N = a->N, L = a->L, C = a->C, I = a->I, QD = a->QD, KD = a->KD, S = a->S, R = a->R, D = a->D;
    const int64_t nl = keep ? L : 1, qkn = c.qk_norm() ? 1 : 0;
    const bool prefix = g.d_kv_src != nullptr;
    Carve cv;
    const size_t o[] = {
        cv.add<float>((keep ? L + 1 : 1) * N * C), cv.add<float>(nl * N * C), cv.add<float>(nl * N),
        cv.add<float>(nl * N * QD), cv.add<float>(nl * N * KD), cv.add<float>(nl * N * KD), cv.add<float>(nl * S),
        cv.add<float>(nl * N * QD), cv.add<float>(nl * N * C), cv.add<float>(nl * N * C), cv.add<float>(nl * N),
        cv.add<float>(nl * N * I), cv.add<float>(nl * N * I), cv.add<float>(nl * N * I),
        cv.add<float>(nl * N * R * kLoraNumTargets), cv.add<float>(N * C), cv.add<float>(N * C), cv.add<float>(N),
        cv.add<float>(qkn * nl * N * QD), cv.add<float>(qkn * nl * N * KD), cv.add<float>(qkn * nl * N * QD / D),
        cv.add<float>(qkn * nl * N * KD / D),
        // prefix: the gathered keys/values of the pass
        cv.add<float>(prefix ? g.kv_rows * KD : 0), cv.add<float>(prefix ? g.kv_rows * KD : 0)};
    MEMQ_RETURN_IF_ERROR(acts_.ensure(cv.off, opts_.reserve_bytes, stream_, keep ? "training activations" : "activations"));
    float** dst[] = {&a->resid, &a->ln1, &a->rstd1, &a->q, &a->k, &a->v, &a->att, &a->atty, &a->resid_mid, &a->ln2,
                     &a->rstd2, &a->gate, &a->up, &a->act, &a->lora_t, &a->proj, &a->lnf, &a->rstdf, &a->qpre,
                     &a->kpre, &a->qr, &a->kr, &kfull_, &vfull_};
    static_assert(sizeof(o) / sizeof(o[0]) == sizeof(dst) / sizeof(dst[0]), "one offset per array");
    for (size_t i = 0; i < sizeof(o) / sizeof(o[0]); ++i) *dst[i] = at<float>(acts_, o[i]);
    return Status::Ok();
  }

  // prepare_pass + rope + alloc_acts + forward for a plain batch (no prefix).
  Status forward_batch(const TokenBatch& batch, bool keep, const DevLora& dl, PassGeom* g, DevActs* a) {
    std::vector<int32_t> pos;
    int64_t max_pos = 0;
    detail::positions_for(&pos, batch.offsets, batch.n_seqs, nullptr, &max_pos);
    MEMQ_RETURN_IF_ERROR(ensure_rope(max_pos));
    MEMQ_RETURN_IF_ERROR(prepare_pass(batch.tokens, batch.offsets, batch.n_seqs, pos, nullptr, nullptr, g));
    MEMQ_RETURN_IF_ERROR(alloc_acts(*g, keep, dl, a));
    return forward(*a, *g, nullptr, nullptr, nullptr, keep, dl);
  }

  // ---- layers ------------------------------------------------------------------------------------
  GemmWorkspace ws() const {
    GemmWorkspace w;
    w.p = ws_.as<float>();
    w.floats = kWorkspaceFloats;
    return w;
  }

  // out = inp W^T + b (+ scale (inp A^T) B^T)
  Status linear(float* out, float* t, const float* inp, WeightRef W, const float* b, int64_t l, LoraTarget tg,
                int64_t N, int64_t in, int64_t outd, const DevLora& dl) {
    MEMQ_RETURN_IF_ERROR(dev::matmul_forward(out, inp, W, b, N, in, outd, prec_, stream_));
    if (dl.on(l, tg))
      MEMQ_RETURN_IF_ERROR(dev::lora_forward(out, t, inp, dl.A(l, tg), dl.B(l, tg), dl.scale, N, in, outd, dl.r, prec_, stream_));
    return Status::Ok();
  }

  Status linear_back(float* dinp, float* dW, float* db, float* lora_grad, const float* dout, const float* inp,
                     const float* t, WeightRef W, int64_t l, LoraTarget tg, int64_t N, int64_t in, int64_t outd,
                     const DevLora& dl) {
    MEMQ_RETURN_IF_ERROR(dev::matmul_backward(dinp, dW, db, dout, inp, W, N, in, outd, prec_, ws(), stream_));
    if (dl.on(l, tg)) {
      const LoraModule& mod = dl.host->module(l, tg);
      MEMQ_RETURN_IF_ERROR(dev::lora_backward(dinp, lora_grad ? lora_grad + mod.a_offset : nullptr,
                                              lora_grad ? lora_grad + mod.b_offset : nullptr, bw_.lora_g, dout, inp, t,
                                              dl.A(l, tg), dl.B(l, tg), dl.scale, N, in, outd, dl.r, prec_, ws(), stream_));
    }
    return Status::Ok();
  }

  // model.cpp's ModelRunner::forward on the device.
  Status forward(DevActs& a, const PassGeom& g, const DevPrefix* prefix, float* cache_k, float* cache_v, bool keep,
                 const DevLora& dl) {
    const ModelConfig& c = cfg_;
    const int64_t N = g.N, B = g.B;
    const int64_t C = c.hidden_size, I = c.intermediate_size, D = c.dim_head();
    const int64_t H = c.num_attention_heads, KVH = c.num_key_value_heads, QD = H * D, KD = KVH * D;
    const float* cs = rope_cos();
    const float* sn = rope_sin();
    MEMQ_RETURN_IF_ERROR(dev::embedding_forward(a.res_at(0), g.d_tokens, w_.embed, N, C, stream_));
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const DevLayer& P = w_.layers[size_t(l)];
      float* x = a.res_at(l);
      MEMQ_RETURN_IF_ERROR(dev::rmsnorm_forward(a.L1(l), a.R1(l), x, P.ln1, c.rms_norm_eps, N, C, stream_));
      if (c.qk_norm()) {
        MEMQ_RETURN_IF_ERROR(linear(a.QP(l), a.T(l, kLoraQ), a.L1(l), P.q_w, P.q_b, l, kLoraQ, N, C, QD, dl));
        MEMQ_RETURN_IF_ERROR(linear(a.KP(l), a.T(l, kLoraK), a.L1(l), P.k_w, P.k_b, l, kLoraK, N, C, KD, dl));
        MEMQ_RETURN_IF_ERROR(dev::rmsnorm_forward(a.Q(l), a.QR(l), a.QP(l), P.q_norm, c.rms_norm_eps, N * H, D, stream_));
        MEMQ_RETURN_IF_ERROR(dev::rmsnorm_forward(a.K(l), a.KR(l), a.KP(l), P.k_norm, c.rms_norm_eps, N * KVH, D, stream_));
      } else {
        MEMQ_RETURN_IF_ERROR(linear(a.Q(l), a.T(l, kLoraQ), a.L1(l), P.q_w, P.q_b, l, kLoraQ, N, C, QD, dl));
        MEMQ_RETURN_IF_ERROR(linear(a.K(l), a.T(l, kLoraK), a.L1(l), P.k_w, P.k_b, l, kLoraK, N, C, KD, dl));
      }
      MEMQ_RETURN_IF_ERROR(linear(a.V(l), a.T(l, kLoraV), a.L1(l), P.v_w, P.v_b, l, kLoraV, N, C, KD, dl));
      MEMQ_RETURN_IF_ERROR(dev::rope_forward(a.Q(l), a.Q(l), cs, sn, g.d_pos, N, H, D, stream_));
      MEMQ_RETURN_IF_ERROR(dev::rope_forward(a.K(l), a.K(l), cs, sn, g.d_pos, N, KVH, D, stream_));
      if (cache_k) {
        MEMQ_RETURN_IF_ERROR(dev::copy_on_device(cache_k + l * N * KD, a.K(l), size_t(N * KD) * 4, stream_));
        MEMQ_RETURN_IF_ERROR(dev::copy_on_device(cache_v + l * N * KD, a.V(l), size_t(N * KD) * 4, stream_));
      }
      const float* kk = a.K(l);
      const float* vv = a.V(l);
      if (prefix) {
        MEMQ_RETURN_IF_ERROR(dev::gather_kv(kfull_, vfull_, prefix->k + l * prefix->rows * KD,
                                            prefix->v + l * prefix->rows * KD, a.K(l), a.V(l), g.d_kv_src, g.kv_rows,
                                            KD, stream_));
        kk = kfull_;
        vv = vfull_;
      }
      MEMQ_RETURN_IF_ERROR(dev::attention_forward(a.ATTY(l), a.ATT(l), a.Q(l), kk, vv, g.d_offsets,
                                                  prefix ? g.d_kv_off : g.d_offsets, g.d_att_off, B, H, KVH, D,
                                                  g.max_lq, g.max_lk, stream_));
      MEMQ_RETURN_IF_ERROR(linear(a.proj, a.T(l, kLoraO), a.ATTY(l), P.o_w, P.o_b, l, kLoraO, N, QD, C, dl));
      float* mid = a.MID(l);
      MEMQ_RETURN_IF_ERROR(dev::add(mid, x, a.proj, N * C, stream_));
      MEMQ_RETURN_IF_ERROR(dev::rmsnorm_forward(a.L2(l), a.R2(l), mid, P.ln2, c.rms_norm_eps, N, C, stream_));
      MEMQ_RETURN_IF_ERROR(linear(a.G(l), a.T(l, kLoraGate), a.L2(l), P.gate_w, nullptr, l, kLoraGate, N, C, I, dl));
      MEMQ_RETURN_IF_ERROR(linear(a.U(l), a.T(l, kLoraUp), a.L2(l), P.up_w, nullptr, l, kLoraUp, N, C, I, dl));
      MEMQ_RETURN_IF_ERROR(dev::swiglu_forward(a.A(l), a.G(l), a.U(l), N * I, stream_));
      MEMQ_RETURN_IF_ERROR(linear(a.proj, a.T(l, kLoraDown), a.A(l), P.down_w, nullptr, l, kLoraDown, N, I, C, dl));
      MEMQ_RETURN_IF_ERROR(dev::add(a.res_at(l + 1), mid, a.proj, N * C, stream_));
    }
    (void)keep;
    return dev::rmsnorm_forward(a.lnf, a.rstdf, a.res_at(c.num_hidden_layers), w_.norm, c.rms_norm_eps, N, C, stream_);
  }

  // Backward scratch (model.cpp's backward vectors), carved from work_.
  struct Backward {
    float *dlnf, *dres, *dln, *dact, *dgate, *dup, *datty, *dq, *dk, *dv, *dq2, *dk2, *ds, *lora_g;
  } bw_{};
  Status alloc_backward(const PassGeom& g, const DevLora& dl) {
    const ModelConfig& c = cfg_;
    const int64_t N = g.N, C = c.hidden_size, I = c.intermediate_size, D = c.dim_head();
    const int64_t QD = c.num_attention_heads * D, KD = c.num_key_value_heads * D;
    Carve cv;
    const size_t o[] = {cv.add<float>(N * C),  cv.add<float>(N * C),  cv.add<float>(N * C),  cv.add<float>(N * I),
                        cv.add<float>(N * I),  cv.add<float>(N * I),  cv.add<float>(N * QD), cv.add<float>(N * QD),
                        cv.add<float>(N * KD), cv.add<float>(N * KD), cv.add<float>(N * QD), cv.add<float>(N * KD),
                        cv.add<float>(g.att_size), cv.add<float>(N * (dl.host ? dl.r : 0))};
    MEMQ_RETURN_IF_ERROR(work_.ensure(cv.off, opts_.reserve_bytes, stream_, "backward scratch"));
    float** dst[] = {&bw_.dlnf, &bw_.dres, &bw_.dln, &bw_.dact, &bw_.dgate, &bw_.dup, &bw_.datty,
                     &bw_.dq,   &bw_.dk,   &bw_.dv,  &bw_.dq2,  &bw_.dk2,   &bw_.ds,  &bw_.lora_g};
    static_assert(sizeof(o) / sizeof(o[0]) == sizeof(dst) / sizeof(dst[0]), "one offset per array");
    for (size_t i = 0; i < sizeof(o) / sizeof(o[0]); ++i) *dst[i] = at<float>(work_, o[i]);
    return Status::Ok();
  }

  Status zero(float* p, int64_t n) { return dev::fill_zero(p, size_t(n) * 4, stream_); }

  // model.cpp's ModelRunner::backward on the device.
  Status backward(const DevActs& a, const PassGeom& g, const float* dlnf, const int32_t* /*tokens*/,
                  const DevLora& dl, float* lora_grad, ParamViews* gp) {
    const ModelConfig& c = cfg_;
    const int64_t N = g.N, B = g.B;
    const int64_t C = c.hidden_size, I = c.intermediate_size, D = c.dim_head();
    const int64_t H = c.num_attention_heads, KVH = c.num_key_value_heads, QD = H * D, KD = KVH * D;
    const float* cs = rope_cos();
    const float* sn = rope_sin();
    Backward& w = bw_;
    MEMQ_RETURN_IF_ERROR(zero(w.dres, N * C));
    MEMQ_RETURN_IF_ERROR(dev::rmsnorm_backward(w.dres, gp ? gp->norm : nullptr, dlnf, a.res_at(c.num_hidden_layers),
                                               w_.norm, a.rstdf, N, C, stream_));
    for (int64_t l = c.num_hidden_layers - 1; l >= 0; --l) {
      const DevLayer& P = w_.layers[size_t(l)];
      LayerParams* G = gp ? &gp->layers[size_t(l)] : nullptr;
      MEMQ_RETURN_IF_ERROR(zero(w.dact, N * I));
      MEMQ_RETURN_IF_ERROR(linear_back(w.dact, G ? G->down_w : nullptr, nullptr, lora_grad, w.dres, a.A(l),
                                       a.T(l, kLoraDown), P.down_w, l, kLoraDown, N, I, C, dl));
      MEMQ_RETURN_IF_ERROR(zero(w.dgate, N * I));
      MEMQ_RETURN_IF_ERROR(zero(w.dup, N * I));
      MEMQ_RETURN_IF_ERROR(dev::swiglu_backward(w.dgate, w.dup, w.dact, a.G(l), a.U(l), N * I, stream_));
      MEMQ_RETURN_IF_ERROR(zero(w.dln, N * C));
      MEMQ_RETURN_IF_ERROR(linear_back(w.dln, G ? G->gate_w : nullptr, nullptr, lora_grad, w.dgate, a.L2(l),
                                       a.T(l, kLoraGate), P.gate_w, l, kLoraGate, N, C, I, dl));
      MEMQ_RETURN_IF_ERROR(linear_back(w.dln, G ? G->up_w : nullptr, nullptr, lora_grad, w.dup, a.L2(l), a.T(l, kLoraUp),
                                       P.up_w, l, kLoraUp, N, C, I, dl));
      MEMQ_RETURN_IF_ERROR(dev::rmsnorm_backward(w.dres, G ? G->post_attention_layernorm : nullptr, w.dln, a.MID(l),
                                                 P.ln2, a.R2(l), N, C, stream_));
      MEMQ_RETURN_IF_ERROR(zero(w.datty, N * QD));
      MEMQ_RETURN_IF_ERROR(linear_back(w.datty, G ? G->o_w : nullptr, G ? G->o_b : nullptr, lora_grad, w.dres,
                                       a.ATTY(l), a.T(l, kLoraO), P.o_w, l, kLoraO, N, QD, C, dl));
      MEMQ_RETURN_IF_ERROR(zero(w.dq, N * QD));
      MEMQ_RETURN_IF_ERROR(zero(w.dk, N * KD));
      MEMQ_RETURN_IF_ERROR(zero(w.dv, N * KD));
      MEMQ_RETURN_IF_ERROR(dev::attention_backward(w.dq, w.dk, w.dv, w.ds, w.datty, a.Q(l), a.K(l), a.V(l), a.ATT(l),
                                                   g.d_offsets, g.d_offsets, g.d_att_off, B, H, KVH, D, g.max_lq,
                                                   g.max_lk, stream_));
      MEMQ_RETURN_IF_ERROR(zero(w.dq2, N * QD));
      MEMQ_RETURN_IF_ERROR(zero(w.dk2, N * KD));
      MEMQ_RETURN_IF_ERROR(dev::rope_backward(w.dq2, w.dq, cs, sn, g.d_pos, N, H, D, stream_));
      MEMQ_RETURN_IF_ERROR(dev::rope_backward(w.dk2, w.dk, cs, sn, g.d_pos, N, KVH, D, stream_));
      float* dqp = w.dq2;
      float* dkp = w.dk2;
      if (c.qk_norm()) {
        MEMQ_RETURN_IF_ERROR(zero(w.dq, N * QD));
        MEMQ_RETURN_IF_ERROR(zero(w.dk, N * KD));
        MEMQ_RETURN_IF_ERROR(dev::rmsnorm_backward(w.dq, G ? G->q_norm : nullptr, w.dq2, a.QP(l), P.q_norm, a.QR(l),
                                                   N * H, D, stream_));
        MEMQ_RETURN_IF_ERROR(dev::rmsnorm_backward(w.dk, G ? G->k_norm : nullptr, w.dk2, a.KP(l), P.k_norm, a.KR(l),
                                                   N * KVH, D, stream_));
        dqp = w.dq;
        dkp = w.dk;
      }
      MEMQ_RETURN_IF_ERROR(zero(w.dln, N * C));
      MEMQ_RETURN_IF_ERROR(linear_back(w.dln, G ? G->q_w : nullptr, G ? G->q_b : nullptr, lora_grad, dqp, a.L1(l),
                                       a.T(l, kLoraQ), P.q_w, l, kLoraQ, N, C, QD, dl));
      MEMQ_RETURN_IF_ERROR(linear_back(w.dln, G ? G->k_w : nullptr, G ? G->k_b : nullptr, lora_grad, dkp, a.L1(l),
                                       a.T(l, kLoraK), P.k_w, l, kLoraK, N, C, KD, dl));
      MEMQ_RETURN_IF_ERROR(linear_back(w.dln, G ? G->v_w : nullptr, G ? G->v_b : nullptr, lora_grad, w.dv, a.L1(l),
                                       a.T(l, kLoraV), P.v_w, l, kLoraV, N, C, KD, dl));
      MEMQ_RETURN_IF_ERROR(dev::rmsnorm_backward(w.dres, G ? G->input_layernorm : nullptr, w.dln, a.res_at(l), P.ln1,
                                                 a.R1(l), N, C, stream_));
    }
    if (gp) MEMQ_RETURN_IF_ERROR(dev::embedding_backward(gp->embed, w.dres, g.d_tokens, N, C, stream_));
    return Status::Ok();
  }

  // ---- LM head ----------------------------------------------------------------------------------
  int64_t head_chunk(int64_t M) const {
    const int64_t V = cfg_.vocab_size;
    return std::max<int64_t>(1, std::min<int64_t>(M, std::max<int64_t>(opts_.logits_chunk_bytes, 4 * V) / (4 * V)));
  }

  // nll[m] (host) for hidden rows rows[m] (of `hidden`, device) predicting targets[m]: inference.
  Status head_host(float* nll, const float* hidden, const std::vector<int64_t>& rows, const std::vector<int32_t>& targets) {
    const int64_t M = int64_t(rows.size());
    if (M == 0) return Status::Ok();
    return head_run(nll, hidden, rows, targets, nullptr, nullptr, nullptr);
  }
  // With the backward: dhidden[rows[m]] += dnll[m] d nll_m / d hidden, dlm_head += ... (nullable).
  Status head_train(float* nll, const float* hidden, const std::vector<int64_t>& rows,
                    const std::vector<int32_t>& targets, const std::vector<float>& dnll, float* dhidden,
                    float* dlm_head) {
    if (rows.empty()) return Status::Ok();
    return head_run(nll, hidden, rows, targets, &dnll, dhidden, dlm_head);
  }

  Status head_run(float* nll_host, const float* hidden, const std::vector<int64_t>& rows,
                  const std::vector<int32_t>& targets, const std::vector<float>* dnll, float* dhidden,
                  float* dlm_head) {
    const int64_t M = int64_t(rows.size()), C = cfg_.hidden_size, V = cfg_.vocab_size;
    const int64_t chunk = head_chunk(M);
    Carve cv;
    const size_t o_rows = cv.add<int64_t>(M), o_t = cv.add<int32_t>(M), o_dnll = cv.add<float>(dnll ? M : 0),
                 o_nll = cv.add<float>(M), o_h = cv.add<float>(chunk * C), o_l = cv.add<float>(chunk * V),
                 o_dh = cv.add<float>(dnll ? chunk * C : 0);
    MEMQ_RETURN_IF_ERROR(head_.ensure(cv.off, opts_.reserve_bytes, stream_, "LM head chunk"));
    int64_t* d_rows = at<int64_t>(head_, o_rows);
    int32_t* d_t = at<int32_t>(head_, o_t);
    float* d_dnll = at<float>(head_, o_dnll);
    float* d_nll = at<float>(head_, o_nll);
    float* h = at<float>(head_, o_h);
    float* logits = at<float>(head_, o_l);
    float* dh = at<float>(head_, o_dh);
    MEMQ_RETURN_IF_ERROR(dev::copy_to_device(d_rows, rows.data(), size_t(M) * 8, stream_));
    MEMQ_RETURN_IF_ERROR(dev::copy_to_device(d_t, targets.data(), size_t(M) * 4, stream_));
    if (dnll) MEMQ_RETURN_IF_ERROR(dev::copy_to_device(d_dnll, dnll->data(), size_t(M) * 4, stream_));
    for (int64_t m0 = 0; m0 < M; m0 += chunk) {
      const int64_t mc = std::min(chunk, M - m0);
      MEMQ_RETURN_IF_ERROR(dev::gather_rows(h, hidden, d_rows + m0, mc, C, stream_));
      MEMQ_RETURN_IF_ERROR(dev::matmul_forward(logits, h, w_.lm_head, nullptr, mc, C, V, prec_, stream_));
      MEMQ_RETURN_IF_ERROR(dev::crossentropy_forward(d_nll + m0, logits, d_t + m0, mc, V, stream_));
      if (dnll) {
        MEMQ_RETURN_IF_ERROR(dev::crossentropy_backward(logits, logits, d_t + m0, d_dnll + m0, mc, V, stream_));
        if (dhidden) MEMQ_RETURN_IF_ERROR(zero(dh, mc * C));
        MEMQ_RETURN_IF_ERROR(dev::matmul_backward(dhidden ? dh : nullptr, dlm_head, nullptr, logits, h, w_.lm_head, mc, C,
                                                  V, prec_, ws(), stream_));
        if (dhidden) MEMQ_RETURN_IF_ERROR(dev::scatter_add_rows(dhidden, dh, d_rows + m0, mc, C, stream_));
      }
    }
    return dev::copy_to_host(nll_host, d_nll, size_t(M) * 4, stream_);
  }

  // Copies rows `rows` of a device [*, C] array into dst (device, contiguous).
  Status gather_host_rows(float* dst, const float* src, const std::vector<int64_t>& rows) {
    const int64_t M = int64_t(rows.size()), C = cfg_.hidden_size;
    if (M == 0) return Status::Ok();
    Buffer idx;
    MEMQ_RETURN_IF_ERROR(idx.ensure(size_t(M) * 8, opts_.reserve_bytes, stream_, "row indices"));
    MEMQ_RETURN_IF_ERROR(dev::copy_to_device(idx.as<void>(), rows.data(), size_t(M) * 8, stream_));
    MEMQ_RETURN_IF_ERROR(dev::gather_rows(dst, src, idx.as<int64_t>(), M, C, stream_));
    return dev::stream_sync(stream_);  // idx is freed on return
  }

  struct VecOff {
    int64_t offset, packed, n;
  };
  struct LoraSlot {
    uint64_t version = 0;
    int64_t n = 0;
    uint64_t last_use = 0;
    Buffer buf;
  };

  ModelConfig cfg_;
  std::vector<ParamTensor> layout_;
  int64_t total_ = 0, nvec_ = 0;
  std::vector<VecOff> vec_off_;
  LlmDeviceOptions opts_;
  GemmPrecision prec_ = GemmPrecision::kBF16;
  std::string name_;
  dev::Stream stream_ = nullptr;
  mutable std::mutex mu_;
  Buffer weights_, vec32_, ws_, rope_, io_, acts_, work_, head_, cache_, grads_;
  int64_t rope_rows_ = 0;
  DevWeights w_;
  LoraSlot lora_[4];
  uint64_t use_clock_ = 0;
  float* kfull_ = nullptr;
  float* vfull_ = nullptr;
};

}  // namespace

Status create_cuda_engine(const Model& model, const LlmDeviceOptions& opts, std::unique_ptr<DeviceEngine>* out) {
  if (!out) return Status::Invalid("out is null");
  out->reset();
  return CudaEngine::create(model, opts, out);
}

}  // namespace llm
}  // namespace memq

#endif  // MEMQ_HAVE_CUDA
