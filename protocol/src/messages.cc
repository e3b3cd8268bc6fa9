#include "nvs/protocol/messages.h"

#include "nvs/protocol/json_values.h"

#include <limits>
#include <utility>

#include <nlohmann/json.hpp>

namespace nvs::protocol {
namespace {

using nlohmann::json;

constexpr std::uint64_t kMaxSeq = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

// A JSON string literal for `text`; invalid UTF-8 is replaced, never thrown.
std::string Quote(std::string_view text) {
  return json(std::string(text)).dump(-1, ' ', false, json::error_handler_t::replace);
}

// Reads a JSON integer literal that fits an int (get<int>() would truncate:
// 4294967297, 2^32 + 1, would be read as 1).
std::optional<int> ReadInt(const json& value) {
  if (value.is_number_unsigned()) {
    const auto v = value.get<std::uint64_t>();
    if (v <= static_cast<std::uint64_t>(std::numeric_limits<int>::max())) return static_cast<int>(v);
    return std::nullopt;
  }
  if (value.is_number_integer()) {
    const auto v = value.get<std::int64_t>();
    if (v >= std::numeric_limits<int>::min() && v <= std::numeric_limits<int>::max()) return static_cast<int>(v);
  }
  return std::nullopt;
}

Error MakeError(std::string_view code, std::string reason, std::optional<std::uint64_t> seq = std::nullopt) {
  return Error{seq, std::string(code), std::move(reason)};
}

// The parsed object, or the error that says why the bytes are not one.
std::variant<json, Error> ParseObject(std::string_view bytes) {
  if (bytes.size() > kMaxMessageBytes) {
    return MakeError(error_code::kTooLarge,
                     "message of " + std::to_string(bytes.size()) + " bytes exceeds the limit of " +
                         std::to_string(kMaxMessageBytes));
  }
  // PROTOCOL.md §2: exactly one JSON text. nlohmann skips a UTF-8
  // byte-order mark and stops at a NUL byte, so both are refused here (a
  // raw NUL can never be part of a JSON text).
  if (bytes.substr(0, 3) == "\xEF\xBB\xBF") {
    return MakeError(error_code::kMalformed, "a UTF-8 byte-order mark in front of the message");
  }
  if (bytes.find('\0') != std::string_view::npos) return MakeError(error_code::kMalformed, "a NUL byte in the message");
  if (JsonNestingDepth(bytes) > kMaxJsonDepth) {
    return MakeError(error_code::kMalformed, "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
  json parsed = json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return MakeError(error_code::kMalformed, "not valid JSON in UTF-8");
  }
  if (!parsed.is_object()) {
    return MakeError(error_code::kMalformed, "message is not a JSON object");
  }
  return parsed;
}

// Member access helpers that record the first problem in `problem`.
class Reader {
 public:
  Reader(const json& object, std::string_view type) : object_(object), type_(type) {}

  std::uint64_t Count(const char* name) {
    auto it = object_.find(name);
    if (it == object_.end()) return Fail(std::string("missing member '") + name + "'"), 0;
    auto v = ReadCount(*it);
    if (!v) return Fail(std::string("member '") + name + "' must be an integer in [0, 2^63)"), 0;
    return *v;
  }
  std::string Text(const char* name) {
    auto it = object_.find(name);
    if (it == object_.end()) return Fail(std::string("missing member '") + name + "'"), std::string();
    if (!it->is_string()) return Fail(std::string("member '") + name + "' must be a string"), std::string();
    return it->get<std::string>();
  }
  std::string Json(const char* name) {
    auto it = object_.find(name);
    if (it == object_.end()) return Fail(std::string("missing member '") + name + "'"), std::string();
    return it->dump();
  }
  const std::optional<std::string>& problem() const { return problem_; }

 private:
  void Fail(std::string what) {
    if (!problem_) problem_ = "'" + std::string(type_) + "' message: " + std::move(what);
  }
  const json& object_;
  std::string_view type_;
  std::optional<std::string> problem_;
};

std::optional<std::uint64_t> ReadableSeq(const json& object) {
  auto it = object.find("seq");
  if (it == object.end()) return std::nullopt;
  return ReadCount(*it);
}

// A message's object, its readable seq and its type; or the error that
// says why the bytes are not a message.
struct Envelope {
  json object;
  std::optional<std::uint64_t> seq;
  std::string type;
};

std::variant<Envelope, Error> ParseEnvelope(std::string_view bytes) {
  auto parsed = ParseObject(bytes);
  if (auto* error = std::get_if<Error>(&parsed)) return std::move(*error);
  Envelope envelope{std::move(std::get<json>(parsed)), std::nullopt, ""};
  envelope.seq = ReadableSeq(envelope.object);
  auto type_it = envelope.object.find("type");
  if (type_it == envelope.object.end() || !type_it->is_string()) {
    return MakeError(error_code::kMalformed, "member 'type' missing or not a string", envelope.seq);
  }
  envelope.type = type_it->get<std::string>();
  return envelope;
}

}  // namespace

std::optional<std::uint64_t> ReadCount(const json& value) {
  if (value.is_number_unsigned()) {
    const auto v = value.get<std::uint64_t>();
    if (v <= kMaxSeq) return v;
    return std::nullopt;
  }
  if (value.is_number_integer()) {
    const auto v = value.get<std::int64_t>();
    if (v >= 0) return static_cast<std::uint64_t>(v);
  }
  return std::nullopt;
}

Result<json> ParseDocument(std::string_view text) {
  if (JsonNestingDepth(text, kMaxDocumentJsonDepth) > kMaxDocumentJsonDepth) {
    return Status::Error("nested deeper than " + std::to_string(kMaxDocumentJsonDepth) + " levels");
  }
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return Status::Error("not JSON");
  return value;
}

int JsonNestingDepth(std::string_view text, int limit) {
  int depth = 0;
  int deepest = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (++depth > deepest) {
          deepest = depth;
          if (deepest > limit) return deepest;
        }
        break;
      case ']':
      case '}':
        if (depth > 0) --depth;
        break;
      default:
        break;
    }
  }
  return deepest;
}

Decoded<Request> DecodeRequest(std::string_view bytes) {
  auto parsed = ParseEnvelope(bytes);
  if (auto* error = std::get_if<Error>(&parsed)) return std::move(*error);
  const auto& [object, seq, type] = std::get<Envelope>(parsed);
  Reader read(object, type);
  Request request;
  // Braced initialisers evaluate left to right, so the first problem wins.
  if (type == "apply") {
    request = Apply{read.Count("seq"), static_cast<std::int64_t>(read.Count("time_ns")), read.Json("cmd")};
  } else if (type == "query") {
    request = Query{read.Count("seq"), read.Json("query")};
  } else if (type == "digest") {
    request = DigestRequest{read.Count("seq")};
  } else if (type == "snapshot") {
    request = SnapshotRequest{read.Count("seq")};
  } else if (type == "restore") {
    request = Restore{read.Count("seq"), read.Json("state")};
  } else if (type == "ping") {
    request = Ping{read.Count("seq")};
  } else {
    return MakeError(error_code::kUnknownType, "unknown message type " + Quote(type), seq);
  }
  if (read.problem()) return MakeError(error_code::kMalformed, *read.problem(), seq);
  return request;
}

Decoded<Reply> DecodeReply(std::string_view bytes) {
  auto parsed = ParseEnvelope(bytes);
  if (auto* error = std::get_if<Error>(&parsed)) return std::move(*error);
  const auto& [object, seq, type] = std::get<Envelope>(parsed);
  Reader read(object, type);
  Reply reply;
  if (type == "hello") {
    auto it = object.find("protocol");
    const std::optional<int> protocol = it == object.end() ? std::nullopt : ReadInt(*it);
    if (!protocol) {
      return MakeError(error_code::kMalformed, "'hello' message: member 'protocol' must be an integer (an int)");
    }
    reply = Hello{*protocol, read.Text("variant"), read.Text("impl")};
  } else if (type == "applied") {
    reply = Applied{read.Count("seq"), read.Json("result")};
  } else if (type == "answer") {
    reply = Answer{read.Count("seq"), read.Json("result")};
  } else if (type == "digest") {
    reply = DigestReply{read.Count("seq"), read.Text("digest")};
  } else if (type == "state") {
    reply = StateReply{read.Count("seq"), read.Json("state"), read.Text("digest")};
  } else if (type == "restored") {
    reply = Restored{read.Count("seq"), read.Text("digest")};
  } else if (type == "pong") {
    reply = Pong{read.Count("seq")};
  } else if (type == "error") {
    Error m;
    auto it = object.find("seq");
    if (it != object.end() && !it->is_null()) {
      m.seq = ReadCount(*it);
      if (!m.seq) return MakeError(error_code::kMalformed, "'error' message: member 'seq' must be null or a count");
    }
    m.code = read.Text("code");
    m.reason = read.Text("reason");
    reply = std::move(m);
  } else {
    return MakeError(error_code::kUnknownType, "unknown message type " + Quote(type), seq);
  }
  if (read.problem()) return MakeError(error_code::kMalformed, *read.problem(), seq);
  return reply;
}

std::string Encode(const Request& request) {
  return std::visit(
      Overloaded{
          [](const Apply& m) {
            return R"({"type":"apply","seq":)" + std::to_string(m.seq) + R"(,"time_ns":)" +
                   std::to_string(m.time_ns) + R"(,"cmd":)" + m.cmd + "}";
          },
          [](const Query& m) {
            return R"({"type":"query","seq":)" + std::to_string(m.seq) + R"(,"query":)" + m.query + "}";
          },
          [](const DigestRequest& m) { return R"({"type":"digest","seq":)" + std::to_string(m.seq) + "}"; },
          [](const SnapshotRequest& m) { return R"({"type":"snapshot","seq":)" + std::to_string(m.seq) + "}"; },
          [](const Restore& m) {
            return R"({"type":"restore","seq":)" + std::to_string(m.seq) + R"(,"state":)" + m.state + "}";
          },
          [](const Ping& m) { return R"({"type":"ping","seq":)" + std::to_string(m.seq) + "}"; },
      },
      request);
}

std::string Encode(const Reply& reply) {
  return std::visit(
      Overloaded{
          [](const Hello& m) {
            return R"({"type":"hello","protocol":)" + std::to_string(m.protocol) + R"(,"variant":)" +
                   Quote(m.variant) + R"(,"impl":)" + Quote(m.impl) + "}";
          },
          [](const Applied& m) {
            return R"({"type":"applied","seq":)" + std::to_string(m.seq) + R"(,"result":)" + m.result + "}";
          },
          [](const Answer& m) {
            return R"({"type":"answer","seq":)" + std::to_string(m.seq) + R"(,"result":)" + m.result + "}";
          },
          [](const DigestReply& m) {
            return R"({"type":"digest","seq":)" + std::to_string(m.seq) + R"(,"digest":)" + Quote(m.digest) + "}";
          },
          [](const StateReply& m) {
            return R"({"type":"state","seq":)" + std::to_string(m.seq) + R"(,"state":)" + m.state +
                   R"(,"digest":)" + Quote(m.digest) + "}";
          },
          [](const Restored& m) {
            return R"({"type":"restored","seq":)" + std::to_string(m.seq) + R"(,"digest":)" + Quote(m.digest) +
                   "}";
          },
          [](const Pong& m) { return R"({"type":"pong","seq":)" + std::to_string(m.seq) + "}"; },
          [](const Error& m) {
            return R"({"type":"error","seq":)" + (m.seq ? std::to_string(*m.seq) : std::string("null")) +
                   R"(,"code":)" + Quote(m.code) + R"(,"reason":)" + Quote(m.reason) + "}";
          },
      },
      reply);
}

std::uint64_t SeqOf(const Request& request) {
  return std::visit([](const auto& m) { return m.seq; }, request);
}

std::optional<std::uint64_t> SeqOf(const Reply& reply) {
  return std::visit(Overloaded{
                        [](const Hello&) -> std::optional<std::uint64_t> { return std::nullopt; },
                        [](const Error& m) -> std::optional<std::uint64_t> { return m.seq; },
                        [](const auto& m) -> std::optional<std::uint64_t> { return m.seq; },
                    },
                    reply);
}

std::string_view TypeName(const Request& request) {
  static constexpr std::string_view kNames[] = {"apply", "query", "digest", "snapshot", "restore", "ping"};
  return kNames[request.index()];
}

std::string_view TypeName(const Reply& reply) {
  static constexpr std::string_view kNames[] = {"hello",    "applied",  "answer", "digest",
                                                "state",    "restored", "pong",   "error"};
  return kNames[reply.index()];
}

Decoded<std::string> CompactJson(std::string_view text) {
  if (JsonNestingDepth(text) > kMaxJsonDepth) {
    return MakeError(error_code::kMalformed, "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
  json parsed = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return MakeError(error_code::kMalformed, "not valid JSON in UTF-8");
  return parsed.dump();
}

}  // namespace nvs::protocol
