// Replies, events and the group commit; storage trouble (the journal
// cannot be written) and clients that do not take their replies.
#include "impl.h"

namespace nvs::supervisor {

Variant* Supervisor::Impl::Find(const std::string& name) {
  return const_cast<Variant*>(std::as_const(*this).Find(name));
}

const Variant* Supervisor::Impl::Find(const std::string& name) const {
  for (const auto& v : variants) {
    if (v.config.name == name) return &v;
  }
  return nullptr;
}

Command* Supervisor::Impl::FindActive(std::uint64_t id) {
  for (auto& c : active) {
    if (c.id == id) return &c;
  }
  return nullptr;
}

// Events carry no result values (the event socket is read by whoever can
// reach it, SECURITY.md): a retest's probes are published without theirs,
// wherever a retest appears in the event (a verdict carries one too).
void Supervisor::Impl::StripProbeResults(json& value) {
  if (value.is_array()) {
    for (auto& item : value) StripProbeResults(item);
    return;
  }
  if (!value.is_object()) return;
  if (auto probes = value.find("probes"); probes != value.end() && probes->is_array()) {
    for (auto& p : *probes) {
      if (p.is_object()) p.erase("result");
    }
  }
  for (auto& [key, member] : value.items()) StripProbeResults(member);
}

void Supervisor::Impl::Publish(const std::string& event, json body) {
  if (!Listening(event)) return;
  StripProbeResults(body);
  body["event"] = event;
  body["time_ns"] = env.UnixNowNs();
  const std::string text = body.dump(-1, ' ', false, json::error_handler_t::replace);
  event_sink->Publish(event, text);
}

// `record`: the ordinal of the journal record the reply rests on (0: none).
void Supervisor::Impl::Reply(const ClientAddress& to, const proto::ClientReply& reply, std::uint64_t record) {
  if (cluster && restart_as_follower && reply.status != proto::ClientStatus::kOk &&
      reply.status != proto::ClientStatus::kNotLeader) {
    // Decided after this member stepped down (later in the same turn): its
    // records never reach etcd, and the next leader settles the command.
    outbox.push_back({to, NotLeader(reply.id, "it stepped down"), 0});
    return;
  }
  if (reply.status == proto::ClientStatus::kUnavailable) NoteUnavailable(reply.reason);
  outbox.push_back({to, reply, record});
}

void Supervisor::Impl::Answer(const Command& c, const proto::ClientReply& reply, std::uint64_t record) {
  Reply(c.client, reply, record);
  for (const auto& also : c.also_reply) Reply(also, reply, record);
}

// Queues a journal record; its ordinal.
std::uint64_t Supervisor::Impl::AppendRecord(std::string_view payload) {
  journal->Append(payload);
  if (!cluster && journal_policy == FsyncPolicy::kAlways) unsynced_records.emplace_back(journal_appended + 1, payload);
  if (cluster && leading) {
    cluster_out.emplace_back(payload);
    cluster_out_bytes += payload.size();
    if (!cluster_due) cluster_due = Now() + kClusterLazy;
    if (cluster_out_bytes >= kClusterBatchBytes) cluster_due = Now();  // (a batch stays within etcd's limit)
  }
  return ++journal_appended;
}

// Answers `unavailable` are published (CLIENT.md §5): the first at once,
// then at most one event a second while they go on, each with how many
// requests were so answered since the last one and the latest reason;
// `available` once a command is dispatched again.
void Supervisor::Impl::NoteUnavailable(const std::string& reason) {
  const auto now = Now();
  if (!refusing) refusing = Refusing{now, {}, 0, 0, ""};
  ++refusing->total;
  ++refusing->unreported;
  refusing->reason = reason;
  if (refusing->total == 1 || now - refusing->last_event >= std::chrono::seconds(1)) PublishUnavailable(now);
}

void Supervisor::Impl::PublishUnavailable(Clock::time_point now) {
  if (!refusing || refusing->unreported == 0) return;
  Publish("unavailable", {{"reason", refusing->reason}, {"requests", refusing->unreported}});
  Log(LogLevel::kWarn, "answered_unavailable", {{"reason", refusing->reason}, {"requests", refusing->unreported}});
  refusing->unreported = 0;
  refusing->last_event = now;
}

void Supervisor::Impl::NoteDispatched() {
  if (!refusing) return;
  PublishUnavailable(Now());
  const double ms = MillisSince(refusing->since, Now());
  Publish("available", {{"refused", refusing->total}, {"after_ms", ms}});
  Log(LogLevel::kInfo, "available", {{"refused", refusing->total}, {"after_ms", ms}});
  refusing.reset();
}

// Makes the journal durable (as the fsync policy says), then sends every
// reply of this turn. A journal that cannot be written turns committed
// replies into `unavailable`: nothing is acknowledged that is not on disk.
void Supervisor::Impl::FlushJournalAndReplies() {
  const auto began = Now();
  const bool replying = !outbox.empty();
  if (!outbox.empty() || (journal && journal->pending())) {
    if (journal) {
      // fsync "always" on one machine: commits' replies go once their
      // verdicts are written; the sync comes with the next admit, or at
      // verdict_sync_due. A refusal (never to be carried out later), a
      // quarantine, or a commit with a client deadline waits for its sync.
      const bool defer = !cluster && journal_policy == FsyncPolicy::kAlways && !sync_this_turn &&
                         !(verdict_sync_due && Now() >= *verdict_sync_due) &&
                         std::all_of(outbox.begin(), outbox.end(), [](const OutgoingReply& out) {
                           return out.record == 0 || out.reply.status == proto::ClientStatus::kCommitted;
                         });
      Flushed flushed = FlushJournal(/*force=*/false, /*sync=*/!defer);
      if (!flushed.ok()) {
        OnJournalFailure(flushed);
      } else if (defer && journal->unsynced()) {
        // (Only when a sync was put off: under "none" or "batch", and in
        // cluster mode, the journal stays unsynced by design, and a timer
        // for it was due at every turn, a busy loop. A review found it.)
        if (!verdict_sync_due) verdict_sync_due = Now() + kVerdictSyncDelay;
      }
      sync_this_turn = false;
    }
  }
  // Cluster mode: what the replies rest on goes to etcd first (a failure
  // steps down, and turns them into `not_leader`). A commit's reply rests
  // on its admit, in etcd before any variant ran it, and on the verdict on
  // this disk: a new leader commits such a command again at its seq
  // (CommitRederived), so it goes now, and its verdict with the next write.
  // Any other reply (a refusal must never be carried out later) waits.
  if (cluster && leading) {
    const bool all_commits = std::all_of(outbox.begin(), outbox.end(), [](const OutgoingReply& out) {
      return out.reply.status == proto::ClientStatus::kCommitted || out.record == 0;
    });
    if (!all_commits || !cluster_puts.empty() || !cluster_deletes.empty() || stopping || handover ||
        (cluster_due && Now() >= *cluster_due)) {
      Replicate();
    }
  }
  for (auto& out : outbox) SendNow(out.to, out.reply);
  outbox.clear();
  if (replying) stage_reply.Add(MillisSince(began, Now()) * 1000);
  RetryBacklogs();
}

// Every journal write of the loop goes through here (`sync` false: written,
// not synced, whatever the policy), so what is on disk is known in one
// place: under fsync "always", one machine, the records written since the
// last sync are kept until it, and no verdict sync is due once it came.
Flushed Supervisor::Impl::FlushJournal(bool force, bool sync) {
  const std::uint64_t syncs = journal->syncs();
  Flushed flushed = sync ? journal->Flush(force) : journal->Write();
  if (journal->syncs() != syncs) metric_counters.journal_sync_seconds.Observe(journal->last_sync_seconds());
  if (!flushed.ok()) return flushed;
  journal_written = journal_appended;
  if (!journal->unsynced()) {
    unsynced_records.clear();
    verdict_sync_due.reset();
  }
  return flushed;
}

// The journal could not be written. What the failed flush held is gone
// (kNotWritten: the writer cut the segment back) or in doubt (kInDoubt: it
// could not). A commit whose verdict went with it is undone: the variants
// are put back on the state before it, and its reply says `unavailable`
// (never carried out), or, in doubt, is held until the writer can cut it
// off. nvsd then refuses commands, keeps answering reads, and tries again
// every second (RetryJournal). An outside test filled the disk: a torn
// record was followed by later ones, 87 acknowledged commits vanished at
// the restart, and six commands answered `unavailable` had been applied.
void Supervisor::Impl::OnJournalFailure(const Flushed& flushed) {
  const int e = flushed.error.error_number;
  const bool doubt = flushed.result == Flushed::Result::kInDoubt;
  // (A file system that turned read-only after an error fails an fsync
  // with EIO, not EROFS: the mount says which it is.)
  const bool read_only = e == EROFS || (state != nullptr && state->ReadOnly());
  const std::string kind = read_only                        ? "read_only"
                           : doubt                          ? "in_doubt"
                           : e == ENOSPC || e == EDQUOT     ? "full"
                                                            : "io_error";
  std::string reason = DescribeStorageError(e) + " (" + flushed.error.message + ")";
  if (read_only && e != EROFS) reason += "; the state dir's file system is now read-only";
  if (doubt) reason += "; what was written after the last good record may or may not be on disk, and cannot be cut off";
  if (!journal_trouble) {
    Log(LogLevel::kError, "journal_degraded", {{"kind", kind}, {"reason", reason}});
    Publish("journal", {{"state", "degraded"}, {"kind", kind}, {"reason", reason}});
    journal_trouble = JournalTrouble{kind, reason, Now()};
    journal_retry_at = Now() + std::chrono::seconds(1);
  } else {
    // (Not a new retry time: while the segment is in doubt every flush
    // fails, and a turn comes at least every heartbeat, so a retry put
    // off at each failure never came, and nvsd never served again. The
    // simulator found it.)
    // (Not when the writer only refused because its segment is still in
    // doubt: the cause it was in doubt for, a read-only file system say,
    // is still the one to tell.)
    if (!journal->in_doubt() || doubt) {
      journal_trouble->kind = kind;
      journal_trouble->reason = reason;
    }
  }
  // The replies that rest on records the flush lost (or left in doubt):
  // those from this ordinal on. Replies resting on records already on disk
  // (a retry answered from memory) are sent as they are.
  const std::uint64_t first_lost = journal_base + flushed.records_kept + 1;
  // Fsync "always", one machine: the records lost that nvsd goes on as if
  // decided are written again once the journal can be (after a doubt,
  // once Resolve has cut the segment back), before its `mark`: verdicts an
  // earlier turn answered before their sync, and those settled with no
  // reply waiting (a commit of the retest at start, remembered for a
  // retry). Not: the records whose replies are held below (a commit there
  // is undone), a refused dispatch's admits, a mark.
  // A reply resting on a lost record is held (below), but a quarantine (it
  // rests on its report, written before its verdict: a restart finds the
  // report and blocks the command again) and an `unavailable` resting on
  // nothing, or, in a cluster, on a record the next leader settles.
  const auto lost = [&](const OutgoingReply& out) {
    const auto status = out.reply.status;
    return out.record >= first_lost && status != proto::ClientStatus::kQuarantined &&
           !(status == proto::ClientStatus::kUnavailable && (out.record == 0 || cluster));
  };
  std::set<std::uint64_t> held;
  for (const auto& out : outbox) {
    if (lost(out)) held.insert(out.record);
  }
  for (auto& [ordinal, payload] : unsynced_records) {
    if (ordinal < first_lost || held.count(ordinal) != 0 || ordinal >= refused_admits_from) continue;
    if (const auto head = PeekJournalRecord(payload); head && head->type == "mark") continue;
    journal_rewrite.push_back(std::move(payload));
  }
  unsynced_records.clear();
  verdict_sync_due.reset();  // (RetryJournal's flush syncs what is written from now on)
  journal_base = journal_appended - journal->records();
  std::vector<OutgoingReply> keep;
  for (auto& out : outbox) {
    // (An `unavailable` resting on a lost ABANDONED record, one machine, is
    // held like the rest: a start would settle its admit and might commit
    // it. A review found it.)
    if (!lost(out)) {
      keep.push_back(std::move(out));
      continue;
    }
    if (out.reply.id) answered.Forget(RequestKey(out.to.user, *out.reply.id));  // (a retry must not be told so)
    if (cluster && leading) {
      // Its admit is in etcd: the next leader settles it (it may commit
      // it), so this member cannot say it was not carried out.
      out.reply = NotLeader(out.reply.id, "its journal cannot be written; the next leader settles this command");
      out.record = 0;
      keep.push_back(std::move(out));
      continue;
    }
    // Held until the journal can be written again and its `mark` is on
    // disk (RetryJournal), then answered `not carried out` (a commit
    // undone). Not at once: under fsync "always" a commit may be answered
    // before its verdict's sync, so a start that finds an admit undecided
    // commits it when fresh processes agree on it, unless a `mark` follows
    // it; told `not carried out` before that mark, and nvsd stopped, its
    // client would find it carried out. (The simulator found it.)
    replies_in_doubt.push_back(std::move(out));
  }
  outbox = std::move(keep);
  // A leader whose disk fails hands the cluster to a member whose does not.
  if (cluster && leading) StepDown("its journal cannot be written (" + reason + ")");
}

// One machine: a `mark` for replies `unavailable` to commands whose admits
// stay undecided on disk (a poison whose quarantine report cannot be
// written: its POISON verdict waits for the report). Each such reply
// rests on the mark's ordinal, so it goes once the mark is synced (or is
// held, should that fail). A start retests such an admit on fresh
// processes: failed on, it is quarantined; agreed on, it is abandoned,
// not committed, as the mark says its client was told `not carried out`.
// (The simulator: answered at once, a power cut, and a start whose fresh
// processes agreed on the command committed it.) 0 in cluster mode (the
// next leader settles the admit) or without a journal.
std::uint64_t Supervisor::Impl::MarkRefused(std::uint64_t seq, const std::string& note) {
  if (cluster || !journal) return 0;
  JournalRecord mark;
  mark.type = "mark";
  mark.seq = seq;  // (for this admit only: others undecided now may have been answered `committed`. A review found it.)
  mark.time_ns = env.UnixNowNs();
  mark.note = note;
  return AppendRecord(EncodeJournalRecord(mark));
}

// A reply whose verdict record never reached the disk: a commit is undone
// and a refusal withdrawn; either is answered `unavailable` (not carried
// out), which a retry may change. A refusal told to a client but lost on
// disk would be carried out after a restart: the command comes back as an
// undecided admit, and its id is free again.
Supervisor::Impl::OutgoingReply Supervisor::Impl::NotCarriedOut(OutgoingReply out, const std::string& reason) {
  out.record = 0;
  if (out.reply.status == proto::ClientStatus::kUnavailable) return out;  // (its own reason says why)
  if (out.reply.status == proto::ClientStatus::kCommitted) UndoCommit(out.reply.seq);
  out.reply = proto::ClientReply::Unavailable(out.reply.id, "the journal cannot be written (" + reason +
                                                                "): not carried out");
  return out;
}

// A commit whose verdict never reached the disk: out of the tail, and
// every variant back on the checkpoint and the commits still durable.
void Supervisor::Impl::UndoCommit(std::uint64_t seq) {
  const auto before = tail.size();
  std::erase_if(tail, [&](const CommittedEntry& e) { return e.seq == seq; });
  if (tail.size() < before) {
    --commits;
    commits_since_checkpoint = static_cast<int>(tail.size());
  }
  checkpointer.Abandon();
  for (auto& v : variants) {
    Transit(v, LifeEvent::kDoubted, "a commit it applied was undone");
  }
  Log(LogLevel::kError, "commit_undone", {{"seq", seq}, {"why", "its verdict could not be written to the journal"}});
}

// Once a second while the journal is in trouble: cut off what is in
// doubt, then write and fsync a small record. When both work, nvsd takes
// commands again.
void Supervisor::Impl::RetryJournal() {
  if (!journal_trouble || Now() < journal_retry_at || !journal) return;
  journal_retry_at = Now() + std::chrono::seconds(1);
  ++journal_trouble->attempts;
  if (journal->in_doubt()) {
    Flushed resolved = journal->Resolve();
    if (!resolved.ok()) return;
    journal_base = journal_appended - journal->records();
  }
  while (!unwritten_reports.empty()) {
    const auto& pending = unwritten_reports.front();
    Status written = quarantine->Write(pending.id, pending.text);
    if (!written.ok()) {
      journal_trouble->reason = "a quarantine report cannot be written: " + written.message();
      return;
    }
    Log(LogLevel::kWarn, "quarantine_written", {{"report", pending.id}});
    ClusterPut("quarantine/" + pending.id, pending.text);
    AppendRecord(pending.verdict_record);
    unwritten_reports.erase(unwritten_reports.begin());
  }
  JournalRecord mark;
  mark.type = "mark";
  mark.time_ns = env.UnixNowNs();
  mark.note = "the journal can be written again";
  // (Taken out: should this flush fail, the failure puts them back, with
  // their new ordinals.)
  std::vector<std::string> rewrite = std::move(journal_rewrite);
  journal_rewrite.clear();
  for (const auto& payload : rewrite) AppendRecord(payload);
  AppendRecord(EncodeJournalRecord(mark));
  Flushed flushed = FlushJournal(/*force=*/true);
  if (!flushed.ok()) {
    OnJournalFailure(flushed);
    return;
  }
  // What was lost (or in doubt, and is cut off now) was not carried out,
  // for sure, and the mark after it is on disk: the held replies go.
  for (auto& out : replies_in_doubt) {
    OutgoingReply settled = NotCarriedOut(std::move(out), journal_trouble->reason);
    Reply(settled.to, settled.reply);
  }
  replies_in_doubt.clear();
  if (!rewrite.empty()) {
    Log(LogLevel::kWarn, "journal_rewritten",
        {{"records", rewrite.size()},
         {"why", "verdicts already answered, written without their fsync, were cut back with the failed write"}});
  }
  const double ms = MillisSince(journal_trouble->since, Now());
  Log(LogLevel::kWarn, "journal_ok", {{"after_ms", ms}, {"was", journal_trouble->reason}});
  Publish("journal", {{"state", "ok"}, {"after_ms", ms}, {"was", journal_trouble->reason}});
  journal_trouble.reset();
}

// Sends one reply now, or queues it behind the client's backlog. Never a
// silent drop: a reply that cannot be delivered is counted and logged.
void Supervisor::Impl::SendNow(const ClientAddress& to, const proto::ClientReply& reply) {
  const std::string& peer = to.envelope[0];
  if (cut_off.count(peer) != 0) {
    ++client_counters.replies_dropped;  // (its cut-off was logged, with what it dropped then)
    return;
  }
  ++metric_counters.replies[static_cast<std::size_t>(reply.status)];  // (as sent: a held reply counts once, as it goes)
  std::vector<std::string> frames = to.envelope;
  frames.push_back(proto::Encode(reply));
  if (auto it = backlogs.find(peer); it != backlogs.end()) {
    Queue(peer, it->second, std::move(frames));
    return;
  }
  switch (TrySend(frames)) {
    case SendResult::kSent: return;
    case SendResult::kFull: Queue(peer, backlogs[peer], std::move(frames)); return;
    case SendResult::kGone: Undeliverable(peer, 1); return;
  }
}

void Supervisor::Impl::Queue(const std::string& peer, Backlog& backlog, std::vector<std::string> frames) {
  for (const auto& f : frames) backlog.bytes += f.size();
  backlog.messages.push_back(std::move(frames));
  if (backlog.messages.size() > config.client_backlog_limit || backlog.bytes > kMaxBacklogBytes) {
    CutOff(peer);
    return;
  }
  // All clients together: beyond kMaxAllBacklogsBytes, the one holding the
  // most is cut off (many slow readers must not exhaust nvsd's memory).
  std::size_t total = 0;
  const Backlog* largest = nullptr;
  std::string largest_peer;
  for (const auto& [p, b] : backlogs) {
    total += b.bytes;
    if (largest == nullptr || b.bytes > largest->bytes) {
      largest = &b;
      largest_peer = p;
    }
  }
  if (total > kMaxAllBacklogsBytes) CutOff(largest_peer);
}

// A client that has not taken client_backlog_limit replies is cut off:
// what waits for it is dropped, and its later requests are not carried
// out (ZeroMQ cannot close one peer's connection of a ROUTER socket; a
// client that reconnects gets a new routing id and a clean slate).
void Supervisor::Impl::CutOff(const std::string& peer) {
  auto it = backlogs.find(peer);
  const std::size_t dropped = it != backlogs.end() ? it->second.messages.size() : 0;
  const std::size_t bytes = it != backlogs.end() ? it->second.bytes : 0;
  if (it != backlogs.end()) backlogs.erase(it);
  ++client_counters.cut_off;
  client_counters.replies_dropped += dropped;
  Log(LogLevel::kError, "client_cut_off",
      {{"peer", HexIdentity(peer)}, {"replies_dropped", dropped}, {"bytes_dropped", bytes},
       {"why", "it did not take its replies (client_backlog_limit " + std::to_string(config.client_backlog_limit) +
                   "): its later requests are ignored until it reconnects"}});
  cut_off.insert(peer);
  cut_off_order.push_back(peer);
  while (cut_off_order.size() > kMaxCutOffRemembered) {
    cut_off.erase(cut_off_order.front());
    cut_off_order.pop_front();
  }
}

// Replies for a client that disconnected before it took them: counted and
// logged (at most 10 lines a second).
void Supervisor::Impl::Undeliverable(const std::string& peer, std::size_t replies) {
  client_counters.replies_undeliverable += replies;
  if (undeliverable_log.Admit(Now())) {
    Log(LogLevel::kWarn, "reply_undeliverable",
        {{"peer", HexIdentity(peer)}, {"replies", replies}, {"why", "the client disconnected before it took them"}});
  }
}

// Sends what waits in the backlogs, in order, as far as each client's
// queue takes it.
void Supervisor::Impl::RetryBacklogs() {
  for (auto it = backlogs.begin(); it != backlogs.end();) {
    Backlog& b = it->second;
    bool gone = false;
    while (!b.messages.empty()) {
      const SendResult result = TrySend(b.messages.front());
      if (result == SendResult::kFull) break;
      if (result == SendResult::kGone) {
        gone = true;
        break;
      }
      for (const auto& f : b.messages.front()) b.bytes -= f.size();
      b.messages.pop_front();
    }
    if (gone) Undeliverable(it->first, b.messages.size());
    it = gone || b.messages.empty() ? backlogs.erase(it) : std::next(it);
  }
  const auto now = Now();
  if (const auto n = undeliverable_log.TakeSuppressed(now)) {
    Log(LogLevel::kWarn, "reply_undeliverable_suppressed", {{"count", n}});
  }
  if (const auto n = rejected_log.TakeSuppressed(now)) Log(LogLevel::kInfo, "client_rejections_suppressed", {{"count", n}});
}

}  // namespace nvs::supervisor
