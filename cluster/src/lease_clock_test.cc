// When a leader may serve: the clock alone, then against a real etcd that
// the leader stops before etcd lets its lease (and its leadership) go.
#include "nvs/cluster/lease_clock.h"

#include <gtest/gtest.h>

#include <iostream>
#include <thread>

#include "local_etcd.h"
#include "nvs/cluster/etcd.h"

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

// The safety the clock is for: a leader that stops renewing stops serving
// before etcd lets its leadership go (so before another member can lead).
TEST(LeaseClock, ALeaderThatStopsRenewingStopsServingBeforeEtcdDropsItsLeadership) {
  LocalEtcd etcd;
  const Status started = etcd.Start(3, milliseconds(30000));
  ASSERT_TRUE(started.ok()) << started.message();
  EtcdClient leader({etcd.client_urls(), milliseconds(2000)});
  EtcdClient watcher({etcd.client_urls(), milliseconds(2000)});

  LeaseClock clock(milliseconds(1000), milliseconds(100));
  const auto sent = LeaseClock::Clock::now();
  const auto lease = leader.GrantLease(1);
  ASSERT_TRUE(lease.ok()) << lease.status().message();
  clock.Renewed(sent, milliseconds(1000));
  const auto lead = leader.Campaign("nvs-test/leader", lease.value(), "a", milliseconds(5000));
  ASSERT_TRUE(lead.ok()) << lead.status().message();
  // One renewal, as the leader's loop does; then it stops renewing (its
  // host hangs, or etcd is out of its reach).
  const auto renew_sent = LeaseClock::Clock::now();
  const auto ttl = leader.KeepAlive(lease.value());
  ASSERT_TRUE(ttl.ok() && ttl.value() > 0);
  clock.Renewed(renew_sent, std::chrono::seconds(ttl.value()));
  const auto serve_until = *clock.ServeUntil();

  // Watch etcd until the leadership is gone.
  std::optional<LeaseClock::Time> gone_at;
  const auto deadline = LeaseClock::Clock::now() + milliseconds(10000);
  while (!gone_at && LeaseClock::Clock::now() < deadline) {
    const auto asked = LeaseClock::Clock::now();
    const auto who = watcher.Leader("nvs-test/leader");
    ASSERT_TRUE(who.ok()) << who.status().message();
    if (!who.value() || who.value()->key != lead->key) gone_at = asked;
    std::this_thread::sleep_for(milliseconds(10));  // (polling etcd)
  }
  ASSERT_TRUE(gone_at.has_value()) << "the lease did not expire within 10 s";
  EXPECT_GE(*gone_at, serve_until) << "etcd dropped the leadership while the leader still thought it could serve";
  EXPECT_FALSE(clock.MayServe(*gone_at));
  std::cout << "etcd dropped the leadership "
            << std::chrono::duration_cast<milliseconds>(*gone_at - serve_until).count()
            << " ms after the leader stopped serving on its own clock\n";
}

}  // namespace
}  // namespace nvs::cluster
