// The etcd client against a real 3-member etcd on loopback: the lease, the
// election and the fence that cluster mode rests on.
#include "nvs/cluster/etcd.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <vector>

#include "local_etcd.h"
#include "nvs/cluster/lease_clock.h"

namespace nvs::cluster {
namespace {

using std::chrono::milliseconds;

TEST(Base64, RoundTripsAndRefusesWhatIsNotBase64) {
  // RFC 4648 §10.
  const std::pair<const char*, const char*> vectors[] = {{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
                                                         {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
                                                         {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(Base64Encode(plain), encoded);
    EXPECT_EQ(Base64Decode(encoded), std::optional<std::string>(plain));
  }
  const std::string binary("\0\xff\x80 nvs/log/\x01", 14);
  EXPECT_EQ(Base64Decode(Base64Encode(binary)), std::optional<std::string>(binary));
  for (const char* bad : {"Zg=", "Z===", "Zm9v!A==", "Zm=v"}) EXPECT_EQ(Base64Decode(bad), std::nullopt) << bad;
}

class Etcd : public testing::Test {
 protected:
  void SetUp() override {
    const Status started = etcd_.Start(3, milliseconds(30000));
    ASSERT_TRUE(started.ok()) << started.message();
  }
  EtcdClient Client() { return EtcdClient({etcd_.client_urls(), milliseconds(2000)}); }
  LocalEtcd etcd_;
};

// The leader writes while it leads; once its lease is gone its fenced
// writes are refused, and the next campaign leads.
TEST_F(Etcd, TheFenceRefusesADeposedLeadersWrites) {
  EtcdClient a = Client();
  EtcdClient b = Client();
  const auto lease_a = a.GrantLease(5);
  ASSERT_TRUE(lease_a.ok()) << lease_a.status().message();
  const auto lead = a.Campaign("nvs-test/leader", lease_a.value(), "member-a", milliseconds(5000));
  ASSERT_TRUE(lead.ok()) << lead.status().message();
  EXPECT_GT(lead->create_revision, 0);

  const auto leader = b.Leader("nvs-test/leader");
  ASSERT_TRUE(leader.ok()) << leader.status().message();
  ASSERT_TRUE(leader.value().has_value());
  EXPECT_EQ(leader.value()->value, "member-a");

  const auto wrote = a.FencedPut(lead.value(), {{"nvs-test/log/1", "one"}, {"nvs-test/log/2", "two"}});
  ASSERT_TRUE(wrote.ok()) << wrote.status().message();
  EXPECT_TRUE(wrote.value());

  // b campaigns too: it waits while a leads.
  const auto lease_b = b.GrantLease(5);
  ASSERT_TRUE(lease_b.ok());
  EXPECT_FALSE(b.Campaign("nvs-test/leader", lease_b.value(), "member-b", milliseconds(300)).ok());

  // a's lease ends (as when a stops renewing it): its writes are fenced off.
  ASSERT_TRUE(a.Revoke(lease_a.value()).ok());
  // etcd's own reason comes through (not "no endpoint answered").
  const Status again = a.Revoke(lease_a.value());
  EXPECT_NE(again.message().find("lease not found"), std::string::npos) << again.message();
  const auto refused = a.FencedPut(lead.value(), {{"nvs-test/log/3", "three"}});
  ASSERT_TRUE(refused.ok()) << refused.status().message();
  EXPECT_FALSE(refused.value());

  const auto next = b.Campaign("nvs-test/leader", lease_b.value(), "member-b", milliseconds(5000));
  ASSERT_TRUE(next.ok()) << next.status().message();
  EXPECT_GT(next->create_revision, lead->create_revision);
  EXPECT_TRUE(b.FencedPut(next.value(), {{"nvs-test/log/3", "three by b"}}).value());

  const auto log = b.Prefix("nvs-test/log/");
  ASSERT_TRUE(log.ok()) << log.status().message();
  ASSERT_EQ(log->size(), 3u);
  EXPECT_EQ(log.value()[0].value, "one");
  EXPECT_EQ(log.value()[2].value, "three by b");
}

// A lease renewed at a third of its TTL keeps its leadership: another
// campaign, waiting until each renewal is due, never wins. Left alone, it
// expires, and the other campaign (which waits on etcd for exactly that)
// wins.
TEST_F(Etcd, ALeaseKeptAliveKeepsItsLeadershipAndOneLeftAloneLosesIt) {
  EtcdClient a = Client();
  EtcdClient b = Client();
  const auto lease_a = a.GrantLease(1);
  const auto lease_b = b.GrantLease(5);
  ASSERT_TRUE(lease_a.ok() && lease_b.ok());
  const auto lead = a.Campaign("nvs-test/leader", lease_a.value(), "a", milliseconds(5000));
  ASSERT_TRUE(lead.ok()) << lead.status().message();
  // Kept alive past three TTLs: b's campaign, given until each renewal,
  // times out every time.
  for (int renewal = 0; renewal < 9; ++renewal) {
    EXPECT_FALSE(b.Campaign("nvs-test/leader", lease_b.value(), "b", milliseconds(333)).ok()) << "renewal " << renewal;
    const auto ttl = a.KeepAlive(lease_a.value());
    ASSERT_TRUE(ttl.ok()) << ttl.status().message();
    ASSERT_GT(ttl.value(), 0);
  }
  // Left alone: b leads once a's lease expires.
  const auto next = b.Campaign("nvs-test/leader", lease_b.value(), "b", milliseconds(10000));
  ASSERT_TRUE(next.ok()) << "a lease left alone did not expire: " << next.status().message();
  const auto gone = a.KeepAlive(lease_a.value());
  ASSERT_TRUE(gone.ok()) << gone.status().message();
  EXPECT_EQ(gone.value(), 0);
}

TEST_F(Etcd, AnEndpointThatIsDownIsPassedOverAndALostMajorityIsAnError) {
  std::vector<std::string> endpoints = {"http://127.0.0.1:1"};  // (nobody listens on port 1)
  endpoints.insert(endpoints.end(), etcd_.client_urls().begin(), etcd_.client_urls().end());
  EtcdClient c({endpoints, milliseconds(1000)});
  ASSERT_TRUE(c.Put("nvs-test/k", "v").ok());
  const auto read = c.Prefix("nvs-test/k");
  ASSERT_TRUE(read.ok());
  ASSERT_EQ(read->size(), 1u);
  // Two of three members gone: no write can be committed, and the client
  // says so within its deadline instead of waiting.
  etcd_.Kill(1);
  etcd_.Kill(2);
  const auto start = std::chrono::steady_clock::now();
  const Status put = c.Put("nvs-test/k", "w");
  EXPECT_FALSE(put.ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(20000)) << "every endpoint has a deadline";
}

// Which member etcd's own logs say leads: the one that last "became
// leader" (at the highest term), among `members`. -1: none yet.
int LeaderByLogs(const LocalEtcd& etcd, const std::vector<int>& members) {
  int leader = -1;
  long best = -1;
  for (const int m : members) {
    std::ifstream in(etcd.log(m));
    const std::string marker = "became leader at term ";
    for (std::string line; std::getline(in, line);) {
      const auto at = line.find(marker);
      if (at == std::string::npos) continue;
      const long term = std::strtol(line.c_str() + at + marker.size(), nullptr, 10);
      if (term > best) best = term, leader = m;
    }
  }
  return leader;
}

// The leader's writes go first to etcd's own leader (one hop fewer than
// through another member): found among endpoints of which one refuses
// connections and one takes them and never answers (each gets its short
// time, not the client's), as etcd's own log names it, and found again,
// another, once it is gone. Endpoints that answer, none of them etcd's
// leader, give none; none answering, an error.
TEST_F(Etcd, EtcdsLeaderIsFoundAmongTheEndpointsAndFoundAgainWhenItIsGone) {
  // (A socket that listens and never accepts: the kernel completes the
  // handshake, and the request waits for an answer that never comes.)
  const int silent = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(silent, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  ASSERT_EQ(bind(silent, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(listen(silent, 16), 0);
  ASSERT_EQ(getsockname(silent, reinterpret_cast<sockaddr*>(&address), &length), 0);
  std::vector<std::string> endpoints = {"http://127.0.0.1:1",  // (nobody listens on port 1)
                                        "http://127.0.0.1:" + std::to_string(ntohs(address.sin_port))};
  constexpr std::size_t kNotEtcd = 2;
  endpoints.insert(endpoints.end(), etcd_.client_urls().begin(), etcd_.client_urls().end());
  EtcdClient c({endpoints, milliseconds(10000)});
  // Until what it finds is what etcd logged (a log line and the status
  // come from the same moment of etcd's raft, one a little after the other).
  const auto found_as_logged = [&](const std::vector<int>& alive) -> std::optional<std::size_t> {
    const auto until = std::chrono::steady_clock::now() + milliseconds(20000);
    while (std::chrono::steady_clock::now() < until) {
      const auto began = std::chrono::steady_clock::now();
      const auto found = c.LeaderEndpoint(milliseconds(300));
      // (The silent endpoint held it 300 ms, not the client's 10 s.)
      EXPECT_LT(std::chrono::steady_clock::now() - began, milliseconds(5000));
      if (found.ok() && found.value() && *found.value() >= kNotEtcd &&
          static_cast<int>(*found.value() - kNotEtcd) == LeaderByLogs(etcd_, alive)) {
        return *found.value();
      }
    }
    return std::nullopt;
  };
  const auto first = found_as_logged({0, 1, 2});
  ASSERT_TRUE(first.has_value()) << "the endpoint found is not the member etcd's logs say leads";
  c.Prefer(*first);
  ASSERT_TRUE(c.Put("nvs-test/k", "v").ok());
  // Its member killed, the other two elect one of themselves.
  const int gone = static_cast<int>(*first - kNotEtcd);
  etcd_.Kill(gone);
  std::vector<int> alive;
  for (int m = 0; m < 3; ++m) {
    if (m != gone) alive.push_back(m);
  }
  const auto next = found_as_logged(alive);
  ASSERT_TRUE(next.has_value()) << "no new etcd leader found, as its logs name it, within 20 s";
  EXPECT_NE(*next, *first);
  c.Prefer(*next);
  EXPECT_TRUE(c.Put("nvs-test/k", "w").ok());
  // Only members that do not lead answering: none; nobody answering: an error.
  std::vector<std::string> followers;
  for (const int m : alive) {
    if (m + kNotEtcd != *next) followers.push_back(etcd_.client_urls()[m]);
  }
  const auto none = EtcdClient({followers, milliseconds(2000)}).LeaderEndpoint(milliseconds(300));
  ASSERT_TRUE(none.ok()) << none.status().message();
  EXPECT_FALSE(none.value().has_value());
  EXPECT_FALSE(EtcdClient({{"http://127.0.0.1:1"}, milliseconds(2000)}).LeaderEndpoint(milliseconds(300)).ok());
  close(silent);
}

// The safety LeaseClock is for: a leader that stops renewing stops serving
// before another member's campaign can win (so two never serve at once).
TEST_F(Etcd, ALeaderThatStopsRenewingStopsServingBeforeAnotherCanLead) {
  EtcdClient a = Client();
  EtcdClient b = Client();
  LeaseClock clock(milliseconds(1000), milliseconds(100));
  const auto sent = LeaseClock::Clock::now();
  const auto lease = a.GrantLease(1);
  ASSERT_TRUE(lease.ok()) << lease.status().message();
  clock.Renewed(sent, milliseconds(1000));
  const auto lead = a.Campaign("nvs-test/leader", lease.value(), "a", milliseconds(5000));
  ASSERT_TRUE(lead.ok()) << lead.status().message();
  // One renewal, as the leader's loop does; then it stops renewing (its
  // host hangs, or etcd is out of its reach).
  const auto renew_sent = LeaseClock::Clock::now();
  const auto ttl = a.KeepAlive(lease.value());
  ASSERT_TRUE(ttl.ok() && ttl.value() > 0);
  clock.Renewed(renew_sent, std::chrono::seconds(ttl.value()));
  const auto serve_until = *clock.ServeUntil();

  // b campaigns: etcd lets it lead once a's lease is gone.
  const auto lease_b = b.GrantLease(5);
  ASSERT_TRUE(lease_b.ok());
  const auto next = b.Campaign("nvs-test/leader", lease_b.value(), "b", milliseconds(10000));
  const auto b_leads_at = LeaseClock::Clock::now();
  ASSERT_TRUE(next.ok()) << "a's lease did not expire within 10 s: " << next.status().message();
  EXPECT_GE(b_leads_at, serve_until) << "b could lead while a still thought it could serve";
  EXPECT_FALSE(clock.MayServe(b_leads_at));
  std::cout << "b could lead " << std::chrono::duration_cast<milliseconds>(b_leads_at - serve_until).count()
            << " ms after a stopped serving on its own clock\n";
}

}  // namespace
}  // namespace nvs::cluster
