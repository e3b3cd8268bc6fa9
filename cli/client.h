// A client of nvsd's front end (protocol/CLIENT.md): one DEALER socket,
// requests with ids unique across runs, replies matched by id. With a client
// config (--client-config FILE or $NVS_CLIENT_CONFIG) it is a CURVE client,
// and a socket monitor reports nvsd's refusal of it at once.
//
// Cluster mode (CLIENT.md §8): the endpoint may be several, comma-separated
// (the members of a cluster). A `not_leader` reply moves the client to the
// leader it names (else to the next endpoint), and an endpoint that does not
// answer within a try is left for the next one; each time the same request
// is sent again with the same id, so it is carried out at most once.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common.h"
#include "nvs/protocol/curve_client.h"
#include "nvs/status.h"

namespace nvs::cli {

class Client {
 public:
  // Connects to `endpoint` (or the first of several, comma-separated); a
  // CURVE client when `curve` is given.
  Client(const std::string& endpoint, const std::optional<protocol::ClientConfig>& curve) : curve_(curve) {
    std::size_t from = 0;
    while (from <= endpoint.size()) {
      const std::size_t comma = std::min(endpoint.find(',', from), endpoint.size());
      if (comma > from) endpoints_.push_back(endpoint.substr(from, comma - from));
      from = comma + 1;
    }
    if (endpoints_.empty()) endpoints_.push_back(endpoint);
    ConnectTo(endpoints_.front());
  }

  const std::string& endpoint() const { return endpoint_; }

  // How long one endpoint of several is given to answer before the next is
  // tried (a cluster's takeover: the old leader's host may be gone).
  static constexpr int kTryMs = 500;

  // Sends a request and waits for the reply carrying its id. Returns the
  // reply; nullopt when none came within `timeout_ms`; an error as soon as
  // nvsd refused this client (its CURVE key, or mismatched security).
  Result<std::optional<nlohmann::json>> Call(nlohmann::json request, int timeout_ms) {
    return CallWith([&](const std::string& id) {
      request["id"] = id;
      return request.dump();
    }, timeout_ms);
  }

  // The same with the request's bytes made by `make` from the id: a command
  // is passed on as the user wrote it (nlohmann would refuse a number such
  // as 1e400, which is valid JSON: nvsd says what it makes of it).
  Result<std::optional<nlohmann::json>> CallWith(const std::function<std::string(const std::string& id)>& make,
                                                 int timeout_ms) {
    // nvsd remembers request ids (exactly-once, across its restarts): each
    // must be unique, not just within this run.
    const std::string id = prefix_ + std::to_string(++next_id_);
    const std::string bytes = make(id);
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      const bool several = endpoints_.size() > 1;
      const auto try_until =
          several ? std::min(until, std::chrono::steady_clock::now() + std::chrono::milliseconds(kTryMs)) : until;
      auto got = Attempt(id, bytes, try_until);
      if (!got.ok()) return got;
      if (got.value()) {
        const nlohmann::json& reply = *got.value();
        if (reply.value("status", "") != "not_leader") return got;
        // Where the leader is: the member says, else the next endpoint.
        const std::string leader = reply.value("leader", "");
        if (std::chrono::steady_clock::now() >= until) return got;
        // (The member that did not answer is still named while its lease
        // lasts: this one is asked again shortly, not the silent one.)
        // (Until the call's deadline: while the silent one's lease lasts,
        // nobody else can lead, and once it ends this member may.)
        if (!leader.empty() && leader == gave_up_on_) {
          Pause(until);
        } else if (!leader.empty() && leader != endpoint_) {
          if (std::find(endpoints_.begin(), endpoints_.end(), leader) == endpoints_.end()) endpoints_.push_back(leader);
          ConnectTo(leader);
        } else {
          NextEndpoint();
          Pause(until);  // (no leader yet: an election takes about the lease's TTL)
        }
        continue;
      }
      if (!several || std::chrono::steady_clock::now() >= until) return got;
      gave_up_on_ = endpoint_;
      NextEndpoint();
    }
  }

 private:
  void ConnectTo(const std::string& endpoint) {
    watch_.reset();
    socket_.reset();
    endpoint_ = endpoint;
    socket_.emplace(context_, zmq::socket_type::dealer);
    socket_->set(zmq::sockopt::linger, 0);
    socket_->set(zmq::sockopt::reconnect_ivl, 100);
    if (curve_) protocol::ApplyCurveClient(*socket_, *curve_);
    watch_.emplace(context_, *socket_, curve_.has_value(), curve_ ? curve_->keys.public_key : std::string());
    socket_->connect(endpoint);
  }

  void NextEndpoint() {
    auto at = std::find(endpoints_.begin(), endpoints_.end(), endpoint_);
    const std::size_t next = at == endpoints_.end() ? 0 : (static_cast<std::size_t>(at - endpoints_.begin()) + 1) % endpoints_.size();
    ConnectTo(endpoints_[next]);
  }

  // A tenth of a try, or less if the deadline comes first: between two
  // members that both say no leader is known yet.
  void Pause(std::chrono::steady_clock::time_point until) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    zmq::pollitem_t item{socket_->handle(), 0, 0, 0};
    zmq::poll(&item, 1, std::max(std::chrono::milliseconds(0), std::min(left, std::chrono::milliseconds(kTryMs / 10))));
  }

  // One send of the request to the current endpoint, and its reply by `until`.
  Result<std::optional<nlohmann::json>> Attempt(const std::string& id, const std::string& bytes,
                                                std::chrono::steady_clock::time_point until) {
    zmq::socket_t& socket = *socket_;
    // A DEALER's send blocks while it has no peer to queue for: after nvsd
    // refused the handshake, libzmq drops the connection and does not try
    // again, so a blocking send here waited forever (found as a CI hang of
    // NvsdCurve.NvsSaysAtOnceThatNvsdRefusedItWithExitCode4 under load). The
    // send waits like the reply: for the deadline, or nvsd's refusal.
    while (!socket.send(zmq::buffer(bytes), zmq::send_flags::dontwait)) {
      nvs::Status refused = watch_->Check();
      if (!refused.ok()) return refused;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::optional<nlohmann::json>();
      zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLOUT, 0}, {watch_->monitor().handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 2, left);
    }
    for (;;) {
      nvs::Status refused = watch_->Check();
      if (!refused.ok()) return refused;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::optional<nlohmann::json>();
      zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0}, {watch_->monitor().handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 2, left);
      zmq::message_t message;
      while (socket.recv(message, zmq::recv_flags::dontwait)) {
        nlohmann::json reply = nlohmann::json::parse(message.to_string(), nullptr, false);
        if (reply.is_discarded() || !reply.is_object()) continue;
        // A rejection with a null id answers a request nvsd could not read
        // the id of: with one request outstanding, it is this one's.
        const auto reply_id = reply.value("id", nlohmann::json());
        if (reply_id == id || (reply_id.is_null() && reply.value("status", "") == "rejected")) {
          return std::optional(std::move(reply));
        }
      }
    }
  }

  std::optional<protocol::ClientConfig> curve_;
  std::vector<std::string> endpoints_;
  std::string endpoint_;
  std::string gave_up_on_;  // the endpoint that last gave no reply at all within a try
  zmq::context_t context_{1};
  std::optional<zmq::socket_t> socket_;
  std::optional<protocol::HandshakeWatch> watch_;  // after socket_: it stops its monitor first
  std::string prefix_ = [] {
    char host[256] = "host";
    gethostname(host, sizeof host - 1);
    return "nvs-" + std::string(host) + "-" + std::to_string(getpid()) + "-" +
           std::to_string(std::chrono::system_clock::now().time_since_epoch().count()) + "-";
  }();
  int next_id_ = 0;
};

// The client `o` asks for: its client config (--client-config, else
// $NVS_CLIENT_CONFIG, else none) and endpoint (--endpoint, else
// $NVS_ENDPOINT, else the client config's, else the default). An error (a
// bad client config) is printed with `who` in front and gives nullptr.
inline std::unique_ptr<Client> Connect(const Options& o, const char* who) {
  auto curve = protocol::ResolveClientConfig(o.client_config);
  if (!curve.ok()) {
    std::cerr << who << ": " << curve.status().message() << "\n";
    return nullptr;
  }
  return std::make_unique<Client>(protocol::ResolveEndpoint(o.endpoint, curve.value()), curve.value());
}

// Says why a Call gave no reply; the exit code (kExitClientRefused or kExitTimeout).
inline int NoReply(const char* who, const Client& client, const Result<std::optional<nlohmann::json>>& call,
                   int timeout_ms) {
  if (!call.ok()) {
    std::cerr << who << ": " << call.status().message() << " (endpoint " << client.endpoint() << ")\n";
    return kExitClientRefused;
  }
  std::cerr << who << ": no reply from " << client.endpoint() << " within " << timeout_ms << " ms\n";
  return kExitTimeout;
}

}  // namespace nvs::cli
