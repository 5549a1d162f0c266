// LoRA (MATH §12) and the weighted-loss trainer (MATH §11) on tiny random models:
// A/B gradients through the whole network vs finite differences (float32 engine, tolerances
// below), zero-weight tokens, AdamW reducing the loss, gradient accumulation, determinism,
// PEFT save/load with exact keys and shapes, merge == unmerged, optimizer-state export/import
// (bit-exact resumption of both trainers), and the reused training workspace: steps of different
// shapes back to back, with every scratch buffer NaN-poisoned, equal to fresh models bit for bit.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <vector>

#include "memq/json.h"
#include "memq/llm/lora.h"
#include "memq/llm/safetensors.h"
#include "memq/llm/train.h"
#include "memq/thread_pool.h"
#include <thread>

#include "../core/llm/engine_common.h"  // detail::set_scratch_poison
#include "test_llm_util.h"
#include "testing.h"

using namespace memq;
using namespace memq::llm;

namespace {

std::unique_ptr<Model> make_model(const ModelConfig& c, uint64_t seed = 3) {
  std::unique_ptr<Model> m;
  CHECK(Model::create_random(c, seed, 0.2f, &m).ok());
  return m;
}

std::unique_ptr<LoraAdapter> make_lora(const ModelConfig& c, std::vector<std::string> targets, int64_t r = 4,
                                       bool random_b = true, uint64_t seed = 5) {
  LoraConfig lc;
  lc.r = r;
  lc.alpha = 8.0;
  lc.target_modules = std::move(targets);
  lc.base_model_name_or_path = "tiny";
  std::unique_ptr<LoraAdapter> a;
  Status st = LoraAdapter::create(c, lc, seed, &a);
  CHECK(st.ok());
  if (!st.ok()) std::printf("  %s\n", st.message().c_str());
  if (random_b) {  // B = 0 at init would make dA = 0; give it values so both paths are tested
    Rng g(seed + 100);
    for (int64_t l = 0; l < a->num_layers(); ++l)
      for (int t = 0; t < kLoraNumTargets; ++t)
        if (a->targets(LoraTarget(t))) {
          const LoraModule& m = a->module(l, LoraTarget(t));
          for (int64_t i = 0; i < m.out * r; ++i) m.B[i] = float(0.1 * g.normal());
        }
  }
  return a;
}

struct Data {
  std::vector<int32_t> tokens;
  std::vector<int64_t> offsets;
  std::vector<float> weights;
  TokenBatch batch() const { return TokenBatch{tokens.data(), offsets.data(), int64_t(offsets.size()) - 1, weights.data()}; }
};

// Sequences of (prompt, action) with weights only on the action tokens.
Data make_data(std::vector<std::pair<int, int>> lens, uint64_t seed, int64_t V = 97) {
  std::mt19937_64 g(seed);
  Data d;
  d.offsets.push_back(0);
  for (auto [p, a] : lens) {
    const float w = float(0.25 + 0.75 * double(g() % 1000) / 1000.0);
    for (int i = 0; i < p + a; ++i) {
      d.tokens.push_back(int32_t(g() % uint64_t(V)));
      d.weights.push_back(i < p ? 0.0f : w);
    }
    d.offsets.push_back(int64_t(d.tokens.size()));
  }
  return d;
}

double loss_of(const Model& m, const LoraAdapter& a, const Data& d) {
  double l = 0;
  CHECK(m.forward_backward(d.batch(), LossNorm::kSum, &a, nullptr, nullptr, 1.0f, &l).ok());
  return l;
}

}  // namespace

MEMQ_TEST(lora_gradients_match_finite_differences_through_whole_model) {
  // float32 engine: central differences with h = 1e-2 on a sum-of-nll loss of size ~20.
  // Per-entry check |analytic - numeric| <= 3e-3 + 3e-2 |numeric| on 60 sampled entries, and
  // directional derivatives along 3 random directions within 1e-2 relative.
  for (const char* type : {"qwen2", "llama", "qwen3"}) {
    auto c = llm_test::tiny_config(type, 2, std::string(type) != "qwen2");
    auto m = make_model(c);
    auto a = make_lora(c, {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"});
    Data d = make_data({{3, 4}, {6, 2}, {1, 5}}, 9);
    std::vector<float> grad(size_t(a->size()), 0.0f);
    double loss = 0;
    CHECK(m->forward_backward(d.batch(), LossNorm::kSum, a.get(), grad.data(), nullptr, 1.0f, &loss).ok());
    CHECK(loss > 0);
    std::mt19937_64 g(1);
    int bad = 0;
    for (int s = 0; s < 60; ++s) {
      const int64_t i = int64_t(g() % uint64_t(a->size()));
      const float x0 = a->params()[i];
      const float h = 1e-2f;
      a->params()[i] = x0 + h;
      const double lp = loss_of(*m, *a, d);
      a->params()[i] = x0 - h;
      const double lm = loss_of(*m, *a, d);
      a->params()[i] = x0;
      const double num = (lp - lm) / (2.0 * h);
      if (!memq_test::near(grad[size_t(i)], num, 3e-2, 3e-3)) {
        if (bad < 5) std::printf("  %s param %lld: analytic %.6g numeric %.6g\n", type, (long long)i, grad[size_t(i)], num);
        ++bad;
      }
    }
    CHECK(bad == 0);
    for (int dir = 0; dir < 3; ++dir) {
      std::vector<float> u(size_t(a->size()));
      std::normal_distribution<double> nd(0, 1);
      double gu = 0, un = 0;
      for (size_t i = 0; i < u.size(); ++i) un += (u[i] = float(nd(g))) * double(u[i]);
      for (size_t i = 0; i < u.size(); ++i) u[i] = float(u[i] / std::sqrt(un)), gu += double(u[i]) * grad[i];
      std::vector<float> p0(a->params(), a->params() + a->size());
      const double h = 1e-2;
      for (size_t i = 0; i < u.size(); ++i) a->params()[i] = float(p0[i] + h * u[i]);
      const double lp = loss_of(*m, *a, d);
      for (size_t i = 0; i < u.size(); ++i) a->params()[i] = float(p0[i] - h * u[i]);
      const double lm = loss_of(*m, *a, d);
      std::copy(p0.begin(), p0.end(), a->params());
      CHECK_NEAR(gu, (lp - lm) / (2 * h), 1e-2, 1e-3);
    }
  }
}

MEMQ_TEST(zero_weight_tokens_contribute_no_gradient) {
  auto c = llm_test::tiny_config();
  auto m = make_model(c);
  auto a = make_lora(c, {"q_proj", "v_proj", "down_proj"});
  Data d = make_data({{4, 3}, {2, 5}}, 10);
  std::vector<float> g1(size_t(a->size()), 0.0f), g2(size_t(a->size()), 0.0f);
  double l1 = 0, l2 = 0;
  CHECK(m->forward_backward(d.batch(), LossNorm::kSum, a.get(), g1.data(), nullptr, 1.0f, &l1).ok());
  // (a) trailing zero-weight tokens appended to each sequence change nothing
  Data e;
  e.offsets.push_back(0);
  for (size_t s = 0; s + 1 < d.offsets.size(); ++s) {
    for (int64_t t = d.offsets[s]; t < d.offsets[s + 1]; ++t) e.tokens.push_back(d.tokens[size_t(t)]), e.weights.push_back(d.weights[size_t(t)]);
    for (int k = 0; k < 3; ++k) e.tokens.push_back(int32_t(11 * k + 5)), e.weights.push_back(0.0f);
    e.offsets.push_back(int64_t(e.tokens.size()));
  }
  CHECK(m->forward_backward(e.batch(), LossNorm::kSum, a.get(), g2.data(), nullptr, 1.0f, &l2).ok());
  CHECK_NEAR(l2, l1, 1e-6, 0);
  for (size_t i = 0; i < g1.size(); ++i) CHECK_NEAR(g2[i], g1[i], 1e-4, 1e-6);  // rounding only
  // (b) all weights zero: loss 0, gradient exactly 0
  Data z = d;
  std::fill(z.weights.begin(), z.weights.end(), 0.0f);
  std::vector<float> g0(size_t(a->size()), 0.0f);
  double l0 = 1;
  CHECK(m->forward_backward(z.batch(), LossNorm::kWeightSum, a.get(), g0.data(), nullptr, 1.0f, &l0).ok());
  CHECK(l0 == 0.0);
  for (float x : g0) CHECK(x == 0.0f);
  // (c) a sequence with zero weights in a batch adds nothing: grad(d + zero seq) == grad(d)
  Data f = d;
  for (int k = 0; k < 6; ++k) f.tokens.push_back(int32_t(k + 1)), f.weights.push_back(0.0f);
  f.offsets.push_back(int64_t(f.tokens.size()));
  std::vector<float> g3(size_t(a->size()), 0.0f);
  CHECK(m->forward_backward(f.batch(), LossNorm::kSum, a.get(), g3.data(), nullptr, 1.0f, &l2).ok());
  for (size_t i = 0; i < g1.size(); ++i) CHECK_NEAR(g3[i], g1[i], 1e-4, 1e-6);
  // (d) weight on a sequence's first token is refused
  Data bad = d;
  bad.weights[0] = 1.0f;
  CHECK(!m->forward_backward(bad.batch(), LossNorm::kSum, a.get(), g0.data(), nullptr, 1.0f, &l0).ok());
  bad.weights[0] = -1.0f;
  CHECK(!m->forward_backward(bad.batch(), LossNorm::kSum, a.get(), g0.data(), nullptr, 1.0f, &l0).ok());
}

// Signed weights (LossNorm::kSum only): the loss and gradient are linear in w, so
// w = w1 - w2 gives l1 - l2 and g1 - g2; kWeightSum refuses a negative weight.
MEMQ_TEST(signed_weights_with_sum_norm_are_linear_and_weight_sum_refuses_them) {
  auto c = llm_test::tiny_config();
  auto m = make_model(c);
  auto a = make_lora(c, {"q_proj", "k_proj", "up_proj"});
  Data d1 = make_data({{4, 3}, {2, 5}, {3, 2}}, 21);
  Data d2 = d1, diff = d1;
  std::mt19937_64 g(7);
  for (size_t t = 0; t < d1.weights.size(); ++t) {
    if (d1.weights[t] == 0.0f) continue;
    d2.weights[t] = float(double(g() % 1000) / 700.0);  // sometimes larger than w1: negative differences
    diff.weights[t] = d1.weights[t] - d2.weights[t];
  }
  bool any_negative = false;
  for (float w : diff.weights) any_negative = any_negative || w < 0.0f;
  CHECK(any_negative);
  std::vector<float> g1(size_t(a->size()), 0.0f), g2 = g1, gd = g1;
  double l1 = 0, l2 = 0, ld = 0;
  CHECK(m->forward_backward(d1.batch(), LossNorm::kSum, a.get(), g1.data(), nullptr, 1.0f, &l1).ok());
  CHECK(m->forward_backward(d2.batch(), LossNorm::kSum, a.get(), g2.data(), nullptr, 1.0f, &l2).ok());
  CHECK(m->forward_backward(diff.batch(), LossNorm::kSum, a.get(), gd.data(), nullptr, 1.0f, &ld).ok());
  CHECK_NEAR(ld, l1 - l2, 1e-4, 1e-5);
  double scale = 0;
  for (float x : g1) scale = std::max(scale, double(std::fabs(x)));
  for (size_t i = 0; i < gd.size(); ++i) CHECK_NEAR(gd[i], g1[i] - g2[i], 1e-4 * scale, 1e-4);
  double lw = 0;
  Status st = m->forward_backward(diff.batch(), LossNorm::kWeightSum, a.get(), gd.data(), nullptr, 1.0f, &lw);
  CHECK(!st.ok());
  CHECK(st.message().find("LossNorm::kSum") != std::string::npos);
}

MEMQ_TEST(loss_falls_with_adamw_and_training_is_deterministic) {
  auto c = llm_test::tiny_config();
  auto m = make_model(c);
  Data d = make_data({{4, 3}, {2, 5}, {5, 2}, {3, 3}}, 11);
  std::vector<double> run_losses[2];
  std::vector<float> final_params[2];
  for (int run = 0; run < 2; ++run) {
    auto a = make_lora(c, {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}, 8, false, 42);
    TrainOptions o;
    o.adamw.lr = 1e-2;
    o.adamw.weight_decay = 0.01;
    o.clip_norm = 1.0;
    LoraTrainer tr(m.get(), a.get(), o);
    for (int step = 0; step < 40; ++step) {
      StepStats s;
      CHECK(tr.accumulate(d.batch()).ok());
      CHECK(tr.step(&s).ok());
      run_losses[run].push_back(s.loss);
    }
    final_params[run].assign(a->params(), a->params() + a->size());
  }
  std::printf("  loss %.4f -> %.4f\n", run_losses[0].front(), run_losses[0].back());
  CHECK(run_losses[0].back() < 0.5 * run_losses[0].front());
  CHECK(run_losses[0] == run_losses[1]);
  CHECK(final_params[0] == final_params[1]);
}

MEMQ_TEST(training_is_bit_identical_for_one_and_many_threads) {
  auto c = llm_test::tiny_config();
  c.hidden_size = 64;  // big enough for the GEMMs to split into several tiles
  c.intermediate_size = 160;
  auto m = make_model(c);
  Data d = make_data({{30, 20}, {12, 40}, {50, 10}}, 16);
  std::vector<float> result[2];
  double losses[2] = {0, 0};
  const int threads[2] = {1, 4};
  for (int run = 0; run < 2; ++run) {
    memq::set_num_threads(threads[run]);
    auto a = make_lora(c, {"q_proj", "v_proj", "up_proj", "down_proj"}, 4, false, 3);
    TrainOptions o;
    o.adamw.lr = 1e-2;
    LoraTrainer tr(m.get(), a.get(), o);
    for (int step = 0; step < 3; ++step) {
      StepStats s;
      CHECK(tr.accumulate(d.batch()).ok());
      CHECK(tr.step(&s).ok());
      losses[run] = s.loss;
    }
    result[run].assign(a->params(), a->params() + a->size());
  }
  memq::set_num_threads(0);
  CHECK(losses[0] == losses[1]);
  CHECK(result[0] == result[1]);
}

MEMQ_TEST(gradient_accumulation_averages_micro_batches) {
  auto c = llm_test::tiny_config();
  auto m = make_model(c);
  Data d1 = make_data({{4, 3}, {2, 5}}, 12), d2 = make_data({{3, 2}}, 13);
  auto a = make_lora(c, {"q_proj", "up_proj"});
  TrainOptions o;
  o.clip_norm = 0;
  LoraTrainer tr(m.get(), a.get(), o);
  CHECK(tr.accumulate(d1.batch()).ok());
  CHECK(tr.accumulate(d2.batch()).ok());
  std::vector<float> g1(size_t(a->size()), 0.0f), g2(size_t(a->size()), 0.0f);
  double l;
  CHECK(m->forward_backward(d1.batch(), LossNorm::kWeightSum, a.get(), g1.data(), nullptr, 1.0f, &l).ok());
  CHECK(m->forward_backward(d2.batch(), LossNorm::kWeightSum, a.get(), g2.data(), nullptr, 1.0f, &l).ok());
  for (size_t i = 0; i < g1.size(); ++i) CHECK_NEAR(tr.grad()[i], g1[i] + g2[i], 1e-5, 1e-8);
  StepStats s;
  CHECK(tr.step(&s).ok());
  CHECK(s.micro_batches == 2 && s.step == 1);
  for (float x : tr.grad()) CHECK(x == 0.0f);
  CHECK(!tr.step(&s).ok());  // nothing accumulated
}

MEMQ_TEST(adamw_matches_hand_computed_steps_and_clipping) {
  // p = 1, g = 0.5, lr 0.1, wd 0.1: step 1 -> p = 1 - 0.01 - 0.1 * 1 = 0.89 (m_hat/sqrt(v_hat) = 1)
  float p = 1.0f, g = 0.5f, mm = 0, vv = 0;
  AdamWOptions o;
  o.lr = 0.1;
  o.weight_decay = 0.1;
  adamw_step(&p, &g, &mm, &vv, 1, 1, o);
  CHECK_NEAR(p, 0.89, 1e-6, 0);
  CHECK_NEAR(mm, 0.05, 1e-6, 0);
  CHECK_NEAR(vv, 0.00025, 1e-6, 0);
  float gv[] = {3.0f, 4.0f};
  CHECK_NEAR(global_norm(gv, 2), 5.0, 1e-12, 0);
}

MEMQ_TEST(peft_save_load_round_trip_with_exact_keys_and_shapes) {
  auto c = llm_test::tiny_config("qwen2", 2, false);
  auto a = make_lora(c, {"q", "v_proj", "o_proj", "gate_proj", "down_proj"}, 4);
  const std::string dir = llm_test::temp_dir("peft");
  CHECK(a->save(dir).ok());
  // adapter_config.json
  std::ifstream in(dir + "/adapter_config.json");
  std::stringstream ss;
  ss << in.rdbuf();
  Json j;
  CHECK(Json::parse(ss.str(), &j).ok());
  CHECK(j.find("peft_type") && j.find("peft_type")->as_string() == "LORA");
  CHECK(j.find("r") && j.find("r")->as_int() == 4);
  CHECK(j.find("lora_alpha") && j.find("lora_alpha")->as_double() == 8.0);
  CHECK(j.find("task_type") && j.find("task_type")->as_string() == "CAUSAL_LM");
  CHECK(j.find("base_model_name_or_path") && j.find("base_model_name_or_path")->as_string() == "tiny");
  const Json* tm = j.find("target_modules");
  CHECK(tm && tm->size() == 4 + 1);
  // adapter_model.safetensors: exact PEFT keys and shapes
  std::unique_ptr<SafetensorsFile> f;
  CHECK(SafetensorsFile::open(dir + "/adapter_model.safetensors", &f).ok());
  CHECK(f->tensors().size() == size_t(2 * 5 * 2));
  auto shape_of = [&](const std::string& k) {
    const TensorInfo* t = f->find(k);
    return t ? t->shape : std::vector<int64_t>{};
  };
  CHECK(shape_of("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight") == (std::vector<int64_t>{4, 32}));
  CHECK(shape_of("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight") == (std::vector<int64_t>{32, 4}));
  CHECK(shape_of("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight") == (std::vector<int64_t>{16, 4}));
  CHECK(shape_of("base_model.model.model.layers.1.self_attn.o_proj.lora_A.weight") == (std::vector<int64_t>{4, 32}));
  CHECK(shape_of("base_model.model.model.layers.1.mlp.gate_proj.lora_B.weight") == (std::vector<int64_t>{48, 4}));
  CHECK(shape_of("base_model.model.model.layers.0.mlp.down_proj.lora_A.weight") == (std::vector<int64_t>{4, 48}));
  CHECK(f->find("base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight") == nullptr);
  // load back: identical
  std::unique_ptr<LoraAdapter> b;
  Status st = LoraAdapter::load(dir, c, &b);
  CHECK(st.ok());
  if (!st.ok()) std::printf("  %s\n", st.message().c_str());
  if (b) {
    CHECK(b->size() == a->size());
    CHECK(std::equal(a->params(), a->params() + a->size(), b->params()));
    CHECK(b->scale() == a->scale());
  }
  // a model of another shape refuses it
  auto c2 = c;
  c2.hidden_size = 64;
  CHECK(!LoraAdapter::load(dir, c2, &b).ok());
  // PEFT's "all-linear" shorthand targets all seven projections
  {
    auto all = make_lora(c, {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}, 2);
    const std::string d2 = llm_test::temp_dir("peft_all");
    CHECK(all->save(d2).ok());
    std::ifstream ci(d2 + "/adapter_config.json");
    std::stringstream cs;
    cs << ci.rdbuf();
    std::string text = cs.str();
    const size_t p0 = text.find("\"target_modules\"");
    const size_t p1 = text.find("]", p0);
    text = text.substr(0, p0) + "\"target_modules\": \"all-linear\"" + text.substr(p1 + 1);
    std::ofstream(d2 + "/adapter_config.json", std::ios::trunc) << text;
    std::unique_ptr<LoraAdapter> back;
    Status s2 = LoraAdapter::load(d2, c, &back);
    CHECK(s2.ok());
    if (!s2.ok()) std::printf("  %s\n", s2.message().c_str());
    CHECK(back && back->targets(kLoraDown) && back->targets(kLoraK) && back->size() == all->size());
  }
  // a missing tensor is refused, naming it
  std::vector<TensorToWrite> ts;
  for (const auto& t : f->tensors()) {
    if (t.name.find("layers.1.mlp.down_proj.lora_B") != std::string::npos) continue;
    ts.push_back({t.name, t.shape, a->params()});  // values irrelevant
  }
  CHECK(write_safetensors(dir + "/adapter_model.safetensors", ts).ok());
  st = LoraAdapter::load(dir, c, &b);
  CHECK(!st.ok() && st.message().find("down_proj.lora_B") != std::string::npos);
}

MEMQ_TEST(merged_forward_equals_unmerged_forward) {
  for (bool tied : {false, true}) {
    auto c = llm_test::tiny_config("llama", 2, tied);
    c.attention_bias = true;
    auto m = make_model(c, 21);
    auto a = make_lora(c, {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}, 4, true, 8);
    std::vector<int32_t> tok = {3, 14, 15, 92, 65, 35, 89, 79, 32, 38};
    int64_t off[] = {0, 4, 10};
    TokenBatch b{tok.data(), off, 2, nullptr};
    std::vector<float> with(10 * 97), base(10 * 97), merged(10 * 97);
    CHECK(m->logits(with.data(), b, a.get()).ok());
    CHECK(m->logits(base.data(), b).ok());
    double delta = 0;
    for (size_t i = 0; i < with.size(); ++i) delta = std::max(delta, double(std::fabs(with[i] - base[i])));
    CHECK(delta > 1e-2);  // the adapter does change the model
    std::unique_ptr<Model> copy;
    CHECK(m->clone(&copy).ok());
    CHECK(merge_lora(copy.get(), *a).ok());
    CHECK(copy->logits(merged.data(), b).ok());
    std::vector<float> base2(10 * 97);
    CHECK(m->logits(base2.data(), b).ok());
    CHECK(base2 == base);  // the original is untouched
    for (size_t i = 0; i < with.size(); ++i) CHECK_NEAR(merged[i], with[i], 0, 2e-5);
  }
}

MEMQ_TEST(lora_config_validation) {
  auto c = llm_test::tiny_config();
  std::unique_ptr<LoraAdapter> a;
  LoraConfig lc;
  lc.target_modules = {"qkv"};
  CHECK(!LoraAdapter::create(c, lc, 1, &a).ok());
  lc.target_modules = {"q_proj", "q"};
  CHECK(!LoraAdapter::create(c, lc, 1, &a).ok());
  lc.target_modules = {"q_proj"};
  lc.r = 0;
  CHECK(!LoraAdapter::create(c, lc, 1, &a).ok());
  lc.r = 16;
  CHECK(LoraAdapter::create(c, lc, 1, &a).ok());
  CHECK_NEAR(a->scale(), 1.0, 1e-12, 0);
  // A ~ U(-1/sqrt(in), 1/sqrt(in)), B == 0
  const LoraModule& mq = a->module(0, kLoraQ);
  float amax = 0;
  for (int64_t i = 0; i < 16 * 32; ++i) amax = std::max(amax, std::fabs(mq.A[i]));
  CHECK(amax <= 1.0f / std::sqrt(32.0f) && amax > 0.8f / std::sqrt(32.0f));
  for (int64_t i = 0; i < 32 * 16; ++i) CHECK(mq.B[i] == 0.0f);
}

MEMQ_TEST(full_model_gradient_matches_finite_differences_on_sampled_weights) {
  // The same backward also yields base-weight gradients (for full training / pretraining):
  // 60 random entries of a qwen2 model, and for qwen3 also every q_norm/k_norm entry of layer 0.
  for (const char* type : {"qwen2", "qwen3"}) {
  auto c = llm_test::tiny_config(type, 2, true);
  auto m = make_model(c, 5);
  Data d = make_data({{2, 5}, {3, 3}}, 14);
  std::vector<float> g(size_t(m->num_params()), 0.0f);
  double loss;
  CHECK(m->forward_backward(d.batch(), LossNorm::kSum, nullptr, nullptr, g.data(), 1.0f, &loss).ok());
  std::mt19937_64 r(2);
  std::vector<int64_t> idx;
  for (int s = 0; s < 60; ++s) idx.push_back(int64_t(r() % uint64_t(m->num_params())));
  for (const auto& p : m->layout())
    if (p.name.find("layers.0.self_attn.q_norm") != std::string::npos || p.name.find("layers.0.self_attn.k_norm") != std::string::npos)
      for (int64_t k = 0; k < p.numel(); ++k) idx.push_back(p.offset + k);
  int bad = 0;
  for (const int64_t i : idx) {
    float* p = m->param_data() + i;
    const float x0 = *p;
    const float h = 1e-2f;
    double lp, lm;
    *p = x0 + h;
    CHECK(m->forward_backward(d.batch(), LossNorm::kSum, nullptr, nullptr, nullptr, 1.0f, &lp).ok());
    *p = x0 - h;
    CHECK(m->forward_backward(d.batch(), LossNorm::kSum, nullptr, nullptr, nullptr, 1.0f, &lm).ok());
    *p = x0;
    const double num = (lp - lm) / (2 * h);
    if (!memq_test::near(g[size_t(i)], num, 3e-2, 3e-3)) {
      if (bad < 5) std::printf("  %s param %lld: analytic %.6g numeric %.6g\n", type, (long long)i, g[size_t(i)], num);
      ++bad;
    }
  }
  CHECK(bad == 0);
  }
}

MEMQ_TEST(full_weight_training_reduces_loss) {
  auto c = llm_test::tiny_config("qwen2", 2, true);
  auto m = make_model(c, 6);
  Data d = make_data({{4, 3}, {2, 5}, {5, 2}}, 15);
  TrainOptions o;
  o.adamw.lr = 3e-3;
  ModelTrainer tr(m.get(), o);
  double first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    StepStats s;
    CHECK(tr.accumulate(d.batch()).ok());
    CHECK(tr.step(&s).ok());
    if (step == 0) first = s.loss;
    last = s.loss;
  }
  std::printf("  loss %.4f -> %.4f\n", first, last);
  CHECK(last < 0.5 * first);
}

MEMQ_TEST(trainer_state_round_trip_resumes_lora_training_bit_exactly) {
  auto c = llm_test::tiny_config();
  auto m = make_model(c);
  std::vector<Data> data;
  for (int s = 0; s < 5; ++s) data.push_back(make_data({{3 + s, 2}, {2, 4 - s % 2}}, 100 + uint64_t(s)));
  TrainOptions o;
  o.adamw.lr = 1e-2;
  o.adamw.weight_decay = 0.01;
  auto run_steps = [&](LoraTrainer& tr, int from, int to) {
    for (int s = from; s < to; ++s) {
      CHECK(tr.accumulate(data[size_t(s)].batch()).ok());
      if (s % 2 == 1) CHECK(tr.accumulate(data[size_t(s - 1)].batch()).ok());  // some 2-micro-batch steps
      StepStats st;
      CHECK(tr.step(&st).ok());
      CHECK(st.step == s + 1);
    }
  };
  auto a = make_lora(c, {"q_proj", "v_proj", "down_proj"}, 4, false, 7);
  LoraTrainer tr(m.get(), a.get(), o);
  CHECK(tr.num_params() == a->size());
  run_steps(tr, 0, 3);
  TrainerState s3;
  CHECK(tr.get_state(&s3).ok());
  CHECK(s3.t == 3 && tr.steps() == 3);
  CHECK(int64_t(s3.m.size()) == a->size() && int64_t(s3.v.size()) == a->size());
  const std::vector<float> p3(a->params(), a->params() + a->size());
  run_steps(tr, 3, 5);
  const std::vector<float> p5(a->params(), a->params() + a->size());
  CHECK(p5 != p3);

  // A fresh adapter (other init) given the step-3 params, and a fresh trainer given the state.
  auto b = make_lora(c, {"q_proj", "v_proj", "down_proj"}, 4, true, 99);
  std::copy(p3.begin(), p3.end(), b->params());
  LoraTrainer tr2(m.get(), b.get(), o);
  CHECK(tr2.steps() == 0);
  CHECK(tr2.set_state(s3).ok());
  CHECK(tr2.steps() == 3);
  run_steps(tr2, 3, 5);
  CHECK(std::vector<float>(b->params(), b->params() + b->size()) == p5);
  TrainerState s5, s5b;
  CHECK(tr.get_state(&s5).ok() && tr2.get_state(&s5b).ok());
  CHECK(s5.m == s5b.m && s5.v == s5b.v && s5.t == 5 && s5b.t == 5);

  // Without the state (fresh moments, t = 0) the same steps give other params.
  auto c2 = make_lora(c, {"q_proj", "v_proj", "down_proj"}, 4, false, 7);
  std::copy(p3.begin(), p3.end(), c2->params());
  LoraTrainer tr3(m.get(), c2.get(), o);
  for (int s = 3; s < 5; ++s) {
    CHECK(tr3.accumulate(data[size_t(s)].batch()).ok());
    if (s % 2 == 1) CHECK(tr3.accumulate(data[size_t(s - 1)].batch()).ok());
    CHECK(tr3.step().ok());
  }
  CHECK(std::vector<float>(c2->params(), c2->params() + c2->size()) != p5);

  // The rvalue overload moves the same state in.
  LoraTrainer tr4(m.get(), c2.get(), o);
  std::copy(p3.begin(), p3.end(), c2->params());
  TrainerState moved = s3;
  CHECK(tr4.set_state(std::move(moved)).ok());
  run_steps(tr4, 3, 5);
  CHECK(std::vector<float>(c2->params(), c2->params() + c2->size()) == p5);

  // set_state keeps the accumulated gradient (and the micro-batch count).
  CHECK(tr4.accumulate(data[0].batch()).ok());
  const std::vector<float> g = tr4.grad();
  CHECK(tr4.micro_batches() == 1);
  CHECK(tr4.set_state(s3).ok());
  CHECK(tr4.grad() == g && tr4.micro_batches() == 1 && tr4.steps() == 3);
}

MEMQ_TEST(trainer_state_round_trip_resumes_full_weight_training_bit_exactly) {
  auto c = llm_test::tiny_config("qwen2", 2, true);
  auto m = make_model(c, 6);
  std::vector<Data> data;
  for (int s = 0; s < 5; ++s) data.push_back(make_data({{2 + s, 3}, {4, 2}}, 200 + uint64_t(s)));
  TrainOptions o;
  o.adamw.lr = 3e-3;
  o.adamw.weight_decay = 0.01;
  auto run_steps = [&](ModelTrainer& tr, int from, int to) {
    for (int s = from; s < to; ++s) {
      CHECK(tr.accumulate(data[size_t(s)].batch()).ok());
      CHECK(tr.micro_batches() == 1);
      StepStats st;
      CHECK(tr.step(&st).ok());
      CHECK(st.step == s + 1 && tr.micro_batches() == 0);
    }
  };
  ModelTrainer tr(m.get(), o);
  CHECK(tr.num_params() == m->num_params());
  run_steps(tr, 0, 3);
  TrainerState s3;
  CHECK(tr.get_state(&s3).ok());
  CHECK(s3.t == 3 && int64_t(s3.m.size()) == m->num_params());
  std::unique_ptr<Model> at3;
  CHECK(m->clone(&at3).ok());
  run_steps(tr, 3, 5);
  const std::vector<float> p5(m->param_data(), m->param_data() + m->num_params());

  ModelTrainer tr2(at3.get(), o);
  CHECK(tr2.set_state(s3).ok());
  run_steps(tr2, 3, 5);
  CHECK(std::vector<float>(at3->param_data(), at3->param_data() + at3->num_params()) == p5);
  CHECK(tr2.steps() == 5);
}

MEMQ_TEST(trainer_set_state_refuses_a_wrong_state_and_changes_nothing) {
  auto c = llm_test::tiny_config();
  auto m = make_model(c);
  Data d = make_data({{3, 4}, {2, 3}}, 31);
  auto a = make_lora(c, {"q_proj", "up_proj"});
  TrainOptions o;
  LoraTrainer lt(m.get(), a.get(), o);
  ModelTrainer mt(m.get(), o);
  CHECK(lt.accumulate(d.batch()).ok() && lt.step().ok());
  CHECK(lt.accumulate(d.batch()).ok());
  CHECK(mt.accumulate(d.batch()).ok() && mt.step().ok());
  auto check_refused = [](auto& tr, int64_t n) {
    TrainerState before;
    CHECK(tr.get_state(&before).ok());
    const std::vector<float> g = tr.grad();
    const int64_t micro = tr.micro_batches();
    TrainerState bad[4];
    bad[0].m.assign(size_t(n - 1), 1.0f), bad[0].v.assign(size_t(n), 1.0f), bad[0].t = 7;
    bad[1].m.assign(size_t(n), 1.0f), bad[1].v.assign(size_t(n + 1), 1.0f), bad[1].t = 7;
    bad[2].t = 7;  // empty m and v
    bad[3].m.assign(size_t(n), 1.0f), bad[3].v.assign(size_t(n), 1.0f), bad[3].t = -1;
    for (auto& s : bad) {
      Status st = tr.set_state(s);
      CHECK(!st.ok() && st.code() == StatusCode::kInvalidArgument);
      CHECK(!tr.set_state(TrainerState(s)).ok());
      TrainerState after;
      CHECK(tr.get_state(&after).ok());
      CHECK(after.m == before.m && after.v == before.v && after.t == before.t);
      CHECK(tr.steps() == before.t && tr.grad() == g && tr.micro_batches() == micro);
    }
    Status st = tr.set_state(bad[0]);
    CHECK(st.message().find("must hold " + std::to_string(n)) != std::string::npos);
    CHECK(tr.set_state(before).ok());  // a state of the right size is taken
  };
  check_refused(lt, a->size());
  check_refused(mt, m->num_params());
}

MEMQ_TEST(reused_workspace_steps_of_different_shapes_equal_fresh_models_bit_for_bit) {
  // Model::forward_backward keeps its activation / gradient / LM-head buffers across calls and
  // does not zero-fill what it overwrites. With every scratch buffer NaN-poisoned before each use
  // (detail::set_scratch_poison), a sequence of differently shaped batches on one model (growing,
  // shrinking, more and fewer sequences, LoRA and full gradients) must give exactly (==) the loss
  // and gradients a fresh model (same seed, unpoisoned) gives for each batch alone: any element
  // read before being written in the current call, or left over from the previous one, would
  // show up as NaN or as a difference. Scoring paths (logits, token_logprobs, score) too.
  for (const char* type : {"qwen2", "llama", "qwen3"}) {
    auto c = llm_test::tiny_config(type, 2, std::string(type) != "qwen2");
    const std::vector<Data> batches = {make_data({{3, 4}, {6, 2}, {1, 5}}, 21), make_data({{20, 12}, {7, 30}}, 22),
                                       make_data({{2, 2}}, 23), make_data({{5, 5}, {4, 9}, {8, 3}, {2, 6}}, 24),
                                       make_data({{20, 12}, {7, 30}}, 25)};
    auto run = [&](const Model& m, const LoraAdapter& a, const Data& d, bool full, std::vector<float>* lg,
                   std::vector<float>* fg, double* loss) {
      lg->assign(size_t(a.size()), 0.0f);
      fg->assign(full ? size_t(m.num_params()) : 0, 0.0f);
      CHECK(m.forward_backward(d.batch(), LossNorm::kWeightSum, &a, lg->data(), full ? fg->data() : nullptr, 1.0f, loss)
                .ok());
    };
    auto m = make_model(c);
    auto a = make_lora(c, {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"});
    std::vector<std::vector<float>> lgs, fgs, lps;
    std::vector<double> losses;
    detail::set_scratch_poison(true);
    for (size_t i = 0; i < batches.size(); ++i) {
      std::vector<float> lg, fg, lp(batches[i].tokens.size());
      double loss = 0;
      run(*m, *a, batches[i], i == 3, &lg, &fg, &loss);
      CHECK(m->token_logprobs(lp.data(), batches[i].batch(), a.get()).ok());
      lgs.push_back(lg), fgs.push_back(fg), losses.push_back(loss), lps.push_back(lp);
    }
    detail::set_scratch_poison(false);
    int bad = 0;
    for (size_t i = 0; i < batches.size(); ++i) {
      auto fresh = make_model(c);
      std::vector<float> lg, fg, lp(batches[i].tokens.size());
      double loss = 0;
      run(*fresh, *a, batches[i], i == 3, &lg, &fg, &loss);
      CHECK(fresh->token_logprobs(lp.data(), batches[i].batch(), a.get()).ok());
      if (!(loss == losses[i] && std::isfinite(loss))) ++bad, std::printf("  %s batch %zu: loss %.9g vs fresh %.9g\n", type, i, losses[i], loss);
      if (lg != lgs[i]) ++bad, std::printf("  %s batch %zu: LoRA gradient differs from a fresh model's\n", type, i);
      if (fg != fgs[i]) ++bad, std::printf("  %s batch %zu: full gradient differs from a fresh model's\n", type, i);
      if (lp != lps[i]) ++bad, std::printf("  %s batch %zu: token log-probs differ\n", type, i);
      for (float v : lg) if (!std::isfinite(v)) { ++bad; break; }
    }
    CHECK(bad == 0);
  }
}

MEMQ_TEST(concurrent_forward_backward_on_one_model_equals_sequential) {
  // Two threads on one model: one holds the workspace, the other gets buffers of its own; each
  // result equals the sequential one bit for bit (poisoned scratch, as above).
  auto c = llm_test::tiny_config();
  auto m = make_model(c);
  auto a = make_lora(c, {"q_proj", "v_proj", "down_proj"});
  const Data d1 = make_data({{10, 6}, {4, 8}}, 31), d2 = make_data({{3, 3}, {12, 2}, {5, 5}}, 32);
  detail::set_scratch_poison(true);
  std::vector<float> s1(size_t(a->size()), 0.0f), s2(size_t(a->size()), 0.0f);
  double l1 = 0, l2 = 0;
  CHECK(m->forward_backward(d1.batch(), LossNorm::kSum, a.get(), s1.data(), nullptr, 1.0f, &l1).ok());
  CHECK(m->forward_backward(d2.batch(), LossNorm::kSum, a.get(), s2.data(), nullptr, 1.0f, &l2).ok());
  int bad = 0;
  for (int rep = 0; rep < 20; ++rep) {
    std::vector<float> g1(size_t(a->size()), 0.0f), g2(size_t(a->size()), 0.0f);
    double x1 = 0, x2 = 0;
    bool ok1 = false, ok2 = false;
    std::thread t1([&] { ok1 = m->forward_backward(d1.batch(), LossNorm::kSum, a.get(), g1.data(), nullptr, 1.0f, &x1).ok(); });
    std::thread t2([&] { ok2 = m->forward_backward(d2.batch(), LossNorm::kSum, a.get(), g2.data(), nullptr, 1.0f, &x2).ok(); });
    t1.join();
    t2.join();
    if (!(ok1 && ok2 && x1 == l1 && x2 == l2 && g1 == s1 && g2 == s2)) ++bad;
  }
  detail::set_scratch_poison(false);
  CHECK(bad == 0);
}

MEMQ_TEST_MAIN()
