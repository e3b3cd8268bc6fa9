#include "nvs/core/retest.h"

#include <gtest/gtest.h>

#include "nvs/protocol/messages.h"

namespace nvs::supervisor {
namespace {

namespace proto = nvs::protocol;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

const Clock::time_point kT0 = Clock::time_point() + std::chrono::hours(1);

std::string Hello() { return proto::Encode(proto::Reply(proto::Hello{1, "probe", "test"})); }
std::string Restored(std::uint64_t seq, const std::string& digest) {
  return proto::Encode(proto::Reply(proto::Restored{seq, digest}));
}
std::string Applied(std::uint64_t seq, const std::string& result) {
  return proto::Encode(proto::Reply(proto::Applied{seq, result}));
}

// The state before seq 12: checkpoint 9, commits 10 and 11 after it.
Retest MakeRetest(const std::vector<std::string>& variants) {
  Retest::PreState pre;
  pre.checkpoint = Checkpoint{9, R"({"routes":[0]})", "d9"};
  pre.tail = {{10, 100, R"({"op":"a"})"}, {11, 110, R"({"op":"b"})"}};
  return Retest(variants, {12, 120, R"({"op":"poison?"})", false}, pre, {milliseconds(5000), milliseconds(1000)}, kT0,
                7);
}

// Brings probe `identity` to the point where it holds the pre-state.
void Prepare(Retest& r, const std::string& identity) {
  r.OnMessage(identity, Hello(), kT0);
  r.OnMessage(identity, Restored(9, "d9"), kT0);
  r.OnMessage(identity, Applied(10, "{}"), kT0);
  r.OnMessage(identity, Applied(11, "{}"), kT0);
}

TEST(Retest, SendsTheCheckpointTheTailAndTheCommandAfterTheHello) {
  Retest r = MakeRetest({"router-a", "router-b"});
  const auto probes = r.probes();
  ASSERT_EQ(probes.size(), 2u);
  EXPECT_EQ(probes[0].identity, "retest.7");
  EXPECT_EQ(probes[1].variant, "router-b");
  EXPECT_TRUE(r.TakeOutgoing().empty()) << "nothing before the hello";
  r.OnMessage("retest.7", Hello(), kT0);
  const auto out = r.TakeOutgoing();
  ASSERT_EQ(out.size(), 3u);
  for (const auto& [to, bytes] : out) EXPECT_EQ(to, "retest.7");
  EXPECT_EQ(out[0].second, proto::Encode(proto::Request(proto::Restore{9, R"({"routes":[0]})"})));
  EXPECT_EQ(out[1].second, proto::Encode(proto::Request(proto::Apply{10, 100, R"({"op":"a"})"})));
  EXPECT_EQ(out[2].second, proto::Encode(proto::Request(proto::Apply{11, 110, R"({"op":"b"})"})));
  // The command goes out alone, once the pre-state is answered for: a reply
  // that dies with the process must not hide where it died.
  r.OnMessage("retest.7", Restored(9, "d9"), kT0);
  r.OnMessage("retest.7", Applied(10, "{}"), kT0);
  EXPECT_TRUE(r.TakeOutgoing().empty());
  r.OnMessage("retest.7", Applied(11, "{}"), kT0);
  const auto command = r.TakeOutgoing();
  ASSERT_EQ(command.size(), 1u);
  EXPECT_EQ(command[0].second, proto::Encode(proto::Request(proto::Apply{12, 120, R"({"op":"poison?"})"})));
  EXPECT_FALSE(r.done());
}

TEST(Retest, OutcomesOfTheCommandItself) {
  Retest r = MakeRetest({"answers", "crashes", "hangs", "errs"});
  for (const auto& p : r.probes()) Prepare(r, p.identity);
  r.OnMessage("retest.7", Applied(12, R"({"ok":true})"), kT0 + milliseconds(3));
  r.OnExit("retest.8", "killed by SIGSEGV", kT0 + milliseconds(4));
  r.OnMessage("retest.10", R"({"type":"error","seq":12,"code":"malformed","reason":"?"})", kT0);
  EXPECT_FALSE(r.done());
  EXPECT_EQ(r.NextDeadline(), kT0 + milliseconds(1000)) << "the command's deadline, from the pre-state";
  r.OnTime(kT0 + milliseconds(999));
  EXPECT_FALSE(r.done());
  r.OnTime(kT0 + milliseconds(1000));
  ASSERT_TRUE(r.done());
  EXPECT_EQ(r.NextDeadline(), Clock::time_point::max());
  const auto outcomes = r.Outcomes();
  ASSERT_EQ(outcomes.size(), 4u);
  EXPECT_EQ(outcomes[0].kind, voter::OutcomeKind::kReply);
  EXPECT_EQ(outcomes[0].result, R"({"ok":true})");
  EXPECT_EQ(outcomes[1].kind, voter::OutcomeKind::kCrashed);
  EXPECT_EQ(outcomes[1].detail, "killed by SIGSEGV");
  EXPECT_EQ(outcomes[2].kind, voter::OutcomeKind::kHung);
  EXPECT_EQ(outcomes[3].kind, voter::OutcomeKind::kProtocolError);
  for (const auto& o : outcomes) EXPECT_TRUE(r.Conclusive(o.variant)) << o.variant;
  EXPECT_EQ(r.TakeKills().size(), 4u) << "every probe is killed once its outcome is taken";
  const auto described = r.Describe();
  EXPECT_EQ(described["seq"], 12);
  EXPECT_EQ(described["pre_state"]["checkpoint_seq"], 9);
  EXPECT_EQ(described["pre_state"]["tail"], 2);
  EXPECT_EQ(described["probes"][0]["outcome"], "reply");
  EXPECT_EQ(described["probes"][0]["result"]["ok"], true);
  EXPECT_EQ(described["probes"][1]["outcome"], "crashed");
}

// What happens before the probe holds the state before the command says
// nothing about the command: inconclusive.
TEST(Retest, FailuresBeforeTheCommandAreInconclusive) {
  Retest r = MakeRetest({"no-start", "wrong-digest", "dies-in-tail", "no-hello", "slow-tail"});
  r.OnSpawnFailed("retest.7", "no such file", kT0);
  r.OnMessage("retest.8", Hello(), kT0);
  r.OnMessage("retest.8", Restored(9, "something-else"), kT0);
  r.OnMessage("retest.9", Hello(), kT0);
  r.OnMessage("retest.9", Restored(9, "d9"), kT0);
  r.OnExit("retest.9", "exit status 1", kT0);
  r.OnMessage("retest.11", Hello(), kT0);
  r.OnMessage("retest.11", Restored(9, "d9"), kT0);
  EXPECT_EQ(r.NextDeadline(), kT0 + milliseconds(5000)) << "the prepare deadline, from the start";
  r.OnTime(kT0 + milliseconds(5000));
  ASSERT_TRUE(r.done());
  for (const auto& o : r.Outcomes()) {
    EXPECT_EQ(o.kind, voter::OutcomeKind::kExcluded) << o.variant;
    EXPECT_EQ(o.detail.rfind("inconclusive: ", 0), 0u) << o.detail;
    EXPECT_FALSE(r.Conclusive(o.variant));
  }
  EXPECT_NE(r.Outcomes()[1].detail.find("something-else"), std::string::npos);
  EXPECT_NE(r.Outcomes()[3].detail.find("no hello"), std::string::npos);
  EXPECT_EQ(r.Describe()["probes"][2]["outcome"], "inconclusive");
}

TEST(Retest, WithoutACheckpointTheProbeStartsFromItsInitialState) {
  Retest::PreState pre;  // no checkpoint, no tail
  Retest r({"a"}, {1, 5, R"({"op":"x"})", false}, pre, {milliseconds(100), milliseconds(100)}, kT0, 1);
  r.OnMessage("retest.1", Hello(), kT0);
  const auto out = r.TakeOutgoing();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].second, proto::Encode(proto::Request(proto::Apply{1, 5, R"({"op":"x"})"})));
  r.OnMessage("retest.1", Applied(1, "{}"), kT0);
  EXPECT_TRUE(r.done());
  EXPECT_EQ(r.Outcomes()[0].kind, voter::OutcomeKind::kReply);
}

TEST(Retest, AQueryIsAskedAsAQuery) {
  Retest::PreState pre;
  Retest r({"a"}, {4, 0, R"({"op":"dump"})", true}, pre, {milliseconds(100), milliseconds(100)}, kT0, 1);
  r.OnMessage("retest.1", Hello(), kT0);
  const auto out = r.TakeOutgoing();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].second, proto::Encode(proto::Request(proto::Query{4, R"({"op":"dump"})"})));
  r.OnMessage("retest.1", proto::Encode(proto::Reply(proto::Answer{4, R"({"state":1})"})), kT0);
  EXPECT_EQ(r.Outcomes()[0].kind, voter::OutcomeKind::kReply);
}

// Several commands (a new cluster leader's suspects): each goes out alone
// once the one before is answered, with its own deadline, and a probe that
// fails on one says nothing of those after it.
TEST(Retest, RunsSeveralCommandsInOrderAndStopsAProbeAtItsFirstFailure) {
  Retest::PreState pre;
  pre.checkpoint = Checkpoint{9, R"({"routes":[0]})", "d9"};
  Retest r({"answers", "dies-on-second", "hangs-on-first"},
           std::vector<Retest::Command>{{10, 100, R"({"op":"a"})", false},
                                        {11, 110, R"({"op":"b"})", false},
                                        {12, 120, R"({"op":"c"})", false}},
           pre, {milliseconds(5000), milliseconds(1000)}, kT0, 1);
  ASSERT_EQ(r.size(), 3u);
  for (const char* id : {"retest.1", "retest.2", "retest.3"}) {
    r.OnMessage(id, Hello(), kT0);
    r.OnMessage(id, Restored(9, "d9"), kT0);
  }
  auto out = r.TakeOutgoing();
  ASSERT_EQ(out.size(), 6u) << "a restore and the first command each";
  EXPECT_EQ(out[1].second, proto::Encode(proto::Request(proto::Apply{10, 100, R"({"op":"a"})"})));
  r.OnMessage("retest.1", Applied(10, R"({"n":1})"), kT0 + milliseconds(900));
  out = r.TakeOutgoing();
  ASSERT_EQ(out.size(), 1u) << "the second command, once the first is answered";
  EXPECT_EQ(out[0].second, proto::Encode(proto::Request(proto::Apply{11, 110, R"({"op":"b"})"})));
  r.OnMessage("retest.2", Applied(10, R"({"n":1})"), kT0);
  r.OnExit("retest.2", "killed by SIGSEGV", kT0 + milliseconds(2));
  r.OnTime(kT0 + milliseconds(1000));  // the first command's deadline: retest.3 hung on it
  EXPECT_FALSE(r.done()) << "retest.1's second command has its own deadline, from when it was sent";
  r.OnMessage("retest.1", Applied(11, R"({"n":2})"), kT0 + milliseconds(1100));
  r.OnMessage("retest.1", Applied(12, R"({"n":3})"), kT0 + milliseconds(1200));
  ASSERT_TRUE(r.done());
  const auto first = r.Outcomes(0);
  EXPECT_EQ(first[0].kind, voter::OutcomeKind::kReply);
  EXPECT_EQ(first[1].kind, voter::OutcomeKind::kReply);
  EXPECT_EQ(first[2].kind, voter::OutcomeKind::kHung);
  const auto second = r.Outcomes(1);
  EXPECT_EQ(second[0].result, R"({"n":2})");
  EXPECT_EQ(second[1].kind, voter::OutcomeKind::kCrashed);
  EXPECT_EQ(second[2].kind, voter::OutcomeKind::kExcluded);
  EXPECT_EQ(second[2].detail, "inconclusive: its probe hung on seq 10, before it");
  EXPECT_TRUE(r.Conclusive("dies-on-second", 1));
  EXPECT_FALSE(r.Conclusive("dies-on-second", 2));
  EXPECT_FALSE(r.Conclusive("hangs-on-first", 1));
  EXPECT_EQ(r.Outcomes(2)[1].detail, "inconclusive: its probe crashed on seq 11, before it");
  EXPECT_EQ(r.Describe(2)["seq"], 12);
  EXPECT_EQ(r.Describe(2)["probes"][0]["result"]["n"], 3);
  EXPECT_EQ(r.Describe(2)["probes"][1]["outcome"], "inconclusive");
}

TEST(Retest, IgnoresWhatIsNotItsOwn) {
  Retest r = MakeRetest({"a"});
  EXPECT_TRUE(r.Owns("retest.7"));
  EXPECT_FALSE(r.Owns("router-a.1"));
  r.OnMessage("router-a.1", Hello(), kT0);
  r.OnExit("retest.99", "gone", kT0);
  EXPECT_TRUE(r.TakeOutgoing().empty());
  EXPECT_FALSE(r.done());
}

}  // namespace
}  // namespace nvs::supervisor
