// nvsd's core: lockstep N-version supervision (ARCHITECTURE.md §3-§7). One
// thread, one poll loop over the client socket, the variant socket, every
// variant's pidfd and stderr, and a signal fd; every wait has a deadline.
#pragma once

#include <memory>

#include "nvs/status.h"
#include "nvs/supervisor/config.h"

namespace nvs::supervisor {

class Env;  // the clocks and randomness it reads (supervisor/src/env.h)

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

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nvs::supervisor
