// Causal grouped-query attention on the device (memq/llm/cuda_ops.h: attention_forward /
// attention_backward), the twin of ops.cpp's, with the same layouts: q [Nq, H*D], k/v
// [Nkv, KVH*D], packed ragged sequences, query i of sequence b at position Lk - Lq + i sees keys
// 0..Lk-Lq+i, probabilities att [H, Lq, Lk] per sequence at att_off[b] (0 above the diagonal).
//
// A plain, exact kernel (no tiling of the softmax, no recomputation): the full probability
// matrix is written, as the CPU engine keeps it for backward. Cost: H * Lq * Lk floats per
// sequence and layer of device memory in training (e.g. 12 heads, 512 tokens: 12.6 MB per
// sequence and layer) and O(Lq * Lk * D) work per head. docs/cuda.md discusses the
// flash-attention alternative (online softmax, recomputation in backward) that would remove it.
//
// forward (grid: query tiles of 8 rows x H x B; one warp per query row):
//   1. scores: the block streams K in tiles of 32 keys through shared memory; lane l of a warp
//      computes the score of key j0 + l for its row and writes it to the row of att;
//   2. softmax over the row, in place (max, exp, sum in double, normalise; zeros past the diagonal);
//   3. out = P V: the block streams V tiles; each lane owns dims d = lane + 32u and the warp
//      broadcasts p_j with shuffles.
// backward:
//   a. (same grid) dp_j = dout_i . v_j, ds_j = p_j (dp_j - sum_j' p_j' dp_j') / sqrt(D) into `ds`,
//      then dq_i += sum_j ds_j k_j (as 3. with K tiles);
//   b. (grid: key tiles of 32 x KVH x B) dk_j += sum_{h in group, i} ds_hij q_hi and
//      dv_j += sum_{h, i} p_hij dout_hi: the block streams 16-row tiles of q, dout and of the
//      [16 x 32] blocks of ds and p (coalesced), each warp owns 4 keys, lanes own dims.
// Every (row, head) of dq and every (key, kv head) of dk/dv is written by one warp: no atomics,
// deterministic. Shared memory is static and below 48 KiB (D <= 256).
#include <cmath>

#include "../../cuda/common.cuh"
#include "memq/llm/cuda_ops.h"

namespace memq {
namespace llm {
namespace cuda {

namespace {

constexpr int kRows = 8;     // query rows per block (one per warp)
constexpr int kTile = 32;    // keys per shared tile
constexpr int kMaxD = int(kMaxHeadDim);
constexpr int kDU = kMaxD / 32;  // dims per lane

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ double warp_sum(double x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

struct SeqGeom {
  int64_t qbase, kvbase, Lq, Lk, shift;
  const float* rowbase;
};

// Loads rows j0 .. j0+kTile-1 (< jend) of head `kvh` of x ([rows][KVH][D]) into s[kTile][D + 1]
// (zeros past jend).
__device__ __forceinline__ void load_tile(float* s, const float* x, int64_t base, int64_t j0, int64_t jend,
                                          int64_t KVH, int64_t kvh, int D) {
  for (int e = threadIdx.x; e < kTile * D; e += blockDim.x) {
    const int r = e / D, d = e % D;
    const int64_t j = j0 + r;
    s[r * (D + 1) + d] = j < jend ? x[((base + j) * KVH + kvh) * D + d] : 0.0f;
  }
}

__global__ void __launch_bounds__(256) attn_fwd_k(float* out, float* att, const float* q, const float* k,
                                                  const float* v, const int64_t* q_off, const int64_t* kv_off,
                                                  const int64_t* att_off, int H, int KVH, int D, float scale) {
  __shared__ float sk[kTile * (kMaxD + 1)];
  __shared__ float sq[kRows * kMaxD];
  const int b = blockIdx.z, h = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int kvh = h / (H / KVH);
  const int64_t Lq = q_off[b + 1] - q_off[b], Lk = kv_off[b + 1] - kv_off[b], shift = Lk - Lq;
  const int64_t i0 = int64_t(blockIdx.x) * kRows;
  if (i0 >= Lq) return;  // uniform over the block
  const int64_t i = i0 + warp;
  const bool valid = i < Lq;
  const int64_t last = shift + i;                                  // keys 0..last visible to row i
  const int64_t block_end = shift + min(Lq - 1, i0 + kRows - 1) + 1;  // keys the block needs
  float* arow = att + att_off[b] + (int64_t(h) * Lq + (valid ? i : 0)) * Lk;
  if (valid)
    for (int d = lane; d < D; d += 32) sq[warp * kMaxD + d] = q[((q_off[b] + i) * H + h) * D + d];

  // 1. scores
  float mx = -INFINITY;
  for (int64_t j0 = 0; j0 < block_end; j0 += kTile) {
    __syncthreads();
    load_tile(sk, k, kv_off[b], j0, block_end, KVH, kvh, D);
    __syncthreads();
    const int64_t j = j0 + lane;
    if (valid && j <= last) {
      const float* kr = sk + lane * (D + 1);
      const float* qr = sq + warp * kMaxD;
      float s = 0.0f;
      for (int d = 0; d < D; ++d) s = fmaf(qr[d], kr[d], s);
      s *= scale;
      arow[j] = s;
      mx = fmaxf(mx, s);
    }
  }
  // 2. softmax of the row (each lane touches only the entries j = lane (mod 32) it wrote)
  if (valid) {
    mx = warp_max(mx);
    double sum = 0.0;
    for (int64_t j = lane; j <= last; j += 32) {
      const float p = float(exp(double(arow[j] - mx)));
      arow[j] = p;
      sum += double(p);
    }
    sum = warp_sum(sum);
    const float inv = float(1.0 / sum);
    for (int64_t j = lane; j < Lk; j += 32) arow[j] = j <= last ? arow[j] * inv : 0.0f;
  }
  // 3. out = P V
  float acc[kDU];
#pragma unroll
  for (int u = 0; u < kDU; ++u) acc[u] = 0.0f;
  for (int64_t j0 = 0; j0 < block_end; j0 += kTile) {
    __syncthreads();
    load_tile(sk, v, kv_off[b], j0, block_end, KVH, kvh, D);
    __syncthreads();
    if (valid) {
      const float p = (j0 + lane <= last) ? arow[j0 + lane] : 0.0f;
      const int n = int(min(int64_t(kTile), last - j0 + 1));  // keys of this tile the row sees (warp-uniform)
      for (int jj = 0; jj < n; ++jj) {
        const float pj = __shfl_sync(0xffffffffu, p, jj);
        const float* vr = sk + jj * (D + 1);
#pragma unroll
        for (int u = 0; u < kDU; ++u) {
          const int d = lane + 32 * u;
          if (d < D) acc[u] = fmaf(pj, vr[d], acc[u]);
        }
      }
    }
  }
  if (valid) {
    float* o = out + ((q_off[b] + i) * H + h) * D;
#pragma unroll
    for (int u = 0; u < kDU; ++u) {
      const int d = lane + 32 * u;
      if (d < D) o[d] = acc[u];
    }
  }
}

// a. ds = p (dp - sum p dp) scale, dq += ds K.
__global__ void __launch_bounds__(256) attn_bwd_dq_k(float* dq, float* ds, const float* dout, const float* k,
                                                     const float* v, const float* att, const int64_t* q_off,
                                                     const int64_t* kv_off, const int64_t* att_off, int H, int KVH,
                                                     int D, float scale) {
  __shared__ float sk[kTile * (kMaxD + 1)];
  __shared__ float sq[kRows * kMaxD];
  const int b = blockIdx.z, h = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int kvh = h / (H / KVH);
  const int64_t Lq = q_off[b + 1] - q_off[b], Lk = kv_off[b + 1] - kv_off[b], shift = Lk - Lq;
  const int64_t i0 = int64_t(blockIdx.x) * kRows;
  if (i0 >= Lq) return;
  const int64_t i = i0 + warp;
  const bool valid = i < Lq;
  const int64_t last = shift + i;
  const int64_t block_end = shift + min(Lq - 1, i0 + kRows - 1) + 1;
  const int64_t roff = att_off[b] + (int64_t(h) * Lq + (valid ? i : 0)) * Lk;
  const float* prow = att + roff;
  float* dsrow = ds + roff;
  if (valid)
    for (int d = lane; d < D; d += 32) sq[warp * kMaxD + d] = dout[((q_off[b] + i) * H + h) * D + d];

  double pdp = 0.0;
  for (int64_t j0 = 0; j0 < block_end; j0 += kTile) {
    __syncthreads();
    load_tile(sk, v, kv_off[b], j0, block_end, KVH, kvh, D);
    __syncthreads();
    const int64_t j = j0 + lane;
    if (valid && j <= last) {
      const float* vr = sk + lane * (D + 1);
      const float* gr = sq + warp * kMaxD;
      float dp = 0.0f;
      for (int d = 0; d < D; ++d) dp = fmaf(gr[d], vr[d], dp);
      dsrow[j] = dp;
      pdp += double(prow[j]) * double(dp);
    }
  }
  if (valid) {
    const float pdpf = float(warp_sum(pdp));
    for (int64_t j = lane; j < Lk; j += 32) dsrow[j] = j <= last ? prow[j] * (dsrow[j] - pdpf) * scale : 0.0f;
  }
  float acc[kDU];
#pragma unroll
  for (int u = 0; u < kDU; ++u) acc[u] = 0.0f;
  for (int64_t j0 = 0; j0 < block_end; j0 += kTile) {
    __syncthreads();
    load_tile(sk, k, kv_off[b], j0, block_end, KVH, kvh, D);
    __syncthreads();
    if (valid) {
      const float g = (j0 + lane <= last) ? dsrow[j0 + lane] : 0.0f;
      const int n = int(min(int64_t(kTile), last - j0 + 1));
      for (int jj = 0; jj < n; ++jj) {
        const float gj = __shfl_sync(0xffffffffu, g, jj);
        const float* kr = sk + jj * (D + 1);
#pragma unroll
        for (int u = 0; u < kDU; ++u) {
          const int d = lane + 32 * u;
          if (d < D) acc[u] = fmaf(gj, kr[d], acc[u]);
        }
      }
    }
  }
  if (valid) {
    float* o = dq + ((q_off[b] + i) * H + h) * D;
#pragma unroll
    for (int u = 0; u < kDU; ++u) {
      const int d = lane + 32 * u;
      if (d < D) o[d] += acc[u];
    }
  }
}

constexpr int kKeys = 32;     // keys per block in the dk/dv kernel
constexpr int kRowTile = 16;  // query rows per shared tile there
constexpr int kKeysPerWarp = kKeys / 8;

// b. dk += ds^T q, dv += p^T dout, per (key tile, kv head, sequence), over the group's heads.
__global__ void __launch_bounds__(256) attn_bwd_dkv_k(float* dk, float* dv, const float* ds, const float* att,
                                                      const float* q, const float* dout, const int64_t* q_off,
                                                      const int64_t* kv_off, const int64_t* att_off, int H, int KVH,
                                                      int D) {
  __shared__ float sq[kRowTile * (kMaxD + 1)];
  __shared__ float sg[kRowTile * (kMaxD + 1)];
  __shared__ float sds[kRowTile * (kKeys + 1)];
  __shared__ float sp[kRowTile * (kKeys + 1)];
  const int b = blockIdx.z, kvh = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int group = H / KVH;
  const int64_t Lq = q_off[b + 1] - q_off[b], Lk = kv_off[b + 1] - kv_off[b], shift = Lk - Lq;
  const int64_t j0 = int64_t(blockIdx.x) * kKeys;
  if (j0 >= Lk) return;  // uniform
  // Rows below i_first see none of this block's keys (row i sees keys <= shift + i).
  const int64_t i_first = j0 - shift > 0 ? (j0 - shift) / kRowTile * kRowTile : 0;
  float acck[kKeysPerWarp][kDU], accv[kKeysPerWarp][kDU];
#pragma unroll
  for (int t = 0; t < kKeysPerWarp; ++t)
#pragma unroll
    for (int u = 0; u < kDU; ++u) acck[t][u] = accv[t][u] = 0.0f;

  for (int hh = 0; hh < group; ++hh) {
    const int h = kvh * group + hh;
    const int64_t hbase = att_off[b] + int64_t(h) * Lq * Lk;
    for (int64_t r0 = i_first; r0 < Lq; r0 += kRowTile) {
      __syncthreads();
      for (int e = threadIdx.x; e < kRowTile * D; e += blockDim.x) {
        const int r = e / D, d = e % D;
        const int64_t i = r0 + r;
        const bool in = i < Lq;
        sq[r * (D + 1) + d] = in ? q[((q_off[b] + i) * H + h) * D + d] : 0.0f;
        sg[r * (D + 1) + d] = in ? dout[((q_off[b] + i) * H + h) * D + d] : 0.0f;
      }
      for (int e = threadIdx.x; e < kRowTile * kKeys; e += blockDim.x) {
        const int r = e / kKeys, c = e % kKeys;
        const int64_t i = r0 + r, j = j0 + c;
        const bool in = i < Lq && j < Lk;
        sds[r * (kKeys + 1) + c] = in ? ds[hbase + i * Lk + j] : 0.0f;
        sp[r * (kKeys + 1) + c] = in ? att[hbase + i * Lk + j] : 0.0f;
      }
      __syncthreads();
#pragma unroll
      for (int t = 0; t < kKeysPerWarp; ++t) {
        const int c = warp * kKeysPerWarp + t;
        for (int r = 0; r < kRowTile; ++r) {
          const float g = sds[r * (kKeys + 1) + c], p = sp[r * (kKeys + 1) + c];
          const float* qr = sq + r * (D + 1);
          const float* gr = sg + r * (D + 1);
#pragma unroll
          for (int u = 0; u < kDU; ++u) {
            const int d = lane + 32 * u;
            if (d < D) {
              acck[t][u] = fmaf(g, qr[d], acck[t][u]);
              accv[t][u] = fmaf(p, gr[d], accv[t][u]);
            }
          }
        }
      }
    }
  }
#pragma unroll
  for (int t = 0; t < kKeysPerWarp; ++t) {
    const int64_t j = j0 + warp * kKeysPerWarp + t;
    if (j >= Lk) continue;
    float* dkr = dk + ((kv_off[b] + j) * KVH + kvh) * D;
    float* dvr = dv + ((kv_off[b] + j) * KVH + kvh) * D;
#pragma unroll
    for (int u = 0; u < kDU; ++u) {
      const int d = lane + 32 * u;
      if (d < D) {
        dkr[d] += acck[t][u];
        dvr[d] += accv[t][u];
      }
    }
  }
}

Status check_dims(const char* who, int64_t B, int64_t H, int64_t KVH, int64_t D, int64_t max_lq, int64_t max_lk) {
  if (D <= 0 || D > kMaxHeadDim || D % 2)
    return Status::Invalid(std::string(who) + ": head_dim must be even and in [2, " + std::to_string(kMaxHeadDim) +
                           "] on CUDA, got " + std::to_string(D));
  if (H <= 0 || KVH <= 0 || H % KVH || H > 65535 || B > 65535)
    return Status::Invalid(std::string(who) + ": unsupported head or sequence counts");
  if ((max_lq + kRows - 1) / kRows > 2147483647 || (max_lk + kKeys - 1) / kKeys > 2147483647 || max_lq > max_lk)
    return Status::Invalid(std::string(who) + ": unsupported sequence lengths");
  return Status::Ok();
}

}  // namespace

Status attention_forward(float* out, float* att, const float* q, const float* k, const float* v, const int64_t* q_off,
                         const int64_t* kv_off, const int64_t* att_off, int64_t B, int64_t H, int64_t KVH, int64_t D,
                         int64_t max_lq, int64_t max_lk, Stream s) {
  MEMQ_RETURN_IF_ERROR(check_dims("attention_forward", B, H, KVH, D, max_lq, max_lk));
  if (B == 0 || max_lq == 0) return Status::Ok();
  if (!att) return Status::Invalid("attention_forward: att (probabilities or scratch) is required on CUDA");
  dim3 grid(unsigned((max_lq + kRows - 1) / kRows), unsigned(H), unsigned(B));
  attn_fwd_k<<<grid, 256, 0, static_cast<cudaStream_t>(s)>>>(out, att, q, k, v, q_off, kv_off, att_off, int(H),
                                                              int(KVH), int(D), float(1.0 / std::sqrt(double(D))));
  MEMQ_CUDA_LAUNCH("attention_forward");
  return Status::Ok();
}

Status attention_backward(float* dq, float* dk, float* dv, float* ds, const float* dout, const float* q, const float* k,
                          const float* v, const float* att, const int64_t* q_off, const int64_t* kv_off,
                          const int64_t* att_off, int64_t B, int64_t H, int64_t KVH, int64_t D, int64_t max_lq,
                          int64_t max_lk, Stream s) {
  MEMQ_RETURN_IF_ERROR(check_dims("attention_backward", B, H, KVH, D, max_lq, max_lk));
  if (B == 0 || max_lq == 0) return Status::Ok();
  cudaStream_t st = static_cast<cudaStream_t>(s);
  dim3 g1(unsigned((max_lq + kRows - 1) / kRows), unsigned(H), unsigned(B));
  attn_bwd_dq_k<<<g1, 256, 0, st>>>(dq, ds, dout, k, v, att, q_off, kv_off, att_off, int(H), int(KVH), int(D),
                                    float(1.0 / std::sqrt(double(D))));
  MEMQ_CUDA_LAUNCH("attention_backward (ds, dq)");
  dim3 g2(unsigned((max_lk + kKeys - 1) / kKeys), unsigned(KVH), unsigned(B));
  attn_bwd_dkv_k<<<g2, 256, 0, st>>>(dk, dv, ds, att, q, dout, q_off, kv_off, att_off, int(H), int(KVH), int(D));
  MEMQ_CUDA_LAUNCH("attention_backward (dk, dv)");
  return Status::Ok();
}

}  // namespace cuda
}  // namespace llm
}  // namespace memq
