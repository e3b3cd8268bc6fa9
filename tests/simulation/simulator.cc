#include "simulator.h"

#include <signal.h>

#include <algorithm>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>

#include "log.h"
#include "nvs/core/records.h"
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
using std::chrono::milliseconds;

constexpr std::size_t kSlots = 4;
// A client resends a request it has no answer to after this long (as the
// nvs client does), with the same id.
constexpr milliseconds kRetryAfter{4000};
// The whole schedule, workload and quiescence, takes at most this many steps.
constexpr int kMaxSteps = 40000;
const char* const kVariants[] = {"router-a", "router-b", "router-c"};
const char* const kSingleFaults[] = {"crash", "hang", "drop", "wrong", "corrupt"};

// One request a simulated client makes, and what it heard.
struct Request {
  std::string id;
  std::string cmd;  // the command or query, JSON text
  bool query = false;
  std::string fault;  // its fault marker ("" none)
  int sends = 0;
  Clock::time_point last_send{};
  bool answered_since_send = false;
  std::optional<proto::ClientReply> final_reply;  // the first committed/answered/rejected/quarantined one
  std::optional<proto::ClientReply> last_reply;
  bool Benign() const { return fault.empty() || fault.find(":all") == std::string::npos; }
};

struct SimClient {
  std::string name;  // its routing id
  std::vector<Request> requests;
  std::size_t next = 0;  // the next request to send the first time
  int Outstanding() const {
    int n = 0;
    for (std::size_t i = 0; i < next; ++i) n += requests[i].answered_since_send ? 0 : 1;
    return n;
  }
};

// Collects nvsd's log lines: an internal_error is a bug.
class Logs : public supervisor::LogSink {
 public:
  void Write(supervisor::LogLevel level, std::string_view event, const json& fields) override {
    if (event == "internal_error") errors.push_back(fields.dump());
    if (note && level >= supervisor::LogLevel::kInfo) note("log " + std::string(event) + " " + fields.dump());
  }
  std::vector<std::string> errors;
  std::function<void(const std::string&)> note;
};

std::string ReplyText(const proto::ClientReply& r) {
  std::string out(proto::ToString(r.status));
  if (r.status == proto::ClientStatus::kCommitted) out += " seq " + std::to_string(r.seq);
  if (!r.result.empty()) out += " " + r.result;
  if (!r.code.empty()) out += " " + r.code;
  if (!r.reason.empty()) out += " (" + r.reason + ")";
  return out;
}

bool SameFinal(const proto::ClientReply& a, const proto::ClientReply& b) {
  return a.status == b.status && a.seq == b.seq && a.result == b.result && a.code == b.code;
}

class Schedule {
 public:
  Schedule(const ScheduleSpec& spec, bool keep) : spec_(spec), world_(spec.seed), keep_(keep) {}

  ScheduleResult Run();

 private:
  void Note(const std::string& what) {
    if (keep_) {
      const auto ms = std::chrono::duration<double, std::milli>(world_.Now().time_since_epoch()).count() - 3600000.0;
      char at[32];
      std::snprintf(at, sizeof at, "%9.3f ms  ", ms);
      result_.transcript.push_back(at + what);
    }
  }
  void Violation(const std::string& what) {
    Note("VIOLATION: " + what);
    if (result_.violations.size() < 20) result_.violations.push_back(what);
  }
  double Uniform() { return std::uniform_real_distribution<double>(0, 1)(world_.rng()); }
  int Below(int n) { return static_cast<int>(std::uniform_int_distribution<int>(0, n - 1)(world_.rng())); }

  supervisor::Config MakeConfig() const;
  void MakeWorkload();
  bool StartNvsd();
  void KillNvsd();
  void Turn();
  void OnReply(const std::string& client, const std::string& bytes);
  void OnSend(const SimProc& p, std::string_view bytes);
  void SendRequest(SimClient& c, Request& r);
  bool Step(bool quiescing);
  bool AllAnswered() const;
  void FinalChecks();

  ScheduleSpec spec_;
  World world_;
  MemoryStateDir storage_;
  Logs logs_;
  bool keep_;
  ScheduleResult result_;
  std::vector<SimClient> clients_;
  std::map<std::string, std::pair<std::size_t, std::size_t>> by_id_;  // request id -> (client, index)
  // The variant processes each command (by its JSON text) killed, and
  // whether nvsd could know: it saw the exit, or it was an earlier nvsd's
  // process (the journal then holds the command's admit).
  struct Death {
    std::string variant;  // router-a, ...
    std::string wire;
    int generation = 0;  // which nvsd started the process
    bool noticed = false;
  };
  std::map<std::string, std::vector<Death>> deaths_;
  std::map<std::string, std::string> died_on_;  // wire -> the command it died on
  int generation_ = 0;  // nvsd starts so far
  std::map<std::uint64_t, std::string> seq_told_;  // seq -> request id told `committed` at it
  int kills_left_ = 0;
  int storage_faults_left_ = 0;
  int storage_fault_until_ = -1;  // the step a storage fault ends at
  std::unique_ptr<supervisor::Supervisor> nvsd_;  // last: destroyed first (its processes are the world's)
};

supervisor::Config Schedule::MakeConfig() const {
  json c;
  c["state_dir"] = "/sim/state";
  c["client_endpoint"] = "ipc:///sim/client";
  c["variant_endpoint"] = "ipc:///sim/variants";
  c["mode"] = spec_.mode;
  if (spec_.mode == "standby") c["standby_policy"] = "probe";
  c["fsync"] = "always";
  c["checkpoint_interval"] = spec_.checkpoint_interval;
  c["journal_segment_bytes"] = 64 << 20;
  c["restart"] = {{"intensity", 50}, {"period_ms", 10000}};
  c["variants"] = json::array();
  for (const char* name : kVariants) {
    // The program's faults (World::Spawn reads them from argv[1]): every
    // program crashes on "crash:all" and hangs on "hang:all"; the faulty
    // variant's also on its own markers.
    std::string markers = "crash:all,hang:all";
    if (spec_.faulty == name) {
      for (const char* kind : kSingleFaults) markers += std::string(",") + kind + ":" + name;
    }
    c["variants"].push_back({{"name", name}, {"argv", {"/bin/true", markers}}, {"working_dir", "/"}});
  }
  auto config = supervisor::ParseConfig(c.dump(), "/sim/nvsd.json");
  if (!config.ok()) throw std::runtime_error("the simulator's config: " + config.status().message());
  return config.value();
}

void Schedule::MakeWorkload() {
  for (int k = 0; k < spec_.clients; ++k) {
    SimClient c;
    c.name = "client-" + std::to_string(k + 1);
    for (int i = 0; i < spec_.requests; ++i) {
      Request r;
      r.id = c.name + "/" + std::to_string(i + 1);
      const int slot = Below(static_cast<int>(kSlots));
      if (Uniform() < 0.15) {
        r.query = true;
        r.cmd = json{{"op", "get"}, {"slot", slot}}.dump();
      } else {
        r.cmd = json{{"op", Uniform() < 0.7 ? "add" : "set"}, {"slot", slot}, {"value", 1 + Below(9)}}.dump();
      }
      c.requests.push_back(std::move(r));
    }
    clients_.push_back(std::move(c));
  }
  // Faults go on commands chosen at random (a query may carry one too).
  const auto mark = [&](const std::string& fault, int n) {
    json cmd = {{"op", "add"}, {"slot", Below(static_cast<int>(kSlots))}, {"value", 1 + Below(9)}, {"fault", fault},
                {"n", n}};
    Request& r = clients_[Below(spec_.clients)].requests[Below(spec_.requests)];
    r.query = false;
    r.fault = fault;
    r.cmd = cmd.dump();
  };
  // (Standby trusts its active's answers: nothing votes on them, so a wrong
  // answer or a corrupted state of the active is outside what it can
  // catch. There, the faulty variant only crashes, hangs or drops.)
  const int kinds = spec_.mode == "standby" ? 3 : 5;
  for (int i = 0; i < spec_.single_faults && !spec_.faulty.empty(); ++i) {
    mark(std::string(kSingleFaults[Below(kinds)]) + ":" + spec_.faulty, i);
  }
  for (int i = 0; i < spec_.poison; ++i) mark(Uniform() < 0.8 ? "crash:all" : "hang:all", 100 + i);
  for (std::size_t k = 0; k < clients_.size(); ++k) {
    for (std::size_t i = 0; i < clients_[k].requests.size(); ++i) by_id_[clients_[k].requests[i].id] = {k, i};
  }
}

bool Schedule::StartNvsd() {
  ++generation_;
  auto started = StartSimulated(world_, storage_, world_, MakeConfig());
  if (!started.ok()) {
    Violation("nvsd could not start: " + started.status().message());
    return false;
  }
  nvsd_ = std::move(started.value());
  Note("nvsd started");
  return true;
}

void Schedule::KillNvsd() {
  const bool power_cut = spec_.power_cut;
  Note(power_cut ? "POWER CUT: nvsd and its variants die, unsynced data is lost" : "nvsd is killed -9");
  nvsd_.reset();  // its handles: every process it started is killed
  world_.procs.clear();
  world_.arrived.clear();
  world_.client_in.clear();  // requests in flight to it are lost
  storage_.FailSyncs(0);
  storage_.ClearSpaceLimit();
  if (power_cut) storage_.PowerCut(world_.rng(), /*torn=*/Uniform() < 0.5);
  ++result_.kills;
  world_.Advance(milliseconds(5));
  StartNvsd();
}

void Schedule::Turn() {
  if (!nvsd_) return;
  TakeTurn(world_, *nvsd_);
  ++result_.turns;
}

void Schedule::SendRequest(SimClient& c, Request& r) {
  proto::ClientRequest request;
  request.type = r.query ? proto::ClientRequestType::kQuery : proto::ClientRequestType::kCommand;
  request.id = r.id;
  request.payload = r.cmd;
  world_.client_in.push_back({c.name, proto::Encode(request)});
  ++r.sends;
  r.last_send = world_.Now();
  r.answered_since_send = false;
  Note(c.name + " sends " + r.id + (r.sends > 1 ? " (again)" : "") + " " + r.cmd);
}

void Schedule::OnReply(const std::string& client, const std::string& bytes) {
  const auto reply = proto::DecodeClientReply(bytes);
  if (!reply || !reply->id) {
    Violation("a reply the client cannot read: " + bytes);
    return;
  }
  auto where = by_id_.find(*reply->id);
  if (where == by_id_.end() || clients_[where->second.first].name != client) {
    Violation("a reply to " + client + " for a request it never sent: " + bytes);
    return;
  }
  Request& r = clients_[where->second.first].requests[where->second.second];
  Note(client + " hears " + r.id + ": " + ReplyText(*reply));
  r.answered_since_send = true;
  r.last_reply = reply;
  if (reply->status == proto::ClientStatus::kCommitted) {
    auto [told, fresh] = seq_told_.emplace(reply->seq, r.id);
    if (!fresh && told->second != r.id) {
      Violation("seq " + std::to_string(reply->seq) + " told to both " + told->second + " and " + r.id);
    }
  }
  // (The single-fault model: in standby, a poison takes the active down
  // and the next; a faulty third one failing before they are back has no
  // backup to probe with, and quarantine is then standby's designed answer.
  // Outside that model, so not held against it.)
  const bool no_backup = spec_.poison > 0 && spec_.mode == "standby" &&
                         reply->reason.find("no backup to probe with") != std::string::npos;
  if (reply->status == proto::ClientStatus::kQuarantined && r.Benign() && !no_backup) {
    Violation("a benign command was quarantined (single-fault model): " + r.id + " " + r.cmd + ": " +
              ReplyText(*reply));
  }
  // (Not carried out, and not remembered. A query is read again when sent again.)
  if (reply->status == proto::ClientStatus::kUnavailable || r.query) return;
  if (!r.final_reply) {
    r.final_reply = reply;
  } else if (!SameFinal(*r.final_reply, *reply)) {
    Violation("a retry of " + r.id + " got another answer: first " + ReplyText(*r.final_reply) + ", then " +
              ReplyText(*reply));
  }
}

// A command that killed two variant processes is never sent to a variant
// again (a disposable probe or retest process may get it).
void Schedule::OnSend(const SimProc& p, std::string_view bytes) {
  const auto decoded = proto::DecodeRequest(bytes);
  if (!decoded.ok()) return;
  const auto* apply = std::get_if<proto::Apply>(&decoded.value());
  if (apply == nullptr) return;
  auto killed = deaths_.find(apply->cmd);
  if (!p.IsVariant() || killed == deaths_.end()) return;
  std::set<std::string> known;  // variants nvsd knows (or must find out) it killed
  for (const auto& d : killed->second) {
    if (d.noticed || d.generation < generation_) known.insert(d.variant);
  }
  if (known.size() >= 2) {
    std::string who;
    for (const auto& k : known) who += (who.empty() ? "" : ", ") + k;
    Violation("a command that killed " + who + " was sent again, to " + p.identity + ": " + apply->cmd);
  }
}

bool Schedule::AllAnswered() const {
  for (const auto& c : clients_) {
    if (c.next < c.requests.size()) return false;
    for (const auto& r : c.requests) {
      if (!r.answered_since_send) return false;
    }
  }
  return true;
}

// One step: one thing happens, chosen at random among what can. Returns
// false when nothing can happen any more.
bool Schedule::Step(bool quiescing) {
  struct Choice {
    double weight;
    std::function<void()> act;
  };
  std::vector<Choice> choices;
  for (auto& [wire, p] : world_.procs) {
    SimProc* proc = &p;
    const double pace = spec_.slow && p.identity.rfind(spec_.faulty + ".", 0) == 0 ? 0.1 : 1.0;
    if (!p.to_variant.empty()) {
      choices.push_back({8 * pace, [this, proc] {
                           const bool was_alive = proc->alive;
                           const std::string bytes = proc->to_variant.front();
                           world_.Deliver(*proc);
                           if (was_alive && !proc->alive && proc->IsVariant()) {
                             const auto decoded = proto::DecodeRequest(bytes);
                             if (decoded.ok()) {
                               if (const auto* a = std::get_if<proto::Apply>(&decoded.value())) {
                                 // (Variants, not incarnations: one that dies on it again is not independent.)
                                 deaths_[a->cmd].push_back(
                                     {proc->identity.substr(0, proc->identity.rfind('.')), proc->wire, generation_});
                                 died_on_[proc->wire] = a->cmd;
                               }
                             }
                           }
                         }});
    }
    if (!p.to_nvsd.empty()) {
      choices.push_back({8 * pace, [this, proc] {
                           world_.Arrive(*proc);
                           Turn();
                         }});
    }
    if (!p.alive && !p.exit_noticed && p.has_handle) {
      choices.push_back({4, [this, proc] {
                           proc->exit_noticed = true;
                           Note("nvsd sees " + proc->identity + " exit");
                           if (auto on = died_on_.find(proc->wire); on != died_on_.end()) {
                             for (auto& d : deaths_[on->second]) d.noticed = d.noticed || d.wire == proc->wire;
                           }
                           Turn();
                         }});
    }
  }
  for (auto& c : clients_) {
    SimClient* client = &c;
    if (c.next < c.requests.size() && c.Outstanding() < spec_.window) {
      choices.push_back({3, [this, client] {
                           SendRequest(*client, client->requests[client->next++]);
                           Turn();
                         }});
    }
    for (std::size_t i = 0; i < c.next; ++i) {
      Request* r = &c.requests[i];
      if (!r->answered_since_send && world_.Now() >= r->last_send + kRetryAfter) {
        choices.push_back({3, [this, client, r] {
                             SendRequest(*client, *r);
                             Turn();
                           }});
      }
    }
  }
  const bool busy = !choices.empty();
  choices.push_back({busy ? 0.5 : 0.0, [this] {
                       world_.Advance(std::chrono::microseconds(50 + Below(2000)));
                       Turn();
                     }});
  // Time jumps to the next deadline (nvsd's, or a client's retry): often
  // when nothing else can happen, rarely otherwise (a slow transport).
  choices.push_back({busy ? 0.05 : 1.0, [this] {
                       auto next = nvsd_ ? nvsd_->NextDeadline() : world_.Now() + milliseconds(100);
                       for (const auto& c : clients_) {
                         for (std::size_t i = 0; i < c.next; ++i) {
                           if (!c.requests[i].answered_since_send) next = std::min(next, c.requests[i].last_send + kRetryAfter);
                         }
                       }
                       world_.AdvanceTo(next);
                       world_.Advance(std::chrono::microseconds(1));
                       Turn();
                     }});
  if (!quiescing && kills_left_ > 0) {
    choices.push_back({0.02, [this] {
                         --kills_left_;
                         KillNvsd();
                       }});
  }
  if (!quiescing && storage_faults_left_ > 0 && storage_fault_until_ < 0) {
    choices.push_back({0.02, [this] {
                         --storage_faults_left_;
                         storage_fault_until_ = result_.steps + 50 + Below(200);
                         if (Uniform() < 0.5) {
                           storage_.FailSyncs(1 + Below(3));
                           Note("STORAGE: the next syncs fail (EIO)");
                         } else {
                           storage_.SetSpaceLeft(static_cast<std::uint64_t>(Below(2000)));
                           Note("STORAGE: the disk is nearly full");
                         }
                       }});
  }
  double total = 0;
  for (const auto& c : choices) total += c.weight;
  double pick = Uniform() * total;
  for (auto& c : choices) {
    if ((pick -= c.weight) <= 0 && c.weight > 0) {
      c.act();
      return true;
    }
  }
  choices.back().act();
  return true;
}

void Schedule::FinalChecks() {
  // Every request got a definite answer after it was last sent.
  for (const auto& c : clients_) {
    for (const auto& r : c.requests) {
      if (r.sends > 0 && !r.answered_since_send) {
        Violation("no answer to " + r.id + " (sent " + std::to_string(r.sends) + " times)");
      }
    }
  }
  // The journal: each command committed at most once, at the seq its client
  // was told; none committed whose client was told it was not carried out.
  std::map<std::string, std::uint64_t> committed;  // request id -> seq
  auto segments = storage_.List("journal");
  for (const auto& name : segments.ok() ? segments.value() : std::vector<std::string>{}) {
    auto bytes = storage_.Read("journal/" + name);
    if (!bytes.ok()) continue;
    for (const auto& payload : supervisor::ScanJournal(bytes.value()).records) {
      auto record = supervisor::ParseJournalRecord(payload);
      if (!record.ok() || record.value().type != "verdict" || record.value().verdict != "COMMIT") continue;
      auto [it, fresh] = committed.emplace(record.value().id, record.value().seq);
      if (!fresh) {
        Violation(record.value().id + " committed twice in the journal: seq " + std::to_string(it->second) + " and " +
                  std::to_string(record.value().seq));
      }
    }
  }
  std::vector<std::pair<std::uint64_t, const Request*>> commits;
  for (const auto& c : clients_) {
    for (const auto& r : c.requests) {
      if (!r.final_reply && r.last_reply && r.last_reply->status == proto::ClientStatus::kUnavailable) {
        if (committed.count(r.id) != 0) {
          Violation(r.id + " was answered unavailable and never sent again, yet committed at seq " +
                    std::to_string(committed[r.id]));
        }
        continue;
      }
      if (!r.final_reply) continue;
      if (r.final_reply->status == proto::ClientStatus::kCommitted) {
        auto it = committed.find(r.id);
        if (it == committed.end()) {
          Violation(r.id + " was told committed at seq " + std::to_string(r.final_reply->seq) +
                    " but the journal has no commit of it");
        } else if (it->second != r.final_reply->seq) {
          Violation(r.id + " was told seq " + std::to_string(r.final_reply->seq) + ", the journal says " +
                    std::to_string(it->second));
        }
        commits.emplace_back(r.final_reply->seq, &r);
      } else if (committed.count(r.id) != 0 && !r.query) {
        Violation(r.id + " was answered " + ReplyText(*r.final_reply) + " yet the journal commits it at seq " +
                  std::to_string(committed[r.id]));
      }
    }
  }
  // The reference: the commits told, replayed in seq order on the model.
  std::sort(commits.begin(), commits.end());
  std::vector<std::int64_t> slots(kSlots, 0);
  for (const auto& [seq, r] : commits) {
    const std::string expected = SimVariant::Apply(slots, r->cmd);
    if (expected != r->final_reply->result) {
      Violation(r->id + " at seq " + std::to_string(seq) + " was told " + r->final_reply->result +
                "; the reference replay says " + expected);
    }
  }
  result_.commits = static_cast<int>(commits.size());
  for (const auto& c : clients_) {
    for (const auto& r : c.requests) {
      if (r.final_reply && r.final_reply->status == proto::ClientStatus::kQuarantined) ++result_.quarantined;
    }
  }
  // The state now: every slot read through nvsd equals the reference.
  SimClient checker;
  checker.name = "checker";
  for (std::size_t s = 0; s < kSlots; ++s) {
    Request r;
    r.id = "checker/" + std::to_string(s);
    r.query = true;
    r.cmd = json{{"op", "get"}, {"slot", s}}.dump();
    checker.requests.push_back(std::move(r));
  }
  clients_.push_back(std::move(checker));
  SimClient& check = clients_.back();
  for (std::size_t i = 0; i < check.requests.size(); ++i) by_id_[check.requests[i].id] = {clients_.size() - 1, i};
  while (result_.steps < kMaxSteps + 5000 && !AllAnswered()) {
    ++result_.steps;
    Step(/*quiescing=*/true);
  }
  for (std::size_t s = 0; s < kSlots; ++s) {
    const Request& r = check.requests[s];
    if (!r.final_reply || r.final_reply->status != proto::ClientStatus::kAnswered) continue;
    const std::string expected = json{{"ok", true}, {"value", slots[s]}}.dump();
    if (r.final_reply->result != expected) {
      Violation("slot " + std::to_string(s) + " reads " + r.final_reply->result + "; the reference replay of the " +
                std::to_string(commits.size()) + " commits told says " + expected);
    }
  }
}

ScheduleResult Schedule::Run() {
  struct SinkGuard {
    explicit SinkGuard(Logs* l) { supervisor::SetThreadLogSink(l); }
    ~SinkGuard() { supervisor::SetThreadLogSink(nullptr); }
  } guard(&logs_);
  if (keep_) {
    world_.note = [this](const std::string& s) { Note(s); };
    logs_.note = [this](const std::string& s) { Note(s); };
  }
  world_.on_reply = [this](const std::string& client, const std::string& bytes) { OnReply(client, bytes); };
  world_.on_send = [this](const SimProc& p, std::string_view bytes) { OnSend(p, bytes); };
  Note("schedule: " + spec_.Describe());
  for (const char* dir : {"journal", "logs", "quarantine"}) {
    supervisor::StorageError error;
    storage_.MakeDir(dir, &error);
  }
  MakeWorkload();
  kills_left_ = spec_.kills;
  storage_faults_left_ = spec_.storage_faults;
  if (!StartNvsd()) return result_;
  bool quiescing = false;
  while (result_.steps < kMaxSteps) {
    ++result_.steps;
    if (storage_fault_until_ >= 0 && result_.steps >= storage_fault_until_) {
      storage_.FailSyncs(0);
      storage_.ClearSpaceLimit();
      storage_fault_until_ = -1;
      Note("STORAGE: healthy again");
    }
    if (!quiescing) {
      bool sent_all = true;
      for (const auto& c : clients_) sent_all = sent_all && c.next == c.requests.size();
      if (sent_all && kills_left_ == 0 && storage_faults_left_ == 0 && storage_fault_until_ < 0) quiescing = true;
    }
    // (And nvsd settled: a commit answered before its verdict's sync, whose
    // verdict a failed write cut back or a power cut lost, is written again
    // once the journal can be, or committed again by the retest of its
    // admit at start; the checks read the journal.)
    if (quiescing && AllAnswered() && !(nvsd_ && nvsd_->Unsettled())) break;
    Step(quiescing);
    for (const auto& e : logs_.errors) Violation("nvsd logged internal_error: " + e);
    logs_.errors.clear();
  }
  if (!result_.violations.empty()) return result_;
  FinalChecks();
  for (const auto& e : logs_.errors) Violation("nvsd logged internal_error: " + e);
  return result_;
}

}  // namespace

ScheduleSpec ScheduleSpec::FromSeed(std::uint64_t seed) {
  std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ULL);
  const auto below = [&](int n) { return static_cast<int>(std::uniform_int_distribution<int>(0, n - 1)(rng)); };
  ScheduleSpec s;
  s.seed = seed;
  s.mode = below(4) == 0 ? "standby" : "lockstep";
  s.clients = 1 + below(3);
  s.requests = 2 + below(6);
  s.window = 1 + below(3);
  if (below(3) != 0) {
    s.faulty = kVariants[below(3)];
    s.single_faults = below(3);
    s.slow = below(4) == 0;
  }
  s.poison = below(3) == 0 ? 1 + below(2) : 0;
  s.kills = below(3) == 0 ? 1 + below(2) : 0;
  s.power_cut = s.kills > 0 && below(2) == 0;
  s.storage_faults = below(5) == 0 ? 1 : 0;
  s.checkpoint_interval = 3 + below(10);
  return s;
}

std::string ScheduleSpec::Describe() const {
  std::ostringstream out;
  out << "--seed " << seed << ": " << mode << ", " << clients << " client(s) x " << requests << " request(s), window "
      << window;
  if (!faulty.empty()) out << ", " << faulty << " faulty (" << single_faults << " fault(s)" << (slow ? ", slow" : "") << ")";
  if (poison > 0) out << ", " << poison << " poison";
  if (kills > 0) out << ", " << kills << (power_cut ? " power cut(s)" : " kill(s) of nvsd");
  if (storage_faults > 0) out << ", " << storage_faults << " storage fault(s)";
  out << ", checkpoint every " << checkpoint_interval;
  return out.str();
}

ScheduleResult RunSchedule(const ScheduleSpec& spec, bool keep_transcript) {
  return Schedule(spec, keep_transcript).Run();
}

ScheduleSpec Shrink(const ScheduleSpec& failing, int budget) {
  ScheduleSpec best = failing;
  const auto fails = [&](const ScheduleSpec& s) {
    if (budget-- <= 0) return false;
    return !RunSchedule(s, false).violations.empty();
  };
  bool progress = true;
  while (progress && budget > 0) {
    progress = false;
    std::vector<ScheduleSpec> smaller;
    const auto add = [&](auto change) {
      ScheduleSpec s = best;
      change(s);
      smaller.push_back(s);
    };
    if (best.clients > 1) add([](ScheduleSpec& s) { --s.clients; });
    if (best.requests > 1) add([](ScheduleSpec& s) { --s.requests; });
    if (best.window > 1) add([](ScheduleSpec& s) { --s.window; });
    if (best.single_faults > 0) add([](ScheduleSpec& s) { --s.single_faults; });
    if (best.slow) add([](ScheduleSpec& s) { s.slow = false; });
    if (best.poison > 0) add([](ScheduleSpec& s) { --s.poison; });
    if (best.kills > 0) add([](ScheduleSpec& s) { --s.kills; });
    if (best.power_cut) add([](ScheduleSpec& s) { s.power_cut = false; });
    if (best.storage_faults > 0) add([](ScheduleSpec& s) { --s.storage_faults; });
    // Another scheduler seed for the same schedule shape can be shorter too.
    for (const auto& s : smaller) {
      if (fails(s)) {
        best = s;
        progress = true;
        break;
      }
    }
  }
  return best;
}

}  // namespace nvs::simulation
