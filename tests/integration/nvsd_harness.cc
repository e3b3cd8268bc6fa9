#include "nvsd_harness.h"

#include <httplib.h>

#include "variant_harness.h"

#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/process/v2/process.hpp>
#include <boost/process/v2/stdio.hpp>
#include <fstream>
#include <gtest/gtest.h>
#include <iostream>
#include <set>
#include <sstream>
#include <zmq.hpp>

#include "nvs/protocol/curve_client.h"
#include "nvs/protocol/curve_keys.h"

namespace nvs::testing {
namespace bp = boost::process::v2;
using nlohmann::json;

std::string NvsdPath() { return NVS_NVSD; }

int FreeTcpPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = -1;
  if (fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  if (fd >= 0) close(fd);
  return port;
}

std::vector<json> LogEvents(const std::string& log, const std::string& event) {
  std::vector<json> found;
  std::size_t start = 0;
  while (start < log.size()) {
    const auto end = log.find('\n', start);
    const json line = json::parse(log.substr(start, end == std::string::npos ? std::string::npos : end - start), nullptr,
                                  false);
    if (line.is_object() && line.value("event", "") == event) found.push_back(line);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return found;
}

std::string PythonPath() { return NVS_PYTHON; }

std::string RunCapture(const std::string& command, const std::filesystem::path& stderr_file, int* status) {
  FILE* pipe = popen((command + " 2>" + stderr_file.string()).c_str(), "r");
  std::string out;
  if (pipe == nullptr) {
    *status = -1;
    return out;
  }
  char buffer[4096];
  while (std::size_t n = fread(buffer, 1, sizeof buffer, pipe)) out.append(buffer, n);
  const int raw = pclose(pipe);
  *status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  return out;
}

std::string MisbehavingVariantPath() { return NVS_MISBEHAVING; }

std::pair<int, std::string> HttpGet(const std::string& address, const std::string& path) {
  const auto colon = address.rfind(':');
  httplib::Client client(address.substr(0, colon), std::stoi(address.substr(colon + 1)));
  client.set_connection_timeout(10);
  client.set_read_timeout(10);
  auto got = client.Get(path.c_str());
  if (!got) return {0, httplib::to_string(got.error())};
  return {got->status, got->body};
}

std::string PromtoolProblems(const std::string& page, const std::filesystem::path& scratch_dir) {
  if (access("/usr/bin/promtool", X_OK) != 0) return "no /usr/bin/promtool (Debian's prometheus: scripts/bootstrap installs it)";
  const auto file = scratch_dir / "scrape.txt";
  std::ofstream(file) << page;
  int status = 0;
  const auto err = scratch_dir / "promtool.err";
  std::string out = RunCapture("/usr/bin/promtool check metrics < " + file.string(), err, &status);
  std::ifstream said(err);
  out += std::string((std::istreambuf_iterator<char>(said)), std::istreambuf_iterator<char>());  // (its findings: stderr)
  if (status != 0 || !out.empty()) return "promtool check metrics exited " + std::to_string(status) + ": " + out;
  return "";
}

std::optional<double> MetricValue(const std::string& page, const std::string& series) {
  std::istringstream lines(page);
  for (std::string line; std::getline(lines, line);) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 && line[series.size()] == ' ') {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return std::nullopt;
}

std::string RouterPath(const std::string& name) {
  if (name == "router-a") return NVS_ROUTER_A;
  if (name == "router-b") return NVS_ROUTER_B;
  if (name == "router-c") return NVS_ROUTER_C;
  throw std::invalid_argument("unknown variant " + name);
}

struct NvsdHarness::Impl {
  std::filesystem::path dir;
  std::filesystem::path state_dir;
  std::filesystem::path log_dir;
  std::string client_endpoint;
  boost::asio::io_context io;
  std::unique_ptr<bp::process> nvsd;
  int pidfd = -1;
  std::optional<int> exit_status;
  zmq::context_t context{1};
  zmq::socket_t client{context, zmq::socket_type::dealer};
  zmq::socket_t events{context, zmq::socket_type::sub};
  std::map<std::string, std::string> replies;  // id -> raw reply
  std::vector<json> seen_events;
  std::set<std::size_t> consumed;
  int next_id = 0;
  // Request ids are remembered by nvsd across restarts (exactly-once), so
  // every harness instance uses its own.
  std::string id_prefix = std::to_string(getpid()) + "-" +
                          std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + "-";

  void PumpEvents(std::chrono::milliseconds wait) {
    zmq::pollitem_t items[] = {{events.handle(), 0, ZMQ_POLLIN, 0}, {client.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, 2, wait);
    DrainEvents();
    DrainClient();
  }
  void DrainEvents() {
    zmq::message_t topic;
    while (events.recv(topic, zmq::recv_flags::dontwait)) {
      zmq::message_t body;
      if (!topic.more() || !events.recv(body, zmq::recv_flags::none)) continue;
      json event = json::parse(body.to_string(), nullptr, false);
      if (!event.is_discarded()) seen_events.push_back(event);
    }
  }
  void DrainClient() {
    zmq::message_t message;
    while (client.recv(message, zmq::recv_flags::dontwait)) {
      json reply = json::parse(message.to_string(), nullptr, false);
      const std::string id = !reply.is_discarded() && reply.contains("id") && reply["id"].is_string()
                                 ? reply["id"].get<std::string>()
                                 : std::string();
      replies[id] = message.to_string();
    }
  }
  std::optional<std::string> WaitReply(const std::string& id, std::chrono::milliseconds deadline) {
    const auto until = Clock::now() + deadline;
    for (;;) {
      if (auto it = replies.find(id); it != replies.end()) {
        std::string reply = it->second;
        replies.erase(it);
        return reply;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
      if (left.count() <= 0) return std::nullopt;
      PumpEvents(std::min(left, std::chrono::milliseconds(50)));
    }
  }
  json Request(const json& request, std::chrono::milliseconds deadline) {
    json r = request;
    const std::string id = id_prefix + "r" + std::to_string(++next_id);
    r["id"] = id;
    const std::string bytes = r.dump();
    client.send(zmq::buffer(bytes), zmq::send_flags::none);
    auto reply = WaitReply(id, deadline);
    if (!reply) return json();
    return json::parse(*reply, nullptr, false);
  }
};

NvsdHarness::NvsdHarness(const NvsdOptions& options) : impl_(std::make_unique<Impl>()) {
  char pattern[] = "/tmp/nvs-it-XXXXXX";
  impl_->dir = mkdtemp(pattern);
  impl_->state_dir = impl_->dir / "state";
  impl_->log_dir = options.log_dir.empty() ? impl_->dir : options.log_dir;
  const std::string client_endpoint = "ipc://" + (impl_->dir / "client.sock").string();
  const std::string event_endpoint = "ipc://" + (impl_->dir / "events.sock").string();

  json variants = json::array();
  for (const auto& spec : options.variants) {
    const std::string name = spec.config_name.empty() ? spec.name : spec.config_name;
    json argv = json::array();
    json variant = {{"name", name}};
    if (spec.name == "router-c" && !spec.wrapper.empty()) {
      argv = {NVS_PYTHON, MisbehavingVariantPath()};
      for (const auto& w : spec.wrapper) argv.push_back(w);
      argv.push_back("--");
      argv.push_back(NVS_PYTHON);
      argv.push_back(RouterPath(spec.name));
      variant["transport"] = "stdio";
    } else if (spec.name == "router-c") {
      argv = {NVS_PYTHON, RouterPath(spec.name)};
      variant["transport"] = "stdio";
    } else {
      argv = {RouterPath(spec.name)};
    }
    argv.push_back("--inputs");
    argv.push_back(std::to_string(options.inputs));
    argv.push_back("--outputs");
    argv.push_back(std::to_string(options.outputs));
    argv.push_back("--received-log");
    argv.push_back((impl_->log_dir / ("received-" + name + ".jsonl")).string());
    for (const auto& e : spec.extra) argv.push_back(e);
    variant["argv"] = argv;
    variant.merge_patch(spec.config);
    variants.push_back(variant);
  }
  json config = {{"state_dir", impl_->state_dir.string()},
                 {"client_endpoint", client_endpoint},
                 {"event_endpoint", event_endpoint},
                 {"variant_endpoint", "ipc://" + (impl_->dir / "variants.sock").string()},
                 {"variants", variants},
                 {"deadline_ms", 2000},
                 {"sync_deadline_ms", 10000},
                 {"stop_grace_ms", 2000}};
  if (options.curve) {
    const auto keys = impl_->dir / "keys";
    std::filesystem::create_directory(keys);
    auto nvsd_keys = protocol::WriteKeyPair(keys / "nvsd");
    auto client_keys = protocol::WriteKeyPair(keys / "client");
    if (!nvsd_keys.ok() || !client_keys.ok()) throw std::runtime_error("cannot write the harness's CURVE keys");
    std::ofstream authorized(keys / "authorized_keys");
    authorized << "# the harness's own client\n" << client_keys.value().public_key << " harness\n";
    std::ofstream(keys / "client.json") << json{{"endpoint", client_endpoint},
                                                {"server_public_key_file", "nvsd.pub"},
                                                {"secret_key_file", "client.key"}}.dump(2);
    for (const auto& name : options.client_keys) {
      auto more = protocol::WriteKeyPair(keys / name);
      if (!more.ok()) throw std::runtime_error("cannot write the CURVE keys of " + name);
      authorized << more.value().public_key << " " << name << "\n";
      std::ofstream(keys / (name + ".json")) << json{{"endpoint", client_endpoint},
                                                     {"server_public_key_file", "nvsd.pub"},
                                                     {"secret_key_file", name + ".key"}}.dump(2);
    }
    authorized.close();
    config["client_curve"] = {{"secret_key_file", (keys / "nvsd.key").string()},
                              {"authorized_keys_file", (keys / "authorized_keys").string()}};
    auto client_config = protocol::LoadClientConfig(keys / "client.json");
    if (!client_config.ok()) throw std::runtime_error(client_config.status().message());
    protocol::ApplyCurveClient(impl_->client, client_config.value());
  }
  config.merge_patch(options.overrides);
  // The overrides may name other endpoints (the chaos test keeps its own
  // across nvsd restarts).
  impl_->state_dir = config["state_dir"].get<std::string>();
  impl_->client_endpoint = config["client_endpoint"].get<std::string>();
  const std::string events_to = config["event_endpoint"].get<std::string>();
  const auto config_path = impl_->dir / "nvsd.json";
  std::ofstream(config_path) << config.dump(2);

  impl_->events.set(zmq::sockopt::subscribe, "");
  impl_->events.set(zmq::sockopt::reconnect_ivl, 10);
  impl_->events.set(zmq::sockopt::linger, 0);
  impl_->client.set(zmq::sockopt::reconnect_ivl, 10);
  impl_->client.set(zmq::sockopt::linger, 0);
  impl_->events.connect(events_to);
  impl_->client.connect(impl_->client_endpoint);

  const auto log = impl_->dir / "nvsd.log";
  FILE* log_file = std::fopen(log.c_str(), "w");
  std::vector<std::string> args = {"--config", config_path.string()};
  std::string program = NvsdPath();
  if (!options.launcher.empty()) {
    args.insert(args.begin(), program);
    args.insert(args.begin(), options.launcher.begin() + 1, options.launcher.end());
    program = options.launcher.front();
  }
  impl_->nvsd = std::make_unique<bp::process>(impl_->io, program, args, bp::process_stdio{nullptr, log_file, log_file});
  std::fclose(log_file);
  impl_->pidfd = static_cast<int>(syscall(SYS_pidfd_open, impl_->nvsd->id(), 0));
}

NvsdHarness::~NvsdHarness() {
  if (impl_->nvsd && !impl_->exit_status) {
    SignalProcess(impl_->nvsd->id(), SIGTERM);
    if (!WaitNvsdExit(std::chrono::milliseconds(10000))) {
      SignalProcess(impl_->nvsd->id(), SIGKILL);
      WaitNvsdExit(std::chrono::milliseconds(5000));
    }
  }
  if (::testing::Test::HasFailure()) {
    std::ifstream in(impl_->dir / "nvsd.log");
    std::stringstream text;
    text << in.rdbuf();
    // (Each line cut to 500 bytes: one long line, such as the environment
    // not passed to variants, must not push the events that matter out of
    // a CI log that keeps only part of the output.)
    std::string log;
    for (std::string line; std::getline(text, line);) {
      if (line.size() > 500) line = line.substr(0, 500) + "...";
      log += line + "\n";
    }
    if (log.size() > 20000) log = "...\n" + log.substr(log.size() - 20000);
    std::cerr << "---- nvsd log (" << impl_->dir.string() << ") ----\n" << log << "---- end of nvsd log ----\n";
  } else {
    std::error_code ec;
    std::filesystem::remove_all(impl_->dir, ec);
  }
  if (impl_->pidfd >= 0) close(impl_->pidfd);
}

std::optional<int> NvsdHarness::WaitNvsdExit(std::chrono::milliseconds deadline) {
  if (impl_->exit_status) return impl_->exit_status;
  pollfd fd{impl_->pidfd, POLLIN, 0};
  if (poll(&fd, 1, static_cast<int>(deadline.count())) != 1) return std::nullopt;
  bp::error_code ec;
  impl_->nvsd->wait(ec);
  impl_->exit_status = impl_->nvsd->native_exit_code();
  return impl_->exit_status;
}

int NvsdHarness::nvsd_pid() const { return impl_->nvsd->id(); }

std::string NvsdHarness::client_endpoint() const { return impl_->client_endpoint; }

std::string NvsdHarness::NvsdLog() const {
  std::ifstream in(impl_->dir / "nvsd.log");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}
bool NvsdHarness::WaitNvsdLog(const std::function<bool(const std::string&)>& done,
                              std::chrono::milliseconds deadline) const {
  return WaitForFileCondition(impl_->dir / "nvsd.log", [&] { return done(NvsdLog()); }, deadline);
}

bool WaitForFileCondition(const std::filesystem::path& file, const std::function<bool()>& done,
                          std::chrono::milliseconds deadline) {
  const int watch = inotify_init1(IN_CLOEXEC);
  inotify_add_watch(watch, file.c_str(), IN_MODIFY);
  const auto until = std::chrono::steady_clock::now() + deadline;
  bool ok = done();
  while (!ok && std::chrono::steady_clock::now() < until) {
    pollfd p{watch, POLLIN, 0};
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()).count();
    if (poll(&p, 1, static_cast<int>(std::max<long>(1, left))) > 0) {
      char events[4096];
      (void)read(watch, events, sizeof events);
    }
    ok = done();
  }
  close(watch);
  return ok;
}

const std::filesystem::path& NvsdHarness::dir() const { return impl_->dir; }
std::filesystem::path NvsdHarness::keys_dir() const { return impl_->dir / "keys"; }
std::filesystem::path NvsdHarness::client_config() const { return impl_->dir / "keys" / "client.json"; }
const std::filesystem::path& NvsdHarness::state_dir() const { return impl_->state_dir; }
const std::vector<json>& NvsdHarness::events() const { return impl_->seen_events; }

bool NvsdHarness::WaitReady(std::chrono::milliseconds deadline) {
  const auto until = Clock::now() + deadline;
  while (Clock::now() < until) {
    json status = Status(std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()));
    if (status.is_object() && status.value("/nvsd/ready"_json_pointer, false)) return true;
    impl_->PumpEvents(std::chrono::milliseconds(20));
  }
  return false;
}

bool NvsdHarness::WaitAllHealthy(std::chrono::milliseconds deadline) {
  const auto until = Clock::now() + deadline;
  while (Clock::now() < until) {
    json status = Status(std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()));
    if (status.is_object() && status.value("/nvsd/ready"_json_pointer, false)) {
      // Healthy, voting, and nothing in flight anywhere: no fault is still
      // on its way (a crash not yet noticed, a hang not yet timed out).
      bool all = status["nvsd"]["active"] == 0 && status["nvsd"]["syncing"] == false;
      for (const auto& v : status["variants"]) {
        all = all && v["state"] == "healthy" && v["voting"] == true && v["in_flight"] == 0;
      }
      if (all) return true;
    }
    impl_->PumpEvents(std::chrono::milliseconds(20));
  }
  return false;
}

json NvsdHarness::WaitStatus(const std::function<bool(const json&)>& match, std::chrono::milliseconds deadline) {
  const auto until = Clock::now() + deadline;
  while (Clock::now() < until) {
    json status = Status(std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()));
    if (status.is_object() && match(status)) return status;
    impl_->PumpEvents(std::chrono::milliseconds(20));
  }
  return json();
}

json NvsdHarness::Command(const json& cmd, std::chrono::milliseconds deadline) {
  return impl_->Request({{"type", "command"}, {"cmd", cmd}}, deadline);
}

json NvsdHarness::Query(const json& query, std::chrono::milliseconds deadline) {
  return impl_->Request({{"type", "query"}, {"query", query}}, deadline);
}

json NvsdHarness::Status(std::chrono::milliseconds deadline) { return impl_->Request({{"type", "status"}}, deadline); }

std::string NvsdHarness::SendCommand(const json& cmd, const std::string& given_id) {
  const std::string id = given_id.empty() ? impl_->id_prefix + "p" + std::to_string(++impl_->next_id) : given_id;
  const json request = {{"type", "command"}, {"id", id}, {"cmd", cmd}};
  impl_->client.send(zmq::buffer(request.dump()), zmq::send_flags::none);
  return id;
}

json NvsdHarness::ReplyTo(const std::string& id, std::chrono::milliseconds deadline) {
  auto reply = impl_->WaitReply(id, deadline);
  return reply ? json::parse(*reply, nullptr, false) : json();
}

std::optional<std::string> NvsdHarness::Raw(const std::string& bytes, std::chrono::milliseconds deadline) {
  impl_->replies.clear();
  impl_->client.send(zmq::buffer(bytes), zmq::send_flags::none);
  // Raw requests may have no readable id: the next reply, whatever its id, is theirs.
  const auto until = Clock::now() + deadline;
  while (impl_->replies.empty()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
    if (left.count() <= 0) return std::nullopt;
    impl_->PumpEvents(std::min(left, std::chrono::milliseconds(50)));
  }
  std::string reply = impl_->replies.begin()->second;
  impl_->replies.clear();
  return reply;
}

json NvsdHarness::WaitEvent(const std::function<bool(const json&)>& match, std::chrono::milliseconds deadline) {
  const auto until = Clock::now() + deadline;
  for (;;) {
    for (std::size_t i = 0; i < impl_->seen_events.size(); ++i) {
      if (!impl_->consumed.count(i) && match(impl_->seen_events[i])) {
        impl_->consumed.insert(i);
        return impl_->seen_events[i];
      }
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
    if (left.count() <= 0) return json();
    impl_->PumpEvents(std::min(left, std::chrono::milliseconds(50)));
  }
}

int NvsdHarness::VariantPid(const std::string& name) {
  json status = Status();
  if (!status.is_object()) return -1;
  for (const auto& v : status["variants"]) {
    if (v["name"] == name) return v["pid"].get<int>();
  }
  return -1;
}

std::vector<json> NvsdHarness::ReceivedLog(const std::string& name) const {
  std::vector<json> lines;
  std::ifstream in(impl_->log_dir / ("received-" + name + ".jsonl"));
  for (std::string line; std::getline(in, line);) {
    json parsed = json::parse(line, nullptr, false);
    if (!parsed.is_discarded()) lines.push_back(parsed);
  }
  return lines;
}

std::vector<json> NvsdHarness::DeliveredTo(const std::string& name) const {
  std::vector<json> lines;
  for (auto& line : ReceivedLog(name)) {
    if (line.value("received_by", "").rfind(name + ".", 0) == 0) lines.push_back(std::move(line));
  }
  return lines;
}

}  // namespace nvs::testing
