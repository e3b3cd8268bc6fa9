// A sync round's verdict on the state digests (ARCHITECTURE.md §5): every
// participant reported the digest of its state; which state is right, who
// gives it to those who lack it, and who is restarted. Pure: the members'
// digests in, the decision out (sync_round_test.cc has the rules as a table).
//
// - The digest held by the most *trusted* participants wins (trusted: they
//   voted until now, or were rolled back to the checkpoint); ties between
//   digests go to the one more of the voting members hold, then to the
//   smaller digest. Only when nobody is trusted (at start-up) do fresh
//   variants count.
// - No strict majority of the pool for the winner (with more than one
//   digest) is a tie: nobody can tell which state is right.
// - The donor is a member holding the chosen digest, a voting one if any.
// - A voting member holding another digest is restarted (its state is
//   wrong while it voted); any other member holding another digest receives
//   the donor's state.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace nvs::supervisor {

struct RoundMember {
  std::string name;
  std::string digest;
  bool trusted = false;
  bool voting = false;
};

struct RoundDecision {
  std::string chosen;                   // the digest that wins
  bool tie = false;                     // no strict majority for it in the pool
  std::vector<std::string> pool;        // who counted (the trusted members, or all at start-up)
  std::size_t digests = 0;              // distinct digests in the pool
  std::string donor;                    // holds the chosen digest ("" if nobody: cannot happen with members)
  std::vector<std::string> restart;     // voting members with another digest
  std::vector<std::string> receivers;   // other members with another digest: restored from the donor
};

// `members` in the order they are considered (by name).
RoundDecision DecideRound(const std::vector<RoundMember>& members);

}  // namespace nvs::supervisor
