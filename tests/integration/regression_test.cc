// Regression tests, each named after the defect it regresses (found in the
// review of the first nvsd, and by the chaos campaign of issue 7).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "nvsd_harness.h"

namespace nvs::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

json Label(const std::string& text) {
  return {{"op", "label"}, {"client", "rg"}, {"kind", "input"}, {"labels", {{{"index", 2}, {"text", text}}}}};
}

VariantSpec Misbehaving(const std::string& name, std::vector<std::string> options) {
  VariantSpec spec("router-c", {}, name);
  spec.wrapper = std::move(options);
  return spec;
}

// A poison command whose victim wrote bytes that are not UTF-8 to stderr
// made nvsd throw while writing the quarantine report.
TEST(Regression, StderrThatIsNotUtf8DoesNotKillNvsd) {
  NvsdHarness nvsd(NvsdOptions({VariantSpec("router-a", {"--fault", "crash-on=BINARY"}), "router-b",
                                Misbehaving("router-c", {"--binary-crash-on=BINARY"})}));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  json reply = nvsd.Command(Label("BINARY"));
  ASSERT_EQ(reply["status"], "quarantined") << reply.dump();
  std::ifstream in(nvsd.state_dir() / "quarantine" / (reply["report"].get<std::string>() + ".json"));
  std::stringstream text;
  text << in.rdbuf();
  const json report = json::parse(text.str(), nullptr, false);
  ASSERT_TRUE(report.is_object()) << "report unreadable";
  bool found = false;
  for (const auto& o : report["outcomes"]) {
    if (o["variant"] == "router-c") {
      found = true;
      EXPECT_NE(o["stderr_tail"].get<std::string>().find("about to die"), std::string::npos) << o.dump();
    }
  }
  EXPECT_TRUE(found);
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  EXPECT_EQ(nvsd.Command(Label("after"))["status"], "committed");
}

// A sync round waited for ever when its donor died while taking the snapshot.
TEST(Regression, ARoundWhoseDonorDiesStartsAgain) {
  // "aaa" sorts first, so it is the donor of the first round after a restart.
  NvsdHarness nvsd(NvsdOptions({Misbehaving("aaa", {"--crash-on-type=snapshot:1"}), "router-a", "router-b"}));
  // The start-up round already loses its donor once; nvsd must get over it.
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  EXPECT_EQ(nvsd.Command(Label("x"))["status"], "committed");
  json status = nvsd.Status();
  EXPECT_EQ(status["nvsd"]["ready"], true);
}

// A death on a checkpoint request was blamed on the next command; two such
// deaths quarantined an innocent one. (Found again by CI under ASan: the
// reply to the command before the digest request was still in ZeroMQ's I/O
// thread when nvsd saw the process exit, and nvsd waited only 1 ms for it.
// nvsd now judges a death once everything sent before the exit is answered,
// or after kExitGrace, without stopping its loop meanwhile.) The same race
// with its interleaving fixed, failing every time on the old rule:
// tests/simulation/testdata/death_on_a_digest_request_blames_no_command.txt.
TEST(Regression, DeathsOnCheckpointRequestsDoNotQuarantineTheNextCommand) {
  // Each incarnation dies on its third digest request: after the start-up
  // round's, on a periodic checkpoint's, with the next command queued behind.
  NvsdHarness nvsd(NvsdOptions({"router-a", Misbehaving("router-b", {"--crash-on-type=digest:3"}),
                                Misbehaving("router-c", {"--crash-on-type=digest:3"})},
                               {{"checkpoint_interval", 1}, {"restart", {{"intensity", 1000}, {"period_ms", 1000}}}}));
  ASSERT_TRUE(nvsd.WaitReady());
  // Pipelined, so that the next command is queued behind each checkpoint
  // request when a variant dies on it.
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) ids.push_back(nvsd.SendCommand(Label("innocent-" + std::to_string(i))));
  int committed = 0;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    json reply = nvsd.ReplyTo(ids[i]);
    EXPECT_NE(reply["status"], "quarantined") << "command " << i << ": " << reply.dump();
    // Under this double fault a command may also be refused fail-safe
    // (no_quorum, unavailable); it is never blamed.
    EXPECT_TRUE(reply["status"] == "committed" || reply["status"] == "rejected" || reply["status"] == "unavailable")
        << reply.dump();
    committed += reply["status"] == "committed" ? 1 : 0;
  }
  EXPECT_EQ(nvsd.Status()["nvsd"]["quarantined"], 0);
  EXPECT_GE(committed, 10);
  // The deaths happened, and none was blamed on a command.
  const json died = nvsd.WaitEvent([](const json& e) { return e["event"] == "restart"; });
  ASSERT_TRUE(died.is_object());
  EXPECT_NE(died["why"].get<std::string>().find("no command in flight"), std::string::npos) << died.dump();
}

// Chaos campaign (CI, seed 1657249653): router-a answered a periodic
// checkpoint's digest request and aborted on the poison command pipelined
// behind it, and the answer never left the dying process (libzmq writes it
// from its I/O thread). nvsd saw the digest unanswered at the head, which
// blames no command (the test above), so the poison, with one other death,
// came back no_quorum and was delivered again when resent. A command is now
// not sent behind an unanswered digest or ping: what a variant dies on is
// always the oldest request it has. Two C++ variants dying right after
// each checkpoint lost the digest answer in about half the runs before.
// The same race with its interleaving fixed, failing every time on the old
// rule: tests/simulation/testdata/poison_behind_a_checkpoint_is_quarantined.txt.
TEST(Regression, APoisonRightAfterACheckpointIsQuarantinedThoughTheDigestAnswerDiesWithTheVariant) {
  NvsdHarness nvsd(NvsdOptions({VariantSpec("router-a", {"--fault", "abort-on=POISON"}),
                                VariantSpec("router-b", {"--fault", "crash-on=POISON"}), "router-c"},
                               {{"checkpoint_interval", 1}, {"restart", {{"intensity", 1000}, {"period_ms", 1000}}}}));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  for (int i = 0; i < 6; ++i) {
    SCOPED_TRACE("round " + std::to_string(i));
    // Pipelined: the poison is dispatched as soon as "before" is decided,
    // right behind that checkpoint's digest request.
    const std::string before = nvsd.SendCommand(Label("before-" + std::to_string(i)));
    const std::string poison = nvsd.SendCommand(Label("POISON-" + std::to_string(i)));
    EXPECT_EQ(nvsd.ReplyTo(before)["status"], "committed");
    const json reply = nvsd.ReplyTo(poison);
    ASSERT_EQ(reply["status"], "quarantined") << reply.dump();
    // Resent, it is refused without being delivered.
    EXPECT_EQ(nvsd.Command(Label("POISON-" + std::to_string(i)))["status"], "quarantined");
    ASSERT_TRUE(nvsd.WaitAllHealthy());
  }
  for (const std::string name : {"router-a", "router-b"}) {
    const auto received = nvsd.ReceivedLog(name);
    for (int i = 0; i < 6; ++i) {
      const std::string token = "POISON-" + std::to_string(i);
      const auto count = std::count_if(received.begin(), received.end(),
                                       [&](const json& line) { return line.dump().find(token) != std::string::npos; });
      EXPECT_EQ(count, 1) << token << " reached " << name << " " << count << " times";
    }
  }
}

// Chaos campaign: a donor stopped right after a periodic checkpoint asked it
// for a snapshot (whose deadline is the long sync deadline) stalled the
// service for the whole stop, because the next command needed its vote.
// That command now waits no longer than the command deadline.
TEST(Regression, ACommandThatNeedsAVoteStuckBehindACheckpointSnapshotWaitsOnlyTheCommandDeadline) {
  // Unanimity: every command needs every vote, and every variant agrees, so
  // "aaa" (first by name) is the snapshot donor. It stops answering on its
  // second snapshot request: the first periodic checkpoint's (the first is
  // the start-up round's).
  NvsdHarness nvsd(NvsdOptions({Misbehaving("aaa", {"--hang-on-type=snapshot:2"}), "router-a", "router-b"},
                               {{"checkpoint_interval", 3}, {"deadline_ms", 500}, {"sync_deadline_ms", 600000},
                                {"policy", {{"kind", "unanimous"}}}}));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(nvsd.SendCommand(Label("before-" + std::to_string(i))));
  const std::string next = nvsd.SendCommand(Label("next"));
  for (const auto& id : ids) EXPECT_EQ(nvsd.ReplyTo(id)["status"], "committed");
  // (Waiting for the sync deadline, 600 s, would miss this 20 s one.)
  const json reply = nvsd.ReplyTo(next, std::chrono::milliseconds(20000));
  EXPECT_EQ(reply["status"], "committed") << reply.dump();
  EXPECT_NE(nvsd.NvsdLog().find("while seq 4 waited behind its checkpoint snapshot request"), std::string::npos)
      << nvsd.NvsdLog();
}

// Chaos campaign: under sustained pipelined load a slower but correct
// variant fell ever further behind the two that formed the majority, and was
// killed as hung ("fell behind: 1025 requests unanswered") again and again.
// Now the pipeline goes at the pace of the slowest variant still answering.
TEST(Regression, ASlowButCorrectVariantPacesThePipelineInsteadOfBeingKilled) {
  // (The queue deadline is long: the burst waits at the slow variant's pace,
  // which under a sanitizer build is slower still.)
  NvsdHarness nvsd(NvsdOptions({"router-a", "router-b", Misbehaving("router-c", {"--slow-ms=1"})},
                               {{"fsync", "none"}, {"queue_deadline_ms", 60000}}));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  // More commands in flight than a variant may have unanswered (1024).
  std::vector<std::string> ids;
  for (int i = 0; i < 1500; ++i) {
    ids.push_back(nvsd.SendCommand({{"op", "route"}, {"client", "rg"}, {"routes", {{{"output", i % 16}, {"input", i % 7}}}}}));
  }
  for (const auto& id : ids) {
    const json reply = nvsd.ReplyTo(id, std::chrono::milliseconds(60000));
    ASSERT_EQ(reply["status"], "committed") << reply.dump();
  }
  const json status = nvsd.Status();
  for (const auto& v : status["variants"]) {
    EXPECT_EQ(v["restarts"], 0) << v.dump();
    EXPECT_EQ(v["state"], "healthy") << v.dump();
  }
  EXPECT_EQ(nvsd.NvsdLog().find("variant_hung"), std::string::npos);
}

// Chaos campaign: a variant SIGSTOPped just after it was asked for a
// periodic checkpoint's digest was held to the sync deadline (30 s by
// default) instead of the command deadline, so the stop went unnoticed and
// the service ran on two variants without knowing.
TEST(Regression, AVariantThatStopsOnACheckpointDigestRequestIsCaughtWithinTheCommandDeadline) {
  // The snapshot goes to the first agreeing variant by name (router-a); the
  // stopper is asked for digests. Each incarnation stops answering at its
  // second digest request (the first is the start-up round's).
  NvsdHarness nvsd(NvsdOptions({Misbehaving("stopper", {"--hang-on-type=snapshot:3", "--hang-on-type=digest:2"}),
                                "router-a", "router-b"},
                               {{"checkpoint_interval", 5}, {"deadline_ms", 300}, {"sync_deadline_ms", 600000}}));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  for (int i = 0; i < 10; ++i) {
    const json reply = nvsd.Command(Label("cp-" + std::to_string(i)));
    ASSERT_EQ(reply["status"], "committed") << reply.dump();
  }
  const json hung = nvsd.WaitEvent(
      [](const json& e) { return e["event"] == "variant" && e["variant"] == "stopper" && e["state"] == "stopping"; },
      std::chrono::milliseconds(20000));
  ASSERT_TRUE(hung.is_object()) << "the stopped variant was not noticed in 20 s (sync deadline 600 s)";
  EXPECT_NE(hung["why"].get<std::string>().find("within 300 ms"), std::string::npos) << hung.dump();
  EXPECT_EQ(hung["why"].get<std::string>().find(" to seq"), std::string::npos)
      << "it was caught on a command, not on the checkpoint's digest request: " << hung.dump();
}

}  // namespace
}  // namespace nvs::testing
