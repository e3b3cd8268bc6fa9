// Blame attribution as a table: each row is what was outstanding at a
// failed variant, the failure, and the outcome each pending vote gets.
#include "nvs/core/blame.h"

#include <gtest/gtest.h>

#include <sstream>

namespace nvs::supervisor {
namespace {

using voter::OutcomeKind;

// A request, in a word:
//   V  a vote that reached the process, undecided     Vd  the same, its command decided
//   Vx a vote sent after the process was seen dead    Vh  a vote held back, never sent
//   Va a vote whose outcome at this variant is in     O   a request that is not a vote
std::vector<OutstandingRequest> Parse(const std::string& words) {
  std::vector<OutstandingRequest> out;
  std::istringstream in(words);
  for (std::string w; in >> w;) {
    OutstandingRequest r;
    r.vote = w[0] == 'V';
    if (w == "Vd") r.decided = true;
    if (w == "Vx") r.delivered = false;
    if (w == "Vh") r.sent = false;
    if (w == "Va") r.pending = false;
    out.push_back(r);
  }
  return out;
}

// The outcome of each pending vote, in a word: C crashed (the head), Cq
// crashed with it queued, H hung, P protocol error, X excluded with the
// reason given in brackets: X(held), X(dead), X(earlier).
std::string Describe(const std::vector<Attribution>& attributions) {
  std::string out;
  for (const auto& a : attributions) {
    if (!out.empty()) out += " ";
    out += std::to_string(a.index) + ":";
    if (a.blamed) {
      out += a.kind == OutcomeKind::kCrashed ? "C" : a.kind == OutcomeKind::kHung ? "H" : "P";
      if (a.queued) out += "q";
    } else {
      EXPECT_EQ(a.kind, OutcomeKind::kExcluded);
      out += a.detail.rfind("not delivered: held", 0) == 0       ? "X(held)"
             : a.detail.rfind("not delivered: its process", 0) == 0 ? "X(dead)"
             : a.detail.rfind("taken out for an earlier", 0) == 0   ? "X(earlier)"
                                                                     : "X(?)";
    }
  }
  return out;
}

struct Row {
  const char* outstanding;
  std::optional<OutcomeKind> blame;
  const char* expected;
};

TEST(Blame, TheTable) {
  const Row rows[] = {
      // A crash on the head vote: the head is to blame, and so is every
      // undecided vote queued behind it (its reply may have died with it).
      {"V", OutcomeKind::kCrashed, "0:C"},
      {"V V V", OutcomeKind::kCrashed, "0:C 1:Cq 2:Cq"},
      {"V Vd V", OutcomeKind::kCrashed, "0:C 1:X(earlier) 2:Cq"},
      // A hang (or a protocol error) blames the head alone.
      {"V V", OutcomeKind::kHung, "0:H 1:X(earlier)"},
      {"V V", OutcomeKind::kProtocolError, "0:P 1:X(earlier)"},
      // A head that is not a vote blames no command.
      {"O V V", OutcomeKind::kCrashed, "1:X(earlier) 2:X(earlier)"},
      // Nothing blamed (nvsd stopped it): every pending vote is excluded.
      {"V V", std::nullopt, "0:X(earlier) 1:X(earlier)"},
      // Sent after the process was seen dead, or held back: it never got it.
      {"Vx", OutcomeKind::kCrashed, "0:X(dead)"},
      {"V Vx", OutcomeKind::kCrashed, "0:C 1:X(dead)"},
      {"O Vh Vh", OutcomeKind::kHung, "1:X(held) 2:X(held)"},
      {"V Vh", OutcomeKind::kCrashed, "0:C 1:X(held)"},
      // A vote already answered here keeps its outcome; the head is still
      // the head (its outcome in: the next one is only queued).
      {"Va V", OutcomeKind::kCrashed, "1:Cq"},
      {"Va V", OutcomeKind::kHung, "1:X(earlier)"},
      {"", OutcomeKind::kCrashed, ""},
  };
  for (const Row& row : rows) {
    EXPECT_EQ(Describe(AttributeBlame(Parse(row.outstanding), row.blame, "killed by SIGSEGV")), row.expected)
        << "outstanding: [" << row.outstanding << "]";
  }
}

TEST(Blame, TheDetailSaysWhatHappened) {
  const auto a = AttributeBlame(Parse("V V Vx"), OutcomeKind::kCrashed, "killed by SIGSEGV");
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a[0].detail, "killed by SIGSEGV");
  EXPECT_EQ(a[1].detail, "killed by SIGSEGV (with it queued)");
  EXPECT_EQ(a[2].detail, "not delivered: its process had already exited (killed by SIGSEGV)");
}

}  // namespace
}  // namespace nvs::supervisor
