// Shared helpers for the test_llm_*.cpp suites: tiny configs, temp dirs, an independent
// double-precision reference forward written straight from the HF Llama/Qwen2 definitions
// (per sequence, plain loops, no packing, no shared code with the engine).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "memq/llm/model.h"

namespace llm_test {

inline memq::llm::ModelConfig tiny_config(const std::string& type = "qwen2", int64_t kv_heads = 2, bool tied = false) {
  memq::llm::ModelConfig c;
  c.model_type = type;
  c.vocab_size = 97;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = kv_heads;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  c.tie_word_embeddings = tied;
  c.max_position_embeddings = 512;
  return c;
}

// Fresh directories under the system temp dir, removed when the test program exits.
struct TempDirs {
  std::vector<std::string> dirs;
  ~TempDirs() {
    std::error_code ec;
    for (const auto& d : dirs) std::filesystem::remove_all(d, ec);
  }
};

inline std::string temp_dir(const std::string& tag) {
  static TempDirs all;
  std::error_code ec;
  std::filesystem::path base = std::filesystem::temp_directory_path(ec);
  if (ec) base = "/tmp";
  std::string t = (base / ("memq_llm_" + tag + "_XXXXXX")).string();
  std::vector<char> buf(t.begin(), t.end());
  buf.push_back('\0');
  const char* d = mkdtemp(buf.data());
  if (!d) return base.string();
  all.dirs.push_back(d);
  return std::string(d);
}

// Reference logits [T, V] (double) for one sequence.
inline std::vector<double> reference_logits(const memq::llm::Model& m, const std::vector<int32_t>& tok) {
  const auto& c = m.config();
  const auto& w = m.weights();
  const int64_t T = int64_t(tok.size()), C = c.hidden_size, I = c.intermediate_size, D = c.dim_head();
  const int64_t H = c.num_attention_heads, KVH = c.num_key_value_heads, V = c.vocab_size;
  auto rms = [&](const std::vector<double>& x, const float* g) {
    std::vector<double> y(size_t(T * C));
    for (int64_t t = 0; t < T; ++t) {
      double ms = 0;
      for (int64_t i = 0; i < C; ++i) ms += x[t * C + i] * x[t * C + i];
      const double r = 1.0 / std::sqrt(ms / C + c.rms_norm_eps);
      for (int64_t i = 0; i < C; ++i) y[t * C + i] = x[t * C + i] * r * g[i];
    }
    return y;
  };
  auto lin = [&](const std::vector<double>& x, int64_t in, const float* W, const float* b, int64_t out) {
    std::vector<double> y(size_t(T * out));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t o = 0; o < out; ++o) {
        double s = b ? b[o] : 0.0;
        for (int64_t i = 0; i < in; ++i) s += x[t * in + i] * W[o * in + i];
        y[t * out + o] = s;
      }
    return y;
  };
  auto rope = [&](std::vector<double>& x, int64_t heads) {
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < D / 2; ++i) {
          const double ang = double(t) * std::pow(c.rope_theta, -2.0 * double(i) / double(D));
          double& a = x[(t * heads + h) * D + i];
          double& b = x[(t * heads + h) * D + i + D / 2];
          const double a0 = a, b0 = b;
          a = a0 * std::cos(ang) - b0 * std::sin(ang);
          b = b0 * std::cos(ang) + a0 * std::sin(ang);
        }
  };
  std::vector<double> h(size_t(T * C));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < C; ++i) h[t * C + i] = w.embed[int64_t(tok[size_t(t)]) * C + i];
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const auto& P = w.layers[size_t(l)];
    auto x = rms(h, P.input_layernorm);
    auto q = lin(x, C, P.q_w, P.q_b, H * D), k = lin(x, C, P.k_w, P.k_b, KVH * D), v = lin(x, C, P.v_w, P.v_b, KVH * D);
    if (c.qk_norm()) {  // qwen3: RMSNorm over each head of q and k
      auto head_norm = [&](std::vector<double>& x, int64_t heads, const float* g) {
        for (int64_t r = 0; r < T * heads; ++r) {
          double ms = 0;
          for (int64_t e = 0; e < D; ++e) ms += x[r * D + e] * x[r * D + e];
          const double inv = 1.0 / std::sqrt(ms / D + c.rms_norm_eps);
          for (int64_t e = 0; e < D; ++e) x[r * D + e] *= inv * g[e];
        }
      };
      head_norm(q, H, P.q_norm);
      head_norm(k, KVH, P.k_norm);
    }
    rope(q, H);
    rope(k, KVH);
    std::vector<double> y(size_t(T * H * D), 0.0);
    for (int64_t hh = 0; hh < H; ++hh) {
      const int64_t kv = hh / (H / KVH);
      for (int64_t t = 0; t < T; ++t) {
        std::vector<double> s(size_t(t + 1));
        double mx = -1e300;
        for (int64_t j = 0; j <= t; ++j) {
          double d = 0;
          for (int64_t e = 0; e < D; ++e) d += q[(t * H + hh) * D + e] * k[(j * KVH + kv) * D + e];
          s[size_t(j)] = d / std::sqrt(double(D));
          mx = std::max(mx, s[size_t(j)]);
        }
        double z = 0;
        for (auto& e : s) z += (e = std::exp(e - mx));
        for (int64_t j = 0; j <= t; ++j)
          for (int64_t e = 0; e < D; ++e) y[(t * H + hh) * D + e] += s[size_t(j)] / z * v[(j * KVH + kv) * D + e];
      }
    }
    auto o = lin(y, H * D, P.o_w, P.o_b, C);
    for (size_t i = 0; i < h.size(); ++i) h[i] += o[i];
    auto x2 = rms(h, P.post_attention_layernorm);
    auto g = lin(x2, C, P.gate_w, nullptr, I), u = lin(x2, C, P.up_w, nullptr, I);
    for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
    auto dn = lin(g, I, P.down_w, nullptr, C);
    for (size_t i = 0; i < h.size(); ++i) h[i] += dn[i];
  }
  auto hf = rms(h, w.norm);
  return lin(hf, C, w.lm_head, nullptr, V);
}

}  // namespace llm_test
