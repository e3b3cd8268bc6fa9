#include "sim_variant.h"

#include <nlohmann/json.hpp>
#include <utility>
#include <variant>

#include "nvs/protocol/client_messages.h"
#include "nvs/protocol/messages.h"

namespace nvs::simulation {
namespace proto = nvs::protocol;
using nlohmann::json;

SimVariant::SimVariant(std::string name, std::size_t slots, std::set<std::string> faulty_for)
    : name_(std::move(name)), faulty_for_(std::move(faulty_for)), slots_(slots, 0) {}

std::string SimVariant::Hello(const std::string& nvs_variant) const {
  return proto::Encode(proto::Reply{proto::Hello{proto::kProtocolVersion, nvs_variant, "sim " + name_}});
}

std::string SimVariant::StateOf(const std::vector<std::int64_t>& slots) { return json{{"slots", slots}}.dump(); }

std::string SimVariant::State() const { return StateOf(slots_); }

std::string SimVariant::Digest() const { return proto::Fnv1a64Hex(State()); }

std::string SimVariant::Apply(std::vector<std::int64_t>& slots, const std::string& cmd) {
  const json c = json::parse(cmd, nullptr, false);
  const auto fail = [](const char* code) { return json{{"ok", false}, {"error", code}}.dump(); };
  if (!c.is_object() || !c.contains("op") || !c["op"].is_string()) return fail("bad_request");
  const std::string op = c["op"];
  if (!c.contains("slot") || !c["slot"].is_number_integer()) return fail("bad_request");
  const auto slot = c["slot"].get<std::int64_t>();
  if (slot < 0 || static_cast<std::size_t>(slot) >= slots.size()) return fail("range");
  auto& value = slots[static_cast<std::size_t>(slot)];
  if (op == "get") return json{{"ok", true}, {"value", value}}.dump();
  if (!c.contains("value") || !c["value"].is_number_integer()) return fail("bad_request");
  const auto v = c["value"].get<std::int64_t>();
  if (op == "set") {
    value = v;
  } else if (op == "add") {
    value += v;
  } else {
    return fail("bad_request");
  }
  return json{{"ok", true}, {"slot", slot}, {"value", value}}.dump();
}

SimVariant::Outcome SimVariant::Receive(const std::string& bytes) {
  Outcome out;
  if (dead_ || hung_) {
    out.died = dead_;
    out.hangs = hung_;
    return out;
  }
  const auto decoded = proto::DecodeRequest(bytes);
  if (!decoded.ok()) {
    out.replies.push_back(proto::Encode(proto::Reply{decoded.error()}));
    return out;
  }
  const proto::Request& request = decoded.value();
  if (const auto* apply = std::get_if<proto::Apply>(&request)) {
    const json c = json::parse(apply->cmd, nullptr, false);
    const std::string fault = c.is_object() && c.contains("fault") && c["fault"].is_string() ? c["fault"].get<std::string>() : "";
    // The marker's kind is what comes before a ':' ("crash:router-a", "crash:all").
    const bool faulty = !fault.empty() && faulty_for_.count(fault) != 0;
    const std::string kind = fault.substr(0, fault.find(':'));
    if (faulty && kind == "crash") {
      dead_ = out.died = true;
      return out;
    }
    if (faulty && kind == "hang") {
      hung_ = out.hangs = true;
      return out;
    }
    std::string result = Apply(slots_, apply->cmd);
    if (faulty && kind == "wrong") result = json{{"ok", true}, {"wrong", name_}}.dump();
    if (faulty && kind == "corrupt" && !slots_.empty()) slots_.back() += 1000;
    if (faulty && kind == "drop") {
      dead_ = out.died = true;
      return out;
    }
    out.replies.push_back(proto::Encode(proto::Reply{proto::Applied{apply->seq, result}}));
  } else if (const auto* query = std::get_if<proto::Query>(&request)) {
    std::vector<std::int64_t> copy = slots_;
    out.replies.push_back(proto::Encode(proto::Reply{proto::Answer{query->seq, Apply(copy, query->query)}}));
  } else if (const auto* digest = std::get_if<proto::DigestRequest>(&request)) {
    out.replies.push_back(proto::Encode(proto::Reply{proto::DigestReply{digest->seq, Digest()}}));
  } else if (const auto* snapshot = std::get_if<proto::SnapshotRequest>(&request)) {
    out.replies.push_back(proto::Encode(proto::Reply{proto::StateReply{snapshot->seq, State(), Digest()}}));
  } else if (const auto* restore = std::get_if<proto::Restore>(&request)) {
    const json s = json::parse(restore->state, nullptr, false);
    if (!s.is_object() || !s.contains("slots") || !s["slots"].is_array() || s["slots"].size() != slots_.size()) {
      out.replies.push_back(proto::Encode(proto::Reply{proto::Error{restore->seq, std::string(proto::error_code::kBadState),
                                                                    "not a state of this model"}}));
      return out;
    }
    for (std::size_t i = 0; i < slots_.size(); ++i) slots_[i] = s["slots"][i].get<std::int64_t>();
    out.replies.push_back(proto::Encode(proto::Reply{proto::Restored{restore->seq, Digest()}}));
  } else if (const auto* ping = std::get_if<proto::Ping>(&request)) {
    out.replies.push_back(proto::Encode(proto::Reply{proto::Pong{ping->seq}}));
  }
  return out;
}

}  // namespace nvs::simulation
