#include "nvs/supervisor/config.h"

#include <gtest/gtest.h>

namespace nvs::supervisor {
namespace {

const char* const kMinimal = R"({
  "state_dir": "state",
  "variants": [
    {"name": "router-a", "argv": ["bin/router-a", "--inputs", "16"]},
    {"name": "router-b", "argv": ["router-b"]},
    {"name": "router-c", "argv": ["python3", "router_c.py"], "transport": "stdio"}
  ]
})";

TEST(ParseConfig, MinimalConfigGetsTheDefaults) {
  auto config = ParseConfig(kMinimal, "/etc/nvs/nvsd.json");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->state_dir, "/etc/nvs/state");
  EXPECT_EQ(config->variants.size(), 3u);
  EXPECT_EQ(config->variants[2].transport, Transport::kStdio);
  EXPECT_EQ(config->policy.kind, voter::PolicyKind::kMajority);
  EXPECT_EQ(config->policy.configured, 3u);
  EXPECT_EQ(config->policy.ignored, std::vector<std::string>{"/message"});
  EXPECT_EQ(config->min_healthy, 2);
  EXPECT_EQ(config->variant_endpoint, "ipc:///etc/nvs/state/variants.sock");
  EXPECT_EQ(config->deadline_ms, 1000);
}

TEST(ParseConfig, TwoVariantsDefaultToUnanimity) {
  auto config = ParseConfig(R"({"state_dir":"/s","variants":[{"name":"a","argv":["x"]},{"name":"b","argv":["y"]}]})",
                            "/c.json");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->policy.kind, voter::PolicyKind::kUnanimous);
  EXPECT_EQ(config->min_healthy, 1);
}

TEST(ParseConfig, EveryErrorNamesItsField) {
  struct Case {
    const char* text;
    const char* mentions;
  };
  const Case cases[] = {
      {"not json", "not valid JSON"},
      {"[]", "must be a JSON object"},
      {R"({"variants":[{"name":"a","argv":["x"]}]})", "state_dir: required"},
      {R"({"state_dir":"s"})", "variants: required"},
      {R"({"state_dir":"s","variants":[]})", "variants: must be an array of 1 to 8"},
      {R"({"state_dir":"s","variants":[{"argv":["x"]}]})", "variants[0].name: required"},
      {R"({"state_dir":"s","variants":[{"name":"a b","argv":["x"]}]})", "variants[0].name: must be"},
      {R"({"state_dir":"s","variants":[{"name":"a","argv":[]}]})", "variants[0].argv: must be a non-empty array"},
      {R"({"state_dir":"s","variants":[{"name":"a","argv":[1]}]})", "variants[0].argv"},
      {R"({"state_dir":"s","variants":[{"name":"a","argv":["x"],"transport":"tcp"}]})", "variants[0].transport"},
      {R"({"state_dir":"s","variants":[{"name":"a","argv":["x"]},{"name":"a","argv":["y"]}]})",
       "variants[1].name: \"a\" is used twice"},
      {R"({"state_dir":"s","variants":[{"name":"a","argv":["x"],"env":{"NVS_VARIANT":"b"}}]})",
       "variants[0].env.NVS_VARIANT: is set by nvsd"},
      {R"({"state_dir":"s","variants":[{"name":"a","argv":["x"],"limits":{"cpu_seconds":0}}]})",
       "variants[0].limits.cpu_seconds: must be between"},
      {R"({"state_dir":"s","variants":[{"name":"a","argv":["x"],"limits":{"stack":1}}]})",
       "variants[0].limits.stack: unknown field"},
      {R"({"state_dir":"s","variants":[{"name":"a","argv":["x"],"user":"nobody"}]})",
       "variants[0].user: needs \"transport\": \"stdio\""},
      {R"({"state_dir":"s","variants":[{"name":"a","argv":["x"],"transport":"stdio","group":"nogroup"}]})",
       "variants[0].group: needs \"user\" too"},
      {R"({"state_dir":"s","variants":[{"name":"a","argv":["x"],"transport":"stdio","user":""}]})",
       "variants[0].user: must not be empty"},
      {R"({"state_dir":"s","variants":[{"name":"a","argv":["x"]}],"deadline_ms":0})", "deadline_ms: must be between"},
      {R"({"state_dir":"s","variants":[{"name":"a","argv":["x"]}],"deadline_ms":"5"})", "deadline_ms: must be an integer"},
      {R"({"state_dir":"s","variants":[{"name":"a","argv":["x"]}],"policy":{"kind":"vote"}})", "policy.kind: must be"},
      {R"({"state_dir":"s","variants":[{"name":"a","argv":["x"]}],"policy":{"kind":"primary","primary":"z"}})",
       "policy.primary: must name a configured variant"},
      {R"({"state_dir":"s","variants":[{"name":"a","argv":["x"]}],"policy":{"ignore":["message"]}})",
       "policy.ignore[0]: must be a JSON pointer"},
      {R"({"state_dir":"s","variants":[{"name":"a","argv":["x"]}],"min_healthy":2})", "min_healthy: cannot exceed"},
      {R"({"state_dir":"s","variants":[{"name":"a","argv":["x"]}],"client_endpoint":"localhost:5"})",
       "client_endpoint: must be"},
      {R"({"state_dir":"s","variants":[{"name":"a","argv":["x"]}],"restart":{"intensity":-1}})",
       "restart.intensity: must be between"},
      {R"({"state_dir":"s","variants":[{"name":"a","argv":["x"]}],"deadline":5})", "deadline: unknown field"},
      {R"({"state_dir":"s","variants":[{"name":"a","argv":["x"]}],"fsync":"sometimes"})", "fsync: must be"},
  };
  for (const auto& c : cases) {
    auto config = ParseConfig(c.text, "/etc/nvsd.json");
    ASSERT_FALSE(config.ok()) << c.text;
    EXPECT_NE(config.status().message().find(c.mentions), std::string::npos)
        << "for " << c.text << "\n got: " << config.status().message();
  }
}

TEST(ParseConfig, ReportsAllErrorsAtOnce) {
  auto config = ParseConfig(R"({"state_dir":5,"variants":[{"name":"a"}],"deadline_ms":-3})", "/c.json");
  ASSERT_FALSE(config.ok());
  const std::string message = config.status().message();  // status() is a temporary
  EXPECT_NE(message.find("state_dir"), std::string::npos);
  EXPECT_NE(message.find("variants[0].argv"), std::string::npos);
  EXPECT_NE(message.find("deadline_ms"), std::string::npos);
}

TEST(ParseConfig, PolicyOptions) {
  auto config = ParseConfig(R"({"state_dir":"s","variants":[{"name":"a","argv":["x"]},{"name":"b","argv":["y"]},
      {"name":"c","argv":["z"]}],"policy":{"kind":"primary","primary":"b","ignore":["/message","/detail/0"]},
      "min_healthy":3,"restart":{"intensity":2,"period_ms":500},"checkpoint_interval":10})",
                            "/c.json");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->policy.kind, voter::PolicyKind::kPrimary);
  EXPECT_EQ(config->policy.primary, "b");
  EXPECT_EQ(config->policy.ignored.size(), 2u);
  EXPECT_EQ(config->min_healthy, 3);
  EXPECT_EQ(config->restart.intensity, 2);
  EXPECT_EQ(config->restart.period_ms, 500);
  EXPECT_EQ(config->checkpoint_interval, 10);
}

}  // namespace
}  // namespace nvs::supervisor
