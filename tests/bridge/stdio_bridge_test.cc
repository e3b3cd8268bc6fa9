// nvs-stdio-bridge with real processes and a real ZeroMQ ROUTER: relaying
// both ways, framing, and that nvsd sees the child's death exactly.
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <sys/wait.h>

#include <gtest/gtest.h>

#include "variant_harness.h"

namespace nvs::testing {
namespace {

const char* const kHello = R"(printf '{"type":"hello","protocol":1,"variant":"%s","impl":"%s"}\n' "$NVS_VARIANT" "$$"; )";

// True when process `pid` (not necessarily our child) has exited within the
// deadline; a zombie counts as exited.
bool WaitForProcessExit(int pid, std::chrono::milliseconds deadline) {
  const int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return errno == ESRCH;
  pollfd item{fd, POLLIN, 0};
  const bool exited = poll(&item, 1, static_cast<int>(deadline.count())) == 1;
  close(fd);
  return exited;
}

VariantCommand Shell(const std::string& script) {
  return VariantCommand{"shell", {StdioBridgePath(), "--", "/bin/sh", "-c", std::string(kHello) + script}};
}

TEST(StdioBridge, RelaysLinesBothWaysInOrder) {
  VariantHarness harness;
  std::string error;
  ASSERT_TRUE(harness.Start(Shell("exec cat"), error)) << error;
  for (int i = 0; i < 1000; ++i) harness.Send("shell", R"({"type":"ping","seq":)" + std::to_string(i) + "}");
  for (int i = 0; i < 1000; ++i) {
    auto message = harness.Receive("shell");
    ASSERT_TRUE(message) << "message " << i;
    EXPECT_EQ(*message, R"({"type":"ping","seq":)" + std::to_string(i) + "}");
  }
}

TEST(StdioBridge, RawLineBreaksCannotSplitAMessage) {
  VariantHarness harness;
  std::string error;
  ASSERT_TRUE(harness.Start(Shell("exec cat"), error)) << error;
  harness.Send("shell", "{\"type\":\n\"ping\",\r\n\"seq\":1}");
  auto message = harness.Receive("shell");
  ASSERT_TRUE(message);
  EXPECT_EQ(*message, "{\"type\": \"ping\",  \"seq\":1}");
}

TEST(StdioBridge, LargeMessagesPassWhole) {
  VariantHarness harness;
  std::string error;
  ASSERT_TRUE(harness.Start(Shell("exec cat"), error)) << error;
  const std::string big = R"({"type":"restore","seq":1,"state":")" + std::string(4 << 20, 'x') + "\"}";
  harness.Send("shell", big);
  auto message = harness.Receive("shell");
  ASSERT_TRUE(message);
  EXPECT_EQ(message->size(), big.size());
}

TEST(StdioBridge, ExitsWithTheChildsStatus) {
  VariantHarness harness;
  std::string error;
  ASSERT_TRUE(harness.Start(Shell("read line; echo \"$line\"; exit 7"), error)) << error;
  harness.Send("shell", R"({"type":"ping","seq":5})");
  auto echoed = harness.Receive("shell");
  ASSERT_TRUE(echoed) << "the last line before the exit must still arrive";
  auto status = harness.WaitForExit("shell");
  ASSERT_TRUE(status);
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 7);
}

TEST(StdioBridge, ReRaisesTheSignalThatKilledTheChild) {
  VariantHarness harness;
  std::string error;
  ASSERT_TRUE(harness.Start(Shell("read line; kill -SEGV $$"), error)) << error;
  harness.Send("shell", R"({"type":"ping","seq":1})");
  auto status = harness.WaitForExit("shell");
  ASSERT_TRUE(status);
  ASSERT_TRUE(WIFSIGNALED(*status));
  EXPECT_EQ(WTERMSIG(*status), SIGSEGV);
}

TEST(StdioBridge, SigtermStopsTheChildAndLeavesNoOrphan) {
  VariantHarness harness;
  std::string error;
  auto hello = harness.Start(Shell("exec sleep 1000"), error);
  ASSERT_TRUE(hello) << error;
  const int child = std::stoi(hello->impl);
  ASSERT_EQ(kill(child, 0), 0);
  ASSERT_TRUE(SignalProcess(harness.Pid("shell"), SIGTERM));
  auto status = harness.WaitForExit("shell");
  ASSERT_TRUE(status);
  ASSERT_TRUE(WIFSIGNALED(*status));
  EXPECT_EQ(WTERMSIG(*status), SIGTERM);
  EXPECT_TRUE(WaitForProcessExit(child, std::chrono::seconds(0))) << "the child outlived the bridge";
}

TEST(StdioBridge, SigkilledBridgeTakesTheChildWithIt) {
  VariantHarness harness;
  std::string error;
  auto hello = harness.Start(Shell("exec sleep 1000"), error);
  ASSERT_TRUE(hello) << error;
  const int child = std::stoi(hello->impl);
  ASSERT_TRUE(SignalProcess(harness.Pid("shell"), SIGKILL));
  ASSERT_TRUE(harness.WaitForExit("shell"));
  // PR_SET_PDEATHSIG delivers SIGKILL to the child: wait for its exit with a deadline.
  EXPECT_TRUE(WaitForProcessExit(child, std::chrono::seconds(5))) << "the child outlived a SIGKILLed bridge";
}

TEST(StdioBridge, MissingCommandIsReported) {
  VariantHarness harness;
  std::string error;
  EXPECT_FALSE(harness.Start(VariantCommand{"none", {StdioBridgePath(), "--", "/nonexistent/program"}}, error,
                             std::chrono::milliseconds(3000)));
  auto status = harness.WaitForExit("none");
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) != 0);
}

}  // namespace
}  // namespace nvs::testing
