#include "nvs/core/variant_channel.h"

#include <gtest/gtest.h>

namespace nvs::supervisor {
namespace {

using Time = VariantChannel::Time;

Time At(int ms) { return Time{} + std::chrono::milliseconds(ms); }

Sent Vote(std::uint64_t seq) { return Sent{Purpose::kVote, "applied", seq, seq, {}}; }
Sent Digest(std::uint64_t seq) { return Sent{Purpose::kCheckpointDigest, "digest", seq, 0, {}}; }
Sent CatchUp(std::uint64_t seq) { return Sent{Purpose::kCatchUp, "applied", seq, 0, {}}; }

std::vector<std::uint64_t> Seqs(const std::vector<VariantChannel::Transmission>& out) {
  std::vector<std::uint64_t> seqs;
  for (const auto& t : out) seqs.push_back(t.sent.seq);
  return seqs;
}

TEST(VariantChannel, CommandsGoOutAtOnceAndAreAnsweredInOrder) {
  VariantChannel channel;
  ASSERT_TRUE(channel.Send(Vote(1), "a1", At(0)).has_value());
  ASSERT_TRUE(channel.Send(Vote(2), "a2", At(1)).has_value());
  EXPECT_EQ(channel.in_flight(), 2u);
  EXPECT_EQ(channel.head()->seq, 1u);
  EXPECT_TRUE(channel.Answered(At(5), nullptr, nullptr, 128).empty());
  EXPECT_EQ(channel.head()->seq, 2u);
  EXPECT_EQ(channel.last_reply_at(), At(5)) << "the next head's deadline counts from the last reply";
}

// A command is not sent behind a request that is not a command: it waits
// until that is answered, so the request a variant dies on is the oldest
// unanswered one.
TEST(VariantChannel, ACommandWaitsBehindADigestAndWhatFollowsItWaitsToo) {
  VariantChannel channel;
  ASSERT_TRUE(channel.Send(Vote(1), "a1", At(0)).has_value());
  ASSERT_TRUE(channel.Send(Digest(1), "d1", At(0)).has_value()) << "a digest may go behind a command";
  EXPECT_FALSE(channel.Send(Vote(2), "a2", At(1)).has_value()) << "held behind the digest";
  EXPECT_FALSE(channel.Send(Digest(2), "d2", At(1)).has_value()) << "behind what is held, everything waits";
  EXPECT_EQ(channel.in_flight(), 4u);
  const auto outstanding = channel.Outstanding();
  ASSERT_EQ(outstanding.size(), 4u);
  EXPECT_TRUE(outstanding[1].second);
  EXPECT_FALSE(outstanding[2].second) << "held: never sent";
  // The command is answered: still behind the digest.
  EXPECT_TRUE(channel.Answered(At(2), nullptr, nullptr, 128).empty());
  // The digest is answered: the held command goes, and the digest behind it
  // (a digest may follow a command), in order.
  EXPECT_EQ(Seqs(channel.Answered(At(3), nullptr, nullptr, 128)), (std::vector<std::uint64_t>{2, 2}));
  EXPECT_EQ(channel.out().front().sent_at, At(3)) << "sent when it went out, not when it was held";
}

TEST(VariantChannel, AHeldCommandDecidedMeanwhileIsNotSent) {
  VariantChannel channel;
  ASSERT_TRUE(channel.Send(Digest(1), "d1", At(0)).has_value());
  EXPECT_FALSE(channel.Send(Vote(2), "a2", At(1)).has_value());
  EXPECT_FALSE(channel.Send(Vote(3), "a3", At(1)).has_value());
  std::vector<Sent> dropped;
  const auto out = channel.Answered(At(2), [](const Sent& s) { return s.seq == 2; }, &dropped, 128);
  EXPECT_EQ(Seqs(out), (std::vector<std::uint64_t>{3}));
  ASSERT_EQ(dropped.size(), 1u);
  EXPECT_EQ(dropped[0].seq, 2u);
}

TEST(VariantChannel, ACatchUpGoesOutAWindowAtATime) {
  VariantChannel channel;
  std::vector<VariantChannel::Transmission> out;
  for (std::uint64_t seq = 1; seq <= 5; ++seq) {
    for (auto& t : channel.Pace(CatchUp(seq), "c", 2, At(0))) out.push_back(std::move(t));
  }
  EXPECT_EQ(Seqs(out), (std::vector<std::uint64_t>{1, 2}));
  EXPECT_TRUE(channel.waiting());
  EXPECT_EQ(Seqs(channel.Answered(At(1), nullptr, nullptr, 2)), (std::vector<std::uint64_t>{3}));
  EXPECT_EQ(Seqs(channel.Answered(At(2), nullptr, nullptr, 2)), (std::vector<std::uint64_t>{4}));
  EXPECT_EQ(channel.Outstanding().size(), 2u) << "a paced request not sent yet blames nothing";
  channel.Clear();
  EXPECT_TRUE(channel.idle());
}

TEST(VariantChannel, HeartbeatsKnowWhenItLastSentSomething) {
  VariantChannel channel;
  ASSERT_TRUE(channel.Send(Sent{Purpose::kHeartbeat, "pong", 0, 0, {}}, "p", At(7)).has_value());
  EXPECT_EQ(channel.last_sent_at(), At(7));
  EXPECT_EQ(channel.last_reply_at(), At(7)) << "a new head's deadline counts from its sending";
}

}  // namespace
}  // namespace nvs::supervisor
