/* glibc compatibility shims for the portable prebuilt addon (CMake: MEMQ_GLIBC_COMPAT, set by
 * `node scripts/build.js --prebuild` on linux-x64 only; never part of a source build).
 *
 * The prebuild links libstdc++ statically, and both that archive and our own objects were
 * compiled against the build machine's glibc, so the linker binds some calls to symbol versions
 * that only newer glibc releases define (pthread_* @GLIBC_2.34, stat @2.33, exp/log/pow @2.29,
 * pthread_sigmask and __libc_single_threaded @2.32, arc4random @2.36). The link wraps those symbols
 * (-Wl,--wrap=NAME sends every reference to __wrap_NAME) and the wrappers below call the old
 * versions, which every glibc since x86-64's first (GLIBC_2.2.5) still exports, so the addon
 * loads on any glibc Node 20 runs on. scripts/build.js checks the result with objdump. */
#if defined(__x86_64__) && defined(__linux__)
#define _GNU_SOURCE
#include <features.h> /* defines __GLIBC__ (and nothing else) before the check below */
#endif
#if defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__)

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MEMQ_OLD(sym, local) __asm__(".symver " #local ", " #sym "@GLIBC_2.2.5")
#define MEMQ_EXPORT __attribute__((visibility("hidden")))

/* ---- libpthread moved into libc in 2.34 and got new versions; the old ones still resolve ---- */
MEMQ_OLD(pthread_create, memq_old_pthread_create);
MEMQ_OLD(pthread_detach, memq_old_pthread_detach);
MEMQ_OLD(pthread_join, memq_old_pthread_join);
MEMQ_OLD(pthread_getspecific, memq_old_pthread_getspecific);
MEMQ_OLD(pthread_setspecific, memq_old_pthread_setspecific);
MEMQ_OLD(pthread_key_create, memq_old_pthread_key_create);
MEMQ_OLD(pthread_key_delete, memq_old_pthread_key_delete);
MEMQ_OLD(pthread_once, memq_old_pthread_once);
MEMQ_OLD(__pthread_key_create, memq_old___pthread_key_create);
MEMQ_OLD(pthread_sigmask, memq_old_pthread_sigmask);
MEMQ_OLD(pthread_mutex_trylock, memq_old_pthread_mutex_trylock);
int memq_old_pthread_create(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
int memq_old_pthread_detach(pthread_t);
int memq_old_pthread_join(pthread_t, void**);
void* memq_old_pthread_getspecific(pthread_key_t);
int memq_old_pthread_setspecific(pthread_key_t, const void*);
int memq_old_pthread_key_create(pthread_key_t*, void (*)(void*));
int memq_old_pthread_key_delete(pthread_key_t);
int memq_old_pthread_once(pthread_once_t*, void (*)(void));
int memq_old___pthread_key_create(pthread_key_t*, void (*)(void*));
int memq_old_pthread_sigmask(int, const sigset_t*, sigset_t*);
int memq_old_pthread_mutex_trylock(pthread_mutex_t*);

MEMQ_EXPORT int __wrap_pthread_create(pthread_t* t, const pthread_attr_t* a, void* (*f)(void*), void* arg) {
  return memq_old_pthread_create(t, a, f, arg);
}
MEMQ_EXPORT int __wrap_pthread_detach(pthread_t t) { return memq_old_pthread_detach(t); }
MEMQ_EXPORT int __wrap_pthread_join(pthread_t t, void** r) { return memq_old_pthread_join(t, r); }
MEMQ_EXPORT void* __wrap_pthread_getspecific(pthread_key_t k) { return memq_old_pthread_getspecific(k); }
MEMQ_EXPORT int __wrap_pthread_setspecific(pthread_key_t k, const void* v) { return memq_old_pthread_setspecific(k, v); }
MEMQ_EXPORT int __wrap_pthread_key_create(pthread_key_t* k, void (*d)(void*)) { return memq_old_pthread_key_create(k, d); }
MEMQ_EXPORT int __wrap_pthread_key_delete(pthread_key_t k) { return memq_old_pthread_key_delete(k); }
MEMQ_EXPORT int __wrap_pthread_once(pthread_once_t* o, void (*f)(void)) { return memq_old_pthread_once(o, f); }
MEMQ_EXPORT int __wrap___pthread_key_create(pthread_key_t* k, void (*d)(void*)) { return memq_old___pthread_key_create(k, d); }
MEMQ_EXPORT int __wrap_pthread_sigmask(int how, const sigset_t* set, sigset_t* old) { return memq_old_pthread_sigmask(how, set, old); }
/* std::unique_lock(m, std::try_to_lock): the LLM engine's per-model training workspace */
MEMQ_EXPORT int __wrap_pthread_mutex_trylock(pthread_mutex_t* m) { return memq_old_pthread_mutex_trylock(m); }

/* ---- stat family: exported functions only since 2.33; before, the __xstat entry points ------ */
MEMQ_OLD(__xstat, memq_old_xstat);
MEMQ_OLD(__lxstat, memq_old_lxstat);
MEMQ_OLD(__fxstat64, memq_old_fxstat64);
MEMQ_OLD(__fxstat, memq_old_fxstat);
int memq_old_xstat(int ver, const char* path, struct stat* buf);
int memq_old_lxstat(int ver, const char* path, struct stat* buf);
int memq_old_fxstat64(int ver, int fd, struct stat64* buf);
int memq_old_fxstat(int ver, int fd, struct stat* buf);
enum { kStatVerLinux = 1 }; /* _STAT_VER_LINUX on x86-64 */
MEMQ_EXPORT int __wrap_stat(const char* path, struct stat* buf) { return memq_old_xstat(kStatVerLinux, path, buf); }
MEMQ_EXPORT int __wrap_lstat(const char* path, struct stat* buf) { return memq_old_lxstat(kStatVerLinux, path, buf); }
MEMQ_EXPORT int __wrap_fstat64(int fd, struct stat64* buf) { return memq_old_fxstat64(kStatVerLinux, fd, buf); }
/* the mapped key store's fstat of its key file (key_store.cpp) */
MEMQ_EXPORT int __wrap_fstat(int fd, struct stat* buf) { return memq_old_fxstat(kStatVerLinux, fd, buf); }

/* ---- libm: 2.29 added new default versions of exp/log/pow (same functions, no SVID errors) ---- */
MEMQ_OLD(exp, memq_old_exp);
MEMQ_OLD(log, memq_old_log);
MEMQ_OLD(pow, memq_old_pow);
double memq_old_exp(double);
double memq_old_log(double);
double memq_old_pow(double, double);
MEMQ_EXPORT double __wrap_exp(double x) { return memq_old_exp(x); }
MEMQ_EXPORT double __wrap_log(double x) { return memq_old_log(x); }
MEMQ_EXPORT double __wrap_pow(double x, double y) { return memq_old_pow(x, y); }

/* ---- __libc_single_threaded (2.32): libstdc++ skips atomics when it is 1. Always 0 here: ----
 * "maybe multi-threaded", which is true in Node and only costs an atomic reference count. */
MEMQ_EXPORT char __wrap___libc_single_threaded = 0;

/* ---- arc4random (2.36), std::random_device's default source in libstdc++ 12 ------------------ */
static int memq_fill_random(void* buf, size_t n) {
  unsigned char* p = (unsigned char*)buf;
  while (n > 0) {
    long r = syscall(SYS_getrandom, p, n, 0);
    if (r > 0) {
      p += r;
      n -= (size_t)r;
    } else if (r < 0 && errno == EINTR) {
      continue;
    } else {
      break;
    }
  }
  if (n == 0) return 0;
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r > 0) {
      p += r;
      n -= (size_t)r;
    } else if (r < 0 && errno == EINTR) {
      continue;
    } else {
      break;
    }
  }
  close(fd);
  return n == 0 ? 0 : -1;
}

MEMQ_EXPORT uint32_t __wrap_arc4random(void) {
  uint32_t v = 0;
  if (memq_fill_random(&v, sizeof v) != 0) {
    /* no kernel entropy source at all: still a varying value rather than a crash */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    v = (uint32_t)ts.tv_nsec ^ (uint32_t)((uintptr_t)&v >> 4) ^ (uint32_t)ts.tv_sec * 2654435761u;
  }
  return v;
}

#endif /* __x86_64__ && __linux__ && __GLIBC__ */
