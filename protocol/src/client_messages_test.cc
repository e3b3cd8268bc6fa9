#include "nvs/protocol/client_messages.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace nvs::protocol {
namespace {

using nlohmann::json;

TEST(DecodeClientRequest, Command) {
  auto decoded = DecodeClientRequest(R"({"type":"command","id":"r1","cmd":{"op":"route","client":"a"}})");
  ASSERT_TRUE(decoded.request);
  EXPECT_EQ(decoded.request->type, ClientRequestType::kCommand);
  EXPECT_EQ(decoded.request->id, "r1");
  EXPECT_EQ(decoded.request->payload, R"({"client":"a","op":"route"})");
}

TEST(DecodeClientRequest, QueryAndStatus) {
  auto query = DecodeClientRequest(R"({"type":"query","id":"q","query":{"op":"dump"},"extra":1})");
  ASSERT_TRUE(query.request);
  EXPECT_EQ(query.request->type, ClientRequestType::kQuery);
  auto status = DecodeClientRequest(R"({"type":"status","id":"s"})");
  ASSERT_TRUE(status.request);
  EXPECT_EQ(status.request->type, ClientRequestType::kStatus);
}

TEST(DecodeClientRequest, RejectsWithAReason) {
  struct Case {
    std::string text;
    const char* code;
    bool has_id;
  };
  const Case cases[] = {
      {"garbage", "bad_request", false},
      {"[]", "bad_request", false},
      {R"({"type":"command","cmd":1})", "bad_request", false},
      {R"({"type":"command","id":"","cmd":1})", "bad_request", false},
      {R"({"type":"command","id":7,"cmd":1})", "bad_request", false},
      {R"({"type":"command","id":")" + std::string(129, 'x') + R"(","cmd":1})", "bad_request", false},
      {R"({"id":"a","cmd":1})", "bad_request", true},
      {R"({"type":"command","id":"a"})", "bad_request", true},
      {R"({"type":"query","id":"a"})", "bad_request", true},
      {R"({"type":"explode","id":"a"})", "unknown_type", true},
      {R"({"type":"command","id":"a","cmd":)" + std::string(100, '[') + std::string(100, ']') + "}", "bad_request",
       false},
      {R"({"type":"command","id":"a","cmd":")" + std::string(kMaxClientRequestBytes, 'x') + "\"}", "too_large", false},
  };
  for (const auto& c : cases) {
    auto decoded = DecodeClientRequest(c.text);
    EXPECT_FALSE(decoded.request) << c.text.substr(0, 80);
    EXPECT_EQ(decoded.rejection.status, ClientStatus::kRejected);
    EXPECT_EQ(decoded.rejection.code, c.code) << c.text.substr(0, 80);
    EXPECT_EQ(decoded.rejection.id.has_value(), c.has_id) << c.text.substr(0, 80);
    EXPECT_FALSE(decoded.rejection.reason.empty());
  }
}

TEST(ClientCodec, RequestsRoundTrip) {
  for (const ClientRequest& request : {ClientRequest{ClientRequestType::kCommand, "a\"b", R"({"op":"dump"})"},
                                       ClientRequest{ClientRequestType::kQuery, "q", R"({"op":"dump"})"},
                                       ClientRequest{ClientRequestType::kStatus, "s", ""},
                                       ClientRequest{ClientRequestType::kQuarantine, "r",
                                                     R"({"action":"release","note":"fixed","report":"q-1"})"}}) {
    auto decoded = DecodeClientRequest(Encode(request));
    ASSERT_TRUE(decoded.request) << Encode(request);
    EXPECT_EQ(Encode(*decoded.request), Encode(request));
  }
}

TEST(DecodeClientRequest, QuarantineNeedsAnAction) {
  auto ok = DecodeClientRequest(R"({"type":"quarantine","id":"x","action":"show","report":"q-1"})");
  ASSERT_TRUE(ok.request);
  EXPECT_EQ(ok.request->type, ClientRequestType::kQuarantine);
  EXPECT_EQ(ok.request->payload, R"({"action":"show","report":"q-1"})") << "type and id are not arguments";
  auto missing = DecodeClientRequest(R"({"type":"quarantine","id":"x"})");
  ASSERT_FALSE(missing.request);
  EXPECT_EQ(missing.rejection.code, "bad_request");
  EXPECT_FALSE(DecodeClientRequest(R"({"type":"quarantine","id":"x","action":7})").request);
}

TEST(ClientCodec, RepliesRoundTrip) {
  ClientReply committed;
  committed.id = "r1";
  committed.status = ClientStatus::kCommitted;
  committed.seq = 42;
  committed.result = R"({"ok":true})";
  ClientReply quarantined;
  quarantined.id = "r2";
  quarantined.status = ClientStatus::kQuarantined;
  quarantined.report = "q-1";
  quarantined.fingerprint = "0123456789abcdef";
  quarantined.reason = "two died";
  ClientReply status;
  status.id = "s";
  status.status = ClientStatus::kOk;
  status.body = R"({"nvsd":{"ready":true}})";
  for (const ClientReply& reply : {committed, quarantined, status, ClientReply::Rejected(std::nullopt, "bad_request", "x"),
                                   ClientReply::Unavailable("u", "starting")}) {
    const std::string bytes = Encode(reply);
    ASSERT_FALSE(json::parse(bytes).is_discarded());
    auto decoded = DecodeClientReply(bytes);
    ASSERT_TRUE(decoded) << bytes;
    EXPECT_EQ(Encode(*decoded), bytes);
  }
  EXPECT_FALSE(DecodeClientReply(R"({"id":"x","status":"maybe"})"));
}

// Found while fuzzing the client codec (an 800 KB nested reply run through
// fuzz/client_messages_fuzzer: ASan stack-overflow; the target's 4 KB
// max_len is too short to reach that depth by itself): nlohmann/json parses
// any depth, but re-serialising `result` recursed once per level.
TEST(DecodeClientReply, DeeplyNestedReplyIsRefusedNotStackOverflow) {
  const std::size_t depth = 400000;
  const std::string deep =
      R"({"id":"x","status":"answered","result":)" + std::string(depth, '[') + std::string(depth, ']') + "}";
  EXPECT_FALSE(DecodeClientReply(deep));
  const std::string shallow = R"({"id":"x","status":"answered","result":)" + std::string(60, '[') +
                              std::string(60, ']') + "}";
  EXPECT_TRUE(DecodeClientReply(shallow)) << "payload-deep results are replies";
}

// Found by fuzz/client_messages_fuzzer: a committed reply without `result`
// was accepted, and Encode then wrote `"result":}` (not JSON).
TEST(DecodeClientReply, CommittedOrAnsweredWithoutResultIsRefusedNotReencodedAsInvalidJson) {
  EXPECT_FALSE(DecodeClientReply(R"({"id":"r1","status":"committed","seq":1})"));
  EXPECT_FALSE(DecodeClientReply(R"({"id":"q1","status":"answered"})"));
  auto with_null = DecodeClientReply(R"({"id":"q1","status":"answered","result":null})");
  ASSERT_TRUE(with_null);
  EXPECT_FALSE(json::parse(Encode(*with_null), nullptr, false).is_discarded());
}

TEST(Fnv1a64Hex, KnownVectors) {
  EXPECT_EQ(Fnv1a64Hex(""), "cbf29ce484222325");
  EXPECT_EQ(Fnv1a64Hex("a"), "af63dc4c8601ec8c");
  EXPECT_EQ(Fnv1a64Hex("foobar"), "85944171f73967e8");
}

}  // namespace
}  // namespace nvs::protocol
