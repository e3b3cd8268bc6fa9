// Poison and no quorum: quarantine reports, roll-backs, and retests on
// disposable processes (ARCHITECTURE.md §3, §5, §6).
#include "impl.h"

namespace nvs::supervisor {

// The state before `seq`: the checkpoint and what was committed after it.
Retest::PreState Supervisor::Impl::PreStateBefore(std::uint64_t seq) const {
  Retest::PreState pre;
  pre.checkpoint = checkpoint;
  for (const auto& e : tail) {
    if (e.seq < seq) pre.tail.push_back({e.seq, e.time_ns, e.payload});
  }
  return pre;
}

// Starts fresh processes of `names`' programs that run `command` on the
// state before `pre_state_seq`. `command_id`: the undecided command it is
// for, or 0 for suspects.front().
void Supervisor::Impl::StartRetest(const std::vector<std::string>& names, const Retest::Command& command, std::uint64_t pre_state_seq,
                 std::uint64_t command_id, const std::string& why) {
  StartRetestOf(names, {command}, PreStateBefore(pre_state_seq), command_id, why, std::nullopt);
}

// The same on an explicit pre-state (`commands`: run one after the other);
// with `release`, for that release.
void Supervisor::Impl::StartRetestOf(const std::vector<std::string>& names, std::vector<Retest::Command> commands,
                                     Retest::PreState pre_state, std::uint64_t command_id, const std::string& why,
                                     std::optional<PendingRelease> release) {
  const std::uint64_t first_seq = commands.front().seq;
  RunningRetest r;
  r.command = command_id;
  r.release = std::move(release);
  r.retest = std::make_unique<Retest>(names, std::move(commands), std::move(pre_state),
                                      Retest::Deadlines{milliseconds(config.sync_deadline_ms),
                                                        milliseconds(config.deadline_ms)},
                                      Now(), retest_probes_started + 1);
  retest_probes_started += static_cast<int>(names.size());
  json probes = json::array();
  for (const auto& p : r.retest->probes()) {
    auto spec = SpecFor(Find(p.variant)->config, p.identity, "retest.log");
    auto process = spec.ok() ? env.Spawn(spec.value()) : Result<std::unique_ptr<Process>>(spec.status());
    if (!process.ok()) {
      r.retest->OnSpawnFailed(p.identity, process.status().message(), Now());
      probes.push_back({{"variant", p.variant}, {"probe", p.identity}, {"error", process.status().message()}});
      continue;
    }
    probes.push_back({{"variant", p.variant}, {"probe", p.identity}, {"pid", process.value()->pid()}});
    r.processes[p.identity] = std::move(process.value());
  }
  json event = {{"phase", "started"}, {"seq", first_seq}, {"why", why}, {"probes", probes}};
  if (r.retest->size() > 1) event["commands"] = r.retest->size();
  Log(LogLevel::kWarn, "retest", event);
  Publish("retest", event);
  retest = std::move(r);
  PumpRetest();
}

void Supervisor::Impl::StartHungRetest(const Command& c, const std::vector<std::string>& hung) {
  std::string names;
  for (const auto& name : hung) names += (names.empty() ? "" : ", ") + name;
  const std::string what = c.is_query ? std::string("a query") : "seq " + std::to_string(c.seq);
  StartRetest(hung, {c.is_query ? last_seq : c.seq, c.time_ns, c.payload, c.is_query},
              c.is_query ? last_seq + 1 : c.seq, c.id,
              "every failure on " + what + " was a hang (" + names +
                  "): a stop, a paused machine or a starved host looks the same, so it is run on fresh processes "
                  "restored to the state before it before it is called poison");
}

// At start (and after each one is decided): the next suspect's retest.
// A new cluster leader's suspects (the old leader admits the commands
// queued behind the one it dispatches in the same etcd write, so there may
// be several) are run in one retest, in seq order: each is committed on the
// state the one before it left, and one set of fresh processes serves them
// all (a takeover waits for one start of each program, not one per
// suspect).
void Supervisor::Impl::StartSuspectRetest() {
  // (Not while a sync round runs, and no round starts while it runs: a
  // suspect it commits goes to the variants as a catch-up, and a round
  // restoring them meanwhile from the tail without it left them without
  // it. The simulator found it.)
  if (suspects.empty() || retest || stopping || round) return;
  if (suspect_retry_at && Now() < *suspect_retry_at) return;
  suspect_retry_at.reset();
  const Suspect& s = suspects.front();
  std::vector<std::string> names;
  for (const auto& v : variants) names.push_back(v.config.name);
  std::vector<Retest::Command> commands{{s.seq, s.time_ns, s.payload, false}};
  for (std::size_t i = 1; s.rederive && i < suspects.size() && suspects[i].rederive; ++i) {
    commands.push_back({suspects[i].seq, suspects[i].time_ns, suspects[i].payload, false});
  }
  const std::string which = commands.size() == 1 ? "seq " + std::to_string(s.seq) + " was"
                                                 : "seqs " + std::to_string(s.seq) + " to " +
                                                       std::to_string(commands.back().seq) + " were";
  StartRetestOf(names, std::move(commands), PreStateBefore(s.seq), 0,
                which + (cluster ? " admitted by the previous leader and never decided in etcd: its variants may "
                                   "have been sent them, and one may be what stopped them, so they are run on fresh "
                                   "processes restored to the state before them before anything else is dispatched"
                                 : " admitted before nvsd stopped and never decided: its variants may have been "
                                   "sent it, and it may be what stopped them, so it is run on fresh processes "
                                   "restored to the state before it before anything else is dispatched"),
                std::nullopt);
}

// Sends what the retest asks, kills the probes it is done with, and
// finishes it once every probe is done.
void Supervisor::Impl::PumpRetest() {
  while (retest) {
    for (const auto& [identity, bytes] : retest->retest->TakeOutgoing()) SendToIdentity(identity, bytes);
    for (const auto& identity : retest->retest->TakeKills()) {
      if (auto it = retest->processes.find(identity); it != retest->processes.end()) {
        it->second->DrainStderr();
        retest->processes.erase(it);  // SIGKILLs its group and reaps it
      }
      retest->exit_seen.erase(identity);
    }
    if (!retest->retest->done()) return;
    FinishRetest();
  }
}

// A probe's process is gone: once its connection is gone too (or
// exit_grace_ms passed), everything it sent has been read.
void Supervisor::Impl::SettleRetestExits() {
  if (!retest) return;
  const auto now = Now();
  for (auto it = retest->exit_seen.begin(); it != retest->exit_seen.end();) {
    const std::string identity = it->first;
    if (!ConnectionGone(identity) && now < it->second + milliseconds(config.exit_grace_ms)) {
      ++it;
      continue;
    }
    it = retest->exit_seen.erase(it);
    DrainVariantSocket(std::numeric_limits<int>::max());
    auto process = retest->processes.find(identity);
    if (process == retest->processes.end()) continue;
    process->second->DrainStderr();
    const auto info = process->second->TryReap();
    retest->retest->OnExit(identity, info ? info->Describe() : "exited", now);
  }
}

void Supervisor::Impl::FinishRetest() {
  RunningRetest r = std::move(*retest);
  retest.reset();
  r.processes.clear();
  json described = r.retest->Describe();
  if (r.release) {
    FinishRelease(*r.retest, *r.release, std::move(described));
    // What waited for the retest slot meanwhile.
    StartSuspectRetest();
    for (auto& c : active) {
      if (!c.verdict) Decide(c);
    }
    return;
  }
  if (r.command == 0) {
    FinishSuspects(*r.retest);
    StartSuspectRetest();
    return;
  }
  Command* c = FindActive(r.command);
  if (c == nullptr || c->verdict) return;
  c->retested = true;
  std::vector<std::string> answered, failed, inconclusive;
  for (const auto& o : r.retest->Outcomes()) {
    if (!r.retest->Conclusive(o.variant)) {
      inconclusive.push_back(o.variant + " (" + o.detail + ")");
      continue;
    }
    voter::Outcome counted = o;
    counted.detail = "hung; a fresh process of its program, restored to the state before it: " + o.detail;
    if (counted.kind == voter::OutcomeKind::kReply) {
      counted.comparable = voter::ComparableForm(counted.result, config.policy.ignored);
      answered.push_back(o.variant);
    } else {
      failed.push_back(o.variant + " " + std::string(voter::ToString(o.kind)) + " (" + o.detail + ")");
    }
    c->retest_outcomes[o.variant] = std::move(counted);
  }
  const auto join = [](const std::vector<std::string>& items) {
    std::string out;
    for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
    return out;
  };
  std::string conclusion = "retest on fresh processes restored to the state before it:";
  if (!answered.empty()) conclusion += " " + join(answered) + " answered";
  if (!failed.empty()) conclusion += std::string(answered.empty() ? " " : "; ") + join(failed);
  if (!inconclusive.empty()) {
    conclusion += std::string(answered.empty() && failed.empty() ? " " : "; ") + "could not be run for " +
                  join(inconclusive) + " (their hangs stand)";
  }
  if (failed.empty() && inconclusive.empty()) conclusion += ": the hangs were not the command's doing";
  described["conclusion"] = conclusion;
  c->retest = described;
  json event = {{"phase", "done"}, {"seq", c->seq}, {"conclusion", conclusion}, {"probes", described["probes"]}};
  Log(LogLevel::kWarn, "retest", event);
  Publish("retest", event);
}

// What the retest of a suspect showed: poison is quarantined (blocked,
// with a report). An admit that may have been answered `committed` (every
// one found at start, and a new cluster leader's: a commit's reply does
// not wait for its verdict's fsync, or its write to etcd) is committed at
// its seq with what fresh processes of every program agreed on (the
// variants are deterministic: those that ran it first said the same),
// applied to the variants, and remembered for a retry. One they survive
// without agreeing is abandoned (a retry by its client runs it).
namespace {

// The verdict record that settles a suspect.
JournalRecord SuspectVerdict(const nvsd::Suspect& s, const char* verdict) {
  return VerdictOf(s.seq, s.request_id, s.key, verdict);
}

}  // namespace

// Where a rederived suspect comes from, for its messages.
std::string Supervisor::Impl::UndecidedWhere() const {
  return cluster ? "admitted by the previous leader and not decided in etcd"
                 : "admitted before nvsd stopped and not decided in its journal";
}

// A new leader's suspect past its client's deadline: recorded EXPIRED, not
// carried out, and a retry told so. Its client may have told its user it
// was not done (the Videohub gateway's NAK). (It ends a batch: the retest
// of those after it ran on a state that included it.)
void Supervisor::Impl::ExpireSuspect(const Suspect& s, const json& described) {
  JournalRecord record = SuspectVerdict(s, "EXPIRED");
  record.reason = UndecidedWhere() + "; its client's deadline (expires_at_ms) passed before it could be settled: "
                  "not carried out";
  const std::uint64_t ordinal = journal ? AppendRecord(EncodeJournalRecord(record)) : 0;
  if (auto reply = ReplyOfVerdict(record)) {
    Remember(RequestKey(s.key, s.request_id), *reply, ordinal);
    for (const auto& to : s.retries) Reply(to, *reply, ordinal);
  }
  json event = {{"phase", "done"}, {"seq", s.seq}, {"conclusion", record.reason}, {"probes", described["probes"]}};
  Log(LogLevel::kWarn, "retest", event);
  Publish("retest", event);
}

void Supervisor::Impl::CommitRederived(const Suspect& s, const std::string& result, json described) {
  JournalRecord record = SuspectVerdict(s, "COMMIT");
  record.result = result;
  const std::uint64_t ordinal = journal ? AppendRecord(EncodeJournalRecord(record)) : 0;
  tail.push_back({s.seq, s.time_ns, s.payload});
  ++commits;
  ++commits_since_checkpoint;
  for (auto& v : variants) {
    if (Voting(v)) Send(v, proto::Apply{s.seq, s.time_ns, s.payload}, Purpose::kCatchUp, "applied");
  }
  proto::ClientReply reply;
  reply.id = s.request_id;
  reply.status = proto::ClientStatus::kCommitted;
  reply.seq = s.seq;
  reply.result = result;
  Remember(RequestKey(s.key, s.request_id), reply, ordinal);
  for (const auto& to : s.retries) Reply(to, reply, ordinal);
  // (One machine: synced before any reply, unlike a live commit's: past
  // its client's deadline, or behind a `mark` written meanwhile, a start
  // would settle the admit otherwise. A review found both.)
  if (!cluster) sync_this_turn = true;
  const std::string conclusion = UndecidedWhere() + "; fresh processes of every program restored to the state "
                                 "before it agreed on it: committed at its seq (it may have been answered so), and "
                                 "remembered for a retry";
  json event = {{"phase", "done"}, {"seq", s.seq}, {"conclusion", conclusion}, {"probes", described["probes"]}};
  Log(LogLevel::kInfo, "retest", event);
  Publish("retest", event);
}

// The retest's commands are suspects.front() on: each committed one lets
// the next be decided; the first that is not ends the batch (those after
// it ran on a state that included it), and the rest wait for a retest of
// their own.
void Supervisor::Impl::FinishSuspects(const Retest& r) {
  for (std::size_t i = 0; i < r.size(); ++i) {
    if (suspects.empty() || suspects.front().seq != r.seq(i)) return;
    if (!FinishSuspect(r, i)) return;
  }
}

// Suspect `i` of the retest (suspects.front()): true when it was committed.
bool Supervisor::Impl::FinishSuspect(const Retest& r, std::size_t i) {
  json described = r.Describe(i);
  Suspect s = std::move(suspects.front());
  suspects.pop_front();
  std::vector<voter::Outcome> outcomes = r.Outcomes(i);
  bool inconclusive = false;
  int failed = 0;
  int survived = 0;
  for (const auto& o : outcomes) {
    inconclusive = inconclusive || !r.Conclusive(o.variant, i);
    const bool fail = o.kind == voter::OutcomeKind::kCrashed || o.kind == voter::OutcomeKind::kHung ||
                      o.kind == voter::OutcomeKind::kProtocolError;
    failed += fail ? 1 : 0;
    survived += o.kind == voter::OutcomeKind::kReply && r.Conclusive(o.variant, i) ? 1 : 0;
  }
  voter::Policy policy = config.policy;
  policy.configured = variants.size();
  voter::Verdict verdict = voter::Decide(outcomes, policy);
  // Cluster mode: past its client's deadline, it was never answered
  // `committed` (such a commit is in etcd before its reply): not carried
  // out, whatever the retest could or could not run (unless a program
  // failed on it: then the rules below may quarantine it).
  const bool past_deadline = s.rederive && s.expires_at_ms != 0 && UnixNowMs() > s.expires_at_ms;
  if (past_deadline && failed == 0) {
    ExpireSuspect(s, described);
    return false;
  }
  // Cluster mode: the old leader may have answered it `committed`, so a
  // retest that could not run it on every program (and saw none fail) and
  // whose probes that did run it do not make a commit is no evidence
  // either way: it is run again, up to three times, and then this member
  // steps down rather than quarantine a command that may have been
  // acknowledged (another member may be able to run it; nothing is served
  // meanwhile).
  if (s.rederive && inconclusive && failed == 0 && verdict.kind != voter::VerdictKind::kCommit) {
    if (s.retests < 3) {
      ++s.retests;
      Log(LogLevel::kWarn, "retest", {{"phase", "again"}, {"seq", s.seq}, {"attempt", s.retests + 1},
                                      {"why", "fresh processes could not run it on every program"}});
      suspects.push_front(std::move(s));
      return false;
    }
    const std::string seq = std::to_string(s.seq);
    if (!cluster) {
      // One machine: no other member may be able to run it. It stays
      // undecided, and nothing else is dispatched, until fresh processes
      // can run it: tried again every second, loudly.
      Log(LogLevel::kError, "retest",
          {{"phase", "again_later"}, {"seq", s.seq},
           {"why", "fresh processes could not run it on every program in 4 tries; it may have been answered "
                   "committed, so it is neither dropped nor refused: tried again in a second (" +
                       described["probes"].dump() + ")"}});
      s.retests = 0;
      suspects.push_front(std::move(s));
      suspect_retry_at = Now() + std::chrono::seconds(1);
      return false;
    }
    suspects.push_front(std::move(s));
    StepDown("it cannot settle seq " + seq + ", which the previous leader admitted and may have answered committed: "
             "fresh processes could not run it on every program in 4 tries (" + described["probes"].dump() + ")");
    return false;
  }
  std::string why;
  bool poison = false;
  if (standby && config.standby_policy == "quarantine") {
    // The active alone had it: a program that fails on it, or one that
    // could not be tried, is reason enough (the policy's own rule: a
    // command the active fails on is never delivered).
    // (Not a rederived one that fresh processes commit though one could
    // not be run: the old leader may have answered it `committed`.)
    poison = failed > 0 || (inconclusive && !(s.rederive && verdict.kind == voter::VerdictKind::kCommit));
    why = failed > 0 ? "a fresh process failed on it (standby policy quarantine: a command a program fails on is "
                       "not delivered)"
                     : "it could not be run on every program, so it is not shown safe";
  } else if (standby) {
    // Policy probe: live, a command the active fails on is still
    // delivered when a probe of the next active's program survives it.
    // The same here: poison when two programs fail on it, or none is
    // shown to survive it. (One failing program alone is what the probe
    // policy survives: quarantining it here, after a restart, refused a
    // command the running nvsd would have carried out. The simulator
    // found it.)
    poison = failed >= 2 || survived == 0;
    why = failed >= 2 ? "fresh processes of " + std::to_string(failed) + " programs failed on it"
                      : "no fresh process could be shown to survive it";
  } else {
    poison = verdict.kind == voter::VerdictKind::kPoison ||
             (verdict.kind != voter::VerdictKind::kCommit && inconclusive);
    why = verdict.kind == voter::VerdictKind::kPoison ? verdict.reason
                                                      : "too few fresh processes could run it to show it safe";
  }
  const std::string seq = "seq " + std::to_string(s.seq);
  if (!poison && s.rederive && verdict.kind == voter::VerdictKind::kCommit) {
    if (past_deadline) {
      ExpireSuspect(s, described);
      return false;
    }
    CommitRederived(s, verdict.result, described);
    if (s.expires_at_ms != 0) cluster_due = Now();  // (in etcd before a retry hears it: as OnCommit)
    return true;
  }
  if (!poison) {
    const std::string reason = "admitted before nvsd stopped and never decided; fresh processes restored to the state "
                               "before it survived it (" + std::string(voter::ToString(verdict.kind)) +
                               "): not carried out, and not remembered, so a retry runs it";
    std::uint64_t ordinal = 0;
    if (journal) {
      JournalRecord abandoned = SuspectVerdict(s, "ABANDONED");
      abandoned.reason = reason;
      ordinal = AppendRecord(EncodeJournalRecord(abandoned));
    }
    for (const auto& to : s.retries) {
      Reply(to, proto::ClientReply::Unavailable(s.request_id, reason), ordinal);
    }
    json event = {{"phase", "done"}, {"seq", s.seq}, {"conclusion", reason}, {"probes", described["probes"]}};
    Log(LogLevel::kInfo, "retest", event);
    Publish("retest", event);
    return false;
  }
  Command c;
  c.seq = s.seq;
  c.time_ns = s.time_ns;
  c.payload = s.payload;
  c.fingerprint = s.fingerprint.empty() ? proto::Fnv1a64Hex(s.payload) : s.fingerprint;
  c.request_id = s.request_id;
  c.client.envelope = {Unhex(s.client)};
  c.client.user = s.key;
  for (auto& o : outcomes) {
    o.detail = "a fresh process, after nvsd restarted: " + o.detail;
    c.outcomes[o.variant] = o;
  }
  verdict.kind = voter::VerdictKind::kPoison;
  verdict.reason = seq + " was admitted before nvsd stopped and never decided, and a retest on fresh processes "
                   "restored to the state before it says it is not safe: " + why +
                   "; quarantined, never delivered again";
  c.verdict = verdict;
  c.retested = true;
  described["conclusion"] = verdict.reason;
  described["found_at_recovery"] = true;
  c.retest = described;
  c.report_id = ReportId("q", c.seq, c.fingerprint);
  std::string report_text;
  if (Status written = WriteReport(c, "blocked", &report_text); !written.ok()) {
    // Blocked in memory; undecided on disk, so the next start retests it again.
    Log(LogLevel::kError, "quarantined_in_memory", {{"report", c.report_id}, {"seq", c.seq}});
    QuarantineUnwritten(c, report_text, written.message());
    const std::uint64_t mark =
        s.retries.empty() ? 0 : MarkRefused(s.seq, "answered unavailable: its quarantine report cannot be written");
    for (const auto& to : s.retries) {
      Reply(to,
            proto::ClientReply::Unavailable(s.request_id, "it is blocked while nvsd runs (" + verdict.reason +
                                                              "), but its quarantine report cannot be written (" +
                                                              written.message() + "): not carried out"),
            mark);
    }
    return false;
  }
  JournalVerdict(c);
  proto::ClientReply reply;
  reply.id = c.request_id;
  reply.status = proto::ClientStatus::kQuarantined;
  reply.report = c.report_id;
  reply.fingerprint = c.fingerprint;
  reply.reason = verdict.reason;
  // Its client is gone: a retry is answered. (Unless the id already has a
  // later answer, e.g. a retry committed after this admit was undone.)
  if (!c.request_id.empty() && !answered.Contains(RequestKey(c.client.user, c.request_id))) {
    Remember(RequestKey(c.client.user, c.request_id), reply, c.verdict_record);
  }
  for (const auto& to : s.retries) Reply(to, reply, c.verdict_record);
  reports_awaiting_pre_state.push_back(c.report_id);
  ++metric_counters.quarantines;
  Publish("quarantine", {{"report", c.report_id}, {"fingerprint", c.fingerprint}, {"seq", c.seq}, {"reason", verdict.reason}});
  Log(LogLevel::kError, "quarantined",
      {{"report", c.report_id}, {"fingerprint", c.fingerprint}, {"seq", c.seq}, {"reason", verdict.reason}});
  return false;
}

// "q-000000000042-1a2b3c4d": the kind, the seq, the fingerprint's start.
std::string Supervisor::Impl::ReportId(const char* kind, std::uint64_t seq, const std::string& fingerprint) {
  const std::string digits = std::to_string(seq);
  return std::string(kind) + "-" + std::string(12 - std::min<std::size_t>(12, digits.size()), '0') + digits + "-" +
         fingerprint.substr(0, 8);
}

void Supervisor::Impl::OnPoison(Command& c) {
  c.report_id = ReportId("q", c.seq, c.fingerprint);
  std::string report_text;
  if (Status written = WriteReport(c, "blocked", &report_text); !written.ok()) {
    // The block holds in memory, but a quarantine a restart would forget
    // is not one to announce (an outside test: a poison answered
    // `quarantined` while the disk was full was delivered again after a
    // restart). No verdict record either: the admit stays undecided, so
    // the next start retests it and quarantines it for good.
    const auto unavailable = proto::ClientReply::Unavailable(
        c.request_id, "it killed variants (" + c.verdict->reason + "), and is blocked while nvsd runs, but the "
                      "quarantine report cannot be written (" + written.message() + "): not carried out");
    Answer(c, unavailable,
           MarkRefused(c.seq, "answered unavailable: its quarantine report cannot be written"));
    Log(LogLevel::kError, "quarantined_in_memory",
        {{"report", c.report_id}, {"fingerprint", c.fingerprint}, {"seq", c.seq}, {"error", written.message()}});
    QuarantineUnwritten(c, report_text, written.message());
    RollBack(c);
    return;
  }
  proto::ClientReply reply;
  reply.id = c.request_id;
  reply.status = proto::ClientStatus::kQuarantined;
  reply.report = c.report_id;
  reply.fingerprint = c.fingerprint;
  reply.reason = c.verdict->reason;
  JournalVerdict(c);
  ReplyCommand(c, reply);
  ++metric_counters.quarantines;
  Publish("quarantine",
          {{"report", c.report_id}, {"fingerprint", c.fingerprint}, {"seq", c.seq}, {"reason", c.verdict->reason}});
  Log(LogLevel::kError, "quarantined",
      {{"report", c.report_id}, {"fingerprint", c.fingerprint}, {"seq", c.seq}, {"reason", c.verdict->reason}});
  RollBack(c);
}

void Supervisor::Impl::OnNoQuorum(Command& c) {
  c.report_id = ReportId("n", c.seq, c.fingerprint);
  WriteReport(c, "no_quorum");
  JournalVerdict(c);
  ReplyCommand(c, proto::ClientReply::Rejected(c.request_id, "no_quorum",
                                               c.verdict->reason + "; rolled back, recorded as " + c.report_id));
  RollBack(c);
}

// Every variant that applied a refused command goes back to the state
// before it (checkpoint + committed tail), through a sync round.
void Supervisor::Impl::RollBack(Command& c) {
  if (c.is_query) return;
  for (auto& [name, outcome] : c.outcomes) {
    Variant& v = *Find(name);
    if (outcome.kind == voter::OutcomeKind::kReply || outcome.kind == voter::OutcomeKind::kPending) {
      Transit(v, LifeEvent::kDoubted, "rolled back");
      v.last_fault = "rolled back: seq " + std::to_string(c.seq) + " was " +
                     (c.expired ? std::string("agreed on after its deadline")
                                : "refused (" + std::string(voter::ToString(c.verdict->kind)) + ")");
    }
  }
  if (!c.report_id.empty()) reports_awaiting_pre_state.push_back(c.report_id);
}

json Supervisor::Impl::ReportOf(const Command& c, const std::string& status) {
  json outcomes = json::array();
  for (const auto& [name, outcome] : c.outcomes) {
    json entry = {{"variant", name}, {"outcome", std::string(voter::ToString(outcome.kind))}};
    if (outcome.kind == voter::OutcomeKind::kReply) entry["result"] = ParseOrString(outcome.result);
    if (auto it = c.answered_ms.find(name); it != c.answered_ms.end()) entry["after_ms"] = it->second;
    if (!outcome.detail.empty()) entry["detail"] = outcome.detail;
    if (auto it = c.evidence.find(name); it != c.evidence.end()) {
      for (const auto& [key, value] : it->second.items()) entry[key] = value;
    }
    outcomes.push_back(entry);
  }
  return {{"id", c.report_id},
          {"status", status},
          {"fingerprint", c.fingerprint},
          {"kind", c.is_query ? "query" : "command"},
          {"command", ParseOrString(c.payload)},
          {"seq", c.seq},
          {"time_ns", c.time_ns},
          {"time", IsoTime(c.time_ns)},
          {"client", {{"request_id", c.request_id},
                      {"key", config.client_curve ? json(c.client.user) : json()},
                      {"authenticated", config.client_curve.has_value()}}},
          {"pre_state",
           {{"checkpoint_seq", checkpoint ? checkpoint->seq : 0},
            {"checkpoint_digest", checkpoint ? checkpoint->digest : ""},
            {"tail_seqs", [&] {
               json seqs = json::array();
               for (const auto& e : tail) seqs.push_back(e.seq);
               return seqs;
             }()}}},
          {"outcomes", outcomes},
          {"verdict", std::string(voter::ToString(c.verdict->kind))},
          {"decided_ms", c.decided_ms},
          {"reason", c.verdict->reason},
          {"policy", std::string(voter::ToString(config.policy.kind))},
          {"mode", config.mode},
          {"config", json::parse(VariantsAndPolicyJson(config))},
          {"review", json::array({{{"time", IsoTime(env.UnixNowNs())},
                                   {"action", status == "blocked" ? "quarantined" : "recorded"},
                                   {"by", "nvsd"},
                                   {"note", c.verdict->reason}}})}};
}

Status Supervisor::Impl::WriteReport(const Command& c, const std::string& status, std::string* text) {
  json report = ReportOf(c, status);
  if (!c.probe.empty()) report["probe"] = c.probe;  // standby probe policy: what the probe did
  if (c.retested) report["retest"] = c.retest;       // hangs, or a suspect at recovery: what fresh processes did
  if (auto existing = quarantine->Read(c.report_id)) {
    json old = json::parse(*existing, nullptr, false);
    if (!old.is_discarded()) {
      if (old.contains("pre_state")) report["pre_state"] = old["pre_state"];
      if (old.contains("review")) report["review"] = old["review"];
    }
  }
  if (text != nullptr) *text = Dump(report);
  Status written = quarantine->Write(c.report_id, Dump(report));
  if (!written.ok()) Log(LogLevel::kError, "report_write_failed", {{"report", c.report_id}, {"error", written.message()}});
  if (written.ok()) ClusterPut("quarantine/" + c.report_id, Dump(report));
  return written;
}

// A quarantine whose report could not be written: blocked in memory, its
// verdict not journaled (the admit stays undecided, so a restart retests
// it), and nvsd takes no command until the report is on disk (a
// checkpoint must not pass over the undecided admit meanwhile).
void Supervisor::Impl::QuarantineUnwritten(const Command& c, const std::string& text, const std::string& error) {
  unwritten_reports.push_back({c.report_id, text, EncodeJournalRecord(VerdictRecord(c))});
  const std::string kind = error.find("No space") != std::string::npos    ? "full"
                           : error.find("Read-only") != std::string::npos ? "read_only"
                                                                          : "io_error";
  const std::string reason = "a quarantine report cannot be written: " + error;
  if (!journal_trouble) {
    Log(LogLevel::kError, "journal_degraded", {{"kind", kind}, {"reason", reason}});
    Publish("journal", {{"state", "degraded"}, {"kind", kind}, {"reason", reason}});
    journal_trouble = JournalTrouble{kind, reason, Now()};
  }
  journal_retry_at = Now() + std::chrono::seconds(1);
}

// After the round that rolled the variants back: record the pre-command
// state (digest and snapshot file) in the reports that wait for it.
void Supervisor::Impl::RecordPreState() {
  if (!checkpoint) return;
  for (const auto& id : reports_awaiting_pre_state) {
    auto text = quarantine->Read(id);
    if (!text) continue;
    json report = json::parse(*text, nullptr, false);
    if (!report.is_object()) continue;
    if (!report["pre_state"].is_object()) report["pre_state"] = json::object();
    auto file = quarantine->WriteAttachment(id + ".state.json", checkpoint->state + "\n");
    if (file.ok()) ClusterPut("quarantine/" + id + ".state.json", checkpoint->state + "\n");
    report["pre_state"]["digest"] = checkpoint->digest;
    report["pre_state"]["snapshot"] = file.ok() ? file.value() : "";
    report["pre_state"]["snapshot_seq"] = checkpoint->seq;
    Status written = quarantine->Write(id, Dump(report));
    if (!written.ok()) Log(LogLevel::kError, "report_write_failed", {{"report", id}, {"error", written.message()}});
    if (written.ok()) ClusterPut("quarantine/" + id, Dump(report));
  }
  reports_awaiting_pre_state.clear();
}

}  // namespace nvs::supervisor
