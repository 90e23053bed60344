// Status and Result<T>: how fallible calls report failure without throwing.
// A Status is ok, or a code with a message a user can act on.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace weft {

enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument,
  kNotFound,
  kFailedPrecondition,  // e.g. a compare-and-swap whose expectation did not hold
  kUnavailable,
  kInternal,
  kPermissionDenied,  // authenticated, but not allowed to do this
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return {}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Either a value or a non-ok Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status s) : v_(std::move(s)) {}     // NOLINT: implicit by design

  bool ok() const { return std::holds_alternative<T>(v_); }
  // value() and -> refer into this Result (valid while it lives); on a non-ok
  // Result they throw std::bad_variant_access.
  const T& value() const& { return std::get<T>(v_); }
  T& value() & { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  const T* operator->() const { return &std::get<T>(v_); }
  Status status() const { return ok() ? Status() : std::get<Status>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace weft
