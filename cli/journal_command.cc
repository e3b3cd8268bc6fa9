// `nvs journal check STATE_DIR` and `nvs journal repair STATE_DIR [--yes]`
// (protocol/JOURNAL.md, "Damage"): what nvsd would find wrong with a state
// dir, where, and what it means; and, for damage, exactly what a repair
// drops before it drops anything. A repair never destroys: each file it
// changes is kept beside it as NAME.damaged.
#include <CLI/CLI.hpp>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common.h"
#include "nvs/supervisor/journal.h"
#include "nvs/supervisor/state_dir.h"

namespace nvs::cli {
namespace {

namespace sv = nvs::supervisor;
using nlohmann::json;

struct RecordInfo {
  std::string type;
  std::uint64_t seq = 0;
  std::string id;
  std::string verdict;
  std::size_t offset = 0;
};

// One record in words: "seq 42 verdict COMMIT (id r7)".
std::string Describe(const RecordInfo& r) {
  std::string out = r.seq > 0 ? "seq " + std::to_string(r.seq) + " " + r.type : r.type;
  if (!r.verdict.empty()) out += " " + r.verdict;
  if (!r.id.empty()) out += " (id " + r.id + ")";
  return out;
}

// The records of a scan with their offsets and the facts check needs.
std::vector<RecordInfo> Infos(const sv::JournalScan& scan) {
  std::vector<RecordInfo> out;
  std::size_t at = sv::kJournalMagic.size();
  for (const auto& payload : scan.records) {
    RecordInfo info;
    info.offset = at;
    std::uint64_t seq = 0;
    auto parsed = sv::ParseJournalRecord(payload, &seq);
    info.seq = seq;
    if (parsed.ok()) {
      info.type = parsed.value().type;
      info.seq = parsed.value().seq;
      info.id = parsed.value().id;
      info.verdict = parsed.value().verdict;
    } else {
      info.type = "unreadable record (" + parsed.status().message() + ")";
    }
    out.push_back(std::move(info));
    at += 8 + payload.size();
  }
  return out;
}

struct SegmentFinding {
  std::string name;  // journal/NNN.nvj
  std::string bytes;
  sv::JournalScan scan;
  std::vector<RecordInfo> records;
};

// The good records after a damaged span, as a second scan from next_good.
sv::JournalScan ScanFrom(const std::string& bytes, std::size_t at) {
  return sv::ScanJournal(std::string(sv::kJournalMagic) + bytes.substr(at));
}

int Check(const std::string& path, bool repair, bool yes) {
  auto opened = sv::PosixStateDir::Open(path);
  if (!opened.ok()) {
    std::cerr << "nvs journal: " << opened.status().message() << "\n";
    return kExitUsage;
  }
  sv::PosixStateDir& dir = *opened.value();
  if (repair && yes) {
    Status locked = dir.Lock();  // never under a running nvsd
    if (!locked.ok()) {
      std::cerr << "nvs journal repair: " << locked.message() << "\n";
      return kExitRefused;
    }
  }
  bool damaged = false;
  std::vector<std::string> plan;  // what a repair does
  std::vector<std::function<Status()>> actions;

  // Checkpoints.
  for (const std::string name : {"checkpoint.json", "checkpoint.prev.json"}) {
    bool missing = false;
    auto text = dir.Read(name, &missing);
    if (missing) {
      std::cout << name << ": none\n";
      continue;
    }
    bool unchecked = false;
    auto checkpoint = text.ok() ? sv::ParseCheckpoint(text.value(), &unchecked) : Result<sv::Checkpoint>(text.status());
    if (checkpoint.ok()) {
      std::cout << name << ": seq " << checkpoint.value().seq << ", digest " << checkpoint.value().digest
                << (unchecked ? " (format 1: no checksum to check it by)" : ", checksum good") << "\n";
      continue;
    }
    damaged = true;
    std::cout << name << ": DAMAGED: " << checkpoint.status().message() << "\n";
    plan.push_back("set " + name + " aside as " + name + ".damaged (nvsd then starts from the other checkpoint, or "
                   "replays the whole journal if none is left and it goes back to the first command)");
    actions.push_back([&dir, name] {
      sv::StorageError error;
      return dir.Rename(name, name + ".damaged", &error);
    });
  }

  // Segments.
  auto names = dir.List("journal");
  if (!names.ok()) {
    std::cerr << "nvs journal: " << names.status().message() << "\n";
    return kExitUsage;
  }
  std::vector<std::uint64_t> indices;
  for (const auto& name : names.value()) {
    if (const auto index = sv::JournalSegmentIndex(name)) indices.push_back(index);
  }
  std::sort(indices.begin(), indices.end());
  if (indices.empty()) std::cout << "journal: no segments\n";
  std::uint64_t last_admit = 0;
  std::set<std::uint64_t> admitted, decided;
  for (std::size_t i = 0; i < indices.size(); ++i) {
    const std::string name = "journal/" + sv::JournalSegmentPath("", indices[i]).filename().string();
    const bool newest = i + 1 == indices.size();
    auto bytes = dir.Read(name);
    if (!bytes.ok()) {
      std::cout << name << ": UNREADABLE: " << bytes.status().message() << "\n";
      damaged = true;
      continue;
    }
    const sv::JournalScan scan = sv::ScanJournal(bytes.value());
    const auto records = Infos(scan);
    std::cout << name << ": " << records.size() << " good records";
    if (!records.empty()) {
      std::cout << ", seq " << records.front().seq << " to " << records.back().seq;
    }
    std::size_t unreadable = 0;
    for (const auto& r : records) {
      if (r.type == "admit") {
        if (r.seq <= last_admit) std::cout << "\n  seq " << r.seq << " admitted again (after " << last_admit << ")";
        last_admit = std::max(last_admit, r.seq);
        admitted.insert(r.seq);
      } else if (r.type == "verdict") {
        decided.insert(r.seq);
      } else if (r.type.rfind("unreadable", 0) == 0) {
        ++unreadable;
      }
    }
    if (unreadable > 0) std::cout << ", " << unreadable << " of a shape nvsd does not write (skipped at start)";
    std::cout << "\n";
    if (scan.tail == sv::JournalScan::Tail::kClean) continue;
    if (scan.tail == sv::JournalScan::Tail::kTorn && newest) {
      std::cout << "  torn tail at offset " << scan.good_bytes << ": " << scan.damage
                << " (nvsd cuts it at start: a crash mid-write)\n";
      continue;
    }
    damaged = true;
    const RecordInfo* before = records.empty() ? nullptr : &records.back();
    // Every unreadable span of the segment, in one pass: [from, to) offsets,
    // and whether the segment ends in one (cut there) or in good records.
    const std::string original = bytes.value();
    std::vector<std::pair<std::size_t, std::size_t>> spans;
    std::size_t cut_at = original.size();
    std::size_t kept_after = 0;
    {
      sv::JournalScan cur = scan;
      std::size_t base = 0;  // cur's offsets are those of original.substr(base), after a magic line
      const auto absolute = [&](std::size_t offset) {
        return base == 0 ? offset : base + offset - sv::kJournalMagic.size();
      };
      for (;;) {
        if (cur.tail == sv::JournalScan::Tail::kDamaged) {
          spans.emplace_back(absolute(cur.good_bytes), absolute(cur.next_good));
          base = spans.back().second;
          cur = ScanFrom(original, base);
          kept_after += cur.records.size();
          continue;
        }
        if (cur.tail != sv::JournalScan::Tail::kClean) cut_at = absolute(cur.good_bytes);
        break;
      }
    }
    for (const auto& [from, to] : spans) {
      std::cout << "  DAMAGED at offset " << from << ": " << to - from << " unreadable bytes, good records after them\n";
      plan.push_back("drop the " + std::to_string(to - from) + " unreadable bytes at offset " + std::to_string(from) +
                     " of " + name + (spans.size() == 1 && before ? " (after " + Describe(*before) + ")" : "") +
                     " (what they held is lost: a verdict there leaves its command undecided, to be retested at the "
                     "next start, and its request id forgotten)");
    }
    if (!spans.empty()) std::cout << "  (the first: " << scan.damage << ")\n";
    if (cut_at < original.size()) {
      std::cout << "  DAMAGED at offset " << cut_at << " to the end" << (spans.empty() ? ": " + scan.damage : "")
                << " (a closed segment was complete when it was closed)\n";
      plan.push_back("cut " + name + " at offset " + std::to_string(cut_at) + (spans.empty() && before ? " (after " +
                     Describe(*before) + ")" : "") + ": the " + std::to_string(original.size() - cut_at) +
                     " bytes after it are unreadable");
    }
    if (!spans.empty()) {
      plan.push_back("keep the " + std::to_string(kept_after) + " good records between and after those spans");
    }
    actions.push_back([&dir, name, original, spans, cut_at] {
      std::string repaired;
      std::size_t at = 0;
      for (const auto& [from, to] : spans) {
        repaired += original.substr(at, from - at);
        at = to;
      }
      repaired += original.substr(at, cut_at - at);
      // The original is kept beside it, never over an earlier one.
      std::string keep = name + ".damaged";
      for (int n = 1; dir.Exists(keep); ++n) keep = name + ".damaged." + std::to_string(n);
      sv::StorageError error;
      Status kept = dir.WriteAtomically(keep, original, &error);
      if (!kept.ok()) return kept;
      return dir.WriteAtomically(name, repaired, &error);
    });
  }
  std::size_t undecided = 0;
  for (const auto seq : admitted) undecided += decided.count(seq) ? 0 : 1;
  if (undecided > 0) {
    std::cout << undecided << " admitted command(s) without a verdict (in flight when nvsd stopped: the next start "
                              "retests them)\n";
  }
  if (!damaged) {
    std::cout << "no damage in any file\n";
    return kExitOk;
  }
  if (!repair) {
    std::cout << "DAMAGED: nvsd will not start if a start reads a damaged file (the checkpoints and the segments "
                 "since, and back to the last remembered_requests verdicts). `nvs journal repair "
              << path << "` says exactly what it would drop to go on.\n";
    return kExitRefused;
  }
  std::cout << (yes ? "repairing:\n" : "a repair would:\n");
  for (const auto& step : plan) std::cout << "  - " << step << "\n";
  if (!yes) {
    std::cout << "nothing changed; run again with --yes to do it (each changed file is kept as NAME.damaged)\n";
    return kExitRefused;
  }
  for (auto& action : actions) {
    Status done = action();
    if (!done.ok()) {
      std::cerr << "nvs journal repair: " << done.message() << "\n";
      return kExitRefused;
    }
  }
  std::cout << "done; `nvs journal check " << path << "` to see the result\n";
  return kExitOk;
}

}  // namespace

void AddJournalCheckCommands(CLI::App& journal, Options& o) {
  static bool yes = false;
  CLI::App* check = journal.add_subcommand(
      "check", "say what nvsd would find wrong with a state dir (damaged segments, checkpoints), where, and what it "
               "means; exit 1 if it would not start");
  check->add_option("state_dir", o.path, "nvsd's state dir")->required();
  check->callback([&] { o.exit_code = Check(o.path, false, false); });
  CLI::App* repair = journal.add_subcommand(
      "repair", "say exactly what would be dropped to make a damaged state dir usable again; with --yes, drop it "
                "(never while nvsd runs; each changed file is kept as NAME.damaged)");
  repair->add_option("state_dir", o.path, "nvsd's state dir")->required();
  repair->add_flag("--yes", yes, "do it");
  repair->callback([&] { o.exit_code = Check(o.path, true, yes); });
}

}  // namespace nvs::cli
