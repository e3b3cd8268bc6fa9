// A cgroup per variant process, where the host offers one: every process a
// variant starts stays in it (setsid does not leave a cgroup), at most
// `limits.processes` of them (pids.max), and all of them are killed when
// the variant is gone. cgroup v1's pids hierarchy (with the freezer, when
// mounted, so that nothing forks while it is emptied), as on hosts that
// mount v1 controllers; else the cgroup v2 hierarchy (cgroup.kill, and
// pids.max where the pids controller can be handed down to nvsd's folder).
// Where there is neither (not root, nothing writable), nvsd goes on
// without: it is a child subreaper, and kills the orphans it inherits
// (supervisor_processes.cc, KillOrphans).
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <sys/types.h>

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
  // the files the process writes "0" to, to join (before it execs; its
  // "tasks" files, see Create).
  Result<std::vector<std::filesystem::path>> Create(const std::string& identity, std::uint64_t pids_max);
  // Kills every process in `identity`'s cgroup and removes it (or keeps it
  // to retry when a process in it is not reaped yet). Returns the
  // processes it killed.
  std::vector<pid_t> Destroy(const std::string& identity);
  // Retries the removals that could not be done yet.
  void Retry();
  // The identities it holds cgroups for.
  std::vector<std::string> identities() const;
  // Where `identity`'s (pids) cgroup is ("" if none).
  std::filesystem::path Where(const std::string& identity) const;
  // What containment this is, for the starting log line.
  std::string Describe() const;

 private:
  enum class Kind { kV1, kV2 };
  VariantCgroups(Kind kind, std::filesystem::path pids, std::filesystem::path freezer)
      : kind_(kind), pids_(std::move(pids)), freezer_(std::move(freezer)) {}
  static std::unique_ptr<VariantCgroups> OpenV2(const std::string& name, std::string* why_not);
  std::vector<pid_t> Empty(const std::filesystem::path& pids_dir, const std::filesystem::path& freezer_dir);

  Kind kind_;
  std::filesystem::path pids_;     // v1: .../pids/<own>/NAME; v2: <mount>/<own>/NAME
  std::filesystem::path freezer_;  // v1: .../freezer/<own>/NAME, or empty; v2: empty
  std::string no_pids_limit_;      // v2: why pids.max cannot be set ("" when it is)
  std::map<std::string, bool> made_;  // identity -> its removal is pending (process gone)
};

}  // namespace nvs::supervisor
