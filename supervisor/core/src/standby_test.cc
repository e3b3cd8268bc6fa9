// Who takes commands in standby mode, as a table.
#include "nvs/core/standby.h"

#include <gtest/gtest.h>

#include <sstream>

namespace nvs::supervisor {
namespace {

// Members in words, in configuration order: NAME (votes), NAME- (does not
// vote), NAME! (its process exited, death not judged): "a b- c!".
std::vector<StandbyMember> Parse(const std::string& words) {
  std::vector<StandbyMember> out;
  std::istringstream in(words);
  for (std::string w; in >> w;) {
    StandbyMember m;
    const char last = w.back();
    m.votes = last != '-' && last != '!';
    m.exiting = last == '!';
    m.name = m.votes ? w : w.substr(0, w.size() - 1);
    out.push_back(m);
  }
  return out;
}

std::string Describe(const ActiveChoice& c) {
  switch (c.kind) {
    case ActiveChoice::Kind::kKeep: return "keep " + c.name;
    case ActiveChoice::Kind::kWait: return "wait";
    case ActiveChoice::Kind::kPromote: return "promote " + c.name;
    case ActiveChoice::Kind::kNone: return "none";
  }
  return "?";
}

TEST(Standby, WhoTakesCommands) {
  const struct {
    const char* current;
    const char* members;
    const char* expected;
  } rows[] = {
      {"a", "a b", "keep a"},
      {"b", "a b", "keep b"},                 // no preemption here (config `preempt` is the round's business)
      {"a", "a- b c", "promote b"},           // the first voting backup, in configuration order
      {"a", "a- b- c", "promote c"},
      {"a", "a! b", "wait"},                  // its death is judged first
      {"a", "a- b- c-", "none"},
      {"", "a- b", "promote b"},              // no active yet: the first that votes
      {"gone", "a b", "promote a"},           // the active is not a member any more
      {"b", "a b! c", "wait"},
  };
  for (const auto& row : rows) {
    EXPECT_EQ(Describe(ChooseActive(row.current, Parse(row.members))), row.expected)
        << "active " << row.current << ", members " << row.members;
  }
}

}  // namespace
}  // namespace nvs::supervisor
