#include "log.h"

#include <chrono>
#include <cstdio>
#include <ctime>

namespace nvs::supervisor {

std::int64_t UnixNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string IsoTime(std::int64_t unix_ns) {
  const std::time_t seconds = static_cast<std::time_t>(unix_ns / 1'000'000'000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char buffer[96];
  const int millis = static_cast<int>((unix_ns / 1'000'000) % 1000);
  std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900, utc.tm_mon + 1,
                utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, millis);
  return buffer;
}

namespace {
thread_local LogSink* thread_sink = nullptr;
}  // namespace

void SetThreadLogSink(LogSink* sink) { thread_sink = sink; }

void Log(LogLevel level, std::string_view event, nlohmann::json fields) {
  if (thread_sink != nullptr) {
    thread_sink->Write(level, event, fields);
    return;
  }
  static const char* const kLevels[] = {"debug", "info", "warn", "error"};
  nlohmann::json line = nlohmann::json::object();
  line["ts"] = IsoTime(UnixNowNs());
  line["level"] = kLevels[static_cast<int>(level)];
  line["event"] = std::string(event);
  if (fields.is_object()) {
    for (auto& [key, value] : fields.items()) line[key] = std::move(value);
  }
  const std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
}

}  // namespace nvs::supervisor
