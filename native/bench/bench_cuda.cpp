// memq's fused CUDA search (CudaKeyStore::search_topm_device: similarity + top-M, no B x N
// matrix) timed on the device, for bench/gpu/run.sh. Writes JSON rows that bench/gpu/merge.py
// joins with PyTorch's (bench/gpu/torch_baseline.py) and prints a table.
//
//   bench_cuda --out memq.json [--n 1000000,10000000] [--d 128,768] [--b 1,64,1024]
//              [--m 32,1024] [--dtype float32,bf16] [--reps 5] [--largest]
//
// Keys are pseudo-random (approximately Gaussian), uploaded through the public add() path in
// chunks of 1M rows into a store reserved up front. Queries and outputs live on the device, as
// PyTorch's do. Timing: CUDA events on the store's stream, median of --reps after 2 warm-ups.
#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "memq/cuda/cuda_backend.h"
#include "memq/cuda/cuda_bench.h"
#include "memq/kernels.h"
#include "memq/thread_pool.h"

using namespace memq;

namespace {

std::vector<int64_t> parse_list(const char* s) {
  std::vector<int64_t> v;
  const char* p = s;
  while (*p) {
    char* end = nullptr;
    long long x = std::strtoll(p, &end, 10);
    if (end == p) break;
    v.push_back(x);
    p = *end == ',' ? end + 1 : end;
  }
  return v;
}
std::vector<std::string> parse_words(const char* s) {
  std::vector<std::string> v;
  std::string cur;
  for (const char* p = s;; ++p) {
    if (*p == ',' || *p == 0) {
      if (!cur.empty()) v.push_back(cur);
      cur.clear();
      if (*p == 0) break;
    } else {
      cur += *p;
    }
  }
  return v;
}

// Approximately N(0, 1): sum of 4 uniforms from a per-row xorshift stream (deterministic).
void fill_rows(float* out, int64_t rows, int64_t d, uint64_t seed0) {
  parallel_for(0, rows, 1024, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      uint64_t s = (seed0 + (uint64_t)r) * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
      for (int64_t c = 0; c < d; ++c) {
        float acc = 0.0f;
        for (int k = 0; k < 4; ++k) {
          s ^= s << 13, s ^= s >> 7, s ^= s << 17;
          acc += (float)(s >> 40) * (1.0f / 16777216.0f);
        }
        out[r * d + c] = (acc - 2.0f) * 1.7320508f;  // variance of the sum of 4 U(0,1) is 1/3
      }
    }
  });
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? NAN : v[v.size() / 2];
}

bool fail(const char* what, const Status& st) {
  if (st.ok()) return false;
  std::fprintf(stderr, "bench_cuda: %s: %s\n", what, st.message().c_str());
  return true;
}

struct Row {
  std::string dtype;
  int64_t n, d, b, m;
  double ms, qps, key_gbps, tflops;
  std::string note;
};

// Builds a store of n rows (bf16/float32) through add() in chunks.
Status build_store(CudaKeyType kt, int64_t n, int64_t d, std::unique_ptr<CudaKeyStore>* out) {
  CudaKeyStoreOptions o;
  o.dim = d;
  o.key_type = kt;
  o.initial_rows = n;
  o.reserve_bytes = 1ll << 30;  // room for the search workspace
  MEMQ_RETURN_IF_ERROR(CudaKeyStore::Create(o, out));
  const int64_t chunk = std::min<int64_t>(n, 1 << 20);
  std::vector<float> keys((size_t)(chunk * d)), vals((size_t)chunk, 0.0f);
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t c = std::min(chunk, n - r0);
    fill_rows(keys.data(), c, d, 1000003ull * (uint64_t)r0 + 17);
    MEMQ_RETURN_IF_ERROR((*out)->add(nullptr, keys.data(), vals.data(), c));
  }
  return Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> ns = {1000000, 10000000}, ds = {128, 768}, bs = {1, 64, 1024}, ms = {32, 1024};
  std::vector<std::string> dtypes = {"float32", "bf16"};
  int reps = 5;
  bool largest = false;
  std::string out_path = "memq_cuda_bench.json";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_cuda: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--n") ns = parse_list(next());
    else if (a == "--d") ds = parse_list(next());
    else if (a == "--b") bs = parse_list(next());
    else if (a == "--m") ms = parse_list(next());
    else if (a == "--dtype") dtypes = parse_words(next());
    else if (a == "--reps") reps = std::max(1, std::atoi(next()));
    else if (a == "--out") out_path = next();
    else if (a == "--largest") largest = true;
    else {
      std::fprintf(stderr, "usage: bench_cuda [--n LIST] [--d LIST] [--b LIST] [--m LIST] [--dtype float32,bf16] "
                           "[--reps R] [--largest] [--out FILE]\n");
      return 2;
    }
  }
  CudaDeviceInfo info;
  Status st = cuda_device_info(&info);
  if (!st.ok()) {
    std::fprintf(stderr, "bench_cuda: no CUDA device: %s\n", info.reason.c_str());
    return 3;
  }
  std::printf("device: %s (cc %d.%d, %d SMs, %.1f GiB)\n", info.name.c_str(), info.cc_major, info.cc_minor,
              info.sm_count, info.total_bytes / 1073741824.0);
  // A failed self-test is reported (and recorded in the JSON) but the timings still run: they
  // are what the GPU session needs to see alongside the failure.
  std::string report, self_test = "passed";
  st = cuda_self_test(&report);
  if (!st.ok()) {
    self_test = "FAILED: " + st.message();
    std::fprintf(stderr, "bench_cuda: WARNING: the CUDA self-test failed; timings follow anyway:\n%s\n",
                 st.message().c_str());
  } else {
    std::printf("%s", report.c_str());
  }

  double copy_gbps = 0;
  if (fail("copy bandwidth", cuda_bench_copy_bandwidth(1ull << 30, 10, &copy_gbps))) return 5;
  std::printf("measured device copy bandwidth (cudaMemcpy D2D, read + write): %.0f GB/s\n", copy_gbps);

  std::vector<Row> rows;
  const int64_t bmax = *std::max_element(bs.begin(), bs.end()), mmax = *std::max_element(ms.begin(), ms.end());
  std::printf("%-8s %10s %5s %5s %5s %10s %12s %9s %8s\n", "dtype", "N", "d", "B", "M", "ms", "queries/s", "key GB/s",
              "TFLOP/s");

  auto bench_store = [&](CudaKeyStore& s, const std::string& dt, int64_t n, int64_t d, const std::vector<int64_t>& bl,
                         const std::vector<int64_t>& ml, const std::string& note) -> bool {
    const int64_t bm = *std::max_element(bl.begin(), bl.end()), mm = *std::max_element(ml.begin(), ml.end());
    void *dq = nullptr, *drows = nullptr, *dk = nullptr;
    std::vector<float> q((size_t)(bm * d));
    fill_rows(q.data(), bm, d, 999999937ull);
    bool ok = !fail("alloc queries", cuda_bench_alloc(&dq, (size_t)(bm * d * 4))) &&
              !fail("alloc rows", cuda_bench_alloc(&drows, (size_t)(bm * mm * 8))) &&
              !fail("alloc kernel", cuda_bench_alloc(&dk, (size_t)(bm * mm * 4))) &&
              !fail("upload queries", cuda_bench_copy_to_device(dq, q.data(), q.size() * 4));
    KernelParams p;
    p.type = KernelType::kGaussian;
    p.bandwidth = std::sqrt((float)d);
    const double esize = dt == "bf16" ? 2.0 : 4.0;
    const int64_t ld = (d + 63) / 64 * 64;
    for (int64_t b : bl)
      for (int64_t m : ml) {
        if (!ok) break;
        std::vector<double> t;
        Status r = cuda_bench_time(s.stream(), 2, reps, [&]() {
          return s.search_topm_device(static_cast<int64_t*>(drows), static_cast<float*>(dk), nullptr,
                                      static_cast<float*>(dq), b, m, p);
        }, &t);
        Row row{dt, n, d, b, m, NAN, NAN, NAN, NAN, note};
        if (r.ok()) {
          row.ms = median(t);
          row.qps = (double)b / (row.ms * 1e-3);
          row.key_gbps = (double)n * (ld * esize + 4.0) / (row.ms * 1e-3) / 1e9;
          row.tflops = 2.0 * (double)b * (double)n * (double)d / (row.ms * 1e-3) / 1e12;
        } else {
          row.note = (note.empty() ? "" : note + "; ") + "error: " + r.message();
          std::fprintf(stderr, "bench_cuda: %s\n", r.message().c_str());
        }
        rows.push_back(row);
        std::printf("%-8s %10" PRId64 " %5" PRId64 " %5" PRId64 " %5" PRId64 " %10.3f %12.0f %9.0f %8.1f %s\n",
                    dt.c_str(), n, d, b, m, row.ms, row.qps, row.key_gbps, row.tflops, row.note.c_str());
        std::fflush(stdout);
      }
    cuda_bench_free(dq);
    cuda_bench_free(drows);
    cuda_bench_free(dk);
    return ok;
  };

  for (const std::string& dt : dtypes) {
    const CudaKeyType kt = dt == "bf16" ? CudaKeyType::kBFloat16 : dt == "fp16" ? CudaKeyType::kFloat16 : CudaKeyType::kFloat32;
    for (int64_t n : ns)
      for (int64_t d : ds) {
        std::unique_ptr<CudaKeyStore> s;
        Status b = build_store(kt, n, d, &s);
        if (!b.ok()) {
          std::fprintf(stderr, "bench_cuda: %s N=%" PRId64 " d=%" PRId64 ": %s\n", dt.c_str(), n, d, b.message().c_str());
          for (int64_t bb : bs)
            for (int64_t m : ms) rows.push_back(Row{dt, n, d, bb, m, NAN, NAN, NAN, NAN, "error: " + b.message()});
          continue;
        }
        bench_store(*s, dt, n, d, bs, ms, "");
      }
  }
  (void)bmax;
  (void)mmax;

  // The largest bf16 d=768 memory that fits, and its throughput.
  int64_t largest_rows = 0;
  if (largest) {
    CudaDeviceInfo now;
    cuda_device_info(&now);
    const int64_t d = 768, per_row = 768 * 2 + 13;
    const int64_t budget = now.free_bytes - (3ll << 30);  // workspace, queries, outputs, context
    largest_rows = std::min<int64_t>(budget / per_row, (int64_t)INT32_MAX - 2) / (1 << 20) * (1 << 20);
    std::printf("largest memory: trying %" PRId64 " rows x 768 bf16 (%.1f GiB of keys)\n", largest_rows,
                largest_rows * 1536.0 / 1073741824.0);
    std::unique_ptr<CudaKeyStore> s;
    Status b = largest_rows > 0 ? build_store(CudaKeyType::kBFloat16, largest_rows, d, &s)
                                : Status::NoMemory("no room at all");
    if (b.ok()) {
      bench_store(*s, "bf16", largest_rows, d, {1, 64, 1024}, {32}, "largest");
    } else {
      std::fprintf(stderr, "bench_cuda: largest memory: %s\n", b.message().c_str());
      rows.push_back(Row{"bf16", largest_rows, d, 1, 32, NAN, NAN, NAN, NAN, "largest; error: " + b.message()});
    }
  }

  FILE* f = std::fopen(out_path.c_str(), "w");
  if (!f) {
    std::fprintf(stderr, "bench_cuda: cannot write %s\n", out_path.c_str());
    return 6;
  }
  auto num = [](double x) {
    char buf[64];
    if (std::isnan(x)) return std::string("null");
    std::snprintf(buf, sizeof buf, "%.6g", x);
    return std::string(buf);
  };
  auto esc = [](const std::string& s) {
    std::string o;
    for (char c : s) {
      if (c == '"' || c == '\\') o += '\\';
      if (c == '\n') {
        o += "\\n";
        continue;
      }
      o += c;
    }
    return o;
  };
  std::fprintf(f, "{\n  \"impl\": \"memq\",\n  \"device\": \"%s\",\n  \"cc\": \"%d.%d\",\n  \"sm_count\": %d,\n",
               esc(info.name).c_str(), info.cc_major, info.cc_minor, info.sm_count);
  std::fprintf(f, "  \"total_bytes\": %" PRId64 ",\n  \"copy_gbps\": %s,\n  \"largest_rows\": %" PRId64 ",\n",
               info.total_bytes, num(copy_gbps).c_str(), largest_rows);
  std::fprintf(f, "  \"self_test\": \"%s\",\n", esc(self_test).c_str());
  std::fprintf(f, "  \"rows\": [\n");
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    std::fprintf(f,
                 "    {\"dtype\": \"%s\", \"n\": %" PRId64 ", \"d\": %" PRId64 ", \"b\": %" PRId64 ", \"m\": %" PRId64
                 ", \"ms\": %s, \"qps\": %s, \"key_gbps\": %s, \"tflops\": %s, \"note\": \"%s\"}%s\n",
                 r.dtype.c_str(), r.n, r.d, r.b, r.m, num(r.ms).c_str(), num(r.qps).c_str(), num(r.key_gbps).c_str(),
                 num(r.tflops).c_str(), esc(r.note).c_str(), i + 1 < rows.size() ? "," : "");
  }
  std::fprintf(f, "  ]\n}\n");
  std::fclose(f);
  std::printf("wrote %s\n", out_path.c_str());
  return 0;
}
