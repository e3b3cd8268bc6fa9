#include "nvs/supervisor/config.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>

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

TEST(ParseConfig, ATcpVariantEndpointOnLoopbackIsTaken) {
  for (const char* endpoint : {"tcp://127.0.0.1:5601", "tcp://[::1]:5601", "tcp://localhost:5601"}) {
    const std::string text = std::string(R"({"state_dir":"s","variant_endpoint":")") + endpoint +
                             R"(","variants":[{"name":"a","argv":["x"]}]})";
    auto config = ParseConfig(text, "/c.json");
    EXPECT_TRUE(config.ok()) << endpoint << ": " << config.status().message();
  }
}

// Events carry verdicts, pids and review notes: with client_curve they are
// never on an unauthenticated tcp port.
TEST(ParseConfig, WithClientCurveEventsAreOnIpcOnly) {
  const std::string curve = R"("client_curve":{"secret_key_file":"k","authorized_keys_file":"a"})";
  auto config = ParseConfig(R"({"state_dir":"/s",)" + curve + R"(,"variants":[{"name":"a","argv":["x"]}]})", "/c.json");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->event_endpoint, "ipc:///s/events.sock");
  config = ParseConfig(R"({"state_dir":"/s","event_endpoint":"tcp://127.0.0.1:5556",)" + curve +
                           R"(,"variants":[{"name":"a","argv":["x"]}]})",
                       "/c.json");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("event_endpoint: with client_curve it must be an ipc://"), std::string::npos)
      << config.status().message();
  config = ParseConfig(R"({"state_dir":"/s","event_endpoint":"",)" + curve + R"(,"variants":[{"name":"a","argv":["x"]}]})",
                       "/c.json");
  EXPECT_TRUE(config.ok());
  config = ParseConfig(R"({"state_dir":"/s","event_endpoint":"ipc://@nvs-events",)" + curve +
                           R"(,"variants":[{"name":"a","argv":["x"]}]})",
                       "/c.json");
  EXPECT_FALSE(config.ok()) << "an abstract socket cannot be made owner-only";
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
      {R"({"state_dir":"s","variant_endpoint":"tcp://0.0.0.0:5601","variants":[{"name":"a","argv":["x"]}]})",
       "variant_endpoint: a tcp endpoint must be on loopback"},
      {R"({"state_dir":"s","variant_endpoint":"tcp://10.1.2.3:5601","variants":[{"name":"a","argv":["x"]}]})",
       "not 10.1.2.3"},
      {R"({"state_dir":"s","variant_endpoint":"tcp://127.example.com:5601","variants":[{"name":"a","argv":["x"]}]})",
       "a tcp endpoint must be on loopback"},
      {R"({"state_dir":"s","metrics_endpoint":"9464","variants":[{"name":"a","argv":["x"]}]})",
       "metrics_endpoint: metrics endpoint '9464': no host, or no port (expected HOST:PORT"},
      {R"({"state_dir":"s","metrics_endpoint":"127.0.0.1:99999","variants":[{"name":"a","argv":["x"]}]})",
       "the port is not a number from 0 to 65535"},
      {"[]", "must be a JSON object"},
      {R"({"variants":[{"name":"a","argv":["x"]}]})", "state_dir: required"},
      {R"({"state_dir":"s"})", "variants: required"},
      {R"({"state_dir":"s","variants":[]})", "variants: must be an array of 1 to 8"},
      {R"({"state_dir":"s","variants":[{"argv":["x"]}]})", "variants[0].name: required"},
      {R"({"state_dir":"s","variants":[{"name":"a b","argv":["x"]}]})", "variants[0].name: must be"},
      {R"({"state_dir":"s","variants":[{"name":"retest","argv":["x"]}]})", "variants[0].name: \"retest\" is taken"},
      {R"({"state_dir":"s","variants":[{"name":"probe","argv":["x"]}]})", "variants[0].name: \"probe\" is taken"},
      {R"({"state_dir":"s","queue_limit":10,"client_queue_limit":11,"variants":[{"name":"a","argv":["x"]}]})",
       "client_queue_limit: cannot exceed queue_limit"},
      {R"({"state_dir":"s","exit_grace_ms":0,"variants":[{"name":"a","argv":["x"]}]})", "exit_grace_ms"},
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
      {R"({"state_dir":"s","variants":[{"name":"a","argv":["x"]}],"client_curve":"keys"})",
       "client_curve: must be an object"},
      {R"({"state_dir":"s","variants":[{"name":"a","argv":["x"]}],"client_curve":{"authorized_keys_file":"a"}})",
       "client_curve.secret_key_file: required"},
      {R"({"state_dir":"s","variants":[{"name":"a","argv":["x"]}],"client_curve":{"secret_key_file":"k"}})",
       "client_curve.authorized_keys_file: required"},
      {R"({"state_dir":"s","variants":[{"name":"a","argv":["x"]}],
           "client_curve":{"secret_key_file":"","authorized_keys_file":"a"}})",
       "client_curve.secret_key_file: must not be empty"},
      {R"({"state_dir":"s","variants":[{"name":"a","argv":["x"]}],
           "client_curve":{"secret_key_file":"k","authorized_keys_file":"a","public_key":"p"}})",
       "client_curve.public_key: unknown field"},
      {R"({"state_dir":"s","variants":[{"name":"a","argv":["x"]}],"client_endpoint":"inproc://c",
           "client_curve":{"secret_key_file":"k","authorized_keys_file":"a"}})",
       "client_curve: needs a tcp:// or ipc:// client_endpoint"},
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

// A variant's user is resolved once, before nvsd starts (and by --check),
// not at every spawn: a restart never fails on the user database.
TEST(ResolveVariantUsers, ResolvesOnceAndNamesTheVariantThatCannotBe) {
  auto config = ParseConfig(R"({"state_dir":"s","variants":[
      {"name":"a","argv":["x"]},
      {"name":"b","argv":["x"],"transport":"stdio","user":"nobody"},
      {"name":"c","argv":["x"],"transport":"stdio","user":"65534","group":"nogroup"},
      {"name":"d","argv":["x"],"transport":"stdio","user":"no-such-user-nvs"},
      {"name":"e","argv":["x"],"transport":"stdio","user":"nobody","group":"root"}]})",
                            "/etc/nvsd.json");
  ASSERT_TRUE(config.ok()) << config.status().message();
  const Status resolved = ResolveVariantUsers(config.value(), "/etc/nvsd.json");
  ASSERT_FALSE(resolved.ok());
  const std::string& message = resolved.message();
  EXPECT_EQ(message.rfind("/etc/nvsd.json: invalid configuration:", 0), 0u) << message;
  if (geteuid() != 0) {
    EXPECT_NE(message.find("variants[1] (b).user: user nobody: nvsd must run as root"), std::string::npos) << message;
    return;
  }
  const struct passwd* nobody = getpwnam("nobody");
  const struct group* nogroup = getgrnam("nogroup");
  ASSERT_NE(nobody, nullptr);
  ASSERT_NE(nogroup, nullptr);
  EXPECT_EQ(config.value().variants[0].run_as, "");
  EXPECT_EQ(config.value().variants[1].run_as,
            std::to_string(nobody->pw_uid) + ":" + std::to_string(nobody->pw_gid));
  EXPECT_EQ(config.value().variants[2].run_as, "65534:" + std::to_string(nogroup->gr_gid));
  EXPECT_NE(message.find("variants[3] (d).user: user no-such-user-nvs: no such user"), std::string::npos) << message;
  EXPECT_NE(message.find("variants[4] (e).user: user nobody: group 0 (root) is refused"), std::string::npos) << message;
  EXPECT_EQ(message.find("variants[1]"), std::string::npos) << message;
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

TEST(ParseConfig, ClientCurveNamesFilesRelativeToTheConfig) {
  auto config = ParseConfig(R"({"state_dir":"s","variants":[{"name":"a","argv":["x"]}],
      "client_curve":{"secret_key_file":"keys/nvsd.key","authorized_keys_file":"/etc/nvs/clients"}})",
                            "/etc/nvs/nvsd.json");
  ASSERT_TRUE(config.ok()) << config.status().message();
  ASSERT_TRUE(config->client_curve.has_value());
  EXPECT_EQ(config->client_curve->secret_key_file, "/etc/nvs/keys/nvsd.key");
  EXPECT_EQ(config->client_curve->authorized_keys_file, "/etc/nvs/clients");
  EXPECT_TRUE(config->client_curve->keys.secret_key.empty()) << "ParseConfig reads no key file";

  auto plain = ParseConfig(kMinimal, "/etc/nvs/nvsd.json");
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->client_curve.has_value()) << "without client_curve the endpoint stays plain";
}

// A folder with a config whose client_curve names nvsd.key and clients.
class ClientCurveKeys : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/nvs-config-test-XXXXXX";
    dir_ = mkdtemp(pattern);
    config_path_ = dir_ / "nvsd.json";
    auto parsed = ParseConfig(R"({"state_dir":"s","variants":[{"name":"a","argv":["x"]}],
        "client_curve":{"secret_key_file":"nvsd.key","authorized_keys_file":"clients"}})",
                              config_path_);
    ASSERT_TRUE(parsed.ok()) << parsed.status().message();
    config_ = parsed.value();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Write(const std::string& name, const std::string& text, std::filesystem::perms mode) {
    std::ofstream(dir_ / name) << text;
    std::filesystem::permissions(dir_ / name, mode);
  }
  std::string Load() {
    const Status status = LoadClientCurveKeys(config_, config_path_);
    return status.ok() ? "" : status.message();
  }

  static constexpr auto kOwnerOnly = std::filesystem::perms::owner_read | std::filesystem::perms::owner_write;
  static constexpr auto kReadable = kOwnerOnly | std::filesystem::perms::group_read | std::filesystem::perms::others_read;
  std::filesystem::path dir_;
  std::filesystem::path config_path_;
  Config config_;
};

TEST_F(ClientCurveKeys, LoadsTheKeyPairAndTheAuthorizedKeys) {
  const protocol::CurveKeyPair server = protocol::GenerateKeyPair().value();
  const protocol::CurveKeyPair client = protocol::GenerateKeyPair().value();
  Write("nvsd.key", "# nvsd\n" + server.secret_key + "\n", kOwnerOnly);
  Write("clients", "# who may connect\n" + client.public_key + " panel-1\n", kReadable);
  ASSERT_EQ(Load(), "");
  EXPECT_EQ(config_.client_curve->keys.public_key, server.public_key);
  ASSERT_EQ(config_.client_curve->authorized.size(), 1u);
  EXPECT_EQ(config_.client_curve->authorized[0].public_key, client.public_key);
  EXPECT_EQ(config_.client_curve->authorized[0].name, "panel-1");
}

TEST_F(ClientCurveKeys, RefusesAMissingMalformedOrReadableSecretKey) {
  const protocol::CurveKeyPair server = protocol::GenerateKeyPair().value();
  Write("clients", "", kReadable);
  const std::string key = (dir_ / "nvsd.key").string();
  std::string message = Load();
  EXPECT_NE(message.find(config_path_.string() + ": invalid configuration:"), std::string::npos) << message;
  EXPECT_NE(message.find("client_curve.secret_key_file: " + key + ": cannot read: No such file"), std::string::npos)
      << message;

  Write("nvsd.key", "not a key\n", kOwnerOnly);
  message = Load();
  EXPECT_NE(message.find("client_curve.secret_key_file: " + key + ": line 1: not a Z85 CURVE key"), std::string::npos)
      << message;

  Write("nvsd.key", server.secret_key + "\n", kReadable);
  message = Load();
  EXPECT_NE(message.find("client_curve.secret_key_file: " + key + ": group or others may read or write this secret key"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("chmod 600 " + key), std::string::npos) << message;
  EXPECT_EQ(message.find(server.secret_key), std::string::npos) << "a secret key is never printed";
}

TEST_F(ClientCurveKeys, RefusesABadOrSharedAuthorizedKeysFile) {
  Write("nvsd.key", protocol::GenerateKeyPair().value().secret_key + "\n", kOwnerOnly);
  const std::string clients = (dir_ / "clients").string();
  std::string message = Load();
  EXPECT_NE(message.find("client_curve.authorized_keys_file: " + clients + ": cannot read"), std::string::npos) << message;
  Write("clients", "# ok\nssh-rsa AAAA\n", kReadable);
  message = Load();
  EXPECT_NE(message.find("client_curve.authorized_keys_file: " + clients + ": line 2: not a Z85 CURVE key"),
            std::string::npos)
      << message;
  Write("clients", "", kReadable | std::filesystem::perms::others_write);
  message = Load();
  EXPECT_NE(message.find("client_curve.authorized_keys_file: " + clients + ": group or others may write it"),
            std::string::npos)
      << message;
  // Both files wrong: both reported at once.
  Write("nvsd.key", "x\n", kOwnerOnly);
  message = Load();
  EXPECT_NE(message.find("client_curve.secret_key_file"), std::string::npos) << message;
  EXPECT_NE(message.find("client_curve.authorized_keys_file"), std::string::npos) << message;
}

}  // namespace
}  // namespace nvs::supervisor
