// `nvs top`: a live view of nvsd. It subscribes to nvsd's events (the
// endpoint `status` names, or --events) and asks `status` once a refresh:
// on a terminal it redraws one screen (the variants, rates, the last
// verdicts, the quarantine count, the latest events); elsewhere (a pipe, a
// log) it prints each event as a line and a summary line each refresh.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <deque>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <zmq.hpp>

#include "client.h"
#include "common.h"

namespace nvs::cli {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

volatile sig_atomic_t stop_requested = 0;
void OnStop(int) { stop_requested = 1; }

struct TopOptions {
  std::string events;  // "" = the endpoint status names
  int interval_ms = 1000;
  int count = 0;       // refreshes before exiting; 0 = until interrupted
  bool plain = false;  // plain lines even on a terminal
};

std::string Clock24(std::int64_t time_ns) {
  const std::time_t seconds = static_cast<std::time_t>(time_ns / 1'000'000'000);
  std::tm local{};
  localtime_r(&seconds, &local);
  char text[16];
  std::strftime(text, sizeof text, "%H:%M:%S", &local);
  return text;
}

std::string Ms(const json& value) {
  if (!value.is_number()) return "-";
  char text[32];
  std::snprintf(text, sizeof text, value.get<double>() < 10 ? "%.2f" : "%.0f", value.get<double>());
  return text;
}

// One event, as a line a person reads; "" for those the view does not show
// one by one (each verdict: counted instead).
std::string EventLine(const json& e) {
  const std::string name = e.value("event", "");
  const std::string variant = e.value("variant", json("")).is_string() ? e.value("variant", "") : "";
  if (name == "variant") {
    return "variant " + variant + " " + e.value("state", "") + " (incarnation " +
           std::to_string(e.value("incarnation", 0)) + "): " + e.value("why", "");
  }
  if (name == "restart") return "restart " + variant + ": " + e.value("why", "");
  if (name == "failed") return "FAILED " + variant + ": " + e.value("why", "");
  if (name == "divergence") return "divergence: " + variant + " answered otherwise on seq " + e["seq"].dump();
  if (name == "quarantine") {
    return "QUARANTINE seq " + e["seq"].dump() + " as " + e.value("report", "") + ": " + e.value("reason", "");
  }
  if (name == "blocked") return "blocked a resend of " + e.value("report", "");
  if (name == "unavailable") return "UNAVAILABLE: " + e.value("reason", "");
  if (name == "available") return "available again after " + e["after_ms"].dump() + " ms";
  if (name == "journal") return "journal " + e.value("state", "") + ": " + e.value("reason", "");
  if (name == "promoted") return "promoted " + variant + " (was " + e.value("previous", "") + "): " + e.value("why", "");
  if (name == "pace") return e["variant"].is_string() ? "PACE: " + e.value("why", "") : "pace: " + e.value("why", "");
  if (name == "verdict") {
    const std::string verdict = e.value("verdict", "");
    if (verdict == "COMMIT") return "";
    return verdict + " on " + (e.value("query", false) ? std::string("a query") : "seq " + e["seq"].dump()) + ": " +
           e.value("reason", "");
  }
  if (name == "ready") return "ready";
  if (name == "cluster") return "cluster: " + e.value("role", "") + " " + e.value("member", "");
  if (name == "settled" || name == "probe" || name == "retest") return "";
  return name;
}

class Top {
 public:
  explicit Top(bool terminal) : terminal_(terminal) {}

  void OnEvent(const json& e) {
    if (e.value("event", "") == "verdict") ++verdicts_[e.value("verdict", "?")];
    const std::string line = EventLine(e);
    if (line.empty()) return;
    const std::string stamped = Clock24(e.value("time_ns", std::int64_t{0})) + " " + line;
    if (!terminal_) {
      std::cout << stamped << "\n" << std::flush;
      return;
    }
    recent_.push_back(stamped);
    if (recent_.size() > 8) recent_.pop_front();
  }

  // A refresh: the status (null: nvsd did not answer, and why).
  void Draw(const json& status, const std::string& trouble) {
    const auto now = Clock::now();
    const double seconds = std::chrono::duration<double>(now - last_draw_).count();
    std::ostringstream out;
    if (status.is_null()) {
      out << "nvsd does not answer: " << trouble << "\n";
    } else {
      const json& n = status["nvsd"];
      const std::uint64_t commits = n.value("commits", std::uint64_t{0});
      // (Commits can be taken back, when the journal could not keep them.)
      const double rate = have_commits_ && seconds > 0 && commits >= last_commits_
                              ? static_cast<double>(commits - last_commits_) / seconds
                              : 0;
      last_commits_ = commits;
      have_commits_ = true;
      char line[512];
      std::snprintf(line, sizeof line, "seq %llu  commits %llu  %.0f commits/s  %s  healthy %d (min %d)  waiting %d  quarantined %d\n",
                    static_cast<unsigned long long>(n.value("seq", std::uint64_t{0})),
                    static_cast<unsigned long long>(commits), rate,
                    !n.value("ready", false) ? "NOT READY" : n.value("available", true) ? "available" : "UNAVAILABLE",
                    n.value("healthy", 0), n.value("min_healthy", 0), n.value("waiting", 0), n.value("quarantined", 0));
      if (terminal_) {
        out << "nvs top: nvsd pid " << n.value("pid", 0) << ", " << n.value("mode", "lockstep") << ", policy "
            << n.value("policy", "?") << "  (" << Clock24(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                           std::chrono::system_clock::now().time_since_epoch())
                                                           .count())
            << "; Ctrl-C quits)\n";
      }
      out << line;
      if (!n.value("available", true) && n["unavailable_reason"].is_string()) {
        out << "  not taking commands: " << n["unavailable_reason"].get<std::string>() << "\n";
      }
      if (n["paced_by"].is_string()) {
        out << "  PACE: " << n["paced_by"].get<std::string>()
            << " is much slower than the others: it falls behind, and commands wait for it\n";
      }
      if (terminal_) {
        std::snprintf(line, sizeof line, "%-12s %-7s %-9s %4s %8s %8s %-9s %s\n", "VARIANT", "ROLE", "STATE", "INC",
                      "RESTARTS", "P50 MS", "PACE", "LAST FAULT");
        out << line;
        for (const auto& v : status["variants"]) {
          const json pace = v.value("pace", json::object());
          std::snprintf(line, sizeof line, "%-12s %-7s %-9s %4d %8d %8s %-9s %s\n", v.value("name", "?").c_str(),
                        v.value("role", "?").c_str(), v.value("state", "?").c_str(), v.value("incarnation", 0),
                        v.value("restarts", 0), Ms(pace.value("answer_p50_ms", json())).c_str(),
                        pace.value("sets_pace", false) ? "SETS PACE" : "", v.value("last_fault", "").c_str());
          out << line;
        }
        out << "verdicts since the last refresh:";
        if (verdicts_.empty()) out << " none";
        for (const auto& [kind, count] : verdicts_) out << " " << kind << " " << count;
        out << "\nlast verdicts:";
        for (const auto& r : n.value("recent_verdicts", json::array())) {
          out << " " << (r.value("query", false) ? std::string("query") : "seq " + r["seq"].dump()) << " "
              << r.value("verdict", "?");
        }
        out << "\nevents:\n";
        for (const auto& e : recent_) out << "  " << e << "\n";
      } else {
        for (const auto& v : status["variants"]) {
          const json pace = v.value("pace", json::object());
          out << "  " << v.value("name", "?") << " " << v.value("role", "?") << " " << v.value("state", "?")
              << " incarnation " << v.value("incarnation", 0) << " restarts " << v.value("restarts", 0) << " p50 "
              << Ms(pace.value("answer_p50_ms", json())) << " ms" << (pace.value("sets_pace", false) ? " SETS PACE" : "")
              << "\n";
        }
      }
    }
    verdicts_.clear();
    last_draw_ = now;
    if (terminal_) {
      // Home, the screen, then clear what the last one left below.
      std::cout << "\x1b[H\x1b[2J" << out.str() << "\x1b[J" << std::flush;
    } else {
      std::cout << Clock24(std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count())
                << " " << out.str() << std::flush;
    }
  }

 private:
  bool terminal_;
  std::deque<std::string> recent_;
  std::map<std::string, int> verdicts_;
  std::uint64_t last_commits_ = 0;
  bool have_commits_ = false;
  Clock::time_point last_draw_ = Clock::now();
};

int RunTop(const Options& o, const TopOptions& t) {
  auto client = Connect(o, "nvs top");
  if (!client) return kExitUsage;
  auto first = client->Call({{"type", "status"}}, o.timeout_ms);
  if (!first.ok() || !first.value()) return NoReply("nvs top", *client, first, o.timeout_ms);
  std::string events = t.events;
  if (events.empty()) events = (*first.value())["nvsd"].value("event_endpoint", "");
  const bool terminal = !t.plain && isatty(STDOUT_FILENO) == 1;
  zmq::context_t context;
  zmq::socket_t sub(context, zmq::socket_type::sub);
  sub.set(zmq::sockopt::linger, 0);
  if (!events.empty()) {
    try {
      sub.connect(events);
      // What the view shows: not `settled`, which nvsd would build for every
      // command only for it.
      for (const char* topic : {"ready", "verdict", "divergence", "variant", "restart", "failed", "quarantine",
                                "blocked", "unavailable", "available", "journal", "promoted", "pace", "cluster"}) {
        sub.set(zmq::sockopt::subscribe, topic);
      }
    } catch (const zmq::error_t& e) {
      std::cerr << "nvs top: cannot subscribe to " << events << ": " << e.what() << "\n";
      return kExitUsage;
    }
  } else {
    std::cerr << "nvs top: nvsd publishes no events (event_endpoint \"\"): only its status is shown\n";
  }
  struct sigaction action {};
  action.sa_handler = OnStop;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  // The cursor is hidden while the view is up, and shown again however
  // this ends.
  struct Cursor {
    bool terminal;
    explicit Cursor(bool t) : terminal(t) {
      if (terminal) std::cout << "\x1b[?25l";
    }
    ~Cursor() {
      if (terminal) std::cout << "\x1b[?25h" << std::flush;
    }
  } cursor(terminal);
  Top top(terminal);
  top.Draw(*first.value(), "");
  int drawn = 1;
  auto next = Clock::now() + std::chrono::milliseconds(t.interval_ms);
  while (!stop_requested && (t.count == 0 || drawn < t.count)) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now());
    if (left.count() > 0 && !events.empty()) {
      zmq::pollitem_t item{sub.handle(), 0, ZMQ_POLLIN, 0};
      try {
        zmq::poll(&item, 1, left);
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;
      }
      zmq::message_t topic, body;
      while (sub.recv(topic, zmq::recv_flags::dontwait)) {
        if (!topic.more() || !sub.recv(body, zmq::recv_flags::dontwait)) continue;
        const json e = json::parse(body.to_string(), nullptr, false);
        if (e.is_object()) top.OnEvent(e);
      }
      continue;
    }
    if (left.count() > 0) {
      const timespec pause{0, static_cast<long>(left.count()) * 1'000'000};
      nanosleep(&pause, nullptr);  // (no events to wait on: the refresh's own pace)
      continue;
    }
    Result<std::optional<json>> status = std::optional<json>();
    try {
      status = client->Call({{"type", "status"}}, std::min(o.timeout_ms, std::max(t.interval_ms, 1000)));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) break;  // Ctrl-C while it waited for nvsd
      throw;
    }
    std::string trouble;
    if (!status.ok()) trouble = status.status().message();
    else if (!status.value()) trouble = "no reply from " + client->endpoint();
    top.Draw(status.ok() && status.value() ? *status.value() : json(), trouble);
    ++drawn;
    next = Clock::now() + std::chrono::milliseconds(t.interval_ms);
  }
  return kExitOk;
}

}  // namespace

void AddTopCommand(CLI::App& app, Options& options) {
  static TopOptions top;
  CLI::App* sub = app.add_subcommand(
      "top", "a live view: variants (role, state, incarnation, restarts, answer time, pace, last fault), rates, "
             "verdicts and events; plain lines when not on a terminal");
  AddConnectionOptions(*sub, options);
  sub->add_option("--events", top.events,
                  "nvsd's event endpoint (default: the one nvsd's status names, as nvsd's config writes it: from "
                  "another machine, or for a relative ipc path, give it here)");
  sub->add_option("--interval", top.interval_ms, "refresh every this many ms (default 1000)")->check(CLI::Range(100, 60000));
  sub->add_option("--count", top.count, "stop after this many refreshes (default: run until Ctrl-C)")
      ->check(CLI::NonNegativeNumber);
  sub->add_flag("--plain", top.plain, "plain lines even on a terminal (one per event, a summary each refresh)");
  sub->callback([&options] { options.exit_code = RunTop(options, top); });
}

}  // namespace nvs::cli
