// CudaKeyStore: the key store of key_store.h with its keys resident on the device.
// Host mirror: ids, values, alive flags (validation, lookups, get_values). Device: keys (padded
// rows of the stored type), squared norms, alive flags, values, ids. Every operation runs under
// the store's mutex, in order, on the store's stream (see cuda_backend.h for the consistency
// argument).
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <string>
#include <vector>

#include "common.cuh"
#include "memq/limits.h"

namespace memq {

using namespace cudak;

namespace {

std::string num(int64_t v) { return std::to_string(v); }
// A non-finite float as JavaScript spells it (the messages users see name the value).
const char* nonfinite_name(float x) { return std::isnan(x) ? "NaN" : x > 0 ? "Infinity" : "-Infinity"; }

__global__ void scatter_values_kernel(float* values, const int32_t* idx, const float* v, int64_t n) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) values[idx[i]] = v[i];
}
__global__ void clear_alive_kernel(uint8_t* alive, const int32_t* idx, int64_t n) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) alive[idx[i]] = 0;
}
// New row j <- old row src[j] (one warp per row; row_bytes is a multiple of 128).
__global__ void compact_kernel(char* nk, const char* ok, size_t row_bytes, float* nn, const float* on, float* nv,
                               const float* ov, int32_t* nid, const int32_t* oid, const int32_t* src, int64_t n) {
  const int64_t j = (int64_t)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (j >= n) return;
  const int64_t r = src[j];
  const uint4* s = reinterpret_cast<const uint4*>(ok + (size_t)r * row_bytes);
  uint4* d = reinterpret_cast<uint4*>(nk + (size_t)j * row_bytes);
  for (size_t v = lane; v < row_bytes / 16; v += 32) d[v] = s[v];
  if (lane == 0) {
    nn[j] = on[r];
    nv[j] = ov[r];
    nid[j] = oid[r];
  }
}

unsigned blocks_for(int64_t n, int per) { return (unsigned)((n + per - 1) / per); }

}  // namespace

struct CudaKeyStore::Impl {
  mutable std::mutex mu;
  int device = 0;
  cudaStream_t stream = nullptr;
  CudaKeyType type = CudaKeyType::kFloat32;
  int64_t dim = 0, ld = 0, capacity = 0, rows = 0, live = 0, reserved = 0;
  int32_t next_id = 0;
  double compact_fraction = 0.25;
  int64_t compact_min_rows = 1024;
  int64_t reserve_bytes = 0;
  // host mirror (rows entries)
  std::vector<int32_t> ids;
  std::vector<float> values;
  std::vector<uint8_t> alive;
  // device, `reserved` rows each
  DevBuf keys, norms, dalive, dvalues, dids;
  // scratch
  mutable DevBuf staging, idx, vbuf, qbuf, qn, qinv, ws, o_rows, o_kernel, o_dist2, o_ids, o_val, o_conf;

  size_t row_bytes() const { return (size_t)ld * key_type_size(type); }

  ~Impl() {
    cudaSetDevice(device);  // the buffers and the stream belong to this device
    if (stream) cudaStreamSynchronize(stream);
    DevBuf* all[] = {&keys, &norms, &dalive, &dvalues, &dids, &staging, &idx, &vbuf, &qbuf, &qn, &qinv,
                     &ws, &o_rows, &o_kernel, &o_dist2, &o_ids, &o_val, &o_conf};
    for (DevBuf* b : all) b->release();
    if (stream) cudaStreamDestroy(stream);
  }

  Status use_device() const {
    MEMQ_CUDA_TRY(cudaSetDevice(device));
    return Status::Ok();
  }

  int64_t find_row(int32_t id) const {
    if (rows == 0) return -1;
    auto it = std::lower_bound(ids.begin(), ids.begin() + rows, id);
    if (it == ids.begin() + rows || *it != id) return -1;
    const int64_t r = it - ids.begin();
    return alive[(size_t)r] ? r : -1;
  }

  // Allocates `cap` rows of every per-row buffer into the given (empty) buffers.
  Status alloc_rows(int64_t cap, DevBuf& k, DevBuf& n, DevBuf& a, DevBuf& v, DevBuf& i) {
    const size_t per_row = row_bytes() + 4 + 1 + 4 + 4;
    MEMQ_RETURN_IF_ERROR(check_free_memory((size_t)cap * per_row, reserve_bytes,
                                           ("key store of " + num(cap) + " rows x " + num(dim) + " " +
                                            cuda_key_type_name(type) + " keys")
                                               .c_str()));
    MEMQ_RETURN_IF_ERROR(k.ensure((size_t)cap * row_bytes(), reserve_bytes, stream, "key store keys"));
    MEMQ_RETURN_IF_ERROR(n.ensure((size_t)cap * 4, reserve_bytes, stream, "key store norms"));
    MEMQ_RETURN_IF_ERROR(a.ensure((size_t)cap, reserve_bytes, stream, "key store alive flags"));
    MEMQ_RETURN_IF_ERROR(v.ensure((size_t)cap * 4, reserve_bytes, stream, "key store values"));
    MEMQ_RETURN_IF_ERROR(i.ensure((size_t)cap * 4, reserve_bytes, stream, "key store ids"));
    return Status::Ok();
  }

  void swap_rows(DevBuf& k, DevBuf& n, DevBuf& a, DevBuf& v, DevBuf& i) {
    std::swap(keys.p, k.p), std::swap(keys.bytes, k.bytes);
    std::swap(norms.p, n.p), std::swap(norms.bytes, n.bytes);
    std::swap(dalive.p, a.p), std::swap(dalive.bytes, a.bytes);
    std::swap(dvalues.p, v.p), std::swap(dvalues.bytes, v.bytes);
    std::swap(dids.p, i.p), std::swap(dids.bytes, i.bytes);
  }

  // Room for `extra` more rows: grow by 1.5x (or exactly, when 1.5x does not fit), copying the
  // existing rows device to device.
  Status ensure_room(int64_t extra) {
    const int64_t need = rows + extra;
    if (need <= reserved) return Status::Ok();
    int64_t cap = std::max<int64_t>({need, reserved + reserved / 2, 256});
    DevBuf k, n, a, v, i;
    Status st = alloc_rows(cap, k, n, a, v, i);
    if (!st.ok() && st.code() == StatusCode::kOutOfMemory && cap > need) {
      k.release(), n.release(), a.release(), v.release(), i.release();
      cap = need;
      st = alloc_rows(cap, k, n, a, v, i);
    }
    MEMQ_RETURN_IF_ERROR(st);
    if (rows > 0) {
      MEMQ_CUDA_TRY(cudaMemcpyAsync(k.p, keys.p, (size_t)rows * row_bytes(), cudaMemcpyDeviceToDevice, stream));
      MEMQ_CUDA_TRY(cudaMemcpyAsync(n.p, norms.p, (size_t)rows * 4, cudaMemcpyDeviceToDevice, stream));
      MEMQ_CUDA_TRY(cudaMemcpyAsync(a.p, dalive.p, (size_t)rows, cudaMemcpyDeviceToDevice, stream));
      MEMQ_CUDA_TRY(cudaMemcpyAsync(v.p, dvalues.p, (size_t)rows * 4, cudaMemcpyDeviceToDevice, stream));
      MEMQ_CUDA_TRY(cudaMemcpyAsync(i.p, dids.p, (size_t)rows * 4, cudaMemcpyDeviceToDevice, stream));
    }
    MEMQ_CUDA_TRY(cudaStreamSynchronize(stream));  // the old buffers (now in k..i) are freed on return
    swap_rows(k, n, a, v, i);
    reserved = cap;
    return Status::Ok();
  }

  // Finite, representable in the stored type, squared norm (of the rounded row) <= 2^125 (limits.h).
  Status validate_rows(const float* k, const float* v, int64_t n, int64_t need_live) const {
    if (n < 0) return Status::OutOfRange("n must be >= 0");
    if (n > 0 && (!k || !v)) return Status::Invalid("keys and values must not be null");
    for (int64_t r = 0; r < n; ++r) {
      double s = 0.0;
      for (int64_t c = 0; c < dim; ++c) {
        const int64_t e = r * dim + c;
        const float x = k[e];
        if (!std::isfinite(x))
          return Status::OutOfRange("keys must be finite: keys[" + num(e) + "] (row " + num(r) + ", column " + num(c) +
                                 ") is " + nonfinite_name(x));
        const float y = type == CudaKeyType::kBFloat16 ? round_to_bf16(x)
                        : type == CudaKeyType::kFloat16 ? round_to_fp16(x)
                                                        : x;
        if (!std::isfinite(y))
          return Status::OutOfRange("keys[" + num(e) + "] = " + std::to_string(x) + " is outside the range of " +
                                 cuda_key_type_name(type) + " keys");
        s += (double)y * (double)y;
      }
      if (!(s <= limits::kMaxSquaredNorm))
        return Status::OutOfRange("keys: the squared norm of row " + num(r) + " is over the limit of " + limits::kMaxSquaredNormText + ", so that distances stay finite in float32");
    }
    for (int64_t i = 0; i < n; ++i)
      if (!std::isfinite(v[i])) return Status::OutOfRange("values must be finite: values[" + num(i) + "] is " + nonfinite_name(v[i]));
    if (capacity > 0 && live + need_live > capacity)
      return Status::Capacity("capacity exceeded: the store holds " + num(live) + " of at most " + num(capacity) +
                              " cases and cannot take " + num(need_live) + " more");
    return Status::Ok();
  }

  Status append_rows(const int32_t* new_ids, const float* k, const float* v, int64_t n) {
    MEMQ_RETURN_IF_ERROR(ensure_room(n));
    // Keys: through a float32 staging buffer of at most ~64 MiB, converted in place.
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(n, (64ll << 20) / (dim * 4)));
    MEMQ_RETURN_IF_ERROR(staging.ensure((size_t)chunk * dim * 4, reserve_bytes, stream, "key upload staging"));
    for (int64_t r0 = 0; r0 < n; r0 += chunk) {
      const int64_t c = std::min(chunk, n - r0);
      MEMQ_CUDA_TRY(cudaMemcpyAsync(staging.p, k + r0 * dim, (size_t)c * dim * 4, cudaMemcpyHostToDevice, stream));
      MEMQ_RETURN_IF_ERROR(convert_rows(keys.as<char>() + (size_t)(rows + r0) * row_bytes(), norms.as<float>() + rows + r0,
                                        nullptr, staging.as<float>(), c, dim, ld, type, stream));
    }
    MEMQ_CUDA_TRY(cudaMemcpyAsync(dvalues.as<float>() + rows, v, (size_t)n * 4, cudaMemcpyHostToDevice, stream));
    MEMQ_CUDA_TRY(cudaMemcpyAsync(dids.as<int32_t>() + rows, new_ids, (size_t)n * 4, cudaMemcpyHostToDevice, stream));
    MEMQ_CUDA_TRY(cudaMemsetAsync(dalive.as<uint8_t>() + rows, 1, (size_t)n, stream));
    MEMQ_CUDA_TRY(cudaStreamSynchronize(stream));  // the host buffers may be reused by the caller
    ids.insert(ids.end(), new_ids, new_ids + n);
    values.insert(values.end(), v, v + n);
    alive.insert(alive.end(), (size_t)n, uint8_t{1});
    rows += n;
    live += n;
    return Status::Ok();
  }

  Status upload_rows_idx(const std::vector<int32_t>& r) {
    MEMQ_RETURN_IF_ERROR(idx.ensure(r.size() * 4, reserve_bytes, stream, "row index scratch"));
    MEMQ_CUDA_TRY(cudaMemcpyAsync(idx.p, r.data(), r.size() * 4, cudaMemcpyHostToDevice, stream));
    return Status::Ok();
  }

  Status compact_locked() {
    if (live == rows) return Status::Ok();
    std::vector<int32_t> src;
    src.reserve((size_t)live);
    for (int64_t r = 0; r < rows; ++r)
      if (alive[(size_t)r]) src.push_back((int32_t)r);
    const int64_t cap = std::max<int64_t>(live + live / 4, 256);
    DevBuf k, n, a, v, i;
    MEMQ_RETURN_IF_ERROR(alloc_rows(cap, k, n, a, v, i));
    if (live > 0) {
      MEMQ_RETURN_IF_ERROR(upload_rows_idx(src));
      compact_kernel<<<blocks_for(live, 8), 256, 0, stream>>>(k.as<char>(), keys.as<const char>(), row_bytes(),
                                                             n.as<float>(), norms.as<const float>(), v.as<float>(),
                                                             dvalues.as<const float>(), i.as<int32_t>(),
                                                             dids.as<const int32_t>(), idx.as<const int32_t>(), live);
      MEMQ_CUDA_LAUNCH("compact_kernel");
      MEMQ_CUDA_TRY(cudaMemsetAsync(a.p, 1, (size_t)live, stream));
    }
    MEMQ_CUDA_TRY(cudaStreamSynchronize(stream));
    swap_rows(k, n, a, v, i);
    reserved = cap;
    std::vector<int32_t> nid;
    std::vector<float> nval;
    nid.reserve((size_t)live);
    nval.reserve((size_t)live);
    for (int32_t r : src) {
      nid.push_back(ids[(size_t)r]);
      nval.push_back(values[(size_t)r]);
    }
    ids.swap(nid);
    values.swap(nval);
    alive.assign((size_t)live, uint8_t{1});
    rows = live;
    return Status::Ok();
  }

  // Queries (host or device float32, b x dim) -> qbuf / qn / qinv in the stored type.
  Status prepare_queries(const float* q, int64_t b, bool on_device) {
    MEMQ_RETURN_IF_ERROR(qbuf.ensure((size_t)b * row_bytes(), reserve_bytes, stream, "query buffer"));
    MEMQ_RETURN_IF_ERROR(qn.ensure((size_t)b * 4, reserve_bytes, stream, "query norms"));
    MEMQ_RETURN_IF_ERROR(qinv.ensure((size_t)b * 4, reserve_bytes, stream, "query inverse norms"));
    const float* src = q;
    if (!on_device) {
      MEMQ_RETURN_IF_ERROR(staging.ensure((size_t)b * dim * 4, reserve_bytes, stream, "query upload staging"));
      MEMQ_CUDA_TRY(cudaMemcpyAsync(staging.p, q, (size_t)b * dim * 4, cudaMemcpyHostToDevice, stream));
      src = staging.as<float>();
    }
    return convert_rows(qbuf.p, qn.as<float>(), qinv.as<float>(), src, b, dim, ld, type, stream);
  }

  Status validate_queries(const float* q, int64_t b) const {
    for (int64_t r = 0; r < b; ++r) {
      double s = 0.0;
      for (int64_t c = 0; c < dim; ++c) {
        const float x = q[r * dim + c];
        if (!std::isfinite(x))
          return Status::OutOfRange("queries has a non-finite value at row " + num(r) + ", column " + num(c));
        const float y = type == CudaKeyType::kBFloat16 ? round_to_bf16(x)
                        : type == CudaKeyType::kFloat16 ? round_to_fp16(x)
                                                        : x;
        if (!std::isfinite(y))
          return Status::OutOfRange("queries: row " + num(r) + ", column " + num(c) + " is outside the range of " +
                                 cuda_key_type_name(type));
        s += (double)y * (double)y;
      }
      if (!(s <= limits::kMaxSquaredNorm))
        return Status::OutOfRange("queries: the squared norm of row " + num(r) + " is over the limit of " + limits::kMaxSquaredNormText + ", so that distances stay finite in float32");
    }
    return Status::Ok();
  }

  DevKeys dev_keys() const {
    DevKeys k;
    k.keys = keys.p;
    k.ld = ld;
    k.n = rows;
    k.d = dim;
    k.norms2 = norms.as<float>();
    k.alive = live < rows ? dalive.as<uint8_t>() : nullptr;
    k.type = type;
    return k;
  }
  DevQueries dev_queries(int64_t b) const {
    DevQueries q;
    q.q = qbuf.p;
    q.ld = ld;
    q.b = b;
    q.qn2 = qn.as<float>();
    q.qinv = qinv.as<float>();
    return q;
  }

  Status check_search_args(const float* queries, int64_t b, int64_t m, const KernelParams& p) const {
    MEMQ_RETURN_IF_ERROR(validate_kernel(p));
    if (b < 0) return Status::OutOfRange("b must be >= 0");
    if (m < 1) return Status::OutOfRange("m must be >= 1");
    if (b > 0 && !queries) return Status::Invalid("queries is null");
    if (b > 0 && b > std::numeric_limits<int64_t>::max() / m) return Status::OutOfRange("b * m overflows");
    return Status::Ok();
  }
};

CudaKeyStore::CudaKeyStore() : impl_(new Impl()) {}
CudaKeyStore::~CudaKeyStore() = default;

Status CudaKeyStore::Create(const CudaKeyStoreOptions& opts, std::unique_ptr<CudaKeyStore>* out) {
  if (!out) return Status::Invalid("out is null");
  if (opts.dim < 1 || opts.dim > (1 << 20))
    return Status::OutOfRange("dim must be an integer in [1, 1048576], got " + num(opts.dim));
  if (opts.capacity < 0 || opts.capacity > std::numeric_limits<int32_t>::max())
    return Status::OutOfRange("capacity must be 0 (unlimited) or a positive integer < 2^31, got " + num(opts.capacity));
  if (!(opts.compact_fraction > 0.0 && opts.compact_fraction <= 1.0))
    return Status::OutOfRange("compact_fraction must be in (0, 1]");
  if (opts.key_type != CudaKeyType::kFloat32 && opts.key_type != CudaKeyType::kBFloat16 &&
      opts.key_type != CudaKeyType::kFloat16)
    return Status::Invalid("key_type must be float32, bf16 or fp16");
  if (opts.initial_rows < 0 || opts.initial_rows >= std::numeric_limits<int32_t>::max())
    return Status::OutOfRange("initial_rows must be in [0, 2^31 - 1)");
  MEMQ_RETURN_IF_ERROR(ensure_device(opts.device));
  std::unique_ptr<CudaKeyStore> s(new CudaKeyStore());
  Impl& I = *s->impl_;
  I.device = opts.device;
  I.type = opts.key_type;
  I.dim = opts.dim;
  I.ld = padded_dim(opts.dim);
  I.capacity = opts.capacity;
  I.compact_fraction = opts.compact_fraction;
  I.compact_min_rows = std::max<int64_t>(0, opts.compact_min_rows);
  I.reserve_bytes = std::max<int64_t>(0, opts.reserve_bytes);
  MEMQ_CUDA_TRY(cudaStreamCreateWithFlags(&I.stream, cudaStreamNonBlocking));
  if (opts.initial_rows > 0) MEMQ_RETURN_IF_ERROR(I.ensure_room(opts.initial_rows));
  *out = std::move(s);
  return Status::Ok();
}

Status CudaKeyStore::add(int32_t* ids_out, const float* keys, const float* values, int64_t n) {
  Impl& I = *impl_;
  std::lock_guard<std::mutex> lock(I.mu);
  MEMQ_RETURN_IF_ERROR(I.validate_rows(keys, values, n, n));
  if (n == 0) return Status::Ok();
  if ((int64_t)I.next_id + n > std::numeric_limits<int32_t>::max())
    return Status::Capacity("id space exhausted: ids are int32 and " + num(I.next_id) + " have been issued");
  MEMQ_RETURN_IF_ERROR(I.use_device());
  std::vector<int32_t> ids((size_t)n);
  for (int64_t i = 0; i < n; ++i) ids[(size_t)i] = I.next_id + (int32_t)i;
  MEMQ_RETURN_IF_ERROR(I.append_rows(ids.data(), keys, values, n));
  I.next_id += (int32_t)n;
  if (ids_out) std::memcpy(ids_out, ids.data(), (size_t)n * 4);
  return Status::Ok();
}

Status CudaKeyStore::add_with_ids(const int32_t* ids, const float* keys, const float* values, int64_t n) {
  Impl& I = *impl_;
  std::lock_guard<std::mutex> lock(I.mu);
  MEMQ_RETURN_IF_ERROR(I.validate_rows(keys, values, n, n));
  if (n == 0) return Status::Ok();
  if (!ids) return Status::Invalid("ids must not be null");
  int32_t prev = I.next_id - 1;
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0) return Status::OutOfRange("ids must be >= 0: ids[" + num(i) + "] is " + num(ids[i]));
    if (ids[i] <= prev)
      return Status::OutOfRange("ids must be strictly increasing and greater than every id already issued (" +
                             num(I.next_id - 1) + "): ids[" + num(i) + "] is " + num(ids[i]));
    prev = ids[i];
  }
  if (prev == std::numeric_limits<int32_t>::max()) return Status::OutOfRange("id 2147483647 is reserved");
  MEMQ_RETURN_IF_ERROR(I.use_device());
  MEMQ_RETURN_IF_ERROR(I.append_rows(ids, keys, values, n));
  I.next_id = prev + 1;
  return Status::Ok();
}

Status CudaKeyStore::update_values(const int32_t* ids, const float* values, int64_t n) {
  Impl& I = *impl_;
  std::lock_guard<std::mutex> lock(I.mu);
  if (n < 0) return Status::OutOfRange("n must be >= 0");
  if (n > 0 && (!ids || !values)) return Status::Invalid("ids and values must not be null");
  std::vector<int32_t> rows((size_t)n);
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(values[i])) return Status::OutOfRange("values must be finite: values[" + num(i) + "] is " + nonfinite_name(values[i]));
    const int64_t r = I.find_row(ids[i]);
    if (r < 0) return Status::NotFound("unknown id: ids[" + num(i) + "] = " + num(ids[i]));
    rows[(size_t)i] = (int32_t)r;
  }
  if (n == 0) return Status::Ok();
  // A repeated id: the last value wins (as on the CPU); the scatter gets each row once, so that
  // the device never races two writes to one value.
  std::vector<int32_t> urows;
  std::vector<float> uvals;
  {
    std::vector<uint8_t> seen;
    for (int64_t i = n - 1; i >= 0; --i) {
      const int32_t r = rows[(size_t)i];
      if ((size_t)r >= seen.size()) seen.resize((size_t)r + 1, 0);
      if (seen[(size_t)r]) continue;
      seen[(size_t)r] = 1;
      urows.push_back(r);
      uvals.push_back(values[i]);
    }
  }
  const int64_t un = (int64_t)urows.size();
  MEMQ_RETURN_IF_ERROR(I.use_device());
  MEMQ_RETURN_IF_ERROR(I.upload_rows_idx(urows));
  MEMQ_RETURN_IF_ERROR(I.vbuf.ensure((size_t)un * 4, I.reserve_bytes, I.stream, "value scratch"));
  MEMQ_CUDA_TRY(cudaMemcpyAsync(I.vbuf.p, uvals.data(), (size_t)un * 4, cudaMemcpyHostToDevice, I.stream));
  scatter_values_kernel<<<blocks_for(un, 256), 256, 0, I.stream>>>(I.dvalues.as<float>(), I.idx.as<const int32_t>(),
                                                                   I.vbuf.as<const float>(), un);
  MEMQ_CUDA_LAUNCH("scatter_values_kernel");
  MEMQ_CUDA_TRY(cudaStreamSynchronize(I.stream));
  for (int64_t i = 0; i < n; ++i) I.values[(size_t)rows[(size_t)i]] = values[i];  // later duplicates win, as on the CPU
  return Status::Ok();
}

Status CudaKeyStore::remove(const int32_t* ids, int64_t n) {
  Impl& I = *impl_;
  std::lock_guard<std::mutex> lock(I.mu);
  if (n < 0) return Status::OutOfRange("n must be >= 0");
  if (n > 0 && !ids) return Status::Invalid("ids must not be null");
  std::vector<int32_t> rows((size_t)n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = I.find_row(ids[i]);
    if (r < 0) return Status::NotFound("unknown id: ids[" + num(i) + "] = " + num(ids[i]));
    rows[(size_t)i] = (int32_t)r;
  }
  std::vector<int32_t> sorted = rows;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
    return Status::OutOfRange("ids must not repeat within one remove call");
  if (n == 0) return Status::Ok();
  MEMQ_RETURN_IF_ERROR(I.use_device());
  MEMQ_RETURN_IF_ERROR(I.upload_rows_idx(rows));
  clear_alive_kernel<<<blocks_for(n, 256), 256, 0, I.stream>>>(I.dalive.as<uint8_t>(), I.idx.as<const int32_t>(), n);
  MEMQ_CUDA_LAUNCH("clear_alive_kernel");
  MEMQ_CUDA_TRY(cudaStreamSynchronize(I.stream));
  for (int32_t r : rows) I.alive[(size_t)r] = 0;
  I.live -= n;
  const int64_t dead = I.rows - I.live;
  if (dead >= I.compact_min_rows && (double)dead > I.compact_fraction * (double)I.rows) {
    Status st = I.compact_locked();
    // Tombstones are correct without compaction: a compaction that does not fit is skipped.
    if (!st.ok() && st.code() != StatusCode::kOutOfMemory) return st;
  }
  return Status::Ok();
}

Status CudaKeyStore::get_keys(float* keys_out, const int32_t* ids, int64_t n) const {
  Impl& I = *impl_;
  std::lock_guard<std::mutex> lock(I.mu);
  if (n < 0) return Status::OutOfRange("n must be >= 0");
  if (n > 0 && (!ids || !keys_out)) return Status::Invalid("ids and keys_out must not be null");
  std::vector<int32_t> rows((size_t)n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = I.find_row(ids[i]);
    if (r < 0) return Status::NotFound("unknown id: ids[" + num(i) + "] = " + num(ids[i]));
    rows[(size_t)i] = (int32_t)r;
  }
  if (n == 0) return Status::Ok();
  MEMQ_RETURN_IF_ERROR(I.use_device());
  MEMQ_RETURN_IF_ERROR(const_cast<Impl&>(I).upload_rows_idx(rows));
  MEMQ_RETURN_IF_ERROR(I.staging.ensure((size_t)n * I.dim * 4, I.reserve_bytes, I.stream, "get_keys staging"));
  MEMQ_RETURN_IF_ERROR(gather_rows_f32(I.staging.as<float>(), I.keys.p, I.idx.as<const int32_t>(), n, I.dim, I.ld,
                                       I.type, I.stream));
  MEMQ_CUDA_TRY(cudaMemcpyAsync(keys_out, I.staging.p, (size_t)n * I.dim * 4, cudaMemcpyDeviceToHost, I.stream));
  MEMQ_CUDA_TRY(cudaStreamSynchronize(I.stream));
  return Status::Ok();
}

Status CudaKeyStore::get_values(float* values_out, const int32_t* ids, int64_t n) const {
  const Impl& I = *impl_;
  std::lock_guard<std::mutex> lock(I.mu);
  if (n < 0) return Status::OutOfRange("n must be >= 0");
  std::vector<int64_t> rows((size_t)n);
  for (int64_t i = 0; i < n; ++i) {
    rows[(size_t)i] = I.find_row(ids[i]);
    if (rows[(size_t)i] < 0) return Status::NotFound("unknown id: ids[" + num(i) + "] = " + num(ids[i]));
  }
  for (int64_t i = 0; i < n; ++i) values_out[i] = I.values[(size_t)rows[(size_t)i]];
  return Status::Ok();
}

void CudaKeyStore::live_ids(int32_t* ids_out) const {
  const Impl& I = *impl_;
  std::lock_guard<std::mutex> lock(I.mu);
  int64_t j = 0;
  for (int64_t r = 0; r < I.rows; ++r)
    if (I.alive[(size_t)r]) ids_out[j++] = I.ids[(size_t)r];
}

void CudaKeyStore::contains(uint8_t* out, const int32_t* ids, int64_t n) const {
  const Impl& I = *impl_;
  std::lock_guard<std::mutex> lock(I.mu);
  for (int64_t i = 0; i < n; ++i) out[i] = I.find_row(ids[i]) >= 0 ? 1 : 0;
}

Status CudaKeyStore::compact() {
  Impl& I = *impl_;
  std::lock_guard<std::mutex> lock(I.mu);
  MEMQ_RETURN_IF_ERROR(I.use_device());
  return I.compact_locked();
}

void CudaKeyStore::clear() {
  Impl& I = *impl_;
  std::lock_guard<std::mutex> lock(I.mu);
  if (I.use_device().ok()) cudaStreamSynchronize(I.stream);
  I.keys.release(), I.norms.release(), I.dalive.release(), I.dvalues.release(), I.dids.release();
  I.ids.clear(), I.values.clear(), I.alive.clear();
  I.rows = I.live = I.reserved = 0;
}

Status CudaKeyStore::search_topm(int64_t* rows_out, int32_t* ids_out, float* kernel_out, float* dist2_out,
                                 const float* queries, int64_t b, int64_t m, const KernelParams& p) {
  Impl& I = *impl_;
  std::lock_guard<std::mutex> lock(I.mu);
  MEMQ_RETURN_IF_ERROR(I.check_search_args(queries, b, m, p));
  if (b == 0) return Status::Ok();
  if (!rows_out) return Status::Invalid("rows_out is null");
  MEMQ_RETURN_IF_ERROR(I.validate_queries(queries, b));
  MEMQ_RETURN_IF_ERROR(I.use_device());
  MEMQ_RETURN_IF_ERROR(I.prepare_queries(queries, b, false));
  const size_t total = (size_t)b * (size_t)m;
  MEMQ_RETURN_IF_ERROR(I.o_rows.ensure(total * 8, I.reserve_bytes, I.stream, "search rows output"));
  if (ids_out) MEMQ_RETURN_IF_ERROR(I.o_ids.ensure(total * 4, I.reserve_bytes, I.stream, "search ids output"));
  if (kernel_out) MEMQ_RETURN_IF_ERROR(I.o_kernel.ensure(total * 4, I.reserve_bytes, I.stream, "search kernel output"));
  if (dist2_out) MEMQ_RETURN_IF_ERROR(I.o_dist2.ensure(total * 4, I.reserve_bytes, I.stream, "search dist2 output"));
  SearchOut out;
  out.rows = I.o_rows.as<int64_t>();
  out.ids = ids_out ? I.o_ids.as<int32_t>() : nullptr;
  out.id_map = I.dids.as<int32_t>();
  out.kernel = kernel_out ? I.o_kernel.as<float>() : nullptr;
  out.dist2 = dist2_out ? I.o_dist2.as<float>() : nullptr;
  MEMQ_RETURN_IF_ERROR(search_device(I.dev_keys(), I.dev_queries(b), m, p, out, I.ws, I.reserve_bytes, I.stream));
  MEMQ_CUDA_TRY(cudaMemcpyAsync(rows_out, out.rows, total * 8, cudaMemcpyDeviceToHost, I.stream));
  if (ids_out) MEMQ_CUDA_TRY(cudaMemcpyAsync(ids_out, out.ids, total * 4, cudaMemcpyDeviceToHost, I.stream));
  if (kernel_out) MEMQ_CUDA_TRY(cudaMemcpyAsync(kernel_out, out.kernel, total * 4, cudaMemcpyDeviceToHost, I.stream));
  if (dist2_out) MEMQ_CUDA_TRY(cudaMemcpyAsync(dist2_out, out.dist2, total * 4, cudaMemcpyDeviceToHost, I.stream));
  MEMQ_CUDA_TRY(cudaStreamSynchronize(I.stream));
  return Status::Ok();
}

Status CudaKeyStore::search_value(float* value_out, float* confidence_out, const float* queries, int64_t b, int64_t m,
                                  const KernelParams& p, float void_weight, float void_value) {
  Impl& I = *impl_;
  std::lock_guard<std::mutex> lock(I.mu);
  MEMQ_RETURN_IF_ERROR(I.check_search_args(queries, b, m, p));
  if (!(std::isfinite(void_weight) && void_weight >= 0.0f)) return Status::OutOfRange("void_weight must be finite and >= 0");
  if (!std::isfinite(void_value)) return Status::OutOfRange("void_value must be finite");
  if (b == 0) return Status::Ok();
  if (!value_out) return Status::Invalid("value_out is null");
  MEMQ_RETURN_IF_ERROR(I.validate_queries(queries, b));
  MEMQ_RETURN_IF_ERROR(I.use_device());
  MEMQ_RETURN_IF_ERROR(I.prepare_queries(queries, b, false));
  const size_t total = (size_t)b * (size_t)m;
  MEMQ_RETURN_IF_ERROR(I.o_rows.ensure(total * 8, I.reserve_bytes, I.stream, "search rows output"));
  MEMQ_RETURN_IF_ERROR(I.o_kernel.ensure(total * 4, I.reserve_bytes, I.stream, "search kernel output"));
  MEMQ_RETURN_IF_ERROR(I.o_val.ensure((size_t)b * 4, I.reserve_bytes, I.stream, "value output"));
  MEMQ_RETURN_IF_ERROR(I.o_conf.ensure((size_t)b * 4, I.reserve_bytes, I.stream, "confidence output"));
  SearchOut out;
  out.rows = I.o_rows.as<int64_t>();
  out.kernel = I.o_kernel.as<float>();
  MEMQ_RETURN_IF_ERROR(search_device(I.dev_keys(), I.dev_queries(b), m, p, out, I.ws, I.reserve_bytes, I.stream));
  MEMQ_RETURN_IF_ERROR(kwv_device(I.o_val.as<float>(), I.o_conf.as<float>(), out.rows, out.kernel,
                                  I.dvalues.as<float>(), b, m, void_weight, void_value, I.stream));
  MEMQ_CUDA_TRY(cudaMemcpyAsync(value_out, I.o_val.p, (size_t)b * 4, cudaMemcpyDeviceToHost, I.stream));
  if (confidence_out)
    MEMQ_CUDA_TRY(cudaMemcpyAsync(confidence_out, I.o_conf.p, (size_t)b * 4, cudaMemcpyDeviceToHost, I.stream));
  MEMQ_CUDA_TRY(cudaStreamSynchronize(I.stream));
  return Status::Ok();
}

Status CudaKeyStore::search_topm_device(int64_t* rows_out, float* kernel_out, float* dist2_out,
                                        const float* queries_device, int64_t b, int64_t m, const KernelParams& p) {
  Impl& I = *impl_;
  std::lock_guard<std::mutex> lock(I.mu);
  MEMQ_RETURN_IF_ERROR(I.check_search_args(queries_device, b, m, p));
  if (b == 0) return Status::Ok();
  if (!rows_out) return Status::Invalid("rows_out is null");
  MEMQ_RETURN_IF_ERROR(I.use_device());
  MEMQ_RETURN_IF_ERROR(I.prepare_queries(queries_device, b, true));
  SearchOut out;
  out.rows = rows_out;
  out.kernel = kernel_out;
  out.dist2 = dist2_out;
  return search_device(I.dev_keys(), I.dev_queries(b), m, p, out, I.ws, I.reserve_bytes, I.stream);
}

Status CudaKeyStore::synchronize() const {
  const Impl& I = *impl_;
  std::lock_guard<std::mutex> lock(I.mu);
  MEMQ_RETURN_IF_ERROR(I.use_device());
  MEMQ_CUDA_TRY(cudaStreamSynchronize(I.stream));
  return Status::Ok();
}

void* CudaKeyStore::stream() const { return impl_->stream; }
int64_t CudaKeyStore::size() const { std::lock_guard<std::mutex> l(impl_->mu); return impl_->live; }
int64_t CudaKeyStore::rows() const { std::lock_guard<std::mutex> l(impl_->mu); return impl_->rows; }
int64_t CudaKeyStore::dim() const { return impl_->dim; }
int64_t CudaKeyStore::capacity() const { return impl_->capacity; }
int32_t CudaKeyStore::next_id() const { std::lock_guard<std::mutex> l(impl_->mu); return impl_->next_id; }
int64_t CudaKeyStore::reserved_rows() const { std::lock_guard<std::mutex> l(impl_->mu); return impl_->reserved; }
CudaKeyType CudaKeyStore::key_type() const { return impl_->type; }
int64_t CudaKeyStore::device_bytes() const {
  const Impl& I = *impl_;
  std::lock_guard<std::mutex> lock(I.mu);
  const DevBuf* all[] = {&I.keys, &I.norms, &I.dalive, &I.dvalues, &I.dids, &I.staging, &I.idx, &I.vbuf, &I.qbuf,
                         &I.qn, &I.qinv, &I.ws, &I.o_rows, &I.o_kernel, &I.o_dist2, &I.o_ids, &I.o_val, &I.o_conf};
  int64_t s = 0;
  for (const DevBuf* b : all) s += (int64_t)b->bytes;
  return s;
}

}  // namespace memq
