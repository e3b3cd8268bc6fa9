// How nvsd hears its clients and answers them (protocol/CLIENT.md): each
// request a multi-frame message (routing frames, then the body), with the
// name the client's CURVE key was vouched for under. ZmqClientTransport is
// the real one (the client endpoint, a ROUTER socket that never drops a
// reply silently); a simulation gives its own (ARCHITECTURE.md §7).
#pragma once

#include <string>
#include <vector>
#include <zmq.hpp>

#include "nvs/status.h"

namespace nvs::supervisor {

class ClientTransport {
 public:
  virtual ~ClientTransport() = default;
  // The next request, if one is waiting: its frames, and who sent it (the
  // ZAP handler's User-Id of its connection; "" on a plain endpoint).
  // Never blocks.
  virtual bool Receive(std::vector<std::string>* frames, std::string* user) = 0;
  enum class SendResult {
    kSent,
    kFull,  // the client's queue is full: not sent (nvsd keeps it in the client's backlog)
    kGone,  // the client is not connected: not sent
  };
  // One reply: frames[0] is the client's routing id.
  virtual SendResult Send(const std::vector<std::string>& frames) = 0;
  // Whether a request is waiting to be read.
  virtual bool Waiting() = 0;
};

class ZmqClientTransport : public ClientTransport {
 public:
  explicit ZmqClientTransport(zmq::context_t& context);
  Status Bind(const std::string& endpoint);

  bool Receive(std::vector<std::string>* frames, std::string* user) override;
  SendResult Send(const std::vector<std::string>& frames) override;
  bool Waiting() override;

  zmq::socket_t& socket() { return socket_; }  // for the ZAP handler and the poll loop

 private:
  zmq::socket_t socket_;
};

}  // namespace nvs::supervisor
