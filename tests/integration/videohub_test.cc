// nvs-videohub (issue 6) with raw TCP clients against a real gateway, a real
// nvsd and real variants: the prelude, each request kind, ACK/NAK, status
// broadcast, per-connection lock views, framing as real clients produce it,
// a variant killed mid-stream, a poison take, an absent nvsd, a client
// that stops reading, and the Prometheus metrics.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <thread>

#include "local_etcd.h"
#include "nvsd_harness.h"
#include "variant_harness.h"

extern char** environ;

namespace nvs::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

// The gateway as a child process; its log in a file; its port from the log.
class Gateway {
 public:
  explicit Gateway(const std::string& endpoint, std::vector<std::string> extra = {}, int timeout_ms = 2000) {
    char pattern[] = "/tmp/nvs-vh-XXXXXX";
    dir_ = mkdtemp(pattern);
    log_ = dir_ / "gateway.log";
    std::vector<std::string> args = {NVS_VIDEOHUB, "--listen", "127.0.0.1:0", "--endpoint", endpoint,
                                     "--refresh-ms", "200", "--timeout-ms", std::to_string(timeout_ms)};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 2, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn(&pid_, NVS_VIDEOHUB, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    const std::regex listening(R"re("event":"listening".*"port":(\d+))re");
    WaitLog([&](const std::string& text) {
      std::smatch m;
      if (std::regex_search(text, m, listening)) port_ = std::stoi(m[1]);
      return port_ != 0;
    });
  }

  // Waits (inotify on the log file, with a deadline) until `done` is true
  // of the gateway's log.
  bool WaitLog(const std::function<bool(const std::string&)>& done,
               std::chrono::milliseconds deadline = std::chrono::milliseconds(10000)) const {
    return WaitForFileCondition(log_, [&] { return done(Log()); }, deadline);
  }
  ~Gateway() {
    if (pid_ > 0) {
      SignalProcess(pid_, SIGTERM);
      int status = 0;
      waitpid(pid_, &status, 0);
    }
    fs::remove_all(dir_);
  }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string Log() const {
    std::ifstream in(log_);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  fs::path dir_, log_;
  pid_t pid_ = -1;
  int port_ = 0;
};

// A raw TCP client, as a panel would be.
class Panel {
 public:
  explicit Panel(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    const int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~Panel() {
    if (fd_ >= 0) close(fd_);
  }
  bool connected() const { return connected_; }
  // Best effort (the gateway may drop this client meanwhile): bytes sent.
  std::size_t SendMuch(const std::string& bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
    return done;
  }
  void SmallReceiveBuffer() {
    const int size = 4096;
    setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  }
  void Send(const std::string& bytes) { ASSERT_EQ(send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size())); }
  void CloseWrite() { shutdown(fd_, SHUT_WR); }
  // Reads until `text` has arrived (everything up to and including it is
  // consumed and returned), or "" at the deadline.
  std::string Until(const std::string& text, std::chrono::milliseconds deadline = std::chrono::milliseconds(5000)) {
    return UntilEither(text, text, deadline);
  }
  // Reads until `one` or `other` has arrived, whichever comes first (as
  // Until), or "" at the deadline.
  std::string UntilEither(const std::string& one, const std::string& other, std::chrono::milliseconds deadline) {
    const auto until = Clock::now() + deadline;
    for (;;) {
      const auto a = buffer_.find(one), b = buffer_.find(other);
      if (a != std::string::npos || b != std::string::npos) {
        const std::size_t end = a < b ? a + one.size() : b + other.size();
        std::string out = buffer_.substr(0, end);
        buffer_.erase(0, end);
        return out;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
      if (left <= 0) return "";
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left)) <= 0) continue;
      char chunk[65536];
      const ssize_t n = recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) {
        closed_ = true;
        return "";
      }
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }
  // True when the gateway closed the connection within the deadline.
  bool WaitClosed(std::chrono::milliseconds deadline) {
    const auto until = Clock::now() + deadline;
    while (!closed_ && Clock::now() < until) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      char chunk[65536];
      const ssize_t n = recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) closed_ = true;
    }
    return closed_;
  }
  std::string Prelude() { return Until("END PRELUDE:\n\n"); }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
  std::string buffer_;
};

class Videohub : public ::testing::Test {
 protected:
  void Start(std::vector<VariantSpec> variants = {"router-a", "router-b", "router-c"}) {
    nvsd_ = std::make_unique<NvsdHarness>(NvsdOptions(std::move(variants)));
    ASSERT_TRUE(nvsd_->WaitAllHealthy());
    gateway_ = std::make_unique<Gateway>(nvsd_->client_endpoint());
    ASSERT_GT(gateway_->port(), 0) << gateway_->Log();
  }
  json Dump() { return nvsd_->Query({{"op", "dump"}})["result"]["state"]; }

  std::unique_ptr<NvsdHarness> nvsd_;
  std::unique_ptr<Gateway> gateway_;
};

TEST_F(Videohub, PreludeRequestsAckNakAndBroadcast) {
  Start();
  Panel a(gateway_->port()), b(gateway_->port());
  const std::string prelude = a.Prelude();
  ASSERT_FALSE(prelude.empty()) << gateway_->Log();
  b.Prelude();
  // The blocks in the order real units send them, ports from 0.
  std::vector<std::string> order;
  for (const std::string header : {"PROTOCOL PREAMBLE:", "VIDEOHUB DEVICE:", "INPUT LABELS:", "OUTPUT LABELS:",
                                   "VIDEO OUTPUT LOCKS:", "VIDEO OUTPUT ROUTING:", "END PRELUDE:"}) {
    const auto at = prelude.find(header + "\n");
    ASSERT_NE(at, std::string::npos) << header << "\n" << prelude;
    order.push_back(header);
  }
  EXPECT_LT(prelude.find("PROTOCOL PREAMBLE:"), prelude.find("VIDEOHUB DEVICE:"));
  EXPECT_NE(prelude.find("Device present: true\n"), std::string::npos);
  EXPECT_NE(prelude.find("Video inputs: 16\n"), std::string::npos);
  EXPECT_NE(prelude.find("Video outputs: 16\n"), std::string::npos);
  EXPECT_NE(prelude.find("\n0 Input 1\n"), std::string::npos);

  // A take of two routes: ACK to the sender, then the change to everyone.
  a.Send("VIDEO OUTPUT ROUTING:\n3 7\n4 8\n\n");
  EXPECT_EQ(a.Until("ACK\n\n"), "ACK\n\n");
  EXPECT_NE(a.Until("VIDEO OUTPUT ROUTING:\n3 7\n4 8\n\n"), "");
  EXPECT_NE(b.Until("VIDEO OUTPUT ROUTING:\n3 7\n4 8\n\n"), "") << "the other client did not see the change";
  EXPECT_EQ(Dump()["routes"][3], 7);
  // Labels with multibyte UTF-8, to the end of the line.
  a.Send("INPUT LABELS:\n2 Kamera Süd 摄像机\n\n");
  EXPECT_EQ(a.Until("ACK\n\n"), "ACK\n\n");
  EXPECT_NE(b.Until("INPUT LABELS:\n2 Kamera Süd 摄像机\n\n"), "");
  EXPECT_EQ(Dump()["input_labels"][2], "Kamera Süd 摄像机");
  // Locks are per connection: O to the owner, L to the others.
  a.Send("VIDEO OUTPUT LOCKS:\n5 O\n\n");
  EXPECT_NE(a.Until("ACK\n\nVIDEO OUTPUT LOCKS:\n5 O\n\n"), "");
  EXPECT_NE(b.Until("VIDEO OUTPUT LOCKS:\n5 L\n\n"), "");
  // ... and b cannot route it, unlock it, only force it.
  b.Send("VIDEO OUTPUT ROUTING:\n5 1\n\n");
  EXPECT_EQ(b.Until("NAK\n\n"), "NAK\n\n");
  b.Send("VIDEO OUTPUT LOCKS:\n5 F\n\n");
  EXPECT_NE(b.Until("ACK\n\nVIDEO OUTPUT LOCKS:\n5 U\n\n"), "");
  EXPECT_NE(a.Until("VIDEO OUTPUT LOCKS:\n5 U\n\n"), "");
  // PING, a dump of one block, an unknown block, junk, bad indices.
  a.Send("PING:\n\n");
  EXPECT_EQ(a.Until("ACK\n\n"), "ACK\n\n");
  a.Send("VIDEO OUTPUT ROUTING:\n\n");
  const std::string dump = a.Until("15 15\n\n");
  EXPECT_EQ(dump.rfind("ACK\n\nVIDEO OUTPUT ROUTING:\n0 0\n", 0), 0u) << dump;
  for (const std::string bad : {"FOO BAR:\n1 2\n\n", "this is junk\n\n", "VIDEO OUTPUT ROUTING:\n16 1\n\n",
                                "VIDEO OUTPUT ROUTING:\n-1 1\n\n", "VIDEO OUTPUT ROUTING:\n1 x\n\n",
                                "VIDEO OUTPUT LOCKS:\n1 Q\n\n"}) {
    a.Send(bad);
    EXPECT_EQ(a.Until("NAK\n\n"), "NAK\n\n") << bad;
  }
  EXPECT_EQ(Dump()["routes"][1], 1) << "a refused block changed something";
  // A change made by another nvsd client reaches the panels too (the
  // gateway re-reads nvsd's state every --refresh-ms).
  ASSERT_EQ(nvsd_->Command({{"op", "route"}, {"client", "automation"}, {"routes", {{{"output", 10}, {"input", 12}}}}})["status"],
            "committed");
  EXPECT_NE(b.Until("VIDEO OUTPUT ROUTING:\n10 12\n\n"), "");
}

// videohubctrl's --backup output restores the friendly name first, with a
// VIDEOHUB DEVICE block of that one line: the gateway NAKed it, so every
// restore reported an error. It is taken as a unit takes it: ACK, then the
// new VIDEOHUB DEVICE block to every client; and a later connection's
// prelude says it. It is the gateway's own (held in its process), never a
// command to nvsd; the rest of the block stays read-only.
TEST_F(Videohub, AClientSetsTheFriendlyNameAsOnAUnit) {
  Start();
  Panel a(gateway_->port()), b(gateway_->port());
  ASSERT_FALSE(a.Prelude().empty()) << gateway_->Log();
  b.Prelude();
  a.Send("VIDEOHUB DEVICE:\nFriendly name: MCR router 2\n\n");
  EXPECT_EQ(a.Until("ACK\n\n"), "ACK\n\n") << gateway_->Log();
  const std::string told = a.Until("Serial ports: 0\n\n");
  EXPECT_NE(told.find("Friendly name: MCR router 2\n"), std::string::npos) << told;
  const std::string heard = b.Until("Serial ports: 0\n\n");
  EXPECT_NE(heard.find("VIDEOHUB DEVICE:\nDevice present: true\n"), std::string::npos) << heard;
  EXPECT_NE(heard.find("Friendly name: MCR router 2\n"), std::string::npos) << heard;
  Panel c(gateway_->port());
  const std::string prelude = c.Prelude();
  EXPECT_NE(prelude.find("Friendly name: MCR router 2\n"), std::string::npos) << prelude;
  // The model, the size and the rest are the unit's own.
  for (const std::string bad : {"VIDEOHUB DEVICE:\nModel name: x\n\n",
                                "VIDEOHUB DEVICE:\nFriendly name: y\nVideo inputs: 4\n\n",
                                "VIDEOHUB DEVICE:\nFriendly name: \x01\n\n"}) {
    a.Send(bad);
    EXPECT_EQ(a.Until("NAK\n\n"), "NAK\n\n") << bad;
  }
  EXPECT_EQ(Dump()["routes"][0], 0) << "nothing went to nvsd";
}

TEST_F(Videohub, WorksWithCurveKeys) {
  NvsdOptions options({"router-a", "router-b", "router-c"});
  options.curve = true;
  nvsd_ = std::make_unique<NvsdHarness>(options);
  ASSERT_TRUE(nvsd_->WaitAllHealthy());
  gateway_ = std::make_unique<Gateway>(nvsd_->client_endpoint(),
                                       std::vector<std::string>{"--client-config", nvsd_->client_config().string()});
  ASSERT_GT(gateway_->port(), 0) << gateway_->Log();
  EXPECT_NE(gateway_->Log().find(R"("security":"curve")"), std::string::npos) << gateway_->Log();
  Panel a(gateway_->port());
  const std::string prelude = a.Prelude();
  EXPECT_NE(prelude.find("Device present: true\n"), std::string::npos) << prelude << gateway_->Log();
  a.Send("VIDEO OUTPUT ROUTING:\n3 7\n\n");
  EXPECT_EQ(a.Until("ACK\n\n"), "ACK\n\n") << gateway_->Log();
  EXPECT_EQ(Dump()["routes"][3], 7);
}

TEST_F(Videohub, SaysWhenNvsdRefusesItsKey) {
  NvsdOptions options({"router-a", "router-b"});
  options.curve = true;
  nvsd_ = std::make_unique<NvsdHarness>(options);
  ASSERT_TRUE(nvsd_->WaitAllHealthy());
  const fs::path keys = nvsd_->keys_dir();
  // A key pair of its own that nobody listed in nvsd's authorized keys.
  std::ofstream(keys / "gateway.json") << json{{"server_public_key_file", "nvsd.pub"},
                                               {"secret_key_file", "gateway.key"}}.dump();
  int status = -1;
  RunCapture(std::string(NVS_CLI) + " keygen " + (keys / "gateway").string(), keys / "keygen.err", &status);
  ASSERT_EQ(status, 0);
  gateway_ = std::make_unique<Gateway>(nvsd_->client_endpoint(),
                                       std::vector<std::string>{"--client-config", (keys / "gateway.json").string()});
  ASSERT_GT(gateway_->port(), 0) << gateway_->Log();
  EXPECT_TRUE(gateway_->WaitLog([](const std::string& log) {
    return log.find(R"("event":"nvsd_refused")") != std::string::npos &&
           log.find("nvsd refused this client's CURVE key") != std::string::npos;
  })) << gateway_->Log();
  Panel a(gateway_->port());
  const std::string prelude = a.Prelude();
  EXPECT_NE(prelude.find("Device present: false\n"), std::string::npos) << prelude;
  std::ifstream pub(keys / "gateway.pub");
  std::string comment, key;
  std::getline(pub, comment);
  std::getline(pub, comment);
  pub >> key;
  // nvsd logged it; and the gateway tries again (libzmq would not), once a second.
  const std::string logged_key = R"("key":)" + json(key).dump();
  EXPECT_TRUE(nvsd_->WaitNvsdLog([&](const std::string& log) {
    std::size_t refusals = 0;
    for (auto at = log.find(logged_key); at != std::string::npos; at = log.find(logged_key, at + 1)) ++refusals;
    return refusals >= 2;
  })) << nvsd_->NvsdLog();
  const std::string log = gateway_->Log();
  EXPECT_EQ(log.find(R"("event":"nvsd_refused")"), log.rfind(R"("event":"nvsd_refused")")) << "logged once: " << log;
}

TEST_F(Videohub, FramingAsRealClientsProduceIt) {
  Start();
  Panel a(gateway_->port());
  a.Prelude();
  // Several blocks in one segment, \r\n line ends.
  a.Send("VIDEO OUTPUT ROUTING:\r\n1 2\r\n\r\nPING:\r\n\r\nVIDEO OUTPUT ROUTING:\r\n2 3\r\n\r\n");
  EXPECT_NE(a.Until("ACK\n\nVIDEO OUTPUT ROUTING:\n1 2\n\n"), "");
  EXPECT_EQ(a.Until("ACK\n\n"), "ACK\n\n");
  EXPECT_NE(a.Until("ACK\n\nVIDEO OUTPUT ROUTING:\n2 3\n\n"), "");
  // One block split at awkward places, each part its own send (TCP_NODELAY:
  // its own segment). Whether the gateway reads them apart is up to the
  // scheduler; the protocol unit tests feed every split point directly.
  for (const std::string part : {"VIDEO OUT", "PUT ROUTING:\n6", " 9\n", "\n"}) a.Send(part);
  EXPECT_NE(a.Until("ACK\n\nVIDEO OUTPUT ROUTING:\n6 9\n\n"), "");
  // A last block without its blank line, then the client closes: still done.
  a.Send("VIDEO OUTPUT ROUTING:\n7 11\n");
  a.CloseWrite();
  EXPECT_NE(a.Until("ACK\n\n"), "");
  EXPECT_EQ(Dump()["routes"][7], 11);
  EXPECT_EQ(Dump()["routes"][6], 9);
}

TEST_F(Videohub, AVariantKilledMidStreamAndAPoisonTake) {
  Start({VariantSpec("router-a", {"--fault", "crash-on=POISON"}), VariantSpec("router-b", {"--fault", "crash-on=POISON"}),
         "router-c"});
  Panel a(gateway_->port()), b(gateway_->port());
  a.Prelude();
  b.Prelude();
  // Takes keep being ACKed while a variant is SIGKILLed among them.
  for (int i = 0; i < 40; ++i) {
    if (i == 20) {
      ASSERT_TRUE(SignalProcess(nvsd_->VariantPid("router-b"), SIGKILL));
    }
    a.Send("VIDEO OUTPUT ROUTING:\n" + std::to_string(i % 16) + " " + std::to_string((i * 3) % 16) + "\n\n");
    const std::string got = a.Until("ACK\n\n");  // (after the previous take's status block, if it changed something)
    EXPECT_NE(got, "") << "take " << i;
    EXPECT_EQ(got.find("NAK"), std::string::npos) << "take " << i << ": " << got;
  }
  ASSERT_TRUE(nvsd_->WaitAllHealthy());
  const json before = Dump();
  // A label that kills two variants: NAKed, quarantined, nothing changes.
  a.Send("OUTPUT LABELS:\n0 POISON\n\n");
  EXPECT_EQ(a.Until("NAK\n\n"), "NAK\n\n");
  const json quarantined = nvsd_->WaitEvent([](const json& e) { return e["event"] == "quarantine"; });
  EXPECT_TRUE(quarantined.is_object());
  ASSERT_TRUE(nvsd_->WaitAllHealthy());
  EXPECT_EQ(Dump(), before);
  EXPECT_EQ(b.Until("OUTPUT LABELS:", std::chrono::milliseconds(600)), "") << "the other client saw a change";
  EXPECT_NE(gateway_->Log().find("\"event\":\"quarantined\""), std::string::npos) << "no operator notice";
  // Sent again: refused at once.
  a.Send("OUTPUT LABELS:\n0 POISON\n\n");
  EXPECT_EQ(a.Until("NAK\n\n"), "NAK\n\n");
}

TEST_F(Videohub, WithoutNvsdTheDeviceIsNotPresent) {
  Gateway gateway("ipc:///tmp/nvs-vh-no-nvsd-" + std::to_string(getpid()) + ".sock", {}, 200);
  ASSERT_GT(gateway.port(), 0);
  // (It listens only once its first dump has failed, after 200 ms.)
  EXPECT_NE(gateway.Log().find("device_absent"), std::string::npos);
  Panel a(gateway.port());
  const std::string prelude = a.Prelude();
  EXPECT_NE(prelude.find("Device present: false"), std::string::npos) << prelude;
  EXPECT_EQ(prelude.find("VIDEO OUTPUT ROUTING:"), std::string::npos) << "no made-up routes";
  a.Send("PING:\n\n");
  EXPECT_EQ(a.Until("ACK\n\n"), "ACK\n\n");
  a.Send("VIDEO OUTPUT ROUTING:\n1 1\n\n");
  EXPECT_EQ(a.Until("NAK\n\n"), "NAK\n\n");
}

TEST_F(Videohub, WhenNvsdGoesAwayPanelsAreToldTheDeviceIsGone) {
  Start();
  Panel a(gateway_->port());
  a.Prelude();
  // Odd bytes in a label (not UTF-8) are refused, and the panel stays.
  a.Send(std::string("INPUT LABELS:\n1 caf\xe9\n\n"));
  EXPECT_EQ(a.Until("NAK\n\n"), "NAK\n\n");
  ASSERT_TRUE(SignalProcess(nvsd_->nvsd_pid(), SIGKILL));
  // Within a refresh plus the gateway's 2 s timeout: the device block says so.
  EXPECT_NE(a.Until("Device present: false\n\n", std::chrono::milliseconds(8000)), "") << gateway_->Log();
  a.Send("VIDEO OUTPUT ROUTING:\n1 2\n\n");
  EXPECT_EQ(a.Until("NAK\n\n"), "NAK\n\n") << "nothing is pretended while nvsd is away";
  Panel late(gateway_->port());
  EXPECT_NE(late.Prelude().find("Device present: false"), std::string::npos) << "the listener stays open";
}

// A take NAKed while nvsd was stopped (SIGSTOP, a paused machine) waited in
// nvsd's socket and was carried out when nvsd went on: the NAK was a lie.
// Now the gateway's command carries its deadline (expires_at_ms), the NAK
// comes only after it, and nvsd never carries out a command past it.
TEST_F(Videohub, ATakeNakedWhileNvsdWasStoppedIsNeverCarriedOutLater) {
  Start();
  Panel a(gateway_->port());
  a.Prelude();
  ASSERT_TRUE(SignalProcess(nvsd_->nvsd_pid(), SIGSTOP));
  a.Send("VIDEO OUTPUT ROUTING:\n1 5\n\n");
  // (The device block saying it is absent may come first.)
  EXPECT_NE(a.Until("NAK\n\n", std::chrono::milliseconds(10000)), "") << gateway_->Log();
  ASSERT_TRUE(SignalProcess(nvsd_->nvsd_pid(), SIGCONT));
  // (The take was in nvsd's socket before this query: it has been read.)
  EXPECT_EQ(Dump()["routes"][1], 1) << "a NAKed take was carried out";
  EXPECT_EQ(gateway_->Log().find("late_commit_after_nak"), std::string::npos);
}

// The same with nvsd killed and started again: the take waited in the
// gateway's own queue to nvsd and was delivered on the reconnection.
// A cluster (README, "Running on several machines"): the gateway is given
// both members; it follows the leader, and when the leader dies (SIGKILL
// of its nvsd and variants) a panel's takes are ACKed again by the new
// leader, each carried out once.
TEST(VideohubCluster, TheGatewayFollowsTheLeaderAcrossATakeover) {
  cluster::LocalEtcd etcd;
  const Status up = etcd.Start(3, std::chrono::milliseconds(30000));
  ASSERT_TRUE(up.ok()) << up.message();
  json endpoints = json::array();
  for (const auto& url : etcd.client_urls()) endpoints.push_back(url);
  std::vector<std::unique_ptr<NvsdHarness>> members;
  for (const std::string name : {"a", "b"}) {
    members.push_back(std::make_unique<NvsdHarness>(
        NvsdOptions({"router-a", "router-b"},
                    {{"cluster", {{"etcd_endpoints", endpoints}, {"name", "vh" + std::to_string(getpid())},
                                  {"member", name}, {"lease_ttl_s", 1}}}})));
  }
  for (auto& m : members) ASSERT_TRUE(m->WaitReady());
  const auto leader = [&]() -> int {
    for (int round = 0; round < 200; ++round) {
      for (int k = 0; k < 2; ++k) {
        const json s = members[k] ? members[k]->Status(std::chrono::milliseconds(500)) : json();
        if (s.is_object() && s["cluster"].value("role", "") == "leader" && s["nvsd"].value("available", false)) return k;
      }
      members[0]->WaitEvent([](const json&) { return false; }, std::chrono::milliseconds(20));  // (between two asks)
    }
    return -1;
  };
  const int first = leader();
  ASSERT_GE(first, 0);
  // The follower first in the list: the gateway must move to the leader.
  Gateway gateway(members[1 - first]->client_endpoint() + "," + members[first]->client_endpoint(), {}, 3000);
  ASSERT_GT(gateway.port(), 0) << gateway.Log();
  Panel a(gateway.port());
  ASSERT_NE(a.Prelude().find("Device present: true"), std::string::npos) << gateway.Log();
  a.Send("VIDEO OUTPUT ROUTING:\n1 2\n\n");
  EXPECT_EQ(a.Until("ACK\n\n"), "ACK\n\n") << gateway.Log();
  // The leader's "host" dies.
  const int variant_a = members[first]->VariantPid("router-a"), variant_b = members[first]->VariantPid("router-b");
  kill(members[first]->nvsd_pid(), SIGKILL);
  kill(variant_a, SIGKILL);
  kill(variant_b, SIGKILL);
  ASSERT_TRUE(members[first]->WaitNvsdExit(std::chrono::milliseconds(5000)).has_value());
  members[first].reset();
  // Takes until one is ACKed by the new leader (a take that finds no
  // leader within its deadline is NAKed, as when nvsd is down).
  bool acked = false;
  const auto until = Clock::now() + std::chrono::seconds(20);
  while (!acked && Clock::now() < until) {
    a.Send("VIDEO OUTPUT ROUTING:\n3 4\n\n");
    acked = a.UntilEither("ACK\n\n", "NAK\n\n", std::chrono::milliseconds(5000)).find("ACK") != std::string::npos;
    // (A NAK comes at once while the gateway has no member to ask: the
    // next take waits for the status block the gateway sends when the
    // device is back, or half a second.)
    if (!acked) a.Until("Device present: true", std::chrono::milliseconds(500));
  }
  ASSERT_TRUE(acked) << gateway.Log();
  const json state = members[1 - first]->Query({{"op", "dump"}})["result"]["state"];
  EXPECT_EQ(state["routes"][1], 2) << state.dump();
  EXPECT_EQ(state["routes"][3], 4) << state.dump();
  EXPECT_NE(gateway.Log().find("\"nvsd_member\""), std::string::npos) << gateway.Log();
}

TEST(VideohubRestart, ATakeNakedWhileNvsdWasDownIsNotCarriedOutWhenItComesBack) {
  char pattern[] = "/tmp/nvs-vh-restart-XXXXXX";
  const fs::path dir = mkdtemp(pattern);
  const json overrides = {{"state_dir", (dir / "state").string()},
                          {"client_endpoint", "ipc://" + (dir / "client.sock").string()},
                          {"event_endpoint", "ipc://" + (dir / "events.sock").string()}};
  auto nvsd = std::make_unique<NvsdHarness>(NvsdOptions({"router-a", "router-b"}, overrides));
  ASSERT_TRUE(nvsd->WaitAllHealthy());
  Gateway gateway(nvsd->client_endpoint());
  Panel a(gateway.port());
  a.Prelude();
  ASSERT_TRUE(SignalProcess(nvsd->nvsd_pid(), SIGKILL));
  ASSERT_TRUE(nvsd->WaitNvsdExit(std::chrono::milliseconds(10000)));
  a.Send("VIDEO OUTPUT ROUTING:\n1 5\n\n");
  // (A device block saying it is absent may come first.)
  EXPECT_NE(a.Until("NAK\n\n", std::chrono::milliseconds(10000)), "") << gateway.Log();
  nvsd = std::make_unique<NvsdHarness>(NvsdOptions({"router-a", "router-b"}, overrides));
  ASSERT_TRUE(nvsd->WaitAllHealthy());
  // Once the gateway is connected to the new nvsd, anything it had queued
  // would have been delivered first, before this take.
  const auto connections = [](const std::string& log) {
    std::size_t n = 0;
    for (auto at = log.find("nvsd_connected"); at != std::string::npos; at = log.find("nvsd_connected", at + 1)) ++n;
    return n;
  };
  ASSERT_TRUE(gateway.WaitLog([&](const std::string& log) { return connections(log) >= 2; })) << gateway.Log();
  // The gateway may still call the device absent for a moment (a refresh
  // asked for while nvsd was down fails, as late as the reconnection): the
  // take is NAKed then, as it should be, and is sent again once the panel
  // is told the device is present.
  const auto absent_naks = [&] {
    const std::string log = gateway.Log();
    std::size_t n = 0;
    for (auto at = log.find("out of range [0, 0)"); at != std::string::npos; at = log.find("out of range [0, 0)", at + 1)) ++n;
    return n;
  };
  bool acked = false;
  for (int attempt = 0; attempt < 3 && !acked; ++attempt) {
    const std::size_t before = absent_naks();
    a.Send("VIDEO OUTPUT ROUTING:\n2 3\n\n");
    const std::string answer = a.UntilEither("ACK\n\n", "NAK\n\n", std::chrono::milliseconds(10000));
    acked = answer.ends_with("ACK\n\n");
    if (acked) break;
    // Only the NAK of an absent device (the gateway's log says so) is a reason to try again.
    ASSERT_TRUE(gateway.WaitLog([&](const std::string&) { return absent_naks() > before; }, std::chrono::milliseconds(2000)))
        << "NAKed, and not because the device was absent: " << gateway.Log();
    a.Until("Device present: true\n", std::chrono::milliseconds(10000));
  }
  EXPECT_TRUE(acked) << gateway.Log();
  EXPECT_EQ(nvsd->Query({{"op", "dump"}})["result"]["state"]["routes"][2], 3);
  EXPECT_EQ(nvsd->Query({{"op", "dump"}})["result"]["state"]["routes"][1], 1) << "a NAKed take was carried out";
  nvsd.reset();
  fs::remove_all(dir);
}

// --metrics: the counters move with what the panels are told, and the page
// is one Prometheus's own checker passes.
TEST_F(Videohub, MetricsCountAcksNaksAndConnectionsForPrometheus) {
  nvsd_ = std::make_unique<NvsdHarness>(NvsdOptions({"router-a", "router-b", "router-c"}));
  ASSERT_TRUE(nvsd_->WaitAllHealthy());
  gateway_ = std::make_unique<Gateway>(nvsd_->client_endpoint(), std::vector<std::string>{"--metrics", "127.0.0.1:0"});
  ASSERT_GT(gateway_->port(), 0) << gateway_->Log();
  std::smatch m;
  const std::string log = gateway_->Log();
  ASSERT_TRUE(std::regex_search(log, m, std::regex(R"re("event":"metrics_listening".*"port":(\d+))re"))) << log;
  const std::string address = "127.0.0.1:" + m[1].str();
  const auto scrape = [&] {
    const auto [status, page] = HttpGet(address, "/metrics");
    EXPECT_EQ(status, 200) << page;
    return page;
  };

  Panel a(gateway_->port()), b(gateway_->port());
  ASSERT_FALSE(a.Prelude().empty()) << gateway_->Log();
  b.Prelude();
  a.Send("VIDEO OUTPUT ROUTING:\n3 7\n\n");
  EXPECT_EQ(a.Until("ACK\n\n"), "ACK\n\n");
  a.Send("VIDEO OUTPUT LOCKS:\n5 O\n\n");
  EXPECT_NE(a.Until("ACK\n\n"), "");
  b.Send("VIDEO OUTPUT ROUTING:\n5 1\n\n");  // a's lock: nvsd commits the router's refusal
  EXPECT_NE(b.Until("NAK\n\n"), "");
  a.Send("VIDEO OUTPUT ROUTING:\n16 1\n\n");  // out of range: never sent to nvsd
  EXPECT_NE(a.Until("NAK\n\n"), "");
  a.Send("PING:\n\n");
  EXPECT_NE(a.Until("ACK\n\n"), "");

  const std::string page = scrape();
  const auto value = [&](const std::string& series) { return MetricValue(page, series); };
  EXPECT_EQ(value("nvs_videohub_clients"), 2) << page;
  EXPECT_EQ(value("nvs_videohub_connections_accepted_total"), 2);
  EXPECT_EQ(value(R"(nvs_videohub_acks_total{request="command"})"), 2);
  EXPECT_EQ(value(R"(nvs_videohub_acks_total{request="ping"})"), 1);
  EXPECT_EQ(value(R"(nvs_videohub_naks_total{cause="locked"})"), 1);
  EXPECT_EQ(value(R"(nvs_videohub_naks_total{cause="invalid_request"})"), 1);
  EXPECT_EQ(value(R"(nvs_videohub_naks_total{cause="nvsd_timeout"})"), 0);
  EXPECT_EQ(value("nvs_videohub_commands_forwarded_total"), 3);
  EXPECT_EQ(value("nvs_videohub_commands_quarantined_total"), 0);
  EXPECT_EQ(value(R"(nvs_videohub_nvsd_answer_seconds_count{request="command"})"), 3);
  EXPECT_GT(value(R"(nvs_videohub_nvsd_answer_seconds_count{request="dump"})").value_or(0), 0);
  EXPECT_EQ(value("nvs_videohub_locked_outputs"), 1);
  EXPECT_EQ(value("nvs_videohub_device_present"), 1);
  EXPECT_EQ(value("nvs_videohub_nvsd_connected"), 1);
  EXPECT_EQ(page.find("127.0.0.1:"), std::string::npos) << "a client's address in a label: " << page;

  // A panel that closes its connection: counted once the gateway has seen it.
  b.CloseWrite();
  const std::string closed = R"(nvs_videohub_connections_closed_total{reason="client_closed"})";
  const auto until = Clock::now() + std::chrono::seconds(10);
  std::string later = scrape();
  while (MetricValue(later, closed) != 1 && Clock::now() < until) {
    a.Send("PING:\n\n");  // (a round trip through the gateway's loop between two scrapes)
    a.Until("ACK\n\n");
    later = scrape();
  }
  EXPECT_EQ(MetricValue(later, closed), 1) << later;
  EXPECT_EQ(MetricValue(later, "nvs_videohub_clients"), 1) << later;

  // Prometheus's own checker parses the page and lints it (names, units, HELP).
  char pattern[] = "/tmp/nvs-vh-metrics-XXXXXX";
  const fs::path dir = mkdtemp(pattern);
  EXPECT_EQ(PromtoolProblems(later, dir), "") << later;

  // The endpoint's address in use: a clear error at start, exit code 2.
  int status = -1;
  RunCapture(std::string(NVS_VIDEOHUB) + " --metrics " + address + " --endpoint " + nvsd_->client_endpoint(),
             dir / "taken.err", &status);
  std::ifstream taken_file(dir / "taken.err");
  const std::string taken(std::istreambuf_iterator<char>(taken_file), {});
  EXPECT_EQ(status, 2) << taken;
  EXPECT_NE(taken.find("cannot bind the metrics endpoint " + address), std::string::npos) << taken;
  fs::remove_all(dir);
}

TEST_F(Videohub, AClientThatStopsReadingIsDroppedAndOthersGoOn) {
  Start();
  Panel slow(gateway_->port()), fast(gateway_->port());
  slow.Prelude();
  fast.Prelude();
  // Asks for far more than it reads (a hundred thousand dumps, some 10 MB
  // of answers), never reading; from another thread, since the gateway may
  // stop reading it too.
  slow.SmallReceiveBuffer();
  std::string flood;
  for (int i = 0; i < 100000; ++i) flood += "VIDEO OUTPUT ROUTING:\n\n";
  std::thread flooder([&] { slow.SendMuch(flood); });
  fast.Send("VIDEO OUTPUT ROUTING:\n9 4\n\n");
  EXPECT_NE(fast.Until("ACK\n\nVIDEO OUTPUT ROUTING:\n9 4\n\n"), "") << "the slow client held up the others";
  EXPECT_TRUE(gateway_->WaitLog([](const std::string& log) { return log.find("stopped reading") != std::string::npos; }))
      << gateway_->Log();
  flooder.join();
  fast.Send("PING:\n\n");
  EXPECT_EQ(fast.Until("ACK\n\n"), "ACK\n\n");
}

}  // namespace
}  // namespace nvs::testing
