// nvsd's state dir (protocol/JOURNAL.md), as every read and write of the
// journal and the checkpoint goes: through this interface, so that tests
// can wrap the real one with faults (FaultyStateDir: a full disk, a
// read-only one, a failed fsync, short writes, data lost in a crash,
// flipped bits), in the spirit of LevelDB's Env and SQLite's test VFS.
//
// Paths are relative to the state dir, with '/' between folders; none may
// be absolute, empty, or hold "." or ".." parts.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "nvs/status.h"

namespace nvs::supervisor {

// The errno an operation failed with, beside its message (ENOSPC, EROFS,
// EIO, ...), so callers can say "full" or "read-only" (0 when unknown).
struct StorageError {
  int error_number = 0;
  std::string message;
};

// A file opened for appending: one journal segment.
class StateFile {
 public:
  virtual ~StateFile() = default;
  // Appends up to bytes.size() bytes at the end; returns how many were
  // written (a short write is not an error), or fails.
  virtual Result<std::size_t> Append(std::string_view bytes, StorageError* error) = 0;
  // fdatasync: what was appended is on disk once this succeeds.
  virtual Status Sync(StorageError* error) = 0;
  // Cuts the file to `size` bytes and makes that durable (fsync).
  virtual Status Truncate(std::uint64_t size, StorageError* error) = 0;
  virtual std::uint64_t size() const = 0;
};

class StateDir {
 public:
  virtual ~StateDir() = default;
  // Opens (creating, owner-only) `path` for appending at its end.
  virtual Result<std::unique_ptr<StateFile>> OpenForAppend(const std::string& path, StorageError* error) = 0;
  // The whole file; `*missing` (if given) is set when it does not exist.
  virtual Result<std::string> Read(const std::string& path, bool* missing = nullptr) = 0;
  virtual bool Exists(const std::string& path) = 0;
  // Replaces `path` atomically: a temporary file, fsync, rename, fsync of
  // the folder. On failure the old file (if any) is untouched.
  virtual Status WriteAtomically(const std::string& path, std::string_view content, StorageError* error) = 0;
  // Renames within the state dir and fsyncs the folder.
  virtual Status Rename(const std::string& from, const std::string& to, StorageError* error) = 0;
  virtual Status Remove(const std::string& path, StorageError* error) = 0;
  // The names in a folder (not "." or ".."), sorted; none when it does not exist.
  virtual Result<std::vector<std::string>> List(const std::string& dir) = 0;
  // Creates a folder (owner-only) if it is missing.
  virtual Status MakeDir(const std::string& dir, StorageError* error) = 0;
  virtual Status SyncDir(const std::string& dir, StorageError* error) = 0;
  // For messages: where `path` is.
  virtual std::filesystem::path Where(const std::string& path) const = 0;
  // Whether its file system is read-only now (ext4 turns itself read-only
  // after an error; a later fsync then fails with EIO): mounted so, or
  // refusing to open a file for writing with EROFS.
  virtual bool ReadOnly() const { return false; }
};

// OpenSSH's StrictModes for what nvsd keeps its state in. `path` itself
// (never followed if a link): owned by this process's user, not a symbolic
// link, and (a folder or a regular file) not writable by group or others.
// `directory`: it must be a folder. The error names the path and the reason.
Status CheckOwnPath(const std::filesystem::path& path, bool directory);
// Every folder above `path` (an absolute path): owned by root or this user,
// and not writable by group or others unless sticky (as /tmp is: there no one
// may remove or replace another's entry).
Status CheckAncestors(const std::filesystem::path& path);
// CheckOwnPath of every entry of `dir`, and of the entries of the folders
// listed in `subfolders` (relative to it) when they exist.
Status CheckOwnTree(const std::filesystem::path& dir, const std::vector<std::string>& subfolders);

// The real state dir. Every file is opened relative to the folder's own
// descriptor, never following a symbolic link.
class PosixStateDir : public StateDir {
 public:
  // Opens `root` (which must exist and be a folder, not a link).
  static Result<std::unique_ptr<PosixStateDir>> Open(const std::filesystem::path& root);
  ~PosixStateDir() override;

  // An exclusive lock on the state dir (flock of ROOT/nvsd.lock, which then
  // holds this process's pid), held until this object is gone. Fails at
  // once, naming the holder's pid, when another process holds it.
  Status Lock();
  // From now on Read returns only files of this process's user (nvsd's own
  // state; a tool reading another user's state dir as root does not ask).
  // Read never returns anything but a regular file (no FIFO, no device).
  void ReadOwnFilesOnly() { own_files_only_ = true; }

  Result<std::unique_ptr<StateFile>> OpenForAppend(const std::string& path, StorageError* error) override;
  Result<std::string> Read(const std::string& path, bool* missing = nullptr) override;
  bool Exists(const std::string& path) override;
  Status WriteAtomically(const std::string& path, std::string_view content, StorageError* error) override;
  Status Rename(const std::string& from, const std::string& to, StorageError* error) override;
  Status Remove(const std::string& path, StorageError* error) override;
  Result<std::vector<std::string>> List(const std::string& dir) override;
  Status MakeDir(const std::string& dir, StorageError* error) override;
  Status SyncDir(const std::string& dir, StorageError* error) override;
  std::filesystem::path Where(const std::string& path) const override;
  bool ReadOnly() const override;

 private:
  PosixStateDir(std::filesystem::path root, int fd) : root_(std::move(root)), fd_(fd) {}
  // The folder holding `path` (opened, never through a link) and the last part of the path.
  Result<std::pair<int, std::string>> Parent(const std::string& path, StorageError* error) const;

  std::filesystem::path root_;
  int fd_ = -1;
  int lock_fd_ = -1;
  bool own_files_only_ = false;
};

// A state dir for tests: the real one underneath, with faults on demand.
// Not thread-safe.
class FaultyStateDir : public StateDir {
 public:
  explicit FaultyStateDir(StateDir& real) : real_(real) {}

  // Faults from now on (all off by default):
  // - appends and atomic writes fail with ENOSPC once this many more bytes
  //   have been written (an append that crosses it writes the part that
  //   fits, then fails);
  void SetSpaceLeft(std::uint64_t bytes) { space_left_ = bytes; }
  void ClearSpaceLimit() { space_left_.reset(); }
  // - every change fails with EROFS;
  void SetReadOnly(bool read_only) { read_only_ = read_only; }
  // - the next N syncs (fdatasync, or the fsyncs of an atomic write) fail
  //   with EIO (what was written since the last good one is then lost to a
  //   crash, as after a real failed fsync);
  void FailSyncs(int n) { failing_syncs_ = n; }
  // - an append writes at most this many bytes (a short write);
  void SetShortWrites(std::size_t at_most) { short_writes_ = at_most; }
  // - truncation fails with EIO (the writer cannot cut off what it wrote).
  void SetTruncateFails(bool fails) { truncate_fails_ = fails; }

  // A power cut: every appended file loses what was not synced (it is cut
  // back, on the real disk, to its size at its last successful sync).
  void Crash();
  // Flips bit `bit` (0-7) of the byte at `offset` of `path`, on the real disk.
  Status FlipBit(const std::string& path, std::uint64_t offset, int bit);

  std::uint64_t bytes_written() const { return bytes_written_; }

  Result<std::unique_ptr<StateFile>> OpenForAppend(const std::string& path, StorageError* error) override;
  Result<std::string> Read(const std::string& path, bool* missing = nullptr) override {
    return real_.Read(path, missing);
  }
  bool Exists(const std::string& path) override { return real_.Exists(path); }
  Status WriteAtomically(const std::string& path, std::string_view content, StorageError* error) override;
  Status Rename(const std::string& from, const std::string& to, StorageError* error) override;
  Status Remove(const std::string& path, StorageError* error) override;
  Result<std::vector<std::string>> List(const std::string& dir) override { return real_.List(dir); }
  Status MakeDir(const std::string& dir, StorageError* error) override;
  Status SyncDir(const std::string& dir, StorageError* error) override;
  std::filesystem::path Where(const std::string& path) const override { return real_.Where(path); }

 private:
  class File;
  friend class File;
  // ENOSPC/EROFS/EIO as an error, or ok.
  Status Fail(int error_number, const std::string& what, StorageError* error) const;
  bool TakeSyncFailure();

  StateDir& real_;
  std::optional<std::uint64_t> space_left_;
  bool read_only_ = false;
  int failing_syncs_ = 0;
  std::size_t short_writes_ = 0;
  bool truncate_fails_ = false;
  std::uint64_t bytes_written_ = 0;
  std::map<std::string, std::uint64_t> synced_size_;  // appended files: size at the last good sync
};

// What an error number means for an operator: "the disk is full", "the
// file system is read-only", "an I/O error", or the system's words.
std::string DescribeStorageError(int error_number);

}  // namespace nvs::supervisor
