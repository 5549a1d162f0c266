// CudaKeyStore (memq/cuda/cuda_backend.h) against KeyStore (memq/key_store.h) and the CPU
// search twin. Without a device: Create reports Unavailable cleanly (SKIPPED lines for the rest).
// With one: the same random sequence of adds (growth), add_with_ids, value updates, removals
// (tombstones, compaction) on both stores must leave the same ids, values, keys and rows, and
// searches must agree with search_topm on the CPU store's snapshot (float32), or on the rounded
// keys and queries (bf16 / fp16; tolerances in memq/cuda/topm_check.h).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "memq/cuda/cuda_backend.h"
#include "memq/cuda/cuda_bench.h"
#include "memq/cuda/topm_check.h"
#include "memq/key_store.h"
#include "memq/kernels.h"
#include "testing.h"

using namespace memq;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();

bool device_ready(std::string* why) {
  CudaDeviceInfo info;
  Status st = cuda_device_info(&info);
  *why = info.reason;
  return st.ok();
}

#define REQUIRE_DEVICE()                                           \
  do {                                                             \
    std::string _why;                                              \
    if (!device_ready(&_why)) {                                    \
      std::printf("  SKIPPED: no CUDA device: %s\n", _why.c_str()); \
      return;                                                      \
    }                                                              \
  } while (0)

std::vector<float> gauss(std::mt19937& rng, size_t n) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = g(rng);
  return v;
}

float round_as(CudaKeyType t, float x) {
  return t == CudaKeyType::kBFloat16 ? round_to_bf16(x) : t == CudaKeyType::kFloat16 ? round_to_fp16(x) : x;
}

// Compares the CUDA store's search with search_topm over the CPU store's snapshot, keys and
// queries rounded to the store's type.
void compare_search(CudaKeyStore& gs, const KeyStore& cs, std::mt19937& rng, int64_t b, int64_t m, KernelType t,
                    CudaKeyType kt, const char* where) {
  const int64_t d = cs.dim();
  std::vector<float> q = gauss(rng, b * d);
  for (auto& x : q) x = round_as(kt, x);
  Snapshot snap = cs.snapshot();
  std::vector<float> keys(snap.keys(), snap.keys() + snap.rows() * d);
  for (auto& x : keys) x = round_as(kt, x);
  KeyView kv;
  kv.keys = keys.data();
  kv.alive = snap.live() < snap.rows() ? snap.alive() : nullptr;
  kv.n = snap.rows();
  kv.d = d;
  KernelParams p;
  p.type = t;
  p.bandwidth = std::sqrt((float)d);
  p.kappa = 2.0f;
  const size_t tot = b * m;
  std::vector<int64_t> r(tot, 5), rr(tot);
  std::vector<int32_t> ids(tot, 5);
  std::vector<float> k(tot, kNaN), d2(tot, kNaN), rk(tot), rd2(tot);
  CHECK(gs.rows() == snap.rows());
  Status st = gs.search_topm(r.data(), ids.data(), k.data(), d2.data(), q.data(), b, m, p);
  CHECK(search_topm(rr.data(), rk.data(), rd2.data(), q.data(), b, kv, m, p).ok());
  if (!st.ok()) {
    memq_test::fail(__FILE__, __LINE__, std::string(where) + ": " + st.message());
    return;
  }
  cudacheck::TopmProblem P;
  P.b = b, P.m = m, P.n = kv.n, P.d = d, P.keys = keys.data(), P.queries = q.data(), P.alive = kv.alive;
  P.p = p;
  std::string diff = cudacheck::check_topm(P, r.data(), k.data(), d2.data(), rr.data(), rk.data(), rd2.data());
  for (size_t e = 0; e < tot; ++e)
    if ((r[e] < 0 && ids[e] != -1) || (r[e] >= 0 && ids[e] != snap.ids()[r[e]])) {
      diff += "ids_out does not match the rows\n";
      break;
    }
  if (!diff.empty()) memq_test::fail(__FILE__, __LINE__, std::string(where) + ":\n" + diff);
}

void mirror_sequence(CudaKeyType kt, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t d = 37;
  KeyStoreOptions co;
  co.dim = d;
  co.compact_min_rows = 50;
  CudaKeyStoreOptions go;
  go.dim = d;
  go.compact_min_rows = 50;
  go.key_type = kt;
  std::unique_ptr<KeyStore> cs;
  std::unique_ptr<CudaKeyStore> gs;
  CHECK(KeyStore::Create(co, &cs).ok());
  Status st = CudaKeyStore::Create(go, &gs);
  if (!st.ok()) {
    memq_test::fail(__FILE__, __LINE__, st.message());
    return;
  }
  std::uniform_int_distribution<int> nb(1, 400);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int step = 0; step < 12; ++step) {
    // add (several growths: 256 -> 384 -> ...)
    const int64_t n = nb(rng);
    std::vector<float> keys = gauss(rng, n * d), vals(n);
    for (auto& v : vals) v = u(rng);
    std::vector<int32_t> i1(n), i2(n);
    CHECK(cs->add(i1.data(), keys.data(), vals.data(), n).ok());
    CHECK(gs->add(i2.data(), keys.data(), vals.data(), n).ok());
    CHECK(i1 == i2);
    if (step == 3) {  // add_with_ids past the issued ids
      std::vector<int32_t> ids = {cs->next_id() + 5, cs->next_id() + 9};
      std::vector<float> k2 = gauss(rng, 2 * d), v2 = {0.25f, -0.5f};
      CHECK(cs->add_with_ids(ids.data(), k2.data(), v2.data(), 2).ok());
      CHECK(gs->add_with_ids(ids.data(), k2.data(), v2.data(), 2).ok());
      CHECK(gs->add_with_ids(ids.data(), k2.data(), v2.data(), 2).code() == StatusCode::kOutOfRange);
    }
    std::vector<int32_t> live(cs->size());
    cs->live_ids(live.data());
    // update some values
    std::vector<int32_t> up;
    std::vector<float> upv;
    for (size_t i = 0; i < live.size(); i += 7) up.push_back(live[i]), upv.push_back(u(rng));
    CHECK(cs->update_values(up.data(), upv.data(), (int64_t)up.size()).ok());
    CHECK(gs->update_values(up.data(), upv.data(), (int64_t)up.size()).ok());
    // remove a random third (compaction kicks in on both at the same moment)
    std::vector<int32_t> rm;
    for (size_t i = 0; i < live.size(); ++i)
      if (u(rng) < -0.33f) rm.push_back(live[i]);
    CHECK(cs->remove(rm.data(), (int64_t)rm.size()).ok());
    CHECK(gs->remove(rm.data(), (int64_t)rm.size()).ok());
    CHECK(cs->size() == gs->size());
    CHECK(cs->rows() == gs->rows());
    CHECK(cs->next_id() == gs->next_id());
    // same live ids, values, keys (rounded), contains
    std::vector<int32_t> l1(cs->size()), l2(gs->size());
    cs->live_ids(l1.data());
    gs->live_ids(l2.data());
    CHECK(l1 == l2);
    std::vector<float> v1(l1.size()), v2(l1.size(), kNaN), k1(l1.size() * d), k2(l1.size() * d, kNaN);
    CHECK(cs->get_values(v1.data(), l1.data(), (int64_t)l1.size()).ok());
    CHECK(gs->get_values(v2.data(), l1.data(), (int64_t)l1.size()).ok());
    CHECK(v1 == v2);
    CHECK(cs->get_keys(k1.data(), l1.data(), (int64_t)l1.size()).ok());
    CHECK(gs->get_keys(k2.data(), l1.data(), (int64_t)l1.size()).ok());
    for (size_t e = 0; e < k1.size(); ++e)
      if (k2[e] != round_as(kt, k1[e])) {
        memq_test::fail(__FILE__, __LINE__, "get_keys differs at " + std::to_string(e));
        break;
      }
    std::vector<uint8_t> c1(rm.size()), c2(rm.size());
    cs->contains(c1.data(), rm.data(), (int64_t)rm.size());
    gs->contains(c2.data(), rm.data(), (int64_t)rm.size());
    CHECK(c1 == c2);
    // errors: the same codes, nothing changes
    if (!rm.empty()) {
      CHECK(gs->remove(rm.data(), 1).code() == StatusCode::kNotFound);
      CHECK(gs->update_values(rm.data(), upv.data(), 1).code() == StatusCode::kNotFound);
    }
    if (live.size() > 2) {
      int32_t rep[2] = {l1[0], l1[0]};
      CHECK(gs->remove(rep, 2).code() == cs->remove(rep, 2).code());
    }
    const char* where = kt == CudaKeyType::kFloat32 ? "float32 store" : kt == CudaKeyType::kBFloat16 ? "bf16 store" : "fp16 store";
    compare_search(*gs, *cs, rng, 3, 25, KernelType::kGaussian, kt, where);
    if (step % 4 == 0) compare_search(*gs, *cs, rng, 20, 300, KernelType::kCosine, kt, where);
  }
  CHECK(gs->compact().ok());
  CHECK(cs->compact().ok());
  CHECK(gs->rows() == gs->size());
  compare_search(*gs, *cs, rng, 2, 9, KernelType::kInverse, kt, "after compact()");
  gs->clear();
  cs->clear();
  CHECK(gs->size() == 0 && gs->rows() == 0);
  compare_search(*gs, *cs, rng, 2, 4, KernelType::kGaussian, kt, "empty store");
}

}  // namespace

MEMQ_TEST(create_without_device_is_clean) {
  std::string why;
  if (device_ready(&why)) return;
  CudaKeyStoreOptions o;
  o.dim = 8;
  std::unique_ptr<CudaKeyStore> s;
  Status st = CudaKeyStore::Create(o, &s);
  CHECK(st.code() == StatusCode::kUnavailable);
  CHECK(!s);
  CHECK(st.message() == why);
  std::printf("  Create without a device: %s\n", st.message().c_str());
  // Options are still validated first (when the backend is compiled in).
  o.dim = 0;
  if (cuda_compiled()) CHECK(CudaKeyStore::Create(o, &s).code() == StatusCode::kOutOfRange);
  double gbps = 0;
  CHECK(!cuda_bench_copy_bandwidth(1 << 20, 1, &gbps).ok());
}

MEMQ_TEST(store_mirrors_keystore_float32) {
  REQUIRE_DEVICE();
  mirror_sequence(CudaKeyType::kFloat32, 11);
}
MEMQ_TEST(store_mirrors_keystore_bf16) {
  REQUIRE_DEVICE();
  mirror_sequence(CudaKeyType::kBFloat16, 12);
}
MEMQ_TEST(store_mirrors_keystore_fp16) {
  REQUIRE_DEVICE();
  mirror_sequence(CudaKeyType::kFloat16, 13);
}

MEMQ_TEST(store_rejects_unrepresentable_keys) {
  REQUIRE_DEVICE();
  CudaKeyStoreOptions o;
  o.dim = 2;
  o.key_type = CudaKeyType::kFloat16;
  std::unique_ptr<CudaKeyStore> s;
  CHECK(CudaKeyStore::Create(o, &s).ok());
  if (!s) return;
  float big[2] = {70000.0f, 0.0f}, ok[2] = {65504.0f, 1.0f}, v = 0.0f, nan2[2] = {kNaN, 0.0f};
  int32_t id;
  CHECK(s->add(&id, big, &v, 1).code() == StatusCode::kOutOfRange);
  CHECK(s->add(&id, nan2, &v, 1).code() == StatusCode::kOutOfRange);
  CHECK(s->size() == 0);
  CHECK(s->add(&id, ok, &v, 1).ok());
  float huge[2] = {3e19f, 3e19f};  // finite, but the squared norm overflows float32
  o.key_type = CudaKeyType::kFloat32;
  std::unique_ptr<CudaKeyStore> s2;
  CHECK(CudaKeyStore::Create(o, &s2).ok());
  if (s2) CHECK(s2->add(&id, huge, &v, 1).code() == StatusCode::kOutOfRange);
  std::vector<int64_t> r(2);
  CHECK(s->search_topm(r.data(), nullptr, nullptr, nullptr, big, 1, 2, KernelParams()).code() ==
        StatusCode::kOutOfRange);  // query outside the fp16 range
  o.capacity = 1;
  std::unique_ptr<CudaKeyStore> s3;
  CHECK(CudaKeyStore::Create(o, &s3).ok());
  if (s3) {
    CHECK(s3->add(&id, ok, &v, 1).ok());
    CHECK(s3->add(&id, ok, &v, 1).code() == StatusCode::kCapacityExceeded);
  }
}

MEMQ_TEST(store_larger_than_device_is_a_clear_error) {
  REQUIRE_DEVICE();
  CudaKeyStoreOptions o;
  o.dim = 1 << 20;
  o.initial_rows = 1 << 24;  // 2^44 floats = 64 TiB
  std::unique_ptr<CudaKeyStore> s;
  Status st = CudaKeyStore::Create(o, &s);
  CHECK(st.code() == StatusCode::kOutOfMemory);
  CHECK(st.message().find("free") != std::string::npos);
  std::printf("  %s\n", st.message().c_str());
  // A store that exists keeps working after a failed growth.
  o.initial_rows = 0;
  o.dim = 1 << 18;
  CHECK(CudaKeyStore::Create(o, &s).ok());
  if (!s) return;
  std::vector<float> k(o.dim, 0.5f);
  float v = 1.0f;
  int32_t id;
  CHECK(s->add(&id, k.data(), &v, 1).ok());
  CHECK(s->size() == 1);
}

MEMQ_TEST(store_search_value_matches_cpu) {
  REQUIRE_DEVICE();
  std::mt19937 rng(99);
  const int64_t n = 2500, d = 48, b = 9, m = 30;
  for (CudaKeyType kt : {CudaKeyType::kFloat32, CudaKeyType::kBFloat16}) {
    CudaKeyStoreOptions o;
    o.dim = d;
    o.key_type = kt;
    std::unique_ptr<CudaKeyStore> s;
    CHECK(CudaKeyStore::Create(o, &s).ok());
    if (!s) return;
    std::vector<float> keys = gauss(rng, n * d), vals = gauss(rng, n), q = gauss(rng, b * d);
    std::vector<int32_t> ids(n);
    CHECK(s->add(ids.data(), keys.data(), vals.data(), n).ok());
    for (auto& x : keys) x = round_as(kt, x);
    for (auto& x : q) x = round_as(kt, x);
    // Updated values (a repeated id: the last value wins, on the device too), tombstones.
    std::vector<int32_t> up;
    std::vector<float> upv;
    for (int64_t j = 0; j < n; j += 3) up.push_back(ids[j]), upv.push_back((float)(j % 7) - 3.0f);
    up.push_back(ids[0]), upv.push_back(9.0f);
    up.push_back(ids[0]), upv.push_back(-4.0f);
    CHECK(s->update_values(up.data(), upv.data(), (int64_t)up.size()).ok());
    for (size_t i = 0; i < up.size(); ++i) vals[up[i]] = upv[i];  // ids == rows here
    float v0 = 0.0f;
    CHECK(s->get_values(&v0, &ids[0], 1).ok() && v0 == -4.0f);
    std::vector<int32_t> rm;
    for (int64_t j = 1; j < n; j += 5) rm.push_back(ids[j]);
    CHECK(s->remove(rm.data(), (int64_t)rm.size()).ok());
    KernelParams p;
    p.bandwidth = 5.0f;
    std::vector<float> v(b, kNaN), c(b, kNaN);
    CHECK(s->search_value(v.data(), c.data(), q.data(), b, m, p, 0.2f, -1.0f).ok());
    // CPU: search + kernel-weighted value over the GPU's own rows (the two agree up to near-ties,
    // which the search tests cover), so the comparison isolates the fused value step.
    std::vector<int64_t> r(b * m);
    std::vector<float> k(b * m), rv(b), rc(b);
    CHECK(s->search_topm(r.data(), nullptr, k.data(), nullptr, q.data(), b, m, p).ok());
    CHECK(kernel_weighted_value(rv.data(), rc.data(), r.data(), k.data(), vals.data(), n, b, m, 0.2f, -1.0f).ok());
    for (int64_t i = 0; i < b; ++i) {
      CHECK_NEAR(v[i], rv[i], 1e-6, 1e-7);
      CHECK_NEAR(c[i], rc[i], 1e-6, 1e-7);
    }
  }
}

MEMQ_TEST(store_device_search_path) {
  REQUIRE_DEVICE();
  std::mt19937 rng(3);
  const int64_t n = 4000, d = 64, b = 33, m = 12;
  CudaKeyStoreOptions o;
  o.dim = d;
  o.key_type = CudaKeyType::kBFloat16;
  std::unique_ptr<CudaKeyStore> s;
  CHECK(CudaKeyStore::Create(o, &s).ok());
  if (!s) return;
  std::vector<float> keys = gauss(rng, n * d), vals(n, 0.0f), q = gauss(rng, b * d);
  CHECK(s->add(nullptr, keys.data(), vals.data(), n).ok());
  void *dq = nullptr, *dr = nullptr;
  CHECK(cuda_bench_alloc(&dq, b * d * 4).ok());
  CHECK(cuda_bench_alloc(&dr, b * m * 8).ok());
  CHECK(cuda_bench_copy_to_device(dq, q.data(), b * d * 4).ok());
  KernelParams p;
  p.bandwidth = 8.0f;
  std::vector<double> ms;
  CHECK(cuda_bench_time(s->stream(), 1, 3, [&]() {
          return s->search_topm_device(static_cast<int64_t*>(dr), nullptr, nullptr, static_cast<float*>(dq), b, m, p);
        }, &ms).ok());
  CHECK(ms.size() == 3);
  CHECK(s->synchronize().ok());
  std::vector<int64_t> r1(b * m), r2(b * m);
  CHECK(cuda_bench_copy_to_host(r1.data(), dr, b * m * 8).ok());
  CHECK(s->search_topm(r2.data(), nullptr, nullptr, nullptr, q.data(), b, m, p).ok());
  CHECK(r1 == r2);  // the same kernels on the same data: identical
  cuda_bench_free(dq);
  cuda_bench_free(dr);
  double gbps = 0;
  CHECK(cuda_bench_copy_bandwidth(64 << 20, 3, &gbps).ok());
  CHECK(gbps > 0);
  std::printf("  device copy bandwidth: %.0f GB/s; search b=%lld: %.3f ms\n", gbps, (long long)b, ms[0]);
}

MEMQ_TEST_MAIN()
