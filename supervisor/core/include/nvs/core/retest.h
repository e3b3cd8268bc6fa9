// A retest: one command run on fresh, disposable processes of some variants'
// programs, each restored to the state before the command (the checkpoint,
// then the commands committed after it), so that what the command does can
// be told apart from what happened to the processes that first ran it.
// nvsd retests
// - a command on which variants only hung (none crashed): a stopped process,
//   a paused VM or a starved host looks like a hang, so two hangs are not
//   proof of poison until fresh processes hang on it too;
// - at recovery, a command nvsd admitted (and so may have sent to its
//   variants) but never decided before it stopped: it may be the command
//   that killed them, and must not simply be delivered again.
// A retest may run several commands, one after the other, on the same
// probes (a new cluster leader's suspects, each committed on the state the
// one before it left): each is sent once the probe answered the one before,
// and a probe that fails on one runs none after it (those are inconclusive
// for it).
//
// Pure: events come in (a probe said something, exited, could not start;
// time passed), and what to send to which probe, and which probes to kill,
// come out. The caller owns the processes and the socket. A probe is not a
// variant: it never votes in the pipeline and is never restarted.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "nvs/core/records.h"
#include "nvs/voter/voter.h"

namespace nvs::supervisor {

class Retest {
 public:
  using Clock = std::chrono::steady_clock;

  struct Command {
    std::uint64_t seq = 0;      // the wire seq (a query's: the last committed seq)
    std::int64_t time_ns = 0;
    std::string payload;        // normal-form JSON
    bool is_query = false;
  };
  struct TailEntry {
    std::uint64_t seq = 0;
    std::int64_t time_ns = 0;
    std::string payload;
  };
  // The state before the command: a checkpoint (none: a fresh process's
  // initial state) and the commands committed after it, in order.
  struct PreState {
    std::optional<Checkpoint> checkpoint;
    std::vector<TailEntry> tail;
  };
  struct Deadlines {
    std::chrono::milliseconds prepare;  // start (hello), restore and catch-up
    std::chrono::milliseconds command;  // the command itself, once the probe holds the pre-state
  };

  // One probe per name in `variants` (the variant whose program it runs),
  // with identity "retest.N" for N from `first_number` on.
  Retest(const std::vector<std::string>& variants, Command command, PreState pre_state, Deadlines deadlines,
         Clock::time_point now, int first_number);
  // The same for `commands` (at least one), run in order.
  Retest(const std::vector<std::string>& variants, std::vector<Command> commands, PreState pre_state,
         Deadlines deadlines, Clock::time_point now, int first_number);

  struct ProbeInfo {
    std::string variant;
    std::string identity;
  };
  // The probes to start, in order (the caller spawns each under its
  // identity, and calls OnSpawnFailed for those it cannot).
  std::vector<ProbeInfo> probes() const;

  // Events. Messages and exits of identities that are not this retest's,
  // or of probes already decided, are ignored.
  void OnSpawnFailed(const std::string& identity, const std::string& why, Clock::time_point now);
  void OnMessage(const std::string& identity, std::string_view bytes, Clock::time_point now);
  // The probe's process is gone (and everything it sent before is in).
  void OnExit(const std::string& identity, const std::string& how, Clock::time_point now);
  void OnTime(Clock::time_point now);

  // What the caller must do now: send these bytes to these identities, in
  // order; kill these probes (their outcome is already taken).
  std::vector<std::pair<std::string, std::string>> TakeOutgoing();
  std::vector<std::string> TakeKills();

  bool done() const;
  // The next time OnTime has something to do; max() when done.
  Clock::time_point NextDeadline() const;
  bool Owns(const std::string& identity) const;

  // How many commands it runs.
  std::size_t size() const { return commands_.size(); }
  // The seq of command `i`.
  std::uint64_t seq(std::size_t i) const { return commands_.at(i).seq; }
  // Once done: what each probe did with command `i`, one outcome per
  // variant. A probe that never got to run it (could not start, a restore
  // whose digest differs, died or erred before it, failed on an earlier
  // command) is kExcluded, its detail starting with "inconclusive: ".
  std::vector<voter::Outcome> Outcomes(std::size_t i = 0) const;
  // Whether `variant`'s probe ran command `i` (its outcome says something
  // about that command).
  bool Conclusive(const std::string& variant, std::size_t i = 0) const;
  // For reports, events and logs: per probe, its outcome and detail for
  // command `i`.
  nlohmann::json Describe(std::size_t i = 0) const;

 private:
  enum class Phase { kStarting, kPreparing, kCommand, kDone };
  struct Probe {
    std::string variant;
    std::string identity;
    Phase phase = Phase::kStarting;
    std::size_t replies = 0;       // to the requests sent, in order
    std::size_t at = 0;            // kCommand: the command it runs now
    Clock::time_point phase_since;
    std::vector<voter::Outcome> outcomes;  // one per command
    double after_ms = 0;           // its last outcome, after the retest began
  };
  Probe* Find(const std::string& identity);
  void SendPreState(Probe& p);
  void SendCommand(Probe& p, Clock::time_point now);
  void OnReplyTo(Probe& p, std::string_view bytes, Clock::time_point now);
  void Finish(Probe& p, voter::OutcomeKind kind, std::string detail, Clock::time_point now, std::string result = "");
  void Inconclusive(Probe& p, const std::string& why, Clock::time_point now);
  std::size_t PrepareReplies() const;  // replies before the command's

  std::vector<Command> commands_;
  PreState pre_state_;
  Deadlines deadlines_;
  Clock::time_point started_;
  std::vector<Probe> probes_;
  std::vector<std::pair<std::string, std::string>> outgoing_;
  std::vector<std::string> kills_;
};

}  // namespace nvs::supervisor
