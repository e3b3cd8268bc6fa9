#include "quarantine_store.h"

#include <algorithm>
#include <cctype>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "nvs/protocol/messages.h"

namespace nvs::supervisor {
namespace {

using nlohmann::json;

bool TooDeep(const std::string& text) {
  return protocol::JsonNestingDepth(text, protocol::kMaxDocumentJsonDepth) > protocol::kMaxDocumentJsonDepth;
}

bool ValidId(const std::string& id) {
  if (id.empty() || id.size() > 100) return false;
  for (char c : id) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
  }
  return id[0] != '.';
}

}  // namespace

Result<QuarantineStore> QuarantineStore::Open(const std::filesystem::path& dir, std::vector<std::string>& warnings) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::Error(dir.string() + ": " + ec.message());
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
  auto opened = PosixStateDir::Open(dir);
  if (!opened.ok()) return opened.status();
  opened.value()->ReadOwnFilesOnly();
  std::shared_ptr<StateDir> owned = std::move(opened.value());
  auto store = Open(*owned, "", warnings);
  if (store.ok()) store.value().owned_ = std::move(owned);
  return store;
}

Result<QuarantineStore> QuarantineStore::Open(StateDir& state, const std::string& folder,
                                              std::vector<std::string>& warnings) {
  QuarantineStore store(state, folder);
  auto names = state.List(folder);
  if (!names.ok()) return names.status();
  for (const auto& name : names.value()) {
    const std::filesystem::path path(name);
    if (path.extension() != ".json" || path.stem().extension() == ".state") continue;
    const std::string text = store.ReadFile(name).value_or("");
    const json report = TooDeep(text) ? json(json::value_t::discarded)
                                      : json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (report.is_discarded() || !report.is_object() || !report.contains("id") || !report["id"].is_string() ||
        !report.contains("fingerprint") || !report["fingerprint"].is_string() || !report.contains("status") ||
        !report["status"].is_string()) {
      warnings.push_back(state.Where(store.PathOf(name)).string() + ": not a quarantine report (skipped)");
      continue;
    }
    store.Index(report["id"].get<std::string>(), report["fingerprint"].get<std::string>(),
                report["status"].get<std::string>());
  }
  return store;
}

// Written atomically (a temporary file, fsync, rename, fsync of the folder).
Status QuarantineStore::WriteFile(const std::string& name, const std::string& content) {
  StorageError error;
  return state_->WriteAtomically(PathOf(name), content, &error);
}

// Never through a link, and only a regular file of nvsd's user (the state
// dir's Read): `nvs quarantine show` once returned a root-only file through
// a linked snapshot.
std::optional<std::string> QuarantineStore::ReadFile(const std::string& name) const {
  auto text = state_->Read(PathOf(name));
  if (!text.ok()) return std::nullopt;
  return std::move(text.value());
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
  return WriteFile(id + ".json", report.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
}

Status QuarantineStore::WriteThenIndex(const std::string& id, const std::string& report_json) {
  if (!ValidId(id)) return Status::Error("invalid report id '" + id + "'");
  const json report = json::parse(report_json, nullptr, /*allow_exceptions=*/false);
  if (report.is_discarded() || !report.is_object() || !report.contains("fingerprint") ||
      !report["fingerprint"].is_string() || !report.contains("status") || !report["status"].is_string()) {
    return Status::Error("report " + id + " lacks a fingerprint or status");
  }
  Status written = WriteFile(id + ".json", report.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
  if (written.ok()) Index(id, report["fingerprint"].get<std::string>(), report["status"].get<std::string>());
  return written;
}

Result<std::string> QuarantineStore::WriteAttachment(const std::string& name, const std::string& content) {
  if (!ValidId(name)) return Status::Error("invalid attachment name '" + name + "'");
  Status written = WriteFile(name, content);
  if (!written.ok()) return written;
  return name;
}

std::optional<std::string> QuarantineStore::Read(const std::string& id) const {
  if (!ValidId(id)) return std::nullopt;
  auto text = ReadFile(id + ".json");
  if (!text || TooDeep(*text)) return std::nullopt;
  return text;
}

std::optional<std::string> QuarantineStore::ReadAttachment(const std::string& name) const {
  if (!ValidId(name)) return std::nullopt;
  auto text = ReadFile(name);
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
