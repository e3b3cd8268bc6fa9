#include "router.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <utility>

namespace router_a {

using json = nlohmann::json;

namespace {

// ---- Error results (SPEC §3.1, §5) ----------------------------------------

json Fail(const char* code, std::string message) {
  json r = json::object();
  r["ok"] = false;
  r["error"] = code;
  r["message"] = std::move(message);
  return r;
}

json BadRequest(std::string message) { return Fail("bad_request", std::move(message)); }

// ---- Shape helpers (SPEC §3.2) --------------------------------------------

// True when `v` is an object with exactly the listed members (no others).
// JSON object keys are unique in a parsed value, so size + presence suffices.
bool HasExactly(const json& v, std::initializer_list<const char*> keys) {
  if (!v.is_object() || v.size() != keys.size()) return false;
  for (const char* k : keys) {
    if (v.find(k) == v.end()) return false;
  }
  return true;
}

// SPEC §3.2 integer: a JSON number with no fraction/exponent whose value is
// in the signed 64-bit range. nlohmann/json parses a non-negative integer
// literal as number_unsigned (values up to 2^64-1), a negative one as
// number_integer, and anything with '.', 'e' or out of 64-bit range as
// number_float. Booleans are not numbers.
bool AsInteger(const json& v, std::int64_t& out) {
  if (v.is_number_unsigned()) {
    const std::uint64_t u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return false;
    out = static_cast<std::int64_t>(u);
    return true;
  }
  if (v.is_number_integer()) {  // signed (negative literal or built in C++)
    out = v.get<std::int64_t>();
    return true;
  }
  return false;
}

// Control character U+0000-U+001F or U+007F. In valid UTF-8 these code points
// are exactly the single bytes 0x00-0x1F and 0x7F (no multi-byte sequence
// contains a byte below 0x80).
bool HasControl(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7F) return true;
  }
  return false;
}

bool IsBoundedText(const json& v, std::size_t min_bytes, std::size_t max_bytes) {
  if (!v.is_string()) return false;
  const std::string& s = v.get_ref<const std::string&>();
  return s.size() >= min_bytes && s.size() <= max_bytes && !HasControl(s);
}

bool IsClientId(const json& v) { return IsBoundedText(v, 1, kMaxClientBytes); }
bool IsSalvoName(const json& v) { return IsBoundedText(v, 1, kMaxNameBytes); }
bool IsValidLabel(const std::string& s) { return s.size() <= kMaxLabelBytes && !HasControl(s); }

bool IsList(const json& v) { return v.is_array() && !v.empty() && v.size() <= kMaxList; }

bool InRange(std::int64_t v, std::int32_t limit) { return v >= 0 && v < limit; }

// Byte-wise unsigned comparison (std::string's char_traits<char> compares
// like memcmp, i.e. as unsigned char; written out to make that explicit).
bool NameLess(std::string_view a, std::string_view b) {
  const std::size_t n = std::min(a.size(), b.size());
  const int c = n == 0 ? 0 : std::memcmp(a.data(), b.data(), n);
  if (c != 0) return c < 0;
  return a.size() < b.size();
}

// ---- Canonical serializer (SPEC §6.1) --------------------------------------

void PutInt(std::string& out, std::int64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;
  out.append(buf, end);
}

void PutString(std::string& out, std::string_view s) {
  out.push_back('"');
  std::size_t run = 0;  // start of the current unescaped run
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '"' || c == '\\') {
      out.append(s.data() + run, i - run);
      out.push_back('\\');
      out.push_back(c);
      run = i + 1;
    }
  }
  out.append(s.data() + run, s.size() - run);
  out.push_back('"');
}

void PutStringArray(std::string& out, const std::vector<std::string>& v) {
  out.push_back('[');
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) out.push_back(',');
    PutString(out, v[i]);
  }
  out.push_back(']');
}

json RoutePairJson(std::int64_t output, std::int64_t input) {
  json o = json::object();
  o["output"] = output;
  o["input"] = input;
  return o;
}

}  // namespace

// ---- Free functions ---------------------------------------------------------

RouterState InitialState(std::int32_t inputs, std::int32_t outputs) {
  RouterState s;
  s.inputs = inputs;
  s.outputs = outputs;
  s.routes.resize(static_cast<std::size_t>(outputs));
  s.input_labels.resize(static_cast<std::size_t>(inputs));
  s.output_labels.resize(static_cast<std::size_t>(outputs));
  s.owners.resize(static_cast<std::size_t>(outputs));
  for (std::int32_t o = 0; o < outputs; ++o) {
    s.routes[static_cast<std::size_t>(o)] = o % inputs;
    s.output_labels[static_cast<std::size_t>(o)] = "Output " + std::to_string(o + 1);
  }
  for (std::int32_t i = 0; i < inputs; ++i) {
    s.input_labels[static_cast<std::size_t>(i)] = "Input " + std::to_string(i + 1);
  }
  return s;
}

std::string CanonicalBytes(const RouterState& s) {
  std::size_t estimate = 128 + s.routes.size() * 6 + s.owners.size() * 8;
  for (const auto& l : s.input_labels) estimate += l.size() + 4;
  for (const auto& l : s.output_labels) estimate += l.size() + 4;
  for (const auto& o : s.owners) estimate += o ? o->size() + 4 : 0;
  for (const auto& sv : s.salvos) estimate += sv.name.size() + 32 + sv.routes.size() * 30;

  std::string out;
  out.reserve(estimate);
  out += "{\"inputs\":";
  PutInt(out, s.inputs);
  out += ",\"outputs\":";
  PutInt(out, s.outputs);
  out += ",\"routes\":[";
  for (std::size_t o = 0; o < s.routes.size(); ++o) {
    if (o) out.push_back(',');
    PutInt(out, s.routes[o]);
  }
  out += "],\"input_labels\":";
  PutStringArray(out, s.input_labels);
  out += ",\"output_labels\":";
  PutStringArray(out, s.output_labels);
  out += ",\"locks\":[";
  for (std::size_t o = 0; o < s.owners.size(); ++o) {
    if (o) out.push_back(',');
    if (s.owners[o]) {
      PutString(out, *s.owners[o]);
    } else {
      out += "null";
    }
  }
  out += "],\"salvos\":[";
  for (std::size_t k = 0; k < s.salvos.size(); ++k) {
    const Salvo& sv = s.salvos[k];
    if (k) out.push_back(',');
    out += "{\"name\":";
    PutString(out, sv.name);
    out += ",\"routes\":[";
    for (std::size_t r = 0; r < sv.routes.size(); ++r) {
      if (r) out.push_back(',');
      out += "{\"output\":";
      PutInt(out, sv.routes[r].output);
      out += ",\"input\":";
      PutInt(out, sv.routes[r].input);
      out.push_back('}');
    }
    out += "]}";
  }
  out += "]}";
  return out;
}

std::uint64_t Fnv1a64(std::string_view bytes) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char b : bytes) {
    h ^= b;
    h *= 0x100000001b3ULL;
  }
  return h;
}

std::string Hex16(std::uint64_t value) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i) {
    out[static_cast<std::size_t>(i)] = kDigits[value & 0xF];
    value >>= 4;
  }
  return out;
}

std::optional<std::int32_t> ParseSizeArgument(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::int64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
    if (value > kMaxSize) return std::nullopt;  // also stops overflow
  }
  if (value < 1) return std::nullopt;
  return static_cast<std::int32_t>(value);
}

std::optional<std::string> ParseState(const json& v, RouterState& out) {
  if (!HasExactly(v, {"inputs", "outputs", "routes", "input_labels", "output_labels", "locks",
                      "salvos"})) {
    return "state must be an object with exactly the members inputs, outputs, routes, "
           "input_labels, output_labels, locks, salvos";
  }
  std::int64_t inputs = 0;
  std::int64_t outputs = 0;
  if (!AsInteger(v["inputs"], inputs) || inputs < 1 || inputs > kMaxSize) {
    return "inputs must be an integer in [1, 1024]";
  }
  if (!AsInteger(v["outputs"], outputs) || outputs < 1 || outputs > kMaxSize) {
    return "outputs must be an integer in [1, 1024]";
  }
  const auto I = static_cast<std::int32_t>(inputs);
  const auto O = static_cast<std::int32_t>(outputs);
  const auto nI = static_cast<std::size_t>(I);
  const auto nO = static_cast<std::size_t>(O);
  out = RouterState{};
  out.inputs = I;
  out.outputs = O;

  const json& routes = v["routes"];
  if (!routes.is_array() || routes.size() != nO) return "routes must be an array of outputs integers";
  out.routes.resize(nO);
  for (std::size_t o = 0; o < nO; ++o) {
    std::int64_t r = 0;
    if (!AsInteger(routes[o], r) || !InRange(r, I)) return "route " + std::to_string(o) + " invalid";
    out.routes[o] = static_cast<std::int32_t>(r);
  }

  const json& in_labels = v["input_labels"];
  if (!in_labels.is_array() || in_labels.size() != nI) return "input_labels must have inputs strings";
  out.input_labels.resize(nI);
  for (std::size_t i = 0; i < nI; ++i) {
    if (!in_labels[i].is_string()) return "input label " + std::to_string(i) + " not a string";
    const std::string& s = in_labels[i].get_ref<const std::string&>();
    if (!IsValidLabel(s)) return "input label " + std::to_string(i) + " invalid";
    out.input_labels[i] = s;
  }

  const json& out_labels = v["output_labels"];
  if (!out_labels.is_array() || out_labels.size() != nO) return "output_labels must have outputs strings";
  out.output_labels.resize(nO);
  for (std::size_t o = 0; o < nO; ++o) {
    if (!out_labels[o].is_string()) return "output label " + std::to_string(o) + " not a string";
    const std::string& s = out_labels[o].get_ref<const std::string&>();
    if (!IsValidLabel(s)) return "output label " + std::to_string(o) + " invalid";
    out.output_labels[o] = s;
  }

  const json& locks = v["locks"];
  if (!locks.is_array() || locks.size() != nO) return "locks must have outputs elements";
  out.owners.resize(nO);
  for (std::size_t o = 0; o < nO; ++o) {
    if (locks[o].is_null()) continue;
    if (!IsClientId(locks[o])) return "lock " + std::to_string(o) + " is neither null nor a client id";
    out.owners[o] = locks[o].get<std::string>();
  }

  const json& salvos = v["salvos"];
  if (!salvos.is_array() || salvos.size() > kMaxSalvos) return "salvos must be an array of at most 64";
  out.salvos.reserve(salvos.size());
  for (std::size_t k = 0; k < salvos.size(); ++k) {
    const json& sv = salvos[k];
    if (!HasExactly(sv, {"name", "routes"})) return "salvo " + std::to_string(k) + " must have exactly name, routes";
    if (!IsSalvoName(sv["name"])) return "salvo " + std::to_string(k) + " has an invalid name";
    const std::string& name = sv["name"].get_ref<const std::string&>();
    if (k > 0 && !NameLess(out.salvos.back().name, name)) {
      return "salvo names must be distinct and sorted byte-wise";
    }
    const json& sr = sv["routes"];
    if (!IsList(sr)) return "salvo '" + name + "' routes must be a list of 1 to 1024";
    Salvo salvo;
    salvo.name = name;
    salvo.routes.reserve(sr.size());
    for (std::size_t r = 0; r < sr.size(); ++r) {
      const json& e = sr[r];
      std::int64_t so = 0;
      std::int64_t si = 0;
      if (!HasExactly(e, {"output", "input"}) || !AsInteger(e["output"], so) ||
          !AsInteger(e["input"], si)) {
        return "salvo '" + name + "' route " + std::to_string(r) + " malformed";
      }
      if (!InRange(so, O) || !InRange(si, I)) {
        return "salvo '" + name + "' route " + std::to_string(r) + " out of range";
      }
      // Strictly increasing outputs = sorted and distinct.
      if (!salvo.routes.empty() && so <= salvo.routes.back().output) {
        return "salvo '" + name + "' routes must have distinct outputs sorted ascending";
      }
      salvo.routes.push_back({static_cast<std::int32_t>(so), static_cast<std::int32_t>(si)});
    }
    out.salvos.push_back(std::move(salvo));
  }
  return std::nullopt;
}

// ---- Router -------------------------------------------------------------

Router::Router(std::int32_t inputs, std::int32_t outputs) : state_(InitialState(inputs, outputs)) {}

json Router::Apply(const json& cmd, std::int64_t /*time_ns*/) { return Execute(cmd, false); }

json Router::Query(const json& query) { return Execute(query, true); }

std::string Router::CanonicalState() const { return CanonicalBytes(state_); }

std::string Router::Digest() const { return Hex16(Fnv1a64(CanonicalBytes(state_))); }

std::optional<std::string> Router::Restore(const json& value) {
  RouterState parsed;
  if (auto error = ParseState(value, parsed)) return error;
  state_ = std::move(parsed);  // only on full success
  return std::nullopt;
}

void Router::CorruptForTest() {
  // PROTOCOL.md §6: the route of output 0 becomes (route + 1) mod inputs.
  state_.routes[0] = (state_.routes[0] + 1) % state_.inputs;
}

json Router::Execute(const json& cmd, bool query_only) {
  // SPEC §4 steps 1-4.
  if (!cmd.is_object()) return BadRequest("command is not a JSON object");
  const auto op_it = cmd.find("op");
  if (op_it == cmd.end() || !op_it->is_string()) return BadRequest("'op' missing or not a string");
  const std::string& op = op_it->get_ref<const std::string&>();

  enum class Op { kRoute, kLabel, kLock, kSalvoDefine, kSalvoFire, kSalvoDelete, kDump, kUnknown };
  Op which = Op::kUnknown;
  if (op == "route") which = Op::kRoute;
  else if (op == "label") which = Op::kLabel;
  else if (op == "lock") which = Op::kLock;
  else if (op == "salvo_define") which = Op::kSalvoDefine;
  else if (op == "salvo_fire") which = Op::kSalvoFire;
  else if (op == "salvo_delete") which = Op::kSalvoDelete;
  else if (op == "dump") which = Op::kDump;

  if (which == Op::kUnknown) return Fail("unknown_op", "unknown op '" + op + "'");
  if (query_only && which != Op::kDump) {
    return Fail("not_a_query", "op '" + op + "' changes state and cannot be a query");
  }
  switch (which) {
    case Op::kRoute: return OpRoute(cmd);
    case Op::kLabel: return OpLabel(cmd);
    case Op::kLock: return OpLock(cmd);
    case Op::kSalvoDefine: return OpSalvoDefine(cmd);
    case Op::kSalvoFire: return OpSalvoFire(cmd);
    case Op::kSalvoDelete: return OpSalvoDelete(cmd);
    case Op::kDump: return OpDump(cmd);
    case Op::kUnknown: break;
  }
  return Fail("unknown_op", "unknown op");
}

// ---- route ----------------------------------------------------------------

json Router::OpRoute(const json& cmd) {
  // Shape pass.
  if (!HasExactly(cmd, {"op", "client", "routes"})) return BadRequest("route takes exactly op, client, routes");
  if (!IsClientId(cmd["client"])) return BadRequest("client must be 1 to 64 bytes without control characters");
  const json& routes = cmd["routes"];
  if (!IsList(routes)) return BadRequest("routes must be a list of 1 to 1024 entries");
  std::vector<Pair> entries;
  entries.reserve(routes.size());
  for (const json& e : routes) {
    Pair p{};
    if (!HasExactly(e, {"output", "input"})) return BadRequest("route entry takes exactly output, input");
    if (!AsInteger(e["output"], p.output)) return BadRequest("route output must be an integer");
    if (!AsInteger(e["input"], p.input)) return BadRequest("route input must be an integer");
    entries.push_back(p);
  }
  // Semantic pass and apply.
  return RouteSemanticAndApply(cmd["client"].get_ref<const std::string&>(), entries);
}

json Router::RouteSemanticAndApply(const std::string& client, const std::vector<Pair>& entries) {
  std::vector<std::uint8_t> seen(static_cast<std::size_t>(state_.outputs), 0);
  for (std::size_t k = 0; k < entries.size(); ++k) {
    const Pair& p = entries[k];
    if (!InRange(p.output, state_.outputs)) {
      return Fail("out_of_range", "output " + std::to_string(p.output) + " out of range");
    }
    if (!InRange(p.input, state_.inputs)) {
      return Fail("out_of_range", "input " + std::to_string(p.input) + " out of range");
    }
    const auto o = static_cast<std::size_t>(p.output);
    if (seen[o]) return Fail("duplicate", "output " + std::to_string(o) + " listed twice");
    seen[o] = 1;
    const auto& owner = state_.owners[o];
    if (owner && *owner != client) {
      return Fail("locked", "output " + std::to_string(o) + " is locked by '" + *owner + "'");
    }
  }
  // Apply: collect the actual changes, sorted by output.
  std::vector<Pair> changed;
  for (const Pair& p : entries) {
    const auto o = static_cast<std::size_t>(p.output);
    const auto in = static_cast<std::int32_t>(p.input);
    if (state_.routes[o] != in) {
      state_.routes[o] = in;
      changed.push_back(p);
    }
  }
  std::sort(changed.begin(), changed.end(), [](const Pair& a, const Pair& b) { return a.output < b.output; });
  json list = json::array();
  for (const Pair& p : changed) list.push_back(RoutePairJson(p.output, p.input));
  json r = json::object();
  r["ok"] = true;
  r["changed"] = std::move(list);
  return r;
}

// ---- label ----------------------------------------------------------------

json Router::OpLabel(const json& cmd) {
  // Shape pass.
  if (!HasExactly(cmd, {"op", "client", "kind", "labels"})) {
    return BadRequest("label takes exactly op, client, kind, labels");
  }
  if (!IsClientId(cmd["client"])) return BadRequest("client must be 1 to 64 bytes without control characters");
  const json& kind_v = cmd["kind"];
  if (!kind_v.is_string()) return BadRequest("kind must be \"input\" or \"output\"");
  const std::string& kind = kind_v.get_ref<const std::string&>();
  if (kind != "input" && kind != "output") return BadRequest("kind must be \"input\" or \"output\"");
  const bool is_input = kind == "input";
  const json& labels = cmd["labels"];
  if (!IsList(labels)) return BadRequest("labels must be a list of 1 to 1024 entries");
  struct Entry {
    std::int64_t index;
    const std::string* text;
  };
  std::vector<Entry> entries;
  entries.reserve(labels.size());
  for (const json& e : labels) {
    Entry en{0, nullptr};
    if (!HasExactly(e, {"index", "text"})) return BadRequest("label entry takes exactly index, text");
    if (!AsInteger(e["index"], en.index)) return BadRequest("label index must be an integer");
    if (!e["text"].is_string()) return BadRequest("label text must be a string");
    en.text = &e["text"].get_ref<const std::string&>();
    entries.push_back(en);
  }
  // Semantic pass.
  std::vector<std::string>& target = is_input ? state_.input_labels : state_.output_labels;
  const std::int32_t limit = is_input ? state_.inputs : state_.outputs;
  std::vector<std::uint8_t> seen(static_cast<std::size_t>(limit), 0);
  for (const Entry& en : entries) {
    if (!InRange(en.index, limit)) {
      return Fail("out_of_range", kind + " index " + std::to_string(en.index) + " out of range");
    }
    const auto i = static_cast<std::size_t>(en.index);
    if (seen[i]) return Fail("duplicate", kind + " index " + std::to_string(i) + " listed twice");
    seen[i] = 1;
    if (en.text->size() > kMaxLabelBytes) {
      return Fail("label_too_long", "label for index " + std::to_string(i) + " is longer than 64 bytes");
    }
    if (HasControl(*en.text)) {
      return Fail("bad_label", "label for index " + std::to_string(i) + " contains a control character");
    }
  }
  // Apply.
  std::vector<const Entry*> changed;
  for (const Entry& en : entries) {
    std::string& cur = target[static_cast<std::size_t>(en.index)];
    if (cur != *en.text) {
      cur = *en.text;
      changed.push_back(&en);
    }
  }
  std::sort(changed.begin(), changed.end(), [](const Entry* a, const Entry* b) { return a->index < b->index; });
  json list = json::array();
  for (const Entry* en : changed) {
    json item = json::object();
    item["index"] = en->index;
    item["text"] = *en->text;
    list.push_back(std::move(item));
  }
  json r = json::object();
  r["ok"] = true;
  r["kind"] = kind;
  r["changed"] = std::move(list);
  return r;
}

// ---- lock -----------------------------------------------------------------

json Router::OpLock(const json& cmd) {
  // Shape pass.
  if (!HasExactly(cmd, {"op", "client", "locks"})) return BadRequest("lock takes exactly op, client, locks");
  if (!IsClientId(cmd["client"])) return BadRequest("client must be 1 to 64 bytes without control characters");
  const json& locks = cmd["locks"];
  if (!IsList(locks)) return BadRequest("locks must be a list of 1 to 1024 entries");
  struct Entry {
    std::int64_t output;
    char action;
  };
  std::vector<Entry> entries;
  entries.reserve(locks.size());
  for (const json& e : locks) {
    Entry en{0, 0};
    if (!HasExactly(e, {"output", "action"})) return BadRequest("lock entry takes exactly output, action");
    if (!AsInteger(e["output"], en.output)) return BadRequest("lock output must be an integer");
    const json& a = e["action"];
    if (!a.is_string()) return BadRequest("lock action must be \"O\", \"U\" or \"F\"");
    const std::string& as = a.get_ref<const std::string&>();
    if (as != "O" && as != "U" && as != "F") return BadRequest("lock action must be \"O\", \"U\" or \"F\"");
    en.action = as[0];
    entries.push_back(en);
  }
  // Semantic pass.
  const std::string& client = cmd["client"].get_ref<const std::string&>();
  std::vector<std::uint8_t> seen(static_cast<std::size_t>(state_.outputs), 0);
  for (const Entry& en : entries) {
    if (!InRange(en.output, state_.outputs)) {
      return Fail("out_of_range", "output " + std::to_string(en.output) + " out of range");
    }
    const auto o = static_cast<std::size_t>(en.output);
    if (seen[o]) return Fail("duplicate", "output " + std::to_string(o) + " listed twice");
    seen[o] = 1;
    const auto& owner = state_.owners[o];
    const bool by_other = owner && *owner != client;
    if (by_other && en.action != 'F') {
      return Fail("locked", "output " + std::to_string(o) + " is locked by '" + *owner + "'");
    }
  }
  // Apply.
  std::vector<const Entry*> changed;
  for (const Entry& en : entries) {
    auto& owner = state_.owners[static_cast<std::size_t>(en.output)];
    if (en.action == 'O') {
      if (!owner) {
        owner = client;
        changed.push_back(&en);
      }
    } else {  // 'U' (own or unlocked, checked above) or 'F'
      if (owner) {
        owner.reset();
        changed.push_back(&en);
      }
    }
  }
  std::sort(changed.begin(), changed.end(), [](const Entry* a, const Entry* b) { return a->output < b->output; });
  json list = json::array();
  for (const Entry* en : changed) {
    const auto& owner = state_.owners[static_cast<std::size_t>(en->output)];
    json item = json::object();
    item["output"] = en->output;
    item["owner"] = owner ? json(*owner) : json(nullptr);
    list.push_back(std::move(item));
  }
  json r = json::object();
  r["ok"] = true;
  r["changed"] = std::move(list);
  return r;
}

// ---- salvos -----------------------------------------------------------------

std::ptrdiff_t Router::FindSalvo(const std::string& name) const {
  const auto it = std::lower_bound(state_.salvos.begin(), state_.salvos.end(), name,
                                   [](const Salvo& s, const std::string& n) { return NameLess(s.name, n); });
  if (it == state_.salvos.end() || it->name != name) return -1;
  return it - state_.salvos.begin();
}

json Router::OpSalvoDefine(const json& cmd) {
  // Shape pass.
  if (!HasExactly(cmd, {"op", "client", "name", "routes"})) {
    return BadRequest("salvo_define takes exactly op, client, name, routes");
  }
  if (!IsClientId(cmd["client"])) return BadRequest("client must be 1 to 64 bytes without control characters");
  if (!IsSalvoName(cmd["name"])) return BadRequest("name must be 1 to 32 bytes without control characters");
  const json& routes = cmd["routes"];
  if (!IsList(routes)) return BadRequest("routes must be a list of 1 to 1024 entries");
  std::vector<Pair> entries;
  entries.reserve(routes.size());
  for (const json& e : routes) {
    Pair p{};
    if (!HasExactly(e, {"output", "input"})) return BadRequest("route entry takes exactly output, input");
    if (!AsInteger(e["output"], p.output)) return BadRequest("route output must be an integer");
    if (!AsInteger(e["input"], p.input)) return BadRequest("route input must be an integer");
    entries.push_back(p);
  }
  // Semantic pass: range and duplicates per entry (no locks), then the limit.
  std::vector<std::uint8_t> seen(static_cast<std::size_t>(state_.outputs), 0);
  for (const Pair& p : entries) {
    if (!InRange(p.output, state_.outputs)) {
      return Fail("out_of_range", "output " + std::to_string(p.output) + " out of range");
    }
    if (!InRange(p.input, state_.inputs)) {
      return Fail("out_of_range", "input " + std::to_string(p.input) + " out of range");
    }
    const auto o = static_cast<std::size_t>(p.output);
    if (seen[o]) return Fail("duplicate", "output " + std::to_string(o) + " listed twice");
    seen[o] = 1;
  }
  const std::string& name = cmd["name"].get_ref<const std::string&>();
  const std::ptrdiff_t existing = FindSalvo(name);
  if (existing < 0 && state_.salvos.size() >= kMaxSalvos) return Fail("full", "64 salvos exist already");
  // Apply.
  Salvo salvo;
  salvo.name = name;
  salvo.routes.reserve(entries.size());
  for (const Pair& p : entries) {
    salvo.routes.push_back({static_cast<std::int32_t>(p.output), static_cast<std::int32_t>(p.input)});
  }
  std::sort(salvo.routes.begin(), salvo.routes.end(),
            [](const SalvoRoute& a, const SalvoRoute& b) { return a.output < b.output; });
  if (existing >= 0) {
    state_.salvos[static_cast<std::size_t>(existing)] = std::move(salvo);
  } else {
    const auto pos = std::lower_bound(state_.salvos.begin(), state_.salvos.end(), name,
                                      [](const Salvo& s, const std::string& n) { return NameLess(s.name, n); });
    state_.salvos.insert(pos, std::move(salvo));
  }
  json r = json::object();
  r["ok"] = true;
  r["name"] = name;
  r["size"] = entries.size();
  return r;
}

json Router::OpSalvoFire(const json& cmd) {
  // Shape pass.
  if (!HasExactly(cmd, {"op", "client", "name"})) return BadRequest("salvo_fire takes exactly op, client, name");
  if (!IsClientId(cmd["client"])) return BadRequest("client must be 1 to 64 bytes without control characters");
  if (!IsSalvoName(cmd["name"])) return BadRequest("name must be 1 to 32 bytes without control characters");
  // Semantic pass.
  const std::string& name = cmd["name"].get_ref<const std::string&>();
  const std::ptrdiff_t k = FindSalvo(name);
  if (k < 0) return Fail("not_found", "no salvo named '" + name + "'");
  const Salvo& salvo = state_.salvos[static_cast<std::size_t>(k)];
  std::vector<Pair> entries;
  entries.reserve(salvo.routes.size());
  for (const SalvoRoute& sr : salvo.routes) entries.push_back({sr.output, sr.input});
  return RouteSemanticAndApply(cmd["client"].get_ref<const std::string&>(), entries);
}

json Router::OpSalvoDelete(const json& cmd) {
  // Shape pass.
  if (!HasExactly(cmd, {"op", "client", "name"})) return BadRequest("salvo_delete takes exactly op, client, name");
  if (!IsClientId(cmd["client"])) return BadRequest("client must be 1 to 64 bytes without control characters");
  if (!IsSalvoName(cmd["name"])) return BadRequest("name must be 1 to 32 bytes without control characters");
  // Semantic pass.
  const std::string& name = cmd["name"].get_ref<const std::string&>();
  const std::ptrdiff_t k = FindSalvo(name);
  if (k < 0) return Fail("not_found", "no salvo named '" + name + "'");
  // Apply.
  json r = json::object();
  r["ok"] = true;
  r["name"] = name;
  state_.salvos.erase(state_.salvos.begin() + k);
  return r;
}

// ---- dump -------------------------------------------------------------------

json Router::OpDump(const json& cmd) const {
  if (!HasExactly(cmd, {"op"})) return BadRequest("dump takes no member but op");
  json r = json::object();
  r["ok"] = true;
  r["state"] = StateJson();
  return r;
}

json Router::StateJson() const {
  const RouterState& s = state_;
  json routes = json::array();
  routes.get_ref<json::array_t&>().reserve(s.routes.size());
  for (std::int32_t v : s.routes) routes.push_back(v);
  json locks = json::array();
  locks.get_ref<json::array_t&>().reserve(s.owners.size());
  for (const auto& o : s.owners) locks.push_back(o ? json(*o) : json(nullptr));
  json salvos = json::array();
  for (const Salvo& sv : s.salvos) {
    json list = json::array();
    list.get_ref<json::array_t&>().reserve(sv.routes.size());
    for (const SalvoRoute& r : sv.routes) list.push_back(RoutePairJson(r.output, r.input));
    json item = json::object();
    item["name"] = sv.name;
    item["routes"] = std::move(list);
    salvos.push_back(std::move(item));
  }
  json st = json::object();
  st["inputs"] = s.inputs;
  st["outputs"] = s.outputs;
  st["routes"] = std::move(routes);
  st["input_labels"] = s.input_labels;
  st["output_labels"] = s.output_labels;
  st["locks"] = std::move(locks);
  st["salvos"] = std::move(salvos);
  return st;
}

}  // namespace router_a
