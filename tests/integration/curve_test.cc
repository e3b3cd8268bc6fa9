// CURVE on nvsd's client endpoint (client_curve) with real processes: a
// listed client commits through `nvs send` and through a raw cppzmq client;
// an unlisted key, a plain client and a client without nvsd's public key are
// refused, and nvsd logs each refusal (a flood only ten a second); `nvs`
// says at once that nvsd refused it, with exit code 4; nvsd refuses to start
// with a bad secret key. (nvs-videohub with keys: videohub_test.cc.)
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <zmq.hpp>

#include "nvs/protocol/curve_keys.h"
#include "nvsd_harness.h"

namespace nvs::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
namespace fs = std::filesystem;

json Route(int output, int input) {
  return {{"op", "route"}, {"client", "curve-test"}, {"routes", {{{"output", output}, {"input", input}}}}};
}

// A client as automation would write it with cppzmq alone: a DEALER, CURVE
// (Z85 keys, as libzmq documents them) when given keys, and a socket monitor
// to see how its handshakes end.
class RawClient {
 public:
  // `keys` null: a plain client. `reconnect_ms`: a client that is to be
  // refused reconnects seldom, so that each makes one refusal (libzmq
  // reconnects after a closed handshake, and nvsd logs at most ten refusals
  // a second).
  RawClient(const std::string& endpoint, const std::string& server_public_key, const protocol::CurveKeyPair* keys,
            int reconnect_ms = 10) {
    static std::atomic<int> counter{0};
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::reconnect_ivl, reconnect_ms);
    if (keys != nullptr) {
      socket_.set(zmq::sockopt::curve_serverkey, server_public_key);
      socket_.set(zmq::sockopt::curve_publickey, keys->public_key);
      socket_.set(zmq::sockopt::curve_secretkey, keys->secret_key);
    }
    const std::string monitor = "inproc://raw-client-" + std::to_string(++counter);
    const int events = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                       ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
    EXPECT_EQ(zmq_socket_monitor(socket_.handle(), monitor.c_str(), events), 0);
    monitor_.set(zmq::sockopt::linger, 0);
    monitor_.connect(monitor);
    socket_.connect(endpoint);
  }
  ~RawClient() { zmq_socket_monitor(socket_.handle(), nullptr, 0); }

  // The next handshake event and its value, or {0, 0} at the deadline.
  std::pair<int, int> NextHandshake(milliseconds deadline = milliseconds(10000)) {
    zmq::pollitem_t item{monitor_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, deadline) <= 0) return {0, 0};
    zmq::message_t head;
    zmq::message_t endpoint;
    if (!monitor_.recv(head) || !head.more() || !monitor_.recv(endpoint) || head.size() < 6) return {0, 0};
    std::uint16_t event = 0;
    std::uint32_t value = 0;
    std::memcpy(&event, head.data(), sizeof event);
    std::memcpy(&value, static_cast<const char*>(head.data()) + 2, sizeof value);
    return {event, static_cast<int>(value)};
  }

  // Sends a command; its reply, or null at the deadline.
  json Command(const json& cmd, milliseconds deadline = milliseconds(20000)) {
    const std::string id = "raw-" + std::to_string(getpid()) + "-" + std::to_string(++next_id_);
    const json request = {{"type", "command"}, {"id", id}, {"cmd", cmd}};
    socket_.send(zmq::buffer(request.dump()), zmq::send_flags::none);
    const auto until = Clock::now() + deadline;
    for (;;) {
      const auto left = std::chrono::duration_cast<milliseconds>(until - Clock::now());
      if (left.count() <= 0) return json();
      zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, left);
      zmq::message_t message;
      while (socket_.recv(message, zmq::recv_flags::dontwait)) {
        json reply = json::parse(message.to_string(), nullptr, false);
        if (reply.is_object() && reply.value("id", "") == id) return reply;
      }
    }
  }

 private:
  zmq::context_t context_{1};
  zmq::socket_t socket_{context_, zmq::socket_type::dealer};
  zmq::socket_t monitor_{context_, zmq::socket_type::pair};
  int next_id_ = 0;
};

constexpr int kSeldom = 60000;  // ms between reconnects

bool IsHandshakeFailure(int event) {
  return event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL || event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
         event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
}

// A refusal of `key` (Z85; null for one without a key) for `reason` is in the log.
bool LoggedRefusal(const std::string& log, const json& key, const std::string& reason) {
  for (const auto& line : LogEvents(log, "client_refused")) {
    if (line["key"] == key && line.value("reason", "").find(reason) != std::string::npos) return true;
  }
  return false;
}

std::string ReadText(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

NvsdOptions CurveOptions() {
  NvsdOptions options({"router-a", "router-b"});
  options.curve = true;
  return options;
}

// `nvs ARGS` with neither $NVS_CLIENT_CONFIG nor $NVS_ENDPOINT unless `env` sets them.
struct NvsRun {
  std::string out;
  std::string err;
  int status = -1;
};
NvsRun RunNvs(const NvsdHarness& nvsd, const std::string& args, const std::string& env = "") {
  NvsRun run;
  const fs::path err = nvsd.dir() / "nvs.err";
  // `timeout` bounds a run that would wait for nvs's own (long) timeout.
  run.out = RunCapture("timeout 60 env -u NVS_CLIENT_CONFIG -u NVS_ENDPOINT " + env + " " + std::string(NVS_CLI) + " " + args,
                       err, &run.status);
  run.err = ReadText(err);
  return run;
}

TEST(NvsdCurve, ListedClientCommitsThroughNvsSendAndARawCurveClient) {
  NvsdHarness nvsd(CurveOptions());
  ASSERT_TRUE(nvsd.WaitReady()) << "the harness's own client is a listed CURVE client";
  const std::string config = nvsd.client_config().string();

  // nvs with --client-config (the endpoint comes from the client config).
  NvsRun send = RunNvs(nvsd, "send --json --client-config " + config + " '" + Route(0, 3).dump() + "'");
  ASSERT_EQ(send.status, 0) << send.err;
  const json reply = json::parse(send.out, nullptr, false);
  EXPECT_EQ(reply.value("status", ""), "committed") << send.out;
  EXPECT_EQ(reply.value("seq", 0), 1) << send.out;
  // ... and with $NVS_CLIENT_CONFIG.
  NvsRun status = RunNvs(nvsd, "status", "NVS_CLIENT_CONFIG=" + config);
  ASSERT_EQ(status.status, 0) << status.err;
  EXPECT_NE(status.out.find("ready"), std::string::npos) << status.out;

  // A raw cppzmq client with the listed key pair.
  auto keys = protocol::ReadSecretKeyFile(nvsd.keys_dir() / "client.key");
  ASSERT_TRUE(keys.ok()) << keys.status().message();
  auto server = protocol::ReadPublicKeyFile(nvsd.keys_dir() / "nvsd.pub");
  ASSERT_TRUE(server.ok()) << server.status().message();
  RawClient raw(nvsd.client_endpoint(), server.value(), &keys.value());
  EXPECT_EQ(raw.NextHandshake().first, ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
  const json committed = raw.Command(Route(1, 4));
  EXPECT_EQ(committed.value("status", ""), "committed") << committed.dump();
  EXPECT_EQ(committed.value("seq", 0), 2) << committed.dump();

  // nvsd logged who came in, under the name in the authorized-keys file.
  EXPECT_TRUE(nvsd.WaitNvsdLog([&](const std::string& log) {
    for (const auto& line : LogEvents(log, "client_admitted")) {
      if (line["key"] == keys.value().public_key && line["name"] == "harness") return true;
    }
    return false;
  })) << nvsd.NvsdLog();
}

TEST(NvsdCurve, RefusesUnlistedKeysPlainClientsAndWrongServerKeysAndLogsEach) {
  NvsdHarness nvsd(CurveOptions());
  ASSERT_TRUE(nvsd.WaitReady());
  const std::string server = protocol::ReadPublicKeyFile(nvsd.keys_dir() / "nvsd.pub").value();

  // A key nvsd does not list: the ZAP handler says 400, the client learns it.
  const protocol::CurveKeyPair stranger = protocol::GenerateKeyPair().value();
  {
    RawClient unlisted(nvsd.client_endpoint(), server, &stranger, kSeldom);
    unlisted.Command(Route(0, 9), milliseconds(0));  // queued; never delivered
    const auto [event, value] = unlisted.NextHandshake();
    EXPECT_EQ(event, ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
    EXPECT_EQ(value, 400);
  }
  EXPECT_TRUE(nvsd.WaitNvsdLog([&](const std::string& log) {
    return LoggedRefusal(log, stranger.public_key, "key not in authorized_keys_file");
  })) << nvsd.NvsdLog();
  // The peer's address: over ipc://, libzmq gives localhost:UID:GID:PID (this process).
  for (const auto& line : LogEvents(nvsd.NvsdLog(), "client_refused")) {
    if (line["key"] != stranger.public_key) continue;
    ASSERT_TRUE(line["address"].is_string()) << line.dump();
    const std::string address = line["address"];
    EXPECT_EQ(address.substr(address.rfind(':') + 1), std::to_string(getpid())) << line.dump();
  }

  // A plain client: refused in the handshake (nvsd speaks CURVE only).
  {
    RawClient plain(nvsd.client_endpoint(), "", nullptr, kSeldom);
    plain.Command(Route(0, 9), milliseconds(0));
    EXPECT_TRUE(IsHandshakeFailure(plain.NextHandshake().first));
  }
  // (Which side reads the other's greeting first decides how nvsd sees it.)
  EXPECT_TRUE(nvsd.WaitNvsdLog([](const std::string& log) {
    return LoggedRefusal(log, json(), "not CURVE") || LoggedRefusal(log, json(), "handshake not completed");
  })) << nvsd.NvsdLog();

  // A listed key, but not nvsd's public key: nvsd cannot read its HELLO.
  const protocol::CurveKeyPair listed = protocol::ReadSecretKeyFile(nvsd.keys_dir() / "client.key").value();
  {
    RawClient lost(nvsd.client_endpoint(), protocol::GenerateKeyPair().value().public_key, &listed, kSeldom);
    lost.Command(Route(0, 9), milliseconds(0));
    EXPECT_TRUE(IsHandshakeFailure(lost.NextHandshake().first));
  }
  EXPECT_TRUE(nvsd.WaitNvsdLog([](const std::string& log) {
    return LoggedRefusal(log, json(), "does not have nvsd's public key");
  })) << nvsd.NvsdLog();

  // None of their commands got in; the listed client still does.
  const json status = nvsd.Status();
  EXPECT_EQ(status["nvsd"]["commits"], 0) << status.dump();
  EXPECT_EQ(nvsd.Command(Route(2, 5)).value("status", ""), "committed");
}

TEST(NvsdCurve, NvsSaysAtOnceThatNvsdRefusedItWithExitCode4) {
  NvsdHarness nvsd(CurveOptions());
  ASSERT_TRUE(nvsd.WaitReady());
  const fs::path keys = nvsd.keys_dir();
  // An operator's new key pair that nobody put into nvsd's list yet.
  NvsRun keygen = RunNvs(nvsd, "keygen " + (keys / "newcomer").string());
  ASSERT_EQ(keygen.status, 0) << keygen.err;
  EXPECT_EQ(fs::status(keys / "newcomer.key").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  const std::string newcomer_public = protocol::ReadPublicKeyFile(keys / "newcomer.pub").value();
  EXPECT_NE(keygen.out.find("public key: " + newcomer_public), std::string::npos) << keygen.out;
  EXPECT_EQ(RunNvs(nvsd, "keygen " + (keys / "newcomer").string()).status, 2) << "keygen overwrote a key";
  std::ofstream(keys / "newcomer.json") << json{{"endpoint", nvsd.client_endpoint()},
                                                {"server_public_key_file", "nvsd.pub"},
                                                {"secret_key_file", "newcomer.key"}}.dump();
  std::ofstream(keys / "lost.json") << json{{"endpoint", nvsd.client_endpoint()},
                                            {"server_public_key_file", "newcomer.pub"},
                                            {"secret_key_file", "client.key"}}.dump();

  // A timeout longer than the run's bound: exit 4 means it was told at once
  // (exit 3 would be the timeout, 124 the bound).
  const std::string cmd = " --timeout 600000 '" + Route(0, 1).dump() + "'";
  // Unlisted key: refused, and said so at once.
  NvsRun unlisted = RunNvs(nvsd, "send --client-config " + (keys / "newcomer.json").string() + cmd);
  EXPECT_EQ(unlisted.status, 4) << unlisted.err;
  EXPECT_NE(unlisted.err.find("nvsd refused this client's CURVE key " + newcomer_public), std::string::npos)
      << unlisted.err;
  // Plain nvs against a CURVE nvsd.
  NvsRun plain = RunNvs(nvsd, "send --endpoint " + nvsd.client_endpoint() + cmd);
  EXPECT_EQ(plain.status, 4) << plain.err;
  EXPECT_NE(plain.err.find("requires CURVE"), std::string::npos) << plain.err;
  EXPECT_NE(plain.err.find("--client-config"), std::string::npos) << plain.err;
  // The wrong server public key.
  NvsRun lost = RunNvs(nvsd, "status --timeout 600000 --client-config " + (keys / "lost.json").string());
  EXPECT_EQ(lost.status, 4) << lost.err;
  EXPECT_NE(lost.err.find("server_public_key"), std::string::npos) << lost.err;
  // quarantine review goes through the same client.
  NvsRun review = RunNvs(nvsd, "quarantine list", "NVS_CLIENT_CONFIG=" + (keys / "newcomer.json").string());
  EXPECT_EQ(review.status, 4) << review.err;
  EXPECT_NE(review.err.find("nvs quarantine: nvsd refused this client's CURVE key"), std::string::npos) << review.err;
  // A secret key others can read is a usage error, found before connecting.
  fs::permissions(keys / "newcomer.key", fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  NvsRun leaky = RunNvs(nvsd, "status --client-config " + (keys / "newcomer.json").string());
  EXPECT_EQ(leaky.status, 2) << leaky.err;
  EXPECT_NE(leaky.err.find("secret_key_file: "), std::string::npos) << leaky.err;
  EXPECT_NE(leaky.err.find("chmod 600"), std::string::npos) << leaky.err;

  EXPECT_EQ(nvsd.Status()["nvsd"]["commits"], 0);
}

TEST(NvsdCurve, CurveClientOfAPlainNvsdIsToldSo) {
  NvsdHarness nvsd(NvsdOptions({"router-a"}));
  ASSERT_TRUE(nvsd.WaitReady());
  const fs::path keys = nvsd.dir() / "own-keys";
  fs::create_directory(keys);
  ASSERT_TRUE(protocol::WriteKeyPair(keys / "nvsd").ok());
  ASSERT_TRUE(protocol::WriteKeyPair(keys / "op").ok());
  std::ofstream(keys / "op.json") << json{{"server_public_key_file", "nvsd.pub"}, {"secret_key_file", "op.key"}}.dump();
  NvsRun run = RunNvs(nvsd, "status --timeout 600000 --endpoint " + nvsd.client_endpoint() + " --client-config " +
                                (keys / "op.json").string());
  EXPECT_EQ(run.status, 4) << run.err;
  EXPECT_NE(run.err.find("does not use CURVE"), std::string::npos) << run.err;
  // Without a client config, as before.
  EXPECT_EQ(RunNvs(nvsd, "status --endpoint " + nvsd.client_endpoint()).status, 0);
}

TEST(NvsdCurve, AFloodOfRefusalsIsLoggedAtMostTenASecond) {
  NvsdHarness nvsd(CurveOptions());
  ASSERT_TRUE(nvsd.WaitReady());
  const std::string server = protocol::ReadPublicKeyFile(nvsd.keys_dir() / "nvsd.pub").value();
  constexpr int kClients = 40;
  std::vector<protocol::CurveKeyPair> keys;
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < kClients; ++i) {
    keys.push_back(protocol::GenerateKeyPair().value());
    clients.push_back(std::make_unique<RawClient>(nvsd.client_endpoint(), server, &keys.back(), kSeldom));
  }
  for (auto& c : clients) EXPECT_EQ(c->NextHandshake().first, ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
  clients.clear();
  // Every refusal is either logged or counted; the count comes once its second is over.
  const auto accounted = [&](const std::string& log) {
    std::uint64_t total = LogEvents(log, "client_refused").size();
    for (const auto& line : LogEvents(log, "client_refusals_suppressed")) total += line.value("count", 0u);
    return total >= kClients;
  };
  ASSERT_TRUE(nvsd.WaitNvsdLog(accounted)) << nvsd.NvsdLog();
  const std::string log = nvsd.NvsdLog();
  const auto logged = LogEvents(log, "client_refused");
  EXPECT_FALSE(LogEvents(log, "client_refusals_suppressed").empty()) << log;
  // At most ten in each second the flood lasted (windows of one second from the first refusal of each).
  ASSERT_FALSE(logged.empty());
  const auto millis = [](const json& line) {
    const std::string ts = line.value("ts", "");  // 2026-11-26T10:00:00.123Z
    return (std::stol(ts.substr(11, 2)) * 3600 + std::stol(ts.substr(14, 2)) * 60 + std::stol(ts.substr(17, 2))) * 1000 +
           std::stol(ts.substr(20, 3));
  };
  const long span_ms = millis(logged.back()) - millis(logged.front());
  EXPECT_LE(static_cast<long>(logged.size()), 10 * (span_ms / 1000 + 1)) << log;
  EXPECT_LT(logged.size(), static_cast<std::size_t>(kClients)) << log;
  // And nvsd still serves its listed client.
  EXPECT_EQ(nvsd.Command(Route(0, 2)).value("status", ""), "committed");
}

// nvsd with a client_curve whose secret key file is `secret` (written as
// given, with `mode`; nullopt: no file): its exit status and stderr.
class BadSecretKey : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/nvs-curve-it-XXXXXX";
    dir_ = mkdtemp(pattern);
    ASSERT_TRUE(protocol::WriteKeyPair(dir_ / "client").ok());
    std::ofstream(dir_ / "authorized_keys") << ReadText(dir_ / "client.pub");
    std::ofstream(dir_ / "nvsd.json") << json{
        {"state_dir", "state"},
        {"client_endpoint", "ipc://" + (dir_ / "client.sock").string()},
        {"event_endpoint", ""},
        {"client_curve", {{"secret_key_file", "nvsd.key"}, {"authorized_keys_file", "authorized_keys"}}},
        {"variants", {{{"name", "a"}, {"argv", {RouterPath("router-a")}}}}}}.dump();
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::pair<int, std::string> Start(const std::optional<std::string>& secret, fs::perms mode, const char* extra = "") {
    fs::remove(dir_ / "nvsd.key");
    if (secret) {
      std::ofstream(dir_ / "nvsd.key") << *secret;
      fs::permissions(dir_ / "nvsd.key", mode);
    }
    int status = -1;
    // (`timeout`: a nvsd that started anyway must not hang the test.)
    RunCapture("timeout 20 " + NvsdPath() + " --config " + (dir_ / "nvsd.json").string() + extra, dir_ / "err", &status);
    return {status, ReadText(dir_ / "err")};
  }

  fs::path dir_;
};

TEST_F(BadSecretKey, NvsdRefusesToStartWithAMissingMalformedOrReadableKey) {
  const std::string secret = protocol::GenerateKeyPair().value().secret_key + "\n";
  const std::string key = (dir_ / "nvsd.key").string();
  constexpr fs::perms kOwnerOnly = fs::perms::owner_read | fs::perms::owner_write;

  auto [status, err] = Start(std::nullopt, kOwnerOnly);
  EXPECT_EQ(status, 2) << err;
  EXPECT_NE(err.find("client_curve.secret_key_file: " + key + ": cannot read"), std::string::npos) << err;

  std::tie(status, err) = Start("# nvsd\nnot-a-key\n", kOwnerOnly);
  EXPECT_EQ(status, 2) << err;
  EXPECT_NE(err.find("client_curve.secret_key_file: " + key + ": line 2: not a Z85 CURVE key"), std::string::npos)
      << err;

  std::tie(status, err) = Start(secret, kOwnerOnly | fs::perms::group_read | fs::perms::others_read);
  EXPECT_EQ(status, 2) << err;
  EXPECT_NE(err.find("group or others may read or write this secret key (mode 0644); make it owner-only: chmod 600 " + key),
            std::string::npos)
      << err;
  EXPECT_EQ(err.find(secret.substr(0, 40)), std::string::npos) << "the secret key was printed";
  EXPECT_FALSE(fs::exists(dir_ / "state")) << "nvsd started something before refusing";

  // --check finds it too; with a good key --check passes and names nvsd's public key.
  std::tie(status, err) = Start(secret, kOwnerOnly | fs::perms::group_read, " --check");
  EXPECT_EQ(status, 2) << err;
  std::tie(status, err) = Start(secret, kOwnerOnly, " --check");
  EXPECT_EQ(status, 0) << err;
}

}  // namespace
}  // namespace nvs::testing
