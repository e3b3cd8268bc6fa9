#include "nvs/supervisor/journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/crc.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>

#include "nvs/protocol/json_values.h"

namespace nvs::supervisor {
namespace {

void PutU32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

std::uint32_t GetU32(std::string_view bytes, std::size_t at) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(bytes[at + static_cast<std::size_t>(i)]);
  return v;
}

using nlohmann::json;

// Compact JSON text of a value read back; invalid UTF-8 is replaced, never thrown.
std::string Compact(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Status WriteAll(int fd, std::string_view bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::Error(std::string("journal write: ") + std::strerror(errno));
    }
    done += static_cast<std::size_t>(n);
  }
  return Status::Ok();
}

}  // namespace

std::uint32_t Crc32(std::string_view bytes) {
  boost::crc_32_type crc;
  crc.process_bytes(bytes.data(), bytes.size());
  return crc.checksum();
}

std::string FrameRecord(std::string_view payload) {
  std::string out;
  out.reserve(payload.size() + 8);
  PutU32(out, static_cast<std::uint32_t>(payload.size()));
  PutU32(out, Crc32(payload));
  out.append(payload);
  return out;
}

JournalScan ScanJournal(std::string_view bytes) {
  JournalScan scan;
  if (bytes.size() < kJournalMagic.size()) {
    if (!bytes.empty()) scan.damage = "file shorter than its magic line (" + std::to_string(bytes.size()) + " bytes)";
    return scan;
  }
  if (bytes.substr(0, kJournalMagic.size()) != kJournalMagic) {
    scan.damage = "not a journal (bad magic line)";
    return scan;
  }
  std::size_t at = kJournalMagic.size();
  scan.good_bytes = at;
  while (at < bytes.size()) {
    if (bytes.size() - at < 8) {
      scan.damage = "torn record header at offset " + std::to_string(at);
      return scan;
    }
    const std::uint32_t length = GetU32(bytes, at);
    const std::uint32_t crc = GetU32(bytes, at + 4);
    if (length > kMaxJournalRecordBytes) {
      scan.damage = "record at offset " + std::to_string(at) + " claims " + std::to_string(length) + " bytes";
      return scan;
    }
    if (bytes.size() - at - 8 < length) {
      scan.damage = "torn record at offset " + std::to_string(at) + " (" + std::to_string(length) + " bytes claimed, " +
                    std::to_string(bytes.size() - at - 8) + " present)";
      return scan;
    }
    const std::string_view payload = bytes.substr(at + 8, length);
    if (Crc32(payload) != crc) {
      scan.damage = "checksum mismatch in record at offset " + std::to_string(at);
      return scan;
    }
    scan.records.emplace_back(payload);
    at += 8 + length;
    scan.good_bytes = at;
  }
  return scan;
}

Result<JournalScan> ReadJournalFile(const std::filesystem::path& file) {
  const int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::Error(file.string() + ": " + std::strerror(errno));
  std::string content;
  char buffer[1 << 16];
  for (;;) {
    const ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const std::string error = file.string() + ": " + std::strerror(errno);
      close(fd);
      return Status::Error(error);
    }
    if (n == 0) break;
    content.append(buffer, static_cast<std::size_t>(n));
  }
  close(fd);
  return ScanJournal(content);
}

std::filesystem::path JournalSegmentPath(const std::filesystem::path& dir, std::uint64_t index) {
  std::string name = std::to_string(index);
  if (name.size() < 12) name.insert(0, 12 - name.size(), '0');
  return dir / (name + ".nvj");
}

std::uint64_t JournalSegmentIndex(const std::filesystem::path& file) {
  const std::string name = file.filename().string();
  if (name.size() != 16 || name.substr(12) != ".nvj") return 0;
  std::uint64_t index = 0;
  for (std::size_t i = 0; i < 12; ++i) {
    if (name[i] < '0' || name[i] > '9') return 0;
    index = index * 10 + static_cast<std::uint64_t>(name[i] - '0');
  }
  return index;
}

std::vector<std::filesystem::path> JournalSegments(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> segments;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (JournalSegmentIndex(it->path()) != 0 && it->is_regular_file(ec)) segments.push_back(it->path());
  }
  std::sort(segments.begin(), segments.end(),
            [](const auto& a, const auto& b) { return JournalSegmentIndex(a) < JournalSegmentIndex(b); });
  return segments;
}

Result<JournalRecord> ParseJournalRecord(std::string_view payload, std::uint64_t* seq_seen) {
  if (seq_seen != nullptr) *seq_seen = 0;
  auto parsed = protocol::ParseDocument(payload);
  if (!parsed.ok()) return parsed.status();
  const json& body = parsed.value();
  if (!body.is_object()) return Status::Error("not a JSON object");
  if (const auto seq = body.find("seq"); seq != body.end() && seq_seen != nullptr) {
    *seq_seen = protocol::ReadCount(*seq).value_or(0);
  }
  // A string member; absent is "" unless required.
  std::string problem;
  const auto text = [&](const char* key, bool required = false) -> std::string {
    const auto it = body.find(key);
    if (it == body.end()) {
      if (required && problem.empty()) problem = std::string("no '") + key + "'";
      return "";
    }
    if (!it->is_string()) {
      if (problem.empty()) problem = std::string("'") + key + "' is not a string";
      return "";
    }
    return it->get<std::string>();
  };
  const auto count = [&](const char* key) -> std::uint64_t {
    const auto it = body.find(key);
    const auto value = it == body.end() ? std::nullopt : protocol::ReadCount(*it);
    if (!value && problem.empty()) problem = std::string("'") + key + "' is not an integer in [0, 2^63)";
    return value.value_or(0);
  };
  JournalRecord record;
  record.type = text("t", /*required=*/true);
  if (!problem.empty()) return Status::Error(problem);
  if (record.type == "admit") {
    record.seq = count("seq");
    record.time_ns = static_cast<std::int64_t>(count("time_ns"));
    record.id = text("id");
    record.client = text("client");
    record.fingerprint = text("fingerprint");
    const auto cmd = body.find("cmd");
    if (cmd == body.end() && problem.empty()) problem = "no 'cmd'";
    if (problem.empty()) record.cmd = Compact(*cmd);
  } else if (record.type == "verdict") {
    record.seq = count("seq");
    record.id = text("id");
    record.verdict = text("verdict", /*required=*/true);
    if (record.verdict == "COMMIT") {
      const auto result = body.find("result");
      if (result == body.end() && problem.empty()) problem = "a COMMIT without 'result'";
      if (problem.empty()) record.result = Compact(*result);
    } else {
      record.report = text("report");
      record.fingerprint = text("fingerprint");
      record.reason = text("reason");
    }
  }
  if (!problem.empty()) return Status::Error(problem);
  return record;
}

Result<Checkpoint> ParseCheckpoint(std::string_view text) {
  auto parsed = protocol::ParseDocument(text);
  if (!parsed.ok()) return parsed.status();
  const json& saved = parsed.value();
  if (!saved.is_object()) return Status::Error("not a JSON object");
  const auto seq = saved.find("seq");
  const auto state = saved.find("state");
  const auto digest = saved.find("digest");
  const auto seq_value = seq == saved.end() ? std::nullopt : protocol::ReadCount(*seq);
  if (!seq_value) return Status::Error("'seq' is not an integer in [0, 2^63)");
  if (digest == saved.end() || !digest->is_string()) return Status::Error("'digest' is not a string");
  if (state == saved.end()) return Status::Error("no 'state'");
  return Checkpoint{*seq_value, Compact(*state), digest->get<std::string>()};
}

Result<JournalContents> ReadJournal(const std::filesystem::path& path) {
  std::error_code ec;
  std::vector<std::filesystem::path> files;
  if (std::filesystem::is_directory(path, ec)) {
    files = JournalSegments(path / "journal");
    if (files.empty()) files = JournalSegments(path);
    if (files.empty() && std::filesystem::is_regular_file(path / "journal.nvj", ec)) files = {path / "journal.nvj"};
    if (files.empty()) return Status::Error(path.string() + ": no journal here (no journal/NNNNNNNNNNNN.nvj segments)");
  } else {
    files = {path};
  }
  JournalContents contents;
  for (const auto& file : files) {
    auto scan = ReadJournalFile(file);
    if (!scan.ok()) return scan.status();
    if (!scan.value().damage.empty()) contents.damage.push_back(file.string() + ": " + scan.value().damage);
    for (auto& record : scan.value().records) contents.records.push_back(std::move(record));
    contents.files.push_back(file);
  }
  return contents;
}

Status SyncDirectory(const std::filesystem::path& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::Error(dir.string() + ": " + std::strerror(errno));
  const int rc = fsync(fd);
  const int error = errno;
  close(fd);
  if (rc != 0) return Status::Error(dir.string() + ": fsync: " + std::strerror(error));
  return Status::Ok();
}

Result<std::unique_ptr<JournalWriter>> JournalWriter::Open(const std::filesystem::path& path, FsyncPolicy policy,
                                                           int batch_ms, std::vector<std::string>* existing,
                                                           std::string* damage) {
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Status::Error(path.string() + ": " + std::strerror(errno));
  std::unique_ptr<JournalWriter> writer(new JournalWriter());
  writer->fd_ = fd;
  writer->policy_ = policy;
  writer->batch_ms_ = batch_ms;
  struct stat st {};
  if (fstat(fd, &st) != 0) return Status::Error(path.string() + ": " + std::strerror(errno));
  std::string content(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t got = 0;
  while (got < content.size()) {
    const ssize_t n = pread(fd, content.data() + got, content.size() - got, static_cast<off_t>(got));
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      break;
    }
    got += static_cast<std::size_t>(n);
  }
  content.resize(got);
  JournalScan scan = ScanJournal(content);
  if (!scan.damage.empty() && scan.good_bytes == 0 && content.size() >= kJournalMagic.size()) {
    return Status::Error(path.string() + ": " + scan.damage + "; refusing to overwrite it");
  }
  if (scan.good_bytes == 0) {
    // A new (or empty/torn-at-birth) journal: start it.
    if (ftruncate(fd, 0) != 0) return Status::Error(path.string() + ": " + std::strerror(errno));
    if (lseek(fd, 0, SEEK_SET) < 0) return Status::Error(path.string() + ": " + std::strerror(errno));
    Status s = WriteAll(fd, kJournalMagic);
    if (!s.ok()) return s;
    if (fsync(fd) != 0) return Status::Error(path.string() + ": fsync: " + std::strerror(errno));
    writer->size_ = kJournalMagic.size();
  } else {
    if (scan.good_bytes < content.size()) {
      // Cut the damaged tail so new records follow the last good one.
      if (ftruncate(fd, static_cast<off_t>(scan.good_bytes)) != 0 || fsync(fd) != 0) {
        return Status::Error(path.string() + ": cannot cut the damaged tail: " + std::strerror(errno));
      }
    }
    if (lseek(fd, static_cast<off_t>(scan.good_bytes), SEEK_SET) < 0) {
      return Status::Error(path.string() + ": " + std::strerror(errno));
    }
    writer->size_ = scan.good_bytes;
  }
  writer->records_ = scan.records.size();
  writer->last_sync_ms_ = NowMs();
  if (existing != nullptr) *existing = std::move(scan.records);
  if (damage != nullptr) *damage = scan.damage;
  return writer;
}

JournalWriter::~JournalWriter() {
  if (fd_ >= 0) {
    Flush(/*force=*/true);
    close(fd_);
  }
}

void JournalWriter::Append(std::string_view payload) {
  buffer_ += FrameRecord(payload);
  ++records_;
}

Status JournalWriter::Flush(bool force) {
  if (!buffer_.empty()) {
    Status s = WriteAll(fd_, buffer_);
    if (!s.ok()) return s;
    size_ += buffer_.size();
    buffer_.clear();
    unsynced_ = true;
  }
  if (!unsynced_) return Status::Ok();
  const bool sync = force || policy_ == FsyncPolicy::kAlways ||
                    (policy_ == FsyncPolicy::kBatch && NowMs() - last_sync_ms_ >= batch_ms_);
  if (!sync) return Status::Ok();
  if (policy_ != FsyncPolicy::kNone || force) {
    if (fdatasync(fd_) != 0) return Status::Error(std::string("journal fdatasync: ") + std::strerror(errno));
  }
  unsynced_ = false;
  last_sync_ms_ = NowMs();
  return Status::Ok();
}

}  // namespace nvs::supervisor
