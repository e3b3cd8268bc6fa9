// What the security tests (issue 15; ctest label `security`) share: a
// scratch folder any user can traverse (so a process dropped to `nobody`
// reaches what it is given, wherever the checkout lives), `nvs` runs with a
// clean NVS_CONFIG, and a router config the operator would write.
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "nvsd_harness.h"

namespace nvs::testing {

class SecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/nvs-security-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    chmod(dir_.c_str(), 0755);
    if (std::filesystem::exists("/etc/nvs/nvsd.json")) {
      GTEST_SKIP() << "/etc/nvs/nvsd.json exists here: the tools would use it as the operator's config";
    }
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  const std::filesystem::path& dir() const { return dir_; }

  // Runs `nvs ARGS` with `env` (VAR=value ...) and no NVS_CONFIG otherwise;
  // its stdout and exit status (stderr: Stderr()).
  std::string Nvs(const std::string& args, int* status, const std::string& env = "") {
    return RunCapture("env -u NVS_CONFIG " + env + " " + std::string(NVS_CLI) + " " + args, dir_ / "stderr.txt",
                      status);
  }
  std::string Stderr() const {
    std::ifstream in(dir_ / "stderr.txt");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  // The operator's config: the three routers as built in this tree.
  std::filesystem::path RoutersConfig() {
    using nlohmann::json;
    json variants = json::array();
    for (const std::string name : {"router-a", "router-b", "router-c"}) {
      json argv = json::array();
      if (name == "router-c") argv.push_back(PythonPath());
      argv.push_back(RouterPath(name));
      for (const char* a : {"--inputs", "16", "--outputs", "16"}) argv.push_back(a);
      json v = {{"name", name}, {"argv", argv}};
      if (name == "router-c") v["transport"] = "stdio";
      variants.push_back(v);
    }
    const auto path = dir_ / "nvsd.json";
    std::ofstream(path) << json{{"state_dir", (dir_ / "state").string()}, {"variants", variants}}.dump(2);
    return path;
  }

 private:
  std::filesystem::path dir_;
};

}  // namespace nvs::testing
