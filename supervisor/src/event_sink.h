// Where nvsd's events go (protocol/CLIENT.md §5): a topic (the event's
// name) and its JSON text. ZmqEventSink is the real one (the event
// endpoint, an XPUB socket that never blocks); a simulation keeps them to
// check (ARCHITECTURE.md §7).
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <zmq.hpp>

#include "nvs/status.h"

namespace nvs::supervisor {

class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void Publish(std::string_view topic, std::string_view text) = 0;
  // Whether an event of `topic` would reach anyone: nvsd builds the events
  // of every command (two each) only then.
  virtual bool Listening(std::string_view /*topic*/) { return true; }
};

// An XPUB socket, so that nvsd knows what its subscribers asked for: it
// passes up each topic's first subscription and its last unsubscription,
// a subscriber's going away included (libzmq), so a set of topics is the
// whole account.
class ZmqEventSink : public EventSink {
 public:
  explicit ZmqEventSink(zmq::context_t& context) : socket_(context, zmq::socket_type::xpub) {
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
  bool Listening(std::string_view topic) override {
    ReadSubscriptions();
    if (too_many_) return true;
    for (const auto& prefix : topics_) {
      if (topic.substr(0, prefix.size()) == prefix) return true;
    }
    return false;
  }

 private:
  // (Never blocks: what has come in since the last call.) The endpoint has
  // no authentication, so what a peer sends is bounded here: a prefix
  // longer than any event's name matches none and is not kept; past
  // kMaxTopics distinct prefixes, every event is built (as before nvsd
  // asked), rather than the set growing.
  void ReadSubscriptions() {
    zmq::message_t m;
    while (socket_.recv(m, zmq::recv_flags::dontwait)) {
      if (m.size() == 0 || m.size() - 1 > kMaxTopicBytes) continue;
      const std::string topic(static_cast<const char*>(m.data()) + 1, m.size() - 1);
      if (static_cast<const unsigned char*>(m.data())[0] == 1) {
        if (topics_.size() >= kMaxTopics) {
          too_many_ = true;
        } else {
          topics_.insert(topic);
        }
      } else if (static_cast<const unsigned char*>(m.data())[0] == 0) {
        topics_.erase(topic);
      }
    }
  }
  static constexpr std::size_t kMaxTopicBytes = 64;
  static constexpr std::size_t kMaxTopics = 1024;
  zmq::socket_t socket_;
  std::set<std::string> topics_;
  bool too_many_ = false;
};

}  // namespace nvs::supervisor
