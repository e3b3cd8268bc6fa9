#include "nvs/protocol/client_messages.h"

#include <nlohmann/json.hpp>

#include "nvs/protocol/messages.h"

namespace nvs::protocol {
namespace {

using nlohmann::json;

std::string Dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

constexpr std::string_view kStatusNames[] = {"committed", "answered", "rejected", "quarantined", "unavailable", "ok"};

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
                  "request of " + std::to_string(bytes.size()) + " bytes exceeds " + std::to_string(kMaxClientRequestBytes));
  }
  if (JsonNestingDepth(bytes) > kMaxJsonDepth) {
    return reject(std::nullopt, "bad_request", "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
  const json root = json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return reject(std::nullopt, "bad_request", "not valid JSON in UTF-8");
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
  if (type == "command" || type == "query") {
    const char* member = type == "command" ? "cmd" : "query";
    auto it = root.find(member);
    if (it == root.end()) return reject(id, "bad_request", std::string("member '") + member + "' missing");
    request.type = type == "command" ? ClientRequestType::kCommand : ClientRequestType::kQuery;
    request.payload = Dump(*it);
  } else if (type == "status") {
    request.type = ClientRequestType::kStatus;
  } else if (type == "quarantine") {
    auto action = root.find("action");
    if (action == root.end() || !action->is_string()) {
      return reject(id, "bad_request", "member 'action' missing or not a string");
    }
    request.type = ClientRequestType::kQuarantine;
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
      text += R"("quarantine")";
      if (request.payload.size() > 2) text += "," + request.payload.substr(1, request.payload.size() - 2);
      break;
  }
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
  for (int i = 0; i < 6; ++i) {
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
  if (reply.status == ClientStatus::kOk) {
    json body = root;
    body.erase("id");
    body.erase("status");
    reply.body = Dump(body);
  }
  return reply;
}

}  // namespace nvs::protocol
