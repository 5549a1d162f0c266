// Comparison of a top-M result with the CPU twin's (search_topm), shared by the CUDA self-test
// and the C++ tests. FAISS-style: values are compared slot by slot; a different row in a slot is
// accepted only when its exact score (recomputed in double from the inputs the device saw) is
// within the tolerance of the reference row's; never a duplicate row, never a dead or
// out-of-range row, always the same number of filled slots, padding exactly (-1, 0, +inf).
// With `exact` (inputs of small integers: every float operation exact on both sides) the rows
// must be equal slot by slot, which checks the tie rule (equal scores -> the lower row).
//
// Tolerances (rtol = 2e-5 by default):
//   dist2: |a - b| <= rtol * (||q||^2 + ||k||^2) + 1e-6           (float32 expansion, any summation order)
//   cos:   |a - b| <= rtol * (||q||^2 + ||k||^2) / (||q|| ||k||) + 1e-6
//   kernel values: recomputed from the returned dist2/cos (rel 1e-6), cosine kernels positionally
//   with the cos tolerance times kappa.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "memq/kernels.h"

namespace memq {
namespace cudacheck {

struct TopmProblem {
  int64_t b = 0, m = 0, n = 0, d = 0;
  const float* keys = nullptr;     // n x d, as the device saw them (rounded for bf16/fp16)
  const float* queries = nullptr;  // b x d, likewise
  const uint8_t* alive = nullptr;  // nullable
  KernelParams p;
  double rtol = 2e-5;
  bool exact = false;
};

inline std::string check_topm(const TopmProblem& P, const int64_t* rows, const float* kern, const float* d2,
                              const int64_t* ref_rows, const float* ref_kern, const float* ref_d2,
                              int max_errors = 10) {
  std::string err;
  int nerr = 0;
  auto fail = [&](const std::string& s) {
    if (nerr++ < max_errors) err += s + "\n";
  };
  const bool cosine = P.p.type == KernelType::kCosine;
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> kn((size_t)P.n);
  for (int64_t r = 0; r < P.n; ++r) {
    double s = 0;
    for (int64_t c = 0; c < P.d; ++c) s += (double)P.keys[r * P.d + c] * P.keys[r * P.d + c];
    kn[(size_t)r] = s;
  }
  for (int64_t q = 0; q < P.b; ++q) {
    const float* x = P.queries + q * P.d;
    double qn = 0;
    for (int64_t c = 0; c < P.d; ++c) qn += (double)x[c] * x[c];
    auto dot = [&](int64_t r) {
      double s = 0;
      for (int64_t c = 0; c < P.d; ++c) s += (double)x[c] * P.keys[r * P.d + c];
      return s;
    };
    auto cosv = [&](int64_t r) {
      const double den = std::sqrt(qn) * std::sqrt(kn[(size_t)r]);
      return den > 0 ? dot(r) / den : 0.0;
    };
    auto score = [&](int64_t r) { return cosine ? -cosv(r) : std::max(0.0, qn + kn[(size_t)r] - 2 * dot(r)); };
    auto tol = [&](int64_t r1, int64_t r2) {
      const double kk = std::max(kn[(size_t)r1], kn[(size_t)r2]);
      if (!cosine) return P.rtol * (qn + kk) + 1e-6;
      const double kmin = std::min(kn[(size_t)r1], kn[(size_t)r2]);
      const double den = std::sqrt(qn) * std::sqrt(kmin);
      return den > 0 ? P.rtol * (qn + kk) / den + 1e-6 : 1e-6;
    };
    const std::string at = "query " + std::to_string(q) + ": ";
    int64_t cnt = 0, ref_cnt = 0;
    while (cnt < P.m && rows[q * P.m + cnt] >= 0) ++cnt;
    while (ref_cnt < P.m && ref_rows[q * P.m + ref_cnt] >= 0) ++ref_cnt;
    if (cnt != ref_cnt) fail(at + "filled slots " + std::to_string(cnt) + " vs CPU " + std::to_string(ref_cnt));
    std::set<int64_t> seen;
    for (int64_t s = 0; s < P.m; ++s) {
      const int64_t o = q * P.m + s, r = rows[o];
      if (s >= cnt) {
        if (r != -1 || (kern && kern[o] != 0.0f) || (d2 && !(std::isinf(d2[o]) && d2[o] > 0)))
          fail(at + "slot " + std::to_string(s) + " should be empty (-1, 0, +inf): row " + std::to_string(r));
        continue;
      }
      if (r >= P.n) {
        fail(at + "slot " + std::to_string(s) + ": row " + std::to_string(r) + " out of range");
        continue;
      }
      if (P.alive && !P.alive[r]) fail(at + "slot " + std::to_string(s) + ": dead row " + std::to_string(r));
      if (!seen.insert(r).second) fail(at + "row " + std::to_string(r) + " twice");
      if (s >= ref_cnt) continue;
      const int64_t rr = ref_rows[o];
      if (r != rr) {
        const double a = score(r), b = score(rr);
        if (P.exact || !(std::fabs(a - b) <= tol(r, rr)))
          fail(at + "slot " + std::to_string(s) + ": row " + std::to_string(r) + " (score " + std::to_string(a) +
               ") vs CPU row " + std::to_string(rr) + " (score " + std::to_string(b) + ")");
      }
      if (d2 && ref_d2 && (!cosine || r == rr)) {
        if (!(std::fabs((double)d2[o] - (double)ref_d2[o]) <= tol(r, rr)))
          fail(at + "slot " + std::to_string(s) + ": dist2 " + std::to_string(d2[o]) + " vs CPU " +
               std::to_string(ref_d2[o]));
      }
      if (kern && ref_kern) {
        bool ok;
        if (!cosine && d2) {
          const double k = kernel_value(P.p, d2[o], 0.0f);
          ok = std::fabs((double)kern[o] - k) <= 1e-6 * std::fabs(k) + 1e-30;
        } else {
          const double ct = cosine ? P.p.kappa * tol(r, rr) : 0.0;
          const double rk = ref_kern[o];
          ok = std::fabs((double)kern[o] - rk) <= (std::exp(ct) - 1.0 + 1e-6) * std::fabs(rk) + 1e-30;
        }
        if (!ok)
          fail(at + "slot " + std::to_string(s) + ": kernel " + std::to_string(kern[o]) + " vs CPU " +
               std::to_string(ref_kern[o]));
      }
      (void)inf;
    }
  }
  if (nerr > max_errors) err += "... and " + std::to_string(nerr - max_errors) + " more\n";
  return err;
}

}  // namespace cudacheck
}  // namespace memq
