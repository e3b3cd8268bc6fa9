#include "nvs/supervisor/state_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/statvfs.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace nvs::supervisor {
namespace {

Status Failure(int error_number, const std::string& what, StorageError* error) {
  if (error != nullptr) *error = {error_number, what + ": " + std::strerror(error_number)};
  return Status::Error(what + ": " + std::strerror(error_number));
}

// The parts of a relative path, or an empty list when it is not one.
std::vector<std::string> Parts(const std::string& path) {
  std::vector<std::string> parts;
  if (path.empty() || path.front() == '/') return {};
  std::size_t start = 0;
  while (start <= path.size()) {
    const auto end = std::min(path.find('/', start), path.size());
    const std::string part = path.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return {};
    parts.push_back(part);
    start = end + 1;
  }
  return parts;
}

class PosixFile : public StateFile {
 public:
  PosixFile(int fd, std::uint64_t size, std::string where) : fd_(fd), size_(size), where_(std::move(where)) {}
  ~PosixFile() override { close(fd_); }

  Result<std::size_t> Append(std::string_view bytes, StorageError* error) override {
    for (;;) {
      const ssize_t n = pwrite(fd_, bytes.data(), bytes.size(), static_cast<off_t>(size_));
      if (n >= 0) {
        size_ += static_cast<std::uint64_t>(n);
        return static_cast<std::size_t>(n);
      }
      if (errno == EINTR) continue;
      return Failure(errno, where_ + ": write", error);
    }
  }
  Status Sync(StorageError* error) override {
    if (fdatasync(fd_) != 0) return Failure(errno, where_ + ": fdatasync", error);
    return Status::Ok();
  }
  Status Truncate(std::uint64_t size, StorageError* error) override {
    if (ftruncate(fd_, static_cast<off_t>(size)) != 0) return Failure(errno, where_ + ": truncate", error);
    if (fsync(fd_) != 0) return Failure(errno, where_ + ": fsync", error);
    size_ = size;
    return Status::Ok();
  }
  std::uint64_t size() const override { return size_; }

 private:
  int fd_;
  std::uint64_t size_;
  std::string where_;
};

}  // namespace

std::string DescribeStorageError(int error_number) {
  switch (error_number) {
    case ENOSPC: return "the disk is full";
    case EDQUOT: return "the disk quota is exceeded";
    case EROFS: return "the file system is read-only";
    case EIO: return "an I/O error";
    case EACCES:
    case EPERM: return "permission denied";
    default: return error_number != 0 ? std::strerror(error_number) : "an unknown error";
  }
}

// ---- strict modes ----------------------------------------------------------------

namespace {

std::string OwnerName(uid_t uid) {
  std::string out = "uid " + std::to_string(uid);
  if (const passwd* p = getpwuid(uid); p != nullptr) out += " (" + std::string(p->pw_name) + ")";
  return out;
}

}  // namespace

Status CheckOwnPath(const std::filesystem::path& path, bool directory) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return Status::Error(path.string() + ": " + std::strerror(errno));
  if (S_ISLNK(st.st_mode)) {
    return Status::Error(path.string() + " is a symbolic link: nvsd follows no link in its state dir (another user "
                         "could point it at a file of theirs, or at one of yours); remove it");
  }
  if (st.st_uid != geteuid()) {
    return Status::Error(path.string() + " is owned by " + OwnerName(st.st_uid) + ", not by nvsd's user (" +
                         OwnerName(geteuid()) + "): whoever owns it can change what nvsd reads; chown it, or use "
                         "another state_dir");
  }
  if (directory && !S_ISDIR(st.st_mode)) return Status::Error(path.string() + " is not a folder");
  if ((S_ISDIR(st.st_mode) || S_ISREG(st.st_mode)) && (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Status::Error(path.string() + " can be written by group or others (mode " + mode +
                         "): make it owner-only (chmod go-w)");
  }
  return Status::Ok();
}

Status CheckAncestors(const std::filesystem::path& path) {
  // A link among them is followed by every open: it must be root's or
  // nvsd's user's own, and the folders checked are those it leads to.
  for (std::filesystem::path at = path.parent_path(); !at.empty(); at = at.parent_path()) {
    struct stat st {};
    if (lstat(at.c_str(), &st) == 0 && S_ISLNK(st.st_mode) && st.st_uid != 0 && st.st_uid != geteuid()) {
      return Status::Error(path.string() + ": the link " + at.string() + " above it is owned by " +
                           OwnerName(st.st_uid) + ", who could point it elsewhere");
    }
    if (at == at.parent_path()) break;
  }
  std::error_code ec;
  const std::filesystem::path real = std::filesystem::canonical(path, ec);
  if (ec) return Status::Error(path.string() + ": " + ec.message());
  for (std::filesystem::path at = real.parent_path(); !at.empty(); at = at.parent_path()) {
    struct stat st {};
    if (stat(at.c_str(), &st) != 0) return Status::Error(at.string() + ": " + std::strerror(errno));
    if (st.st_uid != 0 && st.st_uid != geteuid()) {
      return Status::Error(path.string() + ": the folder " + at.string() + " above it is owned by " +
                           OwnerName(st.st_uid) + ", who could replace it; keep the state dir under folders owned by "
                           "root or nvsd's user");
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (st.st_mode & S_ISVTX) == 0) {
      return Status::Error(path.string() + ": the folder " + at.string() + " above it can be written by group or "
                           "others (and is not sticky), who could replace it; keep the state dir elsewhere (e.g. "
                           "/var/lib/nvs)");
    }
    if (at == at.parent_path()) break;
  }
  return Status::Ok();
}

Status CheckOwnTree(const std::filesystem::path& dir, const std::vector<std::string>& subfolders) {
  Status own = CheckOwnPath(dir, /*directory=*/true);
  if (!own.ok()) return own;
  std::vector<std::filesystem::path> folders = {dir};
  for (const auto& sub : subfolders) {
    struct stat st {};
    if (lstat((dir / sub).c_str(), &st) == 0) folders.push_back(dir / sub);
  }
  for (const auto& folder : folders) {
    DIR* d = opendir(folder.c_str());
    if (d == nullptr) return Status::Error(folder.string() + ": " + std::strerror(errno));
    Status result = Status::Ok();
    while (const dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      result = CheckOwnPath(folder / name, /*directory=*/false);
      if (!result.ok()) break;
    }
    closedir(d);
    if (!result.ok()) return result;
  }
  return Status::Ok();
}

// ---- PosixStateDir --------------------------------------------------------------

Result<std::unique_ptr<PosixStateDir>> PosixStateDir::Open(const std::filesystem::path& root) {
  const int fd = open(root.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return Status::Error(root.string() + ": " + std::strerror(errno));
  return std::unique_ptr<PosixStateDir>(new PosixStateDir(root, fd));
}

PosixStateDir::~PosixStateDir() {
  if (lock_fd_ >= 0) close(lock_fd_);
  close(fd_);
}

Status PosixStateDir::Lock() {
  const int fd = openat(fd_, "nvsd.lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Status::Error(Where("nvsd.lock").string() + ": cannot open the state dir's lock: " + std::strerror(errno) +
                         (errno == EROFS ? " (the state dir is read-only)" : ""));
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error_number = errno;
    char holder[32] = {};
    const ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
    close(fd);
    std::string pid = n > 0 ? std::string(holder, static_cast<std::size_t>(n)) : "";
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    if (error_number == EWOULDBLOCK) {
      return Status::Error("state dir " + root_.string() + " is in use by another nvsd (pid " +
                           (pid.empty() ? std::string("unknown") : pid) + "): two nvsd on one state dir would both "
                           "append to its journal; stop that one first, or give this one its own state_dir");
    }
    return Status::Error(Where("nvsd.lock").string() + ": cannot lock: " + std::strerror(error_number));
  }
  const std::string pid = std::to_string(getpid()) + "\n";
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    // The lock holds; only the pid note is missing.
  }
  lock_fd_ = fd;
  return Status::Ok();
}

std::filesystem::path PosixStateDir::Where(const std::string& path) const { return root_ / path; }

bool PosixStateDir::ReadOnly() const {
  struct statvfs fs {};
  if (statvfs(root_.c_str(), &fs) == 0 && (fs.f_flag & ST_RDONLY) != 0) return true;
  // Linux 6.x's ext4 no longer marks the mount read-only after an error
  // (it shows `rw,...,emergency_ro`, and statvfs says writable), but it
  // refuses every open for writing with EROFS: ask it so. The lock file
  // exists while nvsd runs; opening it without O_CREAT or O_TRUNC changes
  // nothing on a healthy file system.
  const int fd = openat(fd_, "nvsd.lock", O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) {
    close(fd);
    return false;
  }
  return errno == EROFS;
}

Result<std::pair<int, std::string>> PosixStateDir::Parent(const std::string& path, StorageError* error) const {
  const auto parts = Parts(path);
  if (parts.empty()) return Status::Error("not a path inside the state dir: '" + path + "'");
  int dir = dup(fd_);
  if (dir < 0) return Failure(errno, root_.string(), error);
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    const int next = openat(dir, parts[i].c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    const int error_number = errno;
    close(dir);
    if (next < 0) return Failure(error_number, Where(path).parent_path().string(), error);
    dir = next;
  }
  return std::make_pair(dir, parts.back());
}

Result<std::unique_ptr<StateFile>> PosixStateDir::OpenForAppend(const std::string& path, StorageError* error) {
  auto parent = Parent(path, error);
  if (!parent.ok()) return parent.status();
  const auto [dir, name] = parent.value();
  const int fd = openat(dir, name.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  const int error_number = errno;
  close(dir);
  if (fd < 0) return Failure(error_number, Where(path).string(), error);
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return Failure(S_ISREG(st.st_mode) ? errno : EINVAL, Where(path).string() + " (not a regular file)", error);
  }
  return std::unique_ptr<StateFile>(new PosixFile(fd, static_cast<std::uint64_t>(st.st_size), Where(path).string()));
}

Result<std::string> PosixStateDir::Read(const std::string& path, bool* missing) {
  if (missing != nullptr) *missing = false;
  auto parent = Parent(path, nullptr);
  if (!parent.ok()) {
    if (missing != nullptr) *missing = true;
    return parent.status();
  }
  const auto [dir, name] = parent.value();
  // (O_NONBLOCK: a FIFO planted here must not stop nvsd; it is refused below.)
  const int fd = openat(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  const int error_number = errno;
  close(dir);
  if (fd < 0) {
    if (missing != nullptr) *missing = error_number == ENOENT;
    return Status::Error(Where(path).string() + ": " + std::strerror(error_number));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (own_files_only_ && st.st_uid != geteuid())) {
    close(fd);
    return Status::Error(Where(path).string() + ": not a regular file of this user");
  }
  // Read straight into the string, sized once from the file's size (a
  // journal segment is 64 MiB: read through a small buffer into a growing
  // string, it was copied three times over and took 150 ms); one byte more,
  // to see the end in the same loop; grown should the file have grown.
  std::string content(static_cast<std::size_t>(st.st_size) + 1, '\0');
  std::size_t size = 0;
  for (;;) {
    if (size == content.size()) content.resize(content.size() * 2);
    const ssize_t n = read(fd, content.data() + size, content.size() - size);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      const std::string message = std::strerror(errno);
      close(fd);
      return Status::Error(Where(path).string() + ": " + message);
    }
    size += static_cast<std::size_t>(n);
  }
  close(fd);
  content.resize(size);
  return content;
}

bool PosixStateDir::Exists(const std::string& path) {
  auto parent = Parent(path, nullptr);
  if (!parent.ok()) return false;
  const auto [dir, name] = parent.value();
  struct stat st {};
  const bool exists = fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
  close(dir);
  return exists;
}

Status PosixStateDir::WriteAtomically(const std::string& path, std::string_view content, StorageError* error) {
  auto parent = Parent(path, error);
  if (!parent.ok()) return parent.status();
  const int dir = parent.value().first;  // (not a structured binding: clang 14 cannot capture one)
  const std::string name = parent.value().second;
  const std::string temporary = name + ".tmp";
  const auto fail = [&](const std::string& what) {
    const int error_number = errno;
    unlinkat(dir, temporary.c_str(), 0);
    close(dir);
    return Failure(error_number, what, error);
  };
  unlinkat(dir, temporary.c_str(), 0);  // (a leftover, or a link planted there: never followed)
  const int fd = openat(dir, temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return fail(Where(path).string() + ".tmp");
  std::size_t written = 0;
  while (written < content.size()) {
    const ssize_t n = write(fd, content.data() + written, content.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error_number = errno;
      close(fd);
      errno = error_number;
      return fail(Where(path).string() + ".tmp: write");
    }
    written += static_cast<std::size_t>(n);
  }
  if (fsync(fd) != 0) {
    const int error_number = errno;
    close(fd);
    errno = error_number;
    return fail(Where(path).string() + ".tmp: fsync");
  }
  close(fd);
  if (renameat(dir, temporary.c_str(), dir, name.c_str()) != 0) return fail(Where(path).string() + ": rename");
  if (fsync(dir) != 0) {
    const int error_number = errno;
    close(dir);
    return Failure(error_number, Where(path).parent_path().string() + ": fsync", error);
  }
  close(dir);
  return Status::Ok();
}

Status PosixStateDir::Rename(const std::string& from, const std::string& to, StorageError* error) {
  auto source = Parent(from, error);
  if (!source.ok()) return source.status();
  auto target = Parent(to, error);
  if (!target.ok()) {
    close(source.value().first);
    return target.status();
  }
  const int rc = renameat(source.value().first, source.value().second.c_str(), target.value().first,
                          target.value().second.c_str());
  const int error_number = errno;
  const int synced = rc == 0 ? fsync(target.value().first) : 0;
  close(source.value().first);
  close(target.value().first);
  if (rc != 0) return Failure(error_number, Where(from).string() + " -> " + Where(to).string(), error);
  if (synced != 0) return Failure(errno, Where(to).parent_path().string() + ": fsync", error);
  return Status::Ok();
}

Status PosixStateDir::Remove(const std::string& path, StorageError* error) {
  auto parent = Parent(path, error);
  if (!parent.ok()) return parent.status();
  const auto [dir, name] = parent.value();
  const int rc = unlinkat(dir, name.c_str(), 0);
  const int error_number = errno;
  close(dir);
  if (rc != 0 && error_number != ENOENT) return Failure(error_number, Where(path).string(), error);
  return Status::Ok();
}

Result<std::vector<std::string>> PosixStateDir::List(const std::string& dir_path) {
  int dir = -1;
  if (dir_path.empty()) {
    dir = dup(fd_);
  } else {
    auto parent = Parent(dir_path, nullptr);
    if (!parent.ok()) return std::vector<std::string>();
    dir = openat(parent.value().first, parent.value().second.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    close(parent.value().first);
  }
  if (dir < 0) {
    if (errno == ENOENT) return std::vector<std::string>();
    return Status::Error(Where(dir_path).string() + ": " + std::strerror(errno));
  }
  DIR* stream = fdopendir(dir);
  if (stream == nullptr) {
    close(dir);
    return Status::Error(Where(dir_path).string() + ": " + std::strerror(errno));
  }
  std::vector<std::string> names;
  while (const dirent* entry = readdir(stream)) {
    const std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(stream);
  std::sort(names.begin(), names.end());
  return names;
}

Status PosixStateDir::MakeDir(const std::string& dir_path, StorageError* error) {
  auto parent = Parent(dir_path, error);
  if (!parent.ok()) return parent.status();
  const auto [dir, name] = parent.value();
  const int rc = mkdirat(dir, name.c_str(), 0700);
  const int error_number = errno;
  close(dir);
  if (rc != 0 && error_number != EEXIST) return Failure(error_number, Where(dir_path).string(), error);
  return Status::Ok();
}

Status PosixStateDir::SyncDir(const std::string& dir_path, StorageError* error) {
  int dir = -1;
  if (dir_path.empty()) {
    dir = dup(fd_);
  } else {
    auto parent = Parent(dir_path, error);
    if (!parent.ok()) return parent.status();
    dir = openat(parent.value().first, parent.value().second.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    close(parent.value().first);
  }
  if (dir < 0) return Failure(errno, Where(dir_path).string(), error);
  const int rc = fsync(dir);
  const int error_number = errno;
  close(dir);
  if (rc != 0) return Failure(error_number, Where(dir_path).string() + ": fsync", error);
  return Status::Ok();
}

}  // namespace nvs::supervisor
