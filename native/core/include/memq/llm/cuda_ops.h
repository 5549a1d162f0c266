// The transformer engine's layers on a CUDA device: the twins of memq/llm/ops.h (same names,
// same argument order and semantics, the CPU engine is the oracle) on DEVICE pointers, plus the
// pieces the device engine needs around them (GEMM, LM-head cross-entropy, AdamW, reductions,
// row gathers) and device memory helpers. No CUDA type appears here (a stream is a void*), so
// host code compiled without nvcc (the engine, the tests) can call it; the definitions exist
// only in builds with MEMQ_HAVE_CUDA (native/core/llm/cuda/*.cu).
//
// Conventions: every function enqueues work on `stream` (nullptr = the legacy default stream)
// and returns a Status for launch/runtime errors (MEMQ_CUDA_TRY / MEMQ_CUDA_LAUNCH); sizes are
// validated by the callers (the engine validates requests exactly like the CPU engine).
// Backward functions ACCUMULATE into their gradient outputs like their CPU twins; a null
// gradient pointer means "not needed". Elementwise and row-wise arithmetic is float32 with
// double where the CPU twin uses double (norm sums, softmax sums, AdamW), so those ops agree
// with the CPU to float rounding; matrix products differ by the product precision (GemmPrecision).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "memq/llm/lora.h"
#include "memq/status.h"

namespace memq {
namespace llm {
namespace cuda {

using Stream = void*;  // a cudaStream_t

// ---- device memory ------------------------------------------------------------------------------
Status set_device(int device);
Status mem_info(int64_t* free_bytes, int64_t* total_bytes);
// cudaMalloc after checking that `bytes` + `reserve` fit the free memory (OutOfMemory naming
// `what`, the sizes and what is free otherwise; nothing is allocated then).
Status device_malloc(void** p, size_t bytes, int64_t reserve, const std::string& what);
void device_free(void* p);
Status copy_to_device(void* dst, const void* src, size_t bytes, Stream s);
Status copy_to_host(void* dst, const void* src, size_t bytes, Stream s);  // returns when the data is on the host
Status copy_on_device(void* dst, const void* src, size_t bytes, Stream s);
Status fill_zero(void* p, size_t bytes, Stream s);
Status stream_create(Stream* s);
void stream_destroy(Stream s);
Status stream_sync(Stream s);
// Number of multiprocessors of the current device (for launch sizing; 1 on error).
int sm_count();

// A grow-only device buffer (RAII). ensure() waits for `s` before freeing a smaller buffer
// (work enqueued earlier may still read it), checks free memory (+ reserve), then allocates.
class Buffer {
 public:
  Buffer() = default;
  ~Buffer() { release(); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept : p_(o.p_), bytes_(o.bytes_) {
    o.p_ = nullptr;
    o.bytes_ = 0;
  }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      release();
      std::swap(p_, o.p_);
      std::swap(bytes_, o.bytes_);
    }
    return *this;
  }
  Status ensure(size_t bytes, int64_t reserve, Stream s, const std::string& what) {
    if (p_ && bytes <= bytes_) return Status::Ok();
    if (p_) {
      MEMQ_RETURN_IF_ERROR(stream_sync(s));
      release();
    }
    void* q = nullptr;
    MEMQ_RETURN_IF_ERROR(device_malloc(&q, bytes ? bytes : 256, reserve, what));
    p_ = q;
    bytes_ = bytes ? bytes : 256;
    return Status::Ok();
  }
  void release() {
    if (p_) device_free(p_);
    p_ = nullptr;
    bytes_ = 0;
  }
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

// ---- matrix products ----------------------------------------------------------------------------
// kBF16: operands rounded to bf16 (round to nearest even) when tiles are loaded, WMMA m16n16k16,
// float32 accumulation. kTF32x3: float32 operands split into tf32 hi + lo, three WMMA m16n16k8
// products (lo*hi + hi*lo + hi*hi), float32 accumulation: float32-level accuracy.
enum class GemmPrecision : int { kBF16 = 0, kTF32x3 = 1 };

// A read-only matrix operand that may be stored in bf16 (weights) or float32.
struct WeightRef {
  const void* p = nullptr;
  bool bf16 = false;
  WeightRef() = default;
  WeightRef(const float* f) : p(f), bf16(false) {}  // NOLINT: implicit from float32 data
  static WeightRef bf16_bits(const void* q) {
    WeightRef w;
    w.p = q;
    w.bf16 = true;
    return w;
  }
  WeightRef offset(int64_t elements) const {
    WeightRef w = *this;
    w.p = static_cast<const char*>(p) + elements * (bf16 ? 2 : 4);
    return w;
  }
};

// Scratch for split-K products (skinny shapes with a long K, e.g. LoRA gradients); may be null
// (then no split).
struct GemmWorkspace {
  float* p = nullptr;
  int64_t floats = 0;
};

// C[m*ldc + n] = (accumulate ? C[m*ldc + n] : 0) + alpha * sum_k A(m,k) B(k,n) + bias[n]
// with A(m,k) = A[m*sam + k*sak] (float32) and B(k,n) = B[k*sbk + n*sbn]; bias nullable.
// Any strides; loads are coalesced when sak == 1 or sam == 1 (and sbk == 1 or sbn == 1).
Status gemm(float* C, int64_t ldc, const float* A, int64_t sam, int64_t sak, WeightRef B, int64_t sbk, int64_t sbn,
            int64_t M, int64_t N, int64_t K, float alpha, bool accumulate, const float* bias, GemmPrecision prec,
            GemmWorkspace ws, Stream s);

// ---- the twins of ops.h -------------------------------------------------------------------------
// out[N, OC] = inp[N, C] . weight[OC, C]^T + bias[OC]
Status matmul_forward(float* out, const float* inp, WeightRef weight, const float* bias, int64_t N, int64_t C,
                      int64_t OC, GemmPrecision prec, Stream s);
// dinp += dout . weight;  dweight += dout^T . inp;  dbias += sum_n dout   (each nullable)
Status matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp, WeightRef weight,
                       int64_t N, int64_t C, int64_t OC, GemmPrecision prec, GemmWorkspace ws, Stream s);

Status embedding_forward(float* out, const int32_t* tokens, WeightRef wte, int64_t N, int64_t C, Stream s);
// Scattered with float atomics: the order of the additions (and so the last bits) varies.
Status embedding_backward(float* dwte, const float* dout, const int32_t* tokens, int64_t N, int64_t C, Stream s);

Status rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, double eps, int64_t N, int64_t C,
                       Stream s);
Status rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                        const float* rstd, int64_t N, int64_t C, Stream s);

// cos/sin [max_pos, D/2] (built on the host, as the CPU engine does); pos [N]; out may alias inp.
Status rope_forward(float* out, const float* inp, const float* cos, const float* sin, const int32_t* pos, int64_t N,
                    int64_t H, int64_t D, Stream s);
Status rope_backward(float* dinp, const float* dout, const float* cos, const float* sin, const int32_t* pos, int64_t N,
                     int64_t H, int64_t D, Stream s);

// Causal grouped-query attention over packed ragged sequences, as ops.h documents; q_off,
// kv_off, att_off are DEVICE arrays and max_lq / max_lk (host) bound the sequences' lengths. The
// probabilities are always written to `att` (required here: [H, Lq, Lk] per sequence at
// att_off[b], zeros above the causal diagonal); inference passes a scratch buffer.
// D <= kMaxHeadDim.
constexpr int64_t kMaxHeadDim = 256;
Status attention_forward(float* out, float* att, const float* q, const float* k, const float* v, const int64_t* q_off,
                         const int64_t* kv_off, const int64_t* att_off, int64_t B, int64_t H, int64_t KVH, int64_t D,
                         int64_t max_lq, int64_t max_lk, Stream s);
// ds: scratch of the size of att (the softmax gradient), overwritten.
Status attention_backward(float* dq, float* dk, float* dv, float* ds, const float* dout, const float* q, const float* k,
                          const float* v, const float* att, const int64_t* q_off, const int64_t* kv_off,
                          const int64_t* att_off, int64_t B, int64_t H, int64_t KVH, int64_t D, int64_t max_lq,
                          int64_t max_lk, Stream s);

Status swiglu_forward(float* out, const float* gate, const float* up, int64_t n, Stream s);
Status swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n,
                       Stream s);

// out += scale * (inp A^T) B^T with A [R, C], B [OC, R] (float32 masters); t [N, R] = inp A^T.
Status lora_forward(float* out, float* t, const float* inp, const float* A, const float* B, double scale, int64_t N,
                    int64_t C, int64_t OC, int64_t R, GemmPrecision prec, Stream s);
// dinp += scale (dout B) A; dA += scale (dout B)^T inp; dB += scale dout^T t. g: scratch [N, R].
Status lora_backward(float* dinp, float* dA, float* dB, float* g, const float* dout, const float* inp, const float* t,
                     const float* A, const float* B, double scale, int64_t N, int64_t C, int64_t OC, int64_t R,
                     GemmPrecision prec, GemmWorkspace ws, Stream s);

// nll[m] = logsumexp(logits[m]) - logits[m, t_m]
Status crossentropy_forward(float* nll, const float* logits, const int32_t* targets, int64_t M, int64_t V, Stream s);
// dlogits[m] = dnll[m] (softmax(logits[m]) - onehot(t_m)) (overwrites; dnll 0 -> 0; may alias logits)
Status crossentropy_backward(float* dlogits, const float* logits, const int32_t* targets, const float* dnll, int64_t M,
                             int64_t V, Stream s);

// ---- engine helpers -----------------------------------------------------------------------------
// out = a + b (n values; out may alias a or b)
Status add(float* out, const float* a, const float* b, int64_t n, Stream s);
// x *= a
Status scale(float* x, float a, int64_t n, Stream s);
// dst[i, :] = src[rows[i], :]   (rows: device int64, M of them)
Status gather_rows(float* dst, const float* src, const int64_t* rows, int64_t M, int64_t C, Stream s);
// dst[rows[i], :] += src[i, :]  (rows distinct)
Status scatter_add_rows(float* dst, const float* src, const int64_t* rows, int64_t M, int64_t C, Stream s);
// out[b, :] = mean of x[offsets[b] .. offsets[b+1]), summed in double (0 for an empty sequence)
Status mean_rows(float* out, const float* x, const int64_t* offsets, int64_t B, int64_t C, Stream s);
// Keys/values of a continued pass (scoring): for each of `rows` rows r, src[r] >= 0 copies row
// src[r] of the cache, src[r] < 0 copies row (-src[r] - 1) of this pass; KD floats per row.
Status gather_kv(float* kout, float* vout, const float* kcache, const float* vcache, const float* kcur,
                 const float* vcur, const int64_t* src, int64_t rows, int64_t KD, Stream s);
// dst (bf16 bits) = round_to_nearest_even(src)
Status to_bf16(void* dst, const float* src, int64_t n, Stream s);
// *out (host) = sum x^2, accumulated in double (deterministic: fixed block partials, then one
// block in a fixed order). partials: device scratch of kSumSquaresPartials doubles.
constexpr int kSumSquaresPartials = 1024;
Status sum_squares(double* out, const float* x, int64_t n, double* partials, Stream s);
// AdamW of lora.h's adamw_step on device arrays (double arithmetic, float storage) with the
// gradient g[i] * clip (a float product, as the CPU's clipping; clip = 1 leaves g as it is).
Status adamw(float* p, const float* g, float* m, float* v, int64_t n, int64_t t, const AdamWOptions& o, float clip,
             Stream s);

}  // namespace cuda
}  // namespace llm
}  // namespace memq
