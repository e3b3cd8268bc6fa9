#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <fstream>

#include "nvs/protocol/curve_client.h"
#include "nvs/protocol/curve_keys.h"

namespace nvs::protocol {
namespace {

namespace fs = std::filesystem;

// A fresh folder, removed afterwards.
class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/nvs-curve-test-XXXXXX";
    path_ = mkdtemp(pattern);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  fs::path Write(const std::string& name, const std::string& text, fs::perms mode) const {
    const fs::path file = path_ / name;
    std::ofstream(file) << text;
    fs::permissions(file, mode);
    return file;
  }

 private:
  fs::path path_;
};

constexpr fs::perms kOwnerOnly = fs::perms::owner_read | fs::perms::owner_write;
constexpr fs::perms kWorldReadable = kOwnerOnly | fs::perms::group_read | fs::perms::others_read;

bool Mentions(const Status& status, const std::string& text) {
  return !status.ok() && status.message().find(text) != std::string::npos;
}

TEST(CurveKeys, Z85KeysAreFortyCharactersThatDecodeToThirtyTwoBytes) {
  auto pair = GenerateKeyPair();
  ASSERT_TRUE(pair.ok()) << pair.status().message();
  EXPECT_TRUE(IsZ85Key(pair.value().public_key));
  EXPECT_TRUE(IsZ85Key(pair.value().secret_key));
  EXPECT_EQ(EncodeZ85Key(DecodeZ85Key(pair.value().public_key)), pair.value().public_key);
  EXPECT_EQ(DecodeZ85Key(pair.value().public_key).size(), kCurveKeyBytes);
  EXPECT_FALSE(IsZ85Key(pair.value().public_key.substr(1)));
  EXPECT_FALSE(IsZ85Key(pair.value().public_key + "0"));
  EXPECT_FALSE(IsZ85Key(std::string(39, '0') + " "));
  EXPECT_FALSE(IsZ85Key(std::string(39, '0') + "\""));   // not in the alphabet
  EXPECT_FALSE(IsZ85Key(std::string(40, '#')));          // over 2^32: why no key starts with '#'
  EXPECT_TRUE(IsZ85Key(std::string(40, '0')));
}

TEST(CurveKeys, KeyFileHoldsOneKeyAmongComments) {
  const std::string key = GenerateKeyPair().value().public_key;
  struct Case {
    std::string text;
    const char* error;  // nullptr: parses to `key`
  };
  const Case cases[] = {
      {key, nullptr},
      {key + "\n", nullptr},
      {"# nvsd's key\n\n  " + key + "   nvsd  \r\n# the end\n", nullptr},
      {"", "no key in it"},
      {"# just a comment\n\n", "no key in it"},
      {key + "\n" + key + "\n", "line 2: a second key (the first is on line 1)"},
      {"# c\nnot a key\n", "line 2: not a Z85 CURVE key"},
      {key.substr(0, 39) + "\n", "line 1: not a Z85 CURVE key"},
  };
  for (const auto& c : cases) {
    auto parsed = ParseKeyFile(c.text);
    if (c.error == nullptr) {
      ASSERT_TRUE(parsed.ok()) << c.text << ": " << parsed.status().message();
      EXPECT_EQ(parsed.value(), key);
    } else {
      EXPECT_TRUE(Mentions(parsed.status(), c.error)) << c.text << "\n got: " << parsed.status().ToString();
    }
  }
}

TEST(CurveKeys, AuthorizedKeysOnePerLineWithOptionalName) {
  const std::string a = GenerateKeyPair().value().public_key;
  const std::string b = GenerateKeyPair().value().public_key;
  auto keys = ParseAuthorizedKeys("# clients of nvsd\n" + a + " panel 1 (studio A)\n\n" + b + "\n");
  ASSERT_TRUE(keys.ok()) << keys.status().message();
  ASSERT_EQ(keys.value().size(), 2u);
  EXPECT_EQ(keys.value()[0].public_key, a);
  EXPECT_EQ(keys.value()[0].name, "panel 1 (studio A)");
  EXPECT_EQ(keys.value()[0].line, 2);
  EXPECT_EQ(keys.value()[1].public_key, b);
  EXPECT_EQ(keys.value()[1].name, "");
  EXPECT_EQ(keys.value()[1].line, 4);

  auto empty = ParseAuthorizedKeys("# nobody yet\n");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty.value().empty());
  EXPECT_TRUE(Mentions(ParseAuthorizedKeys(a + " x\n" + b + "\n" + a + " y\n").status(), "line 3: the key of line 1 again"));
  EXPECT_TRUE(Mentions(ParseAuthorizedKeys(a + "\nssh-ed25519 AAAA\n").status(), "line 2: not a Z85 CURVE key"));
}

TEST(CurveKeys, SecretKeyFileMustExistBeOwnerOnlyAndHoldAKey) {
  TempDir dir;
  const CurveKeyPair pair = GenerateKeyPair().value();
  const fs::path good = dir.Write("good.key", "# secret\n" + pair.secret_key + "\n", kOwnerOnly);
  auto read = ReadSecretKeyFile(good);
  ASSERT_TRUE(read.ok()) << read.status().message();
  EXPECT_EQ(read.value().secret_key, pair.secret_key);
  EXPECT_EQ(read.value().public_key, pair.public_key) << "the public key is derived from the secret one";

  const fs::path readable = dir.Write("readable.key", pair.secret_key + "\n", kWorldReadable);
  EXPECT_TRUE(Mentions(ReadSecretKeyFile(readable).status(),
                       readable.string() + ": group or others may read or write this secret key"))
      << ReadSecretKeyFile(readable).status().ToString();
  EXPECT_TRUE(Mentions(ReadSecretKeyFile(readable).status(),
                       "(mode 0644); make it owner-only: chmod 600 " + readable.string()));
  const fs::path group = dir.Write("group.key", pair.secret_key + "\n", kOwnerOnly | fs::perms::group_read);
  EXPECT_TRUE(Mentions(ReadSecretKeyFile(group).status(), "chmod 600"));
  EXPECT_TRUE(Mentions(ReadSecretKeyFile(dir.path() / "missing.key").status(), "missing.key: cannot read: No such file"));
  const fs::path malformed = dir.Write("malformed.key", "secret\n", kOwnerOnly);
  EXPECT_TRUE(Mentions(ReadSecretKeyFile(malformed).status(), "malformed.key: line 1: not a Z85 CURVE key"));
  const fs::path empty = dir.Write("empty.key", "", kOwnerOnly);
  EXPECT_TRUE(Mentions(ReadSecretKeyFile(empty).status(), "empty.key: no key in it"));
  EXPECT_TRUE(Mentions(ReadSecretKeyFile(dir.path()).status(), "not a regular file"));
}

TEST(CurveKeys, AuthorizedKeysFileMustNotBeWritableByOthers) {
  TempDir dir;
  const std::string key = GenerateKeyPair().value().public_key;
  const fs::path shared = dir.Write("authorized", key + "\n", kWorldReadable | fs::perms::group_write);
  EXPECT_TRUE(Mentions(ReadAuthorizedKeysFile(shared).status(), "group or others may write it"));
  EXPECT_TRUE(Mentions(ReadAuthorizedKeysFile(shared).status(), "chmod go-w"));
  fs::permissions(shared, kWorldReadable);
  auto keys = ReadAuthorizedKeysFile(shared);
  ASSERT_TRUE(keys.ok()) << keys.status().message();
  EXPECT_EQ(keys.value().size(), 1u);
  const fs::path bad = dir.Write("bad", "# c\n" + key + "\nnope\n", kWorldReadable);
  EXPECT_TRUE(Mentions(ReadAuthorizedKeysFile(bad).status(), bad.string() + ": line 3"));
}

TEST(CurveKeys, WriteKeyPairMakesOwnerOnlySecretAndNeverOverwrites) {
  TempDir dir;
  auto pair = WriteKeyPair(dir.path() / "panel-1");
  ASSERT_TRUE(pair.ok()) << pair.status().message();
  const fs::path secret = dir.path() / "panel-1.key";
  const fs::path pub = dir.path() / "panel-1.pub";
  EXPECT_EQ(fs::status(secret).permissions() & fs::perms::all, kOwnerOnly);
  EXPECT_EQ(fs::status(pub).permissions() & fs::perms::all, kWorldReadable);
  auto read = ReadSecretKeyFile(secret);
  ASSERT_TRUE(read.ok()) << read.status().message();
  EXPECT_EQ(read.value().secret_key, pair.value().secret_key);
  EXPECT_EQ(read.value().public_key, pair.value().public_key);
  EXPECT_EQ(ReadPublicKeyFile(pub).value(), pair.value().public_key);
  // A .pub appended to an authorized-keys file lists the key under its name.
  std::ifstream in(pub);
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  auto listed = ParseAuthorizedKeys(text);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed.value().size(), 1u);
  EXPECT_EQ(listed.value()[0].name, "panel-1");

  auto again = WriteKeyPair(dir.path() / "panel-1");
  EXPECT_TRUE(Mentions(again.status(), "already exists")) << again.status().ToString();
  EXPECT_EQ(ReadSecretKeyFile(secret).value().secret_key, pair.value().secret_key) << "overwritten";
  EXPECT_TRUE(Mentions(WriteKeyPair(dir.path() / "no-such-dir" / "x").status(), "not a folder"));
}

TEST(ClientConfig, ReadsKeysRelativeToItsFolder) {
  TempDir dir;
  const CurveKeyPair server = WriteKeyPair(dir.path() / "nvsd").value();
  const CurveKeyPair own = WriteKeyPair(dir.path() / "operator").value();
  auto config = ParseClientConfig(R"({
      // comments are allowed
      "endpoint": "tcp://nvsd.example:5555",
      "server_public_key_file": "nvsd.pub",
      "secret_key_file": "operator.key"})",
                                  dir.path() / "client.json");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config.value().endpoint, "tcp://nvsd.example:5555");
  EXPECT_EQ(config.value().server_public_key, server.public_key);
  EXPECT_EQ(config.value().keys.public_key, own.public_key);
  EXPECT_EQ(config.value().keys.secret_key, own.secret_key);

  auto inline_key = ParseClientConfig(R"({"server_public_key":")" + server.public_key +
                                          R"(","secret_key_file":"operator.key"})",
                                      dir.path() / "client.json");
  ASSERT_TRUE(inline_key.ok()) << inline_key.status().message();
  EXPECT_EQ(inline_key.value().server_public_key, server.public_key);
  EXPECT_EQ(inline_key.value().endpoint, "");
}

TEST(ClientConfig, EveryErrorNamesTheFileAndField) {
  TempDir dir;
  WriteKeyPair(dir.path() / "nvsd");
  WriteKeyPair(dir.path() / "operator");
  dir.Write("leaky.key", GenerateKeyPair().value().secret_key + "\n", kWorldReadable);
  const std::string file = (dir.path() / "client.json").string();
  struct Case {
    std::string text;
    std::string mentions;
  };
  const Case cases[] = {
      {"{", "not valid JSON"},
      {"[]", "must be a JSON object"},
      {R"({"server_public_key_file":"nvsd.pub"})", "secret_key_file: required"},
      {R"({"secret_key_file":"operator.key"})", "server_public_key_file: required"},
      {R"({"server_public_key_file":"nvsd.pub","server_public_key":"x","secret_key_file":"operator.key"})",
       "server_public_key: give server_public_key or server_public_key_file, not both"},
      {R"({"server_public_key":"short","secret_key_file":"operator.key"})", "server_public_key: not a Z85 CURVE key"},
      {R"({"server_public_key_file":"gone.pub","secret_key_file":"operator.key"})",
       "server_public_key_file: " + (dir.path() / "gone.pub").string() + ": cannot read"},
      {R"({"server_public_key_file":"nvsd.pub","secret_key_file":"leaky.key"})", "secret_key_file: "},
      {R"({"server_public_key_file":"nvsd.pub","secret_key_file":"leaky.key"})", "chmod 600"},
      {R"({"server_public_key_file":"nvsd.pub","secret_key_file":"operator.key","endpoint":"localhost:5555"})",
       "endpoint: must be a tcp:// or ipc:// address"},
      {R"({"server_public_key_file":"nvsd.pub","secret_key_file":"operator.key","secret_key":"x"})",
       "secret_key: unknown field"},
      {R"({"server_public_key_file":"nvsd.pub","secret_key_file":5})", "secret_key_file: must be a non-empty string"},
  };
  for (const auto& c : cases) {
    auto config = ParseClientConfig(c.text, file);
    ASSERT_FALSE(config.ok()) << c.text;
    EXPECT_TRUE(Mentions(config.status(), file + ": ")) << config.status().message();
    EXPECT_TRUE(Mentions(config.status(), c.mentions)) << c.text << "\n got: " << config.status().message();
  }
}

TEST(ClientConfig, EndpointFromFlagThenEnvironmentThenConfigThenDefault) {
  ClientConfig config;
  config.endpoint = "tcp://from-config:1";
  unsetenv(kEndpointEnv);
  EXPECT_EQ(ResolveEndpoint("tcp://flag:1", config), "tcp://flag:1");
  EXPECT_EQ(ResolveEndpoint("", config), "tcp://from-config:1");
  EXPECT_EQ(ResolveEndpoint("", std::nullopt), kDefaultClientEndpoint);
  setenv(kEndpointEnv, "tcp://env:1", 1);
  EXPECT_EQ(ResolveEndpoint("", config), "tcp://env:1");
  EXPECT_EQ(ResolveEndpoint("tcp://flag:1", config), "tcp://flag:1");
  unsetenv(kEndpointEnv);
}

TEST(ClientConfig, ResolvedFromFlagOrEnvironment) {
  TempDir dir;
  WriteKeyPair(dir.path() / "nvsd");
  WriteKeyPair(dir.path() / "operator");
  const fs::path file =
      dir.Write("client.json", R"({"server_public_key_file":"nvsd.pub","secret_key_file":"operator.key"})", kWorldReadable);
  unsetenv(kClientConfigEnv);
  auto none = ResolveClientConfig("");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none.value().has_value()) << "no flag, no environment: a plain client";
  auto from_flag = ResolveClientConfig(file.string());
  ASSERT_TRUE(from_flag.ok()) << from_flag.status().message();
  EXPECT_TRUE(from_flag.value().has_value());
  setenv(kClientConfigEnv, (dir.path() / "missing.json").c_str(), 1);
  auto from_env = ResolveClientConfig("");
  EXPECT_TRUE(Mentions(from_env.status(), "missing.json: cannot read"));
  EXPECT_TRUE(Mentions(from_env.status(), "$NVS_CLIENT_CONFIG"));
  EXPECT_TRUE(ResolveClientConfig(file.string()).ok()) << "the flag wins over the environment";
  unsetenv(kClientConfigEnv);
}

TEST(HandshakeRefusal, WhichEventsMeanNvsdRefusesThisClient) {
  const std::string key = "KEY";
  struct Case {
    int event;
    int value;
    bool curve;
    int in_a_row;
    const char* mentions;  // nullptr: not (yet) a refusal
  };
  const Case cases[] = {
      {ZMQ_EVENT_HANDSHAKE_FAILED_AUTH, 400, true, 1, "nvsd refused this client's CURVE key KEY (ZAP status 400)"},
      {ZMQ_EVENT_HANDSHAKE_FAILED_AUTH, 500, true, 1, "could not authenticate this client (ZAP status 500)"},
      {ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL, ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH, false, 1,
       "nvsd's client endpoint requires CURVE"},
      {ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL, ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH, true, 1,
       "does not use CURVE"},
      {ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL, ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC, true, 1, "server_public_key"},
      {ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL, ZMQ_PROTOCOL_ERROR_ZMTP_UNEXPECTED_COMMAND, true, 1, "0x10000001"},
      {ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL, 32, false, 1, nullptr},
      {ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL, 32, false, 2, "probably requires CURVE; give this client a client config"},
      {ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL, 32, true, 1, nullptr},
      {ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL, 32, true, 2, "either server_public_key is not nvsd's public key"},
      {ZMQ_EVENT_HANDSHAKE_SUCCEEDED, 0, true, 0, nullptr},
      {ZMQ_EVENT_DISCONNECTED, 7, true, 5, nullptr},
  };
  for (const auto& c : cases) {
    const auto refusal = HandshakeRefusal(c.event, c.value, c.curve, c.in_a_row, key);
    if (c.mentions == nullptr) {
      EXPECT_FALSE(refusal.has_value()) << c.event << " " << c.value << ": " << refusal.value_or("");
    } else {
      ASSERT_TRUE(refusal.has_value()) << c.event << " " << c.value;
      EXPECT_NE(refusal->find(c.mentions), std::string::npos) << *refusal;
    }
  }
}

}  // namespace
}  // namespace nvs::protocol
