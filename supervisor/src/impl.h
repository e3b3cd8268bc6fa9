// Supervisor::Impl: the decisions nvsd makes that are not in the core yet,
// over the core's components and the shell's interfaces (ARCHITECTURE.md
// §7). Its members are defined in the supervisor_*.cc files, one concern
// each. Private to nvsd.
#pragma once

#include "impl_types.h"

namespace nvs::supervisor {

struct Supervisor::Impl {
  Impl(Config c, Env& e) : env(e), config(std::move(c)) {}

  // The clocks and randomness every decision reads (env.h): Now() and
  // env.UnixNowNs() below, never the system's directly.
  Env& env;
  Config config;
  // The real endpoints (Start): ZeroMQ sockets and the ZAP handler.
  // A simulation gives its own transports and has none of these.
  using Sockets = nvsd::Sockets;
  std::unique_ptr<Sockets> sockets;
  // What the decisions use: the client endpoint (client_transport.h), the
  // variants endpoint (variant_transport.h) and the event endpoint
  // (event_sink.h; nullptr: none). The poll loop polls the sockets.
  ClientTransport* client_transport = nullptr;
  VariantTransport* variant_transport = nullptr;
  EventSink* event_sink = nullptr;
  // A simulation's nvsd (Supervisor::Simulated): no subreaper, cgroups,
  // orphan sweep or systemd.
  bool simulated = false;
  std::vector<Variant> variants;
  std::map<std::string, std::size_t> by_identity;
  std::optional<QuarantineStore> quarantine;
  std::filesystem::path bridge;

  AdmissionQueue<Command> waiting;  // admitted, not dispatched: one FIFO per client, served in turn
  // Where a command's time in nvsd goes (status `stages`, bench/PROFILE.md):
  // queued (read → its dispatch began), the admit's write (→ sent to the
  // variants), the vote (→ decided), and each turn's flush and send of its
  // replies.
  LatencyWindow stage_queued, stage_admit, stage_vote, stage_reply;
  std::deque<Command> active;      // dispatched, not all outcomes in
  std::uint64_t next_command_id = 1;
  std::uint64_t last_seq = 0;
  std::vector<CommittedEntry> tail;  // committed since the checkpoint
  std::optional<Checkpoint> checkpoint;
  int commits_since_checkpoint = 0;

  Checkpointer checkpointer;  // a periodic checkpoint in the making

  // A sync round (only when the pipeline is quiescent): every live variant
  // reports its digest; the digest the trusted variants hold wins; a donor's
  // snapshot becomes the checkpoint and is restored into every variant that
  // lacks that state; restored digests are checked before they vote.
  using Round = nvsd::Round;
  // The state dir (locked while nvsd runs), and the journal segment being
  // written in it.
  std::unique_ptr<PosixStateDir> posix_state;  // the real one (Start)
  StateDir* state = nullptr;                   // what nvsd reads and writes
  std::unique_ptr<JournalWriter> journal;
  FsyncPolicy journal_policy = FsyncPolicy::kAlways;
  std::uint64_t journal_segment = 0;  // index of the segment being written
  // fsync "always", one machine: one fsync per command, the admit's, before
  // any variant is sent it. A commit's verdict is written before its reply
  // and synced with the next admit, or at this time when none comes
  // (kVerdictSyncDelay): after a power cut, a start finds the admit
  // undecided and settles it as a new cluster leader does (commits it when
  // fresh processes agree on it). Every other reply waits for its sync.
  std::optional<Clock::time_point> verdict_sync_due;
  // One machine: a suspect fresh processes could not run on every program
  // (4 tries) is tried again at this time (nothing else is dispatched).
  std::optional<Clock::time_point> suspect_retry_at;
  bool sync_this_turn = false;  // a commit with a client deadline: its verdict synced before its reply
  // (Then: the records written since the last sync, by ordinal, and the
  // ordinal written up to. A failed write or sync cuts the segment back to
  // the last synced record, which can take verdicts already answered:
  // those are written again, in order, once the journal can be written,
  // before anything else (RetryJournal). journal_rewrite holds them.)
  std::vector<std::pair<std::uint64_t, std::string>> unsynced_records;
  std::uint64_t journal_written = 0;
  std::vector<std::string> journal_rewrite;
  // (While a dispatch's failed flush is handled: its admits' first ordinal.)
  std::uint64_t refused_admits_from = std::numeric_limits<std::uint64_t>::max();
  using ClosedSegment = nvsd::ClosedSegment;
  std::deque<ClosedSegment> closed_segments;  // oldest first
  // The checkpoint before the current one (checkpoint.prev.json): recovery
  // falls back to it, so the journal it needs is kept too.
  std::optional<Checkpoint> previous_checkpoint;
  std::optional<Checkpoint> saved_checkpoint;  // what checkpoint.json holds
  // Every variant refused the checkpoint: nvsd does not serve (the reason
  // names the file and the way out).
  std::optional<std::string> checkpoint_problem;
  // The file `checkpoint` was read from or written to (kCheckpointFile or,
  // after a fallback at start, kPreviousCheckpointFile): what a message names.
  std::string checkpoint_file = kCheckpointFile;
  // The last checkpoint could not be written (SaveCheckpoint); status says so.
  std::optional<std::string> checkpoint_error;
  // Storage trouble: the journal (or a quarantine report) could not be
  // written. nvsd refuses commands (`unavailable`, with the reason), answers
  // reads, and tries again every second (RetryJournal).
  using OutgoingReply = nvsd::OutgoingReply;
  using JournalTrouble = nvsd::JournalTrouble;
  std::optional<JournalTrouble> journal_trouble;
  Clock::time_point journal_retry_at{};
  // Replies whose verdict records may or may not be on disk (the writer
  // could not cut them off): held until that is settled (RetryJournal).
  std::vector<OutgoingReply> replies_in_doubt;
  // Quarantines whose reports could not be written yet (QuarantineUnwritten).
  using UnwrittenReport = nvsd::UnwrittenReport;
  std::vector<UnwrittenReport> unwritten_reports;
  // Replies wait here until the journal records they depend on are flushed
  // (group commit: one flush per loop turn, then every reply of the turn).
  std::vector<OutgoingReply> outbox;
  // Every journal record appended gets the next ordinal (AppendRecord); a
  // reply names the ordinal of the verdict record it rests on, so a failed
  // flush settles exactly the replies whose records it lost, and never one
  // resting on a record already on disk (a retry answered from memory).
  std::uint64_t journal_appended = 0;
  // The ordinal of the current segment's record 0 (its k-th record is
  // journal_base + k); reset after records are cut off or rolled over.
  std::uint64_t journal_base = 0;
  // Final replies by request id, so a retry is answered, never re-applied.
  // (Those recovery read from before the checkpoint are kept as their
  // verdict records' text, read on a retry: RememberedReply.)
  RequestMemory answered{config.remembered_requests};

  // Replies a client has not taken yet: its connection's ZeroMQ queue was
  // full (the client socket is ROUTER_MANDATORY, so a full queue is an
  // error, never a silent drop). They go out in order as it drains.
  using Backlog = nvsd::Backlog;
  std::map<std::string, Backlog> backlogs;  // by routing id
  // Clients cut off for not taking their replies (client_backlog_limit):
  // their later requests are not carried out. Oldest first, bounded.
  std::deque<std::string> cut_off_order;
  std::set<std::string> cut_off;
  using ClientCounters = nvsd::ClientCounters;
  ClientCounters client_counters;
  LogThrottle rejected_log{10, std::chrono::seconds(1)};
  LogThrottle undeliverable_log{10, std::chrono::seconds(1)};

  // Commands the journal shows admitted but not decided when nvsd last
  // stopped: it may have sent them to its variants, so each is retested
  // (Retest) before anything else is dispatched, and quarantined if it
  // kills the fresh processes, never simply delivered again.
  using Suspect = nvsd::Suspect;
  std::deque<Suspect> suspects;
  // The retest in progress (one at a time): of a hung-only command (its id)
  // or of suspects.front() (command 0). Its processes, by identity.
  // A release waiting for nvsd's own retest of the command (its answer goes
  // out when the retest is done).
  using PendingRelease = nvsd::PendingRelease;
  using RunningRetest = nvsd::RunningRetest;
  std::optional<RunningRetest> retest;
  int retest_probes_started = 0;

  // Why nvsd cannot take commands at all now (status), or nullopt.
  std::optional<std::string> unavailable_reason;
  // Requests answered `unavailable` since a command was last dispatched
  // (the `unavailable` and `available` events).
  using Refusing = nvsd::Refusing;
  std::optional<Refusing> refusing;
  // The start of the last read of the variants' socket that emptied it:
  // a deadline is only judged once a read that began after it found no
  // reply (see CheckDeadlines).
  Clock::time_point variants_drained_at{};
  bool stalled = false;       // this turn began long after the poll was due
  bool recheck_soon = false;  // the next turn comes at once (after a stall)

  // standby, policy "probe": a disposable process of the new active's
  // program, restored to the state before the command the old active failed
  // on, that runs the command first. It is not a variant: it never votes and
  // is never restarted; its identity is "probe.N".
  using Probe = nvsd::Probe;
  std::optional<Probe> probe;
  // A spare: a probe process started ahead of need for the program of the
  // variant that would be promoted next, idle after its hello. A probe then
  // costs a snapshot, a restore and the command, not a process start.
  std::optional<Probe> spare;
  Clock::time_point spare_not_before;  // after a spare failed: not again before this
  int probes_started = 0;

  std::optional<Round> round;
  bool tie_retried = false;  // the last round ended in a digest tie and was retried from the checkpoint
  std::vector<std::string> reports_awaiting_pre_state;

  bool stopping = false;
  bool ready = false;  // the first sync round is done
  // standby mode: the variant that takes commands (the others follow it).
  bool standby = false;
  std::string active_name;
  // systemd's watchdog (WATCHDOG_USEC): petted from the loop at half the interval.
  std::optional<milliseconds> watchdog_every;
  Clock::time_point watchdog_last;
  Clock::time_point started_at = Now();
  std::uint64_t commits = 0;
  using RecentVerdict = nvsd::RecentVerdict;
  std::deque<RecentVerdict> recent_verdicts;  // the last 10, oldest first

  // ---- small helpers ------------------------------------------------------

  Clock::time_point Now() const { return env.Now(); }

  Variant* Find(const std::string& name);
  const Variant* Find(const std::string& name) const;
  Command* FindActive(std::uint64_t id);
  static void StripProbeResults(json& value);
  void Publish(const std::string& event, json body);
  // Whether anyone subscribes to `event` (build its body only then).
  bool Listening(std::string_view event) const { return event_sink != nullptr && event_sink->Listening(event); }
  void Reply(const ClientAddress& to, const proto::ClientReply& reply, std::uint64_t record = 0);
  // The same reply to a command's client and to every retry attached to it.
  void Answer(const Command& c, const proto::ClientReply& reply, std::uint64_t record = 0);
  std::uint64_t AppendRecord(std::string_view payload);
  void NoteUnavailable(const std::string& reason);
  void PublishUnavailable(Clock::time_point now);
  void NoteDispatched();
  void FlushJournalAndReplies();

  // ---- storage trouble -------------------------------------------------------------

  Flushed FlushJournal(bool force = false, bool sync = true);
  std::string UndecidedWhere() const;
  void OnJournalFailure(const Flushed& flushed);
  OutgoingReply NotCarriedOut(OutgoingReply out, const std::string& reason);
  void UndoCommit(std::uint64_t seq);
  void RetryJournal();
  void SendNow(const ClientAddress& to, const proto::ClientReply& reply);

  using SendResult = ClientTransport::SendResult;
  SendResult TrySend(const std::vector<std::string>& frames) { return client_transport->Send(frames); }

  void Queue(const std::string& peer, Backlog& backlog, std::vector<std::string> frames);
  void CutOff(const std::string& peer);
  void Undeliverable(const std::string& peer, std::size_t replies);
  void RetryBacklogs();
  int HealthyVoters() const;
  int NotFailed() const;
  // The one place a variant's Life changes: Next(v.life, event) from the
  // table; logged and published when it changes, an internal error when
  // the table says the event cannot happen there.
  void Transit(Variant& v, LifeEvent event, const std::string& why);

  void Send(Variant& v, const proto::Request& request, Purpose purpose, std::string_view reply_type,
            std::uint64_t command = 0);

  bool SendToIdentity(const std::string& identity, const std::string& bytes);

  // Whether the connection that carried `identity`'s messages is gone from
  // the variants socket, so that nothing it sent can still arrive (used
  // only for processes seen dead).
  bool ConnectionGone(const std::string& identity) { return variant_transport->ConnectionGone(WireId(identity)); }

  void OnAnswered(Variant& v);

  // Requests sent and held.
  static std::size_t InFlight(const Variant& v) { return v.channel.in_flight(); }

  // ---- lifecycle ------------------------------------------------------------

  // ---- orphans ---------------------------------------------------------------------
  //
  // nvsd is a child subreaper (PR_SET_CHILD_SUBREAPER, set in Start): a
  // process a variant started that left its process group (setsid) and
  // outlived it is handed to nvsd, not to init. Any child of nvsd that is
  // not one of its variants, probes or retests is such an orphan: killed
  // and reaped. (An outside test had a variant's setsid child survive the
  // variant's kill and nvsd's stop.)
  std::set<pid_t> orphans;  // killed, not reaped yet
  Clock::time_point next_orphan_check{};
  // A cgroup per variant process where the host offers one (cgroups.h);
  // else nullptr, and `no_cgroups` says why.
  std::unique_ptr<VariantCgroups> cgroups;
  std::string no_cgroups;

  // ---- metrics ---------------------------------------------------------------------
  //
  // metrics_endpoint: Prometheus scrapes it (nvs_metrics); the page is
  // rendered here, on the loop, when metrics_requests' fd is readable.
  MetricCounters metric_counters;
  std::shared_ptr<metrics::PageRequests> metrics_requests;  // (shared with the endpoint's handler, which may outlive it)
  std::unique_ptr<metrics::Endpoint> metrics_endpoint;
  // The variant that sets the pace (UpdatePace), if one does.
  std::optional<std::string> paced_by;
  std::uint64_t settled_since_pace_check = 0;
  Clock::time_point last_settled_at{};

  std::string RenderMetrics() const;
  void NoteSettled(const Command& c);
  void UpdatePace();
  void CheckPace();
  json PaceJson(const Variant& v) const;

  std::set<std::string> LiveIdentities() const;
  void EmptyDeadCgroups();
  std::set<pid_t> OwnChildren() const;
  void KillOrphans(bool now = false);

  // ---- routing ids ---------------------------------------------------------------
  //
  // A process's identity (router-a.3, probe.7, retest.2) names it in logs,
  // events and status. On the variants socket it is known by its routing id:
  // the identity, a dot and 32 random hex digits, given to it in NVS_VARIANT
  // and to nobody else. A process that guesses the identity of the next
  // incarnation (the event socket announces restarts) cannot connect as it:
  // a message from an unknown routing id is ignored, and nothing is sent to
  // one. (An outside test did so over a tcp variant endpoint, received the
  // state and every command, and won a vote with a lie.)
  std::unordered_map<std::string, std::string> wire_of;      // identity -> routing id
  std::unordered_map<std::string, std::string> identity_of;  // routing id -> identity
  std::deque<std::string> wire_order;                        // identities, oldest first
  std::uint64_t unknown_peers = 0;                           // messages from routing ids nvsd never gave out

  const std::string& NewWireId(const std::string& identity);
  const std::string& WireId(const std::string& identity) const;
  const std::string* IdentityOf(const std::string& routing_id);
  Result<SpawnSpec> SpecFor(const VariantConfig& vc, const std::string& identity, const std::string& log_name);
  void Spawn(Variant& v, const std::string& why);
  void Restart(Variant& v, const std::string& why);
  void SpawnPendingRestarts();
  void Kill(Variant& v, const std::string& why, std::optional<voter::OutcomeKind> blame, const std::string& detail);
  void FailOutstanding(Variant& v, std::optional<voter::OutcomeKind> blame, const std::string& detail);

  // Its process has exited and the death is not judged yet.
  static bool InExitGrace(const Variant& v) { return v.exit_seen_at && v.process && !v.process->exit_info(); }

  // Whether `sent` went out before the process was seen dead.
  static bool Delivered(const Variant& v, const Sent& sent) { return !v.exit_seen_at || sent.sent_at < *v.exit_seen_at; }

  void OnPidfdReadable(Variant& v);
  void SettleExits();
  void OnProcessExit(Variant& v);

  // ---- variant messages -------------------------------------------------------

  bool DrainVariantSocket(int max = kMaxMessagesPerTurn);
  void OnVariantMessage(Variant& v, std::string_view bytes);
  void OnLateOutcome(Command& c, Variant& v);
  void MarkDivergent(const Command& c, Variant& v, const std::string& got);

  // ---- clients -----------------------------------------------------------------

  void DrainClientSocket();
  void RejectUnreadable(const ClientAddress& address, const proto::ClientReply& rejection);

  std::int64_t UnixNowMs() const { return env.UnixNowNs() / 1'000'000; }

  // The client's deadline for `c` (expires_at_ms) has passed: it must not
  // be carried out (CLIENT.md §2).
  bool HasExpired(const Command& c) const { return c.expires_at_ms && UnixNowMs() > *c.expires_at_ms; }

  proto::ClientReply ExpiredReply(const Command& c, const std::string& when) const;
  void OnClientRequest(const ClientAddress& address, std::string_view bytes);
  bool AnswerRetry(const Command& c);
  bool RefuseIfBlocked(const Command& c, std::uint64_t record = 0);
  bool RefusedBeforeDispatch(Command& c);
  std::vector<Command> AdmitBehind();
  bool RefusedAtItsTurn(Command& c);
  std::uint64_t AbandonAdmitted(const Command& c, const std::string& reason);
  JournalRecord AdmitRecord(const Command& c) const;
  void RememberVerdict(const Command& c);
  json RecentVerdictsJson() const;

  // ---- quarantine review (CLIENT.md §4) ----------------------------------------

  static proto::ClientReply Ok(const std::string& id, const json& body);
  std::optional<proto::ClientReply> QuarantineReply(const ClientAddress& from, const std::string& id, const json& args);
  proto::ClientReply Review(const PendingRelease& d, const std::string& action, const json& retested);
  void FinishRelease(Retest& r, const PendingRelease& d, json described);
  proto::ClientReply StatusReply(const std::string& id);

  // ---- the pipeline -----------------------------------------------------------

  bool RoundNeeded() const;
  bool Quiescent() const;
  bool CanDispatch() const;
  bool IsPacing(const Variant& v, Clock::time_point answering_since) const;
  Variant* PromoteIfNeeded();
  void DecideStandby(Command& c);

  // ---- retests (Retest) ------------------------------------------------------

  Retest::PreState PreStateBefore(std::uint64_t seq) const;

  void StartRetest(const std::vector<std::string>& names, const Retest::Command& command, std::uint64_t pre_state_seq,
                   std::uint64_t command_id, const std::string& why);

  void StartRetestOf(const std::vector<std::string>& names, std::vector<Retest::Command> commands,
                     Retest::PreState pre_state, std::uint64_t command_id, const std::string& why,
                     std::optional<PendingRelease> release);

  void StartHungRetest(const Command& c, const std::vector<std::string>& hung);
  void StartSuspectRetest();
  void PumpRetest();
  void SettleRetestExits();
  void FinishRetest();
  void FinishSuspects(const Retest& r);
  bool FinishSuspect(const Retest& r, std::size_t i);
  void CommitRederived(const Suspect& s, const std::string& result, json described);
  void ExpireSuspect(const Suspect& s, const json& described);

  // ---- standby probe (policy "probe") ---------------------------------------

  bool StartProbe(Command& c);
  Result<Probe> StartProbeProcess(const VariantConfig& vc);
  void KeepSpare();
  void OnSpareMessage(std::string_view bytes);
  void OnSpareExit();
  bool DeliverAfterProbe(Command& c);
  bool SendToProbe(const proto::Request& request);
  void EndProbe(const std::string& outcome, const std::string& detail, const std::string& result = "");
  void AdvanceProbe();
  void OnProbeMessage(std::string_view bytes);
  void OnProbeExit();
  void OnProbeSnapshot(std::uint64_t command, const proto::StateReply& state);
  Clock::time_point ProbeDeadline() const;
  void CheckProbeDeadline();
  void Dispatch(Command c);
  std::vector<voter::Outcome> OutcomesOf(const Command& c) const;
  const voter::Outcome& CountedOutcome(const Command& c, const std::string& name) const;
  bool OnlyHangsMakeItPoison(const Command& c, const voter::Verdict& verdict) const;
  void Decide(Command& c);
  void OnExpired(Command& c);
  void PublishSettled(const Command& c);
  void PublishVerdict(const Command& c, const voter::Verdict& verdict);
  std::uint64_t MarkRefused(std::uint64_t seq, const std::string& note);
  void ReplyCommand(const Command& c, const proto::ClientReply& reply);
  void Remember(const std::string& key, const proto::ClientReply& reply, std::uint64_t record = 0);
  void JournalVerdict(Command& c);
  static JournalRecord VerdictRecord(const Command& c);
  void OnCommit(Command& c);
  static std::string ReportId(const char* kind, std::uint64_t seq, const std::string& fingerprint);
  void OnPoison(Command& c);
  void OnNoQuorum(Command& c);
  void RollBack(Command& c);
  json ReportOf(const Command& c, const std::string& status);
  Status WriteReport(const Command& c, const std::string& status, std::string* text = nullptr);
  void QuarantineUnwritten(const Command& c, const std::string& text, const std::string& error);
  void RecordPreState();

  // ---- checkpoints and sync rounds --------------------------------------------

  void StartCheckpoint(const Command& c);
  void AdvanceCheckpoint();
  void SaveCheckpoint();
  void RotateJournal();
  void StartRound();
  std::uint64_t LastCommittedSeq() const;
  void SendPaced(Variant& v, const proto::Request& request, Purpose purpose, std::string_view reply_type);

  // Healthy, checked, and its process not seen dead.
  static bool Voting(const Variant& v) { return Votes(v.life); }

  void AdvanceRound();
  bool RefusedCheckpoint(Round& r);
  void OnRoundSnapshot(Variant& v, const proto::StateReply& state);
  void FinishRound();

  // ---- deadlines -----------------------------------------------------------------

  milliseconds DeadlineFor(Purpose purpose) const;
  const Command* WaitingBehind(const Variant& v) const;
  Clock::time_point VoteDeadline(const Variant& v, const Command& c) const;

  // ---- a variant's timers -----------------------------------------------------
  //
  // Each rule is written once: NextDeadline wakes the loop at it, and the
  // code that acts (CheckDeadlines, SendHeartbeats) acts when it has passed.
  // (Written twice, they drifted: a syncing variant while the checkpoint was
  // refused woke the loop at a deadline nothing acted on, every turn.)

  std::optional<Clock::time_point> ReplyDue(const Variant& v) const;
  std::optional<Clock::time_point> BehindDue(const Variant& v) const;
  std::optional<Clock::time_point> ProgressDue(const Variant& v) const;
  std::optional<Clock::time_point> StopDue(const Variant& v) const;
  std::optional<Clock::time_point> RestartDue(const Variant& v, bool undecided) const;
  bool AnyUndecided() const {
    return std::any_of(active.begin(), active.end(), [](const Command& c) { return !c.verdict; });
  }
  std::optional<Clock::time_point> PingDue(const Variant& v) const;
  void PetWatchdog();
  void SendHeartbeats();
  Clock::time_point NextDeadline() const;
  std::string WhyStillWaiting() const;
  void CheckDeadlines();
  void CheckQueueDeadlines();
  std::optional<std::string> UnavailableNow() const;
  void UpdateAvailability();

  // ---- the state machine step ----------------------------------------------------

  void Pump();
  bool ReadyForRound() const;
  // Starting, or down with its restart due, within sync_deadline_ms: a
  // round may wait for it as a witness (ReadyForRound, AdvanceRound).
  bool ComingBack(const Variant& v) const {
    // (An exited one is restarted once its death is judged.)
    const bool starting = v.life == Life::kStarting || v.life == Life::kExited || (v.life == Life::kDown && v.restart_pending);
    return starting && Now() - std::max(started_at, v.state_since) < milliseconds(config.sync_deadline_ms);
  }
  static void OwnerOnly(const std::string& endpoint);

  // ---- run ---------------------------------------------------------------------------

  Status Start(int signal_fd);
  Status StartCore(std::int64_t pid);
  void SpawnAll();
  Status Recover();
  void FinalCheckpoint();
  void Shutdown();

  // Every process nvsd watches, with what to poll of it: its pidfd (until
  // its exit was seen) and its stderr (until EOF). Run polls these; a
  // simulation asks its own processes.
  using Watched = nvsd::Watched;
  std::vector<Watched> WatchedProcesses() const;
  Status Run(int signal_fd);
  void OnSignal(int signal_fd);
  void Turn(const Readiness& ready);

  // ---- cluster mode (ARCHITECTURE.md §8; supervisor_cluster.cc) ----------------
  //
  // The leader writes every journal record to etcd, fenced on its leader
  // key, after the local flush and before it acts on it (dispatch after
  // the admit, a reply after the verdict); a member that does not lead
  // answers `not_leader`, and applies what etcd's log says was committed,
  // one behind. A leader that cannot write, or whose lease may have ended
  // on its own clock, steps down: Run returns and nvsd starts again as a
  // follower (its state dir rebuilt from etcd).
  std::unique_ptr<ClusterMember> cluster;  // nullptr: one machine
  bool leading = false;
  bool restart_as_follower = false;
  std::uint64_t cluster_next_index = 0;  // the cluster-wide ordinal of the next log record
  std::vector<std::string> cluster_out;  // leader: records appended, not yet in etcd
  std::size_t cluster_out_bytes = 0;     // (their size: past kClusterBatchBytes they go at the end of the turn)
  // leader: when what cluster_out holds must be in etcd at the latest (a
  // commit's reply does not wait for its verdict's write: the next admit
  // carries it, or this deadline).
  std::optional<Clock::time_point> cluster_due;
  std::uint64_t cluster_replicated = 0;  // leader: the journal ordinal up to which etcd has the records
  // leader, for status: its etcd writes, the records they carried, and how
  // long the latest took (us, the last 1000).
  std::uint64_t cluster_writes = 0;
  std::uint64_t cluster_records_written = 0;
  LatencyWindow cluster_write_latency;
  std::vector<std::pair<std::string, std::string>> cluster_puts;     // reports, the checkpoint: with the next batch
  std::vector<std::pair<std::string, std::string>> cluster_deletes;  // log batches a checkpoint covers
  // The batches written (a leader) or applied (a follower, and at a start
  // from etcd) since the last checkpoint: (index, highest seq in it),
  // oldest first.
  std::deque<std::pair<std::uint64_t, std::uint64_t>> cluster_batches;
  // leader: commands taken from `waiting` and admitted with the one
  // dispatched before them (one etcd write for them all), in seq order,
  // each dispatched in its turn (a query among them is not admitted).
  std::deque<Command> admitted_ahead;
  std::map<std::uint64_t, Suspect> cluster_admits;  // follower: admitted by the leader, not decided yet
  std::deque<cluster::KeyValue> cluster_backlog;    // follower: batches to apply once no sync round runs
  std::uint64_t cluster_applied_batches = 0;        // follower: the next record index expected
  cluster::RangeResult cluster_initial;             // what JoinCluster read (the watch goes on after it)
  bool promote_pending = false;                     // elected during a sync round: promoted after it
  // follower: the leader's checkpoint (seq, digest) that came before this
  // member's own at that seq was done; compared once it is.
  std::optional<std::pair<std::uint64_t, std::string>> leader_checkpoint;
  // follower: the digests of its own latest checkpoints, by seq (the
  // leader's come later, through etcd).
  std::map<std::uint64_t, std::string> own_checkpoints;
  std::uint64_t checkpoints_matched = 0;    // follower: how many of the leader's checkpoints its state matched
  std::uint64_t checkpoints_unchecked = 0;  // follower: how many it had no checkpoint of its own to compare with
  // `nvs cluster handover`: the leader takes no new command, and once none
  // is undecided it resigns (the next member in line leads) and starts
  // again as a follower; answered then, or `unavailable` at its deadline.
  struct Handover {
    ClientAddress to;
    std::string request_id;
    std::string by;
    std::string note;
    Clock::time_point deadline;
  };
  std::optional<Handover> handover;

  Status JoinCluster(int signal_fd);
  void WriteClusterReports(const std::vector<cluster::KeyValue>& reports);
  void ClusterTurn();
  bool Replicate();
  void ApplyClusterBacklog();
  bool ApplyClusterBatch(const cluster::KeyValue& batch);
  void ApplyClusterRecord(std::string_view payload);
  void StartFollowerCheckpoint(std::uint64_t seq);
  void CheckAgainstLeader(const std::string& value);
  void OnFollowerCheckpoint(const Checkpoint& own);
  void CompareWithLeader(std::uint64_t seq, const std::string& own, const std::string& leaders);
  void Promote();
  void StepDown(const std::string& why);
  void ClusterPut(const std::string& suffix, const std::string& value);
  void ClusterCheckpoint();
  proto::ClientReply NotLeader(const std::optional<std::string>& id, const std::string& why) const;
  std::optional<proto::ClientReply> ClusterRequest(const ClientAddress& from, const std::string& id, const json& args);
  void AdvanceHandover();
  json ClusterStatusJson() const;

};

}  // namespace nvs::supervisor
