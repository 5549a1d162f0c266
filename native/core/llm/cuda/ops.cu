// The device twins of the transformer engine's layers (memq/llm/cuda_ops.h) except attention
// (attention.cu) and the GEMM kernel (gemm.cu), and the device memory helpers.
//
// Launch shapes: elementwise kernels are grid-stride loops over int64 indices (256 threads, at
// most 8 * SMs * 32 blocks); row-wise kernels (RMSNorm) use one warp per row; the cross-entropy
// uses one 256-thread block per row (vocabularies of 150K+); column sums (norm-weight and bias
// gradients) use 32-column x 8-row-group blocks with float atomics across row groups.
// Every launch is followed by MEMQ_CUDA_LAUNCH.
#include <algorithm>
#include <cmath>
#include <mutex>
#include <string>

#include "../../cuda/common.cuh"
#include "memq/llm/cuda_ops.h"

namespace memq {
namespace llm {
namespace cuda {

namespace {

constexpr int kThreads = 256;

cudaStream_t cs(Stream s) { return static_cast<cudaStream_t>(s); }

int grid_for(int64_t n, int threads = kThreads) {
  const int64_t cap = int64_t(std::max(1, sm_count())) * 32 * 8;
  return int(std::max<int64_t>(1, std::min<int64_t>((n + threads - 1) / threads, cap)));
}

std::string mib(double bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024.0));
  return buf;
}

#define GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

__device__ __forceinline__ float load_w(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load_w(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }

__device__ __forceinline__ double warp_sum(double x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}
__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}

// Block reductions over 256 threads (every thread gets the result). `red` holds >= 8 values.
__device__ double block_sum(double x, double* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  x = warp_sum(x);
  __syncthreads();  // red may still be read by a previous reduction
  if (lane == 0) red[warp] = x;
  __syncthreads();
  double s = 0.0;
  for (int w = 0; w < int(blockDim.x >> 5); ++w) s += red[w];  // fixed order
  return s;
}
__device__ float block_max(float x, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  x = warp_max(x);
  __syncthreads();
  if (lane == 0) red[warp] = x;
  __syncthreads();
  float m = red[0];
  for (int w = 1; w < int(blockDim.x >> 5); ++w) m = fmaxf(m, red[w]);
  return m;
}

// ---- kernels ---------------------------------------------------------------------------------------

template <class TW>
__global__ void embedding_fwd_k(float* out, const int32_t* tok, const TW* wte, int64_t N, int64_t C) {
  GRID_STRIDE(i, N * C) {
    const int64_t n = i / C, c = i % C;
    out[i] = load_w(wte, int64_t(tok[n]) * C + c);
  }
}

__global__ void embedding_bwd_k(float* dwte, const float* dout, const int32_t* tok, int64_t N, int64_t C) {
  GRID_STRIDE(i, N * C) {
    const int64_t n = i / C, c = i % C;
    atomicAdd(dwte + int64_t(tok[n]) * C + c, dout[i]);
  }
}

// One warp per row.
__global__ void rmsnorm_fwd_k(float* out, float* rstd, const float* inp, const float* w, double eps, int64_t N,
                              int64_t C) {
  const int64_t n = blockIdx.x * int64_t(blockDim.x >> 5) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (n >= N) return;
  const float* x = inp + n * C;
  double ss = 0.0;
  for (int64_t c = lane; c < C; c += 32) ss += double(x[c]) * double(x[c]);
  ss = warp_sum(ss);
  const float r = float(1.0 / sqrt(ss / double(C) + eps));
  if (lane == 0) rstd[n] = r;
  for (int64_t c = lane; c < C; c += 32) out[n * C + c] = __fmul_rn(__fmul_rn(x[c], r), w[c]);
}

__global__ void rmsnorm_bwd_dinp_k(float* dinp, const float* dout, const float* inp, const float* w, const float* rstd,
                                   int64_t N, int64_t C) {
  const int64_t n = blockIdx.x * int64_t(blockDim.x >> 5) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (n >= N) return;
  const float* x = inp + n * C;
  const float* dy = dout + n * C;
  const double r = rstd[n];
  double dot = 0.0;
  for (int64_t c = lane; c < C; c += 32) dot += double(dy[c]) * double(w[c]) * double(x[c]);
  dot = warp_sum(dot);
  const double k = r * r * r * dot / double(C);
  for (int64_t c = lane; c < C; c += 32) dinp[n * C + c] += float(r * double(w[c]) * double(dy[c]) - k * double(x[c]));
}

// out[c] += sum_n a[n, c] * (b ? b[n, c] * r[n] : 1). Block (32, 8): 32 columns x 8 row groups;
// grid (ceil(C / 32), row chunks). Partial sums in double, one float atomic per block and column.
__global__ void colsum_k(float* out, const float* a, const float* b, const float* r, int64_t N, int64_t C,
                         int64_t rows_per_block) {
  __shared__ double part[8][33];
  const int64_t c = blockIdx.x * 32 + threadIdx.x;
  const int64_t r0 = blockIdx.y * rows_per_block, r1 = min(N, r0 + rows_per_block);
  double s = 0.0;
  if (c < C)
    for (int64_t n = r0 + threadIdx.y; n < r1; n += 8) {
      const double x = a[n * C + c];
      s += b ? x * double(b[n * C + c]) * double(r[n]) : x;
    }
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    double t = 0.0;
    for (int y = 0; y < 8; ++y) t += part[y][threadIdx.x];
    atomicAdd(out + c, float(t));
  }
}

__global__ void rope_fwd_k(float* out, const float* inp, const float* cosb, const float* sinb, const int32_t* pos,
                           int64_t N, int64_t H, int64_t D) {
  const int64_t half = D / 2;
  GRID_STRIDE(e, N * H * half) {
    const int64_t i = e % half, nh = e / half, n = nh / H;
    const float cs = cosb[int64_t(pos[n]) * half + i], sn = sinb[int64_t(pos[n]) * half + i];
    const float* x = inp + nh * D;
    float* y = out + nh * D;
    const float x1 = x[i], x2 = x[i + half];
    // the CPU's expressions, without contraction into FMAs
    y[i] = __fsub_rn(__fmul_rn(x1, cs), __fmul_rn(x2, sn));
    y[i + half] = __fadd_rn(__fmul_rn(x2, cs), __fmul_rn(x1, sn));
  }
}

__global__ void rope_bwd_k(float* dinp, const float* dout, const float* cosb, const float* sinb, const int32_t* pos,
                           int64_t N, int64_t H, int64_t D) {
  const int64_t half = D / 2;
  GRID_STRIDE(e, N * H * half) {
    const int64_t i = e % half, nh = e / half, n = nh / H;
    const float cs = cosb[int64_t(pos[n]) * half + i], sn = sinb[int64_t(pos[n]) * half + i];
    const float* dy = dout + nh * D;
    float* dx = dinp + nh * D;
    const float d1 = dy[i], d2 = dy[i + half];
    dx[i] += __fadd_rn(__fmul_rn(d1, cs), __fmul_rn(d2, sn));
    dx[i + half] += __fsub_rn(__fmul_rn(d2, cs), __fmul_rn(d1, sn));
  }
}

__global__ void swiglu_fwd_k(float* out, const float* gate, const float* up, int64_t n) {
  GRID_STRIDE(i, n) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

__global__ void swiglu_bwd_k(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                             int64_t n) {
  GRID_STRIDE(i, n) {
    const float g = gate[i];
    const float sg = 1.0f / (1.0f + expf(-g));
    const float silu = g * sg;
    if (dup) dup[i] += dout[i] * silu;
    if (dgate) dgate[i] += dout[i] * up[i] * sg * (1.0f + g * (1.0f - sg));
  }
}

// One block per row: nll[m] = max + log(sum exp(l - max)) - l[t].
__global__ void ce_fwd_k(float* nll, const float* logits, const int32_t* targets, int64_t V) {
  __shared__ double redd[8];
  __shared__ float redf[8];
  const int64_t m = blockIdx.x;
  const float* l = logits + m * V;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, l[j]);
  mx = block_max(mx, redf);
  float s = 0.0f;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) s += expf(l[j] - mx);
  const double sum = block_sum(double(s), redd);
  if (threadIdx.x == 0) nll[m] = float(double(mx) + log(sum) - double(l[targets[m]]));
}

__global__ void ce_bwd_k(float* dlogits, const float* logits, const int32_t* targets, const float* dnll, int64_t V) {
  __shared__ double redd[8];
  __shared__ float redf[8];
  const int64_t m = blockIdx.x;
  const float* l = logits + m * V;
  float* dl = dlogits + m * V;
  const float d = dnll[m];
  if (d == 0.0f) {
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) dl[j] = 0.0f;
    return;
  }
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, l[j]);
  mx = block_max(mx, redf);
  float s = 0.0f;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) s += expf(l[j] - mx);
  const double inv = 1.0 / block_sum(double(s), redd);
  // every thread has read what it needs of row m before any write (block_sum synchronises), and
  // each thread then reads and writes only its own elements: dlogits may alias logits
  const int32_t t = targets[m];
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
    float g = float(double(d) * double(expf(l[j] - mx)) * inv);
    if (j == t) g -= d;
    dl[j] = g;
  }
}

__global__ void add_k(float* out, const float* a, const float* b, int64_t n) {
  GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}

__global__ void scale_k(float* x, float a, int64_t n) {
  GRID_STRIDE(i, n) x[i] *= a;
}

__global__ void gather_rows_k(float* dst, const float* src, const int64_t* rows, int64_t M, int64_t C) {
  GRID_STRIDE(e, M * C) {
    const int64_t i = e / C, c = e % C;
    dst[e] = src[rows[i] * C + c];
  }
}

__global__ void scatter_add_rows_k(float* dst, const float* src, const int64_t* rows, int64_t M, int64_t C) {
  GRID_STRIDE(e, M * C) {
    const int64_t i = e / C, c = e % C;
    dst[rows[i] * C + c] += src[e];
  }
}

__global__ void mean_rows_k(float* out, const float* x, const int64_t* off, int64_t B, int64_t C) {
  GRID_STRIDE(e, B * C) {
    const int64_t b = e / C, c = e % C;
    double s = 0.0;
    for (int64_t t = off[b]; t < off[b + 1]; ++t) s += x[t * C + c];
    const int64_t n = off[b + 1] - off[b];
    out[e] = n > 0 ? float(s / double(n)) : 0.0f;
  }
}

__global__ void gather_kv_k(float* kout, float* vout, const float* kc, const float* vc, const float* kcur,
                            const float* vcur, const int64_t* src, int64_t rows, int64_t KD) {
  GRID_STRIDE(e, rows * KD) {
    const int64_t r = e / KD, c = e % KD, s = src[r];
    if (s >= 0) {
      kout[e] = kc[s * KD + c];
      vout[e] = vc[s * KD + c];
    } else {
      kout[e] = kcur[(-s - 1) * KD + c];
      vout[e] = vcur[(-s - 1) * KD + c];
    }
  }
}

__global__ void to_bf16_k(__nv_bfloat16* dst, const float* src, int64_t n) {
  GRID_STRIDE(i, n) dst[i] = __float2bfloat16_rn(src[i]);
}

// Partial sums of squares: block b sums a fixed strided subset, in double.
__global__ void sumsq_partial_k(double* partials, const float* x, int64_t n) {
  __shared__ double red[8];
  double s = 0.0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    s += double(x[i]) * double(x[i]);
  s = block_sum(s, red);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}
__global__ void sumsq_final_k(double* partials, int count) {
  if (threadIdx.x == 0 && blockIdx.x == 0) {
    double s = 0.0;
    for (int i = 0; i < count; ++i) s += partials[i];
    partials[0] = s;
  }
}

__global__ void adamw_k(float* p, const float* g, float* m, float* v, int64_t n, double lr, double b1, double b2,
                        double eps, double wd, double bc1, double bc2, float clip) {
  GRID_STRIDE(i, n) {
    const float gi = g[i] * clip;
    double pi = p[i];
    pi -= lr * wd * pi;
    const double mi = b1 * double(m[i]) + (1.0 - b1) * double(gi);
    const double vi = b2 * double(v[i]) + (1.0 - b2) * double(gi) * double(gi);
    m[i] = float(mi);
    v[i] = float(vi);
    pi -= lr * (mi / bc1) / (sqrt(vi / bc2) + eps);
    p[i] = float(pi);
  }
}

}  // namespace

// ---- memory ----------------------------------------------------------------------------------------

Status set_device(int device) {
  MEMQ_CUDA_TRY(cudaSetDevice(device));
  return Status::Ok();
}

Status mem_info(int64_t* free_bytes, int64_t* total_bytes) {
  size_t f = 0, t = 0;
  MEMQ_CUDA_TRY(cudaMemGetInfo(&f, &t));
  if (free_bytes) *free_bytes = int64_t(f);
  if (total_bytes) *total_bytes = int64_t(t);
  return Status::Ok();
}

Status device_malloc(void** p, size_t bytes, int64_t reserve, const std::string& what) {
  *p = nullptr;
  size_t f = 0, t = 0;
  MEMQ_CUDA_TRY(cudaMemGetInfo(&f, &t));
  const double need = double(bytes) + double(reserve > 0 ? reserve : 0);
  if (need > double(f))
    return Status::NoMemory(what + ": needs " + mib(double(bytes)) + " of device memory (+ " +
                            mib(double(reserve > 0 ? reserve : 0)) + " kept free), but only " + mib(double(f)) +
                            " of " + mib(double(t)) + " are free");
  cudaError_t e = cudaMalloc(p, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    *p = nullptr;
    return Status::NoMemory(what + ": cudaMalloc of " + mib(double(bytes)) + " failed: " + cudaGetErrorString(e));
  }
  return Status::Ok();
}

void device_free(void* p) {
  if (p) cudaFree(p);  // errors ignored (destructors)
}

Status copy_to_device(void* dst, const void* src, size_t bytes, Stream s) {
  if (bytes) MEMQ_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cs(s)));
  return Status::Ok();
}

Status copy_to_host(void* dst, const void* src, size_t bytes, Stream s) {
  if (bytes) MEMQ_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cs(s)));
  MEMQ_CUDA_TRY(cudaStreamSynchronize(cs(s)));
  return Status::Ok();
}

Status copy_on_device(void* dst, const void* src, size_t bytes, Stream s) {
  if (bytes) MEMQ_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cs(s)));
  return Status::Ok();
}

Status fill_zero(void* p, size_t bytes, Stream s) {
  if (bytes) MEMQ_CUDA_TRY(cudaMemsetAsync(p, 0, bytes, cs(s)));
  return Status::Ok();
}

Status stream_create(Stream* s) {
  cudaStream_t st = nullptr;
  MEMQ_CUDA_TRY(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  *s = st;
  return Status::Ok();
}

void stream_destroy(Stream s) {
  if (s) {
    cudaStreamSynchronize(cs(s));
    cudaStreamDestroy(cs(s));
  }
}

Status stream_sync(Stream s) {
  MEMQ_CUDA_TRY(cudaStreamSynchronize(cs(s)));
  return Status::Ok();
}

int sm_count() {
  static int count = 0;
  static std::once_flag once;
  std::call_once(once, [] {
    int dev = 0, n = 0;
    if (cudaGetDevice(&dev) == cudaSuccess && cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess)
      count = n;
    cudaGetLastError();
    if (count <= 0) count = 1;
  });
  return count;
}

// ---- twins -----------------------------------------------------------------------------------------

Status matmul_forward(float* out, const float* inp, WeightRef weight, const float* bias, int64_t N, int64_t C,
                      int64_t OC, GemmPrecision prec, Stream s) {
  // out[n, o] = sum_c inp[n, c] W[o, c]: A = inp (row-major, k = c contiguous), B(k=c, n=o) = W[o*C + c]
  return gemm(out, OC, inp, C, 1, weight, 1, C, N, OC, C, 1.0f, false, bias, prec, GemmWorkspace(), s);
}

Status matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp, WeightRef weight,
                       int64_t N, int64_t C, int64_t OC, GemmPrecision prec, GemmWorkspace ws, Stream s) {
  // dinp[n, c] += sum_o dout[n, o] W[o, c]
  if (dinp) MEMQ_RETURN_IF_ERROR(gemm(dinp, C, dout, OC, 1, weight, C, 1, N, C, OC, 1.0f, true, nullptr, prec, ws, s));
  // dW[o, c] += sum_n dout[n, o] inp[n, c]: A(m=o, k=n) = dout[n*OC + o], B(k=n, n=c) = inp[n*C + c]
  if (dweight)
    MEMQ_RETURN_IF_ERROR(gemm(dweight, C, dout, 1, OC, WeightRef(inp), C, 1, OC, C, N, 1.0f, true, nullptr, prec, ws, s));
  if (dbias && N > 0 && OC > 0) {
    const int64_t rows = std::max<int64_t>(64, (N + 255) / 256);
    dim3 grid(unsigned((OC + 31) / 32), unsigned((N + rows - 1) / rows));
    colsum_k<<<grid, dim3(32, 8), 0, cs(s)>>>(dbias, dout, nullptr, nullptr, N, OC, rows);
    MEMQ_CUDA_LAUNCH("bias gradient");
  }
  return Status::Ok();
}

Status embedding_forward(float* out, const int32_t* tokens, WeightRef wte, int64_t N, int64_t C, Stream s) {
  if (N * C == 0) return Status::Ok();
  if (wte.bf16)
    embedding_fwd_k<<<grid_for(N * C), kThreads, 0, cs(s)>>>(out, tokens, static_cast<const __nv_bfloat16*>(wte.p), N, C);
  else
    embedding_fwd_k<<<grid_for(N * C), kThreads, 0, cs(s)>>>(out, tokens, static_cast<const float*>(wte.p), N, C);
  MEMQ_CUDA_LAUNCH("embedding_forward");
  return Status::Ok();
}

Status embedding_backward(float* dwte, const float* dout, const int32_t* tokens, int64_t N, int64_t C, Stream s) {
  if (N * C == 0) return Status::Ok();
  embedding_bwd_k<<<grid_for(N * C), kThreads, 0, cs(s)>>>(dwte, dout, tokens, N, C);
  MEMQ_CUDA_LAUNCH("embedding_backward");
  return Status::Ok();
}

Status rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, double eps, int64_t N, int64_t C,
                       Stream s) {
  if (N == 0) return Status::Ok();
  rmsnorm_fwd_k<<<unsigned((N + 7) / 8), kThreads, 0, cs(s)>>>(out, rstd, inp, weight, eps, N, C);
  MEMQ_CUDA_LAUNCH("rmsnorm_forward");
  return Status::Ok();
}

Status rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                        const float* rstd, int64_t N, int64_t C, Stream s) {
  if (N == 0) return Status::Ok();
  if (dinp) {
    rmsnorm_bwd_dinp_k<<<unsigned((N + 7) / 8), kThreads, 0, cs(s)>>>(dinp, dout, inp, weight, rstd, N, C);
    MEMQ_CUDA_LAUNCH("rmsnorm_backward (input)");
  }
  if (dweight) {
    const int64_t rows = std::max<int64_t>(64, (N + 255) / 256);
    dim3 grid(unsigned((C + 31) / 32), unsigned((N + rows - 1) / rows));
    colsum_k<<<grid, dim3(32, 8), 0, cs(s)>>>(dweight, dout, inp, rstd, N, C, rows);
    MEMQ_CUDA_LAUNCH("rmsnorm_backward (weight)");
  }
  return Status::Ok();
}

Status rope_forward(float* out, const float* inp, const float* cos, const float* sin, const int32_t* pos, int64_t N,
                    int64_t H, int64_t D, Stream s) {
  const int64_t n = N * H * (D / 2);
  if (n == 0) return Status::Ok();
  rope_fwd_k<<<grid_for(n), kThreads, 0, cs(s)>>>(out, inp, cos, sin, pos, N, H, D);
  MEMQ_CUDA_LAUNCH("rope_forward");
  return Status::Ok();
}

Status rope_backward(float* dinp, const float* dout, const float* cos, const float* sin, const int32_t* pos, int64_t N,
                     int64_t H, int64_t D, Stream s) {
  const int64_t n = N * H * (D / 2);
  if (n == 0) return Status::Ok();
  rope_bwd_k<<<grid_for(n), kThreads, 0, cs(s)>>>(dinp, dout, cos, sin, pos, N, H, D);
  MEMQ_CUDA_LAUNCH("rope_backward");
  return Status::Ok();
}

Status swiglu_forward(float* out, const float* gate, const float* up, int64_t n, Stream s) {
  if (n == 0) return Status::Ok();
  swiglu_fwd_k<<<grid_for(n), kThreads, 0, cs(s)>>>(out, gate, up, n);
  MEMQ_CUDA_LAUNCH("swiglu_forward");
  return Status::Ok();
}

Status swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n,
                       Stream s) {
  if (n == 0) return Status::Ok();
  swiglu_bwd_k<<<grid_for(n), kThreads, 0, cs(s)>>>(dgate, dup, dout, gate, up, n);
  MEMQ_CUDA_LAUNCH("swiglu_backward");
  return Status::Ok();
}

Status lora_forward(float* out, float* t, const float* inp, const float* A, const float* B, double scale, int64_t N,
                    int64_t C, int64_t OC, int64_t R, GemmPrecision prec, Stream s) {
  // t = inp A^T  [N, R]
  MEMQ_RETURN_IF_ERROR(gemm(t, R, inp, C, 1, WeightRef(A), 1, C, N, R, C, 1.0f, false, nullptr, prec, GemmWorkspace(), s));
  // out += scale * t B^T: B(k=r, n=o) = B[o*R + r]
  return gemm(out, OC, t, R, 1, WeightRef(B), 1, R, N, OC, R, float(scale), true, nullptr, prec, GemmWorkspace(), s);
}

Status lora_backward(float* dinp, float* dA, float* dB, float* g, const float* dout, const float* inp, const float* t,
                     const float* A, const float* B, double scale, int64_t N, int64_t C, int64_t OC, int64_t R,
                     GemmPrecision prec, GemmWorkspace ws, Stream s) {
  // g = scale * dout B  [N, R]: B(k=o, n=r) = B[o*R + r]
  MEMQ_RETURN_IF_ERROR(gemm(g, R, dout, OC, 1, WeightRef(B), R, 1, N, R, OC, float(scale), false, nullptr, prec, ws, s));
  // dinp += g A: A(k=r, n=c) = A[r*C + c]
  if (dinp) MEMQ_RETURN_IF_ERROR(gemm(dinp, C, g, R, 1, WeightRef(A), C, 1, N, C, R, 1.0f, true, nullptr, prec, ws, s));
  // dA[r, c] += sum_n g[n, r] inp[n, c]
  if (dA) MEMQ_RETURN_IF_ERROR(gemm(dA, C, g, 1, R, WeightRef(inp), C, 1, R, C, N, 1.0f, true, nullptr, prec, ws, s));
  // dB[o, r] += scale * sum_n dout[n, o] t[n, r]
  if (dB)
    MEMQ_RETURN_IF_ERROR(gemm(dB, R, dout, 1, OC, WeightRef(t), R, 1, OC, R, N, float(scale), true, nullptr, prec, ws, s));
  return Status::Ok();
}

Status crossentropy_forward(float* nll, const float* logits, const int32_t* targets, int64_t M, int64_t V, Stream s) {
  if (M == 0) return Status::Ok();
  if (M > 2147483647) return Status::Invalid("crossentropy_forward: too many rows");
  ce_fwd_k<<<unsigned(M), kThreads, 0, cs(s)>>>(nll, logits, targets, V);
  MEMQ_CUDA_LAUNCH("crossentropy_forward");
  return Status::Ok();
}

Status crossentropy_backward(float* dlogits, const float* logits, const int32_t* targets, const float* dnll, int64_t M,
                             int64_t V, Stream s) {
  if (M == 0) return Status::Ok();
  if (M > 2147483647) return Status::Invalid("crossentropy_backward: too many rows");
  ce_bwd_k<<<unsigned(M), kThreads, 0, cs(s)>>>(dlogits, logits, targets, dnll, V);
  MEMQ_CUDA_LAUNCH("crossentropy_backward");
  return Status::Ok();
}

// ---- helpers ---------------------------------------------------------------------------------------

Status add(float* out, const float* a, const float* b, int64_t n, Stream s) {
  if (n == 0) return Status::Ok();
  add_k<<<grid_for(n), kThreads, 0, cs(s)>>>(out, a, b, n);
  MEMQ_CUDA_LAUNCH("add");
  return Status::Ok();
}

Status scale(float* x, float a, int64_t n, Stream s) {
  if (n == 0) return Status::Ok();
  scale_k<<<grid_for(n), kThreads, 0, cs(s)>>>(x, a, n);
  MEMQ_CUDA_LAUNCH("scale");
  return Status::Ok();
}

Status gather_rows(float* dst, const float* src, const int64_t* rows, int64_t M, int64_t C, Stream s) {
  if (M * C == 0) return Status::Ok();
  gather_rows_k<<<grid_for(M * C), kThreads, 0, cs(s)>>>(dst, src, rows, M, C);
  MEMQ_CUDA_LAUNCH("gather_rows");
  return Status::Ok();
}

Status scatter_add_rows(float* dst, const float* src, const int64_t* rows, int64_t M, int64_t C, Stream s) {
  if (M * C == 0) return Status::Ok();
  scatter_add_rows_k<<<grid_for(M * C), kThreads, 0, cs(s)>>>(dst, src, rows, M, C);
  MEMQ_CUDA_LAUNCH("scatter_add_rows");
  return Status::Ok();
}

Status mean_rows(float* out, const float* x, const int64_t* offsets, int64_t B, int64_t C, Stream s) {
  if (B * C == 0) return Status::Ok();
  mean_rows_k<<<grid_for(B * C), kThreads, 0, cs(s)>>>(out, x, offsets, B, C);
  MEMQ_CUDA_LAUNCH("mean_rows");
  return Status::Ok();
}

Status gather_kv(float* kout, float* vout, const float* kcache, const float* vcache, const float* kcur,
                 const float* vcur, const int64_t* src, int64_t rows, int64_t KD, Stream s) {
  if (rows * KD == 0) return Status::Ok();
  gather_kv_k<<<grid_for(rows * KD), kThreads, 0, cs(s)>>>(kout, vout, kcache, vcache, kcur, vcur, src, rows, KD);
  MEMQ_CUDA_LAUNCH("gather_kv");
  return Status::Ok();
}

Status to_bf16(void* dst, const float* src, int64_t n, Stream s) {
  if (n == 0) return Status::Ok();
  to_bf16_k<<<grid_for(n), kThreads, 0, cs(s)>>>(static_cast<__nv_bfloat16*>(dst), src, n);
  MEMQ_CUDA_LAUNCH("to_bf16");
  return Status::Ok();
}

Status sum_squares(double* out, const float* x, int64_t n, double* partials, Stream s) {
  const int blocks = std::min<int>(kSumSquaresPartials, std::max(1, grid_for(n)));
  sumsq_partial_k<<<blocks, kThreads, 0, cs(s)>>>(partials, x, n);
  MEMQ_CUDA_LAUNCH("sum_squares (partials)");
  sumsq_final_k<<<1, 32, 0, cs(s)>>>(partials, blocks);
  MEMQ_CUDA_LAUNCH("sum_squares (final)");
  return copy_to_host(out, partials, sizeof(double), s);
}

Status adamw(float* p, const float* g, float* m, float* v, int64_t n, int64_t t, const AdamWOptions& o, float clip,
             Stream s) {
  if (n == 0) return Status::Ok();
  const double bc1 = 1.0 - std::pow(o.beta1, double(t));
  const double bc2 = 1.0 - std::pow(o.beta2, double(t));
  adamw_k<<<grid_for(n), kThreads, 0, cs(s)>>>(p, g, m, v, n, o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, bc1, bc2,
                                               clip);
  MEMQ_CUDA_LAUNCH("adamw");
  return Status::Ok();
}

}  // namespace cuda
}  // namespace llm
}  // namespace memq
