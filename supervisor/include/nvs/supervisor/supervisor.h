// nvsd's core: lockstep N-version supervision (ARCHITECTURE.md §3-§7). One
// thread, one poll loop over the client socket, the variant socket, every
// variant's pidfd and stderr, and a signal fd; every wait has a deadline.
#pragma once

#include <chrono>
#include <memory>
#include <set>
#include <vector>

#include "nvs/status.h"
#include "nvs/supervisor/config.h"

namespace nvs::supervisor {

class Env;  // the clocks and randomness it reads (supervisor/src/env.h)
class Process;
class StateDir;
class VariantTransport;
class ClientTransport;
class EventSink;

// What is ready at one turn of nvsd's loop: Run learns it from its poll; a
// simulation says it.
struct Readiness {
  bool clients = false;   // the client transport may hold requests
  bool variants = false;  // the variant transport may hold messages
  bool zap = false;       // client_curve: the ZAP handler's socket
  bool monitor = false;   // client_curve: the client socket's monitor
  std::set<const Process*> exited;  // processes seen to have exited (their pidfd is readable)
  std::set<const Process*> output;  // processes with stderr to read
};

// What a simulation gives nvsd instead of the world (tests/simulation):
// each must outlive the Supervisor.
struct SimulatedWorld {
  Env* env = nullptr;
  StateDir* state = nullptr;
  VariantTransport* variants = nullptr;
  ClientTransport* clients = nullptr;
  EventSink* events = nullptr;  // may be null
  std::int64_t pid = 0;         // what its `start` record says
};

class Supervisor {
 public:
  // REQUIRES: `config` came from ParseConfig/LoadConfig.
  explicit Supervisor(Config config);
  // The same, reading the time and randomness from `env` (which must
  // outlive it) instead of the system's.
  Supervisor(Config config, Env& env);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Binds the sockets, starts the variants and serves until SIGTERM or
  // SIGINT (delivered through `signal_fd`, a signalfd the caller created with
  // those signals blocked). Returns an error only when it cannot start.
  Status Run(int signal_fd);
  // Cluster mode: Run returned because this member stopped leading (it
  // could not be sure it still led); nvsd then starts over as a follower.
  bool RestartAsFollower() const;

  // A simulated nvsd (tests/simulation): the same decisions over `world`,
  // without sockets, signals, a subreaper, cgroups or systemd. It recovers
  // from world.state and spawns its variants through world.env; the caller
  // then calls Turn whenever something is ready or NextDeadline has come.
  // Destroying it without a stop is nvsd's kill -9.
  static Result<std::unique_ptr<Supervisor>> Simulated(Config config, const SimulatedWorld& world);
  void Turn(const Readiness& ready);
  // When a turn is due even if nothing becomes ready.
  std::chrono::steady_clock::time_point NextDeadline() const;
  // The processes nvsd watches, so a simulation can say which are ready.
  std::vector<const Process*> Processes() const;
  // Whether its journal does not yet say all it will: storage trouble is
  // still being handled (replies held, records to write again), or
  // commands found undecided at start are still being retested (a
  // simulation's end waits for it, as its checks read the journal).
  bool Unsettled() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nvs::supervisor
