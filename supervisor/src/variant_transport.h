// How nvsd reaches the processes it starts (variants, probes, retests): one
// message at a time to a routing id, and what they sent, in the order each
// sent it (PROTOCOL.md §1). ZmqVariantTransport is the real one (the
// variants endpoint, a ROUTER socket); a simulation gives its own
// (ARCHITECTURE.md §7).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

#include "nvs/status.h"

namespace nvs::supervisor {

class VariantTransport {
 public:
  virtual ~VariantTransport() = default;
  // One message to the process whose routing id is `wire`; false when its
  // connection is gone or its queue is full (it is then not sent).
  virtual bool Send(const std::string& wire, std::string_view bytes) = 0;
  // Whether the connection that carried `wire`'s messages is gone, so that
  // nothing it sent can still arrive. Asked only of processes seen dead.
  virtual bool ConnectionGone(const std::string& wire) = 0;
  // The next message that arrived, if any: the sender's routing id and the
  // message's parts (one, unless the sender broke the protocol). Never blocks.
  virtual bool Receive(std::string* wire, std::vector<std::string>* parts) = 0;
  // Waits until a message may have arrived, at most `timeout`.
  virtual void Wait(std::chrono::milliseconds timeout) = 0;
};

class ZmqVariantTransport : public VariantTransport {
 public:
  explicit ZmqVariantTransport(zmq::context_t& context);
  // Binds the endpoint (an ipc socket file left behind is removed first).
  Status Bind(const std::string& endpoint);

  bool Send(const std::string& wire, std::string_view bytes) override;
  bool ConnectionGone(const std::string& wire) override;
  bool Receive(std::string* wire, std::vector<std::string>* parts) override;
  void Wait(std::chrono::milliseconds timeout) override;

  // For the poll loop: the socket, and its signalling fd (readable when
  // libzmq has news for it, a terminated pipe included).
  zmq::socket_t& socket() { return socket_; }

 private:
  zmq::socket_t socket_;
};

}  // namespace nvs::supervisor
