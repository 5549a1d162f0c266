// A process-wide pool of num_threads()-1 workers. parallel_for posts one job (a range cut
// into chunks, claimed through an atomic counter) and the caller claims chunks too, so it
// never waits on work that nobody runs, and several callers can share the pool at once.
// Inside a chunk (on a worker, or on a caller running its own chunks) a nested parallel_for
// runs inline: no thread ever blocks on the pool while holding a chunk.
#include "memq/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace memq {

namespace {

thread_local bool tl_in_chunk = false;  // true on workers and while a caller runs a chunk

struct Job {
  const std::function<void(int64_t, int64_t)>* fn = nullptr;
  int64_t begin = 0, end = 0, chunk = 1, nchunks = 0;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::mutex m;
  std::condition_variable cv;
  std::exception_ptr error;

  // Claims and runs chunks until none is left; returns after the last claim.
  void run_chunks() {
    for (;;) {
      int64_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= nchunks) return;
      int64_t b = begin + c * chunk, e = std::min(end, b + chunk);
      try {
        (*fn)(b, e);
      } catch (...) {
        std::lock_guard<std::mutex> lk(m);
        if (!error) error = std::current_exception();
      }
      if (done.fetch_add(1, std::memory_order_acq_rel) + 1 == nchunks) {
        std::lock_guard<std::mutex> lk(m);
        cv.notify_all();
      }
    }
  }
};

// MEMQ_THREADS, parsed strictly: a decimal integer in [1, 1024]. Anything else is rejected
// (the hardware count is used) and the reason kept for threads_env_error().
struct ThreadsEnv {
  int value = 0;      // 0: unset or rejected
  std::string error;  // why it was rejected
};
ThreadsEnv parse_threads_env() {
  ThreadsEnv r;
  const char* env = std::getenv("MEMQ_THREADS");
  if (!env || !*env) return r;
  const std::string s(env);
  bool digits = s.size() <= 7;
  for (char c : s) digits = digits && c >= '0' && c <= '9';
  const long n = digits ? std::strtol(s.c_str(), nullptr, 10) : -1;
  if (!digits || n < 1 || n > 1024) {
    r.error = "MEMQ_THREADS='" + s + "' is not an integer in [1, 1024]; ignored";
    return r;
  }
  r.value = static_cast<int>(n);
  return r;
}
const ThreadsEnv& threads_env() {
  static const ThreadsEnv e = parse_threads_env();
  return e;
}

int default_threads() {
  if (threads_env().value > 0) return threads_env().value;
  unsigned hw = std::thread::hardware_concurrency();
  return hw ? static_cast<int>(hw) : 1;
}

class Pool {
 public:
  explicit Pool(int n) { start(n); }

  int size() const { return nthreads_; }

  void resize(int n) {
    stop_all();
    start(n);
  }

  void post(const std::shared_ptr<Job>& job) {
    {
      std::lock_guard<std::mutex> lk(m_);
      queue_.push_back(job);
    }
    cv_.notify_all();
  }

  // Drops a job whose chunks are all claimed, so workers do not look at it again.
  void retire(const Job* job) {
    std::lock_guard<std::mutex> lk(m_);
    for (auto it = queue_.begin(); it != queue_.end(); ++it)
      if (it->get() == job) {
        queue_.erase(it);
        break;
      }
  }

 private:
  void start(int n) {
    nthreads_ = std::max(1, n);
    stop_ = false;
    for (int i = 0; i + 1 < nthreads_; ++i) workers_.emplace_back([this] { worker_loop(); });
  }

  void stop_all() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  void worker_loop() {
    tl_in_chunk = true;
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [this] { return stop_ || !queue_.empty(); });
        if (stop_) return;
        job = queue_.front();
        if (job->next.load(std::memory_order_relaxed) >= job->nchunks) {
          queue_.pop_front();  // exhausted: its owner is finishing it
          continue;
        }
      }
      job->run_chunks();
      retire(job.get());
    }
  }

  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::vector<std::thread> workers_;
  bool stop_ = false;
  int nthreads_ = 1;
};

std::mutex g_pool_mutex;
Pool* g_pool = nullptr;  // never destroyed: workers may still be parked at exit

Pool& pool() {
  std::lock_guard<std::mutex> lk(g_pool_mutex);
  if (!g_pool) g_pool = new Pool(default_threads());
  return *g_pool;
}

}  // namespace

int num_threads() { return pool().size(); }

int threads_env_value() { return threads_env().value; }
std::string threads_env_error() { return threads_env().error; }

void set_num_threads(int n) {
  Pool& p = pool();
  std::lock_guard<std::mutex> lk(g_pool_mutex);
  p.resize(n > 0 ? n : default_threads());
}

void parallel_for(int64_t begin, int64_t end, int64_t grain,
                  const std::function<void(int64_t, int64_t)>& fn) {
  if (end <= begin) return;
  grain = std::max<int64_t>(grain, 1);
  int64_t n = end - begin;
  Pool& p = pool();
  int threads = p.size();
  if (tl_in_chunk || threads <= 1 || n <= grain) {
    fn(begin, end);
    return;
  }
  // About 4 chunks per thread balance uneven chunks without much claiming traffic.
  int64_t chunk = std::max(grain, (n + 4 * threads - 1) / (4 * threads));
  auto job = std::make_shared<Job>();
  job->fn = &fn;
  job->begin = begin;
  job->end = end;
  job->chunk = chunk;
  job->nchunks = (n + chunk - 1) / chunk;
  p.post(job);
  tl_in_chunk = true;
  job->run_chunks();
  tl_in_chunk = false;
  p.retire(job.get());
  {
    std::unique_lock<std::mutex> lk(job->m);
    job->cv.wait(lk, [&] { return job->done.load(std::memory_order_acquire) == job->nchunks; });
  }
  if (job->error) std::rethrow_exception(job->error);
}

}  // namespace memq
