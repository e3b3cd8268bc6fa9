#include "nvs/protocol/variant_sdk.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <zmq.hpp>

#include "nvs/protocol/messages.h"

namespace nvs::sdk {
namespace {

namespace proto = nvs::protocol;

std::atomic<bool> g_stop{false};

extern "C" void OnStopSignal(int) { g_stop.store(true); }

void InstallStopHandlers() {
  struct sigaction action {};
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
}

// Dies by `signal` with its default action (no handler, no core dump wanted).
[[noreturn]] void DieBySignal(int signal) {
  ::signal(signal, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, signal);
  sigprocmask(SIG_UNBLOCK, &set, nullptr);
  raise(signal);
  _exit(128 + signal);  // not reached
}

// Blocks forever without using the CPU; SIGTERM/SIGKILL still end it.
[[noreturn]] void HangForever() {
  ::signal(SIGTERM, SIG_DFL);
  ::signal(SIGINT, SIG_DFL);
  for (;;) pause();
}

// The received log (PROTOCOL.md §6): each apply and query as received, with
// "received_by", the process's NVS_VARIANT.
class ReceivedLog {
 public:
  explicit ReceivedLog(const std::string& path) {
    const char* name = std::getenv("NVS_VARIANT");
    received_by_ = R"(,"received_by":)" + nlohmann::json(name != nullptr ? name : "").dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "}";
    if (!path.empty()) file_ = std::fopen(path.c_str(), "a");
    if (!path.empty() && file_ == nullptr) std::cerr << "cannot open received log " << path << "\n";
  }
  ~ReceivedLog() {
    if (file_ != nullptr) std::fclose(file_);
  }
  ReceivedLog(const ReceivedLog&) = delete;
  ReceivedLog& operator=(const ReceivedLog&) = delete;

  // `message`: the encoded request (a JSON object).
  void Append(const std::string& message) {
    if (file_ == nullptr) return;
    const std::string line = message.substr(0, message.size() - 1) + received_by_;
    std::fwrite(line.data(), 1, line.size(), file_);
    std::fputc('\n', file_);
    std::fflush(file_);
  }

 private:
  std::FILE* file_ = nullptr;
  std::string received_by_;  // ,"received_by":NAME}
};

// The first fault whose substring occurs in `payload`, if any.
const VariantOptions::Fault* MatchingFault(const VariantOptions& options, const std::string& payload) {
  for (const auto& fault : options.faults) {
    if (payload.find(fault.substring) != std::string::npos) return &fault;
  }
  return nullptr;
}

// Executes the faults that end or freeze the process; returns for the others.
void FireTerminalFault(const VariantOptions::Fault& fault) {
  if (fault.kind == "crash") DieBySignal(SIGSEGV);
  if (fault.kind == "abort") std::abort();
  if (fault.kind == "exit") _exit(3);
  if (fault.kind == "hang") HangForever();
}

class Server {
 public:
  Server(Controller& controller, const VariantOptions& options)
      : controller_(controller), options_(options), log_(options.received_log) {}

  proto::Reply Handle(std::string_view bytes) {
    auto decoded = proto::DecodeRequest(bytes);
    if (!decoded.ok()) return decoded.error();
    return std::visit([this](auto& request) { return Serve(request); }, decoded.value());
  }

 private:
  proto::Reply Serve(const proto::Apply& m) {
    log_.Append(proto::Encode(m));
    const auto* fault = MatchingFault(options_, m.cmd);
    if (fault != nullptr) FireTerminalFault(*fault);
    std::string result = controller_.Apply(nlohmann::json::parse(m.cmd), m.time_ns).dump();
    if (fault != nullptr && fault->kind == "wrong") result = R"({"ok":true,"fault":"wrong"})";
    if (fault != nullptr && fault->kind == "corrupt") controller_.CorruptForTest();
    return proto::Applied{m.seq, std::move(result)};
  }
  proto::Reply Serve(const proto::Query& m) {
    log_.Append(proto::Encode(m));
    const auto* fault = MatchingFault(options_, m.query);
    if (fault != nullptr) FireTerminalFault(*fault);
    std::string result = controller_.Query(nlohmann::json::parse(m.query)).dump();
    if (fault != nullptr && fault->kind == "wrong") result = R"({"ok":true,"fault":"wrong"})";
    if (fault != nullptr && fault->kind == "corrupt") controller_.CorruptForTest();
    return proto::Answer{m.seq, std::move(result)};
  }
  proto::Reply Serve(const proto::DigestRequest& m) { return proto::DigestReply{m.seq, controller_.Digest()}; }
  proto::Reply Serve(const proto::SnapshotRequest& m) {
    return proto::StateReply{m.seq, controller_.CanonicalState(), controller_.Digest()};
  }
  proto::Reply Serve(const proto::Restore& m) {
    if (auto problem = controller_.Restore(nlohmann::json::parse(m.state))) {
      return proto::Error{m.seq, std::string(proto::error_code::kBadState), *problem};
    }
    return proto::Restored{m.seq, controller_.Digest()};
  }
  proto::Reply Serve(const proto::Ping& m) { return proto::Pong{m.seq}; }

  Controller& controller_;
  const VariantOptions& options_;
  ReceivedLog log_;
};

}  // namespace

bool ParseSdkOptions(std::vector<std::string>& args, VariantOptions& options, std::string& error) {
  std::vector<std::string> rest;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    std::string value;
    bool takes_value = false;
    std::string name = arg;
    if (auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      takes_value = true;
    }
    if (name != "--fault" && name != "--received-log") {
      rest.push_back(arg);
      continue;
    }
    if (!takes_value) {
      if (i + 1 >= args.size()) {
        error = arg + " needs a value";
        return false;
      }
      value = args[++i];
    }
    if (name == "--received-log") {
      options.received_log = value;
      continue;
    }
    static const char* const kKinds[] = {"crash", "abort", "exit", "hang", "wrong", "corrupt"};
    bool known = false;
    for (const char* kind : kKinds) {
      const std::string prefix = std::string(kind) + "-on=";
      if (value.rfind(prefix, 0) == 0) {
        options.faults.push_back({kind, value.substr(prefix.size())});
        known = true;
        break;
      }
    }
    if (!known) {
      error = "unknown fault '" + value + "' (expected KIND-on=SUBSTRING, KIND one of crash abort exit hang wrong corrupt)";
      return false;
    }
  }
  args = std::move(rest);
  return true;
}

int RunVariant(Controller& controller, const VariantOptions& options) {
  const char* endpoint = std::getenv("NVS_ENDPOINT");
  const char* name = std::getenv("NVS_VARIANT");
  if (endpoint == nullptr || name == nullptr || *endpoint == '\0' || *name == '\0') {
    std::cerr << "this program is an nvs variant: NVS_ENDPOINT and NVS_VARIANT must be set\n";
    return 2;
  }
  InstallStopHandlers();
  Server server(controller, options);
  try {
    zmq::context_t context(1);
    zmq::socket_t socket(context, zmq::socket_type::dealer);
    socket.set(zmq::sockopt::routing_id, std::string_view(name));
    socket.set(zmq::sockopt::linger, 0);
    socket.connect(endpoint);
    socket.send(zmq::buffer(proto::Encode(proto::Hello{proto::kProtocolVersion, name, options.impl})),
                zmq::send_flags::none);

    zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0}};
    while (!g_stop.load()) {
      zmq::poll(items, 1, std::chrono::milliseconds(200));
      if (!(items[0].revents & ZMQ_POLLIN)) continue;
      zmq::message_t message;
      while (socket.recv(message, zmq::recv_flags::dontwait)) {
        if (message.more()) {  // a multi-part message is not ours: drop all its parts
          while (message.more() && socket.recv(message, zmq::recv_flags::none)) {
          }
          std::cerr << "ignored a multi-part message\n";
          continue;
        }
        const proto::Reply reply = server.Handle(message.to_string_view());
        socket.send(zmq::buffer(proto::Encode(reply)), zmq::send_flags::none);
      }
    }
  } catch (const zmq::error_t& e) {
    if (g_stop.load() && e.num() == EINTR) return 0;
    std::cerr << "zeromq error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace nvs::sdk
