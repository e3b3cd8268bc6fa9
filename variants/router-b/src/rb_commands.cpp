#include "rb_commands.hpp"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "rb_json.hpp"

namespace routerb {

const char* ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kBadRequest: return "bad_request";
    case ErrorCode::kUnknownOp: return "unknown_op";
    case ErrorCode::kNotAQuery: return "not_a_query";
    case ErrorCode::kOutOfRange: return "out_of_range";
    case ErrorCode::kDuplicate: return "duplicate";
    case ErrorCode::kLocked: return "locked";
    case ErrorCode::kLabelTooLong: return "label_too_long";
    case ErrorCode::kBadLabel: return "bad_label";
    case ErrorCode::kNotFound: return "not_found";
    case ErrorCode::kFull: return "full";
  }
  return "bad_request";
}

std::string RejectionResult(const Rejection& r) {
  std::string out = "{\"ok\":false,\"error\":\"";
  out.append(ErrorCodeName(r.code));
  out.append("\",\"message\":");
  AppendQuoted(out, r.message);
  out.push_back('}');
  return out;
}

namespace {

Rejection Reject(ErrorCode code, std::string message) { return {code, std::move(message)}; }
Rejection BadRequest(std::string message) { return {ErrorCode::kBadRequest, std::move(message)}; }

// ---- shape helpers (SPEC.md §3.2) ----------------------------------------

Verdict ExactMembers(const rapidjson::Value& obj, std::initializer_list<std::string_view> names,
                     const char* what) {
  if (!obj.IsObject()) return BadRequest(std::string(what) + " must be an object");
  for (auto n : names)
    if (Member(obj, n) == nullptr)
      return BadRequest(std::string(what) + " lacks member '" + std::string(n) + "'");
  if (obj.MemberCount() != names.size())
    return BadRequest(std::string(what) + " has a member that does not belong to it");
  return std::nullopt;
}

Verdict ReadInteger(const rapidjson::Value& obj, std::string_view name, std::int64_t& out) {
  auto v = IntegerOf(*Member(obj, name));
  if (!v) return BadRequest("'" + std::string(name) + "' must be an integer");
  out = *v;
  return std::nullopt;
}

Verdict ReadClient(const rapidjson::Value& cmd, std::string& out) {
  const auto& v = *Member(cmd, "client");
  if (!v.IsString() || !IsClientId(View(v)))
    return BadRequest("'client' must be a string of 1 to 64 bytes without control characters");
  out.assign(View(v));
  return std::nullopt;
}

Verdict ReadSalvoName(const rapidjson::Value& cmd, std::string& out) {
  const auto& v = *Member(cmd, "name");
  if (!v.IsString() || !IsSalvoName(View(v)))
    return BadRequest("'name' must be a string of 1 to 32 bytes without control characters");
  out.assign(View(v));
  return std::nullopt;
}

Verdict ReadList(const rapidjson::Value& cmd, std::string_view name,
                 const rapidjson::Value*& out) {
  const auto& v = *Member(cmd, name);
  if (!v.IsArray() || v.Empty() || v.Size() > kMaxListLength)
    return BadRequest("'" + std::string(name) + "' must be an array of 1 to 1024 elements");
  out = &v;
  return std::nullopt;
}

// ---- routes, shared by route / salvo_define / salvo_fire -----------------

struct RouteEntry {
  std::int64_t output;
  std::int64_t input;
};

Verdict ReadRoutes(const rapidjson::Value& cmd, std::vector<RouteEntry>& out) {
  const rapidjson::Value* list = nullptr;
  if (auto v = ReadList(cmd, "routes", list)) return v;
  out.reserve(list->Size());
  for (const auto& e : list->GetArray()) {
    if (auto v = ExactMembers(e, {"output", "input"}, "a route entry")) return v;
    RouteEntry r{};
    if (auto v = ReadInteger(e, "output", r.output)) return v;
    if (auto v = ReadInteger(e, "input", r.input)) return v;
    out.push_back(r);
  }
  return std::nullopt;
}

bool InRange(std::int64_t v, int limit) { return v >= 0 && v < limit; }

// Semantic checks of route entries, in entry order; `client` == nullptr skips
// the lock check (salvo_define).
Verdict CheckRoutes(const RouterState& s, const std::vector<RouteEntry>& routes,
                    const std::string* client) {
  std::set<std::int64_t> seen;
  for (const auto& r : routes) {
    if (!InRange(r.output, s.Outputs()))
      return Reject(ErrorCode::kOutOfRange, "output " + std::to_string(r.output) + " out of range");
    if (!InRange(r.input, s.Inputs()))
      return Reject(ErrorCode::kOutOfRange, "input " + std::to_string(r.input) + " out of range");
    if (!seen.insert(r.output).second)
      return Reject(ErrorCode::kDuplicate, "output " + std::to_string(r.output) + " listed twice");
    if (client) {
      const std::string* owner = s.LockOwner(static_cast<int>(r.output));
      if (owner && *owner != *client)
        return Reject(ErrorCode::kLocked,
                      "output " + std::to_string(r.output) + " is locked by another client");
    }
  }
  return std::nullopt;
}

std::string ApplyRoutes(RouterState& s, const std::vector<RouteEntry>& routes) {
  std::map<int, int> changed;  // sorted by output
  for (const auto& r : routes) {
    const int o = static_cast<int>(r.output), i = static_cast<int>(r.input);
    if (s.RouteOf(o) != i) changed.emplace(o, i);
  }
  std::string out = "{\"ok\":true,\"changed\":[";
  bool first = true;
  for (const auto& [o, i] : changed) {
    s.SetRoute(o, i);
    if (!first) out.push_back(',');
    first = false;
    out.append("{\"output\":");
    AppendInt(out, o);
    out.append(",\"input\":");
    AppendInt(out, i);
    out.push_back('}');
  }
  out.append("]}");
  return out;
}

// ---- the ops -------------------------------------------------------------

class RouteCommand final : public Command {
 public:
  bool Mutating() const override { return true; }
  Verdict Validate(const rapidjson::Value& cmd) override {
    if (auto v = ExactMembers(cmd, {"op", "client", "routes"}, "route command")) return v;
    if (auto v = ReadClient(cmd, client_)) return v;
    return ReadRoutes(cmd, routes_);
  }
  Verdict Check(const RouterState& s) const override { return CheckRoutes(s, routes_, &client_); }
  std::string Execute(RouterState& s) override { return ApplyRoutes(s, routes_); }

 private:
  std::string client_;
  std::vector<RouteEntry> routes_;
};

class LabelCommand final : public Command {
 public:
  bool Mutating() const override { return true; }
  Verdict Validate(const rapidjson::Value& cmd) override {
    if (auto v = ExactMembers(cmd, {"op", "client", "kind", "labels"}, "label command")) return v;
    if (auto v = ReadClient(cmd, client_)) return v;
    const auto& kind = *Member(cmd, "kind");
    if (kind.IsString() && View(kind) == "input")
      kind_ = LabelKind::kInput;
    else if (kind.IsString() && View(kind) == "output")
      kind_ = LabelKind::kOutput;
    else
      return BadRequest("'kind' must be \"input\" or \"output\"");
    const rapidjson::Value* list = nullptr;
    if (auto v = ReadList(cmd, "labels", list)) return v;
    for (const auto& e : list->GetArray()) {
      if (auto v = ExactMembers(e, {"index", "text"}, "a label entry")) return v;
      Entry entry;
      if (auto v = ReadInteger(e, "index", entry.index)) return v;
      const auto& text = *Member(e, "text");
      if (!text.IsString()) return BadRequest("'text' must be a string");
      entry.text.assign(View(text));
      entries_.push_back(std::move(entry));
    }
    return std::nullopt;
  }
  Verdict Check(const RouterState& s) const override {
    const int limit = kind_ == LabelKind::kInput ? s.Inputs() : s.Outputs();
    std::set<std::int64_t> seen;
    for (const auto& e : entries_) {
      if (!InRange(e.index, limit))
        return Reject(ErrorCode::kOutOfRange, "index " + std::to_string(e.index) + " out of range");
      if (!seen.insert(e.index).second)
        return Reject(ErrorCode::kDuplicate, "index " + std::to_string(e.index) + " listed twice");
      if (e.text.size() > kMaxLabelBytes)
        return Reject(ErrorCode::kLabelTooLong, "label text longer than 64 bytes");
      if (HasControl(e.text))
        return Reject(ErrorCode::kBadLabel, "label text contains a control character");
    }
    return std::nullopt;
  }
  std::string Execute(RouterState& s) override {
    std::map<int, const std::string*> changed;
    for (const auto& e : entries_) {
      const int k = static_cast<int>(e.index);
      if (s.Label(kind_, k) != e.text) changed.emplace(k, &e.text);
    }
    std::string out = "{\"ok\":true,\"kind\":";
    out.append(kind_ == LabelKind::kInput ? "\"input\"" : "\"output\"");
    out.append(",\"changed\":[");
    bool first = true;
    for (const auto& [k, text] : changed) {
      s.SetLabel(kind_, k, *text);
      if (!first) out.push_back(',');
      first = false;
      out.append("{\"index\":");
      AppendInt(out, k);
      out.append(",\"text\":");
      AppendQuoted(out, *text);
      out.push_back('}');
    }
    out.append("]}");
    return out;
  }

 private:
  struct Entry {
    std::int64_t index = 0;
    std::string text;
  };
  std::string client_;
  LabelKind kind_ = LabelKind::kInput;
  std::vector<Entry> entries_;
};

class LockCommand final : public Command {
 public:
  bool Mutating() const override { return true; }
  Verdict Validate(const rapidjson::Value& cmd) override {
    if (auto v = ExactMembers(cmd, {"op", "client", "locks"}, "lock command")) return v;
    if (auto v = ReadClient(cmd, client_)) return v;
    const rapidjson::Value* list = nullptr;
    if (auto v = ReadList(cmd, "locks", list)) return v;
    for (const auto& e : list->GetArray()) {
      if (auto v = ExactMembers(e, {"output", "action"}, "a lock entry")) return v;
      Entry entry;
      if (auto v = ReadInteger(e, "output", entry.output)) return v;
      const auto& action = *Member(e, "action");
      if (!action.IsString() || action.GetStringLength() != 1 ||
          std::string_view("OUF").find(action.GetString()[0]) == std::string_view::npos)
        return BadRequest("'action' must be \"O\", \"U\" or \"F\"");
      entry.action = action.GetString()[0];
      entries_.push_back(entry);
    }
    return std::nullopt;
  }
  Verdict Check(const RouterState& s) const override {
    std::set<std::int64_t> seen;
    for (const auto& e : entries_) {
      if (!InRange(e.output, s.Outputs()))
        return Reject(ErrorCode::kOutOfRange, "output " + std::to_string(e.output) + " out of range");
      if (!seen.insert(e.output).second)
        return Reject(ErrorCode::kDuplicate, "output " + std::to_string(e.output) + " listed twice");
      const std::string* owner = s.LockOwner(static_cast<int>(e.output));
      if (e.action != 'F' && owner && *owner != client_)
        return Reject(ErrorCode::kLocked,
                      "output " + std::to_string(e.output) + " is locked by another client");
    }
    return std::nullopt;
  }
  std::string Execute(RouterState& s) override {
    std::map<int, std::optional<std::string>> changed;
    for (const auto& e : entries_) {
      const int o = static_cast<int>(e.output);
      const bool locked = s.LockOwner(o) != nullptr;
      if (e.action == 'O' && !locked) changed.emplace(o, client_);
      if (e.action != 'O' && locked) changed.emplace(o, std::nullopt);
    }
    std::string out = "{\"ok\":true,\"changed\":[";
    bool first = true;
    for (const auto& [o, owner] : changed) {
      s.SetLock(o, owner);
      if (!first) out.push_back(',');
      first = false;
      out.append("{\"output\":");
      AppendInt(out, o);
      out.append(",\"owner\":");
      if (owner)
        AppendQuoted(out, *owner);
      else
        out.append("null");
      out.push_back('}');
    }
    out.append("]}");
    return out;
  }

 private:
  struct Entry {
    std::int64_t output = 0;
    char action = 'O';
  };
  std::string client_;
  std::vector<Entry> entries_;
};

class SalvoDefineCommand final : public Command {
 public:
  bool Mutating() const override { return true; }
  Verdict Validate(const rapidjson::Value& cmd) override {
    if (auto v = ExactMembers(cmd, {"op", "client", "name", "routes"}, "salvo_define command"))
      return v;
    if (auto v = ReadClient(cmd, client_)) return v;
    if (auto v = ReadSalvoName(cmd, name_)) return v;
    return ReadRoutes(cmd, routes_);
  }
  Verdict Check(const RouterState& s) const override {
    if (auto v = CheckRoutes(s, routes_, nullptr)) return v;
    if (s.GetSalvos().count(name_) == 0 && s.GetSalvos().size() >= kMaxSalvos)
      return Reject(ErrorCode::kFull, "64 salvos exist already");
    return std::nullopt;
  }
  std::string Execute(RouterState& s) override {
    RouterState::SalvoRoutes stored;
    for (const auto& r : routes_)
      stored.emplace(static_cast<int>(r.output), static_cast<int>(r.input));
    const std::size_t size = stored.size();
    s.MutableSalvos()[name_] = std::move(stored);
    std::string out = "{\"ok\":true,\"name\":";
    AppendQuoted(out, name_);
    out.append(",\"size\":");
    AppendInt(out, static_cast<std::int64_t>(size));
    out.push_back('}');
    return out;
  }

 private:
  std::string client_;
  std::string name_;
  std::vector<RouteEntry> routes_;
};

class SalvoFireCommand final : public Command {
 public:
  bool Mutating() const override { return true; }
  Verdict Validate(const rapidjson::Value& cmd) override {
    if (auto v = ExactMembers(cmd, {"op", "client", "name"}, "salvo_fire command")) return v;
    if (auto v = ReadClient(cmd, client_)) return v;
    return ReadSalvoName(cmd, name_);
  }
  Verdict Check(const RouterState& s) const override {
    auto it = s.GetSalvos().find(name_);
    if (it == s.GetSalvos().end()) return Reject(ErrorCode::kNotFound, "no salvo of that name");
    return CheckRoutes(s, StoredRoutes(it->second), &client_);
  }
  std::string Execute(RouterState& s) override {
    return ApplyRoutes(s, StoredRoutes(s.GetSalvos().at(name_)));
  }

 private:
  // The stored routes in their stored order (by output ascending).
  static std::vector<RouteEntry> StoredRoutes(const RouterState::SalvoRoutes& stored) {
    std::vector<RouteEntry> routes;
    routes.reserve(stored.size());
    for (const auto& [o, i] : stored) routes.push_back({o, i});
    return routes;
  }

  std::string client_;
  std::string name_;
};

class SalvoDeleteCommand final : public Command {
 public:
  bool Mutating() const override { return true; }
  Verdict Validate(const rapidjson::Value& cmd) override {
    if (auto v = ExactMembers(cmd, {"op", "client", "name"}, "salvo_delete command")) return v;
    if (auto v = ReadClient(cmd, client_)) return v;
    return ReadSalvoName(cmd, name_);
  }
  Verdict Check(const RouterState& s) const override {
    if (s.GetSalvos().count(name_) == 0)
      return Reject(ErrorCode::kNotFound, "no salvo of that name");
    return std::nullopt;
  }
  std::string Execute(RouterState& s) override {
    s.MutableSalvos().erase(name_);
    std::string out = "{\"ok\":true,\"name\":";
    AppendQuoted(out, name_);
    out.push_back('}');
    return out;
  }

 private:
  std::string client_;
  std::string name_;
};

class DumpCommand final : public Command {
 public:
  bool Mutating() const override { return false; }
  Verdict Validate(const rapidjson::Value& cmd) override {
    return ExactMembers(cmd, {"op"}, "dump command");
  }
  Verdict Check(const RouterState&) const override { return std::nullopt; }
  std::string Execute(RouterState& s) override {
    std::string out = "{\"ok\":true,\"state\":";
    out.append(s.Canonical());
    out.push_back('}');
    return out;
  }
};

using Factory = std::function<std::unique_ptr<Command>()>;

template <typename T>
Factory Make() {
  return [] { return std::make_unique<T>(); };
}

const std::map<std::string, Factory, std::less<>>& Registry() {
  static const std::map<std::string, Factory, std::less<>> registry = {
      {"route", Make<RouteCommand>()},
      {"label", Make<LabelCommand>()},
      {"lock", Make<LockCommand>()},
      {"salvo_define", Make<SalvoDefineCommand>()},
      {"salvo_fire", Make<SalvoFireCommand>()},
      {"salvo_delete", Make<SalvoDeleteCommand>()},
      {"dump", Make<DumpCommand>()},
  };
  return registry;
}

}  // namespace

std::unique_ptr<Command> MakeCommand(std::string_view op) {
  const auto& registry = Registry();
  auto it = registry.find(op);
  return it == registry.end() ? nullptr : it->second();
}

std::string RunCommand(RouterState& state, const rapidjson::Value& cmd, bool as_query) {
  if (!cmd.IsObject()) return RejectionResult(BadRequest("command must be a JSON object"));
  const rapidjson::Value* op = Member(cmd, "op");
  if (op == nullptr || !op->IsString())
    return RejectionResult(BadRequest("'op' missing or not a string"));
  std::unique_ptr<Command> command = MakeCommand(View(*op));
  if (!command) return RejectionResult(Reject(ErrorCode::kUnknownOp, "unknown op"));
  if (as_query && command->Mutating())
    return RejectionResult(Reject(ErrorCode::kNotAQuery, "a query may only carry a read-only op"));
  if (auto v = command->Validate(cmd)) return RejectionResult(*v);
  if (auto v = command->Check(state)) return RejectionResult(*v);
  return command->Execute(state);
}

}  // namespace routerb
