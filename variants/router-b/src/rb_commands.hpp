// router-b: the domain commands (SPEC.md §3, §4) as command objects.
//
// Each op is a class. RunCommand() drives one through the SPEC.md §4 steps:
//   1-4  envelope of the command (object, op, known op, query allowed)
//   5    Validate(cmd)    shape pass: fills the command's typed fields
//   6    Check(state)     semantic pass against the pre-command state
//   7    Execute(state)   mutate and build the success result
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "rb_rapidjson.hpp"
#include "rb_state.hpp"

namespace routerb {

enum class ErrorCode {
  kBadRequest,
  kUnknownOp,
  kNotAQuery,
  kOutOfRange,
  kDuplicate,
  kLocked,
  kLabelTooLong,
  kBadLabel,
  kNotFound,
  kFull,
};

const char* ErrorCodeName(ErrorCode code);

struct Rejection {
  ErrorCode code;
  std::string message;
};
using Verdict = std::optional<Rejection>;  // nullopt = passed

// {"ok":false,"error":CODE,"message":TEXT}
std::string RejectionResult(const Rejection& r);

class Command {
 public:
  virtual ~Command() = default;
  virtual bool Mutating() const = 0;
  virtual Verdict Validate(const rapidjson::Value& cmd) = 0;
  virtual Verdict Check(const RouterState& state) const = 0;
  virtual std::string Execute(RouterState& state) = 0;
};

// A fresh command object for `op`, or nullptr for an unknown op.
std::unique_ptr<Command> MakeCommand(std::string_view op);

// Runs one command; returns the compact JSON result. `as_query` is true for
// the `query` member of a query message.
std::string RunCommand(RouterState& state, const rapidjson::Value& cmd, bool as_query);

}  // namespace routerb
