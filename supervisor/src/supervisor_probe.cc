// Standby, policy "probe": the probe and the spare (ARCHITECTURE.md §4).
#include "impl.h"

namespace nvs::supervisor {

// The active failed on `c`: promote a backup, take its state (the state
// before `c`: backups are one behind), and start a disposable process of
// its program to run `c` on that state first. False when no probe can be
// run (no backup to promote, or the program cannot be started): the caller
// quarantines.
bool Supervisor::Impl::StartProbe(Command& c) {
  c.probed = true;
  Variant* target = PromoteIfNeeded();
  if (target == nullptr || target->config.name == c.standby_active) {
    c.probe = {{"outcome", "inconclusive"}, {"detail", "no backup to probe with"}};
    return false;
  }
  Probe p;
  if (spare && spare->target == target->config.name && spare->process && !spare->process->exit_info()) {
    p = std::move(*spare);  // warm: started ahead of need
    spare.reset();
  } else {
    spare.reset();
    auto started = StartProbeProcess(target->config);
    if (!started.ok()) {
      c.probe = {{"variant", target->config.name}, {"outcome", "inconclusive"},
                 {"detail", "cannot start: " + started.status().message()}};
      return false;
    }
    p = std::move(started.value());
  }
  p.command = c.id;
  p.phase = Probe::Phase::kPreparing;
  p.started = p.phase_since = Now();
  Send(*target, proto::SnapshotRequest{last_seq}, Purpose::kProbeSnapshot, "state", c.id);
  json event = {{"seq", c.seq}, {"variant", p.target}, {"probe", p.identity}, {"pid", p.process->pid()},
                {"failed_active", c.standby_active}};
  Log(LogLevel::kWarn, "probe_started", event);
  event["phase"] = "started";
  Publish("probe", event);
  probe = std::move(p);
  return true;
}

Result<Supervisor::Impl::Probe> Supervisor::Impl::StartProbeProcess(const VariantConfig& vc) {
  Probe p;
  p.target = vc.name;
  p.identity = "probe." + std::to_string(++probes_started);
  auto spec = SpecFor(vc, p.identity, "probe.log");
  if (!spec.ok()) return spec.status();
  auto process = env.Spawn(spec.value());
  if (!process.ok()) return process.status();
  p.process = std::move(process.value());
  p.started = p.phase_since = Now();
  return p;
}

// standby + probe: keeps a spare probe for the variant that would be
// promoted if the active failed now (the first other voting variant in
// config order). Started only when nothing is undecided, like a restart.
void Supervisor::Impl::KeepSpare() {
  if (!standby || config.standby_policy != "probe" || !ready || stopping || probe) return;
  const Variant* next = nullptr;
  for (const auto& v : variants) {
    if (v.config.name != active_name && Voting(v)) {
      next = &v;
      break;
    }
  }
  if (spare && (next == nullptr || spare->target != next->config.name)) spare.reset();
  if (spare || next == nullptr) return;
  if (AnyUndecided()) return;
  if (client_transport->Waiting()) return;
  if (Now() < spare_not_before) return;
  auto started = StartProbeProcess(next->config);
  if (!started.ok()) {
    spare_not_before = Now() + kSpareRespawn;
    Log(LogLevel::kWarn, "probe_spare_failed", {{"variant", next->config.name}, {"error", started.status().message()}});
    return;
  }
  spare = std::move(started.value());
}

// A spare says hello and then nothing until it is used.
void Supervisor::Impl::OnSpareMessage(std::string_view bytes) {
  auto decoded = proto::DecodeReply(bytes);
  if (decoded.ok() && std::holds_alternative<proto::Hello>(decoded.value()) && !spare->said_hello &&
      std::get<proto::Hello>(decoded.value()).protocol == proto::kProtocolVersion) {
    spare->said_hello = true;
    return;
  }
  Log(LogLevel::kWarn, "probe_spare_dropped", {{"variant", spare->target}, {"why", "unexpected message"}});
  spare.reset();
  spare_not_before = Now() + kSpareRespawn;
}

void Supervisor::Impl::OnSpareExit() {
  if (!spare || !spare->process || !spare->process->TryReap()) return;
  Log(LogLevel::kWarn, "probe_spare_died", {{"variant", spare->target}, {"how", spare->process->exit_info()->Describe()},
                                            {"stderr_tail", spare->process->stderr_tail()}});
  spare.reset();
  spare_not_before = Now() + kSpareRespawn;
}

// The probe survived: the command goes to the new active (the program the
// probe ran) and is committed on its answer. If the active changed again
// meanwhile, the probe says nothing about the new one: quarantined.
bool Supervisor::Impl::DeliverAfterProbe(Command& c) {
  Variant* target = PromoteIfNeeded();
  if (target == nullptr || target->config.name != c.probe.value("variant", "")) return false;
  c.probe["delivered"] = true;
  c.probe["failed_active"] = c.standby_active;
  c.standby_active = target->config.name;
  c.outcomes[target->config.name] = voter::Outcome{target->config.name, voter::OutcomeKind::kPending, "", "", ""};
  const std::uint64_t wire_seq = c.is_query ? last_seq : c.seq;
  if (c.is_query) {
    Send(*target, proto::Query{wire_seq, c.payload}, Purpose::kVote, "answer", c.id);
  } else {
    Send(*target, proto::Apply{wire_seq, c.time_ns, c.payload}, Purpose::kVote, "applied", c.id);
  }
  Log(LogLevel::kInfo, "probe_delivered", {{"seq", c.seq}, {"variant", target->config.name}});
  return true;
}

// False (and the probe ended, inconclusive) when its connection is gone.
bool Supervisor::Impl::SendToProbe(const proto::Request& request) {
  if (SendToIdentity(probe->identity, proto::Encode(request))) return true;
  EndProbe("inconclusive", "its connection to nvsd is gone");
  return false;
}

// Ends the probe: `outcome` is "survived", "crashed", "hung", "failed"
// (a protocol error on the command) or "inconclusive" (it could not be
// prepared). The process is killed and reaped; the command is decided at
// the next Pump.
void Supervisor::Impl::EndProbe(const std::string& outcome, const std::string& detail, const std::string& result) {
  if (!probe) return;
  Command* c = FindActive(probe->command);
  json record = {{"variant", probe->target},
                 {"probe", probe->identity},
                 {"outcome", outcome},
                 {"detail", detail},
                 {"after_ms", MillisSince(probe->started, Now())}};
  if (probe->process) {
    record["pid"] = probe->process->pid();
    probe->process->DrainStderr();
    record["stderr_tail"] = probe->process->stderr_tail();
    if (const auto& exit = probe->process->exit_info()) {
      record["exit"] = {{"signal", exit->signaled ? exit->signal : 0},
                        {"exit_code", exit->signaled ? json() : json(exit->exit_code)},
                        {"description", exit->Describe()}};
    }
  }
  if (outcome == "survived") record["result"] = ParseOrString(result);
  json event = {{"seq", c != nullptr ? c->seq : 0}, {"variant", probe->target}, {"probe", probe->identity},
                {"phase", "done"}, {"outcome", outcome}, {"detail", detail}};
  ++metric_counters.probes[outcome];
  Log(outcome == "survived" ? LogLevel::kInfo : LogLevel::kWarn, "probe_done", event);
  Publish("probe", event);
  if (c != nullptr) c->probe = std::move(record);
  probe->process.reset();  // SIGKILLs its group and reaps it
  probe.reset();
}

void Supervisor::Impl::AdvanceProbe() {
  if (!probe || probe->phase != Probe::Phase::kPreparing || !probe->said_hello || !probe->snapshot) return;
  Command* c = FindActive(probe->command);
  if (c == nullptr) {
    EndProbe("inconclusive", "the command is gone");
    return;
  }
  probe->phase = Probe::Phase::kRestoring;
  probe->phase_since = Now();
  SendToProbe(proto::Restore{last_seq, probe->snapshot->state});
}

void Supervisor::Impl::OnProbeMessage(std::string_view bytes) {
  auto decoded = proto::DecodeReply(bytes);
  const bool applying = probe->phase == Probe::Phase::kApplying;
  if (!decoded.ok()) {
    EndProbe(applying ? "failed" : "inconclusive", "sent garbage (" + decoded.error().reason + ")");
    return;
  }
  const proto::Reply& reply = decoded.value();
  if (auto* hello = std::get_if<proto::Hello>(&reply)) {
    if (probe->said_hello || hello->protocol != proto::kProtocolVersion) {
      EndProbe(applying ? "failed" : "inconclusive", "unexpected hello");
      return;
    }
    probe->said_hello = true;
    AdvanceProbe();
    return;
  }
  if (auto* error = std::get_if<proto::Error>(&reply)) {
    EndProbe(applying ? "failed" : "inconclusive", "protocol error " + error->code + ": " + error->reason);
    return;
  }
  if (probe->phase == Probe::Phase::kRestoring && std::holds_alternative<proto::Restored>(reply)) {
    const auto& restored = std::get<proto::Restored>(reply);
    if (restored.digest != probe->snapshot->digest) {
      EndProbe("inconclusive", "restored digest " + restored.digest + " differs from " + probe->snapshot->digest);
      return;
    }
    Command* c = FindActive(probe->command);
    if (c == nullptr) {
      EndProbe("inconclusive", "the command is gone");
      return;
    }
    // (Applying only once it was sent: a death before it says nothing of the command.)
    if (c->is_query ? SendToProbe(proto::Query{last_seq, c->payload})
                    : SendToProbe(proto::Apply{c->seq, c->time_ns, c->payload})) {
      probe->phase = Probe::Phase::kApplying;
      probe->phase_since = Now();
    }
    return;
  }
  if (applying && std::holds_alternative<proto::Applied>(reply)) {
    EndProbe("survived", "answered", std::get<proto::Applied>(reply).result);
    return;
  }
  if (applying && std::holds_alternative<proto::Answer>(reply)) {
    EndProbe("survived", "answered", std::get<proto::Answer>(reply).result);
    return;
  }
  EndProbe(applying ? "failed" : "inconclusive", "unexpected " + std::string(proto::TypeName(reply)));
}

void Supervisor::Impl::OnProbeExit() {
  DrainVariantSocket();  // an answer sent just before the exit still counts
  if (!probe || !probe->process) return;
  const auto info = probe->process->TryReap();
  if (!info) return;
  if (probe->phase == Probe::Phase::kApplying) {
    EndProbe("crashed", info->Describe());
  } else {
    EndProbe("inconclusive", "died before it could run the command: " + info->Describe());
  }
}

void Supervisor::Impl::OnProbeSnapshot(std::uint64_t command, const proto::StateReply& state) {
  if (!probe || probe->command != command) return;
  probe->snapshot = state;
  AdvanceProbe();
}

Clock::time_point Supervisor::Impl::ProbeDeadline() const {
  return probe->phase_since +
         milliseconds(probe->phase == Probe::Phase::kApplying ? config.deadline_ms : config.sync_deadline_ms);
}

void Supervisor::Impl::CheckProbeDeadline() {
  if (spare && !spare->said_hello && Now() - spare->started > milliseconds(config.sync_deadline_ms)) {
    Log(LogLevel::kWarn, "probe_spare_dropped", {{"variant", spare->target}, {"why", "no hello"}});
    spare.reset();
    spare_not_before = Now() + kSpareRespawn;
  }
  if (!probe || Now() < ProbeDeadline()) return;
  if (probe->phase == Probe::Phase::kApplying) {
    EndProbe("hung", "no reply within " + std::to_string(config.deadline_ms) + " ms");
  } else {
    EndProbe("inconclusive", "not ready within " + std::to_string(config.sync_deadline_ms) + " ms");
  }
}

}  // namespace nvs::supervisor
