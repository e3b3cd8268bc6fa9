#include "nvs/supervisor/variant_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/process/v2/environment.hpp>
// process_environment::on_setup, which Boost 1.81 header-only forgets, is
// defined once for the whole program in supervisor/src/boost_process_environment.cc.
#include <boost/process/v2/process.hpp>
#include <boost/process/v2/start_dir.hpp>
#include <boost/process/v2/stdio.hpp>
#include <cerrno>
#include <cstring>

extern char** environ;

namespace nvs::supervisor {
namespace bp = boost::process::v2;

namespace {

// Runs in the child between fork and exec: its own process group, death with
// nvsd, no new privileges, and the configured resource limits.
struct ChildSetup {
  ResourceLimits limits;
  std::vector<int> cgroup_fds;  // its cgroups' "tasks" files, opened by the parent

  template <typename Launcher>
  bp::error_code on_exec_setup(Launcher&, const bp::filesystem::path&, const char* const*&) {
    // Into its cgroups first, before it can start anything ("0": itself).
    for (int fd : cgroup_fds) {
      if (write(fd, "0", 1) != 1) return bp::error_code(errno, bp::system_category());
    }
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    const auto set = [](int resource, rlim_t value) {
      struct rlimit limit {value, value};
      setrlimit(resource, &limit);
    };
    if (limits.address_space_mb) set(RLIMIT_AS, static_cast<rlim_t>(*limits.address_space_mb) << 20);
    if (limits.cpu_seconds) set(RLIMIT_CPU, static_cast<rlim_t>(*limits.cpu_seconds));
    if (limits.open_files) set(RLIMIT_NOFILE, static_cast<rlim_t>(*limits.open_files));
    if (!limits.core_dumps) set(RLIMIT_CORE, 0);
    // Restore what nvsd changed for itself, so the variant starts plain.
    signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    return {};
  }
};

const char* SignalName(int signal) {
  switch (signal) {
    case SIGSEGV: return "SIGSEGV";
    case SIGABRT: return "SIGABRT";
    case SIGKILL: return "SIGKILL";
    case SIGTERM: return "SIGTERM";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGXCPU: return "SIGXCPU";
    case SIGPIPE: return "SIGPIPE";
    case SIGINT: return "SIGINT";
    default: return nullptr;
  }
}

}  // namespace

std::string ExitInfo::Describe() const {
  if (signaled) {
    const char* name = SignalName(signal);
    return std::string("killed by ") + (name != nullptr ? name : "signal " + std::to_string(signal));
  }
  return "exited with status " + std::to_string(exit_code);
}

Result<std::string> ResolveProgram(const std::string& program, const std::filesystem::path& base) {
  if (program.find('/') == std::string::npos) {
    auto found = bp::environment::find_executable(program);
    if (found.empty()) return Status::Error("program '" + program + "' not found in PATH");
    return found.string();
  }
  std::filesystem::path path = program;
  if (path.is_relative()) path = (base / path).lexically_normal();
  if (access(path.c_str(), X_OK) != 0) return Status::Error("program '" + path.string() + "' is not executable");
  return path.string();
}

Result<std::unique_ptr<VariantProcess>> VariantProcess::Spawn(const SpawnSpec& spec) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return Status::Error(std::string("pipe: ") + std::strerror(errno));
  std::unique_ptr<VariantProcess> self(new VariantProcess());
  self->spec_ = spec;
  self->stderr_fd_ = pipe_fds[0];
  fcntl(self->stderr_fd_, F_SETFL, O_NONBLOCK);

  if (!spec.stderr_log.empty()) {
    self->log_fd_ = open(spec.stderr_log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (self->log_fd_ >= 0) {
      struct stat st {};
      if (fstat(self->log_fd_, &st) == 0) self->log_size_ = static_cast<std::uint64_t>(st.st_size);
    }
  }

  ChildSetup setup{spec.limits, {}};
  const auto close_cgroups = [&] {
    for (int fd : setup.cgroup_fds) close(fd);
  };
  for (const auto& procs : spec.join_cgroups) {
    const int fd = open(procs.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
      const std::string error = procs.string() + ": " + std::strerror(errno);
      close_cgroups();
      close(pipe_fds[1]);
      return Status::Error("cannot start " + spec.argv[0] + ": " + error);
    }
    setup.cgroup_fds.push_back(fd);
  }
  boost::asio::io_context context;
  std::vector<std::string> args(spec.argv.begin() + 1, spec.argv.end());
  try {
    bp::process child(context, spec.argv[0], args, bp::process_environment(spec.env),
                      bp::process_start_dir(spec.working_dir.string()),
                      bp::process_stdio{nullptr, pipe_fds[1], pipe_fds[1]}, setup);
    self->pid_ = child.id();
    child.detach();  // we reap it ourselves, through our own pidfd
  } catch (const std::exception& e) {
    close_cgroups();
    close(pipe_fds[1]);
    return Status::Error("cannot start " + spec.argv[0] + ": " + e.what());
  }
  close_cgroups();
  close(pipe_fds[1]);
  self->started_at_ = std::chrono::steady_clock::now();
  self->pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, self->pid_, 0));
  if (self->pidfd_ < 0) {
    kill(self->pid_, SIGKILL);
    waitpid(self->pid_, nullptr, 0);
    return Status::Error(std::string("pidfd_open: ") + std::strerror(errno));
  }
  return self;
}

VariantProcess::~VariantProcess() {
  if (pid_ > 0 && !exit_) {
    SignalGroup(SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    kill(-pid_, SIGKILL);  // whatever the group left behind (TryReap does this when it reaps)
  }
  for (int fd : {pidfd_, stderr_fd_, log_fd_}) {
    if (fd >= 0) close(fd);
  }
}

void VariantProcess::WriteLog(const char* data, std::size_t size) {
  if (log_fd_ < 0) return;
  if (log_size_ + size > spec_.stderr_log_bytes) {
    const std::string rotated = spec_.stderr_log.string() + ".1";
    rename(spec_.stderr_log.c_str(), rotated.c_str());
    close(log_fd_);
    log_fd_ = open(spec_.stderr_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    log_size_ = 0;
    if (log_fd_ < 0) return;
  }
  if (write(log_fd_, data, size) > 0) log_size_ += size;
}

void VariantProcess::ReopenLog() {
  if (spec_.stderr_log.empty()) return;
  if (log_fd_ >= 0) close(log_fd_);
  log_fd_ = open(spec_.stderr_log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
  log_size_ = 0;
  struct stat st {};
  if (log_fd_ >= 0 && fstat(log_fd_, &st) == 0) log_size_ = static_cast<std::uint64_t>(st.st_size);
}

void VariantProcess::DrainStderr() {
  if (stderr_fd_ < 0) return;
  char buffer[16384];
  // At most 1 MiB per call: a variant flooding its stderr must not keep the
  // supervisor's loop here (the rest waits for the next turn).
  for (int reads = 0; reads < 64; ++reads) {
    const ssize_t n = read(stderr_fd_, buffer, sizeof buffer);
    if (n > 0) {
      WriteLog(buffer, static_cast<std::size_t>(n));
      tail_.append(buffer, static_cast<std::size_t>(n));
      if (tail_.size() > spec_.stderr_tail_bytes) tail_.erase(0, tail_.size() - spec_.stderr_tail_bytes);
      continue;
    }
    if (n == 0) {
      close(stderr_fd_);
      stderr_fd_ = -1;
    }
    return;  // EOF, EAGAIN or an error: nothing more now
  }
}

void VariantProcess::SignalGroup(int signal) const {
  if (pid_ <= 0 || exit_) return;
  kill(-pid_, signal);  // fails harmlessly before the child's setpgid
  kill(pid_, signal);
}

std::optional<ExitInfo> VariantProcess::TryReap() {
  if (exit_) return exit_;
  int status = 0;
  const pid_t reaped = waitpid(pid_, &status, WNOHANG);
  if (reaped != pid_) return std::nullopt;
  ExitInfo info;
  info.wait_status = status;
  info.signaled = WIFSIGNALED(status);
  info.signal = info.signaled ? WTERMSIG(status) : 0;
  info.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 0;
  exit_ = info;
  kill(-pid_, SIGKILL);  // no grandchild outlives its variant
  DrainStderr();
  return exit_;
}

bool PassedToVariants(std::string_view name) {
  return (name.rfind("NVS_", 0) == 0 && name != "NVS_VARIANT" && name != "NVS_ENDPOINT") || name == "ASAN_OPTIONS" ||
         name == "UBSAN_OPTIONS" || name == "LSAN_OPTIONS";
}

namespace {

// A clean environment: a variant gets none of nvsd's (an outside test had a
// `nobody` variant print a secret from it), only a fixed PATH, nvsd's own
// NVS_* settings and sanitizer options (for sanitized builds), its config's
// `env` (which may set PATH), and its NVS_VARIANT and NVS_ENDPOINT.
std::vector<std::string> EnvironmentFor(const VariantConfig& vc, const std::string& identity, const std::string& endpoint) {
  std::vector<std::string> env;
  if (vc.env.count("PATH") == 0) env.emplace_back("PATH=/usr/local/bin:/usr/bin:/bin");
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view entry(*e);
    const auto name = entry.substr(0, entry.find('='));
    if (!PassedToVariants(name) || vc.env.count(std::string(name))) continue;
    env.emplace_back(entry);
  }
  for (const auto& [key, value] : vc.env) env.push_back(key + "=" + value);
  env.push_back("NVS_VARIANT=" + identity);
  env.push_back("NVS_ENDPOINT=" + endpoint);
  return env;
}

}  // namespace

Result<SpawnSpec> SpecForVariant(const VariantConfig& vc, const std::string& identity, const SpawnContext& context) {
  SpawnSpec spec;
  auto program = ResolveProgram(vc.argv[0], context.config_dir);
  if (!program.ok()) return program.status();
  if (vc.transport == Transport::kStdio) {
    spec.argv = {context.stdio_bridge.string()};
    if (vc.limits.address_space_mb) {
      // The relay applies it to the controller only: the limit is the
      // controller's, and the relay's own needs (e.g. a sanitizer's shadow
      // memory) are not the variant's business.
      spec.argv.push_back("--address-space-mb");
      spec.argv.push_back(std::to_string(*vc.limits.address_space_mb));
    }
    if (!vc.user.empty()) {
      // Resolved once when nvsd started (ResolveVariantUsers); `nvs replay`
      // as root resolves it here.
      auto ids = vc.run_as.empty() ? ResolveRunAs(vc.user, vc.group) : Result<std::string>(vc.run_as);
      if (!ids.ok()) return ids.status();
      spec.argv.push_back("--user");
      spec.argv.push_back(ids.value());
    }
    spec.argv.push_back("--");
    spec.argv.push_back(program.value());
  } else {
    spec.argv = {program.value()};
  }
  spec.argv.insert(spec.argv.end(), vc.argv.begin() + 1, vc.argv.end());
  spec.env = EnvironmentFor(vc, identity, context.endpoint);
  spec.working_dir = vc.working_dir.empty() ? context.config_dir : context.config_dir / vc.working_dir;
  if (!std::filesystem::is_directory(spec.working_dir)) {
    // Checked here: an exec that fails after the fork would leave a zombie
    // Boost 1.81 does not reap.
    return Status::Error("working_dir " + spec.working_dir.string() + " is not a directory");
  }
  spec.limits = vc.limits;
  if (vc.transport == Transport::kStdio) spec.limits.address_space_mb.reset();  // applied by the relay, above
  spec.stderr_log = context.stderr_log;
  spec.stderr_log_bytes = context.stderr_log_bytes;
  spec.stderr_tail_bytes = context.stderr_tail_bytes;
  return spec;
}

}  // namespace nvs::supervisor
