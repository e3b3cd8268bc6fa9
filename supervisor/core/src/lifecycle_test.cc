// The variant lifecycle, as the whole table and as the properties nvsd
// relies on.
#include "nvs/core/lifecycle.h"

#include <gtest/gtest.h>

#include <optional>
#include <set>
#include <string>
#include <vector>

namespace nvs::supervisor {
namespace {

std::string Cell(Life life, LifeEvent event) {
  const auto next = Next(life, event);
  if (!next) return "-";
  if (*next == life) return "=";
  return std::string(Name(*next));
}

// One line per state: "state: event>next ..." for the events that change
// it, then "same:" the events it ignores; events that cannot happen there
// are left out.
std::string Render() {
  std::string out;
  for (int s = 0; s < kLifeStates; ++s) {
    const auto life = static_cast<Life>(s);
    std::string moves;
    std::string same;
    for (int e = 0; e < kLifeEvents; ++e) {
      const auto event = static_cast<LifeEvent>(e);
      const std::string cell = Cell(life, event);
      if (cell == "-") continue;
      if (cell == "=") {
        same += " " + std::string(Name(event));
      } else {
        moves += " " + std::string(Name(event)) + ">" + cell;
      }
    }
    out += std::string(Name(life)) + ":" + moves + (same.empty() ? "" : " | same:" + same) + "\n";
  }
  return out;
}

TEST(Lifecycle, TheWholeTable) {
  EXPECT_EQ(Render(),
            "down: spawned>starting gave_up>failed | same: spawn_failed doubted diverged\n"
            "starting: hello>syncing exit_seen>exited killed>stopping gone>down | same: doubted diverged\n"
            "syncing: checked>healthy diverged>diverged exit_seen>exited killed>stopping gone>down | same: doubted\n"
            "healthy: doubted>checking diverged>diverged exit_seen>exited killed>stopping gone>down | same: checked\n"
            "checking: checked>healthy diverged>diverged exit_seen>exited killed>stopping gone>down | same: doubted\n"
            "diverged: exit_seen>exited killed>stopping gone>down | same: checked doubted diverged\n"
            "exited: killed>stopping gone>down | same: hello checked doubted diverged exit_seen\n"
            "stopping: gone>down | same: checked doubted diverged exit_seen killed\n"
            "failed: | same: gave_up checked doubted diverged\n");
}

const std::vector<Life> kWithProcess = {Life::kStarting, Life::kSyncing, Life::kHealthy, Life::kChecking,
                                        Life::kDiverged, Life::kExited,  Life::kStopping};

TEST(Lifecycle, EveryProcessCanBeKilledAndGoes) {
  for (Life life : kWithProcess) {
    SCOPED_TRACE(std::string(Name(life)));
    EXPECT_EQ(Next(life, LifeEvent::kKilled), Life::kStopping);
    EXPECT_EQ(Next(life, LifeEvent::kGone), Life::kDown);
    EXPECT_TRUE(Next(life, LifeEvent::kExitSeen).has_value());
    EXPECT_FALSE(Next(life, LifeEvent::kSpawned).has_value()) << "a second process in one slot";
  }
  for (Life life : {Life::kDown, Life::kFailed}) {
    EXPECT_FALSE(Next(life, LifeEvent::kKilled).has_value());
    EXPECT_FALSE(Next(life, LifeEvent::kGone).has_value());
  }
}

// Trust is earned only through a sync round's check (or a hello followed
// by one): no other event leads into kHealthy.
TEST(Lifecycle, OnlyACheckMakesAVoter) {
  for (int s = 0; s < kLifeStates; ++s) {
    for (int e = 0; e < kLifeEvents; ++e) {
      const auto life = static_cast<Life>(s);
      const auto event = static_cast<LifeEvent>(e);
      const auto next = Next(life, event);
      if (next && Votes(*next) && !Votes(life)) {
        EXPECT_EQ(event, LifeEvent::kChecked) << Name(life) << " on " << Name(event);
        EXPECT_TRUE(WantsRound(life)) << Name(life);
      }
    }
  }
}

// The states reachable from `from` (itself included), by any events but
// `except`.
std::set<Life> Reachable(Life from, std::optional<LifeEvent> except) {
  std::set<Life> seen;
  std::vector<Life> todo = {from};
  while (!todo.empty()) {
    const Life life = todo.back();
    todo.pop_back();
    if (!seen.insert(life).second) continue;
    for (int e = 0; e < kLifeEvents; ++e) {
      if (static_cast<LifeEvent>(e) == except) continue;
      if (const auto next = Next(life, static_cast<LifeEvent>(e))) todo.push_back(*next);
    }
  }
  return seen;
}

// A diverged variant is never trusted again in this incarnation (a spawn
// is a new one).
TEST(Lifecycle, DivergedStaysUntrustedUntilRestarted) {
  for (Life life : Reachable(Life::kDiverged, LifeEvent::kSpawned)) {
    EXPECT_FALSE(Votes(life)) << Name(life);
    EXPECT_FALSE(CanSync(life)) << Name(life);
  }
}

TEST(Lifecycle, EveryStateIsReachedFromDown) {
  EXPECT_EQ(Reachable(Life::kDown, std::nullopt).size(), static_cast<std::size_t>(kLifeStates));
}

TEST(Lifecycle, WhatEachStateIsTrustedWith) {
  for (int s = 0; s < kLifeStates; ++s) {
    const auto life = static_cast<Life>(s);
    SCOPED_TRACE(std::string(Name(life)));
    EXPECT_EQ(Votes(life), life == Life::kHealthy);
    if (CanSync(life)) {
      EXPECT_TRUE(Answers(life));
    }
    if (WantsRound(life)) {
      EXPECT_TRUE(CanSync(life));
    }
    if (Answers(life)) {
      EXPECT_TRUE(Heard(life));
    }
    EXPECT_EQ(Heard(life), life != Life::kDown && life != Life::kStopping && life != Life::kFailed);
  }
}

}  // namespace
}  // namespace nvs::supervisor
