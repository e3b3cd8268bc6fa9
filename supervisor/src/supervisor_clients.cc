// Clients: requests read, admitted or answered at once, retries, the
// quarantine review and status (protocol/CLIENT.md).
#include "impl.h"

namespace nvs::supervisor {

// Reads client requests: at most kMaxClientMessagesPerTurn, and none
// after kClientTurnBudget (the rest wait for the next turn, after the
// variants' replies and the deadlines). libzmq's ROUTER takes one message
// from each connection in turn, so a flooding client does not hold up
// another's request either.
void Supervisor::Impl::DrainClientSocket() {
  const auto until = Now() + kClientTurnBudget;
  std::vector<std::string> frames;
  std::string user;
  for (int taken = 0; taken < kMaxClientMessagesPerTurn && client_transport->Receive(&frames, &user); ++taken) {
    ClientAddress address;
    if (frames.size() >= 2) {
      // [identity, (empty delimiter of a REQ,) payload]; extra frames are an error.
      for (std::size_t i = 0; i + 1 < frames.size(); ++i) address.envelope.push_back(frames[i]);
      if (config.client_curve) address.user = user;
      const bool req_envelope = address.envelope.size() == 2 && address.envelope[1].empty();
      if (cut_off.count(address.envelope[0]) != 0) {
        ++client_counters.requests_ignored;  // (its cut-off was logged)
      } else if (address.envelope.size() > 1 && !req_envelope) {
        address.envelope.resize(1);
        RejectUnreadable(address, proto::ClientReply::Rejected(std::nullopt, "bad_request",
                                                               "a request is one single-part message"));
      } else {
        OnClientRequest(address, frames.back());
      }
    }
    if (Now() >= until) break;
  }
}

// A request whose bytes nvsd cannot take: answered, counted, and logged
// at most 10 times a second (the rest are counted and their number logged
// once the second is over): a flood of garbage cannot fill the disk.
void Supervisor::Impl::RejectUnreadable(const ClientAddress& address, const proto::ClientReply& rejection) {
  ++client_counters.rejected;
  if (rejected_log.Admit(Now())) {
    Log(LogLevel::kInfo, "client_rejected",
        {{"peer", HexIdentity(address.envelope[0])}, {"id", rejection.id ? json(*rejection.id) : json()},
         {"reason", rejection.reason}});
  }
  Reply(address, rejection);
}

proto::ClientReply Supervisor::Impl::ExpiredReply(const Command& c, const std::string& when) const {
  return proto::ClientReply::Rejected(c.request_id, "expired",
                                      "its expires_at_ms (" + std::to_string(*c.expires_at_ms) + ") had passed " +
                                          when + " (Unix time " + std::to_string(UnixNowMs()) +
                                          " ms): not carried out");
}

void Supervisor::Impl::OnClientRequest(const ClientAddress& address, std::string_view bytes) {
  auto decoded = proto::DecodeClientRequest(bytes);
  if (!decoded.request) {
    RejectUnreadable(address, decoded.rejection);
    return;
  }
  const proto::ClientRequest& request = *decoded.request;
  if (request.type == proto::ClientRequestType::kStatus) {
    Reply(address, StatusReply(request.id));
    return;
  }
  if (request.type == proto::ClientRequestType::kCluster) {
    if (auto reply = ClusterRequest(address, request.id, json::parse(request.payload, nullptr, false))) {
      Reply(address, *reply);
    }
    return;
  }
  if (handover) {
    Reply(address, NotLeader(request.id, "it is handing the cluster over to the next member"));
    return;
  }
  if (cluster && !leading) {
    // (Commands, queries and reviews: only the leader's state and
    // decisions are the cluster's.)
    Reply(address, NotLeader(request.id, promote_pending ? "it was elected and takes over once its variants are in sync"
                                                         : "ask the leader"));
    return;
  }
  if (request.type == proto::ClientRequestType::kQuarantine) {
    // (A release is answered once nvsd's own retest is done.)
    if (auto reply = QuarantineReply(address, request.id, json::parse(request.payload, nullptr, false))) {
      Reply(address, *reply);
    }
    return;
  }
  if (stopping) {
    Reply(address, proto::ClientReply::Unavailable(request.id, "nvsd is shutting down"));
    return;
  }
  if (cluster && request.type == proto::ClientRequestType::kCommand && request.payload.size() > kClusterMaxCommandBytes) {
    Reply(address, proto::ClientReply::Rejected(
                       request.id, "too_large",
                       "a command of " + std::to_string(request.payload.size()) + " bytes (its normal form): in cluster "
                       "mode a command may have at most " + std::to_string(kClusterMaxCommandBytes) +
                       " (etcd takes at most 1.5 MiB per write, and one write carries several commands)"));
    return;
  }
  Command c;
  c.id = next_command_id++;
  c.is_query = request.type == proto::ClientRequestType::kQuery;
  c.payload = request.payload;
  c.fingerprint = proto::Fnv1a64Hex(request.payload);
  c.request_id = request.id;
  c.client = address;
  c.client_key = address.envelope[0];
  c.expires_at_ms = request.expires_at_ms;
  c.admitted_at = Now();
  if (!c.is_query && AnswerRetry(c)) return;
  if (HasExpired(c)) {
    const auto reply = ExpiredReply(c, "when nvsd read it");
    Reply(address, reply);
    if (!c.is_query) Remember(RequestKey(c.client.user, c.request_id), reply);  // (its id stays expired)
    return;
  }
  if (journal_trouble && !c.is_query) {
    Reply(address, proto::ClientReply::Unavailable(request.id, "the journal cannot be written: " +
                                                                   journal_trouble->reason + " (queries are answered)"));
    return;
  }
  if (checkpoint_problem) {  // (a person must act: waiting out the queue deadline helps nobody)
    Reply(address, proto::ClientReply::Unavailable(request.id, *checkpoint_problem));
    return;
  }
  if (RefuseIfBlocked(c)) return;
  if (NotFailed() < config.min_healthy) {
    Reply(address, proto::ClientReply::Unavailable(
                       request.id, "only " + std::to_string(NotFailed()) + " variants are not failed; min_healthy is " +
                                       std::to_string(config.min_healthy)));
    return;
  }
  if (waiting.size() >= config.queue_limit) {
    Reply(address, proto::ClientReply::Unavailable(request.id, "queue full (" + std::to_string(waiting.size()) +
                                                                   " commands wait; queue_limit)"));
    return;
  }
  if (waiting.SizeOf(c.client_key) >= config.client_queue_limit) {
    Reply(address, proto::ClientReply::Unavailable(
                       request.id, "this client already has " + std::to_string(waiting.SizeOf(c.client_key)) +
                                       " commands waiting (client_queue_limit): send fewer at once"));
    return;
  }
  const std::string key = c.client_key;  // (not c.client_key itself: c is moved into the queue)
  waiting.Push(key, std::move(c));
}

// A request id seen before: answered from memory (never applied twice),
// or attached to the same command if it is still pending.
bool Supervisor::Impl::AnswerRetry(const Command& c) {
  // (Its own retries too, when it is taken from the queue: each is answered.)
  std::vector<ClientAddress> to{c.client};
  to.insert(to.end(), c.also_reply.begin(), c.also_reply.end());
  if (const RememberedReply* remembered = answered.Find(RequestKey(c.client.user, c.request_id))) {
    Log(LogLevel::kInfo, "retry_answered", {{"id", c.request_id}});
    const auto reply = remembered->Get();
    if (!reply) {
      // (Never: recovery skims only records that read back. Not applied
      // again in any case: the request was answered before.)
      Log(LogLevel::kError, "remembered_reply_unreadable", {{"id", c.request_id}});
    }
    for (const auto& address : to) {
      Reply(address, reply ? *reply
                           : proto::ClientReply::Unavailable(
                                 c.request_id, "this request id was answered before, but its answer in the journal "
                                               "cannot be read back: not carried out again"),
            reply ? remembered->record : 0);
    }
    return true;
  }
  // Decided, but its verdict record may or may not be on disk: the retry
  // gets the same answer once that is settled (RetryJournal), never an
  // `unavailable` of its own while the first may still turn out committed.
  const std::string key = RequestKey(c.client.user, c.request_id);
  const auto held = std::find_if(replies_in_doubt.begin(), replies_in_doubt.end(), [&](const OutgoingReply& o) {
    return o.reply.id && RequestKey(o.to.user, *o.reply.id) == key;
  });
  if (held != replies_in_doubt.end()) {
    const OutgoingReply first = *held;  // (a copy: the pushes may move the vector)
    for (const auto& address : to) {
      OutgoingReply again = first;
      again.to = address;
      replies_in_doubt.push_back(std::move(again));
    }
    return true;
  }
  // Admitted before a restart and not settled yet (a retest decides it):
  // answered with what it comes to. (Refused meanwhile, `unavailable` by a
  // queue deadline say, it could then be committed: the simulator found
  // it.)
  for (auto& s : suspects) {
    if (!s.request_id.empty() && RequestKey(s.key, s.request_id) == key) {
      s.retries.insert(s.retries.end(), to.begin(), to.end());
      return true;
    }
  }
  const auto attach = [&](Command& pending) { pending.also_reply.insert(pending.also_reply.end(), to.begin(), to.end()); };
  bool attached = false;
  waiting.ForRequest(c.request_id, [&](Command& pending) {
    if (!attached && !pending.is_query && pending.client.user == c.client.user) {
      attach(pending);
      attached = true;
    }
  });
  if (attached) return true;
  for (auto& pending : active) {
    if (!pending.is_query && pending.request_id == c.request_id && pending.client.user == c.client.user &&
        !pending.verdict) {
      attach(pending);
      return true;
    }
  }
  for (auto& pending : admitted_ahead) {
    if (!pending.is_query && pending.request_id == c.request_id && pending.client.user == c.client.user) {
      attach(pending);
      return true;
    }
  }
  return false;
}

// `record`: the verdict record the refusal rests on (an admitted command's).
bool Supervisor::Impl::RefuseIfBlocked(const Command& c, std::uint64_t record) {
  std::string report;
  if (!quarantine->IsBlocked(c.fingerprint, &report)) return false;
  for (const auto& pending : unwritten_reports) {
    if (pending.id != report) continue;
    // Blocked only in memory so far: a restart would forget it, so no
    // client is told `quarantined` until the report is on disk.
    const auto reply = proto::ClientReply::Unavailable(
        c.request_id, "identical to command " + report + ", which is blocked while nvsd runs, but its quarantine "
                      "report cannot be written yet: not carried out");
    Answer(c, reply, record);
    return true;
  }
  proto::ClientReply reply;
  reply.id = c.request_id;
  reply.status = proto::ClientStatus::kQuarantined;
  reply.report = report;
  reply.fingerprint = c.fingerprint;
  reply.reason = "identical to quarantined command " + report + "; refused without dispatch";
  Answer(c, reply, record);  // retries while it waited
  ++metric_counters.blocked;
  Log(LogLevel::kWarn, "blocked", {{"fingerprint", c.fingerprint}, {"report", report}});
  Publish("blocked", {{"fingerprint", c.fingerprint}, {"report", report}});
  return true;
}

// The last verdicts, for `status`.
// (Kept raw: this runs for every command; `status` formats them.)
void Supervisor::Impl::RememberVerdict(const Command& c) {
  const std::string kind = c.expired ? "EXPIRED" : std::string(voter::ToString(c.verdict->kind));
  recent_verdicts.push_back({c.seq, c.is_query, kind, env.UnixNowNs(), c.decided_ms});
  ++metric_counters.verdicts[{kind, c.is_query ? "query" : "command"}];
  (c.is_query ? metric_counters.query_seconds : metric_counters.command_seconds).Observe(c.decided_ms / 1000);
  if (recent_verdicts.size() > 10) recent_verdicts.pop_front();
}

json Supervisor::Impl::RecentVerdictsJson() const {
  json out = json::array();
  for (const auto& r : recent_verdicts) {
    out.push_back({{"seq", r.seq},
                   {"query", r.query},
                   {"verdict", r.kind},
                   {"time", IsoTime(r.time_ns)},
                   {"ms", r.ms}});
  }
  return out;
}

proto::ClientReply Supervisor::Impl::Ok(const std::string& id, const json& body) {
  proto::ClientReply reply;
  reply.id = id;
  reply.status = proto::ClientStatus::kOk;
  reply.body = Dump(body);
  return reply;
}

// list / show / release / reject. A release lifts the block (the command
// is not sent: a client must send it again); a reject keeps it blocked
// for good. Both are recorded in the report's review history, with who
// decided as the ZAP handler vouched for it: with client_curve, only the
// keys `reviewers` names may, and `by` is the key's name; on a plain
// endpoint anyone who reaches it may (it can send any command too), and
// `by` says "unauthenticated". A release is accepted only once nvsd's own
// retest (fresh probes of the configured programs on the saved pre-state)
// survives it: nothing a client says about a retest is taken. nullopt:
// the answer comes later (a release, when its retest is done).
std::optional<proto::ClientReply> Supervisor::Impl::QuarantineReply(const ClientAddress& from, const std::string& id, const json& args) {
  for (const char* key : {"action", "report", "note", "by"}) {
    if (args.is_object() && args.contains(key) && !args[key].is_string()) {
      return proto::ClientReply::Rejected(id, "bad_request", std::string("member '") + key + "' must be a string");
    }
  }
  if (!args.is_object()) return proto::ClientReply::Rejected(id, "bad_request", "not a JSON object");
  if (args.contains("force") && !args["force"].is_boolean()) {
    return proto::ClientReply::Rejected(id, "bad_request", "member 'force' must be true or false");
  }
  const std::string action = args.value("action", "");
  if (action == "list") {
    json reports = json::array();
    for (const auto& report_id : quarantine->ids()) {
      auto text = quarantine->Read(report_id);
      const json report = text ? json::parse(*text, nullptr, false) : json();
      if (!report.is_object()) continue;
      reports.push_back(ReportSummary(report));
    }
    return Ok(id, {{"reports", reports}});
  }
  const std::string report_id = args.value("report", "");
  auto text = quarantine->Read(report_id);
  json report = text ? json::parse(*text, nullptr, false) : json();
  if (!report.is_object()) return proto::ClientReply::Rejected(id, "not_found", "no quarantine report '" + report_id + "'");
  if (action == "show") {
    json pre_state;
    if (auto state = quarantine->ReadAttachment(SnapshotFileName(report))) {
      pre_state = json::parse(*state, nullptr, false);
      if (pre_state.is_discarded()) pre_state = json();
    }
    return Ok(id, {{"report", report}, {"pre_state_snapshot", pre_state}});
  }
  if (action != "release" && action != "reject") {
    return proto::ClientReply::Rejected(id, "bad_request", "action must be list, show, release or reject");
  }
  if (config.client_curve) {
    const auto& reviewers = config.client_curve->reviewers;
    if (std::find(reviewers.begin(), reviewers.end(), from.user) == reviewers.end()) {
      Log(LogLevel::kWarn, "review_refused", {{"report", report_id}, {"action", action}, {"key", from.user}});
      return proto::ClientReply::Rejected(
          id, "forbidden",
          "key \"" + from.user + "\" may not " + action + " a quarantined command: only the keys client_curve." +
              "reviewers names may" + (reviewers.empty() ? " (it names none)" : ""));
    }
  }
  const std::string note = args.value("note", "");
  if (note.empty()) return proto::ClientReply::Rejected(id, "bad_request", "a release or reject needs a note (why)");
  const std::string status = ReportStatus(report);
  if (status != "blocked" && !(action == "reject" && status == "released")) {
    return proto::ClientReply::Rejected(id, "bad_request",
                                        "report " + report_id + " is " + status + ": only a blocked report can be " +
                                            (action == "release" ? "released" : "rejected"));
  }
  PendingRelease decision{from, id, report_id, note, config.client_curve ? json(from.user) : json("unauthenticated"),
                          !config.client_curve && args.contains("by") ? args["by"] : json()};
  if (action == "reject") return Review(decision, "rejected", json());
  if (args.value("force", false)) {
    return Review(decision, "released", {{"skipped", true}, {"why", "forced by the reviewer"}});
  }
  // nvsd's own retest first.
  const std::string snapshot_file = SnapshotFileName(report);
  auto snapshot = snapshot_file.empty() ? std::nullopt : quarantine->ReadAttachment(snapshot_file);
  const json pre = report.value("pre_state", json::object());
  if (!snapshot || !pre.is_object() || !pre.value("digest", json()).is_string()) {
    return proto::ClientReply::Rejected(
        id, "no_pre_state",
        "report " + report_id + " has no saved pre-command state, so a retest would run on another state and "
        "prove nothing: not released (force lifts the block without a retest, recorded as such)");
  }
  if (retest || !suspects.empty()) {
    return proto::ClientReply::Unavailable(id, "a retest is running now; ask again when it is done");
  }
  while (!snapshot->empty() && (snapshot->back() == '\n' || snapshot->back() == ' ')) snapshot->pop_back();
  Retest::PreState pre_state;
  pre_state.checkpoint =
      Checkpoint{pre.value("snapshot_seq", std::uint64_t{0}), *snapshot, pre["digest"].get<std::string>(), 0};
  const json command = report.value("command", json());
  std::vector<std::string> names;
  for (const auto& v : variants) names.push_back(v.config.name);
  StartRetestOf(names,
                {Retest::Command{report.value("seq", std::uint64_t{0}), report.value("time_ns", std::int64_t{0}),
                                 Dump(command), report.value("kind", "command") == "query"}},
                std::move(pre_state), 0, "release of " + report_id + " asked by " + decision.by.dump(),
                std::move(decision));
  return std::nullopt;
}

// Records a review decision in the report, lifts or keeps the block, and
// says so (log, event); the answer to the reviewer.
proto::ClientReply Supervisor::Impl::Review(const PendingRelease& d, const std::string& action, const json& retested) {
  auto text = quarantine->Read(d.report);
  json report = text ? json::parse(*text, nullptr, false) : json();
  if (!report.is_object()) return proto::ClientReply::Rejected(d.request_id, "not_found", "no quarantine report '" + d.report + "'");
  const std::string status = ReportStatus(report);
  if (status != "blocked" && !(action == "rejected" && status == "released")) {
    return proto::ClientReply::Rejected(d.request_id, "bad_request", "report " + d.report + " is " + status + " now");
  }
  json entry = {{"time", IsoTime(env.UnixNowNs())}, {"action", action}, {"by", d.by}, {"note", d.note}};
  if (!d.claimed_by.is_null()) entry["claimed_by"] = d.claimed_by;
  if (!retested.is_null()) entry["retest"] = retested;
  report["status"] = action;
  if (!report["review"].is_array()) report["review"] = json::array();
  report["review"].push_back(entry);
  Status written = quarantine->WriteThenIndex(d.report, Dump(report));
  if (!written.ok()) {
    return proto::ClientReply::Unavailable(d.request_id,
                                           "cannot write the report, so nothing changed: " + written.message());
  }
  ClusterPut("quarantine/" + d.report, Dump(report));
  const json said = {{"report", d.report}, {"fingerprint", report.value("fingerprint", "")}, {"by", d.by},
                     {"note", d.note}};
  Log(LogLevel::kWarn, action, said);
  Publish(action, said);
  return Ok(d.request_id, {{"report", report}});
}

// nvsd's retest for a release is done: released if every configured
// variant's fresh probe ran the command and answered; else refused, with
// what each probe did.
void Supervisor::Impl::FinishRelease(Retest& r, const PendingRelease& d, json described) {
  bool survived = true;
  std::string failed;
  for (const auto& o : r.Outcomes()) {
    if (o.kind == voter::OutcomeKind::kReply && r.Conclusive(o.variant)) continue;
    survived = false;
    failed += (failed.empty() ? "" : ", ") + o.variant + " " + std::string(voter::ToString(o.kind)) + " (" +
              o.detail + ")";
  }
  described["survived"] = survived;
  described["on_saved_state"] = true;
  described["by"] = "nvsd";
  described["time"] = IsoTime(env.UnixNowNs());
  const json event = {{"phase", "done"}, {"report", d.report}, {"survived", survived}, {"probes", described["probes"]}};
  Log(LogLevel::kWarn, "retest", event);
  Publish("retest", event);
  if (survived) {
    Reply(d.to, Review(d, "released", described));
    return;
  }
  proto::ClientReply refused = proto::ClientReply::Rejected(
      d.request_id, "retest_failed",
      "not released: nvsd's retest on fresh probes restored to the state before it still fails: " + failed);
  refused.body = Dump({{"retest", described}});
  Reply(d.to, refused);
}

proto::ClientReply Supervisor::Impl::StatusReply(const std::string& id) {
  json variants_json = json::array();
  for (const auto& v : variants) {
    variants_json.push_back({{"name", v.config.name},
                             {"state", std::string(Name(v.life))},
                             {"pid", v.process && !v.process->exit_info() ? v.process->pid() : -1},
                             {"incarnation", v.incarnation},
                             {"restarts", v.restarts},
                             {"voting", Voting(v)},
                             {"in_flight", InFlight(v)},
                             {"role", !standby ? "voter" : v.config.name == active_name ? "active" : "backup"},
                             {"cgroup", cgroups && v.process ? json(cgroups->Where(v.identity).string()) : json()},
                             {"last_fault", v.last_fault},
                             {"pace", PaceJson(v)}});
  }
  json body = {{"cluster", ClusterStatusJson()},
               {"nvsd",
                {{"pid", getpid()},
                 {"event_endpoint", config.event_endpoint},
                 {"ready", ready},
                 {"seq", last_seq},
                 {"commits", commits},
                 {"policy", std::string(voter::ToString(config.policy.kind))},
                 {"mode", config.mode},
                 {"active_variant", standby ? json(active_name) : json()},
                 {"min_healthy", config.min_healthy},
                 {"healthy", HealthyVoters()},
                 {"paced_by", paced_by ? json(*paced_by) : json()},
                 {"available", ready && !unavailable_reason.has_value() && suspects.empty()},
                 {"unavailable_reason", unavailable_reason ? json(*unavailable_reason) : json()},
                 {"waiting", waiting.size() + admitted_ahead.size()},
                 {"clients_waiting", waiting.clients()},
                 {"clients", {{"backlogged", backlogs.size()},
                              {"cut_off", client_counters.cut_off},
                              {"replies_dropped", client_counters.replies_dropped},
                              {"replies_undeliverable", client_counters.replies_undeliverable},
                              {"requests_ignored", client_counters.requests_ignored},
                              {"rejected", client_counters.rejected}}},
                 {"retest", retest ? retest->retest->Describe() : json()},
                 {"suspects", suspects.size()},
                 {"unknown_variant_peers", unknown_peers},
                 {"active", active.size()},
                 {"syncing", round.has_value()},
                 {"quarantined", quarantine->blocked_count()},
                 {"reports", quarantine->report_count()},
                 {"checkpoint_seq", checkpoint ? checkpoint->seq : 0},
                 {"journal", {{"segment", journal ? state->Where(JournalSegmentName(journal_segment)).string() : ""},
                              {"state", journal_trouble ? "degraded" : "ok"},
                              {"trouble", journal_trouble ? json{{"kind", journal_trouble->kind},
                                                                 {"reason", journal_trouble->reason},
                                                                 {"attempts", journal_trouble->attempts},
                                                                 {"for_ms", MillisSince(journal_trouble->since, Now())}}
                                                          : json()},
                              {"replies_in_doubt", replies_in_doubt.size()},
                              {"checkpoint_error", checkpoint_error ? json(*checkpoint_error) : json()},
                              {"segment_bytes", journal ? journal->bytes() : 0},
                              {"closed_segments", closed_segments.size()},
                              {"fsync", cluster ? std::string("none") : config.fsync}}},
                 {"recent_verdicts", RecentVerdictsJson()},
                 {"stages", {{"queued", stage_queued.Json()},
                             {"admit_write", stage_admit.Json()},
                             {"vote", stage_vote.Json()},
                             {"reply_flush", stage_reply.Json()}}},
                 {"probe", probe ? json{{"variant", probe->target},
                                        {"probe", probe->identity},
                                        {"pid", probe->process ? probe->process->pid() : -1}}
                                 : json()},
                 {"probe_spare", spare ? json{{"variant", spare->target},
                                              {"pid", spare->process ? spare->process->pid() : -1},
                                              {"ready", spare->said_hello}}
                                       : json()}}},
               {"variants", variants_json}};
  proto::ClientReply reply;
  reply.id = id;
  reply.status = proto::ClientStatus::kOk;
  reply.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return reply;
}

}  // namespace nvs::supervisor
