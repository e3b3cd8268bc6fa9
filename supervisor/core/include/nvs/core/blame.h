// Blame attribution: when a variant fails (its process died, it hung, it
// broke the protocol), which of the requests outstanding at it count
// against which command, and how. Pure: a table in, outcomes out
// (ARCHITECTURE.md, "the core").
//
// The rules (each a row of blame_test.cc):
// - Only the request at the head of the variant's FIFO can be the one it
//   failed on. If the head is a vote that reached the process, that
//   command gets the blame (crashed, hung, ...).
// - A crash is also counted against the queued votes behind a blamed head
//   whose command is still undecided: the reply to the head may have been
//   lost in the dying process, and counting a death there can only make a
//   verdict more cautious. Other queued votes are excluded (taken out for
//   an earlier command), as is everything behind a head that is not a vote
//   (a digest or snapshot request blames no command).
// - A request sent after the process was seen dead never reached it, nor
//   did one held back (never sent): excluded, blaming nothing.
// - A vote whose outcome at this variant is already in is left alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "nvs/voter/voter.h"

namespace nvs::supervisor {

// One request outstanding at the failed variant, oldest first: its FIFO
// (sent), then what was held back behind an unanswered request.
struct OutstandingRequest {
  bool vote = false;         // a command or query it votes on (else a digest, snapshot, ping, ...)
  bool sent = true;          // false: held, never sent
  bool delivered = true;     // sent before the process was seen dead
  bool pending = true;       // vote: its outcome at this variant is not in yet (and the command is active)
  bool decided = false;      // vote: the command has its verdict already
};

struct Attribution {
  std::size_t index = 0;       // into the outstanding requests
  voter::OutcomeKind kind = voter::OutcomeKind::kExcluded;
  std::string detail;
  bool blamed = false;         // kind is the blame (evidence is kept for it)
  bool queued = false;         // blamed, but not the head: it was queued behind the one it failed on
};

// The outcomes of the pending votes among `outstanding` (others get none).
// `blame`: what the failure was (nullopt: nothing is blamed, e.g. nvsd
// stopped it); `detail`: in the failure's words.
std::vector<Attribution> AttributeBlame(const std::vector<OutstandingRequest>& outstanding,
                                        std::optional<voter::OutcomeKind> blame, const std::string& detail);

}  // namespace nvs::supervisor
