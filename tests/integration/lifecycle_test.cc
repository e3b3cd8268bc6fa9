// Process lifecycle of nvsd and its variants: deaths with nothing in flight,
// clean stops, no orphans, quarantine surviving a restart of nvsd.
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pwd.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <thread>
#include <sstream>
#include <fstream>

#include "nvsd_harness.h"
#include "variant_harness.h"

namespace nvs::testing {
namespace {

using nlohmann::json;

bool ProcessExits(int pid, std::chrono::milliseconds deadline) {
  const int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return true;  // already gone
  pollfd item{fd, POLLIN, 0};
  const bool exited = poll(&item, 1, static_cast<int>(deadline.count())) == 1;
  close(fd);
  return exited;
}

json Route(int output, int input) {
  return {{"op", "route"}, {"client", "lc"}, {"routes", {{{"output", output}, {"input", input}}}}};
}

TEST(Lifecycle, AnIdleVariantThatDiesIsRestartedAndNoCommandIsBlamed) {
  NvsdHarness nvsd(NvsdOptions({"router-a", "router-b", "router-c"}));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  ASSERT_EQ(nvsd.Command(Route(1, 2))["status"], "committed");
  for (const std::string victim : {"router-b", "router-c"}) {
    const int pid = nvsd.VariantPid(victim);
    ASSERT_GT(pid, 0);
    ASSERT_TRUE(SignalProcess(pid, SIGKILL));
    const json back = nvsd.WaitEvent([&](const json& e) {
      return e["event"] == "variant" && e["variant"] == victim && e["state"] == "healthy" && e["incarnation"] == 2;
    });
    ASSERT_TRUE(back.is_object()) << victim << " did not come back";
  }
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  json status = nvsd.Status();
  for (const auto& v : status["variants"]) {
    if (v["name"] == "router-a") continue;
    EXPECT_NE(v["last_fault"].get<std::string>().find("no command in flight"), std::string::npos) << v.dump();
  }
  EXPECT_EQ(status["nvsd"]["quarantined"], 0);
  // The restarted ones hold the committed state and vote on the next command.
  json reply = nvsd.Command(Route(2, 3));
  ASSERT_EQ(reply["status"], "committed");
  const json settled = nvsd.WaitEvent([&](const json& e) { return e["event"] == "settled" && e["seq"] == reply["seq"]; });
  EXPECT_EQ(settled["agreeing"].size(), 3u) << settled.dump();
  EXPECT_EQ(nvsd.Query({{"op", "dump"}})["result"]["state"]["routes"][1], 2);
}

TEST(Lifecycle, AStoppedIdleVariantMissesItsHeartbeatAndIsReplaced) {
  NvsdHarness nvsd(NvsdOptions({"router-a", "router-b", "router-c"},
                               {{"heartbeat_interval_ms", 50}, {"heartbeat_timeout_ms", 100}}));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  const int pid = nvsd.VariantPid("router-b");
  ASSERT_TRUE(SignalProcess(pid, SIGSTOP));
  const json hung = nvsd.WaitEvent([](const json& e) {
    return e["event"] == "variant" && e["variant"] == "router-b" && e["state"] == "stopping";
  });
  ASSERT_TRUE(hung.is_object()) << "a SIGSTOPped variant was not noticed";
  EXPECT_NE(hung["why"].get<std::string>().find("no pong"), std::string::npos) << hung.dump();
  ASSERT_TRUE(ProcessExits(pid, std::chrono::milliseconds(5000))) << "the stopped variant was not killed";
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  EXPECT_EQ(nvsd.Status()["nvsd"]["quarantined"], 0);
  EXPECT_EQ(nvsd.Command(Route(4, 4))["status"], "committed");
}

// systemd: READY=1 once serving, WATCHDOG=1 from the loop when WATCHDOG_USEC is set.
TEST(Lifecycle, TellsSystemdWhenReadyAndPetsItsWatchdog) {
  const std::string path = "/tmp/nvs-notify-" + std::to_string(getpid()) + ".sock";
  unlink(path.c_str());
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path.c_str());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  setenv("NOTIFY_SOCKET", path.c_str(), 1);
  setenv("WATCHDOG_USEC", "100000", 1);
  std::string received;
  {
    NvsdHarness nvsd(NvsdOptions({"router-a", "router-b"}));
    unsetenv("NOTIFY_SOCKET");  // only nvsd (started above) needs them
    unsetenv("WATCHDOG_USEC");
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while ((received.find("READY=1") == std::string::npos || received.find("WATCHDOG=1") == std::string::npos) &&
           std::chrono::steady_clock::now() < until) {
      pollfd item{fd, POLLIN, 0};
      if (poll(&item, 1, 100) != 1) continue;
      char buffer[512];
      const ssize_t n = recv(fd, buffer, sizeof buffer, 0);
      if (n > 0) received.append(buffer, static_cast<std::size_t>(n)).push_back('\n');
    }
    EXPECT_TRUE(nvsd.WaitReady());
  }
  close(fd);
  unlink(path.c_str());
  EXPECT_NE(received.find("READY=1"), std::string::npos) << received;
  EXPECT_NE(received.find("WATCHDOG=1"), std::string::npos) << received;
}

TEST(Lifecycle, SighupReopensTheVariantLogs) {
  NvsdHarness nvsd(NvsdOptions({"router-a", "router-b"}));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  const auto log = nvsd.state_dir() / "logs" / "router-a.log";
  ASSERT_TRUE(std::filesystem::exists(log));
  std::filesystem::rename(log, log.string() + ".1");  // what logrotate does
  ASSERT_TRUE(SignalProcess(nvsd.nvsd_pid(), SIGHUP));
  ASSERT_TRUE(nvsd.WaitEvent([](const json& e) { return e["event"] == "logs_reopened"; }).is_object());
  EXPECT_TRUE(std::filesystem::exists(log)) << "the log was not opened again";
  EXPECT_EQ(nvsd.Command(Route(1, 1))["status"], "committed") << "SIGHUP must not stop nvsd";
}

TEST(Lifecycle, SigtermStopsCleanlyAndLeavesNoVariantBehind) {
  NvsdHarness nvsd(NvsdOptions({"router-a", "router-b", "router-c"}));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  std::vector<int> pids;
  for (const std::string name : {"router-a", "router-b", "router-c"}) pids.push_back(nvsd.VariantPid(name));
  ASSERT_TRUE(SignalProcess(nvsd.nvsd_pid(), SIGTERM));
  auto status = nvsd.WaitNvsdExit(std::chrono::milliseconds(10000));
  ASSERT_TRUE(status) << "nvsd did not stop on SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "wait status " << *status;
  for (int pid : pids) EXPECT_TRUE(ProcessExits(pid, std::chrono::milliseconds(0))) << "variant " << pid << " outlived nvsd";
}

TEST(Lifecycle, SigkilledNvsdTakesItsVariantsWithIt) {
  NvsdHarness nvsd(NvsdOptions({"router-a", "router-b", "router-c"}));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  std::vector<int> pids;
  for (const std::string name : {"router-a", "router-b", "router-c"}) pids.push_back(nvsd.VariantPid(name));
  ASSERT_TRUE(SignalProcess(nvsd.nvsd_pid(), SIGKILL));
  ASSERT_TRUE(nvsd.WaitNvsdExit(std::chrono::milliseconds(10000)));
  for (int pid : pids) EXPECT_TRUE(ProcessExits(pid, std::chrono::milliseconds(5000))) << "variant " << pid << " orphaned";
}

TEST(Lifecycle, TheBlockListSurvivesARestartOfNvsd) {
  char pattern[] = "/tmp/nvs-state-XXXXXX";
  const std::string state_dir = mkdtemp(pattern);
  const json poison = {{"op", "label"}, {"client", "lc"}, {"kind", "output"},
                       {"labels", {{{"index", 1}, {"text", "DEADLY"}}}}};
  std::string report;
  {
    NvsdHarness nvsd(NvsdOptions({VariantSpec("router-a", {"--fault", "crash-on=DEADLY"}),
                                  VariantSpec("router-b", {"--fault", "abort-on=DEADLY"}), "router-c"},
                                 {{"state_dir", state_dir}}));
    ASSERT_TRUE(nvsd.WaitAllHealthy());
    json reply = nvsd.Command(poison);
    ASSERT_EQ(reply["status"], "quarantined") << reply.dump();
    report = reply["report"];
  }
  {
    NvsdHarness nvsd(NvsdOptions({"router-a", "router-b", "router-c"}, {{"state_dir", state_dir}}));
    ASSERT_TRUE(nvsd.WaitAllHealthy());
    EXPECT_EQ(nvsd.Status()["nvsd"]["quarantined"], 1);
    json again = nvsd.Command(poison);
    EXPECT_EQ(again["status"], "quarantined") << again.dump();
    EXPECT_EQ(again["report"], report);
    for (const std::string name : {"router-a", "router-b", "router-c"}) {
      EXPECT_TRUE(nvsd.ReceivedLog(name).empty()) << name << " was sent the blocked command";
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(state_dir, ec);
}

TEST(Lifecycle, AnInvalidConfigIsRefusedWithTheField) {
  NvsdHarness nvsd(NvsdOptions({"router-a"}, {{"deadline_ms", -5}}));
  auto status = nvsd.WaitNvsdExit(std::chrono::milliseconds(10000));
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2);
}

// The state dir and the ipc sockets are owner-only; a state dir others can
// write is refused, not silently changed.
TEST(Lifecycle, StateDirAndSocketsAreOwnerOnly) {
  namespace fs = std::filesystem;
  char pattern[] = "/tmp/nvs-perm-XXXXXX";
  const fs::path dir = mkdtemp(pattern);
  const fs::path state = dir / "state";
  fs::create_directories(state);
  fs::permissions(state, fs::perms::all);  // 0777
  {
    NvsdHarness nvsd(NvsdOptions({"router-a", "router-b"}, {{"state_dir", state.string()}}));
    auto status = nvsd.WaitNvsdExit(std::chrono::milliseconds(10000));
    ASSERT_TRUE(status.has_value()) << "nvsd started on a state dir others can write";
    EXPECT_NE(nvsd.NvsdLog().find("can be written by group or others"), std::string::npos) << nvsd.NvsdLog();
  }
  fs::permissions(state, fs::perms::owner_all);
  {
    NvsdHarness nvsd(NvsdOptions({"router-a", "router-b"}, {{"state_dir", state.string()}}));
    ASSERT_TRUE(nvsd.WaitReady());
    const auto socket = fs::status(nvsd.client_endpoint().substr(6)).permissions();
    EXPECT_EQ(socket & (fs::perms::group_all | fs::perms::others_all), fs::perms::none) << "client socket not owner-only";
    EXPECT_EQ(fs::status(state).permissions() & (fs::perms::group_all | fs::perms::others_all), fs::perms::none);
    for (const char* sub : {"journal", "logs", "quarantine"}) {  // (logs/ was 0755)
      EXPECT_EQ(fs::status(state / sub).permissions() & (fs::perms::group_all | fs::perms::others_all), fs::perms::none)
          << sub;
    }
  }
  fs::remove_all(dir);
}

// A command that makes a variant eat memory without bound is stopped by the
// variant's address-space limit and handled as that variant's crash; the
// others commit it.
TEST(Lifecycle, AMemoryHogIsStoppedByItsLimitAndCountsAsACrash) {
  VariantSpec hog("router-c", {});
  hog.wrapper = {"--eat-memory-on=HOG"};
  hog.config = {{"limits", {{"address_space_mb", 512}}}};
  NvsdHarness nvsd(NvsdOptions({"router-a", "router-b", hog}));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  const nlohmann::json reply = nvsd.Command(
      {{"op", "label"}, {"client", "t"}, {"kind", "input"}, {"labels", {{{"index", 0}, {"text", "HOG"}}}}});
  EXPECT_EQ(reply["status"], "committed") << reply.dump();
  const nlohmann::json died = nvsd.WaitEvent([](const nlohmann::json& e) {
    return e["event"] == "variant" && e["variant"] == "router-c" && e["state"] == "down";
  });
  ASSERT_TRUE(died.is_object());
  EXPECT_NE(died["why"].get<std::string>().find("exited with status 1"), std::string::npos) << died.dump();
  ASSERT_TRUE(nvsd.WaitAllHealthy()) << "the variant was not brought back";
}

// A variant configured with `user` runs as that user (its relay stays
// nvsd's); it still answers, and votes. Without root, nvsd says why it cannot.
TEST(Lifecycle, AVariantRunsAsItsConfiguredUser) {
  struct passwd* nobody = getpwnam("nobody");
  ASSERT_NE(nobody, nullptr) << "this test needs the user nobody";
  // Debian's python3 (a python under root's home is not for nobody to run),
  // and no received log (nobody may not write the harness's folder). The
  // program is copied where nobody can read it: a checkout under /root is
  // not (the test failed in such a fresh clone).
  char pattern[] = "/tmp/nvs-as-nobody-XXXXXX";
  ASSERT_NE(mkdtemp(pattern), nullptr);
  const std::filesystem::path readable = pattern;
  std::filesystem::permissions(readable, std::filesystem::perms::owner_all | std::filesystem::perms::group_read |
                                             std::filesystem::perms::group_exec | std::filesystem::perms::others_read |
                                             std::filesystem::perms::others_exec);
  std::filesystem::copy_file(RouterPath("router-c"), readable / "router_c.py");
  std::filesystem::permissions(readable / "router_c.py", std::filesystem::perms::owner_read |
                                                             std::filesystem::perms::owner_write |
                                                             std::filesystem::perms::group_read |
                                                             std::filesystem::perms::others_read);
  struct Cleanup {
    std::filesystem::path dir;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup{readable};
  VariantSpec dropped("router-c", {});
  dropped.config = {{"user", "nobody"},
                    {"working_dir", "/"},
                    {"argv", {"/usr/bin/python3", (readable / "router_c.py").string(), "--inputs", "16", "--outputs", "16"}}};
  NvsdHarness nvsd(NvsdOptions({"router-a", "router-b", dropped}));
  if (geteuid() != 0) {
    EXPECT_TRUE(nvsd.WaitNvsdLog(
        [](const std::string& log) { return log.find("nvsd must run as root") != std::string::npos; },
        std::chrono::milliseconds(20000)))
        << nvsd.NvsdLog();
    return;
  }
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  const nlohmann::json reply = nvsd.Command({{"op", "route"}, {"client", "t"}, {"routes", {{{"output", 1}, {"input", 2}}}}});
  EXPECT_EQ(reply["status"], "committed") << reply.dump();
  // The relay (nvsd's child) keeps nvsd's user; the controller under it is nobody.
  const int bridge = nvsd.VariantPid("router-c");
  ASSERT_GT(bridge, 0);
  const auto uid_of = [](int pid) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("Uid:", 0) == 0) return std::atol(line.c_str() + 4);
    }
    return -1L;
  };
  EXPECT_EQ(uid_of(bridge), static_cast<long>(geteuid()));
  std::ifstream children("/proc/" + std::to_string(bridge) + "/task/" + std::to_string(bridge) + "/children");
  int controller = 0;
  ASSERT_TRUE(children >> controller) << "the relay has no child";
  EXPECT_EQ(uid_of(controller), static_cast<long>(nobody->pw_uid));
}

// The review of the last stop: a variant's user was looked up at every
// spawn, so a user database that failed later (or a user removed) marked
// the variant failed on its next restart. It is resolved once, before nvsd
// starts; one that cannot be is a configuration error, found by --check too.
TEST(Lifecycle, AVariantUserThatCannotBeResolvedIsRefusedAtStartAndByCheck) {
  VariantSpec ghost("router-c", {});
  ghost.config = {{"user", "no-such-user-nvs"}, {"working_dir", "/"}};
  NvsdHarness nvsd(NvsdOptions({"router-a", "router-b", ghost}));
  const auto status = nvsd.WaitNvsdExit(std::chrono::milliseconds(10000));
  ASSERT_TRUE(status) << "nvsd started with a user it cannot resolve";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2) << "wait status " << *status;
  const std::string why = geteuid() == 0 ? "variants[2] (router-c).user: user no-such-user-nvs: no such user"
                                         : "variants[2] (router-c).user: user no-such-user-nvs: nvsd must run as root";
  EXPECT_NE(nvsd.NvsdLog().find(why), std::string::npos) << nvsd.NvsdLog();
  int check = -1;
  RunCapture(NvsdPath() + " --check --config " + (nvsd.dir() / "nvsd.json").string(), nvsd.dir() / "check.err", &check);
  EXPECT_EQ(check, 2);
  std::ifstream err(nvsd.dir() / "check.err");
  const std::string said((std::istreambuf_iterator<char>(err)), std::istreambuf_iterator<char>());
  EXPECT_NE(said.find(why), std::string::npos) << said;
}

// Killing a variant kills its whole process group: a grandchild it started
// is gone too.
TEST(Lifecycle, AKilledVariantLeavesNoGrandchildBehind) {
  VariantSpec forker("router-c", {"--fault", "hang-on=STUCK"});
  forker.wrapper = {"--grandchild"};
  NvsdHarness nvsd(NvsdOptions({"router-a", "router-b", forker}, {{"deadline_ms", 300}}));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  const int pid = nvsd.VariantPid("router-c");
  const pid_t group = getpgid(pid);
  ASSERT_GT(group, 0);
  ASSERT_NE(group, getpgid(0)) << "the variant is not in a process group of its own";
  // The group's processes that are not zombies (a zombie waits for its reaper).
  const auto live_members = [group] {
    std::vector<int> live;
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
      std::ifstream stat(entry.path() / "stat");
      std::string text;
      if (!std::getline(stat, text)) continue;
      const auto close = text.rfind(')');
      if (close == std::string::npos) continue;
      std::istringstream rest(text.substr(close + 2));
      char state = '?';
      long parent = 0, pgrp = 0;
      rest >> state >> parent >> pgrp;
      if (pgrp == group && state != 'Z') live.push_back(std::atoi(entry.path().filename().c_str()));
    }
    return live;
  };
  // A pidfd per member, taken before the kill: each becomes readable when
  // its process ends (the event to wait for, grandchild included).
  std::vector<int> pidfds;
  for (int member : live_members()) pidfds.push_back(static_cast<int>(syscall(SYS_pidfd_open, member, 0)));
  EXPECT_GE(pidfds.size(), 4u) << "bridge, proxy, router and the grandchild";
  // The hang makes nvsd kill it (SIGKILL to the group).
  EXPECT_EQ(nvsd.Command({{"op", "label"}, {"client", "t"}, {"kind", "input"},
                          {"labels", {{{"index", 0}, {"text", "STUCK"}}}}})["status"],
            "committed");
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  EXPECT_NE(nvsd.VariantPid("router-c"), pid);
  for (int fd : pidfds) {
    pollfd p{fd, POLLIN, 0};
    EXPECT_EQ(poll(&p, 1, 5000), 1) << "a process of the killed variant's group is still running";
    close(fd);
  }
  EXPECT_TRUE(live_members().empty()) << "something of the killed variant's group is still alive";
}

}  // namespace
}  // namespace nvs::testing
