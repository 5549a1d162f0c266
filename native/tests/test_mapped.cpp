// Memory-mapped keys (KeyStore::map_keys through memq::Store): a store whose first rows are a
// float32 key file must search, read and grow exactly as a store holding the same rows in RAM
// (the reference here: the same ids, keys and values given to add_with_ids), for every key type,
// across growth past its reservation, with the file unlinked, with tombstones and after
// compaction; the file is never written; bad files and damaged rows are refused with errors.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "memq/store.h"
#include "testing.h"

using namespace memq;

namespace {

constexpr int64_t kDim = 37;

std::string temp_path(const char* tag) {
  static int counter = 0;
  return "/tmp/memq_test_mapped_" + std::to_string(getpid()) + "_" + tag + "_" + std::to_string(counter++) + ".f32";
}

void write_file(const std::string& path, const std::vector<float>& keys) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  CHECK(f != nullptr);
  if (!keys.empty()) CHECK(std::fwrite(keys.data(), sizeof(float), keys.size(), f) == keys.size());
  std::fclose(f);
}

std::vector<char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

struct Data {
  std::vector<int32_t> ids;
  std::vector<float> keys, values;
};

Data make_data(std::mt19937& rng, int64_t n, int32_t first_id) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::uniform_int_distribution<int> gap(1, 3);
  Data d;
  int32_t id = first_id;
  for (int64_t i = 0; i < n; ++i) {
    d.ids.push_back(id);
    id += gap(rng);
    d.values.push_back(g(rng));
    for (int64_t j = 0; j < kDim; ++j) d.keys.push_back(g(rng));
  }
  return d;
}

std::unique_ptr<Store> make_store(StoreKeyType kt, int64_t rerank) {
  StoreOptions o;
  o.dim = kDim;
  o.key_type = kt;
  o.rerank_oversample = rerank;
  o.kernel.type = KernelType::kGaussian;
  o.kernel.bandwidth = 2.0f;
  std::unique_ptr<Store> s;
  Status st = Store::Create(o, &s);
  CHECK(st.ok());
  return s;
}

struct Result {
  std::vector<int32_t> ids;
  std::vector<float> kernel, dist2, value;
  Status status;
};

SearchJob bind_job(Store& s, const std::vector<float>& q, int64_t m, Result* r) {
  const int64_t b = static_cast<int64_t>(q.size()) / kDim;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  r->ids.assign(static_cast<size_t>(b * m), -7);
  r->kernel.assign(static_cast<size_t>(b * m), nan);
  r->dist2.assign(static_cast<size_t>(b * m), nan);
  r->value.assign(static_cast<size_t>(b), nan);
  SearchRequest req;
  req.queries = q.data();
  req.b = b;
  req.m = m;
  req.ids = r->ids.data();
  req.kernel = r->kernel.data();
  req.dist2 = r->dist2.data();
  req.estimate = true;
  req.value = r->value.data();
  req.void_weight = 0.1;
  SearchJob job;
  Status st = s.bind_search(req, &job);
  CHECK(st.ok());
  return job;
}

Result search(Store& s, const std::vector<float>& q, int64_t m) {
  Result r;
  SearchJob job = bind_job(s, q, m, &r);
  r.status = job();
  return r;
}

// Bit-identical results (the same rows in the same order: the same arithmetic).
void check_same(const Result& a, const Result& b) {
  CHECK(a.status.ok() && b.status.ok());
  CHECK(a.ids == b.ids);
  CHECK(std::memcmp(a.kernel.data(), b.kernel.data(), a.kernel.size() * 4) == 0);
  CHECK(std::memcmp(a.dist2.data(), b.dist2.data(), a.dist2.size() * 4) == 0);
  CHECK(std::memcmp(a.value.data(), b.value.data(), a.value.size() * 4) == 0);
}

std::vector<float> queries(std::mt19937& rng, int64_t b) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> q(static_cast<size_t>(b * kDim));
  for (float& x : q) x = g(rng);
  return q;
}

struct Variant {
  StoreKeyType kt;
  int64_t rerank;
};
const Variant kVariants[] = {{StoreKeyType::kFloat32, 0},
                             {StoreKeyType::kBFloat16, 0},
                             {StoreKeyType::kBFloat16, 4},
                             {StoreKeyType::kInt8, 0},
                             {StoreKeyType::kInt8, 3}};

}  // namespace

MEMQ_TEST(mapped_store_equals_heap_store_through_growth) {
  for (const Variant& v : kVariants) {
    std::mt19937 rng(11 + static_cast<int>(v.kt) * 7 + static_cast<int>(v.rerank));
    const int64_t n = 3001;
    Data d = make_data(rng, n, 5);
    const std::string path = temp_path("grow");
    write_file(path, d.keys);
    const std::vector<char> before = read_bytes(path);
    auto mapped = make_store(v.kt, v.rerank);
    auto heap = make_store(v.kt, v.rerank);
    CHECK(mapped->map_keys(path, d.ids.data(), d.values.data(), n).ok());
    CHECK(heap->add_with_ids(d.ids.data(), d.keys.data(), d.values.data(), n).ok());
    CHECK(mapped->size() == n && mapped->next_id() == heap->next_id());
    const bool keeps_file = v.kt == StoreKeyType::kFloat32 || v.rerank > 0;
    CHECK(mapped->mapped_rows() == (keeps_file ? n : 0));
    if (v.kt == StoreKeyType::kFloat32) CHECK(mapped->memory_bytes() < heap->memory_bytes() / 4);
    const std::vector<float> q = queries(rng, 9);
    check_same(search(*mapped, q, 12), search(*heap, q, 12));
    // getKeys reads the same keys (float32: the file's bytes).
    std::vector<float> ka(static_cast<size_t>(3 * kDim)), kb(ka.size());
    const int32_t some[3] = {d.ids[0], d.ids[1500], d.ids[static_cast<size_t>(n - 1)]};
    CHECK(mapped->get_keys(ka.data(), some, 3).ok() && heap->get_keys(kb.data(), some, 3).ok());
    CHECK(ka == kb);
    // A search bound now runs after the writes below and still sees this state.
    Result early_m, early_h;
    SearchJob jm = bind_job(*mapped, q, 7, &early_m), jh = bind_job(*heap, q, 7, &early_h);
    // Past the reservation (n + n/2 rows), twice: the file is mapped again, the tail copied.
    for (int round = 0; round < 3; ++round) {
      Data more = make_data(rng, 1700, mapped->next_id() + 1);
      CHECK(mapped->add_with_ids(more.ids.data(), more.keys.data(), more.values.data(), 1700).ok());
      CHECK(heap->add_with_ids(more.ids.data(), more.keys.data(), more.values.data(), 1700).ok());
      check_same(search(*mapped, q, 12), search(*heap, q, 12));
    }
    early_m.status = jm();
    early_h.status = jh();
    check_same(early_m, early_h);
    CHECK(mapped->size() == heap->size());
    // Tombstones: a mapped store keeps them (no automatic compaction), reads ignore them.
    std::vector<int32_t> gone;
    for (int64_t i = 0; i < n; i += 2) gone.push_back(d.ids[static_cast<size_t>(i)]);
    CHECK(mapped->remove(gone.data(), static_cast<int64_t>(gone.size())).ok());
    CHECK(heap->remove(gone.data(), static_cast<int64_t>(gone.size())).ok());
    if (keeps_file) CHECK(mapped->rows() == n + 3 * 1700);
    check_same(search(*mapped, q, 12), search(*heap, q, 12));
    // compact() moves the live rows into RAM.
    CHECK(mapped->compact().ok());
    CHECK(mapped->mapped_rows() == 0 && mapped->rows() == mapped->size());
    check_same(search(*mapped, q, 12), search(*heap, q, 12));
    // The file was never written (appends share its last page, copy-on-write).
    CHECK(read_bytes(path) == before);
    std::remove(path.c_str());
  }
}

MEMQ_TEST(mapped_store_grows_after_the_file_is_unlinked) {
  std::mt19937 rng(3);
  const int64_t n = 2000;
  Data d = make_data(rng, n, 0);
  const std::string path = temp_path("unlink");
  write_file(path, d.keys);
  auto mapped = make_store(StoreKeyType::kFloat32, 0);
  auto heap = make_store(StoreKeyType::kFloat32, 0);
  CHECK(mapped->map_keys(path, d.ids.data(), d.values.data(), n).ok());
  CHECK(heap->add_with_ids(d.ids.data(), d.keys.data(), d.values.data(), n).ok());
  const std::vector<float> q = queries(rng, 4);
  check_same(search(*mapped, q, 5), search(*heap, q, 5));  // norms computed while the file exists
  CHECK(std::remove(path.c_str()) == 0);  // a later save deleting an old generation does this
  Data more = make_data(rng, 4000, mapped->next_id());
  CHECK(mapped->add(nullptr, more.keys.data(), more.values.data(), 4000).ok());
  CHECK(heap->add(nullptr, more.keys.data(), more.values.data(), 4000).ok());
  check_same(search(*mapped, q, 5), search(*heap, q, 5));
}

MEMQ_TEST(mapped_store_refuses_bad_files_and_arguments) {
  std::mt19937 rng(5);
  Data d = make_data(rng, 100, 1);
  const std::string path = temp_path("bad");
  write_file(path, d.keys);
  {
    auto s = make_store(StoreKeyType::kFloat32, 0);
    Status st = s->map_keys(path + ".missing", d.ids.data(), d.values.data(), 100);
    CHECK(st.code() == StatusCode::kNotFound && st.message().find(".missing") != std::string::npos);
  }
  {
    auto s = make_store(StoreKeyType::kFloat32, 0);
    Status st = s->map_keys(path, d.ids.data(), d.values.data(), 99);  // the file holds 100 rows
    CHECK(st.code() == StatusCode::kOutOfRange && st.message().find("bytes") != std::string::npos);
    CHECK(s->size() == 0);
  }
  {
    auto s = make_store(StoreKeyType::kFloat32, 0);
    std::vector<int32_t> ids = d.ids;
    ids[50] = ids[49];
    Status st = s->map_keys(path, ids.data(), d.values.data(), 100);
    CHECK(st.code() == StatusCode::kOutOfRange && st.message().find("ids[50]") != std::string::npos);
    std::vector<float> vals = d.values;
    vals[7] = std::numeric_limits<float>::infinity();
    st = s->map_keys(path, d.ids.data(), vals.data(), 100);
    CHECK(st.code() == StatusCode::kOutOfRange && st.message().find("values[7]") != std::string::npos);
    CHECK(s->size() == 0);
  }
  {
    auto s = make_store(StoreKeyType::kFloat32, 0);
    float k[kDim] = {0};
    float v = 1;
    CHECK(s->add(nullptr, k, &v, 1).ok());
    CHECK(s->map_keys(path, d.ids.data(), d.values.data(), 100).code() == StatusCode::kInvalidArgument);
  }
  std::remove(path.c_str());
}

MEMQ_TEST(mapped_store_reports_a_damaged_row_at_search) {
  std::mt19937 rng(9);
  const int64_t n = 5000;
  Data d = make_data(rng, n, 0);
  d.keys[static_cast<size_t>(1234 * kDim + 5)] = std::numeric_limits<float>::quiet_NaN();
  d.keys[static_cast<size_t>(4000 * kDim)] = std::numeric_limits<float>::infinity();
  const std::string path = temp_path("nan");
  write_file(path, d.keys);
  // float32: opening reads nothing, so the row is found by the first search, which fails with the
  // file and the first bad row; so does every later one.
  auto s = make_store(StoreKeyType::kFloat32, 0);
  CHECK(s->map_keys(path, d.ids.data(), d.values.data(), n).ok());
  const std::vector<float> q = queries(rng, 2);
  for (int i = 0; i < 2; ++i) {
    Result r = search(*s, q, 3);
    CHECK(r.status.code() == StatusCode::kOutOfRange);
    CHECK(r.status.message().find(path) != std::string::npos);
    CHECK(r.status.message().find("row 1234 ") != std::string::npos);
  }
  // Compressed keys are built at open, which refuses the file.
  auto c = make_store(StoreKeyType::kInt8, 0);
  Status st = c->map_keys(path, d.ids.data(), d.values.data(), n);
  CHECK(st.code() == StatusCode::kOutOfRange && st.message().find(path) != std::string::npos &&
        st.message().find("row 1234") != std::string::npos);
  CHECK(c->size() == 0);
  std::remove(path.c_str());
}

MEMQ_TEST_MAIN()
