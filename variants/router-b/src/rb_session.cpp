#include "rb_session.hpp"

#include <cstdint>
#include <exception>
#include <utility>

#include "rb_commands.hpp"
#include "rb_json.hpp"

namespace routerb {
namespace {

using Seq = std::optional<std::int64_t>;

// An integer member in [0, 2^63) (seq, time_ns), or nullopt.
Seq ProtocolInt(const rapidjson::Value* v) {
  if (v == nullptr) return std::nullopt;
  auto i = IntegerOf(*v);
  if (!i || *i < 0) return std::nullopt;
  return i;
}

std::string Head(std::string_view type, std::int64_t seq) {
  std::string out = "{\"type\":\"";
  out.append(type);
  out.append("\",\"seq\":");
  AppendInt(out, seq);
  return out;
}

Outcome ErrorReply(Seq seq, std::string_view code, std::string_view reason) {
  std::string out = "{\"type\":\"error\",\"seq\":";
  if (seq)
    AppendInt(out, *seq);
  else
    out.append("null");
  out.append(",\"code\":\"");
  out.append(code);
  out.append("\",\"reason\":");
  AppendQuoted(out, reason);
  out.push_back('}');
  return {std::move(out), ProcessAction::kNone};
}

// Replaces bytes that are not valid UTF-8 by U+FFFD (only for echoing
// NVS_VARIANT, which is not JSON-checked by anyone before us).
std::string SanitizeUtf8(std::string_view s) {
  std::string out;
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t len = 1;
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0xF0) len = 4;
    else if (c >= 0xE0) len = 3;
    else if (c >= 0xC0) len = 2;
    if (i + len <= s.size() && IsUtf8(s.substr(i, len))) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out.append("\xEF\xBF\xBD");
      ++i;
    }
  }
  return out;
}

bool IsRequestType(std::string_view t) {
  return t == "apply" || t == "query" || t == "digest" || t == "snapshot" || t == "restore" ||
         t == "ping";
}

}  // namespace

Session::Session(RouterState state, std::vector<FaultRule> faults, LogSink log,
                 std::string_view received_by)
    : state_(std::move(state)),
      faults_(std::move(faults)),
      log_(std::move(log)),
      received_by_(SanitizeUtf8(received_by)) {}

std::string Session::Hello(std::string_view variant) {
  std::string out = "{\"type\":\"hello\",\"protocol\":1,\"variant\":";
  AppendQuoted(out, SanitizeUtf8(variant));
  out.append(",\"impl\":\"router-b 1.0 C++20 libzmq rapidjson\"}");
  return out;
}

Outcome Session::Handle(std::string_view message) {
  try {
    return Dispatch(message);
  } catch (const std::exception& e) {
    return ErrorReply(std::nullopt, "malformed", std::string("cannot process message: ") + e.what());
  }
}

const FaultRule* Session::MatchFault(const rapidjson::Value& cmd) const {
  if (faults_.empty()) return nullptr;
  std::string text;
  AppendValue(text, cmd);
  for (const auto& rule : faults_)
    if (text.find(rule.needle) != std::string::npos) return &rule;
  return nullptr;
}

Outcome Session::Dispatch(std::string_view message) {
  // PROTOCOL.md §3 order: size, UTF-8/JSON/object, type present, type known,
  // required members.
  if (message.size() > kMaxMessageBytes)
    return ErrorReply(std::nullopt, "too_large", "message longer than 16 MiB");

  rapidjson::Document doc;
  std::string why;
  if (!ParseJson(message, doc, &why)) return ErrorReply(std::nullopt, "malformed", why);
  if (!doc.IsObject()) return ErrorReply(std::nullopt, "malformed", "message is not a JSON object");

  const Seq seq = ProtocolInt(Member(doc, "seq"));
  const rapidjson::Value* type_v = Member(doc, "type");
  if (type_v == nullptr || !type_v->IsString())
    return ErrorReply(seq, "malformed", "'type' missing or not a string");
  const std::string_view type = View(*type_v);
  if (!IsRequestType(type)) {
    std::string reason = "unknown message type";
    if (type.size() <= 64 && !HasControl(type)) reason += " '" + std::string(type) + "'";
    return ErrorReply(seq, "unknown_type", reason);
  }

  const bool is_apply = type == "apply";
  const bool is_query = type == "query";
  if ((is_apply || is_query) && log_) {
    // PROTOCOL.md §6: the message plus "received_by" (ours replaces any
    // member of that name the message already has, so no name repeats).
    std::string line = "{";
    for (const auto& m : doc.GetObject()) {
      if (View(m.name) == "received_by") continue;
      AppendQuoted(line, View(m.name));
      line.push_back(':');
      AppendValue(line, m.value);
      line.push_back(',');
    }
    line.append("\"received_by\":");
    AppendQuoted(line, received_by_);
    line.append("}\n");
    log_(line);
  }

  if (!seq) return ErrorReply(std::nullopt, "malformed", "'seq' missing or not an integer in [0, 2^63)");

  if (is_apply || is_query) {
    if (is_apply && !ProtocolInt(Member(doc, "time_ns")))
      return ErrorReply(seq, "malformed", "'time_ns' missing or not an integer in [0, 2^63)");
    const rapidjson::Value* cmd = Member(doc, is_apply ? "cmd" : "query");
    if (cmd == nullptr)
      return ErrorReply(seq, "malformed", is_apply ? "'cmd' missing" : "'query' missing");

    const FaultRule* rule = MatchFault(*cmd);
    if (rule) {
      switch (rule->kind) {
        case FaultRule::Kind::kCrash: return {std::nullopt, ProcessAction::kCrash};
        case FaultRule::Kind::kAbort: return {std::nullopt, ProcessAction::kAbort};
        case FaultRule::Kind::kExit: return {std::nullopt, ProcessAction::kExit};
        case FaultRule::Kind::kHang: return {std::nullopt, ProcessAction::kHang};
        case FaultRule::Kind::kWrong:
        case FaultRule::Kind::kCorrupt: break;
      }
    }
    std::string result = RunCommand(state_, *cmd, is_query);
    if (rule && rule->kind == FaultRule::Kind::kWrong) result = "{\"ok\":true,\"fault\":\"wrong\"}";
    std::string out = Head(is_apply ? "applied" : "answer", *seq);
    out.append(",\"result\":");
    out.append(result);
    out.push_back('}');
    if (rule && rule->kind == FaultRule::Kind::kCorrupt)
      state_.SetRoute(0, (state_.RouteOf(0) + 1) % state_.Inputs());
    return {std::move(out), ProcessAction::kNone};
  }

  if (type == "ping") return {Head("pong", *seq) + "}", ProcessAction::kNone};

  if (type == "digest") {
    std::string out = Head("digest", *seq);
    out.append(",\"digest\":\"");
    out.append(state_.Digest());
    out.append("\"}");
    return {std::move(out), ProcessAction::kNone};
  }

  if (type == "snapshot") {
    const std::string canonical = state_.Canonical();
    std::string out = Head("state", *seq);
    out.reserve(out.size() + canonical.size() + 48);
    out.append(",\"state\":");
    out.append(canonical);
    out.append(",\"digest\":\"");
    out.append(HexDigest(Fnv1a64(canonical)));
    out.append("\"}");
    return {std::move(out), ProcessAction::kNone};
  }

  // restore
  const rapidjson::Value* state_v = Member(doc, "state");
  if (state_v == nullptr) return ErrorReply(seq, "malformed", "'state' missing");
  std::optional<RouterState> restored = RouterState::FromCanonical(*state_v, &why);
  if (!restored) return ErrorReply(seq, "bad_state", why);
  state_ = std::move(*restored);
  std::string out = Head("restored", *seq);
  out.append(",\"digest\":\"");
  out.append(state_.Digest());
  out.append("\"}");
  return {std::move(out), ProcessAction::kNone};
}

}  // namespace routerb
