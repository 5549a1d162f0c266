// The decoder end to end on tiny random models (hidden 32, 2 layers, vocab 97):
// forward vs an independent double reference, GQA, tied/untied heads, batching, scoring with a
// shared prefix, save/load (single file, shards, bf16), and the encoder.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <thread>
#include <vector>

#include "memq/json.h"
#include "memq/llm/model.h"
#include "memq/llm/safetensors.h"
#include "test_llm_util.h"
#include "testing.h"

using namespace memq;
using namespace memq::llm;

namespace {

std::unique_ptr<Model> make_model(const ModelConfig& c, uint64_t seed = 7, float std_ = 0.15f) {
  std::unique_ptr<Model> m;
  Status st = Model::create_random(c, seed, std_, &m);
  if (!st.ok()) std::printf("  create_random: %s\n", st.message().c_str());
  // non-trivial norms and biases so that their wiring is tested too
  Rng r(seed + 1);
  for (const auto& p : m->layout()) {
    const bool norm = p.name.find("norm.weight") != std::string::npos, bias = p.name.find(".bias") != std::string::npos;
    if (!norm && !bias) continue;
    float* d = m->param_data() + p.offset;
    for (int64_t i = 0; i < p.numel(); ++i) d[i] = norm ? float(1.0 + 0.2 * r.normal()) : float(0.1 * r.normal());
  }
  return m;
}

std::vector<int32_t> random_tokens(size_t n, int64_t V, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = int32_t(g() % uint64_t(V));
  return t;
}

double max_abs_diff_logits(const Model& m, const std::vector<int32_t>& tok) {
  std::vector<float> out(tok.size() * size_t(m.config().vocab_size));
  int64_t off[] = {0, int64_t(tok.size())};
  TokenBatch b{tok.data(), off, 1, nullptr};
  Status st = m.logits(out.data(), b);
  if (!st.ok()) return 1e9;
  auto ref = llm_test::reference_logits(m, tok);
  double mx = 0;
  for (size_t i = 0; i < out.size(); ++i) mx = std::max(mx, std::fabs(out[i] - ref[i]));
  return mx;
}

}  // namespace

MEMQ_TEST(forward_matches_reference_qwen2_gqa_untied) {
  auto m = make_model(llm_test::tiny_config("qwen2", 2, false));
  CHECK(max_abs_diff_logits(*m, random_tokens(13, 97, 1)) < 2e-4);
}

MEMQ_TEST(forward_matches_reference_llama_tied_bias_mha_and_single_kv_head) {
  auto c = llm_test::tiny_config("llama", 4, true);
  c.attention_bias = true;
  c.rope_theta = 500000.0;
  auto m = make_model(c);
  CHECK(m->weights().lm_head == m->weights().embed);
  CHECK(m->weights().layers[0].o_b != nullptr);
  CHECK(max_abs_diff_logits(*m, random_tokens(11, 97, 2)) < 2e-4);
  auto c1 = llm_test::tiny_config("llama", 1, false);
  auto m1 = make_model(c1);
  CHECK(m1->weights().layers[0].q_b == nullptr);
  CHECK(max_abs_diff_logits(*m1, random_tokens(9, 97, 3)) < 2e-4);
}

MEMQ_TEST(forward_matches_reference_qwen3_qk_norm_and_wide_heads) {
  // qwen3: per-head q/k RMSNorm, head_dim set explicitly so that H * D != hidden
  auto c = llm_test::tiny_config("qwen3", 2, true);
  c.head_dim = 16;
  auto m = make_model(c);
  CHECK(m->weights().layers[1].q_norm != nullptr && m->weights().layers[1].q_b == nullptr);
  CHECK(max_abs_diff_logits(*m, random_tokens(12, 97, 4)) < 2e-4);
  const std::string dir = llm_test::temp_dir("qwen3");
  CHECK(m->save(dir).ok());
  std::unique_ptr<Model> back;
  CHECK(Model::load(dir, &back).ok());
  CHECK(back && back->config().model_type == "qwen3" && back->config().head_dim == 16);
}

MEMQ_TEST(empty_sequences_in_a_batch) {
  auto m = make_model(llm_test::tiny_config());
  auto tok = random_tokens(7, 97, 9);
  std::vector<int64_t> off = {0, 0, 3, 3, 7};
  TokenBatch b{tok.data(), off.data(), 4, nullptr};
  std::vector<float> lp(7, 1.0f), e(4 * 32, 1.0f), lg(7 * 97);
  CHECK(m->token_logprobs(lp.data(), b).ok());
  CHECK(m->embed_mean(e.data(), b).ok());
  CHECK(m->logits(lg.data(), b).ok());
  for (int i = 0; i < 32; ++i) CHECK(e[size_t(i)] == 0.0f && e[size_t(64 + i)] == 0.0f);
  CHECK(lp[0] == 0.0f && lp[3] == 0.0f && lp[1] < 0.0f);
  std::vector<int64_t> none = {0};
  TokenBatch empty{nullptr, none.data(), 0, nullptr};
  CHECK(m->logits(lg.data(), empty).ok());
  std::vector<int64_t> bad = {0, 5, 3};
  TokenBatch dec{tok.data(), bad.data(), 2, nullptr};
  CHECK(!m->logits(lg.data(), dec).ok());
}

MEMQ_TEST(gqa_equals_mha_with_repeated_kv_heads) {
  // A GQA model (KV = 2, H = 4) equals the MHA model whose kv head h copies kv head h / 2.
  auto g = make_model(llm_test::tiny_config("qwen2", 2, false));
  auto c = llm_test::tiny_config("qwen2", 4, false);
  std::unique_ptr<Model> m;
  CHECK(Model::create_random(c, 1, 0.1f, &m).ok());
  const int64_t C = c.hidden_size, D = c.dim_head();
  for (const auto& p : m->layout()) {
    std::vector<int64_t> shape;
    float* src = g->find_param(p.name, &shape);
    float* dst = m->param_data() + p.offset;
    const bool kv = p.name.find("k_proj") != std::string::npos || p.name.find("v_proj") != std::string::npos;
    if (!kv) {
      std::copy(src, src + p.numel(), dst);
      continue;
    }
    const int64_t row = p.shape.size() == 2 ? C : 1;
    for (int64_t h = 0; h < 4; ++h)
      std::copy(src + (h / 2) * D * row, src + (h / 2 + 1) * D * row, dst + h * D * row);
  }
  auto tok = random_tokens(10, 97, 4);
  int64_t off[] = {0, 10};
  TokenBatch b{tok.data(), off, 1, nullptr};
  std::vector<float> lg(10 * 97), lm(10 * 97);
  CHECK(g->logits(lg.data(), b).ok());
  CHECK(m->logits(lm.data(), b).ok());
  for (size_t i = 0; i < lg.size(); ++i) CHECK_NEAR(lg[i], lm[i], 0, 1e-5);
}

MEMQ_TEST(packed_batch_equals_sequences_one_by_one) {
  auto m = make_model(llm_test::tiny_config());
  auto tok = random_tokens(4 + 9 + 1 + 6, 97, 5);
  std::vector<int64_t> off = {0, 4, 13, 14, 20};
  TokenBatch b{tok.data(), off.data(), 4, nullptr};
  std::vector<float> all(20 * 97);
  CHECK(m->logits(all.data(), b).ok());
  for (int s = 0; s < 4; ++s) {
    int64_t o1[] = {0, off[s + 1] - off[s]};
    TokenBatch one{tok.data() + off[s], o1, 1, nullptr};
    std::vector<float> lg(size_t(o1[1] * 97));
    CHECK(m->logits(lg.data(), one).ok());
    for (size_t i = 0; i < lg.size(); ++i) CHECK_NEAR(all[size_t(off[s] * 97) + i], lg[i], 0, 1e-5);
  }
  // token_logprobs are the log-softmax of the logits at the next token; 0 at sequence starts
  std::vector<float> lp(20);
  CHECK(m->token_logprobs(lp.data(), b).ok());
  for (int s = 0; s < 4; ++s) {
    CHECK(lp[size_t(off[s])] == 0.0f);
    for (int64_t t = off[s] + 1; t < off[s + 1]; ++t) {
      const float* row = all.data() + (t - 1) * 97;
      double mx = row[0], z = 0;
      for (int j = 1; j < 97; ++j) mx = std::max(mx, double(row[j]));
      for (int j = 0; j < 97; ++j) z += std::exp(row[j] - mx);
      CHECK_NEAR(lp[size_t(t)], row[tok[size_t(t)]] - mx - std::log(z), 0, 1e-5);
    }
  }
}

MEMQ_TEST(scoring_with_shared_prefix_equals_full_sequences) {
  for (bool tied : {false, true}) {
    auto m = make_model(llm_test::tiny_config("qwen2", 2, tied), tied ? 11 : 12);
    // 3 prompts (lengths 5, 1, 8) with 3, 0 and 4 candidates (one candidate empty)
    std::vector<int64_t> poff = {0, 5, 6, 14};
    auto ptok = random_tokens(14, 97, 6);
    std::vector<int64_t> groups = {0, 3, 3, 7};
    std::vector<int64_t> clen = {1, 4, 2, 3, 0, 6, 2};
    std::vector<int64_t> coff = {0};
    for (auto l : clen) coff.push_back(coff.back() + l);
    auto ctok = random_tokens(size_t(coff.back()), 97, 7);
    ScoreRequest req;
    req.prompt_tokens = ptok.data();
    req.prompt_offsets = poff.data();
    req.n_prompts = 3;
    req.cand_tokens = ctok.data();
    req.cand_offsets = coff.data();
    req.cand_groups = groups.data();
    req.n_cands = 7;
    std::vector<float> scores(7), tlp(size_t(coff.back())), norm(7);
    Status st = m->score(scores.data(), tlp.data(), req);
    CHECK(st.ok());
    req.length_normalize = true;
    CHECK(m->score(norm.data(), nullptr, req).ok());
    int k = 0;
    for (int b = 0; b < 3; ++b)
      for (int64_t c = groups[size_t(b)]; c < groups[size_t(b + 1)]; ++c, ++k) {
        std::vector<int32_t> seq(ptok.begin() + poff[size_t(b)], ptok.begin() + poff[size_t(b + 1)]);
        seq.insert(seq.end(), ctok.begin() + coff[size_t(c)], ctok.begin() + coff[size_t(c + 1)]);
        int64_t o[] = {0, int64_t(seq.size())};
        TokenBatch one{seq.data(), o, 1, nullptr};
        std::vector<float> lp(seq.size());
        CHECK(m->token_logprobs(lp.data(), one).ok());
        const int64_t P = poff[size_t(b + 1)] - poff[size_t(b)];
        double s = 0;
        for (int64_t t = P; t < int64_t(seq.size()); ++t) {
          s += lp[size_t(t)];
          CHECK_NEAR(tlp[size_t(coff[size_t(c)] + t - P)], lp[size_t(t)], 0, 2e-5);
        }
        CHECK_NEAR(scores[size_t(c)], s, 0, 1e-4);
        const int64_t L = clen[size_t(c)];
        CHECK_NEAR(norm[size_t(c)], L ? s / double(L) : 0.0, 0, 1e-4);
      }
  }
}

MEMQ_TEST(concurrent_inference_on_one_model_is_safe_and_identical) {
  // Inference methods are const and allocate per call: several async workers may share a Model.
  auto m = make_model(llm_test::tiny_config());
  auto tok = random_tokens(64, 97, 10);
  std::vector<int64_t> off = {0, 20, 41, 64};
  TokenBatch b{tok.data(), off.data(), 3, nullptr};
  std::vector<float> ref(64);
  CHECK(m->token_logprobs(ref.data(), b).ok());
  std::vector<std::vector<float>> outs(4, std::vector<float>(64));
  std::vector<int> ok(4, 0);
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      for (int rep = 0; rep < 5; ++rep) ok[size_t(t)] += m->token_logprobs(outs[size_t(t)].data(), b).ok() ? 1 : 0;
    });
  for (auto& th : ts) th.join();
  for (int t = 0; t < 4; ++t) {
    CHECK(ok[size_t(t)] == 5);
    CHECK(outs[size_t(t)] == ref);
  }
}

MEMQ_TEST(scoring_rejects_bad_requests) {
  auto m = make_model(llm_test::tiny_config());
  std::vector<int32_t> p = {1, 2, 3}, c = {4, 200};
  std::vector<int64_t> poff = {0, 3}, coff = {0, 2}, groups = {0, 1};
  ScoreRequest r;
  r.prompt_tokens = p.data();
  r.prompt_offsets = poff.data();
  r.n_prompts = 1;
  r.cand_tokens = c.data();
  r.cand_offsets = coff.data();
  r.cand_groups = groups.data();
  r.n_cands = 1;
  float s;
  Status st = m->score(&s, nullptr, r);
  CHECK(!st.ok() && st.code() == StatusCode::kOutOfRange);  // token 200 >= vocab 97
  c[1] = 5;
  groups[1] = 2;
  CHECK(!m->score(&s, nullptr, r).ok());  // groups do not end at n_cands
  groups[1] = 1;
  poff[1] = 0;
  CHECK(!m->score(&s, nullptr, r).ok());  // empty prompt
}

MEMQ_TEST(embed_mean_is_per_sequence_and_batch_independent) {
  auto m = make_model(llm_test::tiny_config());
  auto tok = random_tokens(12, 97, 8);
  std::vector<int64_t> off = {0, 5, 12};
  TokenBatch b{tok.data(), off.data(), 2, nullptr};
  std::vector<float> e(2 * 32), e1(32);
  CHECK(m->embed_mean(e.data(), b).ok());
  int64_t o1[] = {0, 7};
  TokenBatch one{tok.data() + 5, o1, 1, nullptr};
  CHECK(m->embed_mean(e1.data(), one).ok());
  for (int i = 0; i < 32; ++i) CHECK_NEAR(e[32 + size_t(i)], e1[size_t(i)], 0, 1e-5);
}

MEMQ_TEST(save_load_round_trip_single_sharded_and_bf16) {
  for (bool tied : {false, true}) {
    auto m = make_model(llm_test::tiny_config("llama", 2, tied));
    const std::string dir = llm_test::temp_dir("model");
    CHECK(m->save(dir).ok());
    std::unique_ptr<SafetensorsFile> f;
    CHECK(SafetensorsFile::open(dir + "/model.safetensors", &f).ok());
    CHECK((f->find("lm_head.weight") != nullptr) == !tied);
    CHECK(f->find("model.layers.1.mlp.down_proj.weight") != nullptr);
    CHECK(f->find("model.layers.1.mlp.down_proj.weight")->shape == (std::vector<int64_t>{32, 48}));
    std::unique_ptr<Model> back;
    Status st = Model::load(dir, &back);
    CHECK(st.ok());
    if (!st.ok()) std::printf("  %s\n", st.message().c_str());
    if (!back) continue;
    CHECK(back->config().tie_word_embeddings == tied);
    CHECK(back->num_params() == m->num_params());
    bool same = true;
    for (int64_t i = 0; i < m->num_params(); ++i) same = same && back->param_data()[i] == m->param_data()[i];
    CHECK(same);

    // shards: split the tensors across two files with an index
    const std::string sdir = llm_test::temp_dir("shards");
    {
      std::ifstream in(dir + "/config.json");
      std::ofstream out(sdir + "/config.json");
      out << in.rdbuf();
    }
    std::vector<TensorToWrite> a, b;
    Json wm = Json::object();
    for (size_t i = 0; i < m->layout().size(); ++i) {
      const auto& p = m->layout()[i];
      (i % 2 ? a : b).push_back({p.name, p.shape, m->param_data() + p.offset});
      wm.set(p.name, Json::string(i % 2 ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors"));
    }
    CHECK(write_safetensors(sdir + "/model-00001-of-00002.safetensors", a).ok());
    CHECK(write_safetensors(sdir + "/model-00002-of-00002.safetensors", b, {}, /*bf16=*/true).ok());
    Json idx = Json::object();
    idx.set("metadata", Json::object());
    idx.set("weight_map", std::move(wm));
    {
      std::ofstream out(sdir + "/model.safetensors.index.json");
      out << idx.dump(2);
    }
    std::unique_ptr<Model> sh;
    st = Model::load(sdir, &sh);
    CHECK(st.ok());
    if (!st.ok()) std::printf("  %s\n", st.message().c_str());
    if (!sh) continue;
    // half the tensors went through bf16: equal to within bf16 rounding (2^-8 relative)
    int bad = 0;
    for (int64_t i = 0; i < m->num_params(); ++i)
      if (!memq_test::near(sh->param_data()[i], m->param_data()[i], 1.0 / 256, 0)) ++bad;
    CHECK(bad == 0);
  }
}

MEMQ_TEST(config_json_parsing_defaults_and_rejections) {
  Json j;
  CHECK(Json::parse(R"({"model_type":"qwen2","vocab_size":100,"hidden_size":64,"intermediate_size":128,
    "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"rms_norm_eps":1e-6,
    "rope_theta":1000000.0,"tie_word_embeddings":true,"rope_scaling":null,"torch_dtype":"bfloat16"})", &j).ok());
  ModelConfig c;
  Status st = ModelConfig::from_json(j, "config.json", &c);
  CHECK(st.ok());
  CHECK(c.tie_word_embeddings && c.qkv_bias() && !c.o_bias() && c.dim_head() == 16 && c.rope_theta == 1e6);
  // round trip through to_json
  ModelConfig c2;
  CHECK(ModelConfig::from_json(c.to_json(), "x", &c2).ok());
  CHECK(c2.hidden_size == 64 && c2.num_key_value_heads == 2 && c2.tie_word_embeddings);
  const char* bad[] = {
      R"({"model_type":"gpt2","vocab_size":100,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4})",
      R"({"model_type":"llama","vocab_size":100,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":3})",
      R"({"model_type":"llama","vocab_size":100,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"rope_scaling":{"type":"llama3"}})",
      R"({"model_type":"llama","vocab_size":"100","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4})",
      R"({"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4})",
  };
  for (const char* s : bad) {
    CHECK(Json::parse(s, &j).ok());
    Status e = ModelConfig::from_json(j, "config.json", &c);
    CHECK(!e.ok());
    CHECK(e.message().find("config.json") != std::string::npos);
  }
}

MEMQ_TEST(load_rejects_missing_and_misshapen_tensors) {
  auto m = make_model(llm_test::tiny_config());
  const std::string dir = llm_test::temp_dir("bad");
  CHECK(m->save(dir).ok());
  // drop one tensor
  std::vector<TensorToWrite> ts;
  for (const auto& p : m->layout())
    if (p.name != "model.norm.weight") ts.push_back({p.name, p.shape, m->param_data() + p.offset});
  CHECK(write_safetensors(dir + "/model.safetensors", ts).ok());
  std::unique_ptr<Model> back;
  Status st = Model::load(dir, &back);
  CHECK(!st.ok() && st.message().find("model.norm.weight") != std::string::npos);
  // wrong shape: norm saved as [C/2, 2]
  ts.push_back({"model.norm.weight", {16, 2}, m->weights().norm});
  CHECK(write_safetensors(dir + "/model.safetensors", ts).ok());
  st = Model::load(dir, &back);
  CHECK(!st.ok() && st.message().find("shape") != std::string::npos);
  CHECK(!Model::load("/nonexistent/dir", &back).ok());
}

MEMQ_TEST(flops_per_token_counts_matmuls) {
  auto c = llm_test::tiny_config();
  auto m = make_model(c);
  // 2 layers * 2 * (32*32 + 2*32*16 + 32*32 + 3*32*48) + 2*32*97, attention at ctx 0
  const double expect = 2.0 * 2.0 * (1024 + 1024 + 1024 + 4608) + 2.0 * 32 * 97;
  CHECK_NEAR(m->forward_flops_per_token(0), expect, 1e-12, 0);
}

MEMQ_TEST_MAIN()
