#include "nvs/supervisor/journal.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace nvs::supervisor {
namespace {

namespace fs = std::filesystem;

std::string JournalOf(const std::vector<std::string>& payloads) {
  std::string bytes(kJournalMagic);
  for (const auto& p : payloads) bytes += FrameRecord(p);
  return bytes;
}

TEST(Crc32, KnownVector) {
  EXPECT_EQ(Crc32("123456789"), 0xCBF43926u);
  EXPECT_EQ(Crc32(""), 0u);
}

TEST(ScanJournal, ReadsEveryRecord) {
  const std::vector<std::string> payloads = {R"({"seq":1})", "", std::string(100000, 'x'), R"({"seq":2})"};
  const JournalScan scan = ScanJournal(JournalOf(payloads));
  EXPECT_EQ(scan.records, payloads);
  EXPECT_TRUE(scan.damage.empty());
  EXPECT_EQ(scan.good_bytes, JournalOf(payloads).size());
}

// A crash can stop a write at any byte: whatever the cut, the records before
// it are all there and the damage is reported (or the cut fell on a boundary).
TEST(ScanJournal, TornAtEveryByteKeepsTheGoodPrefix) {
  const std::vector<std::string> payloads = {R"({"seq":1,"cmd":"a"})", R"({"seq":2,"cmd":"bb"})", R"({"seq":3})"};
  const std::string full = JournalOf(payloads);
  std::vector<std::size_t> boundaries = {kJournalMagic.size()};
  for (const auto& p : payloads) boundaries.push_back(boundaries.back() + 8 + p.size());
  for (std::size_t cut = kJournalMagic.size(); cut <= full.size(); ++cut) {
    const JournalScan scan = ScanJournal(std::string_view(full).substr(0, cut));
    std::size_t whole = 0;
    while (whole + 1 < boundaries.size() && boundaries[whole + 1] <= cut) ++whole;
    ASSERT_EQ(scan.records.size(), whole) << "cut at " << cut;
    EXPECT_EQ(scan.good_bytes, boundaries[whole]) << "cut at " << cut;
    const bool on_boundary = std::find(boundaries.begin(), boundaries.end(), cut) != boundaries.end();
    EXPECT_EQ(scan.damage.empty(), on_boundary) << "cut at " << cut << ": " << scan.damage;
  }
}

TEST(ScanJournal, AFlippedBitIsCaught) {
  const std::string full = JournalOf({R"({"seq":1})", R"({"seq":2})"});
  for (std::size_t at = kJournalMagic.size(); at < full.size(); ++at) {
    std::string bad = full;
    bad[at] = static_cast<char>(bad[at] ^ 0x10);
    const JournalScan scan = ScanJournal(bad);
    EXPECT_FALSE(scan.damage.empty()) << "flip at " << at;
    EXPECT_LT(scan.records.size(), 2u) << "flip at " << at;
  }
}

TEST(ScanJournal, RejectsWhatIsNotAJournal) {
  EXPECT_FALSE(ScanJournal("GARBAGE, NOT A JOURNAL AT ALL").damage.empty());
  EXPECT_TRUE(ScanJournal("").damage.empty());
  // A length beyond the limit is not believed.
  std::string huge(kJournalMagic);
  huge += std::string("\xff\xff\xff\xff\0\0\0\0", 8);
  EXPECT_NE(ScanJournal(huge).damage.find("claims"), std::string::npos);
}

class JournalFile : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/nvs-journal-XXXXXX";
    dir_ = mkdtemp(pattern);
    path_ = dir_ / "journal";
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Contents() const {
    std::ifstream in(path_, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  fs::path dir_, path_;
};

TEST_F(JournalFile, AppendsAndReopens) {
  {
    std::vector<std::string> existing;
    std::string damage;
    auto writer = JournalWriter::Open(path_, FsyncPolicy::kAlways, 0, &existing, &damage);
    ASSERT_TRUE(writer.ok()) << writer.status().message();
    EXPECT_TRUE(existing.empty());
    writer.value()->Append("one");
    writer.value()->Append("two");
    ASSERT_TRUE(writer.value()->Flush().ok());
    EXPECT_FALSE(writer.value()->unsynced());
  }
  std::vector<std::string> existing;
  std::string damage;
  auto writer = JournalWriter::Open(path_, FsyncPolicy::kAlways, 0, &existing, &damage);
  ASSERT_TRUE(writer.ok());
  EXPECT_EQ(existing, (std::vector<std::string>{"one", "two"}));
  EXPECT_TRUE(damage.empty());
  writer.value()->Append("three");
  ASSERT_TRUE(writer.value()->Flush().ok());
  EXPECT_EQ(ScanJournal(Contents()).records, (std::vector<std::string>{"one", "two", "three"}));
}

TEST_F(JournalFile, ATornTailIsCutAndReported) {
  std::string bytes = JournalOf({"one", "two"}) + FrameRecord("three").substr(0, 6);
  std::ofstream(path_, std::ios::binary) << bytes;
  std::vector<std::string> existing;
  std::string damage;
  auto writer = JournalWriter::Open(path_, FsyncPolicy::kAlways, 0, &existing, &damage);
  ASSERT_TRUE(writer.ok());
  EXPECT_EQ(existing, (std::vector<std::string>{"one", "two"}));
  EXPECT_NE(damage.find("torn"), std::string::npos) << damage;
  writer.value()->Append("four");
  ASSERT_TRUE(writer.value()->Flush().ok());
  EXPECT_EQ(ScanJournal(Contents()).records, (std::vector<std::string>{"one", "two", "four"}));
  EXPECT_TRUE(ScanJournal(Contents()).damage.empty());
}

TEST_F(JournalFile, RefusesToOverwriteSomethingElse) {
  std::ofstream(path_, std::ios::binary) << "this is somebody's precious file, not a journal";
  std::vector<std::string> existing;
  std::string damage;
  auto writer = JournalWriter::Open(path_, FsyncPolicy::kAlways, 0, &existing, &damage);
  EXPECT_FALSE(writer.ok());
  EXPECT_EQ(Contents(), "this is somebody's precious file, not a journal");
}

TEST_F(JournalFile, BatchPolicyDefersTheSync) {
  auto writer = JournalWriter::Open(path_, FsyncPolicy::kBatch, 60'000, nullptr, nullptr);
  ASSERT_TRUE(writer.ok());
  writer.value()->Append("x");
  ASSERT_TRUE(writer.value()->Flush().ok());
  EXPECT_TRUE(writer.value()->unsynced()) << "synced before the batch interval";
  ASSERT_TRUE(writer.value()->Flush(/*force=*/true).ok());
  EXPECT_FALSE(writer.value()->unsynced());
}

TEST(ParseJournalRecord, ReadsWhatNvsdWrites) {
  auto admit = ParseJournalRecord(
      R"({"t":"admit","seq":7,"time_ns":1700000000000000000,"id":"r-1","client":"00ab","fingerprint":"f",)"
      R"("cmd":{"routes":[{"output":1,"input":2}],"op":"route"}})");
  ASSERT_TRUE(admit.ok()) << admit.status().message();
  EXPECT_EQ(admit.value().type, "admit");
  EXPECT_EQ(admit.value().seq, 7u);
  EXPECT_EQ(admit.value().time_ns, 1700000000000000000);
  EXPECT_EQ(admit.value().id, "r-1");
  EXPECT_EQ(admit.value().cmd, R"({"op":"route","routes":[{"input":2,"output":1}]})") << "compact, members sorted";

  auto commit = ParseJournalRecord(R"({"t":"verdict","seq":7,"id":"r-1","verdict":"COMMIT","result":{"ok":true}})");
  ASSERT_TRUE(commit.ok()) << commit.status().message();
  EXPECT_EQ(commit.value().verdict, "COMMIT");
  EXPECT_EQ(commit.value().result, R"({"ok":true})");

  auto poison = ParseJournalRecord(
      R"({"t":"verdict","seq":8,"id":"r-2","verdict":"POISON","report":"q-1","fingerprint":"ab","reason":"both crashed"})");
  ASSERT_TRUE(poison.ok()) << poison.status().message();
  EXPECT_EQ(poison.value().report, "q-1");
  EXPECT_EQ(poison.value().fingerprint, "ab");
  EXPECT_EQ(poison.value().reason, "both crashed");

  auto start = ParseJournalRecord(R"({"t":"start","time_ns":1,"pid":2,"config":{"variants":[]}})");
  ASSERT_TRUE(start.ok());
  EXPECT_EQ(start.value().type, "start");
  EXPECT_EQ(start.value().seq, 0u);
}

// Found reading nvsd's recovery beside replay's fuzzed reader: nvsd read
// these with get<>() and value(), which throw on a string and cast a float
// or a negative number (undefined behaviour).
TEST(ParseJournalRecord, ARecordOfTheWrongShapeSaysWhyAndNeverThrows) {
  const std::pair<std::string, std::string> cases[] = {
      {R"({"t":"admit","seq":"7","time_ns":1,"cmd":{}})", "'seq' is not an integer in [0, 2^63)"},
      {R"({"t":"admit","seq":7.5,"time_ns":1,"cmd":{}})", "'seq' is not an integer in [0, 2^63)"},
      {R"({"t":"admit","seq":-7,"time_ns":1,"cmd":{}})", "'seq' is not an integer in [0, 2^63)"},
      {R"({"t":"admit","seq":1e300,"time_ns":1,"cmd":{}})", "'seq' is not an integer in [0, 2^63)"},
      {R"({"t":"admit","seq":9223372036854775808,"time_ns":1,"cmd":{}})", "'seq' is not an integer in [0, 2^63)"},
      {R"({"t":"admit","time_ns":1,"cmd":{}})", "'seq' is not an integer in [0, 2^63)"},
      {R"({"t":"admit","seq":7,"time_ns":-1.0,"cmd":{}})", "'time_ns' is not an integer in [0, 2^63)"},
      {R"({"t":"admit","seq":7,"time_ns":1})", "no 'cmd'"},
      {R"({"t":"admit","seq":7,"time_ns":1,"id":["r"],"cmd":{}})", "'id' is not a string"},
      {R"({"t":"verdict","seq":7,"result":{}})", "no 'verdict'"},
      {R"({"t":"verdict","seq":7,"verdict":1})", "'verdict' is not a string"},
      {R"({"t":"verdict","seq":7,"verdict":"COMMIT"})", "a COMMIT without 'result'"},
      {R"({"t":"verdict","seq":7,"verdict":"POISON","fingerprint":{}})", "'fingerprint' is not a string"},
      {R"({"t":"verdict","seq":7,"verdict":"NO_QUORUM","reason":null})", "'reason' is not a string"},
      {R"({"seq":7})", "no 't'"},
      {R"({"t":null})", "'t' is not a string"},
      {R"("admit")", "not a JSON object"},
      {R"({"t":"admit",)", "not JSON"},
      {std::string(200, '[') + std::string(200, ']'), "nested deeper than 128 levels"},
  };
  for (const auto& [body, why] : cases) {
    Result<JournalRecord> read = Status::Error("not run");
    ASSERT_NO_THROW(read = ParseJournalRecord(body)) << body;
    ASSERT_FALSE(read.ok()) << body;
    EXPECT_EQ(read.status().message(), why) << body;
  }
  // A skipped record's seq is still seen when it can be read: nvsd never
  // gives it to another command.
  std::uint64_t seen = 99;
  EXPECT_FALSE(ParseJournalRecord(R"({"t":"admit","seq":41,"time_ns":1})", &seen).ok());
  EXPECT_EQ(seen, 41u);
  EXPECT_FALSE(ParseJournalRecord(R"({"t":7,"seq":40})", &seen).ok());
  EXPECT_EQ(seen, 40u);
  EXPECT_FALSE(ParseJournalRecord(R"({"t":"admit","seq":-1.5})", &seen).ok());
  EXPECT_EQ(seen, 0u);
}

TEST(ParseCheckpoint, ReadsWhatNvsdWritesAndSaysWhichMemberIsWrong) {
  auto good = ParseCheckpoint(R"({"seq":12,"digest":"0a1b","state":{"routes":[3,1],"labels":{}}})");
  ASSERT_TRUE(good.ok()) << good.status().message();
  EXPECT_EQ(good.value().seq, 12u);
  EXPECT_EQ(good.value().digest, "0a1b");
  EXPECT_EQ(good.value().state, R"({"labels":{},"routes":[3,1]})");
  const std::pair<std::string, std::string> cases[] = {
      {R"({"seq":-1.5,"digest":"d","state":{}})", "'seq' is not an integer in [0, 2^63)"},
      {R"({"seq":"3","digest":"d","state":{}})", "'seq' is not an integer in [0, 2^63)"},
      {R"({"seq":3,"digest":5,"state":{}})", "'digest' is not a string"},
      {R"({"seq":3,"digest":"d"})", "no 'state'"},
      {"[1,2]", "not a JSON object"},
      {"{", "not JSON"},
      {R"({"seq":0,"digest":"d","state":)" + std::string(200, '[') + std::string(200, ']') + "}",
       "nested deeper than 128 levels"},
  };
  for (const auto& [text, why] : cases) {
    const auto read = ParseCheckpoint(text);
    ASSERT_FALSE(read.ok()) << text;
    EXPECT_EQ(read.status().message(), why) << text;
  }
}

TEST(JournalSegments, NamesRoundTripAndOthersAreIgnored) {
  EXPECT_EQ(JournalSegmentPath("/s/journal", 7).filename(), "000000000007.nvj");
  EXPECT_EQ(JournalSegmentIndex("/s/journal/000000000007.nvj"), 7u);
  EXPECT_EQ(JournalSegmentIndex("/s/journal/00000000007.nvj"), 0u);
  EXPECT_EQ(JournalSegmentIndex("/s/journal/00000000000x.nvj"), 0u);
  EXPECT_EQ(JournalSegmentIndex("/s/journal/000000000007.nvj.tmp"), 0u);
}

TEST_F(JournalFile, ReadJournalJoinsSegmentsInOrderAndReportsDamagePerSegment) {
  const fs::path dir = dir_ / "journal";
  fs::create_directories(dir);
  // Written out of order, and numbered past 9 so that the order is numeric.
  std::ofstream(JournalSegmentPath(dir, 10), std::ios::binary) << JournalOf({"c"});
  std::ofstream(JournalSegmentPath(dir, 2), std::ios::binary) << JournalOf({"a", "b"});
  std::ofstream(dir / "notes.txt") << "not a segment";
  const std::string torn = JournalOf({"d", "e"});
  std::ofstream(JournalSegmentPath(dir, 11), std::ios::binary) << torn.substr(0, torn.size() - 1);
  for (const fs::path& where : {dir_, dir}) {
    auto read = ReadJournal(where);
    ASSERT_TRUE(read.ok()) << read.status().message();
    EXPECT_EQ(read.value().records, (std::vector<std::string>{"a", "b", "c", "d"}));
    EXPECT_EQ(read.value().files.size(), 3u);
    ASSERT_EQ(read.value().damage.size(), 1u);
    EXPECT_NE(read.value().damage[0].find("000000000011.nvj"), std::string::npos) << read.value().damage[0];
  }
  auto one = ReadJournal(JournalSegmentPath(dir, 2));
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one.value().records, (std::vector<std::string>{"a", "b"}));
  EXPECT_FALSE(ReadJournal(dir_ / "nothing-here").ok());
  fs::create_directories(dir_ / "empty");
  EXPECT_FALSE(ReadJournal(dir_ / "empty").ok());
}

}  // namespace
}  // namespace nvs::supervisor
