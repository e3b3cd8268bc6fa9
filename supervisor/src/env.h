// What nvsd's decisions read from the world besides its inputs: the time
// (monotonic, for deadlines; the wall clock, for the time_ns commands carry
// and the times reports show), randomness (the variants' secrets), and the
// processes it starts. Supervisor::Impl's decisions read and start them
// here, so that a test or a simulation can give it a clock, a seed and
// processes of its own (ARCHITECTURE.md §7). (Not yet through here: the
// journal writer's timing of `fsync: batch`. Log lines go where log.h's
// sink says, stamped with the system clock.)
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "nvs/status.h"
#include "nvs/supervisor/variant_process.h"

namespace nvs::supervisor {

class Env {
 public:
  virtual ~Env() = default;
  virtual std::chrono::steady_clock::time_point Now() = 0;
  virtual std::int64_t UnixNowNs() = 0;
  // Fills `out` with unpredictable bytes (or throws).
  virtual void RandomBytes(unsigned char* out, std::size_t size) = 0;
  // Starts a process (a variant, a probe, a retest's). Fails with a
  // readable message when it cannot start.
  virtual Result<std::unique_ptr<Process>> Spawn(const SpawnSpec& spec) = 0;
};

// The real one: steady_clock, the system clock, getrandom(2), VariantProcess.
Env& SystemEnv();

}  // namespace nvs::supervisor
