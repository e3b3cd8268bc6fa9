// The write-ahead journal's files (protocol/JOURNAL.md): segments in a
// folder, read whole, and the writer that appends records to one and syncs
// them. The records themselves (framing, scan, bodies, checkpoint text) are
// nvs/core/records.h.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nvs/core/records.h"
#include "nvs/status.h"
#include "nvs/supervisor/state_dir.h"

namespace nvs::supervisor {

// Reads one journal file (a segment). An unreadable file is an error; a
// damaged one is a scan with `damage` set.
Result<JournalScan> ReadJournalFile(const std::filesystem::path& file);

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
  // Writes what is queued, and syncs nothing whatever the policy (a later
  // Flush syncs it). Under kAlways, what is only written is not counted
  // good: a failed write or sync cuts the segment back to the last synced
  // record.
  Flushed Write();
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
  // The fsyncs done, and how long the last one took (the metrics' histogram).
  std::uint64_t syncs() const { return syncs_; }
  double last_sync_seconds() const { return last_sync_seconds_; }

 private:
  JournalWriter() = default;
  // Cuts the segment back to `good` bytes; the outcome for records beyond it.
  Flushed CutBack(std::uint64_t good, std::uint64_t records_at_good, const StorageError& why);
  Flushed WriteAndSync(bool force, bool sync_allowed);

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
  std::uint64_t syncs_ = 0;
  double last_sync_seconds_ = 0;
};

}  // namespace nvs::supervisor
