// The CUDA transformer engine (memq/llm/cuda_ops.h, memq/llm/device.h) against the CPU engine.
//
// Without a usable device (including builds without CUDA) the device tests print
// "SKIPPED: no CUDA device (<reason>)" and pass; what needs no device is still tested: device
// selection ('cpu' / 'auto' / 'cuda' / garbage), a model asked for 'cuda' stays on the CPU with
// an error naming why and 'auto' falls back with the reason, the self-test's refusal, the weight
// size arithmetic, and that trainers on CPU models are unaffected.
//
// Device tests (fixed seeds, outputs poisoned with NaN before each call):
//   * each op against its CPU twin (ops.h) on random inputs: embedding (float32 and bf16
//     weights), RMSNorm, RoPE, attention (ragged batch, GQA, a cached prefix), SwiGLU, LoRA,
//     cross-entropy, forward and backward; AdamW; the global norm; the GEMM in every layout,
//     both precisions, tails of every tile dimension and the split-K path.
//     Tolerances: elementwise/row ops (float32 with double sums like the CPU) 1e-6..2e-5 relative
//     + a small absolute term (1e-4 where the CPU sums floats in row order); attention 2e-5
//     forward, 1e-4 + 2e-5 backward; 3xTF32 products 1e-4 of sum |a||b|; bf16 products against
//     the CPU on the bf16-rounded operands (same products, only the summation order differs)
//     1e-4 of sum |a||b|;
//   * whole models (qwen2 GQA + biases, llama tied, qwen3 q/k norms) in float32 (3xTF32) and
//     bf16: token log-probs, scores with a shared prompt, embeddings, logits (fp32: 5e-4
//     absolute; bf16: 6e-2), the LoRA gradient on all seven projections and the full gradient
//     (relative L2 2e-3 fp32, 8e-2 bf16), and a whole LoRA step through LoraTrainer (loss,
//     gradient, updated A/B), a ModelTrainer step, trainer state round trips, gradient
//     accumulation; the weights-do-not-fit error; the start-up self-test.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "memq/cuda/cuda_backend.h"
#include "memq/llm/device.h"
#include "memq/llm/lora.h"
#include "memq/llm/model.h"
#include "memq/llm/ops.h"
#include "memq/llm/safetensors.h"
#include "memq/llm/train.h"
#include "test_llm_util.h"
#include "testing.h"
#ifdef MEMQ_HAVE_CUDA
#include "memq/llm/cuda_ops.h"
#endif

using namespace memq;
using namespace memq::llm;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();

bool device_ready(std::string* why) {
  static bool done = false, ok = false;
  static std::string reason;
  if (!done) {
    CudaDeviceInfo info;
    Status st = cuda_device_info(&info);
    ok = st.ok();
    reason = ok ? "" : info.reason;
    done = true;
  }
  *why = reason;
  return ok;
}

#define REQUIRE_DEVICE()                                              \
  do {                                                                \
    std::string _why;                                                 \
    if (!device_ready(&_why)) {                                       \
      std::printf("  SKIPPED: no CUDA device (%s)\n", _why.c_str());  \
      return;                                                         \
    }                                                                 \
  } while (0)

std::vector<float> gauss(std::mt19937& rng, size_t n, float s = 1.0f) {
  std::normal_distribution<float> g(0.0f, s);
  std::vector<float> v(n);
  for (auto& x : v) x = g(rng);
  return v;
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - double(b[i])) * (double(a[i]) - double(b[i]));
    den += double(b[i]) * double(b[i]);
  }
  if (a.size() != b.size()) return INFINITY;
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

// First index where |a - b| > atol + rtol |b| (or NaN), -1 when none.
int64_t first_bad(const std::vector<float>& a, const std::vector<float>& b, double rtol, double atol) {
  if (a.size() != b.size()) return 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (!memq_test::near(a[i], b[i], rtol, atol)) return int64_t(i);
  return -1;
}

#define CHECK_ALL_NEAR(a, b, rtol, atol)                                                                 \
  do {                                                                                                   \
    const int64_t _i = first_bad((a), (b), (rtol), (atol));                                              \
    if (_i >= 0) {                                                                                       \
      char _buf[256];                                                                                    \
      std::snprintf(_buf, sizeof _buf, "%s vs %s differ at %lld: %.9g vs %.9g", #a, #b, (long long)_i,   \
                    _i < int64_t((a).size()) ? double((a)[static_cast<size_t>(_i)]) : 0.0,                            \
                    _i < int64_t((b).size()) ? double((b)[static_cast<size_t>(_i)]) : 0.0);                           \
      ::memq_test::fail(__FILE__, __LINE__, _buf);                                                       \
    }                                                                                                    \
  } while (0)

TokenBatch make_batch(const std::vector<int32_t>& tok, const std::vector<int64_t>& off, const float* w = nullptr) {
  TokenBatch b;
  b.tokens = tok.data();
  b.offsets = off.data();
  b.n_seqs = int64_t(off.size()) - 1;
  b.weights = w;
  return b;
}

}  // namespace

// ---- without a device ------------------------------------------------------------------------------

MEMQ_TEST(device_selection_cpu_auto_cuda_and_garbage) {
  LlmDeviceChoice c;
  CHECK(select_llm_device("cpu", &c).ok());
  CHECK(c.device == LlmDevice::kCpu && c.reason == "cpu: requested");
  Status st = select_llm_device("gpu", &c);
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK(st.message().find("'cpu', 'cuda' or 'auto'") != std::string::npos);
  std::string why;
  const bool dev = device_ready(&why);
  st = select_llm_device("auto", &c);
  CHECK(st.ok());
  if (!dev) {
    CHECK(c.device == LlmDevice::kCpu);
    CHECK(c.reason.rfind("auto: CUDA not used: ", 0) == 0);
    CHECK(c.reason.find(why.empty() ? "CUDA" : why) != std::string::npos);
    st = select_llm_device("cuda", &c);
    CHECK(st.code() == StatusCode::kUnavailable);
    CHECK(st.message().rfind("device 'cuda' requested but unusable: ", 0) == 0);
    std::printf("  (no device: 'cuda' -> %s)\n", st.message().c_str());
  } else {
    std::printf("  (device present: 'auto' -> %s: %s)\n", llm_device_name(c.device), c.reason.c_str());
  }
}

MEMQ_TEST(model_asked_for_cuda_without_a_device_stays_on_the_cpu) {
  std::string why;
  if (device_ready(&why)) {
    std::printf("  (a device is present: covered by the device tests)\n");
    return;
  }
  std::unique_ptr<Model> m;
  CHECK(Model::create_random(llm_test::tiny_config(), 3, 0.2f, &m).ok());
  const std::vector<int32_t> tok = {1, 2, 3, 4, 5};
  const std::vector<int64_t> off = {0, 5};
  std::vector<float> before(5), after(5, kNaN);
  CHECK(m->token_logprobs(before.data(), make_batch(tok, off)).ok());
  LlmDeviceOptions o;
  o.device = "cuda";
  Status st = m->set_device(o);
  CHECK(st.code() == StatusCode::kUnavailable);
  CHECK(m->device() == LlmDevice::kCpu && m->engine() == nullptr && m->placement() == 0);
  CHECK(m->device_reason() == "cpu: default");
  o.device = "auto";
  LlmDeviceChoice c;
  CHECK(m->set_device(o, &c).ok());
  CHECK(m->device() == LlmDevice::kCpu && c.device == LlmDevice::kCpu);
  CHECK(m->device_reason().rfind("auto: CUDA not used: ", 0) == 0);
  CHECK(m->token_logprobs(after.data(), make_batch(tok, off)).ok());
  CHECK(before == after);
  o.device = "tpu";
  CHECK(m->set_device(o).code() == StatusCode::kInvalidArgument);
  std::unique_ptr<DeviceEngine> e;
  st = create_cuda_engine(*m, LlmDeviceOptions(), &e);
  CHECK(st.code() == StatusCode::kUnavailable && !e);
  std::string report;
  CHECK(llm_cuda_self_test(&report).code() == StatusCode::kUnavailable);
  CHECK(report.rfind("llm cuda self-test: not run: ", 0) == 0);
}

MEMQ_TEST(weight_bytes_and_precision_names) {
  ModelConfig c = llm_test::tiny_config();  // qwen2, V 97, C 32, I 48, 2 layers, 4 heads, 2 kv heads
  int64_t total = 0, vec = 0;
  for (const auto& t : param_layout(c, &total))
    if (t.shape.size() == 1) vec += t.numel();
  // per layer: 2 norms (32 each) + q/k/v biases (32 + 16 + 16); + final norm 32
  CHECK(vec == 2 * (32 + 32 + 32 + 16 + 16) + 32);
  CHECK(cuda_weight_bytes(c, LlmPrecision::kFP32) == 4 * total);
  CHECK(cuda_weight_bytes(c, LlmPrecision::kBF16) == 2 * total + 4 * vec);
  LlmPrecision p;
  CHECK(llm_precision_from_name("bf16", &p) && p == LlmPrecision::kBF16);
  CHECK(llm_precision_from_name("fp32", &p) && p == LlmPrecision::kFP32);
  CHECK(!llm_precision_from_name("fp16", &p));
  CHECK(std::string(llm_precision_name(LlmPrecision::kFP32)) == "fp32");
}

MEMQ_TEST(adapter_versions_change_on_touch_and_are_unique) {
  ModelConfig c = llm_test::tiny_config();
  std::unique_ptr<LoraAdapter> a, b;
  CHECK(LoraAdapter::create(c, LoraConfig(), 1, &a).ok());
  CHECK(LoraAdapter::create(c, LoraConfig(), 1, &b).ok());
  CHECK(a->version() != 0 && b->version() != 0 && a->version() != b->version());
  const uint64_t v = a->version();
  a->touch();
  CHECK(a->version() != v && a->version() != b->version());
}

#ifdef MEMQ_HAVE_CUDA

namespace {

namespace dev = memq::llm::cuda;

// A device copy of a host vector.
template <class T>
struct DevVec {
  dev::Buffer buf;
  size_t n = 0;
  explicit DevVec(const std::vector<T>& h) : n(h.size()) {
    Status st = buf.ensure(std::max<size_t>(1, n) * sizeof(T), 0, nullptr, "test");
    if (st.ok()) st = dev::copy_to_device(buf.as<void>(), h.data(), n * sizeof(T), nullptr);
    if (!st.ok()) std::printf("  device copy failed: %s\n", st.message().c_str());
  }
  explicit DevVec(size_t count, T fill) : DevVec(std::vector<T>(count, fill)) {}
  T* p() const { return buf.as<T>(); }
  std::vector<T> host() const {
    std::vector<T> h(n);
    Status st = dev::copy_to_host(h.data(), buf.as<void>(), n * sizeof(T), nullptr);
    if (!st.ok()) std::printf("  device copy failed: %s\n", st.message().c_str());
    return h;
  }
};

std::vector<uint16_t> bf16_bits(const std::vector<float>& x) {
  std::vector<uint16_t> b(x.size());
  for (size_t i = 0; i < x.size(); ++i) b[i] = f32_to_bf16(x[i]);
  return b;
}
std::vector<float> rounded(const std::vector<float>& x) {
  std::vector<float> r(x.size());
  for (size_t i = 0; i < x.size(); ++i) r[i] = round_to_bf16(x[i]);
  return r;
}

// |c - ref| <= tol * sum_k |a_mk| |b_kn| for every element (the scale of a product's rounding).
void check_product(const std::vector<float>& got, const std::vector<float>& ref, const std::vector<double>& mag,
                   double tol, const char* what) {
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!(std::fabs(double(got[i]) - double(ref[i])) <= tol * mag[i] + 1e-6)) {
      char buf[200];
      std::snprintf(buf, sizeof buf, "%s[%zu]: %.9g vs CPU %.9g (scale %.3g)", what, i, got[i], ref[i], mag[i]);
      memq_test::fail(__FILE__, __LINE__, buf);
      return;
    }
  }
}

}  // namespace

MEMQ_TEST(gemm_every_layout_both_precisions_tails_and_split_k) {
  REQUIRE_DEVICE();
  std::mt19937 rng(101);
  struct Shape {
    int64_t M, N, K;
  };
  // tails in every dimension, skinny LoRA-like shapes with a long K (split-K), K = 0
  const Shape shapes[] = {{1, 1, 1}, {37, 130, 45}, {129, 127, 33}, {8, 300, 4100}, {300, 8, 4100}, {64, 64, 0}};
  dev::Buffer wsb;
  CHECK(wsb.ensure(static_cast<size_t>(1) << 24, 0, nullptr, "ws").ok());
  dev::GemmWorkspace ws;
  ws.p = wsb.as<float>();
  ws.floats = int64_t(1) << 22;
  for (const Shape& s : shapes)
    for (int layout = 0; layout < 4; ++layout)
      for (int pr = 0; pr < 2; ++pr)
        for (int bt = 0; bt < 2; ++bt) {  // B in float32 or bf16
          const bool a_rows = layout & 1, b_rows = layout & 2, tf32 = pr == 1, bbf = bt == 1;
          std::vector<float> A = gauss(rng, static_cast<size_t>(std::max<int64_t>(1, s.M * s.K)));
          std::vector<float> B = gauss(rng, static_cast<size_t>(std::max<int64_t>(1, s.K * s.N)));
          if (bbf) B = rounded(B);
          std::vector<float> bias = gauss(rng, static_cast<size_t>(s.N)), C0 = gauss(rng, static_cast<size_t>(s.M * s.N));
          // op(A)(m,k): row-major [M,K] (sak = 1) or column-major (sam = 1); op(B)(k,n) likewise
          const int64_t sam = a_rows ? s.K : 1, sak = a_rows ? 1 : s.M;
          const int64_t sbk = b_rows ? s.N : 1, sbn = b_rows ? 1 : s.K;
          const float alpha = 0.75f;
          std::vector<float> ref(C0), got;
          std::vector<double> mag(static_cast<size_t>(s.M * s.N), 0.0);
          for (int64_t m = 0; m < s.M; ++m)
            for (int64_t n = 0; n < s.N; ++n) {
              double acc = 0.0, mg = 0.0;
              for (int64_t k = 0; k < s.K; ++k) {
                double a = A[static_cast<size_t>(m * sam + k * sak)], b = B[static_cast<size_t>(k * sbk + n * sbn)];
                if (!tf32) {  // the device rounds both operands to bf16
                  a = round_to_bf16(float(a));
                  b = round_to_bf16(float(b));
                }
                acc += a * b;
                mg += std::fabs(a * b);
              }
              ref[static_cast<size_t>(m * s.N + n)] += float(alpha * acc + bias[static_cast<size_t>(n)]);
              mag[static_cast<size_t>(m * s.N + n)] = std::fabs(alpha) * mg + std::fabs(bias[static_cast<size_t>(n)]);
            }
          DevVec<float> dA(A), dC(C0), dbias(bias);
          DevVec<float> dBf(B);
          DevVec<uint16_t> dBh(bf16_bits(B));
          dev::WeightRef wb = bbf ? dev::WeightRef::bf16_bits(dBh.p()) : dev::WeightRef(dBf.p());
          Status st = dev::gemm(dC.p(), s.N, dA.p(), sam, sak, wb, sbk, sbn, s.M, s.N, s.K, alpha, true, dbias.p(),
                                tf32 ? dev::GemmPrecision::kTF32x3 : dev::GemmPrecision::kBF16, ws, nullptr);
          CHECK(st.ok());
          got = dC.host();
          char what[128];
          std::snprintf(what, sizeof what, "gemm M%lld N%lld K%lld layout%d %s B%s", (long long)s.M, (long long)s.N,
                        (long long)s.K, layout, tf32 ? "tf32x3" : "bf16", bbf ? "bf16" : "f32");
          check_product(got, ref, mag, 1e-4, what);
        }
}

MEMQ_TEST(elementwise_and_row_ops_match_the_cpu_twins) {
  REQUIRE_DEVICE();
  std::mt19937 rng(7);
  const int64_t N = 45, C = 70, V = 53, H = 4, D = 18;
  std::vector<int32_t> tok(N), pos(N);
  for (int64_t i = 0; i < N; ++i) tok[static_cast<size_t>(i)] = int32_t(rng() % V), pos[static_cast<size_t>(i)] = int32_t(rng() % 30);
  DevVec<int32_t> dtok(tok), dpos(pos);
  // embedding, float32 and bf16 tables
  {
    std::vector<float> wte = gauss(rng, static_cast<size_t>(V * C)), ref(static_cast<size_t>(N * C));
    embedding_forward<float>(ref.data(), tok.data(), wte.data(), N, C);
    DevVec<float> dw(wte), out(static_cast<size_t>(N * C), kNaN);
    CHECK(dev::embedding_forward(out.p(), dtok.p(), dev::WeightRef(dw.p()), N, C, nullptr).ok());
    CHECK_ALL_NEAR(out.host(), ref, 0.0, 0.0);
    DevVec<uint16_t> dh(bf16_bits(wte));
    std::vector<float> rref(static_cast<size_t>(N * C));
    const std::vector<float> wr = rounded(wte);
    embedding_forward<float>(rref.data(), tok.data(), wr.data(), N, C);
    CHECK(dev::embedding_forward(out.p(), dtok.p(), dev::WeightRef::bf16_bits(dh.p()), N, C, nullptr).ok());
    CHECK_ALL_NEAR(out.host(), rref, 0.0, 0.0);
    std::vector<float> dout = gauss(rng, static_cast<size_t>(N * C)), dref(static_cast<size_t>(V * C), 0.5f);
    embedding_backward<float>(dref.data(), dout.data(), tok.data(), N, C);
    DevVec<float> ddw(static_cast<size_t>(V * C), 0.5f), ddo(dout);
    CHECK(dev::embedding_backward(ddw.p(), ddo.p(), dtok.p(), N, C, nullptr).ok());
    CHECK_ALL_NEAR(ddw.host(), dref, 2e-5, 1e-6);
  }
  // RMSNorm
  {
    std::vector<float> x = gauss(rng, static_cast<size_t>(N * C), 2.0f), w = gauss(rng, static_cast<size_t>(C)), y(static_cast<size_t>(N * C)), r(static_cast<size_t>(N));
    rmsnorm_forward<float>(y.data(), r.data(), x.data(), w.data(), 1e-6, N, C);
    DevVec<float> dx(x), dw(w), dy(static_cast<size_t>(N * C), kNaN), dr(static_cast<size_t>(N), kNaN);
    CHECK(dev::rmsnorm_forward(dy.p(), dr.p(), dx.p(), dw.p(), 1e-6, N, C, nullptr).ok());
    CHECK_ALL_NEAR(dy.host(), y, 2e-5, 1e-6);
    CHECK_ALL_NEAR(dr.host(), r, 2e-6, 0.0);
    std::vector<float> g = gauss(rng, static_cast<size_t>(N * C)), dxr(static_cast<size_t>(N * C), 0.25f), dwr(static_cast<size_t>(C), -0.5f);
    rmsnorm_backward<float>(dxr.data(), dwr.data(), g.data(), x.data(), w.data(), r.data(), N, C);
    DevVec<float> dg(g), ddx(static_cast<size_t>(N * C), 0.25f), ddw(static_cast<size_t>(C), -0.5f);
    CHECK(dev::rmsnorm_backward(ddx.p(), ddw.p(), dg.p(), dx.p(), dw.p(), dr.p(), N, C, nullptr).ok());
    CHECK_ALL_NEAR(ddx.host(), dxr, 2e-5, 1e-6);
    CHECK_ALL_NEAR(ddw.host(), dwr, 2e-5, 1e-4);  // the CPU sums floats in row order
  }
  // RoPE (in place, as the engine uses it) and its backward
  {
    std::vector<float> cosb(static_cast<size_t>(30 * D / 2)), sinb(static_cast<size_t>(30 * D / 2));
    for (int64_t p = 0; p < 30; ++p)
      for (int64_t i = 0; i < D / 2; ++i) {
        const float inv = 1.0f / std::pow(10000.0f, float(2 * i) / float(D));
        cosb[static_cast<size_t>(p * D / 2 + i)] = std::cos(float(p) * inv);
        sinb[static_cast<size_t>(p * D / 2 + i)] = std::sin(float(p) * inv);
      }
    std::vector<float> x = gauss(rng, static_cast<size_t>(N * H * D)), y(x);
    rope_forward<float>(y.data(), y.data(), cosb.data(), sinb.data(), pos.data(), N, H, D);
    DevVec<float> dc(cosb), ds(sinb), dx(x);
    CHECK(dev::rope_forward(dx.p(), dx.p(), dc.p(), ds.p(), dpos.p(), N, H, D, nullptr).ok());
    CHECK_ALL_NEAR(dx.host(), y, 1e-6, 1e-7);  // the same float expressions (bit-equal unless the CPU build contracts to FMA)
    std::vector<float> g = gauss(rng, static_cast<size_t>(N * H * D)), dref(static_cast<size_t>(N * H * D), 1.0f);
    rope_backward<float>(dref.data(), g.data(), cosb.data(), sinb.data(), pos.data(), N, H, D);
    DevVec<float> dg(g), dd(static_cast<size_t>(N * H * D), 1.0f);
    CHECK(dev::rope_backward(dd.p(), dg.p(), dc.p(), ds.p(), dpos.p(), N, H, D, nullptr).ok());
    CHECK_ALL_NEAR(dd.host(), dref, 1e-6, 1e-7);
  }
  // SwiGLU
  {
    const int64_t n = N * C;
    std::vector<float> g = gauss(rng, static_cast<size_t>(n), 3.0f), u = gauss(rng, static_cast<size_t>(n)), y(static_cast<size_t>(n));
    swiglu_forward<float>(y.data(), g.data(), u.data(), n);
    DevVec<float> dg(g), du(u), dy(static_cast<size_t>(n), kNaN);
    CHECK(dev::swiglu_forward(dy.p(), dg.p(), du.p(), n, nullptr).ok());
    CHECK_ALL_NEAR(dy.host(), y, 1e-5, 1e-7);
    std::vector<float> d = gauss(rng, static_cast<size_t>(n)), rg(static_cast<size_t>(n), 0.1f), ru(static_cast<size_t>(n), 0.2f);
    swiglu_backward<float>(rg.data(), ru.data(), d.data(), g.data(), u.data(), n);
    DevVec<float> dd(d), ddg(static_cast<size_t>(n), 0.1f), ddu(static_cast<size_t>(n), 0.2f);
    CHECK(dev::swiglu_backward(ddg.p(), ddu.p(), dd.p(), dg.p(), du.p(), n, nullptr).ok());
    CHECK_ALL_NEAR(ddg.host(), rg, 1e-5, 1e-6);
    CHECK_ALL_NEAR(ddu.host(), ru, 1e-5, 1e-6);
  }
  // cross-entropy, forward and backward (in place, rows with dnll 0)
  {
    const int64_t M = 9, VV = 1000;
    std::vector<float> l = gauss(rng, static_cast<size_t>(M * VV), 4.0f), nll(static_cast<size_t>(M)), dnll = gauss(rng, static_cast<size_t>(M));
    dnll[3] = 0.0f;
    std::vector<int32_t> t(static_cast<size_t>(M));
    for (auto& x : t) x = int32_t(rng() % VV);
    crossentropy_forward<float>(nll.data(), l.data(), t.data(), M, VV);
    DevVec<float> dl(l), dn(static_cast<size_t>(M), kNaN), ddn(dnll);
    DevVec<int32_t> dt(t);
    CHECK(dev::crossentropy_forward(dn.p(), dl.p(), dt.p(), M, VV, nullptr).ok());
    CHECK_ALL_NEAR(dn.host(), nll, 1e-5, 1e-5);
    std::vector<float> gref(static_cast<size_t>(M * VV));
    crossentropy_backward<float>(gref.data(), l.data(), t.data(), dnll.data(), M, VV);
    CHECK(dev::crossentropy_backward(dl.p(), dl.p(), dt.p(), ddn.p(), M, VV, nullptr).ok());
    CHECK_ALL_NEAR(dl.host(), gref, 1e-5, 1e-6);
  }
  // helpers: add, scale, gather, scatter-add, mean over ragged rows, kv gather, bf16 rounding
  {
    std::vector<float> a = gauss(rng, 300), b = gauss(rng, 300);
    DevVec<float> da(a), db(b);
    CHECK(dev::add(da.p(), da.p(), db.p(), 300, nullptr).ok());
    CHECK(dev::scale(da.p(), 0.5f, 300, nullptr).ok());
    std::vector<float> r(300);
    for (size_t i = 0; i < 300; ++i) r[i] = (a[i] + b[i]) * 0.5f;
    CHECK_ALL_NEAR(da.host(), r, 0.0, 0.0);
    const std::vector<int64_t> rows = {3, 0, 7, 5};
    const std::vector<int64_t> off = {0, 2, 2, 10};
    std::vector<float> x = gauss(rng, static_cast<size_t>(10 * 6));
    DevVec<float> dx(x), dgat(static_cast<size_t>(4 * 6), kNaN), dsum(static_cast<size_t>(10 * 6), 1.0f), dmean(static_cast<size_t>(3 * 6), kNaN);
    DevVec<int64_t> drows(rows), doff(off);
    CHECK(dev::gather_rows(dgat.p(), dx.p(), drows.p(), 4, 6, nullptr).ok());
    CHECK(dev::scatter_add_rows(dsum.p(), dgat.p(), drows.p(), 4, 6, nullptr).ok());
    CHECK(dev::mean_rows(dmean.p(), dx.p(), doff.p(), 3, 6, nullptr).ok());
    std::vector<float> g(24), s(60, 1.0f), mean(18);
    for (size_t i = 0; i < 4; ++i)
      for (size_t c = 0; c < 6; ++c) {
        g[i * 6 + c] = x[static_cast<size_t>(rows[i]) * 6 + c];
        s[static_cast<size_t>(rows[i]) * 6 + c] += g[i * 6 + c];
      }
    for (size_t bb = 0; bb < 3; ++bb)
      for (size_t c = 0; c < 6; ++c) {
        double acc = 0.0;
        for (int64_t t = off[bb]; t < off[bb + 1]; ++t) acc += x[static_cast<size_t>(t) * 6 + c];
        const int64_t n = off[bb + 1] - off[bb];
        mean[bb * 6 + c] = n ? float(acc / double(n)) : 0.0f;
      }
    CHECK_ALL_NEAR(dgat.host(), g, 0.0, 0.0);
    CHECK_ALL_NEAR(dsum.host(), s, 0.0, 0.0);
    CHECK_ALL_NEAR(dmean.host(), mean, 0.0, 0.0);
    const std::vector<int64_t> src = {2, 0, -1, -3};  // cache rows 2, 0; current rows 0, 2
    std::vector<float> kc = gauss(rng, 4 * 5), vc = gauss(rng, 4 * 5), kn = gauss(rng, 3 * 5), vn = gauss(rng, 3 * 5);
    DevVec<float> dkc(kc), dvc(vc), dkn(kn), dvn(vn), ko(static_cast<size_t>(20), kNaN), vo(static_cast<size_t>(20), kNaN);
    DevVec<int64_t> dsrc(src);
    CHECK(dev::gather_kv(ko.p(), vo.p(), dkc.p(), dvc.p(), dkn.p(), dvn.p(), dsrc.p(), 4, 5, nullptr).ok());
    std::vector<float> ke(20), ve(20);
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < 5; ++c) {
        const int64_t sidx = src[static_cast<size_t>(r)];
        ke[static_cast<size_t>(r * 5 + c)] = sidx >= 0 ? kc[static_cast<size_t>(sidx * 5 + c)] : kn[static_cast<size_t>((-sidx - 1) * 5 + c)];
        ve[static_cast<size_t>(r * 5 + c)] = sidx >= 0 ? vc[static_cast<size_t>(sidx * 5 + c)] : vn[static_cast<size_t>((-sidx - 1) * 5 + c)];
      }
    CHECK_ALL_NEAR(ko.host(), ke, 0.0, 0.0);
    CHECK_ALL_NEAR(vo.host(), ve, 0.0, 0.0);
    std::vector<float> big = gauss(rng, 1000, 100.0f);
    DevVec<float> dbig(big);
    DevVec<uint16_t> bits(static_cast<size_t>(1000), uint16_t(0));
    CHECK(dev::to_bf16(bits.p(), dbig.p(), 1000, nullptr).ok());
    CHECK(bits.host() == bf16_bits(big));
  }
}

MEMQ_TEST(attention_forward_backward_ragged_gqa_and_prefix_match_the_cpu) {
  REQUIRE_DEVICE();
  std::mt19937 rng(11);
  for (int64_t D : {int64_t(16), int64_t(64), int64_t(256)}) {
    const int64_t H = 6, KVH = 2;
    // lengths across the 8-row and 32-key tiles, one empty sequence
    const std::vector<int64_t> lens = {1, 9, 0, 40, 33};
    const int64_t B = int64_t(lens.size());
    for (int with_prefix = 0; with_prefix < 2; ++with_prefix) {
      const std::vector<int64_t> plen = with_prefix ? std::vector<int64_t>{3, 0, 5, 31, 64} : std::vector<int64_t>(5, 0);
      std::vector<int64_t> q_off(static_cast<size_t>(B + 1), 0), kv_off(static_cast<size_t>(B + 1), 0), att_off(static_cast<size_t>(B + 1), 0);
      int64_t max_lq = 0, max_lk = 0;
      for (int64_t b = 0; b < B; ++b) {
        const int64_t Lq = lens[static_cast<size_t>(b)], Lk = Lq + plen[static_cast<size_t>(b)];
        q_off[static_cast<size_t>(b + 1)] = q_off[static_cast<size_t>(b)] + Lq;
        kv_off[static_cast<size_t>(b + 1)] = kv_off[static_cast<size_t>(b)] + Lk;
        att_off[static_cast<size_t>(b + 1)] = att_off[static_cast<size_t>(b)] + H * Lq * Lk;
        max_lq = std::max(max_lq, Lq);
        max_lk = std::max(max_lk, Lk);
      }
      const int64_t Nq = q_off[static_cast<size_t>(B)], Nk = kv_off[static_cast<size_t>(B)], S = att_off[static_cast<size_t>(B)];
      std::vector<float> q = gauss(rng, static_cast<size_t>(Nq * H * D)), k = gauss(rng, static_cast<size_t>(Nk * KVH * D)),
                         v = gauss(rng, static_cast<size_t>(Nk * KVH * D));
      std::vector<float> out(static_cast<size_t>(Nq * H * D)), att(static_cast<size_t>(S));
      attention_forward<float>(out.data(), att.data(), q.data(), k.data(), v.data(), q_off.data(), kv_off.data(),
                               att_off.data(), B, H, KVH, D);
      DevVec<float> dq(q), dk(k), dv(v), dout(static_cast<size_t>(Nq * H * D), kNaN), datt(static_cast<size_t>(S), kNaN);
      DevVec<int64_t> dqo(q_off), dko(kv_off), dao(att_off);
      CHECK(dev::attention_forward(dout.p(), datt.p(), dq.p(), dk.p(), dv.p(), dqo.p(), dko.p(), dao.p(), B, H, KVH, D,
                                   max_lq, max_lk, nullptr)
                .ok());
      CHECK_ALL_NEAR(datt.host(), att, 2e-5, 1e-7);
      CHECK_ALL_NEAR(dout.host(), out, 2e-5, 2e-6);
      if (with_prefix) continue;  // the engine runs backward only without a prefix
      std::vector<float> g = gauss(rng, static_cast<size_t>(Nq * H * D));
      std::vector<float> gq(static_cast<size_t>(Nq * H * D), 0.5f), gk(static_cast<size_t>(Nk * KVH * D), 0.25f), gv(static_cast<size_t>(Nk * KVH * D), -1.0f);
      attention_backward<float>(gq.data(), gk.data(), gv.data(), g.data(), q.data(), k.data(), v.data(), att.data(),
                                q_off.data(), kv_off.data(), att_off.data(), B, H, KVH, D);
      DevVec<float> dg(g), dgq(static_cast<size_t>(Nq * H * D), 0.5f), dgk(static_cast<size_t>(Nk * KVH * D), 0.25f),
          dgv(static_cast<size_t>(Nk * KVH * D), -1.0f), dds(static_cast<size_t>(S), kNaN);
      CHECK(dev::attention_backward(dgq.p(), dgk.p(), dgv.p(), dds.p(), dg.p(), dq.p(), dk.p(), dv.p(), datt.p(),
                                    dqo.p(), dko.p(), dao.p(), B, H, KVH, D, max_lq, max_lk, nullptr)
                .ok());
      CHECK_ALL_NEAR(dgq.host(), gq, 1e-4, 2e-5);
      CHECK_ALL_NEAR(dgk.host(), gk, 1e-4, 2e-5);
      CHECK_ALL_NEAR(dgv.host(), gv, 1e-4, 2e-5);
    }
  }
  // head_dim over the limit: a clear refusal, nothing launched
  Status st = dev::attention_forward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 1, 2, 1,
                                     258, 1, 1, nullptr);
  CHECK(st.code() == StatusCode::kInvalidArgument);
}

MEMQ_TEST(matmul_and_lora_twins_forward_backward_both_precisions) {
  REQUIRE_DEVICE();
  std::mt19937 rng(23);
  const int64_t N = 70, C = 48, OC = 40, R = 4;
  dev::Buffer wsb;
  CHECK(wsb.ensure(static_cast<size_t>(1) << 22, 0, nullptr, "ws").ok());
  dev::GemmWorkspace ws;
  ws.p = wsb.as<float>();
  ws.floats = int64_t(1) << 20;
  for (int pr = 0; pr < 2; ++pr) {
    const bool tf32 = pr == 1;
    const dev::GemmPrecision prec = tf32 ? dev::GemmPrecision::kTF32x3 : dev::GemmPrecision::kBF16;
    std::vector<float> x = gauss(rng, static_cast<size_t>(N * C)), W = gauss(rng, static_cast<size_t>(OC * C), 0.2f), bias = gauss(rng, static_cast<size_t>(OC));
    std::vector<float> A = gauss(rng, static_cast<size_t>(R * C), 0.3f), Bm = gauss(rng, static_cast<size_t>(OC * R), 0.3f);
    // CPU oracle on the operands the device rounds (bf16) or exact (3xTF32 is float32-level)
    auto rd = [&](const std::vector<float>& v) { return tf32 ? v : rounded(v); };
    std::vector<float> y(static_cast<size_t>(N * OC));
    matmul_forward<float>(y.data(), rd(x).data(), rd(W).data(), bias.data(), N, C, OC);
    DevVec<float> dx(x), dW(W), db(bias), dy(static_cast<size_t>(N * OC), kNaN);
    CHECK(dev::matmul_forward(dy.p(), dx.p(), dev::WeightRef(dW.p()), db.p(), N, C, OC, prec, nullptr).ok());
    CHECK(rel_l2(dy.host(), y) < 1e-5);
    // backward: dinp, dweight, dbias (accumulating onto non-zero values)
    std::vector<float> g = gauss(rng, static_cast<size_t>(N * OC)), dxr(static_cast<size_t>(N * C), 0.5f), dWr(static_cast<size_t>(OC * C), 0.5f),
                       dbr(static_cast<size_t>(OC), 0.5f);
    matmul_backward<float>(dxr.data(), dWr.data(), dbr.data(), rd(g).data(), rd(x).data(), rd(W).data(), N, C, OC);
    DevVec<float> dg(g), ddx(static_cast<size_t>(N * C), 0.5f), ddW(static_cast<size_t>(OC * C), 0.5f), ddb(static_cast<size_t>(OC), 0.5f);
    CHECK(dev::matmul_backward(ddx.p(), ddW.p(), ddb.p(), dg.p(), dx.p(), dev::WeightRef(dW.p()), N, C, OC, prec, ws,
                               nullptr)
              .ok());
    CHECK(rel_l2(ddx.host(), dxr) < 1e-5);
    CHECK(rel_l2(ddW.host(), dWr) < 1e-5);
    // the bias gradient sums the unrounded dout
    std::vector<float> dbe(static_cast<size_t>(OC), 0.5f);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < OC; ++o) dbe[static_cast<size_t>(o)] += g[static_cast<size_t>(n * OC + o)];
    CHECK_ALL_NEAR(ddb.host(), dbe, 1e-5, 1e-4);
    // LoRA: out += scale (x A^T) B^T; t kept; backward into dx, dA, dB
    const double scale = 2.5;
    if (tf32) {
      std::vector<float> out(y), t(static_cast<size_t>(N * R));
      lora_forward<float>(out.data(), t.data(), x.data(), A.data(), Bm.data(), scale, N, C, OC, R);
      DevVec<float> dA(A), dB(Bm), dout(y), dt(static_cast<size_t>(N * R), kNaN);
      CHECK(dev::lora_forward(dout.p(), dt.p(), dx.p(), dA.p(), dB.p(), scale, N, C, OC, R, prec, nullptr).ok());
      CHECK(rel_l2(dt.host(), t) < 1e-5);
      CHECK(rel_l2(dout.host(), out) < 1e-5);
      std::vector<float> gx(static_cast<size_t>(N * C), 0.1f), gA(static_cast<size_t>(R * C), 0.2f), gB(static_cast<size_t>(OC * R), 0.3f);
      lora_backward<float>(gx.data(), gA.data(), gB.data(), g.data(), x.data(), t.data(), A.data(), Bm.data(), scale, N,
                           C, OC, R);
      DevVec<float> dgx(static_cast<size_t>(N * C), 0.1f), dgA(static_cast<size_t>(R * C), 0.2f), dgB(static_cast<size_t>(OC * R), 0.3f), scratch(static_cast<size_t>(N * R), kNaN);
      CHECK(dev::lora_backward(dgx.p(), dgA.p(), dgB.p(), scratch.p(), dg.p(), dx.p(), dt.p(), dA.p(), dB.p(), scale, N,
                               C, OC, R, prec, ws, nullptr)
                .ok());
      CHECK(rel_l2(dgx.host(), gx) < 1e-5);
      CHECK(rel_l2(dgA.host(), gA) < 1e-5);
      CHECK(rel_l2(dgB.host(), gB) < 1e-5);
    }
  }
}

MEMQ_TEST(adamw_and_global_norm_match_the_cpu) {
  REQUIRE_DEVICE();
  std::mt19937 rng(5);
  const int64_t n = 100003;
  std::vector<float> p = gauss(rng, static_cast<size_t>(n)), g = gauss(rng, static_cast<size_t>(n), 0.01f), m = gauss(rng, static_cast<size_t>(n), 0.001f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = std::fabs(gauss(rng, 1, 1e-4f)[0]);
  AdamWOptions o;
  o.lr = 1e-3;
  o.weight_decay = 0.1;
  DevVec<float> dp(p), dg(g), dm(m), dv(v);
  DevVec<double> partials(static_cast<size_t>(dev::kSumSquaresPartials), 0.0);
  double ss = -1.0;
  CHECK(dev::sum_squares(&ss, dg.p(), n, partials.p(), nullptr).ok());
  CHECK_NEAR(std::sqrt(ss), global_norm(g.data(), n), 1e-10, 0.0);
  const float clip = 0.37f;
  std::vector<float> gc(g);
  for (auto& x : gc) x *= clip;
  adamw_step(p.data(), gc.data(), m.data(), v.data(), n, 7, o);
  CHECK(dev::adamw(dp.p(), dg.p(), dm.p(), dv.p(), n, 7, o, clip, nullptr).ok());
  CHECK_ALL_NEAR(dp.host(), p, 1e-6, 1e-9);
  CHECK_ALL_NEAR(dm.host(), m, 1e-6, 1e-12);
  CHECK_ALL_NEAR(dv.host(), v, 1e-6, 1e-15);
}

// ---- whole models ------------------------------------------------------------------------------------

namespace {

std::unique_ptr<Model> on_device(const Model& cpu, LlmPrecision prec) {
  std::unique_ptr<Model> d;
  Status st = cpu.clone(&d);
  LlmDeviceOptions o;
  o.device = "cuda";
  o.precision = prec;
  o.require_self_test = false;
  if (st.ok()) st = d->set_device(o);
  if (!st.ok()) {
    std::printf("  cannot place the model on the device: %s\n", st.message().c_str());
    return nullptr;
  }
  return d;
}

ModelConfig cfg_of(const std::string& type) {
  ModelConfig c = llm_test::tiny_config(type, type == "llama" ? 4 : 2, type == "llama");
  if (type != "qwen2") c.attention_bias = true;
  c.hidden_size = 48;
  c.intermediate_size = 80;
  c.num_attention_heads = 4;
  c.head_dim = 16;
  return c;
}

}  // namespace

MEMQ_TEST(models_inference_matches_the_cpu_in_both_precisions) {
  REQUIRE_DEVICE();
  for (const char* type : {"qwen2", "llama", "qwen3"}) {
    const ModelConfig c = cfg_of(type);
    std::unique_ptr<Model> cpu;
    CHECK(Model::create_random(c, 21, 0.15f, &cpu).ok());
    LoraConfig lc;
    lc.r = 4;
    lc.target_modules = {"q", "k", "v", "o", "gate", "up", "down"};
    std::unique_ptr<LoraAdapter> lora;
    CHECK(LoraAdapter::create(c, lc, 3, &lora).ok());
    for (int64_t i = 0; i < lora->size(); ++i) lora->params()[i] += 0.03f * float(std::cos(0.37 * double(i)));
    lora->touch();
    std::mt19937 rng(9);
    std::vector<int32_t> tok(70);
    for (auto& t : tok) t = int32_t(rng() % c.vocab_size);
    const std::vector<int64_t> off = {0, 1, 30, 30, 70};
    const TokenBatch batch = make_batch(tok, off);
    for (LlmPrecision prec : {LlmPrecision::kFP32, LlmPrecision::kBF16}) {
      const bool fp32 = prec == LlmPrecision::kFP32;
      const double atol = fp32 ? 5e-4 : 6e-2;
      auto d = on_device(*cpu, prec);
      CHECK(d != nullptr);
      if (!d) continue;
      CHECK(d->device() == LlmDevice::kCuda && d->placement() != 0);
      for (const LoraAdapter* l : {static_cast<const LoraAdapter*>(nullptr), static_cast<const LoraAdapter*>(lora.get())}) {
        std::vector<float> ref(tok.size()), got(tok.size(), kNaN);
        CHECK(cpu->token_logprobs(ref.data(), batch, l).ok());
        CHECK(d->token_logprobs(got.data(), batch, l).ok());
        CHECK_ALL_NEAR(got, ref, 0.0, atol);
        std::vector<float> er(static_cast<size_t>(4 * c.hidden_size)), eg(er.size(), kNaN);
        CHECK(cpu->embed_mean(er.data(), batch, l).ok());
        CHECK(d->embed_mean(eg.data(), batch, l).ok());
        CHECK(rel_l2(eg, er) < (fp32 ? 1e-4 : 3e-2));
        std::vector<float> lr(static_cast<size_t>(70 * c.vocab_size)), lg(lr.size(), kNaN);
        CHECK(cpu->logits(lr.data(), batch, l).ok());
        CHECK(d->logits(lg.data(), batch, l).ok());
        CHECK(rel_l2(lg, lr) < (fp32 ? 1e-4 : 3e-2));
        // scoring: 3 prompts, ragged candidates, one prompt without candidates
        const std::vector<int32_t> pt = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                         23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 5, 6};
        const std::vector<int64_t> po = {0, 35, 36, 37}, cg = {0, 3, 3, 5};
        const std::vector<int32_t> ct = {40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50};
        const std::vector<int64_t> co = {0, 3, 4, 9, 10, 11};
        ScoreRequest req;
        req.prompt_tokens = pt.data();
        req.prompt_offsets = po.data();
        req.n_prompts = 3;
        req.cand_tokens = ct.data();
        req.cand_offsets = co.data();
        req.cand_groups = cg.data();
        req.n_cands = 5;
        for (bool norm : {false, true}) {
          req.length_normalize = norm;
          std::vector<float> sr(5), sg(5, kNaN), tr(11), tg(11, kNaN);
          CHECK(cpu->score(sr.data(), tr.data(), req, l).ok());
          CHECK(d->score(sg.data(), tg.data(), req, l).ok());
          CHECK_ALL_NEAR(sg, sr, 0.0, 5 * atol);
          CHECK_ALL_NEAR(tg, tr, 0.0, atol);
        }
      }
      // validation is the CPU engine's: same codes
      std::vector<int32_t> bad = {1, int32_t(c.vocab_size)};
      const std::vector<int64_t> boff = {0, 2};
      std::vector<float> o2(2);
      CHECK(d->token_logprobs(o2.data(), make_batch(bad, boff)).code() ==
            cpu->token_logprobs(o2.data(), make_batch(bad, boff)).code());
    }
  }
}

MEMQ_TEST(training_gradients_and_steps_match_the_cpu) {
  REQUIRE_DEVICE();
  for (const char* type : {"qwen2", "llama", "qwen3"}) {
    const ModelConfig c = cfg_of(type);
    std::unique_ptr<Model> cpu;
    CHECK(Model::create_random(c, 33, 0.15f, &cpu).ok());
    LoraConfig lc;
    lc.r = 8;
    lc.alpha = 16;
    lc.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
    std::unique_ptr<LoraAdapter> base;
    CHECK(LoraAdapter::create(c, lc, 5, &base).ok());
    for (int64_t i = 0; i < base->size(); ++i) base->params()[i] += 0.02f * float(std::sin(0.91 * double(i)));
    base->touch();
    std::mt19937 rng(17);
    std::vector<int32_t> tok(90);
    for (auto& t : tok) t = int32_t(rng() % c.vocab_size);
    const std::vector<int64_t> off = {0, 20, 21, 60, 90};
    std::vector<float> w(tok.size(), 0.0f);
    for (int64_t b = 0; b < 4; ++b)
      for (int64_t t = off[static_cast<size_t>(b)] + 1; t < off[static_cast<size_t>(b + 1)]; ++t) w[static_cast<size_t>(t)] = t % 3 == 0 ? 0.0f : 0.5f + 0.01f * float(t);
    const TokenBatch batch = make_batch(tok, off, w.data());
    for (LlmPrecision prec : {LlmPrecision::kFP32, LlmPrecision::kBF16}) {
      const bool fp32 = prec == LlmPrecision::kFP32;
      const double gtol = fp32 ? 2e-3 : 8e-2, ltol = fp32 ? 2e-4 : 3e-2;
      auto d = on_device(*cpu, prec);
      CHECK(d != nullptr);
      if (!d) continue;
      // LoRA gradient (host pointers: added to what is there)
      std::vector<float> gr(static_cast<size_t>(base->size()), 0.125f), gg(gr);
      double lr_cpu = 0, lr_dev = 0, ws_cpu = 0, ws_dev = 0;
      CHECK(cpu->forward_backward(batch, LossNorm::kWeightSum, base.get(), gr.data(), nullptr, 0.5f, &lr_cpu, &ws_cpu).ok());
      CHECK(d->forward_backward(batch, LossNorm::kWeightSum, base.get(), gg.data(), nullptr, 0.5f, &lr_dev, &ws_dev).ok());
      CHECK_NEAR(lr_dev, lr_cpu, 0.0, ltol);
      CHECK(ws_dev == ws_cpu);
      CHECK(rel_l2(gg, gr) < gtol);
      // full gradient (every weight, tied embeddings for llama)
      std::vector<float> fr(static_cast<size_t>(cpu->num_params()), 0.0f), fg(fr);
      CHECK(cpu->forward_backward(batch, LossNorm::kSum, nullptr, nullptr, fr.data(), 1.0f, &lr_cpu).ok());
      CHECK(d->forward_backward(batch, LossNorm::kSum, nullptr, nullptr, fg.data(), 1.0f, &lr_dev).ok());
      CHECK_NEAR(lr_dev, lr_cpu, ltol, ltol);
      CHECK(rel_l2(fg, fr) < gtol);
      // a whole LoRA step through the trainers: two accumulated micro-batches, clipping on
      std::unique_ptr<LoraAdapter> a1, a2;
      CHECK(LoraAdapter::create(c, lc, 5, &a1).ok() && LoraAdapter::create(c, lc, 5, &a2).ok());
      std::copy(base->params(), base->params() + base->size(), a1->params());
      std::copy(base->params(), base->params() + base->size(), a2->params());
      a1->touch();
      a2->touch();
      TrainOptions to;
      to.adamw.lr = 1e-2;
      to.adamw.eps = 1.0;  // update ~ lr g: as close as the gradients are
      to.adamw.weight_decay = 0.05;
      to.clip_norm = 0.5;
      LoraTrainer tc(cpu.get(), a1.get(), to), td(d.get(), a2.get(), to);
      double l1 = 0, l2 = 0;
      CHECK(tc.accumulate(batch, &l1).ok() && td.accumulate(batch, &l2).ok());
      CHECK_NEAR(l2, l1, 0.0, ltol);
      CHECK(tc.accumulate(batch).ok() && td.accumulate(batch).ok());
      CHECK(td.micro_batches() == 2 && td.num_params() == base->size());
      CHECK(rel_l2(td.grad(), tc.grad()) < gtol);
      StepStats s1, s2;
      const uint64_t v_before = a2->version();
      CHECK(tc.step(&s1).ok() && td.step(&s2).ok());
      CHECK(a2->version() != v_before);
      CHECK(s2.step == 1 && s2.micro_batches == 2 && td.micro_batches() == 0);
      CHECK_NEAR(s2.loss, s1.loss, 0.0, ltol);
      CHECK_NEAR(s2.grad_norm, s1.grad_norm, gtol, 0.0);
      std::vector<float> u1(static_cast<size_t>(base->size())), u2(u1.size());
      for (int64_t i = 0; i < base->size(); ++i) {
        u1[static_cast<size_t>(i)] = a1->params()[i] - base->params()[i];
        u2[static_cast<size_t>(i)] = a2->params()[i] - base->params()[i];
      }
      CHECK(rel_l2(u2, u1) < 2 * gtol);
      // the gradient is zero after the step; the state round-trips; a step needs accumulate()
      double gmax = 0;
      for (float x : td.grad()) gmax = std::max(gmax, double(std::fabs(x)));
      CHECK(gmax == 0.0);
      TrainerState st1, st2;
      CHECK(tc.get_state(&st1).ok() && td.get_state(&st2).ok());
      CHECK(st2.t == 1 && st2.m.size() == static_cast<size_t>(base->size()));
      CHECK(rel_l2(st2.m, st1.m) < 2 * gtol);
      CHECK(td.set_state(st1).ok());
      TrainerState st3;
      CHECK(td.get_state(&st3).ok() && st3.m == st1.m && st3.v == st1.v && st3.t == st1.t);
      CHECK(td.step().code() == StatusCode::kInvalidArgument);
      TrainerState wrong = st1;
      wrong.m.pop_back();
      CHECK(td.set_state(wrong).code() == StatusCode::kInvalidArgument);
      // inference with the trained adapter sees the new parameters (the version moved)
      std::vector<float> lp_cpu(tok.size()), lp_dev(tok.size(), kNaN);
      CHECK(cpu->token_logprobs(lp_cpu.data(), batch, a2.get()).ok());
      CHECK(d->token_logprobs(lp_dev.data(), batch, a2.get()).ok());
      CHECK_ALL_NEAR(lp_dev, lp_cpu, 0.0, fp32 ? 5e-4 : 6e-2);
      // a full-weight step on a copy of each model
      std::unique_ptr<Model> mc, md;
      CHECK(cpu->clone(&mc).ok() && d->clone(&md).ok());
      CHECK(md->device() == LlmDevice::kCuda);
      ModelTrainer fc(mc.get(), to), fd(md.get(), to);
      CHECK(fc.accumulate(batch).ok() && fd.accumulate(batch).ok());
      CHECK(fc.step(&s1).ok() && fd.step(&s2).ok());
      std::vector<float> w1(static_cast<size_t>(mc->num_params())), w2(w1.size());
      for (int64_t i = 0; i < mc->num_params(); ++i) {
        w1[static_cast<size_t>(i)] = mc->param_data()[i] - cpu->param_data()[i];
        w2[static_cast<size_t>(i)] = md->param_data()[i] - cpu->param_data()[i];
      }
      CHECK(rel_l2(w2, w1) < 2 * gtol);
      std::vector<float> q1(tok.size()), q2(tok.size(), kNaN);  // the device copy was refreshed
      CHECK(mc->token_logprobs(q1.data(), batch).ok() && md->token_logprobs(q2.data(), batch).ok());
      CHECK_ALL_NEAR(q2, q1, 0.0, fp32 ? 5e-4 : 6e-2);
      // a trainer notices that its model moved
      LoraTrainer moved(d.get(), a2.get(), to);
      LlmDeviceOptions o;
      o.device = "cpu";
      CHECK(d->set_device(o).ok());
      CHECK(moved.accumulate(batch).code() == StatusCode::kInvalidArgument);
    }
  }
}

MEMQ_TEST(weights_that_do_not_fit_are_refused_before_allocating) {
  REQUIRE_DEVICE();
  std::unique_ptr<Model> m;
  CHECK(Model::create_random(llm_test::tiny_config(), 1, 0.1f, &m).ok());
  LlmDeviceOptions o;
  o.device = "cuda";
  o.require_self_test = false;
  o.reserve_bytes = int64_t(1) << 50;  // more than any device has free
  Status st = m->set_device(o);
  CHECK(st.code() == StatusCode::kOutOfMemory);
  CHECK(st.message().find("the model's weights need") != std::string::npos);
  CHECK(m->device() == LlmDevice::kCpu);
  o.device = "auto";  // auto falls back to the CPU with the reason
  LlmDeviceChoice c;
  CHECK(m->set_device(o, &c).ok());
  CHECK(c.device == LlmDevice::kCpu && c.reason.find("weights need") != std::string::npos);
}

MEMQ_TEST(llm_self_test_passes_on_the_device) {
  REQUIRE_DEVICE();
  std::string report;
  Status st = llm_cuda_self_test(&report);
  std::printf("%s", report.c_str());
  CHECK(st.ok());
}

#endif  // MEMQ_HAVE_CUDA

int main() {
  std::string why;
  if (!device_ready(&why)) std::printf("SKIPPED: no CUDA device (%s): only the device-free checks run\n", why.c_str());
  return memq_test::run_all();
}
