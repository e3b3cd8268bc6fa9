// The simulator's disk (ARCHITECTURE.md §7): a state dir in memory that
// knows what was made durable, so that a simulated power cut or kill -9
// keeps exactly that, and faults on demand: a full disk, failed syncs,
// a torn tail. Deterministic: every choice comes from the caller's seed.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "nvs/supervisor/state_dir.h"

namespace nvs::simulation {

class MemoryStateDir : public supervisor::StateDir {
 public:
  // Faults from now on (none by default):
  // - appends and atomic writes fail with ENOSPC once this many more bytes
  //   have been written;
  void SetSpaceLeft(std::uint64_t bytes) { space_left_ = bytes; }
  void ClearSpaceLimit() { space_left_.reset(); }
  // - the next `n` syncs fail with EIO; what they should have made durable
  //   is lost to the next crash even if a later sync succeeds (Linux marks
  //   the pages clean after a failed writeback): it reads back as zeros;
  void FailSyncs(int n) { failing_syncs_ = n; }

  // nvsd's process dies (kill -9): the files keep what was written (the
  // page cache survives a process). Nothing to do; here for symmetry.
  // A power cut: each appended file keeps what was synced, plus (`torn`)
  // a random part of what was not, and lost ranges become zeros.
  void PowerCut(std::mt19937_64& rng, bool torn);

  std::uint64_t bytes_written() const { return bytes_written_; }
  // Every file's path (for a transcript).
  std::vector<std::string> Files() const;

  Result<std::unique_ptr<supervisor::StateFile>> OpenForAppend(const std::string& path,
                                                               supervisor::StorageError* error) override;
  Result<std::string> Read(const std::string& path, bool* missing = nullptr) override;
  bool Exists(const std::string& path) override;
  Status WriteAtomically(const std::string& path, std::string_view content, supervisor::StorageError* error) override;
  Status Rename(const std::string& from, const std::string& to, supervisor::StorageError* error) override;
  Status Remove(const std::string& path, supervisor::StorageError* error) override;
  Result<std::vector<std::string>> List(const std::string& dir) override;
  Status MakeDir(const std::string& dir, supervisor::StorageError* error) override;
  Status SyncDir(const std::string& dir, supervisor::StorageError* error) override;
  std::filesystem::path Where(const std::string& path) const override;

 private:
  struct Node {
    std::string data;
    std::uint64_t synced = 0;                                 // durable prefix
    std::vector<std::pair<std::uint64_t, std::uint64_t>> lost;  // [from, to): a failed sync's
  };
  class File;
  friend class File;
  Status Fail(int error_number, const std::string& what, supervisor::StorageError* error) const;
  // Takes `n` bytes of space; false (nothing taken) when the disk is full.
  bool Take(std::size_t n);

  std::map<std::string, std::shared_ptr<Node>> files_;
  std::set<std::string> dirs_;
  std::optional<std::uint64_t> space_left_;
  int failing_syncs_ = 0;
  std::uint64_t bytes_written_ = 0;
};

}  // namespace nvs::simulation
