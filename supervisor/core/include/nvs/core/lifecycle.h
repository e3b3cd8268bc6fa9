// The life of one variant slot as one transition table (s6-supervise's
// state × event idea; ARCHITECTURE.md §3). Pure: a state and an event in,
// the next state out; lifecycle_test.cc prints the whole table and checks
// it. nvsd keeps one Life per variant and changes it only through Next, in
// Supervisor::Impl::Transit, which logs and publishes every change.
//
// Each state says what the slot may be trusted with: only kHealthy votes,
// gives a checkpoint's snapshot or digest, or becomes the standby active.
// kChecking and kDiverged are processes that said hello and answer, but
// whose state nvsd cannot vouch for; kExited is a process whose death is
// being judged (its last replies may still be on their way).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace nvs::supervisor {

enum class Life : std::uint8_t {
  kDown,      // no process: between a death and the restart (or nvsd stopping)
  kStarting,  // spawned, waiting for its hello
  kSyncing,   // said hello; waits for a sync round to restore and check it
  kHealthy,   // checked: votes
  kChecking,  // said hello and was healthy, but its state must be checked by a sync round before it votes again
  kDiverged,  // lost a vote or a checkpoint's digest: answers what is out at it, then is restarted
  kExited,    // its process is gone and its death not judged yet (exit_grace_ms)
  kStopping,  // killed on purpose: waiting for the process to go
  kFailed,    // restarted too often, or cannot be started: left down
};
inline constexpr int kLifeStates = 9;

enum class LifeEvent : std::uint8_t {
  kSpawned,      // a new incarnation's process started
  kSpawnFailed,  // the spawn failed (a restart is scheduled through the intensity)
  kGaveUp,       // no more restarts (intensity), or no way to start it
  kHello,        // it said a valid hello
  kChecked,      // a sync round found its state right
  kDoubted,      // its state may be wrong (a rollback, an undone commit, a digest tie or rejected checkpoint)
  kDiverged,     // it answered differently from the verdict, or its digest differed from the checkpoint's
  kExitSeen,     // its process was seen gone (pidfd)
  kKilled,       // nvsd sent SIGKILL to its process group
  kGone,         // its process is reaped (death judged, or a stop completed)
};
inline constexpr int kLifeEvents = 10;

std::string_view Name(Life life);
std::string_view Name(LifeEvent event);

// The state after `event`; the same state when the event changes nothing
// there (a doubt about a variant already doubted); nullopt when the event
// cannot happen in that state (a defect of the caller: nvsd logs it as an
// internal error and keeps the state).
std::optional<Life> Next(Life life, LifeEvent event);

// Only a checked variant votes, gives checkpoint digests and snapshots,
// donates its state, or becomes the standby active.
constexpr bool Votes(Life life) { return life == Life::kHealthy; }
// Has a process that said hello and takes requests (pings, rounds' restores).
constexpr bool Answers(Life life) {
  return life == Life::kSyncing || life == Life::kHealthy || life == Life::kChecking || life == Life::kDiverged;
}
// Would take part in a sync round now: said hello, not diverged, not dead.
constexpr bool CanSync(Life life) {
  return life == Life::kSyncing || life == Life::kHealthy || life == Life::kChecking;
}
// Waits for a sync round before it can vote.
constexpr bool WantsRound(Life life) { return life == Life::kSyncing || life == Life::kChecking; }
// Messages from it are read (a dead or stopping process's are not).
constexpr bool Heard(Life life) { return Answers(life) || life == Life::kStarting || life == Life::kExited; }

}  // namespace nvs::supervisor
