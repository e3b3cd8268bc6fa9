// Quarantine reports on disk (ARCHITECTURE.md §6): one JSON file per quarantined
// (or no-quorum) command in STATE_DIR/quarantine/, written atomically (write,
// fsync, rename), and the block list of fingerprints rebuilt from them.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "nvs/status.h"
#include "nvs/supervisor/state_dir.h"

namespace nvs::supervisor {

class QuarantineStore {
 public:
  // Opens (creating if needed) the folder and loads every report in it. A
  // report that cannot be read (not JSON, no string id, fingerprint and
  // status, or nested deeper than protocol::kMaxDocumentJsonDepth) is named
  // in `warnings` and skipped, never fatal.
  // The reports are in `folder` of `state` (which must outlive the store;
  // nvsd's is "quarantine"), read and written only through it (never
  // through a link, nothing but regular files).
  static Result<QuarantineStore> Open(StateDir& state, const std::string& folder, std::vector<std::string>& warnings);
  // The same over the folder `dir` itself (created if needed), for tools
  // and tests.
  static Result<QuarantineStore> Open(const std::filesystem::path& dir, std::vector<std::string>& warnings);

  // True when a report with status "blocked" or "rejected" (blocked for
  // good by a person) has this fingerprint; sets the report's id.
  bool IsBlocked(const std::string& fingerprint, std::string* report_id = nullptr) const;

  // Writes a report (a JSON object text with at least "id", "fingerprint"
  // and "status") atomically, replacing any report of that id, and updates
  // the block list.
  Status Write(const std::string& id, const std::string& report_json);

  // A person's decision (release, reject): the report is written first and
  // the block list changes only once it is on disk, so a decision that
  // cannot be recorded does not take effect.
  Status WriteThenIndex(const std::string& id, const std::string& report_json);

  // Writes a side file next to the reports (e.g. a pre-command snapshot);
  // returns its file name.
  Result<std::string> WriteAttachment(const std::string& name, const std::string& content);

  // The report text by id; nullopt when there is none, or it is nested
  // deeper than protocol::kMaxDocumentJsonDepth (nvsd never writes one:
  // it would overflow the stack of whoever dumps or copies it).
  std::optional<std::string> Read(const std::string& id) const;

  // A side file's text by the name WriteAttachment gave it; nullopt when
  // there is none, the name is not such a name (a path elsewhere, such as
  // "/dev/zero" or "../x", or ""), or it is nested deeper than
  // protocol::kMaxDocumentJsonDepth.
  std::optional<std::string> ReadAttachment(const std::string& name) const;

  std::size_t blocked_count() const { return blocked_.size(); }
  // Every report's id, oldest first (ids start with the sequence number).
  std::vector<std::string> ids() const;
  std::size_t report_count() const { return status_of_.size(); }

 private:
  QuarantineStore(StateDir& state, std::string folder) : state_(&state), folder_(std::move(folder)) {}
  void Index(const std::string& id, const std::string& fingerprint, const std::string& status);
  std::string PathOf(const std::string& name) const { return folder_.empty() ? name : folder_ + "/" + name; }
  Status WriteFile(const std::string& name, const std::string& content);
  std::optional<std::string> ReadFile(const std::string& name) const;

  std::shared_ptr<StateDir> owned_;  // the path form's own state dir
  StateDir* state_;
  std::string folder_;
  std::map<std::string, std::string> blocked_;    // fingerprint -> report id
  std::map<std::string, std::string> status_of_;  // report id -> status
  std::map<std::string, std::string> fingerprint_of_;
};

// Readers of a report for the quarantine review (protocol/CLIENT.md §2).
// A report is a file someone may have edited: they take any JSON value and
// never throw.

// What `list` shows of a report: its id, status, time, seq, verdict,
// fingerprint, command, reason and outcomes, the outcomes without their
// stderr tails and results. An empty object when `report` is not an object.
nlohmann::json ReportSummary(const nlohmann::json& report);

// The name of the report's pre-command snapshot (pre_state.snapshot, for
// QuarantineStore::ReadAttachment); "" when absent or not a string.
std::string SnapshotFileName(const nlohmann::json& report);

// The report's status; "" when absent or not a string.
std::string ReportStatus(const nlohmann::json& report);

}  // namespace nvs::supervisor
