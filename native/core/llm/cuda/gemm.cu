// Tensor-core GEMM of the device transformer engine (memq/llm/cuda_ops.h: gemm), no cuBLAS.
//
//   C = (accumulate ? C : 0) + alpha * op(A) op(B) + bias,   op(A)(m,k) = A[m*sam + k*sak] (float32),
//   op(B)(k,n) = B[k*sbk + n*sbn] (float32 or bf16)
//
// One kernel for every layout the engine needs (X W^T, dY W, dY^T X, the LoRA products): a block of
// 256 threads (8 warps) computes a 128 x 128 tile of C, walking K in steps of 32. Operands are read
// from global memory with bounds checks (zero fill outside M, N, K: any shape, any alignment),
// converted once to the product type and stored in shared memory as As[m][k] and Bs[n][k]
// (row-major A fragments, column-major B fragments); the next K step's global loads are issued
// into registers before the current step's products (software pipelining through registers, as
// search.cu). The thread -> element map follows the operand's contiguous dimension, so global
// loads are coalesced for both row- and column-major operands.
//   kBF16:   bf16 tiles, WMMA m16n16k16, float32 accumulation.
//   kTF32x3: float32 tiles; each fragment split into tf32 hi + lo, three m16n16k8 products
//            (lo*hi + hi*lo + hi*hi, small terms first): float32-level accuracy (see docs/cuda.md).
// Each warp owns a 64 x 32 sub-tile (4 x 2 accumulator fragments). The epilogue goes through a
// per-warp 16 x 16 shared tile (alpha, bias, accumulate, bounds). Split-K: skinny products with a
// long K (LoRA gradients: M or N = r) split K over gridDim.z into a float32 workspace and a second
// kernel adds the partials in a fixed order (deterministic).
//
// Alignment: wmma::load_matrix_sync needs 256-bit aligned pointers and ldm a multiple of 16 bytes:
// the tiles start at 128-byte aligned shared offsets, rows are BK + 8 bf16 (80 bytes) or BK + 4
// floats (144 bytes) long, and fragment row offsets are multiples of 16 rows (1280 / 2304 bytes)
// and k offsets multiples of 16 bf16 / 8 floats (32 bytes): all multiples of 32 bytes.
#include <mma.h>

#include <algorithm>

#include "../../cuda/common.cuh"
#include "memq/llm/cuda_ops.h"

namespace memq {
namespace llm {
namespace cuda {

namespace {

using namespace nvcuda;

constexpr int kThreads = 256;
constexpr int BM = 128, BN = 128, BK = 32;
constexpr int kPerThread = BM * BK / kThreads;  // 16 elements of each operand tile per thread
static_assert(BM == BN, "the loaders assume square tiles");

struct GemmArgs {
  float* C;
  int64_t ldc;
  const float* A;
  int64_t sam, sak;
  const void* B;
  int64_t sbk, sbn;
  int64_t M, N, K;
  float alpha;
  int accumulate;
  const float* bias;
  int a_k_contig;       // sak == 1: threads walk k fastest when loading A
  int b_k_contig;       // sbk == 1: threads walk k fastest when loading B
  int64_t k_per_split;  // multiple of BK
  float* partial;       // split-K: [splits][M][N] float32, or null
};

template <bool kTF32>
struct Prec;
template <>
struct Prec<false> {
  using T = __nv_bfloat16;
  static constexpr int LD = BK + 8;  // bf16 elements per shared row (80 bytes)
  static constexpr int WK = 16;
  using FA = wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major>;
  using FB = wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major>;
  using FC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
  __device__ static T cvt(float x) { return __float2bfloat16_rn(x); }
};
template <>
struct Prec<true> {
  using T = float;
  static constexpr int LD = BK + 4;  // floats per shared row (144 bytes)
  static constexpr int WK = 8;
  using FA = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
  using FB = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;
  using FC = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;
  __device__ static T cvt(float x) { return x; }
};

__device__ __forceinline__ float load_b(const float* p, int64_t i) { return __ldg(p + i); }
__device__ __forceinline__ float load_b(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }

constexpr size_t align128(size_t x) { return (x + 127) / 128 * 128; }

template <class TB, bool kTF32>
__global__ void __launch_bounds__(kThreads) gemm_kernel(GemmArgs a) {
  using P = Prec<kTF32>;
  using T = typename P::T;
  constexpr int LD = P::LD;
  constexpr size_t tile_bytes = align128(size_t(BM) * LD * sizeof(T));
  __shared__ __align__(128) unsigned char smem[2 * tile_bytes + 8 * 16 * 16 * sizeof(float)];
  T* As = reinterpret_cast<T*>(smem);
  T* Bs = reinterpret_cast<T*>(smem + tile_bytes);
  float* scratch = reinterpret_cast<float*>(smem + 2 * tile_bytes);

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int64_t m0 = int64_t(blockIdx.y) * BM, n0 = int64_t(blockIdx.x) * BN;
  const int64_t kbeg = int64_t(blockIdx.z) * a.k_per_split;
  const int64_t kend = min(a.K, kbeg + a.k_per_split);
  const TB* Bp = static_cast<const TB*>(a.B);

  // Element e of a tile (e < BM * BK): its (row, k) position, with k fastest when the operand is
  // contiguous along k, rows fastest otherwise.
  auto pos = [](int e, int k_contig, int* r, int* kk) {
    if (k_contig) {
      *r = e / BK;
      *kk = e % BK;
    } else {
      *r = e % BM;
      *kk = e / BM;
    }
  };

  float ra[kPerThread], rb[kPerThread];
  auto load = [&](int64_t k0) {
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      int r, kk;
      pos(tid + i * kThreads, a.a_k_contig, &r, &kk);
      const int64_t gm = m0 + r, gk = k0 + kk;
      ra[i] = (gm < a.M && gk < kend) ? __ldg(a.A + gm * a.sam + gk * a.sak) : 0.0f;
      pos(tid + i * kThreads, a.b_k_contig, &r, &kk);
      const int64_t gn = n0 + r, gk2 = k0 + kk;
      rb[i] = (gn < a.N && gk2 < kend) ? load_b(Bp, gk2 * a.sbk + gn * a.sbn) : 0.0f;
    }
  };
  auto store = [&]() {
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      int r, kk;
      pos(tid + i * kThreads, a.a_k_contig, &r, &kk);
      As[r * LD + kk] = P::cvt(ra[i]);
      pos(tid + i * kThreads, a.b_k_contig, &r, &kk);
      Bs[r * LD + kk] = P::cvt(rb[i]);
    }
  };

  // Warp (wm, wn) of the 2 x 4 warp grid owns rows wm*64 .. +64 and columns wn*32 .. +32.
  const int wm = warp / 4, wn = warp % 4;
  typename P::FC acc[4][2];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  if (kbeg < kend) load(kbeg);
  for (int64_t k0 = kbeg; k0 < kend; k0 += BK) {
    __syncthreads();  // the previous step's fragments are loaded: the tiles may be overwritten
    store();
    __syncthreads();
    if (k0 + BK < kend) load(k0 + BK);  // in flight during the products below
#pragma unroll
    for (int kk = 0; kk < BK; kk += P::WK) {
      typename P::FB fb[2];
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], Bs + (wn * 32 + j * 16) * LD + kk, LD);
      if constexpr (!kTF32) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          typename P::FA fa;
          wmma::load_matrix_sync(fa, As + (wm * 64 + i * 16) * LD + kk, LD);
#pragma unroll
          for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa, fb[j], acc[i][j]);
        }
      } else {
        typename P::FB fbl[2];
#pragma unroll
        for (int j = 0; j < 2; ++j) {
#pragma unroll
          for (int t = 0; t < fb[j].num_elements; ++t) {
            const float x = fb[j].x[t], h = wmma::__float_to_tf32(x);
            fb[j].x[t] = h;
            fbl[j].x[t] = wmma::__float_to_tf32(x - h);
          }
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          typename P::FA fa, fal;
          wmma::load_matrix_sync(fa, As + (wm * 64 + i * 16) * LD + kk, LD);
#pragma unroll
          for (int t = 0; t < fa.num_elements; ++t) {
            const float x = fa.x[t], h = wmma::__float_to_tf32(x);
            fa.x[t] = h;
            fal.x[t] = wmma::__float_to_tf32(x - h);
          }
#pragma unroll
          for (int j = 0; j < 2; ++j) {
            wmma::mma_sync(acc[i][j], fal, fb[j], acc[i][j]);
            wmma::mma_sync(acc[i][j], fa, fbl[j], acc[i][j]);
            wmma::mma_sync(acc[i][j], fa, fb[j], acc[i][j]);
          }
        }
      }
    }
  }

  // Epilogue through the warp's 16 x 16 scratch tile.
  float* sc = scratch + warp * 256;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      wmma::store_matrix_sync(sc, acc[i][j], 16, wmma::mem_row_major);
      __syncwarp();
      const int64_t rbase = m0 + wm * 64 + i * 16, cbase = n0 + wn * 32 + j * 16;
      for (int e = lane; e < 256; e += 32) {
        const int64_t gm = rbase + e / 16, gn = cbase + e % 16;
        if (gm < a.M && gn < a.N) {
          const float x = sc[e];
          if (a.partial) {
            a.partial[(int64_t(blockIdx.z) * a.M + gm) * a.N + gn] = x;
          } else {
            float y = a.alpha * x;
            if (a.bias) y += a.bias[gn];
            float* c = a.C + gm * a.ldc + gn;
            *c = a.accumulate ? *c + y : y;
          }
        }
      }
      __syncwarp();  // the tile is read before the next fragment overwrites it
    }
}

// C = (accumulate ? C : 0) + alpha * sum_z partial[z] + bias, partials added in z order.
__global__ void splitk_reduce(float* C, int64_t ldc, const float* partial, int splits, int64_t M, int64_t N,
                              float alpha, int accumulate, const float* bias) {
  const int64_t total = M * N;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    float s = 0.0f;
    for (int z = 0; z < splits; ++z) s += partial[int64_t(z) * total + e];
    const int64_t m = e / N, n = e % N;
    float y = alpha * s;
    if (bias) y += bias[n];
    float* c = C + m * ldc + n;
    *c = accumulate ? *c + y : y;
  }
}

template <class TB, bool kTF32>
Status launch(const GemmArgs& a, dim3 grid, cudaStream_t st) {
  gemm_kernel<TB, kTF32><<<grid, kThreads, 0, st>>>(a);
  MEMQ_CUDA_LAUNCH("gemm_kernel");
  return Status::Ok();
}

}  // namespace

Status gemm(float* C, int64_t ldc, const float* A, int64_t sam, int64_t sak, WeightRef B, int64_t sbk, int64_t sbn,
            int64_t M, int64_t N, int64_t K, float alpha, bool accumulate, const float* bias, GemmPrecision prec,
            GemmWorkspace ws, Stream s) {
  if (M <= 0 || N <= 0) return Status::Ok();
  cudaStream_t st = static_cast<cudaStream_t>(s);
  const int64_t tiles_m = (M + BM - 1) / BM, tiles_n = (N + BN - 1) / BN;
  if (tiles_m > 65535) return Status::Invalid("gemm: M = " + std::to_string(M) + " exceeds the grid limit");
  if (K <= 0) {  // an empty sum: C = (accumulate ? C : 0) + bias
    splitk_reduce<<<int(std::min<int64_t>((M * N + 255) / 256, 65535)), 256, 0, st>>>(C, ldc, nullptr, 0, M, N, alpha,
                                                                                       accumulate ? 1 : 0, bias);
    MEMQ_CUDA_LAUNCH("gemm (K = 0)");
    return Status::Ok();
  }
  GemmArgs a;
  a.C = C;
  a.ldc = ldc;
  a.A = A;
  a.sam = sam;
  a.sak = sak;
  a.B = B.p;
  a.sbk = sbk;
  a.sbn = sbn;
  a.M = M;
  a.N = N;
  a.K = K;
  a.alpha = alpha;
  a.accumulate = accumulate ? 1 : 0;
  a.bias = bias;
  a.a_k_contig = sak == 1 ? 1 : 0;
  a.b_k_contig = sbk == 1 ? 1 : 0;
  a.partial = nullptr;
  // Split K when the grid is far from filling the device and K is long (>= 8 steps per split).
  const int64_t blocks = tiles_m * tiles_n, ksteps = (K + BK - 1) / BK;
  int64_t splits = 1;
  const int64_t want = 2 * int64_t(sm_count());
  if (blocks < want && ksteps >= 16 && ws.p) {
    splits = std::min<int64_t>({(want + blocks - 1) / blocks, ksteps / 8, 64});
    while (splits > 1 && splits * M * N > ws.floats) --splits;
  }
  const int64_t steps_per = (ksteps + splits - 1) / splits;
  splits = (ksteps + steps_per - 1) / steps_per;  // no empty split
  a.k_per_split = steps_per * BK;
  if (splits > 1) a.partial = ws.p;
  const dim3 grid{unsigned(tiles_n), unsigned(tiles_m), unsigned(splits)};
  const bool tf32 = prec == GemmPrecision::kTF32x3;
  Status ls;
  if (B.bf16) ls = tf32 ? launch<__nv_bfloat16, true>(a, grid, st) : launch<__nv_bfloat16, false>(a, grid, st);
  else ls = tf32 ? launch<float, true>(a, grid, st) : launch<float, false>(a, grid, st);
  MEMQ_RETURN_IF_ERROR(ls);
  if (splits > 1) {
    splitk_reduce<<<int(std::min<int64_t>((M * N + 255) / 256, 65535)), 256, 0, st>>>(
        C, ldc, ws.p, int(splits), M, N, alpha, accumulate ? 1 : 0, bias);
    MEMQ_CUDA_LAUNCH("gemm split-K reduce");
  }
  return Status::Ok();
}

}  // namespace cuda
}  // namespace llm
}  // namespace memq
