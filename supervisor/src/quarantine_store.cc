#include "quarantine_store.h"

#include <algorithm>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "nvs/protocol/messages.h"

namespace nvs::supervisor {
namespace {

using nlohmann::json;

bool TooDeep(const std::string& text) {
  return protocol::JsonNestingDepth(text, protocol::kMaxDocumentJsonDepth) > protocol::kMaxDocumentJsonDepth;
}

// A file of this folder, never through a link, and only one of nvsd's user:
// `nvs quarantine show` once returned a root-only file through a linked
// snapshot.
std::optional<std::string> ReadText(const std::filesystem::path& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return std::nullopt;
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
    close(fd);
    return std::nullopt;
  }
  std::string text;
  char buffer[65536];
  for (;;) {
    const ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
  }
  close(fd);
  return text;
}

bool ValidId(const std::string& id) {
  if (id.empty() || id.size() > 100) return false;
  for (char c : id) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
  }
  return id[0] != '.';
}

}  // namespace

Status WriteFileAtomically(const std::filesystem::path& path, const std::string& content) {
  const std::string temporary = path.string() + ".tmp";
  // A leftover (or a link planted there) is removed, never written through:
  // a linked .tmp once made a release overwrite a root file.
  unlink(temporary.c_str());
  const int fd = open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return Status::Error(temporary + ": " + std::strerror(errno));
  std::size_t written = 0;
  while (written < content.size()) {
    const ssize_t n = write(fd, content.data() + written, content.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      const std::string error = std::strerror(errno);
      close(fd);
      unlink(temporary.c_str());
      return Status::Error(temporary + ": " + error);
    }
    written += static_cast<std::size_t>(n);
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    const std::string error = std::strerror(errno);
    unlink(temporary.c_str());
    return Status::Error(temporary + ": " + error);
  }
  if (rename(temporary.c_str(), path.c_str()) != 0) {
    const std::string error = std::strerror(errno);
    unlink(temporary.c_str());
    return Status::Error(path.string() + ": " + error);
  }
  const int dir = open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    fsync(dir);
    close(dir);
  }
  return Status::Ok();
}

Result<QuarantineStore> QuarantineStore::Open(const std::filesystem::path& dir, std::vector<std::string>& warnings) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::Error(dir.string() + ": " + ec.message());
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
  QuarantineStore store(dir);
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const auto& path = entry.path();
    if (path.extension() != ".json" || path.stem().extension() == ".state") continue;
    const std::string text = ReadText(path).value_or("");
    const json report = TooDeep(text) ? json(json::value_t::discarded)
                                      : json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (report.is_discarded() || !report.is_object() || !report.contains("id") || !report["id"].is_string() ||
        !report.contains("fingerprint") || !report["fingerprint"].is_string() || !report.contains("status") ||
        !report["status"].is_string()) {
      warnings.push_back(path.string() + ": not a quarantine report (skipped)");
      continue;
    }
    store.Index(report["id"].get<std::string>(), report["fingerprint"].get<std::string>(),
                report["status"].get<std::string>());
  }
  if (ec) return Status::Error(dir.string() + ": " + ec.message());
  return store;
}

void QuarantineStore::Index(const std::string& id, const std::string& fingerprint, const std::string& status) {
  if (auto it = fingerprint_of_.find(id); it != fingerprint_of_.end()) {
    auto blocked = blocked_.find(it->second);
    if (blocked != blocked_.end() && blocked->second == id) blocked_.erase(blocked);
  }
  status_of_[id] = status;
  fingerprint_of_[id] = fingerprint;
  if (status == "blocked" || status == "rejected") blocked_[fingerprint] = id;
}

std::vector<std::string> QuarantineStore::ids() const {
  std::vector<std::pair<std::string, std::string>> order;  // (id without its q-/n- prefix, id)
  for (const auto& [id, status] : status_of_) order.emplace_back(id.size() > 2 ? id.substr(2) : id, id);
  std::sort(order.begin(), order.end());
  std::vector<std::string> out;
  for (auto& [key, id] : order) out.push_back(std::move(id));
  return out;
}

bool QuarantineStore::IsBlocked(const std::string& fingerprint, std::string* report_id) const {
  auto it = blocked_.find(fingerprint);
  if (it == blocked_.end()) return false;
  if (report_id != nullptr) *report_id = it->second;
  return true;
}

Status QuarantineStore::Write(const std::string& id, const std::string& report_json) {
  if (!ValidId(id)) return Status::Error("invalid report id '" + id + "'");
  const json report = json::parse(report_json, nullptr, /*allow_exceptions=*/false);
  if (report.is_discarded() || !report.is_object() || !report.contains("fingerprint") ||
      !report["fingerprint"].is_string() || !report.contains("status") || !report["status"].is_string()) {
    return Status::Error("report " + id + " lacks a fingerprint or status");
  }
  // The block list changes first: a poison command stays blocked (in memory)
  // even when the disk refuses the report.
  Index(id, report["fingerprint"].get<std::string>(), report["status"].get<std::string>());
  return WriteFileAtomically(dir_ / (id + ".json"), report.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
}

Status QuarantineStore::WriteThenIndex(const std::string& id, const std::string& report_json) {
  if (!ValidId(id)) return Status::Error("invalid report id '" + id + "'");
  const json report = json::parse(report_json, nullptr, /*allow_exceptions=*/false);
  if (report.is_discarded() || !report.is_object() || !report.contains("fingerprint") ||
      !report["fingerprint"].is_string() || !report.contains("status") || !report["status"].is_string()) {
    return Status::Error("report " + id + " lacks a fingerprint or status");
  }
  Status written =
      WriteFileAtomically(dir_ / (id + ".json"), report.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
  if (written.ok()) Index(id, report["fingerprint"].get<std::string>(), report["status"].get<std::string>());
  return written;
}

Result<std::string> QuarantineStore::WriteAttachment(const std::string& name, const std::string& content) {
  if (!ValidId(name)) return Status::Error("invalid attachment name '" + name + "'");
  Status written = WriteFileAtomically(dir_ / name, content);
  if (!written.ok()) return written;
  return name;
}

std::optional<std::string> QuarantineStore::Read(const std::string& id) const {
  if (!ValidId(id)) return std::nullopt;
  auto text = ReadText(dir_ / (id + ".json"));
  if (!text || TooDeep(*text)) return std::nullopt;
  return text;
}

std::optional<std::string> QuarantineStore::ReadAttachment(const std::string& name) const {
  if (!ValidId(name)) return std::nullopt;
  auto text = ReadText(dir_ / name);
  if (!text || TooDeep(*text)) return std::nullopt;
  return text;
}

json ReportSummary(const json& report) {
  json summary = json::object();
  if (!report.is_object()) return summary;
  for (const char* key : {"id", "status", "time", "seq", "verdict", "fingerprint", "command", "reason", "outcomes"}) {
    if (auto it = report.find(key); it != report.end()) summary[key] = *it;
  }
  if (auto outcomes = summary.find("outcomes"); outcomes != summary.end()) {
    for (auto& o : *outcomes) {  // an array's elements, an object's values, or a primitive itself
      if (!o.is_object()) continue;
      o.erase("stderr_tail");
      o.erase("result");
    }
  }
  return summary;
}

std::string SnapshotFileName(const json& report) {
  if (!report.is_object()) return "";
  auto pre_state = report.find("pre_state");
  if (pre_state == report.end() || !pre_state->is_object()) return "";
  auto snapshot = pre_state->find("snapshot");
  return snapshot != pre_state->end() && snapshot->is_string() ? snapshot->get<std::string>() : "";
}

std::string ReportStatus(const json& report) {
  if (!report.is_object()) return "";
  auto status = report.find("status");
  return status != report.end() && status->is_string() ? status->get<std::string>() : "";
}

}  // namespace nvs::supervisor
