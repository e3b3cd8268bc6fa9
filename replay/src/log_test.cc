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

// Found by fuzz/journal_records_fuzzer and fuzz/quarantine_report_fuzzer:
// a seq or time_ns too large for an integer is a JSON float, and
// nlohmann's value<std::int64_t>() then cast it: undefined behaviour
// (UBSan: "1.79543e+28 is outside the range of representable values").
// 1.5 and -1 were silently read as 1 and 2^64 - 1.
TEST_F(CommandLogs, FloatOrNegativeSeqOrTimeIsSkippedNotUndefinedBehaviour) {
  auto lines = LoadCommandLog(Write("lines.jsonl", R"({"seq":1e30,"cmd":{"op":"a"}}
{"seq":1,"time_ns":17954294967297709098400309744,"cmd":{"op":"b"}}
{"seq":1.5,"cmd":{"op":"c"}}
{"seq":-1,"cmd":{"op":"d"}}
{"seq":9223372036854775808,"cmd":{"op":"e"}}
{"seq":2,"time_ns":5,"cmd":{"op":"f"}}
)"));
  ASSERT_TRUE(lines.ok()) << lines.status().message();
  ASSERT_EQ(lines.value().commands.size(), 1u);
  EXPECT_EQ(lines.value().commands[0].cmd, R"({"op":"f"})");
  EXPECT_EQ(lines.value().warnings.size(), 5u) << "each skipped line is named";

  auto exported = LoadCommandLog(Write("export.jsonl", R"({"t":"admit","seq":2,"time_ns":1.8e28,"cmd":{"op":"a"}}
{"t":"admit","seq":1,"time_ns":7,"cmd":{"op":"b"}}
{"t":"verdict","seq":2e40,"verdict":"COMMIT","result":{}}
)"));
  ASSERT_TRUE(exported.ok()) << exported.status().message();
  ASSERT_EQ(exported.value().commands.size(), 1u) << "the admit with a float time_ns is skipped whole";
  EXPECT_EQ(exported.value().commands[0].seq, 1u);
  EXPECT_EQ(exported.value().commands[0].time_ns, 7);
  EXPECT_EQ(exported.value().warnings.size(), 2u);

  auto report = LoadCommandLog(Write("q-1.json", R"({"id":"q-1","fingerprint":"f","status":"blocked",
    "seq":9.22337e+32,"command":{"op":"boom"},"outcomes":[],"verdict":"POISON"})"));
  EXPECT_FALSE(report.ok()) << "a report whose seq is not a count is refused with a message";
}

// Found by fuzzing the client codec (the same pattern here): nlohmann/json
// parses any depth, but Compact re-serialises a command recursively, one
// stack frame per level, and 400,000 levels overflow the stack.
TEST_F(CommandLogs, DeeplyNestedRecordIsSkippedNotStackOverflow) {
  const std::size_t depth = 400000;
  const std::string deep = std::string(depth, '[') + std::string(depth, ']');
  auto lines = LoadCommandLog(Write("deep.jsonl", R"({"cmd":)" + deep + "}\n" + R"({"op":"ok"})" + "\n"));
  ASSERT_TRUE(lines.ok()) << lines.status().message();
  ASSERT_EQ(lines.value().commands.size(), 1u);
  EXPECT_EQ(lines.value().commands[0].cmd, R"({"op":"ok"})");
  EXPECT_EQ(lines.value().warnings.size(), 1u);

  fs::create_directories(dir_ / "state" / "journal");
  std::string bytes(supervisor::kJournalMagic);
  bytes += supervisor::FrameRecord(R"({"t":"admit","seq":1,"time_ns":1,"cmd":{"op":"x"}})");
  bytes += supervisor::FrameRecord(R"({"t":"admit","seq":2,"time_ns":2,"cmd":)" + deep + "}");
  std::ofstream(supervisor::JournalSegmentPath(dir_ / "state" / "journal", 1), std::ios::binary) << bytes;
  auto journal = LoadCommandLog(dir_ / "state");
  ASSERT_TRUE(journal.ok()) << journal.status().message();
  ASSERT_EQ(journal.value().commands.size(), 1u);
  EXPECT_EQ(journal.value().commands[0].seq, 1u);
  EXPECT_EQ(journal.value().warnings.size(), 1u) << "the skipped record is counted";

  const std::string payload_deep = R"({"cmd":)" + std::string(64, '[') + std::string(64, ']') + "}\n";
  EXPECT_TRUE(LoadCommandLog(Write("ok.jsonl", payload_deep)).ok()) << "a command as deep as nvsd admits is read";
}

// Found by reading the report reader while fuzzing it: the snapshot a report
// names was read from `report folder / name` whatever the name, so
// "/dev/zero" made `nvs replay` read forever and "../../x" read any file.
TEST_F(CommandLogs, ReportSnapshotOutsideItsFolderIsRefused) {
  for (const char* snapshot : {"/dev/zero", "../q-1.state.json", "sub/q-1.state.json", ".."}) {
    auto report = LoadCommandLog(Write("q-1.json", std::string(R"({"id":"q-1","fingerprint":"f","status":"blocked",
      "seq":4,"command":{"op":"boom"},"outcomes":[],"verdict":"POISON","pre_state":{"snapshot":")") + snapshot +
                                                     R"("}})"));
    ASSERT_FALSE(report.ok()) << snapshot;
    EXPECT_NE(report.status().message().find("not a file name beside the report"), std::string::npos)
        << report.status().message();
  }
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
