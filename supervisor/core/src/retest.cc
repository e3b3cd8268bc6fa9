#include "nvs/core/retest.h"

#include <algorithm>

#include "nvs/protocol/messages.h"

namespace nvs::supervisor {

namespace proto = nvs::protocol;

Retest::Retest(const std::vector<std::string>& variants, Command command, PreState pre_state, Deadlines deadlines,
               Clock::time_point now, int first_number)
    : Retest(variants, std::vector<Command>{std::move(command)}, std::move(pre_state), deadlines, now, first_number) {}

Retest::Retest(const std::vector<std::string>& variants, std::vector<Command> commands, PreState pre_state,
               Deadlines deadlines, Clock::time_point now, int first_number)
    : commands_(std::move(commands)), pre_state_(std::move(pre_state)), deadlines_(deadlines), started_(now) {
  for (const auto& name : variants) {
    Probe p;
    p.variant = name;
    p.identity = "retest." + std::to_string(first_number++);
    p.phase_since = now;
    p.outcomes.assign(commands_.size(), voter::Outcome{name, voter::OutcomeKind::kPending, "", "", ""});
    probes_.push_back(std::move(p));
  }
}

std::vector<Retest::ProbeInfo> Retest::probes() const {
  std::vector<ProbeInfo> out;
  for (const auto& p : probes_) out.push_back({p.variant, p.identity});
  return out;
}

Retest::Probe* Retest::Find(const std::string& identity) {
  for (auto& p : probes_) {
    if (p.identity == identity) return &p;
  }
  return nullptr;
}

bool Retest::Owns(const std::string& identity) const {
  return std::any_of(probes_.begin(), probes_.end(), [&](const Probe& p) { return p.identity == identity; });
}

std::size_t Retest::PrepareReplies() const { return (pre_state_.checkpoint ? 1 : 0) + pre_state_.tail.size(); }

void Retest::OnSpawnFailed(const std::string& identity, const std::string& why, Clock::time_point now) {
  Probe* p = Find(identity);
  if (p != nullptr && p->phase != Phase::kDone) Inconclusive(*p, "could not start: " + why, now);
}

void Retest::SendPreState(Probe& p) {
  // Pipelined: a variant answers in order, so the replies say how far it got.
  if (pre_state_.checkpoint) {
    outgoing_.emplace_back(p.identity,
                           proto::Encode(proto::Request(proto::Restore{pre_state_.checkpoint->seq, pre_state_.checkpoint->state})));
  }
  for (const auto& e : pre_state_.tail) {
    outgoing_.emplace_back(p.identity, proto::Encode(proto::Request(proto::Apply{e.seq, e.time_ns, e.payload})));
  }
}

// Only once every reply to the pre-state is in: a process that answers and
// dies on the next request at once can take its last answer with it (the
// reply still in its ZeroMQ I/O thread), and a death then could not be told
// from a death before the command. So the command is the only request it
// has when it runs it.
// (The next command of several likewise: only once the one before it is
// answered.)
void Retest::SendCommand(Probe& p, Clock::time_point now) {
  p.phase = Phase::kCommand;  // the command's deadline counts from here
  p.phase_since = now;
  const Command& c = commands_[p.at];
  if (c.is_query) {
    outgoing_.emplace_back(p.identity, proto::Encode(proto::Request(proto::Query{c.seq, c.payload})));
  } else {
    outgoing_.emplace_back(p.identity, proto::Encode(proto::Request(proto::Apply{c.seq, c.time_ns, c.payload})));
  }
}

void Retest::OnMessage(const std::string& identity, std::string_view bytes, Clock::time_point now) {
  Probe* p = Find(identity);
  if (p == nullptr || p->phase == Phase::kDone) return;
  if (p->phase == Phase::kStarting) {
    auto decoded = proto::DecodeReply(bytes);
    if (!decoded.ok() || !std::holds_alternative<proto::Hello>(decoded.value()) ||
        std::get<proto::Hello>(decoded.value()).protocol != proto::kProtocolVersion) {
      Inconclusive(*p, "did not start with a hello of protocol " + std::to_string(proto::kProtocolVersion), now);
      return;
    }
    SendPreState(*p);
    p->phase = Phase::kPreparing;
    p->phase_since = now;
    if (PrepareReplies() == 0) SendCommand(*p, now);
    return;
  }
  OnReplyTo(*p, bytes, now);
}

void Retest::OnReplyTo(Probe& p, std::string_view bytes, Clock::time_point now) {
  auto decoded = proto::DecodeReply(bytes);
  const bool on_command = p.phase == Phase::kCommand;
  if (!decoded.ok()) {
    const std::string why = "sent garbage (" + decoded.error().reason + ")";
    if (on_command) {
      Finish(p, voter::OutcomeKind::kProtocolError, why, now);
    } else {
      Inconclusive(p, why + " while it was restored to the state before the command", now);
    }
    return;
  }
  const proto::Reply& reply = decoded.value();
  const std::size_t index = p.replies++;
  if (!on_command) {
    const bool restore = pre_state_.checkpoint && index == 0;
    if (restore) {
      const auto* restored = std::get_if<proto::Restored>(&reply);
      if (restored == nullptr) {
        Inconclusive(p, "answered its restore with " + std::string(proto::TypeName(reply)), now);
        return;
      }
      if (restored->digest != pre_state_.checkpoint->digest) {
        Inconclusive(p, "restored digest " + restored->digest + " differs from the checkpoint's " +
                            pre_state_.checkpoint->digest, now);
        return;
      }
    } else if (!std::holds_alternative<proto::Applied>(reply)) {
      Inconclusive(p, "answered a committed command with " + std::string(proto::TypeName(reply)) +
                          " while it was brought to the state before the command", now);
      return;
    }
    if (p.replies == PrepareReplies()) SendCommand(p, now);
    return;
  }
  const auto seq = proto::SeqOf(reply);
  const Command& c = commands_[p.at];
  const std::string* result = nullptr;
  if (const auto* applied = std::get_if<proto::Applied>(&reply); applied != nullptr && !c.is_query && seq == c.seq) {
    result = &applied->result;
  } else if (const auto* answer = std::get_if<proto::Answer>(&reply); answer != nullptr && c.is_query && seq == c.seq) {
    result = &answer->result;
  }
  if (result != nullptr && p.at + 1 < commands_.size()) {
    p.outcomes[p.at] = voter::Outcome{p.variant, voter::OutcomeKind::kReply, *result, "answered", ""};
    ++p.at;
    SendCommand(p, now);
  } else if (result != nullptr) {
    Finish(p, voter::OutcomeKind::kReply, "answered", now, *result);
  } else if (const auto* error = std::get_if<proto::Error>(&reply)) {
    Finish(p, voter::OutcomeKind::kProtocolError, "protocol error " + error->code + ": " + error->reason, now);
  } else {
    Finish(p, voter::OutcomeKind::kProtocolError, "answered the command with " + std::string(proto::TypeName(reply)),
           now);
  }
}

void Retest::OnExit(const std::string& identity, const std::string& how, Clock::time_point now) {
  Probe* p = Find(identity);
  if (p == nullptr || p->phase == Phase::kDone) return;
  if (p->phase == Phase::kCommand) {
    Finish(*p, voter::OutcomeKind::kCrashed, how, now);
  } else {
    Inconclusive(*p, "died before it could run the command: " + how, now);
  }
}

void Retest::OnTime(Clock::time_point now) {
  for (auto& p : probes_) {
    if (p.phase == Phase::kDone) continue;
    if (p.phase == Phase::kCommand) {
      if (now >= p.phase_since + deadlines_.command) {
        Finish(p, voter::OutcomeKind::kHung, "no reply within " + std::to_string(deadlines_.command.count()) + " ms",
               now);
      }
    } else if (now >= started_ + deadlines_.prepare) {
      Inconclusive(p, std::string(p.phase == Phase::kStarting ? "no hello" : "not restored to the state before it") +
                          " within " + std::to_string(deadlines_.prepare.count()) + " ms", now);
    }
  }
}

// The outcome of the command it runs (or, before any, of every command),
// and of each after it: never run.
void Retest::Finish(Probe& p, voter::OutcomeKind kind, std::string detail, Clock::time_point now, std::string result) {
  const bool before_any = p.phase != Phase::kCommand;
  for (std::size_t i = p.at + 1; i < p.outcomes.size(); ++i) {
    p.outcomes[i].kind = voter::OutcomeKind::kExcluded;
    p.outcomes[i].detail = before_any ? detail
                                      : "inconclusive: its probe " +
                                            std::string(kind == voter::OutcomeKind::kProtocolError ? "erred"
                                                                                                   : voter::ToString(kind)) +
                                            " on seq " +
                                            std::to_string(commands_[p.at].seq) + ", before it";
  }
  voter::Outcome& o = p.outcomes[p.at];
  o.kind = kind;
  o.detail = std::move(detail);
  o.result = std::move(result);
  p.after_ms = std::chrono::duration<double, std::milli>(now - started_).count();
  p.phase = Phase::kDone;
  kills_.push_back(p.identity);
}

void Retest::Inconclusive(Probe& p, const std::string& why, Clock::time_point now) {
  Finish(p, voter::OutcomeKind::kExcluded, "inconclusive: " + why, now);
}

std::vector<std::pair<std::string, std::string>> Retest::TakeOutgoing() { return std::exchange(outgoing_, {}); }
std::vector<std::string> Retest::TakeKills() { return std::exchange(kills_, {}); }

bool Retest::done() const {
  return std::all_of(probes_.begin(), probes_.end(), [](const Probe& p) { return p.phase == Phase::kDone; });
}

Retest::Clock::time_point Retest::NextDeadline() const {
  auto next = Clock::time_point::max();
  for (const auto& p : probes_) {
    if (p.phase == Phase::kDone) continue;
    next = std::min(next, p.phase == Phase::kCommand ? p.phase_since + deadlines_.command : started_ + deadlines_.prepare);
  }
  return next;
}

std::vector<voter::Outcome> Retest::Outcomes(std::size_t i) const {
  std::vector<voter::Outcome> out;
  for (const auto& p : probes_) out.push_back(p.outcomes.at(i));
  return out;
}

bool Retest::Conclusive(const std::string& variant, std::size_t i) const {
  for (const auto& p : probes_) {
    if (p.variant == variant) {
      return p.phase == Phase::kDone && p.outcomes.at(i).kind != voter::OutcomeKind::kExcluded &&
             p.outcomes.at(i).kind != voter::OutcomeKind::kPending;
    }
  }
  return false;
}

nlohmann::json Retest::Describe(std::size_t i) const {
  nlohmann::json probes = nlohmann::json::array();
  for (const auto& p : probes_) {
    const voter::Outcome& o = p.outcomes.at(i);
    nlohmann::json entry = {{"variant", p.variant},
                            {"probe", p.identity},
                            {"outcome", o.kind == voter::OutcomeKind::kPending    ? std::string("pending")
                                        : o.kind == voter::OutcomeKind::kExcluded ? std::string("inconclusive")
                                                                                  : std::string(voter::ToString(o.kind))},
                            {"detail", o.detail},
                            {"after_ms", p.after_ms}};
    if (o.kind == voter::OutcomeKind::kReply) {
      nlohmann::json result = nlohmann::json::parse(o.result, nullptr, false);
      entry["result"] = result.is_discarded() ? nlohmann::json(o.result) : result;
    }
    probes.push_back(std::move(entry));
  }
  return {{"seq", commands_.at(i).seq},
          {"pre_state", {{"checkpoint_seq", pre_state_.checkpoint ? pre_state_.checkpoint->seq : 0},
                         {"tail", pre_state_.tail.size()}}},
          {"probes", probes}};
}

}  // namespace nvs::supervisor
