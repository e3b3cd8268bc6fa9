// The pipeline: dispatch, the verdict, and what follows a commit
// (ARCHITECTURE.md §3, §4).
#include "impl.h"

namespace nvs::supervisor {

bool Supervisor::Impl::RoundNeeded() const {
  if (checkpoint_problem) return false;  // (nothing a round can do: a person must)
  if (!checkpoint) return true;
  // A report quarantined outside the pipeline (a suspect at recovery)
  // still needs the snapshot of the state before its command.
  if (!reports_awaiting_pre_state.empty()) return true;
  for (const auto& v : variants) {
    if (WantsRound(v.life)) return true;
  }
  return false;
}

bool Supervisor::Impl::Quiescent() const {
  if (checkpointer.pending()) return false;
  for (const auto& c : active) {
    if (!c.verdict) return false;
  }
  for (const auto& v : variants) {
    if (!Answers(v.life) && v.life != Life::kExited) continue;
    for (const auto& sent : v.channel.out()) {
      if (sent.purpose != Purpose::kHeartbeat) return false;  // replies are FIFO: a ping in flight is harmless
    }
    if (v.channel.waiting()) return false;
  }
  return true;
}

bool Supervisor::Impl::CanDispatch() const {
  // (A handover takes no new command, but finishes those admitted ahead.)
  if (cluster && (!leading || (handover && admitted_ahead.empty()))) return false;
  if (round || RoundNeeded() || !suspects.empty() || checkpoint_problem) return false;
  for (const auto& c : active) {
    if (!c.verdict) return false;  // one undecided command at a time
  }
  if (HealthyVoters() < config.min_healthy) return false;
  const auto answering_since = Now() - milliseconds(std::max<std::int64_t>(1, config.deadline_ms / 4));
  for (const auto& v : variants) {
    if (IsPacing(v, answering_since)) return false;
  }
  // standby: Dispatch asks PromoteIfNeeded(), which promotes a voting variant if
  // the active cannot serve; here it is enough that one exists, and that
  // the active is not a process whose death is still being judged.
  if (const Variant* current = standby ? Find(active_name) : nullptr; current != nullptr && InExitGrace(*current)) {
    return false;
  }
  return !standby || std::any_of(variants.begin(), variants.end(),
                                 [&](const Variant& v) { return Voting(v); });
}

// A voting variant far behind that still answers sets the pace. One that
// has not answered for a quarter of the deadline does not (a stopped or
// hung variant must not stall the others; its deadline catches it), nor
// one about to be restarted.
bool Supervisor::Impl::IsPacing(const Variant& v, Clock::time_point answering_since) const {
  return Voting(v) && InFlight(v) >= kPaceBehind && v.channel.last_reply_at() >= answering_since;
}

// standby: the active variant, promoting the first voting variant (in
// config order) when the active can no longer take commands.
// standby: the variant that takes commands, after promoting a backup if
// the active cannot (ChooseActive: the rule, and its table test); nullptr
// when there is none for now.
Variant* Supervisor::Impl::PromoteIfNeeded() {
  std::vector<StandbyMember> members;
  for (const auto& v : variants) members.push_back({v.config.name, Voting(v), InExitGrace(v)});
  const ActiveChoice choice = ChooseActive(active_name, members);
  if (choice.kind == ActiveChoice::Kind::kPromote) {
    const Variant* current = Find(active_name);
    const std::string why = "the active " + active_name + " cannot take commands (" +
                            (current != nullptr ? current->last_fault : std::string("gone")) + ")";
    Log(LogLevel::kWarn, "promoted", {{"variant", choice.name}, {"previous", active_name}, {"why", why}});
    ++metric_counters.promotions;
    Publish("promoted", {{"variant", choice.name}, {"previous", active_name}, {"why", why}});
    active_name = choice.name;
  }
  return choice.kind == ActiveChoice::Kind::kKeep || choice.kind == ActiveChoice::Kind::kPromote ? Find(choice.name)
                                                                                                 : nullptr;
}

// standby: the decision for a command sent to the active alone.
void Supervisor::Impl::DecideStandby(Command& c) {
  if (probe && probe->command == c.id) return;  // the probe decides first
  const std::string asked = c.standby_active;
  const voter::Outcome& outcome = c.outcomes[asked];
  if (outcome.kind == voter::OutcomeKind::kPending) return;
  voter::Verdict verdict;
  if (outcome.kind == voter::OutcomeKind::kReply) {
    verdict.kind = voter::VerdictKind::kCommit;
    verdict.result = outcome.result;
    verdict.agreeing = {asked};
    verdict.reason = "the active " + asked + " answered";
    if (!c.probe.empty()) verdict.reason += ", after a probe of it survived the command its predecessor failed on";
  } else {
    if (config.standby_policy == "probe" && !c.probed && StartProbe(c)) return;
    if (c.probe.value("outcome", "") == "survived" && !c.probe.value("delivered", false) && DeliverAfterProbe(c)) {
      return;
    }
    // The active died, hung or lied on it: the command is not resent to a
    // backup (that is how a hot standby dies the same death).
    const std::string& failed = c.probe.value("delivered", false) ? c.probe.value("failed_active", asked) : asked;
    verdict.kind = voter::VerdictKind::kPoison;
    for (const auto& [name, o] : c.outcomes) {
      if (o.kind == voter::OutcomeKind::kHung) verdict.hung.push_back(name);
      if (o.kind == voter::OutcomeKind::kCrashed) verdict.crashed.push_back(name);
      if (o.kind == voter::OutcomeKind::kProtocolError) verdict.faulty.push_back(name);
    }
    const voter::Outcome& first = c.outcomes[failed];
    verdict.reason = "the active " + failed + " failed on it (" + first.detail + ")";
    if (!c.probe.empty()) {
      const std::string probe_outcome = c.probe.value("outcome", "");
      if (probe_outcome == "survived") {
        verdict.reason += "; a probe survived it, but the new active " + asked + " then failed on it too (" +
                          outcome.detail + ")";
      } else if (probe_outcome == "inconclusive") {
        verdict.reason += "; the probe could not be run (" + c.probe.value("detail", "") + ")";
      } else {
        verdict.reason += "; a probe of " + c.probe.value("variant", "") + " restored to the state before it " +
                          probe_outcome + " too (" + c.probe.value("detail", "") + ")";
      }
    }
    verdict.reason += "; quarantined and not resent to a backup (standby policy " + config.standby_policy + ")";
  }
  c.verdict = verdict;
  c.decided_ms = MillisSince(c.dispatched_at, Now());
  if (!c.is_query) stage_vote.Add(c.decided_ms * 1000);
  if (verdict.kind == voter::VerdictKind::kCommit && !c.is_query && HasExpired(c)) {
    OnExpired(c);  // (the backups never see it: they only apply commits)
    return;
  }
  RememberVerdict(c);
  Publish("verdict", {{"seq", c.seq}, {"query", c.is_query}, {"verdict", std::string(voter::ToString(verdict.kind))},
                      {"reason", verdict.reason}, {"active", asked}});
  if (verdict.kind == voter::VerdictKind::kCommit) {
    // The backups follow, one behind: they apply only what was committed.
    // (Before OnCommit: a periodic checkpoint it starts asks them for
    // their digest after this command. The other way round, every
    // checkpoint in standby mode compared the backups' state one command
    // short, was rejected, and sent every variant through a sync round,
    // during which a hung active had no backup to probe with and its
    // command was quarantined: the simulator found it.)
    if (!c.is_query) {
      for (auto& v : variants) {
        if (v.config.name != asked && Voting(v)) {
          Send(v, proto::Apply{c.seq, c.time_ns, c.payload}, Purpose::kCatchUp, "applied");
        }
      }
    }
    OnCommit(c);
  } else {
    Log(LogLevel::kWarn, "verdict", {{"seq", c.seq}, {"verdict", "POISON"}, {"reason", verdict.reason}});
    OnPoison(c);
    PromoteIfNeeded();  // now, before the next command
  }
}

JournalRecord Supervisor::Impl::AdmitRecord(const Command& c) const {
  JournalRecord admit;
  admit.type = "admit";
  admit.seq = c.seq;
  admit.time_ns = c.time_ns;
  admit.id = c.request_id;
  admit.client = HexIdentity(c.client.envelope[0]);
  admit.fingerprint = c.fingerprint;
  admit.key = c.client.user;  // (its request ids are this key's)
  admit.cmd = c.payload;
  admit.expires_at_ms = c.expires_at_ms.value_or(0);
  return admit;
}

// What keeps a command taken from the queue from being dispatched: it was
// quarantined while it waited, a retry of one already decided, the journal
// cannot be written, or its client's deadline passed. true: refused (and
// answered).
bool Supervisor::Impl::RefusedBeforeDispatch(Command& c) {
  if (RefuseIfBlocked(c)) return true;  // quarantined while it waited
  // Cluster mode: a retry that came while a new leader was settling the
  // old one's undecided commands may name one it has just committed
  // (CommitRederived): answered from memory, never run twice. (The
  // multihost SIGSTOP test caught one committed at two seqs.)
  if (cluster && !c.is_query && AnswerRetry(c)) return true;
  if (!c.is_query && journal_trouble) {
    const auto reply = proto::ClientReply::Unavailable(
        c.request_id, "the journal cannot be written: " + journal_trouble->reason + "; not sent to any variant");
    Answer(c, reply);
    return true;
  }
  if (HasExpired(c)) {
    const auto reply = ExpiredReply(c, "before it could be sent to the variants");
    Answer(c, reply);
    if (!c.is_query) Remember(RequestKey(c.client.user, c.request_id), reply);
    return true;
  }
  return false;
}

// Cluster leader: the commands queued behind the one being dispatched are
// admitted with it (their seqs given now, in the order they will be
// dispatched), so one etcd write carries up to kAdmitAhead admits, not one
// each: a write costs about a millisecond, twice what the variants take
// for a command. Each is still dispatched only once the one before it is
// decided. A new leader retests every admit it finds undecided, in seq
// order on one set of fresh processes (StartSuspectRetest).
std::vector<Command> Supervisor::Impl::AdmitBehind() {
  std::vector<Command> behind;
  std::size_t bytes = cluster_out_bytes;
  while (behind.size() + 1 < kAdmitAhead && !waiting.empty() && bytes < kClusterBatchBytes) {
    Command b = waiting.Pop();
    if (RefusedBeforeDispatch(b)) continue;
    if (!b.is_query) {
      b.seq = ++last_seq;
      b.time_ns = env.UnixNowNs();
      b.admitted = true;
      const std::string record = EncodeJournalRecord(AdmitRecord(b));
      bytes += record.size();
      AppendRecord(record);
    }
    behind.push_back(std::move(b));
  }
  return behind;
}

// A command admitted ahead, at its turn: quarantined meanwhile (an
// identical command before it was poison) or past its client's deadline,
// it is refused, and its verdict record goes to etcd before its client
// hears so (its admit is there: a next leader would otherwise retest it
// and commit it). true: refused.
bool Supervisor::Impl::RefusedAtItsTurn(Command& c) {
  if (!c.admitted) return RefusedBeforeDispatch(c);
  std::string report;
  if (quarantine->IsBlocked(c.fingerprint, &report)) {
    RefuseIfBlocked(c, AbandonAdmitted(c, "identical to command " + report + ", quarantined after it was admitted: "
                                          "not carried out"));
    return true;
  }
  if (HasExpired(c)) {
    const auto reply = ExpiredReply(c, "before it could be sent to the variants");
    ++metric_counters.verdicts[{"EXPIRED", "command"}];
    c.expired = true;
    c.verdict = voter::Verdict{};
    c.verdict->reason = reply.reason;
    JournalVerdict(c);
    ReplyCommand(c, reply);
    return true;
  }
  return false;
}

// The verdict record of an admitted command that is never dispatched; its
// ordinal (a reply resting on it waits for it).
std::uint64_t Supervisor::Impl::AbandonAdmitted(const Command& c, const std::string& reason) {
  JournalRecord record = VerdictOf(c.seq, c.request_id, c.client.user, "ABANDONED");
  record.reason = reason;
  return AppendRecord(EncodeJournalRecord(record));
}

void Supervisor::Impl::Dispatch(Command c) {
  const auto began = Now();
  if (!c.admitted) {  // (one admitted ahead has its seq and time already)
    if (!c.is_query) c.seq = ++last_seq;
    c.time_ns = env.UnixNowNs();
  }
  if (journal && !c.is_query && !c.admitted) {
    // Write-ahead: the admit record is on disk (fsync "always") before any
    // variant is sent the command, so a restarted nvsd knows every
    // command its variants may have seen, and retests the one it never
    // decided instead of delivering it again (Recover). It was only
    // buffered until the verdict's fsync, about 50 ms later after a crash:
    // an outside test killed nvsd in that window, and the resent poison
    // killed both variants again. The flush also writes the verdicts
    // decided before it in this turn: under load, one fsync per command.
    const std::uint64_t admit_ordinal = AppendRecord(EncodeJournalRecord(AdmitRecord(c)));
    std::vector<Command> behind = cluster && leading && !handover ? AdmitBehind() : std::vector<Command>{};
    // (What stops it stops those admitted behind it too: none is sent.)
    const auto refuse_all = [&](const auto& reply_to) {
      Answer(c, reply_to(c.request_id));
      for (const auto& b : behind) Answer(b, reply_to(b.request_id));
    };
    Flushed flushed = FlushJournal();  // (the verdicts written before it are synced with it)
    if (!flushed.ok()) {
      refused_admits_from = admit_ordinal;  // (refused below: never written again)
      OnJournalFailure(flushed);
      refused_admits_from = std::numeric_limits<std::uint64_t>::max();
      const auto refusal = [&](const std::string& id) {
        return proto::ClientReply::Unavailable(
            id, "the journal cannot be written (" + journal_trouble->reason + "): not sent to any variant");
      };
      if (flushed.result == Flushed::Result::kInDoubt && !cluster) {
        // Its admit may be on disk, and a start would then settle it (it
        // may commit it): the refusal waits until the admit is cut off
        // and the `mark` after it is on disk (RetryJournal).
        replies_in_doubt.push_back({c.client, refusal(c.request_id), 0});
        for (const auto& also : c.also_reply) replies_in_doubt.push_back({also, refusal(c.request_id), 0});
        return;
      }
      refuse_all(refusal);
      return;
    }
    // Cluster mode: the admit is in etcd too before any variant runs it,
    // so a new leader knows the command may have killed this one.
    if (cluster && !Replicate()) {
      refuse_all([&](const std::string& id) {
        return NotLeader(id, "it could not write the command to etcd: not sent to any variant");
      });
      return;
    }
    for (auto& b : behind) admitted_ahead.push_back(std::move(b));
  }
  c.dispatched_at = Now();
  ++metric_counters.dispatched[c.is_query ? 1 : 0];
  if (!c.is_query) {
    stage_queued.Add(MillisSince(c.admitted_at, began) * 1000);
    stage_admit.Add(MillisSince(began, c.dispatched_at) * 1000);
  }
  NoteDispatched();
  const std::uint64_t wire_seq = c.is_query ? last_seq : c.seq;
  // Every configured variant has an outcome: the voters start pending; the
  // others (failed, restarting, syncing) are excluded, so a vote never
  // waits for a variant that was not asked.
  Variant* the_active = standby ? PromoteIfNeeded() : nullptr;
  if (the_active != nullptr) c.standby_active = the_active->config.name;
  for (auto& v : variants) {
    const bool votes = standby ? &v == the_active
                               : Voting(v);
    c.outcomes[v.config.name] =
        voter::Outcome{v.config.name, votes ? voter::OutcomeKind::kPending : voter::OutcomeKind::kExcluded, "",
                       votes ? "" : v.life == Life::kExited ? std::string("not voting: its process exited")
                                                            : "not voting: " + std::string(Name(v.life)),
                       ""};
  }
  active.push_back(std::move(c));
  Command& placed = active.back();
  for (auto& [name, outcome] : placed.outcomes) {
    if (outcome.kind != voter::OutcomeKind::kPending) continue;
    Variant& v = *Find(name);
    if (placed.is_query) {
      Send(v, proto::Query{wire_seq, placed.payload}, Purpose::kVote, "answer", placed.id);
    } else {
      Send(v, proto::Apply{wire_seq, placed.time_ns, placed.payload}, Purpose::kVote, "applied", placed.id);
    }
  }
}

// The outcomes the vote counts: each variant's, or, for a hung variant
// whose hang was retested (Retest), what its fresh probe did.
std::vector<voter::Outcome> Supervisor::Impl::OutcomesOf(const Command& c) const {
  std::vector<voter::Outcome> list;
  for (const auto& [name, outcome] : c.outcomes) {
    auto retested = c.retest_outcomes.find(name);
    list.push_back(retested != c.retest_outcomes.end() ? retested->second : outcome);
  }
  return list;
}

const voter::Outcome& Supervisor::Impl::CountedOutcome(const Command& c, const std::string& name) const {
  auto retested = c.retest_outcomes.find(name);
  return retested != c.retest_outcomes.end() ? retested->second : c.outcomes.at(name);
}

// Every failure on `c` was a hang (none crashed or answered garbage), so
// the voter's POISON rests on hangs alone: a stopped process, a paused VM
// or a starved host look the same. Found by an outside test: SIGSTOP of
// two of three variants for 2 s quarantined (and blocked for good) the
// benign command in flight in 4 of 8 trials.
bool Supervisor::Impl::OnlyHangsMakeItPoison(const Command& c, const voter::Verdict& verdict) const {
  return !standby && !c.retested && verdict.kind == voter::VerdictKind::kPoison && !verdict.hung.empty() &&
         verdict.crashed.empty() && verdict.faulty.empty() && checkpoint.has_value();
}

void Supervisor::Impl::Decide(Command& c) {
  if (standby) {
    DecideStandby(c);
    return;
  }
  if (retest && retest->command == c.id) return;  // decided when the retest is done
  voter::Policy policy = config.policy;
  policy.configured = variants.size();
  voter::Verdict verdict = voter::Decide(OutcomesOf(c), policy);
  if (verdict.kind == voter::VerdictKind::kPending) return;
  if (OnlyHangsMakeItPoison(c, verdict)) {
    if (!retest) StartHungRetest(c, verdict.hung);
    return;
  }
  if (c.retested) verdict.reason += "; " + c.retest.value("conclusion", std::string());
  c.verdict = verdict;
  c.decided_ms = MillisSince(c.dispatched_at, Now());
  if (!c.is_query) stage_vote.Add(c.decided_ms * 1000);
  if (verdict.kind == voter::VerdictKind::kCommit && !c.is_query && HasExpired(c)) {
    OnExpired(c);
    return;
  }
  RememberVerdict(c);
  // (Built only when it goes somewhere: a commit's event is published,
  // any other verdict is also logged.)
  if (verdict.kind != voter::VerdictKind::kCommit || Listening("verdict")) PublishVerdict(c, verdict);
  switch (verdict.kind) {
    case voter::VerdictKind::kCommit: OnCommit(c); break;
    case voter::VerdictKind::kPoison: OnPoison(c); break;
    case voter::VerdictKind::kNoQuorum: OnNoQuorum(c); break;
    case voter::VerdictKind::kPending: break;
  }
}

void Supervisor::Impl::PublishVerdict(const Command& c, const voter::Verdict& verdict) {
  json event = {{"seq", c.seq},
                {"query", c.is_query},
                {"verdict", std::string(voter::ToString(verdict.kind))},
                {"reason", verdict.reason},
                {"agreeing", verdict.agreeing},
                {"dissenting", verdict.dissenting},
                {"crashed", verdict.crashed},
                {"hung", verdict.hung},
                {"faulty", verdict.faulty},
                {"latency_ms", MillisSince(c.dispatched_at, Now())}};
  if (c.retested) event["retest"] = c.retest;
  Publish("verdict", event);
  if (verdict.kind != voter::VerdictKind::kCommit) Log(LogLevel::kWarn, "verdict", event);
}

// A command the variants agreed on, decided after the client's deadline
// (expires_at_ms) passed: its client may have given up and told its user
// it was not done (the Videohub gateway answers NAK), so it is not: it is
// refused and rolled back like a refused command.
void Supervisor::Impl::OnExpired(Command& c) {
  c.expired = true;
  RememberVerdict(c);
  const auto reply = ExpiredReply(c, "by the time the variants agreed on it");
  json event = {{"seq", c.seq}, {"query", false}, {"verdict", "EXPIRED"}, {"reason", reply.reason},
                {"latency_ms", MillisSince(c.dispatched_at, Now())}};
  Publish("verdict", event);
  Log(LogLevel::kWarn, "verdict", event);
  c.verdict->reason = reply.reason;
  JournalVerdict(c);
  ReplyCommand(c, reply);
  RollBack(c);
}

// Once every outcome of a decided command is in (late replies, crashes and
// hangs included), the complete picture.
void Supervisor::Impl::PublishSettled(const Command& c) {
  if (!Listening("settled")) return;
  voter::Policy policy = config.policy;
  policy.configured = variants.size();
  const voter::Verdict full = standby ? *c.verdict : voter::Decide(OutcomesOf(c), policy);
  Publish("settled", {{"seq", c.seq},
                      {"query", c.is_query},
                      {"verdict", c.expired ? "EXPIRED" : std::string(voter::ToString(c.verdict->kind))},
                      {"agreeing", full.agreeing},
                      {"dissenting", full.dissenting},
                      {"crashed", full.crashed},
                      {"hung", full.hung},
                      {"faulty", full.faulty},
                      {"excluded", full.excluded}});
}

// The final reply to a command, to every client that asked for it; kept
// by request id so that a retry gets it again.
void Supervisor::Impl::ReplyCommand(const Command& c, const proto::ClientReply& reply) {
  Answer(c, reply, c.verdict_record);
  if (!c.is_query) Remember(RequestKey(c.client.user, c.request_id), reply, c.verdict_record);
}

// `record`: the ordinal of its verdict record (0: none, or one on disk).
// `key`: RequestKey of the request.
void Supervisor::Impl::Remember(const std::string& key, const proto::ClientReply& reply, std::uint64_t record) {
  answered.Remember(key, RememberedReply{reply, {}, record});
}

void Supervisor::Impl::JournalVerdict(Command& c) {
  if (!journal || c.is_query) return;
  c.verdict_record = AppendRecord(EncodeJournalRecord(VerdictRecord(c)));
}

JournalRecord Supervisor::Impl::VerdictRecord(const Command& c) {
  JournalRecord record;
  record.type = "verdict";
  record.seq = c.seq;
  record.id = c.request_id;
  record.key = c.client.user;
  record.verdict = c.expired ? "EXPIRED" : std::string(voter::ToString(c.verdict->kind));
  if (c.expired) {
    record.reason = c.verdict->reason;
  } else if (c.verdict->kind == voter::VerdictKind::kCommit) {
    record.result = c.verdict->result;
  } else {
    record.report = c.report_id;
    record.fingerprint = c.fingerprint;
    record.reason = c.verdict->reason;
  }
  return record;
}

void Supervisor::Impl::OnCommit(Command& c) {
  const voter::Verdict& verdict = *c.verdict;
  proto::ClientReply reply;
  reply.id = c.request_id;
  if (c.is_query) {
    reply.status = proto::ClientStatus::kAnswered;
  } else {
    reply.status = proto::ClientStatus::kCommitted;
    reply.seq = c.seq;
    tail.push_back({c.seq, c.time_ns, c.payload});
    ++commits;
    ++commits_since_checkpoint;
  }
  reply.result = verdict.result;
  JournalVerdict(c);
  // Cluster mode: the commit of a command with a deadline is in etcd
  // before its reply (this turn's write), not lazily: a next leader that
  // finds its admit undecided past the deadline then knows it was never
  // answered `committed`, and does not carry it out (FinishSuspect).
  if (cluster && leading && !c.is_query && c.expires_at_ms) cluster_due = Now();
  // (One machine, the same: its verdict is synced before its reply, so a
  // start that finds its admit undecided past the deadline knows it was
  // never answered `committed`.)
  if (!cluster && !c.is_query && c.expires_at_ms) sync_this_turn = true;
  ReplyCommand(c, reply);
  for (const auto& name : verdict.dissenting) {
    // (A retest probe that dissented stood in for a variant already
    // restarted for its hang: its new incarnation did nothing wrong.)
    if (!c.retest_outcomes.count(name)) MarkDivergent(c, *Find(name), CountedOutcome(c, name).result);
  }
  if (!c.is_query && commits_since_checkpoint >= config.checkpoint_interval && !checkpointer.pending()) {
    StartCheckpoint(c);
  }
}

}  // namespace nvs::supervisor
