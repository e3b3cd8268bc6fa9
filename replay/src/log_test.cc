#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "nvs/replay/replay.h"
#include "nvs/supervisor/journal.h"

namespace nvs::replay {
namespace {

namespace fs = std::filesystem;

class CommandLogs : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/nvs-log-test-XXXXXX";
    dir_ = mkdtemp(pattern);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    return dir_ / name;
  }
  fs::path dir_;
};

TEST_F(CommandLogs, PlainLinesCmdObjectsAndJunk) {
  auto log = LoadCommandLog(Write("a.jsonl", R"({"op":"route","b":1,"a":2}
{"cmd":{"op":"label"},"time_ns":5,"seq":9}

not json
[1,2]
{"initial_state":{"routes":[0]}}
)"));
  ASSERT_TRUE(log.ok()) << log.status().message();
  EXPECT_EQ(log.value().format, "commands");
  ASSERT_EQ(log.value().commands.size(), 2u);
  EXPECT_EQ(log.value().commands[0].cmd, R"({"a":2,"b":1,"op":"route"})") << "normal form: members sorted";
  EXPECT_EQ(log.value().commands[1].cmd, R"({"op":"label"})");
  EXPECT_EQ(log.value().commands[1].time_ns, 5);
  EXPECT_EQ(log.value().commands[1].seq, 9u);
  EXPECT_EQ(log.value().warnings.size(), 2u) << "each skipped line is named";
  ASSERT_TRUE(log.value().initial_state);
  EXPECT_EQ(*log.value().initial_state, R"({"routes":[0]})");
}

TEST_F(CommandLogs, JournalExportKeepsSequenceAndRecordedVerdicts) {
  auto log = LoadCommandLog(Write("export.jsonl", R"({"t":"admit","seq":2,"time_ns":20,"id":"r2","cmd":{"op":"b"}}
{"t":"admit","seq":1,"time_ns":10,"id":"r1","cmd":{"op":"a"}}
{"t":"verdict","seq":1,"id":"r1","verdict":"COMMIT","result":{"ok":true}}
{"t":"verdict","seq":2,"id":"r2","verdict":"POISON","report":"q-2"}
{"t":"verdict","seq":7,"id":"lost","verdict":"COMMIT"}
)"));
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(log.value().format, "journal-export");
  ASSERT_EQ(log.value().commands.size(), 2u);
  EXPECT_EQ(log.value().commands[0].seq, 1u);
  EXPECT_EQ(log.value().commands[0].recorded_verdict, "COMMIT");
  EXPECT_EQ(log.value().commands[0].recorded_result, R"({"ok":true})");
  EXPECT_EQ(log.value().commands[1].recorded_verdict, "POISON");
  EXPECT_EQ(log.value().commands[1].request_id, "r2");
}

TEST_F(CommandLogs, JournalSegmentsAndQuarantineReports) {
  fs::create_directories(dir_ / "state" / "journal");
  {
    std::string bytes(supervisor::kJournalMagic);
    bytes += supervisor::FrameRecord(R"({"t":"admit","seq":1,"time_ns":1,"cmd":{"op":"x"}})");
    std::ofstream(supervisor::JournalSegmentPath(dir_ / "state" / "journal", 1), std::ios::binary) << bytes;
  }
  auto journal = LoadCommandLog(dir_ / "state");
  ASSERT_TRUE(journal.ok()) << journal.status().message();
  EXPECT_EQ(journal.value().format, "journal");
  ASSERT_EQ(journal.value().commands.size(), 1u);
  EXPECT_EQ(journal.value().commands[0].recorded_verdict, "") << "admitted, never decided";

  Write("q-1.state.json", R"({"routes":[3]})");
  auto report = LoadCommandLog(Write("q-1.json", R"({"id":"q-1","fingerprint":"f","status":"blocked","seq":4,
    "command":{"op":"boom"},"outcomes":[],"verdict":"POISON","pre_state":{"snapshot":"q-1.state.json"}})"));
  ASSERT_TRUE(report.ok()) << report.status().message();
  EXPECT_EQ(report.value().format, "quarantine-report");
  ASSERT_EQ(report.value().commands.size(), 1u);
  EXPECT_EQ(report.value().commands[0].cmd, R"({"op":"boom"})");
  EXPECT_EQ(report.value().commands[0].seq, 4u);
  ASSERT_TRUE(report.value().initial_state);
  EXPECT_EQ(*report.value().initial_state, R"({"routes":[3]})");
}

TEST_F(CommandLogs, NothingToReplayIsAClearError) {
  EXPECT_FALSE(LoadCommandLog(dir_ / "missing.jsonl").ok());
  EXPECT_FALSE(LoadCommandLog(Write("empty.jsonl", "\n\n")).ok());
  EXPECT_FALSE(LoadCommandLog(dir_).ok()) << "a folder without a journal";
  auto mixed = LoadCommandLog(Write("mixed.jsonl", "{\"op\":\"a\"}\n{\"t\":\"admit\",\"seq\":1,\"cmd\":{}}\n"));
  EXPECT_FALSE(mixed.ok());
}

TEST(Signature, NamesTheKindAndTheVariants) {
  StepReport step;
  step.kind = StepKind::kCrash;
  step.verdict.crashed = {"b", "a"};
  auto signature = SignatureOf(step);
  ASSERT_TRUE(signature);
  EXPECT_EQ(signature->Describe(), "crash of a b");
  step.kind = StepKind::kAgreement;
  EXPECT_FALSE(SignatureOf(step));
}

}  // namespace
}  // namespace nvs::replay
