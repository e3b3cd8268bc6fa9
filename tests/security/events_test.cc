// Finding 7 of the security review (issue 15), in part: the event socket
// has no authentication, and it carried divergent results (and retests'
// results) to whoever subscribed. Events now carry no result values: a
// divergence says which variant and the fingerprints of the two answers.
#include "nvsd_harness.h"
#include "security_support.h"

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

}  // namespace
}  // namespace nvs::testing
