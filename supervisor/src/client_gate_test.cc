#include "client_gate.h"

#include <gtest/gtest.h>

namespace nvs::supervisor {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

TEST(ParseZapRequest, TakesRfc27Frames) {
  auto request = ParseZapRequest({"1.0", "7", "nvs-clients", "10.0.0.5", "", "CURVE", std::string(32, 'k')});
  ASSERT_TRUE(request.has_value());
  EXPECT_EQ(request->request_id, "7");
  EXPECT_EQ(request->domain, "nvs-clients");
  EXPECT_EQ(request->address, "10.0.0.5");
  EXPECT_EQ(request->mechanism, "CURVE");
  ASSERT_EQ(request->credentials.size(), 1u);
  EXPECT_EQ(request->credentials[0].size(), 32u);
  EXPECT_TRUE(ParseZapRequest({"1.0", "1", "d", "a", "", "NULL"}).has_value()) << "NULL has no credentials";
  EXPECT_FALSE(ParseZapRequest({"1.0", "1", "d", "a", ""}).has_value());
  EXPECT_FALSE(ParseZapRequest({"2.0", "1", "d", "a", "", "NULL"}).has_value());
  EXPECT_FALSE(ParseZapRequest({}).has_value());
}

TEST(DecideZap, OnlyListedCurveKeysOfTheClientDomainGetIn) {
  const protocol::CurveKeyPair listed = protocol::GenerateKeyPair().value();
  const protocol::CurveKeyPair unnamed = protocol::GenerateKeyPair().value();
  const protocol::CurveKeyPair stranger = protocol::GenerateKeyPair().value();
  const std::map<std::string, std::string> authorized = {
      {protocol::DecodeZ85Key(listed.public_key), "panel-1"},
      {protocol::DecodeZ85Key(unnamed.public_key), ""},
  };
  const auto request = [](std::string domain, std::string mechanism, std::vector<std::string> credentials) {
    return ZapRequest{"1.0", "1", std::move(domain), "127.0.0.1", "", std::move(mechanism), std::move(credentials)};
  };
  struct Case {
    ZapRequest request;
    bool allowed;
    const char* status_text;
    std::string user_id;
    std::string key;
  };
  const Case cases[] = {
      {request(kClientZapDomain, "CURVE", {protocol::DecodeZ85Key(listed.public_key)}), true, "OK", "panel-1",
       listed.public_key},
      {request(kClientZapDomain, "CURVE", {protocol::DecodeZ85Key(unnamed.public_key)}), true, "OK",
       unnamed.public_key, unnamed.public_key},
      {request(kClientZapDomain, "CURVE", {protocol::DecodeZ85Key(stranger.public_key)}), false,
       "key not in authorized_keys_file", "", stranger.public_key},
      {request(kClientZapDomain, "CURVE", {"short"}), false, "malformed CURVE credentials", "", ""},
      {request(kClientZapDomain, "CURVE", {}), false, "malformed CURVE credentials", "", ""},
      {request(kClientZapDomain, "NULL", {}), false, "not CURVE", "", ""},
      {request(kClientZapDomain, "PLAIN", {"user", "password"}), false, "not CURVE", "", ""},
      // Another socket of nvsd (plain) that asked: answering changes nothing.
      {request("", "NULL", {}), true, "OK", "", ""},
      {request("elsewhere", "CURVE", {protocol::DecodeZ85Key(listed.public_key)}), false, "unknown ZAP domain", "",
       listed.public_key},
  };
  for (const auto& c : cases) {
    const ZapDecision decision = DecideZap(c.request, authorized);
    SCOPED_TRACE(c.request.domain + " " + c.request.mechanism + " " + c.status_text);
    EXPECT_EQ(decision.allowed, c.allowed);
    EXPECT_EQ(decision.status_code, c.allowed ? "200" : "400");
    EXPECT_EQ(decision.status_text, c.status_text);
    EXPECT_EQ(decision.user_id, c.user_id);
    EXPECT_EQ(decision.key, c.key);
  }
}

TEST(DescribeHandshakeFailure, SaysWhatKindOfClientItWas) {
  const int protocol = ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL;
  EXPECT_NE(DescribeHandshakeFailure(protocol, ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH).find("not CURVE"),
            std::string::npos);
  EXPECT_NE(DescribeHandshakeFailure(protocol, ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC).find("does not have nvsd's public key"),
            std::string::npos);
  EXPECT_NE(DescribeHandshakeFailure(protocol, ZMQ_PROTOCOL_ERROR_ZMTP_UNEXPECTED_COMMAND).find("0x10000001"),
            std::string::npos);
  EXPECT_NE(DescribeHandshakeFailure(ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL, 104).find("handshake not completed"),
            std::string::npos);
}

TEST(LogThrottle, AtMostTheLimitPerWindowThenTheSuppressedCount) {
  const Clock::time_point t0{};
  LogThrottle throttle(3, std::chrono::seconds(1));
  // A burst of 10 in the first second: 3 logged, 7 counted.
  int logged = 0;
  for (int i = 0; i < 10; ++i) logged += throttle.Admit(t0 + milliseconds(i)) ? 1 : 0;
  EXPECT_EQ(logged, 3);
  EXPECT_EQ(throttle.TakeSuppressed(t0 + milliseconds(999)), 0u) << "not before the window is over";
  EXPECT_EQ(throttle.TakeSuppressed(t0 + milliseconds(1000)), 7u);
  EXPECT_EQ(throttle.TakeSuppressed(t0 + milliseconds(1001)), 0u) << "taken once";
  // A new window starts with the next line, not on a fixed grid.
  EXPECT_TRUE(throttle.Admit(t0 + milliseconds(5000)));
  EXPECT_TRUE(throttle.Admit(t0 + milliseconds(5500)));
  EXPECT_TRUE(throttle.Admit(t0 + milliseconds(5900)));
  EXPECT_FALSE(throttle.Admit(t0 + milliseconds(5999)));
  EXPECT_TRUE(throttle.Admit(t0 + milliseconds(6000)));
  EXPECT_EQ(throttle.TakeSuppressed(t0 + milliseconds(6500)), 1u) << "the window it fell in (from 5.0 s) is over";
  EXPECT_TRUE(throttle.Admit(t0 + milliseconds(6100)));
  EXPECT_TRUE(throttle.Admit(t0 + milliseconds(6200)));
  EXPECT_FALSE(throttle.Admit(t0 + milliseconds(6600))) << "the fourth of the window from 6.0 s";
  EXPECT_EQ(throttle.TakeSuppressed(t0 + milliseconds(6900)), 0u);
  EXPECT_EQ(throttle.TakeSuppressed(t0 + milliseconds(7000)), 1u);
  // Nothing suppressed: nothing to say.
  LogThrottle quiet(3, std::chrono::seconds(1));
  EXPECT_TRUE(quiet.Admit(t0));
  EXPECT_EQ(quiet.TakeSuppressed(t0 + std::chrono::seconds(5)), 0u);
}

}  // namespace
}  // namespace nvs::supervisor
