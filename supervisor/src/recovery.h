// What nvsd knew before it stopped, read back from its state dir
// (protocol/JOURNAL.md, "Recovery"): the checkpoint, the commits after it,
// the final replies of the last remembered request ids, the commands it
// admitted and never decided (suspects), and where the journal goes on.
//
// It reads only what it needs, newest segment first: the segments that
// hold records after the checkpoint, and enough older ones for the
// remembered replies; so the time it takes does not grow with the history.
// Damage is never taken for a torn write, and never skipped: it stops
// recovery with the file, the offset and a way out. A damaged checkpoint
// falls back to the previous one (and a longer replay), or, with the whole
// journal there, to a replay from the first command.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "nvs/core/request_memory.h"
#include "nvs/protocol/client_messages.h"
#include "nvs/status.h"
#include "nvs/supervisor/journal.h"
#include "nvs/supervisor/state_dir.h"

namespace nvs::supervisor {

// The file names in the state dir.
inline constexpr const char* kCheckpointFile = "checkpoint.json";
inline constexpr const char* kPreviousCheckpointFile = "checkpoint.prev.json";
// A new checkpoint, written whole before it takes the current one's name.
inline constexpr const char* kNextCheckpointFile = "checkpoint.next.json";
inline constexpr const char* kJournalDir = "journal";
// "journal/NNNNNNNNNNNN.nvj"
std::string JournalSegmentName(std::uint64_t index);

// A final reply remembered for a request id: the reply, or, for a verdict
// older than the checkpoint (recovery skims those, PeekJournalRecord), the
// record's text, read when a retry asks for it.
struct Recovered {
  std::optional<Checkpoint> checkpoint;  // the one to start from (none: replay from the first command)
  bool checkpoint_is_current = false;    // it is checkpoint.json's (not the previous one's)
  // Its predecessor, kept for a fallback at run time (a checkpoint every
  // variant refuses to restore).
  std::optional<Checkpoint> previous_checkpoint;
  struct Commit {
    std::uint64_t seq = 0;
    std::int64_t time_ns = 0;
    std::string payload;
  };
  std::vector<Commit> tail;  // committed after the checkpoint, in order
  std::uint64_t last_seq = 0;
  std::uint64_t commits = 0;
  // The final replies of the last remembered request ids, oldest first.
  std::vector<std::pair<std::string, RememberedReply>> remembered;
  struct Suspect {
    std::uint64_t seq = 0;
    std::int64_t time_ns = 0;
    std::string request_id;
    std::string client;  // hex
    std::string fingerprint;
    std::string payload;
    std::string key;     // the client's CURVE key name ("" on a plain endpoint)
    std::int64_t expires_at_ms = 0;  // the client's deadline (0: none)
    // A `mark` follows it (the end of storage trouble): it may have been
    // answered `not carried out`, never `committed` without its verdict.
    bool before_mark = false;
  };
  std::vector<Suspect> suspects;  // admitted after the checkpoint, never decided, in order
  struct Segment {
    std::uint64_t index = 0;
    std::uint64_t max_seq = 0;  // no record in it has a higher seq (an upper bound for segments not read)
  };
  std::vector<Segment> closed;          // oldest first
  std::uint64_t current = 1;            // the newest segment's index (to append to)
  std::uint64_t current_good_bytes = 0; // its good prefix (0: a new segment)
  std::uint64_t current_records = 0;
  std::string torn;                     // the torn tail cut from the newest segment ("" when none)
  std::size_t segments_read = 0;
  std::size_t records_read = 0;
  // Records of a shape nvsd does not write (a bug or a hand edit): skipped,
  // counted, the first 16 named.
  std::size_t skipped = 0;
  std::vector<std::string> skipped_examples;
  std::vector<std::uint64_t> commits_without_command;  // the first 16
  std::size_t commits_without_command_count = 0;
  std::vector<std::string> warnings;  // for the log: a fallback taken, an unchecked checkpoint
};

struct RecoveryOptions {
  std::size_t remembered_requests = 100'000;
};

// Reads the state dir. Fails, naming the file and what is wrong and how to
// go on, when the journal is damaged or no usable checkpoint is left and the
// journal does not go back to the first command.
Result<Recovered> RecoverStateDir(StateDir& dir, const RecoveryOptions& options);

}  // namespace nvs::supervisor
