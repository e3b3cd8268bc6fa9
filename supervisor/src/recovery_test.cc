#include "recovery.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

namespace nvs::supervisor {
namespace {

namespace fs = std::filesystem;

std::string Admit(std::uint64_t seq, const std::string& id = "") {
  return R"({"t":"admit","seq":)" + std::to_string(seq) + R"(,"time_ns":)" + std::to_string(seq * 10) + R"(,"id":")" +
         (id.empty() ? "r-" + std::to_string(seq) : id) + R"(","client":"00ab","fingerprint":"f)" +
         std::to_string(seq) + R"(","cmd":{"n":)" + std::to_string(seq) + "}}";
}
std::string Commit(std::uint64_t seq, const std::string& id = "") {
  return R"({"t":"verdict","seq":)" + std::to_string(seq) + R"(,"id":")" +
         (id.empty() ? "r-" + std::to_string(seq) : id) + R"(","verdict":"COMMIT","result":{"ok":true,"n":)" +
         std::to_string(seq) + "}}";
}
std::string Verdict(std::uint64_t seq, const std::string& verdict) {
  return R"({"t":"verdict","seq":)" + std::to_string(seq) + R"(,"id":"r-)" + std::to_string(seq) + R"(","verdict":")" +
         verdict + R"(","reason":"why"})";
}

class Recovery : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/nvs-recovery-unit-XXXXXX";
    root_ = mkdtemp(pattern);
    fs::create_directories(root_ / "journal");
    dir_ = std::move(PosixStateDir::Open(root_).value());
  }
  void TearDown() override { fs::remove_all(root_); }

  void Segment(std::uint64_t index, const std::vector<std::string>& records) {
    std::string bytes(kJournalMagic);
    for (const auto& r : records) bytes += FrameRecord(r);
    std::ofstream(JournalSegmentPath(root_ / "journal", index), std::ios::binary) << bytes;
  }
  // Commands first..last, each admitted and committed.
  static std::vector<std::string> Commands(std::uint64_t first, std::uint64_t last) {
    std::vector<std::string> out;
    for (auto seq = first; seq <= last; ++seq) {
      out.push_back(Admit(seq));
      out.push_back(Commit(seq));
    }
    return out;
  }
  void WriteCheckpoint(const std::string& name, std::uint64_t seq) {
    std::ofstream(root_ / name) << FormatCheckpoint(Checkpoint{seq, R"({"at":)" + std::to_string(seq) + "}",
                                                               "digest-" + std::to_string(seq), seq});
  }
  void FlipByte(const fs::path& file, std::size_t at) {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(at));
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x04);
    f.seekp(static_cast<std::streamoff>(at));
    f.write(&c, 1);
  }
  Result<Recovered> Recover(std::size_t remembered = 100'000) { return RecoverStateDir(*dir_, {remembered}); }

  fs::path root_;
  std::unique_ptr<PosixStateDir> dir_;
};

TEST_F(Recovery, TheCheckpointTheCommitsAfterItAndTheRepliesByRequestId) {
  Segment(1, Commands(1, 8));
  WriteCheckpoint("checkpoint.json", 5);
  auto r = Recover();
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_TRUE(r.value().checkpoint);
  EXPECT_EQ(r.value().checkpoint->seq, 5u);
  ASSERT_EQ(r.value().tail.size(), 3u);
  EXPECT_EQ(r.value().tail.front().seq, 6u);
  EXPECT_EQ(r.value().tail.front().payload, R"({"n":6})");
  EXPECT_EQ(r.value().last_seq, 8u);
  EXPECT_EQ(r.value().commits, 8u);
  ASSERT_EQ(r.value().remembered.size(), 8u);
  EXPECT_EQ(r.value().remembered.back().first, "r-8");
  EXPECT_EQ(r.value().remembered.back().second.Get()->seq, 8u);
  EXPECT_TRUE(r.value().suspects.empty());
  EXPECT_EQ(r.value().current, 1u);
}

// An outside test changed one digit of checkpoint.json: nvsd started on a
// silently different state. It has a checksum now, and the previous
// checkpoint is kept to fall back to, with a longer replay.
TEST_F(Recovery, ADamagedCheckpointFallsBackToThePreviousOne) {
  Segment(1, Commands(1, 8));
  WriteCheckpoint("checkpoint.prev.json", 3);
  WriteCheckpoint("checkpoint.json", 6);
  const std::string text = [&] {
    std::ifstream in(root_ / "checkpoint.json");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  FlipByte(root_ / "checkpoint.json", text.find(R"({"at":6})") + 6);  // 6 -> 2: another state
  auto r = Recover();
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_TRUE(r.value().checkpoint);
  EXPECT_EQ(r.value().checkpoint->seq, 3u);
  EXPECT_EQ(r.value().tail.size(), 5u) << "commits 4 to 8 replayed";
  ASSERT_EQ(r.value().warnings.size(), 1u);
  EXPECT_NE(r.value().warnings[0].find("checkpoint.json"), std::string::npos) << r.value().warnings[0];
  EXPECT_NE(r.value().warnings[0].find("checksum"), std::string::npos) << r.value().warnings[0];
}

// Moving checkpoint.json away (as an error message once advised) made nvsd
// refuse to start although the whole journal was there.
TEST_F(Recovery, WithoutACheckpointTheWholeJournalIsReplayed) {
  Segment(1, Commands(1, 4));
  Segment(2, Commands(5, 8));
  auto r = Recover();
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_FALSE(r.value().checkpoint);
  ASSERT_EQ(r.value().tail.size(), 8u);
  EXPECT_EQ(r.value().tail.front().seq, 1u);
  EXPECT_EQ(r.value().current, 2u);
  ASSERT_EQ(r.value().closed.size(), 1u);
  EXPECT_EQ(r.value().closed[0].max_seq, 4u);
  ASSERT_FALSE(r.value().warnings.empty());
  EXPECT_NE(r.value().warnings[0].find("replaying the whole journal"), std::string::npos);
}

TEST_F(Recovery, WithoutACheckpointAPrunedJournalIsRefusedWithTheWayOut) {
  Segment(2, Commands(5, 8));
  auto r = Recover();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("000000000002.nvj"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("nvs journal repair"), std::string::npos) << r.status().message();
}

// An outside test flipped one byte of a closed segment: its records were
// skipped and their request ids forgotten, so acknowledged commands were
// applied again when retried. Damage anywhere in a closed segment now stops
// recovery, naming the file and the offset.
TEST_F(Recovery, DamageAnywhereInAClosedSegmentStopsRecoveryNamingFileAndOffset) {
  const auto records = Commands(1, 3);
  std::string bytes(kJournalMagic);
  for (const auto& r : records) bytes += FrameRecord(r);
  for (std::size_t at = kJournalMagic.size(); at < bytes.size(); at += 7) {
    Segment(1, records);
    Segment(2, Commands(4, 5));
    WriteCheckpoint("checkpoint.json", 0);
    FlipByte(JournalSegmentPath(root_ / "journal", 1), at);
    auto r = Recover();
    ASSERT_FALSE(r.ok()) << "flip at " << at;
    EXPECT_NE(r.status().message().find("000000000001.nvj: damaged at offset"), std::string::npos)
        << r.status().message();
  }
}

// ... and in the newest segment, damage is not taken for a torn tail (an
// outside test lost 25 and 43 acknowledged commits, cut at warn level).
TEST_F(Recovery, DamageInTheNewestSegmentStopsRecoveryATornTailIsCut) {
  const auto records = Commands(1, 4);
  std::string bytes(kJournalMagic);
  for (const auto& r : records) bytes += FrameRecord(r);
  Segment(1, records);
  FlipByte(JournalSegmentPath(root_ / "journal", 1), kJournalMagic.size() + 12);
  auto damaged = Recover();
  ASSERT_FALSE(damaged.ok());
  EXPECT_NE(damaged.status().message().find("damage, not a torn write"), std::string::npos)
      << damaged.status().message();

  std::ofstream(JournalSegmentPath(root_ / "journal", 1), std::ios::binary)
      << bytes + FrameRecord(Admit(5)).substr(0, 11);
  auto torn = Recover();
  ASSERT_TRUE(torn.ok()) << torn.status().message();
  EXPECT_FALSE(torn.value().torn.empty());
  EXPECT_EQ(torn.value().current_good_bytes, bytes.size());
  EXPECT_EQ(torn.value().current_records, 8u);
  EXPECT_EQ(torn.value().tail.size(), 4u);
}

// Every bit of the newest segment, one at a time (a changed header, a
// changed checksum, a changed body): never a start on fewer records, never
// a torn tail. (A flip in the magic line makes it "not a journal".)
TEST_F(Recovery, ABitFlippedAnywhereInTheNewestSegmentIsDamageNeverATornTail) {
  const auto records = Commands(1, 3);
  std::string bytes(kJournalMagic);
  for (const auto& r : records) bytes += FrameRecord(r);
  int flips = 0;
  for (std::size_t at = 0; at < bytes.size(); ++at) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string flipped = bytes;
      flipped[at] = static_cast<char>(flipped[at] ^ (1 << bit));
      std::ofstream(JournalSegmentPath(root_ / "journal", 1), std::ios::binary | std::ios::trunc) << flipped;
      auto r = Recover();
      ++flips;
      ASSERT_FALSE(r.ok()) << "bit " << bit << " of byte " << at << " flipped: started on "
                           << r.value().current_records << " records";
      EXPECT_NE(r.status().message().find("nvs journal"), std::string::npos) << r.status().message();
    }
  }
  EXPECT_EQ(flips, static_cast<int>(bytes.size()) * 8);
}

TEST_F(Recovery, AdmittedButUndecidedCommandsAreSuspects) {
  auto records = Commands(1, 3);
  records.push_back(Admit(4));
  records.push_back(Admit(5));
  records.push_back(Verdict(5, "ABANDONED"));  // retested at an earlier start, found harmless
  records.push_back(Admit(6));
  records.push_back(Verdict(6, "EXPIRED"));
  records.push_back(Admit(7));
  Segment(1, records);
  WriteCheckpoint("checkpoint.json", 2);
  auto r = Recover();
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r.value().suspects.size(), 2u);
  EXPECT_EQ(r.value().suspects[0].seq, 4u);
  EXPECT_EQ(r.value().suspects[0].request_id, "r-4");
  EXPECT_EQ(r.value().suspects[0].payload, R"({"n":4})");
  EXPECT_EQ(r.value().suspects[1].seq, 7u);
  EXPECT_EQ(r.value().tail.size(), 1u) << "only seq 3 is committed after the checkpoint";
  EXPECT_EQ(r.value().last_seq, 7u);
  bool abandoned_remembered = false;
  bool expired_remembered = false;
  for (const auto& [id, reply] : r.value().remembered) {
    abandoned_remembered = abandoned_remembered || id == "r-5";
    expired_remembered = expired_remembered || (id == "r-6" && reply.Get()->code == "expired");
  }
  EXPECT_FALSE(abandoned_remembered) << "an abandoned command's retry runs it";
  EXPECT_TRUE(expired_remembered);
}

// A `mark` says the admits undecided before it were answered `not carried
// out` (if at all): a start abandons them rather than commit them. One
// with a `seq` says so of that admit only (a poison answered `unavailable`
// for want of its report, while other suspects of a retest at start may
// have been answered `committed`). A review found the mark for one poison
// taken for all.
TEST_F(Recovery, AMarkWithASeqIsAboutThatAdmitOnly) {
  auto records = Commands(1, 2);
  records.push_back(Admit(3));
  records.push_back(Admit(4));
  records.push_back(R"({"t":"mark","time_ns":40,"note":"answered unavailable","seq":3})");
  records.push_back(Admit(5));
  records.push_back(R"({"t":"mark","time_ns":50,"note":"the journal can be written again"})");
  records.push_back(Admit(6));
  Segment(1, records);
  WriteCheckpoint("checkpoint.json", 2);
  auto r = Recover();
  ASSERT_TRUE(r.ok()) << r.status().message();
  std::map<std::uint64_t, bool> before_mark;
  for (const auto& s : r.value().suspects) before_mark[s.seq] = s.before_mark;
  ASSERT_EQ(before_mark.size(), 4u);
  EXPECT_TRUE(before_mark[3]) << "the mark names it";
  EXPECT_TRUE(before_mark[4]) << "the mark without a seq, later, covers it";
  EXPECT_TRUE(before_mark[5]);
  EXPECT_FALSE(before_mark[6]) << "admitted after every mark";
  // And without the later mark, 4 is not covered by the mark for 3.
  records.erase(records.begin() + 8);  // (the mark without a seq)
  Segment(1, records);
  r = Recover();
  ASSERT_TRUE(r.ok()) << r.status().message();
  for (const auto& s : r.value().suspects) before_mark[s.seq] = s.before_mark;
  EXPECT_TRUE(before_mark[3]);
  EXPECT_FALSE(before_mark[4]) << "a mark for seq 3 taken for every undecided admit";
  EXPECT_FALSE(before_mark[5]);
}

// Restart time must not grow with the history: only the segments after the
// checkpoint, and enough for the remembered replies, are read.
TEST_F(Recovery, ReadsOnlyTheSegmentsItNeeds) {
  for (std::uint64_t s = 1; s <= 10; ++s) Segment(s, Commands((s - 1) * 100 + 1, s * 100));
  WriteCheckpoint("checkpoint.json", 950);
  auto r = Recover(/*remembered=*/150);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r.value().segments_read, 2u);
  EXPECT_EQ(r.value().tail.size(), 50u);
  EXPECT_EQ(r.value().remembered.size(), 150u);
  EXPECT_EQ(r.value().remembered.front().first, "r-851");
  EXPECT_EQ(r.value().last_seq, 1000u);
  EXPECT_EQ(r.value().commits, 1000u);
  ASSERT_EQ(r.value().closed.size(), 9u);
  EXPECT_LE(r.value().closed.front().max_seq, 900u) << "an upper bound for what was not read";
  EXPECT_EQ(r.value().closed.back().max_seq, 900u);
}

// Within a segment too: read from its newest record back, reading stops
// once the admits are covered by the checkpoint and enough commands are
// remembered (a restart after a million commands skimmed a whole 64 MiB
// segment for its last few thousand replies).
TEST_F(Recovery, ReadsASegmentOnlyAsFarBackAsItNeeds) {
  Segment(1, Commands(1, 900));
  Segment(2, Commands(901, 1000));
  WriteCheckpoint("checkpoint.json", 950);
  auto r = Recover(/*remembered=*/150);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r.value().segments_read, 2u);
  EXPECT_EQ(r.value().records_read, 200u + 99u) << "segment 1 is read back to command 851's verdict";
  EXPECT_EQ(r.value().tail.size(), 50u);
  ASSERT_EQ(r.value().remembered.size(), 150u);
  EXPECT_EQ(r.value().remembered.front().first, "r-851");
  EXPECT_EQ(r.value().remembered.back().first, "r-1000");
  for (std::size_t i = 0; i < r.value().remembered.size(); ++i) {
    ASSERT_EQ(r.value().remembered[i].first, "r-" + std::to_string(851 + i)) << "in journal order";
    EXPECT_EQ(r.value().remembered[i].second.Get()->seq, 851 + i);
  }
  EXPECT_EQ(r.value().last_seq, 1000u);
  EXPECT_EQ(r.value().commits, 1000u);
  ASSERT_EQ(r.value().closed.size(), 1u);
  EXPECT_GE(r.value().closed[0].max_seq, 900u) << "an upper bound";
}

// Reading stops at a covered admit, never before a command after the
// checkpoint: an old checkpoint (checkpoints failing for a while) leaves
// commits and an undecided admit deep in an older segment, all found.
TEST_F(Recovery, AnOldCheckpointStillFindsEveryCommandAfterIt) {
  auto first = Commands(1, 500);
  first.push_back(Admit(501));  // undecided: a suspect
  Segment(1, first);
  Segment(2, Commands(502, 600));
  WriteCheckpoint("checkpoint.json", 300);
  auto r = Recover(/*remembered=*/10);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r.value().tail.size(), 299u) << "301-500 and 502-600";
  EXPECT_EQ(r.value().tail.front().seq, 301u);
  EXPECT_EQ(r.value().tail.back().seq, 600u);
  ASSERT_EQ(r.value().suspects.size(), 1u);
  EXPECT_EQ(r.value().suspects[0].seq, 501u);
  EXPECT_EQ(r.value().commits, 599u);
  ASSERT_EQ(r.value().remembered.size(), 10u);
  EXPECT_EQ(r.value().remembered.front().first, "r-591");
  EXPECT_LT(r.value().records_read, 2u * 600 - 100) << "not read before command ~300 of segment 1";
}

// The last remembered_requests request ids are remembered, counted in
// replies: abandoned and id-less commands leave none and do not count (a
// review: with 50 abandoned suspects among the last N commands, only N-50
// ids would have come back).
TEST_F(Recovery, TheLastRequestIdsAreCountedInRepliesNotInCommands) {
  auto records = Commands(1, 20);
  for (std::uint64_t seq = 21; seq <= 25; ++seq) {
    records.push_back(Admit(seq));
    records.push_back(Verdict(seq, "ABANDONED"));
  }
  for (std::uint64_t seq = 26; seq <= 30; ++seq) {
    records.push_back(Admit(seq));
    records.push_back(R"({"t":"verdict","seq":)" + std::to_string(seq) + R"(,"verdict":"COMMIT","result":{"ok":true}})");
  }
  Segment(1, records);
  WriteCheckpoint("checkpoint.json", 30);
  auto r = Recover(/*remembered=*/10);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r.value().remembered.size(), 10u);
  EXPECT_EQ(r.value().remembered.front().first, "r-11");
  EXPECT_EQ(r.value().remembered.back().first, "r-20");
}

// A `mark` without a seq (the end of storage trouble) says nothing of the
// seqs its segment holds. A review found it taken for seq 0: a segment
// holding one seemed to reach back to any checkpoint, and reading stopped
// there, leaving the commits of the segment before it out of the tail.
TEST_F(Recovery, AMarkWithoutASeqDoesNotStopReadingBeforeTheCheckpoint) {
  Segment(1, Commands(1, 10));
  auto newest = std::vector<std::string>{R"({"t":"mark","time_ns":5,"note":"the journal can be written again"})"};
  for (const auto& record : Commands(11, 12)) newest.push_back(record);
  Segment(2, newest);
  WriteCheckpoint("checkpoint.json", 5);
  auto r = Recover(/*remembered=*/0);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r.value().segments_read, 2u);
  ASSERT_EQ(r.value().tail.size(), 7u) << "commits 6 to 12";
  EXPECT_EQ(r.value().tail.front().seq, 6u);
  EXPECT_EQ(r.value().commits, 12u);
  ASSERT_EQ(r.value().closed.size(), 1u);
  EXPECT_EQ(r.value().closed[0].max_seq, 10u);
}

// Records nvsd does not write are reported with their place, the first
// ones first, though a segment is read from its end.
TEST_F(Recovery, SkippedRecordsAreReportedFirstOnesFirst) {
  auto records = Commands(1, 3);
  for (int i = 0; i < 20; ++i) records.push_back(R"({"t":"admit","seq":"x)" + std::to_string(i) + R"("})");
  records.push_back(Admit(4));
  records.push_back(Commit(4));
  Segment(1, records);
  auto r = Recover();
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r.value().skipped, 20u);
  ASSERT_EQ(r.value().skipped_examples.size(), 16u);
  EXPECT_NE(r.value().skipped_examples.front().find("record 7:"), std::string::npos) << r.value().skipped_examples.front();
  EXPECT_NE(r.value().skipped_examples.back().find("record 22:"), std::string::npos) << r.value().skipped_examples.back();
  EXPECT_EQ(r.value().tail.size(), 4u);
}

TEST_F(Recovery, ACheckpointOfTheFirstFormatIsReadAndSaidUnchecked) {
  Segment(1, Commands(1, 4));
  std::ofstream(root_ / "checkpoint.json") << R"({"seq":2,"digest":"d","state":{"x":1}})" << "\n";
  auto r = Recover();
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r.value().checkpoint->seq, 2u);
  ASSERT_EQ(r.value().warnings.size(), 1u);
  EXPECT_NE(r.value().warnings[0].find("no checksum"), std::string::npos);
}

TEST(Checkpoint, FormatsAndReadsBackAndAnyChangedByteIsCaught) {
  const Checkpoint c{42, R"({"routes":[3,1,2],"labels":["a"]})", "0123456789abcdef", 40};
  const std::string text = FormatCheckpoint(c);
  auto read = ParseCheckpoint(text);
  ASSERT_TRUE(read.ok()) << read.status().message();
  EXPECT_EQ(read.value().seq, 42u);
  EXPECT_EQ(read.value().state, c.state);
  EXPECT_EQ(read.value().digest, c.digest);
  EXPECT_EQ(read.value().commits, 40u);
  for (std::size_t at = 0; at + 1 < text.size(); ++at) {  // (the final newline is not covered)
    std::string bad = text;
    bad[at] = static_cast<char>(bad[at] ^ 0x01);
    auto changed = ParseCheckpoint(bad);
    EXPECT_FALSE(changed.ok() && changed.value().state == c.state && changed.value().seq == c.seq &&
                 changed.value().digest == c.digest && changed.value().commits == c.commits)
        << "a changed byte at " << at << " went unnoticed";
    if (changed.ok()) ADD_FAILURE() << "a changed byte at " << at << " was read as a good checkpoint";
  }
}

}  // namespace
}  // namespace nvs::supervisor
