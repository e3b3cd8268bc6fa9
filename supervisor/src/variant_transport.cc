#include "variant_transport.h"

#include <cerrno>
#include <filesystem>

#include "nvs/protocol/messages.h"

namespace nvs::supervisor {

ZmqVariantTransport::ZmqVariantTransport(zmq::context_t& context) : socket_(context, zmq::socket_type::router) {
  socket_.set(zmq::sockopt::linger, 0);
  socket_.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(protocol::kMaxMessageBytes + 4096));
  // Bounded queues: what a flooding variant sends beyond them is dropped
  // by ZeroMQ (and the flood is a protocol fault when it is read).
  socket_.set(zmq::sockopt::rcvhwm, 100000);
  socket_.set(zmq::sockopt::sndhwm, 100000);
  // A send to a routing id whose connection is gone fails: how nvsd knows a
  // dead variant's last replies are all in (ConnectionGone).
  socket_.set(zmq::sockopt::router_mandatory, true);
}

Status ZmqVariantTransport::Bind(const std::string& endpoint) {
  if (endpoint.rfind("ipc://", 0) == 0) {
    std::error_code ec;
    std::filesystem::remove(endpoint.substr(6), ec);
  }
  try {
    socket_.bind(endpoint);
  } catch (const zmq::error_t& e) {
    return Status::Error("cannot bind the variants endpoint " + endpoint + ": " + e.what());
  }
  return Status::Ok();
}

bool ZmqVariantTransport::Send(const std::string& wire, std::string_view bytes) {
  try {
    if (!socket_.send(zmq::buffer(wire), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) return false;
  } catch (const zmq::error_t& e) {
    if (e.num() == EHOSTUNREACH) return false;
    throw;
  }
  socket_.send(zmq::buffer(bytes.data(), bytes.size()), zmq::send_flags::dontwait);
  return true;
}

// With ROUTER_MANDATORY, libzmq refuses a message for a routing id whose
// pipe is terminating or terminated (EHOSTUNREACH), and a pipe only
// terminates after the I/O thread has handed over everything read before
// the connection closed (what is still unread is read by the next
// Receive). While the connection is up, the probe is an empty message to a
// dead process, which nothing reads.
bool ZmqVariantTransport::ConnectionGone(const std::string& wire) {
  try {
    if (!socket_.send(zmq::buffer(wire), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
      return false;  // queue full: still connected
    }
  } catch (const zmq::error_t& e) {
    if (e.num() == EHOSTUNREACH) return true;
    throw;
  }
  socket_.send(zmq::const_buffer(nullptr, 0), zmq::send_flags::dontwait);
  return false;
}

bool ZmqVariantTransport::Receive(std::string* wire, std::vector<std::string>* parts) {
  zmq::message_t identity;
  if (!socket_.recv(identity, zmq::recv_flags::dontwait)) return false;
  *wire = identity.to_string();
  parts->clear();
  bool more = identity.more();
  while (more) {
    zmq::message_t part;
    if (!socket_.recv(part, zmq::recv_flags::none)) break;
    more = part.more();
    parts->push_back(part.to_string());
  }
  return true;
}

void ZmqVariantTransport::Wait(std::chrono::milliseconds timeout) {
  zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
  try {
    zmq::poll(&item, 1, timeout);
  } catch (const zmq::error_t& e) {
    if (e.num() != EINTR) throw;
  }
}

}  // namespace nvs::supervisor
