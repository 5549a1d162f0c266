#include "memq/key_store.h"

#include "memq/limits.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <new>
#include <string>

#include "memq/thread_pool.h"

#if defined(__unix__) || defined(__APPLE__)
#define MEMQ_HAVE_MMAP 1
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace memq {

namespace {

// Float storage of a buffer (keys, norms): 64-byte aligned heap memory, so every row of a
// SIMD-friendly dim starts aligned (n = 0: none, p == nullptr), or (a mapped store's keys) one address
// range reserved with mmap whose first `file_bytes` are a private (copy-on-write) mapping of
// a snapshot's float32 key file, read from disk as pages are touched, and whose rest is
// anonymous memory for the rows appended after the load. Rows are never written below the
// row count, so the file's pages stay clean and shared with the page cache.
struct KeyMemory {
  float* p = nullptr;
  size_t map_len = 0;  // bytes of the mmap reservation (0: heap)
  KeyMemory() = default;
  explicit KeyMemory(size_t n) {
    if (n == 0) return;
    size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
    p = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (!p) throw std::bad_alloc();
  }
  ~KeyMemory() {
#ifdef MEMQ_HAVE_MMAP
    if (map_len) {
      munmap(p, map_len);
      return;
    }
#endif
    std::free(p);
  }
  KeyMemory(const KeyMemory&) = delete;
  KeyMemory& operator=(const KeyMemory&) = delete;
};

std::string num(int64_t v) { return std::to_string(v); }
// A non-finite float as JavaScript spells it (the messages users see name the value).
const char* nonfinite_name(float x) { return std::isnan(x) ? "NaN" : x > 0 ? "Infinity" : "-Infinity"; }

Status check_values(const float* values, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(values[i])) return Status::OutOfRange("values must be finite: values[" + num(i) + "] is " + nonfinite_name(values[i]));
  return Status::Ok();
}

// Caller-chosen ids (add_with_ids, map_keys): >= 0, strictly increasing, above `issued` (the
// last id the store issued, -1 for none), and not the reserved 2^31 - 1.
Status check_new_ids(const int32_t* ids, int64_t n, int32_t issued) {
  int32_t prev = issued;
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0) return Status::OutOfRange("ids must be >= 0: ids[" + num(i) + "] is " + num(ids[i]));
    if (ids[i] <= prev) {
      return Status::OutOfRange("ids must be strictly increasing and greater than every id already issued (" + num(issued) +
                                "): ids[" + num(i) + "] is " + num(ids[i]));
    }
    prev = ids[i];
  }
  if (n > 0 && prev == std::numeric_limits<int32_t>::max()) return Status::OutOfRange("id 2147483647 is reserved");
  return Status::Ok();
}

}  // namespace

// Does a store of this type keep the float32 keys? float32 always; a compressed type only for
// the re-rank (which reads them). Without re-rank a bf16 / int8 store holds the compressed
// keys alone (2 or 1 byte per component instead of 4 + 2 or 4 + 1): get_keys then returns
// the dequantised keys, which are what its searches scan.
static bool keeps_float32(KeyType t, int64_t oversample) { return t == KeyType::kFloat32 || oversample > 0; }

struct KeyBuffer {
  int64_t capacity;  // rows
  int64_t dim;
  KeyMemory keys;  // cap x dim float32 keys; empty (p == nullptr) unless keeps_float32
  KeyMemory norms2;  // of the keys the search scans: the dequantised ones for bf16 / int8
  std::vector<int32_t> ids;
  KeyType type;
  int64_t oversample;  // re-rank on `keys` when > 0 (compressed types only)
  std::vector<uint16_t> bf;  // cap x dim when type is bf16
  std::vector<int8_t> i8;    // cap x dim when type is int8
  std::vector<float> scales; // cap when type is int8
  // Mapped stores: rows [0, file_rows) come from `file` (keys.p is then a KeyMemory mapping).
  // Their squared norms are computed, and the rows checked, by the first search that needs
  // them (ensure_norms), not at load: opening reads nothing of the keys.
  std::string file;
  int64_t file_rows = 0;
  mutable std::mutex norms_mu;
  mutable std::atomic<bool> norms_ready{true};
  mutable Status norms_status;
  int fd = -1;  // the mapped file, kept open so that growth can map it again (even once unlinked)
  ~KeyBuffer() {
#ifdef MEMQ_HAVE_MMAP
    if (fd >= 0) ::close(fd);
#endif
  }
  KeyBuffer(int64_t cap, int64_t d, KeyType t, int64_t over, KeyMemory* mapped)
      : capacity(cap), dim(d), norms2(static_cast<size_t>(cap)), ids(static_cast<size_t>(cap)), type(t),
        oversample(over) {
    std::swap(keys.p, mapped->p);
    std::swap(keys.map_len, mapped->map_len);
    if (t == KeyType::kBF16) bf.resize(static_cast<size_t>(cap * d));
    if (t == KeyType::kInt8) i8.resize(static_cast<size_t>(cap * d)), scales.resize(static_cast<size_t>(cap));
  }
  KeyBuffer(int64_t cap, int64_t d, KeyType t, int64_t over)
      : capacity(cap), dim(d), keys(keeps_float32(t, over) ? static_cast<size_t>(cap * d) : 0), norms2(static_cast<size_t>(cap)),
        ids(static_cast<size_t>(cap)), type(t), oversample(over) {
    if (t == KeyType::kBF16) bf.resize(static_cast<size_t>(cap * d));
    if (t == KeyType::kInt8) i8.resize(static_cast<size_t>(cap * d)), scales.resize(static_cast<size_t>(cap));
  }
  // Copies rows [0, rows) of `from` (ids, compressed keys, and norms from row norms0), and the
  // float32 keys of rows [keys0, rows): growth, which keeps row numbers.
  void copy_prefix(const KeyBuffer& from, int64_t rows, int64_t keys0, int64_t norms0) {
    if (keys.p) std::memcpy(keys.p + keys0 * dim, from.keys.p + keys0 * dim, static_cast<size_t>((rows - keys0) * dim) * sizeof(float));
    std::memcpy(norms2.p + norms0, from.norms2.p + norms0, static_cast<size_t>(rows - norms0) * sizeof(float));
    std::memcpy(ids.data(), from.ids.data(), static_cast<size_t>(rows) * sizeof(int32_t));
    if (type == KeyType::kBF16) std::copy(from.bf.begin(), from.bf.begin() + rows * dim, bf.begin());
    if (type == KeyType::kInt8) {
      std::copy(from.i8.begin(), from.i8.begin() + rows * dim, i8.begin());
      std::copy(from.scales.begin(), from.scales.begin() + rows, scales.begin());
    }
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

namespace {
// The squared norms of a mapped buffer's file rows, computed and checked once, by the first
// search that needs them (on its thread: a worker for async searches). A row that is not finite,
// or whose squared norm is over limits.h's bound, fails every search of the buffer with an error
// naming the file and the row; nothing aborts.
Status ensure_norms(const KeyBuffer& kb) {
  if (kb.norms_ready.load(std::memory_order_acquire)) return Status::Ok();
  std::lock_guard<std::mutex> lock(kb.norms_mu);
  if (kb.norms_ready.load(std::memory_order_relaxed)) return Status::Ok();
  if (!kb.norms_status.ok()) return kb.norms_status;
  const int64_t n = kb.file_rows, d = kb.dim;
  std::atomic<int64_t> bad{std::numeric_limits<int64_t>::max()};
  try {
    parallel_for(0, n, 4096, [&](int64_t lo, int64_t hi) {
      row_norms2(kb.norms2.p + lo, kb.keys.p + lo * d, hi - lo, d);
      for (int64_t r = lo; r < hi; ++r) {
        const float v = kb.norms2.p[r];
        if (!(std::isfinite(v) && static_cast<double>(v) <= limits::kMaxSquaredNorm)) {
          int64_t cur = bad.load();
          while (r < cur && !bad.compare_exchange_weak(cur, r)) {}
          break;
        }
      }
    });
  } catch (const std::bad_alloc&) {
    return Status::NoMemory("out of memory while reading the mapped keys of " + kb.file);
  }
  if (bad.load() != std::numeric_limits<int64_t>::max()) {
    const int64_t r = bad.load();
    kb.norms_status = Status::OutOfRange(kb.file + ": mapped key row " + num(r) + " (id " + num(kb.ids[static_cast<size_t>(r)]) +
                                         ") has a non-finite value or a squared norm over " + limits::kMaxSquaredNormText +
                                         "; the file is damaged (searches of this index fail until it is reloaded from a good snapshot)");
    return kb.norms_status;
  }
  kb.norms_ready.store(true, std::memory_order_release);
  return Status::Ok();
}
}  // namespace

Status Snapshot::prepare() const { return keys_ ? ensure_norms(*keys_) : Status::Ok(); }

KeyView Snapshot::view() const {
  KeyView v;
  v.keys = keys_ ? keys_->keys.p : nullptr;
  v.norms2 = keys_ ? keys_->norms2.p : nullptr;
  v.alive = (vals_ && live_ < rows_) ? vals_->alive.data() : nullptr;  // all alive: no mask
  v.n = rows_;
  v.d = dim_;
  v.trusted = true;  // every key, norm and scale was checked on the way in (mapped rows: prepare())
  if (bounds_.known) {
    v.norms2_max = bounds_.max;
    v.norms2_min_pos = bounds_.min_pos;
  }
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
    // Mapped: the file's rows are page cache, not counted here (mapped_rows); the reservation
    // beyond them is committed only as rows are appended.
    const size_t key_rows = static_cast<size_t>(keys_->file_rows > 0 ? rows_ - keys_->file_rows : keys_->capacity);
    b += key_rows * (keys_->keys.p ? static_cast<size_t>(dim_) * 4 : 0) + static_cast<size_t>(keys_->capacity) * 8;
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
  s.bounds_ = bounds_;
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
  if (keys_ && keys_->file_rows > 0) return grow_mapped(new_cap);
  std::shared_ptr<KeyBuffer> nb;
  try {
    nb = std::make_shared<KeyBuffer>(new_cap, dim_, key_type_, oversample_);
  } catch (const std::bad_alloc&) {
    return Status::NoMemory("cannot allocate " + num(new_cap) + " rows x " + num(dim_) + " floats for the key store");
  }
  if (keys_ && rows_ > 0) nb->copy_prefix(*keys_, rows_, 0, 0);
  keys_ = std::move(nb);
  return Status::Ok();
}

static Status fill_compressed(KeyBuffer* kb, int64_t row0, const float* keys, int64_t n);

#ifdef MEMQ_HAVE_MMAP
namespace {
// Reserves address space for cap rows (anonymous, private, not committed until written) and maps
// the first file_bytes of fd over its start, copy-on-write.
Status map_region(int fd, size_t file_bytes, int64_t cap, int64_t dim, const std::string& file, KeyMemory* out) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const double want = static_cast<double>(cap) * static_cast<double>(dim) * 4.0;
  if (want > 1.0e18) return Status::OutOfRange("the mapped key store of " + file + " would need " + num(cap) + " x " + num(dim) + " floats");
  size_t bytes = std::max(static_cast<size_t>(cap) * static_cast<size_t>(dim) * 4, file_bytes);
  bytes = std::max(page, (bytes + page - 1) / page * page);
  void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) {
    return Status::NoMemory("cannot reserve " + num(static_cast<int64_t>(bytes)) + " bytes of address space for the keys of " +
                            file + ": " + std::strerror(errno));
  }
  if (file_bytes > 0 && mmap(base, file_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0) == MAP_FAILED) {
    const int e = errno;
    munmap(base, bytes);
    return Status::Invalid("cannot memory-map " + file + ": " + std::strerror(e));
  }
  out->p = static_cast<float*>(base);
  out->map_len = bytes;
  return Status::Ok();
}
}  // namespace
#endif

// A mapped buffer outgrew its reservation: a larger one maps the same file again (through the
// descriptor kept open, so a file unlinked since still maps) and takes the appended rows, so the
// file's rows are never copied into RAM. Snapshots keep the old buffer.
Status KeyStore::grow_mapped(int64_t new_cap) {
#ifndef MEMQ_HAVE_MMAP
  (void)new_cap;
  return Status::Unavailable("memory-mapped keys need mmap");
#else
  const KeyBuffer& old = *keys_;
  const int64_t fr = old.file_rows;
  const int fd = fcntl(old.fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return Status::Invalid("cannot duplicate the descriptor of " + old.file + ": " + std::strerror(errno));
  KeyMemory mem;
  Status st = map_region(fd, static_cast<size_t>(fr * dim_) * 4, new_cap, dim_, old.file, &mem);
  if (!st.ok()) {
    ::close(fd);
    return st;
  }
  std::shared_ptr<KeyBuffer> nb;
  try {
    nb = std::make_shared<KeyBuffer>(new_cap, dim_, key_type_, oversample_, &mem);
  } catch (const std::bad_alloc&) {
    ::close(fd);
    return Status::NoMemory("cannot allocate " + num(new_cap) + " rows for the key store");
  }
  nb->fd = fd;
  nb->file = old.file;
  nb->file_rows = fr;
  // The file's rows are mapped again; their norms come along once computed.
  const bool ready = old.norms_ready.load(std::memory_order_acquire);
  nb->copy_prefix(old, rows_, fr, ready ? 0 : fr);
  nb->norms_ready.store(ready, std::memory_order_relaxed);
  if (!ready) {
    std::lock_guard<std::mutex> lock(old.norms_mu);
    nb->norms_status = old.norms_status;
  }
  keys_ = std::move(nb);
  return Status::Ok();
#endif
}

Status KeyStore::map_keys(const std::string& file, const int32_t* ids, const float* values, int64_t n) {
#ifndef MEMQ_HAVE_MMAP
  (void)file, (void)ids, (void)values, (void)n;
  return Status::Unavailable("memory-mapped keys need a POSIX system (mmap); load without mmap");
#else
  if (rows_ != 0 || next_id_ != 0) return Status::Invalid("mapKeys: the index must be fresh (no case ever added)");
  if (n < 0) return Status::OutOfRange("n must be >= 0");
  if (n > 0 && (!ids || !values)) return Status::Invalid("ids and values must not be null");
  if (n > std::numeric_limits<int32_t>::max()) return Status::OutOfRange("mapKeys: more rows than int32 ids");
  MEMQ_RETURN_IF_ERROR(check_new_ids(ids, n, -1));
  MEMQ_RETURN_IF_ERROR(check_values(values, n));
  if (capacity_ > 0 && n > capacity_) {
    return Status::Capacity("capacity exceeded: the store holds at most " + num(capacity_) + " cases and the file has " + num(n));
  }
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::NotFound("cannot open the keys file " + file + ": " + std::strerror(errno));
  struct stat stt;
  if (fstat(fd, &stt) != 0 || !S_ISREG(stt.st_mode)) {
    ::close(fd);
    return Status::Invalid(file + " is not a regular file");
  }
  const double expect = static_cast<double>(n) * static_cast<double>(dim_) * 4.0;
  if (static_cast<double>(stt.st_size) != expect) {
    ::close(fd);
    return Status::OutOfRange(file + " has " + num(static_cast<int64_t>(stt.st_size)) + " bytes; " + num(n) + " rows x dim " +
                              num(dim_) + " x 4 bytes = " + num(static_cast<int64_t>(expect)) + " expected");
  }
  const size_t file_bytes = static_cast<size_t>(n) * static_cast<size_t>(dim_) * 4;
  const int64_t cap = std::max<int64_t>(n + std::max<int64_t>(n / 2, 1024), 256);
  std::shared_ptr<KeyBuffer> nb;
  Status st;
  try {
    if (keeps_float32(key_type_, oversample_)) {
      KeyMemory mem;
      st = map_region(fd, file_bytes, cap, dim_, file, &mem);
      if (!st.ok()) {
        ::close(fd);
        return st;
      }
      nb = std::make_shared<KeyBuffer>(cap, dim_, key_type_, oversample_, &mem);
      nb->fd = fd;
      nb->file = file;
      nb->file_rows = n;
      if (key_type_ == KeyType::kFloat32) {
        nb->norms_ready.store(n == 0, std::memory_order_relaxed);  // computed by the first search
      } else {
        st = fill_compressed(nb.get(), 0, nb->keys.p, n);  // the re-rank's exact keys stay mapped
      }
    } else {
      // Compressed keys alone: read the file once through a temporary mapping, keep no float32.
      nb = std::make_shared<KeyBuffer>(cap, dim_, key_type_, oversample_);
      void* m = n > 0 ? mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, fd, 0) : nullptr;
      ::close(fd);
      if (m == MAP_FAILED) return Status::Invalid("cannot memory-map " + file + ": " + std::strerror(errno));
      if (n > 0) {
        madvise(m, file_bytes, MADV_SEQUENTIAL);
        st = fill_compressed(nb.get(), 0, static_cast<const float*>(m), n);
        munmap(m, file_bytes);
      }
    }
  } catch (const std::bad_alloc&) {
    return Status::NoMemory("out of memory while mapping " + num(n) + " keys of " + file);
  }
  if (!st.ok()) return Status(st.code(), file + ": " + st.message());
  std::memcpy(nb->ids.data(), ids, static_cast<size_t>(n) * sizeof(int32_t));
  auto vb = std::make_shared<ValueBlock>();
  vb->values.assign(values, values + n);
  vb->alive.assign(static_cast<size_t>(n), uint8_t{1});
  keys_ = std::move(nb);
  vals_ = std::move(vb);
  rows_ = live_ = n;
  if (n > 0) next_id_ = ids[n - 1] + 1;
  // float32: the norms come with the first search (prepare), so the bounds stay unknown.
  bounds_.reset(key_type_ != KeyType::kFloat32 || n == 0);
  if (bounds_.known) bounds_.note(keys_->norms2.p, n);
  return Status::Ok();
#endif
}

int64_t KeyStore::mapped_rows() const { return keys_ ? keys_->file_rows : 0; }

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
  MEMQ_RETURN_IF_ERROR(check_values(values, n));
  if (capacity_ > 0 && live_ + need_live > capacity_) {
    return Status::Capacity("capacity exceeded: the store holds " + num(live_) + " of at most " + num(capacity_) +
                            " cases and cannot take " + num(need_live) + " more");
  }
  return Status::Ok();
}

// The compressed copies of rows [row0, row0 + n) from their float32 keys, and their cached norms
// (those of the dequantised keys, which the search scans). OutOfRange for a row the quantisers
// refuse (not finite, or a squared norm over limits.h's bound).
static Status fill_compressed(KeyBuffer* kb, int64_t row0, const float* keys, int64_t n) {
  const int64_t dim = kb->dim;
  if (kb->type == KeyType::kBF16) MEMQ_RETURN_IF_ERROR(quantize_bf16(kb->bf.data() + row0 * dim, keys, n, dim));
  else MEMQ_RETURN_IF_ERROR(quantize_int8(kb->i8.data() + row0 * dim, kb->scales.data() + row0, keys, n, dim));
  KeyView v;
  v.n = row0 + n;
  v.d = dim;
  v.type = kb->type;
  v.keys_bf16 = kb->bf.empty() ? nullptr : kb->bf.data();
  v.keys_i8 = kb->i8.empty() ? nullptr : kb->i8.data();
  v.scales = kb->scales.empty() ? nullptr : kb->scales.data();
  parallel_for(0, n, 1024, [&](int64_t lo, int64_t hi) {
    std::vector<float> deq(static_cast<size_t>(dim));
    for (int64_t r = lo; r < hi; ++r) {
      dequantize_rows(deq.data(), v, row0 + r, 1);
      double a = 0.0;
      for (float z : deq) a += static_cast<double>(z) * z;
      kb->norms2.p[row0 + r] = static_cast<float>(a);
    }
  });
  return Status::Ok();
}

void KeyStore::append_rows(const int32_t* ids, const float* keys, const float* values, int64_t n) {
  KeyBuffer* kb = keys_.get();
  if (kb->keys.p) std::memcpy(kb->keys.p + rows_ * dim_, keys, static_cast<size_t>(n * dim_) * sizeof(float));
  if (key_type_ == KeyType::kFloat32) {
    row_norms2(kb->norms2.p + rows_, keys, n, dim_);
  } else {
    // Keys were validated (finite, norms within limits.h), so the quantisers cannot fail here.
    (void)fill_compressed(kb, rows_, keys, n);
  }
  if (bounds_.known) bounds_.note(kb->norms2.p + rows_, n);
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
  MEMQ_RETURN_IF_ERROR(check_new_ids(ids, n, next_id_ - 1));
  MEMQ_RETURN_IF_ERROR(ensure_room(n));
  try {
    append_rows(ids, keys, values, n);
  } catch (const std::bad_alloc&) {
    return Status::NoMemory("out of memory while adding " + num(n) + " cases");
  }
  next_id_ = ids[n - 1] + 1;
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
  // A mapped store keeps its tombstones (compacting would copy the file's rows into RAM); the
  // next save writes the memory without them.
  if (keys_->file_rows > 0) return Status::Ok();
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
  // A mapped store's live rows move into RAM: their norms are needed (and checked) first.
  if (keys_ && keys_->file_rows > 0) MEMQ_RETURN_IF_ERROR(ensure_norms(*keys_));
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
  bounds_.reset(true);  // every row's norm is in RAM now (mapped ones were computed first)
  bounds_.note(keys_->norms2.p, rows_);
  return Status::Ok();
}

void KeyStore::clear() {
  keys_.reset();
  vals_ = std::make_shared<ValueBlock>();
  rows_ = live_ = 0;
  bounds_.reset(true);
}

}  // namespace memq
