#include "nvs/protocol/curve_client.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <utility>

namespace nvs::protocol {
namespace {

using nlohmann::json;

const char* const kPlainHint =
    "give this client a client config with its keys (--client-config FILE or $NVS_CLIENT_CONFIG)";

std::string Hex(int value) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%08x", static_cast<unsigned>(value));
  return text;
}

}  // namespace

Result<ClientConfig> ParseClientConfig(const std::string& text, const std::filesystem::path& path) {
  const json root = json::parse(text, nullptr, /*allow_exceptions=*/false, /*ignore_comments=*/true);
  if (root.is_discarded()) return Status::Error(path.string() + ": not valid JSON");
  if (!root.is_object()) return Status::Error(path.string() + ": must be a JSON object");
  const std::filesystem::path folder = std::filesystem::absolute(path).parent_path();
  std::vector<std::string> errors;
  static const std::set<std::string> kKnown = {"endpoint", "server_public_key", "server_public_key_file",
                                               "secret_key_file"};
  for (const auto& [key, value] : root.items()) {
    if (!kKnown.count(key)) errors.push_back(key + ": unknown field");
  }
  // A string member: nullopt when absent (or null); an error when not a non-empty string.
  const auto string_member = [&](const std::string& key) -> std::optional<std::string> {
    auto it = root.find(key);
    if (it == root.end() || it->is_null()) return std::nullopt;
    if (!it->is_string() || it->get<std::string>().empty()) {
      errors.push_back(key + ": must be a non-empty string");
      return std::nullopt;
    }
    return it->get<std::string>();
  };

  ClientConfig config;
  config.path = path;
  if (auto endpoint = string_member("endpoint")) {
    if (endpoint->rfind("tcp://", 0) != 0 && endpoint->rfind("ipc://", 0) != 0) {
      errors.push_back("endpoint: must be a tcp:// or ipc:// address");
    }
    config.endpoint = *endpoint;
  }
  const auto inline_key = string_member("server_public_key");
  const auto key_file = string_member("server_public_key_file");
  if (inline_key && key_file) {
    errors.push_back("server_public_key: give server_public_key or server_public_key_file, not both");
  } else if (inline_key) {
    if (IsZ85Key(*inline_key)) {
      config.server_public_key = *inline_key;
    } else {
      errors.push_back("server_public_key: not a Z85 CURVE key (40 characters of the Z85 alphabet)");
    }
  } else if (key_file) {
    auto key = ReadPublicKeyFile((folder / *key_file).lexically_normal());
    if (key.ok()) {
      config.server_public_key = key.value();
    } else {
      errors.push_back("server_public_key_file: " + key.status().message());
    }
  } else if (!root.contains("server_public_key") && !root.contains("server_public_key_file")) {
    errors.push_back("server_public_key_file: required (nvsd's public key; or server_public_key)");
  }
  if (auto secret = string_member("secret_key_file")) {
    auto keys = ReadSecretKeyFile((folder / *secret).lexically_normal());
    if (keys.ok()) {
      config.keys = keys.value();
    } else {
      errors.push_back("secret_key_file: " + keys.status().message());
    }
  } else if (!root.contains("secret_key_file")) {
    errors.push_back("secret_key_file: required (this client's secret key)");
  }
  if (!errors.empty()) {
    std::string message = path.string() + ": invalid client config:";
    for (const auto& e : errors) message += "\n  " + e;
    return Status::Error(message);
  }
  return config;
}

Result<ClientConfig> LoadClientConfig(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return Status::Error(path.string() + ": cannot read: " + std::strerror(errno));
  std::stringstream text;
  text << in.rdbuf();
  return ParseClientConfig(text.str(), path);
}

Result<std::optional<ClientConfig>> ResolveClientConfig(const std::string& flag) {
  std::string path = flag;
  const char* env = std::getenv(kClientConfigEnv);
  if (path.empty() && env != nullptr) path = env;
  if (path.empty()) return std::optional<ClientConfig>();
  auto config = LoadClientConfig(path);
  if (!config.ok()) {
    if (flag.empty()) return Status::Error(config.status().message() + "\n(from $" + kClientConfigEnv + ")");
    return config.status();
  }
  return std::optional<ClientConfig>(std::move(config.value()));
}

std::string ResolveEndpoint(const std::string& flag, const std::optional<ClientConfig>& config) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv(kEndpointEnv); env != nullptr && *env != '\0') return env;
  if (config && !config->endpoint.empty()) return config->endpoint;
  return kDefaultClientEndpoint;
}

void ApplyCurveClient(zmq::socket_t& socket, const ClientConfig& config) {
  const std::string server = DecodeZ85Key(config.server_public_key);
  const std::string own_public = DecodeZ85Key(config.keys.public_key);
  const std::string own_secret = DecodeZ85Key(config.keys.secret_key);
  socket.set(zmq::sockopt::curve_serverkey, zmq::buffer(server));
  socket.set(zmq::sockopt::curve_publickey, zmq::buffer(own_public));
  socket.set(zmq::sockopt::curve_secretkey, zmq::buffer(own_secret));
}

std::optional<std::string> HandshakeRefusal(int event, int value, bool curve, int failures_in_a_row,
                                            const std::string& public_key) {
  switch (event) {
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
      if (value == 400) {
        if (!curve) return "nvsd refused this client (ZAP status 400)";
        return "nvsd refused this client's CURVE key " + public_key +
               " (ZAP status 400): it is not in nvsd's authorized_keys_file";
      }
      return "nvsd could not authenticate this client (ZAP status " + std::to_string(value) + ")";
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
      if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
        if (curve) {
          return std::string(
              "nvsd's client endpoint does not use CURVE, but this client's config asks for it (drop the client "
              "config, or give nvsd a client_curve)");
        }
        return std::string("nvsd's client endpoint requires CURVE; ") + kPlainHint;
      }
      if (value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC) {
        return std::string("the CURVE handshake with nvsd failed (cryptographic error): is server_public_key nvsd's "
                           "public key?");
      }
      return "the handshake with nvsd failed (ZMTP protocol error " + Hex(value) +
             "): is the endpoint nvsd's client endpoint?";
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
      // What a client sees when the server closes the connection in the
      // handshake: a CURVE nvsd does that to a plain client and to a client
      // whose HELLO it cannot decrypt (the wrong server key).
      if (failures_in_a_row < 2) return std::nullopt;
      if (curve) {
        return std::string(
            "nvsd closed the connection during the CURVE handshake, twice: either server_public_key is not nvsd's "
            "public key, or nvsd's client endpoint does not use CURVE");
      }
      return std::string("nvsd closed the connection during the handshake, twice: its client endpoint probably "
                         "requires CURVE; ") +
             kPlainHint;
    default:
      return std::nullopt;
  }
}

HandshakeWatch::HandshakeWatch(zmq::context_t& context, zmq::socket_t& socket, bool curve, std::string public_key)
    : socket_(&socket), monitor_(context, zmq::socket_type::pair), curve_(curve), public_key_(std::move(public_key)) {
  static std::atomic<unsigned> counter{0};
  const std::string address = "inproc://nvs-handshake-watch-" + std::to_string(getpid()) + "-" + std::to_string(++counter);
  const int events = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                     ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_DISCONNECTED;
  if (zmq_socket_monitor(socket.handle(), address.c_str(), events) != 0) throw zmq::error_t();
  monitor_.set(zmq::sockopt::linger, 0);
  monitor_.connect(address);
}

HandshakeWatch::HandshakeWatch(HandshakeWatch&& other) noexcept
    : socket_(std::exchange(other.socket_, nullptr)),
      monitor_(std::move(other.monitor_)),
      curve_(other.curve_),
      public_key_(std::move(other.public_key_)),
      failures_in_a_row_(other.failures_in_a_row_),
      connected_(other.connected_),
      refusal_(std::move(other.refusal_)) {}

HandshakeWatch::~HandshakeWatch() {
  if (socket_ != nullptr && socket_->handle() != nullptr) zmq_socket_monitor(socket_->handle(), nullptr, 0);
}

std::optional<MonitorEvent> NextMonitorEvent(zmq::socket_t& monitor) {
  zmq::message_t head;
  while (monitor.recv(head, zmq::recv_flags::dontwait)) {
    // Two frames: (event: u16, value: u32) in host order, then the endpoint.
    if (head.more()) {
      zmq::message_t endpoint;
      (void)monitor.recv(endpoint, zmq::recv_flags::none);
    }
    if (head.size() < 6) continue;
    MonitorEvent e;
    std::memcpy(&e.event, head.data(), sizeof e.event);
    std::memcpy(&e.value, static_cast<const char*>(head.data()) + 2, sizeof e.value);
    return e;
  }
  return std::nullopt;
}

Status HandshakeWatch::Check() {
  while (const auto next = NextMonitorEvent(monitor_)) {
    const auto [event, value] = *next;
    if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
      failures_in_a_row_ = 0;
      connected_ = true;
      refusal_.reset();
      continue;
    }
    connected_ = false;
    if (event == ZMQ_EVENT_DISCONNECTED) continue;  // (not a refusal: the peer went away)
    ++failures_in_a_row_;
    if (auto refusal = HandshakeRefusal(event, static_cast<int>(value), curve_, failures_in_a_row_, public_key_)) {
      refusal_ = std::move(refusal);
    }
  }
  return refusal_ ? Status::Error(*refusal_) : Status::Ok();
}

}  // namespace nvs::protocol
