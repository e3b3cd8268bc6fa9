// The loop: what is ready (the poll, or a simulation) and one turn of
// handling it; the pipeline's next step (Pump) and the deadlines it waits
// for (ARCHITECTURE.md §7, "One loop turn today").
#include "impl.h"

namespace nvs::supervisor {

// The loop is alive as long as it turns: tell systemd so.
void Supervisor::Impl::PetWatchdog() {
  if (!watchdog_every || Now() - watchdog_last < *watchdog_every) return;
  sd_notify(0, "WATCHDOG=1");
  watchdog_last = Now();
}

// Pings every variant that has had nothing to do for a heartbeat interval:
// a process that is stopped (SIGSTOP) or wedged while idle is noticed
// within interval + timeout, not at its next command.
void Supervisor::Impl::SendHeartbeats() {
  const auto now = Now();
  for (auto& v : variants) {
    if (const auto due = PingDue(v); due && now >= *due) Send(v, proto::Ping{last_seq}, Purpose::kHeartbeat, "pong");
  }
}

Clock::time_point Supervisor::Impl::NextDeadline() const {
  auto next = Now() + milliseconds(200);
  for (const auto& v : variants) {
    if (InExitGrace(v)) continue;  // (SettleExits judges it: below)
    for (const auto& due : {ReplyDue(v), BehindDue(v), ProgressDue(v), StopDue(v), PingDue(v)}) {
      if (due) next = std::min(next, *due);
    }
  }
  if (!waiting.empty()) next = std::min(next, waiting.OldestAdmission() + milliseconds(config.queue_deadline_ms));
  for (const auto& c : admitted_ahead) next = std::min(next, c.admitted_at + milliseconds(config.queue_deadline_ms));
  if (recheck_soon || !backlogs.empty()) next = std::min(next, Now() + kExitPoll);
  if (journal_trouble) next = std::min(next, journal_retry_at);
  if (verdict_sync_due && !journal_trouble) next = std::min(next, *verdict_sync_due);
  if (suspect_retry_at) next = std::min(next, *suspect_retry_at);
  if (refusing && refusing->unreported > 0) next = std::min(next, refusing->last_event + std::chrono::seconds(1));
  if (retest) {
    next = std::min(next, retest->retest->NextDeadline());
    if (!retest->exit_seen.empty()) next = std::min(next, Now() + kExitPoll);
  }
  if (watchdog_every) next = std::min(next, watchdog_last + *watchdog_every);
  if (cluster && leading) {
    if (const auto until = cluster->ServeUntil()) next = std::min(next, *until);
  }
  if (handover) next = std::min(next, handover->deadline);
  if (cluster_due) next = std::min(next, *cluster_due);
  if (probe) next = std::min(next, ProbeDeadline());
  // (A spare is otherwise (re)started on a loop turn, and turns come at
  // least every heartbeat interval.)
  if (!spare && spare_not_before > Now()) next = std::min(next, spare_not_before);
  for (const auto& v : variants) {
    if (InExitGrace(v)) next = std::min(next, Now() + kExitPoll);  // (ConnectionGone, or exit_grace_ms)
    if (const auto due = RestartDue(v, AnyUndecided())) next = std::min(next, *due);
  }
  return next;
}

// Why a command waited past queue_deadline_ms, for its `unavailable` reply.
std::string Supervisor::Impl::WhyStillWaiting() const {
  const std::string within = " within " + std::to_string(config.queue_deadline_ms) + " ms";
  if (HealthyVoters() < config.min_healthy) {
    return "not enough healthy variants" + within + " (healthy " + std::to_string(HealthyVoters()) + ", min_healthy " +
           std::to_string(config.min_healthy) + ")";
  }
  const auto answering_since = Now() - milliseconds(std::max<std::int64_t>(1, config.deadline_ms / 4));
  for (const auto& v : variants) {
    if (IsPacing(v, answering_since)) {
      return "not dispatched" + within + ": " + v.config.name + " is " + std::to_string(InFlight(v)) +
             " requests behind, and commands go at the pace of the slowest variant (send fewer at once)";
    }
  }
  return "not dispatched" + within + " (a sync round or the command before it was still being decided)";
}

// A variant is judged hung only by what nvsd could see: the variants'
// socket is read right before, and a deadline counts as passed only if a
// read that began after it found no reply. After a stall of nvsd itself
// (a turn that began long after the poll was due), nothing is judged
// until a later turn has read the socket again, once ZeroMQ's I/O thread
// (stalled too) has caught up. An outside test had all three idle,
// healthy variants killed at once for pongs that were waiting unread
// while one turn took 800 ms on a client's flood.
void Supervisor::Impl::CheckDeadlines() {
  const auto read_started = Now();
  if (DrainVariantSocket()) variants_drained_at = read_started;
  if (stalled) {
    Log(LogLevel::kWarn, "loop_stalled", {{"why", "a turn began long after the poll was due: deadlines are "
                                                  "judged on the next turn, after the variants' replies are read"}});
    recheck_soon = true;
    CheckQueueDeadlines();
    return;
  }
  const auto now = variants_drained_at;
  for (auto& v : variants) {
    if (InExitGrace(v)) continue;  // dead: SettleExits judges it
    if (v.life == Life::kStopping) {
      if (const auto due = StopDue(v); due && now > *due && v.process) v.process->SignalGroup(SIGKILL);
      continue;
    }
    if (InFlight(v) > kMaxInFlightPerVariant) {
      const std::string what = "fell behind: " + std::to_string(InFlight(v)) + " requests unanswered";
      ++metric_counters.hangs[v.config.name];
      Log(LogLevel::kWarn, "variant_hung", {{"variant", v.config.name}, {"what", what}});
      Kill(v, "hung: " + what, voter::OutcomeKind::kHung, what);
      continue;
    }
    if (const auto due = BehindDue(v); due && now >= *due) {
      const Command* c = WaitingBehind(v);
      const std::string what = "no reply within " + std::to_string(config.deadline_ms) + " ms while seq " +
                               std::to_string(c->seq) + " waited behind its " +
                               PurposeName(v.channel.head()->purpose) + " request";
      ++metric_counters.hangs[v.config.name];
      Log(LogLevel::kWarn, "variant_hung", {{"variant", v.config.name}, {"what", what}});
      Kill(v, "hung: " + what, voter::OutcomeKind::kHung, what);
      continue;
    }
    if (const auto due = ReplyDue(v); due && now >= *due) {
      const Sent& head = *v.channel.head();
      std::string what = std::string(head.purpose == Purpose::kHeartbeat ? "no pong" : "no reply") + " within " +
                         std::to_string(DeadlineFor(head.purpose).count()) + " ms";
      if (head.purpose == Purpose::kVote) {
        if (Command* c = FindActive(head.command)) {
          what += c->is_query ? " to a query" : " to seq " + std::to_string(c->seq);
        }
      }
      ++metric_counters.hangs[v.config.name];
      Log(LogLevel::kWarn, "variant_hung", {{"variant", v.config.name}, {"what", what}});
      Kill(v, "hung: " + what, voter::OutcomeKind::kHung, what);
      continue;
    }
    if (const auto due = ProgressDue(v); due && now > *due) {
      Kill(v, "no progress while " + std::string(Name(v.life)) + " for " + std::to_string(config.sync_deadline_ms) + " ms",
           std::nullopt, "");
    }
  }
  CheckQueueDeadlines();
}

// Commands that waited past queue_deadline_ms are answered `unavailable`.
// (One admitted ahead is abandoned: its verdict record goes to etcd
// before the reply, so no next leader carries it out.)
void Supervisor::Impl::CheckQueueDeadlines() {
  const auto cutoff = Now() - milliseconds(config.queue_deadline_ms);
  for (auto it = admitted_ahead.begin(); it != admitted_ahead.end();) {
    if (it->admitted_at >= cutoff) {
      ++it;
      continue;
    }
    const std::string why = WhyStillWaiting();
    const std::uint64_t record = it->admitted ? AbandonAdmitted(*it, "waited past queue_deadline_ms: " + why) : 0;
    const auto reply = proto::ClientReply::Unavailable(it->request_id, why);
    Answer(*it, reply, record);
    it = admitted_ahead.erase(it);
  }
  if (waiting.empty() || waiting.OldestAdmission() >= cutoff) return;
  const std::string why = WhyStillWaiting();
  for (auto& c : waiting.TakeAdmittedBefore(cutoff)) {
    const auto reply = proto::ClientReply::Unavailable(c.request_id, why);
    Answer(c, reply);
  }
}

// Why nvsd cannot take commands now (it answers them `unavailable`), or
// nullopt when it can. Before the first sync round it is only starting.
std::optional<std::string> Supervisor::Impl::UnavailableNow() const {
  if (stopping) return "nvsd is shutting down";
  if (journal_trouble) return "the journal cannot be written: " + journal_trouble->reason;
  if (checkpoint_problem) return *checkpoint_problem;
  if (NotFailed() < config.min_healthy) {
    return "only " + std::to_string(NotFailed()) + " variants are not failed; min_healthy is " +
           std::to_string(config.min_healthy);
  }
  return std::nullopt;
}

// Keeps status's view of whether nvsd can take commands (and logs a change).
void Supervisor::Impl::UpdateAvailability() {
  auto now = UnavailableNow();
  if (now == unavailable_reason) return;
  if (now) {
    Log(LogLevel::kError, "unavailable", {{"reason", *now}});
  } else {
    Log(LogLevel::kInfo, "takes_commands_again", {{"was", *unavailable_reason}});
  }
  unavailable_reason = std::move(now);
}

void Supervisor::Impl::Pump() {
  if (standby && ready) PromoteIfNeeded();  // a backup takes over as soon as the active is gone, not at the next command
  for (int guard = 0; guard < 1000; ++guard) {
    bool changed = false;
    for (auto& c : active) {
      if (!c.verdict) {
        Decide(c);
        changed = changed || c.verdict.has_value();
      }
    }
    // Update reports of refused commands once every outcome is in.
    while (!active.empty() && active.front().verdict &&
           std::none_of(active.front().outcomes.begin(), active.front().outcomes.end(),
                        [](const auto& o) { return o.second.kind == voter::OutcomeKind::kPending; })) {
      Command& done = active.front();
      NoteSettled(done);
      PublishSettled(done);
      if (!done.report_id.empty()) {
        WriteReport(done, done.verdict->kind == voter::VerdictKind::kPoison ? "blocked" : "no_quorum");
      }
      active.pop_front();
      changed = true;
    }
    for (auto& v : variants) {
      if (v.life == Life::kDiverged && v.channel.head() == nullptr) {
        Kill(v, v.stop_reason, std::nullopt, "");
        changed = true;
      }
    }
    AdvanceCheckpoint();
    if (round) {
      const bool had = round.has_value();
      AdvanceRound();
      changed = changed || (had && !round);
    } else if (RoundNeeded() && Quiescent() && ReadyForRound() && !(retest && !suspects.empty())) {
      StartRound();
      changed = changed || round.has_value();
    }
    // (Those admitted ahead first: they are next in seq order.)
    while ((!admitted_ahead.empty() || !waiting.empty()) && CanDispatch()) {
      const bool ahead = !admitted_ahead.empty();
      Command c = ahead ? std::move(admitted_ahead.front()) : waiting.Pop();
      if (ahead) admitted_ahead.pop_front();
      changed = true;
      if (ahead ? RefusedAtItsTurn(c) : RefusedBeforeDispatch(c)) continue;
      Dispatch(std::move(c));
      break;  // one undecided command at a time
    }
    if (!changed) return;
  }
}

// The first round waits until every variant that can has said hello (or
// the sync deadline passed), so start-up compares all of them at once.
bool Supervisor::Impl::ReadyForRound() const {
  bool any = false;
  std::size_t present = 0;  // could take part in a round now
  bool coming = false;
  for (const auto& v : variants) {
    if (WantsRound(v.life)) any = true;
    if (CanSync(v.life)) ++present;
    coming = coming || ComingBack(v);
    if (!ready && v.life == Life::kStarting &&
        Now() - started_at < milliseconds(config.sync_deadline_ms)) {
      return false;
    }
  }
  // With no variant voting (a command killed them all), the state is
  // rebuilt from the checkpoint and the tail by each variant, and only
  // their agreement shows a replay right: while fewer than a majority of
  // the variants could take part, the round waits for those coming back
  // (within sync_deadline_ms). Otherwise the first one back rebuilt it
  // alone, unchecked, and its state became the checkpoint: the simulator
  // found a variant that corrupts its state on one command handing that
  // state to the others this way.
  const bool any_voting = std::any_of(variants.begin(), variants.end(), [&](const Variant& v) { return Voting(v); });
  if (ready && !any_voting && coming && present < variants.size() / 2 + 1) return false;
  // After a digest tie, a variant coming back is a witness worth waiting for.
  if (tie_retried && coming) return false;
  return any || !checkpoint || !reports_awaiting_pre_state.empty();
}

std::vector<Supervisor::Impl::Watched> Supervisor::Impl::WatchedProcesses() const {
  std::vector<Watched> out;
  for (const auto& v : variants) {
    if (!v.process || v.process->exit_info()) continue;
    // (A pidfd stays readable: once is enough.)
    out.push_back({v.process.get(), !v.exit_seen_at, v.process->stderr_fd() >= 0});
  }
  for (const auto* one : {&probe, &spare}) {
    if (!*one || !(*one)->process || (*one)->process->exit_info()) continue;
    out.push_back({(*one)->process.get(), true, (*one)->process->stderr_fd() >= 0});
  }
  if (retest) {
    for (const auto& [identity, process] : retest->processes) {
      if (process->exit_info()) continue;
      out.push_back({process.get(), !retest->exit_seen.count(identity), process->stderr_fd() >= 0});
    }
  }
  return out;
}

Status Supervisor::Impl::Run(int signal_fd) {
  Status started = Start(signal_fd);
  if (!started.ok()) return started;
  while (!stopping) {
    std::vector<zmq::pollitem_t> items;
    items.push_back({sockets->clients.socket().handle(), 0, ZMQ_POLLIN, 0});
    items.push_back({sockets->variants.socket().handle(), 0, ZMQ_POLLIN, 0});
    items.push_back({nullptr, signal_fd, ZMQ_POLLIN, 0});
    const std::vector<Watched> watched = WatchedProcesses();
    std::vector<std::pair<const Process*, bool>> polled;  // (process, is its pidfd), one per item from items[3]
    for (const auto& w : watched) {
      if (w.exit) {
        items.push_back({nullptr, w.process->pidfd(), ZMQ_POLLIN, 0});
        polled.emplace_back(w.process, true);
      }
      if (w.output) {
        items.push_back({nullptr, w.process->stderr_fd(), ZMQ_POLLIN, 0});
        polled.emplace_back(w.process, false);
      }
    }
    // While a dead process's connection may still be closing, the variants
    // socket's own signalling fd wakes the loop when libzmq has news for it
    // (the pipe's termination, which ConnectionGone sees), instead of the
    // next kExitPoll. (Its readiness is only a hint: SettleExits looks.)
    const bool settling = std::any_of(variants.begin(), variants.end(), [](const Variant& v) { return InExitGrace(v); }) ||
                          (retest && !retest->exit_seen.empty());
    if (settling) items.push_back({nullptr, sockets->variants.socket().get(zmq::sockopt::fd), ZMQ_POLLIN, 0});
    // (Cluster mode: the etcd side's news wakes the loop; ClusterTurn takes it every turn.)
    if (cluster) items.push_back({nullptr, cluster->wake_fd(), ZMQ_POLLIN, 0});
    // A scrape of the metrics endpoint waits for a page rendered here.
    const std::size_t metrics_at = items.size();
    if (metrics_requests) items.push_back({nullptr, metrics_requests->fd(), ZMQ_POLLIN, 0});
    // client_curve: the ZAP handler and the client socket's monitor, last.
    const std::size_t gate_at = items.size();
    if (sockets->client_gate) {
      items.push_back({sockets->client_gate->zap().handle(), 0, ZMQ_POLLIN, 0});
      items.push_back({sockets->client_gate->monitor().handle(), 0, ZMQ_POLLIN, 0});
    }
    const auto wait = std::max(milliseconds(0), std::chrono::duration_cast<milliseconds>(NextDeadline() - Now()));
    recheck_soon = false;
    const auto due = Now() + wait + milliseconds(1);
    try {
      zmq::poll(items.data(), items.size(), wait + milliseconds(1));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
    stalled = Now() > due + kStallThreshold;
    try {
      if (items[2].revents & ZMQ_POLLIN) OnSignal(signal_fd);
      if (stopping) break;
      // zmq_poll's revents are exact for ZeroMQ sockets: a socket that is
      // not readable is not touched (every recv attempt costs system calls).
      Readiness ready;
      ready.clients = (items[0].revents & ZMQ_POLLIN) != 0;
      ready.variants = (items[1].revents & ZMQ_POLLIN) != 0;
      for (std::size_t k = 0; k < polled.size(); ++k) {
        const short revents = items[3 + k].revents;
        if (polled[k].second && (revents & ZMQ_POLLIN)) ready.exited.insert(polled[k].first);
        if (!polled[k].second && (revents & (ZMQ_POLLIN | ZMQ_POLLERR))) ready.output.insert(polled[k].first);
      }
      if (sockets->client_gate) {
        ready.zap = (items[gate_at].revents & ZMQ_POLLIN) != 0;
        ready.monitor = (items[gate_at + 1].revents & ZMQ_POLLIN) != 0;
      }
      Turn(ready);
      if (metrics_requests && (items[metrics_at].revents & ZMQ_POLLIN)) {
        metrics_requests->Answer([this] { return RenderMetrics(); });
      }
    } catch (const std::exception& e) {
      // A bug must not take the supervisor down with it: log, and go on
      // with the next turn (every state has a deadline that recovers it).
      Log(LogLevel::kError, "internal_error", {{"what", e.what()}});
    }
  }
  Shutdown();
  return Status::Ok();
}

void Supervisor::Impl::OnSignal(int signal_fd) {
  signalfd_siginfo info{};
  if (read(signal_fd, &info, sizeof info) != sizeof info) return;
  Log(LogLevel::kInfo, "signal", {{"signal", info.ssi_signo}});
  if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT) {
    stopping = true;
  } else if (info.ssi_signo == SIGHUP) {
    // logrotate: the variants' stderr logs are opened again. (nvsd's own
    // log is its stderr, which whoever started it redirects.)
    for (auto& v : variants) {
      if (v.process) v.process->ReopenLog();
    }
    Publish("logs_reopened", json::object());
  }
}

// One turn of the loop, given what is ready (Run's poll, or a
// simulation): variant messages, stderr, deaths, clients, deadlines, then
// the state machine, then the group commit and what waits for it.
void Supervisor::Impl::Turn(const Readiness& ready) {
  ClusterTurn();
  if (ready.variants) DrainVariantSocket();
  // The retest's probes: stderr, and exits (settled by SettleRetestExits).
  if (retest) {
    for (const auto& [identity, process] : retest->processes) {
      if (process->exit_info()) continue;
      if (ready.output.count(process.get()) != 0) process->DrainStderr();
      if (ready.exited.count(process.get()) != 0 && !retest->exit_seen.count(identity)) {
        retest->exit_seen[identity] = Now();
      }
    }
  }
  for (auto& v : variants) {
    if (v.process && !v.process->exit_info() && ready.output.count(v.process.get()) != 0) v.process->DrainStderr();
  }
  for (auto* one : {&probe, &spare}) {
    if (*one && (*one)->process && ready.output.count((*one)->process.get()) != 0) (*one)->process->DrainStderr();
  }
  for (auto& v : variants) {
    if (v.process && !v.process->exit_info() && !v.exit_seen_at && ready.exited.count(v.process.get()) != 0) {
      OnPidfdReadable(v);
    }
  }
  if (probe && probe->process && !probe->process->exit_info() && ready.exited.count(probe->process.get()) != 0) {
    OnProbeExit();
  }
  if (spare && spare->process && !spare->process->exit_info() && ready.exited.count(spare->process.get()) != 0) {
    OnSpareExit();
  }
  SettleExits();
  SettleRetestExits();
  if (sockets && sockets->client_gate) {
    // Handshakes wait for these answers: before the clients' requests.
    const auto now = Now();
    if (ready.zap) sockets->client_gate->OnZapReadable(now, kMaxMessagesPerTurn);
    if (ready.monitor) sockets->client_gate->OnMonitorReadable(now, kMaxMessagesPerTurn);
    sockets->client_gate->Tick(now);
  }
  if (ready.clients) DrainClientSocket();
  CheckDeadlines();
  // (Not in a stalled turn: replies that came meanwhile are not read
  // yet. Retests are judged, like variants, as of the last full read.)
  if (!stalled) CheckProbeDeadline();
  RetryJournal();
  if (!suspects.empty() && !retest && !round) StartSuspectRetest();
  if (retest && !stalled) retest->retest->OnTime(variants_drained_at);
  PumpRetest();
  Pump();
  AdvanceHandover();
  SendHeartbeats();
  UpdateAvailability();
  if (refusing && Now() - refusing->last_event >= std::chrono::seconds(1)) PublishUnavailable(Now());
  FlushJournalAndReplies();
  PetWatchdog();
  SpawnPendingRestarts();
  KillOrphans();
  KeepSpare();
  CheckPace();
}

}  // namespace nvs::supervisor
