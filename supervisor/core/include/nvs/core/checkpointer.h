// A periodic checkpoint in the making (ARCHITECTURE.md §5): after a commit,
// one voting variant that agreed on it is asked for its state (a snapshot)
// and the other checked variants for their state digests, all at that seq.
// Once every answer is in, the snapshot becomes the checkpoint if a strict
// majority of the answers hold its digest; those that hold another digest
// are wrong (they are restarted once idle). With no majority, nobody can
// tell, and a sync round settles who is right. Part of the core: it owns
// the pending checkpoint and says what to ask, and what was decided.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace nvs::supervisor {

class Checkpointer {
 public:
  // A checkpoint at `seq`: the snapshot of `snapshot_from`, the digests of
  // `others` (the caller sends the requests).
  void Start(std::uint64_t seq, const std::string& snapshot_from, const std::vector<std::string>& others);
  bool pending() const { return pending_.has_value(); }
  // Given up (a variant it waits for failed, or commits were undone): the
  // next one will do.
  void Abandon() { pending_.reset(); }

  // Answers (one of another seq, or while none is pending, is ignored).
  void OnDigest(const std::string& variant, std::uint64_t seq, const std::string& digest);
  void OnSnapshot(const std::string& variant, std::uint64_t seq, const std::string& state, const std::string& digest);

  struct Decision {
    std::uint64_t seq = 0;
    bool accepted = false;               // the snapshot is the checkpoint
    std::string state;                   // accepted: the snapshot's state and digest
    std::string digest;
    std::vector<std::string> mismatched;  // accepted: who answered another digest
    std::vector<std::string> asked;       // everyone asked (not accepted: a round settles who is right)
    std::map<std::string, std::string> digests;  // every answer: variant -> digest
  };
  // Once every answer is in: what was decided (and nothing is pending any
  // more). nullopt while answers are missing, or when none is pending.
  std::optional<Decision> Take();

 private:
  struct Pending {
    std::uint64_t seq = 0;
    std::string snapshot_from;
    std::optional<std::string> state;
    std::optional<std::string> snapshot_digest;
    std::map<std::string, std::optional<std::string>> digests;  // variant -> digest
  };
  std::optional<Pending> pending_;
};

}  // namespace nvs::supervisor
