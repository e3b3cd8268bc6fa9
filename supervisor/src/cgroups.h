// A cgroup per variant process, where the host offers one: every process a
// variant starts stays in it (setsid does not leave a cgroup), at most
// `limits.processes` of them (pids.max), and all of them are killed when
// the variant is gone. cgroup v1's pids hierarchy (with the freezer, when
// mounted, so that nothing forks while it is emptied), as on hosts that
// mount v1 controllers. Where there is none (not root, no writable pids
// hierarchy), nvsd goes on without: it is a child subreaper, and kills the
// orphans it inherits (supervisor.cc, KillOrphans).
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nvs/status.h"

namespace nvs::supervisor {

class VariantCgroups {
 public:
  // nvsd's own folder in the hierarchies (NAME under its current cgroup,
  // NAME being "nvsd.PID"), created; nullptr and why in *why_not when there
  // is none to use. Folders of nvsd processes that are gone (killed, so
  // they could not remove theirs) are emptied and removed first.
  static std::unique_ptr<VariantCgroups> Open(const std::string& name, std::string* why_not);
  ~VariantCgroups();  // empties and removes every cgroup it made, then its own folders

  // A new cgroup for one process (`identity`), limited to `pids_max` tasks:
  // the cgroup.procs files the process must join (before it execs).
  Result<std::vector<std::filesystem::path>> Create(const std::string& identity, std::uint64_t pids_max);
  // Kills every process in `identity`'s cgroup and removes it (or keeps it
  // to retry when a process in it is not reaped yet). Returns how many
  // processes were killed.
  int Destroy(const std::string& identity);
  // Retries the removals that could not be done yet.
  void Retry();
  // The identities it holds cgroups for.
  std::vector<std::string> identities() const;
  // Where `identity`'s pids cgroup is ("" if none).
  std::filesystem::path Where(const std::string& identity) const;

 private:
  VariantCgroups(std::filesystem::path pids, std::filesystem::path freezer) : pids_(std::move(pids)), freezer_(std::move(freezer)) {}
  int Empty(const std::filesystem::path& pids_dir, const std::filesystem::path& freezer_dir);

  std::filesystem::path pids_;     // .../pids/<own>/NAME
  std::filesystem::path freezer_;  // .../freezer/<own>/NAME, or empty
  std::map<std::string, bool> made_;  // identity -> its removal is pending (process gone)
};

}  // namespace nvs::supervisor
