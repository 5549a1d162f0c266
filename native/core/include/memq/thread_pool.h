// A process-wide worker pool. parallel_for is safe to call from several threads at once
// (several async searches from JS run concurrently): each caller enqueues its chunks and
// works on them itself, so a caller never waits on work that nobody runs.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

namespace memq {

// Number of threads used by parallel_for (MEMQ_THREADS, else hardware concurrency).
int num_threads();
// MEMQ_THREADS as parsed (0 when unset or rejected) and, when it was set but rejected (not an
// integer in [1, 1024]), why ("" otherwise).
int threads_env_value();
std::string threads_env_error();
// Resize the pool (0 = default). Not to be called while work is in flight.
void set_num_threads(int n);

// Calls fn(begin, end) on disjoint chunks covering [begin, end), chunks of at least `grain`
// items, in parallel. Returns when all chunks are done. Runs inline when the range is small.
void parallel_for(int64_t begin, int64_t end, int64_t grain,
                  const std::function<void(int64_t, int64_t)>& fn);

}  // namespace memq
