#include "transcript.h"

#include <signal.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "log.h"
#include "nvs/protocol/client_messages.h"
#include "nvs/protocol/messages.h"
#include "nvs/supervisor/config.h"
#include "nvs/supervisor/supervisor.h"
#include "sim_storage.h"
#include "sim_world.h"

namespace nvs::simulation {
namespace {

namespace proto = nvs::protocol;
using nlohmann::json;

const char* const kVariants[] = {"router-a", "router-b", "router-c"};
// `run` and `start` stop after this many moves: a scenario that never
// settles (a ping loop) is a defect of the scenario, said in the output.
constexpr int kMaxMoves = 10000;

std::string Short(const std::string& text, std::size_t max = 100) {
  return text.size() <= max ? text : text.substr(0, max) + "...";
}

std::string DescribeRequest(std::string_view bytes) {
  const auto decoded = proto::DecodeRequest(bytes);
  if (!decoded.ok()) return "unreadable " + Short(std::string(bytes));
  const proto::Request& r = decoded.value();
  std::string out = std::string(proto::TypeName(r)) + " seq=" + std::to_string(proto::SeqOf(r));
  if (const auto* a = std::get_if<proto::Apply>(&r)) out += " " + a->cmd;
  if (const auto* q = std::get_if<proto::Query>(&r)) out += " " + q->query;
  return out;
}

std::string DescribeReply(std::string_view bytes) {
  const auto decoded = proto::DecodeReply(bytes);
  if (!decoded.ok()) return "unreadable " + Short(std::string(bytes));
  const proto::Reply& r = decoded.value();
  std::string out(proto::TypeName(r));
  if (const auto seq = proto::SeqOf(r)) out += " seq=" + std::to_string(*seq);
  if (const auto* a = std::get_if<proto::Applied>(&r)) out += " " + a->result;
  if (const auto* a = std::get_if<proto::Answer>(&r)) out += " " + a->result;
  if (const auto* e = std::get_if<proto::Error>(&r)) out += " " + e->code + ": " + e->reason;
  return out;
}

std::string DescribeClientReply(const std::string& bytes) {
  const auto r = proto::DecodeClientReply(bytes);
  if (!r) return "unreadable " + Short(bytes);
  std::string out = r->id.value_or("?") + " " + std::string(proto::ToString(r->status));
  if (r->status == proto::ClientStatus::kCommitted) out += " seq=" + std::to_string(r->seq);
  if (!r->result.empty()) out += " " + r->result;
  if (!r->code.empty()) out += " " + r->code;
  if (!r->reason.empty()) out += ": " + r->reason;
  return out;
}

// An event in one line: its name and the members that say what happened
// (not times, pids or fingerprints, which say nothing a reader checks).
std::string DescribeEvent(std::string_view topic, std::string_view text) {
  const json e = json::parse(text, nullptr, false);
  std::string out = "~ " + std::string(topic);
  if (topic == "variant") {
    return out + " " + e.value("variant", "?") + " " + e.value("state", "?") + " (" + e.value("why", "") + ")";
  }
  for (const char* key : {"variant", "seq", "verdict", "phase", "conclusion", "outcome", "crashed", "hung",
                          "dissenting", "faulty", "state", "kind", "reason", "why"}) {
    if (!e.is_object() || !e.contains(key)) continue;
    const json& v = e[key];
    if (v.is_null() || (v.is_array() && v.empty()) || (v.is_string() && v.get<std::string>().empty())) continue;
    out += " " + std::string(key) + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
  }
  return out;
}

class Notes : public supervisor::LogSink {
 public:
  explicit Notes(std::vector<std::string>& out) : out_(out) {}
  void Write(supervisor::LogLevel, std::string_view event, const json& fields) override {
    if (event == "internal_error") out_.push_back("INTERNAL ERROR " + fields.dump());
  }

 private:
  std::vector<std::string>& out_;
};

class Runner {
 public:
  Runner() : notes_(out_) { supervisor::SetThreadLogSink(&notes_); }
  ~Runner() {
    nvsd_.reset();
    supervisor::SetThreadLogSink(nullptr);
  }

  std::vector<std::string> Do(const std::string& line) {
    out_.clear();
    std::istringstream in(line);
    std::string verb;
    in >> verb;
    if (verb == "send" || verb == "query") {
      // CLIENT ID, then the JSON: the rest of the line, spaces and all.
      std::string client, id, text;
      in >> client >> id >> std::ws;
      std::getline(in, text);
      if (!nvsd_) throw std::runtime_error("start first");
      if (text.empty()) throw std::runtime_error(verb + " CLIENT ID JSON");
      Send(client, id, text, verb == "query");
      return out_;
    }
    std::vector<std::string> args;
    for (std::string a; in >> a;) args.push_back(a);
    if (verb == "start") {
      Start(args);
    } else if (!nvsd_) {
      out_.push_back("error: start first");
    } else if (verb == "deliver" || verb == "arrive") {
      if (args.empty()) throw std::runtime_error(verb + " VARIANT [N|all]");
      const int n = args.size() < 2 ? 1 : args[1] == "all" ? kMaxMoves : std::stoi(args[1]);
      SimProc& p = Proc(args[0]);
      for (int i = 0; i < n; ++i) {
        if (!(verb == "deliver" ? Deliver(p) : Arrive(p))) {
          if (args.size() < 2 || args[1] != "all") out_.push_back("(nothing to " + verb + ")");
          break;
        }
      }
    } else if (verb == "die") {
      if (args.empty()) throw std::runtime_error("die VARIANT [lose]");
      SimProc& p = Proc(args[0]);
      Die(p);
      if (args.size() > 1) {
        // lose: all it sent that is still on its way; lose=N: the last N.
        std::size_t n = p.to_nvsd.size();
        if (args[1].rfind("lose=", 0) == 0) {
          n = std::min(n, static_cast<std::size_t>(std::stoul(args[1].substr(5))));
        } else if (args[1] != "lose") {
          throw std::runtime_error("die VARIANT [lose|lose=N]");
        }
        for (std::size_t i = p.to_nvsd.size() - n; i < p.to_nvsd.size(); ++i) {
          out_.push_back("the answer " + DescribeReply(p.to_nvsd[i]) + " is lost with it");
        }
        p.to_nvsd.resize(p.to_nvsd.size() - n);
      }
    } else if (verb == "exit-seen") {
      if (args.empty()) throw std::runtime_error("exit-seen VARIANT");
      SimProc& p = Proc(args[0]);
      p.exit_noticed = true;
      Turn();
    } else if (verb == "kill-nvsd") {
      // kill -9: its processes die with it; requests on their way to it
      // are lost; the files keep what was written. Then it starts again.
      nvsd_.reset();
      world_.procs.clear();
      world_.arrived.clear();
      world_.client_in.clear();
      out_.push_back("nvsd is killed -9 and started again");
      world_.Advance(std::chrono::milliseconds(5));
      StartNvsd();
    } else if (verb == "tick") {
      if (args.empty()) throw std::runtime_error("tick MS");
      world_.Advance(std::chrono::milliseconds(std::stoi(args[0])));
      Turn();
    } else if (verb == "run") {
      RunUntilQuiet();
    } else if (verb == "status") {
      Status();
    } else {
      throw std::runtime_error("unknown command: " + verb);
    }
    return out_;
  }

 private:
  void Start(const std::vector<std::string>& args) {
    json c;
    c["state_dir"] = "/sim/state";
    c["client_endpoint"] = "ipc:///sim/client";
    c["variant_endpoint"] = "ipc:///sim/variants";
    c["fsync"] = "always";
    c["journal_segment_bytes"] = 64 << 20;
    std::string faulty;
    for (const auto& a : args) {
      const auto eq = a.find('=');
      if (eq == std::string::npos) throw std::runtime_error("start: KEY=VALUE, not " + a);
      const std::string key = a.substr(0, eq);
      const std::string value = a.substr(eq + 1);
      if (key == "faulty") {
        faulty = value;
      } else if (key == "mode") {
        c["mode"] = value;
        if (value == "standby") c["standby_policy"] = "probe";
      } else {
        c[key] = std::stoll(value);
      }
    }
    c["variants"] = json::array();
    for (const char* name : kVariants) {
      std::string markers = "crash:all,hang:all";
      if (faulty == name) {
        for (const char* kind : {"crash", "hang", "drop", "wrong", "corrupt"}) {
          markers += std::string(",") + kind + ":" + name;
        }
      }
      c["variants"].push_back({{"name", name}, {"argv", {"/bin/true", markers}}, {"working_dir", "/"}});
    }
    config_text_ = c.dump();
    for (const char* dir : {"journal", "logs", "quarantine"}) {
      supervisor::StorageError error;
      storage_.MakeDir(dir, &error);
    }
    world_.on_send = [this](const SimProc& p, std::string_view bytes) {
      out_.push_back("-> " + Name(p) + " " + DescribeRequest(bytes));
    };
    world_.on_reply = [this](const std::string& client, const std::string& bytes) {
      out_.push_back(client + " <- " + DescribeClientReply(bytes));
    };
    StartNvsd();
    // The start-up (hellos, the first sync round) is not the scenario: only
    // where it ends is said.
    RunUntilQuiet();
    out_.clear();
    Status();
  }

  void StartNvsd() {
    auto config = supervisor::ParseConfig(config_text_, "/sim/nvsd.json");
    if (!config.ok()) throw std::runtime_error("start: " + config.status().message());
    auto started = StartSimulated(world_, storage_, events_, config.value());
    if (!started.ok()) throw std::runtime_error("start: " + started.status().message());
    nvsd_ = std::move(started.value());
  }

  // Events go through here to the transcript, in the order published.
  struct Events : supervisor::EventSink {
    explicit Events(Runner& r) : runner(r) {}
    void Publish(std::string_view topic, std::string_view text) override {
      runner.out_.push_back(DescribeEvent(topic, text));
    }
    Runner& runner;
  };

  static std::string Name(const SimProc& p) { return p.identity.substr(0, p.identity.rfind('.')); }

  // The newest incarnation of `variant`.
  SimProc& Proc(const std::string& variant) {
    SimProc* best = nullptr;
    int best_n = -1;
    for (auto& [wire, p] : world_.procs) {
      if (Name(p) != variant) continue;
      const int n = std::stoi(p.identity.substr(p.identity.rfind('.') + 1));
      if (n > best_n) {
        best = &p;
        best_n = n;
      }
    }
    if (best == nullptr) throw std::runtime_error("no process of " + variant);
    return *best;
  }

  void Turn() { TakeTurn(world_, *nvsd_); }

  void Send(const std::string& client, const std::string& id, const std::string& text, bool query) {
    proto::ClientRequest request;
    request.type = query ? proto::ClientRequestType::kQuery : proto::ClientRequestType::kCommand;
    request.id = id;
    request.payload = text;
    world_.client_in.push_back({client, proto::Encode(request)});
    Turn();
  }

  bool Deliver(SimProc& p) {
    if (p.to_variant.empty() || !p.alive) return false;
    const std::string bytes = p.to_variant.front();
    const std::size_t before = p.to_nvsd.size();
    world_.Deliver(p);  // (the model acts: its replies queue up towards nvsd)
    std::string line = Name(p) + " reads " + DescribeRequest(bytes);
    for (std::size_t i = before; i < p.to_nvsd.size(); ++i) line += ", answers " + DescribeReply(p.to_nvsd[i]);
    if (!p.alive) line += ", dies";
    if (p.model.hung()) line += ", hangs";
    out_.push_back(line);
    return true;
  }

  bool Arrive(SimProc& p) {
    if (p.to_nvsd.empty()) return false;
    out_.push_back(Name(p) + " -> nvsd " + DescribeReply(p.to_nvsd.front()));
    world_.Arrive(p);
    Turn();
    return true;
  }

  void Die(SimProc& p) {
    if (!p.alive) {
      out_.push_back("(" + Name(p) + " is already dead)");
      return;
    }
    world_.Die(p, SIGSEGV);
    out_.push_back(Name(p) + " dies (SIGSEGV)");
  }

  // Every message moves and every exit is seen, process by process in
  // name order, until nothing moves.
  void RunUntilQuiet() {
    for (int moves = 0; moves < kMaxMoves;) {
      bool moved = false;
      for (auto& [wire, p] : world_.procs) {
        if (Deliver(p) || Arrive(p)) {
          moved = true;
          ++moves;
          break;  // (a turn may have spawned or killed: look again)
        }
        if (!p.alive && !p.exit_noticed && p.has_handle) {
          p.exit_noticed = true;
          out_.push_back("nvsd sees " + Name(p) + " gone");
          Turn();
          moved = true;
          ++moves;
          break;
        }
      }
      if (!moved && nvsd_->NextDeadline() <= world_.Now()) {
        Turn();
        moved = nvsd_->NextDeadline() > world_.Now() || !world_.arrived.empty();
        ++moves;
      }
      if (!moved) return;
    }
    out_.push_back("(still moving after " + std::to_string(kMaxMoves) + " moves)");
  }

  void Status() {
    std::vector<std::string> kept;
    kept.swap(out_);
    proto::ClientRequest request;
    request.type = proto::ClientRequestType::kStatus;
    request.id = "status";
    world_.client_in.push_back({"status", proto::Encode(request)});
    std::string reply;
    const auto on_reply = world_.on_reply;
    world_.on_reply = [&](const std::string&, const std::string& bytes) { reply = bytes; };
    Turn();
    world_.on_reply = on_reply;
    kept.insert(kept.end(), out_.begin(), out_.end());
    out_.swap(kept);
    const json s = json::parse(reply, nullptr, false);
    if (!s.is_object() || !s.contains("variants")) {
      out_.push_back("status: no reply");
      return;
    }
    for (const auto& v : s["variants"]) {
      out_.push_back("status " + v.value("name", "?") + " " + v.value("state", "?") +
                     (v.value("voting", false) ? " voting" : "") + " incarnation=" +
                     std::to_string(v.value("incarnation", 0)));
    }
    const json& n = s["nvsd"];
    out_.push_back("status nvsd seq=" + std::to_string(n.value("seq", 0)) + " commits=" +
                   std::to_string(n.value("commits", 0)) + " quarantined=" + std::to_string(n.value("quarantined", 0)));
  }

  std::vector<std::string> out_;
  std::string config_text_;
  Notes notes_;
  World world_{1};
  MemoryStateDir storage_;
  Events events_{*this};
  std::unique_ptr<supervisor::Supervisor> nvsd_;  // last: destroyed first
};

}  // namespace

std::string RunTranscript(const std::string& text) {
  std::istringstream in(text);
  std::string result;
  Runner runner;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') {
      result += line + "\n";
      continue;
    }
    // A command, then "----", then its expected output up to a blank line
    // (replaced by what happened).
    result += line + "\n";
    std::string separator;
    if (!std::getline(in, separator) || separator != "----") {
      throw std::runtime_error("after the command \"" + line + "\": a line \"----\"");
    }
    result += "----\n";
    for (std::string expected; std::getline(in, expected) && !expected.empty();) {
    }
    for (const auto& out : runner.Do(line)) result += out + "\n";
    result += "\n";
  }
  // (The file ends with its last line, without a blank line after it.)
  while (result.size() >= 2 && result.substr(result.size() - 2) == "\n\n") result.pop_back();
  return result;
}

}  // namespace nvs::simulation
