// FaultyStateDir (state_dir.h): the POSIX state dir with faults injected on
// purpose, for the storage tests: failed writes and syncs, a read-only or
// full disk, a crash that loses what was not synced, flipped bits.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "nvs/supervisor/state_dir.h"

namespace nvs::supervisor {

// ---- FaultyStateDir ----------------------------------------------------------------

class FaultyStateDir::File : public StateFile {
 public:
  File(FaultyStateDir& dir, std::string path, std::unique_ptr<StateFile> real)
      : dir_(dir), path_(std::move(path)), real_(std::move(real)) {
    if (!dir_.synced_size_.count(path_)) dir_.synced_size_[path_] = real_->size();
  }

  Result<std::size_t> Append(std::string_view bytes, StorageError* error) override {
    if (dir_.read_only_) return dir_.Fail(EROFS, dir_.Where(path_).string() + ": write", error);
    std::size_t take = bytes.size();
    if (dir_.short_writes_ > 0) take = std::min(take, dir_.short_writes_);
    bool full = false;
    if (dir_.space_left_) {
      if (*dir_.space_left_ == 0) return dir_.Fail(ENOSPC, dir_.Where(path_).string() + ": write", error);
      if (take > *dir_.space_left_) {
        take = static_cast<std::size_t>(*dir_.space_left_);
        full = true;
      }
    }
    auto written = real_->Append(bytes.substr(0, take), error);
    if (!written.ok()) return written;
    dir_.bytes_written_ += written.value();
    if (dir_.space_left_) *dir_.space_left_ -= written.value();
    (void)full;  // the part that fitted is written; the next append fails
    return written;
  }
  Status Sync(StorageError* error) override {
    if (dir_.read_only_) return dir_.Fail(EROFS, dir_.Where(path_).string() + ": fdatasync", error);
    if (dir_.TakeSyncFailure()) return dir_.Fail(EIO, dir_.Where(path_).string() + ": fdatasync", error);
    Status s = real_->Sync(error);
    if (s.ok()) dir_.synced_size_[path_] = real_->size();
    return s;
  }
  Status Truncate(std::uint64_t size, StorageError* error) override {
    if (dir_.read_only_) return dir_.Fail(EROFS, dir_.Where(path_).string() + ": truncate", error);
    if (dir_.truncate_fails_) return dir_.Fail(EIO, dir_.Where(path_).string() + ": truncate", error);
    if (dir_.TakeSyncFailure()) return dir_.Fail(EIO, dir_.Where(path_).string() + ": fsync", error);
    Status s = real_->Truncate(size, error);
    if (s.ok()) dir_.synced_size_[path_] = size;
    return s;
  }
  std::uint64_t size() const override { return real_->size(); }

 private:
  FaultyStateDir& dir_;
  std::string path_;
  std::unique_ptr<StateFile> real_;
};

Status FaultyStateDir::Fail(int error_number, const std::string& what, StorageError* error) const {
  if (error != nullptr) *error = {error_number, what + ": " + std::strerror(error_number)};
  return Status::Error(what + ": " + std::strerror(error_number));
}

bool FaultyStateDir::TakeSyncFailure() {
  if (failing_syncs_ <= 0) return false;
  --failing_syncs_;
  return true;
}

Result<std::unique_ptr<StateFile>> FaultyStateDir::OpenForAppend(const std::string& path, StorageError* error) {
  if (read_only_ && !real_.Exists(path)) return Fail(EROFS, Where(path).string(), error);
  auto real = real_.OpenForAppend(path, error);
  if (!real.ok()) return real.status();
  return std::unique_ptr<StateFile>(new File(*this, path, std::move(real.value())));
}

Status FaultyStateDir::WriteAtomically(const std::string& path, std::string_view content, StorageError* error) {
  if (read_only_) return Fail(EROFS, Where(path).string() + ".tmp", error);
  if (space_left_ && content.size() > *space_left_) {
    *space_left_ = 0;
    return Fail(ENOSPC, Where(path).string() + ".tmp: write", error);
  }
  if (TakeSyncFailure()) return Fail(EIO, Where(path).string() + ".tmp: fsync", error);
  Status s = real_.WriteAtomically(path, content, error);
  if (s.ok()) {
    bytes_written_ += content.size();
    if (space_left_) *space_left_ -= content.size();
  }
  return s;
}

Status FaultyStateDir::Rename(const std::string& from, const std::string& to, StorageError* error) {
  if (read_only_) return Fail(EROFS, Where(from).string(), error);
  return real_.Rename(from, to, error);
}

Status FaultyStateDir::Remove(const std::string& path, StorageError* error) {
  if (read_only_) return Fail(EROFS, Where(path).string(), error);
  return real_.Remove(path, error);
}

Status FaultyStateDir::MakeDir(const std::string& dir, StorageError* error) {
  if (read_only_ && !real_.Exists(dir)) return Fail(EROFS, Where(dir).string(), error);
  return real_.MakeDir(dir, error);
}

Status FaultyStateDir::SyncDir(const std::string& dir, StorageError* error) {
  if (read_only_) return Fail(EROFS, Where(dir).string(), error);
  if (TakeSyncFailure()) return Fail(EIO, Where(dir).string() + ": fsync", error);
  return real_.SyncDir(dir, error);
}

void FaultyStateDir::Crash() {
  for (const auto& [path, synced] : synced_size_) {
    std::error_code ec;
    const auto where = Where(path);
    if (std::filesystem::exists(where, ec) && std::filesystem::file_size(where, ec) > synced) {
      std::filesystem::resize_file(where, synced, ec);
    }
  }
}

Status FaultyStateDir::FlipBit(const std::string& path, std::uint64_t offset, int bit) {
  const auto where = Where(path);
  const int fd = open(where.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return Status::Error(where.string() + ": " + std::strerror(errno));
  unsigned char byte = 0;
  if (pread(fd, &byte, 1, static_cast<off_t>(offset)) != 1) {
    close(fd);
    return Status::Error(where.string() + ": no byte at " + std::to_string(offset));
  }
  byte = static_cast<unsigned char>(byte ^ (1u << bit));
  const bool ok = pwrite(fd, &byte, 1, static_cast<off_t>(offset)) == 1;
  close(fd);
  return ok ? Status::Ok() : Status::Error(where.string() + ": cannot write");
}

}  // namespace nvs::supervisor
