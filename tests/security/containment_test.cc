// Finding 6 of the security review (issue 15), in part: variants inherited
// nvsd's whole environment (a `nobody` variant printed a secret from it),
// and two variants could run as one user (and kill each other). A variant
// now gets a clean environment, and a user of its own.
#include <stdlib.h>

#include <fstream>

#include "nvsd_harness.h"
#include "security_support.h"

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

}  // namespace
}  // namespace nvs::testing
