// `nvs top` against a live nvsd: on a terminal (under script(1), which
// gives it one) it draws the screen, the slow variant marked as setting
// the pace; piped, it prints plain lines, an event as it happens.
#include <signal.h>
#include <stdio.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "nvsd_harness.h"
#include "variant_harness.h"

namespace nvs::testing {
namespace {

using json = nlohmann::json;

json Route(int output, int input) {
  return {{"op", "route"}, {"client", "t"}, {"routes", {{{"output", output}, {"input", input}}}}};
}

TEST(Top, OnATerminalItDrawsTheVariantsAndMarksTheOneThatSetsThePace) {
  VariantSpec slow("router-c", {});
  slow.wrapper = {"--slow-ms=40"};
  NvsdHarness nvsd(NvsdOptions({"router-a", "router-b", slow}));
  ASSERT_TRUE(nvsd.WaitAllHealthy()) << nvsd.NvsdLog();
  for (int i = 0; i < 40; ++i) ASSERT_EQ(nvsd.Command(Route(i % 16, (i + 5) % 16)).value("status", ""), "committed");
  ASSERT_FALSE(nvsd.WaitEvent([](const json& e) { return e.value("event", "") == "pace"; }).is_null()) << nvsd.NvsdLog();
  int status = 0;
  const std::string screen = RunCapture(
      "TERM=xterm script -q -e -c '" + std::string(NVS_CLI) + " top --endpoint " + nvsd.client_endpoint() +
          " --count 3 --interval 200' /dev/null < /dev/null",
      nvsd.dir() / "top.err", &status);
  EXPECT_EQ(status, 0) << screen;
  EXPECT_NE(screen.find("\x1b[H\x1b[2J"), std::string::npos) << "no screen drawn:\n" << screen;
  for (const char* shown : {"VARIANT", "ROLE", "STATE", "INC", "RESTARTS", "P50 MS", "router-a", "router-b", "voter",
                            "healthy", "commits/s", "last verdicts: ", "seq 40 COMMIT", "quarantined 0"}) {
    EXPECT_NE(screen.find(shown), std::string::npos) << shown << " is not on the screen:\n" << screen;
  }
  // router-c's row says it sets the pace; the others' do not.
  std::istringstream rows(screen);
  int marked = 0;
  for (std::string row; std::getline(rows, row);) {
    if (row.find("SETS PACE") == std::string::npos) continue;
    ++marked;
    EXPECT_NE(row.find("router-c"), std::string::npos) << row;
  }
  EXPECT_GE(marked, 1) << screen;
  EXPECT_NE(screen.find("PACE: router-c is much slower"), std::string::npos) << screen;
  // `nvs status` says it too.
  const std::string text = RunCapture(std::string(NVS_CLI) + " status --endpoint " + nvsd.client_endpoint(),
                                      nvsd.dir() / "status.err", &status);
  EXPECT_NE(text.find("PACE: router-c is much slower"), std::string::npos) << text;
  EXPECT_NE(text.find("[sets the pace]"), std::string::npos) << text;
}

TEST(Top, PipedItPrintsPlainLinesAndEachEventAsItHappens) {
  NvsdHarness nvsd(NvsdOptions({"router-a", "router-b", "router-c"}));
  ASSERT_TRUE(nvsd.WaitAllHealthy()) << nvsd.NvsdLog();
  ASSERT_EQ(nvsd.Command(Route(1, 2)).value("status", ""), "committed");
  // At most 60 refreshes of 250 ms: the test's own bound.
  // (Its pid first, to stop it once the test has seen what it waits for.)
  FILE* top = popen(("echo $$; exec " + std::string(NVS_CLI) + " top --endpoint " + nvsd.client_endpoint() +
                     " --count 60 --interval 250 2>&1 < /dev/null").c_str(),
                    "r");
  ASSERT_NE(top, nullptr);
  char line[4096];
  ASSERT_NE(fgets(line, sizeof line, top), nullptr);
  const pid_t pid = std::stoi(line);
  std::string seen;
  int summaries = 0;
  bool killed = false, restart_seen = false;
  while (fgets(line, sizeof line, top) != nullptr) {
    seen += line;
    const std::string text(line);
    if (text.find("commits/s") != std::string::npos) ++summaries;
    // Subscribed before its first summary; killed after the fourth (three
    // refreshes later), once its subscription has surely reached nvsd.
    if (summaries >= 4 && !killed) {
      ASSERT_TRUE(SignalProcess(nvsd.VariantPid("router-b"), SIGKILL));
      killed = true;
    }
    if (killed && text.find("restart router-b") != std::string::npos) {
      restart_seen = true;
      break;
    }
  }
  kill(pid, SIGTERM);  // (it exits at once, and says nothing more)
  EXPECT_EQ(pclose(top), 0) << "nvs top did not exit cleanly on SIGTERM";
  EXPECT_TRUE(restart_seen) << "no line for router-b's restart:\n" << seen;
  EXPECT_EQ(seen.find('\x1b'), std::string::npos) << "terminal escapes in plain output:\n" << seen;
  EXPECT_NE(seen.find("  router-a voter healthy incarnation 1"), std::string::npos) << seen;
  EXPECT_NE(seen.find("seq 1  commits 1"), std::string::npos) << seen;
}

}  // namespace
}  // namespace nvs::testing
