#include "rb_state.hpp"

#include <utility>

#include "rb_json.hpp"

namespace routerb {

bool IsClientId(std::string_view s) {
  return !s.empty() && s.size() <= kMaxClientBytes && !HasControl(s);
}

bool IsSalvoName(std::string_view s) {
  return !s.empty() && s.size() <= kMaxSalvoNameBytes && !HasControl(s);
}

bool IsLabelText(std::string_view s) { return s.size() <= kMaxLabelBytes && !HasControl(s); }

std::uint64_t Fnv1a64(std::string_view bytes) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

std::string HexDigest(std::uint64_t h) {
  static const char kHex[] = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i) {
    s[static_cast<std::size_t>(i)] = kHex[h & 15];
    h >>= 4;
  }
  return s;
}

RouterState::RouterState(int inputs, int outputs) : inputs_(inputs), outputs_(outputs) {}

int RouterState::RouteOf(int output) const {
  auto it = routes_.find(output);
  return it == routes_.end() ? output % inputs_ : it->second;
}

void RouterState::SetRoute(int output, int input) {
  if (input == output % inputs_)
    routes_.erase(output);
  else
    routes_[output] = input;
}

std::string RouterState::DefaultLabel(LabelKind kind, int index) {
  return (kind == LabelKind::kInput ? "Input " : "Output ") + std::to_string(index + 1);
}

std::string RouterState::Label(LabelKind kind, int index) const {
  const auto& m = Labels(kind);
  auto it = m.find(index);
  return it == m.end() ? DefaultLabel(kind, index) : it->second;
}

void RouterState::SetLabel(LabelKind kind, int index, std::string text) {
  auto& m = Labels(kind);
  if (text == DefaultLabel(kind, index))
    m.erase(index);
  else
    m[index] = std::move(text);
}

const std::string* RouterState::LockOwner(int output) const {
  auto it = locks_.find(output);
  return it == locks_.end() ? nullptr : &it->second;
}

void RouterState::SetLock(int output, std::optional<std::string> owner) {
  if (owner)
    locks_[output] = std::move(*owner);
  else
    locks_.erase(output);
}

std::string RouterState::Canonical() const {
  std::string out;
  std::size_t salvo_routes = 0;
  for (const auto& [name, routes] : salvos_) salvo_routes += routes.size();
  out.reserve(160 + static_cast<std::size_t>(inputs_ + outputs_) * 16 +
               static_cast<std::size_t>(outputs_) * 6 + salvo_routes * 32);

  out.append("{\"inputs\":");
  AppendInt(out, inputs_);
  out.append(",\"outputs\":");
  AppendInt(out, outputs_);

  out.append(",\"routes\":[");
  {
    auto it = routes_.begin();
    for (int o = 0; o < outputs_; ++o) {
      if (o) out.push_back(',');
      if (it != routes_.end() && it->first == o) {
        AppendInt(out, it->second);
        ++it;
      } else {
        AppendInt(out, o % inputs_);
      }
    }
  }
  out.push_back(']');

  auto labels = [&](LabelKind kind, int count) {
    const auto& m = Labels(kind);
    auto it = m.begin();
    out.push_back('[');
    for (int i = 0; i < count; ++i) {
      if (i) out.push_back(',');
      if (it != m.end() && it->first == i) {
        AppendQuoted(out, it->second);
        ++it;
      } else {
        AppendQuoted(out, DefaultLabel(kind, i));
      }
    }
    out.push_back(']');
  };
  out.append(",\"input_labels\":");
  labels(LabelKind::kInput, inputs_);
  out.append(",\"output_labels\":");
  labels(LabelKind::kOutput, outputs_);

  out.append(",\"locks\":[");
  {
    auto it = locks_.begin();
    for (int o = 0; o < outputs_; ++o) {
      if (o) out.push_back(',');
      if (it != locks_.end() && it->first == o) {
        AppendQuoted(out, it->second);
        ++it;
      } else {
        out.append("null");
      }
    }
  }
  out.push_back(']');

  out.append(",\"salvos\":[");
  bool first_salvo = true;
  for (const auto& [name, routes] : salvos_) {
    if (!first_salvo) out.push_back(',');
    first_salvo = false;
    out.append("{\"name\":");
    AppendQuoted(out, name);
    out.append(",\"routes\":[");
    bool first = true;
    for (const auto& [o, i] : routes) {
      if (!first) out.push_back(',');
      first = false;
      out.append("{\"output\":");
      AppendInt(out, o);
      out.append(",\"input\":");
      AppendInt(out, i);
      out.push_back('}');
    }
    out.append("]}");
  }
  out.append("]}");
  return out;
}

namespace {

// True if obj is an object whose members are exactly `names`.
bool ExactlyMembers(const rapidjson::Value& obj, std::initializer_list<std::string_view> names) {
  if (!obj.IsObject() || obj.MemberCount() != names.size()) return false;
  for (auto n : names)
    if (Member(obj, n) == nullptr) return false;
  return true;
}

std::optional<int> IndexIn(const rapidjson::Value& v, int limit) {
  auto i = IntegerOf(v);
  if (!i || *i < 0 || *i >= limit) return std::nullopt;
  return static_cast<int>(*i);
}

}  // namespace

std::optional<RouterState> RouterState::FromCanonical(const rapidjson::Value& v, std::string* why) {
  auto fail = [why](const char* reason) -> std::optional<RouterState> {
    if (why) *why = reason;
    return std::nullopt;
  };
  if (!ExactlyMembers(v, {"inputs", "outputs", "routes", "input_labels", "output_labels", "locks",
                          "salvos"}))
    return fail("state must be an object with exactly the seven canonical members");

  auto size_of = [](const rapidjson::Value& n) -> int {
    auto i = IntegerOf(n);
    return (i && *i >= 1 && *i <= kMaxPorts) ? static_cast<int>(*i) : 0;
  };
  const int inputs = size_of(*Member(v, "inputs"));
  const int outputs = size_of(*Member(v, "outputs"));
  if (inputs == 0 || outputs == 0) return fail("inputs/outputs must be integers in [1, 1024]");

  RouterState s(inputs, outputs);

  const auto& routes = *Member(v, "routes");
  if (!routes.IsArray() || routes.Size() != static_cast<unsigned>(outputs))
    return fail("routes must be an array of `outputs` integers");
  for (int o = 0; o < outputs; ++o) {
    auto in = IndexIn(routes[static_cast<rapidjson::SizeType>(o)], inputs);
    if (!in) return fail("route not an integer in [0, inputs)");
    s.SetRoute(o, *in);
  }

  auto labels = [&](const char* member, LabelKind kind, int count) {
    const auto& arr = *Member(v, member);
    if (!arr.IsArray() || arr.Size() != static_cast<unsigned>(count)) return false;
    for (int i = 0; i < count; ++i) {
      const auto& t = arr[static_cast<rapidjson::SizeType>(i)];
      if (!t.IsString() || !IsLabelText(View(t))) return false;
      s.SetLabel(kind, i, std::string(View(t)));
    }
    return true;
  };
  if (!labels("input_labels", LabelKind::kInput, inputs))
    return fail("input_labels must be `inputs` valid label strings");
  if (!labels("output_labels", LabelKind::kOutput, outputs))
    return fail("output_labels must be `outputs` valid label strings");

  const auto& locks = *Member(v, "locks");
  if (!locks.IsArray() || locks.Size() != static_cast<unsigned>(outputs))
    return fail("locks must be an array of `outputs` elements");
  for (int o = 0; o < outputs; ++o) {
    const auto& l = locks[static_cast<rapidjson::SizeType>(o)];
    if (l.IsNull()) continue;
    if (!l.IsString() || !IsClientId(View(l))) return fail("lock must be null or a client id");
    s.SetLock(o, std::string(View(l)));
  }

  const auto& salvos = *Member(v, "salvos");
  if (!salvos.IsArray() || salvos.Size() > kMaxSalvos)
    return fail("salvos must be an array of at most 64 salvos");
  const std::string* previous_name = nullptr;
  for (const auto& sv : salvos.GetArray()) {
    if (!ExactlyMembers(sv, {"name", "routes"}))
      return fail("salvo must have exactly the members name and routes");
    const auto& name = *Member(sv, "name");
    if (!name.IsString() || !IsSalvoName(View(name))) return fail("bad salvo name");
    std::string name_s(View(name));
    if (previous_name && !(*previous_name < name_s))
      return fail("salvo names must be distinct and sorted");
    const auto& list = *Member(sv, "routes");
    if (!list.IsArray() || list.Empty() || list.Size() > kMaxListLength)
      return fail("salvo routes must be a list of 1 to 1024 routes");
    SalvoRoutes stored;
    int previous_output = -1;
    for (const auto& r : list.GetArray()) {
      if (!ExactlyMembers(r, {"output", "input"}))
        return fail("salvo route must have exactly the members output and input");
      auto o = IndexIn(*Member(r, "output"), outputs);
      auto i = IndexIn(*Member(r, "input"), inputs);
      if (!o || !i) return fail("salvo route out of range");
      if (*o <= previous_output) return fail("salvo routes must be sorted by distinct outputs");
      previous_output = *o;
      stored.emplace_hint(stored.end(), *o, *i);
    }
    auto it = s.salvos_.emplace_hint(s.salvos_.end(), std::move(name_s), std::move(stored));
    previous_name = &it->first;
  }
  return s;
}

}  // namespace routerb
