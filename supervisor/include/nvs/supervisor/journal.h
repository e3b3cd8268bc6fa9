// The write-ahead journal's on-disk format (protocol/JOURNAL.md): a magic
// line, then records, each framed as
//   u32 little-endian payload length | u32 little-endian CRC-32 (IEEE) of the payload | payload
// The payload is one JSON object. A torn tail (a crash in the middle of the
// last write: an incomplete final record, or zeros) is told apart from
// damage (a bad record with good records after it, a flipped bit): the first
// may be cut, the second stops recovery (protocol/JOURNAL.md).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nvs/protocol/client_messages.h"
#include "nvs/status.h"
#include "nvs/supervisor/state_dir.h"

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

// Reads one journal file (a segment). An unreadable file is an error; a
// damaged one is a scan with `damage` set.
Result<JournalScan> ReadJournalFile(const std::filesystem::path& file);

// One record's body as nvsd's recovery reads it (protocol/JOURNAL.md):
// `admit` and `verdict` records, with the members recovery acts on. Other
// kinds (`start`) are read as their type alone.
struct JournalRecord {
  std::string type;
  std::uint64_t seq = 0;     // admit, verdict
  std::int64_t time_ns = 0;  // admit
  std::string id;            // admit, verdict: the request id ("" when absent)
  std::string cmd;           // admit: the command, compact JSON with sorted members
  std::string client;        // admit: the client's routing id, hex ("" when absent)
  std::string key;           // admit, verdict: the name of the client's CURVE key ("" on a plain endpoint)
  std::string verdict;       // verdict: COMMIT, POISON, NO_QUORUM, EXPIRED, ABANDONED
  std::string result;        // verdict COMMIT: compact JSON
  std::string report;        // verdict other than COMMIT ("" when absent)
  std::string fingerprint;   // admit; verdict other than COMMIT
  std::string reason;
};

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

// The journal is a folder of segments, STATE_DIR/journal/NNNNNNNNNNNN.nvj
// (12 decimal digits, from 1, in the order they were written). nvsd starts a
// new segment at a checkpoint once the current one has grown past
// `journal_segment_bytes`; older segments are kept, or pruned by
// `journal_keep_segments` (protocol/JOURNAL.md).
std::filesystem::path JournalSegmentPath(const std::filesystem::path& dir, std::uint64_t index);
// The segment index in a segment's file name; 0 when it is not one.
std::uint64_t JournalSegmentIndex(const std::filesystem::path& file);
// The segments in `dir`, oldest first (an absent folder has none).
std::vector<std::filesystem::path> JournalSegments(const std::filesystem::path& dir);

struct JournalContents {
  std::vector<std::string> records;           // every good record, oldest first
  std::vector<std::filesystem::path> files;   // the segments read
  std::vector<std::string> damage;            // "FILE: why", one per damaged segment
};

// Reads a whole journal from a state dir, a journal folder or one segment
// file. Fails when there is nothing to read.
Result<JournalContents> ReadJournal(const std::filesystem::path& path);

// fsync of a folder, so that a file created or renamed in it survives a crash.
Status SyncDirectory(const std::filesystem::path& dir);

enum class FsyncPolicy {
  kAlways,  // a record is durable before anything that depends on it is sent (group commit)
  kBatch,   // fsync at most every batch_ms
  kNone,    // leave it to the kernel
};

// What became of the records a Flush wrote.
struct Flushed {
  enum class Result {
    kDone,        // written (and fsynced, as the policy asks)
    kNotWritten,  // the disk refused, and the segment is back at its last good record: they are not on disk, for sure
    kInDoubt,     // the disk refused, and the segment could not be cut back: they may or may not be on disk
  } result = Result::kDone;
  StorageError error;  // not kDone: why (its errno tells a full disk from a read-only one)
  // Not kDone: how many records of the segment are surely intact (written
  // before the failed write, and not cut off); those after them were lost
  // (kNotWritten) or are in doubt (kInDoubt).
  std::uint64_t records_kept = 0;
  bool ok() const { return result == Result::kDone; }
};

// Appends records to one journal segment. A failed write or fsync never
// leaves a hole that later records follow: the writer cuts the segment back
// to its last good record before it writes again (fsync "always": the last
// fsynced one, as data whose fsync failed may be lost whatever the page
// cache says; otherwise the last one written). Not thread-safe.
class JournalWriter {
 public:
  // Starts a new segment in `file` (empty, or holding less than a magic
  // line): writes the magic line and syncs it.
  static Result<std::unique_ptr<JournalWriter>> Start(std::unique_ptr<StateFile> file, FsyncPolicy policy,
                                                      int batch_ms, StorageError* error = nullptr);
  // Goes on with a segment whose first `good_bytes` hold `records` good
  // records: what follows them (a torn tail) is cut off first.
  static Result<std::unique_ptr<JournalWriter>> Continue(std::unique_ptr<StateFile> file, std::uint64_t good_bytes,
                                                         std::uint64_t records, FsyncPolicy policy, int batch_ms,
                                                         StorageError* error = nullptr);
  ~JournalWriter();
  JournalWriter(const JournalWriter&) = delete;
  JournalWriter& operator=(const JournalWriter&) = delete;

  // Queues a record in memory. REQUIRES: payload.size() <= kMaxJournalRecordBytes.
  void Append(std::string_view payload);

  // Writes what is queued; fsyncs when the policy asks for it (kAlways: every
  // call that wrote something; kBatch: when batch_ms have passed since the
  // last fsync, or `force`). When the disk refuses, what was queued is
  // dropped (kNotWritten), or the segment is in doubt (kInDoubt: nothing is
  // written until Resolve cuts it back; meanwhile a Flush drops what was
  // queued and says kNotWritten: only the caller's Resolve settles the
  // doubt, so that it learns which records went).
  Flushed Flush(bool force = false);
  // After kInDoubt: cuts the segment back to its last good record. kDone
  // once it could (what was in doubt is then gone for sure).
  Flushed Resolve();

  bool in_doubt() const { return in_doubt_; }
  // True when records were written but not yet fsynced.
  bool unsynced() const { return size_ > synced_; }
  // True when records wait to be written or fsynced.
  bool pending() const { return !buffer_.empty() || unsynced(); }
  std::uint64_t bytes() const { return size_; }
  std::uint64_t records() const { return records_ + buffered_records_; }

 private:
  JournalWriter() = default;
  // Cuts the segment back to `good` bytes; the outcome for records beyond it.
  Flushed CutBack(std::uint64_t good, std::uint64_t records_at_good, const StorageError& why);

  std::unique_ptr<StateFile> file_;
  FsyncPolicy policy_ = FsyncPolicy::kAlways;
  int batch_ms_ = 0;
  std::string buffer_;
  std::uint64_t buffered_records_ = 0;
  std::uint64_t size_ = 0;      // written
  std::uint64_t synced_ = 0;    // fsynced
  std::uint64_t records_ = 0;   // written
  std::uint64_t synced_records_ = 0;     // records_ when synced_ was last set
  std::uint64_t synced_records_at_ = 0;  // ... at this size
  bool in_doubt_ = false;
  std::uint64_t doubt_from_ = 0;
  std::uint64_t doubt_records_ = 0;  // the records before doubt_from_
  std::int64_t last_sync_ms_ = 0;
};

}  // namespace nvs::supervisor
