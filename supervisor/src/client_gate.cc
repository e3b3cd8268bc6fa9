#include "client_gate.h"

#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <utility>

#include "log.h"
#include "nvs/protocol/curve_client.h"

namespace nvs::supervisor {
namespace {

using nlohmann::json;

constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";  // RFC 27: fixed
constexpr const char* kMonitorEndpoint = "inproc://nvsd-client-monitor";

json OrNull(const std::string& text) { return text.empty() ? json() : json(text); }

}  // namespace

std::optional<ZapRequest> ParseZapRequest(const std::vector<std::string>& frames) {
  if (frames.size() < 6 || frames[0] != "1.0") return std::nullopt;
  ZapRequest request;
  request.version = frames[0];
  request.request_id = frames[1];
  request.domain = frames[2];
  request.address = frames[3];
  request.identity = frames[4];
  request.mechanism = frames[5];
  request.credentials.assign(frames.begin() + 6, frames.end());
  return request;
}

ZapDecision DecideZap(const ZapRequest& request, const std::map<std::string, std::string>& authorized) {
  ZapDecision decision;
  const auto refuse = [&](std::string why) {
    decision.status_code = "400";
    decision.status_text = std::move(why);
    return decision;
  };
  if (request.mechanism == "CURVE" && request.credentials.size() == 1 &&
      request.credentials[0].size() == protocol::kCurveKeyBytes) {
    decision.key = protocol::EncodeZ85Key(request.credentials[0]);
  }
  if (request.domain != kClientZapDomain) {
    if (request.mechanism == "NULL") {
      decision.allowed = true;
      decision.status_code = "200";
      decision.status_text = "OK";
      return decision;
    }
    return refuse("unknown ZAP domain");
  }
  if (request.mechanism != "CURVE") return refuse("not CURVE");
  if (decision.key.empty()) return refuse("malformed CURVE credentials");
  auto it = authorized.find(request.credentials[0]);
  if (it == authorized.end()) return refuse("key not in authorized_keys_file");
  decision.allowed = true;
  decision.status_code = "200";
  decision.status_text = "OK";
  decision.user_id = it->second.empty() ? decision.key : it->second;
  return decision;
}

std::string DescribeHandshakeFailure(int event, int value) {
  if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
    // The greetings cross: when a plain client reads nvsd's CURVE greeting
    // first, it hangs up, and nvsd sees only the connection end.
    return "handshake not completed: the client hung up (a plain client, or a port probe?)";
  }
  switch (value) {
    case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
      return "not CURVE (a plain client, or one with another security mechanism)";
    case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
      return "CURVE handshake could not be decrypted (the client does not have nvsd's public key)";
    default: {
      char text[64];
      std::snprintf(text, sizeof text, "broken handshake (ZMTP protocol error 0x%08x)", static_cast<unsigned>(value));
      return text;
    }
  }
}

bool LogThrottle::Admit(Clock::time_point now) {
  if (!started_ || now >= window_start_ + window_) {
    started_ = true;
    window_start_ = now;
    admitted_ = 0;
    ended_suppressed_ += std::exchange(suppressed_, 0);
  }
  if (admitted_ < limit_) {
    ++admitted_;
    return true;
  }
  ++suppressed_;
  return false;
}

std::uint64_t LogThrottle::TakeSuppressed(Clock::time_point now) {
  if (now >= window_start_ + window_) ended_suppressed_ += std::exchange(suppressed_, 0);
  return std::exchange(ended_suppressed_, 0);
}

ClientGate::ClientGate(zmq::context_t& context, const ClientCurveConfig& curve)
    : zap_(context, zmq::socket_type::rep), monitor_(context, zmq::socket_type::pair) {
  for (const auto& key : curve.authorized) authorized_[protocol::DecodeZ85Key(key.public_key)] = key.name;
}

Result<std::unique_ptr<ClientGate>> ClientGate::Open(zmq::context_t& context, zmq::socket_t& clients,
                                                     const ClientCurveConfig& curve) {
  if (!protocol::IsZ85Key(curve.keys.secret_key)) {
    return Status::Error("client_curve: the keys were not loaded (LoadClientCurveKeys)");
  }
  std::unique_ptr<ClientGate> gate(new ClientGate(context, curve));
  try {
    gate->zap_.set(zmq::sockopt::linger, 0);
    gate->zap_.bind(kZapEndpoint);
    gate->monitor_.set(zmq::sockopt::linger, 0);
    if (zmq_socket_monitor(clients.handle(), kMonitorEndpoint,
                           ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) != 0) {
      throw zmq::error_t();
    }
    gate->monitor_.connect(kMonitorEndpoint);
    const std::string secret = protocol::DecodeZ85Key(curve.keys.secret_key);
    clients.set(zmq::sockopt::curve_server, true);
    clients.set(zmq::sockopt::curve_secretkey, zmq::buffer(secret));
    clients.set(zmq::sockopt::zap_domain, kClientZapDomain);
  } catch (const zmq::error_t& e) {
    return Status::Error(std::string("client_curve: cannot set up CURVE on the client socket: ") + e.what());
  }
  return gate;
}

void ClientGate::OnZapReadable(Clock::time_point now, int max) {
  zmq::message_t frame;
  for (int taken = 0; taken < max && zap_.recv(frame, zmq::recv_flags::dontwait); ++taken) {
    std::vector<std::string> frames{frame.to_string()};
    while (frame.more()) {
      if (!zap_.recv(frame, zmq::recv_flags::none)) break;
      frames.push_back(frame.to_string());
    }
    const std::optional<ZapRequest> request = ParseZapRequest(frames);
    ZapDecision decision;
    if (request) {
      decision = DecideZap(*request, authorized_);
    } else {
      decision.status_code = "400";
      decision.status_text = "malformed ZAP request";
    }
    // A REP socket must answer every request, even one it cannot read.
    const std::string reply[] = {"1.0", frames.size() > 1 ? frames[1] : std::string(), decision.status_code,
                                 decision.status_text, decision.user_id, ""};
    for (std::size_t i = 0; i < std::size(reply); ++i) {
      zap_.send(zmq::buffer(reply[i]), i + 1 < std::size(reply) ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
    const std::string address = request ? request->address : std::string();
    if (!decision.allowed) {
      Refused(now, decision.key, address, decision.status_text);
      continue;
    }
    if (!request || request->domain != kClientZapDomain) continue;
    ++admitted_;
    if (const auto suppressed = admission_log_.TakeSuppressed(now)) {
      Log(LogLevel::kInfo, "client_admissions_suppressed", {{"count", suppressed}});
    }
    if (admission_log_.Admit(now)) {
      Log(LogLevel::kInfo, "client_admitted", {{"key", decision.key}, {"name", decision.user_id}, {"address", OrNull(address)}});
    }
  }
}

void ClientGate::OnMonitorReadable(Clock::time_point now, int max) {
  for (int taken = 0; taken < max; ++taken) {
    const auto next = protocol::NextMonitorEvent(monitor_);
    if (!next) break;
    const auto [event, value] = *next;
    if (event != ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL && event != ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) continue;
    // libzmq's (stable) monitor does not say who the peer was: the handshake
    // failed before any key or ZAP request.
    Refused(now, "", "", DescribeHandshakeFailure(event, static_cast<int>(value)));
  }
}

void ClientGate::Refused(Clock::time_point now, const std::string& key, const std::string& address,
                         const std::string& why) {
  ++refused_;
  Tick(now);
  if (!refusal_log_.Admit(now)) return;
  Log(LogLevel::kWarn, "client_refused", {{"key", OrNull(key)}, {"address", OrNull(address)}, {"reason", why}});
}

void ClientGate::Tick(Clock::time_point now) {
  if (const auto suppressed = refusal_log_.TakeSuppressed(now)) {
    Log(LogLevel::kWarn, "client_refusals_suppressed",
        {{"count", suppressed}, {"why", "more than " + std::to_string(kRefusalsLoggedPerSecond) + " refusals a second"}});
  }
  if (const auto suppressed = admission_log_.TakeSuppressed(now)) {
    Log(LogLevel::kInfo, "client_admissions_suppressed", {{"count", suppressed}});
  }
}

}  // namespace nvs::supervisor
