// memq's side of the GPU LoRA benchmark (bench/gpu/llm.sh; issue #20), no Node needed:
//   * the LLM self-test (the CUDA engine against the CPU engine on a tiny model),
//   * LoRA training (the MATH §11 weighted loss, r and targets as PEFT's, AdamW with clipping)
//     on random models with the real shapes of Qwen2.5-0.5B / 1.5B: tokens/s, seconds per step
//     and MFU at sequence length --seq with the largest batch that fits (or --batch),
//   * scoring (prompts once, K candidates each over the prompt's cached K/V): tokens/s.
// Writes one JSON file (--out) that bench/gpu/llm_torch.py merges with PyTorch + PEFT's numbers.
//
//   bench_llm_cuda --out memq.json [--models 0.5b,1.5b] [--seq 512] [--batch auto|N] [--steps 5]
//                  [--warmup 1] [--precision bf16|fp32] [--r 8] [--targets q_proj,v_proj]
//                  [--max-batch 64] [--tiny] [--no-score]
// --tiny: a small model (fast; what CI / a CPU-only machine can at least start).
// Exit status: 0 ok, 2 usage, 3 no usable CUDA device (the JSON says why), 1 a failure.
//
// FLOPs per trained token (the convention of bench_llm.cpp): forward at the average causal
// context T/2 without the LM head, twice (forward + the input-gradient backward of a frozen base;
// no weight gradients), plus the LM head on the weighted rows (forward + backward). MFU divides
// by the device's dense bf16 peak (table below; 0 = unknown device, MFU not reported).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "memq/cuda/cuda_backend.h"
#include "memq/json.h"
#include "memq/llm/device.h"
#include "memq/llm/lora.h"
#include "memq/llm/model.h"
#include "memq/thread_pool.h"

using namespace memq;
using namespace memq::llm;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string x;
  while (std::getline(ss, x, ','))
    if (!x.empty()) out.push_back(x);
  return out;
}

// The real shapes (Qwen2.5 config.json), tied embeddings, q/k/v biases.
bool shape_of(const std::string& name, ModelConfig* c) {
  c->model_type = "qwen2";
  c->vocab_size = 151936;
  c->rope_theta = 1000000.0;
  c->rms_norm_eps = 1e-6;
  c->tie_word_embeddings = true;
  c->max_position_embeddings = 32768;
  if (name == "0.5b") {
    c->hidden_size = 896;
    c->intermediate_size = 4864;
    c->num_hidden_layers = 24;
    c->num_attention_heads = 14;
    c->num_key_value_heads = 2;
  } else if (name == "1.5b") {
    c->hidden_size = 1536;
    c->intermediate_size = 8960;
    c->num_hidden_layers = 28;
    c->num_attention_heads = 12;
    c->num_key_value_heads = 2;
  } else if (name == "tiny") {
    c->vocab_size = 1000;
    c->hidden_size = 128;
    c->intermediate_size = 256;
    c->num_hidden_layers = 2;
    c->num_attention_heads = 4;
    c->num_key_value_heads = 2;
  } else {
    return false;
  }
  return true;
}

// Dense bf16 tensor-core peak (FLOP/s) by device name; 0 when unknown.
double bf16_peak(const std::string& name) {
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  if (has("H200")) return 989.4e12;
  if (has("H100") && (has("PCIe") || has("PCIE"))) return 756.0e12;
  if (has("H100")) return 989.4e12;  // SXM / HBM3
  if (has("A100")) return 312.0e12;
  return 0.0;
}

// Weights ~ U(-a, a) with std 0.02, norms 1, biases 0; in parallel (create_random is serial).
void fill_weights(Model* m) {
  const double a = 0.02 * std::sqrt(3.0);
  for (const auto& t : m->layout()) {
    float* d = m->param_data() + t.offset;
    const bool norm = t.name.size() >= 11 && t.name.compare(t.name.size() - 11, 11, "norm.weight") == 0;
    const bool bias = t.name.size() >= 5 && t.name.compare(t.name.size() - 5, 5, ".bias") == 0;
    const int64_t n = t.numel();
    const uint64_t salt = uint64_t(t.offset) * 0x9E3779B97F4A7C15ull;
    parallel_for(0, n, 1 << 20, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        if (norm) {
          d[i] = 1.0f;
        } else if (bias) {
          d[i] = 0.0f;
        } else {
          uint64_t z = salt + uint64_t(i) * 0xBF58476D1CE4E5B9ull;  // splitmix64 of (tensor, index)
          z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
          z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
          z ^= z >> 31;
          d[i] = float((double(z >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0) * a);
        }
      }
    });
  }
}

std::vector<int32_t> tokens(size_t n, int64_t V, uint64_t seed) {
  Rng r(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = int32_t(r.next() % uint64_t(V));
  return t;
}

// Device bytes one training sequence of T tokens needs (activations kept for backward, backward
// scratch), as the engine allocates them (engine.cpp: alloc_acts, alloc_backward).
double bytes_per_sequence(const ModelConfig& c, int64_t T, int64_t r) {
  const double C = double(c.hidden_size), I = double(c.intermediate_size), D = double(c.dim_head());
  const double H = double(c.num_attention_heads), QD = H * D, KD = double(c.num_key_value_heads) * D;
  const double L = double(c.num_hidden_layers), att = H * double(T);  // attention probabilities per token
  // floats per token: kept activations (residuals, norms, q/k/v, probabilities, attention output,
  // MLP, LoRA t) and the backward scratch (one layer of gradients, one layer of softmax gradient)
  const double per_layer = C + 1 + QD + 2 * KD + att + QD + 2 * C + 1 + 3 * I + 7 * double(r);
  const double acts = (L + 1) * C + L * per_layer + 2 * C + 1;
  const double bw = 3 * C + 3 * I + 3 * QD + 4 * KD + att + double(r);
  return 4.0 * double(T) * (acts + bw);
}

struct Args {
  std::string out, models = "0.5b,1.5b", batch = "auto", precision = "bf16", targets = "q_proj,v_proj";
  int64_t seq = 512, steps = 5, warmup = 1, r = 8, max_batch = 64;
  bool tiny = false, score = true;
};

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_llm_cuda: %s needs a value\n", k.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (k == "--out") a.out = val();
    else if (k == "--models") a.models = val();
    else if (k == "--seq") a.seq = std::atoll(val().c_str());
    else if (k == "--batch") a.batch = val();
    else if (k == "--steps") a.steps = std::atoll(val().c_str());
    else if (k == "--warmup") a.warmup = std::atoll(val().c_str());
    else if (k == "--precision") a.precision = val();
    else if (k == "--r") a.r = std::atoll(val().c_str());
    else if (k == "--targets") a.targets = val();
    else if (k == "--max-batch") a.max_batch = std::atoll(val().c_str());
    else if (k == "--tiny") a.tiny = true;
    else if (k == "--no-score") a.score = false;
    else {
      std::fprintf(stderr,
                   "usage: bench_llm_cuda --out FILE [--models 0.5b,1.5b] [--seq 512] [--batch auto|N] [--steps 5]\n"
                   "       [--warmup 1] [--precision bf16|fp32] [--r 8] [--targets q_proj,v_proj] [--max-batch 64]\n"
                   "       [--tiny] [--no-score]\n");
      return 2;
    }
  }
  LlmPrecision prec;
  if (a.out.empty() || !llm_precision_from_name(a.precision, &prec) || a.seq < 2 || a.steps < 1 || a.r < 1 ||
      a.warmup < 0 || a.max_batch < 1) {
    std::fprintf(stderr, "bench_llm_cuda: bad arguments (--out is required; --precision bf16|fp32; --seq >= 2)\n");
    return 2;
  }
  if (a.tiny) a.models = "tiny";

  Json result = Json::object();
  result.set("tool", Json::string("bench_llm_cuda"));
  result.set("precision", Json::string(a.precision));
  result.set("seq", Json::integer(a.seq));
  result.set("lora_r", Json::integer(a.r));
  result.set("lora_targets", Json::string(a.targets));
  auto write = [&]() {
    FILE* f = std::fopen(a.out.c_str(), "w");
    if (!f) {
      std::fprintf(stderr, "bench_llm_cuda: cannot write %s\n", a.out.c_str());
      return false;
    }
    const std::string s = result.dump(2);
    std::fwrite(s.data(), 1, s.size(), f);
    std::fputc('\n', f);
    std::fclose(f);
    return true;
  };

  CudaDeviceInfo info;
  Status st = cuda_device_info(&info);
  result.set("cuda_compiled", Json::boolean(cuda_compiled()));
  if (!st.ok()) {
    std::printf("bench_llm_cuda: no usable CUDA device: %s\n", info.reason.c_str());
    result.set("error", Json::string("no usable CUDA device: " + info.reason));
    write();
    return 3;
  }
  const double peak = bf16_peak(info.name);
  result.set("device", Json::string(info.name));
  result.set("device_total_bytes", Json::integer(info.total_bytes));
  result.set("bf16_peak_flops", Json::number(peak));
  std::printf("bench_llm_cuda: %s (cc %d.%d, %d SMs, %.1f GiB), precision %s, seq %lld\n", info.name.c_str(),
              info.cc_major, info.cc_minor, info.sm_count, double(info.total_bytes) / (1 << 30), a.precision.c_str(),
              (long long)a.seq);
  {
    std::string report;
    const double t0 = now();
    Status s = llm_cuda_self_test(&report);
    std::printf("%s(self-test %.1f s)\n", report.c_str(), now() - t0);
    result.set("self_test", Json::string(s.ok() ? "passed" : "failed: " + s.message()));
    result.set("self_test_report", Json::string(report));
  }

  Json runs = Json::array();
  int rc = 0;
  for (const std::string& name : split(a.models)) {
    ModelConfig cfg;
    if (!shape_of(name, &cfg)) {
      std::fprintf(stderr, "bench_llm_cuda: unknown model '%s' (0.5b, 1.5b, tiny)\n", name.c_str());
      return 2;
    }
    Json run = Json::object();
    run.set("model", Json::string(name == "tiny" ? "tiny" : "qwen2.5-" + name + " shape (random weights)"));
    run.set("model_key", Json::string(name));
    auto fail = [&](const std::string& what, const Status& s) {
      std::printf("  %s: %s: %s\n", name.c_str(), what.c_str(), s.message().c_str());
      run.set("error", Json::string(what + ": " + s.message()));
      runs.push(std::move(run));
      rc = 1;
    };
    double t0 = now();
    std::unique_ptr<Model> m;
    st = Model::create_zeros(cfg, &m);
    if (!st.ok()) {
      fail("create", st);
      continue;
    }
    fill_weights(m.get());
    run.set("params", Json::integer(m->num_params()));
    run.set("host_init_s", Json::number(now() - t0));
    t0 = now();
    LlmDeviceOptions o;
    o.device = "cuda";
    o.precision = prec;
    o.require_self_test = false;  // reported above; the timing runs regardless
    st = m->set_device(o);
    if (!st.ok()) {
      fail("place on the device", st);
      continue;
    }
    run.set("upload_s", Json::number(now() - t0));
    run.set("engine", Json::string(m->engine()->description()));

    LoraConfig lc;
    lc.r = a.r;
    lc.alpha = 2.0 * double(a.r);
    lc.target_modules = split(a.targets);
    std::unique_ptr<LoraAdapter> lora;
    st = LoraAdapter::create(cfg, lc, 1, &lora);
    if (!st.ok()) {
      fail("adapter", st);
      continue;
    }
    run.set("lora_params", Json::integer(lora->size()));
    const int64_t T = a.seq, V = cfg.vocab_size;
    int64_t B = 0;
    if (a.batch == "auto") {
      int64_t free_b = 0, total_b = 0;
      CudaDeviceInfo now_info;
      (void)cuda_device_info(&now_info);
      free_b = now_info.free_bytes;
      total_b = now_info.total_bytes;
      const double per = bytes_per_sequence(cfg, T, a.r);
      const double avail = double(free_b) - double(o.reserve_bytes) - double(o.logits_chunk_bytes) - 2.0 * (1 << 30);
      B = std::max<int64_t>(1, std::min<int64_t>(a.max_batch, int64_t(avail / per)));
      run.set("batch_rule", Json::string("auto: (free - reserve - logits chunk - 2 GiB) / estimated bytes per sequence"));
      run.set("bytes_per_sequence_estimate", Json::number(per));
      (void)total_b;
    } else {
      B = std::atoll(a.batch.c_str());
      if (B < 1) {
        std::fprintf(stderr, "bench_llm_cuda: --batch must be auto or >= 1\n");
        return 2;
      }
    }
    // Batch: B sequences of T tokens; loss on the second half (the "action"), prompt weight 0.
    TrainOptions to;
    to.adamw.lr = 1e-4;
    to.clip_norm = 1.0;
    double step_s = 0.0, loss_first = 0.0, loss_last = 0.0;
    for (;;) {  // halve the batch on OutOfMemory
      auto tk = tokens(size_t(B * T), V, 7);
      std::vector<int64_t> off;
      std::vector<float> w(size_t(B * T), 0.0f);
      for (int64_t b = 0; b <= B; ++b) off.push_back(b * T);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = T / 2; t < T; ++t) w[size_t(b * T + t)] = 1.0f;
      TokenBatch batch{tk.data(), off.data(), B, w.data()};
      LoraTrainer tr(m.get(), lora.get(), to);
      StepStats ss;
      st = Status::Ok();
      for (int64_t i = 0; i < a.warmup && st.ok(); ++i) {
        st = tr.accumulate(batch);
        if (st.ok()) st = tr.step(&ss);
        if (st.ok() && i == 0) loss_first = ss.loss;
      }
      double t1 = now();
      for (int64_t i = 0; i < a.steps && st.ok(); ++i) {
        st = tr.accumulate(batch);
        if (st.ok()) st = tr.step(&ss);
      }
      step_s = (now() - t1) / double(a.steps);
      loss_last = ss.loss;
      if (st.code() == StatusCode::kOutOfMemory && B > 1 && a.batch == "auto") {
        std::printf("  %s: batch %lld does not fit (%s); halving\n", name.c_str(), (long long)B, st.message().c_str());
        B /= 2;
        m->engine()->trim();
        continue;
      }
      break;
    }
    if (!st.ok()) {
      fail("LoRA training", st);
      continue;
    }
    const double head = 2.0 * double(cfg.hidden_size) * double(V);
    const double fwd = m->forward_flops_per_token(T / 2) - head;
    const double flops_per_token = 2.0 * fwd + 2.0 * head * 0.5;  // half the tokens carry loss
    const double tps = double(B * T) / step_s;
    run.set("batch", Json::integer(B));
    run.set("train_step_s", Json::number(step_s));
    run.set("train_tokens_per_s", Json::number(tps));
    run.set("train_flops_per_token", Json::number(flops_per_token));
    run.set("train_tflops", Json::number(tps * flops_per_token * 1e-12));
    if (peak > 0) run.set("train_mfu", Json::number(tps * flops_per_token / peak));
    run.set("loss_first", Json::number(loss_first));
    run.set("loss_last", Json::number(loss_last));
    run.set("device_bytes", Json::integer(m->engine()->device_bytes()));
    std::printf("  %-5s train: batch %lld x %lld, %.3f s/step, %.0f tokens/s, %.1f TFLOP/s%s\n", name.c_str(),
                (long long)B, (long long)T, step_s, tps, tps * flops_per_token * 1e-12,
                peak > 0 ? (", MFU " + std::to_string(100.0 * tps * flops_per_token / peak).substr(0, 5) + "%").c_str()
                         : "");
    if (a.score) {
      // scoring: 64 prompts of T/2 tokens, 8 candidates of 8 tokens each (prompt run once)
      const int64_t P = std::max<int64_t>(1, T / 2), NP = 64, K = 8, A = 8;
      auto pt = tokens(size_t(NP * P), V, 2), ct = tokens(size_t(NP * K * A), V, 3);
      std::vector<int64_t> poff, coff, groups;
      for (int64_t b = 0; b <= NP; ++b) poff.push_back(b * P), groups.push_back(b * K);
      for (int64_t c = 0; c <= NP * K; ++c) coff.push_back(c * A);
      ScoreRequest req;
      req.prompt_tokens = pt.data();
      req.prompt_offsets = poff.data();
      req.n_prompts = NP;
      req.cand_tokens = ct.data();
      req.cand_offsets = coff.data();
      req.cand_groups = groups.data();
      req.n_cands = NP * K;
      std::vector<float> scores(size_t(NP * K));
      st = m->score(scores.data(), nullptr, req, lora.get());  // warm-up
      const int reps = 3;
      const double t1 = now();
      for (int i = 0; i < reps && st.ok(); ++i) st = m->score(scores.data(), nullptr, req, lora.get());
      const double sec = (now() - t1) / reps;
      if (st.ok()) {
        run.set("score_prompts", Json::integer(NP));
        run.set("score_prompt_tokens", Json::integer(P));
        run.set("score_candidates_per_prompt", Json::integer(K));
        run.set("score_candidate_tokens", Json::integer(A));
        run.set("score_s", Json::number(sec));
        // processed tokens (prompt once + candidates) and, for comparison with a scorer that runs
        // every prompt+candidate sequence in full, the candidate-sequence tokens
        run.set("score_tokens_per_s", Json::number(double(NP * P + NP * K * A) / sec));
        run.set("score_candidates_per_s", Json::number(double(NP * K) / sec));
        std::printf("  %-5s score: %lld prompts x %lld tokens + %lld x %lld candidates: %.3f s, %.0f candidates/s\n",
                    name.c_str(), (long long)NP, (long long)P, (long long)K, (long long)A, sec, double(NP * K) / sec);
      } else {
        run.set("score_error", Json::string(st.message()));
        rc = 1;
      }
    }
    runs.push(std::move(run));
  }
  result.set("runs", std::move(runs));
  if (!write()) return 1;
  std::printf("bench_llm_cuda: wrote %s\n", a.out.c_str());
  return rc;
}
