// The journal's framing (protocol/JOURNAL.md): ScanJournal, which nvsd runs
// on every segment at start (and `nvs journal export`, `nvs replay`, through
// ReadJournalFile) — bytes from a disk that may have been torn by a crash or
// rotted.
//
// Properties: never a crash, a throw or undefined behaviour, and no
// allocation beyond what the bytes hold (a corrupt length is damage, not an
// allocation); the good prefix is exactly the magic line and the records
// framed again; damage is reported if and only if bytes follow the good
// prefix.
#include "fuzz_check.h"
#include "nvs/supervisor/journal.h"

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
  namespace sv = nvs::supervisor;
  const std::string_view bytes = nvs::fuzz::AsText(data, size);
  const sv::JournalScan scan = sv::ScanJournal(bytes);
  NVS_FUZZ_CHECK(scan.good_bytes <= bytes.size());
  NVS_FUZZ_CHECK(scan.damage.empty() == (scan.good_bytes == bytes.size()));
  if (scan.good_bytes == 0) {
    NVS_FUZZ_CHECK(scan.records.empty());
    return 0;
  }
  std::string framed(sv::kJournalMagic);
  for (const auto& record : scan.records) {
    NVS_FUZZ_CHECK(record.size() <= sv::kMaxJournalRecordBytes);
    framed += sv::FrameRecord(record);
  }
  NVS_FUZZ_CHECK(framed == bytes.substr(0, scan.good_bytes));
  return 0;
}
