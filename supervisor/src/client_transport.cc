#include "client_transport.h"

#include <cerrno>

#include "nvs/protocol/messages.h"

namespace nvs::supervisor {

ZmqClientTransport::ZmqClientTransport(zmq::context_t& context) : socket_(context, zmq::socket_type::router) {}

Status ZmqClientTransport::Bind(const std::string& endpoint) {
  try {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(protocol::kMaxMessageBytes));
    // A reply for a client whose queue is full is an error to handle, not a
    // silent drop (ROUTER's default): an outside test lost blocks of 250-500
    // replies without a word. The queue is deep, and what it cannot take
    // waits in nvsd's own backlog (Supervisor::Impl::SendNow).
    socket_.set(zmq::sockopt::router_mandatory, true);
    socket_.set(zmq::sockopt::sndhwm, 10000);
    socket_.bind(endpoint);
    socket_.set(zmq::sockopt::rcvhwm, 100000);
  } catch (const zmq::error_t& e) {
    return Status::Error("cannot bind the client endpoint " + endpoint + ": " + e.what());
  }
  return Status::Ok();
}

bool ZmqClientTransport::Receive(std::vector<std::string>* frames, std::string* user) {
  zmq::message_t frame;
  if (!socket_.recv(frame, zmq::recv_flags::dontwait)) return false;
  frames->clear();
  user->clear();
  // The ZAP handler's word for the connection, which every frame carries:
  // taken from the last one received.
  const auto take_user = [&](zmq::message_t& m) {
    const char* id = zmq_msg_gets(m.handle(), "User-Id");
    *user = id != nullptr ? id : "";
  };
  bool more = frame.more();
  take_user(frame);
  frames->push_back(frame.to_string());
  while (more) {
    zmq::message_t next;
    if (!socket_.recv(next, zmq::recv_flags::none)) break;
    more = next.more();
    take_user(next);
    frames->push_back(next.to_string());
  }
  return true;
}

ClientTransport::SendResult ZmqClientTransport::Send(const std::vector<std::string>& frames) {
  try {
    if (!socket_.send(zmq::buffer(frames[0]), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
      return SendResult::kFull;
    }
  } catch (const zmq::error_t& e) {
    if (e.num() == EHOSTUNREACH) return SendResult::kGone;
    throw;
  }
  // Once the first frame is taken, the rest of the message is too.
  for (std::size_t i = 1; i < frames.size(); ++i) {
    socket_.send(zmq::buffer(frames[i]),
                 (i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none) | zmq::send_flags::dontwait);
  }
  return SendResult::kSent;
}

bool ZmqClientTransport::Waiting() { return (socket_.get(zmq::sockopt::events) & ZMQ_POLLIN) != 0; }

}  // namespace nvs::supervisor
