#include "nvs/protocol/messages.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

namespace nvs::protocol {
namespace {

using nlohmann::json;

Request MustDecodeRequest(std::string_view text) {
  auto decoded = DecodeRequest(text);
  EXPECT_TRUE(decoded.ok()) << text << " -> " << (decoded.ok() ? "" : decoded.error().reason);
  return decoded.ok() ? decoded.value() : Request{Ping{}};
}

Error MustFailRequest(std::string_view text) {
  auto decoded = DecodeRequest(text);
  EXPECT_FALSE(decoded.ok()) << text;
  return decoded.ok() ? Error{} : decoded.error();
}

TEST(DecodeRequest, Apply) {
  auto request = MustDecodeRequest(R"({"type":"apply","seq":7,"time_ns":12,"cmd":{"op":"dump"}})");
  const auto& apply = std::get<Apply>(request);
  EXPECT_EQ(apply.seq, 7u);
  EXPECT_EQ(apply.time_ns, 12);
  EXPECT_EQ(apply.cmd, R"({"op":"dump"})");
}

TEST(DecodeRequest, EveryType) {
  EXPECT_TRUE(std::holds_alternative<Query>(MustDecodeRequest(R"({"type":"query","seq":1,"query":1})")));
  EXPECT_TRUE(std::holds_alternative<DigestRequest>(MustDecodeRequest(R"({"type":"digest","seq":1})")));
  EXPECT_TRUE(std::holds_alternative<SnapshotRequest>(MustDecodeRequest(R"({"type":"snapshot","seq":1})")));
  EXPECT_TRUE(std::holds_alternative<Restore>(MustDecodeRequest(R"({"type":"restore","seq":1,"state":{}})")));
  EXPECT_TRUE(std::holds_alternative<Ping>(MustDecodeRequest(R"({"type":"ping","seq":9223372036854775807})")));
}

TEST(DecodeRequest, PayloadsAreNormalised) {
  // Compact, members sorted by key: equal values give equal bytes, which is
  // what fingerprints and comparisons of opaque payloads rely on.
  auto request = MustDecodeRequest(R"({"type":"apply","seq":1,"time_ns":0,"cmd":{ "op" : "x", "b":[1, 2.5], "a":null }})");
  EXPECT_EQ(std::get<Apply>(request).cmd, R"({"a":null,"b":[1,2.5],"op":"x"})");
}

TEST(DecodeRequest, UnknownMembersAreIgnored) {
  auto request = MustDecodeRequest(R"({"type":"ping","seq":3,"extra":[1,2]})");
  EXPECT_EQ(SeqOf(request), 3u);
}

// PROTOCOL.md §2: a message is exactly one JSON text; nlohmann alone took a
// byte-order mark in front and stopped at a NUL byte (an outside variant
// author found the reference variants disagreeing on both).
TEST(DecodeRequest, OneJsonTextAndNothingElse) {
  const std::string ping = R"({"type":"ping","seq":1})";
  for (const std::string& bytes : {"\xEF\xBB\xBF" + ping, ping + std::string(1, '\0'), std::string(1, '\0') + ping,
                                   ping + std::string(4, '\0'), ping + " x", ping + ping}) {
    auto decoded = DecodeRequest(bytes);
    ASSERT_FALSE(decoded.ok()) << bytes;
    EXPECT_EQ(decoded.error().code, "malformed");
    EXPECT_FALSE(decoded.error().seq.has_value());
  }
  auto spaced = DecodeRequest(" \t\r\n" + ping + " \t\r\n");
  ASSERT_TRUE(spaced.ok()) << "JSON whitespace around the object is allowed";
  EXPECT_FALSE(DecodeReply("\xEF\xBB\xBF" + std::string(R"({"type":"pong","seq":1})")).ok()) << "replies too";
}

TEST(DecodeRequest, MalformedInputsNameTheProblem) {
  struct Case {
    const char* text;
    std::string_view code;
    std::optional<std::uint64_t> seq;
  };
  const Case cases[] = {
      {"", error_code::kMalformed, std::nullopt},
      {"not json", error_code::kMalformed, std::nullopt},
      {"[1,2]", error_code::kMalformed, std::nullopt},
      {R"("apply")", error_code::kMalformed, std::nullopt},
      {R"({"seq":4})", error_code::kMalformed, 4},
      {R"({"type":5,"seq":4})", error_code::kMalformed, 4},
      {R"({"type":"frob","seq":4})", error_code::kUnknownType, 4},
      {R"({"type":"applied","seq":4})", error_code::kUnknownType, 4},
      {R"({"type":"ping"})", error_code::kMalformed, std::nullopt},
      {R"({"type":"ping","seq":-1})", error_code::kMalformed, std::nullopt},
      {R"({"type":"ping","seq":1.0})", error_code::kMalformed, std::nullopt},
      {R"({"type":"ping","seq":"1"})", error_code::kMalformed, std::nullopt},
      {R"({"type":"ping","seq":true})", error_code::kMalformed, std::nullopt},
      {R"({"type":"ping","seq":9223372036854775808})", error_code::kMalformed, std::nullopt},
      {R"({"type":"apply","seq":2,"cmd":{}})", error_code::kMalformed, 2},
      {R"({"type":"apply","seq":2,"time_ns":-5,"cmd":{}})", error_code::kMalformed, 2},
      {R"({"type":"apply","seq":2,"time_ns":5})", error_code::kMalformed, 2},
      {R"({"type":"restore","seq":2})", error_code::kMalformed, 2},
      {R"({"type":"ping","seq":1,"x":"\ud800"})", error_code::kMalformed, std::nullopt},
      {"{\"type\":\"ping\",\"seq\":1,\"x\":\"\xff\"}", error_code::kMalformed, std::nullopt},
      {R"({"type":"ping","seq":1} trailing)", error_code::kMalformed, std::nullopt},
  };
  for (const auto& c : cases) {
    Error error = MustFailRequest(c.text);
    EXPECT_EQ(error.code, c.code) << c.text;
    EXPECT_EQ(error.seq, c.seq) << c.text;
    EXPECT_FALSE(error.reason.empty()) << c.text;
  }
}

TEST(DecodeRequest, DeepNestingIsMalformedNotACrash) {
  std::string deep = R"({"type":"apply","seq":1,"time_ns":1,"cmd":)" + std::string(100000, '[') +
                     std::string(100000, ']') + "}";
  EXPECT_EQ(MustFailRequest(deep).code, error_code::kMalformed);
  std::string ok = R"({"type":"apply","seq":1,"time_ns":1,"cmd":)" + std::string(60, '[') + std::string(60, ']') + "}";
  MustDecodeRequest(ok);
}

TEST(DecodeRequest, BracketsInsideStringsDoNotCount) {
  std::string text = R"({"type":"query","seq":1,"query":")" + std::string(1000, '[') + R"(\"{"})";
  MustDecodeRequest(text);
}

TEST(DecodeRequest, OversizeIsTooLarge) {
  std::string big = R"({"type":"apply","seq":1,"time_ns":1,"cmd":")" + std::string(kMaxMessageBytes, 'x') + "\"}";
  EXPECT_EQ(MustFailRequest(big).code, error_code::kTooLarge);
}

TEST(Codec, RequestsRoundTrip) {
  const Request requests[] = {
      Apply{1, 99, R"({"client":"a","op":"route","routes":[{"input":1,"output":0}]})"},
      Query{2, R"({"op":"dump"})"},
      DigestRequest{3},
      SnapshotRequest{4},
      Restore{5, R"({"inputs":1})"},
      Ping{6},
  };
  for (const auto& request : requests) {
    const std::string bytes = Encode(request);
    auto decoded = DecodeRequest(bytes);
    ASSERT_TRUE(decoded.ok()) << bytes;
    EXPECT_EQ(decoded.value().index(), request.index());
    EXPECT_EQ(Encode(decoded.value()), bytes);
    EXPECT_EQ(SeqOf(decoded.value()), SeqOf(request));
  }
}

TEST(Codec, RepliesRoundTrip) {
  const Reply replies[] = {
      Hello{1, "router-a.3", "router-a \"1.0\" ü"},
      Applied{1, R"({"changed":[],"ok":true})"},
      Answer{2, R"({"error":"not_a_query","message":"x","ok":false})"},
      DigestReply{3, "cbf29ce484222325"},
      StateReply{4, R"({"inputs":1})", "af63dc4c8601ec8c"},
      Restored{5, "0000000000000000"},
      Pong{6},
      Error{7, "unknown_type", "no"},
      Error{std::nullopt, "malformed", "garbage"},
  };
  for (const auto& reply : replies) {
    const std::string bytes = Encode(reply);
    auto decoded = DecodeReply(bytes);
    ASSERT_TRUE(decoded.ok()) << bytes << ": " << decoded.error().reason;
    EXPECT_EQ(decoded.value().index(), reply.index());
    EXPECT_EQ(Encode(decoded.value()), bytes);
    EXPECT_EQ(SeqOf(decoded.value()), SeqOf(reply));
    EXPECT_EQ(TypeName(decoded.value()), json::parse(bytes)["type"].get<std::string>());
  }
}

TEST(DecodeReply, MalformedReplies) {
  const char* cases[] = {
      R"({"type":"hello","variant":"a","impl":"b"})",
      R"({"type":"hello","protocol":"1","variant":"a","impl":"b"})",
      R"({"type":"applied","seq":1})",
      R"({"type":"digest","seq":1,"digest":5})",
      R"({"type":"state","seq":1,"digest":"x"})",
      R"({"type":"error","seq":-3,"code":"x","reason":"y"})",
      R"({"type":"error","seq":1,"reason":"y"})",
      "\x01\x02",
  };
  for (const char* text : cases) EXPECT_FALSE(DecodeReply(text).ok()) << text;
  EXPECT_EQ(DecodeReply(R"({"type":"pang","seq":1})").error().code, error_code::kUnknownType);
}

// Found by reading the codec while fuzzing it: `protocol` was read with
// get<int>(), which truncates, so 4294967297 (2^32 + 1) passed nvsd's
// version check as 1.
TEST(DecodeReply, HelloProtocolBeyondIntIsMalformedNotTruncated) {
  for (const char* protocol : {"4294967297", "2147483648", "-2147483649", "18446744073709551615"}) {
    const std::string text =
        std::string(R"({"type":"hello","protocol":)") + protocol + R"(,"variant":"a","impl":"b"})";
    auto decoded = DecodeReply(text);
    ASSERT_FALSE(decoded.ok()) << text;
    EXPECT_EQ(decoded.error().code, error_code::kMalformed);
  }
  auto one = DecodeReply(R"({"type":"hello","protocol":1,"variant":"a","impl":"b"})");
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(std::get<Hello>(one.value()).protocol, 1);
  auto negative = DecodeReply(R"({"type":"hello","protocol":-2147483648,"variant":"a","impl":"b"})");
  ASSERT_TRUE(negative.ok()) << "any int: nvsd then refuses a version it does not speak";
  EXPECT_EQ(std::get<Hello>(negative.value()).protocol, -2147483647 - 1);
}

TEST(Encode, QuotesStringsSafely) {
  const std::string bytes = Encode(Error{1, "bad_state", "line\n\"quoted\" \xff"});
  auto parsed = json::parse(bytes);
  EXPECT_EQ(parsed["reason"].get<std::string>().substr(0, 13), "line\n\"quoted\"");
}

TEST(CompactJson, NormalisesWhitespace) {
  auto compact = CompactJson(" { \"b\" : [ 1 , 2 ] , \"a\" : \"\u00fc\" } ");
  ASSERT_TRUE(compact.ok());
  EXPECT_EQ(compact.value(), "{\"a\":\"\u00fc\",\"b\":[1,2]}");
  EXPECT_FALSE(CompactJson("{").ok());
}

TEST(JsonNestingDepth, CountsStructureOnly) {
  EXPECT_EQ(JsonNestingDepth("1"), 0);
  EXPECT_EQ(JsonNestingDepth("[[{}]]"), 3);
  EXPECT_EQ(JsonNestingDepth(R"(["[[[["])"), 1);
  EXPECT_EQ(JsonNestingDepth(R"(["\"[[",[]])"), 2);
}

}  // namespace
}  // namespace nvs::protocol
