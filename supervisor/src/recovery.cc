#include "recovery.h"

#include <algorithm>
#include <deque>
#include <map>

namespace nvs::supervisor {
namespace {


// A verdict recovery only remembers (older than the checkpoint): not
// parsed; kept as its text, for a retry to read (RememberedReply).
struct SkimmedVerdict {
  std::string request_key;  // RequestKey(key, id)
  std::string text;
};

// One segment's records, as recovery needs them.
struct SegmentRecords {
  std::uint64_t index = 0;
  // Admit, verdict and mark records, in order: each an index into `parsed`
  // or into `skimmed` (a record parsed whole is a few hundred bytes; most
  // of a long history is skimmed, and only its last replies are kept).
  struct Item {
    bool parsed = false;
    bool remember = false;  // a verdict whose reply is among the last remembered_requests
    std::size_t at = 0;
  };
  std::vector<Item> order;
  std::vector<JournalRecord> parsed;
  std::vector<SkimmedVerdict> skimmed;
  std::uint64_t max_seq = 0;
  std::optional<std::uint64_t> min_seq;  // of its admits and verdicts
};

struct LoadedCheckpoint {
  std::optional<Checkpoint> checkpoint;
  std::string problem;  // why it cannot be used ("" when it can, or is missing)
  bool missing = false;
  bool unchecked = false;
};

LoadedCheckpoint LoadCheckpoint(StateDir& dir, const std::string& name) {
  LoadedCheckpoint out;
  bool missing = false;
  auto text = dir.Read(name, &missing);
  if (!text.ok()) {
    out.missing = missing;
    if (!missing) out.problem = text.status().message();
    return out;
  }
  auto parsed = ParseCheckpoint(text.value(), &out.unchecked);
  if (!parsed.ok()) {
    out.problem = dir.Where(name).string() + ": " + parsed.status().message();
    return out;
  }
  out.checkpoint = std::move(parsed.value());
  return out;
}

std::string WayOut(const std::string& what) {
  return what + ". nvsd will not start on a state it cannot vouch for. `nvs journal check STATE_DIR` says "
                "what is wrong where; `nvs journal repair STATE_DIR` says exactly what it would drop to go on (and "
                "drops it with --yes); or restore the state dir from a backup";
}

}  // namespace

std::string JournalSegmentName(std::uint64_t index) {
  return std::string(kJournalDir) + "/" + JournalSegmentPath("", index).filename().string();
}

Result<Recovered> RecoverStateDir(StateDir& dir, const RecoveryOptions& options) {
  Recovered r;
  StorageError error;
  // A state dir of the single-file layout: its journal becomes segment 1.
  auto listed = dir.List(kJournalDir);
  if (!listed.ok()) return listed.status();
  std::vector<std::uint64_t> indices;
  for (const auto& name : listed.value()) {
    if (const auto index = JournalSegmentIndex(name)) indices.push_back(index);
  }
  std::sort(indices.begin(), indices.end());
  if (indices.empty() && dir.Exists("journal.nvj")) {
    Status made = dir.MakeDir(kJournalDir, &error);
    Status moved = made.ok() ? dir.Rename("journal.nvj", JournalSegmentName(1), &error) : made;
    if (!moved.ok()) return Status::Error("cannot move journal.nvj into the journal folder: " + moved.message());
    indices = {1};
  }

  // The checkpoint: the newest good one of the two kept.
  LoadedCheckpoint current = LoadCheckpoint(dir, kCheckpointFile);
  LoadedCheckpoint previous = LoadCheckpoint(dir, kPreviousCheckpointFile);
  if (current.checkpoint) {
    r.checkpoint = current.checkpoint;
    r.checkpoint_is_current = true;
    r.previous_checkpoint = previous.checkpoint;
    if (current.unchecked) r.warnings.push_back(dir.Where(kCheckpointFile).string() + " has no checksum (format 1)");
  } else if (previous.checkpoint) {
    r.checkpoint = previous.checkpoint;
    r.warnings.push_back((current.missing ? dir.Where(kCheckpointFile).string() + " is missing"
                                          : current.problem) +
                         "; starting from the previous checkpoint (seq " + std::to_string(previous.checkpoint->seq) +
                         ") and a longer replay of the journal");
  } else if (!current.missing || !previous.missing || !indices.empty()) {
    const bool whole_journal = !indices.empty() && indices.front() == 1;
    const std::string why = !current.problem.empty() ? current.problem
                            : !previous.problem.empty() ? previous.problem
                                                        : dir.Where(kCheckpointFile).string() + " is missing";
    if (!whole_journal && !indices.empty()) {
      return Status::Error(WayOut(why + "; no usable checkpoint is left, and the journal does not go back to the "
                                        "first command (its oldest segment is " +
                                        dir.Where(JournalSegmentName(indices.front())).string() +
                                        "), so the state cannot be rebuilt"));
    }
    if (!indices.empty()) {
      r.warnings.push_back(why + "; no usable checkpoint is left: the state is rebuilt by replaying the whole journal "
                                 "from its first command");
    } else if (!current.missing || !previous.missing) {
      return Status::Error(WayOut(why + "; no usable checkpoint is left, and there is no journal to rebuild from"));
    }
  }
  const std::uint64_t checkpoint_seq = r.checkpoint ? r.checkpoint->seq : 0;
  r.last_seq = checkpoint_seq;

  // Segments, newest first, until the rest can only hold what the
  // checkpoint covers and enough replies are remembered.
  std::vector<SegmentRecords> read;  // newest first
  std::size_t replies_met = 0;   // verdicts that leave a reply to remember, newest first
  std::size_t verdicts_met = 0;
  for (auto it = indices.rbegin(); it != indices.rend(); ++it) {
    const std::string name = JournalSegmentName(*it);
    auto bytes = dir.Read(name);
    if (!bytes.ok()) return bytes.status();
    const JournalScanViews scan = ScanJournalViews(bytes.value());  // (views into bytes, read below)
    const bool newest = it == indices.rbegin();
    if (scan.tail == JournalScan::Tail::kDamaged || (!newest && scan.tail != JournalScan::Tail::kClean)) {
      return Status::Error(WayOut(dir.Where(name).string() + ": damaged at offset " + std::to_string(scan.good_bytes) +
                                  " (" + scan.damage + "), after " + std::to_string(scan.records.size()) +
                                  " good records" +
                                  (newest ? std::string() : "; a closed segment was fsynced whole, so this is "
                                                            "damage, not a torn write")));
    }
    if (newest) {
      r.current = *it;
      r.current_good_bytes = scan.good_bytes;
      r.current_records = scan.records.size();
      if (scan.tail == JournalScan::Tail::kTorn) r.torn = scan.damage;
    }
    SegmentRecords segment;
    segment.index = *it;
    // Newest record first, so that reading stops where nothing older is
    // needed: admits are written in seq order, so once an admit the
    // checkpoint covers is passed, every record before it is about a
    // command the checkpoint covers too, and only its reply may be wanted
    // (the last remembered_requests request ids': the first met, read
    // backwards). A 64 MiB segment of which a restart needs the last
    // thousand replies is not skimmed whole (it was: 150 ms of a restart
    // after a million commands). A history whose commands mostly carry no
    // request id is read back 2 x remembered_requests commands at most.
    bool covered_admit_seen = false;
    std::deque<std::string> skipped_here;
    for (std::size_t i = scan.records.size(); i-- > 0;) {
      if (covered_admit_seen && (replies_met >= options.remembered_requests ||
                                 verdicts_met >= 2 * options.remembered_requests)) {
        break;
      }
      ++r.records_read;
      // Most records are older than the checkpoint: an admit there is only
      // its seq, a verdict its request id and its text. Those are skimmed,
      // not parsed (a million commands: ~4 us a record parsed, ~0.3 skimmed).
      if (const auto head = PeekJournalRecord(scan.records[i]); head) {
        const bool admit = head->type == "admit";
        const bool verdict = head->type == "verdict";
        segment.max_seq = std::max(segment.max_seq, head->seq);
        if ((admit || verdict) && head->seq <= checkpoint_seq) {
          segment.min_seq = std::min(segment.min_seq.value_or(head->seq), head->seq);
          if (admit) covered_admit_seen = true;
          if (verdict) {
            ++verdicts_met;
            if (head->verdict != "ABANDONED" && !head->id.empty() && replies_met++ < options.remembered_requests) {
              segment.order.push_back({false, true, segment.skimmed.size()});
              segment.skimmed.push_back({RequestKey(head->key, head->id), std::string(scan.records[i])});
            }
          }
          continue;
        }
        if (!admit && !verdict && head->type != "mark") continue;
      }
      std::uint64_t seq_seen = 0;
      auto parsed = ParseJournalRecord(scan.records[i], &seq_seen);
      segment.max_seq = std::max(segment.max_seq, seq_seen);
      if (!parsed.ok()) {
        ++r.skipped;
        if (skipped_here.size() == 16) skipped_here.pop_front();  // (read backwards: the segment's first 16 stay)
        skipped_here.push_back(dir.Where(name).string() + ", record " + std::to_string(i + 1) + ": " +
                               parsed.status().message());
        continue;
      }
      JournalRecord& record = parsed.value();
      if (record.type != "admit" && record.type != "verdict" && record.type != "mark") continue;
      segment.max_seq = std::max(segment.max_seq, record.seq);
      // (A mark's seq, when it has one, is an admit's; a mark without one
      // says nothing of the seqs the segment holds.)
      if (record.type != "mark") segment.min_seq = std::min(segment.min_seq.value_or(record.seq), record.seq);
      // Only what matters is kept: admits after the checkpoint, verdicts.
      bool remember = false;
      if (record.type == "admit") {
        if (record.seq <= checkpoint_seq) {
          covered_admit_seen = true;
          continue;
        }
      } else if (record.type == "verdict") {
        ++verdicts_met;
        if (record.verdict != "ABANDONED" && !record.id.empty()) {
          remember = replies_met++ < options.remembered_requests;
        }
      }
      segment.order.push_back({true, remember, segment.parsed.size()});
      segment.parsed.push_back(std::move(record));
    }
    std::reverse(segment.order.begin(), segment.order.end());
    // (Examples: the first 16 met, segments newest first, each in order.)
    for (auto example = skipped_here.rbegin(); example != skipped_here.rend() && r.skipped_examples.size() < 16;
         ++example) {
      r.skipped_examples.push_back(std::move(*example));
    }
    const bool reaches_checkpoint = r.checkpoint && segment.min_seq && *segment.min_seq <= checkpoint_seq;
    read.push_back(std::move(segment));
    ++r.segments_read;
    if (reaches_checkpoint && (replies_met >= options.remembered_requests ||
                               verdicts_met >= 2 * options.remembered_requests)) {
      break;
    }
  }

  // Closed segments, oldest first: those not read hold nothing past the
  // oldest that was read.
  const std::uint64_t unread_bound =
      read.empty() ? checkpoint_seq
                   : (read.back().min_seq ? std::max<std::uint64_t>(*read.back().min_seq, 1) - 1 : read.back().max_seq);
  for (const auto index : indices) {
    if (index == r.current) continue;
    std::uint64_t max_seq = unread_bound;
    for (const auto& segment : read) {
      if (segment.index == index) max_seq = segment.max_seq;
    }
    r.closed.push_back({index, max_seq});
  }

  // Apply, oldest first.
  struct Admitted {
    std::int64_t time_ns;
    std::string payload;
    std::string id;
    std::string client;
    std::string fingerprint;
    std::string key;
    std::int64_t expires_at_ms = 0;
    bool before_mark = false;
  };
  std::map<std::uint64_t, Admitted> admitted;
  std::uint64_t commits_after = 0;
  std::vector<std::pair<std::string, RememberedReply>> replies;
  replies.reserve(std::min(replies_met, options.remembered_requests));
  for (auto segment = read.rbegin(); segment != read.rend(); ++segment) {
    r.last_seq = std::max(r.last_seq, segment->max_seq);
    for (const auto& item : segment->order) {
      if (!item.parsed) {
        SkimmedVerdict& skimmed = segment->skimmed[item.at];
        replies.emplace_back(std::move(skimmed.request_key), RememberedReply{std::nullopt, std::move(skimmed.text)});
        continue;
      }
      JournalRecord& record = segment->parsed[item.at];
      if (record.type == "mark") {
        // (Storage trouble ended here: an admit still undecided was in
        // flight through it, and any client it answered was told it was
        // not carried out, after this mark was on disk. A mark with a
        // `seq` says so of that admit only: a poison whose report could
        // not be written, answered `unavailable`; other admits undecided
        // then, suspects of a retest at start, may have been answered
        // `committed`.)
        if (record.seq != 0) {
          if (auto it = admitted.find(record.seq); it != admitted.end()) it->second.before_mark = true;
        } else {
          for (auto& [seq, a] : admitted) a.before_mark = true;
        }
        continue;
      }
      const std::uint64_t seq = record.seq;
      if (record.type == "admit") {
        admitted[seq] = {record.time_ns, std::move(record.cmd), record.id, std::move(record.client),
                         std::move(record.fingerprint), std::move(record.key), record.expires_at_ms};
        continue;
      }
      auto it = admitted.find(seq);
      if (record.verdict == "ABANDONED") {
        if (it != admitted.end()) admitted.erase(it);
        continue;
      }
      if (record.verdict == "COMMIT") {
        if (seq > checkpoint_seq) {
          ++commits_after;
          if (it != admitted.end()) {
            r.tail.push_back({seq, it->second.time_ns, it->second.payload});
          } else if (++r.commits_without_command_count <= 16) {
            r.commits_without_command.push_back(seq);
          }
        }
      }
      if (it != admitted.end()) admitted.erase(it);
      if (record.id.empty() || !item.remember) continue;
      std::string id = RequestKey(record.key, record.id);
      replies.emplace_back(std::move(id), RememberedReply{ReplyOfVerdict(std::move(record)), {}});
    }
    segment->order = {};
    segment->parsed = {};
    segment->skimmed = {};
  }
  r.remembered = std::move(replies);
  for (auto& [seq, a] : admitted) {
    r.suspects.push_back(
        {seq, a.time_ns, a.id, a.client, a.fingerprint, std::move(a.payload), a.key, a.expires_at_ms, a.before_mark});
  }
  r.commits = (r.checkpoint ? r.checkpoint->commits : 0) + commits_after;
  if (!r.checkpoint && !r.tail.empty() && !(indices.front() == 1)) {
    return Status::Error(WayOut("the journal holds commits but no checkpoint, and does not go back to the first "
                                "command"));
  }
  return r;
}

}  // namespace nvs::supervisor
