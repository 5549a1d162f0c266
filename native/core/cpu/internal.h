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

// ct (t x bp, leading dimension ldc >= bp) = K (t x d, rows ldk apart) * A^T, or with
// `accumulate` ct += K A^T (the transformer engine's GEMMs reuse this micro-kernel with a weight
// matrix packed as the "queries"; memq/llm/gemm.h). `packed` from pack_queries (bp = b rounded
// up to pw).
void gemm_kat(SimdLevel lv, float* ct, int64_t ldc, const float* packed, int64_t bp, int64_t pw,
              const float* k, int64_t ldk, int64_t t, int64_t d, bool accumulate = false);
void gemm_kat_scalar(float* ct, int64_t ldc, const float* packed, int64_t bp, int64_t pw,
                     const float* k, int64_t ldk, int64_t t, int64_t d, bool accumulate);
void gemm_kat_avx2(float* ct, int64_t ldc, const float* packed, int64_t bp, int64_t pw,
                   const float* k, int64_t ldk, int64_t t, int64_t d, bool accumulate);
void gemm_kat_avx512(float* ct, int64_t ldc, const float* packed, int64_t bp, int64_t pw,
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

// ---- quantised queries (qdot.cpp, qdot_avx512dp.cpp, docs/math.md §2b) ----------------------
// The compressed keys are scanned with the query rounded too, so that the hardware dot-product
// instructions apply: bf16 keys x bf16 query with vdpbf16ps (AVX512_BF16), int8 keys x int8
// query with vpdpbusd (AVX512_VNNI). The search widens its candidate filter by a bound on what
// the rounding can change (kernels.cpp), so its results stay exact for the dequantised keys.
//
// CPUID: AVX512_BF16 (leaf 7 sub-leaf 1, EAX bit 5) and AVX512_VNNI (leaf 7 sub-leaf 0, ECX
// bit 11); both are required (together with simd_level() == kAVX512) for the *_avx512dp kernels.
bool cpu_has_avx512_dp();
// Test hook: false forces the dequantise path even where the CPU has the instructions.
void set_qdot_enabled(bool on);
// Whether search_topm scans `kind` (1 = bf16, 2 = int8) keys with rounded queries at level lv.
// int8 needs d < kQdotMaxD8 for its int32 sums to be exact (d * 255 * 127 < 2^31).
constexpr int64_t kQdotMaxD8 = 66311;
bool qdot_supported(SimdLevel lv, int kind, int64_t d);

// The rounded query q~ (returns ||q - q~||_2, in double):
//   bf16: out[p] = f32_to_bf16(q[p]);
//   int8: the key quantiser's rule, *scale = s = max|q|/127, out[p] = round_half_even(q[p]/s)
//         clamped to [-127, 127]; q~ = s * out.
double round_query_bf16(uint16_t* out, const float* q, int64_t d);
double round_query_i8(int8_t* out, float* scale, const float* q, int64_t d);
// One row of the int8 key quantiser (qkeys.cpp): returns the scale.
float quantize_int8_row(int8_t* out, const float* r, int64_t d);

// Panels of kQPanel rounded queries (b rows of length d, lanes b..bp-1 padded with zero
// queries; bp a multiple of kQPanel). One 64-byte vector per group of elements:
//   bf16: dst[panel][g][lane][2], g < ceil(d/2), elements 2g, 2g+1 (zero past d);
//   int8: dst[panel][g][lane][4] = q + 128 as u8, g < ceil(d/4), elements 4g..4g+3 (128 past d).
constexpr int64_t kQPanel = 16;
void pack_qpanels_bf16(uint16_t* dst, const uint16_t* q, int64_t b, int64_t bp, int64_t d);
void pack_qpanels_u8(uint8_t* dst, const int8_t* q, int64_t b, int64_t bp, int64_t d);

// ct (t x bp, leading dimension ldc >= bp) = keys rows [j0, j0 + t) x the panels' queries.
// bf16: each element one chain over the pairs g in order, acc = (acc + k[2g+1] q[2g+1]) + k[2g] q[2g],
//   with vdpbf16ps' denormal flushing (inputs and results; MXCSR ignored). The scalar twin
//   emulates exactly that.
// int8: I = sum_p q_p k_p exact in int32 (from (q + 128) . k - 128 sum k), then
//   ct = float(I) * (qscale[lane] * kscale[j0 + j]); with qscale null, ct holds I's int32 bits.
void qgemm_bf16_scalar(float* ct, int64_t ldc, const uint16_t* panels, int64_t bp, const uint16_t* keys, int64_t j0,
                       int64_t t, int64_t d);
void qgemm_bf16_avx512dp(float* ct, int64_t ldc, const uint16_t* panels, int64_t bp, const uint16_t* keys, int64_t j0,
                         int64_t t, int64_t d);
void qgemm_i8_scalar(float* ct, int64_t ldc, const uint8_t* panels, const float* qscale, int64_t bp, const int8_t* keys,
                     const float* kscale, int64_t j0, int64_t t, int64_t d);
void qgemm_i8_avx512dp(float* ct, int64_t ldc, const uint8_t* panels, const float* qscale, int64_t bp,
                       const int8_t* keys, const float* kscale, int64_t j0, int64_t t, int64_t d);
// One rounded query: out[j] = the dot with key row j0 + j, for j < t (dense; no C^T rows).
// bf16: 16 lanes, lane l one chain over the pairs g = l mod 16 (as above), then the lanes summed
// l + l+8, then + 4, + 2, + 1. int8: float(I) * (qscale * kscale[j0 + j]) as qgemm (kscale
// null: I's int32 bits).
void qgemv_bf16_scalar(float* out, const uint16_t* q, const uint16_t* keys, int64_t j0, int64_t t, int64_t d);
void qgemv_bf16_avx512dp(float* out, const uint16_t* q, const uint16_t* keys, int64_t j0, int64_t t, int64_t d);
void qgemv_i8_scalar(float* out, const int8_t* q, float qscale, const int8_t* keys, const float* kscale, int64_t j0,
                     int64_t t, int64_t d);
void qgemv_i8_avx512dp(float* out, const int8_t* q, float qscale, const int8_t* keys, const float* kscale, int64_t j0,
                       int64_t t, int64_t d);
// Dispatch: the *_avx512dp kernel when lv == kAVX512 and cpu_has_avx512_dp(), else the twin.
void qgemm_bf16(SimdLevel lv, float* ct, int64_t ldc, const uint16_t* panels, int64_t bp, const uint16_t* keys,
                int64_t j0, int64_t t, int64_t d);
void qgemm_i8(SimdLevel lv, float* ct, int64_t ldc, const uint8_t* panels, const float* qscale, int64_t bp,
              const int8_t* keys, const float* kscale, int64_t j0, int64_t t, int64_t d);
void qgemv_bf16(SimdLevel lv, float* out, const uint16_t* q, const uint16_t* keys, int64_t j0, int64_t t, int64_t d);
void qgemv_i8(SimdLevel lv, float* out, const int8_t* q, float qscale, const int8_t* keys, const float* kscale,
              int64_t j0, int64_t t, int64_t d);

// vdpbf16ps' arithmetic, one element pair into acc, as measured on AMD Zen 4 (bit for bit
// against the instruction in test_qdot): denormal bf16 inputs read as zero; each product is
// exact and added with one rounding (to nearest even), first the odd element's, then the even
// one's; a result below the normal range is flushed to a zero of its own sign.
float dpbf16_step(float acc, uint16_t a0, uint16_t a1, uint16_t b0, uint16_t b1);

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
// One query with dense dot products (ct[j], ldc = bp = 1; qn, qinv, tau: entry 0): the same
// hits as filter_tile_scalar on that layout, vectorised over the keys.
int64_t filter_dots_avx512(Hit* hits, const FilterArgs& a);
int64_t filter_tile_avx2(Hit* hits, const FilterArgs& a);
int64_t filter_tile_avx512(Hit* hits, const FilterArgs& a);
// The qgemm products (quantised queries above) with filter_tile's threshold filter fused into
// their last store: the hits of filter_tile_avx512(hits, fa) on the tile qgemm_*_avx512dp would
// write into fa.ct (equal q, j, score and aux bits), without writing that tile: in (panel pair, key, query) order, so per query
// in increasing key order, as the filter's. fa.ct and fa.ldc are not read; ct (t x ldc, ldc >= bp)
// is scratch for partial sums (d over 256 bf16 pairs or 128 int8 quads). fa.kn, kinv, alive:
// the tile's keys; qn, qinv, tau: bp lanes. int8: qscale and kscale set. Returns the hit count
// (at most t * bp). The twin: qgemm_*_scalar, then filter_tile_scalar (kernels.cpp, qscan_tile).
// Test and bench hook: false makes the search run the kernels and the filter one after the other.
void set_filter_fused(bool on);
// Whether the search runs the *_filter_avx512dp kernels at level lv.
bool filter_fused(SimdLevel lv);
int64_t qgemm_bf16_filter_avx512dp(Hit* hits, const FilterArgs& fa, float* ct, int64_t ldc,
                                   const uint16_t* panels, const uint16_t* keys, int64_t j0, int64_t d);
int64_t qgemm_i8_filter_avx512dp(Hit* hits, const FilterArgs& fa, float* ct, int64_t ldc, const uint8_t* panels,
                                 const float* qscale, const int8_t* keys, const float* kscale, int64_t j0, int64_t d);

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
