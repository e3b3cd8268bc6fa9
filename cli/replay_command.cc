// `nvs replay`: recorded commands against fresh variants (replay/), with a
// report per failing command, a summary, progress on stderr, and
// minimisation of a log that ends in a failure.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common.h"
#include "nvs/replay/replay.h"
#include "nvs/report/html_report.h"
#include "nvs/supervisor/config.h"
#include "report_model.h"

namespace nvs::cli {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct ReplayArgs {
  std::string input;
  std::string config;
  std::string variants;  // comma-separated subset
  std::string speed = "max";
  std::uint64_t from = 0;
  std::uint64_t to = 0;
  bool stop_at_first = false;
  std::string minimize;  // output file
  bool json_output = false;
  bool verbose = false;
  int deadline_ms = 1000;
  bool no_progress = false;
  std::string html;  // write an HTML report here
};

constexpr std::size_t kHtmlIncidents = 200;  // failing commands shown in detail (all are on the timeline)

// Progress on stderr: a bar with rate and ETA on a terminal (redrawn at
// most 10 times a second), else a plain line every 5 seconds.
class Progress {
 public:
  explicit Progress(bool enabled) : enabled_(enabled), tty_(isatty(STDERR_FILENO) == 1) {}
  void Update(std::size_t done, std::size_t total, const char* what) {
    if (!enabled_) return;
    const auto now = Clock::now();
    if (now - last_ < (tty_ ? std::chrono::milliseconds(100) : std::chrono::milliseconds(5000)) && done != total) return;
    last_ = now;
    const double seconds = std::chrono::duration<double>(now - start_).count();
    const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0;
    if (total == 0) {  // open-ended (minimisation trials)
      std::fprintf(stderr, tty_ ? "\r%s: %zu so far, %.1f s" : "%s: %zu so far, %.1f s\n", what, done, seconds);
    } else if (tty_) {
      const int width = 30;
      const int filled = static_cast<int>(width * static_cast<double>(done) / static_cast<double>(total));
      const double eta = rate > 0 ? static_cast<double>(total - done) / rate : 0;
      std::fprintf(stderr, "\r%s [%.*s%*s] %zu/%zu %.0f/s ETA %.0f s ", what, filled,
                   "==============================", width - filled, "", done, total, rate, eta);
    } else {
      std::fprintf(stderr, "%s: %zu of %zu commands, %.0f/s\n", what, done, total, rate);
    }
    drawn_ = true;
  }
  void Done() {
    if (enabled_ && tty_ && drawn_) std::fprintf(stderr, "\n");
  }

 private:
  bool enabled_;
  bool tty_;
  bool drawn_ = false;
  Clock::time_point start_ = Clock::now();
  Clock::time_point last_{};
};

std::string Join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

json StepJson(const replay::StepReport& step) {
  json outcomes = json::array();
  for (const auto& o : step.outcomes) {
    json entry = {{"variant", o.variant}, {"outcome", std::string(voter::ToString(o.kind))}};
    if (o.kind == voter::OutcomeKind::kReply) entry["result"] = json::parse(o.result, nullptr, false);
    if (!o.detail.empty()) entry["detail"] = o.detail;
    outcomes.push_back(entry);
  }
  json j = {{"seq", step.seq},
            {"index", step.index},
            {"kind", replay::ToString(step.kind)},
            {"verdict", std::string(voter::ToString(step.verdict.kind))},
            {"reason", step.verdict.reason},
            {"outcomes", outcomes}};
  if (!step.recorded_verdict.empty()) j["recorded_verdict"] = step.recorded_verdict;
  if (step.differs_from_recorded) j["differs_from_recorded"] = true;
  if (step.state_drift) j["state_drift"] = true;
  return j;
}

// One line a person can read at 3 am.
std::string StepLine(const replay::StepReport& step) {
  std::ostringstream line;
  line << "seq " << step.seq << ": ";
  switch (step.kind) {
    case replay::StepKind::kAgreement: line << "agreement"; break;
    case replay::StepKind::kDivergence:
      if (step.differs_from_recorded) {
        line << "RESULT DIFFERS from the one nvsd recorded";
      } else if (step.state_drift) {
        line << "STATE DIVERGENCE of " << Join(step.verdict.dissenting);
      } else {
        line << "DIVERGENCE of " << Join(step.verdict.dissenting);
      }
      break;
    case replay::StepKind::kCrash: line << "CRASH of " << Join(step.verdict.crashed); break;
    case replay::StepKind::kHang: line << "HANG of " << Join(step.verdict.hung); break;
    case replay::StepKind::kFault: line << "PROTOCOL FAULT of " << Join(step.verdict.faulty); break;
    case replay::StepKind::kNoQuorum: line << "NO QUORUM"; break;
  }
  line << " -> " << voter::ToString(step.verdict.kind);
  if (!step.recorded_verdict.empty()) line << " (recorded: " << step.recorded_verdict << ")";
  for (const auto& o : step.outcomes) {
    line << "\n    " << o.variant << ": " << voter::ToString(o.kind);
    if (o.kind == voter::OutcomeKind::kReply) line << " " << o.result;
    if (!o.detail.empty()) line << " (" << o.detail << ")";
  }
  return line.str();
}

Result<replay::ReplayOptions> OptionsFrom(const ReplayArgs& args, const replay::CommandLog& log) {
  auto base = replay::OptionsFromConfig(args.config, log);
  if (!base.ok()) return base.status();
  replay::ReplayOptions options = base.value();
  const std::vector<supervisor::VariantConfig> configured = std::move(options.variants);
  options.variants.clear();
  options.deadline = std::chrono::milliseconds(args.deadline_ms);
  options.from_seq = args.from;
  options.to_seq = args.to;
  options.stop_at_first = args.stop_at_first;
  if (args.speed == "max") {
    options.speed = 0;
  } else if (args.speed == "realtime") {
    options.speed = 1;
  } else {
    char* end = nullptr;
    options.speed = std::strtod(args.speed.c_str(), &end);
    if (end == args.speed.c_str() || std::string(end) != "x" || options.speed <= 0) {
      return Status::Error("--speed: max, realtime, or a factor such as 4x");
    }
  }
  std::vector<std::string> wanted;
  std::stringstream list(args.variants);
  for (std::string name; std::getline(list, name, ',');) {
    if (!name.empty()) wanted.push_back(name);
  }
  for (const auto& v : configured) {
    if (wanted.empty() || std::find(wanted.begin(), wanted.end(), v.name) != wanted.end()) options.variants.push_back(v);
  }
  if (options.variants.size() != (wanted.empty() ? configured.size() : wanted.size())) {
    return Status::Error("--variants: every name must be a configured variant");
  }
  if (options.policy.kind == voter::PolicyKind::kPrimary &&
      std::none_of(options.variants.begin(), options.variants.end(),
                   [&](const auto& v) { return v.name == options.policy.primary; })) {
    return Status::Error("--variants: the policy's primary " + options.policy.primary + " must be one of them");
  }
  return options;
}

int WriteMinimized(const ReplayArgs& args, const replay::CommandLog& log, const replay::MinimizeResult& result) {
  std::ofstream out(args.minimize);
  // The log stands on its own: its starting state and, for the reader, the
  // programs it was recorded with go first (a replay never runs those: it
  // runs the config it is given).
  if (log.initial_state) out << json{{"initial_state", json::parse(*log.initial_state)}}.dump() << "\n";
  if (log.recorded_config) out << json{{"config", json::parse(*log.recorded_config)}}.dump() << "\n";
  for (std::size_t i : result.kept) {
    const auto& c = log.commands[i];
    json line = {{"seq", c.seq != 0 ? c.seq : i + 1}, {"cmd", json::parse(c.cmd)}};
    if (c.time_ns != 0) line["time_ns"] = c.time_ns;
    if (!c.recorded_verdict.empty()) line["verdict"] = c.recorded_verdict;
    out << line.dump() << "\n";
  }
  out.close();
  if (!out) {
    std::cerr << "nvs replay: cannot write " << args.minimize << "\n";
    return kExitUsage;
  }
  const std::string repro = "nvs replay " + args.minimize + (args.config.empty() ? "" : " --config " + args.config) +
                            (args.variants.empty() ? "" : " --variants " + args.variants) +
                            " --deadline " + std::to_string(args.deadline_ms) + " --stop-at-first";
  if (args.json_output) {
    json kept = json::array();
    for (std::size_t i : result.kept) kept.push_back(log.commands[i].seq != 0 ? log.commands[i].seq : i + 1);
    std::cout << json{{"minimized", {{"file", args.minimize},
                                     {"commands", result.kept.size()},
                                     {"of", log.commands.size()},
                                     {"seqs", kept},
                                     {"failure", result.failure.Describe()},
                                     {"trials", result.trials},
                                     {"seconds", result.seconds},
                                     {"reproduce", repro}}}}
                     .dump()
              << "\n";
  } else {
    std::cout << "minimal log: " << result.kept.size() << " of " << log.commands.size() << " commands still give "
              << result.failure.Describe() << " (" << result.trials << " trials, " << result.seconds << " s)\n"
              << "written to " << args.minimize << "\nreproduce with:\n  " << repro << "\n";
  }
  return kExitRefused;  // the failure reproduces
}

int Replay(const ReplayArgs& args) {
  auto log = replay::LoadCommandLog(args.input);
  if (!log.ok()) {
    std::cerr << "nvs replay: " << log.status().message() << "\n";
    return kExitUsage;
  }
  for (const auto& w : log.value().warnings) std::cerr << "nvs replay: warning: " << w << "\n";
  auto options = OptionsFrom(args, log.value());
  if (!options.ok()) {
    std::cerr << "nvs replay: " << options.status().message() << "\n";
    return kExitUsage;
  }
  for (const auto& w : options.value().warnings) std::cerr << "nvs replay: warning: " << w << "\n";
  auto replayer = replay::Replayer::Start(options.value());
  if (!replayer.ok()) {
    std::cerr << "nvs replay: cannot start the variants: " << replayer.status().message() << "\n";
    return kExitUsage;
  }
  // Ctrl-C stops between batches, so that the variants are killed and the
  // temporary folder removed on the way out.
  static volatile std::sig_atomic_t interrupted = 0;
  struct sigaction on_signal {};
  on_signal.sa_handler = [](int) { interrupted = 1; };
  sigaction(SIGINT, &on_signal, nullptr);
  sigaction(SIGTERM, &on_signal, nullptr);
  replayer.value()->StopWhen(&interrupted);
  Progress progress(!args.no_progress);
  if (!args.minimize.empty()) {
    auto result = replay::Minimize(*replayer.value(), log.value(),
                                   [&](std::size_t trials, std::size_t) { progress.Update(trials, 0, "minimising, trials"); });
    progress.Done();
    if (!result.ok()) {
      std::cerr << "nvs replay: " << result.status().message() << "\n";
      return kExitUsage;
    }
    return WriteMinimized(args, log.value(), result.value());
  }
  std::vector<std::string> names;
  for (const auto& v : options.value().variants) names.push_back(v.name);
  if (!args.json_output) {
    std::cout << "replaying " << log.value().commands.size() << " commands (" << log.value().format << ") with "
              << Join(names) << ", policy " << voter::ToString(options.value().policy.kind) << "\n";
  }
  std::vector<replay::StepReport> failures;
  auto summary = replayer.value()->Run(
      log.value(),
      [&](const replay::StepReport& step) {
        if (step.kind != replay::StepKind::kAgreement && !args.html.empty() && failures.size() < 10 * kHtmlIncidents) {
          failures.push_back(step);
        }
        if (step.kind == replay::StepKind::kAgreement && !args.verbose) return;
        if (args.json_output) {
          std::cout << StepJson(step).dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
        } else {
          std::cout << StepLine(step) << "\n";
        }
      },
      [&](std::size_t done, std::size_t total) { progress.Update(done, total, "replay"); });
  progress.Done();
  if (!summary.ok()) {
    std::cerr << "nvs replay: " << summary.status().message() << "\n";
    return kExitUsage;
  }
  const auto& s = summary.value();
  if (s.commands == 0) {
    std::cerr << "nvs replay: no commands in the range (the log's seqs are " << log.value().commands.front().seq << " to "
              << log.value().commands.back().seq << ")\n";
    return kExitUsage;
  }
  if (!args.html.empty()) {
    char when[32];
    const std::time_t t = std::time(nullptr);
    std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
    const std::string repro = "nvs replay " + args.input + (args.config.empty() ? "" : " --config " + args.config);
    std::ofstream out(args.html);
    out << report::RenderHtml(
        ReplayModel(args.input, names, s, failures, log.value(), repro, kHtmlIncidents, when));
    out.close();
    if (!out) {
      std::cerr << "nvs replay: cannot write " << args.html << "\n";
      return kExitUsage;
    }
    if (!args.json_output) std::cout << "wrote " << args.html << "\n";
  }
  const double rate = s.seconds > 0 ? static_cast<double>(s.commands) / s.seconds : 0;
  if (args.json_output) {
    std::cout << json{{"summary", {{"commands", s.commands}, {"agreements", s.agreements}, {"divergences", s.divergences},
                                   {"crashes", s.crashes}, {"hangs", s.hangs}, {"faults", s.faults},
                                   {"no_quorum", s.no_quorum}, {"restarts", s.restarts}, {"seconds", s.seconds},
                                   {"per_second", rate}, {"failed", s.failed()}, {"reproduced", s.reproduced()},
                                   {"recorded_compared", s.recorded_compared},
                                   {"recorded_differ", s.recorded_differ},
                                   {"failures_unrecorded", s.failures_unrecorded}}}}
                     .dump()
              << "\n";
  } else {
    std::printf("%zu commands in %.2f s (%.0f/s): %zu agreed, %zu divergences, %zu crashes, %zu hangs, %zu faults, "
                "%zu without quorum; %zu variant restarts\n",
                s.commands, s.seconds, rate, s.agreements, s.divergences, s.crashes, s.hangs, s.faults, s.no_quorum,
                s.restarts);
    if (s.recorded_compared > 0) {
      std::printf("against the recording: %zu of %zu verdicts as nvsd recorded them%s\n",
                  s.recorded_compared - s.recorded_differ, s.recorded_compared,
                  s.reproduced() ? ": the failures are reproduced" : "");
    }
  }
  return s.failed() ? kExitRefused : kExitOk;
}

}  // namespace

void AddReplayCommand(CLI::App& app, Options& o) {
  auto args = std::make_shared<ReplayArgs>();
  CLI::App* sub = app.add_subcommand(
      "replay",
      "run recorded commands against fresh variants and report agreement, divergence, crash, hang per command");
  sub->add_option("input", args->input,
                  "nvsd's journal (state dir, journal folder or segment), its JSON-lines export, a JSON-lines "
                  "command log, or a quarantine report")
      ->required();
  sub->add_option("-c,--config", args->config,
                  "the nvsd config whose variants and policy to use (default: $NVS_CONFIG, else /etc/nvs/nvsd.json; never the programs a log names)");
  sub->add_option("--variants", args->variants, "only these variants of the config (comma-separated)");
  sub->add_option("--speed", args->speed, "max, realtime, or a factor of the recorded spacing such as 4x")
      ->capture_default_str();
  sub->add_option("--from", args->from, "report from this sequence number (earlier ones are applied silently)");
  sub->add_option("--to", args->to, "stop after this sequence number");
  sub->add_flag("--stop-at-first", args->stop_at_first, "stop at the first command that is not an agreement");
  sub->add_option("--minimize", args->minimize,
                  "find a minimal sequence of commands that still ends in the log's first failure; write it here");
  sub->add_option("--deadline", args->deadline_ms, "a variant's reply, else it is hung (ms)")->capture_default_str();
  sub->add_flag("--json", args->json_output, "JSON lines: one per reported command, then a summary");
  sub->add_flag("-v,--verbose", args->verbose, "report agreements too");
  sub->add_flag("--no-progress", args->no_progress, "no progress on stderr");
  sub->add_option("--html", args->html, "also write a self-contained HTML report of the replay here");
  sub->callback([&o, args] { o.exit_code = Replay(*args); });
}

}  // namespace nvs::cli
