// Retrieval kernels of MATH §2-§5 on the CPU: kernel values, dense similarity, fused
// similarity + top-M search, kernel-weighted value with the void case, and log-sum-exp KL
// policy improvement. Validation first, then compute: on error no output is written.
#include "memq/kernels.h"
#include "memq/validate.h"
#include "memq/limits.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "internal.h"
#include "memq/cpu_features.h"
#include "memq/thread_pool.h"

namespace memq {

using cpu::kInf;

namespace {


bool finite(float x) { return std::isfinite(x); }

std::string fmt_g(double x) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", x);
  return buf;
}

using cpu::tile_rows;
constexpr int64_t kQueryBlock = 256;

// Queries validated, packed per block of kQueryBlock, with their norms.
struct QueryBlocks {
  int64_t b = 0, d = 0, nblocks = 0;
  std::vector<int64_t> pw, bp;
  std::vector<cpu::AlignedBuf> packed;  // bp*d each
  std::vector<std::vector<float>> qn, qinv;  // bp each; 0 on padding lanes
};

Status prepare_queries(QueryBlocks& qb, SimdLevel lv, const float* queries, int64_t b, int64_t d) {
  // finite values, squared norms (in double) within limits.h: the core's one check of queries
  MEMQ_RETURN_IF_ERROR(validate_queries(queries, b, d));
  qb.b = b;
  qb.d = d;
  qb.nblocks = (b + kQueryBlock - 1) / kQueryBlock;
  qb.pw.resize(qb.nblocks);
  qb.bp.resize(qb.nblocks);
  qb.packed = std::vector<cpu::AlignedBuf>(qb.nblocks);
  qb.qn.resize(qb.nblocks);
  qb.qinv.resize(qb.nblocks);
  for (int64_t B = 0; B < qb.nblocks; ++B) {
    int64_t q0 = B * kQueryBlock, n = std::min(kQueryBlock, b - q0);
    qb.pw[B] = cpu::panel_width(lv, n);
    qb.bp[B] = cpu::round_up(n, qb.pw[B]);
    qb.qn[B].assign(qb.bp[B], 0.0f);
    qb.qinv[B].assign(qb.bp[B], 0.0f);
    cpu::row_norms2_level(lv, qb.qn[B].data(), queries + q0 * d, n, d);
    for (int64_t i = 0; i < n; ++i) qb.qinv[B][i] = cpu::inv_norm(qb.qn[B][i]);
    cpu::pack_queries(qb.packed[B].get(qb.bp[B] * d), queries + q0 * d, n, d, qb.pw[B]);
  }
  return Status::Ok();
}


// One key tile: norms (cached or computed; a non-finite norm of an alive row is an error
// reported as its row) and the dot products C^T = K_tile Q^T of one query block.
// Per-thread scratch, reused across calls (a thread runs one chunk at a time).
struct TileScratch {
  cpu::AlignedBuf ct, kn, kinv, kq;  // kq: a compressed tile dequantised (t x d)
  cpu::Hit* hits(size_t n) {
    if (n > hits_cap) {
      hits_buf.reset(new cpu::Hit[n]);  // not zeroed: only written entries are read
      hits_cap = n;
    }
    return hits_buf.get();
  }
  std::unique_ptr<cpu::Hit[]> hits_buf;
  size_t hits_cap = 0;
};
TileScratch& scratch() {
  thread_local TileScratch s;
  return s;
}

bool compressed(const KeyView& keys) { return keys.type != KeyType::kFloat32; }
// Bytes of one key element in the scanned store (float32 4, bf16 2, int8 1).
int64_t key_elem_bytes(const KeyView& keys) {
  return keys.type == KeyType::kFloat32 ? 4 : keys.type == KeyType::kBF16 ? 2 : 1;
}
const void* compressed_ptr(const KeyView& keys) {
  return keys.type == KeyType::kBF16 ? (const void*)keys.keys_bf16 : (const void*)keys.keys_i8;
}
// The float32 keys of rows [j0, j0 + t): in place, or compressed keys dequantised into s.kq.
const float* tile_keys(TileScratch& s, SimdLevel lv, const KeyView& keys, int64_t j0, int64_t t) {
  if (!compressed(keys)) return keys.keys + j0 * keys.d;
  float* kq = s.kq.get(t * keys.d);
  cpu::dequant_tile(lv, kq, (int)keys.type, compressed_ptr(keys), keys.scales, j0, t, keys.d);
  return kq;
}
// One query over compressed keys reads them compressed (no dequantised tile needed).
bool direct_gemv(SimdLevel lv, const KeyView& keys, int64_t b) {
  return b == 1 && compressed(keys) && lv != SimdLevel::kScalar;
}

// kt: the tile's float32 keys from tile_keys (null: only when keys.norms2 is given).
bool tile_norms(TileScratch& s, SimdLevel lv, const KeyView& keys, const float* kt, int64_t j0, int64_t t,
                bool cosine, const float** kn_out, int64_t* bad_row) {
  const float* kn;
  if (keys.norms2) {
    kn = keys.norms2 + j0;
  } else {
    float* buf = s.kn.get(t);
    cpu::row_norms2_level(lv, buf, kt, t, keys.d);
    for (int64_t j = 0; j < t; ++j)
      if (!finite(buf[j]) && (!keys.alive || keys.alive[j0 + j])) {
        *bad_row = j0 + j;
        return false;
      }
    kn = buf;
  }
  if (cosine) {
    float* ki = s.kinv.get(t);
    for (int64_t j = 0; j < t; ++j) ki[j] = cpu::inv_norm(kn[j]);
  }
  *kn_out = kn;
  return true;
}

void tile_dots(TileScratch& s, SimdLevel lv, const QueryBlocks& qb, int64_t B, const float* queries,
               const KeyView& keys, const float* kt, int64_t j0, int64_t t, int64_t tile) {
  int64_t bp = qb.bp[B], d = keys.d;
  float* ct = s.ct.get(tile * bp);
  if (direct_gemv(lv, keys, qb.b))
    return cpu::qgemv(lv, ct, bp, (int)keys.type, queries, compressed_ptr(keys), keys.scales, j0, t, d);
  if (compressed(keys)) return cpu::gemm_kat(lv, ct, bp, qb.packed[B].p, bp, qb.pw[B], kt, d, t, d);
  // The built-in kernels even when OpenBLAS is linked: on tile-shaped products (~72-504 keys
  // x <= 256 queries) they measured 1.3-2.5x faster than OpenBLAS 0.3.21's sgemm single-threaded,
  // and every build then returns bit-identical results. gemm_abt still goes to OpenBLAS.
  // One query: stream whole key vectors (memory-bound; MATH §2's GEMM degenerates to a GEMV).
  if (qb.b == 1 && lv == SimdLevel::kAVX512) return cpu::gemv_kat_avx512(ct, bp, queries, keys.keys + j0 * d, d, t, d);
  if (qb.b == 1 && lv == SimdLevel::kAVX2) return cpu::gemv_kat_avx2(ct, bp, queries, keys.keys + j0 * d, d, t, d);
  cpu::gemm_kat(lv, ct, bp, qb.packed[B].p, bp, qb.pw[B], keys.keys + j0 * d, d, t, d);
}

int64_t filter_tile(SimdLevel lv, cpu::Hit* hits, const cpu::FilterArgs& a) {
  switch (lv) {
#if defined(__x86_64__) || defined(__i386__)
    case SimdLevel::kAVX512: return cpu::filter_tile_avx512(hits, a);
    case SimdLevel::kAVX2: return cpu::filter_tile_avx2(hits, a);
#endif
    default: return cpu::filter_tile_scalar(hits, a);
  }
}

int64_t filter_dots(SimdLevel lv, cpu::Hit* hits, const cpu::FilterArgs& a) {
#if defined(__x86_64__) || defined(__i386__)
  if (lv == SimdLevel::kAVX512) return cpu::filter_dots_avx512(hits, a);
#endif
  return cpu::filter_tile_scalar(hits, a);  // ldc = bp = 1: the same layout
}

// ---- top-M candidates ---------------------------------------------------------------------------
// Selection order: (score, row) ascending, a strict total order, so the exact top-M is unique
// and the merge of the work items' candidates is the same whatever tiles each item scanned
// (each item sees its tiles' rows in increasing order, so a tie with its threshold, rejected,
// is with a lower row).
struct Cand {
  float score;
  float aux;
  int64_t row;
};
// A function object, so that the std algorithms inline the comparison.
struct Better {
  bool operator()(const Cand& x, const Cand& y) const { return x.score < y.score || (x.score == y.score && x.row < y.row); }
};
constexpr Better better{};

// Candidates of one query over the tiles one work item scans. The best m so far are a max-heap
// (by `better`), so the threshold follows the m-th best exactly after every push: tau without
// slack, tau + S with slack S > 0 (compressed keys, docs/math.md §2b). With slack, every other
// candidate below the threshold when it arrived (or when the heap let it go) is kept in `buf`,
// which is pruned to those still below the threshold whenever it doubles (amortised O(1) per
// candidate, no selection). finish() leaves the best m plus the band in buf: every candidate
// below the final threshold is there, and nothing below any later (lower) one was dropped.
// Without slack a candidate is pushed only below tau, so it always enters the heap.
struct TopM {
  std::vector<Cand> buf;
  std::vector<Cand> heap;
  float slack = 0.0f;
  size_t cap = 0;

  // Returns the new threshold (NaN while fewer than m candidates were seen).
  float push(const Cand& c, int64_t m) {
    if ((int64_t)heap.size() < m) {
      heap.push_back(c);
      std::push_heap(heap.begin(), heap.end(), better);
      if ((int64_t)heap.size() < m) return std::numeric_limits<float>::quiet_NaN();
      cap = 2 * (size_t)m;
      threshold_ = with_slack(heap.front().score);  // exactly m: the worst of them (plus the slack)
      return threshold_;
    }
    if (better(c, heap.front())) {
      const Cand out = heap.front();
      replace_top(c);
      threshold_ = with_slack(heap.front().score);
      if (slack > 0.0f && out.score < threshold_) keep(out, m);
    } else {
      keep(c, m);  // with slack only: below tau + S, not among the best m
    }
    return threshold_;
  }
  // The candidates for the merge: the heap and the band below the threshold.
  void finish(int64_t m) {
    prune(m);
    buf.insert(buf.end(), heap.begin(), heap.end());
    heap.clear();
  }
  void keep(const Cand& c, int64_t m) {
    buf.push_back(c);
    if (buf.size() >= cap) prune(m);
  }
  void prune(int64_t m) {
    const float thr = threshold_;
    buf.erase(std::remove_if(buf.begin(), buf.end(), [thr](const Cand& c) { return !(c.score < thr); }), buf.end());
    cap = std::max<size_t>(2 * (size_t)m, 2 * buf.size());
  }
  // heap[0] = c, sifted down (c is better than the old top).
  void replace_top(const Cand& c) {
    const size_t n = heap.size();
    size_t i = 0;
    for (;;) {
      size_t l = 2 * i + 1;
      if (l >= n) break;
      if (l + 1 < n && better(heap[l], heap[l + 1])) ++l;  // the worse child
      if (!better(c, heap[l])) break;
      heap[i] = heap[l];
      i = l;
    }
    heap[i] = c;
  }
  // tau + slack rounded up (a float >= the exact sum), so that `score < threshold` keeps every
  // candidate within the slack.
  float with_slack(float tau) const { return slack > 0.0f ? add_up(tau, slack) : tau; }
  static float add_up(float a, float b) {
    const double x = (double)a + (double)b;
    float f = (float)x;
    if ((double)f < x) f = std::nextafter(f, kInf);
    return f;
  }
  // Keeps the best m of v (by `better`) and, with slack, every other entry whose score is below
  // the m-th best's plus the slack; returns the threshold (tau, or tau + slack rounded up).
  static float select(std::vector<Cand>& v, int64_t m, float slack) {
    if ((int64_t)v.size() <= m) {
      // nothing to cut; the threshold still follows the m-th best when there are m
      if (v.empty()) return kInf;
      const float tau = std::max_element(v.begin(), v.end(), better)->score;
      return slack > 0.0f ? add_up(tau, slack) : tau;
    }
    std::nth_element(v.begin(), v.begin() + (m - 1), v.end(), better);
    const float tau = v[m - 1].score;
    if (!(slack > 0.0f)) {
      v.resize(m);
      return tau;
    }
    const float thr = add_up(tau, slack);
    v.erase(std::partition(v.begin() + m, v.end(), [thr](const Cand& c) { return c.score < thr; }), v.end());
    return thr;
  }
  float threshold_ = kInf;
};

}  // namespace

namespace cpu {

// Key tile: ~256 KiB of keys, so the tile, the packed queries and the C^T tile share L2.
// Depends on d only (never on threads or b); in any case every element is one FMA chain
// whatever the tile, so results do not depend on the tiling or the thread count.
int64_t tile_rows(int64_t d) {
  int64_t t = (64 * 1024) / std::max<int64_t>(d, 1);
  return std::max<int64_t>(48, std::min<int64_t>(1024, t)) / 24 * 24;
}
// Scalar reference filter: the same expressions as the vector filters (internal.h).
int64_t filter_tile_scalar(Hit* hits, const FilterArgs& a) {
  int64_t nh = 0;
  for (int64_t j = 0; j < a.t; ++j) {
    if (a.alive && !a.alive[j]) continue;
    const float* row = a.ct + j * a.ldc;
    for (int64_t q = 0; q < a.bp; ++q) {
      float s;
      if (!a.cosine) {
        s = dist2_of(a.qn[q], a.kn[j], row[q]);
      } else {
        float c = cos_of(a.qinv[q], a.kinv[j], row[q]);
        s = c == c ? -c : kInf;
      }
      if (!(s >= a.tau[q])) hits[nh++] = Hit{(int32_t)q, (int32_t)j, s,
                                             a.cosine ? dist2_of(a.qn[q], a.kn[j], row[q]) : 0.0f};
    }
  }
  return nh;
}
}  // namespace cpu

// ---- kernel values (MATH §2) ---------------------------------------------------------------------

namespace {
// The one check of a kernel's parameter (MATH §2), in double as the caller gave it: the messages
// name the parameter and its range, and reach JavaScript unchanged (lib/retrieval.ts checks the
// types only). The bounds are limits.h's kMaxKappa and kMinDelta as the decimal numbers a caller
// writes (1e-30 in double is just below 1e-30f, which its narrowing rounds up to).
static_assert(limits::kMaxKappa == 88.0f && limits::kMinDelta == 1e-30f, "check_kernel_param spells the limits");
Status check_kernel_param(KernelType type, double v) {
  switch (type) {
    case KernelType::kGaussian:
      if (!(std::isfinite(v) && v > 0.0)) return Status::OutOfRange("bandwidth must be a finite number > 0, got " + fmt_g(v));
      return Status::Ok();
    case KernelType::kCosine:
      // exp(kappa * cos) must stay finite in float32 for cos = 1 (limits.h).
      if (!(std::isfinite(v) && v > 0.0 && v <= 88.0))
        return Status::OutOfRange("kappa must be in (0, 88] (so that exp(kappa) stays finite in float32), got " + fmt_g(v));
      return Status::Ok();
    case KernelType::kInverse:
      // 1 / (dist2 + delta) <= 1 / delta must stay finite in float32 (limits.h).
      if (!(std::isfinite(v) && v >= 1e-30))
        return Status::OutOfRange("delta must be a finite number >= 1e-30 (so that 1/delta stays finite in float32), got " +
                                  fmt_g(v));
      return Status::Ok();
  }
  return Status::Invalid("kernel type must be gaussian (0), cosine (1) or inverse (2)");
}
}  // namespace

Status validate_kernel(const KernelParams& p) {
  const double v = p.type == KernelType::kGaussian ? p.bandwidth : p.type == KernelType::kCosine ? p.kappa : p.delta;
  return check_kernel_param(p.type, v);
}

Status make_kernel_params(KernelType type, double param, KernelParams* out) {
  MEMQ_RETURN_IF_ERROR(check_kernel_param(type, param));
  KernelParams p;
  p.type = type;
  if (type == KernelType::kGaussian) p.bandwidth = static_cast<float>(param);
  if (type == KernelType::kCosine) p.kappa = static_cast<float>(param);
  if (type == KernelType::kInverse) p.delta = static_cast<float>(param);
  // A parameter in range in double can still leave float32's range when narrowed (a bandwidth
  // of 1e-50 becomes 0): the narrowed value must pass too.
  MEMQ_RETURN_IF_ERROR(validate_kernel(p));
  *out = p;
  return Status::Ok();
}

// Evaluated in double and rounded once, so the only float32 error is the input's.
float kernel_value(const KernelParams& p, float dist2, float cosine) {
  switch (p.type) {
    case KernelType::kGaussian: {
      double h = p.bandwidth;
      return (float)std::exp(-(double)dist2 / (2.0 * h * h));
    }
    case KernelType::kCosine: return (float)std::exp((double)p.kappa * (double)cosine);
    case KernelType::kInverse: return (float)(1.0 / ((double)dist2 + (double)p.delta));
  }
  return 0.0f;
}

// ---- dense similarity -----------------------------------------------------------------------------

Status similarity(float* kernel_out, float* dist2_out, const float* queries, int64_t b,
                  const KeyView& keys, const KernelParams& p) {
  MEMQ_RETURN_IF_ERROR(validate_kernel(p));
  if (b < 0) return Status::OutOfRange("b must be >= 0");
  MEMQ_RETURN_IF_ERROR(validate_key_view(keys));
  if (b == 0 || keys.n == 0) return Status::Ok();
  if (!queries) return Status::Invalid("queries is null");
  if (!kernel_out) return Status::Invalid("kernel_out is null");
  try {
    const SimdLevel lv = simd_level();
    // One query over compressed keys (direct_gemv: each key's dot on its own, the keys streamed
    // once): tiles 8x as long, so fewer per-tile calls and restarts of the kernel's prefetch
    // (int8 measured +5-6 % q/s at B = 1; float32 unchanged, so left as it is).
    const int64_t n = keys.n, d = keys.d, tile = tile_rows(d) * (direct_gemv(lv, keys, b) ? 8 : 1);
    const bool cosine = p.type == KernelType::kCosine;
    QueryBlocks qb;
    MEMQ_RETURN_IF_ERROR(prepare_queries(qb, lv, queries, b, d));
    const int64_t ntiles = (n + tile - 1) / tile, items = qb.nblocks * ntiles;
    // Validate every alive key's norm before writing anything.
    std::atomic<int64_t> bad{std::numeric_limits<int64_t>::max()};
    if (!keys.norms2) {
      parallel_for(0, ntiles, 1, [&](int64_t lo, int64_t hi) {
        TileScratch& s = scratch();
        for (int64_t T = lo; T < hi; ++T) {
          int64_t j0 = T * tile, t = std::min(tile, n - j0), row = 0;
          const float* kn;
          if (!tile_norms(s, lv, keys, tile_keys(s, lv, keys, j0, t), j0, t, false, &kn, &row)) {
            int64_t cur = bad.load();
            while (row < cur && !bad.compare_exchange_weak(cur, row)) {}
          }
        }
      });
      if (bad.load() != std::numeric_limits<int64_t>::max())
        return Status::OutOfRange("keys: row " + std::to_string(bad.load()) +
                               " is not finite (or its squared norm overflows float32)");
    }
    parallel_for(0, items, 1, [&](int64_t lo, int64_t hi) {
      TileScratch& s = scratch();
      for (int64_t it = lo; it < hi; ++it) {
        int64_t B = it / ntiles, T = it % ntiles;
        int64_t q0 = B * kQueryBlock, nq = std::min(kQueryBlock, b - q0);
        int64_t j0 = T * tile, t = std::min(tile, n - j0), row = 0, bp = qb.bp[B];
        const float* kn;
        const float* kt = tile_keys(s, lv, keys, j0, t);
        tile_norms(s, lv, keys, kt, j0, t, cosine, &kn, &row);
        tile_dots(s, lv, qb, B, queries, keys, kt, j0, t, tile);
        const float* ct = s.ct.p;
        for (int64_t i = 0; i < nq; ++i) {
          float* ko = kernel_out + (q0 + i) * n + j0;
          float* d2o = dist2_out ? dist2_out + (q0 + i) * n + j0 : nullptr;
          float qn = qb.qn[B][i], qinv = qb.qinv[B][i];
          for (int64_t j = 0; j < t; ++j) {
            if (keys.alive && !keys.alive[j0 + j]) {
              ko[j] = 0.0f;
              if (d2o) d2o[j] = kInf;
              continue;
            }
            float dot = ct[j * bp + i];
            float d2 = cpu::dist2_of(qn, kn[j], dot);
            float c = cosine ? cpu::cos_of(qinv, s.kinv.p[j], dot) : 0.0f;
            ko[j] = kernel_value(p, d2, c);
            if (d2o) d2o[j] = d2;
          }
        }
      }
    });
  } catch (const std::bad_alloc&) {
    return Status::NoMemory("similarity: out of memory");
  }
  return Status::Ok();
}

// ---- fused similarity + top-M (MATH §2) ----------------------------------------------------------

namespace {

// Bound on |scanned score - exact score| for compressed keys, docs/math.md §2b. The scan
// computes the score of the dequantised key k with the query q rounded to q~ (eps = ||q - q~||,
// 0 when the query is not rounded) in float32; the exact score is that of q and k in exact
// arithmetic. With K = max ||k|| and Kmin = min nonzero ||k|| over the alive keys:
//   gaussian / inverse (dist2): E = 2 eps K + gamma,
//     gamma = (d + 8) 2^-22 (||q|| + eps + K)^2 + 2A   (float32 dot sums, norms, the final FMA)
//   cosine (-cos):              E = eps / ||q|| + gamma,
//     gamma = (d + 8) 2^-22 (1 + eps / ||q||) + 2A / (||q|| Kmin)
//   A = 2^-124 (sqrt(d) (||q|| + eps + K) + 2d + 1)     (flushed / underflowed products)
// The returned slack is 2E + gamma: every member of the exact top-M has a scanned score below
// tau~ + 2E (tau~: the M-th best scanned score), and the extra gamma keeps two exact scores
// that the filter separates at least 2 float32 ulps apart, so their float32 roundings cannot tie.
// 0 (no slack needed) for cosine with a zero query, whose cosines are all exactly 0.
double score_slack(bool cosine, int64_t d, double qnorm, double eps, double kmax, double kmin) {
  const double R = (double)(d + 8) * 0x1p-22;
  const double A = 0x1p-124 * (std::sqrt((double)d) * (qnorm + eps + kmax) + 2.0 * (double)d + 1.0);
  if (!cosine) {
    const double s = qnorm + eps + kmax;
    const double gamma = R * s * s + 2.0 * A;
    return 2.0 * (2.0 * eps * kmax + gamma) + gamma;
  }
  if (qnorm == 0.0) return 0.0;
  // ||q||^2 below float32's normal range: the scan's 1/||q|| is not accurate; keep every candidate.
  if (qnorm * qnorm < 0x1p-100) return 4.0;
  const double gamma = R * (1.0 + eps / qnorm) + (kmin > 0.0 ? 2.0 * A / (qnorm * kmin) : 0.0);
  return 2.0 * (eps / qnorm + gamma) + gamma;
}

// The rounded queries of one search (qkind 1 = bf16, 2 = int8): per query block, the panels
// (b > 1) or the one rounded query (b == 1), the int8 scales; per query, ||q - q~||.
struct RoundedQueries {
  int qkind = 0;
  std::vector<cpu::AlignedBuf> panels;           // per block (bytes, viewed as uint16 / uint8)
  std::vector<std::vector<float>> qscale;        // per block, bp (int8; 0 on padding lanes)
  std::vector<uint16_t> q1_bf16;                 // b == 1
  std::vector<int8_t> q1_i8;
  float q1_scale = 0.0f;
  std::vector<double> eps;                       // per query
};

void round_queries(RoundedQueries& rq, const QueryBlocks& qb, int kind, const float* queries) {
  const int64_t b = qb.b, d = qb.d;
  rq.qkind = kind;
  rq.eps.assign(b, 0.0);
  if (b == 1) {
    if (kind == 1) {
      rq.q1_bf16.resize(d);
      rq.eps[0] = cpu::round_query_bf16(rq.q1_bf16.data(), queries, d);
    } else {
      rq.q1_i8.resize(d);
      rq.eps[0] = cpu::round_query_i8(rq.q1_i8.data(), &rq.q1_scale, queries, d);
    }
    return;
  }
  rq.panels = std::vector<cpu::AlignedBuf>(qb.nblocks);
  rq.qscale.resize(qb.nblocks);
  std::vector<uint16_t> rb;
  std::vector<int8_t> r8;
  for (int64_t B = 0; B < qb.nblocks; ++B) {
    const int64_t q0 = B * kQueryBlock, n = std::min(kQueryBlock, b - q0), bp = qb.bp[B];
    if (kind == 1) {
      rb.resize(n * d);
      for (int64_t i = 0; i < n; ++i) rq.eps[q0 + i] = cpu::round_query_bf16(rb.data() + i * d, queries + (q0 + i) * d, d);
      const int64_t elems = bp * ((d + 1) / 2) * 2;
      cpu::pack_qpanels_bf16(reinterpret_cast<uint16_t*>(rq.panels[B].get((size_t)(elems + 1) / 2)), rb.data(), n, bp, d);
    } else {
      r8.resize(n * d);
      rq.qscale[B].assign(bp, 0.0f);
      for (int64_t i = 0; i < n; ++i)
        rq.eps[q0 + i] = cpu::round_query_i8(r8.data() + i * d, &rq.qscale[B][i], queries + (q0 + i) * d, d);
      const int64_t bytes = bp * ((d + 3) / 4) * 4;
      cpu::pack_qpanels_u8(reinterpret_cast<uint8_t*>(rq.panels[B].get((size_t)(bytes + 3) / 4)), r8.data(), n, bp, d);
    }
  }
}

// One tile of the rounded-query scan (b > 1) through the threshold filter: the dot-product
// kernels with the filter fused into their store (cpu::filter_fused), or the C^T tile into ct
// (qgemm_*: the kernel or its scalar twin) and then filter_tile. fa.ct = ct. The same hits
// either way (test_qdot), in another order: per query, still in increasing key order.
int64_t qscan_tile(SimdLevel lv, cpu::Hit* hits, const cpu::FilterArgs& fa, float* ct, const RoundedQueries& rq,
                   int64_t B, const KeyView& keys, int64_t j0) {
  const int64_t bp = fa.bp, t = fa.t, d = keys.d;
  const bool fused = cpu::filter_fused(lv);
  if (rq.qkind == 1) {
    const uint16_t* panels = reinterpret_cast<const uint16_t*>(rq.panels[B].p);
#if defined(__x86_64__) || defined(__i386__)
    if (fused) return cpu::qgemm_bf16_filter_avx512dp(hits, fa, ct, bp, panels, keys.keys_bf16, j0, d);
#endif
    cpu::qgemm_bf16(lv, ct, bp, panels, bp, keys.keys_bf16, j0, t, d);
  } else {
    const uint8_t* panels = reinterpret_cast<const uint8_t*>(rq.panels[B].p);
#if defined(__x86_64__) || defined(__i386__)
    if (fused) return cpu::qgemm_i8_filter_avx512dp(hits, fa, ct, bp, panels, rq.qscale[B].data(), keys.keys_i8, keys.scales, j0, d);
#endif
    cpu::qgemm_i8(lv, ct, bp, panels, rq.qscale[B].data(), bp, keys.keys_i8, keys.scales, j0, t, d);
  }
  return filter_tile(lv, hits, fa);
}

// The candidates' rows are scattered over the keys (a memory miss each): the row `ahead`
// candidates on is fetched while this one is scored.
constexpr size_t kAhead = 4;
void prefetch_row(const void* base, int64_t row, int64_t row_bytes) {
  const char* p = static_cast<const char*>(base) + row * row_bytes;
  for (int64_t o = 0; o < row_bytes; o += 64) __builtin_prefetch(p + o);
}

// The exact score of one candidate against the float32 key kv (the dequantised or the float32
// key), in double: dist2 directly (no GEMM cancellation), cosine from the double dot and norms.
void rescore(Cand& c, const float* qv, const float* kv, int64_t d, bool cosine) {
  double s2 = 0, dot = 0, qq = 0, kk = 0;
  for (int64_t j = 0; j < d; ++j) {
    const double a = qv[j], bb = kv[j], t = a - bb;
    s2 += t * t;
    if (cosine) dot += a * bb, qq += a * a, kk += bb * bb;
  }
  c.aux = (float)s2;
  if (cosine) {
    double cs = (qq > 0 && kk > 0) ? dot / std::sqrt(qq * kk) : 0.0;
    cs = cs < -1.0 ? -1.0 : (cs > 1.0 ? 1.0 : cs);
    c.score = -(float)cs;
  } else {
    c.score = (float)s2;
  }
}

}  // namespace

Status search_topm(int64_t* rows_out, float* kernel_out, float* dist2_out, const float* queries,
                   int64_t b, const KeyView& keys, int64_t m, const KernelParams& p) {
  MEMQ_RETURN_IF_ERROR(validate_kernel(p));
  if (b < 0) return Status::OutOfRange("b must be >= 0");
  if (m < 1) return Status::OutOfRange("m must be >= 1");
  MEMQ_RETURN_IF_ERROR(validate_key_view(keys));
  if (b == 0) return Status::Ok();
  if (!queries) return Status::Invalid("queries is null");
  if (!rows_out) return Status::Invalid("rows_out is null");
  if (b > std::numeric_limits<int64_t>::max() / m) return Status::OutOfRange("b * m overflows");
  try {
    const SimdLevel lv = simd_level();
    // One query over compressed keys (direct_gemv: each key's dot on its own, the keys streamed
    // once): tiles 8x as long, so fewer per-tile calls and restarts of the kernel's prefetch
    // (int8 measured +5-6 % q/s at B = 1; float32 unchanged, so left as it is).
    const int64_t n = keys.n, d = keys.d, tile = tile_rows(d) * (direct_gemv(lv, keys, b) ? 8 : 1);
    const bool cosine = p.type == KernelType::kCosine;
    QueryBlocks qb;
    MEMQ_RETURN_IF_ERROR(prepare_queries(qb, lv, queries, b, d));
    const int64_t ntiles = (n + tile - 1) / tile;
    // Re-rank (compressed keys with `exact`): the exact top oversample * m on the compressed
    // keys, then the exact float32 top-m of them.
    const bool rerank = compressed(keys) && keys.exact;
    const int64_t m_out = m;
    if (rerank && keys.oversample > 1) m = m > std::numeric_limits<int64_t>::max() / keys.oversample ? m : m * keys.oversample;

    // Compressed keys with cached norms: the scan's candidates are widened by a per-query slack
    // (score_slack) so that the double re-score below makes the result exact for the dequantised
    // keys; the scan then may round the queries (bf16 / int8 dot-product instructions).
    const bool slack_mode = compressed(keys) && keys.norms2 != nullptr;
    RoundedQueries rq;
    std::vector<float> slack, slack0;  // slack0: for the unrounded query (eps = 0)
    auto round_up_f = [](double x) {
      float f = (float)std::min(1e30, x);
      if ((double)f < x && f < 1e30f) f = std::nextafter(f, kInf);
      return f;
    };
    if (slack_mode) {
      double k2max = 0.0, k2min = std::numeric_limits<double>::infinity();
      if (std::isfinite(keys.norms2_max) && !std::isnan(keys.norms2_min_pos)) {
        k2max = keys.norms2_max;  // the store's bounds over every row it holds (alive or not)
        k2min = keys.norms2_min_pos;
      } else {
        for (int64_t j = 0; j < n; ++j) {
          if (keys.alive && !keys.alive[j]) continue;
          const double v = keys.norms2[j];
          k2max = std::max(k2max, v);
          if (v > 0.0) k2min = std::min(k2min, v);
        }
      }
      // float32 norms2 carry a relative rounding error of at most (d + 2) 2^-24 (store: 2^-24).
      const double kmax = std::sqrt(k2max * (1.0 + (double)(d + 2) * 0x1p-23));
      const double kmin = std::isfinite(k2min) ? std::sqrt(k2min * (1.0 - (double)(d + 2) * 0x1p-23)) : 0.0;
      if (cpu::qdot_supported(lv, (int)keys.type, d)) round_queries(rq, qb, (int)keys.type, queries);
      slack.resize(b);
      slack0.resize(b);
      for (int64_t i = 0; i < b; ++i) {
        double qq = 0.0;
        for (int64_t j = 0; j < d; ++j) qq += (double)queries[i * d + j] * queries[i * d + j];
        const double e = rq.qkind ? rq.eps[i] : 0.0;
        slack[i] = round_up_f(score_slack(cosine, d, std::sqrt(qq), e, kmax, kmin));
        slack0[i] = round_up_f(score_slack(cosine, d, std::sqrt(qq), 0.0, kmax, kmin));
      }
    }
    const int qkind = rq.qkind;

    // Work items: (query block, worker). A block's key tiles are claimed in runs, in increasing
    // order, from its counter by its `workers` items, each of which keeps its own
    // candidates (merged below): whichever items run at once share the block's tiles, so every
    // core works (B = 1 too) and a late or slowed thread finds the work already shared out,
    // while a query has at most `workers` candidate sets (each widened by the slack and cut
    // on its own). The result does not depend on which item scanned which tile: an item drops
    // only candidates at or above its threshold, never below the merged one (TopM).
    // Tiny problems run as one item on the calling thread.
    int64_t workers = 1;
    const int64_t threads = num_threads();
    if (ntiles > 1 && threads > 1 && (double)b * (double)n * (double)d > 4e6) {
      workers = std::min<int64_t>(ntiles, threads);
      // Bound the kept candidates (b * workers * m) to ~512 MiB.
      while (workers > 1 && (double)b * workers * std::min(m, n) * sizeof(Cand) > 512.0 * (1 << 20)) --workers;
    }
    // Tiles per claim: about 2 MiB of keys, so that an item reads long contiguous runs (the
    // hardware prefetchers; B = 1 is bandwidth-bound: single tiles measured 15-20 % slower for
    // int8 keys), and at least 8 claims per worker, so that the work still balances.
    int64_t claim = std::max<int64_t>(1, (int64_t(2) << 20) / std::max<int64_t>(1, tile * d * key_elem_bytes(keys)));
    claim = std::max<int64_t>(1, std::min(claim, ntiles / (8 * workers)));
    const int64_t items = qb.nblocks * workers;
    std::vector<std::vector<TopM>> found(items);
    std::unique_ptr<std::atomic<int64_t>[]> next_tile(new std::atomic<int64_t>[qb.nblocks]);
    for (int64_t B = 0; B < qb.nblocks; ++B) next_tile[B].store(0);
    std::atomic<int64_t> bad{std::numeric_limits<int64_t>::max()};

    parallel_for(0, items, 1, [&](int64_t lo, int64_t hi) {
      TileScratch& s = scratch();
      std::vector<float> tau;
      for (int64_t it = lo; it < hi; ++it) {
        const int64_t B = it / workers;
        const int64_t q0 = B * kQueryBlock, nq = std::min(kQueryBlock, b - q0), bp = qb.bp[B];
        std::vector<TopM>& tops = found[it];
        tops.resize(nq);
        if (slack_mode)
          for (int64_t i = 0; i < nq; ++i) tops[i].slack = slack[q0 + i];
        tau.assign(bp, -kInf);  // padding lanes never pass
        for (int64_t i = 0; i < nq; ++i) tau[i] = std::numeric_limits<float>::quiet_NaN();
        cpu::Hit* hits = s.hits(tile * bp);
        for (int64_t T = 0, Tend = 0;; ++T) {
          if (T >= Tend) {  // claim the next run of tiles
            T = next_tile[B].fetch_add(claim, std::memory_order_relaxed);
            if (T >= ntiles) break;
            Tend = std::min(ntiles, T + claim);
          }
          const int64_t j0 = T * tile, t = std::min(tile, n - j0);
          const float* kn;
          int64_t row = 0;
          const float* kt = (qkind || direct_gemv(lv, keys, b)) && keys.norms2 ? nullptr : tile_keys(s, lv, keys, j0, t);
          if (!tile_norms(s, lv, keys, kt, j0, t, cosine, &kn, &row)) {
            int64_t cur = bad.load();
            while (row < cur && !bad.compare_exchange_weak(cur, row)) {}
            return;
          }
          if (qkind && b == 1) {
            // one rounded query: dense dot products, a filter vectorised over the keys
            if (qkind == 1) cpu::qgemv_bf16(lv, s.ct.get(tile), rq.q1_bf16.data(), keys.keys_bf16, j0, t, d);
            else cpu::qgemv_i8(lv, s.ct.get(tile), rq.q1_i8.data(), rq.q1_scale, keys.keys_i8, keys.scales, j0, t, d);
            cpu::FilterArgs fa{s.ct.p, 1, t, 1, qb.qn[B].data(), qb.qinv[B].data(), kn,
                               cosine ? s.kinv.p : nullptr, keys.alive ? keys.alive + j0 : nullptr, tau.data(), cosine};
            const int64_t nh = filter_dots(lv, hits, fa);
            for (int64_t h = 0; h < nh; ++h) {
              const cpu::Hit& x = hits[h];
              if (x.score >= tau[0]) continue;
              tau[0] = tops[0].push(Cand{x.score, x.aux, j0 + x.j}, m);
            }
            continue;
          }
          if (!qkind) tile_dots(s, lv, qb, B, queries, keys, kt, j0, t, tile);
          cpu::FilterArgs fa{s.ct.get(tile * bp), bp, t, bp, qb.qn[B].data(), qb.qinv[B].data(), kn,
                             cosine ? s.kinv.p : nullptr, keys.alive ? keys.alive + j0 : nullptr,
                             tau.data(), cosine};
          const int64_t nh = qkind ? qscan_tile(lv, hits, fa, s.ct.p, rq, B, keys, j0) : filter_tile(lv, hits, fa);
          for (int64_t h = 0; h < nh; ++h) {
            const cpu::Hit& x = hits[h];
            if (x.score >= tau[x.q]) continue;  // tau moved since the tile was filtered
            tau[x.q] = tops[x.q].push(Cand{x.score, x.aux, j0 + x.j}, m);
          }
        }
        for (int64_t i = 0; i < nq; ++i) tops[i].finish(m);
      }
    });
    if (bad.load() != std::numeric_limits<int64_t>::max())
      return Status::OutOfRange("keys: row " + std::to_string(bad.load()) +
                             " is not finite (or its squared norm overflows float32)");

    // Merge the items' candidates per query, sort, write (the first output written is here).
    parallel_for(0, b, 16, [&](int64_t lo, int64_t hi) {
      std::vector<Cand> all;
      std::vector<float> row_buf;
      for (int64_t i = lo; i < hi; ++i) {
        const int64_t B = i / kQueryBlock, li = i % kQueryBlock;
        all.clear();
        for (int64_t r = 0; r < workers; ++r) {
          const auto& v = found[B * workers + r][li].buf;
          all.insert(all.end(), v.begin(), v.end());
        }
        // The best m by the scan's scores, plus (slack mode) every candidate within the slack of
        // the m-th best: a superset of the exact top-m, decided by the re-score below.
        TopM::select(all, m, slack_mode ? slack[i] : 0.0f);
        if (qkind && (int64_t)all.size() > m) {
          // The rounded query's slack keeps ~2-3x m candidates (int8). Score them again with the
          // float32 query (the dequantise path's arithmetic, error bound gamma: slack0), keep
          // those within slack0 of the m-th best: still a superset of the exact top-m, and
          // fewer rows to re-score in double. docs/math.md §2b.
          const float qn = qb.qn[B][li], qinv = qb.qinv[B][li];
          alignas(64) float ct16[16];
          for (size_t k = 0; k < all.size(); ++k) {
            Cand& c = all[k];
            if (k + kAhead < all.size()) prefetch_row(compressed_ptr(keys), all[k + kAhead].row, d * key_elem_bytes(keys));
            cpu::qgemv(lv, ct16, 16, (int)keys.type, queries + i * d, compressed_ptr(keys), keys.scales, c.row, 1, d);
            const float kn = keys.norms2[c.row];
            if (cosine) {
              const float cs = cpu::cos_of(qinv, cpu::inv_norm(kn), ct16[0]);
              c.score = cs == cs ? -cs : kInf;
            } else {
              c.score = cpu::dist2_of(qn, kn, ct16[0]);
            }
          }
          TopM::select(all, m, slack0[i]);
        }
        // Refine: the GEMM expansion ||q||^2 + ||k||^2 - 2 q.k loses ~1e-7 of the norms to
        // cancellation, which the inverse kernel 1/(d^2 + delta) magnifies near d^2 = 0 (an exact
        // duplicate would read 999.8 instead of 1000). Recomputing each candidate's distance (and
        // cosine) directly, in double, costs d per candidate and makes the reported dist2 and
        // kernel values, and their order, exact.
        const float* qv = queries + i * d;
        auto key_row = [&](int64_t row) -> const float* {
          if (!compressed(keys)) return keys.keys + row * d;
          row_buf.resize(d);
          dequantize_rows(row_buf.data(), keys, row, 1);
          return row_buf.data();
        };
        if (rerank) {
          if ((int64_t)all.size() > m) {
            // slack mode: the exact top m on the dequantised keys first
            for (Cand& c : all) rescore(c, qv, key_row(c.row), d, cosine);
            std::nth_element(all.begin(), all.begin() + (m - 1), all.end(), better);
            all.resize(m);
          }
          for (size_t k = 0; k < all.size(); ++k) {
            if (k + kAhead < all.size()) prefetch_row(keys.exact, all[k + kAhead].row, d * 4);
            rescore(all[k], qv, keys.exact + all[k].row * d, d, cosine);
          }
        } else {
          for (size_t k = 0; k < all.size(); ++k) {
            if (!compressed(keys) && k + kAhead < all.size()) prefetch_row(keys.keys, all[k + kAhead].row, d * 4);
            rescore(all[k], qv, key_row(all[k].row), d, cosine);
          }
        }
        std::sort(all.begin(), all.end(), better);
        for (int64_t s = 0; s < m_out; ++s) {
          const int64_t o = i * m_out + s;
          if (s < (int64_t)all.size()) {
            const Cand& c = all[s];
            const float d2 = cosine ? c.aux : c.score;
            rows_out[o] = c.row;
            if (dist2_out) dist2_out[o] = d2;
            if (kernel_out) kernel_out[o] = kernel_value(p, d2, cosine ? -c.score : 0.0f);
          } else {
            rows_out[o] = -1;
            if (dist2_out) dist2_out[o] = kInf;
            if (kernel_out) kernel_out[o] = 0.0f;
          }
        }
      }
    });
  } catch (const std::bad_alloc&) {
    return Status::NoMemory("search_topm: out of memory");
  }
  return Status::Ok();
}

// ---- kernel-weighted value with the void case (MATH §3) --------------------------------------

Status kernel_weighted_value(float* value_out, float* confidence_out, const int64_t* rows,
                             const float* kernel, const float* row_values, int64_t n_rows,
                             int64_t b, int64_t m, float void_weight, float void_value) {
  MEMQ_RETURN_IF_ERROR(validate_kernel_weighted_value_args(rows, kernel, row_values, n_rows, b, m, void_weight,
                                                           void_value, value_out));
  if (b == 0) return Status::Ok();
  parallel_for(0, b, 1024, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      double sk = 0.0, skq = 0.0;
      for (int64_t s = 0; s < m; ++s) {
        const int64_t e = i * m + s, r = rows[e];
        if (r < 0) continue;
        sk += (double)kernel[e];
        skq += (double)kernel[e] * (double)row_values[r];
      }
      const double den = sk + (double)void_weight;
      // An empty (or all-zero) sum with no void weight has no opinion: the void value.
      const bool none = !(den > 0.0);
      value_out[i] = none ? void_value : (float)((skq + (double)void_weight * void_value) / den);
      if (confidence_out) confidence_out[i] = none ? 0.0f : (float)(sk / den);
    }
  });
  return Status::Ok();
}

// ---- log-sum-exp KL policy improvement (MATH §5) ---------------------------------------------

Status kl_improve(float* policy_out, float* value_out, const float* log_prior, const float* q,
                  int64_t rows, int64_t cols, const int32_t* row_lengths, float alpha) {
  MEMQ_RETURN_IF_ERROR(validate_kl_improve_args(log_prior, q, rows, cols, row_lengths, alpha, policy_out, value_out));
  if (rows == 0) return Status::Ok();
  const double a = alpha;
  parallel_for(0, rows, 256, [&](int64_t lo, int64_t hi) {
    std::vector<double> l(cols);
    for (int64_t i = lo; i < hi; ++i) {
      const int64_t len = row_lengths ? row_lengths[i] : cols;
      const float* lp = log_prior + i * cols;
      const float* qi = q + i * cols;
      float* pi = policy_out + i * cols;
      for (int64_t c = len; c < cols; ++c) pi[c] = 0.0f;
      if (a == 0.0) {
        // Hard limit: uniform over argmax q on the support of mu; V = that max.
        double best = -std::numeric_limits<double>::infinity();
        int64_t count = 0;
        for (int64_t c = 0; c < len; ++c)
          if (lp[c] != -kInf) {
            if (qi[c] > best) best = qi[c], count = 1;
            else if (qi[c] == best) ++count;
          }
        for (int64_t c = 0; c < len; ++c)
          pi[c] = (count > 0 && lp[c] != -kInf && qi[c] == best) ? (float)(1.0 / count) : 0.0f;
        value_out[i] = count > 0 ? (float)best : -kInf;
        continue;
      }
      // l_c = log mu_c + q_c / alpha;  V = alpha (m + log sum exp(l - m));  pi = exp(l - m) / sum.
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t c = 0; c < len; ++c) {
        l[c] = lp[c] == -kInf ? -std::numeric_limits<double>::infinity() : (double)lp[c] + (double)qi[c] / a;
        mx = std::max(mx, l[c]);
      }
      if (mx == -std::numeric_limits<double>::infinity()) {  // no support
        for (int64_t c = 0; c < len; ++c) pi[c] = 0.0f;
        value_out[i] = -kInf;
        continue;
      }
      double sum = 0.0;
      for (int64_t c = 0; c < len; ++c) {
        l[c] = std::exp(l[c] - mx);  // exp(-inf) = 0 off the support
        sum += l[c];
      }
      for (int64_t c = 0; c < len; ++c) pi[c] = (float)(l[c] / sum);
      value_out[i] = (float)(a * (mx + std::log(sum)));
    }
  });
  return Status::Ok();
}

Status check_prior_args(double temperature, const float* q, int64_t n, float alpha) {
  if (!(std::isfinite(temperature) && temperature > 0.0))
    return Status::OutOfRange("temperature must be a finite number > 0, got " + fmt_g(temperature));
  if (q) {
    if (!(std::isfinite(alpha) && alpha >= 0.0f))
      return Status::OutOfRange("alpha must be finite and >= 0, got " + fmt_g(alpha));
    for (int64_t i = 0; i < n; ++i)
      if (!std::isfinite(q[i])) return Status::OutOfRange("q[" + std::to_string(i) + "] is not finite");
  }
  return Status::Ok();
}

Status prior_improve(float* log_prior_inout, float* policy_out, float* value_out, const float* q,
                     const int64_t* group_offsets, int64_t groups, double temperature, float alpha) {
  if (groups < 0) return Status::OutOfRange("groups must be >= 0, got " + std::to_string(groups));
  if (groups == 0) return check_prior_args(temperature, nullptr, 0, alpha);
  if (!group_offsets) return Status::Invalid("group_offsets is null");
  if (group_offsets[0] != 0) return Status::OutOfRange("group_offsets[0] must be 0");
  for (int64_t g = 0; g < groups; ++g)
    if (group_offsets[g + 1] < group_offsets[g])
      return Status::OutOfRange("group_offsets must be non-decreasing (group " + std::to_string(g) + ")");
  const int64_t n = group_offsets[groups];
  if (n > 0 && !log_prior_inout) return Status::Invalid("log_prior is null");
  if (q && ((n > 0 && !policy_out) || !value_out)) return Status::Invalid("policy_out and value_out must be set with q");
  const double tau = temperature;
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(log_prior_inout[i]))
      return Status::OutOfRange("scores[" + std::to_string(i) + "] is not finite");
  // Everything is checked before anything is written: an error leaves the scores, the policy
  // and the values as they were.
  MEMQ_RETURN_IF_ERROR(check_prior_args(temperature, q, n, alpha));
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t o = group_offsets[g], len = group_offsets[g + 1] - o;
    float* lp = log_prior_inout + o;
    if (len == 0) {
      if (q) value_out[g] = -kInf;
      continue;
    }
    // log-sum-exp around the maximum, in double (lib/policy/logSumExp.ts's order of operations).
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t c = 0; c < len; ++c) mx = std::max(mx, (double)lp[c] / tau);
    double z = 0.0;
    for (int64_t c = 0; c < len; ++c) z += std::exp((double)lp[c] / tau - mx);
    const double lse = mx + std::log(z);
    for (int64_t c = 0; c < len; ++c) lp[c] = (float)((double)lp[c] / tau - lse);
    if (q) MEMQ_RETURN_IF_ERROR(kl_improve(policy_out + o, value_out + g, lp, q + o, 1, len, nullptr, alpha));
  }
  return Status::Ok();
}

}  // namespace memq
