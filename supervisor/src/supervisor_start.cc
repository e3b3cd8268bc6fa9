// Starting and stopping: the state dir, recovery, the variants' first start,
// the checkpoint at stop and the shutdown (ARCHITECTURE.md §5, §7).
#include "impl.h"

namespace nvs::supervisor {

// An ipc socket file is made owner-only (tcp endpoints have no file).
void Supervisor::Impl::OwnerOnly(const std::string& endpoint) {
  if (endpoint.rfind("ipc://", 0) != 0) return;
  std::error_code ec;
  std::filesystem::permissions(endpoint.substr(6), std::filesystem::perms::owner_read | std::filesystem::perms::owner_write,
                               ec);
}

// The real world around the decisions: the subreaper, the state dir
// (checked, locked), the cgroups, the sockets. Then StartCore.
Status Supervisor::Impl::Start(int signal_fd) {
  std::error_code ec;
  // Orphans of the variants come to nvsd, which kills them (KillOrphans).
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    return Status::Error(std::string("cannot become a child subreaper: ") + std::strerror(errno));
  }

  // The state dir holds the journal and the quarantine decisions. As
  // OpenSSH's StrictModes (and PostgreSQL's data directory): it, every
  // folder and file in it, and the folders above it must be nvsd's user's
  // (or root's, above it), no link, nothing others can write. A state dir
  // that fails is refused, naming the path and the reason, never "fixed"
  // silently. (An outside test had nvsd take a dir another user made,
  // follow their `journal` link, append to a root file through a linked
  // log, and obey a report they wrote.)
  namespace fs = std::filesystem;
  const fs::path dir = fs::absolute(config.state_dir, ec).lexically_normal();
  struct stat st {};
  if (lstat(dir.c_str(), &st) != 0) {
    fs::create_directories(dir.parent_path(), ec);
    if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return Status::Error("state_dir " + dir.string() + ": " + std::strerror(errno));
    }
  }
  if (Status own = CheckOwnPath(dir, /*directory=*/true); !own.ok()) return Status::Error("state_dir: " + own.message());
  if (Status above = CheckAncestors(dir); !above.ok()) return Status::Error("state_dir: " + above.message());
  auto opened_dir = PosixStateDir::Open(dir);
  if (!opened_dir.ok()) return Status::Error("state_dir " + opened_dir.status().message());
  posix_state = std::move(opened_dir.value());
  posix_state->ReadOwnFilesOnly();
  state = posix_state.get();
  // One nvsd per state dir: two would both append to its journal (an
  // outside test lost thousands of acknowledged commits that way).
  Status locked = posix_state->Lock();
  if (!locked.ok()) return locked;
  fs::permissions(dir, fs::perms::owner_all, ec);
  for (const char* sub : {kJournalDir, "logs", "quarantine"}) {
    StorageError error;
    if (Status made = state->MakeDir(sub, &error); !made.ok()) return Status::Error("state_dir " + made.message());
  }
  if (Status tree = CheckOwnTree(dir, {kJournalDir, "logs", "quarantine"}); !tree.ok()) {
    return Status::Error("state_dir: " + tree.message());
  }
  for (const char* sub : {kJournalDir, "logs", "quarantine"}) fs::permissions(dir / sub, fs::perms::owner_all, ec);

  // (After the checks: a refused start leaves no cgroup behind.)
  cgroups = VariantCgroups::Open("nvsd." + std::to_string(getpid()), &no_cgroups);
  bridge = config.stdio_bridge;
  if (bridge.empty()) {
    std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
    bridge = self.parent_path() / "nvs-stdio-bridge";
  }
  sockets = std::make_unique<Sockets>();
  if (config.client_curve) {
    // Before the bind: no client may meet the CURVE server before its ZAP handler.
    auto gate = ClientGate::Open(sockets->context, sockets->clients.socket(), *config.client_curve);
    if (!gate.ok()) return gate.status();
    sockets->client_gate = std::move(gate.value());
  }
  try {
    if (Status bound = sockets->clients.Bind(config.client_endpoint); !bound.ok()) return bound;
    OwnerOnly(config.client_endpoint);
    if (Status bound = sockets->variants.Bind(config.variant_endpoint); !bound.ok()) return bound;
    OwnerOnly(config.variant_endpoint);
    if (!config.event_endpoint.empty()) {
      sockets->events.emplace(sockets->context);
      if (Status bound = sockets->events->Bind(config.event_endpoint); !bound.ok()) return bound;
      event_sink = &*sockets->events;
      OwnerOnly(config.event_endpoint);
    }
  } catch (const zmq::error_t& e) {
    return Status::Error(std::string("cannot bind: ") + e.what());
  }
  client_transport = &sockets->clients;
  variant_transport = &sockets->variants;
  if (!config.metrics_endpoint.empty()) {
    // Its page is rendered on this loop (RenderMetrics), at most 2 s after a
    // scrape asks: a loop stuck longer answers 503, which says so.
    metrics_requests = std::make_shared<metrics::PageRequests>();
    auto endpoint = metrics::Endpoint::Start(config.metrics_endpoint, [requests = metrics_requests] {
      return requests->Ask(std::chrono::seconds(2));
    });
    if (!endpoint.ok()) return endpoint.status();
    metrics_endpoint = std::move(endpoint.value());
  }
  if (config.cluster) {
    if (Status joined = JoinCluster(signal_fd); !joined.ok()) return joined;
  }
  Status core = StartCore(getpid());
  if (!core.ok()) return core;
  if (cluster) {
    // What the leader admitted and has not decided is its to decide: a
    // follower waits for the verdict in the log (a suspect only if it
    // comes to lead).
    for (auto& s : suspects) cluster_admits[s.seq] = std::move(s);
    suspects.clear();
    std::vector<cluster::KeyValue> reports;
    for (const auto& kv : cluster_initial.kvs) {
      if (kv.key.rfind(cluster->Key("quarantine/"), 0) == 0) reports.push_back(kv);
    }
    WriteClusterReports(reports);
  }
  Log(LogLevel::kInfo, "starting",
      {{"client_endpoint", config.client_endpoint},
       {"client_security", config.client_curve ? "curve" : "none"},
       {"authorized_keys", config.client_curve ? json(config.client_curve->authorized.size()) : json()},
       {"event_endpoint", config.event_endpoint},
       {"metrics_endpoint", metrics_endpoint ? json(metrics_endpoint->address()) : json()},
       {"variant_endpoint", config.variant_endpoint},
       {"variants", variants.size()},
       {"policy", std::string(voter::ToString(config.policy.kind))},
       {"quarantined", quarantine->blocked_count()},
       {"containment", cgroups ? cgroups->Describe()
                               : "a child subreaper only (no cgroup: " + no_cgroups + ")"}});
  {
    // What the variants' clean environment leaves out of nvsd's (names
    // only): a variant that needed one gets it through its `env`.
    json dropped = json::array();
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string_view entry(*e);
      const std::string name(entry.substr(0, entry.find('=')));
      if (!PassedToVariants(name) && name != "PATH") dropped.push_back(name);
    }
    if (!dropped.empty()) {
      Log(LogLevel::kInfo, "variant_environment",
          {{"not_passed", dropped},
           {"why", "a variant gets a clean environment: PATH, NVS_* and its config's env (supervisor/CONFIG.md)"}});
    }
  }
  for (const auto& v : config.variants) {
    if (geteuid() == 0 && v.user.empty()) {
      Log(LogLevel::kWarn, "variant_runs_as_root",
          {{"variant", v.name}, {"why", "it has no \"user\": it runs as nvsd does, and is trusted as nvsd is "
                                        "(it could read nvsd's key and write its journal)"}});
    }
  }
  std::uint64_t watchdog_usec = 0;
  if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0) {
    watchdog_every = milliseconds(std::max<std::uint64_t>(1, watchdog_usec / 2000));
    Log(LogLevel::kInfo, "watchdog", {{"every_ms", watchdog_every->count()}});
  }
  SpawnAll();
  if (cluster) {
    Status joined = cluster->Start(cluster_initial);
    if (!joined.ok()) return joined;
    cluster->SetApplied(last_seq, "follower");
    Log(LogLevel::kInfo, "cluster_member", {{"cluster", config.cluster->name}, {"member", config.cluster->member},
                                            {"advertise_endpoint", config.cluster->advertise_endpoint},
                                            {"lease_ttl_s", config.cluster->lease_ttl_s}});
  }
  return Status::Ok();
}

// What every nvsd does at start, over whatever state dir and transports
// it was given: the quarantine decisions read, recovery, the `start`
// record (`pid`: whose). The variants are then spawned (SpawnAll).
Status Supervisor::Impl::StartCore(std::int64_t pid) {
  std::vector<std::string> warnings;
  auto store = QuarantineStore::Open(*state, "quarantine", warnings);
  if (!store.ok()) return store.status();
  quarantine = std::move(store.value());
  for (const auto& w : warnings) Log(LogLevel::kWarn, "quarantine_store", {{"warning", w}});
  standby = config.mode == "standby";
  active_name = config.variants.front().name;
  Status recovered = Recover();
  if (!recovered.ok()) return recovered;
  // Which programs ran from here on: `nvs replay` starts the same ones
  // when it is given no config.
  JournalRecord start;
  start.type = "start";
  start.time_ns = env.UnixNowNs();
  start.pid = pid;
  start.config = VariantsAndPolicyJson(config);
  AppendRecord(EncodeJournalRecord(start));
  for (const auto& vc : config.variants) {
    Variant v;
    v.config = vc;
    v.intensity = RestartIntensity(config.restart.intensity, config.restart.period_ms);
    variants.push_back(std::move(v));
  }
  return Status::Ok();
}

void Supervisor::Impl::SpawnAll() {
  for (auto& v : variants) Spawn(v, "start");
  variants_drained_at = Now();
  StartSuspectRetest();
}

// Rebuilds what nvsd knew before it stopped (or was killed) from the
// state dir (recovery.h): the checkpoint, the committed tail after it, the
// last sequence number, the final replies by request id, and the suspects
// (admitted, never decided: retested before anything is dispatched). Then
// opens the newest journal segment for appending, a torn tail cut off.
Status Supervisor::Impl::Recover() {
  journal_policy = config.fsync == "always" ? FsyncPolicy::kAlways
                   : config.fsync == "batch" ? FsyncPolicy::kBatch
                                             : FsyncPolicy::kNone;
  // Cluster mode: etcd holds the durable log, and a member rebuilds its
  // state dir from etcd at every start (JoinCluster): the local journal is
  // a cache, and an fsync of it would make nothing more durable (it cost a
  // leader two per command, a third of its commit latency).
  if (config.cluster) journal_policy = FsyncPolicy::kNone;
  StorageError error;
  const auto began = Now();
  auto recovered = RecoverStateDir(*state, RecoveryOptions{config.remembered_requests});
  const auto read_at = Now();
  if (!recovered.ok()) return recovered.status();
  Recovered& r = recovered.value();
  for (const auto& warning : r.warnings) Log(LogLevel::kError, "recovery", {{"warning", warning}});
  checkpoint = r.checkpoint;
  // What checkpoint.json holds, if it is good: the next checkpoint keeps
  // it as the previous one (a damaged one is simply replaced).
  if (r.checkpoint_is_current) saved_checkpoint = r.checkpoint;
  checkpoint_file = r.checkpoint && !r.checkpoint_is_current ? kPreviousCheckpointFile : kCheckpointFile;
  previous_checkpoint = r.checkpoint_is_current ? r.previous_checkpoint : r.checkpoint;
  last_seq = r.last_seq;
  commits = r.commits;
  for (auto& e : r.tail) tail.push_back({e.seq, e.time_ns, std::move(e.payload)});
  for (auto& [id, reply] : r.remembered) answered.Remember(id, std::move(reply));
  for (auto& s : r.suspects) {
    Suspect& added = suspects.emplace_back();
    added.seq = s.seq;
    added.time_ns = s.time_ns;
    added.request_id = std::move(s.request_id);
    added.client = std::move(s.client);
    added.fingerprint = std::move(s.fingerprint);
    added.payload = std::move(s.payload);
    added.key = std::move(s.key);
    added.expires_at_ms = s.expires_at_ms;
    // (Under fsync "always" a commit's reply goes once its verdict is
    // written, and the verdict is synced with the next admit: after a
    // power cut an undecided admit may have been answered `committed`. It
    // is settled as a new cluster leader settles one: committed at its seq
    // when fresh processes of every program agree on it. Not one storage
    // trouble went through: a reply resting on a lost record is held
    // until the `mark` is on disk, and says `not carried out`, while a
    // commit answered before the trouble has its verdict written again
    // before that mark.)
    added.rederive = !s.before_mark;
  }
  for (const auto& c : r.closed) closed_segments.push_back({c.index, c.max_seq});
  journal_segment = r.current;
  auto file = state->OpenForAppend(JournalSegmentName(journal_segment), &error);
  if (!file.ok()) return Status::Error("cannot open the journal: " + file.status().message());
  auto writer = r.current_good_bytes == 0
                    ? JournalWriter::Start(std::move(file.value()), journal_policy, config.fsync_batch_ms, &error)
                    : JournalWriter::Continue(std::move(file.value()), r.current_good_bytes, r.current_records,
                                              journal_policy, config.fsync_batch_ms, &error);
  if (!writer.ok()) return Status::Error("cannot write the journal: " + writer.status().message());
  journal = std::move(writer.value());
  journal_appended = journal->records();
  journal_base = 0;
  if (r.current_good_bytes == 0) {
    Status synced = state->SyncDir(kJournalDir, &error);
    if (!synced.ok()) return synced;
  }
  if (!r.torn.empty()) {
    Log(LogLevel::kWarn, "journal_tail_cut", {{"segment", state->Where(JournalSegmentName(journal_segment)).string()},
                                              {"damage", r.torn}, {"records_kept", r.current_records}});
  }
  if (r.skipped > 0) {
    Log(LogLevel::kError, "journal_records_skipped",
        {{"count", r.skipped}, {"first", r.skipped_examples},
         {"why", "records of a shape nvsd does not write (a bug or a hand edit); what they held is not recovered"}});
  }
  if (r.commits_without_command_count > 0) {
    Log(LogLevel::kError, "journal_commits_without_command",
        {{"count", r.commits_without_command_count}, {"seqs", r.commits_without_command},
         {"why", "committed after the checkpoint but their admit records are missing or unreadable; "
                 "the state is rebuilt without them"}});
  }
  commits_since_checkpoint = static_cast<int>(tail.size());
  if (r.records_read > 0 || checkpoint) {
    Log(LogLevel::kInfo, "recovered",
        {{"checkpoint_seq", checkpoint ? checkpoint->seq : 0}, {"tail", tail.size()}, {"last_seq", last_seq},
         {"commits", commits}, {"suspects", suspects.size()}, {"segments_read", r.segments_read},
         {"records_read", r.records_read}, {"requests_remembered", answered.size()},
         {"read_ms", std::chrono::duration<double, std::milli>(read_at - began).count()},
         {"recovery_ms", std::chrono::duration<double, std::milli>(Now() - began).count()}});
  }
  return Status::Ok();
}

// At SIGTERM: a checkpoint of the committed state, so the next start
// replays nothing (an outside test: no checkpoint at stop, and the next
// start replayed every commit since the last periodic one). Taken from a
// voting variant, and only when every other voting variant's digest
// agrees; within stop_grace_ms, else not at all (and the log says why).
// A variant still busy (a heartbeat out, or a command decided without
// its reply) is asked too: it answers in order, once that is done. (Only
// idle ones were asked before, so a stop that fell on a heartbeat left
// just the last periodic checkpoint: a cluster test comparing members'
// checkpoints at stop failed on it under load.)
void Supervisor::Impl::FinalCheckpoint() {
  if (!journal || journal_trouble || checkpoint_problem || (checkpoint && tail.empty())) return;
  if (AnyUndecided()) {
    Log(LogLevel::kWarn, "checkpoint_at_stop_skipped",
        {{"why", "a command was being decided at stop (its admit is kept: the next start retests it)"}});
    return;
  }
  // (The voting ones with nothing held back: the first idle one, if any,
  // gives the snapshot.)
  std::vector<Variant*> asked;
  for (auto& v : variants) {
    if (Voting(v) && !v.channel.waiting()) asked.insert(v.channel.idle() ? asked.begin() : asked.end(), &v);
  }
  if (asked.empty()) {
    Log(LogLevel::kWarn, "checkpoint_at_stop_skipped", {{"why", "no voting variant was caught up at stop"}});
    return;
  }
  const std::uint64_t seq = LastCommittedSeq();
  std::optional<proto::StateReply> snapshot;
  std::map<std::string, std::string> digests;  // identity -> digest
  SendToIdentity(asked.front()->identity, proto::Encode(proto::Request(proto::SnapshotRequest{seq})));
  for (std::size_t i = 1; i < asked.size(); ++i) {
    SendToIdentity(asked[i]->identity, proto::Encode(proto::Request(proto::DigestRequest{seq})));
  }
  const auto until = Now() + milliseconds(config.stop_grace_ms);
  while ((!snapshot || digests.size() + 1 < asked.size()) && Now() < until) {
    variant_transport->Wait(std::max(milliseconds(1), std::chrono::duration_cast<milliseconds>(until - Now())));
    std::string identity;
    std::vector<std::string> parts;
    while (variant_transport->Receive(&identity, &parts)) {
      if (parts.size() != 1) continue;
      auto decoded = proto::DecodeReply(parts[0]);
      if (!decoded.ok() || proto::SeqOf(decoded.value()) != seq) continue;
      const std::string* from = IdentityOf(identity);
      if (from == nullptr) continue;
      if (auto* st = std::get_if<proto::StateReply>(&decoded.value()); st != nullptr && *from == asked.front()->identity) {
        snapshot = *st;
      } else if (auto* d = std::get_if<proto::DigestReply>(&decoded.value())) {
        digests[*from] = d->digest;
      }
    }
  }
  const bool agreed = snapshot && digests.size() + 1 == asked.size() &&
                      std::all_of(digests.begin(), digests.end(),
                                  [&](const auto& entry) { return entry.second == snapshot->digest; });
  if (!agreed) {
    Log(LogLevel::kWarn, "checkpoint_at_stop_skipped",
        {{"why", snapshot ? "the variants' digests differ" : "no snapshot within stop_grace_ms"}});
    return;
  }
  checkpoint = Checkpoint{seq, snapshot->state, snapshot->digest, 0};
  SaveCheckpoint();
  tail.clear();
  Log(LogLevel::kInfo, "checkpoint_at_stop", {{"seq", seq}, {"digest", snapshot->digest}});
}

void Supervisor::Impl::Shutdown() {
  // (The metrics endpoint first: a scrape waiting now gets its page.)
  if (metrics_requests) metrics_requests->Answer([this] { return RenderMetrics(); });
  metrics_endpoint.reset();
  stopping = true;
  sd_notify(0, "STOPPING=1");
  for (auto& c : waiting.TakeAll()) {
    const auto reply = restart_as_follower ? NotLeader(c.request_id, "it stepped down")
                                           : proto::ClientReply::Unavailable(c.request_id, "nvsd is shutting down");
    Answer(c, reply);
  }
  for (auto& c : admitted_ahead) {  // (cluster mode: as below)
    const auto reply = NotLeader(c.request_id, restart_as_follower ? "it stepped down" : "it is stopping");
    Answer(c, reply);
  }
  admitted_ahead.clear();
  for (auto& c : active) {
    if (c.verdict) continue;
    // (In a cluster its admit is in etcd, and the next leader may commit
    // it: not_leader, so the client asks that leader, which knows. On one
    // machine a start commits an undecided admit when fresh processes
    // agree on it, as it may have been answered so: this one is recorded
    // ABANDONED first, so the `unavailable` holds.)
    if (cluster) {
      Answer(c, NotLeader(c.request_id, restart_as_follower ? "it stepped down" : "it is stopping"));
      continue;
    }
    std::uint64_t record = 0;
    if (journal && !c.is_query) {
      record = AbandonAdmitted(c, "in flight when nvsd stopped (SIGTERM): not carried out");
    }
    Answer(c, proto::ClientReply::Unavailable(c.request_id, "nvsd is shutting down: not carried out"), record);
  }
  // Retries of commands found undecided at start and not settled yet: a
  // next start may commit them, so no answer can be given; the client's
  // retry there learns it.
  std::size_t unsettled = 0;
  for (const auto& s : suspects) {
    for (const auto& to : s.retries) {
      if (cluster) {
        Reply(to, NotLeader(s.request_id, restart_as_follower ? "it stepped down" : "it is stopping"));
      } else {
        ++unsettled;
      }
    }
  }
  if (!replies_in_doubt.empty()) {
    Log(LogLevel::kWarn, "replies_held_at_stop",
        {{"replies", replies_in_doubt.size()},
         {"why", "they rest on journal records the storage trouble lost, and the journal could not be written again "
                 "before the stop: the next start settles their commands, and a retry there is answered"}});
  }
  if (unsettled > 0) {
    Log(LogLevel::kWarn, "retries_unanswered_at_stop",
        {{"retries", unsettled},
         {"why", "their commands were found undecided at start and not settled before the stop: the next start "
                 "settles them (it may commit them), and a retry there is answered"}});
  }
  FlushJournalAndReplies();
  if (journal) FlushJournal(/*force=*/true);
  std::size_t unsent = 0;
  for (const auto& [peer, backlog] : backlogs) unsent += backlog.messages.size();
  if (unsent > 0) {
    Log(LogLevel::kWarn, "replies_unsent_at_stop",
        {{"replies", unsent}, {"clients", backlogs.size()}, {"why", "their clients did not take them before nvsd stopped"}});
  }
  if (retest && retest->release) {
    Reply(retest->release->to, proto::ClientReply::Unavailable(retest->release->request_id,
                                                               "nvsd is shutting down: its retest for the release "
                                                               "was stopped, and nothing was released"));
    FlushJournalAndReplies();
  }
  probe.reset();  // a probe is disposable: killed, never waited for
  spare.reset();
  retest.reset();
  // (Not when stepping down: its state may hold what etcd does not, and
  // the state dir is rebuilt from etcd at the next start anyway.)
  if (!restart_as_follower) FinalCheckpoint();
  // (A leader's last verdicts and its checkpoint at stop, into etcd.)
  if (cluster && leading) Replicate();
  for (auto& v : variants) {
    if (v.process && !v.process->exit_info()) v.process->SignalGroup(SIGTERM);
  }
  const auto until = Now() + milliseconds(config.stop_grace_ms);
  for (auto& v : variants) {
    if (!v.process) continue;
    while (!v.process->TryReap() && Now() < until) {
      pollfd fd{v.process->pidfd(), POLLIN, 0};
      const auto left = std::chrono::duration_cast<milliseconds>(until - Now()).count();
      poll(&fd, 1, static_cast<int>(std::max<long>(1, left)));
    }
    v.process.reset();  // SIGKILLs the group if it is still there
  }
  // Whatever they started that left their groups: killed, and reaped
  // (each SIGKILLed process is waited for at most a second).
  KillOrphans(/*now=*/true);
  cgroups.reset();  // (empties and removes what is left of them)
  for (const pid_t pid : orphans) {
    const int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    if (fd >= 0) {
      pollfd p{fd, POLLIN, 0};
      poll(&p, 1, 1000);
      close(fd);
    }
    waitpid(pid, nullptr, WNOHANG);
  }
  Log(LogLevel::kInfo, "stopped", {{"seq", last_seq}, {"commits", commits}});
}

}  // namespace nvs::supervisor
