#include "nvs/metrics/endpoint.h"

#include <httplib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <future>
#include <thread>
#include <vector>

#include "nvs/metrics/exposition.h"

namespace nvs::metrics {

Result<std::pair<std::string, int>> ParseHostPort(std::string_view endpoint) {
  const auto bad = [&](const std::string& why) {
    return Status::Error("metrics endpoint '" + std::string(endpoint) + "': " + why +
                         " (expected HOST:PORT, such as 127.0.0.1:9464)");
  };
  const auto colon = endpoint.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return bad("no host, or no port");
  std::string_view host = endpoint.substr(0, colon);
  const std::string_view port_text = endpoint.substr(colon + 1);
  if (host.front() == '[') {
    if (host.back() != ']' || host.size() < 3) return bad("an IPv6 address goes in [ ]");
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return bad("an IPv6 address goes in [ ]");
  }
  int port = -1;
  const auto [end, error] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || error != std::errc() || end != port_text.data() + port_text.size() || port < 0 ||
      port > 65535) {
    return bad("the port is not a number from 0 to 65535");
  }
  return std::make_pair(std::string(host), port);
}

struct Endpoint::State {
  httplib::Server server;
  std::thread thread;
  std::promise<void> stopped;  // set when the server's thread is done (its workers joined)
};

Endpoint::Endpoint(std::unique_ptr<State> state) : state_(std::move(state)) {}

// The server's stop joins its workers, and a worker waits on its client
// (an idle keep-alive connection for up to 5 s, a client sending a header
// a byte at a time for as long as it likes) or on its page. The program's own stop must
// not wait on a client: after kStopWait the threads are left to end on
// their own (with their state, deliberately not freed).
Endpoint::~Endpoint() {
  constexpr auto kStopWait = std::chrono::seconds(1);
  auto done = state_->stopped.get_future();
  state_->server.stop();
  if (done.wait_for(kStopWait) == std::future_status::ready) {
    state_->thread.join();
    return;
  }
  state_->thread.detach();
  // (Kept reachable, never freed: the threads still use it.)
  static auto* const abandoned = new std::vector<State*>();
  abandoned->push_back(state_.release());
}

Result<std::unique_ptr<Endpoint>> Endpoint::Start(std::string_view endpoint, Render render) {
  auto parsed = ParseHostPort(endpoint);
  if (!parsed.ok()) return parsed.status();
  const auto [host, port] = parsed.value();
  auto state = std::make_unique<State>();
  httplib::Server& server = state->server;
  // Two workers: a scrape is small and rare, and a slow or idle client
  // (a connection held open) is cut off by the timeouts, not queued behind.
  server.new_task_queue = [] { return new httplib::ThreadPool(2); };
  server.set_read_timeout(5, 0);
  server.set_write_timeout(5, 0);
  server.set_keep_alive_timeout(5);
  server.set_keep_alive_max_count(100);
  server.set_payload_max_length(64 * 1024);
  // SO_REUSEADDR only: cpp-httplib's default adds SO_REUSEPORT, with which a
  // second program binds the same port and the two share the scrapes.
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  server.Get("/metrics", [render](const httplib::Request&, httplib::Response& response) {
    std::optional<std::string> page = render();
    if (!page) {
      response.status = 503;
      response.set_content("the metrics could not be gathered in time (is the program's loop stuck?)\n",
                           "text/plain; charset=utf-8");
      return;
    }
    response.set_content(std::move(*page), std::string(kContentType).c_str());
  });
  server.set_error_handler([](const httplib::Request& request, httplib::Response& response) {
    if (response.status == 404) {
      response.set_content("not found: " + request.path + " (the metrics are at /metrics)\n", "text/plain; charset=utf-8");
    }
  });
  errno = 0;
  int bound = port;
  if (port == 0) {
    bound = server.bind_to_any_port(host);
    if (bound < 0) bound = 0;
  } else if (!server.bind_to_port(host, port)) {
    bound = 0;
  }
  if (bound == 0) {
    const int e = errno;
    return Status::Error("cannot bind the metrics endpoint " + std::string(endpoint) +
                         (e != 0 ? std::string(": ") + std::strerror(e) : std::string(": the address cannot be bound")));
  }
  state->thread = std::thread([&server, &stopped = state->stopped] {
    server.listen_after_bind();
    stopped.set_value();
  });
  // stop() does nothing before the thread has started listening, and the
  // destructor's stop must not be lost: wait for it (a thread start, at
  // most 5 s).
  timespec pause{0, 200'000};
  for (int i = 0; i < 25'000 && !server.is_running(); ++i) nanosleep(&pause, nullptr);
  std::unique_ptr<Endpoint> out(new Endpoint(std::move(state)));
  out->address_ = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(bound);
  return out;
}

PageRequests::PageRequests() : fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}

PageRequests::~PageRequests() {
  if (fd_ >= 0) close(fd_);
}

std::optional<std::string> PageRequests::Ask(std::chrono::milliseconds deadline) {
  std::unique_lock lock(mutex_);
  const std::uint64_t mine = ++asked_;
  const std::uint64_t one = 1;
  if (write(fd_, &one, sizeof one) != sizeof one) return std::nullopt;
  if (!answered_.wait_for(lock, deadline, [&] { return rendered_ >= mine; })) return std::nullopt;
  return page_;
}

void PageRequests::Answer(const std::function<std::string()>& render) {
  std::uint64_t drained = 0;
  if (read(fd_, &drained, sizeof drained) != sizeof drained) return;  // (nothing asked)
  std::uint64_t asked = 0;
  {
    std::lock_guard lock(mutex_);
    asked = asked_;
  }
  std::string page = render();  // (outside the lock: scrapes may ask meanwhile, and get the next one)
  std::lock_guard lock(mutex_);
  page_ = std::move(page);
  rendered_ = asked;
  answered_.notify_all();
}

}  // namespace nvs::metrics
