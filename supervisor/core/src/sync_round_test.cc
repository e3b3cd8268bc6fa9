// A sync round's verdict on the digests, as a table.
#include "nvs/core/sync_round.h"

#include <gtest/gtest.h>

#include <sstream>

namespace nvs::supervisor {
namespace {

// A member in a word: NAME=DIGEST, then t (trusted) and/or v (voting):
// "a=X:tv b=X:t c=Y:".
std::vector<RoundMember> Parse(const std::string& words) {
  std::vector<RoundMember> out;
  std::istringstream in(words);
  for (std::string w; in >> w;) {
    RoundMember m;
    const auto eq = w.find('=');
    const auto colon = w.find(':');
    m.name = w.substr(0, eq);
    m.digest = w.substr(eq + 1, colon - eq - 1);
    const std::string flags = w.substr(colon + 1);
    m.trusted = flags.find('t') != std::string::npos;
    m.voting = flags.find('v') != std::string::npos;
    out.push_back(m);
  }
  return out;
}

std::string Join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ",") + n;
  return out;
}

// chosen digest / tie? / donor / restarted / receivers
std::string Describe(const RoundDecision& d) {
  return d.chosen + " " + (d.tie ? "tie" : "-") + " donor=" + d.donor + " restart=" + Join(d.restart) +
         " receive=" + Join(d.receivers);
}

struct Row {
  const char* members;
  const char* expected;
};

TEST(SyncRound, TheTable) {
  const Row rows[] = {
      // Everyone agrees: nothing to do; the donor is a voting member.
      {"a=X:tv b=X:tv c=X:tv", "X - donor=a restart= receive="},
      // A fresh variant joins: it receives the voters' state.
      {"a=X:tv b=X:tv c=0:", "X - donor=a restart= receive=c"},
      // Only the trusted count: two fresh ones with one state do not outvote one voter.
      {"a=X:tv b=0: c=0:", "X - donor=a restart= receive=b,c"},
      // A voter whose state differs from the other voters' is restarted.
      {"a=X:tv b=Y:tv c=X:tv", "X - donor=a restart=b receive="},
      // Rolled back (trusted, not voting) and agreeing: a voting donor is preferred.
      {"a=X:t b=X:tv", "X - donor=b restart= receive="},
      // At start-up nobody is trusted: everyone counts.
      {"a=X: b=X: c=Y:", "X - donor=a restart= receive=c"},
      // Two trusted, two states: a tie (more voters hold Y, so Y is chosen if it stands).
      {"a=X:t b=Y:tv", "Y tie donor=b restart= receive=a"},
      // Three states among three trusted: no majority.
      {"a=X:tv b=Y:tv c=Z:tv", "X tie donor=a restart=b,c receive="},
      // Two of three trusted agree: a strict majority, no tie.
      {"a=X:t b=X:t c=Y:t", "X - donor=a restart= receive=c"},
      // A single trusted member decides alone.
      {"a=Y:tv b=X: c=X:", "Y - donor=a restart= receive=b,c"},
  };
  for (const Row& row : rows) {
    EXPECT_EQ(Describe(DecideRound(Parse(row.members))), row.expected) << "members: " << row.members;
  }
}

TEST(SyncRound, ThePoolIsTheTrustedOrEveryone) {
  EXPECT_EQ(DecideRound(Parse("a=X:t b=X: c=Y:")).pool, (std::vector<std::string>{"a"}));
  EXPECT_EQ(DecideRound(Parse("a=X: b=Y:")).pool, (std::vector<std::string>{"a", "b"}));
}

}  // namespace
}  // namespace nvs::supervisor
