// What the parts of the nvs command line share.
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace nvs::cli {

constexpr int kExitOk = 0;       // everything committed / agreed / as asked
constexpr int kExitRefused = 1;  // something rejected, quarantined, unavailable; a replay failure; a damaged journal
constexpr int kExitUsage = 2;    // bad arguments or input
constexpr int kExitTimeout = 3;  // no reply from nvsd in time

inline constexpr const char* kExitCodes =
    "exit codes: 0 all committed (or agreed); 1 something rejected, quarantined or unavailable,\n"
    "            a replay that found a divergence, crash or hang, or a damaged journal;\n"
    "            2 usage error or unreadable input; 3 no reply from nvsd in time";

struct Options {
  std::string endpoint;
  int timeout_ms = 10000;
  bool json_output = false;
  bool query = false;
  std::string command_json;
  std::string file;
  std::string path;
  int exit_code = kExitOk;
};

// `nvs replay ...` (cli/replay_command.cc).
void AddReplayCommand(CLI::App& app, Options& options);
// `nvs quarantine ...` (cli/quarantine_command.cc).
void AddQuarantineCommand(CLI::App& app, Options& options);

}  // namespace nvs::cli
