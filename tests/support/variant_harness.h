// Test harness: runs real variant processes against a real ZeroMQ ROUTER, the
// way nvsd does, so the conformance and differential suites exercise the
// actual wire protocol. Every wait has a deadline.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nvs/protocol/messages.h"

namespace nvs::testing {

// How to start one variant: a display name and the command line.
struct VariantCommand {
  std::string name;               // e.g. "router-a"
  std::vector<std::string> argv;  // argv[0] is an absolute path
};

// The reference router variants as built in this tree, each with `extra`
// arguments (e.g. {"--inputs","4"}) appended.
std::vector<VariantCommand> RouterVariants(const std::vector<std::string>& extra = {});
VariantCommand RouterVariant(const std::string& name, const std::vector<std::string>& extra = {});

// The nvs-stdio-bridge executable built in this tree.
std::string StdioBridgePath();

// One ROUTER socket bound on tcp://127.0.0.1:* and the variant processes
// connected to it. Not thread-safe.
class VariantHarness {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kDefaultDeadline{10000};

  // Binds the ROUTER at `endpoint` (a ZeroMQ bind address).
  explicit VariantHarness(const std::string& endpoint = "tcp://127.0.0.1:*");
  ~VariantHarness();  // stops every variant (SIGTERM, then SIGKILL)
  VariantHarness(const VariantHarness&) = delete;
  VariantHarness& operator=(const VariantHarness&) = delete;

  // Starts a variant and waits for its hello. Returns the hello, or nullopt
  // (with `error` set) if it did not arrive by the deadline.
  std::optional<protocol::Hello> Start(const VariantCommand& command, std::string& error,
                                       std::chrono::milliseconds deadline = kDefaultDeadline);

  // Sends raw bytes to a started variant.
  void Send(const std::string& name, const std::string& bytes);
  void Send(const std::string& name, const protocol::Request& request) { Send(name, protocol::Encode(request)); }
  // Sends one multi-part message (a protocol fault nvsd never commits).
  void SendParts(const std::string& name, const std::vector<std::string>& parts);

  // The next message from `name`, raw; nullopt at the deadline, or as soon as
  // the process has exited and nothing it sent is left.
  std::optional<std::string> Receive(const std::string& name, std::chrono::milliseconds deadline = kDefaultDeadline);

  // Sends `request` and decodes the reply. Returns nullopt (with `error`) on a
  // timeout or an undecodable reply.
  std::optional<protocol::Reply> Call(const std::string& name, const protocol::Request& request, std::string& error,
                                      std::chrono::milliseconds deadline = kDefaultDeadline);

  // Stops one variant; returns its wait status, or nullopt if it was not started.
  std::optional<int> Stop(const std::string& name);

  // True when the variant's process has exited (or was never started).
  bool HasExited(const std::string& name) const;

  // The pid of a running variant (for fault tests), or -1.
  int Pid(const std::string& name) const;

  // Waits for a variant process to exit on its own; returns its wait status.
  std::optional<int> WaitForExit(const std::string& name, std::chrono::milliseconds deadline = kDefaultDeadline);

  const std::string& endpoint() const { return endpoint_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string endpoint_;
};

// kill(2) for one process only: refuses pid <= 0, which kill(2) would take
// as "a whole process group" or "every process we may signal". Returns
// false when it refused or kill failed.
bool SignalProcess(int pid, int signal);

// Compares two results as JSON values, ignoring "/message" of a failed result
// (SPEC.md §3.1). Returns an empty string when equal, else a description.
std::string CompareResults(const std::string& a, const std::string& b);

}  // namespace nvs::testing
