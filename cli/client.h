// A client of nvsd's front end (protocol/CLIENT.md): one DEALER socket,
// requests with ids unique across runs, replies matched by id.
#pragma once

#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <zmq.hpp>

namespace nvs::cli {

class Client {
 public:
  explicit Client(const std::string& endpoint) : socket_(context_, zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.connect(endpoint);
  }

  // Sends a request and waits for the reply carrying its id.
  std::optional<nlohmann::json> Call(nlohmann::json request, int timeout_ms) {
    // nvsd remembers request ids (exactly-once, across its restarts): each
    // must be unique, not just within this run.
    const std::string id = prefix_ + std::to_string(++next_id_);
    request["id"] = id;
    socket_.send(zmq::buffer(request.dump()), zmq::send_flags::none);
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, left);
      zmq::message_t message;
      while (socket_.recv(message, zmq::recv_flags::dontwait)) {
        nlohmann::json reply = nlohmann::json::parse(message.to_string(), nullptr, false);
        if (!reply.is_discarded() && reply.value("id", nlohmann::json()) == id) return reply;
      }
    }
  }

 private:
  zmq::context_t context_{1};
  zmq::socket_t socket_;
  std::string prefix_ = [] {
    char host[256] = "host";
    gethostname(host, sizeof host - 1);
    return "nvs-" + std::string(host) + "-" + std::to_string(getpid()) + "-" +
           std::to_string(std::chrono::system_clock::now().time_since_epoch().count()) + "-";
  }();
  int next_id_ = 0;
};

}  // namespace nvs::cli
