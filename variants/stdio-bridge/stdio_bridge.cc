// nvs-stdio-bridge -- CMD ARGS...
//
// Connects to nvsd like a ZeroMQ variant (PROTOCOL.md §1.1) and runs CMD as a
// stdio variant (§1.2): every ZeroMQ message becomes one line on CMD's stdin,
// every line CMD writes to stdout becomes one ZeroMQ message. CMD's stderr is
// inherited. The bridge exits with CMD's exit status, or re-raises the signal
// that killed CMD, so nvsd sees the controller's death exactly.
//
// Exit codes: CMD's own; 2 for a usage or environment error; 127 when CMD
// cannot be started.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/process/v2/environment.hpp>
#include <boost/process/v2/process.hpp>
#include <boost/process/v2/stdio.hpp>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <optional>
#include <deque>
#include <iostream>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "nvs/protocol/messages.h"

namespace bp = boost::process::v2;

namespace {

std::atomic<int> g_stop_signal{0};
extern "C" void OnStopSignal(int signal) { g_stop_signal.store(signal); }

// Child-side setup: die with the bridge, so a SIGKILLed bridge leaves no
// orphan; with --address-space-mb, the controller's address-space limit (the
// relay keeps none of its own); with --user, drop to that user and group
// (groups first, then the uid: after setuid nothing else could be dropped).
struct DieWithParent {
  uid_t run_as_uid = 0;  // 0: keep the bridge's (root is never asked for)
  gid_t run_as_gid = 0;
  unsigned long address_space_mb = 0;  // 0: none
  pid_t bridge_pid = getpid();

  template <typename Launcher>
  bp::error_code on_exec_setup(Launcher&, const bp::filesystem::path&, const char* const*&) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGPIPE, SIG_DFL);  // the bridge ignores it; the controller starts plain
    if (address_space_mb > 0) {
      struct rlimit limit {static_cast<rlim_t>(address_space_mb) << 20, static_cast<rlim_t>(address_space_mb) << 20};
      if (setrlimit(RLIMIT_AS, &limit) != 0) return bp::error_code(errno, bp::system_category());
    }
    if (run_as_uid != 0) {
      const gid_t gid = run_as_gid;
      if (setgroups(1, &gid) != 0 || setgid(gid) != 0 || setuid(run_as_uid) != 0) {
        return bp::error_code(errno, bp::system_category());
      }
      // Changing credentials clears the parent-death signal: set it again,
      // and make sure the bridge did not die in between.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != bridge_pid) _exit(1);
    }
    return {};
  }
};

// Exits like a process that ended with wait status `status`.
[[noreturn]] void ExitLike(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    struct rlimit no_core {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, nullptr);
    raise(sig);
    _exit(128 + sig);
  }
  _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

void SetNonBlocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

class Bridge {
 public:
  Bridge(zmq::socket_t& socket, int child_stdin, int child_stdout)
      : socket_(socket), stdin_fd_(child_stdin), stdout_fd_(child_stdout) {}

  // One ZeroMQ message -> one line for the child. A raw CR or LF can only be
  // JSON whitespace in a valid message, so it is replaced by a space to keep
  // the framing.
  void QueueForChild(std::string_view message) {
    std::string line(message);
    for (char& c : line) {
      if (c == '\n' || c == '\r') c = ' ';
    }
    line.push_back('\n');
    to_child_.push_back(std::move(line));
  }

  bool WantsToWrite() const { return stdin_fd_ >= 0 && !to_child_.empty(); }

  // Writes as much as the pipe takes without blocking.
  void WriteToChild() {
    while (stdin_fd_ >= 0 && !to_child_.empty()) {
      std::string& front = to_child_.front();
      ssize_t n = write(stdin_fd_, front.data() + written_, front.size() - written_);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        // EPIPE: the child closed its stdin; its death will follow.
        close(stdin_fd_);
        stdin_fd_ = -1;
        to_child_.clear();
        return;
      }
      written_ += static_cast<std::size_t>(n);
      if (written_ == front.size()) {
        to_child_.pop_front();
        written_ = 0;
      }
    }
  }

  // Reads what the child wrote; each complete line becomes a message.
  // Returns false at end of file.
  bool ReadFromChild() {
    char buffer[65536];
    for (;;) {
      ssize_t n = read(stdout_fd_, buffer, sizeof buffer);
      if (n == 0) return false;
      if (n < 0) return errno == EAGAIN || errno == EINTR;
      for (ssize_t i = 0; i < n; ++i) {
        if (buffer[i] == '\n') {
          if (!dropping_) Forward();
          partial_.clear();
          dropping_ = false;
        } else if (!dropping_) {
          partial_.push_back(buffer[i]);
          if (partial_.size() > nvs::protocol::kMaxMessageBytes) {
            std::cerr << "nvs-stdio-bridge: child wrote a line over " << nvs::protocol::kMaxMessageBytes
                      << " bytes; dropped\n";
            partial_.clear();
            dropping_ = true;
          }
        }
      }
    }
  }

  int stdout_fd() const { return stdout_fd_; }
  int stdin_fd() const { return stdin_fd_; }

 private:
  void Forward() {
    if (!partial_.empty() && partial_.back() == '\r') partial_.pop_back();
    if (partial_.empty()) return;
    socket_.send(zmq::buffer(partial_), zmq::send_flags::none);
  }

  zmq::socket_t& socket_;
  int stdin_fd_;
  int stdout_fd_;
  std::deque<std::string> to_child_;
  std::size_t written_ = 0;
  std::string partial_;
  bool dropping_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> command;
  DieWithParent child_setup;
  bool usage_error = false;
  {
    int i = 1;
    while (i + 1 < argc && argv[i][0] == '-' && std::strcmp(argv[i], "--") != 0) {
      char tail = 0;
      if (std::strcmp(argv[i], "--user") == 0) {
        // UID:GID, both numbers (nvsd resolves names before it starts us).
        unsigned long uid = 0;
        unsigned long gid = 0;
        // Both must fit (a uid of 2^32 would wrap to root), neither may be 0.
        const bool digits = std::strspn(argv[i + 1], "0123456789:") == std::strlen(argv[i + 1]);
        if (digits && std::sscanf(argv[i + 1], "%lu:%lu%c", &uid, &gid, &tail) == 2 && uid > 0 && gid > 0 &&
            uid < 0xFFFFFFFFUL && gid < 0xFFFFFFFFUL) {
          child_setup.run_as_uid = static_cast<uid_t>(uid);
          child_setup.run_as_gid = static_cast<gid_t>(gid);
        } else {
          std::cerr << "nvs-stdio-bridge: --user takes UID:GID (numbers, neither 0), not " << argv[i + 1] << "\n";
          usage_error = true;
        }
      } else if (std::strcmp(argv[i], "--address-space-mb") == 0) {
        unsigned long mb = 0;
        if (std::sscanf(argv[i + 1], "%lu%c", &mb, &tail) == 1 && mb > 0 && mb < (1UL << 30)) {
          child_setup.address_space_mb = mb;
        } else {
          std::cerr << "nvs-stdio-bridge: --address-space-mb takes a positive number, not " << argv[i + 1] << "\n";
          usage_error = true;
        }
      } else {
        std::cerr << "nvs-stdio-bridge: unknown option " << argv[i] << "\n";
        usage_error = true;
      }
      i += 2;
    }
    if (i < argc && std::strcmp(argv[i], "--") == 0) ++i;
    for (; i < argc; ++i) command.emplace_back(argv[i]);
  }
  // (--help asked for: on stdout, exit 0; a usage error: on stderr, exit 2.)
  const bool help = !usage_error && !command.empty() && (command[0] == "--help" || command[0] == "-h");
  if (usage_error || command.empty() || help) {
    (help ? std::cout : std::cerr)
        << "usage: nvs-stdio-bridge [--user UID:GID] [--address-space-mb N] -- CMD [ARGS...]\n"
           "Runs CMD as an nvs variant speaking JSON lines on stdin/stdout, relayed to the\n"
           "ZeroMQ endpoint NVS_ENDPOINT under the routing id NVS_VARIANT. With --user, CMD\n"
           "runs as that user and group; with --address-space-mb, under that address-space\n"
           "limit. The bridge keeps its own user and limits. nvsd starts it for a variant\n"
           "with \"transport\": \"stdio\" (supervisor/CONFIG.md); it is not run by hand.\n";
    return help ? 0 : 2;
  }
  const char* endpoint = std::getenv("NVS_ENDPOINT");
  const char* name = std::getenv("NVS_VARIANT");
  if (endpoint == nullptr || name == nullptr || *endpoint == '\0' || *name == '\0') {
    std::cerr << "nvs-stdio-bridge: NVS_ENDPOINT and NVS_VARIANT must be set\n";
    return 2;
  }

  struct sigaction action {};
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);

  bp::filesystem::path exe = command[0];
  if (command[0].find('/') == std::string::npos) exe = bp::environment::find_executable(command[0]);
  if (exe.empty()) {
    std::cerr << "nvs-stdio-bridge: command not found: " << command[0] << "\n";
    return 127;
  }

  int in_pipe[2];
  int out_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0 || pipe2(out_pipe, O_CLOEXEC) != 0) {
    std::cerr << "nvs-stdio-bridge: pipe: " << std::strerror(errno) << "\n";
    return 1;
  }

  boost::asio::io_context context;
  std::vector<std::string> args(command.begin() + 1, command.end());
  bp::process child(context);
  try {
    child = bp::process(context, exe, args, bp::process_stdio{in_pipe[0], out_pipe[1], {}}, child_setup);
  } catch (const std::exception& e) {
    std::cerr << "nvs-stdio-bridge: cannot start " << command[0] << ": " << e.what() << "\n";
    return 127;
  }
  close(in_pipe[0]);
  close(out_pipe[1]);
  SetNonBlocking(in_pipe[1]);
  SetNonBlocking(out_pipe[0]);
  // Boost 1.81's process::native_handle() does not compile; open our own
  // pidfd (the child is not reaped yet, so its pid cannot have been reused).
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, child.id(), 0));
  if (pidfd < 0) {
    std::cerr << "nvs-stdio-bridge: pidfd_open: " << std::strerror(errno) << "\n";
    return 1;
  }

  zmq::context_t zmq_context(1);
  zmq::socket_t socket(zmq_context, zmq::socket_type::dealer);
  socket.set(zmq::sockopt::routing_id, std::string_view(name));
  socket.set(zmq::sockopt::linger, 2000);  // let the last replies out after the child's death
  socket.connect(endpoint);

  Bridge bridge(socket, in_pipe[1], out_pipe[0]);
  bool stdout_open = true;
  bool term_sent = false;
  std::chrono::steady_clock::time_point kill_at{};

  for (;;) {
    if (g_stop_signal.load() != 0 && !term_sent) {
      kill(child.id(), SIGTERM);
      term_sent = true;
      kill_at = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    }
    if (term_sent && std::chrono::steady_clock::now() >= kill_at) kill(child.id(), SIGKILL);

    const auto events = [](bool want, short what) { return want ? what : static_cast<short>(0); };
    zmq::pollitem_t items[4] = {
        {socket.handle(), 0, ZMQ_POLLIN, 0},
        {nullptr, pidfd, ZMQ_POLLIN, 0},
        // A closed pipe reports POLLHUP even with no events asked: leave it
        // out of the poll set (a negative fd is ignored) or poll never waits.
        {nullptr, stdout_open ? bridge.stdout_fd() : -1, events(stdout_open, ZMQ_POLLIN), 0},
        {nullptr, bridge.WantsToWrite() ? bridge.stdin_fd() : -1, events(bridge.WantsToWrite(), ZMQ_POLLOUT), 0},
    };
    try {
      zmq::poll(items, 4, std::chrono::milliseconds(200));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
      continue;
    }
    if (items[0].revents & ZMQ_POLLIN) {
      zmq::message_t message;
      while (socket.recv(message, zmq::recv_flags::dontwait)) {
        if (!message.more()) {
          bridge.QueueForChild(message.to_string_view());
          continue;
        }
        // PROTOCOL.md 1.1: a variant ignores a multi-part message. Relayed
        // part by part, it would become several lines, each a message.
        std::size_t parts = 1;
        while (message.more() && socket.recv(message, zmq::recv_flags::none)) ++parts;
        std::cerr << "nvs-stdio-bridge: dropped a multi-part message (" << parts << " parts; PROTOCOL.md 1.1)\n";
      }
    }
    if (bridge.WantsToWrite()) bridge.WriteToChild();
    if (stdout_open && (items[2].revents & (ZMQ_POLLIN | ZMQ_POLLERR))) stdout_open = bridge.ReadFromChild();
    if (items[1].revents & ZMQ_POLLIN) {
      // The child is dead: forward what is left in its stdout pipe, once (a
      // grandchild holding the pipe open must not keep the bridge alive).
      if (stdout_open) bridge.ReadFromChild();
      break;
    }
  }

  bp::error_code ec;
  child.wait(ec);
  const int status = child.native_exit_code();
  socket.close();
  zmq_context.close();
  ExitLike(status);
}
