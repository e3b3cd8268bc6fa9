#include "nvs/videohub/allow_list.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>

namespace nvs::videohub {
namespace {

sockaddr_storage Peer(const char* text) {
  sockaddr_storage s{};
  if (std::strchr(text, ':') != nullptr) {
    auto& a = reinterpret_cast<sockaddr_in6&>(s);
    a.sin6_family = AF_INET6;
    inet_pton(AF_INET6, text, &a.sin6_addr);
  } else {
    auto& a = reinterpret_cast<sockaddr_in&>(s);
    a.sin_family = AF_INET;
    inet_pton(AF_INET, text, &a.sin_addr);
  }
  return s;
}

std::vector<Network> Nets(std::initializer_list<const char*> texts) {
  std::vector<Network> out;
  for (const char* t : texts) {
    std::string why;
    auto n = ParseNetwork(t, &why);
    EXPECT_TRUE(n.has_value()) << t << ": " << why;
    if (n) out.push_back(*n);
  }
  return out;
}

TEST(AllowList, MatchesPeersInTheGivenNetworksOnly) {
  const auto allowed = Nets({"10.1.2.0/24", "192.168.7.9", "fd00::/8"});
  EXPECT_TRUE(Allowed(allowed, Peer("10.1.2.77")));
  EXPECT_TRUE(Allowed(allowed, Peer("::ffff:10.1.2.77"))) << "a v4 peer on a dual-stack socket";
  EXPECT_FALSE(Allowed(allowed, Peer("10.1.3.1")));
  EXPECT_TRUE(Allowed(allowed, Peer("192.168.7.9")));
  EXPECT_FALSE(Allowed(allowed, Peer("192.168.7.10")));
  EXPECT_TRUE(Allowed(allowed, Peer("fd12::5")));
  EXPECT_FALSE(Allowed(allowed, Peer("fe80::1")));
  EXPECT_FALSE(Allowed(allowed, Peer("127.0.0.1"))) << "loopback only when listed";
  EXPECT_FALSE(Allowed({}, Peer("10.1.2.77")));
  EXPECT_TRUE(Allowed(Nets({"0.0.0.0/0"}), Peer("203.0.113.5")));
  EXPECT_FALSE(Allowed(Nets({"0.0.0.0/0"}), Peer("2001:db8::1"))) << "every IPv4 network is not every network";
}

TEST(AllowList, RefusesWhatIsNotANetwork) {
  std::string why;
  for (const char* bad : {"10.1.2.0/33", "10.1.2.0/", "10.1.2.0/x", "host.example", "10.1.2.3/24", "::/129", ""}) {
    EXPECT_FALSE(ParseNetwork(bad, &why).has_value()) << bad;
    EXPECT_FALSE(why.empty()) << bad;
  }
}

TEST(AllowList, KnowsALoopbackListenAddress) {
  EXPECT_TRUE(LoopbackOnly("127.0.0.1:9990"));
  EXPECT_TRUE(LoopbackOnly("127.0.0.2:0"));
  EXPECT_TRUE(LoopbackOnly("[::1]:9990"));
  EXPECT_TRUE(LoopbackOnly("localhost:9990"));
  EXPECT_FALSE(LoopbackOnly("0.0.0.0:9990"));
  EXPECT_FALSE(LoopbackOnly(":9990"));
  EXPECT_FALSE(LoopbackOnly("[::]:9990"));
  EXPECT_FALSE(LoopbackOnly("10.0.0.5:9990"));
  EXPECT_FALSE(LoopbackOnly("router.example:9990"));
}

}  // namespace
}  // namespace nvs::videohub
