// What nvsd's decisions read from the world besides its inputs: the time
// (monotonic, for deadlines; the wall clock, for the time_ns commands carry
// and the times reports show) and randomness (the variants' secrets). All of
// Supervisor::Impl reads them here, so that a test or a simulation can give
// it a clock and a seed of its own (ARCHITECTURE.md §7).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace nvs::supervisor {

class Env {
 public:
  virtual ~Env() = default;
  virtual std::chrono::steady_clock::time_point Now() = 0;
  virtual std::int64_t UnixNowNs() = 0;
  // Fills `out` with unpredictable bytes (or throws).
  virtual void RandomBytes(unsigned char* out, std::size_t size) = 0;
};

// The real one: steady_clock, the system clock, getrandom(2).
Env& SystemEnv();

}  // namespace nvs::supervisor
