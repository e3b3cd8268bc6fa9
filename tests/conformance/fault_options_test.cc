// The test fault options of PROTOCOL.md §6, for every router variant: each
// one does what it says, and only on matching commands.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "variant_harness.h"

namespace nvs::testing {
namespace {

namespace proto = nvs::protocol;
using nlohmann::json;

const char* const kBenign = R"({"op":"route","client":"t","routes":[{"output":1,"input":2}]})";
const char* const kPoison = R"({"op":"label","client":"t","kind":"input","labels":[{"index":0,"text":"POISON-7"}]})";

class FaultOptions : public ::testing::TestWithParam<std::string> {
 protected:
  // Starts the variant with `args`, sends a benign command (which must work)
  // and then the poison one; returns the raw reply to the poison, if any.
  std::optional<std::string> RunPoison(const std::vector<std::string>& args,
                                       std::chrono::milliseconds deadline = std::chrono::milliseconds(10000)) {
    std::string error;
    if (!harness_.Start(RouterVariant(GetParam(), args), error)) {
      ADD_FAILURE() << error;
      return std::nullopt;
    }
    auto benign = harness_.Call(GetParam(), proto::Apply{1, 1, kBenign}, error);
    EXPECT_TRUE(benign && std::holds_alternative<proto::Applied>(*benign)) << error;
    harness_.Send(GetParam(), proto::Apply{2, 2, kPoison});
    return harness_.Receive(GetParam(), deadline);
  }

  std::string Digest(std::uint64_t seq) {
    std::string error;
    auto reply = harness_.Call(GetParam(), proto::DigestRequest{seq}, error);
    auto* digest = reply ? std::get_if<proto::DigestReply>(&*reply) : nullptr;
    return digest != nullptr ? digest->digest : "no digest: " + error;
  }

  VariantHarness harness_;
};

TEST_P(FaultOptions, CrashOnDiesBySigsegv) {
  EXPECT_FALSE(RunPoison({"--fault", "crash-on=POISON-7"}));
  auto status = harness_.WaitForExit(GetParam());
  ASSERT_TRUE(status);
  ASSERT_TRUE(WIFSIGNALED(*status)) << "status " << *status;
  EXPECT_EQ(WTERMSIG(*status), SIGSEGV);
}

TEST_P(FaultOptions, AbortOnDiesBySigabrt) {
  EXPECT_FALSE(RunPoison({"--fault", "abort-on=POISON-7"}));
  auto status = harness_.WaitForExit(GetParam());
  ASSERT_TRUE(status);
  ASSERT_TRUE(WIFSIGNALED(*status)) << "status " << *status;
  EXPECT_EQ(WTERMSIG(*status), SIGABRT);
}

TEST_P(FaultOptions, ExitOnExitsWithStatus3) {
  EXPECT_FALSE(RunPoison({"--fault", "exit-on=POISON-7"}));
  auto status = harness_.WaitForExit(GetParam());
  ASSERT_TRUE(status);
  ASSERT_TRUE(WIFEXITED(*status)) << "status " << *status;
  EXPECT_EQ(WEXITSTATUS(*status), 3);
}

TEST_P(FaultOptions, HangOnStaysAliveSilentAndStillDiesOnSigterm) {
  EXPECT_FALSE(RunPoison({"--fault", "hang-on=POISON-7"}, std::chrono::milliseconds(500)));
  harness_.Send(GetParam(), proto::Ping{3});
  EXPECT_FALSE(harness_.Receive(GetParam(), std::chrono::milliseconds(200))) << "a hung variant answered a ping";
  ASSERT_GT(harness_.Pid(GetParam()), 0);
  EXPECT_FALSE(harness_.WaitForExit(GetParam(), std::chrono::milliseconds(0))) << "hang must not exit";
  ASSERT_TRUE(SignalProcess(harness_.Pid(GetParam()), SIGTERM));
  EXPECT_TRUE(harness_.WaitForExit(GetParam(), std::chrono::milliseconds(5000))) << "SIGTERM did not end a hung variant";
}

TEST_P(FaultOptions, WrongOnRepliesWrongButAppliesCorrectly) {
  // Reference: the same two commands on a fault-free incarnation.
  std::string error;
  ASSERT_TRUE(harness_.Start(RouterVariant(GetParam()), error)) << error;
  ASSERT_TRUE(harness_.Call(GetParam(), proto::Apply{1, 1, kBenign}, error));
  ASSERT_TRUE(harness_.Call(GetParam(), proto::Apply{2, 2, kPoison}, error));
  const std::string reference = Digest(3);

  auto reply = RunPoison({"--fault", "wrong-on=POISON-7"});
  ASSERT_TRUE(reply);
  auto decoded = proto::DecodeReply(*reply);
  ASSERT_TRUE(decoded.ok());
  auto* applied = std::get_if<proto::Applied>(&decoded.value());
  ASSERT_NE(applied, nullptr) << *reply;
  EXPECT_EQ(json::parse(applied->result), json::parse(R"({"ok":true,"fault":"wrong"})"));
  EXPECT_EQ(Digest(3), reference) << "wrong-on must not change what is applied";
}

TEST_P(FaultOptions, CorruptOnRepliesRightButChangesTheDigest) {
  std::string error;
  ASSERT_TRUE(harness_.Start(RouterVariant(GetParam()), error)) << error;
  ASSERT_TRUE(harness_.Call(GetParam(), proto::Apply{1, 1, kBenign}, error));
  auto good = harness_.Call(GetParam(), proto::Apply{2, 2, kPoison}, error);
  ASSERT_TRUE(good);
  const std::string reference = Digest(3);

  auto reply = RunPoison({"--fault", "corrupt-on=POISON-7"});
  ASSERT_TRUE(reply);
  auto decoded = proto::DecodeReply(*reply);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(proto::Encode(decoded.value()), proto::Encode(*good)) << "corrupt-on must reply correctly";
  EXPECT_NE(Digest(3), reference);
}

TEST_P(FaultOptions, NonMatchingCommandsAreUnaffected) {
  auto reply = RunPoison({"--fault", "crash-on=SOMETHING-ELSE", "--fault", "hang-on=NOT-THIS"});
  ASSERT_TRUE(reply);
  EXPECT_NE(reply->find(R"("type":"applied")"), std::string::npos);
}

TEST_P(FaultOptions, ReceivedLogRecordsEveryApplyAndQueryBeforeProcessing) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("nvs-received-" + GetParam() + "-" + std::to_string(getpid()) + ".jsonl");
  std::filesystem::remove(path);
  EXPECT_FALSE(RunPoison({"--received-log", path.string(), "--fault", "crash-on=POISON-7"}));
  ASSERT_TRUE(harness_.WaitForExit(GetParam()));
  std::ifstream in(path);
  std::vector<json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(json::parse(line));
  std::filesystem::remove(path);
  ASSERT_EQ(lines.size(), 2u) << "the benign command and the poison that crashed it";
  EXPECT_EQ(lines[0].at("type"), "apply");
  EXPECT_EQ(lines[0].at("cmd"), json::parse(kBenign));
  EXPECT_EQ(lines[1].at("seq"), 2);
  EXPECT_EQ(lines[1].at("cmd"), json::parse(kPoison));
  // Each line names the process that received it (its NVS_VARIANT): nvsd's
  // probes and retests run the same command line and share the log.
  for (const auto& line : lines) {
    ASSERT_TRUE(line.contains("received_by")) << line.dump();
    EXPECT_EQ(line["received_by"].get<std::string>().rfind(GetParam() + ".", 0), 0u) << line.dump();
  }
}

TEST_P(FaultOptions, BadFaultOptionIsAUsageError) {
  std::string error;
  EXPECT_FALSE(harness_.Start(RouterVariant(GetParam(), {"--fault", "explode-on=x"}), error,
                              std::chrono::milliseconds(3000)));
  auto status = harness_.WaitForExit(GetParam());
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2) << "status " << *status;
}

INSTANTIATE_TEST_SUITE_P(AllVariants, FaultOptions, ::testing::Values("router-a", "router-b", "router-c"),
                         [](const auto& info) { std::string n = info.param; n[6] = '_'; return n; });

}  // namespace
}  // namespace nvs::testing
