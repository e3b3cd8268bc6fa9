// The variants' processes: states, sends, routing ids, spawns and
// restarts, kills and deaths, orphans.
#include "impl.h"

namespace nvs::supervisor {

int Supervisor::Impl::HealthyVoters() const {
  int n = 0;
  for (const auto& v : variants) n += (Voting(v)) ? 1 : 0;
  return n;
}

int Supervisor::Impl::NotFailed() const {
  int n = 0;
  for (const auto& v : variants) n += v.life != Life::kFailed ? 1 : 0;
  return n;
}

void Supervisor::Impl::Transit(Variant& v, LifeEvent event, const std::string& why) {
  const std::optional<Life> next = Next(v.life, event);
  if (!next) {
    Log(LogLevel::kError, "internal_error",
        {{"what", "variant lifecycle: " + std::string(Name(event)) + " cannot happen in state " + std::string(Name(v.life))},
         {"variant", v.config.name}, {"why", why}});
    return;
  }
  if (*next == v.life) return;
  v.life = *next;
  v.state_since = Now();
  Log(v.life == Life::kFailed ? LogLevel::kError : LogLevel::kInfo, "variant_state",
      {{"variant", v.config.name}, {"state", Name(v.life)}, {"incarnation", v.incarnation}, {"why", why}});
  Publish("variant", {{"variant", v.config.name},
                      {"state", Name(v.life)},
                      {"pid", v.process ? v.process->pid() : -1},
                      {"incarnation", v.incarnation},
                      {"why", why}});
}

// Sends a request to `v`, or holds it (VariantChannel says which, and why).
// Not sent (its connection is gone, or full): the request stays out, and
// the variant's exit or its deadline settles it.
void Supervisor::Impl::Send(Variant& v, const proto::Request& request, Purpose purpose, std::string_view reply_type,
          std::uint64_t command) {
  Sent sent{purpose, reply_type, proto::SeqOf(request), command, {}};
  if (auto out = v.channel.Send(sent, proto::Encode(request), Now())) SendToIdentity(v.identity, out->bytes);
}

// One message to a variant or probe through the ROUTER_MANDATORY variants
// socket; false when its connection is gone or its queue is full.
bool Supervisor::Impl::SendToIdentity(const std::string& identity, const std::string& bytes) {
  return variant_transport->Send(WireId(identity), bytes);
}

// Its head was answered: what was held or paced behind it goes out. A
// held command decided meanwhile other than by a commit (a poison, a
// rollback) is not sent at all: it could only kill another variant, and
// the variant's state is repaired by the round that follows a rollback.
// (A committed one is: a slower variant must still apply it, and its
// late reply is still compared.)
void Supervisor::Impl::OnAnswered(Variant& v) {
  std::vector<Sent> dropped;
  const auto undeliverable = [&](const Sent& sent) {
    const Command* c = FindActive(sent.command);
    return c != nullptr && c->verdict && (c->verdict->kind != voter::VerdictKind::kCommit || c->expired);
  };
  for (const auto& out : v.channel.Answered(Now(), undeliverable, &dropped, kCatchUpWindow)) {
    SendToIdentity(v.identity, out.bytes);
  }
  for (const Sent& sent : dropped) {
    Command* c = FindActive(sent.command);
    auto& outcome = c->outcomes[v.config.name];
    if (outcome.kind == voter::OutcomeKind::kPending) {
      outcome.kind = voter::OutcomeKind::kExcluded;
      outcome.detail = "not delivered: decided (" + std::string(voter::ToString(c->verdict->kind)) +
                       ") before it could be sent";
    }
  }
}

namespace {

// Whether a process has exited: reaped, or its pidfd says so (a variant's
// death is judged later, but what it started must not live on meanwhile).
bool Exited(const Process& process) {
  if (process.exit_info()) return true;
  if (process.pidfd() < 0) return false;
  pollfd fd{process.pidfd(), POLLIN, 0};
  return poll(&fd, 1, 0) > 0 && (fd.revents & POLLIN) != 0;
}

// A process's state letter from /proc ('Z': a zombie; 0: gone).
char ProcState(pid_t pid) {
  std::ifstream stat(std::filesystem::path("/proc") / std::to_string(pid) / "stat");
  std::string line;
  std::getline(stat, line);
  const auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() ? line[close + 2] : '\0';
}

}  // namespace

// The identities whose process is still running.
std::set<std::string> Supervisor::Impl::LiveIdentities() const {
  std::set<std::string> live;
  const auto add = [&](const std::string& identity, const std::unique_ptr<Process>& process) {
    if (process && !Exited(*process)) live.insert(identity);
  };
  for (const auto& v : variants) add(v.identity, v.process);
  if (probe) add(probe->identity, probe->process);
  if (spare) add(spare->identity, spare->process);
  if (retest) {
    for (const auto& [identity, process] : retest->processes) add(identity, process);
  }
  return live;
}

// The cgroups of processes that have exited: whatever is left in them is
// killed (and reaped by KillOrphans, as it comes to nvsd, the subreaper).
void Supervisor::Impl::EmptyDeadCgroups() {
  if (!cgroups) return;
  const auto live = LiveIdentities();
  for (const auto& identity : cgroups->identities()) {
    if (live.count(identity) != 0) continue;
    const auto killed = cgroups->Destroy(identity);
    if (killed.empty()) continue;
    const auto own = OwnChildren();  // (reaped by their own Process, never here)
    for (const pid_t pid : killed) {
      if (own.count(pid) == 0) orphans.insert(pid);
    }
    Log(LogLevel::kWarn, "cgroup_emptied",
        {{"process", identity}, {"killed", killed.size()},
         {"why", "processes it started outlived it: nothing a variant starts may outlive it"}});
  }
  cgroups->Retry();
}

std::set<pid_t> Supervisor::Impl::OwnChildren() const {
  std::set<pid_t> known;
  const auto add = [&](const std::unique_ptr<Process>& p) {
    if (p) known.insert(p->pid());
  };
  for (const auto& v : variants) add(v.process);
  if (probe) add(probe->process);
  if (spare) add(spare->process);
  if (retest) {
    for (const auto& [identity, process] : retest->processes) add(process);
  }
  return known;
}

// Every child of nvsd that is not one of its processes came from a
// variant (nvsd is their subreaper). The cgroups of exited processes are
// emptied first, so that what a dead variant left is killed through its
// cgroup whatever the order its death and this check come in; then each
// other child still running is killed and logged, and zombies reaped.
void Supervisor::Impl::KillOrphans(bool now) {
  if (simulated) return;
  const auto at = Now();
  if (!now && at < next_orphan_check) return;
  next_orphan_check = at + milliseconds(250);
  EmptyDeadCgroups();
  const std::set<pid_t> known = OwnChildren();
  std::error_code ec;
  for (std::filesystem::directory_iterator task("/proc/self/task", ec), end; !ec && task != end; task.increment(ec)) {
    std::ifstream children(task->path() / "children");
    for (pid_t pid = 0; children >> pid;) {
      if (known.count(pid) != 0 || orphans.count(pid) != 0) continue;
      orphans.insert(pid);
      if (ProcState(pid) == 'Z') continue;  // dead already (killed with its cgroup or group): only reaped
      std::string name;
      std::ifstream(std::filesystem::path("/proc") / std::to_string(pid) / "comm") >> name;
      kill(pid, SIGKILL);
      Log(LogLevel::kWarn, "orphan_killed",
          {{"pid", pid}, {"name", name}, {"why", "a process a variant started outlived it (it left the variant's "
                                                  "process group): nothing a variant starts may outlive it"}});
    }
  }
  for (auto it = orphans.begin(); it != orphans.end();) {
    it = waitpid(*it, nullptr, WNOHANG) != 0 ? orphans.erase(it) : std::next(it);
  }
}

const std::string& Supervisor::Impl::NewWireId(const std::string& identity) {
  unsigned char random[16];
  env.RandomBytes(random, sizeof random);
  static const char* const kHex = "0123456789abcdef";
  std::string wire = identity + ".";
  for (unsigned char b : random) {
    wire += kHex[b >> 4];
    wire += kHex[b & 15];
  }
  if (auto old = wire_of.find(identity); old != wire_of.end()) identity_of.erase(old->second);
  else wire_order.push_back(identity);
  identity_of[wire] = identity;
  // Only the latest processes are alive: the oldest entries are dead ones.
  while (wire_order.size() > 4096) {
    if (auto it = wire_of.find(wire_order.front()); it != wire_of.end()) {
      identity_of.erase(it->second);
      wire_of.erase(it);
    }
    wire_order.pop_front();
  }
  return wire_of[identity] = std::move(wire);
}

// The routing id given to `identity` (itself if none was: it then reaches nobody).
const std::string& Supervisor::Impl::WireId(const std::string& identity) const {
  const auto it = wire_of.find(identity);
  return it == wire_of.end() ? identity : it->second;
}

// The identity of a routing id nvsd gave out, or nullptr.
const std::string* Supervisor::Impl::IdentityOf(const std::string& routing_id) {
  const auto it = identity_of.find(routing_id);
  if (it != identity_of.end()) return &it->second;
  if (++unknown_peers == 1 || unknown_peers % 1000 == 0) {
    Log(LogLevel::kWarn, "unknown_variant_peer",
        {{"messages", unknown_peers},
         {"why", "a message on the variants socket from a routing id nvsd never gave out: ignored (a process "
                 "that was not started by nvsd, or a stale one)"}});
  }
  return nullptr;
}

// How to start a process of `vc` under `identity`, its stderr going to
// logs/LOG_NAME. Each call gives the process a new routing id.
Result<SpawnSpec> Supervisor::Impl::SpecFor(const VariantConfig& vc, const std::string& identity, const std::string& log_name) {
  SpawnContext context;
  context.config_dir = config.config_dir;
  context.stdio_bridge = bridge;
  context.endpoint = config.variant_endpoint;
  context.stderr_log = config.state_dir / "logs" / log_name;
  context.stderr_log_bytes = config.stderr_log_bytes;
  context.stderr_tail_bytes = config.stderr_tail_bytes;
  auto spec = SpecForVariant(vc, NewWireId(identity), context);
  if (spec.ok() && cgroups) {
    auto joined = cgroups->Create(identity, vc.limits.processes);
    if (joined.ok()) {
      spec.value().join_cgroups = std::move(joined.value());
    } else {
      Log(LogLevel::kWarn, "cgroup_failed", {{"process", identity}, {"error", joined.status().message()}});
    }
  }
  return spec;
}

// Starts a new incarnation. On failure the slot is counted as a failed
// start and the next restart is attempted through the intensity.
void Supervisor::Impl::Spawn(Variant& v, const std::string& why) {
  by_identity.erase(v.identity);
  ++v.incarnation;
  v.identity = v.config.name + "." + std::to_string(v.incarnation);
  by_identity[v.identity] = static_cast<std::size_t>(&v - variants.data());
  v.channel.Clear();
  v.refused_checkpoint.reset();
  v.round_digest.reset();
  v.exit_seen_at.reset();
  v.answer_ms.clear();  // (a new process: its pace is its own)

  auto spec = SpecFor(v.config, v.identity, v.config.name + ".log");
  if (!spec.ok()) {
    Log(LogLevel::kError, "spawn_failed", {{"variant", v.config.name}, {"error", spec.status().message()}});
    v.last_fault = spec.status().message();
    Transit(v, LifeEvent::kGaveUp, spec.status().message());
    return;
  }
  auto process = env.Spawn(spec.value());
  if (!process.ok()) {
    Log(LogLevel::kError, "spawn_failed", {{"variant", v.config.name}, {"error", process.status().message()}});
    v.last_fault = process.status().message();
    v.process.reset();
    Transit(v, LifeEvent::kSpawnFailed, "spawn failed: " + process.status().message());
    Restart(v, "spawn failed");
    return;
  }
  v.process = std::move(process.value());
  Transit(v, LifeEvent::kSpawned, why);
}

// Restarts a variant whose process is gone, within the restart intensity.
void Supervisor::Impl::Restart(Variant& v, const std::string& why) {
  if (stopping) return;
  const auto now_ms = std::chrono::duration_cast<milliseconds>(Now() - started_at).count();
  if (!v.intensity.Allow(now_ms)) {
    const std::string reason = "restarted more than " + std::to_string(config.restart.intensity) + " times in " +
                               std::to_string(config.restart.period_ms) + " ms (last: " + why + ")";
    v.process.reset();
    Transit(v, LifeEvent::kGaveUp, reason);
    Publish("failed", {{"variant", v.config.name}, {"why", reason}});
    UpdateAvailability();  // `unavailable` once fewer than min_healthy are left
    return;
  }
  ++v.restarts;
  Publish("restart", {{"variant", v.config.name}, {"incarnation", v.incarnation + 1}, {"why", why}});
  // Spawned after this loop turn's verdicts and replies: a fork and exec
  // must not delay the answer to the command the death just decided.
  v.restart_pending = "restart: " + why;
  v.restart_requested_at = Now();
}

// A fork and exec stalls the loop for a millisecond or more: while a
// command is undecided it would delay that command's verdict, so restarts
// wait for it (at most a deadline, since every undecided command has one).
void Supervisor::Impl::SpawnPendingRestarts() {
  if (std::none_of(variants.begin(), variants.end(), [](const Variant& v) { return v.restart_pending.has_value(); })) {
    return;  // the usual turn: nothing to spawn, nothing to ask the socket
  }
  // A client request that arrived during this turn is served first: after
  // a failover the next command should not wait behind a fork and exec.
  const bool client_waiting = client_transport->Waiting();
  const bool undecided = client_waiting || AnyUndecided();
  for (auto& v : variants) {
    const auto due = RestartDue(v, undecided);
    if (!due || stopping || Now() < *due) continue;
    const std::string why = *v.restart_pending;
    v.restart_pending.reset();
    Spawn(v, why);
  }
}

// When a pending restart spawns: after kRestartHoldoff; while a command is
// undecided (under a steady pipelined load something always is), at a gap,
// but not later than kMaxRestartDelay.
std::optional<Clock::time_point> Supervisor::Impl::RestartDue(const Variant& v, bool undecided) const {
  if (!v.restart_pending) return std::nullopt;
  return undecided ? v.restart_requested_at + kMaxRestartDelay : v.restart_requested_at + kRestartHoldoff;
}

// Takes a variant out: kills its process group at once. Outstanding votes
// get `blame` for the command at the head and `excluded` for the rest.
void Supervisor::Impl::Kill(Variant& v, const std::string& why, std::optional<voter::OutcomeKind> blame, const std::string& detail) {
  FailOutstanding(v, blame, detail);
  if (v.life == Life::kDown || v.life == Life::kFailed) return;  // no process: nothing to kill or restart
  v.stop_reason = why;
  v.last_fault = why;
  if (v.process && !v.process->exit_info()) {
    v.process->SignalGroup(SIGKILL);
    Transit(v, LifeEvent::kKilled, why);
  } else {
    Transit(v, LifeEvent::kGone, why);
    Restart(v, why);
  }
}

// Gives every vote outstanding at `v` an outcome (AttributeBlame: the
// rules, and their table test), and drops its other requests.
void Supervisor::Impl::FailOutstanding(Variant& v, std::optional<voter::OutcomeKind> blame, const std::string& detail) {
  std::vector<const Sent*> requests;
  std::vector<OutstandingRequest> table;
  const auto add = [&](const Sent& sent, bool was_sent) {
    OutstandingRequest r;
    r.vote = sent.purpose == Purpose::kVote;
    r.sent = was_sent;
    r.delivered = Delivered(v, sent);
    const Command* c = r.vote ? FindActive(sent.command) : nullptr;
    r.pending = c != nullptr;  // (a command no longer active: nothing to give an outcome)
    if (c != nullptr) {
      const auto outcome = c->outcomes.find(v.config.name);
      r.pending = outcome == c->outcomes.end() || outcome->second.kind == voter::OutcomeKind::kPending;
      r.decided = c->verdict.has_value();
    }
    requests.push_back(&sent);
    table.push_back(r);
  };
  const auto outstanding = v.channel.Outstanding();
  for (const auto& [sent, was_sent] : outstanding) add(sent, was_sent);
  for (const Attribution& a : AttributeBlame(table, blame, detail)) {
    const Sent& sent = *requests[a.index];
    Command* c = FindActive(sent.command);
    auto& outcome = c->outcomes[v.config.name];
    outcome.kind = a.kind;
    outcome.detail = a.detail;
    if (a.blamed) {
      c->evidence[v.config.name] = {{"incarnation", v.incarnation},
                                    {"after_ms", MillisSince(sent.sent_at, Now())},
                                    {"queued", a.queued},
                                    {"stderr_tail", v.process ? v.process->stderr_tail() : ""}};
    }
  }
  for (std::size_t i = 0; i < requests.size(); ++i) {
    const Sent& sent = *requests[i];
    if (sent.purpose == Purpose::kCheckpointDigest || sent.purpose == Purpose::kCheckpointSnapshot) {
      checkpointer.Abandon();  // the next one will do
    } else if (sent.purpose == Purpose::kProbeSnapshot && probe && probe->command == sent.command) {
      EndProbe("inconclusive", "the new active " + v.config.name + " failed while its state was taken: " + detail);
    }
  }
  v.channel.Clear();  // (a catch-up not sent yet blames nothing)
  v.round_digest.reset();
  if (round) {
    round->participants.erase(v.config.name);
    if (round->phase == Round::Phase::kSnapshot && round->donor == v.config.name) {
      Log(LogLevel::kWarn, "sync_round_abandoned", {{"donor", v.config.name}, {"why", detail}});
      round.reset();  // the next round picks another donor
    }
  }
}

// Its pidfd said the process is gone. What it said before dying counts,
// and its last messages may still be on their way: unless it was being
// stopped, the death is judged once nothing sent before the exit is
// outstanding, or once its connection is gone from the variants socket
// (ConnectionGone: then everything it sent has been read), or after
// exit_grace_ms when the transport cannot tell (SettleExits), without
// holding up the loop meanwhile. (An outside test found every crash with a
// command in flight judged 50 ms late when only the grace ended it.)
void Supervisor::Impl::OnPidfdReadable(Variant& v) {
  if (v.exit_seen_at) return;
  v.exit_seen_at = Now();
  v.life_before_exit = v.life;
  Transit(v, LifeEvent::kExitSeen, "its process exited");
  DrainVariantSocket();
  SettleExits();
}

void Supervisor::Impl::SettleExits() {
  const auto now = Now();
  for (auto& v : variants) {
    if (!InExitGrace(v)) continue;
    const bool waiting_for_reply = v.channel.head() != nullptr && Delivered(v, *v.channel.head());
    if (v.life == Life::kStopping || !waiting_for_reply) {
      OnProcessExit(v);
    } else if (ConnectionGone(v.identity)) {
      DrainVariantSocket(std::numeric_limits<int>::max());  // what it sent before its connection closed
      OnProcessExit(v);
    } else if (now >= *v.exit_seen_at + milliseconds(config.exit_grace_ms)) {
      Log(LogLevel::kDebug, "exit_grace_over", {{"variant", v.config.name}});
      OnProcessExit(v);
    }
  }
}

void Supervisor::Impl::OnProcessExit(Variant& v) {
  const auto info = v.process->TryReap();
  if (!info) return;
  const std::string how = info->Describe();
  if (v.life == Life::kStopping) {
    Log(LogLevel::kInfo, "variant_stopped", {{"variant", v.config.name}, {"how", how}, {"why", v.stop_reason}});
    Transit(v, LifeEvent::kGone, v.stop_reason + " (" + how + ")");
    Restart(v, v.stop_reason);
    return;
  }
  // An unexpected death: the command at the head of its FIFO, if a vote
  // that reached it, is the one it died on.
  std::string what = how;
  if (const Sent* head = v.channel.head(); head != nullptr && head->purpose == Purpose::kVote && Delivered(v, *head)) {
    if (Command* c = FindActive(head->command)) {
      what = how + (c->is_query ? " on a query" : " on seq " + std::to_string(c->seq));
    }
  } else {
    what = how + " with no command in flight";
  }
  const char* abbreviation = info->signaled ? sigabbrev_np(info->signal) : nullptr;
  ++metric_counters.deaths[{v.config.name, !info->signaled ? std::string("exit")
                                           : abbreviation != nullptr ? "SIG" + std::string(abbreviation)
                                                                     : "signal " + std::to_string(info->signal)}];
  Log(LogLevel::kWarn, "variant_died",
      {{"variant", v.config.name}, {"incarnation", v.incarnation}, {"how", what}, {"state", std::string(Name(v.life_before_exit))},
       {"stderr_tail", v.process->stderr_tail()}});
  FailOutstanding(v, voter::OutcomeKind::kCrashed, how);
  v.last_fault = what;
  for (auto& c : active) {
    auto it = c.evidence.find(v.config.name);
    if (it != c.evidence.end() && c.outcomes[v.config.name].kind == voter::OutcomeKind::kCrashed &&
        it->second.value("incarnation", 0) == v.incarnation) {
      it->second["exit"] = {{"signal", info->signaled ? info->signal : 0},
                            {"exit_code", info->signaled ? json() : json(info->exit_code)},
                            {"description", how}};
      it->second["stderr_tail"] = v.process->stderr_tail();
    }
  }
  Transit(v, LifeEvent::kGone, what);
  Restart(v, what);
}

}  // namespace nvs::supervisor
