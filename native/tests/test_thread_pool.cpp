// memq::parallel_for: exact coverage, concurrent callers, nested calls, resizing, exceptions.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "memq/thread_pool.h"
#include "testing.h"

using memq::parallel_for;

// Runs first (tests run in definition order): the pool is created lazily, so MEMQ_THREADS
// set here is what it reads.
MEMQ_TEST(env_memq_threads_sets_the_default) {
  setenv("MEMQ_THREADS", "3", 1);
  CHECK(memq::num_threads() == 3);
  memq::set_num_threads(0);  // 0 = default = MEMQ_THREADS
  CHECK(memq::num_threads() == 3);
}

static void check_coverage(int64_t begin, int64_t end, int64_t grain) {
  std::vector<std::atomic<int>> hits(end > begin ? end - begin : 0);
  std::atomic<int> bad_chunks{0};
  parallel_for(begin, end, grain, [&](int64_t lo, int64_t hi) {
    if (lo < begin || hi > end || lo >= hi) bad_chunks++;
    for (int64_t i = lo; i < hi; ++i) hits[i - begin]++;
  });
  CHECK(bad_chunks.load() == 0);
  for (auto& h : hits) CHECK(h.load() == 1);
}

MEMQ_TEST(covers_every_index_once) {
  for (int threads : {1, 2, 3, 7}) {
    memq::set_num_threads(threads);
    CHECK(memq::num_threads() == threads);
    check_coverage(0, 0, 1);
    check_coverage(5, 5, 1);
    check_coverage(0, 1, 1);
    check_coverage(0, 10, 100);  // smaller than the grain: inline
    check_coverage(-17, 1000, 1);
    check_coverage(3, 100003, 64);
  }
}

MEMQ_TEST(chunks_respect_grain) {
  memq::set_num_threads(4);
  std::atomic<int> small{0};
  parallel_for(0, 1000, 100, [&](int64_t lo, int64_t hi) {
    if (hi - lo < 100 && hi != 1000) small++;  // only the last chunk may be short
  });
  CHECK(small.load() == 0);
}

MEMQ_TEST(concurrent_callers_do_not_interfere) {
  memq::set_num_threads(3);
  std::atomic<int> wrong{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 6; ++c)
    callers.emplace_back([&, c] {
      for (int rep = 0; rep < 200; ++rep) {
        const int64_t n = 1000 + 37 * c + rep;
        std::atomic<int64_t> sum{0};
        parallel_for(0, n, 7, [&](int64_t lo, int64_t hi) {
          int64_t s = 0;
          for (int64_t i = lo; i < hi; ++i) s += i;
          sum += s;
        });
        if (sum.load() != n * (n - 1) / 2) wrong++;
      }
    });
  for (auto& t : callers) t.join();
  CHECK(wrong.load() == 0);
}

MEMQ_TEST(nested_calls_run_inline_without_deadlock) {
  memq::set_num_threads(2);
  std::atomic<int64_t> total{0};
  parallel_for(0, 64, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i)
      parallel_for(0, 100, 1, [&](int64_t a, int64_t b) { total += b - a; });
  });
  CHECK(total.load() == 64 * 100);
}

MEMQ_TEST(exceptions_reach_the_caller) {
  memq::set_num_threads(3);
  bool caught = false;
  try {
    parallel_for(0, 100, 1, [&](int64_t lo, int64_t hi) {
      if (lo <= 50 && 50 < hi) throw std::runtime_error("boom");
    });
  } catch (const std::runtime_error&) {
    caught = true;
  }
  CHECK(caught);
  // The pool still works afterwards.
  check_coverage(0, 5000, 3);
}

MEMQ_TEST(uses_several_threads) {
  memq::set_num_threads(2);
  std::atomic<int> distinct{0};
  std::mutex mu;
  std::vector<std::thread::id> ids;
  parallel_for(0, 64, 1, [&](int64_t, int64_t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    std::lock_guard<std::mutex> lk(mu);
    if (std::find(ids.begin(), ids.end(), std::this_thread::get_id()) == ids.end()) {
      ids.push_back(std::this_thread::get_id());
      distinct++;
    }
  });
  CHECK(distinct.load() == 2);
}

MEMQ_TEST_MAIN()
