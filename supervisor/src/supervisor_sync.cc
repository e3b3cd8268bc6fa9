// Checkpoints, journal segments and sync rounds (ARCHITECTURE.md §5).
#include "impl.h"

namespace nvs::supervisor {

void Supervisor::Impl::StartCheckpoint(const Command& c) {
  std::vector<Variant*> agreeing;
  for (const auto& name : c.verdict->agreeing) {
    Variant* v = Find(name);
    if (v != nullptr && Voting(*v)) {
      agreeing.push_back(v);
    }
  }
  if (agreeing.empty()) return;
  const std::string snapshot_from = agreeing.front()->config.name;
  std::vector<Variant*> others;
  for (auto& v : variants) {
    if (!Voting(v) || v.config.name == snapshot_from) continue;
    if (!standby && c.outcomes.at(v.config.name).kind == voter::OutcomeKind::kExcluded) continue;
    others.push_back(&v);
  }
  std::vector<std::string> names;
  for (const Variant* v : others) names.push_back(v->config.name);
  checkpointer.Start(c.seq, snapshot_from, names);
  Send(*agreeing.front(), proto::SnapshotRequest{c.seq}, Purpose::kCheckpointSnapshot, "state");
  for (Variant* v : others) Send(*v, proto::DigestRequest{c.seq}, Purpose::kCheckpointDigest, "digest");
  if (cluster && leading && journal) {
    // Right after the commit's verdict in the log: each follower takes its
    // own checkpoint there, whatever it has applied by the time the
    // leader's checkpoint reaches it, and compares the two.
    JournalRecord mark;
    mark.type = "checkpoint";
    mark.seq = c.seq;
    mark.time_ns = env.UnixNowNs();
    AppendRecord(EncodeJournalRecord(mark));
  }
}

void Supervisor::Impl::AdvanceCheckpoint() {
  // (Taken out of the checkpointer first: a failed flush below undoes
  // commits, which abandons what is pending.)
  const auto decision = checkpointer.Take();
  if (!decision) return;
  const Checkpointer::Decision& d = *decision;
  if (!d.accepted) {
    Log(LogLevel::kWarn, "checkpoint_rejected", {{"seq", d.seq}, {"reason", "no majority for the snapshot's digest"}});
    for (const auto& name : d.asked) {
      if (Variant* v = Find(name)) Transit(*v, LifeEvent::kDoubted, "checkpoint rejected");  // a round settles who is right
    }
    return;
  }
  // A checkpoint holds only commits whose verdicts are on disk: while the
  // journal is in trouble, or if this flush fails, there is none (a later
  // one is taken when the journal is back).
  if (journal_trouble) return;
  if (journal) {
    Flushed flushed = FlushJournal(/*force=*/true);
    if (!flushed.ok()) {
      OnJournalFailure(flushed);
      return;
    }
  }
  checkpoint = Checkpoint{d.seq, d.state, d.digest};
  SaveCheckpoint();
  if (cluster && !leading) OnFollowerCheckpoint(*checkpoint);
  std::erase_if(tail, [&](const CommittedEntry& e) { return e.seq <= d.seq; });
  commits_since_checkpoint = static_cast<int>(tail.size());
  Log(LogLevel::kDebug, "checkpoint", {{"seq", d.seq}, {"digest", checkpoint->digest}});
  for (const auto& name : d.mismatched) {
    Variant& v = *Find(name);
    v.last_fault = "state digest differs at checkpoint seq " + std::to_string(d.seq);
    v.stop_reason = v.last_fault;
    Transit(v, LifeEvent::kDiverged, v.last_fault);
    Log(LogLevel::kWarn, "digest_mismatch", {{"variant", name}, {"seq", d.seq}, {"digest", d.digests.at(name)},
                                             {"expected", checkpoint->digest}});
  }
}

// The checkpoint on disk: written atomically, after the journal records it
// covers are durable (so a recovery never finds a state without the
// records that explain it). The one it replaces is kept as
// checkpoint.prev.json: recovery falls back to it when the newest is
// damaged.
void Supervisor::Impl::SaveCheckpoint() {
  if (!checkpoint) return;
  if (journal) {
    Flushed flushed = FlushJournal(/*force=*/true);
    if (!flushed.ok()) {
      OnJournalFailure(flushed);
      return;
    }
  }
  checkpoint->commits =
      commits - static_cast<std::uint64_t>(std::count_if(tail.begin(), tail.end(), [&](const CommittedEntry& e) {
        return e.seq > checkpoint->seq;
      }));
  // The new one whole on disk first, under its own name; then the current
  // one becomes the previous, and the new one the current. A failure at
  // any step leaves a pair recovery starts from (at worst: no current, and
  // the last one as the previous), never fewer checkpoints than before.
  StorageError error;
  Status written = state->WriteAtomically(kNextCheckpointFile, FormatCheckpoint(*checkpoint), &error);
  const bool had = saved_checkpoint && state->Exists(kCheckpointFile);
  if (written.ok() && had) written = state->Rename(kCheckpointFile, kPreviousCheckpointFile, &error);
  if (written.ok()) written = state->Rename(kNextCheckpointFile, kCheckpointFile, &error);
  if (!written.ok()) {
    const std::string what = DescribeStorageError(error.error_number);
    if (!checkpoint_error) {
      Publish("journal", {{"state", "checkpoint_failing"}, {"reason", written.message()}, {"what", what}});
    }
    checkpoint_error = "checkpoint seq " + std::to_string(checkpoint->seq) + " could not be written: " +
                       written.message() + " (" + what + "); commands are still journaled, but a restart replays "
                       "more of the journal and no segment is pruned";
    Log(LogLevel::kError, "checkpoint_write_failed",
        {{"seq", checkpoint->seq}, {"error", written.message()}, {"what", what}});
    return;
  }
  if (checkpoint_error) {
    Log(LogLevel::kWarn, "checkpoint_written_again", {{"seq", checkpoint->seq}, {"was", *checkpoint_error}});
    Publish("journal", {{"state", "checkpoint_ok"}, {"seq", checkpoint->seq}});
    checkpoint_error.reset();
  }
  if (had) previous_checkpoint = saved_checkpoint;
  saved_checkpoint = checkpoint;
  checkpoint_file = kCheckpointFile;
  ClusterCheckpoint();
  RotateJournal();
}

// At a checkpoint (on disk): a new segment once the current one is big
// enough, and the pruning of old segments the retention lets go. A segment
// is only pruned when both kept checkpoints cover every record in it.
void Supervisor::Impl::RotateJournal() {
  if (!journal || journal->bytes() < config.journal_segment_bytes) return;
  // The current segment whole on disk first: a closed segment is never
  // torn (recovery takes damage in one for what it is).
  Flushed flushed = FlushJournal(/*force=*/true);
  if (!flushed.ok()) {
    OnJournalFailure(flushed);
    return;
  }
  StorageError error;
  const std::string next = JournalSegmentName(journal_segment + 1);
  auto file = state->OpenForAppend(next, &error);
  auto opened = file.ok() ? JournalWriter::Start(std::move(file.value()), journal_policy, config.fsync_batch_ms, &error)
                          : Result<std::unique_ptr<JournalWriter>>(file.status());
  Status synced = opened.ok() ? state->SyncDir(kJournalDir, &error) : opened.status();
  if (!synced.ok()) {
    Log(LogLevel::kError, "journal_rotate_failed", {{"segment", state->Where(next).string()}, {"error", synced.message()}});
    return;  // the current segment goes on growing
  }
  closed_segments.push_back({journal_segment, last_seq});
  journal = std::move(opened.value());
  journal_base = journal_appended;
  ++journal_segment;
  Log(LogLevel::kInfo, "journal_segment", {{"segment", state->Where(next).string()}, {"seq", last_seq}});
  // Nor while it holds a verdict of the last `remembered_requests`
  // commands: their ids are remembered across a restart only while their
  // verdict records are there to read (each seq has at most one verdict,
  // so those are within the last remembered_requests seqs).
  const std::uint64_t remembered_from =
      last_seq > config.remembered_requests ? last_seq - config.remembered_requests : 0;
  const std::uint64_t covered = std::min({checkpoint ? checkpoint->seq : 0,
                                          previous_checkpoint ? previous_checkpoint->seq : checkpoint ? checkpoint->seq : 0,
                                          remembered_from});
  while (config.journal_keep_segments > 0 && closed_segments.size() > config.journal_keep_segments &&
         closed_segments.front().max_seq <= covered) {
    const std::string name = JournalSegmentName(closed_segments.front().index);
    Status removed = state->Remove(name, &error);
    Log(removed.ok() ? LogLevel::kInfo : LogLevel::kError, "journal_pruned",
        {{"segment", state->Where(name).string()}, {"max_seq", closed_segments.front().max_seq},
         {"error", removed.ok() ? "" : removed.message()}});
    if (!removed.ok()) break;
    closed_segments.pop_front();
  }
}

void Supervisor::Impl::StartRound() {
  Round r;
  r.started = Now();
  // With no voting variant left (all rolled back or restarted), the truth
  // is the checkpoint plus the committed tail, never a fresh process.
  const bool any_voting = std::any_of(variants.begin(), variants.end(), [&](const Variant& v) { return Voting(v); });
  for (auto& v : variants) {
    // (Not a diverged one: it is restarted, and its state trusted by nothing.)
    if (!CanSync(v.life)) continue;
    r.participants.insert(v.config.name);
    v.round_digest.reset();
    v.refused_checkpoint.reset();
    if (v.life != Life::kSyncing || (!any_voting && checkpoint)) {
      r.trusted.insert(v.config.name);
      if (WantsRound(v.life) && checkpoint) {
        // Rolled back: the checkpoint and the committed commands since.
        SendPaced(v, proto::Restore{checkpoint->seq, checkpoint->state}, Purpose::kCheckpointRestore, "restored");
        for (const auto& e : tail) SendPaced(v, proto::Apply{e.seq, e.time_ns, e.payload}, Purpose::kCatchUp, "applied");
      }
    } else if (!checkpoint && !tail.empty()) {
      // No checkpoint left, the whole journal there: the state is rebuilt
      // by replaying every commit on the variants' initial state.
      for (const auto& e : tail) SendPaced(v, proto::Apply{e.seq, e.time_ns, e.payload}, Purpose::kCatchUp, "applied");
    }
    SendPaced(v, proto::DigestRequest{last_seq}, Purpose::kRoundDigest, "digest");
  }
  if (r.participants.empty()) return;
  Log(LogLevel::kInfo, "sync_round", {{"participants", r.participants}, {"trusted", r.trusted},
                                      {"checkpoint_seq", checkpoint ? checkpoint->seq : 0}, {"tail", tail.size()}});
  round = std::move(r);
}

// The seq of the last committed command (the state's seq).
std::uint64_t Supervisor::Impl::LastCommittedSeq() const {
  return !tail.empty() ? tail.back().seq : checkpoint ? checkpoint->seq : 0;
}

// A catch-up request, sent when fewer than kCatchUpWindow requests are
// unanswered at the variant.
void Supervisor::Impl::SendPaced(Variant& v, const proto::Request& request, Purpose purpose, std::string_view reply_type) {
  const Sent sent{purpose, reply_type, proto::SeqOf(request), 0, {}};
  for (const auto& out : v.channel.Pace(sent, proto::Encode(request), kCatchUpWindow, Now())) {
    SendToIdentity(v.identity, out.bytes);
  }
}

void Supervisor::Impl::AdvanceRound() {
  if (!round) return;
  Round& r = *round;
  if (r.participants.empty()) {
    round.reset();
    return;
  }
  switch (r.phase) {
    case Round::Phase::kDigests: {
      for (const auto& name : r.participants) {
        if (!Find(name)->round_digest) return;
      }
      if (RefusedCheckpoint(r)) return;
      // Which digest wins, who gives it, who is restarted (DecideRound:
      // the rules, and their table test).
      std::vector<RoundMember> members;
      for (const auto& name : r.participants) {
        const Variant& v = *Find(name);
        members.push_back({name, *v.round_digest, r.trusted.count(name) != 0, Voting(v)});
      }
      const RoundDecision decision = DecideRound(members);
      r.chosen_digest = decision.chosen;
      if (decision.tie) {
        // No strict majority: nobody can tell which state is right. Once,
        // put every participant back on the checkpoint plus the committed
        // tail (fresh ones included, as extra witnesses) and compare again.
        // Or, while another variant is coming back, wait for it as a
        // witness (ReadyForRound): an unresolved tie picks a digest that
        // may be a faulty variant's (the simulator found a variant that
        // corrupts its state winning a tie against a correct one, with the
        // third about to join).
        const bool coming = std::any_of(variants.begin(), variants.end(), [&](const Variant& v) {
          return r.participants.count(v.config.name) == 0 && (v.life == Life::kSyncing || ComingBack(v));
        });
        if (!tie_retried || coming) {
          Log(LogLevel::kWarn, "digest_tie", {{"pool", decision.pool}, {"digests", decision.digests},
                                              {"waiting_for_another", coming}});
          tie_retried = true;
          for (const auto& name : r.participants) Transit(*Find(name), LifeEvent::kDoubted, "digest tie");
          round.reset();
          return;
        }
        Log(LogLevel::kError, "digest_tie_unresolved",
            {{"pool", decision.pool}, {"chosen", r.chosen_digest}, {"why", "no majority even after replaying the checkpoint"}});
      }
      tie_retried = false;
      r.donor = decision.donor;
      for (const auto& name : decision.restart) {
        Variant& v = *Find(name);
        const std::string why = "state digest " + *v.round_digest + " differs from " + r.chosen_digest;
        Log(LogLevel::kWarn, "digest_mismatch", {{"variant", name}, {"digest", *v.round_digest}, {"expected", r.chosen_digest}});
        r.participants.erase(name);
        Kill(v, why, std::nullopt, "");
      }
      r.receivers.insert(decision.receivers.begin(), decision.receivers.end());
      const bool want_snapshot = !r.receivers.empty() || !checkpoint || !reports_awaiting_pre_state.empty() ||
                                 static_cast<int>(tail.size()) >= config.checkpoint_interval;
      if (want_snapshot && !r.donor.empty()) {
        r.phase = Round::Phase::kSnapshot;
        Send(*Find(r.donor), proto::SnapshotRequest{last_seq}, Purpose::kRoundSnapshot, "state");
        return;
      }
      FinishRound();
      return;
    }
    case Round::Phase::kSnapshot:
      return;  // OnRoundSnapshot moves on
    case Round::Phase::kRestoring:
      for (const auto& name : r.receivers) {
        if (r.participants.count(name) && !Find(name)->round_digest) return;
      }
      FinishRound();
      return;
  }
}

// A variant that refused the checkpoint's restore (or restored it to
// another digest) is taken out; when every trusted participant did, the
// checkpoint is what is wrong: nvsd names the file and stops serving
// rather than start on a state nobody vouches for (an outside test put an
// out-of-range route in checkpoint.json: every variant refused it, and
// nvsd said nothing of the file). True when the round is over.
bool Supervisor::Impl::RefusedCheckpoint(Round& r) {
  std::vector<std::string> refused;
  std::size_t trusted = 0;
  for (const auto& name : r.participants) {
    const Variant& v = *Find(name);
    if (r.trusted.count(name)) ++trusted;
    if (v.refused_checkpoint) refused.push_back(name);
  }
  if (refused.empty()) return false;
  if (refused.size() >= trusted) {
    std::string details;
    for (const auto& name : refused) {
      details += (details.empty() ? "" : "; ") + name + " " + *Find(name)->refused_checkpoint;
    }
    const bool current = checkpoint_file == kCheckpointFile;
    checkpoint_problem = state->Where(checkpoint_file).string() + " (seq " + std::to_string(checkpoint->seq) +
                         ") is refused by every variant: " + details +
                         ". Stop nvsd and move that file away: it then starts from " +
                         (current ? std::string(kPreviousCheckpointFile) + " (or, with no checkpoint left, "
                                  : std::string("(with no checkpoint left) ")) +
                         "by replaying the whole journal, which needs every segment since the first command" +
                         (current ? ")" : "") + ", or restore it from a backup; `nvs journal check` says more";
    Log(LogLevel::kError, "checkpoint_refused", {{"file", state->Where(checkpoint_file).string()},
                                                 {"seq", checkpoint->seq}, {"details", details}});
    Publish("journal", {{"state", "checkpoint_refused"}, {"reason", *checkpoint_problem}});
    round.reset();
    return true;
  }
  for (const auto& name : refused) {
    Variant& v = *Find(name);
    const std::string why = "the checkpoint (seq " + std::to_string(checkpoint->seq) + "): " + *v.refused_checkpoint;
    r.participants.erase(name);
    Kill(v, why, std::nullopt, "");
  }
  return false;
}

void Supervisor::Impl::OnRoundSnapshot(Variant& v, const proto::StateReply& state) {
  if (!round || round->phase != Round::Phase::kSnapshot || round->donor != v.config.name) return;
  Round& r = *round;
  if (state.digest != r.chosen_digest) {
    Log(LogLevel::kWarn, "digest_mismatch", {{"variant", v.config.name}, {"digest", state.digest},
                                             {"expected", r.chosen_digest}, {"during", "snapshot"}});
    round.reset();
    Kill(v, "its snapshot's digest differs from the digest it reported", std::nullopt, "");
    return;
  }
  // The receivers restore while the checkpoint goes to disk.
  r.phase = Round::Phase::kRestoring;
  for (const auto& name : r.receivers) {
    Variant& receiver = *Find(name);
    receiver.round_digest.reset();
    Send(receiver, proto::Restore{last_seq, state.state}, Purpose::kRestore, "restored");
  }
  const bool first = !checkpoint;
  if (!first && (journal_trouble || !replies_in_doubt.empty())) {
    // A commit may be undone yet (its verdict may not be on disk): the
    // state is not a checkpoint. The receivers have it, as the others
    // do; the checkpoint and the tail stay, so that an undo puts every
    // variant back without that commit. (Taking it as the checkpoint
    // baked the undone commit in, and a client told `not carried out`
    // found it applied: the simulator found it.)
    AdvanceRound();
    return;
  }
  // Labelled with the last committed seq, not the last seq given out: a
  // later seq may be an undecided admit (a suspect being retested), and a
  // checkpoint past it would hide it from the next recovery (found by a
  // review: a poison in flight through two nvsd crashes was delivered
  // again). The state is the same: only commits change it.
  checkpoint = Checkpoint{LastCommittedSeq(), state.state, state.digest, 0};
  SaveCheckpoint();
  tail.clear();
  commits_since_checkpoint = 0;
  RecordPreState();
  if (first) Log(LogLevel::kInfo, "checkpoint", {{"seq", checkpoint->seq}, {"digest", state.digest}, {"first", true}});
  AdvanceRound();
}

// Every participant that holds the chosen state now votes; the others are
// restarted.
void Supervisor::Impl::FinishRound() {
  Round r = std::move(*round);
  round.reset();
  const bool was_ready = ready;
  for (const auto& name : r.participants) {
    Variant& v = *Find(name);
    if (v.round_digest && *v.round_digest == r.chosen_digest) {
      Transit(v, LifeEvent::kChecked, "restored and checked (digest " + r.chosen_digest + ")");
    } else if (CanSync(v.life)) {
      Kill(v, "restored state has digest " + v.round_digest.value_or("?") + ", expected " + r.chosen_digest,
           std::nullopt, "");
    }
  }
  if (standby && config.preempt) {
    Variant& home = *Find(config.variants.front().name);
    if (Voting(home) && active_name != home.config.name) {
      Log(LogLevel::kInfo, "promoted", {{"variant", home.config.name}, {"previous", active_name}, {"why", "preempt"}});
      ++metric_counters.promotions;
      Publish("promoted", {{"variant", home.config.name}, {"previous", active_name}, {"why", "preempt"}});
      active_name = home.config.name;
    }
  }
  ready = checkpoint.has_value();
  if (ready && !was_ready) {
    std::vector<std::string> healthy;
    for (const auto& variant : variants) {
      if (Voting(variant)) healthy.push_back(variant.config.name);
    }
    Log(LogLevel::kInfo, "ready", {{"healthy", healthy}, {"digest", r.chosen_digest}});
    Publish("ready", {{"healthy", healthy}});
    if (!simulated) sd_notify(0, "READY=1\nSTATUS=serving");
  }
}

}  // namespace nvs::supervisor
