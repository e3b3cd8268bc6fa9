// The client side of CURVE on nvsd's client endpoint (protocol/CLIENT.md
// §7), shared by nvs and nvs-videohub: the client config that holds the keys
// (never the command line), and a socket monitor that turns nvsd's refusal
// of a client into an error at once instead of a timeout.
//
// A client config is a JSON file (`//` and `/* */` comments allowed; paths
// relative to its folder; unknown keys are errors):
//   {"endpoint": "tcp://nvsd.example:5555",   // optional
//    "server_public_key_file": "nvsd.pub",    // nvsd's public key: this, or
//    "server_public_key": "Z85...",           //   the key itself (not both)
//    "secret_key_file": "operator.key"}       // this client's secret key, owner-only
#pragma once

#include <filesystem>
#include <cstdint>
#include <optional>
#include <string>
#include <zmq.hpp>

#include "nvs/protocol/curve_keys.h"
#include "nvs/status.h"

namespace nvs::protocol {

// The environment variable naming a client config when --client-config is not given.
inline constexpr const char* kClientConfigEnv = "NVS_CLIENT_CONFIG";
// The environment variable naming nvsd's client endpoint when --endpoint is not given.
inline constexpr const char* kEndpointEnv = "NVS_ENDPOINT";
inline constexpr const char* kDefaultClientEndpoint = "tcp://127.0.0.1:5555";

struct ClientConfig {
  std::filesystem::path path;     // where it was read from (for messages)
  std::string endpoint;           // "" = not given
  std::string server_public_key;  // Z85
  CurveKeyPair keys;              // this client's own
};

// Parses a client config and reads the key files it names (relative to
// `path`'s folder). Errors name the file and the field.
Result<ClientConfig> ParseClientConfig(const std::string& text, const std::filesystem::path& path);
Result<ClientConfig> LoadClientConfig(const std::filesystem::path& path);

// The client config that applies: the file `flag` names (--client-config)
// if given, else the one $NVS_CLIENT_CONFIG names, else none (a plain client).
Result<std::optional<ClientConfig>> ResolveClientConfig(const std::string& flag);

// The endpoint that applies: `flag` (--endpoint) if given, else
// $NVS_ENDPOINT, else the client config's, else tcp://127.0.0.1:5555.
std::string ResolveEndpoint(const std::string& flag, const std::optional<ClientConfig>& config);

// Makes `socket` a CURVE client of nvsd with `config`'s keys.
// REQUIRES: `socket` has not connected yet.
void ApplyCurveClient(zmq::socket_t& socket, const ClientConfig& config);

// What a client makes of one handshake event of its socket monitor (the
// ZMQ_EVENT_HANDSHAKE_* events): a message for a person when the event means
// nvsd refuses this client (so waiting longer is pointless), else nothing.
// `curve`: whether the client uses CURVE; `failures_in_a_row`: handshake
// failures since the last success, this one included (a connection closed
// mid-handshake counts as a refusal only the second time in a row: once may
// be nvsd going down); `public_key`: the client's own (Z85), for the message.
std::optional<std::string> HandshakeRefusal(int event, int value, bool curve, int failures_in_a_row,
                                            const std::string& public_key);

// One event of a ZeroMQ socket monitor (zmq_socket_monitor).
struct MonitorEvent {
  std::uint16_t event = 0;  // ZMQ_EVENT_*
  std::uint32_t value = 0;  // its value (an errno, a ZMQ_PROTOCOL_ERROR_*, a ZAP status...)
};

// The next event waiting on a monitor socket, or nullopt when none is. Reads
// both frames (the event, then the endpoint); skips malformed ones.
std::optional<MonitorEvent> NextMonitorEvent(zmq::socket_t& monitor);

// Watches the handshakes of a client socket through a socket monitor.
// Movable, not copyable; one thread.
class HandshakeWatch {
 public:
  // Attaches a monitor to `socket`. REQUIRES: `socket` has not connected yet
  // (earlier events are lost) and outlives this watch. `curve` and
  // `public_key` as for HandshakeRefusal.
  HandshakeWatch(zmq::context_t& context, zmq::socket_t& socket, bool curve, std::string public_key);
  ~HandshakeWatch();
  HandshakeWatch(HandshakeWatch&& other) noexcept;
  HandshakeWatch& operator=(HandshakeWatch&&) = delete;
  HandshakeWatch(const HandshakeWatch&) = delete;

  // The monitor socket, for zmq::poll (readable when events are pending).
  zmq::socket_t& monitor() { return monitor_; }

  // Reads the pending events. Returns the refusal (see HandshakeRefusal)
  // once nvsd refused this client, until a later handshake succeeds.
  Status Check();
  // True when the last handshake (as of the last Check) succeeded and the
  // connection has not gone since.
  bool connected() const { return connected_; }

 private:
  zmq::socket_t* socket_;  // null once moved from
  zmq::socket_t monitor_;
  bool curve_;
  std::string public_key_;
  int failures_in_a_row_ = 0;
  bool connected_ = false;
  std::optional<std::string> refusal_;
};

}  // namespace nvs::protocol
