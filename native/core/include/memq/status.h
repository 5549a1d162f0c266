// Errors are values in the core (usearch style); the N-API layer turns them into
// TypeError / RangeError / Error at the boundary. No exceptions cross the core's API.
#pragma once
#include <string>
#include <utility>

namespace memq {

// One code per kind of error; the N-API layer maps each to one JS class (util.h status_error),
// the same class lib/retrieval.ts throws for the same mistake:
//   TypeError  <- kInvalidArgument (wrong type, shape or kind of argument: a null pointer, a
//                 length that is not a multiple of dim, an unknown option name)
//   RangeError <- kOutOfRange (a value outside its allowed range: NaN/Inf, a count or size over
//                 a stated limit, ids out of order or repeated, a kernel parameter out of
//                 bounds), kNotFound (unknown id), kCapacityExceeded
//   Error      <- kOutOfMemory, kUnavailable, kInternal, kCorrupt (a file's contents are
//                 malformed or disagree with each other), kIOError (a file cannot be opened,
//                 read or written)
enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument = 1,  // wrong type/shape/kind of an argument -> TypeError
  kOutOfRange = 2,       // a value (NaN/Inf, count, size, order, duplicate) out of its range -> RangeError
  kNotFound = 3,         // an id that is not (or no longer) in the store -> RangeError
  kCapacityExceeded = 4, // the store's capacity limit would be exceeded -> RangeError
  kOutOfMemory = 5,      // allocation failed -> Error
  kUnavailable = 6,      // e.g. CUDA requested but no device -> Error
  kInternal = 7,         // a bug: an invariant did not hold -> Error
  kCorrupt = 8,          // a file's contents are malformed or inconsistent -> Error
  kIOError = 9,          // a file cannot be opened, read or written -> Error
};

class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return Status(); }
  static Status Invalid(std::string m) { return Status(StatusCode::kInvalidArgument, std::move(m)); }
  static Status OutOfRange(std::string m) { return Status(StatusCode::kOutOfRange, std::move(m)); }
  static Status NotFound(std::string m) { return Status(StatusCode::kNotFound, std::move(m)); }
  static Status Capacity(std::string m) { return Status(StatusCode::kCapacityExceeded, std::move(m)); }
  static Status NoMemory(std::string m) { return Status(StatusCode::kOutOfMemory, std::move(m)); }
  static Status Unavailable(std::string m) { return Status(StatusCode::kUnavailable, std::move(m)); }
  static Status Internal(std::string m) { return Status(StatusCode::kInternal, std::move(m)); }
  static Status Corrupt(std::string m) { return Status(StatusCode::kCorrupt, std::move(m)); }
  static Status IOError(std::string m) { return Status(StatusCode::kIOError, std::move(m)); }
  // The same message under another code (e.g. a config refused as a value -> corrupt file).
  Status with_code(StatusCode c) const { return ok() ? *this : Status(c, message_); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

#define MEMQ_RETURN_IF_ERROR(expr)          \
  do {                                      \
    ::memq::Status _memq_st = (expr);       \
    if (!_memq_st.ok()) return _memq_st;    \
  } while (0)

}  // namespace memq
