// Finite-difference checks of every transformer op's backward, run in double precision
// (ops.h templates): loss = <out, R> for a random R, analytic gradient = backward(dout = R),
// numeric gradient = central difference with h = 1e-6. Tolerance |a - n| <= 1e-6 + 1e-5 |n|.
// Also: the float32 GEMM kernels against a double reference (rtol 1e-5 of the row's L1 norm), and
// the vectorised exp (vexp.h), every kernel variant this CPU runs and the scalar twin, against
// std::exp in double over the whole float range where exp is finite and non-zero.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "memq/llm/gemm.h"
#include "memq/llm/ops.h"
#include "memq/llm/vexp.h"
#include "testing.h"
#include "../core/cpu/internal.h"

using namespace memq::llm;
using Vec = std::vector<double>;

namespace {

Vec randn(size_t n, uint64_t seed, double scale = 1.0) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> d(0.0, scale);
  Vec v(n);
  for (auto& x : v) x = d(g);
  return v;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Checks analytic gradient `grad` of `loss(x)` w.r.t. x (perturbed in place).
int fd_check(const char* what, Vec& x, const Vec& grad, const std::function<double()>& loss) {
  const double h = 1e-6;
  int bad = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double lp = loss();
    x[i] = x0 - h;
    const double lm = loss();
    x[i] = x0;
    const double num = (lp - lm) / (2 * h);
    if (!memq_test::near(grad[i], num, 1e-5, 1e-6)) {
      if (bad < 5) std::printf("  %s[%zu]: analytic %.10g numeric %.10g\n", what, i, grad[i], num);
      ++bad;
    }
  }
  return bad;
}

}  // namespace

MEMQ_TEST(matmul_backward_matches_finite_differences) {
  const int64_t N = 5, C = 7, OC = 6;
  Vec x = randn(N * C, 1), W = randn(OC * C, 2), b = randn(OC, 3), R = randn(N * OC, 4);
  auto loss = [&] {
    Vec out(N * OC);
    matmul_forward<double>(out.data(), x.data(), W.data(), b.data(), N, C, OC);
    return dot(out, R);
  };
  Vec dx(N * C, 0), dW(OC * C, 0), db(OC, 0);
  matmul_backward<double>(dx.data(), dW.data(), db.data(), R.data(), x.data(), W.data(), N, C, OC);
  CHECK(fd_check("dx", x, dx, loss) == 0);
  CHECK(fd_check("dW", W, dW, loss) == 0);
  CHECK(fd_check("db", b, db, loss) == 0);
}

MEMQ_TEST(rmsnorm_backward_matches_finite_differences) {
  const int64_t N = 4, C = 9;
  Vec x = randn(N * C, 5), w = randn(C, 6), R = randn(N * C, 7);
  auto loss = [&] {
    Vec out(N * C), rstd(N);
    rmsnorm_forward<double>(out.data(), rstd.data(), x.data(), w.data(), 1e-5, N, C);
    return dot(out, R);
  };
  Vec out(N * C), rstd(N), dx(N * C, 0), dw(C, 0);
  rmsnorm_forward<double>(out.data(), rstd.data(), x.data(), w.data(), 1e-5, N, C);
  rmsnorm_backward<double>(dx.data(), dw.data(), R.data(), x.data(), w.data(), rstd.data(), N, C);
  CHECK(fd_check("dx", x, dx, loss) == 0);
  CHECK(fd_check("dw", w, dw, loss) == 0);
  // forward: mean of squares of out/w == 1/(1 + eps/ms) ~ 1
  double ms = 0;
  for (int64_t c = 0; c < C; ++c) ms += std::pow(out[c] / w[c], 2);
  CHECK_NEAR(ms / C, 1.0, 1e-3, 0);
}

MEMQ_TEST(rope_backward_matches_finite_differences_and_rotates) {
  const int64_t N = 4, H = 3, D = 8, half = D / 2, P = 10;
  Vec cs(P * half), sn(P * half);
  for (int64_t p = 0; p < P; ++p)
    for (int64_t i = 0; i < half; ++i) {
      const double a = p * std::pow(10000.0, -2.0 * i / D);
      cs[p * half + i] = std::cos(a);
      sn[p * half + i] = std::sin(a);
    }
  std::vector<int32_t> pos = {0, 3, 7, 9};
  Vec x = randn(N * H * D, 8), R = randn(N * H * D, 9);
  auto loss = [&] {
    Vec out(N * H * D);
    rope_forward<double>(out.data(), x.data(), cs.data(), sn.data(), pos.data(), N, H, D);
    return dot(out, R);
  };
  Vec dx(N * H * D, 0);
  rope_backward<double>(dx.data(), R.data(), cs.data(), sn.data(), pos.data(), N, H, D);
  CHECK(fd_check("dx", x, dx, loss) == 0);
  // position 0 is the identity; rotations keep norms
  Vec out(N * H * D);
  rope_forward<double>(out.data(), x.data(), cs.data(), sn.data(), pos.data(), N, H, D);
  for (int64_t i = 0; i < H * D; ++i) CHECK_NEAR(out[i], x[i], 0, 1e-12);
  double n1 = 0, n2 = 0;
  for (int64_t i = H * D; i < 2 * H * D; ++i) n1 += x[i] * x[i], n2 += out[i] * out[i];
  CHECK_NEAR(n2, n1, 1e-12, 0);
  // in place == out of place
  Vec y = x;
  rope_forward<double>(y.data(), y.data(), cs.data(), sn.data(), pos.data(), N, H, D);
  for (size_t i = 0; i < y.size(); ++i) CHECK(y[i] == out[i]);
}

MEMQ_TEST(attention_backward_matches_finite_differences_gqa_ragged) {
  // Two sequences (lengths 3 and 5), H = 4 query heads over KVH = 2 kv heads, D = 4.
  const int64_t B = 2, H = 4, KVH = 2, D = 4;
  const int64_t off[] = {0, 3, 8};
  const int64_t N = 8;
  int64_t att_off[] = {0, H * 3 * 3, H * 3 * 3 + H * 5 * 5};
  Vec q = randn(N * H * D, 10), k = randn(N * KVH * D, 11), v = randn(N * KVH * D, 12), R = randn(N * H * D, 13);
  auto loss = [&] {
    Vec out(N * H * D);
    attention_forward<double>(out.data(), nullptr, q.data(), k.data(), v.data(), off, off, att_off, B, H, KVH, D);
    return dot(out, R);
  };
  Vec out(N * H * D), att(att_off[2]), dq(q.size(), 0), dk(k.size(), 0), dv(v.size(), 0);
  attention_forward<double>(out.data(), att.data(), q.data(), k.data(), v.data(), off, off, att_off, B, H, KVH, D);
  attention_backward<double>(dq.data(), dk.data(), dv.data(), R.data(), q.data(), k.data(), v.data(), att.data(), off,
                             off, att_off, B, H, KVH, D);
  CHECK(fd_check("dq", q, dq, loss) == 0);
  CHECK(fd_check("dk", k, dk, loss) == 0);
  CHECK(fd_check("dv", v, dv, loss) == 0);
  // causality: the first token of each sequence attends only to itself -> out = v of itself
  for (int64_t h = 0; h < H; ++h)
    for (int64_t d = 0; d < D; ++d) CHECK_NEAR(out[(3 * H + h) * D + d], v[(3 * KVH + h / 2) * D + d], 0, 1e-12);
}

MEMQ_TEST(attention_with_cached_prefix_equals_full_sequence) {
  // Queries for the last 2 of 5 positions against all 5 keys == rows 3..4 of the full pass.
  const int64_t H = 2, KVH = 1, D = 4, N = 5;
  Vec q = randn(N * H * D, 14), k = randn(N * KVH * D, 15), v = randn(N * KVH * D, 16);
  const int64_t off[] = {0, N};
  const int64_t att_full[] = {0, H * N * N};
  Vec full(N * H * D);
  attention_forward<double>(full.data(), nullptr, q.data(), k.data(), v.data(), off, off, att_full, 1, H, KVH, D);
  const int64_t qoff[] = {0, 2};
  const int64_t att_tail[] = {0, H * 2 * N};
  Vec tail(2 * H * D);
  attention_forward<double>(tail.data(), nullptr, q.data() + 3 * H * D, k.data(), v.data(), qoff, off, att_tail, 1, H,
                            KVH, D);
  for (int64_t i = 0; i < 2 * H * D; ++i) CHECK_NEAR(tail[i], full[3 * H * D + i], 0, 1e-12);
}

MEMQ_TEST(swiglu_backward_matches_finite_differences) {
  const int64_t n = 11;
  Vec g = randn(n, 17, 2.0), u = randn(n, 18), R = randn(n, 19);
  auto loss = [&] {
    Vec out(n);
    swiglu_forward<double>(out.data(), g.data(), u.data(), n);
    return dot(out, R);
  };
  Vec dg(n, 0), du(n, 0);
  swiglu_backward<double>(dg.data(), du.data(), R.data(), g.data(), u.data(), n);
  CHECK(fd_check("dgate", g, dg, loss) == 0);
  CHECK(fd_check("dup", u, du, loss) == 0);
}

MEMQ_TEST(lora_backward_matches_finite_differences) {
  const int64_t N = 4, C = 6, OC = 5, Rk = 3;
  const double scale = 16.0 / 3.0;
  Vec x = randn(N * C, 20), A = randn(Rk * C, 21), B = randn(OC * Rk, 22), R = randn(N * OC, 23);
  auto loss = [&] {
    Vec out(N * OC, 0.0), t(N * Rk);
    lora_forward<double>(out.data(), t.data(), x.data(), A.data(), B.data(), scale, N, C, OC, Rk);
    return dot(out, R);
  };
  Vec out(N * OC, 0.0), t(N * Rk), dx(N * C, 0), dA(Rk * C, 0), dB(OC * Rk, 0);
  lora_forward<double>(out.data(), t.data(), x.data(), A.data(), B.data(), scale, N, C, OC, Rk);
  lora_backward<double>(dx.data(), dA.data(), dB.data(), R.data(), x.data(), t.data(), A.data(), B.data(), scale, N, C,
                        OC, Rk);
  CHECK(fd_check("dx", x, dx, loss) == 0);
  CHECK(fd_check("dA", A, dA, loss) == 0);
  CHECK(fd_check("dB", B, dB, loss) == 0);
  // out == scale * x A^T B^T == x (scale B A)^T
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < OC; ++o) {
      double s = 0;
      for (int64_t c = 0; c < C; ++c) {
        double w = 0;
        for (int64_t r = 0; r < Rk; ++r) w += B[o * Rk + r] * A[r * C + c];
        s += x[n * C + c] * scale * w;
      }
      CHECK_NEAR(out[n * OC + o], s, 1e-12, 1e-12);
    }
}

MEMQ_TEST(crossentropy_backward_matches_finite_differences) {
  const int64_t M = 3, V = 7;
  Vec logits = randn(M * V, 24, 3.0), dnll = {0.5, 0.0, 2.0};
  std::vector<int32_t> tg = {2, 5, 0};
  auto loss = [&] {
    Vec nll(M);
    crossentropy_forward<double>(nll.data(), logits.data(), tg.data(), M, V);
    return dot(nll, dnll);
  };
  Vec dl(M * V);
  crossentropy_backward<double>(dl.data(), logits.data(), tg.data(), dnll.data(), M, V);
  CHECK(fd_check("dlogits", logits, dl, loss) == 0);
  for (int64_t j = 0; j < V; ++j) CHECK(dl[V + j] == 0.0);  // zero weight -> zero gradient
  // nll >= 0 and equals -log softmax
  Vec nll(M);
  crossentropy_forward<double>(nll.data(), logits.data(), tg.data(), M, V);
  double z = 0;
  for (int64_t j = 0; j < V; ++j) z += std::exp(logits[j]);
  CHECK_NEAR(nll[0], std::log(z) - logits[2], 1e-12, 0);
}

MEMQ_TEST(embedding_backward_matches_finite_differences) {
  const int64_t N = 5, C = 3, V = 4;
  Vec wte = randn(V * C, 25), R = randn(N * C, 26);
  std::vector<int32_t> tok = {1, 3, 1, 0, 1};
  auto loss = [&] {
    Vec out(N * C);
    embedding_forward<double>(out.data(), tok.data(), wte.data(), N, C);
    return dot(out, R);
  };
  Vec dw(V * C, 0);
  embedding_backward<double>(dw.data(), R.data(), tok.data(), N, C);
  CHECK(fd_check("dwte", wte, dw, loss) == 0);
}

MEMQ_TEST(float_gemm_kernels_match_double_reference) {
  // Odd sizes exercise every tile edge of every kernel variant in use.
  for (auto dims : {std::vector<int64_t>{1, 1, 1}, {3, 5, 17}, {37, 129, 70}, {130, 67, 200}, {5, 300, 33}}) {
    const int64_t M = dims[0], N = dims[1], K = dims[2];
    Vec a = randn(M * K, 27), b = randn(N * K, 28), c0 = randn(M * N, 29);
    std::vector<float> af(a.begin(), a.end()), bf(b.begin(), b.end()), cf(c0.begin(), c0.end());
    sgemm_nt(cf.data(), N, af.data(), K, bf.data(), K, M, N, K, true);
    int bad = 0;
    for (int64_t m = 0; m < M; ++m)
      for (int64_t j = 0; j < N; ++j) {
        double s = c0[m * N + j], l1 = std::fabs(s);
        for (int64_t k = 0; k < K; ++k) s += double(af[m * K + k]) * bf[j * K + k], l1 += std::fabs(af[m * K + k] * bf[j * K + k]);
        if (std::fabs(cf[m * N + j] - s) > 1e-5 * l1 + 1e-6) ++bad;
      }
    CHECK(bad == 0);
    // sgemm_acc with A transposed: C[M x N] += A^T B,  A stored [K x M], B [K x N]
    Vec at = randn(K * M, 30), bb = randn(K * N, 31);
    std::vector<float> atf(at.begin(), at.end()), bbf(bb.begin(), bb.end()), c2(size_t(M * N), 0.5f);
    sgemm_acc(c2.data(), N, atf.data(), 1, M, bbf.data(), N, M, N, K);
    bad = 0;
    for (int64_t m = 0; m < M; ++m)
      for (int64_t j = 0; j < N; ++j) {
        double s = 0.5, l1 = 0.5;
        for (int64_t k = 0; k < K; ++k) s += double(atf[k * M + m]) * bbf[k * N + j], l1 += std::fabs(atf[k * M + m] * bbf[k * N + j]);
        if (std::fabs(c2[m * N + j] - s) > 1e-5 * l1 + 1e-6) ++bad;
      }
    CHECK(bad == 0);
  }
  std::printf("  gemm variant: %s\n", gemm_variant());
}

// The packed-panel paths (sgemm_nt / sgemm_acc with a row-major A, and the serial forms) at
// every SIMD level this CPU runs, with strided operands and poisoned padding: every output
// within the float32 bound of the double sum, and nothing written outside the M x N block.
MEMQ_TEST(packed_gemm_paths_match_double_reference) {
  const float kPoison = -12345.0f;
  for (int level : {2, 1, 0}) {
    memq::cpu::set_simd_override(level);
    for (auto dims : {std::vector<int64_t>{4, 32, 16}, {13, 33, 17}, {241, 63, 70}, {250, 129, 300}, {37, 300, 33}, {5, 32, 1000}}) {
      const int64_t M = dims[0], N = dims[1], K = dims[2];
      const int64_t lda = K + 3, ldb = K + 5, ldc = N + 7, ldbn = N + 2;
      Vec a = randn(M * lda, 40 + M), b = randn(N * ldb, 41 + N), bn = randn(K * ldbn, 42 + K), c0 = randn(M * ldc, 43);
      std::vector<float> af(a.begin(), a.end()), bf(b.begin(), b.end()), bnf(bn.begin(), bn.end());
      for (int form = 0; form < 4; ++form) {
        const bool nt = form % 2 == 0, serial = form >= 2;
        for (bool acc : {false, true}) {
          if (!nt && !serial && !acc) continue;  // sgemm_acc always accumulates
          std::vector<float> cf(size_t(M * ldc), kPoison);
          for (int64_t m = 0; m < M; ++m)
            for (int64_t j = 0; j < N; ++j) cf[size_t(m * ldc + j)] = float(c0[size_t(m * ldc + j)]);
          if (nt && !serial) sgemm_nt(cf.data(), ldc, af.data(), lda, bf.data(), ldb, M, N, K, acc);
          if (nt && serial) sgemm_nt_serial(cf.data(), ldc, af.data(), lda, bf.data(), ldb, M, N, K, acc);
          if (!nt && !serial) sgemm_acc(cf.data(), ldc, af.data(), lda, 1, bnf.data(), ldbn, M, N, K);
          if (!nt && serial) sgemm_nn_serial(cf.data(), ldc, af.data(), lda, bnf.data(), ldbn, M, N, K, acc);
          int bad = 0, spilled = 0;
          for (int64_t m = 0; m < M; ++m) {
            for (int64_t j = 0; j < N; ++j) {
              double s = acc ? double(float(c0[size_t(m * ldc + j)])) : 0.0, l1 = std::fabs(s);
              for (int64_t k = 0; k < K; ++k) {
                const double x = af[size_t(m * lda + k)], y = nt ? bf[size_t(j * ldb + k)] : bnf[size_t(k * ldbn + j)];
                s += x * y;
                l1 += std::fabs(x * y);
              }
              if (!(std::fabs(cf[size_t(m * ldc + j)] - s) <= 1e-5 * l1 + 1e-6)) ++bad;
            }
            for (int64_t j = N; j < ldc; ++j) spilled += cf[size_t(m * ldc + j)] != kPoison;
          }
          if (bad || spilled) std::printf("  level %d form %d acc %d M %lld N %lld K %lld: %d wrong, %d written past N\n", level, form,
                                          int(acc), (long long)M, (long long)N, (long long)K, bad, spilled);
          CHECK(bad == 0 && spilled == 0);
        }
      }
    }
  }
  memq::cpu::set_simd_override(-1);
}

namespace {

// exp(x) of a list through one kernel (variant name, or "scalar" for the twin); false if unavailable.
bool exp_through(const char* variant, const std::vector<float>& x, std::vector<float>* y, double* sum) {
  y->assign(x.size(), std::nanf(""));
  if (!std::strcmp(variant, "scalar")) {
    *sum = 0;
    for (size_t i = 0; i < x.size(); ++i) *sum += double((*y)[i] = expf_scalar(x[i]));
    return true;
  }
  return expf_shift_sum_variant(variant, y->data(), x.data(), 0.0f, int64_t(x.size()), sum);
}

}  // namespace

MEMQ_TEST(vectorised_exp_matches_std_exp_over_the_float_range) {
  // Every 257th float in [-104, 89] (about 8M points, ends included) plus the softmax range
  // [-30, 0] every 127th float. Stated bound: relative error <= 2.5e-7 where exp(x) >= FLT_MIN
  // (x >= -87.3365); below that (subnormal results, then 0 under -103.972) absolute error
  // <= 2^-149 + 2.5e-7 exp(x) (the last rounding to a subnormal). Measured here (AVX-512 CPU):
  // max relative error 8.5e-8 (under 1 ulp) for every variant.
  std::vector<float> xs;
  auto sweep = [&](float lo, float hi, uint32_t stride) {
    // the bit patterns of [lo, -0] (sign bit set, magnitude up to |lo|) and of [+0, hi]
    auto add_range = [&](uint32_t b0, uint32_t b1) {
      for (uint64_t b = b0; b <= b1; b += stride) {
        const uint32_t u = uint32_t(b);
        float f;
        std::memcpy(&f, &u, 4);
        xs.push_back(f);
      }
    };
    uint32_t blo, bhi;
    std::memcpy(&blo, &lo, 4);
    std::memcpy(&bhi, &hi, 4);
    if (lo < 0) add_range(0x80000000u, blo);
    if (hi > 0) add_range(0u, bhi);
    xs.push_back(lo);
    xs.push_back(hi);
  };
  sweep(-104.0f, 89.0f, 257);
  sweep(-30.0f, 0.0f, 127);
  for (float f : {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, -87.3365f, -87.34f, -103.97f, -103.98f, 88.72f, 88.73f, 1e-30f, -1e-30f})
    xs.push_back(f);
  const double kFltMin = 1.1754943508222875e-38, kDenorm = 1.401298464324817e-45;
  for (const char* v : {"scalar", "generic", "avx2", "avx512"}) {
    std::vector<float> y;
    double sum = 0;
    if (!exp_through(v, xs, &y, &sum)) {
      std::printf("  %s: not available on this CPU/build, skipped\n", v);
      continue;
    }
    double max_rel = 0, max_abs_sub = 0;
    float worst = 0;
    int bad = 0;
    double ref_sum = 0;
    for (size_t i = 0; i < xs.size(); ++i) {
      const double ref = std::exp(double(xs[i]));
      const double got = double(y[i]);
      if (ref >= double(FLT_MAX)) {
        // x <= 88.7228 rounds to at most FLT_MAX; above is +inf in both
        if (!(std::isinf(got) || std::fabs(got - ref) <= 2.5e-7 * ref)) ++bad;
        continue;
      }
      ref_sum += double(float(ref));
      if (ref >= kFltMin) {
        const double rel = std::fabs(got - ref) / ref;
        if (rel > max_rel) max_rel = rel, worst = xs[i];
        if (!(rel <= 2.5e-7)) ++bad;
      } else {
        const double ab = std::fabs(got - ref);
        max_abs_sub = std::max(max_abs_sub, ab);
        if (!(ab <= kDenorm + 2.5e-7 * ref)) ++bad;
      }
    }
    std::printf("  %-7s %zu points: max rel err %.3g (at x = %.9g), max abs err below FLT_MIN %.3g\n", v, xs.size(),
                max_rel, double(worst), max_abs_sub);
    CHECK(bad == 0);
    CHECK(std::isinf(sum));  // the list holds x > 88.72
    (void)ref_sum;
    // special values
    const std::vector<float> sp = {std::nanf(""), -INFINITY, INFINITY, 0.0f, -0.0f, 89.0f, -105.0f, -1e30f, 1e30f};
    std::vector<float> ys;
    CHECK(exp_through(v, sp, &ys, &sum));
    CHECK(std::isnan(ys[0]));
    CHECK(ys[1] == 0.0f);
    CHECK(std::isinf(ys[2]) && ys[2] > 0);
    CHECK(ys[3] == 1.0f && ys[4] == 1.0f);
    CHECK(std::isinf(ys[5]));
    CHECK(ys[6] == 0.0f && ys[7] == 0.0f);
    CHECK(std::isinf(ys[8]));
  }
}

MEMQ_TEST(exp_shift_sum_writes_every_element_in_place_or_not_and_sums_in_double) {
  // Softmax-shaped inputs (logits ~ N(0, 5^2), shift = max): lengths 0..70 (every tail), 8192 and
  // 151,936 (a vocabulary); out separate (NaN-poisoned), in place, and null (sum only).
  std::mt19937_64 g(7);
  std::normal_distribution<float> nd(0.0f, 5.0f);
  for (int64_t n : {0, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 47, 63, 64, 65, 70, 8192, 151936}) {
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) v = nd(g);
    float mx = -INFINITY;
    for (float v : x) mx = std::max(mx, v);
    double ref_sum = 0;
    for (float v : x) ref_sum += std::exp(double(v - mx));
    std::vector<float> out(size_t(n) + 1, std::nanf(""));
    const double s1 = expf_shift_sum(out.data(), x.data(), mx, n);
    std::vector<float> inplace = x;
    const double s2 = expf_shift_sum(inplace.data(), inplace.data(), mx, n);
    const double s3 = expf_shift_sum(nullptr, x.data(), mx, n);
    CHECK(s1 == s2 && s1 == s3);
    CHECK(std::isnan(out[size_t(n)]));  // nothing past n written
    int bad = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double ref = std::exp(double(x[size_t(i)] - mx));
      if (!(out[size_t(i)] == inplace[size_t(i)])) ++bad;
      if (ref >= 1.1754943508222875e-38 && !(std::fabs(double(out[size_t(i)]) - ref) <= 2.5e-7 * ref)) ++bad;
    }
    CHECK(bad == 0);
    if (n == 0) CHECK(s1 == 0.0);
    else CHECK_NEAR(s1, ref_sum, 2.5e-7, 0.0);
  }
}

MEMQ_TEST_MAIN()
