// nvs: the operator's command line for a running nvsd.
//
//   nvs send [options] CMD-JSON        send one command, print the reply
//   nvs send [options] -f FILE         send every line of a JSON-lines file
//   nvs status [options]               nvsd's view of itself and its variants
//   nvs journal export PATH            the journal as JSON lines (PATH: state dir, journal folder or segment)
//
// Options: --endpoint E (default tcp://127.0.0.1:5555, or $NVS_ENDPOINT),
// --timeout MS (default 10000), --json (print raw replies), --query (send as
// read-only queries).
//
// Exit codes: 0 every command committed (or answered); 1 some command was
// rejected, quarantined or unavailable; 2 usage error; 3 no reply in time.
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>
#include <filesystem>
#include <sstream>
#include <zmq.hpp>

#include "nvs/supervisor/journal.h"

namespace {

using nlohmann::json;

constexpr int kExitOk = 0;
constexpr int kExitRefused = 1;
constexpr int kExitUsage = 2;
constexpr int kExitTimeout = 3;

const char* const kUsage =
    "usage: nvs COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  send CMD-JSON        send one command to nvsd and print the verdict\n"
    "  send -f FILE         send every line of a JSON-lines file, in order ('-' = stdin)\n"
    "  status               show nvsd and its variants\n"
    "  journal export PATH  print nvsd's journal as JSON lines (PATH: the state dir, its journal folder, or one segment);\n"
    "                       exits 1 when its tail is damaged (the good records are still printed)\n"
    "\n"
    "options:\n"
    "  --endpoint E         nvsd's client endpoint (default $NVS_ENDPOINT or tcp://127.0.0.1:5555)\n"
    "  --timeout MS         how long to wait for each reply (default 10000)\n"
    "  --query              send as read-only queries instead of commands\n"
    "  --json               print nvsd's replies as JSON lines\n"
    "\n"
    "exit codes: 0 all committed; 1 something rejected, quarantined or unavailable (or a damaged journal);\n"
    "            2 usage error; 3 no reply in time\n";

struct Options {
  std::string command;
  std::vector<std::string> positional;
  std::string endpoint;
  std::string file;
  int timeout_ms = 10000;
  bool json_output = false;
  bool query = false;
};

std::optional<Options> Parse(int argc, char** argv) {
  Options o;
  const char* env = std::getenv("NVS_ENDPOINT");
  o.endpoint = env != nullptr && *env != '\0' ? env : "tcp://127.0.0.1:5555";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= argc) return std::nullopt;
      return std::string(argv[++i]);
    };
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      std::exit(kExitOk);
    } else if (arg == "--endpoint") {
      auto v = value();
      if (!v) return std::nullopt;
      o.endpoint = *v;
    } else if (arg == "--timeout") {
      auto v = value();
      if (!v) return std::nullopt;
      o.timeout_ms = std::atoi(v->c_str());
      if (o.timeout_ms <= 0) return std::nullopt;
    } else if (arg == "-f" || arg == "--file") {
      auto v = value();
      if (!v) return std::nullopt;
      o.file = *v;
    } else if (arg == "--json") {
      o.json_output = true;
    } else if (arg == "--query") {
      o.query = true;
    } else if (o.command.empty()) {
      o.command = arg;
    } else {
      o.positional.push_back(arg);
    }
  }
  if (o.command.empty()) return std::nullopt;
  return o;
}

class Client {
 public:
  explicit Client(const std::string& endpoint) : socket_(context_, zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.connect(endpoint);
  }

  // Sends a request and waits for the reply carrying its id.
  std::optional<json> Call(json request, int timeout_ms) {
    // nvsd remembers request ids (exactly-once, across its restarts): each
    // must be unique, not just within this run.
    const std::string id = prefix_ + std::to_string(++next_id_);
    request["id"] = id;
    socket_.send(zmq::buffer(request.dump()), zmq::send_flags::none);
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, left);
      zmq::message_t message;
      while (socket_.recv(message, zmq::recv_flags::dontwait)) {
        json reply = json::parse(message.to_string(), nullptr, false);
        if (!reply.is_discarded() && reply.value("id", json()) == id) return reply;
      }
    }
  }

 private:
  zmq::context_t context_{1};
  zmq::socket_t socket_;
  std::string prefix_ = [] {
    char host[256] = "host";
    gethostname(host, sizeof host - 1);
    return "nvs-" + std::string(host) + "-" + std::to_string(getpid()) + "-" +
           std::to_string(std::chrono::system_clock::now().time_since_epoch().count()) + "-";
  }();
  int next_id_ = 0;
};

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
  } else if (o.positional.size() == 1) {
    commands.push_back(o.positional[0]);
  } else {
    std::cerr << kUsage;
    return kExitUsage;
  }
  Client client(o.endpoint);
  int exit_code = kExitOk;
  std::size_t number = 0;
  for (const auto& text : commands) {
    ++number;
    json cmd = json::parse(text, nullptr, false);
    if (cmd.is_discarded()) {
      std::cerr << "nvs: line " << number << " is not JSON: " << text << "\n";
      return kExitUsage;
    }
    json request = o.query ? json{{"type", "query"}, {"query", cmd}} : json{{"type", "command"}, {"cmd", cmd}};
    auto reply = client.Call(request, o.timeout_ms);
    if (!reply) {
      std::cerr << "nvs: no reply from " << o.endpoint << " within " << o.timeout_ms << " ms\n";
      return kExitTimeout;
    }
    if (o.json_output) {
      std::cout << reply->dump() << "\n";
    } else {
      std::cout << (commands.size() > 1 ? "#" + std::to_string(number) + " " : "") << Describe(*reply) << "\n";
    }
    const std::string status = reply->value("status", "");
    if (status != "committed" && status != "answered") exit_code = kExitRefused;
  }
  return exit_code;
}

int Status(const Options& o) {
  Client client(o.endpoint);
  auto reply = client.Call({{"type", "status"}}, o.timeout_ms);
  if (!reply) {
    std::cerr << "nvs: no reply from " << o.endpoint << " within " << o.timeout_ms << " ms\n";
    return kExitTimeout;
  }
  if (o.json_output) {
    std::cout << reply->dump() << "\n";
    return kExitOk;
  }
  const json& n = (*reply)["nvsd"];
  std::cout << "nvsd pid " << n.value("pid", 0) << (n.value("ready", false) ? ", ready" : ", NOT READY") << ", seq "
            << n.value("seq", 0) << ", policy " << n.value("policy", "?") << ", healthy " << n.value("healthy", 0)
            << " (min " << n.value("min_healthy", 0) << "), quarantined " << n.value("quarantined", 0) << "\n";
  std::printf("%-14s %-9s %8s %5s %8s  %s\n", "VARIANT", "STATE", "PID", "INC", "RESTARTS", "LAST FAULT");
  for (const auto& v : (*reply)["variants"]) {
    std::printf("%-14s %-9s %8d %5d %8d  %s\n", v.value("name", "?").c_str(), v.value("state", "?").c_str(),
                v.value("pid", -1), v.value("incarnation", 0), v.value("restarts", 0),
                v.value("last_fault", "").c_str());
  }
  return kExitOk;
}

int ExportJournal(const Options& o) {
  if (o.positional.size() != 2 || o.positional[0] != "export") {
    std::cerr << kUsage;
    return kExitUsage;
  }
  const std::filesystem::path path = o.positional[1];
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

int main(int argc, char** argv) {
  auto options = Parse(argc, argv);
  if (!options) {
    std::cerr << kUsage;
    return kExitUsage;
  }
  try {
    if (options->command == "send") return Send(*options);
    if (options->command == "status") return Status(*options);
    if (options->command == "journal") return ExportJournal(*options);
  } catch (const zmq::error_t& e) {
    std::cerr << "nvs: " << e.what() << " (endpoint " << options->endpoint << ")\n";
    return kExitUsage;
  }
  std::cerr << "nvs: unknown command '" << options->command << "'\n" << kUsage;
  return kExitUsage;
}
