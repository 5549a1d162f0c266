// Transformer engine throughput on the CPU (the baseline the GPU engine is measured against):
//   - the GEMM the engine runs (memq::llm::sgemm_nt) vs OpenBLAS' sgemm on an MLP-shaped product
//   - scoring (prompt once + K candidates over its cached K/V), plain forward (token log-probs),
//     and LoRA training (forward + backward into A/B + AdamW) in tokens/s, with the forward
//     FLOPs per token and achieved GFLOP/s,
// for a tiny model (hidden 64, 2 layers) and a ~30M-parameter one (hidden 512, 8 layers).
//
//   build/bench_llm [--quick] [--json] [--threads N] [--gemm-only]
// --gemm-only: the GEMM part alone (memq bench llm measures the machine's ceiling with it, in the same run).
// The table goes to stdout (stderr with --json, which prints the JSON result on stdout).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "memq/cpu_features.h"
#include "memq/json.h"
#include "memq/llm/gemm.h"
#include "memq/llm/lora.h"
#include "memq/llm/model.h"
#include "memq/thread_pool.h"

#ifdef MEMQ_HAVE_CBLAS
#include <cblas.h>
#endif

using namespace memq;
using namespace memq::llm;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

template <class F>
double time_call(F&& f, double min_time) {
  f();  // warm-up
  int reps = 0;
  const double t0 = now();
  double t;
  do {
    f();
    ++reps;
    t = now() - t0;
  } while (t < min_time);
  return t / reps;
}

struct Spec {
  const char* name;
  ModelConfig cfg;
};

ModelConfig make_cfg(int64_t V, int64_t C, int64_t I, int64_t L, int64_t H, int64_t KV) {
  ModelConfig c;
  c.model_type = "qwen2";
  c.vocab_size = V;
  c.hidden_size = C;
  c.intermediate_size = I;
  c.num_hidden_layers = L;
  c.num_attention_heads = H;
  c.num_key_value_heads = KV;
  c.tie_word_embeddings = true;
  c.rope_theta = 1e6;
  return c;
}

std::vector<int32_t> tokens(size_t n, int64_t V, uint64_t seed) {
  Rng r(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = int32_t(r.next() % uint64_t(V));
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, json = false, gemm_only = false;
  int threads = 0;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--json")) json = true;
    else if (!std::strcmp(argv[i], "--gemm-only")) gemm_only = true;
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: bench_llm [--quick] [--json] [--threads N] [--gemm-only]\n");
      return 2;
    }
  }
  if (threads > 0) set_num_threads(threads);
  FILE* log = json ? stderr : stdout;
  const double min_time = quick ? 0.2 : 1.0;
  Json result = Json::object();
  result.set("threads", Json::integer(num_threads()));
  result.set("gemm_variant", Json::string(gemm_variant()));
  result.set("simd", Json::string(simd_name(simd_level())));
  std::fprintf(log, "bench_llm: %d threads, gemm kernels %s, %s\n", num_threads(), gemm_variant(), blas_name().c_str());

  // ---- GEMM: the up/gate projection of the 30M model for 1024 tokens: [1024 x 512] x [1536 x 512]^T
  {
    const int64_t M = 1024, N = 1536, K = 512;
    std::vector<float> a(size_t(M * K)), b(size_t(N * K)), c(size_t(M * N));
    Rng r(1);
    for (auto& x : a) x = float(r.uniform() - 0.5);
    for (auto& x : b) x = float(r.uniform() - 0.5);
    const double flops = 2.0 * M * N * K;
    const double t_memq = time_call([&] { sgemm_nt(c.data(), N, a.data(), K, b.data(), K, M, N, K, false); }, min_time);
    Json g = Json::object();
    g.set("shape", Json::string("1024x1536x512 (A B^T)"));
    g.set("memq_gflops", Json::number(flops / t_memq * 1e-9));
    std::fprintf(log, "\n%-34s %12s %12s %8s\n", "GEMM 1024x1536x512 (A B^T)", "memq GF/s", "peer GF/s", "ratio");
#ifdef MEMQ_HAVE_CBLAS
    const double t_blas = time_call(
        [&] {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(M), int(N), int(K), 1.0f, a.data(), int(K), b.data(),
                      int(K), 0.0f, c.data(), int(N));
        },
        min_time);
    g.set("openblas_gflops", Json::number(flops / t_blas * 1e-9));
    std::fprintf(log, "%-34s %12.1f %12.1f %8.2f   (peer: OpenBLAS cblas_sgemm)\n", "", flops / t_memq * 1e-9,
                 flops / t_blas * 1e-9, t_blas / t_memq);
#else
    std::fprintf(log, "%-34s %12.1f %12s %8s   (no OpenBLAS in this build)\n", "", flops / t_memq * 1e-9, "-", "-");
#endif
    result.set("gemm", std::move(g));
  }
  if (gemm_only) {
    if (json) std::printf("%s\n", result.dump(2).c_str());
    return 0;
  }

  std::vector<Spec> specs = {
      {"tiny", make_cfg(256, 64, 128, 2, 4, 2)},
      {"30M", make_cfg(8192, 512, 1536, 8, 8, 4)},
  };
  Json models = Json::array();
  std::fprintf(log, "\n%-6s %8s %-34s %10s %12s %10s %9s\n", "model", "params", "workload", "tokens", "tokens/s",
               "MFLOP/tok", "GFLOP/s");
  for (const auto& s : specs) {
    std::unique_ptr<Model> m;
    Status st = Model::create_random(s.cfg, 1, 0.02f, &m);
    if (!st.ok()) {
      std::fprintf(stderr, "%s\n", st.message().c_str());
      return 1;
    }
    const int64_t V = s.cfg.vocab_size;
    Json mj = Json::object();
    mj.set("model", Json::string(s.name));
    mj.set("params", Json::integer(m->num_params()));
    Json rows = Json::array();
    auto report = [&](const char* what, int64_t ntok, double secs, double flop_per_tok) {
      const double tps = double(ntok) / secs;
      std::fprintf(log, "%-6s %7.1fM %-34s %10lld %12.0f %10.2f %9.2f\n", s.name, double(m->num_params()) * 1e-6, what,
                   (long long)ntok, tps, flop_per_tok * 1e-6, tps * flop_per_tok * 1e-9);
      Json r = Json::object();
      r.set("workload", Json::string(what));
      r.set("tokens", Json::integer(ntok));
      r.set("seconds", Json::number(secs));
      r.set("tokens_per_s", Json::number(tps));
      r.set("flops_per_token", Json::number(flop_per_tok));
      r.set("gflops", Json::number(tps * flop_per_tok * 1e-9));
      rows.push(std::move(r));
    };

    // scoring: B = 8 prompts of 64 tokens, K = 8 candidates of 8 tokens each (prompt run once)
    {
      const int64_t B = 8, P = 64, K = 8, A = 8;
      auto pt = tokens(size_t(B * P), V, 2), ct = tokens(size_t(B * K * A), V, 3);
      std::vector<int64_t> poff, coff, groups;
      for (int64_t b = 0; b <= B; ++b) poff.push_back(b * P), groups.push_back(b * K);
      for (int64_t c = 0; c <= B * K; ++c) coff.push_back(c * A);
      ScoreRequest req;
      req.prompt_tokens = pt.data();
      req.prompt_offsets = poff.data();
      req.n_prompts = B;
      req.cand_tokens = ct.data();
      req.cand_offsets = coff.data();
      req.cand_groups = groups.data();
      req.n_cands = B * K;
      std::vector<float> scores(size_t(B * K));
      const double t = time_call([&] { (void)m->score(scores.data(), nullptr, req); }, min_time);
      const int64_t ntok = B * P + B * K * A;
      // FLOPs: every processed token at its average context, LM head only on candidate tokens
      const double head = 2.0 * double(s.cfg.hidden_size) * double(V);
      const double fl = (double(B * P) * (m->forward_flops_per_token(P / 2) - head) +
                         double(B * K * A) * (m->forward_flops_per_token(P + A / 2) - head) + double(B * K * A) * head) /
                        double(ntok);
      report("score 8 prompts x64 + 8x8 cands x8", ntok, t, fl);
    }
    // plain forward: 8 sequences of 128 tokens, log-probs of every token
    {
      const int64_t B = 8, T = 128;
      auto tk = tokens(size_t(B * T), V, 4);
      std::vector<int64_t> off;
      for (int64_t b = 0; b <= B; ++b) off.push_back(b * T);
      std::vector<float> lp(size_t(B * T));
      TokenBatch batch{tk.data(), off.data(), B, nullptr};
      const double t = time_call([&] { (void)m->token_logprobs(lp.data(), batch); }, min_time);
      report("forward 8 x 128 (token logprobs)", B * T, t, m->forward_flops_per_token(T / 2));
    }
    // LoRA training: 8 sequences of 128 tokens, loss on the last 16 of each, r = 8 on all 7 targets
    {
      const int64_t B = 8, T = 128;
      auto tk = tokens(size_t(B * T), V, 5);
      std::vector<int64_t> off;
      std::vector<float> w(size_t(B * T), 0.0f);
      for (int64_t b = 0; b <= B; ++b) off.push_back(b * T);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = T - 16; t < T; ++t) w[size_t(b * T + t)] = 1.0f;
      LoraConfig lc;
      lc.r = 8;
      lc.alpha = 16;
      lc.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
      std::unique_ptr<LoraAdapter> a;
      if (!LoraAdapter::create(s.cfg, lc, 1, &a).ok()) return 1;
      TrainOptions o;
      o.adamw.lr = 1e-4;
      LoraTrainer tr(m.get(), a.get(), o);
      TokenBatch batch{tk.data(), off.data(), B, w.data()};
      const double t = time_call(
          [&] {
            (void)tr.accumulate(batch);
            (void)tr.step();
          },
          min_time);
      // frozen base: backward computes input gradients only (~1x forward) + the attention
      // backward (~2x its forward); LM head only on the 16 weighted rows per sequence.
      const double head = 2.0 * double(s.cfg.hidden_size) * double(V);
      const double fwd = m->forward_flops_per_token(T / 2) - head;
      const double fl = 2.0 * fwd + 2.0 * head * 16.0 / double(T);
      report("LoRA train 8 x 128 (r=8, all 7)", B * T, t, fl);
    }
    mj.set("results", std::move(rows));
    models.push(std::move(mj));
  }
  result.set("models", std::move(models));
  std::fprintf(log, "\nFLOPs: 2 per multiply-add of every matmul (q,k,v,o, gate, up, down, LM head) plus QK^T and PV\n"
                    "at the average context; LoRA training counts forward + input-gradient backward (base frozen).\n");
  if (json) std::printf("%s\n", result.dump(2).c_str());
  return 0;
}
