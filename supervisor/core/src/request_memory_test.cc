#include "nvs/core/request_memory.h"

#include <gtest/gtest.h>

#include "nvs/core/records.h"

namespace nvs::supervisor {
namespace {

RememberedReply Committed(const std::string& id, std::uint64_t seq) {
  protocol::ClientReply reply;
  reply.id = id;
  reply.status = protocol::ClientStatus::kCommitted;
  reply.seq = seq;
  reply.result = R"({"ok":true})";
  return RememberedReply{reply, {}, 0};
}

TEST(RequestMemory, TheOldestGoesPastTheCapacity) {
  RequestMemory memory(2);
  memory.Remember("a", Committed("a", 1));
  memory.Remember("b", Committed("b", 2));
  memory.Remember("c", Committed("c", 3));
  EXPECT_FALSE(memory.Contains("a"));
  EXPECT_TRUE(memory.Contains("b"));
  EXPECT_TRUE(memory.Contains("c"));
  EXPECT_EQ(memory.size(), 2u);
}

// A forgotten id (its reply withdrawn) answered again later is the newest:
// an old place of it in the order must not evict it early.
TEST(RequestMemory, AnIdForgottenAndAnsweredAgainIsTheNewest) {
  RequestMemory memory(2);
  memory.Remember("a", Committed("a", 1));
  memory.Forget("a");
  memory.Remember("b", Committed("b", 2));
  memory.Remember("a", Committed("a", 3));
  memory.Remember("c", Committed("c", 4));
  EXPECT_FALSE(memory.Contains("b")) << "b was the oldest";
  ASSERT_TRUE(memory.Contains("a"));
  EXPECT_EQ(memory.Find("a")->Get()->seq, 3u);
  EXPECT_TRUE(memory.Contains("c"));
}

TEST(RequestMemory, AReplacedReplyCountsAsNew) {
  RequestMemory memory(2);
  memory.Remember("a", Committed("a", 1));
  memory.Remember("b", Committed("b", 2));
  memory.Remember("a", Committed("a", 5));
  memory.Remember("c", Committed("c", 6));
  EXPECT_FALSE(memory.Contains("b"));
  EXPECT_EQ(memory.Find("a")->Get()->seq, 5u);
}

TEST(RequestMemory, NothingIsRememberedWithNoCapacity) {
  RequestMemory memory(0);
  memory.Remember("a", Committed("a", 1));
  EXPECT_FALSE(memory.Contains("a"));
}

TEST(RequestMemory, AReplyKeptAsItsVerdictRecordIsReadOnARetry) {
  JournalRecord verdict;
  verdict.type = "verdict";
  verdict.seq = 12;
  verdict.id = "r";
  verdict.verdict = "COMMIT";
  verdict.result = R"({"ok":true})";
  RequestMemory memory(4);
  memory.Remember("r", RememberedReply{std::nullopt, EncodeJournalRecord(verdict), 0});
  const auto reply = memory.Find("r")->Get();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->status, protocol::ClientStatus::kCommitted);
  EXPECT_EQ(reply->seq, 12u);
}

}  // namespace
}  // namespace nvs::supervisor
