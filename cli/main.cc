// nvs: the operator's command line (git-style subcommands; `nvs --help`,
// `nvs COMMAND --help`). Exit codes are in cli/common.h and `nvs --help`.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "client.h"
#include "common.h"
#include "nvs/protocol/curve_keys.h"
#include "nvs/supervisor/journal.h"

namespace nvs::cli {
namespace {

using nlohmann::json;

// One line a person can read at 3 am.
std::string Describe(const json& reply) {
  const std::string status = reply.value("status", "?");
  if (status == "committed") return "committed seq " + reply["seq"].dump() + ": " + reply["result"].dump();
  if (status == "answered") return "answered: " + reply["result"].dump();
  if (status == "rejected") return "REJECTED (" + reply.value("code", "") + "): " + reply.value("reason", "");
  if (status == "quarantined") {
    return "QUARANTINED as " + reply.value("report", "") + " (fingerprint " + reply.value("fingerprint", "") +
           "): " + reply.value("reason", "");
  }
  if (status == "unavailable") return "UNAVAILABLE: " + reply.value("reason", "");
  return reply.dump();
}

int Send(const Options& o) {
  std::vector<std::string> commands;
  if (!o.file.empty()) {
    std::ifstream file;
    std::istream* in = &std::cin;
    if (o.file != "-") {
      file.open(o.file);
      if (!file) {
        std::cerr << "nvs: cannot read " << o.file << "\n";
        return kExitUsage;
      }
      in = &file;
    }
    for (std::string line; std::getline(*in, line);) {
      if (!line.empty() && line.find_first_not_of(" \t\r") != std::string::npos) commands.push_back(line);
    }
  } else if (!o.command_json.empty()) {
    commands.push_back(o.command_json);
  } else {
    std::cerr << "nvs send: give a command (JSON) or -f FILE\n";
    return kExitUsage;
  }
  auto client = Connect(o, "nvs");
  if (!client) return kExitUsage;
  int exit_code = kExitOk;
  std::size_t number = 0;
  for (const auto& text : commands) {
    ++number;
    // A syntax error is said here; anything else (a number out of nlohmann's
    // range, a nesting nvsd refuses) is nvsd's to judge, and its answer is
    // printed at once. The command goes out as written.
    try {
      const json parsed = json::parse(text);  // (only checked: the text goes out as it is)
      (void)parsed;
    } catch (const json::parse_error& e) {
      std::cerr << "nvs: line " << number << " is not JSON (" << e.what() << "): " << text << "\n";
      return kExitUsage;
    } catch (const json::exception&) {
    }
    auto call = client->CallWith([&](const std::string& id) {
      return std::string(o.query ? R"({"type":"query","query":)" : R"({"type":"command","cmd":)") + text +
             R"(,"id":)" + json(id).dump() + "}";
    }, o.timeout_ms);
    if (!call.ok() || !call.value()) return NoReply("nvs", *client, call, o.timeout_ms);
    const json& reply = *call.value();
    if (o.json_output) {
      std::cout << reply.dump() << "\n";
    } else {
      std::cout << (commands.size() > 1 ? "#" + std::to_string(number) + " " : "") << Describe(reply) << "\n";
    }
    const std::string status = reply.value("status", "");
    if (status != "committed" && status != "answered") exit_code = kExitRefused;
  }
  return exit_code;
}

int Status(const Options& o) {
  auto client = Connect(o, "nvs");
  if (!client) return kExitUsage;
  auto call = client->Call({{"type", "status"}}, o.timeout_ms);
  if (!call.ok() || !call.value()) return NoReply("nvs", *client, call, o.timeout_ms);
  std::optional<json>& reply = call.value();
  if (o.json_output) {
    std::cout << reply->dump() << "\n";
    const json& n = (*reply)["nvsd"];
    const json journal = n.value("journal", json::object());
    return n.value("ready", false) && n.value("available", true) && journal.value("state", "ok") == "ok" &&
                   journal.value("checkpoint_error", json()).is_null()
               ? kExitOk
               : kExitRefused;
  }
  const json& n = (*reply)["nvsd"];
  const json journal_state = n.value("journal", json::object());
  // Not serving as it should: exit 1, so that a script or a probe sees it.
  const json checkpoint_error = journal_state.value("checkpoint_error", json());
  const bool healthy = n.value("ready", false) && n.value("available", true) &&
                       journal_state.value("state", "ok") == "ok" && checkpoint_error.is_null();
  std::cout << "nvsd pid " << n.value("pid", 0) << (n.value("ready", false) ? ", ready" : ", NOT READY") << ", mode "
            << n.value("mode", "lockstep") << ", policy " << n.value("policy", "?") << ", healthy " << n.value("healthy", 0)
            << " (min " << n.value("min_healthy", 0) << ")\n";
  const json journal = n.value("journal", json::object());
  std::cout << "seq " << n.value("seq", 0) << ", " << n.value("commits", 0) << " commits, checkpoint at seq "
            << n.value("checkpoint_seq", 0) << "; journal " << journal.value("segment", "?") << " ("
            << journal.value("segment_bytes", 0) << " bytes, fsync " << journal.value("fsync", "?") << ")\n";
  std::cout << "quarantine: " << n.value("quarantined", 0) << " blocked, " << n.value("reports", 0)
            << " reports (nvs quarantine list)\n";
  if (journal_state.value("state", "ok") != "ok") {
    const json trouble = journal_state.value("trouble", json::object());
    std::cout << "JOURNAL DEGRADED (" << trouble.value("kind", "?") << "): " << trouble.value("reason", "") << "\n";
  }
  if (checkpoint_error.is_string()) std::cout << "CHECKPOINT FAILING: " << checkpoint_error.get<std::string>() << "\n";
  if (!n.value("available", true)) {
    std::cout << "NOT TAKING COMMANDS: " << n.value("unavailable_reason", json("")).dump() << "\n";
  }
  if (n.value("paced_by", json()).is_string()) {
    std::cout << "PACE: " << n["paced_by"].get<std::string>()
              << " is much slower than the others: it falls behind, and commands wait for it (its P50 MS below)\n";
  }
  std::printf("%-14s %-7s %-9s %8s %5s %8s %8s  %s\n", "VARIANT", "ROLE", "STATE", "PID", "INC", "RESTARTS", "P50 MS",
              "LAST FAULT");
  for (const auto& v : (*reply)["variants"]) {
    const json pace = v.value("pace", json::object());
    const json p50 = pace.value("answer_p50_ms", json());
    char ms[32] = "-";
    if (p50.is_number()) std::snprintf(ms, sizeof ms, "%.2f", p50.get<double>());
    std::printf("%-14s %-7s %-9s %8d %5d %8d %8s  %s%s\n", v.value("name", "?").c_str(), v.value("role", "?").c_str(),
                v.value("state", "?").c_str(), v.value("pid", -1), v.value("incarnation", 0), v.value("restarts", 0), ms,
                pace.value("sets_pace", false) ? "[sets the pace] " : "", v.value("last_fault", "").c_str());
  }
  const json recent = n.value("recent_verdicts", json::array());
  if (!recent.empty()) {
    std::cout << "last verdicts:";
    for (const auto& r : recent) {
      std::cout << " " << (r.value("query", false) ? std::string("query") : "seq " + std::to_string(r.value("seq", 0)))
                << " " << r.value("verdict", "?");
      if (&r != &recent.back()) std::cout << ",";
    }
    std::cout << "\n";
  }
  return healthy ? kExitOk : kExitRefused;
}

int Keygen(const Options& o) {
  auto pair = protocol::WriteKeyPair(o.path);
  if (!pair.ok()) {
    std::cerr << "nvs keygen: " << pair.status().message() << "\n";
    return kExitUsage;
  }
  std::cout << "wrote " << o.path << ".key (the secret key, owner-only: keep it there) and " << o.path
            << ".pub (the public key)\npublic key: " << pair.value().public_key << "\n";
  return kExitOk;
}

int ExportJournal(const Options& o) {
  const std::filesystem::path path = o.path;
  auto journal = nvs::supervisor::ReadJournal(path);
  if (!journal.ok()) {
    std::cerr << "nvs: " << journal.status().message() << "\n";
    return kExitUsage;
  }
  for (const auto& record : journal.value().records) std::cout << record << "\n";
  if (!journal.value().damage.empty()) {
    for (const auto& damage : journal.value().damage) std::cerr << "nvs: " << damage << "\n";
    std::cerr << "nvs: " << journal.value().records.size() << " good records printed\n";
    return kExitRefused;
  }
  return kExitOk;
}

}  // namespace

void AddConnectionOptions(CLI::App& sub, Options& o) {
  sub.add_option("--endpoint", o.endpoint,
                 "nvsd's client endpoint, or a cluster's members comma-separated, followed to the leader (default: "
                 "$NVS_ENDPOINT, else the client config's \"endpoint\", else tcp://127.0.0.1:5555)");
  sub.add_option("--client-config", o.client_config,
                 "the client config naming nvsd's public key and this client's CURVE key files, for an nvsd whose "
                 "client endpoint requires CURVE (default: $NVS_CLIENT_CONFIG)");
}

int RunNvs(int argc, char** argv) {
  CLI::App app{"nvs: the operator's tool for nvsd (N-version supervisor)"};
  app.require_subcommand(1);
  app.footer(kExitCodes);
  Options o;
  const auto endpoint_options = [&](CLI::App* sub) {
    AddConnectionOptions(*sub, o);
    sub->add_option("--timeout", o.timeout_ms, "how long to wait for each reply, ms")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    sub->add_flag("--json", o.json_output, "print nvsd's replies as JSON lines");
  };

  CLI::App* send = app.add_subcommand("send", "send one command (or a JSON-lines file of them) and print the verdicts");
  endpoint_options(send);
  send->add_option("command", o.command_json, "the command, as JSON");
  send->add_option("-f,--file", o.file, "a JSON-lines file of commands, sent in order ('-' = stdin)");
  send->add_flag("--query", o.query, "send as read-only queries");
  send->callback([&] { o.exit_code = Send(o); });

  CLI::App* status = app.add_subcommand("status", "nvsd and its variants: roles, pids, health, restarts");
  endpoint_options(status);
  status->callback([&] { o.exit_code = Status(o); });

  CLI::App* keygen = app.add_subcommand(
      "keygen", "make a CURVE key pair for nvsd or a client: PATH.key (secret, mode 0600) and PATH.pub");
  keygen->add_option("path", o.path, "DIR/NAME: the folder must exist; existing keys are never overwritten")
      ->required();
  keygen->callback([&] { o.exit_code = Keygen(o); });

  CLI::App* journal = app.add_subcommand("journal", "nvsd's write-ahead journal");
  journal->require_subcommand(1);
  CLI::App* journal_export =
      journal->add_subcommand("export", "print the journal as JSON lines; exit 1 if a segment is damaged");
  journal_export->add_option("path", o.path, "the state dir, its journal folder, or one segment")->required();
  journal_export->callback([&] { o.exit_code = ExportJournal(o); });
  AddJournalCheckCommands(*journal, o);

  AddReplayCommand(app, o);
  AddQuarantineCommand(app, o);
  AddClusterCommand(app, o);
  AddTopCommand(app, o);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  } catch (const zmq::error_t& e) {
    std::cerr << "nvs: " << e.what() << (o.endpoint.empty() ? std::string() : " (endpoint " + o.endpoint + ")") << "\n";
    return kExitUsage;
  }
  return o.exit_code;
}

}  // namespace nvs::cli

int main(int argc, char** argv) { return nvs::cli::RunNvs(argc, argv); }
