// The journal's record schema and framing (protocol/JOURNAL.md), without
// any file: the framing of records (length, CRC-32, payload), the scan of a
// segment's bytes that tells a torn tail from damage, the bodies of the
// records nvsd writes (encoded and read back here, in one place, for nvsd,
// its recovery and nvs replay), and checkpoint.json's text. Part of nvsd's
// deterministic core (ARCHITECTURE.md): no I/O, no clock.
//
// Framing: a magic line, then records, each
//   u32 little-endian payload length | u32 little-endian CRC-32 (IEEE) of the payload | payload
// The payload is one JSON object. A torn tail (a crash in the middle of the
// last write: an incomplete final record, or zeros) is told apart from
// damage (a bad record with good records after it, a flipped bit): the first
// may be cut, the second stops recovery (protocol/JOURNAL.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nvs/protocol/client_messages.h"
#include "nvs/status.h"

namespace nvs::supervisor {

inline constexpr std::string_view kJournalMagic = "NVSJOURNAL 1\n";
inline constexpr std::uint32_t kMaxJournalRecordBytes = 64u << 20;

// CRC-32 (IEEE 802.3, as zlib) of `bytes`.
std::uint32_t Crc32(std::string_view bytes);

// One framed record.
std::string FrameRecord(std::string_view payload);

struct JournalScan {
  std::vector<std::string> records;  // payloads, in order
  std::size_t good_bytes = 0;        // length of the valid prefix (magic included)
  std::string damage;                // why the rest is not valid; empty when the file ended cleanly
  // What follows the valid prefix:
  enum class Tail {
    kClean,    // nothing: the file ends after its last good record
    kTorn,     // an incomplete final record, or zeros, and no good record after it: a write cut short
    kDamaged,  // a bad record with a good one after it (at next_good): damage, never a torn write
  } tail = Tail::kClean;
  std::size_t next_good = 0;         // kDamaged: the offset of the next good record
};

// Reads a journal's bytes. Never throws; never trusts a length it cannot check.
JournalScan ScanJournal(std::string_view bytes);

// The same scan, with the payloads as views into `bytes` (which must
// outlive them): recovery reads segments of tens of MiB and copies nothing.
struct JournalScanViews {
  std::vector<std::string_view> records;
  std::size_t good_bytes = 0;
  std::string damage;
  JournalScan::Tail tail = JournalScan::Tail::kClean;
  std::size_t next_good = 0;
};
JournalScanViews ScanJournalViews(std::string_view bytes);

// One record's body (protocol/JOURNAL.md): `admit`, `verdict`, `start`,
// `mark` and `checkpoint` records, with the members nvsd's recovery and nvs replay act on.
// Other kinds are read as their type alone.
struct JournalRecord {
  std::string type;
  std::uint64_t seq = 0;     // admit, verdict, checkpoint
  std::int64_t time_ns = 0;  // admit, start, mark, checkpoint
  std::string id;            // admit, verdict: the request id ("" when absent)
  std::string cmd;           // admit: the command, compact JSON with sorted members
  std::string client;        // admit: the client's routing id, hex ("" when absent)
  std::string key;           // admit, verdict: the name of the client's CURVE key ("" on a plain endpoint)
  std::int64_t expires_at_ms = 0;  // admit: the client's deadline (CLIENT.md §2), Unix ms (0: none)
  std::string verdict;       // verdict: COMMIT, POISON, NO_QUORUM, EXPIRED, ABANDONED
  std::string result;        // verdict COMMIT: compact JSON
  std::string report;        // verdict other than COMMIT ("" when absent)
  std::string fingerprint;   // admit; verdict other than COMMIT
  std::string reason;        // verdict other than COMMIT
  std::string config;        // start: the variants and policy nvsd ran with, compact JSON ("" when absent)
  std::int64_t pid = 0;      // start
  std::string note;          // mark
};

// A record's body as nvsd writes it: the one encoder of the schema that
// ParseJournalRecord reads (protocol/JOURNAL.md). `cmd`, `result` and
// `config` are JSON text, written as JSON (a text that is not JSON is
// written as a string); `key` is left out when empty (a plain endpoint),
// and a verdict has the members of its kind: COMMIT `result` (and
// `result_digest`), EXPIRED and ABANDONED `reason` (when given), the others
// `report`, `fingerprint` and `reason`.
std::string EncodeJournalRecord(const JournalRecord& record);

// Reads one record's body. A body nvsd does not write (not JSON, not an
// object, nested deeper than protocol::kMaxDocumentJsonDepth, a member
// missing or of the wrong type, a seq that is not an integer in [0, 2^63))
// is an error saying which. Never throws. Only a bug or a hand edit leaves
// such a record behind a good CRC. `*seq_seen` (when given) is set to the
// record's seq whenever it can be read, even when the record cannot: a
// skipped record's seq is still taken.
Result<JournalRecord> ParseJournalRecord(std::string_view payload, std::uint64_t* seq_seen = nullptr);

// What recovery needs of most records, read without building a JSON tree:
// the type, the seq, and of a verdict the request id and the verdict. Given
// only for a body ParseJournalRecord reads without an error and to the
// same values: valid JSON (UTF-8 and escapes checked as the JSON reader
// does, nested no deeper than it takes) whose members are of the types
// ParseJournalRecord requires; and only when the values need no unescaping
// (`id` and the rest are views into `payload`) and no member repeats.
// Otherwise nullopt, and the caller parses the record
// (ParseJournalRecord). On a restart after a million commands this is what
// reads the records older than the checkpoint, a few hundred thousand.
struct JournalRecordHead {
  std::string_view type;
  std::uint64_t seq = 0;      // 0 when absent (records other than admit and verdict)
  std::string_view id;        // admit, verdict ("" when absent)
  std::string_view key;       // admit, verdict ("" when absent)
  std::string_view verdict;   // verdict
};

// What nvsd remembers a request by: its id, within the client key that sent
// it (a key's ids are its own: another key's same id is another request).
// "" key (a plain endpoint): the id alone.
inline std::string RequestKey(std::string_view key, std::string_view id) {
  return key.empty() ? std::string(id) : std::string(key) + "\n" + std::string(id);
}
std::optional<JournalRecordHead> PeekJournalRecord(std::string_view payload);

// The final reply a verdict record stands for (what a retry of its request
// id is answered): COMMIT is `committed` with the seq and the result,
// POISON `quarantined`, EXPIRED and NO_QUORUM `rejected`; ABANDONED
// (never decided) has none.
std::optional<protocol::ClientReply> ReplyOfVerdict(JournalRecord verdict);

// checkpoint.json (protocol/JOURNAL.md): the canonical state after every
// command committed up to `seq`, and its digest.
struct Checkpoint {
  std::uint64_t seq = 0;
  std::string state;   // compact JSON
  std::string digest;
  std::uint64_t commits = 0;  // commands committed since the first start, up to seq
};

// checkpoint.json's text: {"seq":S,"digest":D,"commits":C,"crc":K,"state":STATE},
// K the CRC-32 (8 hex digits) of "S D C " followed by STATE's text.
std::string FormatCheckpoint(const Checkpoint& checkpoint);
// Reads it back; an error says which member is wrong, or that the checksum
// fails (a changed byte anywhere). A checkpoint of the first format (no
// crc, no commits) is read as it is, with `*unchecked` set. Never throws.
Result<Checkpoint> ParseCheckpoint(std::string_view text, bool* unchecked = nullptr);

}  // namespace nvs::supervisor
