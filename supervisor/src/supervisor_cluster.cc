// Cluster mode (ARCHITECTURE.md §8): joining from etcd's log, the leader's
// fenced writes, the followers' apply, promotion and stepping down.
#include <cinttypes>
#include <fstream>

#include "impl.h"

namespace nvs::supervisor {

namespace {

// A batch's records: one payload per line (a record body is compact JSON,
// with no newline in it).
std::vector<std::string_view> Lines(std::string_view text) {
  std::vector<std::string_view> out;
  while (!text.empty()) {
    const std::size_t eol = text.find('\n');
    const std::string_view line = text.substr(0, eol);
    if (!line.empty()) out.push_back(line);
    if (eol == std::string_view::npos) break;
    text.remove_prefix(eol + 1);
  }
  return out;
}

// The batch index a log key names (KEY = PREFIX "log/" 20 digits).
std::optional<std::uint64_t> IndexOf(const std::string& key) {
  const std::size_t slash = key.rfind('/');
  if (slash == std::string::npos || key.size() - slash - 1 != 20) return std::nullopt;
  std::uint64_t n = 0;
  for (std::size_t i = slash + 1; i < key.size(); ++i) {
    if (key[i] < '0' || key[i] > '9') return std::nullopt;
    n = n * 10 + static_cast<std::uint64_t>(key[i] - '0');
  }
  return n;
}

}  // namespace

// At start, before recovery: this member's state dir becomes what etcd
// says the cluster committed (the checkpoint and the log after it). What
// the state dir held is the cache of an earlier run, and may hold records a
// deposed leader wrote but never got into etcd: it is set aside.
Status Supervisor::Impl::JoinCluster(int signal_fd) {
  const ClusterConfig& cc = *config.cluster;
  std::string password;
  if (!cc.etcd_password_file.empty()) {
    struct stat st {};
    if (stat(cc.etcd_password_file.c_str(), &st) != 0 || (st.st_mode & 077) != 0) {
      return Status::Error("cluster.etcd_password_file " + cc.etcd_password_file.string() +
                           ": missing, or readable by others than its owner (chmod 600)");
    }
    std::ifstream in(cc.etcd_password_file);
    if (!in || !std::getline(in, password)) {
      return Status::Error("cluster.etcd_password_file " + cc.etcd_password_file.string() + ": cannot read");
    }
  }
  cluster = std::make_unique<ClusterMember>(cc, password);
  // etcd may be out of reach for a while (its quorum lost, this host cut
  // off, a leader that just stepped down for that reason): nvsd waits for
  // it, tries again every second, says so every ten, and stops at SIGTERM.
  auto all = cluster->ReadAll();
  for (int tries = 1; !all.ok(); ++tries) {
    if (tries % 10 == 1) {
      Log(LogLevel::kWarn, "cluster_waiting_for_etcd",
          {{"cluster", cc.name}, {"tries", tries}, {"error", all.status().message()}});
    }
    pollfd signal{signal_fd, POLLIN, 0};
    if (poll(&signal, signal_fd >= 0 ? 1 : 0, 1000) > 0) {
      return Status::Error("cluster " + cc.name + ": stopped while waiting for etcd (" + all.status().message() + ")");
    }
    all = cluster->ReadAll();
  }
  std::optional<Checkpoint> from_etcd;
  std::uint64_t log_from = 0;
  std::vector<const cluster::KeyValue*> batches;
  for (const auto& kv : all.value().kvs) {
    const std::string suffix = kv.key.substr(cluster->prefix().size());
    if (suffix == "checkpoint") {
      const json v = json::parse(kv.value, nullptr, false);
      if (!v.is_object() || !v.contains("checkpoint") || !v["checkpoint"].is_string()) {
        return Status::Error("cluster " + cc.name + ": etcd's checkpoint key is not what nvsd writes");
      }
      auto parsed = ParseCheckpoint(v["checkpoint"].get<std::string>());
      if (!parsed.ok()) return Status::Error("cluster " + cc.name + ": etcd's checkpoint: " + parsed.status().message());
      from_etcd = parsed.value();
      if (!v.contains("log_from") || !v["log_from"].is_number_unsigned()) {
        return Status::Error("cluster " + cc.name + ": etcd's checkpoint key has no log_from");
      }
      log_from = v["log_from"].get<std::uint64_t>();
    } else if (suffix.rfind("log/", 0) == 0) {
      batches.push_back(&kv);
    }
  }
  StorageError error;
  // The old cache out of the way (kept for a person to look at, once).
  auto listed = state->List(kJournalDir);
  if (listed.ok()) {
    for (const auto& name : listed.value()) {
      const std::string path = std::string(kJournalDir) + "/" + name;
      if (Status removed = state->Remove(path, &error); !removed.ok()) return removed;
    }
  }
  for (const char* file : {kCheckpointFile, kPreviousCheckpointFile, kNextCheckpointFile}) {
    if (state->Exists(file)) {
      if (Status removed = state->Remove(file, &error); !removed.ok()) return removed;
    }
  }
  if (from_etcd) {
    if (Status written = state->WriteAtomically(kCheckpointFile, FormatCheckpoint(*from_etcd), &error); !written.ok()) {
      return written;
    }
  }
  // (Segment 1: recovery reads segments from 1 on; a "segment 0" is no
  // segment at all, and a member that wrote its log there started from
  // the checkpoint alone: the bench caught it reusing seqs.)
  auto file = state->OpenForAppend(JournalSegmentName(1), &error);
  if (!file.ok()) return file.status();
  auto writer = JournalWriter::Start(std::move(file.value()), FsyncPolicy::kAlways, 0, &error);
  if (!writer.ok()) return writer.status();
  std::uint64_t records = 0;
  cluster_next_index = log_from;
  for (const auto* kv : batches) {
    const auto index = IndexOf(kv->key);
    if (!index || *index < log_from) continue;
    if (*index != cluster_next_index) {
      return Status::Error("cluster " + cc.name + ": etcd's log has a gap (batch " + std::to_string(*index) +
                           " where " + std::to_string(cluster_next_index) + " was expected)");
    }
    std::uint64_t max_seq = 0;
    for (const auto line : Lines(kv->value)) {
      writer.value()->Append(line);
      if (auto head = PeekJournalRecord(line)) max_seq = std::max(max_seq, head->seq);
      ++records;
      ++cluster_next_index;
    }
    cluster_batches.emplace_back(*index, max_seq);
  }
  Flushed flushed = writer.value()->Flush(/*force=*/true);
  if (!flushed.ok()) return Status::Error("cluster: cannot write the journal: " + flushed.error.message);
  writer.value().reset();
  if (Status synced = state->SyncDir(kJournalDir, &error); !synced.ok()) return synced;
  Log(LogLevel::kInfo, "cluster_joined",
      {{"cluster", cc.name}, {"member", cc.member}, {"checkpoint_seq", from_etcd ? from_etcd->seq : 0},
       {"log_records", records}, {"next_index", cluster_next_index}, {"revision", all.value().revision}});
  cluster_applied_batches = cluster_next_index;
  cluster_initial = std::move(all.value());
  return Status::Ok();
}

// The quarantine reports (and their snapshots) etcd holds, into this
// member's quarantine store: a fingerprint quarantined anywhere blocks here.
void Supervisor::Impl::WriteClusterReports(const std::vector<cluster::KeyValue>& reports) {
  for (const auto& kv : reports) {
    const std::string name = kv.key.substr(kv.key.rfind('/') + 1);
    Status written = name.size() > 11 && name.ends_with(".state.json")
                         ? quarantine->WriteAttachment(name, kv.value).status()
                         : quarantine->Write(name, kv.value);
    if (!written.ok()) {
      Log(LogLevel::kError, "cluster_report_not_written", {{"report", name}, {"error", written.message()}});
    }
  }
}

// The leader queues a key for its next batch (a report, the checkpoint).
void Supervisor::Impl::ClusterPut(const std::string& suffix, const std::string& value) {
  if (cluster && leading) cluster_puts.emplace_back(cluster->Key(suffix), value);
}

// At a checkpoint on the leader: the checkpoint into etcd with the next
// batch, and the batches it covers deleted (etcd's size stays bounded).
void Supervisor::Impl::ClusterCheckpoint() {
  if (!cluster || !leading || !checkpoint) return;
  std::uint64_t keep_from = cluster_next_index;  // (the next batch, if every written one is covered)
  while (!cluster_batches.empty() && cluster_batches.front().second <= checkpoint->seq) cluster_batches.pop_front();
  if (!cluster_batches.empty()) keep_from = cluster_batches.front().first;
  // (Every batch before keep_from holds only records of seqs the
  // checkpoint covers: its highest seq, an admit ahead's included, is at
  // most the checkpoint's, so none of them is an admit still waiting for
  // its verdict.)
  const json value = {{"checkpoint", FormatCheckpoint(*checkpoint)}, {"log_from", keep_from}};
  cluster_puts.emplace_back(cluster->Key("checkpoint"), value.dump());
  cluster_deletes.emplace_back(cluster->Key("log/"), cluster->Key(ClusterMember::LogKeySuffix(keep_from)));
}

// The leader, after the local flush: what was appended since, as one
// batch, and the queued puts, in one transaction fenced on its leader key
// (more than one when they would not fit in one: reports, then the batch,
// then the checkpoint with its deletes). false: it could not (it stepped
// down).
bool Supervisor::Impl::Replicate() {
  if (!cluster) return true;
  if (!leading) return false;
  if (cluster_out.empty() && cluster_puts.empty() && cluster_deletes.empty()) return true;
  using Puts = std::vector<std::pair<std::string, std::string>>;
  struct Write {
    Puts puts;
    Puts deletes;
    std::size_t bytes = 0;
  };
  // The records, as batches of at most kClusterBatchBytes each (a record
  // over that is a COMMIT verdict whose result is left out, below), each
  // under the log key of its first record's index.
  struct Batch {
    std::uint64_t index = 0;
    std::string text;
    std::uint64_t max_seq = 0;
  };
  std::vector<Batch> batches;
  std::uint64_t index = cluster_next_index;
  for (const auto& payload : cluster_out) {
    std::string replaced;  // (a record with its result left out)
    if (payload.size() > kClusterMaxRecordBytes) {
      // A result too large for etcd (the variants' reply can be up to 16
      // MiB): its verdict goes without it, its digest kept. Every member
      // applies the command from its admit all the same; only a retry
      // answered by another member gets the stand-in for the result.
      auto record = ParseJournalRecord(payload);
      if (record.ok() && record.value().type == "verdict" && record.value().verdict == "COMMIT") {
        const std::size_t bytes = record.value().result.size();
        const std::string digest = proto::Fnv1a64Hex(record.value().result);
        record.value().result = json{{"nvs_result_omitted", "over " + std::to_string(kClusterMaxRecordBytes) +
                                                                " bytes: too large for etcd"},
                                     {"bytes", bytes},
                                     {"result_digest", digest}}
                                    .dump();
        Log(LogLevel::kWarn, "cluster_result_omitted", {{"seq", record.value().seq}, {"bytes", bytes}});
        replaced = EncodeJournalRecord(record.value());
      }
    }
    const std::string_view line = replaced.empty() ? std::string_view(payload) : std::string_view(replaced);
    if (batches.empty() || batches.back().text.size() + line.size() + 1 > kClusterBatchBytes) {
      batches.push_back({index, "", 0});
    }
    if (auto head = PeekJournalRecord(line)) batches.back().max_seq = std::max(batches.back().max_seq, head->seq);
    batches.back().text.append(line);
    batches.back().text.push_back('\n');
    ++index;
  }
  // (One put per key: etcd refuses a transaction that names a key twice,
  // as a report written at its verdict and again when it settles.)
  Puts puts;
  for (auto& p : cluster_puts) {
    auto same = std::find_if(puts.begin(), puts.end(), [&](const auto& q) { return q.first == p.first; });
    if (same != puts.end()) {
      same->second = std::move(p.second);
    } else {
      puts.push_back(std::move(p));
    }
  }
  // In this order, should they need several writes: the reports (one with
  // no verdict yet is harmless; a POISON verdict without its report would
  // let another member deliver the command), the batch, the checkpoint
  // with the deletes it allows (never before the records it covers).
  const std::string checkpoint_key = cluster->Key("checkpoint");
  std::stable_partition(puts.begin(), puts.end(), [&](const auto& p) { return p.first != checkpoint_key; });
  auto at = std::find_if(puts.begin(), puts.end(), [&](const auto& p) { return p.first == checkpoint_key; });
  for (const auto& b : batches) {
    at = puts.insert(at, std::make_pair(cluster->Key(ClusterMember::LogKeySuffix(b.index)), b.text)) + 1;
  }
  Puts deletes = std::move(cluster_deletes);
  std::vector<Write> writes(1);
  const std::string log_prefix = cluster->Key("log/");
  for (auto& p : puts) {
    const bool is_checkpoint = p.first == checkpoint_key;
    const bool is_log = p.first.rfind(log_prefix, 0) == 0;
    if (!is_log && p.first.size() + p.second.size() > kClusterWriteBytes) {
      Log(LogLevel::kError, "cluster_value_too_large",
          {{"key", p.first}, {"bytes", p.second.size()}, {"limit", kClusterWriteBytes},
           {"consequence", is_checkpoint ? "this checkpoint is not in etcd, so etcd's log is not cut back by it"
                           : p.first.ends_with(".state.json")
                               ? "this report's pre-command state is kept on this member only (a release elsewhere "
                                 "cannot retest it)"
                               : "this report is kept on this member only: the others do not block its command"}});
      if (is_checkpoint) deletes.clear();
      continue;
    }
    if (!writes.back().puts.empty() && writes.back().bytes + p.first.size() + p.second.size() > kClusterWriteBytes) {
      writes.emplace_back();
    }
    writes.back().bytes += p.first.size() + p.second.size();
    writes.back().puts.push_back(std::move(p));
    if (is_checkpoint) writes.back().deletes = std::move(deletes);
  }
  cluster_puts.clear();
  cluster_deletes.clear();
  for (const Write& w : writes) {
    if (w.puts.empty() && w.deletes.empty()) continue;
    const auto began = Now();
    const auto written = cluster->Write(w.puts, w.deletes);
    if (!written.ok() || !written.value()) {
      StepDown(!written.ok() ? "its write to etcd failed (" + written.status().message() + ")"
                             : "etcd refused its write: another member leads (the fence on its leader key)");
      return false;
    }
    ++cluster_writes;
    cluster_write_latency.Add(MillisSince(began, Now()) * 1000);
  }
  cluster_records_written += cluster_out.size();
  if (!cluster_out.empty()) {
    for (const auto& b : batches) cluster_batches.emplace_back(b.index, b.max_seq);
    cluster_next_index += cluster_out.size();
    cluster_out.clear();
    cluster_out_bytes = 0;
  }
  cluster_replicated = journal_appended;
  cluster_due.reset();
  return true;
}

// What the etcd side brought, each loop turn it woke the loop (and every turn:
// a leader's lease is judged on its own clock).
void Supervisor::Impl::ClusterTurn() {
  if (!cluster) return;
  ClusterMember::News news = cluster->Take();
  WriteClusterReports(news.reports);
  if (!leading) {
    for (auto& kv : news.log) cluster_backlog.push_back(std::move(kv));
    if (news.elected) promote_pending = true;
    if (promote_pending && !round && !restart_as_follower) Promote();
  }
  if (leading && !cluster->MayServe(Now())) {
    StepDown("its lease could not be renewed within its TTL (etcd unreachable, or this host too slow)");
  }
  if (!leading && !restart_as_follower) ApplyClusterBacklog();
  cluster->SetApplied(last_seq, leading ? "leader" : restart_as_follower ? "stepping_down" : "follower");
}

// A follower applies the leader's batches in order, except while a sync
// round runs (the round restores from the checkpoint and the tail as they
// were when it began).
void Supervisor::Impl::ApplyClusterBacklog() {
  if (round) return;
  while (!cluster_backlog.empty()) {
    const cluster::KeyValue kv = std::move(cluster_backlog.front());
    cluster_backlog.pop_front();
    if (!ApplyClusterBatch(kv)) break;  // (a gap etcd could not fill now: the next turn tries again)
  }
  cluster->SetApplied(last_seq, "follower");
}

bool Supervisor::Impl::ApplyClusterBatch(const cluster::KeyValue& kv) {
  if (kv.key == cluster->Key("checkpoint")) {
    CheckAgainstLeader(kv.value);
    return true;
  }
  const auto index = IndexOf(kv.key);
  if (!index || *index < cluster_applied_batches) return true;  // (seen already: a watch read again)
  if (*index != cluster_applied_batches) {
    // A batch missed (it should not be: the watch delivers every revision
    // in order); the rest is read from etcd at once.
    Log(LogLevel::kError, "cluster_log_gap", {{"expected", cluster_applied_batches}, {"got", *index}});
    auto read = cluster->ReadLogFrom(cluster_applied_batches);
    if (!read.ok()) {
      cluster_backlog.push_front(kv);
      return false;
    }
    for (const auto& missed : read.value()) {
      const auto at = IndexOf(missed.key);
      if (at && *at == cluster_applied_batches) ApplyClusterBatch(missed);
    }
    if (cluster_applied_batches < *index) {
      // What is missing is no longer in etcd (a checkpoint deleted it):
      // this member starts again from etcd's checkpoint.
      StepDown("its log has a gap etcd no longer holds (batches " + std::to_string(cluster_applied_batches) +
               " to " + std::to_string(*index) + ")");
      return false;
    }
    return ApplyClusterBatch(kv);
  }
  std::uint64_t max_seq = 0;
  for (const auto line : Lines(kv.value)) {
    ApplyClusterRecord(line);
    if (auto head = PeekJournalRecord(line)) max_seq = std::max(max_seq, head->seq);
    ++cluster_applied_batches;
  }
  cluster_next_index = cluster_applied_batches;
  // (Which batch holds which seqs, as the leader keeps it: if this member
  // leads, its first checkpoint must not delete a batch holding an admit
  // it has yet to settle.)
  cluster_batches.emplace_back(*index, max_seq);
  while (checkpoint && !cluster_batches.empty() && cluster_batches.front().second <= checkpoint->seq) {
    cluster_batches.pop_front();
  }
  return true;
}

// One record of the leader's journal, on a follower: into its own journal
// (the cache a restart reads), and what it means for its variants.
void Supervisor::Impl::ApplyClusterRecord(std::string_view payload) {
  AppendRecord(payload);
  auto parsed = ParseJournalRecord(payload);
  if (!parsed.ok()) {
    Log(LogLevel::kError, "cluster_record_unreadable", {{"error", parsed.status().message()}});
    return;
  }
  const JournalRecord& r = parsed.value();
  if (r.type == "checkpoint") {
    // The leader began a checkpoint after commit r.seq, the last this
    // member applied: its own, there (its variants take the snapshot
    // request in order, before any later apply).
    const std::uint64_t last_commit = !tail.empty() ? tail.back().seq : checkpoint ? checkpoint->seq : 0;
    if (last_commit == r.seq && !checkpointer.pending()) StartFollowerCheckpoint(r.seq);
    return;
  }
  if (r.type == "admit") {
    Suspect& s = cluster_admits[r.seq];
    s = Suspect{};
    s.seq = r.seq;
    s.time_ns = r.time_ns;
    s.request_id = r.id;
    s.client = r.client;
    s.fingerprint = r.fingerprint;
    s.payload = r.cmd;
    s.key = r.key;
    s.expires_at_ms = r.expires_at_ms;
    last_seq = std::max(last_seq, r.seq);
    return;
  }
  if (r.type != "verdict") return;
  last_seq = std::max(last_seq, r.seq);
  auto admitted = cluster_admits.find(r.seq);
  if (auto reply = ReplyOfVerdict(r)) answered.Remember(RequestKey(r.key, r.id), RememberedReply{*reply, {}, 0});
  if (r.verdict == "COMMIT" && admitted != cluster_admits.end()) {
    const Suspect& a = admitted->second;
    tail.push_back({a.seq, a.time_ns, a.payload});
    ++commits;
    ++commits_since_checkpoint;
    for (auto& v : variants) {
      if (Voting(v)) Send(v, proto::Apply{a.seq, a.time_ns, a.payload}, Purpose::kCatchUp, "applied");
    }
  }
  if (admitted != cluster_admits.end()) cluster_admits.erase(admitted);
}

// The leader's checkpoint, through etcd: against this member's own at the
// same seq (taken where the leader's `checkpoint` record is in the log),
// now if it is done, else once it is. A follower whose state differs from
// the leader's starts again, rebuilt from etcd.
void Supervisor::Impl::CheckAgainstLeader(const std::string& value) {
  const json v = json::parse(value, nullptr, false);
  if (!v.is_object() || !v.contains("checkpoint") || !v["checkpoint"].is_string()) return;
  // (The batches the leader deleted with it are covered: not kept here
  // either, should this member never take a checkpoint of its own.)
  if (v.contains("log_from") && v["log_from"].is_number_unsigned()) {
    const auto log_from = v["log_from"].get<std::uint64_t>();
    while (!cluster_batches.empty() && cluster_batches.front().first < log_from) cluster_batches.pop_front();
  }
  auto parsed = ParseCheckpoint(v["checkpoint"].get<std::string>());
  if (!parsed.ok()) return;
  const std::uint64_t seq = parsed.value().seq;
  if (auto own = own_checkpoints.find(seq); own != own_checkpoints.end()) {
    CompareWithLeader(seq, own->second, parsed.value().digest);
    return;
  }
  if (checkpointer.pending()) {
    if (leader_checkpoint) ++checkpoints_unchecked;  // (an older one still unpaired)
    leader_checkpoint = {seq, parsed.value().digest};
    return;
  }
  ++checkpoints_unchecked;  // (none of its own there: it joined after that record, or was busy with another)
}

// A checkpoint this follower took: kept to compare with the leader's.
void Supervisor::Impl::OnFollowerCheckpoint(const Checkpoint& own) {
  own_checkpoints[own.seq] = own.digest;
  while (own_checkpoints.size() > 8) own_checkpoints.erase(own_checkpoints.begin());
  if (!leader_checkpoint || leader_checkpoint->first > own.seq) return;
  const auto [seq, leaders] = *leader_checkpoint;
  leader_checkpoint.reset();
  if (seq != own.seq) {
    ++checkpoints_unchecked;
    return;
  }
  CompareWithLeader(seq, own.digest, leaders);
}

void Supervisor::Impl::CompareWithLeader(std::uint64_t seq, const std::string& own, const std::string& leaders) {
  if (own == leaders) {
    ++checkpoints_matched;
    return;
  }
  StepDown("its state at seq " + std::to_string(seq) + " (digest " + own + ") differs from the leader's (digest " +
           leaders + "): it starts again from etcd's checkpoint and log");
}

// A follower's own checkpoint (its journal is pruned by it, as a single
// nvsd's is): the snapshot of one voting variant, the digests of the others.
void Supervisor::Impl::StartFollowerCheckpoint(std::uint64_t seq) {
  std::vector<Variant*> voting;
  for (auto& v : variants) {
    if (Voting(v)) voting.push_back(&v);
  }
  if (voting.empty()) return;
  std::vector<std::string> names;
  for (std::size_t i = 1; i < voting.size(); ++i) names.push_back(voting[i]->config.name);
  checkpointer.Start(seq, voting.front()->config.name, names);
  Send(*voting.front(), proto::SnapshotRequest{seq}, Purpose::kCheckpointSnapshot, "state");
  for (std::size_t i = 1; i < voting.size(); ++i) {
    Send(*voting[i], proto::DigestRequest{seq}, Purpose::kCheckpointDigest, "digest");
  }
}

// This member's campaign won. It reads whatever of the log it has not
// applied (the old leader can write no more: its key is gone), then leads.
// A command the old leader admitted and never decided may have been
// running on its variants when it went: a suspect, retested on disposable
// processes before anything is dispatched (as after an nvsd crash), and
// never simply delivered.
void Supervisor::Impl::Promote() {
  auto rest = cluster->ReadLogFrom(cluster_applied_batches);
  if (!rest.ok()) {
    StepDown("it won the election but could not read etcd's log (" + rest.status().message() + ")");
    return;
  }
  promote_pending = false;
  for (const auto& kv : rest.value()) cluster_backlog.push_back(kv);
  ApplyClusterBacklog();  // (no round runs: ClusterTurn waits for its end)
  if (!cluster_backlog.empty() || restart_as_follower) {
    // It must lead on the whole log, or not at all.
    StepDown("it won the election but could not apply etcd's whole log");
    return;
  }
  for (auto& [seq, s] : cluster_admits) {
    suspects.push_back(s);
    suspects.back().rederive = true;
  }
  const std::size_t suspect_count = cluster_admits.size();
  cluster_admits.clear();
  leading = true;
  cluster_replicated = journal_appended;
  JournalRecord mark;
  mark.type = "mark";
  mark.time_ns = env.UnixNowNs();
  mark.note = "member " + config.cluster->member + " leads";
  AppendRecord(EncodeJournalRecord(mark));
  cluster->SetApplied(last_seq, "leader");
  ++metric_counters.leaderships;
  Log(LogLevel::kWarn, "cluster_leading",
      {{"member", config.cluster->member}, {"seq", last_seq}, {"next_index", cluster_next_index},
       {"suspects", suspect_count}});
  Publish("cluster", {{"role", "leader"}, {"member", config.cluster->member}, {"seq", last_seq},
                      {"suspects", suspect_count}});
  StartSuspectRetest();
}

// A leader that can no longer be sure it leads stops at once: what it told
// nobody yet is answered `not_leader` (the new leader knows from etcd
// whether each command was carried out: a retry there gets the answer),
// and nvsd starts again as a follower, its state dir rebuilt from etcd.
void Supervisor::Impl::StepDown(const std::string& why) {
  if (restart_as_follower) return;
  Log(LogLevel::kError, leading ? "cluster_stepped_down" : "cluster_restarting",
      {{"member", config.cluster->member}, {"why", why}});
  Publish("cluster", {{"role", "stepping_down"}, {"member", config.cluster->member}, {"why", why}});
  leading = false;
  restart_as_follower = true;
  stopping = true;
  std::vector<OutgoingReply> keep;
  for (auto& out : outbox) {
    const bool rests_on_etcd = out.record != 0 && out.record <= cluster_replicated;
    // (A reply resting on a record etcd lacks, whatever it says: an
    // `unavailable` for an admitted command, whose ABANDONED verdict never
    // reached etcd, would be carried out by the next leader.)
    const bool rests_on_lost = out.record != 0 && !rests_on_etcd;
    const auto status = out.reply.status;
    if (!rests_on_lost &&
        (rests_on_etcd || status == proto::ClientStatus::kUnavailable || status == proto::ClientStatus::kNotLeader ||
         status == proto::ClientStatus::kOk || (out.record == 0 && status != proto::ClientStatus::kAnswered))) {
      keep.push_back(std::move(out));
      continue;
    }
    if (out.reply.id) answered.Forget(RequestKey(out.to.user, *out.reply.id));
    out.reply = NotLeader(out.reply.id, why);
    out.record = 0;
    keep.push_back(std::move(out));
  }
  outbox = std::move(keep);
  // (Those admitted ahead may be in etcd: the next leader settles them.)
  for (auto& c : admitted_ahead) {
    const auto reply = NotLeader(c.request_id, why);
    Answer(c, reply);
  }
  admitted_ahead.clear();
  for (auto& c : waiting.TakeAll()) {
    const auto reply = NotLeader(c.request_id, why);
    Answer(c, reply);
  }
  cluster_out.clear();
  cluster_out_bytes = 0;
  cluster_due.reset();
}

// A `cluster` request (CLIENT.md §8): `handover`, from the leader, by a
// reviewer key when the endpoint requires CURVE. nullopt: answered later.
std::optional<proto::ClientReply> Supervisor::Impl::ClusterRequest(const ClientAddress& from, const std::string& id,
                                                                   const json& args) {
  if (!cluster) return proto::ClientReply::Rejected(id, "bad_request", "this nvsd is not a cluster member (no \"cluster\" in its config)");
  if (!args.is_object() || args.value("action", json()) != "handover") {
    return proto::ClientReply::Rejected(id, "bad_request", "action must be handover");
  }
  if (args.contains("note") && !args["note"].is_string()) {
    return proto::ClientReply::Rejected(id, "bad_request", "member 'note' must be a string");
  }
  if (!leading) return NotLeader(id, "only the leader can hand the cluster over");
  if (config.client_curve) {
    const auto& reviewers = config.client_curve->reviewers;
    if (std::find(reviewers.begin(), reviewers.end(), from.user) == reviewers.end()) {
      return proto::ClientReply::Rejected(id, "forbidden", "key \"" + from.user + "\" may not hand the cluster over: "
                                                           "only the keys client_curve.reviewers names may");
    }
  }
  if (handover) return proto::ClientReply::Unavailable(id, "a handover is already under way");
  handover = Handover{from, id, config.client_curve ? from.user : "unauthenticated", args.value("note", ""),
                      Now() + milliseconds(config.queue_deadline_ms)};
  Log(LogLevel::kWarn, "cluster_handover", {{"phase", "asked"}, {"by", handover->by}, {"note", handover->note}});
  return std::nullopt;
}

// The handover goes on once no command is undecided, nothing is being
// retested and every record is in etcd: the leader resigns, answers, and
// starts again as a follower. Past its deadline it is called off.
void Supervisor::Impl::AdvanceHandover() {
  if (!handover) return;
  const bool settled =
      !AnyUndecided() && admitted_ahead.empty() && !retest && suspects.empty() && !checkpointer.pending();
  if (!settled) {
    if (Now() < handover->deadline) return;
    Reply(handover->to, proto::ClientReply::Unavailable(
                            handover->request_id, "the handover was called off: commands were still being decided after "
                                                  "queue_deadline_ms; this member still leads"));
    Log(LogLevel::kWarn, "cluster_handover", {{"phase", "called_off"}});
    handover.reset();
    return;
  }
  for (auto& c : waiting.TakeAll()) {
    const auto reply = NotLeader(c.request_id, "it handed the cluster over");
    Answer(c, reply);
  }
  FlushJournalAndReplies();  // (every verdict in etcd, every reply out)
  if (!leading || !Replicate()) return;  // (a write failed: it stepped down, which answers no handover)
  const Status resigned = cluster->Resign();
  const std::string me = config.cluster->member;
  Log(LogLevel::kWarn, "cluster_handover", {{"phase", "resigned"}, {"seq", last_seq}, {"by", handover->by},
                                            {"error", resigned.ok() ? json() : json(resigned.message())}});
  Publish("cluster", {{"role", "stepping_down"}, {"member", me}, {"why", "handover"}, {"by", handover->by}});
  Reply(handover->to, resigned.ok() ? Ok(handover->request_id, {{"handed_over", true}, {"member", me}, {"seq", last_seq}})
                                    : proto::ClientReply::Unavailable(handover->request_id,
                                                                      "resigning failed (" + resigned.message() +
                                                                          "): this member stops leading anyway, and its "
                                                                          "lease ends within its TTL"));
  handover.reset();
  leading = false;
  restart_as_follower = true;
  stopping = true;
}

proto::ClientReply Supervisor::Impl::NotLeader(const std::optional<std::string>& id, const std::string& why) const {
  const auto view = cluster->GetView();
  const bool self = view.leader == config.cluster->member;
  return proto::ClientReply::NotLeader(
      id, "member " + config.cluster->member + " does not lead the cluster " + config.cluster->name + ": " + why,
      self ? "" : view.leader_endpoint, self ? "" : view.leader);
}

json Supervisor::Impl::ClusterStatusJson() const {
  if (!cluster) return json();
  const auto view = cluster->GetView();
  json members = json::array();
  for (const auto& m : view.members) {
    members.push_back({{"member", m.name}, {"endpoint", m.endpoint}, {"role", m.role}, {"applied_seq", m.applied_seq},
                       {"updated_ms", m.updated_ms}});
  }
  return {{"name", config.cluster->name},
          {"member", config.cluster->member},
          {"role", leading ? "leader" : restart_as_follower ? "stepping_down" : "follower"},
          {"leader", view.leader},
          {"leader_endpoint", view.leader_endpoint},
          {"lease", view.lease},
          {"lease_ttl_s", config.cluster->lease_ttl_s},
          {"serve_left_ms", view.serve_left_ms ? json(*view.serve_left_ms) : json()},
          {"applied_seq", last_seq},
          {"checkpoints_matched", checkpoints_matched},
          {"checkpoints_unchecked", checkpoints_unchecked},
          {"log_index", cluster_next_index},
          {"etcd_writes", cluster_writes},
          {"records_per_write", cluster_writes == 0 ? 0.0
                                                    : static_cast<double>(cluster_records_written) / cluster_writes},
          {"etcd_write_p50_us", cluster_write_latency.Percentile(0.5)},
          {"etcd_write_p99_us", cluster_write_latency.Percentile(0.99)},
          {"etcd_leader_endpoint", view.etcd_leader_endpoint},
          {"members", members},
          {"last_etcd_error", view.last_error}};
}

}  // namespace nvs::supervisor
