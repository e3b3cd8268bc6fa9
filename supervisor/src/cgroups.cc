#include "cgroups.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

namespace nvs::supervisor {
namespace {

namespace fs = std::filesystem;

// This process's cgroup in the v1 hierarchy of `controller`, or with ""
// in the v2 hierarchy ("" if none).
std::string OwnCgroup(const std::string& controller) {
  std::ifstream in("/proc/self/cgroup");
  for (std::string line; std::getline(in, line);) {
    const auto a = line.find(':');
    const auto b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    if (controller.empty()) {
      if (line.compare(0, a, "0") == 0 && b == a + 1) return line.substr(b + 1);
      continue;
    }
    std::stringstream list(line.substr(a + 1, b - a - 1));
    for (std::string c; std::getline(list, c, ',');) {
      if (c == controller) return line.substr(b + 1);
    }
  }
  return "";
}

// The mount point of the v1 hierarchy of `controller`, or with "" of the
// v2 hierarchy ("" if none).
std::string MountOf(const std::string& controller) {
  std::ifstream in("/proc/self/mountinfo");
  for (std::string line; std::getline(in, line);) {
    const auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::stringstream tail(line.substr(dash + 3));
    std::string type, source, options;
    tail >> type >> source >> options;
    if (controller.empty() ? type != "cgroup2" : type != "cgroup") continue;
    if (!controller.empty()) {
      std::stringstream opts(options);
      bool has = false;
      for (std::string o; std::getline(opts, o, ',');) has = has || o == controller;
      if (!has) continue;
    }
    std::stringstream head(line.substr(0, dash));
    std::string id, parent, devices, root, point;
    head >> id >> parent >> devices >> root >> point;
    return point;
  }
  return "";
}

bool WriteText(const fs::path& file, const std::string& text) {
  const int fd = open(file.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  return ok;
}

std::vector<pid_t> Pids(const fs::path& procs) {
  std::vector<pid_t> out;
  std::ifstream in(procs);
  for (pid_t pid = 0; in >> pid;) out.push_back(pid);
  return out;
}

std::string ReadWord(const fs::path& file) {
  std::ifstream in(file);
  std::string word;
  in >> word;
  return word;
}

bool HasWord(const fs::path& file, const std::string& word) {
  std::ifstream in(file);
  for (std::string w; in >> w;) {
    if (w == word) return true;
  }
  return false;
}

// Kills every process in a cgroup v2 folder: cgroup.kill (Linux 5.14)
// does it in one write, frozen or not; before it, the folder is frozen
// (cgroup.freeze) while each process is killed. The processes killed.
std::vector<pid_t> EmptyV2(const fs::path& dir) {
  const auto before = Pids(dir / "cgroup.procs");
  if (before.empty()) return {};
  if (WriteText(dir / "cgroup.kill", "1")) return before;
  const bool frozen = WriteText(dir / "cgroup.freeze", "1");
  // (Frozen once cgroup.events says so, at most 100 ms: nothing in it forks any more.)
  const auto is_frozen = [&] {
    std::ifstream events(dir / "cgroup.events");
    for (std::string line; std::getline(events, line);) {
      if (line == "frozen 1") return true;
    }
    return false;
  };
  for (int i = 0; frozen && i < 100 && !is_frozen(); ++i) poll(nullptr, 0, 1);
  std::set<pid_t> killed;
  for (int round = 0; round < 100; ++round) {
    bool more = false;
    for (pid_t pid : Pids(dir / "cgroup.procs")) {
      if (killed.insert(pid).second) {
        kill(pid, SIGKILL);
        more = true;
      }
    }
    if (!more) break;
  }
  if (frozen) WriteText(dir / "cgroup.freeze", "0");
  return {killed.begin(), killed.end()};
}

// Whether `name` is PREFIX followed by the pid of an nvsd that is gone
// (not this one, and no live nvsd has that pid).
bool OfADeadNvsd(const std::string& name, const std::string& name_prefix) {
  if (name.rfind(name_prefix, 0) != 0) return false;
  const std::string pid = name.substr(name_prefix.size());
  if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) return false;
  if (pid == std::to_string(getpid())) return false;
  std::string comm;
  std::ifstream(fs::path("/proc") / pid / "comm") >> comm;
  return comm != "nvsd";  // (alive: its own)
}

// An nvsd that was killed (SIGKILL, a crash) left its folder NAME.PID
// behind, maybe with processes in it: those whose nvsd is gone are emptied
// (each process killed) and removed.
void RemoveStale(const fs::path& parent, const std::string& name_prefix) {
  std::error_code ec;
  for (fs::directory_iterator it(parent, ec), end; !ec && it != end; it.increment(ec)) {
    if (!OfADeadNvsd(it->path().filename().string(), name_prefix)) continue;
    for (fs::directory_iterator sub(it->path(), ec), done; !ec && sub != done; sub.increment(ec)) {
      if (!sub->is_directory(ec)) continue;
      if (!WriteText(sub->path() / "cgroup.kill", "1")) {
        for (pid_t p : Pids(sub->path() / "cgroup.procs")) kill(p, SIGKILL);
      }
      rmdir(sub->path().c_str());  // (one with a process not reaped yet stays; the next start tries again)
    }
    rmdir(it->path().c_str());
  }
}

// The leaves supervisor.PID (cgroup v2) that nvsd processes which are gone
// moved themselves into: removed when empty (one whose nvsd is alive, or
// that is being set up, is left alone).
void RemoveEmptyLeaves(const fs::path& parent, const std::string& name_prefix) {
  std::error_code ec;
  for (fs::directory_iterator it(parent, ec), end; !ec && it != end; it.increment(ec)) {
    if (!OfADeadNvsd(it->path().filename().string(), name_prefix)) continue;
    if (Pids(it->path() / "cgroup.procs").empty()) rmdir(it->path().c_str());
  }
}

}  // namespace

std::unique_ptr<VariantCgroups> VariantCgroups::Open(const std::string& name, std::string* why_not) {
  if (geteuid() != 0) {
    *why_not = "nvsd is not root";
    return nullptr;
  }
  const std::string pids_mount = MountOf("pids");
  if (pids_mount.empty()) return OpenV2(name, why_not);
  const fs::path pids = fs::path(pids_mount) / fs::path(OwnCgroup("pids")).relative_path() / name;
  const std::string prefix = name.substr(0, name.rfind('.') + 1);  // "nvsd."
  RemoveStale(pids.parent_path(), prefix);
  std::error_code ec;
  fs::create_directories(pids, ec);
  if (ec) {
    *why_not = pids.string() + ": " + ec.message();
    return nullptr;
  }
  fs::path freezer;
  if (const std::string freezer_mount = MountOf("freezer"); !freezer_mount.empty()) {
    freezer = fs::path(freezer_mount) / fs::path(OwnCgroup("freezer")).relative_path() / name;
    RemoveStale(freezer.parent_path(), prefix);
    fs::create_directories(freezer, ec);
    if (ec) freezer.clear();
  }
  return std::unique_ptr<VariantCgroups>(new VariantCgroups(Kind::kV1, pids, freezer));
}

// cgroup v2 (the unified hierarchy, as on current Debian and systemd
// hosts): nvsd's folder NAME under its own cgroup, which nvsd's user must
// be able to write (root, or a delegated subtree: systemd's Delegate=yes).
// Only a cgroup without processes of its own may hand controllers down,
// so pids.max is set when "pids" can be enabled in the subtree_control of
// nvsd's cgroup (nvsd first moves itself out of it into a leaf, see
// below) and of its folder. Without it, each variant still has its own
// cgroup, killed as a whole, but no process-count cap; the starting log
// line says so.
std::unique_ptr<VariantCgroups> VariantCgroups::OpenV2(const std::string& name, std::string* why_not) {
  const std::string mount = MountOf("");
  if (mount.empty()) {
    *why_not = "neither a cgroup v1 pids hierarchy nor a cgroup v2 hierarchy is mounted";
    return nullptr;
  }
  const std::string own = OwnCgroup("");
  if (own.empty()) {
    *why_not = "nvsd's cgroup v2 folder is not in /proc/self/cgroup";
    return nullptr;
  }
  const fs::path parent = fs::path(mount) / fs::path(own).relative_path();
  const fs::path base = parent / name;
  const std::string prefix = name.substr(0, name.rfind('.') + 1);
  RemoveStale(parent, prefix);
  RemoveEmptyLeaves(parent, "supervisor.");
  if (mkdir(base.c_str(), 0755) != 0 && errno != EEXIST) {
    *why_not = base.string() + ": " + std::strerror(errno) + " (nvsd's cgroup is not delegated to its user)";
    return nullptr;
  }
  std::string no_pids;
  if (!HasWord(parent / "cgroup.subtree_control", "pids")) {
    if (!HasWord(parent / "cgroup.controllers", "pids")) {
      no_pids = "the pids controller is not offered to nvsd's cgroup (" + (parent / "cgroup.controllers").string() + ")";
    } else if (!WriteText(parent / "cgroup.subtree_control", "+pids")) {
      // A cgroup with processes of its own cannot hand controllers down,
      // and nvsd is one of them (under systemd, the only one): nvsd moves
      // itself into a leaf beside its variants' folder, as a delegated
      // service should (supervisor.PID; emptied by then, removed by the
      // next start), and tries again.
      // If that does not do it either (other processes share the cgroup),
      // nvsd goes back where it was and removes the leaf.
      const int refused = errno;
      const fs::path leaf = parent / ("supervisor." + name.substr(name.rfind('.') + 1));
      const std::string self = std::to_string(getpid());
      bool enabled = false;
      if (refused == EBUSY && (mkdir(leaf.c_str(), 0755) == 0 || errno == EEXIST)) {
        if (WriteText(leaf / "cgroup.procs", self)) {
          enabled = WriteText(parent / "cgroup.subtree_control", "+pids");
          if (!enabled) WriteText(parent / "cgroup.procs", self);
        }
        if (!enabled) rmdir(leaf.c_str());
      }
      if (!enabled) {
        no_pids = "pids cannot be enabled in " + (parent / "cgroup.subtree_control").string() + ": " +
                  std::strerror(refused) +
                  (refused == EBUSY ? " (other processes share nvsd's cgroup: give nvsd one of its own)" : "");
      }
    }
  }
  if (no_pids.empty() && !HasWord(base / "cgroup.subtree_control", "pids") &&
      !WriteText(base / "cgroup.subtree_control", "+pids")) {
    no_pids = "pids cannot be enabled in " + (base / "cgroup.subtree_control").string() + ": " + std::strerror(errno);
  }
  auto out = std::unique_ptr<VariantCgroups>(new VariantCgroups(Kind::kV2, base, {}));
  out->no_pids_limit_ = no_pids;
  return out;
}

std::string VariantCgroups::Describe() const {
  if (kind_ == Kind::kV1) {
    return freezer_.empty() ? "a cgroup per variant (v1 pids) and a child subreaper"
                            : "a cgroup per variant (v1 pids, freezer) and a child subreaper";
  }
  if (no_pids_limit_.empty()) return "a cgroup per variant (v2, pids.max) and a child subreaper";
  return "a cgroup per variant (v2, no process-count cap: " + no_pids_limit_ + ") and a child subreaper";
}

VariantCgroups::~VariantCgroups() {
  for (const auto& identity : identities()) Destroy(identity);
  Retry();
  std::error_code ec;
  fs::remove(pids_, ec);
  if (!freezer_.empty()) fs::remove(freezer_, ec);
}

Result<std::vector<fs::path>> VariantCgroups::Create(const std::string& identity, std::uint64_t pids_max) {
  if (made_.count(identity) != 0) Destroy(identity);
  std::vector<fs::path> procs;
  const fs::path dir = pids_ / identity;
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::Error(dir.string() + ": " + std::strerror(errno));
  }
  if (kind_ == Kind::kV2) {
    if (no_pids_limit_.empty() && !WriteText(dir / "pids.max", std::to_string(pids_max))) {
      return Status::Error((dir / "pids.max").string() + ": " + std::strerror(errno));
    }
    // (v2 has no "tasks" file outside threaded cgroups: the whole process
    // joins through cgroup.procs, which takes the kernel's global
    // threadgroup lock; on v1 the thread alone joins, faster: see below.)
    made_[identity] = false;
    return std::vector<fs::path>{dir / "cgroup.procs"};
  }
  if (!WriteText(dir / "pids.max", std::to_string(pids_max))) {
    return Status::Error((dir / "pids.max").string() + ": " + std::strerror(errno));
  }
  // The child joins through "tasks", not "cgroup.procs": between fork and
  // exec it has one thread, so moving that thread moves the process (what
  // it starts later is born inside). Moving a whole process takes the
  // kernel's global threadgroup lock, whose first taking after a quiet
  // spell waits out an RCU grace period: 6-17 ms measured here on every
  // restart, spent inside the spawn, on nvsd's loop. Moving the writer's
  // own single thread ("0") skips that lock: about 30 us.
  procs.push_back(dir / "tasks");
  if (!freezer_.empty()) {
    const fs::path frozen = freezer_ / identity;
    if (mkdir(frozen.c_str(), 0755) == 0 || errno == EEXIST) procs.push_back(frozen / "tasks");
  }
  made_[identity] = false;
  return procs;
}

std::vector<pid_t> VariantCgroups::Empty(const fs::path& pids_dir, const fs::path& freezer_dir) {
  if (kind_ == Kind::kV2) return EmptyV2(pids_dir);
  // Frozen, nothing in it can fork while it is emptied; then each is killed.
  const bool frozen = !freezer_dir.empty() && fs::exists(freezer_dir) && WriteText(freezer_dir / "freezer.state", "FROZEN");
  if (frozen) {
    for (int i = 0; i < 100 && ReadWord(freezer_dir / "freezer.state") == "FREEZING"; ++i) poll(nullptr, 0, 1);
  }
  std::set<pid_t> killed;
  for (int round = 0; round < 100; ++round) {
    const auto pids = Pids(pids_dir / "cgroup.procs");
    bool more = false;
    for (pid_t pid : pids) {
      if (killed.insert(pid).second) {
        kill(pid, SIGKILL);
        more = true;
      }
    }
    if (!more) break;
  }
  if (frozen) WriteText(freezer_dir / "freezer.state", "THAWED");  // (killed processes die once thawed)
  return {killed.begin(), killed.end()};
}

std::vector<pid_t> VariantCgroups::Destroy(const std::string& identity) {
  if (made_.count(identity) == 0) return {};
  const fs::path freezer_dir = freezer_.empty() ? fs::path() : freezer_ / identity;
  auto killed = Empty(pids_ / identity, freezer_dir);
  made_[identity] = true;
  Retry();
  return killed;
}

void VariantCgroups::Retry() {
  for (auto it = made_.begin(); it != made_.end();) {
    if (!it->second) {
      ++it;
      continue;
    }
    // (rmdir fails while a killed process is not reaped yet: tried again later.)
    const fs::path dir = pids_ / it->first;
    if (!Pids(dir / "cgroup.procs").empty()) Empty(dir, freezer_.empty() ? fs::path() : freezer_ / it->first);
    const bool gone = rmdir(dir.c_str()) == 0 || errno == ENOENT;
    if (!freezer_.empty()) rmdir((freezer_ / it->first).c_str());
    it = gone ? made_.erase(it) : std::next(it);
  }
}

std::vector<std::string> VariantCgroups::identities() const {
  std::vector<std::string> out;
  for (const auto& [identity, pending] : made_) {
    if (!pending) out.push_back(identity);
  }
  return out;
}

fs::path VariantCgroups::Where(const std::string& identity) const {
  return made_.count(identity) != 0 ? pids_ / identity : fs::path();
}

}  // namespace nvs::supervisor
