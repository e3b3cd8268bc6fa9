// The simulator (ARCHITECTURE.md §7): nvsd's real decisions
// (Supervisor::Simulated) driven by a seeded scheduler over simulated
// variants (SimVariant), clients, storage (MemoryStateDir) and clock, with
// nvsd killed -9 (or the power cut) between any two steps. It checks nvs's
// promises after every step and at the end of the schedule. One seed is one
// schedule; the same seed is always the same schedule.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nvs::simulation {

// What a schedule holds; FromSeed draws it, Shrink makes it smaller.
struct ScheduleSpec {
  std::uint64_t seed = 1;       // the scheduler's choices
  std::string mode = "lockstep";  // or "standby" (standby_policy probe)
  int clients = 2;
  int requests = 8;             // per client
  int window = 2;               // requests a client has out at once
  std::string faulty;           // the one variant that misbehaves ("" none)
  int single_faults = 0;        // commands the faulty variant crashes, hangs, lies on, ...
  bool slow = false;            // the faulty variant's messages move slowly
  int poison = 0;               // commands that crash (or hang) every variant
  int kills = 0;                // kill -9 of nvsd during the workload
  bool power_cut = false;       // each kill also loses what was not synced (maybe a torn tail)
  int storage_faults = 0;       // episodes of failed syncs or a full disk
  int checkpoint_interval = 8;

  static ScheduleSpec FromSeed(std::uint64_t seed);
  std::string Describe() const;
};

struct ScheduleResult {
  std::vector<std::string> violations;  // each: the promise broken, and how
  std::vector<std::string> transcript;  // when asked for: every step, readable
  int steps = 0;
  int turns = 0;
  int commits = 0;
  int quarantined = 0;
  int kills = 0;
};

ScheduleResult RunSchedule(const ScheduleSpec& spec, bool keep_transcript);

// A smaller schedule that still breaks a promise (fewer clients, requests
// and faults, tried one at a time), within `budget` runs.
ScheduleSpec Shrink(const ScheduleSpec& failing, int budget);

}  // namespace nvs::simulation
