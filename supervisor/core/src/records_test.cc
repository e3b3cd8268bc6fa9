// The journal's record schema: what EncodeJournalRecord writes,
// ParseJournalRecord reads back to the same members (nvsd writes, recovery
// and nvs replay read, through these two functions only).
#include <gtest/gtest.h>

#include "nvs/core/records.h"

namespace nvs::supervisor {
namespace {

JournalRecord RoundTrip(const JournalRecord& record) {
  const std::string text = EncodeJournalRecord(record);
  auto parsed = ParseJournalRecord(text);
  EXPECT_TRUE(parsed.ok()) << text << ": " << parsed.status().message();
  return parsed.ok() ? parsed.value() : JournalRecord{};
}

// A COMMIT verdict record.
JournalRecord Commit(std::uint64_t seq, const std::string& id, const std::string& result, const std::string& key = "") {
  JournalRecord r;
  r.type = "verdict";
  r.seq = seq;
  r.id = id;
  r.key = key;
  r.verdict = "COMMIT";
  r.result = result;
  return r;
}

TEST(JournalRecords, AnAdmitReadsBackAsWritten) {
  JournalRecord admit;
  admit.type = "admit";
  admit.seq = 42;
  admit.time_ns = 1'700'000'000'000'000'000;
  admit.id = "r-42";
  admit.client = "00abcdef";
  admit.key = "alice";
  admit.fingerprint = "0123456789abcdef";
  admit.cmd = R"({"op":"route","routes":[{"input":1,"output":2}]})";
  const JournalRecord back = RoundTrip(admit);
  EXPECT_EQ(back.type, "admit");
  EXPECT_EQ(back.seq, 42u);
  EXPECT_EQ(back.time_ns, admit.time_ns);
  EXPECT_EQ(back.id, "r-42");
  EXPECT_EQ(back.client, "00abcdef");
  EXPECT_EQ(back.key, "alice");
  EXPECT_EQ(back.fingerprint, admit.fingerprint);
  EXPECT_EQ(back.cmd, admit.cmd);
}

TEST(JournalRecords, EachVerdictKindReadsBackWithItsMembers) {
  const JournalRecord commit = Commit(7, "r-7", R"({"changed":[],"ok":true})");
  JournalRecord back = RoundTrip(commit);
  EXPECT_EQ(back.verdict, "COMMIT");
  EXPECT_EQ(back.result, commit.result);
  EXPECT_EQ(back.key, "") << "a plain endpoint's record has no key";
  EXPECT_NE(EncodeJournalRecord(commit).find("\"result_digest\""), std::string::npos);

  JournalRecord poison = commit;
  poison.verdict = "POISON";
  poison.result.clear();
  poison.report = "q-7-0123456789abcdef";
  poison.fingerprint = "0123456789abcdef";
  poison.reason = "crashed router-a and router-b";
  back = RoundTrip(poison);
  EXPECT_EQ(back.report, poison.report);
  EXPECT_EQ(back.fingerprint, poison.fingerprint);
  EXPECT_EQ(back.reason, poison.reason);

  for (const char* kind : {"EXPIRED", "ABANDONED"}) {
    JournalRecord other = commit;
    other.verdict = kind;
    other.result.clear();
    other.reason = "why";
    back = RoundTrip(other);
    EXPECT_EQ(back.verdict, kind);
    EXPECT_EQ(back.reason, "why");
    EXPECT_EQ(back.report, "") << kind << " names no report";
  }
}

TEST(JournalRecords, AStartKeepsTheConfigItRanWith) {
  JournalRecord start;
  start.type = "start";
  start.time_ns = 5;
  start.pid = 1234;
  start.config = R"({"variants":[{"argv":["router-a"],"name":"router-a"}]})";
  const JournalRecord back = RoundTrip(start);
  EXPECT_EQ(back.type, "start");
  EXPECT_EQ(back.pid, 1234);
  EXPECT_EQ(back.time_ns, 5);
  EXPECT_EQ(back.config, start.config);
}

// What the skim (PeekJournalRecord) vouches for, the parse reads to the
// same values: true of every record the encoder writes.
TEST(JournalRecords, TheSkimAgreesWithTheParseOnEncodedRecords) {
  const std::string text = EncodeJournalRecord(Commit(9, "r-9", R"({"ok":true})", "bob"));
  const auto head = PeekJournalRecord(text);
  ASSERT_TRUE(head.has_value()) << text;
  EXPECT_EQ(head->type, "verdict");
  EXPECT_EQ(head->seq, 9u);
  EXPECT_EQ(head->id, "r-9");
  EXPECT_EQ(head->key, "bob");
  EXPECT_EQ(head->verdict, "COMMIT");
}

// The skim never vouches for a record the parse refuses, of any kind (the
// fuzzer found a start record whose time_ns overflowed).
TEST(JournalRecords, TheSkimRefusesWhatTheParseRefusesOfEveryKind) {
  for (const std::string text : {
           R"({"t":"start","time_ns":179570901844674407370955161697220371587})",
           R"({"t":"mark","time_ns":-1,"note":"x"})",
           R"({"t":"mark","time_ns":1,"note":5})",
           R"({"t":"checkpoint","time_ns":1})",
       }) {
    EXPECT_FALSE(ParseJournalRecord(text).ok()) << text;
    EXPECT_FALSE(PeekJournalRecord(text).has_value()) << text;
  }
  EXPECT_TRUE(PeekJournalRecord(R"({"t":"mark","time_ns":1,"note":"the journal can be written again"})").has_value());
}

}  // namespace
}  // namespace nvs::supervisor
