// Where nvsd's events go (protocol/CLIENT.md §5): a topic (the event's
// name) and its JSON text. ZmqEventSink is the real one (the event
// endpoint, a PUB socket that never blocks); a simulation keeps them to
// check (ARCHITECTURE.md §7).
#pragma once

#include <string>
#include <string_view>
#include <zmq.hpp>

#include "nvs/status.h"

namespace nvs::supervisor {

class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void Publish(std::string_view topic, std::string_view text) = 0;
};

class ZmqEventSink : public EventSink {
 public:
  explicit ZmqEventSink(zmq::context_t& context) : socket_(context, zmq::socket_type::pub) {
    socket_.set(zmq::sockopt::linger, 0);
  }
  Status Bind(const std::string& endpoint) {
    try {
      socket_.bind(endpoint);
    } catch (const zmq::error_t& e) {
      return Status::Error("cannot bind the event endpoint " + endpoint + ": " + e.what());
    }
    return Status::Ok();
  }
  // A subscriber that cannot keep up loses events (PUB's high-water mark), never nvsd's time.
  void Publish(std::string_view topic, std::string_view text) override {
    socket_.send(zmq::buffer(topic.data(), topic.size()), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    socket_.send(zmq::buffer(text.data(), text.size()), zmq::send_flags::dontwait);
  }

 private:
  zmq::socket_t socket_;
};

}  // namespace nvs::supervisor
