// Standby mode's one rule for who takes commands (ARCHITECTURE.md §4). Pure:
// the variants' standing in, the choice out (standby_test.cc: the table).
//
// - The active keeps its role while it votes (healthy, checked, not
//   diverged).
// - While its process's death is still being judged, nobody replaces it:
//   what it died on decides what the backup may be sent.
// - Otherwise the first voting variant, in configuration order, is
//   promoted; with none, there is no active (commands wait, then are
//   answered `unavailable`).
#pragma once

#include <string>
#include <vector>

namespace nvs::supervisor {

struct StandbyMember {
  std::string name;
  bool votes = false;    // healthy, checked, not diverged, its process not seen dead
  bool exiting = false;  // its process exited and the death is not judged yet
};

struct ActiveChoice {
  enum class Kind {
    kKeep,     // the current active goes on
    kWait,     // the current active's death is being judged: no active for now
    kPromote,  // `name` becomes the active
    kNone,     // nobody can be the active
  } kind = Kind::kNone;
  std::string name;  // kKeep, kPromote
};

// `current`: the active's name ("" if none yet); `members` in configuration order.
ActiveChoice ChooseActive(const std::string& current, const std::vector<StandbyMember>& members);

}  // namespace nvs::supervisor
