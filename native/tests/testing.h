// A minimal test harness for the C++ core (no third-party dependency, no Node).
// Each test_*.cpp is one executable registered with ctest; it prints one line per check
// failure and a closing "N passed, N failed" line, and exits non-zero on any failure.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace memq_test {

struct Registry {
  std::vector<std::pair<std::string, std::function<void()>>> tests;
  int failures_in_current = 0;
  static Registry& get() {
    static Registry r;
    return r;
  }
};

struct Registrar {
  Registrar(const char* name, std::function<void()> fn) { Registry::get().tests.emplace_back(name, std::move(fn)); }
};

inline int run_all() {
  auto& reg = Registry::get();
  int passed = 0, failed = 0;
  for (auto& [name, fn] : reg.tests) {
    reg.failures_in_current = 0;
    fn();
    if (reg.failures_in_current == 0) {
      ++passed;
      std::printf("[ ok ] %s\n", name.c_str());
    } else {
      ++failed;
      std::printf("[FAIL] %s (%d checks failed)\n", name.c_str(), reg.failures_in_current);
    }
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

inline void fail(const char* file, int line, const std::string& what) {
  Registry::get().failures_in_current++;
  if (Registry::get().failures_in_current <= 20) std::printf("  %s:%d: %s\n", file, line, what.c_str());
}

// |a - b| <= atol + rtol * |b|, NaNs never equal, equal infinities equal.
inline bool near(double a, double b, double rtol, double atol = 0.0) {
  if (std::isnan(a) || std::isnan(b)) return false;
  if (std::isinf(a) || std::isinf(b)) return a == b;
  return std::fabs(a - b) <= atol + rtol * std::fabs(b);
}

}  // namespace memq_test

#define MEMQ_TEST(name)                                                   \
  static void name();                                                     \
  static ::memq_test::Registrar name##_registrar(#name, name);            \
  static void name()

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) ::memq_test::fail(__FILE__, __LINE__, "CHECK(" #cond ") failed");   \
  } while (0)

#define CHECK_NEAR(a, b, rtol, atol)                                                             \
  do {                                                                                           \
    double _a = (a), _b = (b);                                                                   \
    if (!::memq_test::near(_a, _b, (rtol), (atol))) {                                            \
      char _buf[256];                                                                            \
      std::snprintf(_buf, sizeof _buf, "CHECK_NEAR(%s, %s): %.9g vs %.9g", #a, #b, _a, _b);      \
      ::memq_test::fail(__FILE__, __LINE__, _buf);                                               \
    }                                                                                            \
  } while (0)

#define MEMQ_TEST_MAIN() \
  int main() { return ::memq_test::run_all(); }
