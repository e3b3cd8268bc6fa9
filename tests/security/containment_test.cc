// Finding 6 of the security review (issue 15), in part: variants inherited
// nvsd's whole environment (a `nobody` variant printed a secret from it),
// and two variants could run as one user (and kill each other). A variant
// now gets a clean environment, and a user of its own.
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fstream>

#include "nvsd_harness.h"
#include "security_support.h"
#include "variant_harness.h"

namespace nvs::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

class Containment : public SecurityTest {};

TEST_F(Containment, AVariantGetsNoneOfNvsdsEnvironment) {
  const fs::path seen = dir() / "environment.txt";
  // A stdio variant that writes down its environment, then is router-c.
  VariantSpec nosy("router-c", {});
  nosy.config = {{"argv", {"/bin/sh", "-c", "env > " + seen.string() + "; exec " + PythonPath() + " " +
                                                RouterPath("router-c") + " --inputs 16 --outputs 16"}}};
  setenv("NVS_TEST_DB_PASSWORD_NOT", "x", 1);  // (an NVS_ setting is nvsd's to pass on)
  setenv("DB_PASSWORD", "hunter2-in-nvsds-environment", 1);
  NvsdHarness nvsd(NvsdOptions({"router-a", "router-b", nosy}));
  unsetenv("DB_PASSWORD");
  unsetenv("NVS_TEST_DB_PASSWORD_NOT");
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  std::ifstream in(seen);
  const std::string env((std::istreambuf_iterator<char>(in)), {});
  ASSERT_NE(env.find("NVS_VARIANT=router-c."), std::string::npos) << env;
  EXPECT_EQ(env.find("hunter2"), std::string::npos) << "a secret of nvsd's environment reached a variant:\n" << env;
  EXPECT_EQ(env.find("HOME="), std::string::npos) << env;
  EXPECT_NE(env.find("PATH=/usr/local/bin:/usr/bin:/bin"), std::string::npos) << env;
}

TEST_F(Containment, TwoVariantsMayNotShareAUser) {
  if (geteuid() != 0) GTEST_SKIP() << "variants run as another user only under root";
  VariantSpec b("router-c", {}, "router-c1");
  VariantSpec c("router-c", {}, "router-c2");
  b.config = c.config = {{"user", "nobody"}, {"working_dir", "/"}};
  NvsdHarness nvsd(NvsdOptions({"router-a", b, c}));
  ASSERT_TRUE(nvsd.WaitNvsdExit(std::chrono::milliseconds(15000)).has_value()) << "nvsd started two variants as nobody";
  EXPECT_NE(nvsd.NvsdLog().find("is also the user of router-c1"), std::string::npos) << nvsd.NvsdLog();
}

// True when `pid` is gone (or goes within the deadline): a pidfd is
// readable once the process has exited.
bool Gone(pid_t pid, std::chrono::milliseconds deadline) {
  const int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return errno == ESRCH;
  pollfd p{fd, POLLIN, 0};
  const bool exited = poll(&p, 1, static_cast<int>(deadline.count())) == 1;
  close(fd);
  return exited;
}

pid_t ReadPid(const fs::path& file) {
  std::ifstream in(file);
  pid_t pid = 0;
  in >> pid;
  return pid;
}

// A variant's child that called setsid survived the variant's kill and
// nvsd's stop. nvsd is a child subreaper now: such an orphan comes to it,
// and it kills it.
TEST_F(Containment, NothingAVariantStartedOutlivesItNorNvsd) {
  const fs::path pids = dir() / "escaped.pid";
  VariantSpec escaping("router-c", {});
  escaping.config = {{"argv", {"/bin/sh", "-c", "setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $! > " +
                                                    pids.string() + "; exec " + PythonPath() + " " +
                                                    RouterPath("router-c") + " --inputs 16 --outputs 16"}}};
  pid_t second = 0;
  {
    NvsdHarness nvsd(NvsdOptions({"router-a", "router-b", escaping}));
    ASSERT_TRUE(nvsd.WaitAllHealthy());
    const pid_t first = ReadPid(pids);
    ASSERT_GT(first, 0);
    ASSERT_FALSE(Gone(first, std::chrono::milliseconds(0))) << "the escaped child is not running: the test proves nothing";
    // The variant dies: its escaped child goes with it.
    ASSERT_TRUE(SignalProcess(nvsd.VariantPid("router-c"), SIGKILL));
    EXPECT_TRUE(Gone(first, std::chrono::milliseconds(10000))) << "pid " << first << " outlived its variant";
    EXPECT_TRUE(nvsd.WaitNvsdLog([](const std::string& log) { return log.find("orphan_killed") != std::string::npos; }));
    ASSERT_TRUE(nvsd.WaitAllHealthy());
    second = ReadPid(pids);
    ASSERT_NE(second, first) << "the restarted variant did not start another";
  }
  // nvsd stopped: nothing it started is left.
  EXPECT_TRUE(Gone(second, std::chrono::milliseconds(10000))) << "pid " << second << " outlived nvsd";
}

// No process-count limit: a variant could fork without bound. Each variant
// process is in a cgroup of its own (cgroup v1 pids, and the freezer, as on
// these hosts) with pids.max = limits.processes (the kernel refuses a fork
// past it); everything in it dies with the variant, setsid or not.
TEST_F(Containment, AVariantsProcessesAreCountedAndCappedInItsOwnCgroup) {
  if (geteuid() != 0 || !fs::exists("/sys/fs/cgroup/pids/cgroup.procs")) {
    GTEST_SKIP() << "needs root and a cgroup v1 pids hierarchy (these hosts have one)";
  }
  // It starts 10 sleeps (in its own process group: they stay in the cgroup).
  VariantSpec forking("router-c", {});
  forking.config = {
      {"limits", {{"processes", 64}}},
      {"argv", {"/bin/sh", "-c", "i=0; while [ $i -lt 10 ]; do setsid sleep 1000 </dev/null >/dev/null 2>&1 & "
                                 "i=$((i+1)); done; exec " + PythonPath() + " " + RouterPath("router-c") +
                                 " --inputs 16 --outputs 16"}}};
  NvsdHarness nvsd(NvsdOptions({"router-a", "router-b", forking}));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  fs::path cgroup;
  const json status = nvsd.Status();
  for (const auto& v : status["variants"]) {
    if (v["name"] == "router-c" && v["cgroup"].is_string()) cgroup = v["cgroup"].get<std::string>();
  }
  ASSERT_FALSE(cgroup.empty()) << "router-c has no cgroup: " << status.dump();
  std::ifstream max(cgroup / "pids.max"), current(cgroup / "pids.current");
  int max_pids = 0, current_pids = 0;
  max >> max_pids;
  current >> current_pids;
  EXPECT_EQ(max_pids, 64) << "limits.processes is the cgroup's pids.max";
  EXPECT_GE(current_pids, 11) << "the variant's processes are not counted in its cgroup";
  std::vector<pid_t> members;
  std::ifstream procs(cgroup / "cgroup.procs");
  for (pid_t pid = 0; procs >> pid;) members.push_back(pid);
  // The variant dies: everything in its cgroup with it, and the cgroup is removed.
  ASSERT_TRUE(SignalProcess(nvsd.VariantPid("router-c"), SIGKILL));
  for (pid_t pid : members) EXPECT_TRUE(Gone(pid, std::chrono::milliseconds(10000))) << "pid " << pid << " outlived it";
  EXPECT_TRUE(nvsd.WaitAllHealthy());
  EXPECT_TRUE(nvsd.WaitNvsdLog([&](const std::string&) { return !fs::exists(cgroup); }))
      << cgroup << " was not removed";
}

}  // namespace
}  // namespace nvs::testing
