// Structured logs: one JSON object per line on stderr, e.g.
//   {"ts":"2026-11-26T10:00:00.123Z","level":"warn","event":"variant_crashed","variant":"router-b",...}
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

namespace nvs::supervisor {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

void Log(LogLevel level, std::string_view event, nlohmann::json fields = nlohmann::json::object());

// UTC time as ISO 8601 with milliseconds.
std::string IsoTime(std::int64_t unix_ns);
std::int64_t UnixNowNs();

}  // namespace nvs::supervisor
