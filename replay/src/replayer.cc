// The replayer: fresh variant processes on a private ROUTER socket, fed the
// recorded commands in pipelined batches; after each batch the variants'
// digests are compared and any variant that died, hung or drifted is started
// again (if needed) and restored from a variant holding the majority state.
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>
#include <zmq.hpp>

#include "nvs/core/blame.h"
#include "nvs/protocol/messages.h"
#include "nvs/replay/replay.h"
#include "nvs/supervisor/variant_process.h"

namespace nvs::replay {
namespace {

namespace proto = nvs::protocol;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::size_t kBatch = 2048;            // commands between two digest checks
constexpr std::size_t kRebaseEvery = 20000;     // commands between two saved base states

struct Pending {
  bool apply = false;       // an apply of step `step`; else a control request
  std::size_t step = 0;
  std::uint64_t seq = 0;
  std::string_view reply_type;
};

struct Slot {
  supervisor::VariantConfig config;
  std::unique_ptr<supervisor::VariantProcess> process;
  std::string identity;
  int incarnation = 0;
  bool alive = false;
  bool hello = false;
  std::deque<Pending> fifo;
  Clock::time_point last_progress;
  std::optional<proto::Reply> control_reply;  // the reply to the last control request
  std::string death;                          // how it ended, once it did
  // Taken out in the middle of a batch: the rest of the batch is run on a
  // new process of it. After a crash with several applies outstanding
  // (replies it sent just before dying may have died with it) the whole
  // batch is, one command at a time, to find the one that killed it.
  bool recheck = false;
  bool recheck_all = false;
};

}  // namespace

const char* ToString(StepKind kind) {
  switch (kind) {
    case StepKind::kAgreement: return "agreement";
    case StepKind::kDivergence: return "divergence";
    case StepKind::kCrash: return "crash";
    case StepKind::kHang: return "hang";
    case StepKind::kFault: return "fault";
    case StepKind::kNoQuorum: return "no_quorum";
  }
  return "?";
}

struct Replayer::Impl {
  ReplayOptions options;
  fs::path dir;  // private: the socket and the variants' logs
  std::string endpoint;
  zmq::context_t context{1};
  zmq::socket_t socket{context, zmq::socket_type::router};
  std::vector<Slot> slots;
  std::string initial_state;  // a fresh variant's state
  std::size_t restarts = 0;
  std::vector<RestartRecord> restart_log;  // this run's
  const volatile std::sig_atomic_t* interrupted = nullptr;  // set by a signal: stop between batches

  // Step outcomes of the batch being run: [step - batch_begin][slot].
  std::size_t batch_begin = 0;
  std::vector<std::vector<voter::Outcome>> batch_outcomes;
  std::vector<double> batch_times;  // per step: when its last outcome came, ms since the run started
  Clock::time_point run_started = Clock::now();

  ~Impl() {
    slots.clear();  // kills and reaps every process group
    std::error_code ec;
    fs::remove_all(dir, ec);
  }

  // ---- processes ---------------------------------------------------------

  Status Spawn(Slot& slot) {
    ++slot.incarnation;
    slot.identity = slot.config.name + "." + std::to_string(slot.incarnation);
    slot.fifo.clear();
    slot.hello = false;
    slot.death.clear();
    slot.control_reply.reset();
    supervisor::SpawnContext spawn;
    spawn.config_dir = options.config_dir;
    spawn.stdio_bridge = options.stdio_bridge;
    spawn.endpoint = endpoint;
    spawn.stderr_log = dir / (slot.config.name + ".log");
    auto spec = supervisor::SpecForVariant(slot.config, slot.identity, spawn);
    if (!spec.ok()) return Status::Error(slot.config.name + ": " + spec.status().message());
    auto process = supervisor::VariantProcess::Spawn(spec.value());
    if (!process.ok()) return Status::Error(slot.config.name + ": " + process.status().message());
    slot.process = std::move(process.value());
    slot.alive = true;
    slot.last_progress = Clock::now();
    return Status::Ok();
  }

  Slot* ByIdentity(std::string_view identity) {
    for (auto& slot : slots) {
      if (slot.alive && slot.identity == identity) return &slot;
    }
    return nullptr;
  }

  // Takes a slot out: kills it (if still running). What its outstanding
  // applies count as is nvsd's rule (AttributeBlame): the head, when an
  // apply, gets `head` (crashed, hung, faulty); after a crash the applies
  // queued behind it get it too (their replies may have died with the
  // process), and the recheck then runs them one at a time to find the one
  // it really died on; the rest are excluded.
  void TakeOut(Slot& slot, voter::OutcomeKind head, const std::string& detail) {
    const auto applies = std::count_if(slot.fifo.begin(), slot.fifo.end(), [](const Pending& p) { return p.apply; });
    if (applies > 0) slot.recheck = true;
    if (head == voter::OutcomeKind::kCrashed && applies > 1) slot.recheck_all = true;
    std::vector<supervisor::OutstandingRequest> table;
    for (const auto& pending : slot.fifo) {
      supervisor::OutstandingRequest r;
      r.vote = pending.apply;  // (every request it was sent reached it: replay waits for exits)
      table.push_back(r);
    }
    for (const auto& a : supervisor::AttributeBlame(table, head, detail)) {
      const Pending& pending = slot.fifo[a.index];
      if (a.index == 0) Stamp(pending.step);
      auto& outcome = OutcomeOf(pending.step, slot);
      outcome.kind = a.kind;
      outcome.detail = a.detail;
    }
    slot.fifo.clear();
    slot.alive = false;
    slot.death = detail;
    if (slot.process) {
      if (!slot.process->exit_info()) slot.process->SignalGroup(SIGKILL);
      slot.process->DrainStderr();
    }
  }

  voter::Outcome& OutcomeOf(std::size_t step, const Slot& slot) {
    return batch_outcomes[step - batch_begin][static_cast<std::size_t>(&slot - slots.data())];
  }

  void CountRestart(const std::string& variant, bool counted = true) {
    if (counted) ++restarts;
    if (restart_log.size() < 1000) {
      restart_log.push_back({variant, std::chrono::duration<double, std::milli>(Clock::now() - run_started).count(),
                             counted ? "restart" : "rerun"});
    }
  }

  void Stamp(std::size_t step) {
    double& at = batch_times[step - batch_begin];
    at = std::max(at, std::chrono::duration<double, std::milli>(Clock::now() - run_started).count());
  }

  // ---- messages ------------------------------------------------------------

  void Send(Slot& slot, const proto::Request& request, Pending pending) {
    const std::string bytes = proto::Encode(request);
    if (slot.fifo.empty()) slot.last_progress = Clock::now();
    pending.seq = proto::SeqOf(request);
    slot.fifo.push_back(pending);
    socket.send(zmq::buffer(slot.identity), zmq::send_flags::sndmore);
    socket.send(zmq::buffer(bytes), zmq::send_flags::none);
  }

  void Drain() {
    zmq::message_t identity;
    while (socket.recv(identity, zmq::recv_flags::dontwait)) {
      zmq::message_t body;
      if (!identity.more() || !socket.recv(body, zmq::recv_flags::none)) continue;
      while (body.more()) (void)socket.recv(body, zmq::recv_flags::none);  // extra frames: dropped
      Slot* slot = ByIdentity(identity.to_string_view());
      if (slot != nullptr) OnMessage(*slot, body.to_string_view());
    }
  }

  void OnMessage(Slot& slot, std::string_view bytes) {
    auto decoded = proto::DecodeReply(bytes);
    if (!decoded.ok()) {
      TakeOut(slot, voter::OutcomeKind::kProtocolError, "sent garbage (" + decoded.error().reason + ")");
      return;
    }
    const proto::Reply& reply = decoded.value();
    if (std::holds_alternative<proto::Hello>(reply) && !slot.hello) {
      slot.hello = true;
      return;
    }
    if (slot.fifo.empty()) {
      TakeOut(slot, voter::OutcomeKind::kProtocolError, "unsolicited " + std::string(proto::TypeName(reply)));
      return;
    }
    const Pending pending = slot.fifo.front();
    const auto seq = proto::SeqOf(reply);
    const bool error = std::holds_alternative<proto::Error>(reply);
    if (!seq || *seq != pending.seq || (!error && proto::TypeName(reply) != pending.reply_type)) {
      TakeOut(slot, voter::OutcomeKind::kProtocolError, "reply out of order");
      return;
    }
    if (error && pending.apply) {
      const auto& e = std::get<proto::Error>(reply);
      TakeOut(slot, voter::OutcomeKind::kProtocolError, "protocol error " + e.code + ": " + e.reason);
      return;
    }
    slot.fifo.pop_front();
    slot.last_progress = Clock::now();
    if (!pending.apply) {
      slot.control_reply = reply;
      return;
    }
    auto& outcome = OutcomeOf(pending.step, slot);
    Stamp(pending.step);
    outcome.kind = voter::OutcomeKind::kReply;
    outcome.result = std::get<proto::Applied>(reply).result;
  }

  // A command's reply has the command deadline; a restore, snapshot or
  // digest (which may carry a whole state) has the start deadline.
  milliseconds DeadlineOf(const Pending& pending) const { return pending.apply ? options.deadline : options.start_deadline; }

  // One wait for traffic, deaths or a deadline; then handles what came.
  void Turn(Clock::time_point until) {
    std::vector<zmq::pollitem_t> items{{socket.handle(), 0, ZMQ_POLLIN, 0}};
    std::vector<Slot*> watched;
    auto wake = until;
    for (auto& slot : slots) {
      if (!slot.alive) continue;
      items.push_back({nullptr, slot.process->pidfd(), ZMQ_POLLIN, 0});
      watched.push_back(&slot);
      if (slot.process->stderr_fd() >= 0) {
        items.push_back({nullptr, slot.process->stderr_fd(), ZMQ_POLLIN, 0});
        watched.push_back(nullptr);  // drained below, for every slot
      }
      if (!slot.fifo.empty()) wake = std::min(wake, slot.last_progress + DeadlineOf(slot.fifo.front()));
    }
    const auto wait = std::max(milliseconds(0), std::chrono::duration_cast<milliseconds>(wake - Clock::now()));
    try {
      zmq::poll(items.data(), items.size(), wait + milliseconds(1));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;  // a signal: the caller looks at its flag
    }
    Drain();
    for (auto& slot : slots) {
      if (slot.alive && slot.process) slot.process->DrainStderr();
    }
    for (std::size_t k = 1; k < items.size(); ++k) {
      Slot* slot = watched[k - 1];
      if (slot == nullptr || !slot->alive || !(items[k].revents & ZMQ_POLLIN)) continue;
      // What it said before dying counts: its last replies may still be on
      // their way through the I/O thread.
      zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
      if (zmq::poll(&item, 1, milliseconds(1)) > 0) Drain();
      if (!slot->alive) continue;
      const auto info = slot->process->TryReap();
      if (info) TakeOut(*slot, voter::OutcomeKind::kCrashed, info->Describe());
    }
    const auto now = Clock::now();
    for (auto& slot : slots) {
      if (slot.alive && !slot.fifo.empty() && now >= slot.last_progress + DeadlineOf(slot.fifo.front())) {
        TakeOut(slot, voter::OutcomeKind::kHung,
                "no reply within " + std::to_string(DeadlineOf(slot.fifo.front()).count()) + " ms");
      }
    }
  }

  // A control request to one slot (the others idle): its reply, or nullopt
  // when the slot died, hung or refused.
  std::optional<proto::Reply> Call(Slot& slot, const proto::Request& request, std::string_view reply_type) {
    if (!slot.alive) return std::nullopt;
    slot.control_reply.reset();
    Send(slot, request, Pending{false, 0, 0, reply_type});
    const auto until = Clock::now() + options.start_deadline;
    while (slot.alive && !slot.control_reply && Clock::now() < until) Turn(until);
    if (!slot.control_reply && slot.alive) TakeOut(slot, voter::OutcomeKind::kHung, "no reply to a control request");
    if (!slot.control_reply || std::holds_alternative<proto::Error>(*slot.control_reply)) return std::nullopt;
    return slot.control_reply;
  }

  Status WaitHello(Slot& slot) {
    const auto until = Clock::now() + options.start_deadline;
    while (slot.alive && !slot.hello && Clock::now() < until) Turn(until);
    if (!slot.alive) return Status::Error(slot.config.name + " died at start: " + slot.death);
    if (!slot.hello) return Status::Error(slot.config.name + " did not say hello in time");
    return Status::Ok();
  }

  Status WaitHellos() {
    const auto until = Clock::now() + options.start_deadline;
    for (;;) {
      bool all = true;
      for (auto& slot : slots) {
        if (!slot.alive) return Status::Error(slot.config.name + " died at start: " + slot.death);
        all = all && slot.hello;
      }
      if (all) return Status::Ok();
      if (Clock::now() >= until) return Status::Error("a variant did not say hello in time");
      Turn(until);
    }
  }

  // Brings every slot to `state`: dead ones are started again first.
  Status RestoreAll(const std::string& state, std::uint64_t seq) {
    for (auto& slot : slots) {
      if (!slot.alive) {
        Status started = Spawn(slot);
        if (!started.ok()) return started;
        CountRestart(slot.config.name);
      }
    }
    Status hellos = WaitHellos();
    if (!hellos.ok()) return hellos;
    std::optional<std::string> digest;
    for (auto& slot : slots) {
      auto reply = Call(slot, proto::Restore{seq, state}, "restored");
      if (!reply) return Status::Error(slot.config.name + " could not be restored: " + slot.death);
      const std::string& got = std::get<proto::Restored>(*reply).digest;
      if (digest && *digest != got) {
        return Status::Error(slot.config.name + " restored the same state to a different digest");
      }
      digest = got;
    }
    return Status::Ok();
  }

  // ---- a batch -------------------------------------------------------------

  // Runs steps [begin, end) of `log` through every live slot, pipelined.
  // Returns, per step, every slot's outcome.
  void RunBatch(const CommandLog& log, std::size_t begin, std::size_t end) {
    batch_begin = begin;
    batch_outcomes.assign(end - begin, {});
    batch_times.assign(end - begin, 0);
    for (auto& row : batch_outcomes) {
      for (const auto& slot : slots) row.push_back(voter::Outcome{slot.config.name, voter::OutcomeKind::kExcluded, "", "not running", ""});
    }
    Pump(log, begin, end, nullptr, options.window);
  }

  // Sends steps [begin, end) to every live slot (or only to `only`), at
  // most `window` outstanding per slot, until all are answered or taken out.
  void Pump(const CommandLog& log, std::size_t begin, std::size_t end, Slot* only, std::size_t window) {
    std::vector<std::size_t> next(slots.size(), begin);
    for (std::size_t s = 0; s < slots.size(); ++s) {
      if (!slots[s].alive || (only != nullptr && only != &slots[s])) next[s] = end;
    }
    for (;;) {
      bool busy = false;
      for (std::size_t s = 0; s < slots.size(); ++s) {
        Slot& slot = slots[s];
        if (!slot.alive) continue;
        while (next[s] < end && slot.fifo.size() < window) {
          const RecordedCommand& c = log.commands[next[s]];
          auto& outcome = OutcomeOf(next[s], slot);
          outcome.kind = voter::OutcomeKind::kPending;
          outcome.detail.clear();
          Send(slot, proto::Apply{SeqOf(log, next[s]), c.time_ns, c.cmd}, Pending{true, next[s], 0, "applied"});
          ++next[s];
        }
        busy = busy || !slot.fifo.empty();
      }
      if (!busy) break;
      Turn(Clock::now() + options.deadline);
    }
  }

  // Every slot taken out in the middle of the batch goes on with a new
  // process: restored to the batch's base, fed (without recording) what it
  // had done, and run one command at a time from there; each command it
  // fails on again is recorded and skipped. The first command it dies on is
  // then the one that killed it, whatever replies died with it.
  Status Recheck(const CommandLog& log, std::size_t begin, std::size_t end, const std::string& batch_base,
                 std::uint64_t base_seq) {
    for (auto& slot : slots) {
      if (!slot.recheck) continue;
      std::vector<std::size_t> failed;  // steps it failed on (recorded, skipped when replaying)
      std::size_t from = begin;
      if (!slot.recheck_all) {
        for (std::size_t k = begin; k < end; ++k) {
          const auto kind = OutcomeOf(k, slot).kind;
          if (kind == voter::OutcomeKind::kCrashed || kind == voter::OutcomeKind::kHung ||
              kind == voter::OutcomeKind::kProtocolError) {
            failed.push_back(k);
            from = k + 1;
            break;
          }
        }
      }
      // After an ambiguous crash the first rerun only finds where it was:
      // it is logged as a rerun, and the process started after the crash
      // it finds is the restart (once counted, at its own time: the
      // timeline showed the rerun as a restart before any crash).
      bool pinpointed = !slot.recheck_all;
      slot.recheck = slot.recheck_all = false;
      bool first = true;
      std::optional<std::size_t> rerun_logged;  // where the rerun is in restart_log
      bool rerun_pending = false;               // the last process started is the rerun
      while (from < end) {
        if (slot.alive) TakeOut(slot, voter::OutcomeKind::kExcluded, "recheck");
        slot.recheck = slot.recheck_all = false;
        Status started = Spawn(slot);
        if (!started.ok()) return started;
        const bool rerun = first && !pinpointed;
        const std::size_t logged = restart_log.size();
        CountRestart(slot.config.name, /*counted=*/!rerun);
        if (rerun && restart_log.size() > logged) rerun_logged = logged;
        rerun_pending = rerun;
        pinpointed = true;
        first = false;
        Status hellos = WaitHello(slot);
        if (!hellos.ok()) return hellos;
        if (!Call(slot, proto::Restore{base_seq, batch_base}, "restored")) {
          return Status::Error(slot.config.name + " could not be restored: " + slot.death);
        }
        // What it had done before `from`, again, without recording it.
        std::vector<voter::Outcome> kept;
        for (std::size_t k = begin; k < from; ++k) kept.push_back(OutcomeOf(k, slot));
        std::size_t start = begin;
        for (std::size_t stop : failed) {
          if (stop > start) Pump(log, start, stop, &slot, options.window);
          start = stop + 1;
        }
        if (from > start) Pump(log, start, from, &slot, options.window);
        for (std::size_t k = begin; k < from; ++k) OutcomeOf(k, slot) = kept[k - begin];
        if (!slot.alive) return Status::Error(slot.config.name + " failed again on commands it had survived");
        for (std::size_t k = from; k < end; ++k) {
          OutcomeOf(k, slot) = voter::Outcome{slot.config.name, voter::OutcomeKind::kExcluded, "", "not running", ""};
        }
        Pump(log, from, end, &slot, 1);
        slot.recheck = slot.recheck_all = false;
        if (slot.alive) break;
        std::size_t next = end;
        for (std::size_t k = from; k < end; ++k) {
          if (OutcomeOf(k, slot).kind != voter::OutcomeKind::kReply) {
            next = k;
            break;
          }
        }
        if (next == end) break;
        failed.push_back(next);
        from = next + 1;
      }
      // A rerun that is still running (the crash was not seen again) is
      // what replaced the crashed process: a restart after all.
      if (rerun_pending && slot.alive && rerun_logged) {
        restart_log[*rerun_logged].why = "restart";
        ++restarts;
      }
    }
    return Status::Ok();
  }

  static std::uint64_t SeqOf(const CommandLog& log, std::size_t index) {
    const std::uint64_t seq = log.commands[index].seq;
    return seq != 0 ? seq : index + 1;
  }

  // ---- after a batch -------------------------------------------------------

  // Every slot back to one state: the dead and the hung are started again,
  // digests compared, and every slot that is new or differs from the
  // majority is restored from a majority holder's snapshot. Returns that
  // snapshot when one was taken. No live slot: an error (the caller
  // rebuilds from its base).
  // Live slots whose state digest differs from the others' are reported in
  // `drift` (variant -> its digest; "" under `expected` when no digest has a
  // strict majority, and then nobody is restored: nobody can tell who is right).
  struct Drift {
    std::map<std::string, std::string> digests;  // every live slot's
    std::vector<std::string> drifted;
    std::string expected;                        // the majority's digest; "" on a tie
  };

  Result<std::optional<std::string>> Heal(std::uint64_t seq, bool force_snapshot, Drift* drift = nullptr) {
    std::map<std::string, std::vector<Slot*>> by_digest;
    std::vector<Slot*> stale;
    std::size_t answered = 0;
    for (auto& slot : slots) {
      if (!slot.alive) continue;
      auto reply = Call(slot, proto::DigestRequest{seq}, "digest");
      if (!reply) continue;
      const std::string& digest = std::get<proto::DigestReply>(*reply).digest;
      by_digest[digest].push_back(&slot);
      if (drift != nullptr) drift->digests[slot.config.name] = digest;
      ++answered;
    }
    if (by_digest.empty()) return Status::Error("no variant is left running");
    auto best = std::max_element(by_digest.begin(), by_digest.end(),
                                       [](const auto& a, const auto& b) { return a.second.size() < b.second.size(); });
    if (by_digest.size() > 1 && best->second.size() * 2 <= answered) {
      if (drift != nullptr) {
        for (const auto& [digest, holders] : by_digest) {
          for (const Slot* holder : holders) drift->drifted.push_back(holder->config.name);
        }
      }
      best = by_digest.end();
    }
    for (auto& slot : slots) {
      const bool holder = best != by_digest.end() &&
                          std::find(best->second.begin(), best->second.end(), &slot) != best->second.end();
      if (holder) continue;
      if (best != by_digest.end() && slot.alive && drift != nullptr) drift->drifted.push_back(slot.config.name);
      if (best != by_digest.end() || !slot.alive) stale.push_back(&slot);
    }
    if (best == by_digest.end()) {
      // A tie: only the dead are brought back, from the first live slot.
      for (auto& slot : slots) {
        if (slot.alive) {
          best = by_digest.find(drift != nullptr ? drift->digests[slot.config.name] : std::string());
          break;
        }
      }
      if (best == by_digest.end()) best = by_digest.begin();
    } else if (drift != nullptr) {
      drift->expected = best->first;
    }
    if (stale.empty() && !force_snapshot) return std::optional<std::string>();
    auto snapshot = Call(*best->second.front(), proto::SnapshotRequest{seq}, "state");
    if (!snapshot) return Status::Error(best->second.front()->config.name + " failed while its state was taken");
    const std::string state = std::get<proto::StateReply>(*snapshot).state;
    for (Slot* slot : stale) {
      if (slot->alive) continue;  // alive with another state: a restore is enough
      Status started = Spawn(*slot);
      if (!started.ok()) return started;
      CountRestart(slot->config.name);
    }
    for (Slot* slot : stale) {
      Status hello = WaitHello(*slot);
      if (!hello.ok()) return hello;
    }
    for (Slot* slot : stale) {
      if (!Call(*slot, proto::Restore{seq, state}, "restored")) {
        return Status::Error(slot->config.name + " could not be restored: " + slot->death);
      }
    }
    return std::optional<std::string>(state);
  }

  static void Count(const StepReport& step, ReplaySummary& summary) {
    switch (step.kind) {
      case StepKind::kAgreement: ++summary.agreements; break;
      case StepKind::kDivergence: ++summary.divergences; break;
      case StepKind::kCrash: ++summary.crashes; break;
      case StepKind::kHang: ++summary.hangs; break;
      case StepKind::kFault: ++summary.faults; break;
      case StepKind::kNoQuorum: ++summary.no_quorum; break;
    }
    // (EXPIRED and ABANDONED say nothing of what the variants did.)
    const std::string& recorded = step.recorded_verdict;
    if (recorded == "COMMIT" || recorded == "POISON" || recorded == "NO_QUORUM") {
      ++summary.recorded_compared;
      const voter::VerdictKind now = step.verdict.kind;
      const bool same = recorded == "COMMIT"    ? now == voter::VerdictKind::kCommit && !step.differs_from_recorded &&
                                                      !step.state_drift
                        : recorded == "POISON" ? now == voter::VerdictKind::kPoison
                                               : now == voter::VerdictKind::kNoQuorum;
      if (!same) ++summary.recorded_differ;
    } else if (step.kind != StepKind::kAgreement) {
      ++summary.failures_unrecorded;
    }
  }

  StepReport DriftStep(const CommandLog& log, std::size_t index, const Drift& drift) {
    StepReport step;
    step.index = index;
    step.seq = SeqOf(log, index);
    step.kind = StepKind::kDivergence;
    step.state_drift = true;
    step.at_ms = std::chrono::duration<double, std::milli>(Clock::now() - run_started).count();
    for (const auto& slot : slots) {
      auto it = drift.digests.find(slot.config.name);
      voter::Outcome o{slot.config.name, voter::OutcomeKind::kExcluded, "", "no digest (not running)", ""};
      if (it != drift.digests.end()) {
        o.kind = voter::OutcomeKind::kReply;
        o.result = nlohmann::json{{"state_digest", it->second}}.dump();
        o.detail = "";
      }
      step.outcomes.push_back(o);
    }
    step.verdict.kind = drift.expected.empty() ? voter::VerdictKind::kNoQuorum : voter::VerdictKind::kCommit;
    step.verdict.dissenting = drift.drifted;
    step.verdict.reason = drift.expected.empty()
                              ? "the state digests after seq " + std::to_string(step.seq) + " have no majority"
                              : "state digest after seq " + std::to_string(step.seq) + " differs from the majority's " +
                                    drift.expected + " (every reply was equal: the state drifted silently); restored";
    return step;
  }

  StepReport Decide(const CommandLog& log, std::size_t index) {
    StepReport step;
    step.index = index;
    step.seq = SeqOf(log, index);
    step.outcomes = batch_outcomes[index - batch_begin];
    step.recorded_verdict = log.commands[index].recorded_verdict;
    step.at_ms = batch_times[index - batch_begin];
    // Equal replies are usually equal bytes: compare the parsed form once.
    for (std::size_t i = 0; i < step.outcomes.size(); ++i) {
      auto& o = step.outcomes[i];
      if (o.kind != voter::OutcomeKind::kReply) continue;
      for (std::size_t j = 0; j < i; ++j) {
        if (step.outcomes[j].kind == voter::OutcomeKind::kReply && step.outcomes[j].result == o.result) {
          o.comparable = step.outcomes[j].comparable;
          break;
        }
      }
      if (o.comparable.empty()) o.comparable = voter::ComparableForm(o.result, options.policy.ignored);
    }
    voter::Policy policy = options.policy;
    policy.configured = slots.size();
    step.verdict = voter::Decide(step.outcomes, policy);
    if (!step.verdict.crashed.empty()) {
      step.kind = StepKind::kCrash;
    } else if (!step.verdict.hung.empty()) {
      step.kind = StepKind::kHang;
    } else if (!step.verdict.faulty.empty()) {
      step.kind = StepKind::kFault;
    } else if (step.verdict.kind != voter::VerdictKind::kCommit) {
      step.kind = StepKind::kNoQuorum;
    } else if (!step.verdict.dissenting.empty()) {
      step.kind = StepKind::kDivergence;
    } else {
      step.kind = StepKind::kAgreement;
    }
    // What nvsd committed then must be what the variants answer now.
    const RecordedCommand& recorded = log.commands[index];
    if (step.kind == StepKind::kAgreement && recorded.recorded_verdict == "COMMIT" && !recorded.recorded_result.empty() &&
        voter::ComparableForm(recorded.recorded_result, options.policy.ignored) !=
            voter::ComparableForm(step.verdict.result, options.policy.ignored)) {
      step.kind = StepKind::kDivergence;
      step.differs_from_recorded = true;
      step.verdict.reason += "; the result differs from the one nvsd recorded: " + recorded.recorded_result;
    }
    return step;
  }

  Result<ReplaySummary> Run(const CommandLog& log, const StepFn& on_step, const ProgressFn& on_progress) {
    ReplaySummary summary;
    const auto started = Clock::now();
    run_started = started;
    const std::size_t restarts_before = restarts;
    restart_log.clear();
    std::string base = log.initial_state.value_or(initial_state);
    std::uint64_t base_seq = log.commands.empty() ? 0 : SeqOf(log, 0) - 1;
    std::vector<std::size_t> since_base;  // steps applied on top of `base`
    Status reset = RestoreAll(base, base_seq);
    if (!reset.ok()) return reset;
    const std::size_t n = log.commands.size();
    // Realtime spacing counts from the first reported command: the commands
    // before --from run as fast as possible.
    std::int64_t first_time = 0;
    std::optional<Clock::time_point> paced_from;
    for (std::size_t k = 0; k < n && first_time == 0; ++k) {
      if (SeqOf(log, k) >= options.from_seq) first_time = log.commands[k].time_ns;
    }
    std::size_t i = 0;
    bool stop = false;
    while (i < n && !stop) {
      if (interrupted != nullptr && *interrupted) return Status::Error("interrupted");
      if (options.to_seq != 0 && SeqOf(log, i) > options.to_seq) break;
      // A command nvsd refused was rolled back: it runs alone, on a saved
      // state that every variant returns to afterwards.
      const bool refused = !log.commands[i].recorded_verdict.empty() && log.commands[i].recorded_verdict != "COMMIT";
      std::size_t end = i + 1;
      const bool paced = options.speed > 0 && SeqOf(log, i) >= options.from_seq;
      if (!paced && !refused) {
        while (end < n && end - i < kBatch && log.commands[end].recorded_verdict != "POISON" &&
               (options.speed == 0 || SeqOf(log, end) < options.from_seq) &&
               log.commands[end].recorded_verdict != "NO_QUORUM" &&
               (options.to_seq == 0 || SeqOf(log, end) <= options.to_seq)) {
          ++end;
        }
      }
      if (paced && first_time != 0 && log.commands[i].time_ns != 0) {
        if (!paced_from) paced_from = Clock::now();
        const auto due = *paced_from + std::chrono::nanoseconds(static_cast<std::int64_t>(
                                           static_cast<double>(log.commands[i].time_ns - first_time) / options.speed));
        std::this_thread::sleep_until(due);  // the recorded spacing, scaled
      }
      std::optional<std::string> before;
      if (refused) {
        auto healed = Heal(SeqOf(log, i) - 1, /*force_snapshot=*/true);
        if (!healed.ok()) return healed.status();
        before = healed.value();
      }
      // The state before the batch, for a recheck after an ambiguous crash.
      std::string batch_base;
      for (auto& slot : slots) {
        if (!slot.alive) continue;
        if (auto state = Call(slot, proto::SnapshotRequest{SeqOf(log, i) - 1}, "state")) {
          batch_base = std::get<proto::StateReply>(*state).state;
          break;
        }
      }
      RunBatch(log, i, end);
      if (!batch_base.empty()) {
        Status rechecked = Recheck(log, i, end, batch_base, SeqOf(log, i) - 1);
        if (!rechecked.ok()) return rechecked;
      }
      bool batch_agreed = true;  // every command of the batch agreed: a state difference then is news
      for (std::size_t k = i; k < end; ++k) {
        StepReport step = Decide(log, k);
        batch_agreed = batch_agreed && step.kind == StepKind::kAgreement;
        if (step.seq >= options.from_seq) {
          ++summary.commands;
          Count(step, summary);
          if (on_step) on_step(step);
          if (options.stop_at_first && step.kind != StepKind::kAgreement) {
            stop = true;
            break;
          }
        }
        const bool applied_somewhere = std::any_of(step.outcomes.begin(), step.outcomes.end(), [](const auto& o) {
          return o.kind == voter::OutcomeKind::kReply;
        });
        if (applied_somewhere && !refused) since_base.push_back(k);
      }
      if (stop) break;
      const std::uint64_t at = SeqOf(log, end - 1);
      if (refused) {
        Status back = RestoreAll(*before, at);
        if (!back.ok()) return back;
        base = *before;
        base_seq = at;
        since_base.clear();
      } else {
        Drift drift;
        auto healed = Heal(at, since_base.size() >= kRebaseEvery, &drift);
        if (!drift.drifted.empty() && batch_agreed && at >= options.from_seq) {
          // A state that differs although every reply agreed (a variant that
          // corrupts its state silently): reported at the batch's last
          // command. After a crash, hang or refusal in the batch the states
          // differ for a reason already reported, and are just repaired.
          StepReport step = DriftStep(log, end - 1, drift);
          Count(step, summary);
          if (on_step) on_step(step);
          if (options.stop_at_first) stop = true;
        }
        if (!healed.ok()) {
          // Every variant is gone: start them again on the base and the
          // commands applied since.
          Status rebuilt = Rebuild(log, base, base_seq, since_base);
          if (!rebuilt.ok()) return rebuilt;
        } else if (healed.value()) {
          base = *healed.value();
          base_seq = at;
          since_base.clear();
        }
      }
      i = end;
      if (on_progress) on_progress(i, n);
    }
    summary.restarts = restarts - restarts_before;
    summary.restart_log = std::move(restart_log);
    restart_log.clear();
    summary.seconds = std::chrono::duration<double>(Clock::now() - started).count();
    return summary;
  }

  Status Rebuild(const CommandLog& log, const std::string& base, std::uint64_t base_seq,
                 const std::vector<std::size_t>& steps) {
    Status reset = RestoreAll(base, base_seq);
    if (!reset.ok()) return reset;
    for (std::size_t k : steps) {
      RunBatch(log, k, k + 1);  // one at a time: the few commands since the base
    }
    return Status::Ok();
  }
};

Replayer::Replayer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Replayer::~Replayer() = default;

Result<std::unique_ptr<Replayer>> Replayer::Start(const ReplayOptions& options) {
  if (options.variants.empty()) return Status::Error("no variants to replay with");
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  char pattern[] = "/tmp/nvs-replay-XXXXXX";
  if (mkdtemp(pattern) == nullptr) return Status::Error("cannot make a temporary folder");
  impl->dir = pattern;
  impl->endpoint = "ipc://" + (impl->dir / "variants.sock").string();
  try {
    impl->socket.set(zmq::sockopt::linger, 0);
    impl->socket.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(proto::kMaxMessageBytes + 4096));
    impl->socket.set(zmq::sockopt::rcvhwm, 0);
    impl->socket.set(zmq::sockopt::sndhwm, 0);
    impl->socket.bind(impl->endpoint);
  } catch (const zmq::error_t& e) {
    return Status::Error(std::string("cannot bind ") + impl->endpoint + ": " + e.what());
  }
  for (const auto& vc : options.variants) {
    Slot slot;
    slot.config = vc;
    impl->slots.push_back(std::move(slot));
  }
  for (auto& slot : impl->slots) {
    Status started = impl->Spawn(slot);
    if (!started.ok()) return started;
  }
  Status hellos = impl->WaitHellos();
  if (!hellos.ok()) return hellos;
  // The initial state, for runs that start from it (a fresh variant's).
  auto state = impl->Call(impl->slots.front(), proto::SnapshotRequest{0}, "state");
  if (!state) return Status::Error(impl->slots.front().config.name + " failed while its initial state was taken");
  impl->initial_state = std::get<proto::StateReply>(*state).state;
  return std::unique_ptr<Replayer>(new Replayer(std::move(impl)));
}

ReplayOptions& Replayer::options() { return impl_->options; }

void Replayer::StopWhen(const volatile std::sig_atomic_t* flag) { impl_->interrupted = flag; }

Result<ReplaySummary> Replayer::Run(const CommandLog& log, const StepFn& on_step, const ProgressFn& on_progress) {
  return impl_->Run(log, on_step, on_progress);
}

}  // namespace nvs::replay
