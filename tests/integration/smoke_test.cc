#include <gtest/gtest.h>

#include "nvsd_harness.h"

namespace nvs::testing {
namespace {
using nlohmann::json;

TEST(NvsdSmoke, StartsCommitsAndAnswers) {
  NvsdHarness nvsd(NvsdOptions({"router-a", "router-b", "router-c"}));
  ASSERT_TRUE(nvsd.WaitReady());
  json reply = nvsd.Command({{"op", "route"}, {"client", "t"}, {"routes", {{{"output", 0}, {"input", 3}}}}});
  ASSERT_TRUE(reply.is_object());
  EXPECT_EQ(reply["status"], "committed") << reply.dump();
  EXPECT_EQ(reply["seq"], 1);
  EXPECT_EQ(reply["result"], json::parse(R"({"ok":true,"changed":[{"output":0,"input":3}]})"));
  json answer = nvsd.Query({{"op", "dump"}});
  EXPECT_EQ(answer["status"], "answered") << answer.dump();
  EXPECT_EQ(answer["result"]["state"]["routes"][0], 3);
}

}  // namespace
}  // namespace nvs::testing
