// The journal's record bodies: the JSON objects nvsd writes (admit, verdict,
// start; protocol/JOURNAL.md) as nvsd's recovery (ParseJournalRecord) and
// `nvs replay` read them back from a segment. The input is one record payload per line (the shape of `nvs
// journal export`); each line is framed with its true length and CRC-32, so
// the bodies get past the checksum and reach the JSON readers (journal_fuzzer
// covers the framing itself).
//
// Properties: never a crash, an escaping throw or undefined behaviour; the
// segment reads back as exactly those records; PeekJournalRecord vouches
// only for bodies ParseJournalRecord reads, and to the same values;
// ParseJournalRecord either
// says why or gives a command and a result in normal form; LoadCommandLog
// either fails with a message or gives commands whose cmd is in normal form.
#include <nlohmann/json.hpp>
#include <vector>

#include "fuzz_check.h"
#include "nvs/replay/replay.h"
#include "nvs/supervisor/journal.h"

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
  namespace sv = nvs::supervisor;
  const std::string_view text = nvs::fuzz::AsText(data, size);
  std::vector<std::string> records;
  std::string segment(sv::kJournalMagic);
  for (std::size_t at = 0; at < text.size();) {
    std::size_t end = text.find('\n', at);
    if (end == std::string_view::npos) end = text.size();
    // (A body under 2 bytes is never a JSON object: the scan calls its
    // frame damage, rightly. The lines of an export never are.)
    if (end - at >= 2) {
      records.emplace_back(text.substr(at, end - at));
      segment += sv::FrameRecord(records.back());
    }
    at = end + 1;
  }
  const std::filesystem::path file = sv::JournalSegmentPath(nvs::fuzz::ScratchDir(), 1);
  nvs::fuzz::WriteFile(file, segment);

  const auto journal = sv::ReadJournal(file);
  NVS_FUZZ_CHECK(journal.ok());
  NVS_FUZZ_CHECK(journal.value().damage.empty());
  NVS_FUZZ_CHECK(journal.value().records == records);

  // Normal form: JSON that dumps back to itself (members sorted, compact).
  const auto normal = [](const std::string& text) {
    const auto value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    return !value.is_discarded() && value.dump() == text;
  };
  for (const auto& body : records) {
    // The skim recovery uses for records older than the checkpoint never
    // vouches for a body the parse refuses, and reads it the same.
    if (const auto head = sv::PeekJournalRecord(body)) {
      std::uint64_t seq_seen = 0;
      const auto parsed = sv::ParseJournalRecord(body, &seq_seen);
      NVS_FUZZ_CHECK(parsed.ok());
      NVS_FUZZ_CHECK(head->type == parsed.value().type);
      NVS_FUZZ_CHECK(head->seq == seq_seen);
      if (head->type == "admit" || head->type == "verdict") {
        NVS_FUZZ_CHECK(head->id == parsed.value().id);
        NVS_FUZZ_CHECK(head->key == parsed.value().key);
      }
      if (head->type == "verdict") {
        NVS_FUZZ_CHECK(head->verdict == parsed.value().verdict);
        const auto reply = sv::ReplyOfVerdict(parsed.value());
        NVS_FUZZ_CHECK(reply.has_value() == (head->verdict != "ABANDONED"));
      }
    }
    const auto record = sv::ParseJournalRecord(body);
    if (!record.ok()) {
      NVS_FUZZ_CHECK(!record.status().message().empty());
      continue;
    }
    if (record.value().type == "admit") NVS_FUZZ_CHECK(normal(record.value().cmd));
    if (record.value().type == "verdict" && record.value().verdict == "COMMIT") {
      NVS_FUZZ_CHECK(normal(record.value().result));
    }
  }

  const auto log = nvs::replay::LoadCommandLog(file);
  if (!log.ok()) return 0;
  NVS_FUZZ_CHECK(log.value().format == "journal");
  for (const auto& command : log.value().commands) {
    NVS_FUZZ_CHECK(normal(command.cmd));
  }
  return 0;
}
