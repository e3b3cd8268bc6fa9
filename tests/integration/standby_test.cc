// Standby mode (DESIGN.md §6): one active takes commands, backups follow one
// behind; the command the active dies on is never resent to a backup.
#include <signal.h>

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace nvs::testing
