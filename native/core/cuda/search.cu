// Fused similarity + top-M search and dense similarity on tensor cores (MATH §2).
//
// One kernel template computes a tile of dot products S = Q_tile * K_tile^T (BQ queries x 128
// keys) with WMMA (bf16/fp16 keys: m16n16k16, fp32 keys: 3xTF32 m16n16k8), accumulating in
// float32 over d in chunks of 128 bytes per row, software-pipelined through registers (the next
// chunk's global loads are in flight while the current chunk is multiplied). The score tile lives
// in shared memory only; its epilogue either
//   * selects (search): per query, scores that beat the query's current M-th best are appended to
//     a shared-memory staging buffer (warp ballot + prefix count); a full buffer is sorted (warp
//     bitonic sort) and merged with the query's sorted top-M list (merge path by binary-search
//     co-ranking, ping-pong in global memory, mostly L1/L2 resident), which lowers the threshold;
//   * or writes kernel values and squared distances (dense similarity, small N / tests).
// The key range is split over blocks (grid.x) so that B = 1 fills the GPU; the per-split lists
// are merged pairwise (log2 levels) and the final list is written with kernel values.
// The B x N score matrix is never written to device memory.
//
// Ordering: (score, row) ascending, a strict total order (score = dist2 for gaussian/inverse,
// -cos for cosine; NaN -> +inf), so ties go to the lower row and the result is unique, exactly
// as on the CPU (kernels.cpp). Occupancy assumptions (H100, 228 KiB shared memory per SM,
// 64K registers): BQ = 64 uses ~60 KiB of shared memory per 256-thread block (3 blocks/SM),
// BQ = 16 ~45 KiB (4 blocks/SM); the launcher asks the occupancy API instead of assuming.
#include <mma.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <string>

#include "common.cuh"

namespace memq {
namespace cudak {

namespace {

using namespace nvcuda;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kBK = 128;   // keys per tile
constexpr int kVPR = 8;    // 16-byte vectors per row chunk (128 bytes of a row per chunk)
constexpr int kMaxDevices = 64;

struct Cand {
  float s;    // score: smaller is better
  float aux;  // dist2 for the cosine kernel (its score is -cos), else unused
  int32_t r;  // row
};

__device__ __forceinline__ bool better(const Cand& x, const Cand& y) {
  return x.s < y.s || (x.s == y.s && x.r < y.r);
}

// The CPU's expressions (cpu/internal.h), with explicit IEEE intrinsics so that nvcc cannot
// contract them differently.
__device__ __forceinline__ float dist2_of(float qn, float kn, float dot) {
  float s = __fmaf_rn(-2.0f, dot, __fadd_rn(qn, kn));
  return s > 0.0f ? s : (s == s ? 0.0f : kInfF);
}
__device__ __forceinline__ float inv_norm(float n2) { return n2 > 0.0f ? __fdiv_rn(1.0f, __fsqrt_rn(n2)) : 0.0f; }
__device__ __forceinline__ float cos_of(float qinv, float kinv, float dot) {
  float c = __fmul_rn(__fmul_rn(dot, qinv), kinv);
  c = c < -1.0f ? -1.0f : c;
  return c > 1.0f ? 1.0f : c;  // NaN stays NaN
}
// kernel_value of kernels.cpp: evaluated in double, rounded once.
__device__ __forceinline__ float kernel_value_dev(const KernelParams& p, float dist2, float cosine) {
  switch (p.type) {
    case KernelType::kGaussian: {
      double h = p.bandwidth;
      return (float)exp(-(double)dist2 / (2.0 * h * h));
    }
    case KernelType::kCosine: return (float)exp((double)p.kappa * (double)cosine);
    case KernelType::kInverse: return (float)(1.0 / ((double)dist2 + (double)p.delta));
  }
  return 0.0f;
}

// ---- tensor-core traits ------------------------------------------------------------------------
template <class KT> struct Tc;
template <> struct Tc<__nv_bfloat16> {
  static constexpr int WK = 16, DK = 64, PAD = 8;
  using A = wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major>;
  using B = wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major>;
  using C = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
};
template <> struct Tc<__half> {
  static constexpr int WK = 16, DK = 64, PAD = 8;
  using A = wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major>;
  using B = wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major>;
  using C = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
};
template <> struct Tc<float> {
  static constexpr int WK = 8, DK = 32, PAD = 4;
  using A = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
  using B = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;
  using C = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;
};

// 16-bit: one product. fp32 (3xTF32): x = hi + lo with hi, lo tf32; x*y ~ hi*hi + hi*lo + lo*hi
// (the dropped lo*lo term is below 2^-22 |x||y|), small terms accumulated first.
template <class KT> struct Mma {
  using T = Tc<KT>;
  struct AF { typename T::A a; };
  struct BF { typename T::B b; };
  __device__ static void load_a(AF& f, const KT* p, int ld) { wmma::load_matrix_sync(f.a, p, ld); }
  __device__ static void load_b(BF& f, const KT* p, int ld) { wmma::load_matrix_sync(f.b, p, ld); }
  __device__ static void mma(typename T::C& c, const AF& a, const BF& b) { wmma::mma_sync(c, a.a, b.b, c); }
};
template <> struct Mma<float> {
  using T = Tc<float>;
  struct AF { T::A hi, lo; };
  struct BF { T::B hi, lo; };
  __device__ static void load_a(AF& f, const float* p, int ld) {
    wmma::load_matrix_sync(f.hi, p, ld);
#pragma unroll
    for (int t = 0; t < f.hi.num_elements; ++t) {
      float x = f.hi.x[t], h = wmma::__float_to_tf32(x);
      f.hi.x[t] = h;
      f.lo.x[t] = wmma::__float_to_tf32(x - h);
    }
  }
  __device__ static void load_b(BF& f, const float* p, int ld) {
    wmma::load_matrix_sync(f.hi, p, ld);
#pragma unroll
    for (int t = 0; t < f.hi.num_elements; ++t) {
      float x = f.hi.x[t], h = wmma::__float_to_tf32(x);
      f.hi.x[t] = h;
      f.lo.x[t] = wmma::__float_to_tf32(x - h);
    }
  }
  __device__ static void mma(T::C& c, const AF& a, const BF& b) {
    wmma::mma_sync(c, a.lo, b.hi, c);
    wmma::mma_sync(c, a.hi, b.lo, c);
    wmma::mma_sync(c, a.hi, b.hi, c);
  }
};

// ---- shared-memory layout ----------------------------------------------------------------------
constexpr size_t align128(size_t x) { return (x + 127) / 128 * 128; }
constexpr size_t cmax(size_t a, size_t b) { return a > b ? a : b; }

template <class KT, int BQ, bool kDense>
struct Layout {
  static constexpr int DK = Tc<KT>::DK;
  static constexpr int LDT = DK + Tc<KT>::PAD;  // elements per row of the Q/K tiles
  static constexpr int LDS = kBK + 4;           // floats per row of the score tile
  static constexpr int STAGE = BQ >= 64 ? 32 : 128;  // staging slots per query (power of 2, >= 32)
  static constexpr size_t q_bytes = align128((size_t)BQ * LDT * sizeof(KT));
  static constexpr size_t k_bytes = align128((size_t)kBK * LDT * sizeof(KT));
  static constexpr size_t s_bytes = align128((size_t)BQ * LDS * sizeof(float));
  static constexpr size_t a_bytes = cmax(q_bytes + k_bytes, s_bytes);  // Q/K tiles alias the score tile
  static constexpr size_t stage_bytes = kDense ? 0 : align128((size_t)BQ * STAGE * sizeof(Cand));
  static constexpr size_t vec_bytes = align128((size_t)BQ * 2 * sizeof(float));   // qn2, qinv
  static constexpr size_t state_bytes = align128((size_t)BQ * 5 * sizeof(int));  // tau, full, cnt, cur, len
  static constexpr size_t total = a_bytes + stage_bytes + vec_bytes + state_bytes;
  static constexpr int FR = (BQ / 16) * (kBK / 16) / kWarps;  // accumulator fragments per warp
  static_assert(FR >= 1 && (kBK / 16) % FR == 0, "a warp's fragments must share one query row block");
  static_assert(BQ % 16 == 0, "BQ must be a multiple of 16");
  static_assert(DK * sizeof(KT) == 16 * kVPR, "a row chunk is 128 bytes");
};

struct FusedArgs {
  const void* keys;
  int64_t ld;  // elements per key / query row
  int64_t n;
  const float* kn2;
  const uint8_t* alive;
  const void* queries;
  const float* qn2;
  const float* qinv;
  int b;
  int64_t chunk_rows;  // rows per split (multiple of kBK)
  int nsplit;
  int m;
  int cosine;
  Cand* lists;  // [b][nsplit][2][m]
  int* lens;    // [b][nsplit]
  float* kernel_out;  // dense: b x n
  float* dist2_out;
  KernelParams p;
};

__device__ __forceinline__ int count_better(const Cand* a, int len, const Cand& x) {
  int lo = 0, hi = len;
  while (lo < hi) {
    int mid = (lo + hi) >> 1;
    if (better(a[mid], x)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// Ascending bitonic sort of a[0..P) (P a power of two >= 2) by one warp.
__device__ void warp_bitonic_sort(Cand* a, int P, int lane) {
  for (int k = 2; k <= P; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int i = lane; i < P; i += 32) {
        int ixj = i ^ j;
        if (ixj > i) {
          Cand x = a[i], y = a[ixj];
          bool swap = ((i & k) == 0) ? better(y, x) : better(x, y);
          if (swap) {
            a[i] = y;
            a[ixj] = x;
          }
        }
      }
      __syncwarp();
    }
  }
}

// Merges the staging buffer stg[0..cnt) into the query's list (ping-pong buffers list[0..m),
// list[m..2m), current = cur, length len). Warp-uniform in and out.
__device__ void warp_merge(Cand* stg, int cnt, Cand* list, int m, int& cur, int& len, int& full, float& tau,
                           int lane) {
  int P = 32;
  while (P < cnt) P <<= 1;
  for (int i = cnt + lane; i < P; i += 32) stg[i] = Cand{kInfF, 0.0f, INT_MAX};
  __syncwarp();
  warp_bitonic_sort(stg, P, lane);
  const Cand* L = list + (size_t)cur * m;
  Cand* O = list + (size_t)(cur ^ 1) * m;
  for (int i = lane; i < len; i += 32) {
    Cand x = L[i];
    int pos = i + count_better(stg, cnt, x);
    if (pos < m) O[pos] = x;
  }
  for (int j = lane; j < cnt; j += 32) {
    Cand y = stg[j];
    int pos = j + count_better(L, len, y);
    if (pos < m) O[pos] = y;
  }
  __syncwarp();  // orders the list writes and the staging reads before anything later
  len = min(m, len + cnt);
  cur ^= 1;
  full = len == m;
  tau = full ? O[m - 1].s : kInfF;
}

template <class KT, int BQ, bool kDense>
__global__ void __launch_bounds__(kThreads) fused_kernel(FusedArgs a) {
  using Lay = Layout<KT, BQ, kDense>;
  using M = Mma<KT>;
  constexpr int DK = Lay::DK, LDT = Lay::LDT, LDS = Lay::LDS, FR = Lay::FR, WK = Tc<KT>::WK;
  constexpr int KV = kBK * kVPR / kThreads;                   // key vectors per thread (4)
  constexpr int QV = (BQ * kVPR + kThreads - 1) / kThreads;   // query vectors per thread (2 or 1)

  extern __shared__ __align__(128) unsigned char smem[];
  KT* Qs = reinterpret_cast<KT*>(smem);
  KT* Ks = reinterpret_cast<KT*>(smem + Lay::q_bytes);
  float* Ss = reinterpret_cast<float*>(smem);  // aliases Qs/Ks once the tile's products are done
  Cand* stage = reinterpret_cast<Cand*>(smem + Lay::a_bytes);
  float* s_qn = reinterpret_cast<float*>(smem + Lay::a_bytes + Lay::stage_bytes);
  float* s_qinv = s_qn + BQ;
  int* s_state = reinterpret_cast<int*>(smem + Lay::a_bytes + Lay::stage_bytes + Lay::vec_bytes);
  float* s_tau = reinterpret_cast<float*>(s_state);
  int* s_full = s_state + BQ;
  int* s_cnt = s_state + 2 * BQ;
  int* s_cur = s_state + 3 * BQ;
  int* s_len = s_state + 4 * BQ;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int split = blockIdx.x;
  const int q0 = blockIdx.y * BQ;
  const int64_t row_begin = (int64_t)split * a.chunk_rows;
  const int64_t row_end = min(a.n, row_begin + a.chunk_rows);
  const size_t row_bytes = (size_t)a.ld * sizeof(KT);
  const int nchunks = (int)(a.ld / DK);
  const char* kbase = static_cast<const char*>(a.keys);
  const char* qbase = static_cast<const char*>(a.queries);

  for (int i = tid; i < BQ; i += kThreads) {
    const int q = q0 + i;
    s_qn[i] = q < a.b ? a.qn2[q] : 0.0f;
    s_qinv[i] = q < a.b ? a.qinv[q] : 0.0f;
    s_tau[i] = kInfF;
    s_full[i] = 0;
    s_cnt[i] = 0;
    s_cur[i] = 0;
    s_len[i] = 0;
  }

  // Warp w owns accumulator fragments (fq, fk0 + i), i < FR.
  const int f0 = warp * FR;
  const int fq = f0 / (kBK / 16), fk0 = f0 % (kBK / 16);

  uint4 kreg[KV], qreg[QV];
  auto load_chunk = [&](int64_t tile0, int c) {
#pragma unroll
    for (int i = 0; i < KV; ++i) {
      const int idx = tid + i * kThreads, r = idx / kVPR, v = idx % kVPR;
      const int64_t row = tile0 + r;
      kreg[i] = row < row_end
                    ? __ldg(reinterpret_cast<const uint4*>(kbase + (size_t)row * row_bytes + (size_t)c * 128 + v * 16))
                    : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int i = 0; i < QV; ++i) {
      const int idx = tid + i * kThreads, r = idx / kVPR, v = idx % kVPR;
      const int q = q0 + r;
      qreg[i] = (idx < BQ * kVPR && q < a.b)
                    ? __ldg(reinterpret_cast<const uint4*>(qbase + (size_t)q * row_bytes + (size_t)c * 128 + v * 16))
                    : make_uint4(0, 0, 0, 0);
    }
  };
  auto store_chunk = [&]() {
#pragma unroll
    for (int i = 0; i < KV; ++i) {
      const int idx = tid + i * kThreads, r = idx / kVPR, v = idx % kVPR;
      *reinterpret_cast<uint4*>(reinterpret_cast<char*>(Ks) + (size_t)r * LDT * sizeof(KT) + v * 16) = kreg[i];
    }
#pragma unroll
    for (int i = 0; i < QV; ++i) {
      const int idx = tid + i * kThreads, r = idx / kVPR, v = idx % kVPR;
      if (idx < BQ * kVPR)
        *reinterpret_cast<uint4*>(reinterpret_cast<char*>(Qs) + (size_t)r * LDT * sizeof(KT) + v * 16) = qreg[i];
    }
  };

  if (row_begin < row_end) load_chunk(row_begin, 0);
  __syncthreads();  // the per-query state above is visible

  for (int64_t tile0 = row_begin; tile0 < row_end; tile0 += kBK) {
    const int t = (int)(row_end - tile0 < kBK ? row_end - tile0 : (int64_t)kBK);
    typename Tc<KT>::C acc[FR];
#pragma unroll
    for (int i = 0; i < FR; ++i) wmma::fill_fragment(acc[i], 0.0f);

    for (int c = 0; c < nchunks; ++c) {
      store_chunk();
      __syncthreads();
      if (c + 1 < nchunks) load_chunk(tile0, c + 1);  // in flight during the products below
#pragma unroll
      for (int kk = 0; kk < DK; kk += WK) {
        typename M::AF af;
        M::load_a(af, Qs + (size_t)(fq * 16) * LDT + kk, LDT);
#pragma unroll
        for (int i = 0; i < FR; ++i) {
          typename M::BF bf;
          M::load_b(bf, Ks + (size_t)((fk0 + i) * 16) * LDT + kk, LDT);
          M::mma(acc[i], af, bf);
        }
      }
      __syncthreads();  // every warp is done with Qs/Ks before they are overwritten
    }
#pragma unroll
    for (int i = 0; i < FR; ++i)
      wmma::store_matrix_sync(Ss + (size_t)(fq * 16) * LDS + (fk0 + i) * 16, acc[i], LDS, wmma::mem_row_major);
    if (tile0 + kBK < row_end) load_chunk(tile0 + kBK, 0);  // next tile's first chunk, in flight during the epilogue
    __syncthreads();

    if constexpr (kDense) {
      for (int e = tid; e < BQ * kBK; e += kThreads) {
        const int qi = e / kBK, j = e % kBK, q = q0 + qi;
        if (q >= a.b || j >= t) continue;
        const int64_t row = tile0 + j;
        const size_t o = (size_t)q * (size_t)a.n + (size_t)row;
        if (a.alive && !a.alive[row]) {
          a.kernel_out[o] = 0.0f;
          if (a.dist2_out) a.dist2_out[o] = kInfF;
          continue;
        }
        const float dot = Ss[qi * LDS + j], kn = a.kn2[row];
        const float d2 = dist2_of(s_qn[qi], kn, dot);
        const float cs = a.cosine ? cos_of(s_qinv[qi], inv_norm(kn), dot) : 0.0f;
        a.kernel_out[o] = kernel_value_dev(a.p, d2, cs);
        if (a.dist2_out) a.dist2_out[o] = d2;
      }
    } else {
      for (int qi = warp; qi < BQ; qi += kWarps) {
        const int q = q0 + qi;
        if (q >= a.b) continue;  // warp-uniform
        float tau = s_tau[qi];
        int full = s_full[qi], cnt = s_cnt[qi], cur = s_cur[qi], len = s_len[qi];
        Cand* stg = stage + (size_t)qi * Lay::STAGE;
        Cand* list = a.lists + ((size_t)q * a.nsplit + split) * 2 * (size_t)a.m;
        const float qn = s_qn[qi], qinv = s_qinv[qi];
        for (int j0 = 0; j0 < t; j0 += 32) {
          const int j = j0 + lane;
          const int64_t row = tile0 + j;
          bool valid = j < t && (!a.alive || a.alive[row]);
          float s = kInfF, aux = 0.0f;
          if (valid) {
            const float dot = Ss[qi * LDS + j], kn = a.kn2[row];
            if (a.cosine) {
              const float cs = cos_of(qinv, inv_norm(kn), dot);
              s = cs == cs ? -cs : kInfF;
              aux = dist2_of(qn, kn, dot);
            } else {
              s = dist2_of(qn, kn, dot);
            }
          }
          // Rows arrive in increasing order, so a score equal to tau loses to the list's last.
          bool pass = valid && (!full || s < tau);
          unsigned mask = __ballot_sync(0xffffffffu, pass);
          if (mask == 0) continue;
          if (cnt + __popc(mask) > Lay::STAGE) {
            warp_merge(stg, cnt, list, a.m, cur, len, full, tau, lane);
            cnt = 0;
            pass = valid && (!full || s < tau);
            mask = __ballot_sync(0xffffffffu, pass);
          }
          if (pass) stg[cnt + __popc(mask & ((1u << lane) - 1u))] = Cand{s, aux, (int32_t)row};
          cnt += __popc(mask);
          __syncwarp();
        }
        if (lane == 0) {
          s_tau[qi] = tau;
          s_full[qi] = full;
          s_cnt[qi] = cnt;
          s_cur[qi] = cur;
          s_len[qi] = len;
        }
        __syncwarp();
      }
    }
    __syncthreads();  // the score tile (aliasing Qs/Ks) is consumed before the next tile's stores
  }

  if constexpr (!kDense) {
    for (int qi = warp; qi < BQ; qi += kWarps) {
      const int q = q0 + qi;
      if (q >= a.b) continue;
      float tau = s_tau[qi];
      int full = s_full[qi], cnt = s_cnt[qi], cur = s_cur[qi], len = s_len[qi];
      Cand* stg = stage + (size_t)qi * Lay::STAGE;
      Cand* list = a.lists + ((size_t)q * a.nsplit + split) * 2 * (size_t)a.m;
      if (cnt > 0) warp_merge(stg, cnt, list, a.m, cur, len, full, tau, lane);
      if (cur == 1) {  // the result always ends in buffer 0
        for (int i = lane; i < len; i += 32) list[i] = list[(size_t)a.m + i];
        __syncwarp();
      }
      if (lane == 0) a.lens[(size_t)q * a.nsplit + split] = len;
    }
  }
}

// Pairwise merge of sorted lists: out list o of query q = top-m of in lists 2o and 2o+1.
__global__ void merge_level_kernel(const Cand* in, const int* in_len, int64_t in_stride, int nin, Cand* out,
                                   int* out_len, int64_t out_stride, int nout, int m, int b) {
  const int64_t w = (int64_t)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (w >= (int64_t)b * nout) return;  // warp-uniform
  const int q = (int)(w / nout), o = (int)(w % nout);
  const Cand* A = in + ((size_t)q * nin + 2 * o) * in_stride;
  const int la = in_len[(size_t)q * nin + 2 * o];
  const bool has_b = 2 * o + 1 < nin;
  const Cand* B = has_b ? in + ((size_t)q * nin + 2 * o + 1) * in_stride : A;
  const int lb = has_b ? in_len[(size_t)q * nin + 2 * o + 1] : 0;
  Cand* O = out + ((size_t)q * nout + o) * out_stride;
  for (int i = lane; i < la; i += 32) {
    Cand x = A[i];
    int pos = i + count_better(B, lb, x);
    if (pos < m) O[pos] = x;
  }
  for (int j = lane; j < lb; j += 32) {
    Cand y = B[j];
    int pos = j + count_better(A, la, y);
    if (pos < m) O[pos] = y;
  }
  if (lane == 0) out_len[(size_t)q * nout + o] = min(m, la + lb);
}

// Writes the final sorted lists: rows, ids, kernel values, dist2; empty slots -1 / 0 / +inf.
__global__ void finalize_kernel(const Cand* lists, const int* lens, int64_t stride, int b, int m, int cosine,
                                KernelParams p, int64_t* rows, int32_t* ids, const int32_t* id_map, float* kern,
                                float* d2out) {
  const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (int64_t)b * m) return;
  const int q = (int)(idx / m), s = (int)(idx % m);
  const int len = lens ? lens[q] : 0;
  if (s < len) {
    const Cand c = lists[(size_t)q * stride + s];
    const float d2 = cosine ? c.aux : c.s;
    rows[idx] = c.r;
    if (ids) ids[idx] = id_map[c.r];
    if (d2out) d2out[idx] = d2;
    if (kern) kern[idx] = kernel_value_dev(p, d2, cosine ? -c.s : 0.0f);
  } else {
    rows[idx] = -1;
    if (ids) ids[idx] = -1;
    if (d2out) d2out[idx] = kInfF;
    if (kern) kern[idx] = 0.0f;
  }
}

// Opts the kernel into its dynamic shared memory and asks the occupancy API how many blocks fit
// on one SM; done once per process and device (the answers do not change).
template <class KT, int BQ, bool kDense>
Status prepare_kernel(const DeviceProps& dp, int* blocks_per_sm) {
  static std::atomic<int> cached[kMaxDevices];
  const bool cacheable = dp.device >= 0 && dp.device < kMaxDevices;
  if (cacheable) {
    const int c = cached[dp.device].load(std::memory_order_relaxed);
    if (c > 0) {
      *blocks_per_sm = c;
      return Status::Ok();
    }
  }
  using Lay = Layout<KT, BQ, kDense>;
  if ((int64_t)Lay::total > dp.max_smem_optin)
    return Status::Unavailable("the search kernel needs " + std::to_string(Lay::total) +
                               " bytes of shared memory per block; the device allows " +
                               std::to_string(dp.max_smem_optin));
  auto* fn = fused_kernel<KT, BQ, kDense>;
  MEMQ_CUDA_TRY(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)Lay::total));
  int bps = 0;
  MEMQ_CUDA_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&bps, fn, kThreads, Lay::total));
  if (bps < 1) return Status::Internal("the search kernel cannot be resident on this device (occupancy 0)");
  if (cacheable) cached[dp.device].store(bps, std::memory_order_relaxed);
  *blocks_per_sm = bps;
  return Status::Ok();
}

template <class KT, int BQ>
Status search_typed(const DevKeys& k, const DevQueries& qs, int64_t m64, const KernelParams& p,
                    const SearchOut& out, DevBuf& ws, int64_t reserve, cudaStream_t st) {
  const int64_t b = qs.b;
  const int m = (int)m64;
  const int cosine = p.type == KernelType::kCosine;
  const int64_t ntiles = (k.n + kBK - 1) / kBK;
  DeviceProps dp;
  int dev = 0;
  MEMQ_CUDA_TRY(cudaGetDevice(&dev));
  MEMQ_RETURN_IF_ERROR(device_props(dev, &dp));
  int bps = 1;
  MEMQ_RETURN_IF_ERROR((prepare_kernel<KT, BQ, false>(dp, &bps)));

  // Splits: about two waves of blocks, each split at least 4*m rows (so that warming a list up
  // to m entries is a small part of its scan) and one tile.
  const int64_t qblocks_all = (b + BQ - 1) / BQ;
  const int64_t target = (int64_t)dp.sm_count * bps * 2;
  const int64_t min_tiles = std::max<int64_t>(1, (4 * m64 + kBK - 1) / kBK);
  int64_t nsplit = std::max<int64_t>(1, (target + qblocks_all - 1) / qblocks_all);
  nsplit = std::min<int64_t>(nsplit, std::max<int64_t>(1, ntiles / min_tiles));
  nsplit = std::max<int64_t>(1, std::min<int64_t>(nsplit, ntiles));

  // Workspace per query: nsplit lists x 2 buffers + half as many for the first merge level.
  auto per_query = [&](int64_t ns) {
    const int64_t half = (ns + 1) / 2;
    return (size_t)((ns * 2 + half) * m64) * sizeof(Cand) + (size_t)(ns + half) * sizeof(int) + 256;
  };
  // Budget: what the workspace already holds when that suffices (no driver query on the hot
  // path), else half of the free memory (at most 2 GiB, at least 64 MiB); larger problems run
  // in query batches, and very large m with fewer splits.
  int64_t batch = std::min<int64_t>(b, (int64_t)65535 * BQ);
  if (per_query(nsplit) * (size_t)batch + 1024 > ws.bytes) {
    size_t free_b = 0, total_b = 0;
    MEMQ_CUDA_TRY(cudaMemGetInfo(&free_b, &total_b));
    const double avail = (double)free_b + (double)ws.bytes - (double)std::max<int64_t>(reserve, 0);
    const size_t budget = (size_t)std::max(64.0 * (1 << 20), std::min(2048.0 * (1 << 20), avail / 2));
    while (nsplit > 1 && per_query(nsplit) * BQ > budget) nsplit = (nsplit + 1) / 2;
    batch = std::max<int64_t>(BQ, (int64_t)(budget / per_query(nsplit)) / BQ * BQ);
    batch = std::min<int64_t>(batch, std::min<int64_t>(b, (int64_t)65535 * BQ));
  }
  const int64_t chunk_rows = ((ntiles + nsplit - 1) / nsplit) * kBK;
  nsplit = (k.n + chunk_rows - 1) / chunk_rows;

  const int64_t half = (nsplit + 1) / 2;
  const size_t lists_bytes = align128((size_t)batch * nsplit * 2 * m64 * sizeof(Cand));
  const size_t tree_bytes = align128((size_t)batch * half * m64 * sizeof(Cand));
  const size_t lens_bytes = align128((size_t)batch * nsplit * sizeof(int));
  const size_t lens2_bytes = align128((size_t)batch * half * sizeof(int));
  MEMQ_RETURN_IF_ERROR(ws.ensure(lists_bytes + tree_bytes + lens_bytes + lens2_bytes, reserve, st,
                                 "search workspace (candidate lists)"));
  char* base = ws.as<char>();
  Cand* W1 = reinterpret_cast<Cand*>(base);
  Cand* W2 = reinterpret_cast<Cand*>(base + lists_bytes);
  int* L1 = reinterpret_cast<int*>(base + lists_bytes + tree_bytes);
  int* L2 = reinterpret_cast<int*>(base + lists_bytes + tree_bytes + lens_bytes);

  using Lay = Layout<KT, BQ, false>;
  for (int64_t qb0 = 0; qb0 < b; qb0 += batch) {
    const int64_t nb = std::min(batch, b - qb0);
    FusedArgs fa{};
    fa.keys = k.keys;
    fa.ld = k.ld;
    fa.n = k.n;
    fa.kn2 = k.norms2;
    fa.alive = k.alive;
    fa.queries = static_cast<const char*>(qs.q) + (size_t)qb0 * qs.ld * sizeof(KT);
    fa.qn2 = qs.qn2 + qb0;
    fa.qinv = qs.qinv + qb0;
    fa.b = (int)nb;
    fa.chunk_rows = chunk_rows;
    fa.nsplit = (int)nsplit;
    fa.m = m;
    fa.cosine = cosine;
    fa.lists = W1;
    fa.lens = L1;
    fa.p = p;
    dim3 grid((unsigned)nsplit, (unsigned)((nb + BQ - 1) / BQ));
    fused_kernel<KT, BQ, false><<<grid, kThreads, Lay::total, st>>>(fa);
    MEMQ_CUDA_LAUNCH("fused_kernel (similarity + top-M)");

    // Merge levels: W1 (stride 2m, nsplit lists) -> W2 -> W1 -> ... (stride m).
    const Cand* in = W1;
    const int* in_len = L1;
    int64_t in_stride = 2 * m64, nin = nsplit;
    Cand* bufs[2] = {W2, W1};
    int* lbufs[2] = {L2, L1};
    int which = 0;
    while (nin > 1) {
      const int64_t nout = (nin + 1) / 2;
      Cand* o = bufs[which];
      int* ol = lbufs[which];
      const int64_t warps = nb * nout;
      const unsigned blocks = (unsigned)((warps + 3) / 4);
      merge_level_kernel<<<blocks, 128, 0, st>>>(in, in_len, in_stride, (int)nin, o, ol, m64, (int)nout, m, (int)nb);
      MEMQ_CUDA_LAUNCH("merge_level_kernel");
      in = o;
      in_len = ol;
      in_stride = m64;
      nin = nout;
      which ^= 1;
    }
    const int64_t total = nb * m64;
    const unsigned blocks = (unsigned)((total + 255) / 256);
    finalize_kernel<<<blocks, 256, 0, st>>>(in, in_len, in_stride, (int)nb, m, cosine, p, out.rows + qb0 * m64,
                                            out.ids ? out.ids + qb0 * m64 : nullptr, out.id_map,
                                            out.kernel ? out.kernel + qb0 * m64 : nullptr,
                                            out.dist2 ? out.dist2 + qb0 * m64 : nullptr);
    MEMQ_CUDA_LAUNCH("finalize_kernel");
  }
  return Status::Ok();
}

template <class KT>
Status search_dispatch(const DevKeys& k, const DevQueries& q, int64_t m, const KernelParams& p, const SearchOut& out,
                       DevBuf& ws, int64_t reserve, cudaStream_t st) {
  if (q.b <= 16) return search_typed<KT, 16>(k, q, m, p, out, ws, reserve, st);
  return search_typed<KT, 64>(k, q, m, p, out, ws, reserve, st);
}

}  // namespace

Status search_device(const DevKeys& keys, const DevQueries& queries, int64_t m, const KernelParams& p,
                     const SearchOut& out, DevBuf& ws, int64_t reserve, cudaStream_t stream) {
  if (queries.b <= 0) return Status::Ok();
  if (m < 1 || m > INT32_MAX / 4) return Status::OutOfRange("m must be in [1, 2^29]");
  if (!out.rows) return Status::Invalid("rows_out is null");
  if (keys.ld != queries.ld || keys.ld % 64 != 0) return Status::Internal("key/query row strides disagree");
  if (keys.n >= INT32_MAX) return Status::OutOfRange("the CUDA search supports fewer than 2^31 - 1 rows");
  if (keys.n == 0) {  // every slot empty; the id map is never read
    const int64_t total = queries.b * m;
    const unsigned blocks = (unsigned)((total + 255) / 256);
    finalize_kernel<<<blocks, 256, 0, stream>>>(nullptr, nullptr, m, (int)queries.b, (int)m, 0, p, out.rows,
                                                out.ids, out.id_map, out.kernel, out.dist2);
    MEMQ_CUDA_LAUNCH("finalize_kernel (empty store)");
    return Status::Ok();
  }
  if (out.ids && !out.id_map) return Status::Internal("ids requested without an id map");
  if (queries.b > INT32_MAX / 2 || queries.b * m > ((int64_t)1 << 40))
    return Status::OutOfRange("b * m is too large for one search");
  switch (keys.type) {
    case CudaKeyType::kFloat32: return search_dispatch<float>(keys, queries, m, p, out, ws, reserve, stream);
    case CudaKeyType::kBFloat16: return search_dispatch<__nv_bfloat16>(keys, queries, m, p, out, ws, reserve, stream);
    case CudaKeyType::kFloat16: return search_dispatch<__half>(keys, queries, m, p, out, ws, reserve, stream);
  }
  return Status::Invalid("unknown key type");
}

Status similarity_device(float* kernel_out, float* dist2_out, const DevKeys& k, const DevQueries& qs,
                         const KernelParams& p, cudaStream_t st) {
  if (qs.b <= 0 || k.n <= 0) return Status::Ok();
  if (k.ld != qs.ld || k.ld % 64 != 0) return Status::Internal("key/query row strides disagree");
  if (k.n >= INT32_MAX || qs.b > (int64_t)65535 * 16)
    return Status::OutOfRange("the dense CUDA similarity supports n < 2^31 - 1 and b <= 1048560");
  DeviceProps dp;
  int dev = 0;
  MEMQ_CUDA_TRY(cudaGetDevice(&dev));
  MEMQ_RETURN_IF_ERROR(device_props(dev, &dp));
  FusedArgs fa{};
  fa.keys = k.keys;
  fa.ld = k.ld;
  fa.n = k.n;
  fa.kn2 = k.norms2;
  fa.alive = k.alive;
  fa.queries = qs.q;
  fa.qn2 = qs.qn2;
  fa.qinv = qs.qinv;
  fa.b = (int)qs.b;
  fa.chunk_rows = kBK;
  fa.nsplit = (int)((k.n + kBK - 1) / kBK);
  fa.m = 1;
  fa.cosine = p.type == KernelType::kCosine;
  fa.kernel_out = kernel_out;
  fa.dist2_out = dist2_out;
  fa.p = p;
  dim3 grid((unsigned)fa.nsplit, (unsigned)((qs.b + 15) / 16));
  int bps = 0;
  switch (k.type) {
    case CudaKeyType::kFloat32:
      MEMQ_RETURN_IF_ERROR((prepare_kernel<float, 16, true>(dp, &bps)));
      fused_kernel<float, 16, true><<<grid, kThreads, Layout<float, 16, true>::total, st>>>(fa);
      break;
    case CudaKeyType::kBFloat16:
      MEMQ_RETURN_IF_ERROR((prepare_kernel<__nv_bfloat16, 16, true>(dp, &bps)));
      fused_kernel<__nv_bfloat16, 16, true><<<grid, kThreads, Layout<__nv_bfloat16, 16, true>::total, st>>>(fa);
      break;
    case CudaKeyType::kFloat16:
      MEMQ_RETURN_IF_ERROR((prepare_kernel<__half, 16, true>(dp, &bps)));
      fused_kernel<__half, 16, true><<<grid, kThreads, Layout<__half, 16, true>::total, st>>>(fa);
      break;
  }
  MEMQ_CUDA_LAUNCH("fused_kernel (dense similarity)");
  return Status::Ok();
}

}  // namespace cudak
}  // namespace memq
