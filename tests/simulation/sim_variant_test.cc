#include "sim_variant.h"

#include <gtest/gtest.h>

#include <variant>

#include "nvs/protocol/messages.h"

namespace nvs::simulation {
namespace {
namespace proto = nvs::protocol;

std::string ApplyBytes(std::uint64_t seq, const std::string& cmd) {
  return proto::Encode(proto::Request{proto::Apply{seq, 1, cmd}});
}

proto::Reply Only(const SimVariant::Outcome& out) {
  EXPECT_EQ(out.replies.size(), 1u);
  auto decoded = proto::DecodeReply(out.replies.at(0));
  EXPECT_TRUE(decoded.ok());
  return decoded.value();
}

TEST(SimVariant, SpeaksTheProtocolAndKeepsItsRegisters) {
  SimVariant v("a", 4, {});
  auto hello = proto::DecodeReply(v.Hello("a.1.token"));
  ASSERT_TRUE(hello.ok());
  EXPECT_EQ(std::get<proto::Hello>(hello.value()).variant, "a.1.token");
  const auto applied = std::get<proto::Applied>(Only(v.Receive(ApplyBytes(1, R"({"op":"add","slot":2,"value":5})"))));
  EXPECT_EQ(applied.seq, 1u);
  EXPECT_EQ(applied.result, R"({"ok":true,"slot":2,"value":5})");
  EXPECT_EQ(v.State(), R"({"slots":[0,0,5,0]})");
  const auto answer = std::get<proto::Answer>(
      Only(v.Receive(proto::Encode(proto::Request{proto::Query{1, R"({"op":"get","slot":2})"}}))));
  EXPECT_EQ(answer.result, R"({"ok":true,"value":5})");
  const auto range = std::get<proto::Applied>(Only(v.Receive(ApplyBytes(2, R"({"op":"set","slot":9,"value":1})"))));
  EXPECT_EQ(range.result, R"({"error":"range","ok":false})") << "refused, and nothing changed";
  EXPECT_EQ(v.State(), R"({"slots":[0,0,5,0]})");
}

TEST(SimVariant, ASnapshotRestoresIntoAnother) {
  SimVariant a("a", 3, {}), b("b", 3, {});
  a.Receive(ApplyBytes(1, R"({"op":"set","slot":0,"value":7})"));
  const auto state = std::get<proto::StateReply>(Only(a.Receive(proto::Encode(proto::Request{proto::SnapshotRequest{1}}))));
  const auto restored =
      std::get<proto::Restored>(Only(b.Receive(proto::Encode(proto::Request{proto::Restore{1, state.state}}))));
  EXPECT_EQ(restored.digest, a.Digest());
  EXPECT_EQ(b.State(), a.State());
}

// Each fault fires only on a variant configured faulty for its marker.
TEST(SimVariant, FaultsFireOnlyWhereConfigured) {
  const std::string crash = R"({"fault":"crash","op":"set","slot":0,"value":1})";
  SimVariant healthy("a", 2, {}), faulty("b", 2, {"crash"});
  EXPECT_EQ(healthy.Receive(ApplyBytes(1, crash)).replies.size(), 1u);
  const auto died = faulty.Receive(ApplyBytes(1, crash));
  EXPECT_TRUE(died.died);
  EXPECT_TRUE(died.replies.empty());
  EXPECT_TRUE(faulty.dead());

  SimVariant hangs("c", 2, {"hang"});
  EXPECT_TRUE(hangs.Receive(ApplyBytes(1, R"({"fault":"hang","op":"set","slot":0,"value":1})")).hangs);
  EXPECT_TRUE(hangs.Receive(proto::Encode(proto::Request{proto::Ping{1}})).replies.empty()) << "nothing after a hang";

  SimVariant wrong("d", 2, {"wrong"});
  const auto applied =
      std::get<proto::Applied>(Only(wrong.Receive(ApplyBytes(1, R"({"fault":"wrong","op":"set","slot":0,"value":1})"))));
  EXPECT_NE(applied.result, R"({"ok":true,"slot":0,"value":1})");
  EXPECT_EQ(wrong.State(), R"({"slots":[1,0]})") << "a wrong answer, a right state";

  SimVariant corrupt("e", 2, {"corrupt"}), clean("f", 2, {});
  const std::string marked = R"({"fault":"corrupt","op":"set","slot":0,"value":1})";
  EXPECT_EQ(corrupt.Receive(ApplyBytes(1, marked)).replies, clean.Receive(ApplyBytes(1, marked)).replies)
      << "the same answer";
  EXPECT_NE(corrupt.Digest(), clean.Digest()) << "another state";

  SimVariant drops("g", 2, {"drop"});
  const auto dropped = drops.Receive(ApplyBytes(1, R"({"fault":"drop","op":"set","slot":0,"value":1})"));
  EXPECT_TRUE(dropped.died);
  EXPECT_TRUE(dropped.replies.empty()) << "its answer died with it";
}

}  // namespace
}  // namespace nvs::simulation
