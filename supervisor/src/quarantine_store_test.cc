#include "quarantine_store.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace nvs::supervisor {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class QuarantineFolder : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/nvs-quarantine-test-XXXXXX";
    dir_ = mkdtemp(pattern);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void Write(const std::string& name, const std::string& text) { std::ofstream(dir_ / name) << text; }
  fs::path dir_;
};

TEST_F(QuarantineFolder, IndexesBlockedReportsAndSkipsOthers) {
  Write("q-1.json", R"({"id":"q-1","fingerprint":"f1","status":"blocked"})");
  Write("q-2.json", R"({"id":"q-2","fingerprint":"f2","status":"released"})");
  Write("q-3.json", "not json");
  Write("q-1.state.json", R"({"routes":[0]})");
  std::vector<std::string> warnings;
  auto store = QuarantineStore::Open(dir_, warnings);
  ASSERT_TRUE(store.ok()) << store.status().message();
  EXPECT_EQ(store.value().report_count(), 2u);
  EXPECT_EQ(warnings.size(), 1u) << "q-3; the snapshot is not a report";
  EXPECT_TRUE(store.value().IsBlocked("f1"));
  EXPECT_FALSE(store.value().IsBlocked("f2"));
}

// Found by fuzzing the client codec (the same pattern here): nvsd answers
// `quarantine show` by dumping the report it read, and `list` copies parts of
// it; both recurse once per JSON level, so a report file nested 400,000
// levels deep overflowed nvsd's stack. nvsd never writes one that deep.
TEST_F(QuarantineFolder, DeeplyNestedReportIsSkippedNotStackOverflow) {
  const std::size_t depth = 400000;
  Write("q-1.json", R"({"id":"q-1","fingerprint":"f1","status":"blocked","command":)" + std::string(depth, '[') +
                        std::string(depth, ']') + "}");
  Write("q-2.json", R"({"id":"q-2","fingerprint":"f2","status":"blocked","command":)" + std::string(64, '[') +
                        std::string(64, ']') + "}");
  std::vector<std::string> warnings;
  auto store = QuarantineStore::Open(dir_, warnings);
  ASSERT_TRUE(store.ok()) << store.status().message();
  EXPECT_EQ(warnings.size(), 1u);
  EXPECT_FALSE(store.value().Read("q-1")) << "refused before anyone parses and dumps it";
  EXPECT_TRUE(store.value().Read("q-2")) << "a command as deep as nvsd admits";
}

// Found by reading nvsd's `quarantine show` while writing
// fuzz/quarantine_report_fuzzer: the snapshot a report names was opened as
// `quarantine folder / name` whatever the name: "/dev/zero" made nvsd read
// forever, "../../x" any file it can read.
TEST_F(QuarantineFolder, SnapshotOutsideTheFolderIsNotRead) {
  Write("q-1.state.json", R"({"routes":[0]})");
  std::vector<std::string> warnings;
  auto store = QuarantineStore::Open(dir_, warnings);
  ASSERT_TRUE(store.ok());
  EXPECT_EQ(store.value().ReadAttachment("q-1.state.json"), std::optional<std::string>(R"({"routes":[0]})"));
  for (const char* name : {"/dev/zero", "../q-1.state.json", "/etc/passwd", "", ".hidden", "a/b"}) {
    EXPECT_FALSE(store.value().ReadAttachment(name)) << name;
  }
}

// Found by reading nvsd's quarantine review while writing
// fuzz/quarantine_report_fuzzer: `list` erased members of every outcome, and
// nlohmann throws type_error on erase() from a string or number; `show`
// read pre_state.snapshot with value(json_pointer), which throws when it is
// not a string (or pre_state is an array); `release` read the status with
// value(), which throws when it is not a string. nvsd's loop caught the
// exception, so the client never got a reply.
TEST(QuarantineReview, MembersOfTheWrongTypeAreAbsentNotAThrow) {
  const json odd = json::parse(R"({"id":"q-1","status":7,"outcomes":["crashed",3,null,{"variant":"a","result":1,
    "stderr_tail":"x"}],"pre_state":[1],"command":{"op":"x"}})");
  json summary;
  ASSERT_NO_THROW(summary = ReportSummary(odd));
  EXPECT_EQ(summary["outcomes"][3], json::parse(R"({"variant":"a"})")) << "tails and results dropped";
  EXPECT_EQ(summary["outcomes"][0], "crashed");
  EXPECT_EQ(summary["command"], json::parse(R"({"op":"x"})"));
  EXPECT_NO_THROW(ReportSummary(json::parse(R"({"outcomes":"crashed"})")));
  EXPECT_NO_THROW(ReportSummary(json::parse(R"({"outcomes":{"a":1}})")));
  EXPECT_EQ(ReportSummary(json::array()), json::object());

  EXPECT_EQ(SnapshotFileName(odd), "");
  EXPECT_EQ(SnapshotFileName(json::parse(R"({"pre_state":{"snapshot":5}})")), "");
  EXPECT_EQ(SnapshotFileName(json::parse(R"({"pre_state":{"snapshot":"q-1.state.json"}})")), "q-1.state.json");
  EXPECT_EQ(SnapshotFileName(json("text")), "");

  EXPECT_EQ(ReportStatus(odd), "");
  EXPECT_EQ(ReportStatus(json::parse(R"({"status":"blocked"})")), "blocked");
  EXPECT_EQ(ReportStatus(json(nullptr)), "");
}

}  // namespace
}  // namespace nvs::supervisor
