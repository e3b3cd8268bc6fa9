// nvs-simulate: runs the simulator's schedules (tests/simulation/simulator.h).
//   nvs-simulate --seeds N [--first F]   schedules F .. F+N-1 (F: 1)
//   nvs-simulate --seed S                one schedule, with its transcript
// Prints `schedules: N` and `violations: V`; for each failing seed, the
// promise broken, the smallest schedule found that still breaks it, and
// that schedule's transcript. Exits 1 when a promise was broken.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "simulator.h"

namespace {

void PrintFailure(const nvs::simulation::ScheduleSpec& spec) {
  using nvs::simulation::RunSchedule;
  using nvs::simulation::Shrink;
  const auto shrunk = Shrink(spec, 200);
  const auto result = RunSchedule(shrunk, /*keep_transcript=*/true);
  std::printf("failing schedule: %s\nshrunk to:        %s\n", spec.Describe().c_str(), shrunk.Describe().c_str());
  for (const auto& v : result.violations) std::printf("  violation: %s\n", v.c_str());
  std::printf("transcript (%zu steps):\n", result.transcript.size());
  for (const auto& line : result.transcript) std::printf("  %s\n", line.c_str());
}

int Usage() {
  std::fprintf(stderr, "usage: nvs-simulate --seeds N [--first F] | --seed S [--quiet]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t first = 1, count = 0;
  bool one = false, quiet = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--seeds" && has_value) {
      count = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--first" && has_value) {
      first = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--seed" && has_value) {
      first = std::strtoull(argv[++i], nullptr, 10);
      count = 1;
      one = true;
    } else if (arg == "--quiet") {
      quiet = true;
    } else {
      return Usage();
    }
  }
  if (count == 0) return Usage();
  const auto start = std::chrono::steady_clock::now();
  std::uint64_t failing = 0, steps = 0, commits = 0, quarantined = 0, kills = 0;
  for (std::uint64_t seed = first; seed < first + count; ++seed) {
    const auto spec = nvs::simulation::ScheduleSpec::FromSeed(seed);
    const auto result = nvs::simulation::RunSchedule(spec, /*keep_transcript=*/one && !quiet);
    steps += static_cast<std::uint64_t>(result.steps);
    commits += static_cast<std::uint64_t>(result.commits);
    quarantined += static_cast<std::uint64_t>(result.quarantined);
    kills += static_cast<std::uint64_t>(result.kills);
    if (one && !quiet) {
      std::printf("schedule: %s\n", spec.Describe().c_str());
      for (const auto& line : result.transcript) std::printf("  %s\n", line.c_str());
    }
    if (!result.violations.empty()) {
      ++failing;
      std::printf("FAILED --seed %llu: %s\n", static_cast<unsigned long long>(seed), result.violations.front().c_str());
      if (failing <= 1 && !one) PrintFailure(spec);
      if (one) {
        for (const auto& v : result.violations) std::printf("  violation: %s\n", v.c_str());
      }
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("schedules: %llu (seeds %llu..%llu) in %.1f s; steps %llu, commits %llu, quarantined %llu, nvsd kills %llu\n",
              static_cast<unsigned long long>(count), static_cast<unsigned long long>(first),
              static_cast<unsigned long long>(first + count - 1), seconds, static_cast<unsigned long long>(steps),
              static_cast<unsigned long long>(commits), static_cast<unsigned long long>(quarantined),
              static_cast<unsigned long long>(kills));
  std::printf("violations: %llu\n", static_cast<unsigned long long>(failing));
  return failing == 0 ? 0 : 1;
}
