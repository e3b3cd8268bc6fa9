// nvs-videohub: the Blackmagic Videohub Ethernet protocol (TCP, port 9990)
// in front of nvsd, so router panels and automation drive the supervised
// controllers unchanged. It holds no router state of its own: the view is
// nvsd's dump, refreshed periodically and after every change it makes.
//
// One thread, one poll loop: the listening sockets, every client socket
// (non-blocking, output bounded), and a DEALER socket to nvsd's front end
// (a CURVE client when given a client config, with a monitor that reports a
// refusal by nvsd at once). Each client's blocks are handled in order, one
// request to nvsd at a time. With --metrics, a scrape's page is rendered by
// this loop too (its counters are this thread's alone): the HTTP threads ask
// for it through an eventfd the loop polls.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "nvs/metrics/endpoint.h"
#include "nvs/metrics/exposition.h"
#include "nvs/protocol/curve_client.h"
#include "nvs/videohub/allow_list.h"
#include "nvs/videohub/videohub_protocol.h"

namespace nvs::videohub {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
// A command's NAK comes this long after its expires_at_ms: nvsd decides
// nothing after that deadline, and its answer to a command it decided just
// before comes within this much unless its disk takes longer to sync (a
// review measured a reply 55 ms after the deadline with 200 ms fsyncs).
constexpr milliseconds kExpiryMargin{500};

struct Options {
  // Loopback by default: the Videohub protocol has no authentication, so a
  // wider listen address needs --allow (SECURITY.md).
  std::vector<std::string> listen = {"127.0.0.1:9990"};
  std::vector<std::string> allow;  // CIDR networks whose clients may connect; empty: any (loopback listen only)
  std::vector<Network> allowed;    // `allow`, parsed
  std::string endpoint;       // "" = $NVS_ENDPOINT, else the client config's, else tcp://127.0.0.1:5555
  std::string client_config;  // "" = $NVS_CLIENT_CONFIG, else none (a plain client)
  std::string friendly_name = "nvs";
  std::string unique_id;
  int refresh_ms = 1000;
  // A command's NAK after this long without nvsd's answer; nvsd is told the
  // same deadline (expires_at_ms) and never carries a command out after it,
  // so the NAK is true (CLIENT.md §2).
  int timeout_ms = 1000;
  int heartbeat_ms = 250;     // nvsd is asked for its status this often
  int absent_after_ms = 1000; // no answer from nvsd this long: the device is absent
  std::size_t max_output_bytes = 1 << 20;
  int socket_send_buffer = 64 * 1024;  // fixed, so a stalled client's backlog shows in max_output_bytes
  std::size_t max_clients = 256;
  std::string metrics;  // HOST:PORT of the Prometheus endpoint; "" = none
};

std::string IsoNow() {
  char buffer[40];
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%S", std::gmtime(&t));
  return std::string(buffer) + "." + std::to_string(1000 + ms).substr(1) + "Z";
}

// JSON lines on stderr, like nvsd.
void Log(const char* level, const char* event, json fields = json::object()) {
  fields["ts"] = IsoNow();
  fields["level"] = level;
  fields["event"] = event;
  std::cerr << fields.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
}

struct Client {
  int fd = -1;
  std::uint64_t serial = 0;
  std::string id;    // the router's client id for its commands: locks are per connection
  std::string peer;
  BlockReader reader;
  std::deque<Block> pending;
  bool waiting = false;   // a request of this client is at nvsd
  bool read_closed = false;
  std::string out;
};

struct InFlight {
  enum class Kind { kRefresh, kCommand, kHeartbeat } kind = Kind::kRefresh;
  std::uint64_t client = 0;  // kCommand: the client's serial
  Clock::time_point deadline;
  Clock::time_point sent;  // for the answer's latency (the first send, when sent again to a cluster's leader)
  bool unsent = false;  // nvsd could not be handed it (not connected, queue full)
  std::string bytes;    // the request as sent: sent again, with its id, to a cluster's leader
};

class Gateway {
 public:
  // `curve`: the client config (keys) for an nvsd whose endpoint requires CURVE.
  // `pages`: the metrics endpoint's requests for a page (null: none).
  Gateway(Options options, std::optional<protocol::ClientConfig> curve, metrics::PageRequests* pages,
          std::string metrics_address)
      : options_(std::move(options)),
        curve_(std::move(curve)),
        pages_(pages),
        metrics_address_(std::move(metrics_address)) {}

  // A socket of its own for each nvsd member talked to (a disconnected
  // pipe still takes a send for a moment, and its reply is lost with it).
  void OpenNvsdSocket(const std::string& endpoint) {
    watch_.reset();
    nvsd_ = zmq::socket_t(context_, zmq::socket_type::dealer);
    nvsd_.set(zmq::sockopt::linger, 0);
    nvsd_.set(zmq::sockopt::reconnect_ivl, 100);
    // Requests are queued only on a live connection: one that goes down
    // takes its queue with it, and a request sent while nvsd is away fails
    // at once (NAK). Found by an outside test: a take NAKed while nvsd was
    // down waited in this socket's queue and was carried out when nvsd came
    // back, in 5 of 11 trials.
    nvsd_.set(zmq::sockopt::immediate, 1);
    if (curve_) protocol::ApplyCurveClient(nvsd_, *curve_);
    watch_.emplace(context_, nvsd_, curve_.has_value(), curve_ ? curve_->keys.public_key : std::string());
    current_ = endpoint;
    current_since_ = Clock::now();
    nvsd_.connect(current_);
  }

  int Run(int signal_fd) {
    // A cluster (protocol/CLIENT.md §8): several endpoints, comma-separated;
    // the gateway talks to one at a time and follows the leader.
    for (std::size_t from = 0; from <= options_.endpoint.size();) {
      const std::size_t comma = std::min(options_.endpoint.find(',', from), options_.endpoint.size());
      if (comma > from) endpoints_.push_back(options_.endpoint.substr(from, comma - from));
      from = comma + 1;
    }
    if (endpoints_.empty()) endpoints_.push_back(options_.endpoint);
    OpenNvsdSocket(endpoints_.front());
    device_.friendly_name = options_.friendly_name;
    device_.unique_id = options_.unique_id;
    Log("info", "starting",
        {{"listen", options_.listen},
         {"allow", options_.allow},
         {"nvsd", options_.endpoint},
         {"security", curve_ ? "curve" : "none"},
         {"public_key", curve_ ? json(curve_->keys.public_key) : json()}});
    if (pages_ != nullptr) {
      // (As "listening": the port as bound, for --metrics HOST:0.)
      const std::string port = metrics_address_.substr(metrics_address_.rfind(':') + 1);
      Log("info", "metrics_listening",
          {{"address", options_.metrics}, {"port", std::atoi(port.c_str())},
           {"url", "http://" + metrics_address_ + "/metrics"}});
    }
    // The first view before the first client: a panel that connects at once
    // gets the router, not a "not present" that is only a start-up race.
    // (Requests go out only on a live connection: wait for it first, for at
    // most --timeout-ms.)
    const auto connect_until = Clock::now() + milliseconds(options_.timeout_ms);
    next_refresh_ = next_heartbeat_ = connect_until;
    const bool open_beyond_loopback = std::any_of(options_.listen.begin(), options_.listen.end(),
                                                  [](const std::string& a) { return !LoopbackOnly(a); });
    if (curve_ && open_beyond_loopback) {
      Log("warn", "open_beyond_loopback",
          {{"listen", options_.listen},
           {"allow", options_.allow},
           {"why", "nvsd requires CURVE, but the Videohub protocol has no authentication: any client on the allowed "
                   "networks can read the router and take routes with this gateway's key"}});
    }
    while (!watch_->connected() && Clock::now() < connect_until && !stopping_) Turn(signal_fd);
    if (refreshes_done_ == 0) Refresh();
    while (refreshes_done_ == 0 && !stopping_) Turn(signal_fd);
    for (const auto& address : options_.listen) {
      const int fd = Listen(address);
      if (fd < 0) return 1;
      listeners_.push_back(fd);
    }
    while (!stopping_) Turn(signal_fd);
    for (auto& [serial, c] : clients_) close(c.fd);
    for (int fd : listeners_) close(fd);
    Log("info", "stopped");
    return 0;
  }

 private:
  // ---- sockets -------------------------------------------------------------

  int Listen(const std::string& address) {
    const auto colon = address.rfind(':');
    if (colon == std::string::npos) {
      Log("error", "bad_listen_address", {{"address", address}, {"why", "expected HOST:PORT"}});
      return -1;
    }
    std::string host = address.substr(0, colon);
    const std::string port = address.substr(colon + 1);
    if (host.size() > 1 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    addrinfo* found = nullptr;
    if (getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found) != 0 || found == nullptr) {
      Log("error", "bad_listen_address", {{"address", address}});
      return -1;
    }
    const int fd = socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, found->ai_addr, found->ai_addrlen) != 0 || listen(fd, 64) != 0) {
      Log("error", "cannot_listen", {{"address", address}, {"error", std::strerror(errno)}});
      freeaddrinfo(found);
      if (fd >= 0) close(fd);
      return -1;
    }
    freeaddrinfo(found);
    sockaddr_storage bound{};
    socklen_t len = sizeof bound;
    getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
    char port_text[NI_MAXSERV] = "?";
    getnameinfo(reinterpret_cast<sockaddr*>(&bound), len, nullptr, 0, port_text, sizeof port_text, NI_NUMERICSERV);
    Log("info", "listening", {{"address", address}, {"port", std::atoi(port_text)}});  // port 0 asks for a free one
    return fd;
  }

  void Accept(int listener) {
    for (;;) {
      sockaddr_storage addr{};
      socklen_t len = sizeof addr;
      const int fd = accept4(listener, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      if (!options_.allowed.empty() && !Allowed(options_.allowed, addr)) {
        char host[NI_MAXHOST] = "?";
        getnameinfo(reinterpret_cast<sockaddr*>(&addr), len, host, sizeof host, nullptr, 0, NI_NUMERICHOST);
        ++clients_refused_;
        ++connections_refused_["not_allowed"];
        // At most 10 lines a second: any host on the listening network must
        // not be able to fill the disk with them (the count says the rest).
        const auto now = Clock::now();
        if (now - refused_window_ >= std::chrono::seconds(1)) {
          refused_window_ = now;
          refused_logged_ = 0;
        }
        if (++refused_logged_ <= 10) {
          Log("warn", "client_refused",
              {{"peer", host}, {"why", "not in an --allow network"}, {"refused", clients_refused_}});
        }
        close(fd);
        continue;
      }
      if (clients_.size() >= options_.max_clients) {
        Log("warn", "client_refused", {{"why", "too many clients"}, {"max_clients", options_.max_clients}});
        ++connections_refused_["too_many_clients"];
        close(fd);
        continue;
      }
      const int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &options_.socket_send_buffer, sizeof options_.socket_send_buffer);
      char host[NI_MAXHOST] = "?", port[NI_MAXSERV] = "?";
      getnameinfo(reinterpret_cast<sockaddr*>(&addr), len, host, sizeof host, port, sizeof port,
                  NI_NUMERICHOST | NI_NUMERICSERV);
      Client c;
      c.fd = fd;
      c.serial = ++next_serial_;
      c.id = "videohub-" + std::to_string(c.serial);
      c.peer = std::string(host) + ":" + port;
      Log("info", "client_connected", {{"client", c.id}, {"peer", c.peer}});
      ++accepted_;
      auto& placed = clients_.emplace(c.serial, std::move(c)).first->second;
      Write(placed, Prelude(device_, view_ ? &*view_ : nullptr, placed.id));
    }
  }

  // Queues `text` and writes what the socket takes now. A client whose
  // unsent output passes the bound has stopped reading: it is dropped, so
  // that it cannot slow the others or grow without limit.
  void Write(Client& c, const std::string& text) {
    c.out += text;
    Flush(c);
    if (c.out.size() > options_.max_output_bytes) {
      Drop(c, "stopped_reading", "stopped reading (" + std::to_string(c.out.size()) + " bytes unsent)");
    }
  }

  void Flush(Client& c) {
    while (!c.out.empty() && c.fd >= 0) {
      const ssize_t n = send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        c.out.erase(0, static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
      Drop(c, "write_failed", std::string("write failed: ") + std::strerror(errno));
      return;
    }
  }

  // `reason`: the metrics' label (one of a few); `why`: the log's words.
  void Drop(Client& c, const char* reason, const std::string& why) {
    if (c.fd < 0) return;
    ++connections_closed_[reason];
    Log("info", "client_dropped", {{"client", c.id}, {"peer", c.peer}, {"why", why}});
    close(c.fd);
    c.fd = -1;
  }

  void Read(Client& c) {
    char buffer[16384];
    for (;;) {
      const ssize_t n = recv(c.fd, buffer, sizeof buffer, MSG_DONTWAIT);
      if (n > 0) {
        for (auto& block : c.reader.Feed(std::string_view(buffer, static_cast<std::size_t>(n)))) {
          c.pending.push_back(std::move(block));
        }
        if (c.reader.overflowed()) {
          Drop(c, "over_limits", "sent a line, block or burst over the limits");
          return;
        }
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
      // End of stream: a last block without its blank line still counts.
      for (auto& block : c.reader.Finish()) c.pending.push_back(std::move(block));
      c.read_closed = true;
      return;
    }
  }

  // ---- requests ------------------------------------------------------------

  // Handles the client's next blocks until one needs nvsd.
  void Serve(Client& c) {
    while (c.fd >= 0 && !c.waiting && !c.pending.empty()) {
      Block block = std::move(c.pending.front());
      c.pending.pop_front();
      const Request request = ParseRequest(block, view_ ? view_->inputs : 0, view_ ? view_->outputs : 0);
      if (std::holds_alternative<Ping>(request)) {
        ++acks_["ping"];
        Write(c, Ack());
      } else if (const auto* nak = std::get_if<Refusal>(&request)) {
        Log("info", "nak", {{"client", c.id}, {"block", block.header}, {"why", nak->reason}});
        // (Without a view every index is out of range: the device's absence is the cause.)
        ++naks_[view_ ? "invalid_request" : "device_absent"];
        Write(c, Nak());
      } else if (const auto* rename = std::get_if<FriendlyNameChange>(&request)) {
        // The gateway's own, as a unit's is: held in this process (until it
        // restarts: --friendly-name is the one it starts with), not in nvsd.
        device_.friendly_name = rename->name.empty() ? options_.friendly_name : rename->name;
        Log("info", "friendly_name", {{"client", c.id}, {"name", device_.friendly_name}});
        ++acks_["friendly_name"];
        Write(c, Ack());
        // Every client hears the new name, as from a unit.
        const std::string block_text = DeviceBlock(device_, view_ ? &*view_ : nullptr);
        for (auto& [serial, other] : clients_) {
          if (other.fd >= 0) Write(other, block_text);
        }
      } else if (!view_) {
        ++naks_["device_absent"];
        Write(c, Nak());  // nvsd is not there: nothing can be done, and nothing is pretended
      } else if (const auto* dump = std::get_if<DumpRequest>(&request)) {
        ++acks_["dump"];
        Write(c, Ack() + DumpBlock(*view_, dump->header, c.id));
      } else {
        SendCommand(c, request);
      }
    }
    if (c.fd >= 0 && c.read_closed && c.pending.empty() && !c.waiting && c.out.empty()) {
      Drop(c, "client_closed", "closed the connection");
    }
  }

  void SendCommand(Client& c, const Request& request) {
    json cmd = {{"client", c.id}};
    if (const auto* take = std::get_if<RouteTake>(&request)) {
      cmd["op"] = "route";
      cmd["routes"] = json::array();
      for (const auto& [out, in] : take->routes) cmd["routes"].push_back({{"output", out}, {"input", in}});
    } else if (const auto* labels = std::get_if<LabelChange>(&request)) {
      cmd["op"] = "label";
      cmd["kind"] = labels->input ? "input" : "output";
      cmd["labels"] = json::array();
      for (const auto& [index, text] : labels->labels) cmd["labels"].push_back({{"index", index}, {"text", text}});
    } else if (const auto* locks = std::get_if<LockChange>(&request)) {
      cmd["op"] = "lock";
      cmd["locks"] = json::array();
      for (const auto& [out, action] : locks->locks) {
        cmd["locks"].push_back({{"output", out}, {"action", std::string(1, action)}});
      }
    }
    const std::int64_t expires_at_ms = UnixNowMs() + options_.timeout_ms;
    const std::string id = Ask({{"type", "command"}, {"cmd", cmd}, {"expires_at_ms", expires_at_ms}},
                               InFlight{InFlight::Kind::kCommand, c.serial, {}, {}, false, {}});
    if (!in_flight_[id].unsent) ++forwarded_;
    c.waiting = true;
  }

  static std::int64_t UnixNowMs() {
    return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  }

  // Sends a request to nvsd; its id.
  std::string Ask(json request, InFlight purpose) {
    const std::string id = "vh-" + std::to_string(getpid()) + "-" + std::to_string(started_ns_) + "-" +
                           std::to_string(++next_request_);
    request["id"] = id;
    // A command's NAK waits a little past its expires_at_ms, so that nvsd,
    // which refuses it from then on, can never carry it out after the NAK.
    purpose.deadline = Clock::now() + milliseconds(options_.timeout_ms) +
                       (purpose.kind == InFlight::Kind::kCommand ? kExpiryMargin : milliseconds(0));
    if (purpose.kind == InFlight::Kind::kHeartbeat) purpose.deadline = Clock::now() + milliseconds(options_.absent_after_ms);
    purpose.bytes = request.dump(-1, ' ', false, json::error_handler_t::replace);
    purpose.sent = Clock::now();
    in_flight_[id] = purpose;
    last_asked_ = Clock::now();
    const bool sent = nvsd_.send(zmq::buffer(purpose.bytes), zmq::send_flags::dontwait).has_value();
    if (!sent && endpoints_.size() > 1 && !watch_->connected() &&
        Clock::now() - current_since_ > milliseconds(kMemberTryMs)) {
      // A cluster member whose connection is gone (its host may be): the
      // next one, and this request to it as soon as it is connected.
      left_silent_ = current_;
      MoveTo(NextEndpoint(), "not connected");
      resend_.push_back(id);
      return id;
    }
    if (!sent) {
      in_flight_[id].deadline = Clock::now();  // not sent: answered as a timeout at once
      in_flight_[id].unsent = true;
    }
    return id;
  }

  void Refresh() {
    if (refresh_pending_) return;
    refresh_pending_ = true;
    next_refresh_ = Clock::now() + milliseconds(options_.refresh_ms);
    Ask({{"type", "query"}, {"query", {{"op", "dump"}}}}, InFlight{InFlight::Kind::kRefresh, 0, {}, {}, false, {}});
  }

  void OnNvsdReply(const json& reply) {
    const std::string id = reply.value("id", "");
    last_answer_ = Clock::now();
    if (!view_ && !refresh_pending_) Refresh();  // nvsd is back: read its state now, not at the next refresh
    auto it = in_flight_.find(id);
    if (it == in_flight_.end()) {
      // Late: its deadline already answered it. A command NAKed meanwhile
      // cannot have been carried out (nvsd refuses it after its expiry), but
      // say so loudly if nvsd says otherwise, and show the true state.
      if (nacked_.count(id) != 0 && reply.value("status", "") == "committed") {
        Log("error", "late_commit_after_nak", {{"id", id}, {"seq", reply.value("seq", 0)}});
        Refresh();
      }
      nacked_.erase(id);
      return;
    }
    if (reply.value("status", "") == "not_leader" && endpoints_.size() > 1) {
      // A cluster member that does not lead: to the leader it names (else
      // the next member), and the same request again, with its id, while
      // its deadline lasts (nvsd answers a command at most once per id).
      const std::string leader = reply.value("leader", "");
      if (!leader.empty() && leader == left_silent_) {
        // It names the member just left for being gone (its lease has not
        // run out): this one may lead next; asked again a little later.
        resend_at_ = Clock::now() + milliseconds(50);
      } else {
        MoveTo(!leader.empty() && leader != current_ ? leader : NextEndpoint(), "not_leader");
      }
      if (Clock::now() < it->second.deadline) {
        resend_.push_back(id);  // (once the connection is up and resend_at_ passed: FlushResends)
        FlushResends();
        return;
      }
    }
    const InFlight purpose = it->second;
    in_flight_.erase(it);
    latency_[static_cast<std::size_t>(purpose.kind)].Observe(
        std::chrono::duration<double>(Clock::now() - purpose.sent).count());
    if (purpose.kind == InFlight::Kind::kHeartbeat) return;
    if (purpose.kind == InFlight::Kind::kRefresh) {
      refresh_pending_ = false;
      ++refreshes_done_;
      if (reply.value("status", "") != "answered") {
        SetView(std::nullopt, "nvsd answered the dump with " + reply.value("status", "?") + ": " + reply.value("reason", ""));
        return;
      }
      std::string error;
      auto view = ViewFromDump(reply["result"].value("state", json()), &error);
      if (!view) Log("error", "bad_dump", {{"error", error}});
      SetView(view, view ? "" : "nvsd's dump is not a router state: " + error);
      return;
    }
    auto client = clients_.find(purpose.client);
    const std::string status = reply.value("status", "");
    const json result = reply.value("result", json::object());
    const bool ok = status == "committed" && result.value("ok", false);
    if (status == "quarantined") {
      ++quarantined_;
      // The operator's notice: nvsd logged and published the quarantine; the
      // gateway says which panel sent it.
      Log("error", "quarantined", {{"client", client != clients_.end() ? client->second.id : "?"},
                                    {"peer", client != clients_.end() ? client->second.peer : "?"},
                                    {"report", reply.value("report", "")},
                                    {"reason", reply.value("reason", "")}});
    } else if (status == "unavailable") {
      Log("warn", "nvsd_unavailable", {{"reason", reply.value("reason", "")}});
    } else if (status == "rejected" && reply.value("code", "") == "no_quorum") {
      // As for a quarantine: the operator's notice, naming the panel.
      Log("error", "no_quorum", {{"client", client != clients_.end() ? client->second.id : "?"},
                                  {"peer", client != clients_.end() ? client->second.peer : "?"},
                                  {"reason", reply.value("reason", "")}});
    } else if (status == "rejected") {
      Log("warn", "nvsd_rejected", {{"client", client != clients_.end() ? client->second.id : "?"},
                                    {"code", reply.value("code", "")}, {"reason", reply.value("reason", "")}});
    }
    const bool sender_here = client != clients_.end() && client->second.fd >= 0;
    if (client != clients_.end()) client->second.waiting = false;
    if (ok && view_) {
      // The change, at once, to everyone (from the committed result: no
      // second round trip); the periodic dump corrects any drift. The sender
      // gets its ACK first, in the same write as its status block.
      RouterView after = *view_;
      Apply(result, after);
      Broadcast(Diff(*view_, after), after, sender_here ? client->first : 0);
      view_ = std::move(after);
    } else if (sender_here) {
      Write(client->second, ok ? Ack() : Nak());
    }
    if (sender_here) ++(ok ? acks_["command"] : naks_[NakCause(status, reply, result)]);
    if (client != clients_.end()) Serve(client->second);
  }

  // The metrics' cause of a NAK for nvsd's answer to a command.
  static const char* NakCause(const std::string& status, const json& reply, const json& result) {
    if (status == "committed") return result.value("error", json()) == "locked" ? "locked" : "router_refused";
    if (status == "quarantined") return "quarantined";
    if (status == "unavailable") return "nvsd_unavailable";
    if (status == "not_leader") return "no_leader";
    if (status == "rejected" && reply.value("code", "") == "no_quorum") return "no_quorum";
    return "nvsd_rejected";
  }

  // Applies a committed result's "changed" list (SPEC.md §3) to a view.
  static void Apply(const json& result, RouterView& view) {
    const std::string kind = result.value("kind", "");
    for (const auto& change : result.value("changed", json::array())) {
      if (change.contains("input") && change.contains("output")) {
        const int out = change.value("output", -1);
        if (out >= 0 && out < view.outputs) view.routes[static_cast<std::size_t>(out)] = change.value("input", 0);
      } else if (change.contains("owner") && change.contains("output")) {
        const int out = change.value("output", -1);
        if (out < 0 || out >= view.outputs) continue;
        view.lock_owners[static_cast<std::size_t>(out)] =
            change["owner"].is_string() ? std::optional<std::string>(change["owner"].get<std::string>()) : std::nullopt;
      } else if (change.contains("index") && change.contains("text")) {
        auto& labels = kind == "input" ? view.input_labels : view.output_labels;
        const int index = change.value("index", -1);
        if (index >= 0 && static_cast<std::size_t>(index) < labels.size()) {
          labels[static_cast<std::size_t>(index)] = change.value("text", "");
        }
      }
    }
  }

  // The status blocks of `changes` to every client; `acked` (a serial, or 0)
  // gets "ACK" in front of its own, even when nothing changed.
  void Broadcast(const Changes& changes, const RouterView& view, std::uint64_t acked = 0) {
    for (auto& [serial, c] : clients_) {
      if (c.fd < 0 || (!changes.any() && serial != acked)) continue;
      std::string text = serial == acked ? Ack() : "";
      if (!changes.input_labels.empty()) text += LabelsBlock(view, true, changes.input_labels);
      if (!changes.output_labels.empty()) text += LabelsBlock(view, false, changes.output_labels);
      if (!changes.locks.empty()) text += LocksBlock(view, changes.locks, c.id);
      if (!changes.routes.empty()) text += RoutingBlock(view, changes.routes);
      Write(c, text);
    }
  }

  // A new view from nvsd (or none: nvsd is not reachable or not serving).
  void SetView(std::optional<RouterView> view, const std::string& why) {
    if (!view) {
      if (!view_ && announced_absent_) return;
      Log("warn", "device_absent", {{"why", why}});
      view_.reset();
      announced_absent_ = true;
      DeviceInfo absent = device_;
      absent.present = false;
      for (auto& [serial, c] : clients_) {
        if (c.fd >= 0) Write(c, DeviceResync(absent, nullptr, c.id));
      }
      return;
    }
    if (!view_ || view_->inputs != view->inputs || view_->outputs != view->outputs) {
      Log("info", "device_present", {{"inputs", view->inputs}, {"outputs", view->outputs}});
      view_ = std::move(view);
      announced_absent_ = false;
      for (auto& [serial, c] : clients_) {
        if (c.fd >= 0) Write(c, DeviceResync(device_, &*view_, c.id));
      }
      return;
    }
    Broadcast(Diff(*view_, *view), *view);
    view_ = std::move(view);
  }

  // ---- metrics --------------------------------------------------------------

  // The page a scrape gets, rendered on this thread (the counters are its own).
  std::string Page() const {
    using metrics::MetricType;
    metrics::Exposition page;
    const auto by = [&](const char* name, const char* label, const std::map<std::string, std::uint64_t>& counts,
                        const char* help) {
      page.Family(name, MetricType::kCounter, help);
      for (const auto& [value, n] : counts) page.Sample(name, {{label, value}}, static_cast<double>(n));
    };
    const auto open = std::count_if(clients_.begin(), clients_.end(), [](const auto& e) { return e.second.fd >= 0; });
    page.Gauge("nvs_videohub_clients", "Videohub clients (panels, automation) connected now.",
               static_cast<double>(open));
    page.Counter("nvs_videohub_connections_accepted_total", "Client connections accepted.",
                 static_cast<double>(accepted_));
    by("nvs_videohub_connections_refused_total", "reason", connections_refused_,
       "Client connections closed as soon as accepted: not_allowed (the peer is in no --allow network), "
       "too_many_clients (--max-clients were connected).");
    by("nvs_videohub_connections_closed_total", "reason", connections_closed_,
       "Client connections that ended: client_closed (the client closed it), stopped_reading (its unsent output "
       "passed --max-output-bytes), write_failed, over_limits (a line, block or burst over the protocol's limits).");
    by("nvs_videohub_acks_total", "request", acks_,
       "ACKs sent to clients: command (a route, label or lock change nvsd committed), ping, dump (a block asked "
       "for), friendly_name.");
    by("nvs_videohub_naks_total", "cause", naks_,
       "NAKs sent to clients; nothing was changed. invalid_request: malformed, unknown, out of range or read-only. "
       "device_absent: the gateway has no view of nvsd's state, so nothing was sent. nvsd_not_connected: no live "
       "connection to nvsd to send it on. nvsd_timeout: no answer by the command's deadline (--timeout-ms). "
       "quarantined: nvsd blocked it (it killed variants). no_quorum: the variants disagreed. nvsd_unavailable: "
       "nvsd could not decide safely then. nvsd_rejected: nvsd refused it (for example expired). no_leader: no "
       "cluster member led in time. locked: the output is locked by another connection or client. router_refused: "
       "the router refused it otherwise.");
    page.Counter("nvs_videohub_commands_forwarded_total",
                 "Route, label and lock changes sent to nvsd (each is one command, answered ACK or NAK).",
                 static_cast<double>(forwarded_));
    page.Counter("nvs_videohub_commands_quarantined_total",
                 "Commands nvsd answered quarantined: they killed variants, or are identical to one that did, and "
                 "are blocked until a person releases them (nvs quarantine).",
                 static_cast<double>(quarantined_));
    page.Family("nvs_videohub_nvsd_answer_seconds", MetricType::kHistogram,
                "How long nvsd took to answer the gateway's requests that were answered in time: command (a "
                "client's change), dump (the periodic read of the router's state), status (the heartbeat).");
    page.Observations("nvs_videohub_nvsd_answer_seconds", {{"request", "command"}},
                      latency_[static_cast<std::size_t>(InFlight::Kind::kCommand)]);
    page.Observations("nvs_videohub_nvsd_answer_seconds", {{"request", "dump"}},
                      latency_[static_cast<std::size_t>(InFlight::Kind::kRefresh)]);
    page.Observations("nvs_videohub_nvsd_answer_seconds", {{"request", "status"}},
                      latency_[static_cast<std::size_t>(InFlight::Kind::kHeartbeat)]);
    page.Gauge("nvs_videohub_nvsd_connected",
               "1 while the connection to nvsd (in a cluster, the member talked to) is up and accepted; 0 while it "
               "is down or nvsd refused this gateway's key.",
               watch_ && watch_->connected() ? 1 : 0);
    page.Gauge("nvs_videohub_device_present",
               "1 while clients are shown the router (Device present: true); 0 while it is absent (nvsd "
               "unreachable, not answering, refusing this gateway, or not serving).",
               view_ ? 1 : 0);
    page.Family("nvs_videohub_locked_outputs", MetricType::kGauge,
                "Router outputs locked, by any owner, in the gateway's latest view of nvsd's state (no sample while "
                "the device is absent).");
    if (view_) {
      const auto locked = std::count_if(view_->lock_owners.begin(), view_->lock_owners.end(),
                                        [](const auto& owner) { return owner.has_value(); });
      page.Sample("nvs_videohub_locked_outputs", {}, static_cast<double>(locked));
    }
    return page.Take();
  }

  // ---- the loop -------------------------------------------------------------

  void Turn(int signal_fd) {
    std::vector<zmq::pollitem_t> items;
    items.push_back({nvsd_.handle(), 0, ZMQ_POLLIN, 0});
    items.push_back({nullptr, signal_fd, ZMQ_POLLIN, 0});
    items.push_back({watch_->monitor().handle(), 0, ZMQ_POLLIN, 0});
    if (pages_ != nullptr) items.push_back({nullptr, pages_->fd(), ZMQ_POLLIN, 0});
    const std::size_t first_listener = items.size();
    for (int fd : listeners_) items.push_back({nullptr, fd, ZMQ_POLLIN, 0});
    std::vector<std::uint64_t> order;
    for (auto& [serial, c] : clients_) {
      // (After the end of its stream a socket stays readable: not polled for input again.)
      const short events = static_cast<short>((c.read_closed ? 0 : ZMQ_POLLIN) | (c.out.empty() ? 0 : ZMQ_POLLOUT));
      items.push_back({nullptr, c.fd, events, 0});
      order.push_back(serial);
    }
    auto wake = std::min(next_refresh_, next_heartbeat_);
    for (const auto& [id, f] : in_flight_) wake = std::min(wake, f.deadline);
    if (retry_at_) wake = std::min(wake, *retry_at_);
    // (Requests to send again wait for the new connection: looked at each millisecond.)
    if (!resend_.empty()) wake = std::min(wake, std::max(resend_at_, Clock::now() + milliseconds(1)));
    const auto wait = std::max(milliseconds(0), std::chrono::duration_cast<milliseconds>(wake - Clock::now()));
    try {
      zmq::poll(items.data(), items.size(), wait + milliseconds(1));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
    if (items[1].revents & ZMQ_POLLIN) {
      signalfd_siginfo info{};
      if (read(signal_fd, &info, sizeof info) == sizeof info) stopping_ = true;
    }
    if (items[2].revents & ZMQ_POLLIN) CheckHandshake();
    if (pages_ != nullptr && (items[3].revents & ZMQ_POLLIN)) pages_->Answer([this] { return Page(); });
    if (items[0].revents & ZMQ_POLLIN) {
      zmq::message_t message;
      while (nvsd_.recv(message, zmq::recv_flags::dontwait)) {
        const json reply = json::parse(message.to_string_view(), nullptr, false);
        if (reply.is_object()) OnNvsdReply(reply);
      }
    }
    for (std::size_t i = 0; i < listeners_.size(); ++i) {
      if (items[first_listener + i].revents & ZMQ_POLLIN) Accept(listeners_[i]);
    }
    for (std::size_t k = 0; k < order.size(); ++k) {
      auto it = clients_.find(order[k]);
      if (it == clients_.end()) continue;
      Client& c = it->second;
      const short revents = items[first_listener + listeners_.size() + k].revents;
      if (c.fd >= 0 && (revents & ZMQ_POLLOUT)) Flush(c);
      if (c.fd >= 0 && (revents & (ZMQ_POLLIN | ZMQ_POLLERR)) && !c.read_closed) Read(c);
      Serve(c);
    }
    FlushResends();
    CheckDeadlines();
    RetryAfterRefusal();
    if (Clock::now() >= next_refresh_) Refresh();
    Heartbeat();
    std::erase_if(clients_, [](const auto& entry) { return entry.second.fd < 0 && !entry.second.waiting; });
  }

  // nvsd refusing this gateway (its CURVE key, or mismatched security) is
  // logged once per episode, and the device is absent at once, not only
  // after a timeout. nvsd may be set right while the gateway runs, so it
  // goes on trying.
  void CheckHandshake() {
    const Status refused = watch_->Check();
    if (!refused.ok()) {
      if (!refused_) {
        refused_ = true;
        Log("error", "nvsd_refused", {{"nvsd", options_.endpoint}, {"why", refused.message()}});
        SetView(std::nullopt, "nvsd refused this gateway: " + refused.message());
      }
      if (!retry_at_) retry_at_ = Clock::now() + milliseconds(std::max(options_.refresh_ms, 1000));
    } else if (refused_ && watch_->connected()) {
      refused_ = false;
      retry_at_.reset();
      Log("info", "nvsd_accepted", {{"nvsd", options_.endpoint}});
    }
    if (watch_->connected() != connected_) {
      connected_ = watch_->connected();
      Log("info", connected_ ? "nvsd_connected" : "nvsd_disconnected", {{"nvsd", options_.endpoint}});
    }
    // Connected again (nvsd restarted): the view at once, not at the next refresh.
    if (connected_ && !view_ && !refresh_pending_ && refreshes_done_ > 0) Refresh();
  }

  // Requests to send again to the member moved to, as soon as it is
  // connected (a request sent before is not queued: ZMQ_IMMEDIATE), while
  // their deadlines last.
  void FlushResends() {
    if (Clock::now() < resend_at_) return;
    std::erase_if(resend_, [&](const std::string& id) {
      auto it = in_flight_.find(id);
      if (it == in_flight_.end()) return true;  // (answered, or its deadline passed)
      return nvsd_.send(zmq::buffer(it->second.bytes), zmq::send_flags::dontwait).has_value();
    });
  }

  std::string NextEndpoint() const {
    auto at = std::find(endpoints_.begin(), endpoints_.end(), current_);
    return at == endpoints_.end() || at + 1 == endpoints_.end() ? endpoints_.front() : *(at + 1);
  }

  // Talks to `endpoint` from now on (a cluster's member).
  void MoveTo(const std::string& endpoint, const char* why) {
    if (endpoint == current_) return;
    Log("info", "nvsd_member", {{"from", current_}, {"to", endpoint}, {"why", why}});
    OpenNvsdSocket(endpoint);
    connected_ = false;
  }

  // libzmq does not reconnect a socket whose key nvsd refused: the gateway
  // connects again itself, at most once a second (or --refresh-ms).
  void RetryAfterRefusal() {
    if (!retry_at_ || Clock::now() < *retry_at_) return;
    retry_at_.reset();
    try {
      nvsd_.disconnect(current_);
    } catch (const zmq::error_t&) {
      // (already gone with the refused session)
    }
    nvsd_.connect(current_);
  }

  // nvsd is asked for its status every --heartbeat-ms while nothing else is
  // asked of it; with no answer to anything for --absent-after-ms, the
  // device is absent (panels are told within about a second, not at the
  // next refresh's timeout).
  void Heartbeat() {
    const auto now = Clock::now();
    if (now < next_heartbeat_) return;
    next_heartbeat_ = now + milliseconds(options_.heartbeat_ms);
    const bool asking = std::any_of(in_flight_.begin(), in_flight_.end(),
                                    [](const auto& entry) { return entry.second.kind == InFlight::Kind::kHeartbeat; });
    if (!asking && now - last_asked_ >= milliseconds(options_.heartbeat_ms)) {
      Ask({{"type", "status"}}, InFlight{InFlight::Kind::kHeartbeat, 0, {}, {}, false, {}});
    }
  }

  void CheckDeadlines() {
    const auto now = Clock::now();
    for (auto it = in_flight_.begin(); it != in_flight_.end();) {
      if (now < it->second.deadline) {
        ++it;
        continue;
      }
      const InFlight f = it->second;
      const std::string id = it->first;
      it = in_flight_.erase(it);
      if (f.kind == InFlight::Kind::kHeartbeat) {
        if (now - last_answer_ >= milliseconds(options_.absent_after_ms)) {
          SetView(std::nullopt, "nvsd did not answer for " + std::to_string(options_.absent_after_ms) + " ms");
          // A cluster: the member may be gone with its host; the next one.
          if (endpoints_.size() > 1) MoveTo(NextEndpoint(), "no answer");
        }
        continue;
      }
      if (f.kind == InFlight::Kind::kRefresh) {
        refresh_pending_ = false;
        ++refreshes_done_;
        SetView(std::nullopt, f.unsent ? "nvsd is not connected (the state could not be asked for)"
                                       : "nvsd did not answer within " + std::to_string(options_.timeout_ms) + " ms");
        continue;
      }
      auto client = clients_.find(f.client);
      if (client == clients_.end()) continue;
      client->second.waiting = false;
      Log("warn", "nvsd_timeout", {{"client", client->second.id}, {"id", id}, {"sent", !f.unsent}});
      nacked_.insert(id);
      nacked_order_.push_back(id);
      if (nacked_order_.size() > 4096) {  // the oldest go first
        nacked_.erase(nacked_order_.front());
        nacked_order_.pop_front();
      }
      if (client->second.fd >= 0) {
        ++naks_[f.unsent ? "nvsd_not_connected" : "nvsd_timeout"];
        Write(client->second, Nak());  // no answer is not an ACK
      }
      Serve(client->second);
    }
  }

  Options options_;
  std::optional<protocol::ClientConfig> curve_;
  metrics::PageRequests* pages_;  // null without --metrics
  std::string metrics_address_;   // where the metrics endpoint listens, as bound
  zmq::context_t context_{1};
  zmq::socket_t nvsd_{context_, zmq::socket_type::dealer};
  std::vector<std::string> endpoints_;  // nvsd's client endpoint, or a cluster's members
  std::vector<std::string> resend_;     // ids to send again once connected (FlushResends)
  Clock::time_point resend_at_{};       // not before this
  Clock::time_point current_since_{};   // when current_ was connected to
  std::string left_silent_;             // the member last left because its connection was gone
  static constexpr int kMemberTryMs = 500;
  std::string current_;                 // the one talked to now
  std::optional<protocol::HandshakeWatch> watch_;  // after nvsd_: it stops its monitor first
  bool refused_ = false;                   // nvsd refused the last handshake
  bool connected_ = false;                 // as last logged (nvsd_connected / nvsd_disconnected)
  std::optional<Clock::time_point> retry_at_;  // when to connect again after a refusal
  std::vector<int> listeners_;
  std::uint64_t clients_refused_ = 0;  // connections from outside the --allow networks
  Clock::time_point refused_window_{};  // the second whose refusals are being logged
  int refused_logged_ = 0;
  std::map<std::uint64_t, Client> clients_;
  std::uint64_t next_serial_ = 0;
  std::uint64_t next_request_ = 0;
  std::int64_t started_ns_ = std::chrono::system_clock::now().time_since_epoch().count();
  std::map<std::string, InFlight> in_flight_;
  std::set<std::string> nacked_;  // commands NAKed for want of an answer (recent ones)
  std::deque<std::string> nacked_order_;
  Clock::time_point last_asked_ = Clock::now();
  Clock::time_point last_answer_ = Clock::now();
  Clock::time_point next_heartbeat_ = Clock::now();
  std::optional<RouterView> view_;
  bool announced_absent_ = false;
  bool refresh_pending_ = false;
  std::uint64_t refreshes_done_ = 0;  // answered or timed out
  Clock::time_point next_refresh_ = Clock::now();
  DeviceInfo device_;
  bool stopping_ = false;
  // The metrics' counters. Every label value is here from the start (a
  // series that appears only on its first event breaks rate()).
  std::uint64_t accepted_ = 0;
  std::uint64_t forwarded_ = 0;
  std::uint64_t quarantined_ = 0;
  std::map<std::string, std::uint64_t> connections_refused_ = {{"not_allowed", 0}, {"too_many_clients", 0}};
  std::map<std::string, std::uint64_t> connections_closed_ = {
      {"client_closed", 0}, {"stopped_reading", 0}, {"write_failed", 0}, {"over_limits", 0}};
  std::map<std::string, std::uint64_t> acks_ = {{"command", 0}, {"ping", 0}, {"dump", 0}, {"friendly_name", 0}};
  std::map<std::string, std::uint64_t> naks_ = {
      {"invalid_request", 0}, {"device_absent", 0}, {"nvsd_not_connected", 0}, {"nvsd_timeout", 0},
      {"quarantined", 0},     {"no_quorum", 0},     {"nvsd_unavailable", 0},   {"nvsd_rejected", 0},
      {"no_leader", 0},       {"locked", 0},        {"router_refused", 0}};
  std::vector<metrics::Histogram> latency_ =  // by InFlight::Kind
      std::vector<metrics::Histogram>(3, metrics::Histogram(metrics::LatencyBuckets()));
};

}  // namespace
}  // namespace nvs::videohub

int main(int argc, char** argv) {
  nvs::videohub::Options options;
  CLI::App app{"nvs-videohub: the Blackmagic Videohub Ethernet protocol in front of nvsd"};
  app.add_option("--listen", options.listen,
                 "HOST:PORT to listen on (repeatable); anything but loopback needs --allow")
      ->capture_default_str();
  app.add_option("--allow", options.allow,
                 "a client network that may connect, as CIDR (10.1.2.0/24, 192.168.1.7, fd00::/8; repeatable); "
                 "needed to listen beyond loopback. The Videohub protocol has no authentication: this is its only "
                 "check");
  app.add_option("--endpoint", options.endpoint,
                 "nvsd's client endpoint, or a cluster's members comma-separated (default: $NVS_ENDPOINT, else the "
                 "client config's \"endpoint\", else tcp://127.0.0.1:5555)");
  app.add_option("--client-config", options.client_config,
                 "the client config naming nvsd's public key and this gateway's CURVE key files, for an nvsd whose "
                 "client endpoint requires CURVE (default: $NVS_CLIENT_CONFIG)");
  app.add_option("--friendly-name", options.friendly_name, "the Friendly name clients show")->capture_default_str();
  app.add_option("--unique-id", options.unique_id, "the Unique ID clients see");
  app.add_option("--refresh-ms", options.refresh_ms, "how often the state is read from nvsd")
      ->capture_default_str()
      ->check(CLI::Range(10, 600000));
  app.add_option("--timeout-ms", options.timeout_ms,
                 "a command's deadline: NAK when nvsd has not answered by then (nvsd is told the same deadline and "
                 "never carries the command out after it); the refresh's answer, else the device is absent")
      ->capture_default_str()
      ->check(CLI::Range(10, 600000));
  app.add_option("--heartbeat-ms", options.heartbeat_ms, "how often nvsd is asked for its status when idle")
      ->capture_default_str()
      ->check(CLI::Range(10, 600000));
  app.add_option("--absent-after-ms", options.absent_after_ms,
                 "no answer from nvsd for this long: the device is shown absent")
      ->capture_default_str()
      ->check(CLI::Range(10, 600000));
  app.add_option("--max-output-bytes", options.max_output_bytes, "unsent output per client before it is dropped")
      ->capture_default_str();
  app.add_option("--max-clients", options.max_clients, "connections at once")->capture_default_str();
  app.add_option("--socket-send-buffer", options.socket_send_buffer, "kernel send buffer per client (bytes)")
      ->capture_default_str()
      ->check(CLI::Range(4096, 64 << 20));
  app.add_option("--metrics", options.metrics,
                 "HOST:PORT to serve Prometheus metrics on, at /metrics (port 0: any free port, logged as "
                 "metrics_listening). Read-only and unauthenticated: bind it to loopback or a management network");
  CLI11_PARSE(app, argc, argv);
  for (const auto& text : options.allow) {
    std::string why;
    auto network = nvs::videohub::ParseNetwork(text, &why);
    if (!network) {
      std::cerr << "nvs-videohub: --allow " << text << ": " << why << "\n";
      return 2;
    }
    options.allowed.push_back(*network);
  }
  for (const auto& address : options.listen) {
    if (options.allowed.empty() && !nvs::videohub::LoopbackOnly(address)) {
      std::cerr << "nvs-videohub: --listen " << address
                << " reaches beyond this machine, and the Videohub protocol has no authentication: say which client "
                   "networks may connect with --allow CIDR (repeatable, e.g. --allow 10.1.2.0/24), or listen on "
                   "127.0.0.1\n";
      return 2;
    }
  }
  auto curve = nvs::protocol::ResolveClientConfig(options.client_config);
  if (!curve.ok()) {
    std::cerr << "nvs-videohub: " << curve.status().message() << "\n";
    return 2;
  }
  options.endpoint = nvs::protocol::ResolveEndpoint(options.endpoint, curve.value());
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigprocmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // After the signals are blocked: the endpoint's threads inherit the mask,
  // so SIGTERM reaches the signalfd and not one of them.
  // (`pages` outlives the endpoint, whose handlers may still ask while it stops.)
  // (Shared with the handler: an endpoint that cannot stop in time leaves
  // its threads, and what they use, behind; metrics/endpoint.h.)
  std::shared_ptr<nvs::metrics::PageRequests> pages;
  std::unique_ptr<nvs::metrics::Endpoint> endpoint;
  if (!options.metrics.empty()) {
    pages = std::make_shared<nvs::metrics::PageRequests>();
    // A scrape waits for the loop at most 2 s (then 503): a stuck loop shows as a failed scrape.
    auto started =
        nvs::metrics::Endpoint::Start(options.metrics, [pages] { return pages->Ask(std::chrono::seconds(2)); });
    if (!started.ok()) {
      std::cerr << "nvs-videohub: --metrics: " << started.status().message() << "\n";
      return 2;
    }
    endpoint = std::move(started.value());
  }
  const int signal_fd = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
  return nvs::videohub::Gateway(options, std::move(curve.value()), pages.get(),
                                endpoint ? endpoint->address() : std::string())
      .Run(signal_fd);
}
