// When a leader may serve, on its own clock (against a real etcd:
// tests/cluster/etcd_test.cc).
#include "nvs/cluster/lease_clock.h"

#include <gtest/gtest.h>


namespace nvs::cluster {
namespace {

using std::chrono::milliseconds;

TEST(LeaseClock, ServesUntilTheLastRenewalsSendTimePlusTtlLessTheMargin) {
  LeaseClock clock(milliseconds(1000), milliseconds(100));
  const LeaseClock::Time t0{std::chrono::hours(1)};
  EXPECT_FALSE(clock.MayServe(t0)) << "no lease yet";
  EXPECT_EQ(clock.RenewAt(), std::nullopt);

  clock.Renewed(t0, milliseconds(1000));
  EXPECT_TRUE(clock.MayServe(t0 + milliseconds(899)));
  EXPECT_FALSE(clock.MayServe(t0 + milliseconds(900)));
  EXPECT_EQ(clock.RenewAt(), t0 + milliseconds(333));

  // A renewal sent later extends it; one sent earlier that came back late
  // does not shorten it.
  clock.Renewed(t0 + milliseconds(333), milliseconds(1000));
  EXPECT_EQ(clock.ServeUntil(), t0 + milliseconds(1233));
  clock.Renewed(t0 + milliseconds(100), milliseconds(1000));
  EXPECT_EQ(clock.ServeUntil(), t0 + milliseconds(1233));

  // etcd granting less than asked counts as less.
  clock.Renewed(t0 + milliseconds(400), milliseconds(2000));
  EXPECT_EQ(clock.ServeUntil(), t0 + milliseconds(1300)) << "never more than the TTL asked for";

  // An expired lease (TTL 0 back) or one lost: no serving at all.
  clock.Renewed(t0 + milliseconds(500), milliseconds(0));
  EXPECT_FALSE(clock.MayServe(t0 + milliseconds(501)));
  clock.Renewed(t0 + milliseconds(600), milliseconds(1000));
  EXPECT_TRUE(clock.MayServe(t0 + milliseconds(601)));
  clock.Lost();
  EXPECT_FALSE(clock.MayServe(t0 + milliseconds(602)));
}

}  // namespace
}  // namespace nvs::cluster
