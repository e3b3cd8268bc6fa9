// nvsd's metrics endpoint, scraped from a live nvsd: what it counts, and
// that Debian's promtool accepts the page (issue 19). And the pace: a
// variant much slower than the others is named in an event, in status
// and in the metrics.
#include <signal.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <fstream>
#include <iterator>
#include <regex>
#include <string>

#include "nvsd_harness.h"
#include "variant_harness.h"

namespace nvs::testing {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;

// Where nvsd's metrics endpoint listens, from its `starting` line.
std::string MetricsAddress(const NvsdHarness& nvsd) {
  std::istringstream lines(nvsd.NvsdLog());
  for (std::string line; std::getline(lines, line);) {
    const json event = json::parse(line, nullptr, false);
    if (event.is_object() && event.value("event", "") == "starting" && event.contains("metrics_endpoint") &&
        event["metrics_endpoint"].is_string()) {
      return event["metrics_endpoint"];
    }
  }
  return "";
}

json Route(int output, int input) {
  return {{"op", "route"}, {"client", "t"}, {"routes", {{{"output", output}, {"input", input}}}}};
}

TEST(Metrics, AScrapeOfALiveNvsdCountsWhatHappenedAndPassesPromtool) {
  NvsdHarness nvsd(NvsdOptions({"router-a", "router-b", "router-c"}, {{"metrics_endpoint", "127.0.0.1:0"}}));
  ASSERT_TRUE(nvsd.WaitAllHealthy()) << nvsd.NvsdLog();
  const std::string address = MetricsAddress(nvsd);
  ASSERT_FALSE(address.empty()) << "no metrics_endpoint in the starting line:\n" << nvsd.NvsdLog();
  for (int i = 0; i < 5; ++i) ASSERT_EQ(nvsd.Command(Route(i, i + 1)).value("status", ""), "committed");
  ASSERT_EQ(nvsd.Query({{"op", "dump"}}).value("status", ""), "answered");
  ASSERT_TRUE(SignalProcess(nvsd.VariantPid("router-b"), SIGKILL));
  ASSERT_FALSE(nvsd.WaitStatus([](const json& s) {
    for (const auto& v : s["variants"]) {
      if (v["name"] == "router-b" && (v["incarnation"] != 2 || v["state"] != "healthy")) return false;
    }
    return true;
  }).is_null()) << nvsd.NvsdLog();

  const auto [status, page] = HttpGet(address, "/metrics");
  ASSERT_EQ(status, 200) << page;
  EXPECT_EQ(PromtoolProblems(page, nvsd.dir()), "") << page;
  const auto value = [&](const std::string& series) { return MetricValue(page, series); };
  EXPECT_EQ(value("nvs_verdicts_total{verdict=\"COMMIT\",kind=\"command\"}"), 5) << page;
  EXPECT_EQ(value("nvs_verdicts_total{verdict=\"COMMIT\",kind=\"query\"}"), 1) << page;
  EXPECT_EQ(value("nvs_commits"), 5);
  EXPECT_EQ(value("nvs_verdicts_total{verdict=\"NO_QUORUM\",kind=\"command\"}"), 0) << "listed before the first";
  EXPECT_EQ(value("nvs_variant_deaths_total{variant=\"router-a\",cause=\"SIGSEGV\"}"), 0);
  EXPECT_EQ(value("nvs_seq"), 5);
  EXPECT_EQ(value("nvs_commands_dispatched_total{kind=\"command\"}"), 5);
  EXPECT_EQ(value("nvs_replies_total{status=\"committed\"}"), 5);
  EXPECT_EQ(value("nvs_replies_total{status=\"answered\"}"), 1);
  EXPECT_EQ(value("nvs_command_duration_seconds_count{kind=\"command\"}"), 5);
  EXPECT_EQ(value("nvs_command_duration_seconds_bucket{kind=\"command\",le=\"+Inf\"}"), 5);
  EXPECT_EQ(value("nvs_journal_sync_duration_seconds_count").value_or(0) >= 5, true)
      << "fsync \"always\": at least one per command";
  EXPECT_EQ(value("nvs_variant_deaths_total{variant=\"router-b\",cause=\"SIGKILL\"}"), 1) << page;
  EXPECT_EQ(value("nvs_variant_restarts_total{variant=\"router-b\"}"), 1);
  EXPECT_EQ(value("nvs_variant_incarnation{variant=\"router-b\"}"), 2);
  EXPECT_EQ(value("nvs_variant_state{variant=\"router-b\",state=\"healthy\"}"), 1);
  EXPECT_EQ(value("nvs_variant_state{variant=\"router-b\",state=\"down\"}"), 0);
  EXPECT_EQ(value("nvs_variant_up{variant=\"router-a\"}"), 1);
  EXPECT_EQ(value("nvs_variant_role{variant=\"router-c\",role=\"voter\"}"), 1);
  EXPECT_EQ(value("nvs_variant_answer_duration_seconds_count{variant=\"router-a\"}"), 6) << "5 commands, 1 query";
  EXPECT_EQ(value("nvs_variant_sets_pace{variant=\"router-c\"}"), 0);
  EXPECT_EQ(value("nvs_ready"), 1);
  EXPECT_EQ(value("nvs_available"), 1);
  EXPECT_EQ(value("nvs_quarantined"), 0);
  EXPECT_GT(value("process_resident_memory_bytes").value_or(0), 0);

  // Every nvsd metric the example alert rules use is on the page.
  std::ifstream rules(NVS_PROMETHEUS_RULES);
  const std::string text((std::istreambuf_iterator<char>(rules)), std::istreambuf_iterator<char>());
  const std::regex name(R"(\bnvs_[a-z_]+)");
  int used = 0;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), name); it != std::sregex_iterator(); ++it) {
    const std::string metric = it->str();
    if (metric.rfind("nvs_videohub_", 0) == 0) continue;  // (nvs-videohub's: its own test)
    ++used;
    EXPECT_TRUE(page.find("\n" + metric + "{") != std::string::npos || page.find("\n" + metric + " ") != std::string::npos)
        << metric << " is in the alert rules, not on the page";
  }
  EXPECT_GT(used, 5);

  // Anything but GET /metrics is not found; nvsd goes on.
  EXPECT_EQ(HttpGet(address, "/").first, 404);
  EXPECT_EQ(nvsd.Command(Route(9, 9)).value("status", ""), "committed");
}

TEST(Metrics, AnEndpointThatCannotBeBoundStopsTheStartWithItsAddress) {
  NvsdHarness first(NvsdOptions({"router-a", "router-b"}, {{"metrics_endpoint", "127.0.0.1:0"}}));
  ASSERT_TRUE(first.WaitReady()) << first.NvsdLog();
  const std::string taken = MetricsAddress(first);
  ASSERT_FALSE(taken.empty());
  NvsdHarness second(NvsdOptions({"router-a", "router-b"}, {{"metrics_endpoint", taken}}));
  const auto exit = second.WaitNvsdExit(milliseconds(20000));
  ASSERT_TRUE(exit.has_value()) << "nvsd started with its metrics address taken:\n" << second.NvsdLog();
  EXPECT_NE(*exit, 0);
  EXPECT_NE(second.NvsdLog().find("cannot bind the metrics endpoint " + taken), std::string::npos) << second.NvsdLog();
}

// router-c answers every command 40 ms late: lockstep waits for it, and
// the operator is told which variant sets the pace, where he looks.
TEST(Metrics, AVariantMuchSlowerThanTheOthersIsNamedAsSettingThePace) {
  VariantSpec slow("router-c", {});
  slow.wrapper = {"--slow-ms=40"};
  NvsdHarness nvsd(NvsdOptions({"router-a", "router-b", slow}, {{"metrics_endpoint", "127.0.0.1:0"}}));
  ASSERT_TRUE(nvsd.WaitAllHealthy()) << nvsd.NvsdLog();
  for (int i = 0; i < 40; ++i) ASSERT_EQ(nvsd.Command(Route(i % 16, (i + 3) % 16)).value("status", ""), "committed");
  const json event = nvsd.WaitEvent([](const json& e) { return e.value("event", "") == "pace"; });
  ASSERT_FALSE(event.is_null()) << nvsd.NvsdLog();
  EXPECT_EQ(event["variant"], "router-c") << event.dump();
  EXPECT_NE(event.value("why", "").find("commands behind every command waits for it"), std::string::npos) << event.dump();
  const json status = nvsd.Status();
  EXPECT_EQ(status["nvsd"]["paced_by"], "router-c") << status.dump();
  for (const auto& v : status["variants"]) {
    EXPECT_EQ(v["pace"]["sets_pace"], v["name"] == "router-c") << v.dump();
    EXPECT_TRUE(v["pace"]["answer_p50_ms"].is_number()) << v.dump();
  }
  const auto [code, page] = HttpGet(MetricsAddress(nvsd), "/metrics");
  ASSERT_EQ(code, 200);
  EXPECT_EQ(MetricValue(page, "nvs_variant_sets_pace{variant=\"router-c\"}"), 1) << page;
  EXPECT_EQ(MetricValue(page, "nvs_variant_sets_pace{variant=\"router-a\"}"), 0);
  EXPECT_EQ(MetricValue(page, "nvs_pace_changes_total"), 1);
  // It restarts: it no longer sets the pace.
  ASSERT_TRUE(SignalProcess(nvsd.VariantPid("router-c"), SIGKILL));
  const json cleared =
      nvsd.WaitEvent([](const json& e) { return e.value("event", "") == "pace" && e["variant"].is_null(); });
  ASSERT_FALSE(cleared.is_null()) << nvsd.NvsdLog();
  EXPECT_EQ(cleared["was"], "router-c");
  EXPECT_NE(cleared.value("why", "").find("restarted or stopped voting"), std::string::npos) << cleared.dump();
  EXPECT_TRUE(nvsd.Status()["nvsd"]["paced_by"].is_null());
}

}  // namespace
}  // namespace nvs::testing
