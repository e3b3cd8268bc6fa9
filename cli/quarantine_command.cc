// `nvs quarantine`: review of quarantined commands through a running nvsd
// (which owns the reports and the block list): list, show, retest on fresh
// probes, release, reject, and an HTML export.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "client.h"
#include "common.h"
#include "nvs/replay/replay.h"
#include "nvs/report/html_report.h"
#include "nvs/supervisor/config.h"
#include "report_model.h"

namespace nvs::cli {
namespace {

using nlohmann::json;

struct QuarantineArgs {
  std::string id;
  std::string note;
  std::string by;
  std::string config;
  std::string html;
  std::vector<std::string> ids;
  bool force = false;
  int deadline_ms = 1000;
};

std::string Text(const json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return "";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

std::string Now() {
  char buffer[32];
  const std::time_t t = std::time(nullptr);
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buffer;
}

// A request to nvsd; the reply, or an exit code after saying what went wrong.
std::optional<json> Ask(const Options& o, const json& request, int* exit_code) {
  auto client = Connect(o, "nvs quarantine");
  if (!client) {
    *exit_code = kExitUsage;
    return std::nullopt;
  }
  auto call = client->Call(request, o.timeout_ms);
  if (!call.ok() || !call.value()) {
    *exit_code = NoReply("nvs quarantine", *client, call, o.timeout_ms);
    return std::nullopt;
  }
  std::optional<json>& reply = call.value();
  if (reply->value("status", "") != "ok") {
    std::cerr << "nvs quarantine: " << reply->value("code", reply->value("status", "")) << ": "
              << reply->value("reason", "") << "\n";
    *exit_code = reply->value("status", "") == "unavailable" ? kExitRefused : kExitUsage;
    return std::nullopt;
  }
  return reply;
}

std::string Reproduce(const QuarantineArgs& args, const std::string& id) {
  return "nvs quarantine retest " + id + (args.config.empty() ? "" : " --config " + args.config);
}

std::string WhoDied(const json& report) {
  std::string out;
  for (const auto& o : report.value("outcomes", json::array())) {
    const std::string outcome = Text(o, "outcome");
    if (outcome != "crashed" && outcome != "hung" && outcome != "protocol_error") continue;
    out += (out.empty() ? "" : ", ") + Text(o, "variant") + " " +
           (outcome == "hung" ? std::string("hung") : ShortHow(Text(o, "detail")));
  }
  return out.empty() ? "-" : out;
}

std::string Clip(std::string text, std::size_t width) {
  if (text.size() > width) text = text.substr(0, width - 3) + "...";
  return text;
}

int List(const Options& o) {
  int code = kExitOk;
  auto reply = Ask(o, {{"type", "quarantine"}, {"action", "list"}}, &code);
  if (!reply) return code;
  const json& reports = (*reply)["reports"];
  if (o.json_output) {
    std::cout << reports.dump() << "\n";
    return kExitOk;
  }
  if (reports.empty()) {
    std::cout << "no quarantine reports\n";
    return kExitOk;
  }
  std::printf("%-29s %-24s %-36s %-9s %-30s %s\n", "ID", "TIME", "COMMAND", "VERDICT", "WHO DIED HOW", "STATUS");
  for (const auto& r : reports) {
    std::printf("%-29s %-24s %-36s %-9s %-30s %s\n", Text(r, "id").c_str(), Clip(Text(r, "time"), 24).c_str(),
                Clip(r.value("command", json()).dump(), 36).c_str(), Text(r, "verdict").c_str(),
                Clip(WhoDied(r), 30).c_str(), Text(r, "status").c_str());
  }
  return kExitOk;
}

void PrintIndented(const std::string& text, const std::string& indent) {
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) std::cout << indent << line << "\n";
}

int Show(const Options& o, const QuarantineArgs& args) {
  int code = kExitOk;
  auto reply = Ask(o, {{"type", "quarantine"}, {"action", "show"}, {"report", args.id}}, &code);
  if (!reply) return code;
  const json& r = (*reply)["report"];
  if (o.json_output) {
    std::cout << reply->dump() << "\n";
    return kExitOk;
  }
  std::cout << "Report " << Text(r, "id") << ": " << Text(r, "status") << " (" << Text(r, "verdict") << ")\n"
            << "  time         " << Text(r, "time") << "\n"
            << "  seq          " << Text(r, "seq") << "\n"
            << "  fingerprint  " << Text(r, "fingerprint") << "\n"
            << "  client       " << Text(r.value("client", json::object()), "request_id") << " from "
            << (r.value("client", json::object()).value("key", json()).is_string()
                    ? "key " + Text(r["client"], "key")
                    : std::string("an unauthenticated client"))
            << "\n"
            << "  command      " << r.value("command", json()).dump() << "\n"
            << "  reason       " << Text(r, "reason") << "\n\nOutcomes\n";
  for (const auto& out : r.value("outcomes", json::array())) {
    std::cout << "  " << Text(out, "variant") << ": " << Text(out, "outcome");
    if (!Text(out, "detail").empty()) std::cout << " (" << Text(out, "detail") << ")";
    if (out.contains("after_ms")) std::printf(" after %.1f ms", out["after_ms"].get<double>());
    std::cout << "\n";
    if (out.contains("result")) std::cout << "      result: " << out["result"].dump() << "\n";
    if (!Text(out, "stderr_tail").empty()) {
      std::cout << "      stderr (last lines):\n";
      PrintIndented(Text(out, "stderr_tail"), "        | ");
    }
  }
  if (r.contains("probe")) {
    const json& p = r["probe"];
    std::cout << "\nProbe of " << Text(p, "variant") << ": " << Text(p, "outcome") << " (" << Text(p, "detail") << ")\n";
  }
  const json pre = r.value("pre_state", json::object());
  std::cout << "\nState before it: digest " << Text(pre, "digest") << ", snapshot "
            << (Text(pre, "snapshot").empty() ? "not saved" : Text(pre, "snapshot")) << "\n\nReview\n";
  for (const auto& e : r.value("review", json::array())) {
    std::cout << "  " << Text(e, "time") << "  " << Text(e, "action") << " by " << Text(e, "by") << ": "
              << Text(e, "note") << "\n";
  }
  std::cout << "\nReproduce (fresh probes, the live system untouched):\n  " << Reproduce(args, Text(r, "id")) << "\n";
  return kExitOk;
}

// Runs the quarantined command on fresh processes of every variant of the
// config, restored to the state before it. The result as JSON:
// {"survived": bool, "outcomes": [...], "verdict": ...}.
std::optional<json> RunRetest(const Options& o, const QuarantineArgs& args, int* code) {
  auto reply = Ask(o, {{"type", "quarantine"}, {"action", "show"}, {"report", args.id}}, code);
  if (!reply) return std::nullopt;
  const json& report = (*reply)["report"];
  replay::CommandLog log;
  replay::RecordedCommand command;
  command.seq = report.value("seq", std::uint64_t{1});
  command.time_ns = report.value("time_ns", std::int64_t{0});
  command.cmd = report.value("command", json()).dump();
  log.commands.push_back(command);
  if (!(*reply)["pre_state_snapshot"].is_null()) log.initial_state = (*reply)["pre_state_snapshot"].dump();
  if (report.contains("config")) log.recorded_config = report["config"].dump();
  auto base = replay::OptionsFromConfig(args.config, log, /*keep_users=*/true);
  if (!base.ok()) {
    std::cerr << "nvs quarantine: " << base.status().message() << "\n";
    *code = kExitUsage;
    return std::nullopt;
  }
  replay::ReplayOptions options = base.value();
  for (const auto& w : options.warnings) std::cerr << "nvs quarantine: warning: " << w << "\n";
  // The retest runs a command known to break variants: it keeps the users
  // nvsd drops them to, which takes root.
  for (const auto& v : options.variants) {
    if (!v.user.empty() && geteuid() != 0) {
      std::cerr << "nvs quarantine: variant " << v.name << " runs as user " << v.user
                << "; a retest runs the quarantined command as that user too: run it as root\n";
      *code = kExitUsage;
      return std::nullopt;
    }
  }
  options.deadline = std::chrono::milliseconds(args.deadline_ms);
  auto replayer = replay::Replayer::Start(options);
  if (!replayer.ok()) {
    std::cerr << "nvs quarantine: cannot start the probes: " << replayer.status().message() << "\n";
    *code = kExitUsage;
    return std::nullopt;
  }
  std::optional<replay::StepReport> step;
  auto run = replayer.value()->Run(log, [&](const replay::StepReport& s) { step = s; });
  if (!run.ok() || !step) {
    std::cerr << "nvs quarantine: the retest did not run: " << (run.ok() ? "no outcome" : run.status().message()) << "\n";
    *code = kExitUsage;
    return std::nullopt;
  }
  json outcomes = json::array();
  bool survived = true;
  for (const auto& out : step->outcomes) {
    json entry = {{"variant", out.variant}, {"outcome", std::string(voter::ToString(out.kind))}};
    if (!out.detail.empty()) entry["detail"] = out.detail;
    if (out.kind == voter::OutcomeKind::kReply) entry["result"] = json::parse(out.result, nullptr, false);
    survived = survived && out.kind == voter::OutcomeKind::kReply;
    outcomes.push_back(entry);
  }
  return json{{"time", Now()},
              {"survived", survived},
              {"verdict", std::string(voter::ToString(step->verdict.kind))},
              {"kind", replay::ToString(step->kind)},
              {"on_saved_state", log.initial_state.has_value()},
              {"outcomes", outcomes}};
}

void PrintRetest(const json& retest) {
  std::cout << (retest.value("by", "") == "nvsd" ? "nvsd's retest" : "retest") << " on fresh probes"
            << (retest.value("on_saved_state", false) ? " restored to the state before it" : "") << ": "
            << (retest.value("survived", false) ? "every probe SURVIVED" : "probes still FAIL");
  if (retest.contains("verdict")) std::cout << " (verdict " << Text(retest, "verdict") << ")";
  std::cout << "\n";
  for (const auto& out : retest.value("outcomes", retest.value("probes", json::array()))) {
    std::cout << "  " << Text(out, "variant") << ": " << Text(out, "outcome");
    if (out.contains("detail")) std::cout << " (" << Text(out, "detail") << ")";
    if (out.contains("result")) std::cout << " " << out["result"].dump();
    std::cout << "\n";
  }
}

int Retest(const Options& o, const QuarantineArgs& args) {
  int code = kExitOk;
  auto retest = RunRetest(o, args, &code);
  if (!retest) return code;
  if (o.json_output) {
    std::cout << retest->dump() << "\n";
  } else {
    PrintRetest(*retest);
  }
  return (*retest)["survived"] == true ? kExitOk : kExitRefused;
}

// release / reject through nvsd. Who decides is what nvsd's CURVE handshake
// vouched for (the key's name), not anything said here; a release is
// retested by nvsd itself, on fresh probes of its own programs, before it is
// accepted: the answer comes when that retest is done.
int Decide(const Options& o, const QuarantineArgs& args, const std::string& action) {
  json request = {{"type", "quarantine"}, {"action", action}, {"report", args.id}, {"note", args.note}};
  if (!args.by.empty()) request["by"] = args.by;  // (recorded as claimed_by on a plain endpoint only)
  if (action == "release" && args.force) request["force"] = true;
  auto client = Connect(o, "nvs quarantine");
  if (!client) return kExitUsage;
  // nvsd's retest starts probes and restores them: give it time.
  const int timeout_ms = action == "release" && !args.force ? std::max(o.timeout_ms, 60'000) : o.timeout_ms;
  if (action == "release" && !args.force && !o.json_output) {
    std::cout << "nvsd retests " << args.id << " on fresh probes of its variants' programs...\n" << std::flush;
  }
  auto call = client->Call(request, timeout_ms);
  if (!call.ok() || !call.value()) return NoReply("nvs quarantine", *client, call, timeout_ms);
  const json& reply = *call.value();
  if (o.json_output) std::cout << reply.dump() << "\n";
  const std::string status = reply.value("status", "");
  if (status != "ok") {
    if (!o.json_output && reply.contains("retest")) PrintRetest(reply["retest"]);
    std::cerr << "nvs quarantine: " << reply.value("code", status) << ": " << reply.value("reason", "") << "\n";
    return status == "unavailable" || reply.value("code", "") == "retest_failed" ? kExitRefused : kExitUsage;
  }
  if (!o.json_output) {
    const json review = reply["report"].value("review", json::array());
    if (!review.empty() && review.back().contains("retest") && review.back()["retest"].contains("outcomes")) {
      PrintRetest(review.back()["retest"]);
    }
    std::cout << args.id << ": " << Text(reply["report"], "status") << " by "
              << (review.empty() ? std::string("?") : Text(review.back(), "by"))
              << (action == "release" ? " (the block is lifted; nothing was sent: a client must send the command again)"
                                      : " (blocked for good)")
              << "\n";
  }
  return kExitOk;
}

int ExportHtml(const Options& o, const QuarantineArgs& args) {
  int code = kExitOk;
  std::vector<std::string> ids = args.ids;
  if (ids.empty()) {
    auto list = Ask(o, {{"type", "quarantine"}, {"action", "list"}}, &code);
    if (!list) return code;
    for (const auto& r : (*list)["reports"]) ids.push_back(Text(r, "id"));
  }
  std::vector<json> incidents;
  for (const auto& id : ids) {
    auto reply = Ask(o, {{"type", "quarantine"}, {"action", "show"}, {"report", id}}, &code);
    if (!reply) return code;
    incidents.push_back(QuarantineIncident((*reply)["report"], Reproduce(args, id)));
  }
  std::ofstream out(args.html);
  out << report::RenderHtml(QuarantineModel(incidents, Now()));
  out.close();
  if (!out) {
    std::cerr << "nvs quarantine: cannot write " << args.html << "\n";
    return kExitUsage;
  }
  std::cout << "wrote " << args.html << " (" << incidents.size() << " reports)\n";
  return kExitOk;
}

}  // namespace

void AddQuarantineCommand(CLI::App& app, Options& o) {
  auto args = std::make_shared<QuarantineArgs>();
  CLI::App* q = app.add_subcommand("quarantine", "review quarantined commands (through the running nvsd)");
  q->require_subcommand(1);
  const auto common = [&](CLI::App* sub) {
    AddConnectionOptions(*sub, o);
    sub->add_option("--timeout", o.timeout_ms, "how long to wait for nvsd, ms")->capture_default_str();
    sub->add_flag("--json", o.json_output, "JSON output");
  };
  CLI::App* list = q->add_subcommand("list", "every report: id, time, command, verdict, who died how, status");
  common(list);
  list->callback([&o] { o.exit_code = List(o); });

  CLI::App* show = q->add_subcommand("show", "everything in one report, readable");
  common(show);
  show->add_option("id", args->id, "the report id (q-...)")->required();
  show->add_option("--config", args->config, "the nvsd config (only for the reproduce line)");
  show->callback([&o, args] { o.exit_code = Show(o, *args); });

  CLI::App* retest = q->add_subcommand(
      "retest", "run the command on fresh probes restored to the state before it; the live system is not touched");
  common(retest);
  retest->add_option("id", args->id, "the report id")->required();
  retest->add_option("-c,--config", args->config,
                     "the nvsd config whose variants to probe with (default: $NVS_CONFIG, else /etc/nvs/nvsd.json; never the programs the report names)");
  retest->add_option("--deadline", args->deadline_ms, "a probe's reply, else it is hung (ms)")->capture_default_str();
  retest->callback([&o, args] { o.exit_code = Retest(o, *args); });

  CLI::App* release = q->add_subcommand(
      "release", "lift the block once nvsd's own retest on fresh probes survives it (unless --force); nothing is sent");
  common(release);
  release->add_option("id", args->id, "the report id")->required();
  release->add_option("--note", args->note, "why (recorded in the report)")->required();
  release->add_option("--by", args->by,
                      "a name to record on a plain endpoint (unchecked, as claimed_by); with CURVE your key's name is "
                      "recorded");
  release->add_flag("--force", args->force, "release without nvsd's retest (recorded as such)");
  release->callback([&o, args] { o.exit_code = Decide(o, *args, "release"); });

  CLI::App* reject = q->add_subcommand("reject", "keep it blocked for good (recorded)");
  common(reject);
  reject->add_option("id", args->id, "the report id")->required();
  reject->add_option("--note", args->note, "why (recorded in the report)")->required();
  reject->add_option("--by", args->by,
                     "a name to record on a plain endpoint (unchecked, as claimed_by); with CURVE your key's name is "
                     "recorded");
  reject->callback([&o, args] { o.exit_code = Decide(o, *args, "reject"); });

  CLI::App* exp = q->add_subcommand("export", "one self-contained HTML page of the reports");
  common(exp);
  exp->add_option("--html", args->html, "the file to write")->required();
  exp->add_option("ids", args->ids, "only these reports (default: all)");
  exp->add_option("--config", args->config, "the nvsd config (for the reproduce lines)");
  exp->callback([&o, args] { o.exit_code = ExportHtml(o, *args); });
}

}  // namespace nvs::cli
