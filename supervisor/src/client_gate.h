// nvsd's gate on the client endpoint when `client_curve` is configured
// (protocol/CLIENT.md §7): the client socket is a CURVE server, and a ZAP
// handler (RFC 27: a REP socket at inproc://zeromq.zap.01 on nvsd's context)
// lets in only the public keys of the authorized-keys file. Both the ZAP
// socket and a monitor of the client socket are polled in nvsd's one loop;
// no thread. Every refusal is logged ("client_refused": the key, the peer
// address, why), at most kRefusalsLoggedPerSecond a second; the rest are
// counted and their number logged once the second is over
// ("client_refusals_suppressed"), so a flood of bad clients cannot fill the
// disk.
//
// Pure parts (tested in client_gate_test.cc): ZAP request parsing, the
// decision, the log throttle, the wording of pre-authentication failures.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "nvs/status.h"
#include "nvs/supervisor/config.h"

namespace nvs::supervisor {

// The ZAP domain of the client socket (ZMQ_ZAP_DOMAIN).
inline constexpr const char* kClientZapDomain = "nvs-clients";
// Log lines per second for refusals (and, separately, for admissions).
inline constexpr int kRefusalsLoggedPerSecond = 10;

// A ZAP request as its frames arrive (RFC 27).
struct ZapRequest {
  std::string version;     // "1.0"
  std::string request_id;
  std::string domain;
  std::string address;     // tcp://: the peer's IP address; ipc://: "localhost:UID:GID:PID"
  std::string identity;    // the peer's routing id, if it set one
  std::string mechanism;   // "NULL", "PLAIN" or "CURVE"
  std::vector<std::string> credentials;  // CURVE: the client's 32-byte public key
};

// The request in `frames`, or nullopt when it is not one (fewer than six
// frames, or not version 1.0).
std::optional<ZapRequest> ParseZapRequest(const std::vector<std::string>& frames);

// What the handler answers.
struct ZapDecision {
  bool allowed = false;
  std::string status_code;  // "200" or "400"
  std::string status_text;  // why (sent to the peer, and logged)
  std::string user_id;      // allowed: the key's name in the file, else its Z85
  std::string key;          // the client's public key (Z85), "" if none was given
};

// Pure: who gets in. `authorized` maps a 32-byte public key to its name.
// Only CURVE requests of kClientZapDomain with a listed key are allowed; a
// NULL request of another domain is allowed too (a plain socket of nvsd that
// asked: answering it changes nothing), anything else is refused.
ZapDecision DecideZap(const ZapRequest& request, const std::map<std::string, std::string>& authorized);

// Pure: how nvsd words a client it refused before authentication, from the
// client socket's monitor event (ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL or
// _NO_DETAIL) and its value: a plain client, a client that does not have
// nvsd's public key, a handshake the client broke off.
std::string DescribeHandshakeFailure(int event, int value);

// At most `limit` lines per window; the rest are counted. Pure: the time
// comes in.
class LogThrottle {
 public:
  using Clock = std::chrono::steady_clock;
  LogThrottle(int limit, Clock::duration window) : limit_(limit), window_(window) {}

  // Counts one line at `now`: true when it may be written, false when it is
  // suppressed (counted).
  bool Admit(Clock::time_point now);
  // The number of lines suppressed, once the window they fell in has ended
  // (the count then starts again from 0); else 0.
  std::uint64_t TakeSuppressed(Clock::time_point now);

 private:
  int limit_;
  Clock::duration window_;
  Clock::time_point window_start_{};
  bool started_ = false;
  int admitted_ = 0;                     // in the current window
  std::uint64_t suppressed_ = 0;         // in the current window
  std::uint64_t ended_suppressed_ = 0;   // in windows that are over, not yet taken
};

// The ZAP handler and the client socket's monitor (see the top of the file).
class ClientGate {
 public:
  using Clock = std::chrono::steady_clock;

  // Binds the ZAP handler on `context`, makes `clients` a CURVE server with
  // `curve.keys` in kClientZapDomain, and attaches a monitor to it.
  // REQUIRES: `curve` was loaded (LoadClientCurveKeys); `clients` is not
  // bound yet (libzmq lets every client into a CURVE server that has no ZAP
  // handler, so the handler comes first), and is closed before the gate.
  static Result<std::unique_ptr<ClientGate>> Open(zmq::context_t& context, zmq::socket_t& clients,
                                                  const ClientCurveConfig& curve);

  // For zmq::poll: readable when ZAP requests / monitor events are pending.
  zmq::socket_t& zap() { return zap_; }
  zmq::socket_t& monitor() { return monitor_; }

  // Answers the pending ZAP requests (at most `max` of them).
  void OnZapReadable(Clock::time_point now, int max);
  // Logs the pending pre-authentication failures (at most `max`).
  void OnMonitorReadable(Clock::time_point now, int max);
  // Logs how many lines were suppressed, once their second is over. Call
  // every loop turn.
  void Tick(Clock::time_point now);

  std::uint64_t refused() const { return refused_; }
  std::uint64_t admitted() const { return admitted_; }

 private:
  ClientGate(zmq::context_t& context, const ClientCurveConfig& curve);
  // Counts and (throttled) logs one refusal; "" = not known.
  void Refused(Clock::time_point now, const std::string& key, const std::string& address, const std::string& why);

  std::map<std::string, std::string> authorized_;  // 32-byte key -> name
  zmq::socket_t zap_;
  zmq::socket_t monitor_;
  LogThrottle refusal_log_{kRefusalsLoggedPerSecond, std::chrono::seconds(1)};
  LogThrottle admission_log_{kRefusalsLoggedPerSecond, std::chrono::seconds(1)};
  std::uint64_t refused_ = 0;
  std::uint64_t admitted_ = 0;
};

}  // namespace nvs::supervisor
