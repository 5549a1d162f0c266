// Where the transformer engine runs (memq/llm/device.h): names, the device selection with its
// cached probe and self-test, and the self-test itself. Host code, compiled into memq_core in
// every build; without MEMQ_HAVE_CUDA create_cuda_engine() and the self-test report "CUDA support
// not compiled in" (and selection falls back to the CPU for "auto").
#include <cmath>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "memq/cuda/cuda_backend.h"
#include "memq/llm/device.h"
#include "memq/llm/lora.h"
#include "memq/llm/model.h"

namespace memq {
namespace llm {

const char* llm_device_name(LlmDevice d) { return d == LlmDevice::kCuda ? "cuda" : "cpu"; }

const char* llm_precision_name(LlmPrecision p) { return p == LlmPrecision::kFP32 ? "fp32" : "bf16"; }

bool llm_precision_from_name(const std::string& name, LlmPrecision* out) {
  if (name == "bf16") *out = LlmPrecision::kBF16;
  else if (name == "fp32") *out = LlmPrecision::kFP32;
  else return false;
  return true;
}

int64_t cuda_weight_bytes(const ModelConfig& cfg, LlmPrecision precision) {
  int64_t total = 0, vec = 0;
  for (const auto& t : param_layout(cfg, &total))
    if (t.shape.size() == 1) vec += t.numel();
  // bf16: every tensor in bf16 (host layout) + the 1-D ones (norms, biases) again in float32.
  return precision == LlmPrecision::kFP32 ? 4 * total : 2 * total + 4 * vec;
}

namespace {

struct DeviceProbe {
  Status st;
  CudaDeviceInfo info;
};
const DeviceProbe& device_probe() {
  static DeviceProbe p;
  static std::once_flag once;
  std::call_once(once, [] { p.st = cuda_device_info(&p.info); });
  return p;
}

struct SelfTestProbe {
  Status st;
  std::string report;
};
const SelfTestProbe& self_test_probe() {
  static SelfTestProbe p;
  static std::once_flag once;
  std::call_once(once, [] { p.st = llm_cuda_self_test(&p.report); });
  return p;
}

}  // namespace

Status select_llm_device(const std::string& requested, LlmDeviceChoice* out, bool require_self_test) {
  if (!out) return Status::Invalid("out is null");
  LlmDeviceChoice c;
  c.requested = requested;
  if (requested == "cpu") {
    c.device = LlmDevice::kCpu;
    c.reason = "cpu: requested";
    *out = c;
    return Status::Ok();
  }
  if (requested != "auto" && requested != "cuda")
    return Status::Invalid("device must be 'cpu', 'cuda' or 'auto', got '" + requested + "'");
  const DeviceProbe& p = device_probe();
  std::string why;
  if (!p.st.ok()) {
    why = p.info.reason.empty() ? p.st.message() : p.info.reason;
  } else if (require_self_test) {
    const SelfTestProbe& t = self_test_probe();
    c.self_test_report = t.report;
    if (!t.st.ok()) why = "the LLM self-test against the CPU engine failed: " + t.st.message();
  }
  if (why.empty()) {
    c.device = LlmDevice::kCuda;
    c.reason = requested + ": " + p.info.name +
               (require_self_test ? " passed the LLM self-test against the CPU engine" : " (self-test not required)");
    *out = c;
    return Status::Ok();
  }
  if (requested == "cuda") return Status::Unavailable("device 'cuda' requested but unusable: " + why);
  c.device = LlmDevice::kCpu;
  c.reason = "auto: CUDA not used: " + why;
  *out = c;
  return Status::Ok();
}

#ifndef MEMQ_HAVE_CUDA

Status create_cuda_engine(const Model&, const LlmDeviceOptions&, std::unique_ptr<DeviceEngine>* out) {
  if (out) out->reset();
  return Status::Unavailable("CUDA support not compiled in");
}

Status llm_cuda_self_test(std::string* report) {
  if (report) *report = "llm cuda self-test: not run: CUDA support not compiled in";
  return Status::Unavailable("CUDA support not compiled in");
}

#else  // MEMQ_HAVE_CUDA

namespace {

struct Report {
  std::string text;
  int failed = 0;
  void line(const std::string& s) { text += s + "\n"; }
  void check(const std::string& what, const Status& st, const std::string& diff) {
    if (!st.ok()) {
      ++failed;
      line("FAIL " + what + ": " + st.message());
    } else if (!diff.empty()) {
      ++failed;
      line("FAIL " + what + ": differs from the CPU engine: " + diff);
    } else {
      line("ok   " + what);
    }
  }
};

// Elementwise |a - b| <= atol + rtol |b| (NaN never passes).
std::string compare(const float* a, const float* b, size_t n, double rtol, double atol, const char* what) {
  for (size_t i = 0; i < n; ++i) {
    const double x = a[i], y = b[i];
    if (!(std::fabs(x - y) <= atol + rtol * std::fabs(y))) {
      char buf[160];
      std::snprintf(buf, sizeof buf, "%s[%zu]: %.7g vs CPU %.7g", what, i, x, y);
      return buf;
    }
  }
  return "";
}

// ||a - b|| <= tol ||b|| (L2; NaN never passes).
std::string compare_rel(const std::vector<float>& a, const std::vector<float>& b, double tol, const char* what) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num += (double(a[i]) - double(b[i])) * (double(a[i]) - double(b[i]));
    den += double(b[i]) * double(b[i]);
  }
  const double rel = std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
  if (a.size() == b.size() && rel <= tol) return "";
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s: relative L2 difference %.3g (allowed %.3g)", what, rel, tol);
  return buf;
}

}  // namespace

Status llm_cuda_self_test(std::string* report) {
  Report R;
  CudaDeviceInfo info;
  Status st = cuda_device_info(&info);
  if (!st.ok()) {
    if (report) *report = "llm cuda self-test: not run: " + info.reason;
    return st;
  }
  R.line("llm cuda self-test on " + info.name);
  ModelConfig cfg;
  cfg.model_type = "qwen2";
  cfg.vocab_size = 97;
  cfg.hidden_size = 64;
  cfg.intermediate_size = 96;
  cfg.num_hidden_layers = 2;
  cfg.num_attention_heads = 4;
  cfg.num_key_value_heads = 2;
  cfg.rope_theta = 10000.0;
  std::unique_ptr<Model> cpu;
  st = Model::create_random(cfg, 7, 0.1f, &cpu);
  if (!st.ok()) return Status::Internal("llm self-test: " + st.message());
  const std::vector<int32_t> tok = {1, 5, 9, 2, 44, 3, 7, 7, 8, 96, 0, 12, 13, 60, 61};
  const std::vector<int64_t> off = {0, 6, 7, 15};
  std::vector<float> wts(tok.size(), 0.0f);
  for (size_t i = 0; i < tok.size(); ++i) wts[i] = (i == 0 || i == 6 || i == 7) ? 0.0f : 0.25f + 0.1f * float(i % 4);
  TokenBatch batch;
  batch.tokens = tok.data();
  batch.offsets = off.data();
  batch.n_seqs = 3;
  batch.weights = wts.data();

  LoraConfig lc;
  lc.r = 4;
  lc.target_modules = {"q_proj", "v_proj", "o_proj", "down_proj"};
  std::unique_ptr<LoraAdapter> lora;
  st = LoraAdapter::create(cfg, lc, 11, &lora);
  if (!st.ok()) return Status::Internal("llm self-test: " + st.message());
  for (int64_t i = 0; i < lora->size(); ++i) lora->params()[i] += 0.05f * float(std::sin(0.7 * double(i)));  // B != 0
  lora->touch();

  std::vector<float> ref_lp(tok.size()), ref_emb(size_t(3 * cfg.hidden_size));
  st = cpu->token_logprobs(ref_lp.data(), batch, lora.get());
  if (st.ok()) st = cpu->embed_mean(ref_emb.data(), batch, lora.get());
  std::vector<float> ref_grad(size_t(lora->size()), 0.0f);
  double ref_loss = 0.0;
  if (st.ok()) st = cpu->forward_backward(batch, LossNorm::kWeightSum, lora.get(), ref_grad.data(), nullptr, 1.0f, &ref_loss);
  const std::vector<int32_t> pt = {3, 4, 5, 6, 1, 2};
  const std::vector<int64_t> po = {0, 4, 6}, cg = {0, 3, 4};
  const std::vector<int32_t> ct = {7, 8, 9, 10, 11, 12, 13};
  const std::vector<int64_t> co = {0, 2, 3, 5, 7};
  ScoreRequest req;
  req.prompt_tokens = pt.data();
  req.prompt_offsets = po.data();
  req.n_prompts = 2;
  req.cand_tokens = ct.data();
  req.cand_offsets = co.data();
  req.cand_groups = cg.data();
  req.n_cands = 4;
  std::vector<float> ref_sc(4);
  if (st.ok()) st = cpu->score(ref_sc.data(), nullptr, req, lora.get());
  if (!st.ok()) return Status::Internal("llm self-test: the CPU engine failed: " + st.message());

  for (LlmPrecision prec : {LlmPrecision::kFP32, LlmPrecision::kBF16}) {
    const bool fp32 = prec == LlmPrecision::kFP32;
    const std::string tag = std::string(" [") + llm_precision_name(prec) + "]";
    // Tolerances: 3xTF32 products are float32-accurate; bf16 rounds every product operand.
    const double atol = fp32 ? 2e-4 : 6e-2, gtol = fp32 ? 2e-3 : 8e-2;
    std::unique_ptr<Model> dev;
    st = cpu->clone(&dev);
    LlmDeviceOptions o;
    o.device = "cuda";
    o.precision = prec;
    o.require_self_test = false;
    if (st.ok()) st = dev->set_device(o);
    if (!st.ok()) {
      R.check("place the model on the device" + tag, st, "");
      continue;
    }
    std::vector<float> lp(tok.size(), NAN), emb(ref_emb.size(), NAN), sc(4, NAN), grad(ref_grad.size(), 0.0f);
    st = dev->token_logprobs(lp.data(), batch, lora.get());
    R.check("token log-probs" + tag, st, st.ok() ? compare(lp.data(), ref_lp.data(), lp.size(), 0.0, atol, "logprob") : "");
    st = dev->score(sc.data(), nullptr, req, lora.get());
    R.check("score, shared prompt" + tag, st, st.ok() ? compare(sc.data(), ref_sc.data(), sc.size(), 0.0, 3 * atol, "score") : "");
    st = dev->embed_mean(emb.data(), batch, lora.get());
    R.check("mean-pooled embeddings" + tag, st,
            st.ok() ? compare(emb.data(), ref_emb.data(), emb.size(), 0.0, fp32 ? 1e-3 : 1e-1, "embedding") : "");
    double loss = 0.0;
    st = dev->forward_backward(batch, LossNorm::kWeightSum, lora.get(), grad.data(), nullptr, 1.0f, &loss);
    std::string diff;
    if (st.ok()) {
      diff = compare_rel(grad, ref_grad, gtol, "lora gradient");
      if (diff.empty() && !(std::fabs(loss - ref_loss) <= atol)) diff = "loss " + std::to_string(loss) + " vs CPU " + std::to_string(ref_loss);
    }
    R.check("weighted loss and LoRA gradient" + tag, st, diff);
    // One trainer step on each side from the same adapter.
    std::unique_ptr<LoraAdapter> a1, a2;
    Status s1 = LoraAdapter::create(cfg, lc, 11, &a1), s2 = LoraAdapter::create(cfg, lc, 11, &a2);
    if (s1.ok() && s2.ok()) {
      std::copy(lora->params(), lora->params() + lora->size(), a1->params());
      std::copy(lora->params(), lora->params() + lora->size(), a2->params());
      a1->touch();
      a2->touch();
      // eps = 1 keeps the update ~ lr g (linear in g), so that it is as close as the gradients are.
      TrainOptions to;
      to.adamw.lr = 1e-2;
      to.adamw.eps = 1.0;
      to.adamw.weight_decay = 0.01;
      LoraTrainer tc(cpu.get(), a1.get(), to), td(dev.get(), a2.get(), to);
      s1 = tc.accumulate(batch);
      if (s1.ok()) s1 = tc.step();
      s2 = td.accumulate(batch);
      if (s2.ok()) s2 = td.step();
      if (!s1.ok()) return Status::Internal("llm self-test: the CPU trainer failed: " + s1.message());
      std::vector<float> p1(a1->params(), a1->params() + a1->size()), p2(a2->params(), a2->params() + a2->size());
      // Compare the updates (p_after - p_before).
      for (size_t i = 0; i < p1.size(); ++i) {
        p1[i] -= lora->params()[i];
        p2[i] -= lora->params()[i];
      }
      R.check("LoRA AdamW step" + tag, s2, s2.ok() ? compare_rel(p2, p1, 2 * gtol, "update") : "");
    }
  }
  if (report) *report = R.text;
  if (R.failed) return Status::Internal("llm cuda self-test: " + std::to_string(R.failed) + " check(s) failed:\n" + R.text);
  return Status::Ok();
}

#endif  // MEMQ_HAVE_CUDA

}  // namespace llm
}  // namespace memq
