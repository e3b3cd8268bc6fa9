// The client protocol of nvsd (protocol/CLIENT.md) as C++ values and their
// codec. Payloads (cmd, query, result) are normal-form JSON text (compact,
// members sorted), as in messages.h. No nlohmann/json here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace nvs::protocol {

// Requests above this size are answered `too_large` (CLIENT.md §1).
inline constexpr std::size_t kMaxClientRequestBytes = 1u << 20;
inline constexpr std::size_t kMaxClientIdBytes = 128;

enum class ClientRequestType { kCommand, kQuery, kStatus, kQuarantine, kCluster };

struct ClientRequest {
  ClientRequestType type = ClientRequestType::kCommand;
  std::string id;
  // kCommand: cmd; kQuery: query; kStatus: empty; kQuarantine, kCluster:
  // the request's other members as one JSON object ("action", "report", ...).
  std::string payload;
  // `expires_at_ms` (optional): Unix time in milliseconds after which nvsd
  // must not carry the request out (CLIENT.md §2).
  std::optional<std::int64_t> expires_at_ms;
};

// kNotLeader: cluster mode, a member that does not lead (CLIENT.md §8).
enum class ClientStatus { kCommitted, kAnswered, kRejected, kQuarantined, kUnavailable, kOk, kNotLeader };

struct ClientReply {
  std::optional<std::string> id;  // nullopt when the request's id could not be read
  ClientStatus status = ClientStatus::kRejected;
  std::uint64_t seq = 0;          // kCommitted
  std::string result;             // kCommitted, kAnswered: JSON text
  std::string code;               // kRejected
  std::string reason;             // kRejected, kQuarantined, kUnavailable, kNotLeader
  std::string report;             // kQuarantined
  std::string fingerprint;        // kQuarantined
  std::string body;               // kOk, kNotLeader (and kRejected, optionally): JSON object text whose members are merged into the reply

  static ClientReply Rejected(std::optional<std::string> id, std::string code, std::string reason);
  static ClientReply Unavailable(std::optional<std::string> id, std::string reason);
  // `leader`: the leader's client endpoint ("" when none is known now);
  // `member`: its name.
  static ClientReply NotLeader(std::optional<std::string> id, std::string reason, const std::string& leader,
                               const std::string& member);
};

// A request, or the `rejected` reply that says why the bytes are not one.
struct DecodedClientRequest {
  std::optional<ClientRequest> request;
  ClientReply rejection;  // meaningful when !request
};

DecodedClientRequest DecodeClientRequest(std::string_view bytes);
std::string Encode(const ClientRequest& request);

std::string Encode(const ClientReply& reply);
// Returns nullopt when `bytes` is not a client reply: not a JSON object with
// a known `status`, a `committed` or `answered` reply without `result`, over
// kMaxMessageBytes, or nested deeper than kMaxDocumentJsonDepth.
std::optional<ClientReply> DecodeClientReply(std::string_view bytes);

std::string_view ToString(ClientStatus status);

// FNV-1a 64 of `bytes`, 16 lowercase hex digits.
std::string Fnv1a64Hex(std::string_view bytes);

}  // namespace nvs::protocol
