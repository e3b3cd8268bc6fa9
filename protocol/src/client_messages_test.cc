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
      // Unreadable, yet its id is echoed when it can be read, so that a
      // client can match the rejection (an outside client waited 10 s for it).
      {R"({"type":"command","id":"a","cmd":)" + std::string(100, '[') + std::string(100, ']') + "}", "bad_request",
       true},
      {R"({"cmd":)" + std::string(100, '[') + std::string(100, ']') + R"(,"type":"command","id":"a"})", "bad_request",
       true},
      {R"({"type":"command","id":"a","cmd":1e400})", "bad_request", true},
      {R"({"type":"command","id":"a","cmd":)", "bad_request", true},
      {R"({"type":"command","cmd":{"id":"inner"},"oops"})", "bad_request", false},
      {R"({"type":"command","id":"a","cmd":1,"expires_at_ms":-5})", "bad_request", true},
      {R"({"type":"command","id":"a","cmd":1,"expires_at_ms":"soon"})", "bad_request", true},
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
  for (const ClientRequest& request :
       {ClientRequest{ClientRequestType::kCommand, "a\"b", R"({"op":"dump"})", std::nullopt},
        ClientRequest{ClientRequestType::kCommand, "e", R"({"op":"dump"})", 1764151200123},
        ClientRequest{ClientRequestType::kQuery, "q", R"({"op":"dump"})", std::nullopt},
        ClientRequest{ClientRequestType::kStatus, "s", "", std::nullopt},
        ClientRequest{ClientRequestType::kQuarantine, "r", R"({"action":"release","note":"fixed","report":"q-1"})",
                      std::nullopt}}) {
    auto decoded = DecodeClientRequest(Encode(request));
    ASSERT_TRUE(decoded.request) << Encode(request);
    EXPECT_EQ(Encode(*decoded.request), Encode(request));
    EXPECT_EQ(decoded.request->expires_at_ms, request.expires_at_ms);
  }
}

TEST(DecodeClientRequest, SaysWhyTheBytesAreNotJson) {
  auto overflow = DecodeClientRequest(R"({"type":"command","id":"big","cmd":{"gain":1e400}})");
  ASSERT_FALSE(overflow.request);
  EXPECT_EQ(overflow.rejection.id, "big");
  EXPECT_NE(overflow.rejection.reason.find("number overflow"), std::string::npos) << overflow.rejection.reason;
  EXPECT_NE(overflow.rejection.reason.find("IEEE 754 double"), std::string::npos) << overflow.rejection.reason;
  auto syntax = DecodeClientRequest(R"({"type":"command","id":"s1","cmd":{"a":tru}})");
  ASSERT_FALSE(syntax.request);
  EXPECT_EQ(syntax.rejection.id, "s1");
  EXPECT_NE(syntax.rejection.reason.find("syntax error"), std::string::npos) << syntax.rejection.reason;
  // Nesting: the request object is level 1, so 64 levels in all are taken
  // and 65 are not.
  const auto nested = [](int levels) {  // the request, then levels - 1 arrays as its cmd
    return R"({"type":"command","id":"n","cmd":)" + std::string(levels - 1, '[') + std::string(levels - 1, ']') + "}";
  };
  EXPECT_TRUE(DecodeClientRequest(nested(64)).request);
  auto deep = DecodeClientRequest(nested(65));
  ASSERT_FALSE(deep.request);
  EXPECT_EQ(deep.rejection.id, "n");
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
