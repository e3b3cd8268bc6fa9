#include "nvs/protocol/client_messages.h"

#include <nlohmann/json.hpp>

#include "nvs/protocol/json_values.h"
#include "nvs/protocol/messages.h"

namespace nvs::protocol {
namespace {

using nlohmann::json;

std::string Dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

constexpr std::string_view kStatusNames[] = {"committed",   "answered", "rejected",  "quarantined",
                                             "unavailable", "ok",       "not_leader"};

// Reads a request's id without building the document: the first string
// member "id" of the top-level object, if it comes before whatever makes the
// request unreadable (a syntax error, a number out of range; nesting does not
// matter: the reader only counts levels). So a request nvsd cannot read
// still gets a reply its client can match. Also says why the text is not
// JSON, in words.
class IdReader : public nlohmann::json_sax<json> {
 public:
  std::optional<std::string> id;
  std::string error;  // why the text is not JSON; empty when it is

  bool null() override { return Value(); }
  bool boolean(bool) override { return Value(); }
  bool number_integer(number_integer_t) override { return Value(); }
  bool number_unsigned(number_unsigned_t) override { return Value(); }
  bool number_float(number_float_t, const string_t&) override { return Value(); }
  bool binary(binary_t&) override { return Value(); }
  bool string(string_t& value) override {
    if (depth_ == 1 && id_next_ && !id) id = value;
    return Value();
  }
  bool start_object(std::size_t) override { return Open(); }
  bool start_array(std::size_t) override { return Open(); }
  bool end_object() override { return Close(); }
  bool end_array() override { return Close(); }
  bool key(string_t& name) override {
    id_next_ = depth_ == 1 && name == "id";
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    error = e.what();
    // "[json.exception.parse_error.101] parse error at ..." -> "parse error at ..."
    if (const auto end = error.find("] "); error.rfind("[json.exception.", 0) == 0 && end != std::string::npos) {
      error.erase(0, end + 2);
    }
    return false;
  }

 private:
  bool Value() {
    id_next_ = false;
    return true;
  }
  bool Open() {
    ++depth_;
    id_next_ = false;
    return true;
  }
  bool Close() {
    --depth_;
    return true;
  }
  int depth_ = 0;
  bool id_next_ = false;
};

// The id to echo in the rejection of an unreadable request (nullopt: none).
std::optional<std::string> EchoableId(const IdReader& reader) {
  if (!reader.id || reader.id->empty() || reader.id->size() > kMaxClientIdBytes) return std::nullopt;
  return reader.id;
}

}  // namespace

ClientReply ClientReply::Rejected(std::optional<std::string> id, std::string code, std::string reason) {
  ClientReply reply;
  reply.id = std::move(id);
  reply.status = ClientStatus::kRejected;
  reply.code = std::move(code);
  reply.reason = std::move(reason);
  return reply;
}

ClientReply ClientReply::Unavailable(std::optional<std::string> id, std::string reason) {
  ClientReply reply;
  reply.id = std::move(id);
  reply.status = ClientStatus::kUnavailable;
  reply.reason = std::move(reason);
  return reply;
}

ClientReply ClientReply::NotLeader(std::optional<std::string> id, std::string reason, const std::string& leader,
                                   const std::string& member) {
  ClientReply reply;
  reply.id = std::move(id);
  reply.status = ClientStatus::kNotLeader;
  reply.reason = std::move(reason);
  reply.body = Dump(json{{"leader", leader}, {"leader_member", member}});
  return reply;
}

std::string_view ToString(ClientStatus status) { return kStatusNames[static_cast<int>(status)]; }

std::string Fnv1a64Hex(std::string_view bytes) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  static const char* const kHex = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, h >>= 4) out[static_cast<std::size_t>(i)] = kHex[h & 0xf];
  return out;
}

DecodedClientRequest DecodeClientRequest(std::string_view bytes) {
  DecodedClientRequest out;
  const auto reject = [&](std::optional<std::string> id, std::string code, std::string reason) {
    out.rejection = ClientReply::Rejected(std::move(id), std::move(code), std::move(reason));
    return out;
  };
  if (bytes.size() > kMaxClientRequestBytes) {
    return reject(std::nullopt, "too_large",
                  "request of " + std::to_string(bytes.size()) + " bytes exceeds " +
                      std::to_string(kMaxClientRequestBytes) + " (1 MiB)");
  }
  const auto unreadable = [&](std::string code, std::string reason) {
    IdReader reader;
    json::sax_parse(bytes.begin(), bytes.end(), &reader, json::input_format_t::json, /*strict=*/true);
    return reject(EchoableId(reader), std::move(code), std::move(reason));
  };
  if (const int depth = JsonNestingDepth(bytes); depth > kMaxJsonDepth) {
    return unreadable("bad_request", "JSON nested deeper than " + std::to_string(kMaxJsonDepth) +
                                         " levels (every object and array is a level, the request itself the first)");
  }
  const json root = json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    IdReader reader;
    json::sax_parse(bytes.begin(), bytes.end(), &reader, json::input_format_t::json, /*strict=*/true);
    std::string why = reader.error.empty() ? "not valid JSON in UTF-8" : "not valid JSON: " + reader.error;
    if (reader.error.find("number overflow") != std::string::npos) {
      why += " (numbers must fit an IEEE 754 double: RFC 8259 section 6 lets a receiver set that limit)";
    }
    return reject(EchoableId(reader), "bad_request", why);
  }
  if (!root.is_object()) return reject(std::nullopt, "bad_request", "a request must be a JSON object");
  std::optional<std::string> id;
  if (auto it = root.find("id"); it != root.end() && it->is_string()) {
    const auto& text = it->get_ref<const std::string&>();
    if (!text.empty() && text.size() <= kMaxClientIdBytes) id = text;
  }
  if (!id) return reject(std::nullopt, "bad_request", "member 'id' must be a string of 1 to 128 bytes");
  auto type_it = root.find("type");
  if (type_it == root.end() || !type_it->is_string()) {
    return reject(id, "bad_request", "member 'type' missing or not a string");
  }
  const std::string& type = type_it->get_ref<const std::string&>();
  ClientRequest request;
  request.id = *id;
  if (auto it = root.find("expires_at_ms"); it != root.end()) {
    const auto expires = ReadCount(*it);
    if (!expires) {
      return reject(id, "bad_request", "member 'expires_at_ms' must be an integer: Unix time in milliseconds");
    }
    request.expires_at_ms = static_cast<std::int64_t>(*expires);
  }
  if (type == "command" || type == "query") {
    const char* member = type == "command" ? "cmd" : "query";
    auto it = root.find(member);
    if (it == root.end()) return reject(id, "bad_request", std::string("member '") + member + "' missing");
    request.type = type == "command" ? ClientRequestType::kCommand : ClientRequestType::kQuery;
    request.payload = Dump(*it);
  } else if (type == "status") {
    request.type = ClientRequestType::kStatus;
  } else if (type == "quarantine" || type == "cluster") {
    auto action = root.find("action");
    if (action == root.end() || !action->is_string()) {
      return reject(id, "bad_request", "member 'action' missing or not a string");
    }
    request.type = type == "quarantine" ? ClientRequestType::kQuarantine : ClientRequestType::kCluster;
    json args = root;
    args.erase("type");
    args.erase("id");
    request.payload = Dump(args);
  } else {
    return reject(id, "unknown_type", "unknown request type '" + type + "'");
  }
  out.request = std::move(request);
  return out;
}

std::string Encode(const ClientRequest& request) {
  std::string text = R"({"type":)";
  switch (request.type) {
    case ClientRequestType::kCommand: text += R"("command","cmd":)" + request.payload; break;
    case ClientRequestType::kQuery: text += R"("query","query":)" + request.payload; break;
    case ClientRequestType::kStatus: text += R"("status")"; break;
    case ClientRequestType::kQuarantine:
    case ClientRequestType::kCluster:
      text += request.type == ClientRequestType::kQuarantine ? R"("quarantine")" : R"("cluster")";
      if (request.payload.size() > 2) text += "," + request.payload.substr(1, request.payload.size() - 2);
      break;
  }
  if (request.expires_at_ms) text += R"(,"expires_at_ms":)" + std::to_string(*request.expires_at_ms);
  return text + R"(,"id":)" + Dump(request.id) + "}";
}

std::string Encode(const ClientReply& reply) {
  std::string text = R"({"id":)" + (reply.id ? Dump(*reply.id) : std::string("null")) + R"(,"status":")" +
                     std::string(ToString(reply.status)) + "\"";
  switch (reply.status) {
    case ClientStatus::kCommitted:
      text += R"(,"seq":)" + std::to_string(reply.seq) + R"(,"result":)" + reply.result;
      break;
    case ClientStatus::kAnswered:
      text += R"(,"result":)" + reply.result;
      break;
    case ClientStatus::kRejected:
      text += R"(,"code":)" + Dump(reply.code) + R"(,"reason":)" + Dump(reply.reason);
      if (reply.body.size() > 2) text += "," + reply.body.substr(1, reply.body.size() - 2);  // (e.g. a failed retest)
      break;
    case ClientStatus::kQuarantined:
      text += R"(,"report":)" + Dump(reply.report) + R"(,"fingerprint":)" + Dump(reply.fingerprint) +
              R"(,"reason":)" + Dump(reply.reason);
      break;
    case ClientStatus::kUnavailable:
      text += R"(,"reason":)" + Dump(reply.reason);
      break;
    case ClientStatus::kOk:
      if (reply.body.size() > 2) text += "," + reply.body.substr(1, reply.body.size() - 2);
      break;
    case ClientStatus::kNotLeader:
      text += R"(,"reason":)" + Dump(reply.reason);
      if (reply.body.size() > 2) text += "," + reply.body.substr(1, reply.body.size() - 2);
      break;
  }
  return text + "}";
}

std::optional<ClientReply> DecodeClientReply(std::string_view bytes) {
  if (bytes.size() > kMaxMessageBytes || JsonNestingDepth(bytes, kMaxDocumentJsonDepth) > kMaxDocumentJsonDepth) {
    return std::nullopt;
  }
  const json root = json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) return std::nullopt;
  auto status_it = root.find("status");
  if (status_it == root.end() || !status_it->is_string()) return std::nullopt;
  ClientReply reply;
  bool known = false;
  for (int i = 0; i < static_cast<int>(std::size(kStatusNames)); ++i) {
    if (*status_it == kStatusNames[i]) {
      reply.status = static_cast<ClientStatus>(i);
      known = true;
    }
  }
  if (!known) return std::nullopt;
  if (auto it = root.find("id"); it != root.end() && it->is_string()) reply.id = it->get<std::string>();
  const auto text = [&](const char* name) {
    auto it = root.find(name);
    return it != root.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  if (auto it = root.find("seq"); it != root.end() && it->is_number_unsigned()) reply.seq = it->get<std::uint64_t>();
  if (auto it = root.find("result"); it != root.end()) {
    reply.result = Dump(*it);
  } else if (reply.status == ClientStatus::kCommitted || reply.status == ClientStatus::kAnswered) {
    return std::nullopt;  // its result is what it is for (and Encode could not write it without one)
  }
  reply.code = text("code");
  reply.reason = text("reason");
  reply.report = text("report");
  reply.fingerprint = text("fingerprint");
  if (reply.status == ClientStatus::kOk || reply.status == ClientStatus::kNotLeader) {
    json body = root;
    body.erase("id");
    body.erase("status");
    if (reply.status == ClientStatus::kNotLeader) body.erase("reason");
    reply.body = Dump(body);
  }
  return reply;
}

}  // namespace nvs::protocol
