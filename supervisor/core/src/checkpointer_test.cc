#include "nvs/core/checkpointer.h"

#include <gtest/gtest.h>

namespace nvs::supervisor {
namespace {

TEST(Checkpointer, NothingIsDecidedBeforeEveryAnswerIsIn) {
  Checkpointer c;
  EXPECT_FALSE(c.Take().has_value()) << "none pending";
  c.Start(10, "a", {"b", "c"});
  c.OnSnapshot("a", 10, "{}", "D");
  c.OnDigest("b", 10, "D");
  EXPECT_FALSE(c.Take().has_value()) << "c has not answered";
  EXPECT_TRUE(c.pending());
  c.OnDigest("c", 10, "D");
  const auto d = c.Take();
  ASSERT_TRUE(d.has_value());
  EXPECT_TRUE(d->accepted);
  EXPECT_EQ(d->seq, 10u);
  EXPECT_EQ(d->digest, "D");
  EXPECT_EQ(d->state, "{}");
  EXPECT_TRUE(d->mismatched.empty());
  EXPECT_FALSE(c.pending());
}

TEST(Checkpointer, AMinorityWithAnotherDigestIsNamed) {
  Checkpointer c;
  c.Start(4, "a", {"b", "c"});
  c.OnSnapshot("a", 4, "{}", "D");
  c.OnDigest("b", 4, "E");
  c.OnDigest("c", 4, "D");
  const auto d = c.Take();
  ASSERT_TRUE(d.has_value());
  EXPECT_TRUE(d->accepted);
  EXPECT_EQ(d->mismatched, (std::vector<std::string>{"b"}));
}

// The snapshot's digest without a strict majority: no checkpoint, and
// everyone asked goes to a sync round.
TEST(Checkpointer, WithoutAMajorityForTheSnapshotThereIsNone) {
  Checkpointer c;
  c.Start(4, "a", {"b"});
  c.OnSnapshot("a", 4, "{}", "D");
  c.OnDigest("b", 4, "E");
  auto d = c.Take();
  ASSERT_TRUE(d.has_value());
  EXPECT_FALSE(d->accepted) << "one of two is not a majority";
  EXPECT_EQ(d->asked, (std::vector<std::string>{"a", "b"}));

  c.Start(5, "a", {"b", "c"});
  c.OnSnapshot("a", 5, "{}", "D");
  c.OnDigest("b", 5, "E");
  c.OnDigest("c", 5, "E");
  d = c.Take();
  ASSERT_TRUE(d.has_value());
  EXPECT_FALSE(d->accepted) << "the majority holds another digest than the snapshot";
}

TEST(Checkpointer, AnswersOfAnotherSeqOrAfterAbandonAreIgnored) {
  Checkpointer c;
  c.Start(7, "a", {"b"});
  c.OnSnapshot("a", 6, "{}", "D");
  c.OnDigest("b", 7, "D");
  EXPECT_FALSE(c.Take().has_value()) << "the snapshot of seq 6 is not this one's";
  c.Abandon();
  c.OnSnapshot("a", 7, "{}", "D");
  EXPECT_FALSE(c.Take().has_value());
  EXPECT_FALSE(c.pending());
}

}  // namespace
}  // namespace nvs::supervisor
