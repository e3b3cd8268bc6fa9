#include "nvs/core/restart_intensity.h"

#include <gtest/gtest.h>

namespace nvs::supervisor {
namespace {

TEST(RestartIntensity, AllowsUpToIntensityWithinThePeriod) {
  RestartIntensity r(3, 1000);
  EXPECT_TRUE(r.Allow(0));
  EXPECT_TRUE(r.Allow(10));
  EXPECT_TRUE(r.Allow(20));
  EXPECT_FALSE(r.Allow(30)) << "a fourth restart within 1 s";
  EXPECT_EQ(r.Recent(30), 3);
}

TEST(RestartIntensity, OldRestartsAgeOut) {
  RestartIntensity r(2, 1000);
  EXPECT_TRUE(r.Allow(0));
  EXPECT_TRUE(r.Allow(500));
  EXPECT_FALSE(r.Allow(999));
  EXPECT_TRUE(r.Allow(1000)) << "the restart at 0 is a full period old";
  EXPECT_FALSE(r.Allow(1400));
  EXPECT_TRUE(r.Allow(1500));
}

TEST(RestartIntensity, ZeroIntensityNeverRestarts) {
  RestartIntensity r(0, 1000);
  EXPECT_FALSE(r.Allow(0));
}

TEST(RestartIntensity, TableOfHistories) {
  struct Row {
    int intensity;
    std::int64_t period;
    std::vector<std::int64_t> times;
    std::vector<bool> allowed;
  };
  const Row rows[] = {
      {1, 100, {0, 50, 100, 150, 250}, {true, false, true, false, true}},
      {5, 10'000, {0, 1, 2, 3, 4, 5, 10'000}, {true, true, true, true, true, false, true}},
  };
  for (const auto& row : rows) {
    RestartIntensity r(row.intensity, row.period);
    for (std::size_t i = 0; i < row.times.size(); ++i) EXPECT_EQ(r.Allow(row.times[i]), row.allowed[i]) << i;
  }
}

}  // namespace
}  // namespace nvs::supervisor
