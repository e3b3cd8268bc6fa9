#include "nvs/voter/voter.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

namespace nvs::voter {
namespace {

const char* const kOk = R"({"ok":true,"changed":[]})";
const char* const kOkReordered = R"({"changed":[],"ok":true})";
const char* const kOther = R"({"ok":true,"changed":[{"output":0,"input":1}]})";
const char* const kErrA = R"({"ok":false,"error":"locked","message":"output 0 is locked by panel-2"})";
const char* const kErrB = R"({"ok":false,"error":"locked","message":"locked by owner panel-2"})";

Outcome Reply(const char* variant, const char* result) { return {variant, OutcomeKind::kReply, result, "", ""}; }
Outcome Crash(const char* variant) { return {variant, OutcomeKind::kCrashed, "", "killed by SIGSEGV", ""}; }
Outcome Hang(const char* variant) { return {variant, OutcomeKind::kHung, "", "no reply in 200 ms", ""}; }
Outcome Garbage(const char* variant) { return {variant, OutcomeKind::kProtocolError, "", "not JSON", ""}; }
Outcome Pending(const char* variant) { return {variant, OutcomeKind::kPending, "", "", ""}; }
Outcome Excluded(const char* variant) { return {variant, OutcomeKind::kExcluded, "", "restarted for seq 4", ""}; }

using Names = std::vector<std::string>;

struct Row {
  const char* name;
  std::vector<Outcome> outcomes;
  VerdictKind kind;
  const char* result;  // kCommit
  Names dissenting;
  Names faulted;
};

void Check(const Row& row, const Policy& policy) {
  SCOPED_TRACE(row.name);
  const Verdict verdict = Decide(row.outcomes, policy);
  EXPECT_EQ(ToString(verdict.kind), ToString(row.kind)) << verdict.reason;
  if (row.kind == VerdictKind::kCommit) {
    EXPECT_EQ(ComparableForm(verdict.result, policy.ignored), ComparableForm(row.result, policy.ignored));
  }
  EXPECT_EQ(verdict.dissenting, row.dissenting);
  EXPECT_EQ(verdict.Faulted(), row.faulted);
  EXPECT_FALSE(verdict.reason.empty());
}

// ARCHITECTURE.md §3, three variants, majority.
TEST(DecideThreeVariants, EveryRowOfTheVerdictTable) {
  const Policy policy = Policy::DefaultFor(3);
  ASSERT_EQ(policy.kind, PolicyKind::kMajority);
  ASSERT_EQ(policy.Quorum(), 2u);
  const Row rows[] = {
      {"all agree", {Reply("a", kOk), Reply("b", kOkReordered), Reply("c", kOk)}, VerdictKind::kCommit, kOk, {}, {}},
      {"messages are not voted on", {Reply("a", kErrA), Reply("b", kErrB), Reply("c", kErrA)}, VerdictKind::kCommit,
       kErrA, {}, {}},
      {"one dissenter", {Reply("a", kOk), Reply("b", kOther), Reply("c", kOk)}, VerdictKind::kCommit, kOk, {"b"}, {"b"}},
      {"one crashed", {Reply("a", kOk), Crash("b"), Reply("c", kOk)}, VerdictKind::kCommit, kOk, {}, {"b"}},
      {"one hung", {Hang("a"), Reply("b", kOk), Reply("c", kOk)}, VerdictKind::kCommit, kOk, {}, {"a"}},
      {"one garbage", {Reply("a", kOk), Reply("b", kOk), Garbage("c")}, VerdictKind::kCommit, kOk, {}, {"c"}},
      {"two crashed", {Crash("a"), Crash("b"), Reply("c", kOk)}, VerdictKind::kPoison, nullptr, {"c"}, {"a", "b"}},
      {"crash and hang", {Crash("a"), Reply("b", kOk), Hang("c")}, VerdictKind::kPoison, nullptr, {"b"}, {"a", "c"}},
      {"all died", {Crash("a"), Hang("b"), Crash("c")}, VerdictKind::kPoison, nullptr, {}, {"a", "b", "c"}},
      {"all disagree", {Reply("a", kOk), Reply("b", kOther), Reply("c", kErrA)}, VerdictKind::kNoQuorum, nullptr,
       {"a", "b", "c"}, {}},
      {"crash and split", {Reply("a", kOk), Crash("b"), Reply("c", kOther)}, VerdictKind::kNoQuorum, nullptr,
       {"a", "c"}, {"b"}},
      {"garbage and split", {Garbage("a"), Reply("b", kOk), Reply("c", kOther)}, VerdictKind::kNoQuorum, nullptr,
       {"b", "c"}, {"a"}},
      {"one crash, two garbage", {Crash("a"), Garbage("b"), Garbage("c")}, VerdictKind::kNoQuorum, nullptr, {},
       {"a", "b", "c"}},
      {"one excluded", {Reply("a", kOk), Excluded("b"), Reply("c", kOk)}, VerdictKind::kCommit, kOk, {}, {}},
      {"excluded and crashed", {Reply("a", kOk), Excluded("b"), Crash("c")}, VerdictKind::kNoQuorum, nullptr, {"a"},
       {"c"}},
      {"excluded is not a death", {Crash("a"), Excluded("b"), Reply("c", kOk)}, VerdictKind::kNoQuorum, nullptr,
       {"c"}, {"a"}},
  };
  for (const auto& row : rows) Check(row, policy);
}

// ARCHITECTURE.md §3, two variants: unanimity; one failure is survived.
TEST(DecideTwoVariants, EveryRowOfTheVerdictTable) {
  const Policy policy = Policy::DefaultFor(2);
  ASSERT_EQ(policy.kind, PolicyKind::kUnanimous);
  const Row rows[] = {
      {"both agree", {Reply("a", kOk), Reply("b", kOk)}, VerdictKind::kCommit, kOk, {}, {}},
      {"one crashed", {Crash("a"), Reply("b", kOk)}, VerdictKind::kCommit, kOk, {}, {"a"}},
      {"one hung", {Reply("a", kOk), Hang("b")}, VerdictKind::kCommit, kOk, {}, {"b"}},
      {"split is refused", {Reply("a", kOk), Reply("b", kOther)}, VerdictKind::kNoQuorum, nullptr, {"a", "b"}, {}},
      {"both crashed", {Crash("a"), Crash("b")}, VerdictKind::kPoison, nullptr, {}, {"a", "b"}},
      {"crash and hang", {Hang("a"), Crash("b")}, VerdictKind::kPoison, nullptr, {}, {"a", "b"}},
      {"garbage and reply", {Garbage("a"), Reply("b", kOk)}, VerdictKind::kCommit, kOk, {}, {"a"}},
  };
  for (const auto& row : rows) Check(row, policy);
}

TEST(DecidePrimary, PrimaryWinsAndDissentIsRecorded) {
  Policy policy;
  policy.kind = PolicyKind::kPrimary;
  policy.configured = 3;
  policy.primary = "b";
  const Row rows[] = {
      {"primary against two", {Reply("a", kOk), Reply("b", kOther), Reply("c", kOk)}, VerdictKind::kCommit, kOther,
       {"a", "c"}, {"a", "c"}},
      {"primary first", {Pending("a"), Reply("b", kOther), Pending("c")}, VerdictKind::kCommit, kOther, {}, {}},
      {"waits for the primary", {Reply("a", kOk), Pending("b"), Reply("c", kOk)}, VerdictKind::kPending, nullptr, {},
       {}},
      {"primary died: majority", {Reply("a", kOk), Crash("b"), Reply("c", kOk)}, VerdictKind::kCommit, kOk, {}, {"b"}},
      {"primary died with another", {Reply("a", kOk), Crash("b"), Hang("c")}, VerdictKind::kPoison, nullptr, {"a"},
       {"b", "c"}},
  };
  for (const auto& row : rows) Check(row, policy);
}

TEST(DecideEarly, CommitsAsSoonAsAQuorumAgrees) {
  const Policy policy = Policy::DefaultFor(3);
  Verdict v = Decide(std::vector<Outcome>{Reply("a", kOk), Reply("b", kOk), Pending("c")}, policy);
  EXPECT_EQ(v.kind, VerdictKind::kCommit);
  EXPECT_EQ(v.pending, Names{"c"});
  // Variants not listed at all count as pending.
  v = Decide(std::vector<Outcome>{Reply("a", kOk), Reply("b", kOk)}, policy);
  EXPECT_EQ(v.kind, VerdictKind::kCommit);
  v = Decide(std::vector<Outcome>{Reply("a", kOk)}, policy);
  EXPECT_EQ(v.kind, VerdictKind::kPending);
}

TEST(DecideEarly, WaitsWhilePoisonAndNoQuorumCannotBeToldApart) {
  const Policy policy = Policy::DefaultFor(3);
  EXPECT_EQ(Decide(std::vector<Outcome>{Crash("a"), Reply("b", kOk), Pending("c")}, policy).kind,
            VerdictKind::kPending);
  EXPECT_EQ(Decide(std::vector<Outcome>{Crash("a"), Crash("b"), Pending("c")}, policy).kind, VerdictKind::kPoison);
  EXPECT_EQ(Decide(std::vector<Outcome>{Reply("a", kOk), Reply("b", kOther), Pending("c")}, policy).kind,
            VerdictKind::kPending);
}

TEST(DecideEarly, UnanimityWaitsForEveryone) {
  const Policy policy = Policy::DefaultFor(2);
  EXPECT_EQ(Decide(std::vector<Outcome>{Reply("a", kOk), Pending("b")}, policy).kind, VerdictKind::kPending);
  EXPECT_EQ(Decide(std::vector<Outcome>{Crash("a"), Pending("b")}, policy).kind, VerdictKind::kPending);
}

TEST(Decide, UsesAPrecomputedComparableForm) {
  const Policy policy = Policy::DefaultFor(3);
  Outcome a = Reply("a", kOk), b = Reply("b", kOther), c = Reply("c", kOk);
  b.comparable = ComparableForm(kOk, policy.ignored);  // the caller says b's reply compares equal
  const Verdict v = Decide(std::vector<Outcome>{a, b, c}, policy);
  EXPECT_EQ(v.kind, VerdictKind::kCommit);
  EXPECT_EQ(v.agreeing, (Names{"a", "b", "c"}));
}

TEST(ComparableForm, IgnoresOnlyTheNamedPointers) {
  EXPECT_EQ(ComparableForm(kErrA, {"/message"}), ComparableForm(kErrB, {"/message"}));
  EXPECT_NE(ComparableForm(kErrA, {}), ComparableForm(kErrB, {}));
  EXPECT_EQ(ComparableForm(R"({"a":[1,{"m":2}]})", {"/a/1/m"}), R"({"a":[1,{}]})");
  EXPECT_EQ(ComparableForm(R"({"a":[1,2]})", {"/a/0"}), R"({"a":[2]})");
  EXPECT_EQ(ComparableForm(R"([1])", {"/x", "/0/y", "bad pointer"}), "[1]");
  EXPECT_EQ(ComparableForm("not json", {"/message"}), "not json");
}

// ---- Properties over random outcome sets ---------------------------------

std::vector<Outcome> RandomOutcomes(std::mt19937& rng, std::size_t n) {
  static const char* const kNames[] = {"a", "b", "c", "d", "e"};
  static const char* const kResults[] = {kOk, kOkReordered, kOther, kErrA, kErrB};
  std::vector<Outcome> outcomes;
  for (std::size_t i = 0; i < n; ++i) {
    const int kind = std::uniform_int_distribution<int>(0, 9)(rng);
    const char* result = kResults[std::uniform_int_distribution<int>(0, 4)(rng)];
    if (kind < 5) outcomes.push_back(Reply(kNames[i], result));
    else if (kind < 7) outcomes.push_back(Crash(kNames[i]));
    else if (kind < 8) outcomes.push_back(Hang(kNames[i]));
    else if (kind < 9) outcomes.push_back(i % 3 == 0 ? Excluded(kNames[i]) : Garbage(kNames[i]));
    else outcomes.push_back(Pending(kNames[i]));
  }
  return outcomes;
}

std::vector<Policy> AllPolicies(std::size_t n) {
  std::vector<Policy> policies;
  for (PolicyKind kind : {PolicyKind::kMajority, PolicyKind::kUnanimous, PolicyKind::kPrimary}) {
    Policy p = Policy::DefaultFor(n);
    p.kind = kind;
    p.primary = "b";
    policies.push_back(p);
  }
  return policies;
}

TEST(DecideProperties, PermutingVariantsNeverChangesTheVerdict) {
  std::mt19937 rng(20261126);
  for (int trial = 0; trial < 3000; ++trial) {
    const std::size_t n = 2 + trial % 4;
    auto outcomes = RandomOutcomes(rng, n);
    for (const Policy& policy : AllPolicies(n)) {
      const Verdict base = Decide(outcomes, policy);
      auto shuffled = outcomes;
      std::shuffle(shuffled.begin(), shuffled.end(), rng);
      const Verdict again = Decide(shuffled, policy);
      ASSERT_EQ(again.kind, base.kind);
      ASSERT_EQ(ComparableForm(again.result, policy.ignored), ComparableForm(base.result, policy.ignored));
      ASSERT_EQ(again.agreeing, base.agreeing);
      ASSERT_EQ(again.dissenting, base.dissenting);
      ASSERT_EQ(again.Faulted(), base.Faulted());
    }
  }
}

TEST(DecideProperties, ADecidedVerdictSurvivesLateOutcomes) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 3000; ++trial) {
    const std::size_t n = 2 + trial % 4;
    auto final_outcomes = RandomOutcomes(rng, n);
    for (auto& o : final_outcomes) {
      if (o.kind == OutcomeKind::kPending) o = Crash(o.variant.c_str());
    }
    for (const Policy& policy : AllPolicies(n)) {
      // Reveal the outcomes one at a time, in a random order.
      auto order = final_outcomes;
      std::shuffle(order.begin(), order.end(), rng);
      std::vector<Outcome> partial;
      for (const auto& o : order) partial.push_back(Pending(o.variant.c_str()));
      std::optional<Verdict> first_decided;
      for (std::size_t i = 0; i < order.size(); ++i) {
        partial[i] = order[i];
        const Verdict v = Decide(partial, policy);
        if (!first_decided && v.kind != VerdictKind::kPending) first_decided = v;
        if (first_decided) {
          ASSERT_EQ(v.kind, first_decided->kind) << "trial " << trial;
          ASSERT_EQ(ComparableForm(v.result, policy.ignored), ComparableForm(first_decided->result, policy.ignored));
        }
      }
      ASSERT_TRUE(first_decided) << "all outcomes in, still pending (trial " << trial << ")";
    }
  }
}

TEST(DecideProperties, PoisonNeedsTwoDeathsAndCommitNeverHidesTwoDeathsWithoutQuorum) {
  std::mt19937 rng(99);
  for (int trial = 0; trial < 3000; ++trial) {
    const std::size_t n = 2 + trial % 4;
    auto outcomes = RandomOutcomes(rng, n);
    for (const Policy& policy : AllPolicies(n)) {
      const Verdict v = Decide(outcomes, policy);
      if (v.kind == VerdictKind::kPoison) {
        ASSERT_GE(v.crashed.size() + v.hung.size(), 2u);
      }
      if (v.kind == VerdictKind::kCommit && policy.kind != PolicyKind::kPrimary) {
        ASSERT_GE(v.agreeing.size(), policy.Quorum());
      }
    }
  }
}

}  // namespace
}  // namespace nvs::voter
