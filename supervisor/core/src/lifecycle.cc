#include "nvs/core/lifecycle.h"

#include <array>

namespace nvs::supervisor {

namespace {

using L = Life;
constexpr std::optional<Life> kNo = std::nullopt;  // cannot happen in this state

// kTable[state][event]. Read a row as: in this state, on each event, go to…
// (The columns are LifeEvent's order: Spawned, SpawnFailed, GaveUp, Hello,
// Checked, Doubted, Diverged, ExitSeen, Killed, Gone.)
constexpr std::array<std::array<std::optional<Life>, kLifeEvents>, kLifeStates> kTable = {{
    // kDown: waits for its restart
    {L::kStarting, L::kDown, L::kFailed, kNo, kNo, L::kDown, L::kDown, kNo, kNo, kNo},
    // kStarting: no hello yet, nothing out at it
    {kNo, kNo, kNo, L::kSyncing, kNo, L::kStarting, L::kStarting, L::kExited, L::kStopping, L::kDown},
    // kSyncing: a round restores and checks it
    {kNo, kNo, kNo, kNo, L::kHealthy, L::kSyncing, L::kDiverged, L::kExited, L::kStopping, L::kDown},
    // kHealthy: votes
    {kNo, kNo, kNo, kNo, L::kHealthy, L::kChecking, L::kDiverged, L::kExited, L::kStopping, L::kDown},
    // kChecking: a round checks it again
    {kNo, kNo, kNo, kNo, L::kHealthy, L::kChecking, L::kDiverged, L::kExited, L::kStopping, L::kDown},
    // kDiverged: nothing makes it trusted again but a restart
    {kNo, kNo, kNo, kNo, L::kDiverged, L::kDiverged, L::kDiverged, L::kExited, L::kStopping, L::kDown},
    // kExited: its death is judged (kGone), or it is killed meanwhile; a
    // hello it sent before it died is read after its exit was seen
    {kNo, kNo, kNo, L::kExited, L::kExited, L::kExited, L::kExited, L::kExited, L::kStopping, L::kDown},
    // kStopping: only its going matters
    {kNo, kNo, kNo, kNo, L::kStopping, L::kStopping, L::kStopping, L::kStopping, L::kStopping, L::kDown},
    // kFailed: left down for good
    {kNo, kNo, L::kFailed, kNo, L::kFailed, L::kFailed, L::kFailed, kNo, kNo, kNo},
}};

}  // namespace

std::string_view Name(Life life) {
  static constexpr std::array<std::string_view, kLifeStates> kNames = {
      "down", "starting", "syncing", "healthy", "checking", "diverged", "exited", "stopping", "failed"};
  return kNames[static_cast<std::size_t>(life)];
}

std::string_view Name(LifeEvent event) {
  static constexpr std::array<std::string_view, kLifeEvents> kNames = {
      "spawned", "spawn_failed", "gave_up", "hello", "checked", "doubted", "diverged", "exit_seen", "killed", "gone"};
  return kNames[static_cast<std::size_t>(event)];
}

std::optional<Life> Next(Life life, LifeEvent event) {
  return kTable[static_cast<std::size_t>(life)][static_cast<std::size_t>(event)];
}

}  // namespace nvs::supervisor
