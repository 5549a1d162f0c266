// Forward/backward layers of the decoder (see memq/llm/ops.h). Float matmuls use the tiled
// GEMM (gemm.h); the double instantiation (tests) uses the plain loops below.
#include "memq/llm/ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "memq/llm/gemm.h"
#include "memq/llm/vexp.h"
#include "memq/thread_pool.h"

namespace memq {
namespace llm {

namespace {

// C[m,j] (=|+=) sum_k A[m*lda+k] B[j*ldb+k]
template <typename T>
void gemm_nt(T* C, int64_t ldc, const T* A, int64_t lda, const T* B, int64_t ldb, int64_t M, int64_t N, int64_t K,
             bool accumulate) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t j = 0; j < N; ++j) {
      T s = 0;
      for (int64_t k = 0; k < K; ++k) s += A[m * lda + k] * B[j * ldb + k];
      C[m * ldc + j] = accumulate ? C[m * ldc + j] + s : s;
    }
}
template <>
void gemm_nt<float>(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t M,
                    int64_t N, int64_t K, bool accumulate) {
  sgemm_nt(C, ldc, A, lda, B, ldb, M, N, K, accumulate);
}

// C[m,j] += sum_k A[m*sam + k*sak] B[k*ldb + j]
template <typename T>
void gemm_acc(T* C, int64_t ldc, const T* A, int64_t sam, int64_t sak, const T* B, int64_t ldb, int64_t M, int64_t N,
              int64_t K) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) {
      const T a = A[m * sam + k * sak];
      for (int64_t j = 0; j < N; ++j) C[m * ldc + j] += a * B[k * ldb + j];
    }
}
template <>
void gemm_acc<float>(float* C, int64_t ldc, const float* A, int64_t sam, int64_t sak, const float* B, int64_t ldb,
                     int64_t M, int64_t N, int64_t K) {
  sgemm_acc(C, ldc, A, sam, sak, B, ldb, M, N, K);
}

// Dot product with 8 independent partial sums (vectorises without -ffast-math; fixed order).
template <typename T>
inline T dot8(const T* a, const T* b, int64_t n) {
  T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int u = 0; u < 8; ++u) acc[u] += a[i + u] * b[i + u];
  T s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// out[j] = exp(x[j] - shift) (out may be x or null), returning the sum in double: float goes
// through the vectorised kernel (vexp.h: <= 2.5e-7 relative error), double (the reference
// instantiation) through std::exp.
inline double exp_shift_sum(float* out, const float* x, float shift, int64_t n) {
  return expf_shift_sum(out, x, shift, n);
}
inline double exp_shift_sum(double* out, const double* x, double shift, int64_t n) {
  double sum = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    const double e = std::exp(x[j] - shift);
    if (out) out[j] = e;
    sum += e;
  }
  return sum;
}

// Rows per parallel task for row-wise ops of width C: ~16K values per task.
int64_t row_grain(int64_t C) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, C)); }

}  // namespace

template <typename T>
void matmul_forward(T* out, const T* inp, const T* weight, const T* bias, int64_t N, int64_t C, int64_t OC) {
  gemm_nt<T>(out, OC, inp, C, weight, C, N, OC, C, false);
  if (bias) {
    parallel_for(0, N, row_grain(OC), [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n)
        for (int64_t o = 0; o < OC; ++o) out[n * OC + o] += bias[o];
    });
  }
}

template <typename T>
void matmul_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight, int64_t N, int64_t C,
                     int64_t OC) {
  if (dinp) gemm_acc<T>(dinp, C, dout, OC, 1, weight, C, N, C, OC);
  if (dweight) gemm_acc<T>(dweight, C, dout, 1, OC, inp, C, OC, C, N);
  if (dbias) {
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < OC; ++o) dbias[o] += dout[n * OC + o];
  }
}

template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, int64_t N, int64_t C) {
  parallel_for(0, N, row_grain(C), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) std::copy(wte + int64_t(tokens[n]) * C, wte + int64_t(tokens[n] + 1) * C, out + n * C);
  });
}

template <typename T>
void embedding_backward(T* dwte, const T* dout, const int32_t* tokens, int64_t N, int64_t C) {
  for (int64_t n = 0; n < N; ++n) {
    T* row = dwte + int64_t(tokens[n]) * C;
    for (int64_t c = 0; c < C; ++c) row[c] += dout[n * C + c];
  }
}

template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* inp, const T* weight, double eps, int64_t N, int64_t C) {
  parallel_for(0, N, row_grain(C), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const T* x = inp + n * C;
      double ss = 0.0;
      for (int64_t c = 0; c < C; ++c) ss += double(x[c]) * double(x[c]);
      const T r = T(1.0 / std::sqrt(ss / double(C) + eps));
      rstd[n] = r;
      for (int64_t c = 0; c < C; ++c) out[n * C + c] = x[c] * r * weight[c];
    }
  });
}

template <typename T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, const T* rstd, int64_t N,
                      int64_t C) {
  // y_c = x_c r w_c, r = (mean x^2 + eps)^(-1/2):  dx_c = r w_c dy_c - (r^3 / C) x_c sum_j dy_j w_j x_j
  if (dinp) {
    parallel_for(0, N, row_grain(C), [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n) {
        const T* x = inp + n * C;
        const T* dy = dout + n * C;
        const double r = rstd[n];
        double dot = 0.0;
        for (int64_t c = 0; c < C; ++c) dot += double(dy[c]) * double(weight[c]) * double(x[c]);
        const double k = r * r * r * dot / double(C);
        for (int64_t c = 0; c < C; ++c) dinp[n * C + c] += T(r * double(weight[c]) * double(dy[c]) - k * double(x[c]));
      }
    });
  }
  if (dweight) {
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c) dweight[c] += dout[n * C + c] * inp[n * C + c] * rstd[n];
  }
}

template <typename T>
void rope_forward(T* out, const T* inp, const T* cos, const T* sin, const int32_t* pos, int64_t N, int64_t H,
                  int64_t D) {
  const int64_t half = D / 2;
  parallel_for(0, N, row_grain(H * D), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const T* cs = cos + int64_t(pos[n]) * half;
      const T* sn = sin + int64_t(pos[n]) * half;
      for (int64_t h = 0; h < H; ++h) {
        const T* x = inp + (n * H + h) * D;
        T* y = out + (n * H + h) * D;
        for (int64_t i = 0; i < half; ++i) {
          const T x1 = x[i], x2 = x[i + half];
          y[i] = x1 * cs[i] - x2 * sn[i];
          y[i + half] = x2 * cs[i] + x1 * sn[i];
        }
      }
    }
  });
}

template <typename T>
void rope_backward(T* dinp, const T* dout, const T* cos, const T* sin, const int32_t* pos, int64_t N, int64_t H,
                   int64_t D) {
  const int64_t half = D / 2;
  parallel_for(0, N, row_grain(H * D), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const T* cs = cos + int64_t(pos[n]) * half;
      const T* sn = sin + int64_t(pos[n]) * half;
      for (int64_t h = 0; h < H; ++h) {
        const T* dy = dout + (n * H + h) * D;
        T* dx = dinp + (n * H + h) * D;
        for (int64_t i = 0; i < half; ++i) {
          const T d1 = dy[i], d2 = dy[i + half];
          dx[i] += d1 * cs[i] + d2 * sn[i];
          dx[i + half] += d2 * cs[i] - d1 * sn[i];
        }
      }
    }
  });
}

template <typename T>
void attention_forward(T* out, T* att, const T* q, const T* k, const T* v, const int64_t* q_off, const int64_t* kv_off,
                       const int64_t* att_off, int64_t B, int64_t H, int64_t KVH, int64_t D) {
  const int64_t group = H / KVH;
  const T scale = T(1.0 / std::sqrt(double(D)));
  parallel_for(0, B * H, 1, [&](int64_t t0, int64_t t1) {
    std::vector<T> p;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / H, h = t % H, kvh = h / group;
      const int64_t Lq = q_off[b + 1] - q_off[b], Lk = kv_off[b + 1] - kv_off[b];
      p.assign(size_t(Lk), T(0));
      for (int64_t i = 0; i < Lq; ++i) {
        const int64_t last = Lk - Lq + i;  // keys 0..last visible
        const T* qi = q + ((q_off[b] + i) * H + h) * D;
        T mx = -INFINITY;
        for (int64_t j = 0; j <= last; ++j) {
          const T* kj = k + ((kv_off[b] + j) * KVH + kvh) * D;
          p[j] = dot8(qi, kj, D) * scale;
          mx = std::max(mx, p[j]);
        }
        const double sum = exp_shift_sum(p.data(), p.data(), mx, last + 1);
        const T inv = T(1.0 / sum);
        T* o = out + ((q_off[b] + i) * H + h) * D;
        for (int64_t d = 0; d < D; ++d) o[d] = 0;
        for (int64_t j = 0; j <= last; ++j) {
          p[j] *= inv;
          const T* vj = v + ((kv_off[b] + j) * KVH + kvh) * D;
          for (int64_t d = 0; d < D; ++d) o[d] += p[j] * vj[d];
        }
        if (att) {
          T* a = att + att_off[b] + (h * Lq + i) * Lk;
          for (int64_t j = 0; j < Lk; ++j) a[j] = j <= last ? p[j] : T(0);
        }
      }
    }
  });
}

template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* att,
                        const int64_t* q_off, const int64_t* kv_off, const int64_t* att_off, int64_t B, int64_t H,
                        int64_t KVH, int64_t D) {
  const int64_t group = H / KVH;
  const T scale = T(1.0 / std::sqrt(double(D)));
  // One task per (sequence, kv head): it owns the dk/dv rows of that head and the dq rows of
  // the query heads in its group, so no two tasks write the same value.
  parallel_for(0, B * KVH, 1, [&](int64_t t0, int64_t t1) {
    std::vector<T> ds;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / KVH, kvh = t % KVH;
      const int64_t Lq = q_off[b + 1] - q_off[b], Lk = kv_off[b + 1] - kv_off[b];
      ds.assign(size_t(Lk), T(0));
      for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
        for (int64_t i = 0; i < Lq; ++i) {
          const int64_t last = Lk - Lq + i;
          const T* a = att + att_off[b] + (h * Lq + i) * Lk;
          const T* dy = dout + ((q_off[b] + i) * H + h) * D;
          const T* qi = q + ((q_off[b] + i) * H + h) * D;
          T* dqi = dq + ((q_off[b] + i) * H + h) * D;
          double pdp = 0.0;
          for (int64_t j = 0; j <= last; ++j) {
            const T* vj = v + ((kv_off[b] + j) * KVH + kvh) * D;
            T* dvj = dv + ((kv_off[b] + j) * KVH + kvh) * D;
            const T dp = dot8(dy, vj, D);
            for (int64_t d = 0; d < D; ++d) dvj[d] += a[j] * dy[d];
            ds[j] = dp;
            pdp += double(a[j]) * double(dp);
          }
          for (int64_t j = 0; j <= last; ++j) {
            const T g = a[j] * (ds[j] - T(pdp)) * scale;
            const T* kj = k + ((kv_off[b] + j) * KVH + kvh) * D;
            T* dkj = dk + ((kv_off[b] + j) * KVH + kvh) * D;
            for (int64_t d = 0; d < D; ++d) {
              dqi[d] += g * kj[d];
              dkj[d] += g * qi[d];
            }
          }
        }
      }
    }
  });
}

// float: each (sequence, head)'s products through the packed GEMM kernels (gemm.h's serial
// forms) instead of one dot product per (query, key): S = Q K^T over the whole Lq x Lk block
// (the causal upper part is computed and then masked), softmax per row, O = P V. Every value
// is the same sum as in the template above, in another order (one FMA chain along D or Lk).
template <>
void attention_forward<float>(float* out, float* att, const float* q, const float* k, const float* v,
                              const int64_t* q_off, const int64_t* kv_off, const int64_t* att_off, int64_t B, int64_t H,
                              int64_t KVH, int64_t D) {
  const int64_t group = H / KVH;
  const float scale = float(1.0 / std::sqrt(double(D)));
  parallel_for(0, B * H, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> S;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / H, h = t % H, kvh = h / group;
      const int64_t Lq = q_off[b + 1] - q_off[b], Lk = kv_off[b + 1] - kv_off[b];
      if (Lq == 0) continue;
      const float* qh = q + (q_off[b] * H + h) * D;
      const float* kh = k + (kv_off[b] * KVH + kvh) * D;
      const float* vh = v + (kv_off[b] * KVH + kvh) * D;
      float* oh = out + (q_off[b] * H + h) * D;
      S.resize(static_cast<size_t>(Lq * Lk));
      sgemm_nt_serial(S.data(), Lk, qh, H * D, kh, KVH * D, Lq, Lk, D, false);
      for (int64_t i = 0; i < Lq; ++i) {
        const int64_t last = Lk - Lq + i;  // keys 0..last visible
        float* p = S.data() + i * Lk;
        float mx = -INFINITY;
        for (int64_t j = 0; j <= last; ++j) {
          p[j] *= scale;
          mx = std::max(mx, p[j]);
        }
        const double sum = exp_shift_sum(p, p, mx, last + 1);
        const float inv = float(1.0 / sum);
        for (int64_t j = 0; j <= last; ++j) p[j] *= inv;
        for (int64_t j = last + 1; j < Lk; ++j) p[j] = 0.0f;
        if (att) std::copy(p, p + Lk, att + att_off[b] + (h * Lq + i) * Lk);
      }
      sgemm_nn_serial(oh, H * D, S.data(), Lk, vh, KVH * D, Lq, D, Lk, false);
    }
  });
}

// float: the backward's products per (sequence, kv head, query head) through the same kernels:
// dP = dY V^T, dV += P^T dY, dS = P (dP - rowsum(P dP)) scale, dQ += dS K, dK += dS^T Q.
template <>
void attention_backward<float>(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                               const float* v, const float* att, const int64_t* q_off, const int64_t* kv_off,
                               const int64_t* att_off, int64_t B, int64_t H, int64_t KVH, int64_t D) {
  const int64_t group = H / KVH;
  const float scale = float(1.0 / std::sqrt(double(D)));
  parallel_for(0, B * KVH, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> dS, T1;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / KVH, kvh = t % KVH;
      const int64_t Lq = q_off[b + 1] - q_off[b], Lk = kv_off[b + 1] - kv_off[b];
      if (Lq == 0) continue;
      const float* kh = k + (kv_off[b] * KVH + kvh) * D;
      const float* vh = v + (kv_off[b] * KVH + kvh) * D;
      float* dkh = dk + (kv_off[b] * KVH + kvh) * D;
      float* dvh = dv + (kv_off[b] * KVH + kvh) * D;
      dS.resize(static_cast<size_t>(Lq * Lk));
      T1.resize(static_cast<size_t>(Lk * Lq));
      for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
        const float* P = att + att_off[b] + h * Lq * Lk;
        const float* dyh = dout + (q_off[b] * H + h) * D;
        const float* qh = q + (q_off[b] * H + h) * D;
        float* dqh = dq + (q_off[b] * H + h) * D;
        // dV += P^T dY
        for (int64_t i = 0; i < Lq; ++i)
          for (int64_t j = 0; j < Lk; ++j) T1[j * Lq + i] = P[i * Lk + j];
        sgemm_nn_serial(dvh, KVH * D, T1.data(), Lq, dyh, H * D, Lk, D, Lq, true);
        // dP = dY V^T, then dS in place
        sgemm_nt_serial(dS.data(), Lk, dyh, H * D, vh, KVH * D, Lq, Lk, D, false);
        for (int64_t i = 0; i < Lq; ++i) {
          const int64_t last = Lk - Lq + i;
          const float* a = P + i * Lk;
          float* ds = dS.data() + i * Lk;
          double pdp = 0.0;
          for (int64_t j = 0; j <= last; ++j) pdp += double(a[j]) * double(ds[j]);
          for (int64_t j = 0; j <= last; ++j) ds[j] = a[j] * (ds[j] - float(pdp)) * scale;
          for (int64_t j = last + 1; j < Lk; ++j) ds[j] = 0.0f;
        }
        // dQ += dS K;  dK += dS^T Q
        sgemm_nn_serial(dqh, H * D, dS.data(), Lk, kh, KVH * D, Lq, D, Lk, true);
        for (int64_t i = 0; i < Lq; ++i)
          for (int64_t j = 0; j < Lk; ++j) T1[j * Lq + i] = dS[i * Lk + j];
        sgemm_nn_serial(dkh, KVH * D, T1.data(), Lq, qh, H * D, Lk, D, Lq, true);
      }
    }
  });
}

template <typename T>
void swiglu_forward(T* out, const T* gate, const T* up, int64_t n) {
  parallel_for(0, n, 16384, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const T g = gate[i];
      out[i] = g / (T(1) + std::exp(-g)) * up[i];
    }
  });
}

template <typename T>
void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, int64_t n) {
  parallel_for(0, n, 16384, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const T g = gate[i];
      const T sg = T(1) / (T(1) + std::exp(-g));
      const T silu = g * sg;
      if (dup) dup[i] += dout[i] * silu;
      if (dgate) dgate[i] += dout[i] * up[i] * sg * (T(1) + g * (T(1) - sg));
    }
  });
}

// float: exp(-g) for a chunk through the vectorised exp (vexp.h, relative error <= 2.5e-7),
// then the same expressions as the template, which vectorise once the call is out of the loop.
namespace {
constexpr int64_t kSwigluChunk = 4096;
void exp_neg(float* e, const float* g, int64_t n) {
  for (int64_t i = 0; i < n; ++i) e[i] = -g[i];
  expf_shift_sum(e, e, 0.0f, n);
}
}  // namespace

template <>
void swiglu_forward<float>(float* out, const float* gate, const float* up, int64_t n) {
  parallel_for(0, n, 16384, [&](int64_t i0, int64_t i1) {
    float e[kSwigluChunk];
    for (int64_t c0 = i0; c0 < i1; c0 += kSwigluChunk) {
      const int64_t m = std::min(kSwigluChunk, i1 - c0);
      exp_neg(e, gate + c0, m);
      for (int64_t i = 0; i < m; ++i) out[c0 + i] = gate[c0 + i] / (1.0f + e[i]) * up[c0 + i];
    }
  });
}

template <>
void swiglu_backward<float>(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n) {
  parallel_for(0, n, 16384, [&](int64_t i0, int64_t i1) {
    float e[kSwigluChunk];
    for (int64_t c0 = i0; c0 < i1; c0 += kSwigluChunk) {
      const int64_t m = std::min(kSwigluChunk, i1 - c0);
      exp_neg(e, gate + c0, m);
      for (int64_t i = 0; i < m; ++i) {
        const float g = gate[c0 + i], sg = 1.0f / (1.0f + e[i]), silu = g * sg, dy = dout[c0 + i];
        if (dup) dup[c0 + i] += dy * silu;
        if (dgate) dgate[c0 + i] += dy * up[c0 + i] * sg * (1.0f + g * (1.0f - sg));
      }
    }
  });
}

// B [OC, R] is transposed to Bt [R, OC] so that every product below runs along a long,
// contiguous dimension (R is small: 4-64).
template <typename T>
static std::vector<T> transpose(const T* x, int64_t rows, int64_t cols) {
  std::vector<T> t(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) t[size_t(j * rows + i)] = x[i * cols + j];
  return t;
}

template <typename T>
void lora_forward(T* out, T* t, const T* inp, const T* A, const T* B, double scale, int64_t N, int64_t C, int64_t OC,
                  int64_t R) {
  gemm_nt<T>(t, R, inp, C, A, C, N, R, C, false);  // t = inp A^T
  std::vector<T> ts(static_cast<size_t>(N * R));
  for (int64_t i = 0; i < N * R; ++i) ts[size_t(i)] = T(scale) * t[i];
  const std::vector<T> bt = transpose(B, OC, R);
  gemm_acc<T>(out, OC, ts.data(), R, 1, bt.data(), OC, N, OC, R);  // out += ts Bt
}

template <typename T>
void lora_backward(T* dinp, T* dA, T* dB, const T* dout, const T* inp, const T* t, const T* A, const T* B, double scale,
                   int64_t N, int64_t C, int64_t OC, int64_t R) {
  // g = scale * dout B  [N, R]  (dot products of dout rows with Bt rows)
  const std::vector<T> bt = transpose(B, OC, R);
  std::vector<T> g(static_cast<size_t>(N * R));
  gemm_nt<T>(g.data(), R, dout, OC, bt.data(), OC, N, R, OC, false);
  for (auto& x : g) x *= T(scale);
  if (dinp) gemm_acc<T>(dinp, C, g.data(), R, 1, A, C, N, C, R);  // dinp += g A
  if (dA) gemm_acc<T>(dA, C, g.data(), 1, R, inp, C, R, C, N);    // dA += g^T inp
  if (dB) {
    // dB^T [R, OC] = scale * t^T dout, then added transposed
    std::vector<T> ts(static_cast<size_t>(N * R)), dbt(static_cast<size_t>(R * OC), T(0));
    for (int64_t i = 0; i < N * R; ++i) ts[size_t(i)] = T(scale) * t[i];
    gemm_acc<T>(dbt.data(), OC, ts.data(), 1, R, dout, OC, R, OC, N);
    for (int64_t o = 0; o < OC; ++o)
      for (int64_t r = 0; r < R; ++r) dB[o * R + r] += dbt[size_t(r * OC + o)];
  }
}

template <typename T>
void crossentropy_forward(T* nll, const T* logits, const int32_t* targets, int64_t M, int64_t V) {
  parallel_for(0, M, row_grain(V), [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      const T* l = logits + m * V;
      T mx = l[0];
      for (int64_t j = 1; j < V; ++j) mx = std::max(mx, l[j]);
      const double sum = exp_shift_sum(static_cast<T*>(nullptr), l, mx, V);
      nll[m] = T(double(mx) + std::log(sum) - double(l[targets[m]]));
    }
  });
}

template <typename T>
void crossentropy_backward(T* dlogits, const T* logits, const int32_t* targets, const T* dnll, int64_t M, int64_t V) {
  parallel_for(0, M, row_grain(V), [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      const T* l = logits + m * V;
      T* dl = dlogits + m * V;
      if (dnll[m] == T(0)) {
        std::fill(dl, dl + V, T(0));
        continue;
      }
      T mx = l[0];
      for (int64_t j = 1; j < V; ++j) mx = std::max(mx, l[j]);
      // dl = exp(l - mx) first (dl may be l: elementwise), then scaled by dnll / sum
      const double inv = 1.0 / exp_shift_sum(dl, l, mx, V);
      const double k = double(dnll[m]) * inv;
      for (int64_t j = 0; j < V; ++j) dl[j] = T(k * double(dl[j]));
      dl[targets[m]] -= dnll[m];
    }
  });
}

#define MEMQ_INSTANTIATE_OPS(T)                                                                                       \
  template void matmul_forward<T>(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t);                       \
  template void matmul_backward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t);              \
  template void embedding_forward<T>(T*, const int32_t*, const T*, int64_t, int64_t);                                 \
  template void embedding_backward<T>(T*, const T*, const int32_t*, int64_t, int64_t);                                \
  template void rmsnorm_forward<T>(T*, T*, const T*, const T*, double, int64_t, int64_t);                             \
  template void rmsnorm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, int64_t, int64_t);                \
  template void rope_forward<T>(T*, const T*, const T*, const T*, const int32_t*, int64_t, int64_t, int64_t);         \
  template void rope_backward<T>(T*, const T*, const T*, const T*, const int32_t*, int64_t, int64_t, int64_t);        \
  template void attention_forward<T>(T*, T*, const T*, const T*, const T*, const int64_t*, const int64_t*,            \
                                     const int64_t*, int64_t, int64_t, int64_t, int64_t);                             \
  template void attention_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, const int64_t*,   \
                                      const int64_t*, const int64_t*, int64_t, int64_t, int64_t, int64_t);            \
  template void swiglu_forward<T>(T*, const T*, const T*, int64_t);                                                   \
  template void swiglu_backward<T>(T*, T*, const T*, const T*, const T*, int64_t);                                    \
  template void lora_forward<T>(T*, T*, const T*, const T*, const T*, double, int64_t, int64_t, int64_t, int64_t);    \
  template void lora_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, double, int64_t,       \
                                 int64_t, int64_t, int64_t);                                                          \
  template void crossentropy_forward<T>(T*, const T*, const int32_t*, int64_t, int64_t);                              \
  template void crossentropy_backward<T>(T*, const T*, const int32_t*, const T*, int64_t, int64_t);

MEMQ_INSTANTIATE_OPS(float)
MEMQ_INSTANTIATE_OPS(double)

}  // namespace llm
}  // namespace memq
