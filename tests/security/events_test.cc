// Finding 7 of the security review (issue 15), in part: the event socket
// has no authentication, and it carried divergent results (and retests'
// results) to whoever subscribed. Events now carry no result values: a
// divergence says which variant and the fingerprints of the two answers.
#include <signal.h>

#include "nvsd_harness.h"
#include "security_support.h"
#include "variant_harness.h"

namespace nvs::testing {
namespace {

using nlohmann::json;

class Events : public SecurityTest {};

TEST_F(Events, ADivergenceEventCarriesNoResultValues) {
  NvsdHarness nvsd(NvsdOptions({"router-a", "router-b", VariantSpec("router-c", {"--fault", "wrong-on=SECRET"})}));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  const json label = {{"op", "label"}, {"kind", "input"}, {"labels", {{{"index", 4}, {"text", "SECRET-7f3a"}}}}};
  ASSERT_EQ(nvsd.Command(label)["status"], "committed");
  const json divergence = nvsd.WaitEvent([](const json& e) { return e["event"] == "divergence"; });
  ASSERT_TRUE(divergence.is_object()) << "no divergence: the test proves nothing";
  EXPECT_EQ(divergence["variant"], "router-c");
  EXPECT_FALSE(divergence.contains("expected")) << divergence.dump();
  EXPECT_FALSE(divergence.contains("got")) << divergence.dump();
  EXPECT_TRUE(divergence["expected_fingerprint"].is_string()) << divergence.dump();
  EXPECT_NE(divergence["expected_fingerprint"], divergence["got_fingerprint"]);
  for (const auto& e : nvsd.events()) {
    EXPECT_EQ(e.dump().find("SECRET-7f3a"), std::string::npos) << "an event carried a result value: " << e.dump();
  }
}

// The review of this change: a hang retest's probes, with their results,
// rode in the verdict event. Two variants stopped (SIGSTOP) hang on a
// label; fresh probes answer it; the verdict event says so, without the
// results.
TEST_F(Events, AVerdictRestingOnARetestCarriesNoResultValues) {
  NvsdHarness nvsd(NvsdOptions({"router-a", "router-b", "router-c"},
                               {{"deadline_ms", 500}, {"heartbeat_interval_ms", 60000}}));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  ASSERT_TRUE(SignalProcess(nvsd.VariantPid("router-b"), SIGSTOP));
  ASSERT_TRUE(SignalProcess(nvsd.VariantPid("router-c"), SIGSTOP));
  const json label = {{"op", "label"}, {"client", "sec"}, {"kind", "input"},
                      {"labels", {{{"index", 5}, {"text", "SECRET-9b1c"}}}}};
  ASSERT_EQ(nvsd.Command(label, std::chrono::milliseconds(30000))["status"], "committed");
  const json verdict = nvsd.WaitEvent([](const json& e) { return e["event"] == "verdict" && e.contains("retest"); });
  ASSERT_TRUE(verdict.is_object()) << "no retest: the test proves nothing";
  ASSERT_TRUE(verdict["retest"]["probes"].is_array()) << verdict.dump();
  for (const auto& e : nvsd.events()) {
    EXPECT_EQ(e.dump().find("SECRET-9b1c"), std::string::npos) << "an event carried a result value: " << e.dump();
  }
}

}  // namespace
}  // namespace nvs::testing
