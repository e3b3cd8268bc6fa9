// Status and Result: how errors cross module boundaries in nvs (instead of
// exceptions). A Status is ok, or an error with a message meant for a person
// ("state_dir: not a directory"). Cheap to copy when ok.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace nvs {

class Status {
 public:
  Status() = default;  // ok
  static Status Ok() { return Status(); }
  static Status Error(std::string message) { return Status(std::move(message)); }

  bool ok() const { return !message_.has_value(); }
  // REQUIRES: !ok()
  const std::string& message() const { return *message_; }
  // The message, or "ok".
  std::string ToString() const { return ok() ? "ok" : *message_; }

 private:
  explicit Status(std::string message) : message_(std::move(message)) {}
  std::optional<std::string> message_;
};

// A value or the Status saying why there is none.
template <typename T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status error) : value_(std::move(error)) {}  // NOLINT: REQUIRES !error.ok()

  bool ok() const { return value_.index() == 0; }
  // REQUIRES: ok()
  const T& value() const& { return std::get<0>(value_); }
  T& value() & { return std::get<0>(value_); }
  T&& value() && { return std::get<0>(std::move(value_)); }
  const T* operator->() const { return &value(); }
  // Ok when a value is held.
  Status status() const { return ok() ? Status::Ok() : std::get<1>(value_); }

 private:
  std::variant<T, Status> value_;
};

}  // namespace nvs
