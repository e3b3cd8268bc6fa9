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
#include <sstream>

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

// Whether one line of the log holds both `a` and `b`.
bool LineWith(const std::string& log, const std::string& a, const std::string& b) {
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    if (line.find(a) != std::string::npos && line.find(b) != std::string::npos) return true;
  }
  return false;
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
    // Killed through the variant's cgroup where nvsd has cgroups, else as
    // an orphan that came to nvsd, its subreaper; either way, logged.
    const bool cgroups = nvsd.NvsdLog().find("\"containment\":\"a cgroup per variant") != std::string::npos;
    const std::string reported = cgroups ? "\"event\":\"cgroup_emptied\"" : "\"event\":\"orphan_killed\"";
    const std::string of = cgroups ? "\"process\":\"router-c.1\"" : "\"name\":\"sleep\"";
    EXPECT_TRUE(nvsd.WaitNvsdLog([&](const std::string& log) { return LineWith(log, reported, of); }))
        << "no " << reported << " of " << of << " in the log";
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

// pids.max is not only written: the kernel refuses the fork past it. A
// variant forks children until a fork fails, writes down what its cgroup
// held at that moment, lets them go and becomes router-c. (It is started
// by the real interpreter: a pyenv shim forks helpers of its own.)
TEST_F(Containment, AForkPastTheVariantsProcessCapIsRefused) {
  if (geteuid() != 0 || !fs::exists("/sys/fs/cgroup/pids/cgroup.procs")) {
    GTEST_SKIP() << "needs root and a cgroup v1 pids hierarchy (these hosts have one)";
  }
  int status = 0;
  std::string python = RunCapture(PythonPath() + " -c 'import sys; print(sys.executable)'", dir() / "python.err", &status);
  while (!python.empty() && python.back() == '\n') python.pop_back();
  ASSERT_EQ(status, 0) << python;
  const fs::path counted = dir() / "forks.txt";
  const std::string script =
      "import errno, os, signal, sys\n"
      "cgroup = [l.split(':')[2].strip() for l in open('/proc/self/cgroup') if l.split(':')[1] == 'pids'][0]\n"
      "tasks = lambda: int(open('/sys/fs/cgroup/pids' + cgroup + '/pids.current').read())\n"
      "children, refused, held = [], 0, 0\n"
      "while len(children) < 100:\n"
      "    try:\n"
      "        pid = os.fork()\n"
      "    except OSError as e:\n"
      "        refused, held = e.errno, tasks()\n"
      "        break\n"
      "    if pid == 0:\n"
      "        signal.pause()\n"
      "        os._exit(0)\n"
      "    children.append(pid)\n"
      "for pid in children:\n"
      "    os.kill(pid, signal.SIGKILL)\n"
      "    os.waitpid(pid, 0)\n"
      "open(sys.argv[1], 'w').write('%d %d %d' % (len(children), refused, held))\n"
      "os.execv(sys.executable, [sys.executable] + sys.argv[2:])\n";
  VariantSpec forking("router-c", {});
  forking.config = {{"limits", {{"processes", 16}}},
                    {"argv", {python, "-c", script, counted.string(), RouterPath("router-c"), "--inputs", "16",
                              "--outputs", "16"}}};
  NvsdHarness nvsd(NvsdOptions({"router-a", "router-b", forking}));
  ASSERT_TRUE(nvsd.WaitAllHealthy()) << nvsd.NvsdLog();
  std::ifstream in(counted);
  int children = -1, refused = -1, held = -1;
  in >> children >> refused >> held;
  EXPECT_GT(children, 0);
  EXPECT_EQ(refused, EAGAIN) << "no fork was refused, or it failed otherwise (" << children << " children)";
  EXPECT_EQ(held, 16) << "the fork was refused with " << held << " tasks in a cgroup capped at 16";
}

// cgroup v2-only hosts (current Debian, systemd) got the subreaper alone.
// nvsd uses the v2 hierarchy where no v1 pids hierarchy is mounted: here
// nvsd runs in a mount namespace of its own with the v1 pids and freezer
// hierarchies unmounted, so that it sees only v2 (these hosts mount it at
// /sys/fs/cgroup/unified). A variant's setsid child is in the variant's
// v2 cgroup, and is killed with it through cgroup.kill.
TEST_F(Containment, OnACgroupV2HostEachVariantHasACgroupKilledAsAWhole) {
  if (geteuid() != 0 || !fs::exists("/sys/fs/cgroup/pids/cgroup.procs") ||
      !fs::exists("/sys/fs/cgroup/unified/cgroup.procs")) {
    GTEST_SKIP() << "needs root, a v1 pids hierarchy to hide and a v2 hierarchy (these hosts have both)";
  }
  const fs::path pids = dir() / "escaped.pid";
  VariantSpec escaping("router-c", {});
  escaping.config = {{"argv", {"/bin/sh", "-c", "setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $! > " +
                                                    pids.string() + "; exec " + PythonPath() + " " +
                                                    RouterPath("router-c") + " --inputs 16 --outputs 16"}}};
  NvsdOptions options({"router-a", "router-b", escaping});
  options.launcher = {"/usr/bin/unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                      "umount /sys/fs/cgroup/pids && umount /sys/fs/cgroup/freezer && exec \"$@\"", "sh"};
  NvsdHarness nvsd(options);
  ASSERT_TRUE(nvsd.WaitAllHealthy()) << nvsd.NvsdLog();
  EXPECT_NE(nvsd.NvsdLog().find("a cgroup per variant (v2"), std::string::npos) << nvsd.NvsdLog();
  const pid_t escaped = ReadPid(pids);
  ASSERT_GT(escaped, 0);
  std::ifstream membership(fs::path("/proc") / std::to_string(escaped) / "cgroup");
  std::string v2;
  for (std::string line; std::getline(membership, line);) {
    if (line.rfind("0::", 0) == 0) v2 = line.substr(3);
  }
  const std::string expected = "/nvsd." + std::to_string(nvsd.nvsd_pid()) + "/router-c.1";
  EXPECT_NE(v2.find(expected), std::string::npos) << "the escaped child is in " << v2 << ", not in " << expected;
  ASSERT_TRUE(SignalProcess(nvsd.VariantPid("router-c"), SIGKILL));
  EXPECT_TRUE(Gone(escaped, std::chrono::milliseconds(10000))) << "pid " << escaped << " outlived its variant";
  EXPECT_TRUE(nvsd.WaitNvsdLog([](const std::string& log) {
    return LineWith(log, "\"event\":\"cgroup_emptied\"", "\"process\":\"router-c.1\"");
  })) << "it was not killed through its cgroup";
  ASSERT_TRUE(nvsd.WaitAllHealthy());
}

}  // namespace
}  // namespace nvs::testing
