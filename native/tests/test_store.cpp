// memq::Store (memq/store.h): snapshot reads under a concurrent writer, against a plain reference.
// The writer (this thread) applies a random sequence of adds, add_with_ids, value updates,
// removals and compactions to the Store and to a std::map; after some writes it binds a search
// and an estimate and queues them with a copy of the map as it was then. Reader threads run the
// jobs while the writer goes on writing; each result must equal brute force over that copy
// (double precision; tolerances below), with NaN-poisoned outputs so unwritten slots show. A
// torn read (half a write, or a later write) breaks ids, distances or values.
// The CUDA Store runs the same test; without a device it reports SKIPPED.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "memq/store.h"
#include "testing.h"

using namespace memq;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr int64_t kDim = 8;
constexpr float kBandwidth = 1.5f;

struct Case {
  std::vector<float> key;
  float value;
};
using Ref = std::map<int32_t, Case>;

struct Pending {
  SearchJob job;
  std::shared_ptr<const Ref> ref;
  SearchRequest req;
  std::shared_ptr<std::vector<float>> queries;
  std::shared_ptr<std::vector<int32_t>> ids;
  std::shared_ptr<std::vector<float>> kernel, dist2, value, confidence;
};

// Brute force over `ref`: per query the m nearest (dist2 ascending), in double.
std::vector<std::vector<std::pair<double, int32_t>>> brute(const Ref& ref, const std::vector<float>& q, int64_t b,
                                                           int64_t m) {
  std::vector<std::vector<std::pair<double, int32_t>>> out(static_cast<size_t>(b));
  for (int64_t i = 0; i < b; ++i) {
    auto& v = out[static_cast<size_t>(i)];
    for (const auto& [id, c] : ref) {
      double d2 = 0;
      for (int64_t j = 0; j < kDim; ++j) {
        const double d = static_cast<double>(q[static_cast<size_t>(i * kDim + j)]) - c.key[static_cast<size_t>(j)];
        d2 += d * d;
      }
      v.emplace_back(d2, id);
    }
    std::sort(v.begin(), v.end());
    if (static_cast<int64_t>(v.size()) > m) v.resize(static_cast<size_t>(m));
  }
  return out;
}

double gauss_k(double d2) { return std::exp(-d2 / (2.0 * kBandwidth * kBandwidth)); }

// Returns "" when the job's outputs match the reference, else what differs.
std::string check(const Pending& p) {
  const SearchRequest& r = p.req;
  auto want = brute(*p.ref, *p.queries, r.b, r.m);
  char buf[256];
  for (int64_t i = 0; i < r.b; ++i) {
    const auto& w = want[static_cast<size_t>(i)];
    double sk = 0, skq = 0;
    for (int64_t s = 0; s < r.m; ++s) {
      const size_t at = static_cast<size_t>(i * r.m + s);
      if (s >= static_cast<int64_t>(w.size())) {
        if (!r.estimate && ((*p.ids)[at] != -1 || (*p.kernel)[at] != 0.f || !std::isinf((*p.dist2)[at]))) {
          std::snprintf(buf, sizeof buf, "query %lld slot %lld: expected an empty slot", (long long)i, (long long)s);
          return buf;
        }
        continue;
      }
      const double d2 = w[static_cast<size_t>(s)].first;
      sk += gauss_k(d2);
      skq += gauss_k(d2) * p.ref->at(w[static_cast<size_t>(s)].second).value;
      if (r.estimate) continue;
      const int32_t id = (*p.ids)[at];
      auto it = p.ref->find(id);
      // Near-ties may swap order: the id returned must be in the snapshot with this slot's distance.
      if (it == p.ref->end()) {
        std::snprintf(buf, sizeof buf, "query %lld slot %lld: id %d not in the snapshot", (long long)i, (long long)s, id);
        return buf;
      }
      double got_d2 = 0;
      for (int64_t j = 0; j < kDim; ++j) {
        const double d = static_cast<double>((*p.queries)[static_cast<size_t>(i * kDim + j)]) - it->second.key[static_cast<size_t>(j)];
        got_d2 += d * d;
      }
      if (!memq_test::near((*p.dist2)[at], d2, 1e-4, 1e-4) || !memq_test::near(got_d2, d2, 1e-4, 1e-4) ||
          !memq_test::near((*p.kernel)[at], gauss_k(d2), 1e-4, 1e-6)) {
        std::snprintf(buf, sizeof buf, "query %lld slot %lld: id %d dist2 %.7g (its own %.7g) vs reference %.7g",
                      (long long)i, (long long)s, id, (double)(*p.dist2)[at], got_d2, d2);
        return buf;
      }
    }
    if (r.estimate) {
      const double den = sk + r.void_weight;
      const double v = den > 0 ? (skq + r.void_weight * r.void_value) / den : r.void_value;
      const double c = den > 0 ? sk / den : 0.0;
      if (!memq_test::near((*p.value)[static_cast<size_t>(i)], v, 1e-3, 1e-4) ||
          !memq_test::near((*p.confidence)[static_cast<size_t>(i)], c, 1e-3, 1e-4)) {
        std::snprintf(buf, sizeof buf, "query %lld: estimate %.7g/%.7g vs reference %.7g/%.7g", (long long)i,
                      (double)(*p.value)[static_cast<size_t>(i)], (double)(*p.confidence)[static_cast<size_t>(i)], v, c);
        return buf;
      }
    }
  }
  return "";
}

void concurrent_reads(StoreBackend backend) {
  StoreOptions opts;
  opts.backend = backend;
  opts.dim = kDim;
  opts.kernel.type = KernelType::kGaussian;
  opts.kernel.bandwidth = kBandwidth;
  std::unique_ptr<Store> store;
  Status st = Store::Create(opts, &store);
  if (backend == StoreBackend::kCuda && st.code() == StatusCode::kUnavailable) {
    std::printf("  SKIPPED: no CUDA device: %s\n", st.message().c_str());
    return;
  }
  CHECK(st.ok());
  if (!st.ok()) return;

  std::mutex mu;
  std::condition_variable cv;
  std::deque<Pending> queue;
  bool done = false;
  std::atomic<int64_t> ran{0}, bad{0};
  std::string first_bad;
  auto reader = [&] {
    for (;;) {
      Pending p;
      {
        std::unique_lock<std::mutex> l(mu);
        cv.wait(l, [&] { return done || !queue.empty(); });
        if (queue.empty()) return;
        p = std::move(queue.front());
        queue.pop_front();
      }
      Status s = p.job();
      p.job = SearchJob();  // drop what the job holds (the CUDA gate) before checking
      std::string why = s.ok() ? check(p) : "status: " + s.message();
      ++ran;
      if (!why.empty() && bad++ == 0) {
        std::lock_guard<std::mutex> l(mu);
        first_bad = why;
      }
    }
  };
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) readers.emplace_back(reader);

  std::mt19937 rng(12);
  std::normal_distribution<float> g(0.f, 1.f);
  std::uniform_int_distribution<int> op(0, 9);
  Ref ref;
  int64_t bound = 0, write_errors = 0;
  auto live_pick = [&](int64_t n) {
    std::vector<int32_t> ids;
    std::vector<int32_t> all;
    for (const auto& kv : ref) all.push_back(kv.first);
    std::shuffle(all.begin(), all.end(), rng);
    for (int64_t i = 0; i < n && i < static_cast<int64_t>(all.size()); ++i) ids.push_back(all[static_cast<size_t>(i)]);
    return ids;
  };
  for (int step = 0; step < 1500; ++step) {
    const int o = op(rng);
    if (o <= 4 || ref.size() < 8) {  // add (or add_with_ids)
      const int64_t n = 1 + static_cast<int64_t>(rng() % 8);
      std::vector<float> keys(static_cast<size_t>(n * kDim)), vals(static_cast<size_t>(n));
      for (auto& x : keys) x = g(rng);
      for (auto& x : vals) x = g(rng);
      std::vector<int32_t> ids(static_cast<size_t>(n));
      if (o == 4) {
        int32_t next = store->next_id() + 1 + static_cast<int32_t>(rng() % 5);  // above every id issued
        for (auto& id : ids) id = next++;
        if (!store->add_with_ids(ids.data(), keys.data(), vals.data(), n).ok()) ++write_errors;
      } else if (!store->add(ids.data(), keys.data(), vals.data(), n).ok()) {
        ++write_errors;
      }
      for (int64_t i = 0; i < n; ++i) {
        ref[ids[static_cast<size_t>(i)]] =
            Case{std::vector<float>(keys.begin() + i * kDim, keys.begin() + (i + 1) * kDim), vals[static_cast<size_t>(i)]};
      }
    } else if (o <= 6) {  // update values
      auto ids = live_pick(1 + static_cast<int64_t>(rng() % 6));
      std::vector<float> vals(ids.size());
      for (auto& x : vals) x = g(rng);
      if (!store->update_values(ids.data(), vals.data(), static_cast<int64_t>(ids.size())).ok()) ++write_errors;
      for (size_t i = 0; i < ids.size(); ++i) ref[ids[i]].value = vals[i];
    } else if (o <= 8) {  // remove
      auto ids = live_pick(1 + static_cast<int64_t>(rng() % 5));
      if (!store->remove(ids.data(), static_cast<int64_t>(ids.size())).ok()) ++write_errors;
      for (int32_t id : ids) ref.erase(id);
    } else if (!store->compact().ok()) {
      ++write_errors;
    }
    if (step % 3 != 0) continue;
    for (int e = 0; e < 2; ++e) {  // a search and an estimate, bound now
      Pending p;
      p.ref = std::make_shared<const Ref>(ref);
      p.req.b = 3;
      p.req.m = 1 + static_cast<int64_t>(rng() % 12);
      p.queries = std::make_shared<std::vector<float>>(static_cast<size_t>(p.req.b * kDim));
      for (auto& x : *p.queries) x = g(rng);
      p.req.queries = p.queries->data();
      const size_t bm = static_cast<size_t>(p.req.b * p.req.m), nb = static_cast<size_t>(p.req.b);
      if (e == 0) {
        p.ids = std::make_shared<std::vector<int32_t>>(bm, -7);
        p.kernel = std::make_shared<std::vector<float>>(bm, kNaN);
        p.dist2 = std::make_shared<std::vector<float>>(bm, kNaN);
        p.req.ids = p.ids->data();
        p.req.kernel = p.kernel->data();
        p.req.dist2 = p.dist2->data();
      } else {
        p.req.estimate = true;
        p.req.void_weight = 0.5f;
        p.req.void_value = -1.f;
        p.value = std::make_shared<std::vector<float>>(nb, kNaN);
        p.confidence = std::make_shared<std::vector<float>>(nb, kNaN);
        p.req.value = p.value->data();
        p.req.confidence = p.confidence->data();
      }
      if (!store->bind_search(p.req, &p.job).ok()) {
        ++write_errors;
        continue;
      }
      ++bound;
      {
        std::lock_guard<std::mutex> l(mu);
        queue.push_back(std::move(p));
      }
      cv.notify_one();
    }
  }
  {
    std::lock_guard<std::mutex> l(mu);
    done = true;
  }
  cv.notify_all();
  for (auto& t : readers) t.join();
  CHECK(write_errors == 0);
  CHECK(ran.load() == bound);
  CHECK(bound > 500);
  CHECK(store->size() == static_cast<int64_t>(ref.size()));
  if (bad.load() != 0) std::printf("  %lld of %lld reads differ; first: %s\n", (long long)bad.load(), (long long)bound, first_bad.c_str());
  CHECK(bad.load() == 0);
}

}  // namespace

MEMQ_TEST(cpu_store_concurrent_snapshot_reads) { concurrent_reads(StoreBackend::kCpu); }
MEMQ_TEST(cuda_store_concurrent_snapshot_reads) { concurrent_reads(StoreBackend::kCuda); }

// Values are checked once, in the Store: kernel parameter, m, void weight and value, key type.
MEMQ_TEST(store_checks_values) {
  StoreOptions opts;
  opts.dim = 4;
  std::unique_ptr<Store> store;
  opts.kernel.bandwidth = -1.f;
  CHECK(Store::Create(opts, &store).code() == StatusCode::kOutOfRange);
  opts.kernel.bandwidth = 1.f;
  opts.key_type = StoreKeyType::kFloat16;
  Status st = Store::Create(opts, &store);
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK(st.message().find("keyType 'fp16' needs backend 'cuda'") != std::string::npos);
  for (StoreKeyType kt : {StoreKeyType::kBFloat16, StoreKeyType::kInt8}) {
    opts.key_type = kt;
    CHECK(Store::Create(opts, &store).ok());
    CHECK(store->key_type() == kt);
    opts.rerank_oversample = 4;
    CHECK(Store::Create(opts, &store).ok());
    opts.rerank_oversample = -1;
    CHECK(Store::Create(opts, &store).code() == StatusCode::kOutOfRange);
    opts.rerank_oversample = 0;
  }
  opts.key_type = StoreKeyType::kFloat32;
  opts.rerank_oversample = 4;
  st = Store::Create(opts, &store);
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK(st.message().find("rerank needs keyType") != std::string::npos);
  opts.rerank_oversample = 0;
  opts.backend = StoreBackend::kCuda;
  opts.key_type = StoreKeyType::kInt8;
  st = Store::Create(opts, &store);
  CHECK(st.code() == StatusCode::kInvalidArgument);  // refused before any device is touched
  opts.backend = StoreBackend::kCpu;
  opts.key_type = StoreKeyType::kFloat32;
  CHECK(Store::Create(opts, &store).ok());
  KernelParams bad;
  bad.type = KernelType::kCosine;
  bad.kappa = 100.f;
  CHECK(store->set_kernel(bad).code() == StatusCode::kOutOfRange);
  CHECK(store->kernel().type == KernelType::kGaussian);
  std::vector<float> q(4, 0.f), v(1, kNaN), c(1, kNaN);
  SearchRequest r;
  r.queries = q.data();
  r.b = 1;
  r.m = 0;
  r.estimate = true;
  r.value = v.data();
  r.confidence = c.data();
  SearchJob job;
  CHECK(store->bind_search(r, &job).code() == StatusCode::kOutOfRange);
  r.m = 2;
  r.void_weight = -1.f;
  CHECK(store->bind_search(r, &job).code() == StatusCode::kOutOfRange);
  CHECK(!job);
  r.void_weight = 1.f;
  r.void_value = std::numeric_limits<float>::infinity();
  CHECK(store->bind_search(r, &job).code() == StatusCode::kOutOfRange);
  r.void_value = 3.f;
  CHECK(store->bind_search(r, &job).ok());
  CHECK(job().ok());
  CHECK(v[0] == 3.f && c[0] == 0.f);  // empty store: the void value, no confidence
}

MEMQ_TEST_MAIN()
