#include "sim_storage.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace nvs::simulation {

using supervisor::StorageError;

namespace {

std::string ParentOf(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash);
}

}  // namespace

class MemoryStateDir::File : public supervisor::StateFile {
 public:
  File(MemoryStateDir& dir, std::string path, std::shared_ptr<Node> node)
      : dir_(dir), path_(std::move(path)), node_(std::move(node)) {}

  Result<std::size_t> Append(std::string_view bytes, StorageError* error) override {
    if (!dir_.Take(bytes.size())) return dir_.Fail(ENOSPC, dir_.Where(path_).string() + ": write", error);
    node_->data.append(bytes);
    return bytes.size();
  }
  Status Sync(StorageError* error) override {
    if (dir_.failing_syncs_ > 0) {
      --dir_.failing_syncs_;
      if (node_->data.size() > node_->synced) node_->lost.emplace_back(node_->synced, node_->data.size());
      return dir_.Fail(EIO, dir_.Where(path_).string() + ": fdatasync", error);
    }
    node_->synced = node_->data.size();
    return Status::Ok();
  }
  Status Truncate(std::uint64_t size, StorageError* error) override {
    if (dir_.failing_syncs_ > 0) {
      --dir_.failing_syncs_;
      return dir_.Fail(EIO, dir_.Where(path_).string() + ": ftruncate", error);
    }
    if (size < node_->data.size()) node_->data.resize(size);
    node_->synced = node_->data.size();  // (truncate, then fsync)
    for (auto& [from, to] : node_->lost) to = std::min(to, size);
    return Status::Ok();
  }
  std::uint64_t size() const override { return node_->data.size(); }

 private:
  MemoryStateDir& dir_;
  std::string path_;
  std::shared_ptr<Node> node_;
};

Status MemoryStateDir::Fail(int error_number, const std::string& what, StorageError* error) const {
  if (error != nullptr) *error = {error_number, what + ": " + std::strerror(error_number)};
  return Status::Error(what + ": " + std::strerror(error_number));
}

bool MemoryStateDir::Take(std::size_t n) {
  if (space_left_) {
    if (*space_left_ < n) return false;
    *space_left_ -= n;
  }
  bytes_written_ += n;
  return true;
}

void MemoryStateDir::PowerCut(std::mt19937_64& rng, bool torn) {
  for (auto& [path, node] : files_) {
    std::uint64_t keep = node->synced;
    if (torn && node->data.size() > keep) {
      keep += std::uniform_int_distribution<std::uint64_t>(0, node->data.size() - keep)(rng);
    }
    node->data.resize(keep);
    for (const auto& [from, to] : node->lost) {
      for (std::uint64_t i = from; i < std::min<std::uint64_t>(to, keep); ++i) node->data[i] = '\0';
    }
    node->lost.clear();
    node->synced = keep;
  }
}

std::vector<std::string> MemoryStateDir::Files() const {
  std::vector<std::string> out;
  for (const auto& [path, node] : files_) out.push_back(path);
  return out;
}

Result<std::unique_ptr<supervisor::StateFile>> MemoryStateDir::OpenForAppend(const std::string& path,
                                                                             StorageError* error) {
  if (!ParentOf(path).empty() && dirs_.count(ParentOf(path)) == 0) return Fail(ENOENT, Where(path).string(), error);
  auto& node = files_[path];
  if (!node) node = std::make_shared<Node>();
  return std::unique_ptr<supervisor::StateFile>(new File(*this, path, node));
}

Result<std::string> MemoryStateDir::Read(const std::string& path, bool* missing) {
  const auto it = files_.find(path);
  if (missing != nullptr) *missing = it == files_.end();
  if (it == files_.end()) return Status::Error(Where(path).string() + ": No such file or directory");
  return it->second->data;
}

bool MemoryStateDir::Exists(const std::string& path) { return files_.count(path) != 0 || dirs_.count(path) != 0; }

Status MemoryStateDir::WriteAtomically(const std::string& path, std::string_view content, StorageError* error) {
  if (!ParentOf(path).empty() && dirs_.count(ParentOf(path)) == 0) return Fail(ENOENT, Where(path).string(), error);
  if (!Take(content.size())) return Fail(ENOSPC, Where(path).string() + ".tmp: write", error);
  if (failing_syncs_ > 0) {
    --failing_syncs_;
    return Fail(EIO, Where(path).string() + ".tmp: fsync", error);
  }
  auto node = std::make_shared<Node>();
  node->data = std::string(content);
  node->synced = node->data.size();
  files_[path] = std::move(node);
  return Status::Ok();
}

Status MemoryStateDir::Rename(const std::string& from, const std::string& to, StorageError* error) {
  auto it = files_.find(from);
  if (it == files_.end()) return Fail(ENOENT, Where(from).string(), error);
  files_[to] = it->second;
  files_.erase(from);
  return Status::Ok();
}

Status MemoryStateDir::Remove(const std::string& path, StorageError* error) {
  if (files_.erase(path) == 0) return Fail(ENOENT, Where(path).string(), error);
  return Status::Ok();
}

Result<std::vector<std::string>> MemoryStateDir::List(const std::string& dir) {
  std::vector<std::string> names;
  const std::string prefix = dir.empty() ? "" : dir + "/";
  for (const auto& [path, node] : files_) {
    if (path.compare(0, prefix.size(), prefix) == 0 && path.find('/', prefix.size()) == std::string::npos) {
      names.push_back(path.substr(prefix.size()));
    }
  }
  for (const auto& d : dirs_) {
    if (d.compare(0, prefix.size(), prefix) == 0 && d.size() > prefix.size() &&
        d.find('/', prefix.size()) == std::string::npos) {
      names.push_back(d.substr(prefix.size()));
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

Status MemoryStateDir::MakeDir(const std::string& dir, StorageError*) {
  dirs_.insert(dir);
  return Status::Ok();
}

Status MemoryStateDir::SyncDir(const std::string&, StorageError* error) {
  if (failing_syncs_ > 0) {
    --failing_syncs_;
    return Fail(EIO, "fsync of a folder", error);
  }
  return Status::Ok();
}

std::filesystem::path MemoryStateDir::Where(const std::string& path) const {
  return std::filesystem::path("/sim/state") / path;
}

}  // namespace nvs::simulation
