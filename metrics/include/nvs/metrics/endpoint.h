// The HTTP endpoint a Prometheus server scrapes (cpp-httplib, Debian's
// libcpp-httplib-dev): GET /metrics answers the page a Render gives, in
// the text format 0.0.4; anything else is 404, any other method 405. Its
// own threads (two workers), stopped by the destructor, which waits for
// them at most a second (a client cannot hold up the program's stop). It is
// read-only and unauthenticated: bind it to loopback or a management
// network (README, "Metrics").
//
// A program whose counters belong to one thread (nvsd's loop) renders the
// page on that thread: PageRequests carries a scrape's request to it and
// the page back, with a deadline, through an eventfd the loop polls.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "nvs/status.h"

namespace nvs::metrics {

// "HOST:PORT" ("127.0.0.1:9464", "localhost:9464", "[::1]:9464"; port 0:
// any free port). An error names what is wrong.
Result<std::pair<std::string, int>> ParseHostPort(std::string_view endpoint);

class Endpoint {
 public:
  // The page, or nullopt when it cannot be had in time (answered 503).
  using Render = std::function<std::optional<std::string>()>;

  // Binds and starts serving; fails (with the address and the reason)
  // when the address cannot be bound.
  static Result<std::unique_ptr<Endpoint>> Start(std::string_view endpoint, Render render);
  ~Endpoint();
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;

  // Where it listens, the port as bound ("127.0.0.1:40123").
  const std::string& address() const { return address_; }

 private:
  struct State;
  explicit Endpoint(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
  std::string address_;
};

// A scrape's request for a page, carried to the thread that owns the
// counters. That thread polls fd() and calls Answer when it is readable.
class PageRequests {
 public:
  PageRequests();
  ~PageRequests();
  PageRequests(const PageRequests&) = delete;
  PageRequests& operator=(const PageRequests&) = delete;

  int fd() const { return fd_; }
  // Any thread: asks for a page and waits for it, at most `deadline`.
  std::optional<std::string> Ask(std::chrono::milliseconds deadline);
  // The owning thread, when fd() is readable: renders once for every
  // request that came since the last call.
  void Answer(const std::function<std::string()>& render);

 private:
  int fd_ = -1;
  std::mutex mutex_;
  std::condition_variable answered_;
  std::uint64_t asked_ = 0;     // requests made
  std::uint64_t rendered_ = 0;  // requests the latest page answers
  std::string page_;
};

}  // namespace nvs::metrics
