// The CPU twins' signatures on the device (memq/cuda/cuda_backend.h): validate on the host
// exactly as kernels.cpp does (on error nothing is written), upload, compute, download.
// Keys are float32 here; norms come from the CPU's own row_norms2, so that only the dot
// products differ from the twin (3xTF32 tensor-core products, float32 accumulation).
#include "memq/validate.h"
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "common.cuh"
#include "memq/limits.h"

namespace memq {
namespace cudak {
namespace {

struct Stream {
  cudaStream_t s = nullptr;
  Stream() = default;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream() {  // waits for the stream: buffers declared before it are freed after this
    if (s) {
      cudaStreamSynchronize(s);
      cudaStreamDestroy(s);
    }
  }
  Status create() {
    MEMQ_CUDA_TRY(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    return Status::Ok();
  }
};

template <class T>
Status upload(DevBuf& buf, const T* host, size_t count, cudaStream_t st, const char* what) {
  MEMQ_RETURN_IF_ERROR(buf.ensure(count * sizeof(T), 0, st, what));
  if (count) MEMQ_CUDA_TRY(cudaMemcpyAsync(buf.p, host, count * sizeof(T), cudaMemcpyHostToDevice, st));
  return Status::Ok();
}

// rows x d host floats -> rows x ld device floats, zero padded.
Status upload_padded(DevBuf& buf, const float* host, int64_t rows, int64_t d, int64_t ld, cudaStream_t st,
                     const char* what) {
  const size_t bytes = (size_t)rows * (size_t)ld * sizeof(float);
  MEMQ_RETURN_IF_ERROR(buf.ensure(bytes, 0, st, what));
  if (rows == 0) return Status::Ok();
  MEMQ_CUDA_TRY(cudaMemsetAsync(buf.p, 0, bytes, st));
  MEMQ_CUDA_TRY(cudaMemcpy2DAsync(buf.p, (size_t)ld * sizeof(float), host, (size_t)d * sizeof(float),
                                  (size_t)d * sizeof(float), (size_t)rows, cudaMemcpyHostToDevice, st));
  return Status::Ok();
}

bool finite(float x) { return std::isfinite(x); }

float inv_norm(float n2) { return n2 > 0.0f ? 1.0f / std::sqrt(n2) : 0.0f; }

// Queries: finite, squared norms finite (the CPU twin's prepare_queries).
Status check_queries(const float* queries, int64_t b, int64_t d, std::vector<float>* qn) {
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j < d; ++j)
      if (!finite(queries[i * d + j]))
        return Status::OutOfRange("queries has a non-finite value at row " + std::to_string(i) + ", column " +
                               std::to_string(j));
  qn->resize((size_t)b);
  row_norms2(qn->data(), queries, b, d);
  for (int64_t i = 0; i < b; ++i) {
    double s2 = 0.0;  // limits.h, as the CPU twin
    for (int64_t j = 0; j < d; ++j) s2 += double(queries[i * d + j]) * double(queries[i * d + j]);
    if (!(s2 <= limits::kMaxSquaredNorm) || !finite((*qn)[(size_t)i]))
      return Status::OutOfRange("queries: the squared norm of row " + std::to_string(i) + " is over the limit of " + limits::kMaxSquaredNormText + ", so that distances stay finite in float32");
  }
  return Status::Ok();
}

// The CPU twin's checks, plus the kernels' int32 row index limit.
Status check_keys(const KeyView& keys) {
  MEMQ_RETURN_IF_ERROR(validate_key_view(keys));
  if (keys.n >= std::numeric_limits<int32_t>::max())
    return Status::OutOfRange("the CUDA kernels support fewer than 2^31 - 1 rows");
  return Status::Ok();
}

// Key norms as the CPU twin sees them (given, or row_norms2), validated for alive rows.
Status key_norms(const KeyView& keys, std::vector<float>* kn) {
  if (keys.norms2) {
    kn->assign(keys.norms2, keys.norms2 + keys.n);
  } else {
    kn->resize((size_t)keys.n);
    row_norms2(kn->data(), keys.keys, keys.n, keys.d);
  }
  for (int64_t i = 0; i < keys.n; ++i)
    if ((!keys.alive || keys.alive[i]) && !finite((*kn)[(size_t)i]))
      return Status::OutOfRange("keys: row " + std::to_string(i) + " is not finite (or its squared norm overflows float32)");
  return Status::Ok();
}

// Everything the float32 search/similarity needs on the device.
struct Uploaded {
  DevBuf keys, kn, alive, queries, qn, qinv;
  DevKeys dk;
  DevQueries dq;
};

Status upload_problem(Uploaded& u, const float* queries, int64_t b, const std::vector<float>& qn, const KeyView& keys,
                      const std::vector<float>& kn, cudaStream_t st) {
  const int64_t ld = padded_dim(keys.d);
  MEMQ_RETURN_IF_ERROR(check_free_memory((size_t)(keys.n + b) * (size_t)ld * 4 + (size_t)keys.n * 5, 0, "upload of keys and queries"));
  MEMQ_RETURN_IF_ERROR(upload_padded(u.keys, keys.keys, keys.n, keys.d, ld, st, "keys"));
  MEMQ_RETURN_IF_ERROR(upload(u.kn, kn.data(), kn.size(), st, "key norms"));
  if (keys.alive) MEMQ_RETURN_IF_ERROR(upload(u.alive, keys.alive, (size_t)keys.n, st, "alive flags"));
  MEMQ_RETURN_IF_ERROR(upload_padded(u.queries, queries, b, keys.d, ld, st, "queries"));
  std::vector<float> qinv((size_t)b);
  for (int64_t i = 0; i < b; ++i) qinv[(size_t)i] = inv_norm(qn[(size_t)i]);
  MEMQ_RETURN_IF_ERROR(upload(u.qn, qn.data(), qn.size(), st, "query norms"));
  MEMQ_RETURN_IF_ERROR(upload(u.qinv, qinv.data(), qinv.size(), st, "query inverse norms"));
  u.dk.keys = u.keys.p;
  u.dk.ld = ld;
  u.dk.n = keys.n;
  u.dk.d = keys.d;
  u.dk.norms2 = u.kn.as<float>();
  u.dk.alive = keys.alive ? u.alive.as<uint8_t>() : nullptr;
  u.dk.type = CudaKeyType::kFloat32;
  u.dq.q = u.queries.p;
  u.dq.ld = ld;
  u.dq.b = b;
  u.dq.qn2 = u.qn.as<float>();
  u.dq.qinv = u.qinv.as<float>();
  return Status::Ok();
}

template <class T>
Status download(T* host, const DevBuf& buf, size_t count, cudaStream_t st) {
  if (host && count) MEMQ_CUDA_TRY(cudaMemcpyAsync(host, buf.p, count * sizeof(T), cudaMemcpyDeviceToHost, st));
  return Status::Ok();
}

}  // namespace
}  // namespace cudak

using namespace cudak;

Status cuda_similarity(float* kernel_out, float* dist2_out, const float* queries, int64_t b, const KeyView& keys,
                       const KernelParams& p) {
  MEMQ_RETURN_IF_ERROR(validate_kernel(p));
  if (b < 0) return Status::OutOfRange("b must be >= 0");
  MEMQ_RETURN_IF_ERROR(check_keys(keys));
  if (b == 0 || keys.n == 0) return Status::Ok();
  if (!queries) return Status::Invalid("queries is null");
  if (!kernel_out) return Status::Invalid("kernel_out is null");
  std::vector<float> qn, kn;
  MEMQ_RETURN_IF_ERROR(check_queries(queries, b, keys.d, &qn));
  MEMQ_RETURN_IF_ERROR(key_norms(keys, &kn));
  MEMQ_RETURN_IF_ERROR(ensure_device(0));
  Uploaded u;
  DevBuf ko, d2o;
  Stream st;  // declared after the buffers: destroyed (synchronized) before they are freed
  MEMQ_RETURN_IF_ERROR(st.create());
  MEMQ_RETURN_IF_ERROR(upload_problem(u, queries, b, qn, keys, kn, st.s));
  const size_t total = (size_t)b * (size_t)keys.n;
  MEMQ_RETURN_IF_ERROR(ko.ensure(total * 4, 0, st.s, "similarity output"));
  if (dist2_out) MEMQ_RETURN_IF_ERROR(d2o.ensure(total * 4, 0, st.s, "similarity dist2 output"));
  MEMQ_RETURN_IF_ERROR(similarity_device(ko.as<float>(), dist2_out ? d2o.as<float>() : nullptr, u.dk, u.dq, p, st.s));
  MEMQ_RETURN_IF_ERROR(download(kernel_out, ko, total, st.s));
  if (dist2_out) MEMQ_RETURN_IF_ERROR(download(dist2_out, d2o, total, st.s));
  MEMQ_CUDA_TRY(cudaStreamSynchronize(st.s));
  return Status::Ok();
}

Status cuda_search_topm(int64_t* rows_out, float* kernel_out, float* dist2_out, const float* queries, int64_t b,
                        const KeyView& keys, int64_t m, const KernelParams& p) {
  MEMQ_RETURN_IF_ERROR(validate_kernel(p));
  if (b < 0) return Status::OutOfRange("b must be >= 0");
  if (m < 1) return Status::OutOfRange("m must be >= 1");
  MEMQ_RETURN_IF_ERROR(check_keys(keys));
  if (b == 0) return Status::Ok();
  if (!queries) return Status::Invalid("queries is null");
  if (!rows_out) return Status::Invalid("rows_out is null");
  if (b > std::numeric_limits<int64_t>::max() / m) return Status::OutOfRange("b * m overflows");
  std::vector<float> qn, kn;
  MEMQ_RETURN_IF_ERROR(check_queries(queries, b, keys.d, &qn));
  MEMQ_RETURN_IF_ERROR(key_norms(keys, &kn));
  MEMQ_RETURN_IF_ERROR(ensure_device(0));
  Uploaded u;
  DevBuf ro, ko, d2o, ws;
  Stream st;  // declared after the buffers: destroyed (synchronized) before they are freed
  MEMQ_RETURN_IF_ERROR(st.create());
  MEMQ_RETURN_IF_ERROR(upload_problem(u, queries, b, qn, keys, kn, st.s));
  const size_t total = (size_t)b * (size_t)m;
  MEMQ_RETURN_IF_ERROR(ro.ensure(total * 8, 0, st.s, "search rows output"));
  if (kernel_out) MEMQ_RETURN_IF_ERROR(ko.ensure(total * 4, 0, st.s, "search kernel output"));
  if (dist2_out) MEMQ_RETURN_IF_ERROR(d2o.ensure(total * 4, 0, st.s, "search dist2 output"));
  SearchOut out;
  out.rows = ro.as<int64_t>();
  out.kernel = kernel_out ? ko.as<float>() : nullptr;
  out.dist2 = dist2_out ? d2o.as<float>() : nullptr;
  MEMQ_RETURN_IF_ERROR(search_device(u.dk, u.dq, m, p, out, ws, 0, st.s));
  MEMQ_RETURN_IF_ERROR(download(rows_out, ro, total, st.s));
  if (kernel_out) MEMQ_RETURN_IF_ERROR(download(kernel_out, ko, total, st.s));
  if (dist2_out) MEMQ_RETURN_IF_ERROR(download(dist2_out, d2o, total, st.s));
  MEMQ_CUDA_TRY(cudaStreamSynchronize(st.s));
  return Status::Ok();
}

Status cuda_kernel_weighted_value(float* value_out, float* confidence_out, const int64_t* rows, const float* kernel,
                                  const float* row_values, int64_t n_rows, int64_t b, int64_t m, float void_weight,
                                  float void_value) {
  MEMQ_RETURN_IF_ERROR(validate_kernel_weighted_value_args(rows, kernel, row_values, n_rows, b, m, void_weight, void_value, value_out));
  if (b == 0) return Status::Ok();
  MEMQ_RETURN_IF_ERROR(ensure_device(0));
  DevBuf dr, dk, dv, vo, co;
  Stream st;
  MEMQ_RETURN_IF_ERROR(st.create());
  const size_t total = (size_t)b * (size_t)m;
  MEMQ_RETURN_IF_ERROR(upload(dr, rows, total, st.s, "rows"));
  MEMQ_RETURN_IF_ERROR(upload(dk, kernel, total, st.s, "kernel"));
  MEMQ_RETURN_IF_ERROR(upload(dv, row_values, (size_t)n_rows, st.s, "row values"));
  MEMQ_RETURN_IF_ERROR(vo.ensure((size_t)b * 4, 0, st.s, "values output"));
  if (confidence_out) MEMQ_RETURN_IF_ERROR(co.ensure((size_t)b * 4, 0, st.s, "confidence output"));
  MEMQ_RETURN_IF_ERROR(kwv_device(vo.as<float>(), confidence_out ? co.as<float>() : nullptr, dr.as<int64_t>(),
                                  dk.as<float>(), dv.as<float>(), b, m, void_weight, void_value, st.s));
  MEMQ_RETURN_IF_ERROR(download(value_out, vo, (size_t)b, st.s));
  if (confidence_out) MEMQ_RETURN_IF_ERROR(download(confidence_out, co, (size_t)b, st.s));
  MEMQ_CUDA_TRY(cudaStreamSynchronize(st.s));
  return Status::Ok();
}

Status cuda_kl_improve(float* policy_out, float* value_out, const float* log_prior, const float* q, int64_t rows,
                       int64_t cols, const int32_t* row_lengths, float alpha) {
  MEMQ_RETURN_IF_ERROR(validate_kl_improve_args(log_prior, q, rows, cols, row_lengths, alpha, policy_out, value_out));
  if (rows == 0) return Status::Ok();
  MEMQ_RETURN_IF_ERROR(ensure_device(0));
  DevBuf dlp, dq, dlen, po, vo;
  Stream st;
  MEMQ_RETURN_IF_ERROR(st.create());
  const size_t total = (size_t)rows * (size_t)cols;
  MEMQ_RETURN_IF_ERROR(upload(dlp, log_prior, total, st.s, "log_prior"));
  MEMQ_RETURN_IF_ERROR(upload(dq, q, total, st.s, "q"));
  if (row_lengths) MEMQ_RETURN_IF_ERROR(upload(dlen, row_lengths, (size_t)rows, st.s, "row_lengths"));
  if (total) MEMQ_RETURN_IF_ERROR(po.ensure(total * 4, 0, st.s, "policy output"));
  MEMQ_RETURN_IF_ERROR(vo.ensure((size_t)rows * 4, 0, st.s, "value output"));
  MEMQ_RETURN_IF_ERROR(kl_device(total ? po.as<float>() : nullptr, vo.as<float>(), dlp.as<float>(), dq.as<float>(),
                                 rows, cols, row_lengths ? dlen.as<int32_t>() : nullptr, alpha, st.s));
  if (total) MEMQ_RETURN_IF_ERROR(download(policy_out, po, total, st.s));
  MEMQ_RETURN_IF_ERROR(download(value_out, vo, (size_t)rows, st.s));
  MEMQ_CUDA_TRY(cudaStreamSynchronize(st.s));
  return Status::Ok();
}

}  // namespace memq
