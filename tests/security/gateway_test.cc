// Finding 2 of the security review (issue 15): the Videohub gateway was an
// unauthenticated path around CURVE. It listened on 0.0.0.0:9990 by
// default; an anonymous TCP client read the router, took routes and sent a
// poison. Now it listens on loopback unless told otherwise, a wider listen
// address needs --allow networks, a peer outside them is refused, and it
// warns when nvsd requires CURVE and the gateway is open beyond loopback.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <regex>

#include "nvsd_harness.h"
#include "security_support.h"

extern char** environ;

namespace nvs::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

class GatewayProcess {
 public:
  GatewayProcess(const fs::path& dir, std::vector<std::string> args) : log_(dir / "gateway.log") {
    args.insert(args.begin(), NVS_VIDEOHUB);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 2, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn(&pid_, NVS_VIDEOHUB, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
  }
  ~GatewayProcess() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
  }
  std::string Log() const {
    std::ifstream in(log_);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  bool WaitLog(const std::string& text) const {
    return WaitForFileCondition(log_, [&] { return Log().find(text) != std::string::npos; },
                                std::chrono::milliseconds(10000));
  }
  // The port it listens on (from its log), or 0.
  int Port() const {
    int port = 0;
    const std::regex listening(R"re("event":"listening".*"port":(\d+))re");
    WaitForFileCondition(log_, [&] {
      std::smatch m;
      const std::string text = Log();
      if (std::regex_search(text, m, listening)) port = std::stoi(m[1]);
      return port != 0;
    }, std::chrono::milliseconds(10000));
    return port;
  }
  // Its exit status if it exits within the deadline.
  std::optional<int> WaitExit(std::chrono::milliseconds deadline) {
    const auto until = Clock::now() + deadline;
    while (Clock::now() < until) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      // (No event to wait on for another process's exit without a pidfd
      // here: poll its state each 20 ms, up to the deadline.)
      poll(nullptr, 0, 20);
    }
    return std::nullopt;
  }

 private:
  fs::path log_;
  pid_t pid_ = -1;
  bool exited_ = false;
};

// A TCP client from `source` (a loopback address of this machine) to
// 127.0.0.1:port: what it reads within the deadline ("" when the gateway
// closed the connection first).
std::string ConnectFrom(const char* source, int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in from{};
  from.sin_family = AF_INET;
  inet_pton(AF_INET, source, &from.sin_addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0) {
    close(fd);
    return "bind failed";
  }
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(port));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string got;
  if (connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0) {
    const auto until = Clock::now() + std::chrono::seconds(5);
    while (got.find("END PRELUDE:") == std::string::npos && Clock::now() < until) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      char chunk[4096];
      const ssize_t n = recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) break;
      got.append(chunk, static_cast<std::size_t>(n));
    }
  }
  close(fd);
  return got;
}

class Gateway : public SecurityTest {};

TEST_F(Gateway, ListensOnLoopbackByDefault) {
  NvsdHarness nvsd(NvsdOptions({"router-a", "router-b"}));
  ASSERT_TRUE(nvsd.WaitReady());
  GatewayProcess gateway(dir(), {"--endpoint", nvsd.client_endpoint()});
  ASSERT_TRUE(gateway.WaitLog("\"event\":\"starting\"")) << gateway.Log();
  const std::string log = gateway.Log();
  EXPECT_NE(log.find(R"("listen":["127.0.0.1:9990"])"), std::string::npos) << log;
  EXPECT_EQ(log.find("0.0.0.0"), std::string::npos) << log;
}

TEST_F(Gateway, AWiderListenAddressNeedsAnAllowList) {
  for (const std::string address : {"0.0.0.0:0", "[::]:0", ":0"}) {
    GatewayProcess gateway(dir(), {"--endpoint", "tcp://127.0.0.1:1", "--listen", address});
    const auto exit_code = gateway.WaitExit(std::chrono::milliseconds(10000));
    ASSERT_TRUE(exit_code.has_value()) << address << ": it started, open to anyone";
    EXPECT_EQ(*exit_code, 2) << address;
    EXPECT_NE(gateway.Log().find("--allow CIDR"), std::string::npos) << gateway.Log();
  }
  GatewayProcess typo(dir(), {"--endpoint", "tcp://127.0.0.1:1", "--listen", "0.0.0.0:0", "--allow", "10.1.2.3/24"});
  EXPECT_EQ(typo.WaitExit(std::chrono::milliseconds(10000)), std::optional<int>(2));
  EXPECT_NE(typo.Log().find("bits set past its prefix"), std::string::npos) << typo.Log();
}

TEST_F(Gateway, OnlyPeersInAnAllowedNetworkGetIn) {
  NvsdHarness nvsd(NvsdOptions({"router-a", "router-b"}));
  ASSERT_TRUE(nvsd.WaitReady());
  GatewayProcess gateway(dir(), {"--endpoint", nvsd.client_endpoint(), "--listen", "0.0.0.0:0", "--allow", "127.0.0.2/32"});
  const int port = gateway.Port();
  ASSERT_NE(port, 0) << gateway.Log();
  EXPECT_NE(ConnectFrom("127.0.0.2", port).find("VIDEO OUTPUT ROUTING:"), std::string::npos) << gateway.Log();
  const std::string outsider = ConnectFrom("127.0.0.3", port);
  EXPECT_EQ(outsider.find("VIDEO OUTPUT ROUTING:"), std::string::npos) << "a peer outside --allow read the router";
  EXPECT_TRUE(gateway.WaitLog("\"event\":\"client_refused\"")) << gateway.Log();
  EXPECT_NE(gateway.Log().find("127.0.0.3"), std::string::npos) << "the refused peer is named";
}

TEST_F(Gateway, WarnsWhenNvsdRequiresCurveAndTheGatewayIsOpenBeyondLoopback) {
  NvsdOptions options({"router-a", "router-b"});
  options.curve = true;
  NvsdHarness nvsd(options);
  ASSERT_TRUE(nvsd.WaitReady());
  {
    GatewayProcess local(dir(), {"--client-config", nvsd.client_config().string(), "--listen", "127.0.0.1:0"});
    ASSERT_NE(local.Port(), 0) << local.Log();
    EXPECT_EQ(local.Log().find("open_beyond_loopback"), std::string::npos) << local.Log();
  }
  GatewayProcess open(dir(), {"--client-config", nvsd.client_config().string(), "--listen", "0.0.0.0:0", "--allow",
                              "10.0.0.0/8"});
  ASSERT_NE(open.Port(), 0) << open.Log();
  EXPECT_NE(open.Log().find("\"event\":\"open_beyond_loopback\",\"level\":\"warn\""), std::string::npos) << open.Log();
}

}  // namespace
}  // namespace nvs::testing
