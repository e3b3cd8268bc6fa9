// router-b: a router controller variant for nvs.
// Transport: ZeroMQ DEALER via the libzmq C API (PROTOCOL.md §1.1).
#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zmq.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "rb_options.hpp"
#include "rb_session.hpp"

namespace {

volatile std::sig_atomic_t g_stop = 0;

extern "C" void OnStopSignal(int) { g_stop = 1; }

sigset_t StopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

void WriteAll(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::write(fd, s.data(), s.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "router-b: cannot write received log: %s\n", std::strerror(errno));
      return;
    }
    s.remove_prefix(static_cast<std::size_t>(n));
  }
}

// Sends one single-part message; false when interrupted by a stop signal or
// when the socket is gone.
bool Send(void* sock, const std::string& msg) {
  for (;;) {
    if (zmq_send(sock, msg.data(), msg.size(), 0) >= 0) return true;
    if (errno == EINTR && !g_stop) continue;
    if (errno != EINTR)
      std::fprintf(stderr, "router-b: zmq_send failed: %s\n", zmq_strerror(errno));
    return false;
  }
}

// hang-on: block (no CPU) until SIGTERM/SIGINT; SIGKILL works as always.
void Hang() {
  std::fprintf(stderr, "router-b: hang fault fired; no more replies\n");
  sigset_t stop = StopSignals(), waiting;
  pthread_sigmask(SIG_BLOCK, &stop, &waiting);
  sigdelset(&waiting, SIGTERM);
  sigdelset(&waiting, SIGINT);
  while (!g_stop) sigsuspend(&waiting);
}

[[noreturn]] void Die(routerb::ProcessAction action) {
  const struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);  // test faults need not leave core files
  switch (action) {
    case routerb::ProcessAction::kCrash:
      std::signal(SIGSEGV, SIG_DFL);
      std::raise(SIGSEGV);
      break;
    case routerb::ProcessAction::kExit:
      std::_Exit(3);
    default:
      break;
  }
  std::abort();
}

}  // namespace

int main(int argc, char** argv) {
  std::string error;
  auto opts = routerb::ParseOptions(std::vector<std::string>(argv + 1, argv + argc), &error);
  if (!opts) {
    std::fprintf(stderr, "router-b: %s\n", error.c_str());
    return 2;
  }
  const char* variant = std::getenv("NVS_VARIANT");
  const char* endpoint = std::getenv("NVS_ENDPOINT");
  if (variant == nullptr || endpoint == nullptr) {
    std::fprintf(stderr, "router-b: environment variable %s is not set\n",
                 variant == nullptr ? "NVS_VARIANT" : "NVS_ENDPOINT");
    return 2;
  }
  int log_fd = -1;
  if (opts->received_log) {
    log_fd = ::open(opts->received_log->c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
      std::fprintf(stderr, "router-b: cannot open received log '%s': %s\n",
                   opts->received_log->c_str(), std::strerror(errno));
      return 2;
    }
  }

  // Stop signals: blocked while libzmq starts its threads (they inherit the
  // mask), so they are always delivered to the main thread and interrupt
  // zmq_poll/zmq_send there.
  struct sigaction sa = {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: blocking calls return EINTR
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  sigset_t stop = StopSignals(), original;
  pthread_sigmask(SIG_BLOCK, &stop, &original);

  void* ctx = zmq_ctx_new();
  void* sock = ctx ? zmq_socket(ctx, ZMQ_DEALER) : nullptr;
  const int linger_ms = 50;
  if (sock == nullptr ||
      zmq_setsockopt(sock, ZMQ_ROUTING_ID, variant, std::strlen(variant)) != 0 ||
      zmq_setsockopt(sock, ZMQ_LINGER, &linger_ms, sizeof linger_ms) != 0 ||
      zmq_connect(sock, endpoint) != 0) {
    // (NVS_VARIANT is not printed: it holds the incarnation's secret, and
    // stderr ends up in nvsd's logs and quarantine reports.)
    std::fprintf(stderr, "router-b: cannot set up ZeroMQ (NVS_ENDPOINT='%s'): %s\n", endpoint, zmq_strerror(errno));
    return 2;
  }
  pthread_sigmask(SIG_SETMASK, &original, nullptr);

  routerb::Session::LogSink sink;
  if (log_fd >= 0) sink = [log_fd](std::string_view line) { WriteAll(log_fd, line); };
  routerb::Session session(routerb::RouterState(opts->inputs, opts->outputs), opts->faults, sink,
                           variant);

  bool running = Send(sock, routerb::Session::Hello(variant));
  while (running && !g_stop) {
    zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
    int rc = zmq_poll(&item, 1, 200);
    if (rc < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "router-b: zmq_poll failed: %s\n", zmq_strerror(errno));
      break;
    }
    if (rc == 0 || (item.revents & ZMQ_POLLIN) == 0) continue;

    while (running && !g_stop) {
      zmq_msg_t msg;
      zmq_msg_init(&msg);
      if (zmq_msg_recv(&msg, sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&msg);
        break;  // EAGAIN (drained) or EINTR
      }
      if (zmq_msg_more(&msg)) {
        // Multi-part: not a protocol message; ignore all of its parts.
        std::size_t parts = 1;
        bool more = true;
        while (more) {
          zmq_msg_close(&msg);
          zmq_msg_init(&msg);
          if (zmq_msg_recv(&msg, sock, 0) < 0) break;
          ++parts;
          more = zmq_msg_more(&msg) != 0;
        }
        zmq_msg_close(&msg);
        std::fprintf(stderr, "router-b: ignored a %zu-part message\n", parts);
        continue;
      }
      routerb::Outcome outcome = session.Handle(
          std::string_view(static_cast<const char*>(zmq_msg_data(&msg)), zmq_msg_size(&msg)));
      zmq_msg_close(&msg);
      if (outcome.action == routerb::ProcessAction::kHang) {
        Hang();
        running = false;
      } else if (outcome.action != routerb::ProcessAction::kNone) {
        Die(outcome.action);
      } else if (outcome.reply) {
        running = Send(sock, *outcome.reply);
      }
    }
  }

  zmq_close(sock);
  zmq_ctx_term(ctx);
  if (log_fd >= 0) ::close(log_fd);
  return 0;
}
