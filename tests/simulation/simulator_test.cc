// The simulator itself: a schedule is a function of its seed, its checks
// see what they should, and a few shapes of schedule keep their promises.
#include "simulator.h"

#include <gtest/gtest.h>

namespace nvs::simulation {
namespace {

std::string Joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

TEST(Simulator, TheSameSeedIsTheSameSchedule) {
  const auto spec = ScheduleSpec::FromSeed(7);
  const auto first = RunSchedule(spec, true);
  const auto second = RunSchedule(spec, true);
  EXPECT_EQ(Joined(first.transcript), Joined(second.transcript));
  EXPECT_GT(first.steps, 0);
}

TEST(Simulator, AQuietScheduleCommitsEveryCommand) {
  ScheduleSpec spec;
  spec.seed = 11;
  spec.clients = 2;
  spec.requests = 6;
  const auto result = RunSchedule(spec, true);
  EXPECT_TRUE(result.violations.empty()) << Joined(result.transcript);
  EXPECT_GT(result.commits, 0) << Joined(result.transcript);
  EXPECT_EQ(result.quarantined, 0);
}

TEST(Simulator, APoisonIsQuarantinedAndNeverSentAgain) {
  ScheduleSpec spec;
  spec.seed = 3;
  spec.clients = 1;
  spec.requests = 4;
  spec.poison = 1;
  const auto result = RunSchedule(spec, true);
  EXPECT_TRUE(result.violations.empty()) << Joined(result.transcript);
  EXPECT_EQ(result.quarantined, 1) << Joined(result.transcript);
}

}  // namespace
}  // namespace nvs::simulation
