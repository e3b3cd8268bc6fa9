#include "variant_harness.h"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/process/v2/environment.hpp>
// process_environment::on_setup, which Boost 1.81 header-only forgets, is
// defined once for the whole program in supervisor/src/boost_process_environment.cc.
#include <boost/process/v2/process.hpp>
#include <boost/process/v2/stdio.hpp>
#include <deque>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

extern char** environ;

namespace nvs::testing {
namespace bp = boost::process::v2;
using nlohmann::json;

std::vector<VariantCommand> RouterVariants(const std::vector<std::string>& extra) {
  return {RouterVariant("router-a", extra), RouterVariant("router-b", extra), RouterVariant("router-c", extra)};
}

VariantCommand RouterVariant(const std::string& name, const std::vector<std::string>& extra) {
  VariantCommand command{name, {}};
  if (name == "router-a") {
    command.argv = {NVS_ROUTER_A};
  } else if (name == "router-b") {
    command.argv = {NVS_ROUTER_B};
  } else if (name == "router-c") {
    command.argv = {NVS_STDIO_BRIDGE, "--", NVS_PYTHON, NVS_ROUTER_C};
  } else {
    throw std::invalid_argument("unknown router variant " + name);
  }
  command.argv.insert(command.argv.end(), extra.begin(), extra.end());
  return command;
}

std::string StdioBridgePath() { return NVS_STDIO_BRIDGE; }

struct VariantHarness::Impl {
  boost::asio::io_context io;
  zmq::context_t context{1};
  zmq::socket_t router{context, zmq::socket_type::router};
  struct Running {
    std::string identity;
    std::unique_ptr<bp::process> process;
    std::deque<std::string> inbox;
    std::optional<int> status;
    int pidfd = -1;  // our own: Boost 1.81's process::native_handle() does not compile
    ~Running() {
      if (pidfd >= 0) close(pidfd);
    }
    Running() = default;
    Running(Running&& other) noexcept
        : identity(std::move(other.identity)), process(std::move(other.process)), inbox(std::move(other.inbox)),
          status(other.status), pidfd(std::exchange(other.pidfd, -1)) {}
    Running& operator=(Running&& other) noexcept {
      std::swap(identity, other.identity);
      std::swap(process, other.process);
      std::swap(inbox, other.inbox);
      std::swap(status, other.status);
      std::swap(pidfd, other.pidfd);
      return *this;
    }
  };
  std::map<std::string, Running> variants;
  std::map<std::string, std::string> name_of_identity;
  int incarnation = 0;

  // Moves every pending message into its variant's inbox; waits up to `wait`
  // for the first one.
  void Pump(std::chrono::milliseconds wait) {
    zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, wait);
    zmq::message_t identity;
    zmq::message_t payload;
    while (router.recv(identity, zmq::recv_flags::dontwait)) {
      if (!identity.more()) continue;
      if (!router.recv(payload, zmq::recv_flags::none)) break;
      while (payload.more()) {  // a multi-part message is garbage; keep only the first part
        zmq::message_t rest;
        if (!router.recv(rest, zmq::recv_flags::none)) break;
      }
      auto it = name_of_identity.find(identity.to_string());
      if (it == name_of_identity.end()) continue;
      variants[it->second].inbox.push_back(payload.to_string());
    }
  }
};

VariantHarness::VariantHarness(const std::string& endpoint) : impl_(std::make_unique<Impl>()) {
  impl_->router.set(zmq::sockopt::linger, 0);
  impl_->router.set(zmq::sockopt::router_mandatory, 1);
  impl_->router.bind(endpoint);
  endpoint_ = impl_->router.get(zmq::sockopt::last_endpoint);
}

VariantHarness::~VariantHarness() {
  std::vector<std::string> names;
  for (const auto& [name, running] : impl_->variants) names.push_back(name);
  for (const auto& name : names) Stop(name);
}

std::optional<protocol::Hello> VariantHarness::Start(const VariantCommand& command, std::string& error,
                                                     std::chrono::milliseconds deadline) {
  Stop(command.name);
  const std::string identity = command.name + "." + std::to_string(++impl_->incarnation);
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view entry(*e);
    if (entry.rfind("NVS_VARIANT=", 0) == 0 || entry.rfind("NVS_ENDPOINT=", 0) == 0) continue;
    env.emplace_back(entry);
  }
  env.push_back("NVS_VARIANT=" + identity);
  env.push_back("NVS_ENDPOINT=" + endpoint_);
  std::vector<std::string> args(command.argv.begin() + 1, command.argv.end());

  auto& running = impl_->variants[command.name];
  running = Impl::Running{};
  running.identity = identity;
  impl_->name_of_identity[identity] = command.name;
  try {
    running.process = std::make_unique<bp::process>(impl_->io, command.argv[0], args, bp::process_environment(env),
                                                    bp::process_stdio{nullptr, {}, {}});
  } catch (const std::exception& e) {
    error = "cannot start " + command.argv[0] + ": " + e.what();
    return std::nullopt;
  }
  running.pidfd = static_cast<int>(syscall(SYS_pidfd_open, running.process->id(), 0));
  auto raw = Receive(command.name, deadline);
  if (!raw) {
    error = command.name + ": no hello within " + std::to_string(deadline.count()) + " ms";
    return std::nullopt;
  }
  auto decoded = protocol::DecodeReply(*raw);
  if (!decoded.ok() || !std::holds_alternative<protocol::Hello>(decoded.value())) {
    error = command.name + ": first message is not a hello: " + *raw;
    return std::nullopt;
  }
  auto hello = std::get<protocol::Hello>(decoded.value());
  if (hello.variant != identity) {
    error = command.name + ": hello names '" + hello.variant + "', expected '" + identity + "'";
    return std::nullopt;
  }
  return hello;
}

void VariantHarness::Send(const std::string& name, const std::string& bytes) {
  auto& running = impl_->variants.at(name);
  impl_->router.send(zmq::buffer(running.identity), zmq::send_flags::sndmore);
  impl_->router.send(zmq::buffer(bytes), zmq::send_flags::none);
}

void VariantHarness::SendParts(const std::string& name, const std::vector<std::string>& parts) {
  auto& running = impl_->variants.at(name);
  impl_->router.send(zmq::buffer(running.identity), zmq::send_flags::sndmore);
  for (std::size_t i = 0; i < parts.size(); ++i) {
    impl_->router.send(zmq::buffer(parts[i]), i + 1 < parts.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
}

std::optional<std::string> VariantHarness::Receive(const std::string& name, std::chrono::milliseconds deadline) {
  const auto until = Clock::now() + deadline;
  for (;;) {
    auto& inbox = impl_->variants.at(name).inbox;
    if (!inbox.empty()) {
      std::string front = std::move(inbox.front());
      inbox.pop_front();
      return front;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
    if (left.count() <= 0) return std::nullopt;
    if (HasExited(name)) {
      // Whatever it sent before dying is in flight at most briefly: one last look.
      impl_->Pump(std::min(left, std::chrono::milliseconds(100)));
      if (inbox.empty()) return std::nullopt;
      continue;
    }
    impl_->Pump(std::min(left, std::chrono::milliseconds(20)));
  }
}

std::optional<protocol::Reply> VariantHarness::Call(const std::string& name, const protocol::Request& request,
                                                    std::string& error, std::chrono::milliseconds deadline) {
  Send(name, request);
  auto raw = Receive(name, deadline);
  if (!raw) {
    error = name + ": no reply to " + std::string(protocol::TypeName(request)) + " within " +
            std::to_string(deadline.count()) + " ms";
    return std::nullopt;
  }
  auto decoded = protocol::DecodeReply(*raw);
  if (!decoded.ok()) {
    error = name + ": undecodable reply (" + decoded.error().reason + "): " + raw->substr(0, 500);
    return std::nullopt;
  }
  return decoded.value();
}

std::optional<int> VariantHarness::WaitForExit(const std::string& name, std::chrono::milliseconds deadline) {
  auto it = impl_->variants.find(name);
  if (it == impl_->variants.end() || !it->second.process) return std::nullopt;
  auto& running = it->second;
  if (running.status) return running.status;
  pollfd fd{running.pidfd, POLLIN, 0};
  if (poll(&fd, 1, static_cast<int>(deadline.count())) <= 0) return std::nullopt;
  bp::error_code ec;
  running.process->wait(ec);
  running.status = running.process->native_exit_code();
  return running.status;
}

std::optional<int> VariantHarness::Stop(const std::string& name) {
  auto it = impl_->variants.find(name);
  if (it == impl_->variants.end() || !it->second.process) return std::nullopt;
  auto& running = it->second;
  if (!running.status && running.process->running()) {
    SignalProcess(running.process->id(), SIGTERM);
    if (!WaitForExit(name, std::chrono::milliseconds(3000))) {
      SignalProcess(running.process->id(), SIGKILL);
      WaitForExit(name, std::chrono::milliseconds(3000));
    }
  }
  auto status = running.status;
  if (!status) {
    bp::error_code ec;
    running.process->wait(ec);
    status = running.process->native_exit_code();
  }
  impl_->name_of_identity.erase(running.identity);
  impl_->variants.erase(it);
  return status;
}

bool VariantHarness::HasExited(const std::string& name) const {
  auto it = impl_->variants.find(name);
  if (it == impl_->variants.end() || !it->second.process) return true;
  if (it->second.status) return true;
  pollfd fd{it->second.pidfd, POLLIN, 0};
  return poll(&fd, 1, 0) == 1;
}

int VariantHarness::Pid(const std::string& name) const {
  auto it = impl_->variants.find(name);
  if (it == impl_->variants.end() || !it->second.process || it->second.status) return -1;
  return it->second.process->id();
}

bool SignalProcess(int pid, int signal) { return pid > 0 && kill(pid, signal) == 0; }

namespace {
json WithoutMessage(json value) {
  if (!value.is_object()) return value;
  auto ok = value.find("ok");
  if (ok != value.end() && *ok == false) value.erase("message");
  return value;
}
}  // namespace

std::string CompareResults(const std::string& a, const std::string& b) {
  json ja = json::parse(a, nullptr, false);
  json jb = json::parse(b, nullptr, false);
  if (ja.is_discarded() || jb.is_discarded()) return "unparseable result";
  ja = WithoutMessage(std::move(ja));
  jb = WithoutMessage(std::move(jb));
  if (ja == jb) return {};
  return ja.dump() + " != " + jb.dump();
}

}  // namespace nvs::testing
