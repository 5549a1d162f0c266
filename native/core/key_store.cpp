#include "memq/key_store.h"

#include "memq/limits.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <string>

namespace memq {

namespace {

// 64-byte aligned float storage, so every row of a SIMD-friendly dim starts aligned (n = 0:
// none at all, p == nullptr).
struct AlignedFloats {
  float* p = nullptr;
  explicit AlignedFloats(size_t n) {
    if (n == 0) return;
    size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
    if (bytes == 0) bytes = 64;
    p = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (!p) throw std::bad_alloc();
  }
  ~AlignedFloats() { std::free(p); }
  AlignedFloats(const AlignedFloats&) = delete;
  AlignedFloats& operator=(const AlignedFloats&) = delete;
};

std::string num(int64_t v) { return std::to_string(v); }
// A non-finite float as JavaScript spells it (the messages users see name the value).
const char* nonfinite_name(float x) { return std::isnan(x) ? "NaN" : x > 0 ? "Infinity" : "-Infinity"; }

}  // namespace

// Does a store of this type keep the float32 keys? float32 always; a compressed type only for
// the re-rank (which reads them). Without re-rank a bf16 / int8 store holds the compressed
// keys alone (2 or 1 byte per component instead of 4 + 2 or 4 + 1): get_keys then returns
// the dequantised keys, which are what its searches scan.
static bool keeps_float32(KeyType t, int64_t oversample) { return t == KeyType::kFloat32 || oversample > 0; }

struct KeyBuffer {
  int64_t capacity;  // rows
  int64_t dim;
  AlignedFloats keys;  // cap x dim float32 keys; empty (p == nullptr) unless keeps_float32
  AlignedFloats norms2;  // of the keys the search scans: the dequantised ones for bf16 / int8
  std::vector<int32_t> ids;
  KeyType type;
  int64_t oversample;  // re-rank on `keys` when > 0 (compressed types only)
  std::vector<uint16_t> bf;  // cap x dim when type is bf16
  std::vector<int8_t> i8;    // cap x dim when type is int8
  std::vector<float> scales; // cap when type is int8
  KeyBuffer(int64_t cap, int64_t d, KeyType t, int64_t over)
      : capacity(cap), dim(d), keys(keeps_float32(t, over) ? static_cast<size_t>(cap * d) : 0), norms2(static_cast<size_t>(cap)),
        ids(static_cast<size_t>(cap)), type(t), oversample(over) {
    if (t == KeyType::kBF16) bf.resize(static_cast<size_t>(cap * d));
    if (t == KeyType::kInt8) i8.resize(static_cast<size_t>(cap * d)), scales.resize(static_cast<size_t>(cap));
  }
  // Copies row r of `from` to row j (all representations).
  void copy_row(int64_t j, const KeyBuffer& from, int64_t r) {
    if (keys.p) std::memcpy(keys.p + j * dim, from.keys.p + r * dim, static_cast<size_t>(dim) * sizeof(float));
    norms2.p[j] = from.norms2.p[r];
    ids[static_cast<size_t>(j)] = from.ids[static_cast<size_t>(r)];
    if (type == KeyType::kBF16) std::memcpy(bf.data() + j * dim, from.bf.data() + r * dim, static_cast<size_t>(dim) * 2);
    if (type == KeyType::kInt8) {
      std::memcpy(i8.data() + j * dim, from.i8.data() + r * dim, static_cast<size_t>(dim));
      scales[static_cast<size_t>(j)] = from.scales[static_cast<size_t>(r)];
    }
  }
};

struct ValueBlock {
  std::vector<float> values;
  std::vector<uint8_t> alive;
};

KeyView Snapshot::view() const {
  KeyView v;
  v.keys = keys_ ? keys_->keys.p : nullptr;
  v.norms2 = keys_ ? keys_->norms2.p : nullptr;
  v.alive = (vals_ && live_ < rows_) ? vals_->alive.data() : nullptr;  // all alive: no mask
  v.n = rows_;
  v.d = dim_;
  if (keys_ && keys_->type != KeyType::kFloat32) {
    v.type = keys_->type;
    v.keys_bf16 = keys_->bf.empty() ? nullptr : keys_->bf.data();
    v.keys_i8 = keys_->i8.empty() ? nullptr : keys_->i8.data();
    v.scales = keys_->scales.empty() ? nullptr : keys_->scales.data();
    if (keys_->oversample > 0) {
      v.exact = keys_->keys.p;
      v.oversample = keys_->oversample;
    }
  }
  return v;
}
const float* Snapshot::values() const { return vals_ ? vals_->values.data() : nullptr; }
const int32_t* Snapshot::ids() const { return keys_ ? keys_->ids.data() : nullptr; }
const uint8_t* Snapshot::alive() const { return vals_ ? vals_->alive.data() : nullptr; }
const float* Snapshot::keys() const { return keys_ ? keys_->keys.p : nullptr; }

Status KeyStore::Create(const KeyStoreOptions& opts, std::unique_ptr<KeyStore>* out) {
  if (opts.dim < 1 || opts.dim > (1 << 20)) {
    return Status::OutOfRange("dim must be an integer in [1, 1048576], got " + num(opts.dim));
  }
  if (opts.capacity < 0 || opts.capacity > std::numeric_limits<int32_t>::max()) {
    return Status::OutOfRange("capacity must be 0 (unlimited) or a positive integer < 2^31, got " + num(opts.capacity));
  }
  if (!(opts.compact_fraction > 0.0 && opts.compact_fraction <= 1.0)) {
    return Status::OutOfRange("compact_fraction must be in (0, 1]");
  }
  if (opts.key_type != KeyType::kFloat32 && opts.key_type != KeyType::kBF16 && opts.key_type != KeyType::kInt8)
    return Status::Invalid("key_type must be float32 (0), bf16 (1) or int8 (2)");
  if (opts.rerank_oversample < 0 || opts.rerank_oversample > 4096)
    return Status::OutOfRange("rerank oversample must be 0 (off) or an integer in [1, 4096], got " + num(opts.rerank_oversample));
  std::unique_ptr<KeyStore> s(new KeyStore());
  s->key_type_ = opts.key_type;
  s->oversample_ = opts.rerank_oversample;
  s->dim_ = opts.dim;
  s->capacity_ = opts.capacity;
  s->compact_fraction_ = opts.compact_fraction;
  s->compact_min_rows_ = std::max<int64_t>(0, opts.compact_min_rows);
  s->vals_ = std::make_shared<ValueBlock>();
  if (opts.initial_rows > 0) MEMQ_RETURN_IF_ERROR(s->ensure_room(opts.initial_rows));
  *out = std::move(s);
  return Status::Ok();
}

int64_t KeyStore::reserved_rows() const { return keys_ ? keys_->capacity : 0; }

size_t KeyStore::memory_bytes() const {
  size_t b = 0;
  if (keys_) {
    b += static_cast<size_t>(keys_->capacity) * ((keys_->keys.p ? static_cast<size_t>(dim_) * 4 : 0) + 8);
    b += keys_->bf.capacity() * 2 + keys_->i8.capacity() + keys_->scales.capacity() * 4;
  }
  if (vals_) b += vals_->values.capacity() * 4 + vals_->alive.capacity();
  return b;
}

Snapshot KeyStore::snapshot() const {
  Snapshot s;
  s.keys_ = keys_;
  s.vals_ = vals_;
  s.rows_ = rows_;
  s.dim_ = dim_;
  s.live_ = live_;
  return s;
}

int64_t KeyStore::find_row(int32_t id) const {
  if (!keys_ || rows_ == 0) return -1;
  const int32_t* begin = keys_->ids.data();
  const int32_t* end = begin + rows_;
  const int32_t* it = std::lower_bound(begin, end, id);  // ids ascend: insertion order
  if (it == end || *it != id) return -1;
  int64_t row = it - begin;
  return vals_->alive[static_cast<size_t>(row)] ? row : -1;
}

// Make room for `extra` more rows. A snapshot may share the buffer; we never write below
// rows_, and growth moves to a fresh buffer, so snapshots are undisturbed.
Status KeyStore::ensure_room(int64_t extra) {
  int64_t need = rows_ + extra;
  int64_t cap = keys_ ? keys_->capacity : 0;
  if (need <= cap) return Status::Ok();
  int64_t new_cap = std::max<int64_t>({need, cap + cap / 2, 256});
  std::shared_ptr<KeyBuffer> nb;
  try {
    nb = std::make_shared<KeyBuffer>(new_cap, dim_, key_type_, oversample_);
  } catch (const std::bad_alloc&) {
    return Status::NoMemory("cannot allocate " + num(new_cap) + " rows x " + num(dim_) + " floats for the key store");
  }
  if (keys_ && rows_ > 0) {
    if (nb->keys.p) std::memcpy(nb->keys.p, keys_->keys.p, static_cast<size_t>(rows_ * dim_) * sizeof(float));
    std::memcpy(nb->norms2.p, keys_->norms2.p, static_cast<size_t>(rows_) * sizeof(float));
    std::memcpy(nb->ids.data(), keys_->ids.data(), static_cast<size_t>(rows_) * sizeof(int32_t));
    if (key_type_ == KeyType::kBF16) std::copy(keys_->bf.begin(), keys_->bf.begin() + rows_ * dim_, nb->bf.begin());
    if (key_type_ == KeyType::kInt8) {
      std::copy(keys_->i8.begin(), keys_->i8.begin() + rows_ * dim_, nb->i8.begin());
      std::copy(keys_->scales.begin(), keys_->scales.begin() + rows_, nb->scales.begin());
    }
  }
  keys_ = std::move(nb);
  return Status::Ok();
}

// Values/tombstones: copy on write while a snapshot shares the block.
ValueBlock* KeyStore::writable_values() {
  if (vals_.use_count() > 1) vals_ = std::make_shared<ValueBlock>(*vals_);
  return vals_.get();
}

Status KeyStore::validate_rows(const float* keys, const float* values, int64_t n, int64_t need_live) const {
  if (n < 0) return Status::OutOfRange("n must be >= 0");
  if (n > 0 && (!keys || !values)) return Status::Invalid("keys and values must not be null");
  for (int64_t i = 0; i < n * dim_; ++i) {
    if (!std::isfinite(keys[i])) {
      return Status::OutOfRange("keys must be finite: keys[" + num(i) + "] (row " + num(i / dim_) + ", column " +
                             num(i % dim_) + ") is " + nonfinite_name(keys[i]));
    }
  }
  // Every search reads the cached float32 squared norm of every alive row and refuses a
  // non-finite one, so a key whose squared norm overflows float32 would disable the whole
  // index, and one near FLT_MAX would give infinite distances: refuse them here. The rule (as
  // the CUDA store's, limits.h): ||k||^2 in double <= 2^125.
  if (n > 0) {
    std::vector<float> n2;
    try {
      n2.resize(static_cast<size_t>(n));
    } catch (const std::bad_alloc&) {
      return Status::NoMemory("out of memory while checking the norms of " + num(n) + " keys");
    }
    row_norms2(n2.data(), keys, n, dim_);
    for (int64_t r = 0; r < n; ++r) {
      double s = 0.0;
      for (int64_t c = 0; c < dim_; ++c) s += static_cast<double>(keys[r * dim_ + c]) * keys[r * dim_ + c];
      if (!(s <= limits::kMaxSquaredNorm) || !std::isfinite(n2[static_cast<size_t>(r)]))
        return Status::OutOfRange("keys: the squared norm of row " + num(r) + " is over the limit of " + limits::kMaxSquaredNormText + ", so that distances stay finite in float32");
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(values[i])) return Status::OutOfRange("values must be finite: values[" + num(i) + "] is " + nonfinite_name(values[i]));
  }
  if (capacity_ > 0 && live_ + need_live > capacity_) {
    return Status::Capacity("capacity exceeded: the store holds " + num(live_) + " of at most " + num(capacity_) +
                            " cases and cannot take " + num(need_live) + " more");
  }
  return Status::Ok();
}

void KeyStore::append_rows(const int32_t* ids, const float* keys, const float* values, int64_t n) {
  KeyBuffer* kb = keys_.get();
  if (kb->keys.p) std::memcpy(kb->keys.p + rows_ * dim_, keys, static_cast<size_t>(n * dim_) * sizeof(float));
  if (key_type_ == KeyType::kFloat32) {
    row_norms2(kb->norms2.p + rows_, keys, n, dim_);
  } else {
    // Keys were validated (finite, norms within limits.h), so the quantisers cannot fail here.
    // The cached norms are those of the dequantised keys, which the search scans.
    if (key_type_ == KeyType::kBF16) (void)quantize_bf16(kb->bf.data() + rows_ * dim_, keys, n, dim_);
    else (void)quantize_int8(kb->i8.data() + rows_ * dim_, kb->scales.data() + rows_, keys, n, dim_);
    KeyView v;
    v.n = rows_ + n;
    v.d = dim_;
    v.type = key_type_;
    v.keys_bf16 = kb->bf.empty() ? nullptr : kb->bf.data();
    v.keys_i8 = kb->i8.empty() ? nullptr : kb->i8.data();
    v.scales = kb->scales.empty() ? nullptr : kb->scales.data();
    std::vector<float> deq(static_cast<size_t>(dim_));
    for (int64_t r = 0; r < n; ++r) {
      dequantize_rows(deq.data(), v, rows_ + r, 1);
      double a = 0.0;
      for (float z : deq) a += static_cast<double>(z) * z;
      kb->norms2.p[rows_ + r] = static_cast<float>(a);
    }
  }
  std::memcpy(kb->ids.data() + rows_, ids, static_cast<size_t>(n) * sizeof(int32_t));
  ValueBlock* vb = writable_values();
  vb->values.insert(vb->values.end(), values, values + n);
  vb->alive.insert(vb->alive.end(), static_cast<size_t>(n), uint8_t{1});
  rows_ += n;
  live_ += n;
}

Status KeyStore::add(int32_t* ids_out, const float* keys, const float* values, int64_t n) {
  MEMQ_RETURN_IF_ERROR(validate_rows(keys, values, n, n));
  if (n == 0) return Status::Ok();
  if (static_cast<int64_t>(next_id_) + n > std::numeric_limits<int32_t>::max()) {
    return Status::Capacity("id space exhausted: ids are int32 and " + num(next_id_) + " have been issued");
  }
  MEMQ_RETURN_IF_ERROR(ensure_room(n));
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = next_id_ + static_cast<int32_t>(i);
  try {
    append_rows(ids.data(), keys, values, n);
  } catch (const std::bad_alloc&) {
    return Status::NoMemory("out of memory while adding " + num(n) + " cases");
  }
  next_id_ += static_cast<int32_t>(n);
  if (ids_out) std::memcpy(ids_out, ids.data(), static_cast<size_t>(n) * sizeof(int32_t));
  return Status::Ok();
}

Status KeyStore::add_with_ids(const int32_t* ids, const float* keys, const float* values, int64_t n) {
  MEMQ_RETURN_IF_ERROR(validate_rows(keys, values, n, n));
  if (n == 0) return Status::Ok();
  if (!ids) return Status::Invalid("ids must not be null");
  int32_t prev = next_id_ - 1;
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0) return Status::OutOfRange("ids must be >= 0: ids[" + num(i) + "] is " + num(ids[i]));
    if (ids[i] <= prev) {
      return Status::OutOfRange("ids must be strictly increasing and greater than every id already issued (" +
                             num(next_id_ - 1) + "): ids[" + num(i) + "] is " + num(ids[i]));
    }
    prev = ids[i];
  }
  if (prev == std::numeric_limits<int32_t>::max()) return Status::OutOfRange("id 2147483647 is reserved");
  MEMQ_RETURN_IF_ERROR(ensure_room(n));
  try {
    append_rows(ids, keys, values, n);
  } catch (const std::bad_alloc&) {
    return Status::NoMemory("out of memory while adding " + num(n) + " cases");
  }
  next_id_ = prev + 1;
  return Status::Ok();
}

Status KeyStore::update_values(const int32_t* ids, const float* values, int64_t n) {
  if (n < 0) return Status::OutOfRange("n must be >= 0");
  std::vector<int64_t> rows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(values[i])) return Status::OutOfRange("values must be finite: values[" + num(i) + "] is " + nonfinite_name(values[i]));
    rows[static_cast<size_t>(i)] = find_row(ids[i]);
    if (rows[static_cast<size_t>(i)] < 0) return Status::NotFound("unknown id: ids[" + num(i) + "] = " + num(ids[i]));
  }
  if (n == 0) return Status::Ok();
  ValueBlock* vb = writable_values();
  for (int64_t i = 0; i < n; ++i) vb->values[static_cast<size_t>(rows[static_cast<size_t>(i)])] = values[i];
  return Status::Ok();
}

Status KeyStore::remove(const int32_t* ids, int64_t n) {
  if (n < 0) return Status::OutOfRange("n must be >= 0");
  std::vector<int64_t> rows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    rows[static_cast<size_t>(i)] = find_row(ids[i]);
    if (rows[static_cast<size_t>(i)] < 0) return Status::NotFound("unknown id: ids[" + num(i) + "] = " + num(ids[i]));
  }
  std::vector<int64_t> sorted = rows;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
    return Status::OutOfRange("ids must not repeat within one remove call");
  }
  if (n == 0) return Status::Ok();
  ValueBlock* vb = writable_values();
  for (int64_t r : rows) vb->alive[static_cast<size_t>(r)] = 0;
  live_ -= n;
  int64_t dead = rows_ - live_;
  if (dead >= compact_min_rows_ && static_cast<double>(dead) > compact_fraction_ * static_cast<double>(rows_)) {
    return compact();
  }
  return Status::Ok();
}

Status KeyStore::get_keys(float* keys_out, const int32_t* ids, int64_t n) const {
  if (n < 0) return Status::OutOfRange("n must be >= 0");
  std::vector<int64_t> rows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    rows[static_cast<size_t>(i)] = find_row(ids[i]);
    if (rows[static_cast<size_t>(i)] < 0) return Status::NotFound("unknown id: ids[" + num(i) + "] = " + num(ids[i]));
  }
  if (n > 0 && !keys_->keys.p) {  // compressed only: the dequantised keys the search scans
    const KeyView v = snapshot().view();
    for (int64_t i = 0; i < n; ++i) dequantize_rows(keys_out + i * dim_, v, rows[static_cast<size_t>(i)], 1);
    return Status::Ok();
  }
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(keys_out + i * dim_, keys_->keys.p + rows[static_cast<size_t>(i)] * dim_,
                static_cast<size_t>(dim_) * sizeof(float));
  }
  return Status::Ok();
}

Status KeyStore::get_values(float* values_out, const int32_t* ids, int64_t n) const {
  if (n < 0) return Status::OutOfRange("n must be >= 0");
  std::vector<int64_t> rows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    rows[static_cast<size_t>(i)] = find_row(ids[i]);
    if (rows[static_cast<size_t>(i)] < 0) return Status::NotFound("unknown id: ids[" + num(i) + "] = " + num(ids[i]));
  }
  for (int64_t i = 0; i < n; ++i) values_out[i] = vals_->values[static_cast<size_t>(rows[static_cast<size_t>(i)])];
  return Status::Ok();
}

void KeyStore::live_ids(int32_t* ids_out) const {
  int64_t j = 0;
  for (int64_t r = 0; r < rows_; ++r) {
    if (vals_->alive[static_cast<size_t>(r)]) ids_out[j++] = keys_->ids[static_cast<size_t>(r)];
  }
}

void KeyStore::contains(uint8_t* out, const int32_t* ids, int64_t n) const {
  for (int64_t i = 0; i < n; ++i) out[i] = find_row(ids[i]) >= 0 ? 1 : 0;
}

Status KeyStore::compact() {
  if (live_ == rows_) return Status::Ok();
  int64_t cap = std::max<int64_t>(live_ + live_ / 4, 256);
  std::shared_ptr<KeyBuffer> nb;
  std::shared_ptr<ValueBlock> nv;
  try {
    nb = std::make_shared<KeyBuffer>(cap, dim_, key_type_, oversample_);
    nv = std::make_shared<ValueBlock>();
    nv->values.reserve(static_cast<size_t>(live_));
    nv->alive.assign(static_cast<size_t>(live_), uint8_t{1});
  } catch (const std::bad_alloc&) {
    return Status::NoMemory("cannot allocate the compacted key store");
  }
  int64_t j = 0;
  for (int64_t r = 0; r < rows_; ++r) {
    if (!vals_->alive[static_cast<size_t>(r)]) continue;
    nb->copy_row(j, *keys_, r);
    nv->values.push_back(vals_->values[static_cast<size_t>(r)]);
    ++j;
  }
  keys_ = std::move(nb);
  vals_ = std::move(nv);
  rows_ = live_;
  return Status::Ok();
}

void KeyStore::clear() {
  keys_.reset();
  vals_ = std::make_shared<ValueBlock>();
  rows_ = live_ = 0;
}

}  // namespace memq
