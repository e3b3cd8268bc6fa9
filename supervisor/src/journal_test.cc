#include "nvs/supervisor/journal.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
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
  const std::vector<std::string> payloads = {R"({"seq":1})", "{}", "{" + std::string(100000, 'x') + "}", R"({"seq":2})"};
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
    EXPECT_EQ(scan.tail, on_boundary ? JournalScan::Tail::kClean : JournalScan::Tail::kTorn) << "cut at " << cut;
  }
}

// Zeros after the last record (a file extended, its data never written) are
// a torn tail too; nvsd never writes an empty record.
TEST(ScanJournal, ZerosAfterTheLastRecordAreATornTail) {
  const std::string good = JournalOf({R"({"seq":1})"});
  const JournalScan scan = ScanJournal(good + std::string(4096, '\0'));
  EXPECT_EQ(scan.records.size(), 1u);
  EXPECT_EQ(scan.tail, JournalScan::Tail::kTorn) << scan.damage;
  EXPECT_EQ(scan.good_bytes, good.size());
}

// Found by an outside test: one flipped byte in the newest segment was
// taken for a torn tail and everything after it cut (25 and 43 acknowledged
// commits lost, at warn level). A flip anywhere is damage, never a torn
// write: a record with good records after it, a record whose bytes are all
// there, a length that was changed.
TEST(ScanJournal, AFlippedBitAnywhereIsDamageNotATornTail) {
  const std::string full = JournalOf({R"({"seq":1,"id":"a"})", R"({"seq":2,"id":"b"})", R"({"seq":3,"id":"c"})"});
  for (std::size_t at = kJournalMagic.size(); at < full.size(); ++at) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = full;
      bad[at] = static_cast<char>(bad[at] ^ (1 << bit));
      const JournalScan scan = ScanJournal(bad);
      EXPECT_EQ(scan.tail, JournalScan::Tail::kDamaged) << "flip of bit " << bit << " at " << at << ": " << scan.damage;
    }
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

// A segment in a temporary state dir, written through the real state dir
// or through one that injects faults.
class JournalFile : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/nvs-journal-XXXXXX";
    dir_ = mkdtemp(pattern);
    auto opened = PosixStateDir::Open(dir_);
    ASSERT_TRUE(opened.ok()) << opened.status().message();
    real_ = std::move(opened.value());
    faulty_ = std::make_unique<FaultyStateDir>(*real_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Contents() const {
    std::ifstream in(dir_ / "segment", std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  std::unique_ptr<JournalWriter> Start(FsyncPolicy policy = FsyncPolicy::kAlways, int batch_ms = 0) {
    auto file = faulty_->OpenForAppend("segment", nullptr);
    EXPECT_TRUE(file.ok());
    auto writer = JournalWriter::Start(std::move(file.value()), policy, batch_ms);
    EXPECT_TRUE(writer.ok()) << writer.status().message();
    return writer.ok() ? std::move(writer.value()) : nullptr;
  }
  std::unique_ptr<JournalWriter> Continue(FsyncPolicy policy = FsyncPolicy::kAlways) {
    const JournalScan scan = ScanJournal(Contents());
    auto file = faulty_->OpenForAppend("segment", nullptr);
    EXPECT_TRUE(file.ok());
    auto writer = JournalWriter::Continue(std::move(file.value()), scan.good_bytes, scan.records.size(), policy, 0);
    EXPECT_TRUE(writer.ok()) << writer.status().message();
    return writer.ok() ? std::move(writer.value()) : nullptr;
  }
  fs::path dir_;
  std::unique_ptr<PosixStateDir> real_;
  std::unique_ptr<FaultyStateDir> faulty_;
};

TEST_F(JournalFile, AppendsAndGoesOn) {
  {
    auto writer = Start();
    writer->Append(R"({"n":1})");
    writer->Append(R"({"n":2})");
    ASSERT_TRUE(writer->Flush().ok());
    EXPECT_FALSE(writer->unsynced());
  }
  auto writer = Continue();
  EXPECT_EQ(writer->records(), 2u);
  writer->Append(R"({"n":3})");
  ASSERT_TRUE(writer->Flush().ok());
  EXPECT_EQ(ScanJournal(Contents()).records, (std::vector<std::string>{R"({"n":1})", R"({"n":2})", R"({"n":3})"}));
}

TEST_F(JournalFile, ATornTailIsCutBeforeItGoesOn) {
  std::ofstream(dir_ / "segment", std::ios::binary) << JournalOf({R"({"n":1})", R"({"n":2})"}) +
                                                           FrameRecord(R"({"n":3})").substr(0, 6);
  const JournalScan scan = ScanJournal(Contents());
  EXPECT_EQ(scan.tail, JournalScan::Tail::kTorn) << scan.damage;
  auto writer = Continue();
  writer->Append(R"({"n":4})");
  ASSERT_TRUE(writer->Flush().ok());
  EXPECT_EQ(ScanJournal(Contents()).records, (std::vector<std::string>{R"({"n":1})", R"({"n":2})", R"({"n":4})"}));
  EXPECT_EQ(ScanJournal(Contents()).tail, JournalScan::Tail::kClean);
}

TEST_F(JournalFile, BatchPolicyDefersTheSync) {
  auto writer = Start(FsyncPolicy::kBatch, 60'000);
  writer->Append(R"({"x":1})");
  ASSERT_TRUE(writer->Flush().ok());
  EXPECT_TRUE(writer->unsynced()) << "synced before the batch interval";
  ASSERT_TRUE(writer->Flush(/*force=*/true).ok());
  EXPECT_FALSE(writer->unsynced());
}

// Found by an outside test on a 2 MiB tmpfs: a write the full disk cut short
// left a torn record in the middle of the segment, later records followed it,
// and the restart cut everything after the tear (87 acknowledged commits).
TEST_F(JournalFile, AFullDiskLeavesNoHoleThatLaterRecordsFollow) {
  auto writer = Start();
  writer->Append(R"({"n":1})");
  ASSERT_TRUE(writer->Flush().ok());
  const std::string good = Contents();
  faulty_->SetSpaceLeft(5);  // the next record fits only in part
  writer->Append(R"({"n":2,"pad":"xxxxxxxxxxxxxxxx"})");
  const Flushed full = writer->Flush();
  EXPECT_EQ(full.result, Flushed::Result::kNotWritten);
  EXPECT_EQ(full.error.error_number, ENOSPC);
  EXPECT_EQ(full.records_kept, 1u) << "the records on disk, for the caller to settle the replies of the rest";
  EXPECT_EQ(Contents(), good) << "the part that fitted was cut off again";
  faulty_->ClearSpaceLimit();
  writer->Append(R"({"n":3})");
  ASSERT_TRUE(writer->Flush().ok());
  const JournalScan scan = ScanJournal(Contents());
  EXPECT_EQ(scan.tail, JournalScan::Tail::kClean) << scan.damage;
  EXPECT_EQ(scan.records, (std::vector<std::string>{R"({"n":1})", R"({"n":3})"})) << "record 2 is gone, for sure";
}

// After a failed fsync the data may be lost whatever the page cache says:
// it is cut off, never trusted.
TEST_F(JournalFile, AFailedFsyncCutsWhatItWasToMakeDurable) {
  auto writer = Start();
  writer->Append(R"({"n":1})");
  ASSERT_TRUE(writer->Flush().ok());
  faulty_->FailSyncs(1);
  writer->Append(R"({"n":2})");
  const Flushed failed = writer->Flush();
  EXPECT_EQ(failed.result, Flushed::Result::kNotWritten);
  EXPECT_EQ(failed.error.error_number, EIO);
  EXPECT_EQ(ScanJournal(Contents()).records, (std::vector<std::string>{R"({"n":1})"}));
  writer->Append(R"({"n":3})");
  ASSERT_TRUE(writer->Flush().ok());
  EXPECT_EQ(ScanJournal(Contents()).records, (std::vector<std::string>{R"({"n":1})", R"({"n":3})"}));
}

// When the writer cannot even cut it off, the segment is in doubt: nothing
// more is written (what is queued meanwhile is dropped, for sure not on
// disk) until it can.
TEST_F(JournalFile, WhatCannotBeCutOffIsInDoubtUntilItCan) {
  auto writer = Start();
  writer->Append(R"({"n":1})");
  ASSERT_TRUE(writer->Flush().ok());
  faulty_->FailSyncs(1);
  faulty_->SetTruncateFails(true);
  writer->Append(R"({"n":2})");
  const Flushed doubt = writer->Flush();
  EXPECT_EQ(doubt.result, Flushed::Result::kInDoubt);
  EXPECT_EQ(doubt.records_kept, 1u) << "record 1 is surely on disk; record 2 is in doubt";
  EXPECT_TRUE(writer->in_doubt());
  writer->Append(R"({"n":3})");
  EXPECT_EQ(writer->Flush().result, Flushed::Result::kNotWritten) << "record 3 is dropped, not written after the doubt";
  EXPECT_EQ(writer->Resolve().result, Flushed::Result::kInDoubt);
  faulty_->SetTruncateFails(false);
  // Only Resolve settles the doubt (its caller then settles the replies in
  // doubt): a Flush that did it quietly left them unanswered for good, and a
  // checkpoint could then hold commits whose verdicts were cut off.
  writer->Append(R"({"n":5})");
  EXPECT_EQ(writer->Flush().result, Flushed::Result::kNotWritten);
  EXPECT_TRUE(writer->in_doubt()) << "a Flush settled the doubt";
  EXPECT_TRUE(writer->Resolve().ok());
  EXPECT_FALSE(writer->in_doubt());
  EXPECT_EQ(writer->records(), 1u);
  EXPECT_EQ(ScanJournal(Contents()).records, (std::vector<std::string>{R"({"n":1})"}));
  writer->Append(R"({"n":4})");
  ASSERT_TRUE(writer->Flush().ok());
  EXPECT_EQ(ScanJournal(Contents()).records, (std::vector<std::string>{R"({"n":1})", R"({"n":4})"}));
}

TEST_F(JournalFile, AReadOnlyDiskWritesNothing) {
  auto writer = Start();
  writer->Append(R"({"n":1})");
  ASSERT_TRUE(writer->Flush().ok());
  const std::string good = Contents();
  faulty_->SetReadOnly(true);
  writer->Append(R"({"n":2})");
  const Flushed refused = writer->Flush();
  EXPECT_EQ(refused.result, Flushed::Result::kNotWritten);
  EXPECT_EQ(refused.error.error_number, EROFS);
  EXPECT_EQ(Contents(), good);
  faulty_->SetReadOnly(false);
  writer->Append(R"({"n":3})");
  ASSERT_TRUE(writer->Flush().ok());
  EXPECT_EQ(ScanJournal(Contents()).records, (std::vector<std::string>{R"({"n":1})", R"({"n":3})"}));
}

TEST_F(JournalFile, ShortWritesStillWriteWholeRecords) {
  auto writer = Start();
  faulty_->SetShortWrites(3);
  for (int i = 0; i < 20; ++i) writer->Append(R"({"n":)" + std::to_string(i) + "}");
  ASSERT_TRUE(writer->Flush().ok());
  EXPECT_EQ(ScanJournal(Contents()).records.size(), 20u);
  EXPECT_EQ(ScanJournal(Contents()).tail, JournalScan::Tail::kClean);
}

// A power cut loses what was not fsynced: under "batch", the records since
// the last sync; the segment then ends on a record boundary.
TEST_F(JournalFile, APowerCutLosesOnlyWhatWasNotSynced) {
  auto writer = Start(FsyncPolicy::kBatch, 60'000);
  writer->Append(R"({"n":1})");
  ASSERT_TRUE(writer->Flush(/*force=*/true).ok());
  writer->Append(R"({"n":2})");
  ASSERT_TRUE(writer->Flush().ok());  // written, not synced
  faulty_->Crash();
  EXPECT_EQ(ScanJournal(Contents()).records, (std::vector<std::string>{R"({"n":1})"}));
  EXPECT_EQ(ScanJournal(Contents()).tail, JournalScan::Tail::kClean);
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

// Recovery skims the records older than the checkpoint (PeekJournalRecord)
// and parses the rest; a skim must never read a record differently from the
// parse, nor vouch for one the parse refuses.
void ExpectPeekAgrees(const std::string& body) {
  const auto head = PeekJournalRecord(body);
  if (!head) return;  // (the caller parses it)
  std::uint64_t seq_seen = 0;
  const auto parsed = ParseJournalRecord(body, &seq_seen);
  ASSERT_TRUE(parsed.ok()) << "skimmed, but the parse says " << parsed.status().message() << ": " << body;
  EXPECT_EQ(head->type, parsed.value().type) << body;
  EXPECT_EQ(head->seq, seq_seen) << body;  // (the record's seq; of other kinds, what recovery takes of it)
  if (head->type == "admit" || head->type == "verdict") {
    EXPECT_EQ(head->id, parsed.value().id) << body;
    EXPECT_EQ(head->key, parsed.value().key) << body;
  }
  if (head->type == "verdict") {
    EXPECT_EQ(head->verdict, parsed.value().verdict) << body;
  }
}

TEST(PeekJournalRecord, ReadsWhatNvsdWritesAsTheParseDoes) {
  const std::string records[] = {
      R"({"client":"00ab","cmd":{"op":"route","routes":[{"input":2,"output":1}]},"fingerprint":"f","id":"r-1","seq":7,"t":"admit","time_ns":1700000000000000000})",
      R"({"id":"r-1","result":{"changed":[],"ok":true},"result_digest":"0011","seq":7,"t":"verdict","verdict":"COMMIT"})",
      R"({"fingerprint":"ab","id":"r-2","key":"alice","reason":"both crashed","report":"q-1","seq":8,"t":"verdict","verdict":"POISON"})",
      R"({"id":"r-3","reason":"too late","seq":9,"t":"verdict","verdict":"EXPIRED"})",
      R"({"id":"","seq":10,"t":"verdict","verdict":"ABANDONED","reason":"x"})",
      R"({"t":"start","time_ns":1,"pid":2,"config":{"variants":[]}})",
      R"({"t":"mark","time_ns":1,"note":"the journal can be written again"})",
      R"( { "t" : "admit" , "seq" : 0 , "time_ns" : 0 , "cmd" : [ 1 , -2.5e+3 , true , false , null , "Ausgang 2 ü ✓ 😀" ] } )",
      R"({"t":"admit","seq":9223372036854775807,"time_ns":1,"cmd":"\u00fc\ud83d\ude00\"\\\/\b\f\n\r\t"})",
  };
  for (const auto& body : records) {
    const auto head = PeekJournalRecord(body);
    ASSERT_TRUE(head.has_value()) << body;
    ExpectPeekAgrees(body);
  }
  EXPECT_EQ(PeekJournalRecord(records[1])->verdict, "COMMIT");
  EXPECT_EQ(PeekJournalRecord(records[1])->id, "r-1");
  EXPECT_EQ(PeekJournalRecord(records[0])->seq, 7u);
  EXPECT_EQ(PeekJournalRecord(records[2])->key, "alice");
}

TEST(PeekJournalRecord, DeclinesWhatItCannotVouchFor) {
  const std::string cases[] = {
      R"({"t":"verdict","seq":7,"id":"r\u002d1","verdict":"COMMIT","result":1})",  // an id to unescape
      R"({"t":"verdict","seq":7,"id":"a","id":"b","verdict":"COMMIT","result":1})",  // repeated member
      R"({"t":"verdict","seq":7,"verdict":"COMMIT"})",                              // no result
      R"({"t":"verdict","seq":07,"verdict":"COMMIT","result":1})",                  // not JSON
      R"({"t":"verdict","seq":7.0,"verdict":"COMMIT","result":1})",
      R"({"t":"verdict","seq":-0,"verdict":"COMMIT","result":1})",
      R"({"t":"verdict","seq":9223372036854775808,"verdict":"COMMIT","result":1})",
      R"({"t":"verdict","seq":7,"verdict":"POISON","reason":1})",
      R"({"t":"verdict","seq":7,"id":"a","key":"al\u0069ce","verdict":"COMMIT","result":1})",  // a key to unescape
      R"({"t":"verdict","seq":7,"id":"a","key":7,"verdict":"COMMIT","result":1})",
      R"({"t":"admit","seq":7,"time_ns":1})",                                        // no cmd
      R"({"t":"admit","seq":7,"time_ns":1,"cmd":"\ud800"})",                         // lone surrogate
      R"({"t":"admit","seq":7,"time_ns":1,"cmd":"\udc00\ud800"})",
      "{\"t\":\"admit\",\"seq\":7,\"time_ns\":1,\"cmd\":\"\xc3\"}",                 // cut UTF-8
      "{\"t\":\"admit\",\"seq\":7,\"time_ns\":1,\"cmd\":\"\xed\xa0\x80\"}",         // an encoded surrogate
      "{\"t\":\"admit\",\"seq\":7,\"time_ns\":1,\"cmd\":\"\xc0\xaf\"}",             // overlong
      "{\"t\":\"admit\",\"seq\":7,\"time_ns\":1,\"cmd\":\"a\tb\"}",                 // a raw control character
      R"({"t":"admit","seq":7,"time_ns":1,"cmd":1e400})",                           // a double that overflows
      R"({"t":"admit","seq":7,"time_ns":1,"cmd":[-1.5E+309]})",
      "{\"t\":\"admit\",\"seq\":7,\"time_ns\":1,\"cmd\":" + std::string(400, '9') + "}",
      R"({"t":"admit","seq":7,"time_ns":1,"cmd":[1,]})",
      R"({"t":"admit","seq":7,"time_ns":1,"cmd":tru})",
      R"({"t":"admit","seq":7,"time_ns":1,"cmd":{}} x)",
      R"({"t":"admit","seq":7,"time_ns":1,"cmd":{"a" 1}})",
      "{\"t\":\"admit\",\"seq\":7,\"time_ns\":1,\"cmd\":" + std::string(200, '[') + std::string(200, ']') + "}",
      R"({"t":7})",
      R"({"t":"start","seq":"x"})",
      R"(["t","admit"])",
      "\xef\xbb\xbf{\"t\":\"start\"}",  // a byte-order mark (the parse skips it; the skim leaves it to the parse)
  };
  for (const auto& body : cases) {
    EXPECT_FALSE(PeekJournalRecord(body).has_value()) << body;
    ExpectPeekAgrees(body);
  }
}

// Bytes changed, dropped and inserted at random in records nvsd writes
// (seeded: the same cases every run): wherever the skim vouches for a
// record, the parse reads it, and the same.
TEST(PeekJournalRecord, NeverDisagreesWithTheParseOnChangedRecords) {
  const std::string seeds[] = {
      R"({"client":"00ab","cmd":{"op":"label","labels":[{"index":3,"text":"Cam \"B\" ü"}]},"fingerprint":"f","id":"r-1","seq":7,"t":"admit","time_ns":17})",
      R"({"id":"r-1","result":{"changed":[],"ok":true},"result_digest":"0011","seq":7,"t":"verdict","verdict":"COMMIT"})",
      R"({"fingerprint":"ab","id":"r-2","reason":"both\ncrashed","report":"q-1","seq":8,"t":"verdict","verdict":"POISON"})",
  };
  const std::string alphabet = "{}[]\":,\\/ u0123456789abcdefEe.-+tnlr\x7f\xc3\xbc\xed\xa0\xf0\x9f\x98\x80";
  std::uint64_t state = 0x9e3779b97f4a7c15ull;
  const auto next = [&] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  int vouched = 0;
  for (int i = 0; i < 60000; ++i) {
    std::string body = seeds[next() % std::size(seeds)];
    const int edits = 1 + static_cast<int>(next() % 3);
    for (int e = 0; e < edits && !body.empty(); ++e) {
      const std::size_t at = next() % body.size();
      switch (next() % 3) {
        case 0: body[at] = alphabet[next() % alphabet.size()]; break;
        case 1: body.erase(at, 1); break;
        default: body.insert(at, 1, alphabet[next() % alphabet.size()]); break;
      }
    }
    vouched += PeekJournalRecord(body).has_value() ? 1 : 0;
    ExpectPeekAgrees(body);
    if (::testing::Test::HasFailure()) break;
  }
  EXPECT_GT(vouched, 1000) << "the cases should include records the skim reads";
}

TEST(ReplyOfVerdict, IsWhatTheClientWasTold) {
  const auto commit = ReplyOfVerdict(ParseJournalRecord(R"({"t":"verdict","seq":7,"id":"r","verdict":"COMMIT","result":{"ok":true}})").value());
  ASSERT_TRUE(commit);
  EXPECT_EQ(commit->status, protocol::ClientStatus::kCommitted);
  EXPECT_EQ(commit->seq, 7u);
  EXPECT_EQ(commit->result, R"({"ok":true})");
  const auto expired = ReplyOfVerdict(ParseJournalRecord(R"({"t":"verdict","seq":8,"id":"r","verdict":"EXPIRED","reason":"late"})").value());
  ASSERT_TRUE(expired);
  EXPECT_EQ(expired->status, protocol::ClientStatus::kRejected);
  EXPECT_EQ(expired->code, "expired");
  EXPECT_FALSE(ReplyOfVerdict(ParseJournalRecord(R"({"t":"verdict","seq":9,"id":"r","verdict":"ABANDONED"})").value()));
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
  std::ofstream(JournalSegmentPath(dir, 10), std::ios::binary) << JournalOf({"{c}"});
  std::ofstream(JournalSegmentPath(dir, 2), std::ios::binary) << JournalOf({"{a}", "{b}"});
  std::ofstream(dir / "notes.txt") << "not a segment";
  const std::string torn = JournalOf({"{d}", "{e}"});
  std::ofstream(JournalSegmentPath(dir, 11), std::ios::binary) << torn.substr(0, torn.size() - 1);
  for (const fs::path& where : {dir_, dir}) {
    auto read = ReadJournal(where);
    ASSERT_TRUE(read.ok()) << read.status().message();
    EXPECT_EQ(read.value().records, (std::vector<std::string>{"{a}", "{b}", "{c}", "{d}"}));
    EXPECT_EQ(read.value().files.size(), 3u);
    ASSERT_EQ(read.value().damage.size(), 1u);
    EXPECT_NE(read.value().damage[0].find("000000000011.nvj"), std::string::npos) << read.value().damage[0];
  }
  auto one = ReadJournal(JournalSegmentPath(dir, 2));
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one.value().records, (std::vector<std::string>{"{a}", "{b}"}));
  EXPECT_FALSE(ReadJournal(dir_ / "nothing-here").ok());
  fs::create_directories(dir_ / "empty");
  EXPECT_FALSE(ReadJournal(dir_ / "empty").ok());
}

}  // namespace
}  // namespace nvs::supervisor
