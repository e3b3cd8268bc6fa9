// The C++ variant SDK: everything a C++ controller needs to be supervised by
// nvsd over ZeroMQ (protocol/PROTOCOL.md). A variant implements `Controller`
// (its domain) and calls `RunVariant`; the SDK connects, says hello, decodes
// requests, calls the controller, encodes replies, answers protocol errors,
// and implements the test fault options of PROTOCOL.md §6.
//
// This header includes nlohmann/json on purpose: it is only included by
// variant sources, never by nvsd.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace nvs::sdk {

// A controller domain. The SDK calls it from one thread only, one request at
// a time, in the order requests arrive.
class Controller {
 public:
  virtual ~Controller() = default;

  // Applies one command and returns the domain's result (accepted or
  // rejected). Must be deterministic in (state, cmd, time_ns).
  virtual nlohmann::json Apply(const nlohmann::json& cmd, std::int64_t time_ns) = 0;

  // Runs a read-only command. Must not change the state.
  virtual nlohmann::json Query(const nlohmann::json& query) = 0;

  // The canonical state bytes (the domain spec's byte-exact form).
  virtual std::string CanonicalState() const = 0;

  // The digest of the canonical state (the domain spec's digest).
  virtual std::string Digest() const = 0;

  // Replaces the whole state. Returns std::nullopt on success, or the reason
  // the state is invalid (then the state must be unchanged).
  virtual std::optional<std::string> Restore(const nlohmann::json& state) = 0;

  // Test fault `corrupt-on`: silently change the state so its digest differs.
  virtual void CorruptForTest() = 0;
};

// Options common to every SDK variant, parsed from the command line.
struct VariantOptions {
  struct Fault {
    std::string kind;       // crash | abort | exit | hang | wrong | corrupt
    std::string substring;  // matched against the compact JSON of cmd/query
  };
  std::vector<Fault> faults;         // --fault KIND-on=SUBSTRING, repeatable
  std::string received_log;          // --received-log PATH; empty = none
  std::string impl = "unnamed C++ variant";  // text for `hello`
};

// Removes the SDK's own options (--fault, --received-log) from `args` and
// stores them in `options`. Returns false and sets `error` on a malformed
// option. Options the SDK does not know are left in `args` for the caller.
bool ParseSdkOptions(std::vector<std::string>& args, VariantOptions& options,
                     std::string& error);

// Connects to NVS_ENDPOINT as NVS_VARIANT, sends hello and serves requests
// until SIGTERM/SIGINT. Returns the process exit status (0 on a clean stop,
// 2 when the environment is incomplete).
int RunVariant(Controller& controller, const VariantOptions& options);

}  // namespace nvs::sdk
