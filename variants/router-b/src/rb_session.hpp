// router-b: one incarnation's protocol session (PROTOCOL.md §2, §3, §6),
// independent of the transport so that it can be unit-tested.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rb_options.hpp"
#include "rb_state.hpp"

namespace routerb {

inline constexpr std::size_t kMaxMessageBytes = 16777216;  // 16 MiB

enum class ProcessAction { kNone, kCrash, kAbort, kExit, kHang };

struct Outcome {
  std::optional<std::string> reply;  // the reply to send, if any
  ProcessAction action = ProcessAction::kNone;  // a test fault to carry out instead
};

class Session {
 public:
  // Called with one compact JSON line (ending in '\n') per apply/query
  // message, before the message is processed: the message with the member
  // "received_by" (the given name, i.e. NVS_VARIANT) added.
  using LogSink = std::function<void(std::string_view line)>;

  Session(RouterState state, std::vector<FaultRule> faults, LogSink log = {},
          std::string_view received_by = {});

  Outcome Handle(std::string_view message);

  const RouterState& State() const { return state_; }

  // The unsolicited hello message.
  static std::string Hello(std::string_view variant);

 private:
  Outcome Dispatch(std::string_view message);
  const FaultRule* MatchFault(const rapidjson::Value& cmd) const;

  RouterState state_;
  std::vector<FaultRule> faults_;
  LogSink log_;
  std::string received_by_;  // valid UTF-8
};

}  // namespace routerb
