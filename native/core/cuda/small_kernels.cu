// Row conversion (float32 -> stored key type, with norms), gathers, the kernel-weighted value
// with the void case (MATH §3) and the log-sum-exp KL policy improvement (MATH §5) on the
// device, plus the host-side validation the free functions share with their CPU twins.
#include <cmath>
#include <limits>
#include <string>

#include <math_constants.h>

#include "common.cuh"

namespace memq {
namespace cudak {

namespace {

template <class KT> __device__ __forceinline__ KT from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }
__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// One warp per row: convert, zero-pad to ld, squared norm of the converted values.
template <class KT>
__global__ void convert_rows_kernel(KT* dst, float* norms2, float* inv, const float* src, int64_t rows, int64_t d,
                                    int64_t ld) {
  const int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;  // warp-uniform
  const float* s = src + (size_t)row * d;
  KT* o = dst + (size_t)row * ld;
  float acc = 0.0f;
  for (int64_t e = lane; e < ld; e += 32) {
    const KT y = from_f32<KT>(e < d ? s[e] : 0.0f);
    o[e] = y;
    const float f = to_f32(y);
    acc = fmaf(f, f, acc);
  }
  acc = warp_sum(acc);
  if (lane == 0) {
    norms2[row] = acc;
    if (inv) inv[row] = acc > 0.0f ? __fdiv_rn(1.0f, __fsqrt_rn(acc)) : 0.0f;
  }
}

template <class KT>
__global__ void gather_rows_kernel(float* dst, const KT* keys, const int32_t* row_idx, int64_t n, int64_t d, int64_t ld) {
  const int64_t i = (int64_t)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (i >= n) return;
  const KT* s = keys + (size_t)row_idx[i] * ld;
  for (int64_t e = lane; e < d; e += 32) dst[(size_t)i * d + e] = to_f32(s[e]);
}

// MATH §3, one warp per query, sums in double (as the CPU twin).
__global__ void kwv_kernel(float* value_out, float* conf_out, const int64_t* rows, const float* kernel,
                           const float* row_values, int64_t b, int64_t m, float void_weight, float void_value) {
  const int64_t i = (int64_t)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (i >= b) return;
  double sk = 0.0, skq = 0.0;
  for (int64_t s = lane; s < m; s += 32) {
    const int64_t e = i * m + s, r = rows[e];
    if (r < 0) continue;
    sk += (double)kernel[e];
    skq += (double)kernel[e] * (double)row_values[r];
  }
  sk = warp_sum(sk);
  skq = warp_sum(skq);
  if (lane == 0) {
    const double den = sk + (double)void_weight;
    const bool none = !(den > 0.0);  // an empty sum with no void weight has no opinion
    value_out[i] = none ? void_value : (float)((skq + (double)void_weight * (double)void_value) / den);
    if (conf_out) conf_out[i] = none ? 0.0f : (float)(sk / den);
  }
}

constexpr int kKlWarps = 4;
constexpr int kKlCache = 512;  // l values cached per row in shared memory: one read of the inputs up to here

__device__ __forceinline__ void lse_combine(double& m1, double& s1, double m2, double s2) {
  const double NEG = -CUDART_INF;
  if (m2 == NEG) return;
  if (m1 == NEG) {
    m1 = m2;
    s1 = s2;
    return;
  }
  if (m2 > m1) {
    s1 = s1 * exp(m1 - m2) + s2;
    m1 = m2;
  } else {
    s1 = s1 + s2 * exp(m2 - m1);
  }
}

// MATH §5, one warp per row. alpha > 0: online log-sum-exp in double (running max and sum)
// over one read of log_prior and q; l is cached in shared memory for the policy pass.
// alpha == 0: the hard limit (uniform over the argmax of q on the support of mu).
__global__ void __launch_bounds__(kKlWarps * 32) kl_kernel(float* policy_out, float* value_out, const float* log_prior,
                                                          const float* q, int64_t rows, int64_t cols,
                                                          const int32_t* row_lengths, double alpha) {
  __shared__ double cache[kKlWarps][kKlCache];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t i = (int64_t)blockIdx.x * kKlWarps + warp;
  if (i >= rows) return;
  const double NEG = -CUDART_INF;
  const int64_t len = row_lengths ? row_lengths[i] : cols;
  const float* lp = log_prior + (size_t)i * cols;
  const float* qi = q + (size_t)i * cols;
  float* pi = policy_out ? policy_out + (size_t)i * cols : nullptr;
  if (pi)
    for (int64_t c = len + lane; c < cols; c += 32) pi[c] = 0.0f;
  double* lc = cache[warp];
  if (alpha == 0.0) {
    double best = NEG;
    long long count = 0;
    for (int64_t c = lane; c < len; c += 32) {
      const float l = lp[c];
      const double v = l == -kInfF ? NEG : (double)qi[c];
      if (c < kKlCache) lc[c] = v;
      if (v == NEG) continue;
      if (v > best) best = v, count = 1;
      else if (v == best) ++count;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const double ob = __shfl_xor_sync(0xffffffffu, best, o);
      const long long oc = __shfl_xor_sync(0xffffffffu, count, o);
      if (ob > best) best = ob, count = oc;
      else if (ob == best) count += oc;
    }
    __syncwarp();
    if (pi)
      for (int64_t c = lane; c < len; c += 32) {
        const double v = c < kKlCache ? lc[c] : (lp[c] == -kInfF ? NEG : (double)qi[c]);
        pi[c] = (count > 0 && v != NEG && v == best) ? (float)(1.0 / (double)count) : 0.0f;
      }
    if (lane == 0) value_out[i] = count > 0 ? (float)best : -kInfF;
    return;
  }
  double mx = NEG, sum = 0.0;
  for (int64_t c = lane; c < len; c += 32) {
    const float l = lp[c];
    const double v = l == -kInfF ? NEG : (double)l + (double)qi[c] / alpha;
    if (c < kKlCache) lc[c] = v;
    if (v == NEG) continue;
    if (v > mx) {
      sum = sum * exp(mx - v) + 1.0;  // exp(-inf) = 0 for the first element
      mx = v;
    } else {
      sum += exp(v - mx);
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const double om = __shfl_xor_sync(0xffffffffu, mx, o);
    const double os = __shfl_xor_sync(0xffffffffu, sum, o);
    lse_combine(mx, sum, om, os);
  }
  __syncwarp();
  if (mx == NEG) {  // no support
    if (pi)
      for (int64_t c = lane; c < len; c += 32) pi[c] = 0.0f;
    if (lane == 0) value_out[i] = -kInfF;
    return;
  }
  if (pi)
    for (int64_t c = lane; c < len; c += 32) {
      const double v = c < kKlCache ? lc[c] : (lp[c] == -kInfF ? NEG : (double)lp[c] + (double)qi[c] / alpha);
      pi[c] = (float)(exp(v - mx) / sum);
    }
  if (lane == 0) value_out[i] = (float)(alpha * (mx + log(sum)));
}

unsigned warp_blocks(int64_t warps, int warps_per_block) {
  return (unsigned)((warps + warps_per_block - 1) / warps_per_block);
}


}  // namespace

Status convert_rows(void* dst, float* norms2, float* inv, const float* src, int64_t rows, int64_t d, int64_t ld,
                    CudaKeyType type, cudaStream_t st) {
  if (rows <= 0) return Status::Ok();
  if (rows > (int64_t)UINT32_MAX * 8) return Status::Invalid("too many rows for one conversion");
  const unsigned blocks = warp_blocks(rows, 8);
  switch (type) {
    case CudaKeyType::kFloat32:
      convert_rows_kernel<float><<<blocks, 256, 0, st>>>(static_cast<float*>(dst), norms2, inv, src, rows, d, ld);
      break;
    case CudaKeyType::kBFloat16:
      convert_rows_kernel<__nv_bfloat16>
          <<<blocks, 256, 0, st>>>(static_cast<__nv_bfloat16*>(dst), norms2, inv, src, rows, d, ld);
      break;
    case CudaKeyType::kFloat16:
      convert_rows_kernel<__half><<<blocks, 256, 0, st>>>(static_cast<__half*>(dst), norms2, inv, src, rows, d, ld);
      break;
  }
  MEMQ_CUDA_LAUNCH("convert_rows_kernel");
  return Status::Ok();
}

Status gather_rows_f32(float* dst, const void* keys, const int32_t* row_idx, int64_t n, int64_t d, int64_t ld,
                       CudaKeyType type, cudaStream_t st) {
  if (n <= 0) return Status::Ok();
  const unsigned blocks = warp_blocks(n, 8);
  switch (type) {
    case CudaKeyType::kFloat32:
      gather_rows_kernel<float><<<blocks, 256, 0, st>>>(dst, static_cast<const float*>(keys), row_idx, n, d, ld);
      break;
    case CudaKeyType::kBFloat16:
      gather_rows_kernel<__nv_bfloat16>
          <<<blocks, 256, 0, st>>>(dst, static_cast<const __nv_bfloat16*>(keys), row_idx, n, d, ld);
      break;
    case CudaKeyType::kFloat16:
      gather_rows_kernel<__half><<<blocks, 256, 0, st>>>(dst, static_cast<const __half*>(keys), row_idx, n, d, ld);
      break;
  }
  MEMQ_CUDA_LAUNCH("gather_rows_kernel");
  return Status::Ok();
}

Status kwv_device(float* value_out, float* confidence_out, const int64_t* rows, const float* kernel,
                  const float* row_values, int64_t b, int64_t m, float void_weight, float void_value, cudaStream_t st) {
  if (b <= 0) return Status::Ok();
  kwv_kernel<<<warp_blocks(b, 8), 256, 0, st>>>(value_out, confidence_out, rows, kernel, row_values, b, m, void_weight,
                                                void_value);
  MEMQ_CUDA_LAUNCH("kwv_kernel");
  return Status::Ok();
}

Status kl_device(float* policy_out, float* value_out, const float* log_prior, const float* q, int64_t rows,
                 int64_t cols, const int32_t* row_lengths, float alpha, cudaStream_t st) {
  if (rows <= 0) return Status::Ok();
  kl_kernel<<<warp_blocks(rows, kKlWarps), kKlWarps * 32, 0, st>>>(policy_out, value_out, log_prior, q, rows, cols,
                                                                   row_lengths, (double)alpha);
  MEMQ_CUDA_LAUNCH("kl_kernel");
  return Status::Ok();
}

}  // namespace cudak
}  // namespace memq
