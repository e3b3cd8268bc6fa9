// Structured logs: one JSON object per line on stderr, e.g.
//   {"ts":"2026-11-26T10:00:00.123Z","level":"warn","event":"variant_crashed","variant":"router-b",...}
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

namespace nvs::supervisor {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

void Log(LogLevel level, std::string_view event, nlohmann::json fields = nlohmann::json::object());

// Where log lines go instead of stderr (nullptr: stderr again). The
// simulator keeps them to check (an `internal_error` is a bug) and to print
// a failing schedule's transcript; it runs one nvsd per thread, so the sink
// is the calling thread's.
class LogSink {
 public:
  virtual ~LogSink() = default;
  virtual void Write(LogLevel level, std::string_view event, const nlohmann::json& fields) = 0;
};
void SetThreadLogSink(LogSink* sink);

// UTC time as ISO 8601 with milliseconds.
std::string IsoTime(std::int64_t unix_ns);
std::int64_t UnixNowNs();

}  // namespace nvs::supervisor
