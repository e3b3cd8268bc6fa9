// What the variants send, and each variant's deadlines (ARCHITECTURE.md §3).
#include "impl.h"

namespace nvs::supervisor {

// Reads what the variants sent, at most `max` messages; true when it
// emptied the socket.
bool Supervisor::Impl::DrainVariantSocket(int max) {
  std::string identity;
  std::vector<std::string> parts;
  for (int taken = 0;; ++taken) {
    if (taken >= max) return false;
    if (!variant_transport->Receive(&identity, &parts)) return true;
    const std::string* known = IdentityOf(identity);
    if (known == nullptr) continue;
    const std::string& from = *known;
    if (spare && from == spare->identity) {
      OnSpareMessage(parts.size() == 1 ? std::string_view(parts[0]) : std::string_view());
      continue;
    }
    if (probe && from == probe->identity) {
      if (parts.size() == 1) {
        OnProbeMessage(std::string_view(parts[0]));
      } else {
        EndProbe(probe->phase == Probe::Phase::kApplying ? "failed" : "inconclusive", "sent a multi-part message");
      }
      continue;
    }
    if (retest && retest->retest->Owns(from)) {
      // (PumpRetest, later in the turn, sends what it asks for.)
      retest->retest->OnMessage(from, parts.size() == 1 ? std::string_view(parts[0]) : "multi-part", Now());
      continue;
    }
    auto it = by_identity.find(from);
    if (it == by_identity.end()) continue;
    Variant& v = variants[it->second];
    if (v.identity != from) {
      Log(LogLevel::kDebug, "stale_message", {{"identity", from}});
      continue;  // a late message from a dead incarnation
    }
    if (!Heard(v.life)) continue;  // (stopping, down, failed: what it says no longer counts)
    if (parts.size() != 1) {
      Kill(v, "sent a multi-part message", voter::OutcomeKind::kProtocolError, "multi-part message");
      continue;
    }
    OnVariantMessage(v, std::string_view(parts[0]));
  }
}

void Supervisor::Impl::OnVariantMessage(Variant& v, std::string_view bytes) {
  auto decoded = proto::DecodeReply(bytes);
  if (!decoded.ok()) {
    const std::string why = "sent garbage (" + decoded.error().reason + ")";
    Log(LogLevel::kWarn, "variant_protocol_error",
        {{"variant", v.config.name}, {"error", decoded.error().reason}, {"bytes", std::string(bytes.substr(0, 200))}});
    Kill(v, why, voter::OutcomeKind::kProtocolError, why);
    return;
  }
  const proto::Reply& reply = decoded.value();
  if (auto* hello = std::get_if<proto::Hello>(&reply)) {
    if (v.life == Life::kExited && hello->protocol == proto::kProtocolVersion) {
      // Sent before it died (its exit was seen first): what it said counts,
      // but it is gone; its death is judged as any other.
      Log(LogLevel::kDebug, "hello_after_exit", {{"variant", v.config.name}, {"impl", hello->impl}});
      return;
    }
    if (v.life != Life::kStarting || hello->protocol != proto::kProtocolVersion) {
      Kill(v, "unexpected hello (protocol " + std::to_string(hello->protocol) + ")",
           voter::OutcomeKind::kProtocolError, "unexpected hello");
      return;
    }
    // It presents its secret: hello's `variant` is its NVS_VARIANT
    // (PROTOCOL.md §2.1), routing id and token included.
    if (hello->variant != WireId(v.identity)) {
      Kill(v, "its hello names another variant than the one it was started as (NVS_VARIANT)",
           voter::OutcomeKind::kProtocolError, "hello with a wrong variant");
      return;
    }
    Log(LogLevel::kInfo, "hello", {{"variant", v.config.name}, {"impl", hello->impl}, {"incarnation", v.incarnation}});
    Transit(v, LifeEvent::kHello, "said hello (" + hello->impl + ")");
    return;
  }
  if (v.channel.head() == nullptr) {
    Kill(v, "sent an unsolicited " + std::string(proto::TypeName(reply)), voter::OutcomeKind::kProtocolError,
         "unsolicited message");
    return;
  }
  const Sent sent = *v.channel.head();
  const auto seq = proto::SeqOf(reply);
  if (std::holds_alternative<proto::Error>(reply) && sent.purpose != Purpose::kRestore &&
      sent.purpose != Purpose::kCheckpointRestore) {
    const auto& e = std::get<proto::Error>(reply);
    Kill(v, "answered a protocol error: " + e.code + " (" + e.reason + ")", voter::OutcomeKind::kProtocolError,
         "protocol error " + e.code + ": " + e.reason);
    return;
  }
  if (!seq || *seq != sent.seq ||
      (proto::TypeName(reply) != sent.reply_type && !std::holds_alternative<proto::Error>(reply))) {
    Kill(v,
         "answered out of order: expected " + std::string(sent.reply_type) + " " + std::to_string(sent.seq) +
             ", got " + std::string(proto::TypeName(reply)) + (seq ? " " + std::to_string(*seq) : ""),
         voter::OutcomeKind::kProtocolError, "reply out of order");
    return;
  }
  OnAnswered(v);
  switch (sent.purpose) {
    case Purpose::kVote: {
      Command* c = FindActive(sent.command);
      if (c == nullptr) break;
      auto& outcome = c->outcomes[v.config.name];
      outcome.kind = voter::OutcomeKind::kReply;
      c->answered_ms[v.config.name] = MillisSince(c->dispatched_at, Now());
      outcome.result = std::holds_alternative<proto::Applied>(reply) ? std::get<proto::Applied>(reply).result
                                                                     : std::get<proto::Answer>(reply).result;
      // Equal replies are usually equal bytes (the codec normalises them):
      // compute the comparable form once per distinct reply.
      for (const auto& [name, other] : c->outcomes) {
        if (name != v.config.name && !other.comparable.empty() && other.result == outcome.result) {
          outcome.comparable = other.comparable;
          break;
        }
      }
      if (outcome.comparable.empty()) outcome.comparable = voter::ComparableForm(outcome.result, config.policy.ignored);
      OnLateOutcome(*c, v);
      break;
    }
    case Purpose::kCatchUp:
    case Purpose::kHeartbeat:
      break;
    case Purpose::kCheckpointRestore:
      if (const auto* e = std::get_if<proto::Error>(&reply)) {
        v.refused_checkpoint = "refused to restore it: " + e->code + " (" + e->reason + ")";
      } else if (checkpoint && std::get<proto::Restored>(reply).digest != checkpoint->digest) {
        v.refused_checkpoint = "restored it to digest " + std::get<proto::Restored>(reply).digest +
                               ", but the checkpoint says " + checkpoint->digest;
      }
      break;
    case Purpose::kRestore:
      if (auto* e = std::get_if<proto::Error>(&reply)) {
        Kill(v, "refused a restore: " + e->code + " (" + e->reason + ")", std::nullopt, "");
      } else {
        v.round_digest = std::get<proto::Restored>(reply).digest;
      }
      break;
    case Purpose::kRoundDigest:
      v.round_digest = std::get<proto::DigestReply>(reply).digest;
      break;
    case Purpose::kRoundSnapshot:
      OnRoundSnapshot(v, std::get<proto::StateReply>(reply));
      break;
    case Purpose::kProbeSnapshot:
      OnProbeSnapshot(sent.command, std::get<proto::StateReply>(reply));
      break;
    case Purpose::kCheckpointDigest:
      checkpointer.OnDigest(v.config.name, sent.seq, std::get<proto::DigestReply>(reply).digest);
      break;
    case Purpose::kCheckpointSnapshot:
      checkpointer.OnSnapshot(v.config.name, sent.seq, std::get<proto::StateReply>(reply).state,
                              std::get<proto::StateReply>(reply).digest);
      break;
  }
}

// A reply that arrives after its command was decided is still compared.
void Supervisor::Impl::OnLateOutcome(Command& c, Variant& v) {
  if (!c.verdict || c.verdict->kind != voter::VerdictKind::kCommit || c.expired) return;
  const auto& outcome = c.outcomes[v.config.name];
  const auto& winner = CountedOutcome(c, c.verdict->agreeing.front());
  if (outcome.comparable == winner.comparable) return;
  MarkDivergent(c, v, outcome.result);
}

void Supervisor::Impl::MarkDivergent(const Command& c, Variant& v, const std::string& got) {
  // (Once per incarnation: one already diverged, or being stopped or gone,
  // is restarted anyway; the verdict's `dissenting` names it all the same.)
  if (v.life == Life::kDiverged || v.life == Life::kStopping || v.life == Life::kDown || v.life == Life::kFailed) {
    return;
  }
  const std::string why = "diverged on " + (c.is_query ? std::string("a query") : "seq " + std::to_string(c.seq));
  ++metric_counters.divergences[v.config.name];
  Log(LogLevel::kWarn, "divergence",
      {{"variant", v.config.name}, {"seq", c.seq}, {"expected", ParseOrString(c.verdict->result)},
       {"got", ParseOrString(got)}});
  // (The event carries no result values: only their fingerprints, to tell
  // answers apart. The values are in the log.)
  Publish("divergence", {{"seq", c.seq},
                         {"variant", v.config.name},
                         {"expected_fingerprint", proto::Fnv1a64Hex(c.verdict->result)},
                         {"got_fingerprint", proto::Fnv1a64Hex(got)}});
  v.last_fault = why;
  v.stop_reason = why;
  Transit(v, LifeEvent::kDiverged, why);  // restarted once what is out at it is answered
}

milliseconds Supervisor::Impl::DeadlineFor(Purpose purpose) const {
  switch (purpose) {
    case Purpose::kVote: return milliseconds(config.deadline_ms);
    case Purpose::kHeartbeat: return milliseconds(config.heartbeat_timeout_ms);
    // A periodic checkpoint's digest is asked of healthy variants in the
    // pipeline and costs about what a command does: a variant stopped just
    // after it was asked is caught within the command deadline, not the
    // (much longer) sync deadline (found by the chaos campaign: a SIGSTOP
    // went unnoticed for the sync deadline). The snapshot, which can be
    // large, keeps the sync deadline.
    case Purpose::kCheckpointDigest: return milliseconds(config.deadline_ms);
    default: return milliseconds(config.sync_deadline_ms);
  }
}

// The undecided command that waits for `v`'s vote while `v` works on a
// request that is not a command, or nullptr. Such a request may have a
// long deadline (a checkpoint snapshot has the sync deadline), but the
// command does not wait past the command deadline for it: the chaos
// campaign found a donor stopped right after a checkpoint's snapshot
// request stall the service for the whole stop, as the command needed its
// vote (the other two disagreed).
const Command* Supervisor::Impl::WaitingBehind(const Variant& v) const {
  if (active.empty() || active.back().verdict || v.channel.head() == nullptr ||
      v.channel.head()->purpose == Purpose::kVote) {
    return nullptr;  // (one undecided command at a time: the newest)
  }
  const Command& c = active.back();
  const auto it = c.outcomes.find(v.config.name);
  return it != c.outcomes.end() && it->second.kind == voter::OutcomeKind::kPending ? &c : nullptr;
}

Clock::time_point Supervisor::Impl::VoteDeadline(const Variant& v, const Command& c) const {
  return std::max(c.dispatched_at, v.channel.last_reply_at()) + milliseconds(config.deadline_ms);
}

// Its oldest request's reply is due (from its sending, or the last reply).
std::optional<Clock::time_point> Supervisor::Impl::ReplyDue(const Variant& v) const {
  const Sent* head = v.channel.head();
  if (head == nullptr) return std::nullopt;
  return std::max(head->sent_at, v.channel.last_reply_at()) + DeadlineFor(head->purpose);
}

// A command waits behind a request that is not a command: the command's
// deadline applies to that request.
std::optional<Clock::time_point> Supervisor::Impl::BehindDue(const Variant& v) const {
  const Command* c = WaitingBehind(v);
  if (c == nullptr) return std::nullopt;
  return VoteDeadline(v, *c);
}

// Starting, or syncing with no round, for too long. (Syncing with no
// round because the checkpoint is refused is not the variant's fault: a
// restart would not help, so it waits for a person.)
std::optional<Clock::time_point> Supervisor::Impl::ProgressDue(const Variant& v) const {
  if (v.life == Life::kStarting || (v.life == Life::kSyncing && !round && !checkpoint_problem)) {
    return v.state_since + milliseconds(config.sync_deadline_ms);
  }
  return std::nullopt;
}

// Killed on purpose and not gone: SIGKILL to its whole group.
std::optional<Clock::time_point> Supervisor::Impl::StopDue(const Variant& v) const {
  if (v.life != Life::kStopping) return std::nullopt;
  return v.state_since + milliseconds(config.stop_grace_ms + 1000);
}

// Idle: a ping is due.
std::optional<Clock::time_point> Supervisor::Impl::PingDue(const Variant& v) const {
  if (!Answers(v.life) || v.channel.head() != nullptr) {
    return std::nullopt;
  }
  return v.channel.last_sent_at() + milliseconds(config.heartbeat_interval_ms);
}

}  // namespace nvs::supervisor
