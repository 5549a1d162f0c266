// Internals of the CPU kernels shared by the generic files and the per-ISA files
// (*_avx2.cpp, *_avx512.cpp). Not part of the public API; tests and benches may include it.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <cstdlib>
#include <limits>
#include <new>

#include "memq/cpu_features.h"

namespace memq {
namespace cpu {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Forces simd_level() to min(detected, level) for tests and benches; -1 clears the override.
void set_simd_override(int level);

// ---- GEMM ------------------------------------------------------------------------------------
// The retrieval GEMM is computed transposed, C^T = K * A^T (keys x queries): the queries are
// packed once per call into panels of `pw` queries ([panel][p][pw], zero padded), the keys are
// read in place (one broadcast per key element), so no key is ever copied or transposed.
// Every element is one FMA chain over p in order, whatever the tile, panel or thread: results
// do not depend on the tiling or on the thread count.
int64_t panel_width(SimdLevel lv, int64_t b);
#ifdef MEMQ_HAVE_CBLAS
void blas_single_thread();
#endif
inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
void pack_queries(float* dst, const float* a, int64_t b, int64_t d, int64_t pw);
// Rows per key tile of the fused search (kernels.cpp), by d only.
int64_t tile_rows(int64_t d);

// (b x d)(n x d)^T through the tile kernels: queries packed per block of 256, key tiles of
// `tile` rows times the packed block (gemm_kat); each C^T tile (t x bp, query i of the block in
// column i) goes to `consume` (query block start q0 and size qb, key tile start j0), or is
// dropped when it is empty. The built-in gemm_abt and the GEMM ceiling probe (ceilings.cpp).
using TileConsumer = std::function<void(const float* ct, int64_t bp, int64_t q0, int64_t qb, int64_t j0, int64_t t)>;
void gemm_tiles(SimdLevel lv, const float* a, int64_t b, const float* k, int64_t n, int64_t d, int64_t tile,
                const TileConsumer& consume);

// ct (t x bp, leading dimension ldc >= bp) = K (t x d, rows ldk apart) * A^T.
// `packed` from pack_queries (bp = b rounded up to pw).
void gemm_kat(SimdLevel lv, float* ct, int64_t ldc, const float* packed, int64_t bp, int64_t pw,
              const float* k, int64_t ldk, int64_t t, int64_t d);
void gemm_kat_scalar(float* ct, int64_t ldc, const float* packed, int64_t bp, int64_t pw,
                     const float* k, int64_t ldk, int64_t t, int64_t d);
void gemm_kat_avx2(float* ct, int64_t ldc, const float* packed, int64_t bp, int64_t pw,
                   const float* k, int64_t ldk, int64_t t, int64_t d);
void gemm_kat_avx512(float* ct, int64_t ldc, const float* packed, int64_t bp, int64_t pw,
                     const float* k, int64_t ldk, int64_t t, int64_t d);

// gemm_kat with `accumulate`: ct += K A^T instead of = (the transformer engine's GEMMs, which
// reuse this micro-kernel with a weight matrix packed as the "queries"; memq/llm/gemm.h).
void gemm_kat_acc(SimdLevel lv, float* ct, int64_t ldc, const float* packed, int64_t bp, int64_t pw,
                  const float* k, int64_t ldk, int64_t t, int64_t d, bool accumulate);
void gemm_kat_acc_avx2(float* ct, int64_t ldc, const float* packed, int64_t bp, int64_t pw,
                       const float* k, int64_t ldk, int64_t t, int64_t d, bool accumulate);
void gemm_kat_acc_avx512(float* ct, int64_t ldc, const float* packed, int64_t bp, int64_t pw,
                         const float* k, int64_t ldk, int64_t t, int64_t d, bool accumulate);
// dst[panel][k][w] = B[(j0 + panel * pw + w) * ldb + k], zero past n rows; pw a multiple of 16
// (AVX-512 register transposes; the engine's GEMM packs its B^T panels with it).
void pack_rows_avx512(float* dst, const float* B, int64_t ldb, int64_t j0, int64_t n, int64_t K, int64_t pw);
// dst[panel][p][w] = b[p * ldb + col0 + panel * pw + w] (zero past ncols): columns of a row-major
// d x N matrix packed as pack_queries packs rows.
void pack_columns(float* dst, const float* b, int64_t ldb, int64_t col0, int64_t ncols, int64_t d, int64_t pw);

// One query (b = 1): dot-product form, keys read as whole vectors. Writes lane 0 of each of
// the t rows of ct (leading dimension ldc >= pw) and zeroes lanes 1..pw-1. Not bit-identical
// to gemm_kat (a different summation order), but deterministic.
void gemv_kat_avx2(float* ct, int64_t ldc, const float* q, const float* k, int64_t ldk, int64_t t, int64_t d);
void gemv_kat_avx512(float* ct, int64_t ldc, const float* q, const float* k, int64_t ldk, int64_t t, int64_t d);

void row_norms2_level(SimdLevel lv, float* out, const float* x, int64_t n, int64_t d);
void row_norms2_scalar(float* out, const float* x, int64_t n, int64_t d);
void row_norms2_avx2(float* out, const float* x, int64_t n, int64_t d);
void row_norms2_avx512(float* out, const float* x, int64_t n, int64_t d);

// ---- compressed keys (qkeys*.cpp, docs/math.md §2b) ------------------------------------------
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}
// Round to nearest even (finite inputs only).
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
// Dequantise t rows starting at row j0 of a bf16 / int8 view into dst (t x d, contiguous).
void dequant_tile_scalar(float* dst, int kind, const void* keys, const float* scales, int64_t j0, int64_t t, int64_t d);
void dequant_tile_avx2(float* dst, int kind, const void* keys, const float* scales, int64_t j0, int64_t t, int64_t d);
void dequant_tile_avx512(float* dst, int kind, const void* keys, const float* scales, int64_t j0, int64_t t, int64_t d);
void dequant_tile(SimdLevel lv, float* dst, int kind, const void* keys, const float* scales, int64_t j0, int64_t t, int64_t d);
// One query against t compressed rows from j0 (the gemv_kat contract: lane 0 of each ct row,
// lanes 1..pw-1 zeroed, pw = ldc here). bf16: sum q_p * k_p with the key widened exactly;
// int8: s_j * sum q_p * float(q_jp). Keys are read compressed (the B = 1 case is bandwidth-bound).
void qgemv_scalar(float* ct, int64_t ldc, int kind, const float* q, const void* keys, const float* scales, int64_t j0, int64_t t, int64_t d);
void qgemv_avx2(float* ct, int64_t ldc, int kind, const float* q, const void* keys, const float* scales, int64_t j0, int64_t t, int64_t d);
void qgemv_avx512(float* ct, int64_t ldc, int kind, const float* q, const void* keys, const float* scales, int64_t j0, int64_t t, int64_t d);
void qgemv(SimdLevel lv, float* ct, int64_t ldc, int kind, const float* q, const void* keys, const float* scales, int64_t j0, int64_t t, int64_t d);

// ---- scores ------------------------------------------------------------------------------------
// The exact monotone score behind each kernel (smaller is better):
//   gaussian / inverse: dist2 = max(0, ||q||^2 + ||k||^2 - 2 q.k)     (MATH §2, one FMA)
//   cosine:             -cos,  cos = clamp((q.k * 1/||q||) * 1/||k||, -1, 1), 0 for a zero norm
// A NaN score (overflowing inputs) becomes +inf: it sorts last and is never a duplicate.
// The vector filters compute exactly these expressions, so every path agrees bit for bit.
inline float dist2_of(float qn, float kn, float dot) {
  float s = std::fma(-2.0f, dot, qn + kn);
  return s > 0.0f ? s : (s == s ? 0.0f : kInf);
}
inline float inv_norm(float n2) { return n2 > 0.0f ? 1.0f / std::sqrt(n2) : 0.0f; }
inline float cos_of(float qinv, float kinv, float dot) {
  float c = (dot * qinv) * kinv;
  c = c < -1.0f ? -1.0f : c;
  return c > 1.0f ? 1.0f : c;  // NaN stays NaN
}

// One element that passed a filter: query q (within the block), key j (within the tile).
// score as above; aux = dist2 for the cosine kernel (the score there is -cos), else unused.
struct Hit {
  int32_t q;
  int32_t j;
  float score;
  float aux;
};

// Per tile: which (query, key) scores beat their query's threshold. tau[q] is the current
// M-th best score of query q; NaN = "not full yet, accept everything"; -inf for padding lanes.
// Accepts !(score >= tau), i.e. score < tau (ties lose: rows arrive in increasing order).
struct FilterArgs {
  const float* ct;      // t x bp scores' dot products, leading dimension ldc
  int64_t ldc;
  int64_t t;            // keys in the tile
  int64_t bp;           // padded queries (multiple of the vector width)
  const float* qn;      // bp, ||q||^2 (0 for padding)
  const float* qinv;    // bp, 1/||q|| (cosine only)
  const float* kn;      // t, ||k||^2
  const float* kinv;    // t, 1/||k|| (cosine only)
  const uint8_t* alive; // t or null
  const float* tau;     // bp
  bool cosine;
};
// Writes the hits (at most t*bp) in (key, query) order and returns how many. May return a
// few more than pass (the vector filters test the unclamped dist2): the caller re-tests each
// hit's exact score against its current tau.
int64_t filter_tile_scalar(Hit* hits, const FilterArgs& a);
int64_t filter_tile_avx2(Hit* hits, const FilterArgs& a);
int64_t filter_tile_avx512(Hit* hits, const FilterArgs& a);

// ---- aligned scratch ---------------------------------------------------------------------------
struct AlignedBuf {
  float* p = nullptr;
  size_t cap = 0;  // floats
  AlignedBuf() = default;
  AlignedBuf(const AlignedBuf&) = delete;
  AlignedBuf& operator=(const AlignedBuf&) = delete;
  ~AlignedBuf() { std::free(p); }
  float* get(size_t n) {
    if (n > cap) {
      std::free(p);
      p = nullptr;
      cap = 0;
      size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
      p = static_cast<float*>(std::aligned_alloc(64, bytes ? bytes : 64));
      if (!p) throw std::bad_alloc();
      cap = n;
    }
    return p;
  }
};

}  // namespace cpu
}  // namespace memq
