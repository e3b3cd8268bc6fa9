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
constexpr int kExitClientRefused = 4;  // nvsd refused this client: its CURVE key, or mismatched security

inline constexpr const char* kExitCodes =
    "exit codes: 0 all committed (or agreed); 1 something rejected, quarantined or unavailable,\n"
    "            a replay that found a divergence, crash or hang, or a damaged journal;\n"
    "            2 usage error or unreadable input (a bad client config included); 3 no reply from nvsd in time;\n"
    "            4 nvsd refused this client (its CURVE key is not authorized, or only one side uses CURVE)";

struct Options {
  std::string endpoint;       // "" = $NVS_ENDPOINT, else the client config's, else tcp://127.0.0.1:5555
  std::string client_config;  // "" = $NVS_CLIENT_CONFIG, else none (a plain client)
  int timeout_ms = 10000;
  bool json_output = false;
  bool query = false;
  std::string command_json;
  std::string file;
  std::string path;
  int exit_code = kExitOk;
};

// --endpoint and --client-config on a subcommand that talks to nvsd (cli/main.cc).
void AddConnectionOptions(CLI::App& sub, Options& o);
// `nvs replay ...` (cli/replay_command.cc).
void AddReplayCommand(CLI::App& app, Options& options);
// `nvs cluster ...` (cli/cluster_command.cc).
void AddClusterCommand(CLI::App& app, Options& options);
// `nvs quarantine ...` (cli/quarantine_command.cc).
void AddQuarantineCommand(CLI::App& app, Options& options);
// `nvs top` (cli/top_command.cc).
void AddTopCommand(CLI::App& app, Options& options);
// `nvs journal check` and `nvs journal repair` (cli/journal_command.cc).
void AddJournalCheckCommands(CLI::App& journal, Options& options);

}  // namespace nvs::cli
