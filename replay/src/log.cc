// Reading the command logs `nvs replay` accepts (replay.h: LoadCommandLog).
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "nvs/protocol/json_values.h"
#include "nvs/protocol/messages.h"
#include "nvs/replay/replay.h"
#include "nvs/supervisor/journal.h"

namespace nvs::replay {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::string Compact(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

// A member of a record that is not what nvs writes there.
struct BadMember : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A count member (seq, time_ns): an integer in [0, 2^63), as PROTOCOL.md
// §2 has them; `fallback` when absent. Throws BadMember otherwise: a float
// such as 1e30 must not reach nlohmann's get<>(), whose cast is then
// undefined behaviour, and 1.5 or -1 must not become 1 or 2^64 - 1.
std::uint64_t Count(const json& object, const char* key, std::uint64_t fallback = 0) {
  auto it = object.find(key);
  if (it == object.end()) return fallback;
  if (const auto count = protocol::ReadCount(*it)) return *count;
  throw BadMember(std::string("member '") + key + "' is not an integer in [0, 2^63)");
}

// Parses one JSON document of a log; discarded when it is not JSON or is
// nested deeper than nvs ever writes (protocol::ParseDocument).
json ParseDocument(std::string_view text) {
  auto parsed = protocol::ParseDocument(text);
  return parsed.ok() ? std::move(parsed.value()) : json(json::value_t::discarded);
}

// The snapshot a quarantine report names: a plain file name beside the
// report, as nvsd writes it; never a path elsewhere ("/dev/zero",
// "../../etc/shadow").
bool PlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

// Journal records (from segments or their export: each a record's body)
// become commands: every admitted command in sequence order, with the
// verdict nvsd recorded. The records are read as nvsd's recovery reads them
// (ParseJournalRecord, the schema's one reader); one it cannot read is
// skipped, and said so (the first ten each, the rest counted).
void AddJournalRecords(const std::vector<std::string>& records, CommandLog& log) {
  constexpr std::size_t kNamed = 10;
  std::map<std::uint64_t, RecordedCommand> by_seq;
  std::size_t unreadable = 0;
  for (std::size_t i = 0; i < records.size(); ++i) {
    auto parsed = supervisor::ParseJournalRecord(records[i]);
    if (!parsed.ok()) {
      if (unreadable++ < kNamed) {
        log.warnings.push_back("journal record " + std::to_string(i + 1) + " is not one nvsd writes (" +
                               parsed.status().message() + "); skipped");
      }
      continue;
    }
    const supervisor::JournalRecord& record = parsed.value();
    if (record.type == "admit") {
      RecordedCommand c;
      c.seq = record.seq;
      c.time_ns = record.time_ns;
      c.cmd = record.cmd;
      c.request_id = record.id;
      by_seq[record.seq] = std::move(c);
    } else if (record.type == "start" && !record.config.empty()) {
      log.recorded_config = record.config;  // the last one: the programs that ran most recently
    } else if (record.type == "verdict") {
      auto it = by_seq.find(record.seq);
      if (it == by_seq.end()) continue;  // its admit was pruned
      it->second.recorded_verdict = record.verdict;
      if (record.verdict == "COMMIT") it->second.recorded_result = record.result;
    }
  }
  if (unreadable > kNamed) {
    log.warnings.push_back(std::to_string(unreadable - kNamed) + " more journal records nvsd does not write were skipped");
  }
  // A command admitted but never decided was in flight when nvsd stopped:
  // never acknowledged, retested by the next nvsd and then abandoned
  // (ABANDONED) or quarantined (POISON), and run again under a new sequence
  // number if its client retried. Only the very last one is kept when it has
  // no verdict at all (it may be the command nvsd died on). EXPIRED ones
  // were agreed on after their client's deadline and rolled back: never
  // carried out either.
  std::size_t abandoned = 0;
  std::size_t expired = 0;
  for (auto it = by_seq.begin(); it != by_seq.end(); ++it) {
    const std::string& verdict = it->second.recorded_verdict;
    if ((verdict.empty() && std::next(it) != by_seq.end()) || verdict == "ABANDONED") {
      ++abandoned;
      continue;
    }
    if (verdict == "EXPIRED") {
      ++expired;
      continue;
    }
    log.commands.push_back(std::move(it->second));
  }
  if (abandoned > 0) {
    log.warnings.push_back(std::to_string(abandoned) +
                           " admitted but undecided commands (in flight when nvsd stopped) are left out");
  }
  if (expired > 0) {
    log.warnings.push_back(std::to_string(expired) +
                           " commands decided after their client's deadline (EXPIRED, rolled back) are left out");
  }
  if (!log.commands.empty() && log.commands.front().seq > 1) {
    log.warnings.push_back("the journal starts at seq " + std::to_string(log.commands.front().seq) +
                           " (older segments pruned?): replaying from the variants' initial state, not nvsd's");
  }
}

Result<std::string> ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::Error("cannot read " + path.string());
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

Result<CommandLog> LoadQuarantineReport(const fs::path& path, const json& report) {
  CommandLog log;
  log.format = "quarantine-report";
  if (!report.contains("command")) return Status::Error(path.string() + ": a quarantine report without a command");
  RecordedCommand c;
  c.seq = Count(report, "seq");
  c.time_ns = static_cast<std::int64_t>(Count(report, "time_ns"));
  c.cmd = Compact(report["command"]);
  c.request_id = report.value("/client/request_id"_json_pointer, std::string());
  c.recorded_verdict = report.value("verdict", "");
  log.commands.push_back(std::move(c));
  if (report.contains("config")) log.recorded_config = Compact(report["config"]);
  const std::string snapshot = report.value("/pre_state/snapshot"_json_pointer, std::string());
  if (snapshot.empty()) {
    log.warnings.push_back("the report has no saved pre-command state; replaying on the initial state");
  } else if (!PlainFileName(snapshot)) {
    return Status::Error(path.string() + ": its pre-command state '" + snapshot +
                         "' is not a file name beside the report");
  } else {
    auto state = ReadFile(path.parent_path() / snapshot);
    if (!state.ok()) return Status::Error(path.string() + ": its pre-command state: " + state.status().message());
    const json parsed = ParseDocument(state.value());
    if (parsed.is_discarded()) return Status::Error((path.parent_path() / snapshot).string() + ": not JSON");
    log.initial_state = Compact(parsed);
  }
  return log;
}

}  // namespace

Result<CommandLog> LoadCommandLogOrThrow(const fs::path& path);

Result<CommandLog> LoadCommandLog(const fs::path& path) {
  try {
    return LoadCommandLogOrThrow(path);
  } catch (const std::exception& e) {
    return Status::Error(path.string() + ": " + e.what());
  }
}

Result<CommandLog> LoadCommandLogOrThrow(const fs::path& path) {
  std::error_code ec;
  const bool journal_file = fs::is_regular_file(path, ec) && supervisor::JournalSegmentIndex(path) != 0;
  if (fs::is_directory(path, ec) || journal_file || path.extension() == ".nvj") {
    auto journal = supervisor::ReadJournal(path);
    if (!journal.ok()) return journal.status();
    CommandLog log;
    log.format = "journal";
    log.warnings = journal.value().damage;
    AddJournalRecords(journal.value().records, log);
    return log;
  }
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  // A quarantine report is one JSON object (usually pretty-printed).
  const json whole = ParseDocument(text.value());
  if (whole.is_object() && whole.contains("fingerprint") && whole.contains("command") && whole.contains("outcomes")) {
    return LoadQuarantineReport(path, whole);
  }
  CommandLog log;
  std::vector<std::string> records;  // journal export lines: records' bodies
  std::istringstream lines(text.value());
  std::size_t number = 0;
  for (std::string line; std::getline(lines, line);) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json value = ParseDocument(line);
    if (!value.is_object()) {
      log.warnings.push_back(path.string() + ":" + std::to_string(number) +
                             ": not a JSON object (or nested too deep); skipped");
      continue;
    }
    if (value.contains("initial_state") && !value.contains("cmd")) {  // written by `nvs replay --minimize`
      log.initial_state = Compact(value["initial_state"]);
      continue;
    }
    if (value.contains("config") && !value.contains("cmd")) {  // likewise: the programs it was recorded with
      log.recorded_config = Compact(value["config"]);
      continue;
    }
    if (value.contains("t")) {  // a journal export line
      records.push_back(line);
      continue;
    }
    RecordedCommand c;
    try {
      if (value.contains("cmd")) {
        c.time_ns = static_cast<std::int64_t>(Count(value, "time_ns"));
        c.seq = Count(value, "seq");
        c.request_id = value.value("id", "");
        c.recorded_verdict = value.value("verdict", "");
        c.cmd = Compact(value["cmd"]);
      } else {
        c.cmd = Compact(value);
      }
    } catch (const std::exception& e) {  // json::exception or BadMember
      log.warnings.push_back(path.string() + ":" + std::to_string(number) + ": " + e.what() + "; skipped");
      continue;
    }
    log.commands.push_back(std::move(c));
  }
  if (!records.empty()) {
    if (!log.commands.empty()) return Status::Error(path.string() + ": mixes journal records and plain commands");
    log.format = "journal-export";
    AddJournalRecords(records, log);
  } else {
    log.format = "commands";
  }
  if (log.commands.empty()) return Status::Error(path.string() + ": no commands in it");
  return log;
}

namespace {

// The programs a config starts, and how, in words an operator can compare:
// one line per variant, plus the bridge and the voting policy.
std::map<std::string, std::string> Programs(const supervisor::Config& config) {
  std::map<std::string, std::string> out;
  for (const auto& v : config.variants) {
    json env = json::object();
    for (const auto& [key, value] : v.env) env[key] = value;
    out["variant " + v.name] = json{{"argv", v.argv},
                                    {"transport", v.transport == supervisor::Transport::kZmq ? "zmq" : "stdio"},
                                    {"env", env},
                                    {"user", v.user}}
                                   .dump();
  }
  if (!config.stdio_bridge.empty()) out["stdio_bridge"] = config.stdio_bridge.string();
  return out;
}

// What differs between the config the log recorded and the one given
// (nothing, when the recorded one cannot be read: then it is said so).
std::vector<std::string> Differences(const CommandLog& log, const supervisor::Config& given) {
  if (!log.recorded_config) return {};
  json recorded = json::parse(*log.recorded_config, nullptr, false);
  if (!recorded.is_object()) return {"the config the log recorded is not JSON; it was not compared with " +
                                     given.config_dir.string()};
  const fs::path dir = recorded.value("config_dir", std::string("."));
  recorded.erase("config_dir");
  recorded["state_dir"] = (fs::temp_directory_path() / "nvs-replay-unused").string();
  const auto parsed = supervisor::ParseConfig(recorded.dump(), dir / "recorded-config.json");
  if (!parsed.ok()) return {"the config the log recorded does not read (" + parsed.status().message() + ")"};
  const auto was = Programs(parsed.value());
  const auto now = Programs(given);
  std::vector<std::string> out;
  for (const auto& [what, text] : was) {
    const auto it = now.find(what);
    if (it == now.end()) {
      out.push_back(what + " was recorded (" + text + ") but is not in the given config");
    } else if (it->second != text) {
      out.push_back(what + " differs from the recorded one: recorded " + text + ", given " + it->second);
    }
  }
  for (const auto& [what, text] : now) {
    if (was.count(what) == 0) out.push_back(what + " is in the given config but was not recorded");
  }
  return out;
}

}  // namespace

std::filesystem::path LocalConfigPath() {
  if (const char* env = std::getenv("NVS_CONFIG"); env != nullptr && *env != '\0') return env;
  std::error_code ec;
  if (fs::is_regular_file(kDefaultConfigPath, ec)) return kDefaultConfigPath;
  return {};
}

Result<ReplayOptions> OptionsFromConfig(const fs::path& config_file, const CommandLog& log, bool keep_users) {
  // The programs come from a config the operator names, never from the log:
  // whoever wrote the log, the report or the reply it came in would choose
  // what runs (as the operator, often root).
  const fs::path file = config_file.empty() ? LocalConfigPath() : config_file;
  if (file.empty()) {
    return Status::Error(std::string(log.recorded_config ? "this log records the config nvsd ran with, but nvs never "
                                                            "starts programs read from a log, report or reply: "
                                                          : "this log records no variants: ") +
                         "give --config FILE (the nvsd config), or set NVS_CONFIG, or install it as " +
                         kDefaultConfigPath);
  }
  auto config = supervisor::LoadConfig(file);
  if (!config.ok()) return Status::Error("config: " + config.status().message());
  ReplayOptions options;
  for (auto& difference : Differences(log, config.value())) {
    options.warnings.push_back(std::move(difference) + " (the given config's is used)");
  }
  options.variants = config.value().variants;
  // nvsd drops a variant to its `user` as root; a replay on an engineer's
  // desk is not root, and runs every variant as whoever runs it.
  if (!keep_users && geteuid() != 0) {
    for (auto& v : options.variants) {
      if (v.user.empty()) continue;
      options.warnings.push_back("variant " + v.name + " runs as you, not as user " + v.user +
                                 " (running it as another user needs root)");
      v.user.clear();
      v.group.clear();
    }
  }
  options.policy = config.value().policy;
  options.config_dir = config.value().config_dir;
  options.stdio_bridge = config.value().stdio_bridge;
  if (options.stdio_bridge.empty()) {
    std::error_code ec;
    options.stdio_bridge = fs::read_symlink("/proc/self/exe", ec).parent_path() / "nvs-stdio-bridge";
  }
  return options;
}

}  // namespace nvs::replay
