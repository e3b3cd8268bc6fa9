// One running incarnation of a variant: a child process in its own process
// group, with its stderr captured to a size-capped log file and a tail kept
// in memory for reports. The only place nvsd touches Boost.Process.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nvs/status.h"
#include "nvs/supervisor/config.h"

namespace nvs::supervisor {

struct SpawnSpec {
  std::vector<std::string> argv;   // argv[0] resolved to a path
  std::vector<std::string> env;    // the complete environment, "K=V"
  std::filesystem::path working_dir;
  ResourceLimits limits;
  std::filesystem::path stderr_log;  // appended to; rotated to .1 past `stderr_log_bytes`
  std::uint64_t stderr_log_bytes = 8u << 20;
  std::size_t stderr_tail_bytes = 4096;
  // The cgroup files ("tasks") the process writes "0" to before it execs,
  // to join them (VariantCgroups::Create): it fails to start if it cannot.
  std::vector<std::filesystem::path> join_cgroups;
};

// How a process ended, from its wait status.
struct ExitInfo {
  int wait_status = 0;
  bool signaled = false;
  int signal = 0;     // when signaled
  int exit_code = 0;  // when not signaled
  std::string Describe() const;  // "killed by SIGSEGV", "exited with status 3"
};

// A process nvsd started, as nvsd sees it. VariantProcess is the real one;
// a simulation gives its own (supervisor/src/env.h, Env::Spawn).
class Process {
 public:
  virtual ~Process() = default;

  virtual int pid() const = 0;
  virtual int pidfd() const = 0;      // readable once the process has exited (-1: none to poll)
  virtual int stderr_fd() const = 0;  // -1 after EOF (or none to poll)

  // Reads what is available on stderr into the log and the tail. Never blocks.
  virtual void DrainStderr() = 0;
  virtual const std::string& stderr_tail() const = 0;

  // Opens the stderr log file again (after logrotate moved it away).
  virtual void ReopenLog() = 0;

  // Sends `signal` to the whole process group (and the process itself).
  virtual void SignalGroup(int signal) const = 0;

  // Non-blocking: the exit information once the process has exited (reaped
  // on the first call that sees it), else nullopt.
  virtual std::optional<ExitInfo> TryReap() = 0;
  virtual const std::optional<ExitInfo>& exit_info() const = 0;
};

class VariantProcess : public Process {
 public:
  // Starts the process. Fails with a readable message when it cannot start.
  static Result<std::unique_ptr<VariantProcess>> Spawn(const SpawnSpec& spec);

  ~VariantProcess() override;  // kills the process group and reaps, if still running
  VariantProcess(const VariantProcess&) = delete;
  VariantProcess& operator=(const VariantProcess&) = delete;

  int pid() const override { return pid_; }
  int pidfd() const override { return pidfd_; }
  int stderr_fd() const override { return stderr_fd_; }
  void DrainStderr() override;
  const std::string& stderr_tail() const override { return tail_; }
  void ReopenLog() override;
  void SignalGroup(int signal) const override;
  std::optional<ExitInfo> TryReap() override;
  const std::optional<ExitInfo>& exit_info() const override { return exit_; }

  std::chrono::steady_clock::time_point started_at() const { return started_at_; }

 private:
  VariantProcess() = default;
  void WriteLog(const char* data, std::size_t size);

  int pid_ = -1;
  int pidfd_ = -1;
  int stderr_fd_ = -1;
  int log_fd_ = -1;
  std::uint64_t log_size_ = 0;
  SpawnSpec spec_;
  std::string tail_;
  std::optional<ExitInfo> exit_;
  std::chrono::steady_clock::time_point started_at_;
};

// Resolves argv[0]: a name without '/' is looked up in PATH; a relative path
// is taken relative to `base`. Fails when nothing executable is found.
Result<std::string> ResolveProgram(const std::string& program, const std::filesystem::path& base);

// Where and how a variant process is started (by nvsd, or by nvs replay).
struct SpawnContext {
  std::filesystem::path config_dir;    // relative paths in the variant's config
  std::filesystem::path stdio_bridge;  // for Transport::kStdio
  std::string endpoint;                // NVS_ENDPOINT: the ROUTER the variant connects to
  std::filesystem::path stderr_log;
  std::uint64_t stderr_log_bytes = 8u << 20;
  std::size_t stderr_tail_bytes = 4096;
};

// The spawn spec of variant `vc` under identity `identity` (its
// NVS_VARIANT): argv resolved (through the stdio bridge when needed), the
// environment (nvsd's own, minus systemd's variables, plus the variant's),
// working dir and limits. Fails when the program or the working directory
// is missing: such a variant cannot be started, however often it is tried.
Result<SpawnSpec> SpecForVariant(const VariantConfig& vc, const std::string& identity, const SpawnContext& context);

// Whether a variable of nvsd's environment is passed to its variants (their
// environment is otherwise clean: supervisor/CONFIG.md, `env`).
bool PassedToVariants(std::string_view name);

}  // namespace nvs::supervisor
