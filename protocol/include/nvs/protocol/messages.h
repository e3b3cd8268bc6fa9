// The variant protocol v1 (protocol/PROTOCOL.md) as plain C++ values, and the
// codec between them and the bytes on the wire.
//
// Domain payloads (`cmd`, `query`, `result`, `state`) are opaque to nvsd and
// are carried as compact JSON text: nvsd stores, compares and forwards them
// without knowing the domain. Decoding normalises them: compact, object
// members sorted by key, so equal values have equal bytes. This header does
// not include nlohmann/json.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace nvs::protocol {

inline constexpr int kProtocolVersion = 1;
// Largest message accepted or sent, either way (PROTOCOL.md §7).
inline constexpr std::size_t kMaxMessageBytes = 16u * 1024u * 1024u;
// Deepest JSON nesting accepted; deeper messages are `malformed`.
inline constexpr int kMaxJsonDepth = 64;
// Deepest JSON nesting accepted in the documents nvs builds around payloads
// and reads back: client replies, journal records, quarantine reports,
// command logs. A payload (at most kMaxJsonDepth levels) sits a few levels
// down in them; anything deeper was not written by nvs, and is refused
// before it reaches nlohmann/json's recursive serialiser and copy (which
// overflow the stack at some ten thousand levels).
inline constexpr int kMaxDocumentJsonDepth = 2 * kMaxJsonDepth;

// ---- Requests, nvsd -> variant ------------------------------------------
struct Apply {
  std::uint64_t seq = 0;
  std::int64_t time_ns = 0;
  std::string cmd;  // compact JSON text
};
struct Query {
  std::uint64_t seq = 0;
  std::string query;  // compact JSON text
};
struct DigestRequest {
  std::uint64_t seq = 0;
};
struct SnapshotRequest {
  std::uint64_t seq = 0;
};
struct Restore {
  std::uint64_t seq = 0;
  std::string state;  // compact JSON text
};
struct Ping {
  std::uint64_t seq = 0;
};
using Request = std::variant<Apply, Query, DigestRequest, SnapshotRequest, Restore, Ping>;

// ---- Replies, variant -> nvsd --------------------------------------------
struct Hello {
  int protocol = kProtocolVersion;
  std::string variant;
  std::string impl;
};
struct Applied {
  std::uint64_t seq = 0;
  std::string result;  // compact JSON text
};
struct Answer {
  std::uint64_t seq = 0;
  std::string result;  // compact JSON text
};
struct DigestReply {
  std::uint64_t seq = 0;
  std::string digest;
};
struct StateReply {
  std::uint64_t seq = 0;
  std::string state;  // compact JSON text
  std::string digest;
};
struct Restored {
  std::uint64_t seq = 0;
  std::string digest;
};
struct Pong {
  std::uint64_t seq = 0;
};
// Protocol error (PROTOCOL.md §3). `code` is one of the constants below.
struct Error {
  std::optional<std::uint64_t> seq;
  std::string code;
  std::string reason;
};
using Reply = std::variant<Hello, Applied, Answer, DigestReply, StateReply, Restored, Pong, Error>;

namespace error_code {
inline constexpr std::string_view kMalformed = "malformed";
inline constexpr std::string_view kUnknownType = "unknown_type";
inline constexpr std::string_view kTooLarge = "too_large";
inline constexpr std::string_view kBadState = "bad_state";
}  // namespace error_code

// The outcome of decoding: a message, or the protocol error that describes
// why the bytes are not one (with the request's seq when it could be read).
template <typename T>
class Decoded {
 public:
  Decoded(T message) : value_(std::move(message)) {}  // NOLINT: implicit by design
  Decoded(Error error) : value_(std::move(error)) {}  // NOLINT: implicit by design

  bool ok() const { return value_.index() == 0; }
  // REQUIRES: ok()
  const T& value() const { return std::get<0>(value_); }
  T& value() { return std::get<0>(value_); }
  // REQUIRES: !ok()
  const Error& error() const { return std::get<1>(value_); }

 private:
  std::variant<T, Error> value_;
};

// Decodes a message sent by nvsd. Never throws; any defect of the bytes
// (size, UTF-8, JSON, depth, type, members) is reported as an Error with the
// code PROTOCOL.md §3 prescribes.
Decoded<Request> DecodeRequest(std::string_view bytes);

// Decodes a message sent by a variant. Never throws.
Decoded<Reply> DecodeReply(std::string_view bytes);

// Encodes a message as one compact JSON object.
// REQUIRES: the JSON-text members (cmd, query, result, state) hold valid
// compact JSON (they are spliced in verbatim, not re-parsed).
std::string Encode(const Request& request);
std::string Encode(const Reply& reply);

// The `seq` of a request or reply (std::nullopt for Hello and for an Error
// without one).
std::uint64_t SeqOf(const Request& request);
std::optional<std::uint64_t> SeqOf(const Reply& reply);

// The wire name of a message ("apply", "applied", ...).
std::string_view TypeName(const Request& request);
std::string_view TypeName(const Reply& reply);

// Parses any JSON text and re-encodes it in the normal form payloads have
// (compact, object members sorted by key, non-ASCII raw). Fails with `malformed` on invalid JSON,
// invalid UTF-8 or nesting deeper than kMaxJsonDepth.
Decoded<std::string> CompactJson(std::string_view text);

// Depth of the deepest array/object nesting in `text`, scanning only
// structure (strings are skipped). Stops counting at `limit + 1`.
int JsonNestingDepth(std::string_view text, int limit = kMaxJsonDepth);

}  // namespace nvs::protocol
