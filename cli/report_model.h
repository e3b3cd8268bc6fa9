// Report models (report/README.md) built from what nvs has in hand: a
// quarantine report as nvsd keeps it, or the failing steps of a replay.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nvs/replay/replay.h"

namespace nvs::cli {

// One incident from a quarantine report (ARCHITECTURE.md §6): facts, a timeline
// rebuilt from the recorded timings (one lane per variant, the probe, nvsd),
// outcomes with stderr tails, review history, and `reproduce`.
nlohmann::json QuarantineIncident(const nlohmann::json& report, const std::string& reproduce);

// The page for quarantine reports.
nlohmann::json QuarantineModel(const std::vector<nlohmann::json>& incidents, const std::string& generated);

// The page for a replay: an overview incident with the whole run's failures
// on one timeline, then one incident per failing command (at most `limit`).
nlohmann::json ReplayModel(const std::string& input, const std::vector<std::string>& variants,
                           const replay::ReplaySummary& summary, const std::vector<replay::StepReport>& failures,
                           const replay::CommandLog& log, const std::string& reproduce_base, std::size_t limit,
                           const std::string& generated);

// "killed by SIGSEGV" -> "SIGSEGV"; the words a table has room for.
std::string ShortHow(const std::string& detail);

}  // namespace nvs::cli
