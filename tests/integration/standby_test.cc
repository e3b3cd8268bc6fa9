// Standby mode (ARCHITECTURE.md §4): one active takes commands, backups follow one
// behind; the command the active dies on is never resent to a backup.
#include <signal.h>

#include <gtest/gtest.h>

#include <fstream>

#include "nvsd_harness.h"
#include "variant_harness.h"

namespace nvs::testing {
namespace {

using nlohmann::json;

json Label(const std::string& text, int index = 0) {
  return {{"op", "label"}, {"client", "sb"}, {"kind", "input"}, {"labels", {{{"index", index}, {"text", text}}}}};
}
json Route(int output, int input) {
  return {{"op", "route"}, {"client", "sb"}, {"routes", {{{"output", output}, {"input", input}}}}};
}

int Count(const std::vector<json>& lines, const std::string& needle) {
  int n = 0;
  for (const auto& line : lines) n += line.dump().find(needle) != std::string::npos ? 1 : 0;
  return n;
}

json Roles(NvsdHarness& nvsd) {
  json roles = json::object();
  const json status = nvsd.Status();  // kept alive: a range-for over a temporary's member would dangle
  for (const auto& v : status["variants"]) roles[v["name"].get<std::string>()] = v["role"];
  return roles;
}

TEST(Standby, TheCommandTheActiveDiesOnIsQuarantinedNotResent) {
  NvsdHarness nvsd(NvsdOptions({VariantSpec("router-a", {"--fault", "crash-on=FATAL"}), "router-b", "router-c"},
                               {{"mode", "standby"}}));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  EXPECT_EQ(Roles(nvsd)["router-a"], "active");
  ASSERT_EQ(nvsd.Command(Route(1, 2))["status"], "committed");
  json reply = nvsd.Command(Label("FATAL"));
  ASSERT_EQ(reply["status"], "quarantined") << reply.dump();
  const json promoted = nvsd.WaitEvent([](const json& e) { return e["event"] == "promoted"; });
  ASSERT_TRUE(promoted.is_object());
  EXPECT_EQ(promoted["variant"], "router-b");
  // The new active serves at once, from the state before the fatal command.
  json next = nvsd.Command(Route(3, 4));
  ASSERT_EQ(next["status"], "committed") << next.dump();
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  const json dump = nvsd.Query({{"op", "dump"}})["result"]["state"];
  EXPECT_EQ(dump["routes"][1], 2);
  EXPECT_EQ(dump["routes"][3], 4);
  EXPECT_EQ(dump["input_labels"][0], "Input 1") << "the fatal command was applied somewhere";
  // Only the active ever saw it; the old active is back as a backup.
  EXPECT_EQ(Count(nvsd.ReceivedLog("router-a"), "FATAL"), 1);
  EXPECT_EQ(Count(nvsd.ReceivedLog("router-b"), "FATAL"), 0);
  EXPECT_EQ(Count(nvsd.ReceivedLog("router-c"), "FATAL"), 0);
  EXPECT_EQ(Roles(nvsd)["router-a"], "backup");
  EXPECT_EQ(Roles(nvsd)["router-b"], "active");
  // Resending it is refused without dispatch.
  EXPECT_EQ(nvsd.Command(Label("FATAL"))["status"], "quarantined");
  EXPECT_EQ(Count(nvsd.ReceivedLog("router-b"), "FATAL"), 0);
}

// The seed scenario with the same binary twice (homogeneous hot standby):
// the first death quarantines X and the promoted backup never receives it.
TEST(Standby, HomogeneousStandbyNeverResendsTheFatalCommand) {
  NvsdHarness nvsd(NvsdOptions({VariantSpec("router-a", {"--fault", "crash-on=FATAL"}, "primary"),
                                VariantSpec("router-a", {"--fault", "crash-on=FATAL"}, "backup")},
                               {{"mode", "standby"}}));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  ASSERT_EQ(nvsd.Command(Route(0, 5))["status"], "committed");
  json reply = nvsd.Command(Label("FATAL"));
  EXPECT_EQ(reply["status"], "quarantined") << reply.dump();
  EXPECT_EQ(nvsd.Command(Route(6, 7))["status"], "committed");
  EXPECT_EQ(nvsd.Command(Label("FATAL"))["status"], "quarantined");  // the automation resends it
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  EXPECT_EQ(Count(nvsd.ReceivedLog("primary"), "FATAL"), 1);
  EXPECT_EQ(Count(nvsd.ReceivedLog("backup"), "FATAL"), 0) << "the backup was sent the command that killed the active";
  EXPECT_EQ(nvsd.Query({{"op", "dump"}})["result"]["state"]["routes"][6], 7);
}

TEST(Standby, ASilentActiveIsReplacedByHeartbeat) {
  NvsdHarness nvsd(NvsdOptions({"router-a", "router-b"}, {{"mode", "standby"},
                                                          {"heartbeat_interval_ms", 50},
                                                          {"heartbeat_timeout_ms", 100}}));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  ASSERT_TRUE(SignalProcess(nvsd.VariantPid("router-a"), SIGSTOP));
  const json promoted = nvsd.WaitEvent([](const json& e) { return e["event"] == "promoted"; });
  ASSERT_TRUE(promoted.is_object()) << "the stopped active was not replaced";
  EXPECT_EQ(promoted["variant"], "router-b");
  EXPECT_EQ(nvsd.Command(Route(2, 2))["status"], "committed");
}

TEST(Standby, PreemptGivesTheActiveRoleBack) {
  NvsdHarness nvsd(NvsdOptions({VariantSpec("router-a", {"--fault", "crash-on=FATAL"}), "router-b"},
                               {{"mode", "standby"}, {"preempt", true}}));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  EXPECT_EQ(nvsd.Command(Label("FATAL"))["status"], "quarantined");
  EXPECT_EQ(nvsd.Command(Route(1, 1))["status"], "committed");  // served by router-b
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  EXPECT_EQ(Roles(nvsd)["router-a"], "active") << "preempt: router-a takes the role back once resynced";
  EXPECT_EQ(nvsd.Command(Route(2, 3))["status"], "committed");
}

// The spare probe, once it said hello (status shows null while there is none).
bool SpareReady(const json& status) {
  const json& spare = status["nvsd"]["probe_spare"];
  return spare.is_object() && spare.value("ready", false);
}

json ReadReport(NvsdHarness& nvsd, const std::string& id) {
  std::ifstream in(nvsd.state_dir() / "quarantine" / (id + ".json"));
  return json::parse(in, nullptr, false);
}

json Variant(NvsdHarness& nvsd, const std::string& name) {
  const json status = nvsd.Status();
  for (const auto& v : status["variants"]) {
    if (v["name"] == name) return v;
  }
  return json();
}

// Policy "probe", heterogeneous: the command that killed router-a is run on
// a disposable router-b restored to the state before it; router-b's program
// survives it, so it is delivered to the promoted router-b and committed.
TEST(Standby, ProbeThatSurvivesLetsTheCommandThrough) {
  NvsdHarness nvsd(NvsdOptions({VariantSpec("router-a", {"--fault", "crash-on=ONLY_A_DIES"}), "router-b", "router-c"},
                               {{"mode", "standby"}, {"standby_policy", "probe"}}));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  ASSERT_EQ(nvsd.Command(Route(1, 2))["status"], "committed");
  // A spare probe of the next active's program waits, started ahead of need.
  const json with_spare = nvsd.WaitStatus(SpareReady);
  ASSERT_TRUE(with_spare.is_object()) << "no spare probe";
  EXPECT_EQ(with_spare["nvsd"]["probe_spare"]["variant"], "router-b");
  const json reply = nvsd.Command(Label("ONLY_A_DIES"));
  ASSERT_EQ(reply["status"], "committed") << reply.dump();
  EXPECT_EQ(reply["result"]["ok"], true);
  const json started = nvsd.WaitEvent([](const json& e) { return e["event"] == "probe" && e["phase"] == "started"; });
  ASSERT_TRUE(started.is_object());
  EXPECT_EQ(started["variant"], "router-b");
  EXPECT_EQ(started["failed_active"], "router-a");
  EXPECT_EQ(started["pid"], with_spare["nvsd"]["probe_spare"]["pid"]) << "the spare was not used";
  const json done = nvsd.WaitEvent([](const json& e) { return e["event"] == "probe" && e["phase"] == "done"; });
  ASSERT_TRUE(done.is_object());
  EXPECT_EQ(done["outcome"], "survived") << done.dump();
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  const json dump = nvsd.Query({{"op", "dump"}})["result"]["state"];
  EXPECT_EQ(dump["routes"][1], 2);
  EXPECT_EQ(dump["input_labels"][0], "ONLY_A_DIES");
  EXPECT_EQ(Variant(nvsd, "router-b")["role"], "active");
  EXPECT_EQ(Variant(nvsd, "router-b")["incarnation"], 1) << "the new active was not disturbed";
  // router-b's program saw it twice: once as the probe, once as the new
  // active (the probe runs router-b's command line, so it shares its log).
  EXPECT_EQ(Count(nvsd.ReceivedLog("router-b"), "ONLY_A_DIES"), 2);
  EXPECT_EQ(Count(nvsd.ReceivedLog("router-c"), "ONLY_A_DIES"), 1) << "backups follow the commit";
  EXPECT_EQ(nvsd.Status()["nvsd"]["quarantined"], 0);
  // Every copy agrees on the result (the restarted router-a was resynced).
  EXPECT_EQ(nvsd.Command(Route(3, 3))["status"], "committed");
  // A new spare replaces the one used, for the program that would be next.
  const json replaced = nvsd.WaitStatus([&](const json& s) {
    return SpareReady(s) && s["nvsd"]["probe_spare"]["pid"] != with_spare["nvsd"]["probe_spare"]["pid"];
  });
  ASSERT_TRUE(replaced.is_object()) << "the spare was not replaced";
  EXPECT_EQ(replaced["nvsd"]["probe_spare"]["variant"], "router-a");
}

// Without a spare (it died), the probe is started on demand.
TEST(Standby, ProbeWithoutASpareStartsOne) {
  NvsdHarness nvsd(NvsdOptions({VariantSpec("router-a", {"--fault", "crash-on=ONLY_A_DIES"}), "router-b"},
                               {{"mode", "standby"}, {"standby_policy", "probe"}}));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  const json with_spare = nvsd.WaitStatus(SpareReady);
  ASSERT_TRUE(with_spare.is_object());
  ASSERT_TRUE(SignalProcess(with_spare["nvsd"]["probe_spare"]["pid"].get<int>(), SIGKILL));
  ASSERT_TRUE(nvsd.WaitStatus([](const json& s) { return s["nvsd"]["probe_spare"].is_null(); }).is_object());
  const json reply = nvsd.Command(Label("ONLY_A_DIES"));
  ASSERT_EQ(reply["status"], "committed") << reply.dump();
  EXPECT_NE(nvsd.NvsdLog().find("probe_spare_died"), std::string::npos);
}

// Policy "probe", homogeneous: the probe runs the same program and dies the
// same death, so the command is quarantined; the new active never runs it.
TEST(Standby, ProbeThatDiesQuarantinesAndTheNewActiveNeverRunsIt) {
  NvsdHarness nvsd(NvsdOptions({VariantSpec("router-a", {"--fault", "crash-on=FATAL"}, "primary"),
                                VariantSpec("router-a", {"--fault", "crash-on=FATAL"}, "backup")},
                               {{"mode", "standby"}, {"standby_policy", "probe"}}));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  ASSERT_EQ(nvsd.Command(Route(0, 5))["status"], "committed");
  const json reply = nvsd.Command(Label("FATAL"));
  ASSERT_EQ(reply["status"], "quarantined") << reply.dump();
  const json report = ReadReport(nvsd, reply["report"]);
  ASSERT_TRUE(report.is_object());
  EXPECT_EQ(report["probe"]["outcome"], "crashed") << report["probe"].dump();
  EXPECT_EQ(report["probe"]["variant"], "backup");
  EXPECT_EQ(report["probe"]["exit"]["signal"], SIGSEGV);
  EXPECT_NE(report["reason"].get<std::string>().find("probe"), std::string::npos) << report["reason"];
  // The promoted backup is the same incarnation: it was never sent FATAL
  // (its received log holds only the probe's copy).
  const json backup = Variant(nvsd, "backup");
  EXPECT_EQ(backup["role"], "active");
  EXPECT_EQ(backup["incarnation"], 1);
  EXPECT_EQ(Count(nvsd.ReceivedLog("backup"), "FATAL"), 1);
  EXPECT_EQ(nvsd.Command(Route(6, 7))["status"], "committed");
  EXPECT_EQ(nvsd.Command(Label("FATAL"))["status"], "quarantined");  // the resend is refused without dispatch
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  EXPECT_EQ(Count(nvsd.ReceivedLog("backup"), "FATAL"), 1);
  const json dump = nvsd.Query({{"op", "dump"}})["result"]["state"];
  EXPECT_EQ(dump["routes"][0], 5);
  EXPECT_EQ(dump["routes"][6], 7);
  EXPECT_EQ(dump["input_labels"][0], "Input 1");
}

// A probe that hangs is killed at the deadline and the command quarantined.
TEST(Standby, ProbeThatHangsQuarantines) {
  NvsdHarness nvsd(NvsdOptions({VariantSpec("router-a", {"--fault", "crash-on=STUCK"}),
                                VariantSpec("router-b", {"--fault", "hang-on=STUCK"})},
                               {{"mode", "standby"}, {"standby_policy", "probe"}, {"deadline_ms", 300}}));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  const json reply = nvsd.Command(Label("STUCK"));
  ASSERT_EQ(reply["status"], "quarantined") << reply.dump();
  const json report = ReadReport(nvsd, reply["report"]);
  EXPECT_EQ(report["probe"]["outcome"], "hung") << report["probe"].dump();
  EXPECT_EQ(Variant(nvsd, "router-b")["incarnation"], 1);
  EXPECT_EQ(nvsd.Command(Route(1, 1))["status"], "committed");
  EXPECT_TRUE(nvsd.Status()["nvsd"]["probe"].is_null()) << "the probe is gone";
}

}  // namespace
}  // namespace nvs::testing
