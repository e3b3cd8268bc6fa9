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

// This process's cgroup in the v1 hierarchy of `controller` ("" if none).
std::string OwnCgroup(const std::string& controller) {
  std::ifstream in("/proc/self/cgroup");
  for (std::string line; std::getline(in, line);) {
    const auto a = line.find(':');
    const auto b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    std::stringstream list(line.substr(a + 1, b - a - 1));
    for (std::string c; std::getline(list, c, ',');) {
      if (c == controller) return line.substr(b + 1);
    }
  }
  return "";
}

// The mount point of the v1 hierarchy of `controller` ("" if none).
std::string MountOf(const std::string& controller) {
  std::ifstream in("/proc/self/mountinfo");
  for (std::string line; std::getline(in, line);) {
    const auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::stringstream tail(line.substr(dash + 3));
    std::string type, source, options;
    tail >> type >> source >> options;
    if (type != "cgroup") continue;
    std::stringstream opts(options);
    bool has = false;
    for (std::string o; std::getline(opts, o, ',');) has = has || o == controller;
    if (!has) continue;
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

// An nvsd that was killed (SIGKILL, a crash) left its folder NAME.PID
// behind, maybe with processes in it: those whose nvsd is gone are emptied
// (each process killed) and removed.
void RemoveStale(const fs::path& parent, const std::string& name_prefix) {
  std::error_code ec;
  for (fs::directory_iterator it(parent, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(name_prefix, 0) != 0) continue;
    const std::string pid = name.substr(name_prefix.size());
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (pid == std::to_string(getpid())) continue;
    std::string comm;
    std::ifstream(fs::path("/proc") / pid / "comm") >> comm;
    if (comm == "nvsd") continue;  // (alive: its own)
    for (fs::directory_iterator sub(it->path(), ec), done; !ec && sub != done; sub.increment(ec)) {
      if (!sub->is_directory(ec)) continue;
      for (pid_t p : Pids(sub->path() / "cgroup.procs")) kill(p, SIGKILL);
      rmdir(sub->path().c_str());  // (one with a process not reaped yet stays; the next start tries again)
    }
    rmdir(it->path().c_str());
  }
}

}  // namespace

std::unique_ptr<VariantCgroups> VariantCgroups::Open(const std::string& name, std::string* why_not) {
  if (geteuid() != 0) {
    *why_not = "nvsd is not root";
    return nullptr;
  }
  const std::string pids_mount = MountOf("pids");
  if (pids_mount.empty()) {
    *why_not = "no cgroup v1 pids hierarchy is mounted";
    return nullptr;
  }
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
  return std::unique_ptr<VariantCgroups>(new VariantCgroups(pids, freezer));
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
  if (!WriteText(dir / "pids.max", std::to_string(pids_max))) {
    return Status::Error((dir / "pids.max").string() + ": " + std::strerror(errno));
  }
  procs.push_back(dir / "cgroup.procs");
  if (!freezer_.empty()) {
    const fs::path frozen = freezer_ / identity;
    if (mkdir(frozen.c_str(), 0755) == 0 || errno == EEXIST) procs.push_back(frozen / "cgroup.procs");
  }
  made_[identity] = false;
  return procs;
}

int VariantCgroups::Empty(const fs::path& pids_dir, const fs::path& freezer_dir) {
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
  return static_cast<int>(killed.size());
}

int VariantCgroups::Destroy(const std::string& identity) {
  if (made_.count(identity) == 0) return 0;
  const fs::path freezer_dir = freezer_.empty() ? fs::path() : freezer_ / identity;
  const int killed = Empty(pids_ / identity, freezer_dir);
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
