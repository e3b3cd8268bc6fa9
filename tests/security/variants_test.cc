// Finding 3 of the security review (issue 15): with a tcp:// variant
// endpoint any local user could impersonate a variant. Routing ids were
// predictable (name.incarnation) and the event socket announces restarts: a
// `nobody` process connected as the next incarnation, said hello before the
// real one, received the state and every command, won a vote with a lie, and
// had the honest variant blamed. Now each process's routing id carries a
// random token given to it alone (NVS_VARIANT), and a message from any other
// routing id is ignored.
#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <zmq.hpp>

#include "nvsd_harness.h"
#include "security_support.h"
#include "variant_harness.h"

namespace nvs::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

// The attacker, in a child process (as `nobody` when the test runs as root):
// connects to the variant endpoint as each of `guesses`, says hello every
// 20 ms, answers every request with a lie, and writes each message it
// receives to `received`, until `stop` exists or 30 s have passed.
pid_t StartImpersonator(const std::string& endpoint, const std::vector<std::string>& guesses, const fs::path& received,
                        const fs::path& ready, const fs::path& stop) {
  const pid_t pid = fork();
  if (pid != 0) return pid;
  if (geteuid() == 0) {
    setgroups(0, nullptr);
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
  }
  {
    zmq::context_t context(1);
    std::vector<zmq::socket_t> sockets;
    for (const auto& id : guesses) {
      sockets.emplace_back(context, zmq::socket_type::dealer);
      sockets.back().set(zmq::sockopt::routing_id, id);
      sockets.back().set(zmq::sockopt::linger, 0);
      sockets.back().connect(endpoint);
    }
    std::ofstream log(received);
    std::ofstream(ready, std::ios::app) << "connecting\n";
    const auto until = Clock::now() + std::chrono::seconds(30);
    while (Clock::now() < until && !fs::exists(stop)) {
      for (std::size_t i = 0; i < sockets.size(); ++i) {
        const json hello = {{"type", "hello"}, {"protocol", 1}, {"variant", guesses[i]}, {"impl", "an impostor"}};
        sockets[i].send(zmq::buffer(hello.dump()), zmq::send_flags::dontwait);
      }
      std::vector<zmq::pollitem_t> items;
      for (auto& s : sockets) items.push_back({s.handle(), 0, ZMQ_POLLIN, 0});
      zmq::poll(items.data(), items.size(), std::chrono::milliseconds(20));
      for (auto& s : sockets) {
        zmq::message_t message;
        while (s.recv(message, zmq::recv_flags::dontwait)) {
          log << message.to_string() << "\n" << std::flush;
          const json request = json::parse(message.to_string(), nullptr, false);
          if (!request.is_object()) continue;
          const json seq = request.value("seq", json(0));
          const std::string type = request.value("type", "");
          json lie = {{"seq", seq}};
          if (type == "apply") lie.update({{"type", "applied"}, {"result", {{"ok", true}, {"lie", true}}}});
          else if (type == "digest" || type == "restore") lie.update({{"type", type == "digest" ? "digest" : "restored"}, {"digest", "0000000000000000"}});
          else if (type == "ping") lie["type"] = "pong";
          else continue;
          s.send(zmq::buffer(lie.dump()), zmq::send_flags::dontwait);
        }
      }
    }
  }
  _exit(0);
}

class Variants : public SecurityTest {};

TEST_F(Variants, AProcessGuessingTheNextIncarnationOnATcpEndpointReceivesNothingAndDecidesNothing) {
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(FreeTcpPort());
  NvsdHarness nvsd(NvsdOptions({"router-a", "router-b", "router-c"}, {{"variant_endpoint", endpoint}}));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  const json label = {{"op", "label"}, {"kind", "input"}, {"labels", {{{"index", 1}, {"text", "CAM 1"}}}}};
  ASSERT_EQ(nvsd.Command(label)["status"], "committed");
  // What the events announce, and the next incarnations of every variant.
  std::vector<std::string> guesses;
  for (const std::string name : {"router-a", "router-b", "router-c"}) {
    for (int n = 1; n <= 3; ++n) guesses.push_back(name + "." + std::to_string(n));
  }
  const fs::path own = dir() / "impostor";  // (a folder `nobody` can write)
  fs::create_directories(own);
  if (geteuid() == 0) {
    ASSERT_EQ(chown(own.c_str(), 65534, 65534), 0);
  }
  const fs::path received = own / "received.log", ready = own / "ready", stop = own / "stop";
  std::ofstream(ready).close();  // (there before it is written: the wait watches it)
  if (geteuid() == 0) {
    ASSERT_EQ(chown(ready.c_str(), 65534, 65534), 0);
  }
  const pid_t impostor = StartImpersonator(endpoint, guesses, received, ready, stop);
  ASSERT_GT(impostor, 0);
  ASSERT_TRUE(WaitForFileCondition(ready, [&] { return fs::file_size(ready) > 0; }, std::chrono::milliseconds(10000)));
  // router-b dies; nvsd starts router-b.2 while the impostor keeps saying hello as it.
  const int pid = nvsd.VariantPid("router-b");
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(SignalProcess(pid, SIGKILL));
  ASSERT_TRUE(nvsd.WaitStatus([&](const json& s) {
    for (const auto& v : s["variants"]) {
      if (v["name"] == "router-b" && v["incarnation"] == 2 && v["state"] == "healthy") return true;
    }
    return false;
  }).is_object()) << "router-b.2 never became healthy";
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  for (int i = 0; i < 10; ++i) {
    const json route = {{"op", "route"}, {"routes", {{{"output", i}, {"input", 15 - i}}}}};
    const json reply = nvsd.Command(route);
    ASSERT_EQ(reply["status"], "committed") << reply.dump();
    EXPECT_EQ(reply["result"].value("lie", false), false) << "the impostor's lie won the vote";
  }
  const json status = nvsd.Status();
  std::ofstream(stop) << "stop\n";
  int wait_status = 0;
  waitpid(impostor, &wait_status, 0);
  std::ifstream in(received);
  const std::string got((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(got, "") << "nvsd sent the impostor: " << got.substr(0, 400);
  for (const auto& v : status["variants"]) {
    EXPECT_EQ(v["state"], "healthy") << v.dump();
    EXPECT_EQ(v.value("restarts", 0), v["name"] == "router-b" ? 1 : 0) << "an honest variant was blamed: " << v.dump();
  }
  EXPECT_GT(status["nvsd"].value("unknown_variant_peers", 0), 0) << "the impostor's hellos were not seen (nor said)";
  EXPECT_TRUE(nvsd.WaitNvsdLog([](const std::string& log) { return log.find("unknown_variant_peer") != std::string::npos; }));
}

// A variant presents its secret in hello too: `variant` must be its whole
// NVS_VARIANT. One that names only the guessable part is not taken.
TEST_F(Variants, AHelloWithoutTheTokenIsNotTaken) {
  VariantSpec guessing("router-c", {});
  guessing.config = {{"argv", {"/bin/sh", "-c",
                               R"(echo '{"type":"hello","protocol":1,"variant":"router-c.1","impl":"guessed"}'; exec cat >/dev/null)"}}};
  NvsdHarness nvsd(NvsdOptions({"router-a", "router-b", guessing}));
  EXPECT_TRUE(nvsd.WaitNvsdLog([](const std::string& log) {
    return log.find("its hello names another variant than the one it was started as") != std::string::npos;
  }, std::chrono::milliseconds(20000))) << nvsd.NvsdLog();
  const json status = nvsd.Status();
  for (const auto& v : status["variants"]) {
    if (v["name"] == "router-c") {
      EXPECT_NE(v["state"], "healthy") << v.dump();
    }
  }
}

}  // namespace
}  // namespace nvs::testing
