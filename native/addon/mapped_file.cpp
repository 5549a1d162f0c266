// mapFile(path, regions) -> ArrayBuffer[]: regions of a file mapped private (copy-on-write) into
// the JS heap's view, for the columns of a memory-mapped snapshot (lib/memory/metaColumns.ts).
//
// Each region { offset, bytes, capacity } becomes one ArrayBuffer of `capacity` bytes whose first
// `bytes` are the file's bytes at `offset` (page-aligned), mapped on demand; the rest is
// anonymous, zero and committed only when written. Writes never reach the file. The buffer
// unmaps itself when collected. The file must hold every region whole (checked here, so a short
// file is a RangeError, not a SIGBUS on first touch); the descriptor is closed before returning
// (mappings outlive it, and an unlinked file stays readable through them).
#include <napi.h>

#include <cerrno>
#include <cmath>
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define MEMQ_ADDON_MMAP 1
#endif

namespace memq_addon {

namespace {

#ifdef MEMQ_ADDON_MMAP
struct Region {
  double offset = 0, bytes = 0, capacity = 0;
};

double region_field(Napi::Env env, const Napi::Object& o, const char* key, size_t i) {
  const Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(env, "mapFile: regions[" + std::to_string(i) + "]." + key + " must be a number");
  const double x = v.As<Napi::Number>().DoubleValue();
  if (!(std::isfinite(x) && x >= 0 && x == std::floor(x) && x <= 9007199254740991.0)) {
    throw Napi::RangeError::New(env, "mapFile: regions[" + std::to_string(i) + "]." + key + " must be an integer >= 0, got " + std::to_string(x));
  }
  return x;
}

void unmap(Napi::Env, void* data, size_t* len) {
  munmap(data, *len);
  delete len;
}
#endif

}  // namespace

Napi::Value MapFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsArray()) {
    throw Napi::TypeError::New(env, "mapFile(path, regions): path must be a string and regions an array of { offset, bytes, capacity }");
  }
#ifndef MEMQ_ADDON_MMAP
  throw Napi::Error::New(env, "mapFile: memory-mapped files need a POSIX system (mmap); load without mmap");
#else
  const std::string file = info[0].As<Napi::String>().Utf8Value();
  const Napi::Array arr = info[1].As<Napi::Array>();
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::vector<Region> regions(arr.Length());
  for (size_t i = 0; i < regions.size(); ++i) {
    const Napi::Value v = arr.Get(static_cast<uint32_t>(i));
    if (!v.IsObject()) throw Napi::TypeError::New(env, "mapFile: regions[" + std::to_string(i) + "] must be an object { offset, bytes, capacity }");
    const Napi::Object o = v.As<Napi::Object>();
    Region r{region_field(env, o, "offset", i), region_field(env, o, "bytes", i), region_field(env, o, "capacity", i)};
    if (std::fmod(r.offset, static_cast<double>(page)) != 0) {
      throw Napi::RangeError::New(env, "mapFile: regions[" + std::to_string(i) + "].offset must be a multiple of the page size (" + std::to_string(page) + ")");
    }
    if (r.capacity < r.bytes) throw Napi::RangeError::New(env, "mapFile: regions[" + std::to_string(i) + "].capacity must be >= its bytes");
    if (r.capacity > 1.0e15) throw Napi::RangeError::New(env, "mapFile: regions[" + std::to_string(i) + "].capacity is too large");
    regions[i] = r;
  }
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Napi::Error::New(env, "mapFile: cannot open " + file + ": " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Napi::Error::New(env, "mapFile: " + file + " is not a regular file");
  }
  const double size = static_cast<double>(st.st_size);
  for (size_t i = 0; i < regions.size(); ++i) {
    if (regions[i].offset + regions[i].bytes > size) {
      ::close(fd);
      throw Napi::RangeError::New(env, "mapFile: " + file + " has " + std::to_string(st.st_size) + " bytes; regions[" + std::to_string(i) +
                                           "] needs " + std::to_string(static_cast<long long>(regions[i].offset + regions[i].bytes)));
    }
  }
  struct Mapped {
    void* p;
    size_t len;
  };
  std::vector<Mapped> done;
  auto fail = [&](const std::string& msg) {
    for (const Mapped& m : done) munmap(m.p, m.len);
    ::close(fd);
    throw Napi::Error::New(env, msg);
  };
  for (const Region& r : regions) {
    const size_t bytes = static_cast<size_t>(r.bytes);
    const size_t len = std::max(page, (static_cast<size_t>(r.capacity) + page - 1) / page * page);
    void* base = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) fail("mapFile: cannot reserve " + std::to_string(len) + " bytes of address space: " + std::strerror(errno));
    done.push_back({base, len});
    if (bytes > 0 && mmap(base, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, static_cast<off_t>(r.offset)) == MAP_FAILED) {
      fail("mapFile: cannot memory-map " + file + ": " + std::strerror(errno));
    }
    // The last file page may reach past `bytes` (the next region's bytes, or padding): zero it
    // in the copy-on-write view, so the buffer holds exactly the file's region then zeros.
    const size_t end = (bytes + page - 1) / page * page;
    if (end > bytes) std::memset(static_cast<char*>(base) + bytes, 0, end - bytes);
  }
  ::close(fd);
  Napi::Array out = Napi::Array::New(env, done.size());
  for (size_t i = 0; i < done.size(); ++i) {
    size_t* len = new size_t(done[i].len);
    out.Set(static_cast<uint32_t>(i), Napi::ArrayBuffer::New(env, done[i].p, static_cast<size_t>(regions[i].capacity), unmap, len));
  }
  return out;
#endif
}

}  // namespace memq_addon
