// Quarantine reports (ARCHITECTURE.md §6): the JSON files in STATE_DIR/quarantine/
// that nvsd reads back at start (QuarantineStore::Open, to rebuild the block
// list), that `nvs replay REPORT` reads (LoadCommandLog: a report, or else a
// JSON-lines command log), and that `nvs quarantine export --html` turns into
// an incident page (QuarantineIncident, QuarantineModel, RenderHtml). A
// report is written by nvsd, but it is a file on disk: edited by hand,
// truncated, rotted.
//
// Properties: never a crash, an escaping throw or undefined behaviour; the
// store opens (a bad report is a warning, not a failure) and the review's
// replies serialise; LoadCommandLog fails with a message or gives commands in
// normal form; the page is built.
#include <nlohmann/json.hpp>

#include "fuzz_check.h"
#include "nvs/protocol/messages.h"
#include "nvs/replay/replay.h"
#include "nvs/report/html_report.h"
#include "quarantine_store.h"
#include "report_model.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The pre-command state a report may name (the seeds name this one).
constexpr std::string_view kSnapshot =
    R"({"inputs":2,"outputs":2,"routes":[1,0],"input_labels":["CAM 1",""],"output_labels":["PGM",""],)"
    R"("locks":[null,"panel-2"],"salvos":{}})";

// Writes the snapshot into `dir` once per process.
void ProvideSnapshot(const fs::path& dir) {
  if (!fs::exists(dir / "pre.state.json")) nvs::fuzz::WriteFile(dir / "pre.state.json", kSnapshot);
}

// nvsd: the store at start, then the review's `list`, `show` and the status
// check of `release`, as the supervisor runs them.
void CheckStore(std::string_view text) {
  const fs::path dir = nvs::fuzz::ScratchDir() / "quarantine";
  std::error_code ec;
  fs::create_directories(dir, ec);
  ProvideSnapshot(dir);
  nvs::fuzz::WriteFile(dir / "q-000000000007-0123abcd.json", text);
  std::vector<std::string> warnings;
  auto store = nvs::supervisor::QuarantineStore::Open(dir, warnings);
  NVS_FUZZ_CHECK(store.ok());
  NVS_FUZZ_CHECK(store.value().report_count() + warnings.size() == 1);
  for (const auto& id : store.value().ids()) {
    const auto report_text = store.value().Read(id);
    if (!report_text) continue;
    const json report = json::parse(*report_text, nullptr, /*allow_exceptions=*/false);
    if (!report.is_object()) continue;
    const json list = {{"reports", json::array({nvs::supervisor::ReportSummary(report)})}};
    json pre_state;
    if (auto state = store.value().ReadAttachment(nvs::supervisor::SnapshotFileName(report))) {
      pre_state = json::parse(*state, nullptr, /*allow_exceptions=*/false);
      if (pre_state.is_discarded()) pre_state = json();
    }
    const json show = {{"report", report}, {"pre_state_snapshot", pre_state}};
    (void)nvs::supervisor::ReportStatus(report);
    // What nvsd sends back: both must serialise.
    (void)list.dump(-1, ' ', false, json::error_handler_t::replace);
    (void)show.dump(-1, ' ', false, json::error_handler_t::replace);
  }
}

// `nvs replay REPORT`.
void CheckReplayLoader(std::string_view text) {
  ProvideSnapshot(nvs::fuzz::ScratchDir());
  const fs::path file = nvs::fuzz::ScratchDir() / "report.json";
  nvs::fuzz::WriteFile(file, text);
  const auto log = nvs::replay::LoadCommandLog(file);
  if (!log.ok()) return;
  for (const auto& command : log.value().commands) {
    // Normal form: JSON that dumps back to itself (members sorted, compact).
    const auto cmd = nlohmann::json::parse(command.cmd, nullptr, /*allow_exceptions=*/false);
    NVS_FUZZ_CHECK(!cmd.is_discarded() && cmd.dump() == command.cmd);
  }
}

// `nvs quarantine export --html`, on a report as nvsd serves it.
void CheckHtmlReport(std::string_view text) {
  // nvsd only serves reports that are objects and QuarantineStore::Read
  // accepts (nested at most kMaxDocumentJsonDepth levels).
  if (nvs::protocol::JsonNestingDepth(text, nvs::protocol::kMaxDocumentJsonDepth) >
      nvs::protocol::kMaxDocumentJsonDepth) {
    return;
  }
  const json report = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!report.is_object()) return;
  const json incident = nvs::cli::QuarantineIncident(report, "nvs quarantine retest q-000000000007-0123abcd");
  const json model = nvs::cli::QuarantineModel({incident}, "2025-01-01T00:00:00Z");
  const std::string page = nvs::report::RenderHtml(model);
  NVS_FUZZ_CHECK(page.rfind("<!DOCTYPE html>", 0) == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
  const std::string_view text = nvs::fuzz::AsText(data, size);
  CheckStore(text);
  CheckReplayLoader(text);
  CheckHtmlReport(text);
  return 0;
}
