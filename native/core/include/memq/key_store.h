// The key store (issue: retrieval core, item 5): contiguous N x d float32 keys with float32
// values and stable int32 ids. Add (amortised growth), update values, remove (tombstone +
// compaction), capacity limit.
//
// Concurrency model: one writer (the JS main thread) and any number of concurrent readers
// (async searches on worker threads). A reader takes a Snapshot, an immutable view of the store
// as it was when taken; later writes never change what a snapshot sees, so overlapping async
// searches and adds give the same results as running them in sequence, and no reader blocks the
// writer. How: keys, norms and ids are append-only inside a buffer (a writer only writes rows
// past every snapshot's row count); growth and compaction build a new buffer and leave the old
// one to the snapshots that hold it. Values and tombstones are mutable, so they live in a small
// separate block that is copied on write while a snapshot shares it.
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "memq/kernels.h"
#include "memq/status.h"

namespace memq {

struct KeyBuffer;   // append-only keys, norms2, ids
struct ValueBlock;  // mutable values and alive flags

// Running bounds of a store's cached squared norms (KeyView's norms2_max / norms2_min_pos): the
// max, and the min over the nonzero ones (+inf while there are none), over every row written
// (tombstoned ones included: they only widen the search's slack). Unknown while a mapped store's
// norms are not computed yet.
struct NormBounds {
  float max = 0.0f, min_pos = std::numeric_limits<float>::infinity();
  bool known = true;
  void reset(bool is_known) { *this = NormBounds{0.0f, std::numeric_limits<float>::infinity(), is_known}; }
  void note(const float* norms2, int64_t n) {
    for (int64_t r = 0; r < n; ++r) {
      max = std::max(max, norms2[r]);
      if (norms2[r] > 0.0f) min_pos = std::min(min_pos, norms2[r]);
    }
  }
};

// An immutable view of the store at one instant.
class Snapshot {
 public:
  int64_t rows() const { return rows_; }  // rows including tombstones
  int64_t dim() const { return dim_; }
  int64_t live() const { return live_; }
  KeyView view() const;
  // Call before reading view()'s norms2 (every search does): for a store with memory-mapped keys,
  // the first call computes and checks the file rows' squared norms (reading the file); then a
  // no-op. OutOfRange naming the file and the row when a mapped row is not finite or too large.
  Status prepare() const;
  const float* values() const;
  const int32_t* ids() const;
  const uint8_t* alive() const;
  const float* keys() const;

 private:
  friend class KeyStore;
  std::shared_ptr<const KeyBuffer> keys_;
  std::shared_ptr<const ValueBlock> vals_;
  int64_t rows_ = 0, dim_ = 0, live_ = 0;
  NormBounds bounds_;  // the store's, when the snapshot was taken
};

struct KeyStoreOptions {
  int64_t dim = 0;
  int64_t capacity = 0;              // max live cases; 0 = unlimited (bounded by int32 ids)
  int64_t initial_rows = 0;          // rows to reserve up front
  double compact_fraction = 0.25;    // compact when tombstones exceed this fraction of rows
  int64_t compact_min_rows = 1024;   // ... and at least this many
  // Compressed keys (kernels.h KeyView): searches scan bf16 / int8 copies of the keys.
  // rerank_oversample > 0: the float32 keys are kept too, and search returns the exact float32
  // top-M of rerank_oversample * M candidates found on the compressed keys. Without re-rank only
  // the compressed keys are held (the memory saving), and get_keys returns them dequantised.
  KeyType key_type = KeyType::kFloat32;
  int64_t rerank_oversample = 0;
};

class KeyStore {
 public:
  static Status Create(const KeyStoreOptions& opts, std::unique_ptr<KeyStore>* out);

  // Appends n keys (n x dim) with values; writes the new ids to ids_out (n). Validates first
  // (finite keys and values, capacity); on error nothing changes.
  Status add(int32_t* ids_out, const float* keys, const float* values, int64_t n);
  // Appends with caller-chosen ids (restoring a saved memory): ids strictly increasing and
  // greater than every id the store has issued.
  Status add_with_ids(const int32_t* ids, const float* keys, const float* values, int64_t n);
  // Memory-maps a float32 key file (n x dim, little-endian, row-major: a snapshot's keys.f32)
  // as the store's first n rows, with these ids (strictly increasing, >= 0) and values (finite).
  // The store must be fresh. Opening reads nothing of the keys: pages are read as searches touch
  // them, and the rows are checked by the first search (Snapshot::prepare). Rows added later
  // go to RAM after them. The file is mapped private and read-only in effect (never written);
  // it must not be truncated or rewritten in place while mapped (snapshots never are: saves
  // write new generations). Tombstones of a mapped store are not compacted automatically;
  // compact() copies the live rows into RAM. bf16 / int8 stores: the compressed keys are built
  // from the file at once (one read); with re-rank the float32 keys it reads stay mapped.
  Status map_keys(const std::string& file, const int32_t* ids, const float* values, int64_t n);
  int64_t mapped_rows() const;  // rows whose float32 keys are in the mapped file
  // Sets values of existing ids; unknown or removed id -> NotFound, nothing changes.
  Status update_values(const int32_t* ids, const float* values, int64_t n);
  // Tombstones ids; unknown, removed or repeated id -> NotFound/Invalid, nothing changes.
  // Compacts when tombstones pass the threshold.
  Status remove(const int32_t* ids, int64_t n);
  // Copies keys (n x dim) / values of existing ids (compressed keys without re-rank: dequantised).
  Status get_keys(float* keys_out, const int32_t* ids, int64_t n) const;
  Status get_values(float* values_out, const int32_t* ids, int64_t n) const;
  // Live ids in insertion order (size() of them).
  void live_ids(int32_t* ids_out) const;
  // Whether each id is live (1) or not (0).
  void contains(uint8_t* out, const int32_t* ids, int64_t n) const;
  // Rewrites the buffers without tombstones (order preserved). Snapshots keep the old ones.
  Status compact();
  void clear();

  Snapshot snapshot() const;
  int64_t size() const { return live_; }
  int64_t rows() const { return rows_; }
  int64_t dim() const { return dim_; }
  int64_t capacity() const { return capacity_; }
  KeyType key_type() const { return key_type_; }
  int64_t rerank_oversample() const { return oversample_; }
  int32_t next_id() const { return next_id_; }
  int64_t reserved_rows() const;
  size_t memory_bytes() const;

 private:
  KeyStore() = default;
  int64_t find_row(int32_t id) const;  // -1 when not present (or tombstoned)
  Status ensure_room(int64_t extra);
  Status grow_mapped(int64_t new_cap);
  ValueBlock* writable_values();
  void append_rows(const int32_t* ids, const float* keys, const float* values, int64_t n);
  Status validate_rows(const float* keys, const float* values, int64_t n, int64_t need_live) const;

  std::shared_ptr<KeyBuffer> keys_;
  std::shared_ptr<ValueBlock> vals_;
  int64_t dim_ = 0, rows_ = 0, live_ = 0, capacity_ = 0;
  NormBounds bounds_;  // of rows [0, rows_)
  int32_t next_id_ = 0;
  KeyType key_type_ = KeyType::kFloat32;
  int64_t oversample_ = 0;
  double compact_fraction_ = 0.25;
  int64_t compact_min_rows_ = 1024;
};

}  // namespace memq
