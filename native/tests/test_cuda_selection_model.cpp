// A host model of the selection algorithm in native/core/cuda/search.cu, step for step, so that
// the algorithm itself (not its CUDA translation) is tested on machines without a GPU:
// key splits, tiles of 128 rows, the per-query threshold filter (a score equal to tau loses,
// since rows arrive in increasing order), the staging buffer (32 or 128 slots), its bitonic
// sort with (+inf, INT_MAX) sentinels, the merge-path co-ranking merge into ping-pong lists,
// and the pairwise merge tree across splits. Lanes become sequential loops: between two
// __syncwarp() calls the lanes of a warp write disjoint slots from inputs nobody writes, so the
// order does not matter. If you change the kernel's selection, change this model with it.
//
// Reference: a stable sort of the alive rows by (score, row), cut to M. Scores are drawn from a
// few levels (many exact ties), with +inf scores and tombstones; M up to 4096; N < M included.
#include <algorithm>
#include <climits>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "testing.h"

namespace {

struct Cand {
  float s;
  float aux;
  int r;
};
bool better(const Cand& x, const Cand& y) { return x.s < y.s || (x.s == y.s && x.r < y.r); }
int count_better(const Cand* a, int len, const Cand& x) {
  int lo = 0, hi = len;
  while (lo < hi) {
    int mid = (lo + hi) >> 1;
    if (better(a[mid], x)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
void bitonic(Cand* a, int P) {
  for (int k = 2; k <= P; k <<= 1)
    for (int j = k >> 1; j > 0; j >>= 1)
      for (int i = 0; i < P; ++i) {
        int ixj = i ^ j;
        if (ixj > i) {
          Cand x = a[i], y = a[ixj];
          bool sw = ((i & k) == 0) ? better(y, x) : better(x, y);
          if (sw) a[i] = y, a[ixj] = x;
        }
      }
}
// warp_merge of search.cu
void merge(Cand* stg, int cnt, Cand* list, int m, int& cur, int& len, int& full, float& tau) {
  int P = 32;
  while (P < cnt) P <<= 1;
  for (int i = cnt; i < P; ++i) stg[i] = Cand{INFINITY, 0, INT_MAX};
  bitonic(stg, P);
  const Cand* L = list + (size_t)cur * m;
  Cand* O = list + (size_t)(cur ^ 1) * m;
  for (int i = 0; i < len; ++i) {
    int pos = i + count_better(stg, cnt, L[i]);
    if (pos < m) O[pos] = L[i];
  }
  for (int j = 0; j < cnt; ++j) {
    int pos = j + count_better(L, len, stg[j]);
    if (pos < m) O[pos] = stg[j];
  }
  len = std::min(m, len + cnt);
  cur ^= 1;
  full = len == m;
  tau = full ? O[m - 1].s : INFINITY;
}

}  // namespace

MEMQ_TEST(selection_model_matches_sorting) {
  std::mt19937 rng(1);
  const int kBK = 128;
  for (int trial = 0; trial < 300; ++trial) {
    const int n = std::uniform_int_distribution<int>(1, 6000)(rng);
    const int m = std::uniform_int_distribution<int>(1, trial % 3 == 0 ? 4096 : 300)(rng);
    const int STAGE = trial % 2 ? 32 : 128;
    const int levels = std::uniform_int_distribution<int>(1, 40)(rng);
    std::vector<float> sc(n);
    std::vector<char> alive(n);
    for (int i = 0; i < n; ++i) {
      sc[i] = (float)std::uniform_int_distribution<int>(0, levels)(rng);
      alive[i] = rng() % 5 != 0;
      if (rng() % 50 == 0) sc[i] = INFINITY;
    }
    const int ntiles = (n + kBK - 1) / kBK;
    int nsplit = std::min(std::uniform_int_distribution<int>(1, 20)(rng), ntiles);
    const long chunk = (long)((ntiles + nsplit - 1) / nsplit) * kBK;
    nsplit = (int)((n + chunk - 1) / chunk);
    std::vector<Cand> lists((size_t)nsplit * 2 * m);
    std::vector<int> lens(nsplit);
    for (int sp = 0; sp < nsplit; ++sp) {  // one block's scan of its split (fused_kernel)
      const long rb = sp * chunk, re = std::min<long>(n, rb + chunk);
      float tau = INFINITY;
      int full = 0, cnt = 0, cur = 0, len = 0;
      std::vector<Cand> stg(STAGE);
      Cand* list = &lists[(size_t)sp * 2 * m];
      for (long t0 = rb; t0 < re; t0 += kBK) {
        const int t = (int)std::min<long>(kBK, re - t0);
        for (int j0 = 0; j0 < t; j0 += 32) {
          bool pass[32], valid[32];
          float s[32];
          int np = 0;
          for (int l = 0; l < 32; ++l) {
            const int j = j0 + l;
            valid[l] = j < t && alive[t0 + j];
            s[l] = valid[l] ? sc[t0 + j] : INFINITY;
            pass[l] = valid[l] && (!full || s[l] < tau);
            np += pass[l];
          }
          if (!np) continue;
          if (cnt + np > STAGE) {
            merge(stg.data(), cnt, list, m, cur, len, full, tau);
            cnt = 0;
            np = 0;
            for (int l = 0; l < 32; ++l) np += (pass[l] = valid[l] && (!full || s[l] < tau));
          }
          int pre = 0;
          for (int l = 0; l < 32; ++l)
            if (pass[l]) stg[cnt + pre++] = Cand{s[l], 0, (int)(t0 + j0 + l)};
          cnt += np;
        }
      }
      if (cnt > 0) merge(stg.data(), cnt, list, m, cur, len, full, tau);
      if (cur == 1)
        for (int i = 0; i < len; ++i) list[i] = list[(size_t)m + i];
      lens[sp] = len;
    }
    // merge_level_kernel, level by level
    std::vector<Cand> in = lists;
    std::vector<int> inl = lens;
    long stride = 2L * m;
    int nin = nsplit;
    while (nin > 1) {
      const int nout = (nin + 1) / 2;
      std::vector<Cand> out((size_t)nout * m);
      std::vector<int> outl(nout);
      for (int o = 0; o < nout; ++o) {
        const Cand* A = &in[(size_t)(2 * o) * stride];
        const int la = inl[2 * o];
        const bool hb = 2 * o + 1 < nin;
        const Cand* B = hb ? &in[(size_t)(2 * o + 1) * stride] : A;
        const int lb = hb ? inl[2 * o + 1] : 0;
        Cand* O = &out[(size_t)o * m];
        for (int i = 0; i < la; ++i) {
          int pos = i + count_better(B, lb, A[i]);
          if (pos < m) O[pos] = A[i];
        }
        for (int j = 0; j < lb; ++j) {
          int pos = j + count_better(A, la, B[j]);
          if (pos < m) O[pos] = B[j];
        }
        outl[o] = std::min(m, la + lb);
      }
      in.swap(out);
      inl.swap(outl);
      stride = m;
      nin = nout;
    }
    std::vector<Cand> ref;
    for (int i = 0; i < n; ++i)
      if (alive[i]) ref.push_back(Cand{sc[i], 0, i});
    std::sort(ref.begin(), ref.end(), better);
    if ((int)ref.size() > m) ref.resize(m);
    bool ok = inl[0] == (int)ref.size();
    for (int i = 0; ok && i < inl[0]; ++i) ok = in[i].r == ref[i].r && in[i].s == ref[i].s;
    if (!ok)
      memq_test::fail(__FILE__, __LINE__,
                      "trial " + std::to_string(trial) + ": n=" + std::to_string(n) + " m=" + std::to_string(m) +
                          " splits=" + std::to_string(nsplit) + " stage=" + std::to_string(STAGE));
  }
}

MEMQ_TEST_MAIN()
