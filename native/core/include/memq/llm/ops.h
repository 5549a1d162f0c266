// The transformer's layers as forward/backward pairs of free functions (llm.c style): outputs
// first, inputs const, dimensions last. Row-major; N = number of tokens (all sequences of a
// batch packed one after another, no padding). Templates instantiated for float (the engine;
// matmuls go through the vectorised GEMM) and double (finite-difference tests).
// Backward functions ACCUMULATE (+=) into their gradient outputs; a null gradient pointer
// means "not needed" (e.g. frozen base weights under LoRA).
#pragma once
#include <cstdint>

namespace memq {
namespace llm {

// out[N, OC] = inp[N, C] . weight[OC, C]^T + bias[OC]   (HF nn.Linear layout; bias nullable)
template <typename T>
void matmul_forward(T* out, const T* inp, const T* weight, const T* bias, int64_t N, int64_t C, int64_t OC);
// dinp += dout . weight;  dweight += dout^T . inp;  dbias += sum_n dout   (each nullable)
template <typename T>
void matmul_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight, int64_t N,
                     int64_t C, int64_t OC);

// out[n] = wte[tokens[n]]   (tokens already validated to be < V)
template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, int64_t N, int64_t C);
template <typename T>
void embedding_backward(T* dwte, const T* dout, const int32_t* tokens, int64_t N, int64_t C);

// RMSNorm: out = inp * rstd * weight,  rstd[n] = 1 / sqrt(mean(inp[n]^2) + eps)
template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* inp, const T* weight, double eps, int64_t N, int64_t C);
template <typename T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, const T* rstd, int64_t N,
                      int64_t C);

// RoPE, HF rotate_half convention, per head of width D (even), half = D/2:
//   out[i]        = x[i] cos[p,i] - x[i+half] sin[p,i]
//   out[i+half]   = x[i+half] cos[p,i] + x[i] sin[p,i]          for i < half, p = pos[n]
// cos/sin tables are [max_pos, half]: cos(p * theta^(-2i/D)). out may alias inp.
template <typename T>
void rope_forward(T* out, const T* inp, const T* cos, const T* sin, const int32_t* pos, int64_t N, int64_t H,
                  int64_t D);
template <typename T>
void rope_backward(T* dinp, const T* dout, const T* cos, const T* sin, const int32_t* pos, int64_t N, int64_t H,
                   int64_t D);

// Grouped-query causal attention over packed ragged sequences.
//   q [Nq, H*D], k/v [Nkv, KVH*D] (H % KVH == 0; query head h reads kv head h / (H/KVH)),
//   out [Nq, H*D]. Sequence b owns query rows q_off[b]..q_off[b+1] (Lq) and key rows
//   kv_off[b]..kv_off[b+1] (Lk >= Lq); its query i sits at position Lk - Lq + i and attends to
//   keys 0..Lk-Lq+i (so a cached prefix of Lk - Lq keys is visible to every query).
//   att (nullable) keeps the softmax probabilities for backward: sequence b at att_off[b],
//   laid out [H, Lq, Lk] (entries above the causal diagonal are 0). Scale 1/sqrt(D).
template <typename T>
void attention_forward(T* out, T* att, const T* q, const T* k, const T* v, const int64_t* q_off,
                       const int64_t* kv_off, const int64_t* att_off, int64_t B, int64_t H, int64_t KVH, int64_t D);
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* att,
                        const int64_t* q_off, const int64_t* kv_off, const int64_t* att_off, int64_t B, int64_t H,
                        int64_t KVH, int64_t D);

// SwiGLU: out = silu(gate) * up, elementwise over n values.
template <typename T>
void swiglu_forward(T* out, const T* gate, const T* up, int64_t n);
template <typename T>
void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, int64_t n);

// LoRA branch of a linear layer (MATH §12): out += scale * (inp A^T) B^T with A [R, C], B [OC, R].
//   t [N, R] (= inp A^T) is kept for backward.
template <typename T>
void lora_forward(T* out, T* t, const T* inp, const T* A, const T* B, double scale, int64_t N, int64_t C, int64_t OC,
                  int64_t R);
// dinp += scale * (dout B) A;  dA += scale * (dout B)^T inp;  dB += scale * dout^T t.
template <typename T>
void lora_backward(T* dinp, T* dA, T* dB, const T* dout, const T* inp, const T* t, const T* A, const T* B,
                   double scale, int64_t N, int64_t C, int64_t OC, int64_t R);

// Cross-entropy from logits [M, V] at targets [M]: nll[m] = logsumexp(logits[m]) - logits[m, t_m].
template <typename T>
void crossentropy_forward(T* nll, const T* logits, const int32_t* targets, int64_t M, int64_t V);
// dlogits[m] = dnll[m] * (softmax(logits[m]) - onehot(t_m))   (overwrites; rows with dnll 0 get 0;
// dlogits may alias logits)
template <typename T>
void crossentropy_backward(T* dlogits, const T* logits, const int32_t* targets, const T* dnll, int64_t M, int64_t V);

}  // namespace llm
}  // namespace memq
