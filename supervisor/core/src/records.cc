#include "nvs/core/records.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <zlib.h>

#include "nvs/protocol/json_values.h"
#include "nvs/protocol/messages.h"

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


}  // namespace

// zlib's (the same CRC as before, IEEE 802.3): several times faster than a
// byte-table one, which was an eighth of a restart's time after a million
// commands.
std::uint32_t Crc32(std::string_view bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto* data = reinterpret_cast<const Bytef*>(bytes.data());
  std::size_t left = bytes.size();
  while (left > 0) {  // (zlib takes a uInt length)
    const uInt n = static_cast<uInt>(std::min<std::size_t>(left, 1u << 30));
    crc = crc32(crc, data, n);
    data += n;
    left -= n;
  }
  return static_cast<std::uint32_t>(crc);
}

std::string FrameRecord(std::string_view payload) {
  std::string out;
  out.reserve(payload.size() + 8);
  PutU32(out, static_cast<std::uint32_t>(payload.size()));
  PutU32(out, Crc32(payload));
  out.append(payload);
  return out;
}

namespace {

// Whether a good record starts at `at`: a whole header and payload, a JSON
// object's braces, and the checksum (2^-32 by chance, and the braces too).
bool GoodRecordAt(std::string_view bytes, std::size_t at) {
  if (bytes.size() - at < 8) return false;
  const std::uint32_t length = GetU32(bytes, at);
  if (length < 2 || length > kMaxJournalRecordBytes || bytes.size() - at - 8 < length) return false;
  const std::string_view payload = bytes.substr(at + 8, length);
  return payload.front() == '{' && payload.back() == '}' && Crc32(payload) == GetU32(bytes, at + 4);
}

// After a bad spot at `at`: a torn tail, or damage. A crash in the middle
// of an append leaves a prefix of what was written: an incomplete header, or
// a record whose (true) length runs past the end of the file; a file system
// that had extended the file may leave zeros. Anything else (a record whose
// bytes are all there but whose checksum fails, a length nvsd never writes,
// a good record further on) is damage: a torn write cannot make it.
template <typename Scan>
void ClassifyTail(std::string_view bytes, std::size_t at, bool incomplete, Scan& scan) {
  if (bytes.find_first_not_of('\0', at) == std::string_view::npos) {
    scan.tail = JournalScan::Tail::kTorn;
    scan.damage += " (then zeros to the end: a write cut short)";
    return;
  }
  for (std::size_t next = at + 1; next + 8 <= bytes.size(); ++next) {
    if (GoodRecordAt(bytes, next)) {
      scan.tail = JournalScan::Tail::kDamaged;
      scan.next_good = next;
      scan.damage += "; a good record follows at offset " + std::to_string(next) + ", so this is damage, not a torn write";
      return;
    }
  }
  scan.tail = incomplete ? JournalScan::Tail::kTorn : JournalScan::Tail::kDamaged;
  if (!incomplete) scan.damage += ": its bytes are all there, so this is damage, not a torn write";
}

}  // namespace

namespace {

template <typename Scan>
void ScanInto(std::string_view bytes, Scan& scan) {
  if (bytes.size() < kJournalMagic.size()) {
    if (!bytes.empty()) {
      scan.damage = "file shorter than its magic line (" + std::to_string(bytes.size()) + " bytes)";
      scan.tail = JournalScan::Tail::kTorn;
    }
    return;
  }
  if (bytes.substr(0, kJournalMagic.size()) != kJournalMagic) {
    scan.damage = "not a journal (bad magic line)";
    scan.tail = JournalScan::Tail::kDamaged;
    return;
  }
  std::size_t at = kJournalMagic.size();
  scan.good_bytes = at;
  while (at < bytes.size()) {
    if (bytes.size() - at < 8) {
      scan.damage = "incomplete record header at offset " + std::to_string(at);
      ClassifyTail(bytes, at, /*incomplete=*/true, scan);
      return;
    }
    const std::uint32_t length = GetU32(bytes, at);
    const std::uint32_t crc = GetU32(bytes, at + 4);
    if (length > kMaxJournalRecordBytes || length < 2) {
      // (nvsd writes JSON objects: never more than the limit, never under 2 bytes)
      scan.damage = "record at offset " + std::to_string(at) + " claims " + std::to_string(length) + " bytes";
      ClassifyTail(bytes, at, /*incomplete=*/false, scan);
      return;
    }
    if (bytes.size() - at - 8 < length) {
      scan.damage = "incomplete record at offset " + std::to_string(at) + " (" + std::to_string(length) +
                    " bytes claimed, " + std::to_string(bytes.size() - at - 8) + " present)";
      // Whole after all, with a length that was changed: damage.
      const bool whole = Crc32(bytes.substr(at + 8)) == crc;
      if (whole) scan.damage += ", yet the bytes present match its checksum: its length was changed";
      ClassifyTail(bytes, at, /*incomplete=*/!whole, scan);
      return;
    }
    const std::string_view payload = bytes.substr(at + 8, length);
    if (Crc32(payload) != crc) {
      scan.damage = "checksum mismatch in the record at offset " + std::to_string(at);
      ClassifyTail(bytes, at, /*incomplete=*/false, scan);
      return;
    }
    scan.records.emplace_back(payload);
    at += 8 + length;
    scan.good_bytes = at;
  }
  return;
}

}  // namespace

JournalScan ScanJournal(std::string_view bytes) {
  JournalScan scan;
  ScanInto(bytes, scan);
  return scan;
}

JournalScanViews ScanJournalViews(std::string_view bytes) {
  JournalScanViews scan;
  ScanInto(bytes, scan);
  return scan;
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
    record.key = text("key");
    record.client = text("client");
    record.fingerprint = text("fingerprint");
    if (body.contains("expires_at_ms")) record.expires_at_ms = static_cast<std::int64_t>(count("expires_at_ms"));
    const auto cmd = body.find("cmd");
    if (cmd == body.end() && problem.empty()) problem = "no 'cmd'";
    if (problem.empty()) record.cmd = Compact(*cmd);
  } else if (record.type == "verdict") {
    record.seq = count("seq");
    record.id = text("id");
    record.key = text("key");
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
  } else if (record.type == "start") {
    if (const auto config = body.find("config"); config != body.end()) record.config = Compact(*config);
    if (const auto pid = body.find("pid"); pid != body.end() && pid->is_number_integer()) {
      record.pid = pid->get<std::int64_t>();
    }
    if (body.contains("time_ns")) record.time_ns = static_cast<std::int64_t>(count("time_ns"));
  } else if (record.type == "checkpoint") {
    record.seq = count("seq");
    if (body.contains("time_ns")) record.time_ns = static_cast<std::int64_t>(count("time_ns"));
  } else if (record.type == "mark") {
    record.note = text("note");
    if (body.contains("time_ns")) record.time_ns = static_cast<std::int64_t>(count("time_ns"));
    if (body.contains("seq")) record.seq = count("seq");  // (a mark for one command only)
  }
  if (!problem.empty()) return Status::Error(problem);
  return record;
}

namespace {

// JSON text as a value (text that is not JSON: as a string).
json AsJson(const std::string& text) {
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  return value.is_discarded() ? json(text) : value;
}

}  // namespace

std::string EncodeJournalRecord(const JournalRecord& r) {
  json body = {{"t", r.type}};
  const auto put = [&](const char* key, const std::string& value) {
    if (!value.empty()) body[key] = value;
  };
  if (r.type == "admit") {
    body["seq"] = r.seq;
    body["time_ns"] = r.time_ns;
    body["id"] = r.id;
    body["client"] = r.client;
    body["fingerprint"] = r.fingerprint;
    put("key", r.key);
    if (r.expires_at_ms != 0) body["expires_at_ms"] = r.expires_at_ms;
    body["cmd"] = AsJson(r.cmd);
  } else if (r.type == "verdict") {
    body["seq"] = r.seq;
    body["id"] = r.id;
    body["verdict"] = r.verdict;
    put("key", r.key);
    if (r.verdict == "COMMIT") {
      body["result"] = AsJson(r.result);
      body["result_digest"] = protocol::Fnv1a64Hex(r.result);
    } else if (r.verdict == "EXPIRED" || r.verdict == "ABANDONED") {
      put("reason", r.reason);
    } else {
      body["report"] = r.report;
      body["fingerprint"] = r.fingerprint;
      body["reason"] = r.reason;
    }
  } else if (r.type == "start") {
    body["time_ns"] = r.time_ns;
    body["pid"] = r.pid;
    if (!r.config.empty()) body["config"] = AsJson(r.config);
  } else if (r.type == "mark") {
    body["time_ns"] = r.time_ns;
    body["note"] = r.note;
    if (r.seq != 0) body["seq"] = r.seq;
  } else if (r.type == "checkpoint") {
    body["seq"] = r.seq;
    body["time_ns"] = r.time_ns;
  }
  return Compact(body);
}

std::optional<protocol::ClientReply> ReplyOfVerdict(JournalRecord record) {
  if (record.verdict == "ABANDONED") return std::nullopt;
  protocol::ClientReply reply;
  reply.id = record.id;
  if (record.verdict == "COMMIT") {
    reply.status = protocol::ClientStatus::kCommitted;
    reply.seq = record.seq;
    reply.result = std::move(record.result);
  } else if (record.verdict == "POISON") {
    reply.status = protocol::ClientStatus::kQuarantined;
    reply.report = std::move(record.report);
    reply.fingerprint = std::move(record.fingerprint);
    reply.reason = std::move(record.reason);
  } else if (record.verdict == "EXPIRED") {
    reply = protocol::ClientReply::Rejected(reply.id, "expired", record.reason);
  } else {
    reply = protocol::ClientReply::Rejected(reply.id, "no_quorum", record.reason);
  }
  return reply;
}

namespace {

std::string CheckpointCrc(std::uint64_t seq, const std::string& digest, std::uint64_t commits, std::string_view state) {
  const std::string head = std::to_string(seq) + " " + digest + " " + std::to_string(commits) + " ";
  static const char* const kHex = "0123456789abcdef";
  std::string out(8, '0');
  std::uint32_t v = Crc32(head + std::string(state));
  for (int i = 7; i >= 0; --i, v >>= 4) out[static_cast<std::size_t>(i)] = kHex[v & 0xf];
  return out;
}

}  // namespace

std::string FormatCheckpoint(const Checkpoint& c) {
  return R"({"seq":)" + std::to_string(c.seq) + R"(,"digest":)" + Compact(json(c.digest)) + R"(,"commits":)" +
         std::to_string(c.commits) + R"(,"crc":")" + CheckpointCrc(c.seq, c.digest, c.commits, c.state) +
         R"(","state":)" + c.state + "}\n";
}

Result<Checkpoint> ParseCheckpoint(std::string_view text, bool* unchecked) {
  if (unchecked != nullptr) *unchecked = false;
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
  Checkpoint checkpoint{*seq_value, Compact(*state), digest->get<std::string>(), 0};
  const auto crc = saved.find("crc");
  const auto commits = saved.find("commits");
  if (crc == saved.end() && commits == saved.end() && saved.size() == 3) {
    if (unchecked != nullptr) *unchecked = true;  // the first format: nothing to check it by
    return checkpoint;
  }
  if (crc == saved.end()) return Status::Error("no 'crc' (a checkpoint of this format always has one)");
  const auto commits_value = commits == saved.end() ? std::nullopt : protocol::ReadCount(*commits);
  if (!commits_value) return Status::Error("'commits' is not an integer in [0, 2^63)");
  checkpoint.commits = *commits_value;
  if (!crc->is_string()) return Status::Error("'crc' is not a string");
  // The checksum is of the state's text as written: find it in the file
  // (its last member, up to the final brace) rather than re-encode it.
  const auto at = text.find(R"(,"state":)");
  const auto end = text.find_last_of('}');
  if (at == std::string_view::npos || end == std::string_view::npos || end <= at + 9) {
    return Status::Error("'state' is not the last member, as nvsd writes it");
  }
  const std::string_view state_text = text.substr(at + 9, end - (at + 9));
  const std::string want = CheckpointCrc(checkpoint.seq, checkpoint.digest, checkpoint.commits, state_text);
  if (crc->get<std::string>() != want) {
    return Status::Error("checksum mismatch (crc " + crc->get<std::string>() + ", the contents give " + want +
                         "): the file was changed or damaged");
  }
  checkpoint.state = std::string(state_text);
  return checkpoint;
}

}  // namespace nvs::supervisor
