// nvs replay: recorded commands run again, outside nvsd, against fresh
// variant processes with the same voter; per command: agreement,
// divergence, crash, hang. And minimisation of a log that ends in a failure
// (delta debugging). Used by `nvs replay` and `nvs quarantine retest`.
#pragma once

#include <chrono>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nvs/status.h"
#include "nvs/supervisor/config.h"
#include "nvs/voter/voter.h"

namespace nvs::replay {

// One recorded command.
struct RecordedCommand {
  std::uint64_t seq = 0;           // as recorded; 0 when the log has none
  std::int64_t time_ns = 0;        // as recorded; 0 when the log has none
  std::string cmd;                 // compact JSON, object members sorted
  std::string request_id;
  std::string recorded_verdict;    // COMMIT, POISON, NO_QUORUM; "" when not recorded
  std::string recorded_result;     // compact JSON of a recorded commit's result
};

struct CommandLog {
  std::vector<RecordedCommand> commands;
  // The state the log starts from (a quarantine report's pre-command
  // snapshot); none: the variants' initial state.
  std::optional<std::string> initial_state;
  // The variants and policy nvsd ran with, as it recorded them (journal
  // "start" record, a report's "config"): JSON text, or none.
  std::optional<std::string> recorded_config;
  std::string format;                   // journal, journal-export, commands, quarantine-report
  std::vector<std::string> warnings;    // damaged journal tail, skipped lines
};

// Reads what an operator points `nvs replay` at: nvsd's journal (a state
// dir, its journal folder or one segment), its JSON-lines export, a plain
// JSON-lines command log (each line a command, or an object with "cmd" and
// optionally "time_ns"), or a quarantine report (its command, on its saved
// pre-command state).
Result<CommandLog> LoadCommandLog(const std::filesystem::path& path);

// What happened to one command.
enum class StepKind { kAgreement, kDivergence, kCrash, kHang, kFault, kNoQuorum };
const char* ToString(StepKind kind);

struct StepReport {
  std::size_t index = 0;          // in the log
  std::uint64_t seq = 0;          // as recorded (index + 1 when not recorded)
  StepKind kind = StepKind::kAgreement;
  voter::Verdict verdict;
  std::vector<voter::Outcome> outcomes;
  std::string recorded_verdict;
  double at_ms = 0;               // since the replay started
  bool differs_from_recorded = false;  // every variant agreed, on a result other than the recorded one
  bool state_drift = false;            // not a command's reply: the state digests differ after `seq`
};

struct ReplayOptions;

// Where the operator's own nvsd config is when no --config is given:
// $NVS_CONFIG, else kDefaultConfigPath when it exists; empty when neither.
inline constexpr const char* kDefaultConfigPath = "/etc/nvs/nvsd.json";
std::filesystem::path LocalConfigPath();

// Replay options from an nvsd config file (an empty path: LocalConfigPath()).
// Never from the config `log` recorded: a log, a report or a reply is data,
// and the programs it names are not run; where they differ from the given
// config's, a warning says what differs. Fails with a readable message when
// there is no config to use. Unless `keep_users`, a variant's `user` is
// dropped (with a warning) when this process is not root: it runs as
// whoever runs the replay.
Result<ReplayOptions> OptionsFromConfig(const std::filesystem::path& config_file, const CommandLog& log,
                                        bool keep_users = false);

struct ReplayOptions {
  std::vector<supervisor::VariantConfig> variants;
  voter::Policy policy;
  std::filesystem::path config_dir;    // relative paths in the variants' argv
  std::filesystem::path stdio_bridge;  // for stdio variants
  std::chrono::milliseconds deadline{1000};        // a reply, else hung
  std::chrono::milliseconds start_deadline{10000};  // hello
  double speed = 0;               // 0: as fast as possible; else the recorded spacing divided by this
  std::uint64_t from_seq = 0;     // commands before it are applied but not reported
  std::uint64_t to_seq = 0;       // 0: to the end
  bool stop_at_first = false;
  std::size_t window = 256;       // requests outstanding per variant
  // Said before the run: e.g. a variant whose `user` is dropped because
  // `nvs replay` is not root.
  std::vector<std::string> warnings;
};

// A variant process started again during a run (after a crash, a hang, or
// to find which command killed it).
struct RestartRecord {
  std::string variant;
  double at_ms = 0;  // since the run started
  // "restart" (after a crash or hang), or "rerun": a fresh process run over
  // a batch again to find which of its commands a crash seen in it was on
  // (the crash is then drawn at that command; a rerun is not counted in
  // `restarts`).
  std::string why = "restart";
};

struct ReplaySummary {
  std::size_t commands = 0;       // reported (within from/to)
  std::size_t agreements = 0, divergences = 0, crashes = 0, hangs = 0, faults = 0, no_quorum = 0;
  std::size_t restarts = 0;       // variant processes started again after a crash or hang
  std::vector<RestartRecord> restart_log;  // the first 1,000
  double seconds = 0;
  // Against what nvsd recorded (a journal or its export): the commands with
  // a recorded COMMIT, POISON or NO_QUORUM verdict, those whose verdict now
  // is another (or a COMMIT with another result), and the failures with no
  // recorded verdict to compare with.
  std::size_t recorded_compared = 0, recorded_differ = 0, failures_unrecorded = 0;
  bool failed() const { return divergences + crashes + hangs + faults + no_quorum > 0; }
  // Failures, every one of them as nvsd recorded it: the incident was
  // reproduced, which is what a replay of it is for.
  bool reproduced() const {
    return failed() && recorded_compared > 0 && recorded_differ == 0 && failures_unrecorded == 0;
  }
};

// Progress while replaying: commands done so far, of `total`.
using ProgressFn = std::function<void(std::size_t done, std::size_t total)>;
// Called for every reported command, in order.
using StepFn = std::function<void(const StepReport&)>;

class Replayer {
 public:
  // Starts the variants (fresh processes, on a private socket).
  static Result<std::unique_ptr<Replayer>> Start(const ReplayOptions& options);
  ~Replayer();
  Replayer(const Replayer&) = delete;
  Replayer& operator=(const Replayer&) = delete;

  // Replays `log` from its initial state: `on_step` for every command in
  // the from/to bounds, `on_progress` now and then.
  Result<ReplaySummary> Run(const CommandLog& log, const StepFn& on_step, const ProgressFn& on_progress = {});

  // The options of the next Run (the variants are fixed at Start).
  ReplayOptions& options();

  // Run stops between batches (with an error) once *flag is non-zero, e.g.
  // from a SIGINT handler; the destructor then kills the variants and
  // removes the temporary folder.
  void StopWhen(const volatile std::sig_atomic_t* flag);

 private:
  struct Impl;
  explicit Replayer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The failure a minimisation keeps: this kind of step, on these variants.
struct FailureSignature {
  StepKind kind = StepKind::kCrash;
  std::vector<std::string> variants;  // the crashed, hung, faulty or dissenting ones
  std::string Describe() const;
};
std::optional<FailureSignature> SignatureOf(const StepReport& step);

struct MinimizeResult {
  std::vector<std::size_t> kept;   // indices into the log, in order
  FailureSignature failure;
  std::size_t trials = 0;
  double seconds = 0;
};

// Delta debugging (ddmin) over the commands up to the first failing one:
// the smallest subsequence found (1-minimal: dropping any one command loses
// the failure) that still ends in the same failure when replayed from the
// log's initial state. Fails when the log does not fail at all.
Result<MinimizeResult> Minimize(Replayer& replayer, const CommandLog& log, const ProgressFn& on_progress = {});

}  // namespace nvs::replay
