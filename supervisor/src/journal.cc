#include "nvs/supervisor/journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <zlib.h>

#include "nvs/protocol/json_values.h"
#include "nvs/protocol/messages.h"
#include "nvs/supervisor/state_dir.h"

namespace nvs::supervisor {
namespace {

std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Result<JournalScan> ReadJournalFile(const std::filesystem::path& file) {
  const int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::Error(file.string() + ": " + std::strerror(errno));
  std::string content;
  char buffer[1 << 16];
  for (;;) {
    const ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const std::string error = file.string() + ": " + std::strerror(errno);
      close(fd);
      return Status::Error(error);
    }
    if (n == 0) break;
    content.append(buffer, static_cast<std::size_t>(n));
  }
  close(fd);
  return ScanJournal(content);
}

std::filesystem::path JournalSegmentPath(const std::filesystem::path& dir, std::uint64_t index) {
  std::string name = std::to_string(index);
  if (name.size() < 12) name.insert(0, 12 - name.size(), '0');
  return dir / (name + ".nvj");
}

std::uint64_t JournalSegmentIndex(const std::filesystem::path& file) {
  const std::string name = file.filename().string();
  if (name.size() != 16 || name.substr(12) != ".nvj") return 0;
  std::uint64_t index = 0;
  for (std::size_t i = 0; i < 12; ++i) {
    if (name[i] < '0' || name[i] > '9') return 0;
    index = index * 10 + static_cast<std::uint64_t>(name[i] - '0');
  }
  return index;
}

std::vector<std::filesystem::path> JournalSegments(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> segments;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (JournalSegmentIndex(it->path()) != 0 && it->is_regular_file(ec)) segments.push_back(it->path());
  }
  std::sort(segments.begin(), segments.end(),
            [](const auto& a, const auto& b) { return JournalSegmentIndex(a) < JournalSegmentIndex(b); });
  return segments;
}

Result<JournalContents> ReadJournal(const std::filesystem::path& path) {
  std::error_code ec;
  std::vector<std::filesystem::path> files;
  if (std::filesystem::is_directory(path, ec)) {
    files = JournalSegments(path / "journal");
    if (files.empty()) files = JournalSegments(path);
    if (files.empty() && std::filesystem::is_regular_file(path / "journal.nvj", ec)) files = {path / "journal.nvj"};
    if (files.empty()) return Status::Error(path.string() + ": no journal here (no journal/NNNNNNNNNNNN.nvj segments)");
  } else {
    files = {path};
  }
  JournalContents contents;
  for (const auto& file : files) {
    auto scan = ReadJournalFile(file);
    if (!scan.ok()) return scan.status();
    if (!scan.value().damage.empty()) contents.damage.push_back(file.string() + ": " + scan.value().damage);
    for (auto& record : scan.value().records) contents.records.push_back(std::move(record));
    contents.files.push_back(file);
  }
  return contents;
}

Status SyncDirectory(const std::filesystem::path& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::Error(dir.string() + ": " + std::strerror(errno));
  const int rc = fsync(fd);
  const int error = errno;
  close(fd);
  if (rc != 0) return Status::Error(dir.string() + ": fsync: " + std::strerror(error));
  return Status::Ok();
}

Result<std::unique_ptr<JournalWriter>> JournalWriter::Start(std::unique_ptr<StateFile> file, FsyncPolicy policy,
                                                            int batch_ms, StorageError* error) {
  std::unique_ptr<JournalWriter> writer(new JournalWriter());
  writer->policy_ = policy;
  writer->batch_ms_ = batch_ms;
  if (file->size() > 0) {
    Status cut = file->Truncate(0, error);
    if (!cut.ok()) return cut;
  }
  std::size_t done = 0;
  while (done < kJournalMagic.size()) {
    auto n = file->Append(kJournalMagic.substr(done), error);
    if (!n.ok()) return n.status();
    if (n.value() == 0) return Status::Error("journal: a write wrote nothing");
    done += n.value();
  }
  Status synced = file->Sync(error);
  if (!synced.ok()) return synced;
  writer->size_ = writer->synced_ = writer->synced_records_at_ = file->size();
  writer->file_ = std::move(file);
  writer->last_sync_ms_ = NowMs();
  return writer;
}

Result<std::unique_ptr<JournalWriter>> JournalWriter::Continue(std::unique_ptr<StateFile> file, std::uint64_t good_bytes,
                                                               std::uint64_t records, FsyncPolicy policy, int batch_ms,
                                                               StorageError* error) {
  if (good_bytes < kJournalMagic.size()) return Start(std::move(file), policy, batch_ms, error);
  std::unique_ptr<JournalWriter> writer(new JournalWriter());
  writer->policy_ = policy;
  writer->batch_ms_ = batch_ms;
  if (file->size() != good_bytes) {
    Status cut = file->Truncate(good_bytes, error);
    if (!cut.ok()) return Status::Error("cannot cut the torn tail: " + cut.message());
  }
  // What the last process wrote may be in the page cache only (under
  // "always" a commit's verdict is answered before its sync): made durable
  // before it counts as the last good record a failed write cuts back to.
  if (policy == FsyncPolicy::kAlways) {
    if (Status synced = file->Sync(error); !synced.ok()) {
      return Status::Error("cannot sync what the last run wrote: " + synced.message());
    }
  }
  writer->size_ = writer->synced_ = good_bytes;
  writer->records_ = writer->synced_records_ = records;
  writer->synced_records_at_ = good_bytes;
  writer->file_ = std::move(file);
  writer->last_sync_ms_ = NowMs();
  return writer;
}

JournalWriter::~JournalWriter() {
  if (file_ && !in_doubt_) Flush(/*force=*/true);
}

void JournalWriter::Append(std::string_view payload) {
  buffer_ += FrameRecord(payload);
  ++buffered_records_;
}

Flushed JournalWriter::CutBack(std::uint64_t good, std::uint64_t records_at_good, const StorageError& why) {
  Flushed out;
  out.error = why;
  out.records_kept = records_at_good;
  StorageError ignored;
  if (file_->size() == good || file_->Truncate(good, &ignored).ok()) {
    size_ = good;
    synced_ = std::min(synced_, good);
    records_ = records_at_good;
    out.result = Flushed::Result::kNotWritten;
    return out;
  }
  in_doubt_ = true;
  doubt_from_ = good;
  doubt_records_ = records_at_good;
  out.result = Flushed::Result::kInDoubt;
  return out;
}

Flushed JournalWriter::Flush(bool force) { return WriteAndSync(force, /*sync_allowed=*/true); }

Flushed JournalWriter::Write() { return WriteAndSync(false, /*sync_allowed=*/false); }

Flushed JournalWriter::WriteAndSync(bool force, bool sync_allowed) {
  if (in_doubt_) {
    // Nothing is written while the segment is in doubt: what was queued is
    // dropped, for sure not on disk (and never written later). Resolve, by
    // the caller, settles the doubt.
    Flushed out;
    out.error = {EIO, "the journal segment is in doubt since an earlier failed write"};
    out.records_kept = records_;
    buffer_.clear();
    buffered_records_ = 0;
    out.result = Flushed::Result::kNotWritten;
    return out;
  }
  // Where to cut back to if this write or its sync fails: under "always",
  // the last fsynced record (whatever was written after it is not durable);
  // otherwise the last one written (earlier ones may have been answered).
  const std::uint64_t good = policy_ == FsyncPolicy::kAlways ? synced_ : size_;
  const std::uint64_t records_at_good = policy_ == FsyncPolicy::kAlways ? synced_records_ : records_;
  if (!buffer_.empty()) {
    std::size_t done = 0;
    while (done < buffer_.size()) {
      StorageError error;
      auto n = file_->Append(std::string_view(buffer_).substr(done), &error);
      if (!n.ok() || n.value() == 0) {
        if (n.ok()) error = {EIO, "journal: a write wrote nothing"};
        buffer_.clear();
        buffered_records_ = 0;
        return CutBack(good, records_at_good, error);
      }
      done += n.value();
      size_ = file_->size();
    }
    buffer_.clear();
    records_ += buffered_records_;
    buffered_records_ = 0;
  }
  if (!unsynced() || !sync_allowed) return {};
  const bool sync = force || policy_ == FsyncPolicy::kAlways ||
                    (policy_ == FsyncPolicy::kBatch && NowMs() - last_sync_ms_ >= batch_ms_);
  if (!sync) return {};
  StorageError error;
  const auto sync_began = std::chrono::steady_clock::now();
  const bool synced = file_->Sync(&error).ok();
  last_sync_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - sync_began).count();
  ++syncs_;
  if (!synced) {
    // After a failed fsync the written data may be gone whatever the page
    // cache shows (it may have been marked clean): never trusted again.
    return CutBack(good, records_at_good, error);
  }
  synced_ = size_;
  synced_records_ = records_;
  synced_records_at_ = synced_;
  last_sync_ms_ = NowMs();
  return {};
}

Flushed JournalWriter::Resolve() {
  if (!in_doubt_) return {};
  Flushed out;
  if (!file_->Truncate(doubt_from_, &out.error).ok()) {
    out.result = Flushed::Result::kInDoubt;
    return out;
  }
  in_doubt_ = false;
  size_ = synced_ = synced_records_at_ = doubt_from_;
  records_ = synced_records_ = doubt_records_;
  return out;
}

}  // namespace nvs::supervisor
