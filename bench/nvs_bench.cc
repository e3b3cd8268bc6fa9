// nvs-bench: latency and throughput of commands, side by side in one run on
// the same machine:
//   direct      a client talking to router-a directly over ZeroMQ (the floor)
//   nvsd-1/2/3  the same commands through nvsd with 1, 2 and 3 variants
// the time from a variant's SIGKILL to the next committed reply, standby
// failover (SIGKILL and SIGSTOP of the active), and the restart + resync time
// of a variant after 100,000 commands on 288x288 and 1024x1024 routers, and
// nvsd's restart time against the length of its history (10,000 to 1,000,000
// commands in the journal, at the default settings).
// Prints a table and writes JSON (--json FILE).
//
// usage: nvs-bench [--commands N] [--kills N] [--history N] [--only SECTION] [--json FILE]
//   SECTION: latency, kills, failover, resync, replay, videohub, variants, restart, takeover (default: all)
// With --only, the section's keys are written into the JSON file beside
// what it held (the other sections' last figures stay).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>
#include <thread>
#include <zmq.hpp>

#include "nvs/replay/replay.h"
#include "takeover.h"
#include "nvs/supervisor/journal.h"
#include "variant_harness.h"

extern char** environ;

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

double Micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

struct Stats {
  double p50 = 0, p99 = 0, mean = 0, max = 0, per_second = 0;
  double cpu_us = 0;  // CPU time of the whole machine (all processes, all cores) per command
  double nvsd_cpu_us = 0;  // nvsd's own CPU time per command (through nvsd only)
  std::size_t n = 0;
};

// The CPU time (user + system) a process used so far, in microseconds.
double ProcessCpuMicros(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::size_t close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 3; fields >> field; ++i) {  // (field 3 is the state; 14 and 15 are utime and stime)
    if (i == 14) utime = std::stod(field);
    if (i == 15) {
      stime = std::stod(field);
      break;
    }
  }
  return (utime + stime) * 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Busy CPU time of the whole machine so far, in microseconds (from /proc/stat).
double MachineBusyMicros() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  const double ticks = user + nice + system + irq + softirq;
  return ticks * 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK));
}

Stats Summarise(std::vector<double> samples, double seconds) {
  Stats s;
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  s.n = samples.size();
  s.p50 = samples[samples.size() / 2];
  s.p99 = samples[std::min(samples.size() - 1, samples.size() * 99 / 100)];
  s.max = samples.back();
  s.mean = std::accumulate(samples.begin(), samples.end(), 0.0) / static_cast<double>(samples.size());
  s.per_second = static_cast<double>(samples.size()) / seconds;
  return s;
}

json ToJson(const Stats& s) {
  json out = {{"n", s.n}, {"p50_us", s.p50}, {"p99_us", s.p99}, {"mean_us", s.mean}, {"max_us", s.max},
              {"per_second", s.per_second}, {"machine_cpu_us_per_command", s.cpu_us}};
  if (s.nvsd_cpu_us > 0) out["nvsd_cpu_us_per_command"] = s.nvsd_cpu_us;
  return out;
}

std::string RouteCommand(std::size_t i) {
  return R"({"op":"route","client":"bench","routes":[{"output":)" + std::to_string(i % 16) + R"(,"input":)" +
         std::to_string((i * 7 + 1) % 16) + "}]}";
}

// A route on an N x N router, spread over every output; every 16th command
// is a label, so that snapshots carry labels too.
std::string SizedCommand(std::size_t i, int n) {
  const auto size = static_cast<std::size_t>(n);
  if (i % 16 == 15) {
    return R"({"op":"label","client":"bench","kind":"output","labels":[{"index":)" + std::to_string((i / 16) % size) +
           R"(,"text":"OUT )" + std::to_string(i) + R"("}]})";
  }
  return R"({"op":"route","client":"bench","routes":[{"output":)" + std::to_string(i % size) + R"(,"input":)" +
         std::to_string((i * 7 + 1) % size) + "}]}";
}

std::vector<std::string> SizeArgs(int n) { return {"--inputs", std::to_string(n), "--outputs", std::to_string(n)}; }

// ---- direct -------------------------------------------------------------------

// `pipelined`: the same with 32 requests outstanding (commands/s).
Stats BenchDirect(std::size_t commands, Stats* pipelined) {
  // ipc, like nvsd's sockets in this benchmark, so the comparison is fair.
  const std::string socket = "/tmp/nvs-bench-direct-" + std::to_string(getpid()) + ".sock";
  nvs::testing::VariantHarness harness("ipc://" + socket);
  std::string error;
  if (!harness.Start(nvs::testing::RouterVariant("router-a"), error)) throw std::runtime_error(error);
  std::vector<double> samples;
  samples.reserve(commands);
  const double cpu_start = MachineBusyMicros();
  const auto start = Clock::now();
  for (std::size_t i = 0; i < commands; ++i) {
    const std::string bytes = R"({"type":"apply","seq":)" + std::to_string(i + 1) + R"(,"time_ns":1,"cmd":)" +
                              RouteCommand(i) + "}";
    const auto t0 = Clock::now();
    harness.Send("router-a", bytes);
    if (!harness.Receive("router-a")) throw std::runtime_error("direct: no reply");
    samples.push_back(Micros(Clock::now() - t0));
  }
  Stats stats = Summarise(samples, std::chrono::duration<double>(Clock::now() - start).count());
  stats.cpu_us = (MachineBusyMicros() - cpu_start) / static_cast<double>(commands);
  const auto p_start = Clock::now();
  std::size_t sent = 0, received = 0;
  while (received < commands) {
    for (; sent < commands && sent - received < 32; ++sent) {
      harness.Send("router-a", R"({"type":"apply","seq":)" + std::to_string(commands + sent + 1) +
                                   R"(,"time_ns":1,"cmd":)" + RouteCommand(sent) + "}");
    }
    if (!harness.Receive("router-a")) throw std::runtime_error("direct, pipelined: no reply");
    ++received;
  }
  pipelined->n = commands;
  pipelined->per_second = static_cast<double>(commands) / std::chrono::duration<double>(Clock::now() - p_start).count();
  fs::remove(socket);
  return stats;
}

// The fsync floor of the journal's disk: p50 (and p99) of a 4 KiB append
// plus fdatasync on a preallocated file in the folder nvsd's state dirs are
// made in, in microseconds: what one `fsync: always` costs at the least.
Stats BenchFsyncFloor(std::size_t samples_wanted) {
  char pattern[] = "/tmp/nvs-bench-XXXXXX";
  const fs::path dir = mkdtemp(pattern);
  const fs::path file = dir / "floor";
  const int fd = open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("fsync floor: cannot create " + file.string());
  const off_t size = static_cast<off_t>(samples_wanted + 1) * 4096;
  if (posix_fallocate(fd, 0, size) != 0 || fsync(fd) != 0) {
    close(fd);
    throw std::runtime_error("fsync floor: cannot preallocate " + file.string());
  }
  const std::string block(4096, 'j');
  std::vector<double> samples;
  samples.reserve(samples_wanted);
  for (std::size_t i = 0; i < samples_wanted; ++i) {
    const auto t0 = Clock::now();
    if (pwrite(fd, block.data(), block.size(), static_cast<off_t>(i) * 4096) != static_cast<ssize_t>(block.size()) ||
        fdatasync(fd) != 0) {
      close(fd);
      throw std::runtime_error("fsync floor: a write or fdatasync failed");
    }
    samples.push_back(Micros(Clock::now() - t0));
  }
  close(fd);
  fs::remove_all(dir);
  return Summarise(samples, 1);
}

// ---- each variant on a full-size router ------------------------------------------

// What the variants' unit tests used to assert on wall time (a test failed
// on a fresh clone of a loaded machine): a 1024x1024 router with every
// label, lock and 64 full salvos, its snapshot, a restore of it, and route
// commands on it, through the real protocol, per variant.
json BenchVariantsFullSize() {
  json out = json::object();
  for (const std::string name : {"router-a", "router-b", "router-c"}) {
    const std::string socket = "/tmp/nvs-bench-variant-" + std::to_string(getpid()) + ".sock";
    nvs::testing::VariantHarness harness("ipc://" + socket);
    std::string error;
    if (!harness.Start(nvs::testing::RouterVariant(name, SizeArgs(1024)), error)) throw std::runtime_error(error);
    std::uint64_t seq = 0;
    // One request: its type, and its other members (",\"cmd\":...").
    const auto call = [&](const std::string& type, const std::string& members) {
      harness.Send(name, R"({"type":")" + type + R"(","seq":)" + std::to_string(++seq) + members + "}");
      auto reply = harness.Receive(name, std::chrono::milliseconds(60000));
      if (!reply) throw std::runtime_error(name + ": no reply");
      return *reply;
    };
    // Fill it: labels and locks of 64 characters everywhere, 64 salvos of 1024 routes.
    for (const std::string kind : {"input", "output"}) {
      std::string labels;
      for (int i = 0; i < 1024; ++i) {
        labels += std::string(i ? "," : "") + R"({"index":)" + std::to_string(i) + R"(,"text":")" +
                  std::string(64, kind[0]) + "\"}";
      }
      call("apply", R"(,"time_ns":1,"cmd":{"op":"label","client":"bench","kind":")" + kind + R"(","labels":[)" + labels +
                        "]}");
    }
    std::string locks;
    for (int o = 0; o < 1024; ++o) locks += std::string(o ? "," : "") + R"({"output":)" + std::to_string(o) + R"(,"action":"O"})";
    call("apply", R"(,"time_ns":1,"cmd":{"op":"lock","client":"bench","locks":[)" + locks + "]}");
    for (int k = 0; k < 64; ++k) {
      std::string routes;
      for (int o = 0; o < 1024; ++o) {
        routes += std::string(o ? "," : "") + R"({"output":)" + std::to_string(o) + R"(,"input":)" +
                  std::to_string((o + k) % 1024) + "}";
      }
      call("apply", R"(,"time_ns":1,"cmd":{"op":"salvo_define","client":"bench","name":"salvo-)" + std::to_string(k) +
                        R"(","routes":[)" + routes + "]}");
    }
    auto t0 = Clock::now();
    const std::string snapshot = call("snapshot", "");
    const double snapshot_ms = Micros(Clock::now() - t0) / 1000;
    const json state = json::parse(snapshot)["state"];
    t0 = Clock::now();
    call("restore", R"(,"state":)" + state.dump());
    const double restore_ms = Micros(Clock::now() - t0) / 1000;
    std::vector<double> routes;
    for (int i = 0; i < 1000; ++i) {
      t0 = Clock::now();
      call("apply", R"(,"time_ns":1,"cmd":)" + SizedCommand(static_cast<std::size_t>(i), 1024));
      routes.push_back(Micros(Clock::now() - t0));
    }
    const Stats route = Summarise(routes, 1);
    out[name] = {{"snapshot_ms", snapshot_ms}, {"snapshot_bytes", snapshot.size()}, {"restore_ms", restore_ms},
                 {"route_p50_us", route.p50}, {"route_p99_us", route.p99}};
    fs::remove(socket);
  }
  return out;
}

// ---- nvsd ---------------------------------------------------------------------

class Nvsd {
 public:
  Nvsd(const std::vector<std::string>& variants, const std::map<std::string, std::vector<std::string>>& extra = {},
       const json& overrides = json::object()) {
    char pattern[] = "/tmp/nvs-bench-XXXXXX";
    dir_ = mkdtemp(pattern);
    json list = json::array();
    for (const auto& name : variants) {
      json v = {{"name", name}};
      json argv = name == "router-c" ? json{NVS_PYTHON, NVS_ROUTER_C} : json{name == "router-a" ? NVS_ROUTER_A : NVS_ROUTER_B};
      if (auto it = extra.find(name); it != extra.end()) {
        for (const auto& e : it->second) argv.push_back(e);
      }
      v["argv"] = argv;
      if (name == "router-c") v["transport"] = "stdio";
      list.push_back(v);
    }
    endpoint_ = "ipc://" + (dir_ / "client.sock").string();
    const std::string events = getenv("NVS_BENCH_DEBUG") ? "ipc://" + (dir_ / "events.sock").string() : "";
    json config = {{"state_dir", (dir_ / "state").string()}, {"client_endpoint", endpoint_}, {"event_endpoint", events},
                   {"variant_endpoint", "ipc://" + (dir_ / "variants.sock").string()}, {"variants", list},
                   {"deadline_ms", 2000}, {"restart", {{"intensity", 1000}, {"period_ms", 1000}}}};
    config.merge_patch(overrides);
    std::ofstream(dir_ / "nvsd.json") << config.dump();
    const std::string config_path = (dir_ / "nvsd.json").string();
    const std::string log = (dir_ / "nvsd.log").string();
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const char* exe = getenv("NVS_BENCH_NVSD") ? getenv("NVS_BENCH_NVSD") : NVS_NVSD;
    const char* argv[] = {exe, "--config", config_path.c_str(), nullptr};
    if (posix_spawn(&pid_, exe, &actions, nullptr, const_cast<char**>(argv), environ) != 0) {
      throw std::runtime_error("cannot start nvsd");
    }
    posix_spawn_file_actions_destroy(&actions);
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::reconnect_ivl, 10);
    socket_.connect(endpoint_);
    if (!events.empty()) {
      events_.set(zmq::sockopt::subscribe, "");
      events_.connect(events);
    }
    WaitAllHealthy();
  }
  ~Nvsd() {
    nvs::testing::SignalProcess(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    std::error_code ec;
    if (getenv("NVS_BENCH_KEEP") != nullptr) {
      std::fprintf(stderr, "nvs-bench: kept %s\n", dir_.c_str());
    } else {
      fs::remove_all(dir_, ec);
    }
  }

  // Sends a request whose id is `id` and returns the reply carrying that id
  // (replies to other requests that arrive meanwhile are kept for Receive).
  std::string Call(const std::string& request, std::chrono::milliseconds deadline = std::chrono::milliseconds(20000)) {
    const auto id_at = request.find(R"("id":")");
    const std::string id = request.substr(id_at + 6, request.find('"', id_at + 6) - id_at - 6);
    socket_.send(zmq::buffer(request), zmq::send_flags::none);
    for (;;) {
      std::string reply = ReceiveFromSocket(deadline);
      if (reply.find(R"("id":")" + id + "\"") != std::string::npos) return reply;
      other_.push_back(std::move(reply));
    }
  }
  void SendOnly(const std::string& request) { socket_.send(zmq::buffer(request), zmq::send_flags::none); }
  std::string Receive(std::chrono::milliseconds deadline = std::chrono::milliseconds(20000)) {
    if (!other_.empty()) {
      std::string reply = std::move(other_.front());
      other_.pop_front();
      return reply;
    }
    return ReceiveFromSocket(deadline);
  }
  std::string ReceiveFromSocket(std::chrono::milliseconds deadline) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, deadline) == 0) throw std::runtime_error("nvsd: no reply in time");
    zmq::message_t message;
    (void)socket_.recv(message, zmq::recv_flags::none);
    return message.to_string();
  }

  json Status() { return json::parse(Call(R"({"type":"status","id":"status"})")); }

  void WaitAllHealthy() {
    const auto until = Clock::now() + std::chrono::seconds(30);
    while (Clock::now() < until) {
      json s = Status();
      bool all = s["nvsd"]["ready"] == true && s["nvsd"]["active"] == 0 && s["nvsd"]["syncing"] == false;
      for (const auto& v : s["variants"]) all = all && v["state"] == "healthy" && v["in_flight"] == 0;
      if (all) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));  // a benchmark, not a test: polling is fine
    }
    throw std::runtime_error("nvsd: variants not healthy in time");
  }

  // Every variant healthy, voting and idle, no sync round: full redundancy.
  bool FullyRedundant() {
    json s = Status();
    bool all = s["nvsd"]["ready"] == true && s["nvsd"]["active"] == 0 && s["nvsd"]["syncing"] == false;
    for (const auto& v : s["variants"]) all = all && v["state"] == "healthy" && v["voting"] == true;
    return all;
  }
  // Polls status until FullyRedundant (a benchmark: busy polling is the
  // finest clock we have); the time it took.
  double MicrosUntilFullyRedundant(Clock::time_point since) {
    const auto until = Clock::now() + std::chrono::seconds(30);
    while (Clock::now() < until) {
      if (FullyRedundant()) return Micros(Clock::now() - since);
    }
    throw std::runtime_error("nvsd: not back to full redundancy in time");
  }
  std::string endpoint() const { return endpoint_; }
  std::string Log() const {
    std::ifstream in(dir_ / "nvsd.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::string ActiveVariant() { return Status()["nvsd"]["active_variant"].get<std::string>(); }

  int VariantPid(const std::string& name) {
    const json status = Status();
    for (const auto& v : status["variants"]) {
      if (v["name"] == name && v["pid"].get<int>() > 0) return v["pid"].get<int>();
    }
    throw std::runtime_error("no running " + name + " in " + status.dump());
  }
  pid_t pid() const { return pid_; }

 private:
  fs::path dir_;
  std::string endpoint_;
  pid_t pid_ = -1;
  zmq::context_t context_{1};
  zmq::socket_t socket_{context_, zmq::socket_type::dealer};

 public:
  zmq::socket_t events_{context_, zmq::socket_type::sub};  // NVS_BENCH_DEBUG: nvsd's events

 private:
  std::deque<std::string> other_;
};

// Every request gets an id of its own: nvsd answers a repeated id from
// memory (exactly-once) without applying the command again.
std::string CommandRequest(std::size_t /*i*/, const std::string& cmd) {
  static std::uint64_t next = 0;
  return R"({"type":"command","id":"b)" + std::to_string(++next) + R"(","cmd":)" + cmd + "}";
}

// `stages`: nvsd's own account of where the one-at-a-time commands' time
// went (status `nvsd.stages`), when given.
Stats BenchNvsd(const std::vector<std::string>& variants, std::size_t commands, Stats* pipelined,
                const json& overrides = json::object(), json* stages = nullptr) {
  Nvsd nvsd(variants, {}, overrides);
  for (std::size_t i = 0; i < 200; ++i) nvsd.Call(CommandRequest(i, RouteCommand(i)));  // warm-up
  nvsd.WaitAllHealthy();
  std::vector<double> samples;
  samples.reserve(commands);
  const double cpu_start = MachineBusyMicros();
  const double nvsd_cpu_start = ProcessCpuMicros(nvsd.pid());
  const auto start = Clock::now();
  for (std::size_t i = 0; i < commands; ++i) {
    const std::string request = CommandRequest(i, RouteCommand(i));
    const auto t0 = Clock::now();
    const std::string reply = nvsd.Call(request);
    samples.push_back(Micros(Clock::now() - t0));
    if (reply.find("\"committed\"") == std::string::npos) throw std::runtime_error("not committed: " + reply);
  }
  Stats closed = Summarise(samples, std::chrono::duration<double>(Clock::now() - start).count());
  closed.cpu_us = (MachineBusyMicros() - cpu_start) / static_cast<double>(commands);
  closed.nvsd_cpu_us = (ProcessCpuMicros(nvsd.pid()) - nvsd_cpu_start) / static_cast<double>(commands);
  if (stages != nullptr) {
    const json status = json::parse(nvsd.Call(R"({"type":"status","id":"stages"})"), nullptr, false);
    if (status.is_object() && status.contains("nvsd")) *stages = status["nvsd"].value("stages", json());
  }
  // Pipelined: keep 32 requests outstanding.
  nvsd.WaitAllHealthy();
  const auto p_start = Clock::now();
  std::size_t sent = 0, received = 0;
  while (received < commands) {
    while (sent < commands && sent - received < 32) {
      nvsd.SendOnly(CommandRequest(sent, RouteCommand(sent)));
      ++sent;
    }
    nvsd.Receive();
    ++received;
  }
  const double p_seconds = std::chrono::duration<double>(Clock::now() - p_start).count();
  pipelined->n = commands;
  pipelined->per_second = static_cast<double>(commands) / p_seconds;
  return closed;
}

// Three variants under a closed-loop stream; SIGKILL router-b between two
// commands' sends: the time from the kill to the next committed reply, and
// the worst latency of the 200 commands after it (the resync).
json BenchKillInStream(int kills) {
  Nvsd nvsd({"router-a", "router-b", "router-c"});
  std::vector<double> to_commit, worst_after;
  std::size_t i = 0;
  for (int k = 0; k < kills; ++k) {
    nvsd.WaitAllHealthy();
    for (int w = 0; w < 50; ++w, ++i) nvsd.Call(CommandRequest(i, RouteCommand(i)));
    const int pid = nvsd.VariantPid("router-b");
    const std::string request = CommandRequest(i, RouteCommand(i));
    ++i;
    nvsd.SendOnly(request);
    const auto killed = Clock::now();
    if (!nvs::testing::SignalProcess(pid, SIGKILL)) throw std::runtime_error("no variant process to kill");
    const std::string reply = nvsd.Receive();
    to_commit.push_back(Micros(Clock::now() - killed));
    if (reply.find("\"committed\"") == std::string::npos) throw std::runtime_error("kill: not committed: " + reply);
    double worst = 0;
    for (int w = 0; w < 200; ++w, ++i) {
      const auto t0 = Clock::now();
      nvsd.Call(CommandRequest(i, RouteCommand(i)));
      worst = std::max(worst, Micros(Clock::now() - t0));
    }
    worst_after.push_back(worst);
  }
  const Stats a = Summarise(to_commit, 1), b = Summarise(worst_after, 1);
  return {{"kill_to_next_commit", ToJson(a)}, {"worst_latency_next_200", ToJson(b)}};
}

// Two variants; router-b holds the command (a hang fault), so the command is
// in flight at it when it is SIGKILLed: the time from the kill to the commit.
json BenchKillInFlight(int kills) {
  Nvsd nvsd({"router-a", "router-b"}, {{"router-b", {"--fault", "hang-on=HOLD"}}});
  std::vector<double> samples;
  for (int k = 0; k < kills; ++k) {
    nvsd.WaitAllHealthy();
    const std::string cmd = R"({"op":"label","client":"bench","kind":"input","labels":[{"index":0,"text":"HOLD-)" +
                            std::to_string(k) + R"("}]})";
    const int pid = nvsd.VariantPid("router-b");
    nvsd.SendOnly(CommandRequest(100000 + static_cast<std::size_t>(k), cmd));
    // Wait until router-b holds it: nvsd reports one request in flight there.
    for (;;) {
      json s = nvsd.Status();
      bool holding = false;
      for (const auto& v : s["variants"]) holding = holding || (v["name"] == "router-b" && v["in_flight"] == 1);
      if (holding) break;
    }
    const auto killed = Clock::now();
    if (!nvs::testing::SignalProcess(pid, SIGKILL)) throw std::runtime_error("no variant process to kill");
    const std::string reply = nvsd.Receive();
    samples.push_back(Micros(Clock::now() - killed));
    if (reply.find("\"committed\"") == std::string::npos) throw std::runtime_error("in flight: not committed: " + reply);
  }
  return {{"kill_to_commit_of_inflight", ToJson(Summarise(samples, 1))}};
}

// Standby, two routers of 288x288, policy probe: the active is SIGKILLed
// (or SIGSTOPped) and the next command is sent at once. Measured: the
// time from the signal to that command's committed reply, and to full
// redundancy (the old active restarted, resynced from the new one and idle).
json BenchStandbyFailover(int kills, int stop_signal) {
  const int n = 288;
  json overrides = {{"mode", "standby"}, {"standby_policy", "probe"}, {"fsync", "none"}};
  if (stop_signal == SIGSTOP) {
    overrides.update({{"heartbeat_interval_ms", 25}, {"heartbeat_timeout_ms", 100}, {"deadline_ms", 100}});
  }
  Nvsd nvsd({"router-a", "router-b"}, {{"router-a", SizeArgs(n)}, {"router-b", SizeArgs(n)}}, overrides);
  std::vector<double> to_commit, to_full;
  std::size_t i = 0;
  for (int k = 0; k < kills; ++k) {
    nvsd.WaitAllHealthy();
    for (int w = 0; w < 50; ++w, ++i) nvsd.Call(CommandRequest(i, SizedCommand(i, n)));
    const int pid = nvsd.VariantPid(nvsd.ActiveVariant());
    const double wall_t0 = static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                   std::chrono::system_clock::now().time_since_epoch())
                                                   .count());
    const auto signalled = Clock::now();
    if (!nvs::testing::SignalProcess(pid, stop_signal)) throw std::runtime_error("no active to signal");
    const std::string reply = nvsd.Call(CommandRequest(i, SizedCommand(i, n)));
    ++i;
    to_commit.push_back(Micros(Clock::now() - signalled));
    if (reply.find("\"committed\"") == std::string::npos) throw std::runtime_error("failover: not committed: " + reply);
    to_full.push_back(nvsd.MicrosUntilFullyRedundant(signalled));
    if (getenv("NVS_BENCH_DEBUG")) {
      std::fprintf(stderr, "commit %.0f full %.0f %s\n", to_commit.back(), to_full.back(), reply.c_str());
      zmq::message_t topic, body;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let the events arrive
      while (nvsd.events_.recv(topic, zmq::recv_flags::dontwait)) {
        (void)nvsd.events_.recv(body, zmq::recv_flags::none);
        const json e = json::parse(body.to_string());
        const double at = (e["time_ns"].get<double>() - wall_t0) / 1000.0;
        if (at > -1000) std::fprintf(stderr, "  %+8.0f us %s\n", at, body.to_string().substr(0, 160).c_str());
      }
    }
  }
  return {{"signal_to_next_commit", ToJson(Summarise(to_commit, 1))},
          {"signal_to_full_redundancy", ToJson(Summarise(to_full, 1))}};
}

// Lockstep, two routers of N x N, after `history` commands: router-b is
// SIGKILLed while idle; the time until it is restarted, resynced (snapshot
// of router-a restored into it, digest checked) and voting again.
json BenchResync(int n, std::size_t history, int kills) {
  Nvsd nvsd({"router-a", "router-b"}, {{"router-a", SizeArgs(n)}, {"router-b", SizeArgs(n)}},
            {{"fsync", "none"}, {"checkpoint_interval", 1000}});
  const auto fill_start = Clock::now();
  std::size_t sent = 0, received = 0;
  while (received < history) {
    while (sent < history && sent - received < 32) {
      nvsd.SendOnly(CommandRequest(sent, SizedCommand(sent, n)));
      ++sent;
    }
    const std::string reply = nvsd.Receive();
    if (reply.find("\"committed\"") == std::string::npos) throw std::runtime_error("history: not committed: " + reply);
    ++received;
  }
  const double fill_seconds = std::chrono::duration<double>(Clock::now() - fill_start).count();
  std::vector<double> samples;
  for (int k = 0; k < kills; ++k) {
    nvsd.WaitAllHealthy();
    const int pid = nvsd.VariantPid("router-b");
    const auto killed = Clock::now();
    if (!nvs::testing::SignalProcess(pid, SIGKILL)) throw std::runtime_error("no router-b to kill");
    // Wait until nvsd has seen the death before polling for redundancy.
    while (nvsd.FullyRedundant()) {
    }
    samples.push_back(nvsd.MicrosUntilFullyRedundant(killed));
  }
  return {{"router", std::to_string(n) + "x" + std::to_string(n)},
          {"history_commands", history},
          {"history_per_second", static_cast<double>(history) / fill_seconds},
          {"kill_to_resynced", ToJson(Summarise(samples, 1))}};
}

// The three routers as nvs replay starts them; `wrap_c` runs router-c in the
// misbehaving proxy with `proxy` options (a crash that needs two commands).
std::vector<nvs::supervisor::VariantConfig> ReplayVariants(const std::vector<std::string>& proxy = {}) {
  const std::vector<std::string> size = {"--inputs", "16", "--outputs", "16"};
  std::vector<nvs::supervisor::VariantConfig> variants(3);
  variants[0].name = "router-a";
  variants[0].argv = {NVS_ROUTER_A};
  variants[1].name = "router-b";
  variants[1].argv = {NVS_ROUTER_B};
  variants[2].name = "router-c";
  variants[2].transport = nvs::supervisor::Transport::kStdio;
  variants[2].argv = {NVS_PYTHON};
  if (!proxy.empty()) {
    variants[2].argv.push_back(NVS_MISBEHAVING);
    variants[2].argv.insert(variants[2].argv.end(), proxy.begin(), proxy.end());
    variants[2].argv.push_back("--");
    variants[2].argv.push_back(NVS_PYTHON);
  }
  variants[2].argv.push_back(NVS_ROUTER_C);
  for (auto& v : variants) v.argv.insert(v.argv.end(), size.begin(), size.end());
  return variants;
}

nvs::replay::ReplayOptions ReplayOptionsFor(std::vector<nvs::supervisor::VariantConfig> variants) {
  nvs::replay::ReplayOptions options;
  options.variants = std::move(variants);
  options.policy = nvs::voter::Policy::DefaultFor(3);
  options.config_dir = fs::current_path();
  options.stdio_bridge = NVS_STDIO_BRIDGE;
  return options;
}

// nvs replay's engine: a 100,000-command log through three fresh variants
// (router-c is Python, on stdio) as fast as possible; and minimisation of a
// 5,000-command log whose crash needs two commands in order.
json BenchReplay(std::size_t history) {
  nvs::replay::CommandLog log;
  for (std::size_t i = 0; i < history; ++i) {
    nvs::replay::RecordedCommand c;
    c.seq = i + 1;
    c.cmd = json::parse(SizedCommand(i, 16)).dump();
    log.commands.push_back(std::move(c));
  }
  auto replayer = nvs::replay::Replayer::Start(ReplayOptionsFor(ReplayVariants()));
  if (!replayer.ok()) throw std::runtime_error(replayer.status().message());
  auto summary = replayer.value()->Run(log, {});
  if (!summary.ok()) throw std::runtime_error(summary.status().message());
  if (summary.value().agreements != history) throw std::runtime_error("replay: not every command agreed");

  nvs::replay::CommandLog long_log;
  for (std::size_t i = 0; i < 5000; ++i) {
    nvs::replay::RecordedCommand c;
    c.seq = i + 1;
    json cmd = json::parse(SizedCommand(i * 3, 16));
    if (i == 1234) cmd = {{"op", "label"}, {"client", "bench"}, {"kind", "input"}, {"labels", {{{"index", 5}, {"text", "ARM"}}}}};
    if (i == 3999) cmd = {{"op", "label"}, {"client", "bench"}, {"kind", "input"}, {"labels", {{{"index", 6}, {"text", "FIRE"}}}}};
    c.cmd = cmd.dump();
    long_log.commands.push_back(std::move(c));
  }
  auto minimizer = nvs::replay::Replayer::Start(ReplayOptionsFor(ReplayVariants({"--crash-after=ARM,FIRE"})));
  if (!minimizer.ok()) throw std::runtime_error(minimizer.status().message());
  auto minimal = nvs::replay::Minimize(*minimizer.value(), long_log);
  if (!minimal.ok()) throw std::runtime_error(minimal.status().message());
  return {{"replay_commands", history},
          {"replay_seconds", summary.value().seconds},
          {"replay_per_second", static_cast<double>(history) / summary.value().seconds},
          {"minimize_commands", long_log.commands.size()},
          {"minimize_kept", minimal.value().kept.size()},
          {"minimize_trials", minimal.value().trials},
          {"minimize_seconds", minimal.value().seconds}};
}

// A take through nvs-videohub (a panel's routing block -> its ACK and the
// status block) against the same take sent to nvsd directly; 3 variants.
json BenchVideohub(std::size_t takes) {
  Nvsd nvsd({"router-a", "router-b", "router-c"}, {}, {{"fsync", "none"}});
  const std::string log = "/tmp/nvs-bench-videohub.log";
  pid_t gateway = -1;
  {
    std::vector<std::string> args = {NVS_VIDEOHUB, "--listen", "127.0.0.1:0", "--endpoint", nvsd.endpoint()};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn(&gateway, NVS_VIDEOHUB, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
  }
  int port = 0;
  for (int i = 0; i < 2000 && port == 0; ++i) {
    std::ifstream in(log);
    const std::string text((std::istreambuf_iterator<char>(in)), {});
    if (auto at = text.find("\"port\":"); at != std::string::npos) port = std::atoi(text.c_str() + at + 7);
    if (port == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (port == 0) throw std::runtime_error("nvs-videohub did not start");
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw std::runtime_error("cannot connect");
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  std::string buffer;
  const auto until = [&](const std::string& text) {
    for (;;) {
      if (auto at = buffer.find(text); at != std::string::npos) {
        buffer.erase(0, at + text.size());
        return;
      }
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 5000) <= 0) throw std::runtime_error("nvs-videohub: no answer");
      char chunk[65536];
      const ssize_t n = recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) throw std::runtime_error("nvs-videohub closed the connection");
      buffer.append(chunk, static_cast<std::size_t>(n));
    }
  };
  until("END PRELUDE:\n\n");
  std::vector<double> via, direct;
  // Interleaved, on separate outputs (the gateway's 0-7, the direct ones
  // 8-15), so both see the same machine; every take changes its output (the
  // input alternates each round), so each has a status block.
  for (std::size_t i = 0; i < takes; ++i) {
    const int out = static_cast<int>(i % 8);
    const int in = (out + 1 + static_cast<int>((i / 8) % 2)) % 16;
    const std::string block = "VIDEO OUTPUT ROUTING:\n" + std::to_string(out) + " " + std::to_string(in) + "\n\n";
    auto t0 = Clock::now();
    send(fd, block.data(), block.size(), MSG_NOSIGNAL);
    until("ACK\n\n");
    until(block);  // the status block with the change
    via.push_back(Micros(Clock::now() - t0));
    const std::string cmd = R"({"op":"route","client":"bench","routes":[{"output":)" + std::to_string(out + 8) +
                            R"(,"input":)" + std::to_string(in) + "}]}";
    t0 = Clock::now();
    const std::string reply = nvsd.Call(CommandRequest(i, cmd));
    direct.push_back(Micros(Clock::now() - t0));
    if (reply.find("\"committed\"") == std::string::npos) throw std::runtime_error("direct take: " + reply);
  }
  close(fd);
  nvs::testing::SignalProcess(gateway, SIGTERM);
  int status = 0;
  waitpid(gateway, &status, 0);
  const Stats v = Summarise(via, 1), d = Summarise(direct, 1);
  return {{"takes", takes}, {"via_gateway", ToJson(v)}, {"direct", ToJson(d)}, {"overhead_ratio", v.p50 / d.p50}};
}

// nvsd's restart on a state dir with `history` commands behind it, as nvsd
// writes one at the default settings (a checkpoint every 100 commits, 64 MiB
// segments, all kept): the time from the spawn to every variant healthy and
// idle, and what recovery read. The history is written directly (a real
// nvsd takes minutes for a million commands): one real nvsd run gives the
// state, its digest and a verdict's shape; every synthetic command routes
// output 0 to input 1 again, so that state stays right at every checkpoint.
// A retry of the newest request id must be answered from memory with its
// seq: the journal was read, not skipped.
json BenchRestart(std::size_t history) {
  namespace sv = nvs::supervisor;
  char pattern[] = "/tmp/nvs-bench-restart-XXXXXX";
  const fs::path base = mkdtemp(pattern);
  const fs::path seed_dir = base / "seed";
  const std::string route = R"({"op":"route","client":"bench","routes":[{"output":0,"input":1}]})";
  {
    Nvsd seed({"router-a", "router-b"}, {}, {{"state_dir", seed_dir.string()}});
    const std::string reply = seed.Call(R"({"type":"command","id":"seed","cmd":)" + route + "}");
    if (reply.find("committed") == std::string::npos) throw std::runtime_error("seed: " + reply);
  }  // SIGTERM: a checkpoint at seq 1
  std::ifstream checkpoint_in(seed_dir / "checkpoint.json");
  auto seed_checkpoint = sv::ParseCheckpoint(std::string(std::istreambuf_iterator<char>(checkpoint_in), {}));
  if (!seed_checkpoint.ok()) throw std::runtime_error("seed checkpoint: " + seed_checkpoint.status().message());
  auto seed_journal = sv::ReadJournal(seed_dir);
  if (!seed_journal.ok()) throw std::runtime_error("seed journal: " + seed_journal.status().message());
  json admit0, verdict0;
  for (const auto& text : seed_journal.value().records) {
    const json r = json::parse(text);
    if (r["t"] == "admit") admit0 = r;
    if (r["t"] == "verdict") verdict0 = r;
  }
  const std::uint64_t kSegmentBytes = 64u << 20;
  const std::uint64_t kInterval = 100;
  json out = json::object();
  for (const std::size_t n : {std::size_t{10000}, std::size_t{100000}, history}) {
    const fs::path state = base / ("state-" + std::to_string(n));
    fs::create_directories(state / "journal");
    const auto made = Clock::now();
    std::uint64_t segment = 1;
    std::ofstream file(sv::JournalSegmentPath(state / "journal", segment), std::ios::binary);
    file << sv::kJournalMagic;
    std::uint64_t bytes = sv::kJournalMagic.size();
    auto put = [&](const json& record) {
      const std::string framed = sv::FrameRecord(record.dump());
      file << framed;
      bytes += framed.size();
    };
    put({{"t", "start"}, {"time_ns", 1}, {"pid", 1}, {"config", {{"note", "nvs-bench synthetic history"}}}});
    // Checkpoints at every multiple of 100; the last 37 commands after one.
    const std::uint64_t last = n;
    const std::uint64_t checkpoint_seq = last > 37 ? (last - 37) / kInterval * kInterval : 0;
    for (std::uint64_t seq = 1; seq <= last; ++seq) {
      json admit = admit0;
      admit["seq"] = seq;
      admit["id"] = "h" + std::to_string(seq);
      admit["time_ns"] = 1'700'000'000'000'000'000 + seq * 1000;
      json verdict = verdict0;
      verdict["seq"] = seq;
      verdict["id"] = admit["id"];
      put(admit);
      put(verdict);
      if (seq % kInterval == 0 && bytes >= kSegmentBytes) {  // nvsd rotates at a checkpoint
        file.close();
        file.open(sv::JournalSegmentPath(state / "journal", ++segment), std::ios::binary);
        file << sv::kJournalMagic;
        bytes = sv::kJournalMagic.size();
      }
    }
    file.close();
    for (const auto& [name, seq] : {std::pair<const char*, std::uint64_t>{"checkpoint.json", checkpoint_seq},
                                    {"checkpoint.prev.json", checkpoint_seq >= kInterval ? checkpoint_seq - kInterval : 0}}) {
      sv::Checkpoint c = seed_checkpoint.value();
      c.seq = seq;
      c.commits = seq;
      std::ofstream(state / name) << sv::FormatCheckpoint(c);
    }
    // On disk, as nvsd leaves its journal (under fsync "always", all but
    // the last verdicts): a start syncs what the last run left unsynced, and
    // a history just written and never synced made that sync write back the
    // newest segment whole (up to 64 MiB: 100-500 ms of the figure).
    ::sync();
    const double made_s = std::chrono::duration<double>(Clock::now() - made).count();
    std::uint64_t journal_bytes = 0;
    for (const auto& entry : fs::directory_iterator(state / "journal")) journal_bytes += entry.file_size();
    // The restart (the page cache is warm: the history was just written, as
    // it is on a server that restarts nvsd; a cold cache adds the disk's read
    // time for the segments recovery reads).
    const auto spawned = Clock::now();
    Nvsd nvsd({"router-a", "router-b"}, {}, {{"state_dir", state.string()}});
    const double ready_ms = std::chrono::duration<double, std::milli>(Clock::now() - spawned).count();
    const json retry = json::parse(nvsd.Call(R"({"type":"command","id":"h)" + std::to_string(last) + R"(","cmd":)" + route + "}"));
    if (retry.value("status", "") != "committed" || retry.value("seq", 0ull) != last) {
      throw std::runtime_error("restart after " + std::to_string(n) + " commands: the newest id was not remembered: " +
                               retry.dump());
    }
    json recovered;
    std::stringstream log(nvsd.Log());
    for (std::string line; std::getline(log, line);) {
      const json l = json::parse(line, nullptr, false);
      if (l.is_object() && l.value("event", "") == "recovered") recovered = l;
    }
    out[std::to_string(n)] = {{"ready_ms", ready_ms},
                              {"journal_mib", static_cast<double>(journal_bytes) / (1 << 20)},
                              {"segments", segment},
                              {"write_history_s", made_s},
                              {"records_read", recovered.value("records_read", 0)},
                              {"journal_read_ms", recovered.value("read_ms", 0.0)},
                              {"recovery_ms", recovered.value("recovery_ms", 0.0)},
                              {"segments_read", recovered.value("segments_read", 0)},
                              {"requests_remembered", recovered.value("requests_remembered", 0)}};
    if (getenv("NVS_BENCH_KEEP") == nullptr) fs::remove_all(state);
  }
  if (getenv("NVS_BENCH_KEEP") != nullptr) {
    std::fprintf(stderr, "nvs-bench: kept %s\n", base.c_str());
  } else {
    fs::remove_all(base);
  }
  return out;
}

}  // namespace

int Run(std::size_t commands, int kills, std::size_t history, const std::string& only, const std::string& json_path);

int main(int argc, char** argv) {
  std::size_t commands = 10000;
  std::size_t history = 100000;
  int kills = 20;
  std::string only;
  std::string json_path = "bench-results.json";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--commands" && i + 1 < argc) commands = std::stoul(argv[++i]);
    else if (arg == "--kills" && i + 1 < argc) kills = std::stoi(argv[++i]);
    else if (arg == "--json" && i + 1 < argc) json_path = argv[++i];
    else if (arg == "--history" && i + 1 < argc) history = std::stoul(argv[++i]);
    else if (arg == "--only" && i + 1 < argc) only = argv[++i];
    else {
      std::cerr << "usage: nvs-bench [--commands N] [--kills N] [--history N] [--only latency|kills|failover|resync|replay|videohub|variants|restart|takeover] "
                   "[--json FILE]\n";
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  try {
    return Run(commands, kills, history, only, json_path);
  } catch (const std::exception& e) {  // destructors stop nvsd and the variants on the way out
    std::cerr << "nvs-bench: " << e.what() << "\n";
    return 1;
  }
}

int Run(std::size_t commands, int kills, std::size_t history, const std::string& only, const std::string& json_path) {
  json out = {{"commands", commands}};
  if (!only.empty()) {
    std::ifstream in(json_path);
    json before = json::parse(in, nullptr, false);
    if (before.is_object()) out = std::move(before);
  }
  const auto wanted = [&](const char* section) { return only.empty() || only == section; };
  if (wanted("latency")) {
  std::printf("%-22s %9s %9s %9s %10s %14s %12s\n", "configuration", "p50 us", "p99 us", "mean us", "cmd/s (1)",
              "cmd/s (32 out)", "CPU us/cmd");
  Stats direct_pipelined;
  const Stats direct = BenchDirect(commands, &direct_pipelined);
  std::printf("%-22s %9.1f %9.1f %9.1f %10.0f %14.0f %12.0f\n", "direct router-a", direct.p50, direct.p99, direct.mean,
              direct.per_second, direct_pipelined.per_second, direct.cpu_us);
  out["direct"] = ToJson(direct);
  out["direct"]["pipelined_per_second"] = direct_pipelined.per_second;
  const std::vector<std::pair<std::string, std::vector<std::string>>> setups = {
      {"nvsd-1 (a)", {"router-a"}},
      {"nvsd-2 (a,b)", {"router-a", "router-b"}},
      {"nvsd-3 (a,b,c)", {"router-a", "router-b", "router-c"}},
  };
  for (const auto& [label, variants] : setups) {
    Stats pipelined;
    json stages;
    const Stats s = BenchNvsd(variants, commands, &pipelined, json::object(), &stages);
    std::printf("%-22s %9.1f %9.1f %9.1f %10.0f %14.0f %12.0f\n", label.c_str(), s.p50, s.p99, s.mean, s.per_second,
                pipelined.per_second, s.cpu_us);
    out[label] = ToJson(s);
    out[label]["pipelined_per_second"] = pipelined.per_second;
    out[label]["stages"] = stages;
  }
  // Journal durability: the same 2-variant run with fsync "none" (nvsd-2 above ran with "always").
  {
    Stats pipelined;
    const Stats s = BenchNvsd({"router-a", "router-b"}, commands, &pipelined, {{"fsync", "none"}});
    std::printf("%-22s %9.1f %9.1f %9.1f %10.0f %14.0f %12.0f\n", "nvsd-2 fsync none", s.p50, s.p99, s.mean,
                s.per_second, pipelined.per_second, s.cpu_us);
    out["nvsd-2 fsync none"] = ToJson(s);
    out["nvsd-2 fsync none"]["pipelined_per_second"] = pipelined.per_second;
  }
  {
    Stats pipelined;
    json stages;
    const Stats s = BenchNvsd({"router-a", "router-b", "router-c"}, commands, &pipelined, {{"fsync", "none"}}, &stages);
    std::printf("%-22s %9.1f %9.1f %9.1f %10.0f %14.0f %12.0f\n", "nvsd-3 fsync none", s.p50, s.p99, s.mean,
                s.per_second, pipelined.per_second, s.cpu_us);
    out["nvsd-3 fsync none"] = ToJson(s);
    out["nvsd-3 fsync none"]["pipelined_per_second"] = pipelined.per_second;
    out["nvsd-3 fsync none"]["stages"] = stages;
  }
  const Stats floor = BenchFsyncFloor(1000);
  out["fsync_floor_us"] = floor.p50;
  out["fsync_floor_p99_us"] = floor.p99;
  const json& three = out["nvsd-3 (a,b,c)"];
  const json& three_none = out["nvsd-3 fsync none"];
  const double ratio = three["p50_us"].get<double>() / direct.p50;
  std::printf("\nfsync floor of this disk (4 KiB append + fdatasync, preallocated file): p50 %.0f us, p99 %.0f us\n",
              floor.p50, floor.p99);
  std::printf("p50 through nvsd with 3 variants / direct: %.2fx; %ld cores\n", ratio, sysconf(_SC_NPROCESSORS_ONLN));
  for (const char* label : {"nvsd-3 (a,b,c)", "nvsd-3 fsync none"}) {
    const json& st = out[label]["stages"];
    const auto p50 = [&](const char* stage) {
      return st.is_object() && st[stage]["p50_us"].is_number() ? st[stage]["p50_us"].get<double>() : 0.0;
    };
    std::printf("%s, inside nvsd (p50): queued %.0f us, admit write %.0f us, vote %.0f us, reply flush %.0f us\n",
                label, p50("queued"), p50("admit_write"), p50("vote"), p50("reply_flush"));
  }
  std::printf("targets (issue 18), same run:\n");
  std::printf("  nvsd-3 fsync none p50 / direct p50: %.2fx (target <= 2.0x)\n", three_none["p50_us"].get<double>() / direct.p50);
  std::printf("  nvsd-3 fsync always p50: %.0f us, against 2 x direct + one fsync floor = %.0f us (%.2fx of it)\n",
              three["p50_us"].get<double>(), 2 * direct.p50 + floor.p50,
              three["p50_us"].get<double>() / (2 * direct.p50 + floor.p50));
  std::printf("  CPU per command: nvsd's own %.0f us (the machine's: %.0f us) against the whole direct path's %.0f us "
              "(target: nvsd's own <= the direct path's)\n",
              three.value("nvsd_cpu_us_per_command", 0.0), three["machine_cpu_us_per_command"].get<double>(),
              direct.cpu_us);
  std::printf("  pipelined: nvsd-3 %.0f commits/s = %.0f%% of direct's %.0f/s (target >= 50%%)\n",
              three["pipelined_per_second"].get<double>(),
              100 * three["pipelined_per_second"].get<double>() / direct_pipelined.per_second, direct_pipelined.per_second);
  std::printf("  p99/p50: nvsd-3 %.2f, direct %.2f (target: no worse than direct's)\n",
              three["p99_us"].get<double>() / three["p50_us"].get<double>(), direct.p99 / direct.p50);
  out["p50_ratio_3_vs_direct"] = ratio;
  }

  if (wanted("kills")) {
  const json stream = BenchKillInStream(kills);
  const json inflight = BenchKillInFlight(kills);
  std::printf("SIGKILL of router-b in a 3-variant stream -> next committed reply: p50 %.0f us, max %.0f us\n",
              stream["kill_to_next_commit"]["p50_us"].get<double>(), stream["kill_to_next_commit"]["max_us"].get<double>());
  std::printf("  worst latency of the 200 commands after it (resync): p50 %.0f us, max %.0f us\n",
              stream["worst_latency_next_200"]["p50_us"].get<double>(),
              stream["worst_latency_next_200"]["max_us"].get<double>());
  std::printf("SIGKILL of the variant holding the in-flight command (2 variants) -> its commit: p50 %.0f us, max %.0f us "
              "(target <= 2000 us)\n",
              inflight["kill_to_commit_of_inflight"]["p50_us"].get<double>(),
              inflight["kill_to_commit_of_inflight"]["max_us"].get<double>());
  out["kill_in_stream"] = stream;
  out["kill_in_flight"] = inflight;
  }

  if (wanted("failover")) {
    const json crash = BenchStandbyFailover(kills, SIGKILL);
    const json stop = BenchStandbyFailover(std::max(3, kills / 4), SIGSTOP);
    std::printf("\nstandby 288x288, SIGKILL of the active -> next committed reply: p50 %.0f us, max %.0f us "
                "(target < 5000 us)\n",
                crash["signal_to_next_commit"]["p50_us"].get<double>(),
                crash["signal_to_next_commit"]["max_us"].get<double>());
    std::printf("  -> back to full redundancy: p50 %.0f us, max %.0f us (target < 20000 us)\n",
                crash["signal_to_full_redundancy"]["p50_us"].get<double>(),
                crash["signal_to_full_redundancy"]["max_us"].get<double>());
    std::printf("standby 288x288, SIGSTOP of the active (heartbeat timeout 100 ms) -> next committed reply: "
                "p50 %.0f us, max %.0f us\n",
                stop["signal_to_next_commit"]["p50_us"].get<double>(), stop["signal_to_next_commit"]["max_us"].get<double>());
    std::printf("  -> back to full redundancy: p50 %.0f us, max %.0f us\n",
                stop["signal_to_full_redundancy"]["p50_us"].get<double>(),
                stop["signal_to_full_redundancy"]["max_us"].get<double>());
    out["standby_failover_sigkill"] = crash;
    out["standby_failover_sigstop"] = stop;
  }

  if (wanted("resync")) {
    std::printf("\n");
    for (const int n : {288, 1024}) {
      const json r = BenchResync(n, history, std::max(3, kills / 4));
      std::printf("restart + resync of a %dx%d router after %zu commands (filled at %.0f cmd/s): p50 %.0f us, "
                  "max %.0f us\n",
                  n, n, history, r["history_per_second"].get<double>(), r["kill_to_resynced"]["p50_us"].get<double>(),
                  r["kill_to_resynced"]["max_us"].get<double>());
      out["resync_" + std::to_string(n)] = r;
    }
  }
  if (wanted("replay")) {
    const json r = BenchReplay(history);
    std::printf("\nnvs replay, %zu commands through 3 fresh variants (router-c in Python on stdio), --speed max: "
                "%.0f commands/s (target >= 20000)\n",
                history, r["replay_per_second"].get<double>());
    std::printf("nvs replay --minimize, 5,000 commands whose crash needs 2 in order: %zu kept, %zu trials, %.2f s\n",
                r["minimize_kept"].get<std::size_t>(), r["minimize_trials"].get<std::size_t>(),
                r["minimize_seconds"].get<double>());
    out["replay"] = r;
  }
  if (wanted("videohub")) {
    const json r = BenchVideohub(std::min<std::size_t>(commands, 3000));
    std::printf("\nVideohub take (routing block -> ACK + status block) through nvs-videohub: p50 %.0f us, p99 %.0f us; "
                "the same take to nvsd directly: p50 %.0f us, p99 %.0f us; the gateway adds %.0f%% at p50 (target <= 25%%)\n",
                r["via_gateway"]["p50_us"].get<double>(), r["via_gateway"]["p99_us"].get<double>(),
                r["direct"]["p50_us"].get<double>(), r["direct"]["p99_us"].get<double>(),
                (r["overhead_ratio"].get<double>() - 1) * 100);
    out["videohub"] = r;
  }
  if (wanted("variants")) {
    const json r = BenchVariantsFullSize();
    std::printf("\neach variant alone, 1024x1024 with every label, lock and 64 full salvos, over its own protocol:\n");
    for (const auto& [name, v] : r.items()) {
      std::printf("  %-9s snapshot %.1f ms (%.0f KB), restore %.1f ms, route p50 %.0f us p99 %.0f us\n", name.c_str(),
                  v["snapshot_ms"].get<double>(), v["snapshot_bytes"].get<double>() / 1024, v["restore_ms"].get<double>(),
                  v["route_p50_us"].get<double>(), v["route_p99_us"].get<double>());
    }
    out["variants_full_size"] = r;
  }
  if (wanted("restart")) {
    const json r = BenchRestart(std::max<std::size_t>(history * 10, 100000));
    std::printf("\nnvsd restart (spawn -> every variant healthy), 2 variants, default settings, by history length:\n");
    for (const auto& [n, v] : r.items()) {
      std::printf("  %8s commands (%4.0f MiB, %llu segments): %6.0f ms (recovery %.0f ms, of which reading the state dir "
                  "%.0f); read %llu records of %llu segments, %llu ids remembered%s\n",
                  n.c_str(), v["journal_mib"].get<double>(), v["segments"].get<unsigned long long>(),
                  v["ready_ms"].get<double>(), v["recovery_ms"].get<double>(), v["journal_read_ms"].get<double>(),
                  v["records_read"].get<unsigned long long>(),
                  v["segments_read"].get<unsigned long long>(), v["requests_remembered"].get<unsigned long long>(),
                  n == "1000000" ? " (target <= 1000 ms)" : "");
    }
    out["restart_by_history"] = r;
  }
  if (wanted("takeover")) {
    const json r = nvs::bench::BenchTakeover(kills, std::min<std::size_t>(commands, 2000));
    std::printf("\ncluster mode (2 members on loopback, 3-member etcd, lease TTL 1 s), 2 variants each:\n");
    std::printf("  one fenced etcd transaction: p50 %.0f us, p99 %.0f us\n", r["etcd_fenced_txn"]["p50_us"].get<double>(),
                r["etcd_fenced_txn"]["p99_us"].get<double>());
    std::printf("  a command, one at a time (with the transaction, in %d interleaved rounds): single-host p50 %.0f us, "
                "cluster p50 %.0f us (goal <= single-host + one transaction: %.0f us)\n",
                r.value("interleaved_rounds", 0), r["single_host"]["p50_us"].get<double>(),
                r["cluster"]["p50_us"].get<double>(),
                r["single_host"]["p50_us"].get<double>() + r["etcd_fenced_txn"]["p50_us"].get<double>());
    std::printf("    the leader's own etcd writes meanwhile (a follower watching, on the same 2 cores): p50 %.0f us\n",
                r["cluster"].value("leader_etcd_write_p50_us", 0.0));
    std::printf("    with the follower paused (its nvsd and variants SIGSTOPped: not on the leader's cores): p50 %.0f us, "
                "the leader's etcd writes p50 %.0f us\n",
                r["cluster_follower_paused"]["p50_us"].get<double>(),
                r["cluster_follower_paused"].value("leader_etcd_write_p50_us", 0.0));
    const auto stage = [](const json& side, const char* name) {
      const json& st = side["stages"];
      return st.is_object() && st.contains(name) ? st[name].value("p50_us", 0.0) : 0.0;
    };
    for (const char* name : {"queued", "admit_write", "vote", "reply_flush"}) {
      std::printf("    stage %-12s p50: single-host %5.0f us, cluster leader %5.0f us, follower paused %5.0f us\n", name,
                  stage(r["single_host"], name), stage(r["cluster"], name), stage(r["cluster_follower_paused"], name));
    }
    const json& pinned = r["two_hosts_pinned"];
    std::printf("  two hosts on this machine (CPU 0: the client, the leader or single-host nvsd and its variants; CPU 1: "
                "etcd and the follower), one at a time, in %d interleaved rounds: single-host p50 %.0f us, cluster p50 "
                "%.0f us, one fenced transaction from CPU 0 p50 %.0f us (goal: cluster <= %.0f us); the leader's etcd "
                "writes p50 %.0f us; a fenced transaction as the leader's are (%d bytes, watched) p50 %.0f us\n",
                pinned.value("rounds", 0), pinned.value("single_host_p50_us", 0.0), pinned.value("cluster_p50_us", 0.0),
                pinned.value("etcd_fenced_txn_p50_us", 0.0),
                pinned.value("single_host_p50_us", 0.0) + pinned.value("etcd_fenced_txn_p50_us", 0.0),
                pinned.value("leader_etcd_write_p50_us", 0.0), pinned.value("leader_write_bytes", 0),
                pinned.value("etcd_fenced_txn_like_the_leaders_p50_us", 0.0));
    std::printf("  pipelined (32 out): single-host %.0f commits/s, cluster %.0f commits/s (goal >= 1000); %.1f records "
                "per etcd write\n",
                r["single_host"]["pipelined_per_second"].get<double>(), r["cluster"]["pipelined_per_second"].get<double>(),
                r["cluster"].value("records_per_write", 0.0));
    std::printf("  kill -9 of the leader's nvsd and variants under load -> first commit by the new leader, %d kills: "
                "p50 %.0f ms, max %.0f ms (goal p50 <= 1300 ms)\n",
                kills, r["takeover"]["p50_ms"].get<double>(), r["takeover"]["max_ms"].get<double>());
    out["takeover"] = r;
  }
  std::ofstream(json_path) << out.dump(2) << "\n";
  std::printf("\nwrote %s\n", json_path.c_str());
  return 0;
}
