// nvs-bench --only takeover (issue 17): cluster mode on this machine, in
// one run: a local 3-member etcd (heartbeat 50 ms, election 500 ms), two
// nvsd members on loopback with two variants each (lease TTL 1 s), and the
// same two variants under one plain nvsd for comparison.
//   - the round trip of one fenced etcd transaction (what cluster mode adds
//     to a command, per write);
//   - a command's latency (one at a time) and pipelined throughput (32 out),
//     single-host and cluster; one at a time again with the follower paused,
//     and with two hosts emulated by pinning (PinnedLatency);
//   - `kills` times under pipelined load: kill -9 of the leader's nvsd and
//     its variants, and the time to the first command committed by the new
//     leader; the killed member is started again (it rejoins from etcd) and
//     caught up before the next kill. Each kill comes after a pseudo-random
//     number of acknowledged commands (0.1 to 1 s of load): when a leader's
//     lease ends depends on where the kill falls between its keepalives
//     (every TTL/3) and etcd's check for expired leases (every 500 ms), and
//     kills at one fixed point of the load fell at one phase of those
//     ticks, so the samples clustered at 0.8 or 1.25 s with the load's
//     speed.
#include "takeover.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>
#include <zmq.hpp>

#include "cluster_load.h"
#include "local_etcd.h"
#include "nvs/cluster/etcd.h"
#include "nvsd_harness.h"

extern char** environ;

namespace nvs::bench {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
namespace fs = std::filesystem;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

// One nvsd process of the benchmark, with its own folder and client socket.
class Member {
 public:
  Member(const fs::path& dir, const json& config) : dir_(dir), config_(config) {
    fs::create_directories(dir_);
    endpoint_ = config["client_endpoint"].get<std::string>();
    std::ofstream(dir_ / "nvsd.json") << config_.dump();
  }
  ~Member() {
    Stop();
  }

  void Start() {
    const std::string config_path = (dir_ / "nvsd.json").string();
    const std::string log = (dir_ / "nvsd.log").string();
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    const char* exe = getenv("NVS_BENCH_NVSD") ? getenv("NVS_BENCH_NVSD") : NVS_NVSD;
    const char* argv[] = {exe, "--config", config_path.c_str(), nullptr};
    if (posix_spawn(&pid_, exe, &actions, nullptr, const_cast<char**>(argv), environ) != 0) {
      throw std::runtime_error("cannot start nvsd");
    }
    posix_spawn_file_actions_destroy(&actions);
  }

  // kill -9 of nvsd and of its children (the variants): its "host" dies.
  void KillHost() {
    if (pid_ <= 0) return;
    std::ifstream in("/proc/" + std::to_string(pid_) + "/task/" + std::to_string(pid_) + "/children");
    std::vector<pid_t> children;
    for (pid_t child; in >> child;) children.push_back(child);
    kill(pid_, SIGKILL);
    for (const pid_t child : children) kill(child, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  // SIGSTOP (or SIGCONT) of nvsd and its variants: the host is there, and
  // takes no CPU.
  void Pause(bool paused) {
    if (pid_ <= 0) return;
    std::ifstream in("/proc/" + std::to_string(pid_) + "/task/" + std::to_string(pid_) + "/children");
    const int signal = paused ? SIGSTOP : SIGCONT;
    kill(pid_, signal);
    for (pid_t child; in >> child;) kill(child, signal);
  }

  void Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  // status, or null when none came within `deadline`.
  json Status(milliseconds deadline = milliseconds(1000)) {
    zmq::socket_t socket(context_, zmq::socket_type::dealer);
    socket.set(zmq::sockopt::linger, 0);
    socket.connect(endpoint_);
    socket.send(zmq::buffer(std::string(R"({"type":"status","id":"s"})")), zmq::send_flags::none);
    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, deadline) == 0) return json();
    zmq::message_t m;
    (void)socket.recv(m, zmq::recv_flags::none);
    return json::parse(m.to_string(), nullptr, false);
  }

  const std::string& endpoint() const { return endpoint_; }

 private:
  fs::path dir_;
  json config_;
  std::string endpoint_;
  pid_t pid_ = -1;
  zmq::context_t context_{1};
};

json Variants() {
  return json::array({{{"name", "router-a"}, {"argv", {NVS_ROUTER_A}}}, {{"name", "router-b"}, {"argv", {NVS_ROUTER_B}}}});
}

// Until `pred` holds of the member's status (a benchmark: polling is fine).
json WaitFor(Member& m, const std::function<bool(const json&)>& pred, milliseconds deadline, const char* what) {
  const auto until = Clock::now() + deadline;
  while (Clock::now() < until) {
    const json s = m.Status();
    if (s.is_object() && pred(s)) return s;
  }
  throw std::runtime_error(std::string("takeover bench: ") + what + " not in time");
}

bool Ready(const json& s) {
  if (!s["nvsd"].value("ready", false) || s["nvsd"].value("active", 1) != 0) return false;
  for (const auto& v : s["variants"]) {
    if (v.value("state", "") != "healthy" || v.value("in_flight", 1) != 0) return false;
  }
  return true;
}

// One command at a time, then 32 out at once: (p50 us of the first, commits/s of the second).
// `between`: called after the one-at-a-time part, before the pipelined one.
std::pair<double, double> Latency(const std::string& endpoint, std::size_t commands,
                                  const std::function<void()>& between = {}) {
  zmq::context_t context(1);
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  socket.set(zmq::sockopt::linger, 0);
  socket.connect(endpoint);
  static int next = 0;
  const auto request = [&](std::size_t i) {
    const json cmd = {{"op", "route"}, {"client", "bench"}, {"routes", {{{"output", i % 16}, {"input", (i * 7) % 16}}}}};
    return json{{"type", "command"}, {"cmd", cmd}, {"id", "t" + std::to_string(getpid()) + "-" + std::to_string(++next)}}.dump();
  };
  const auto receive = [&] {
    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, milliseconds(20000)) == 0) throw std::runtime_error("takeover bench: no reply in time");
    zmq::message_t m;
    (void)socket.recv(m, zmq::recv_flags::none);
    if (m.to_string().find("\"committed\"") == std::string::npos) {
      throw std::runtime_error("takeover bench: not committed: " + m.to_string());
    }
  };
  for (std::size_t i = 0; i < 100; ++i) {  // (warm-up)
    socket.send(zmq::buffer(request(i)), zmq::send_flags::none);
    receive();
  }
  std::vector<double> samples;
  for (std::size_t i = 0; i < commands; ++i) {
    const auto t0 = Clock::now();
    socket.send(zmq::buffer(request(i)), zmq::send_flags::none);
    receive();
    samples.push_back(Ms(Clock::now() - t0) * 1000);
  }
  if (between) between();
  const auto start = Clock::now();
  std::size_t sent = 0, received = 0;
  while (received < commands) {
    while (sent < commands && sent - received < 32) socket.send(zmq::buffer(request(sent++)), zmq::send_flags::none);
    receive();
    ++received;
  }
  return {Percentile(samples, 0.5), static_cast<double>(commands) / std::chrono::duration<double>(Clock::now() - start).count()};
}

// 300 fenced transactions' round trips (us), each a batch of one ~300-byte
// record, on a leader key of the bench's own.
std::vector<double> FencedTxns(const cluster::LocalEtcd& etcd) {
  cluster::EtcdClient client({etcd.client_urls(), milliseconds(5000)});
  auto lease = client.GrantLease(10);
  if (!lease.ok()) throw std::runtime_error("takeover bench: " + lease.status().message());
  auto led = client.Campaign("/bench/election", lease.value(), "bench", milliseconds(5000));
  if (!led.ok()) throw std::runtime_error("takeover bench: " + led.status().message());
  std::vector<double> txn;
  const std::string record(300, 'x');
  for (int i = 0; i < 300; ++i) {
    const auto t0 = Clock::now();
    auto w = client.FencedPut(led.value(), {{"/bench/log/" + std::to_string(i), record}});
    if (!w.ok() || !w.value()) throw std::runtime_error("takeover bench: a fenced write failed");
    txn.push_back(Ms(Clock::now() - t0) * 1000);
  }
  (void)client.Revoke(lease.value());
  return txn;
}

// This thread's CPUs (and so those of the processes it starts from now on).
void PinTo(std::initializer_list<int> cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (const int cpu : cpus) CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0) throw std::runtime_error("takeover bench: sched_setaffinity failed");
}

// Two hosts on one 2-core machine: CPU 0 is the leader's host (the client,
// nvsd and its variants), CPU 1 everything else (etcd's three members and
// the follower with its variants). Single-host runs on CPU 0 alone too, so
// both have the same cores; the fenced Txn is timed from CPU 0 to etcd on
// CPU 1. (Unpinned, the follower applies each command on the leader's
// cores at the moment the leader votes on the next, and etcd's members
// finish each write there too: no second host would.)
json PinnedLatency(std::size_t commands, const fs::path& dir) {
  json out;
  PinTo({1});
  cluster::LocalEtcd etcd;
  if (Status up = etcd.Start(3, milliseconds(30000)); !up.ok()) throw std::runtime_error("takeover bench: " + up.message());
  PinTo({0});
  out["etcd_fenced_txn_p50_us"] = Percentile(FencedTxns(etcd), 0.5);
  {
    Member single(dir / "pinned-single", {{"state_dir", (dir / "pinned-single" / "state").string()},
                                          {"client_endpoint", "ipc://" + (dir / "pinned-single.sock").string()},
                                          {"event_endpoint", ""},
                                          {"variants", Variants()}});
    single.Start();
    WaitFor(single, Ready, milliseconds(30000), "single-host nvsd ready (pinned)");
    out["single_host_p50_us"] = Latency(single.endpoint(), commands).first;
  }
  json endpoints = json::array();
  for (const auto& url : etcd.client_urls()) endpoints.push_back(url);
  const auto member = [&](const std::string& name) {
    return std::make_unique<Member>(
        dir / ("pinned-" + name),
        json{{"state_dir", (dir / ("pinned-" + name) / "state").string()},
             {"client_endpoint", "ipc://" + (dir / ("pinned-" + name + ".sock")).string()},
             {"event_endpoint", ""},
             {"variants", Variants()},
             {"checkpoint_interval", 100},
             {"cluster", {{"etcd_endpoints", endpoints}, {"name", "pinned"}, {"member", name}, {"lease_ttl_s", 1}}}});
  };
  auto a = member("a");
  a->Start();  // (on CPU 0: alone, it leads)
  WaitFor(*a, [](const json& s) { return s["cluster"].value("role", "") == "leader" && Ready(s); }, milliseconds(30000),
          "the pinned leader");
  PinTo({1});
  auto b = member("b");
  b->Start();
  PinTo({0});
  WaitFor(*b, [](const json& s) { return s["cluster"].value("role", "") == "follower" && Ready(s); },
          milliseconds(60000), "the pinned follower");
  json serial;
  out["cluster_p50_us"] = Latency(a->endpoint(), commands, [&] { serial = a->Status(milliseconds(5000)); }).first;
  if (serial.is_object()) {
    out["leader_etcd_write_p50_us"] = serial["cluster"]["etcd_write_p50_us"];
    out["stages"] = serial["nvsd"]["stages"];
  }
  b.reset();
  a.reset();
  PinTo({0, 1});
  return out;
}

}  // namespace

json BenchTakeover(int kills, std::size_t commands) {
  cluster::LocalEtcd etcd;
  if (Status up = etcd.Start(3, milliseconds(30000)); !up.ok()) throw std::runtime_error("takeover bench: " + up.message());
  char pattern[] = "/tmp/nvs-bench-cluster-XXXXXX";
  const fs::path dir = mkdtemp(pattern);
  json out;

  // One fenced transaction's round trip (a batch of one ~300-byte record).
  {
    const std::vector<double> txn = FencedTxns(etcd);
    out["etcd_fenced_txn"] = {{"p50_us", Percentile(txn, 0.5)}, {"p99_us", Percentile(txn, 0.99)}};
  }

  // Single-host, the same variants.
  {
    Member single(dir / "single", {{"state_dir", (dir / "single" / "state").string()},
                                   {"client_endpoint", "ipc://" + (dir / "single.sock").string()},
                                   {"event_endpoint", ""},
                                   {"variants", Variants()}});
    single.Start();
    WaitFor(single, Ready, milliseconds(30000), "single-host nvsd ready");
    json serial;
    const auto [p50, per_second] =
        Latency(single.endpoint(), commands, [&] { serial = single.Status(milliseconds(5000)); });
    out["single_host"] = {{"p50_us", p50}, {"pipelined_per_second", per_second},
                          {"stages", serial.is_object() ? serial["nvsd"]["stages"] : json()}};
  }

  // The cluster: members a and b.
  json endpoints = json::array();
  for (const auto& url : etcd.client_urls()) endpoints.push_back(url);
  std::map<std::string, std::unique_ptr<Member>> members;
  for (const std::string name : {"a", "b"}) {
    members[name] = std::make_unique<Member>(
        dir / name, json{{"state_dir", (dir / name / "state").string()},
                         {"client_endpoint", "ipc://" + (dir / (name + ".sock")).string()},
                         {"event_endpoint", ""},
                         {"variants", Variants()},
                         {"checkpoint_interval", 100},
                         {"cluster", {{"etcd_endpoints", endpoints}, {"name", "bench"}, {"member", name},
                                      {"lease_ttl_s", 1}}}});
    members[name]->Start();
  }
  const auto leader = [&]() -> std::string {
    const auto until = Clock::now() + milliseconds(30000);
    while (Clock::now() < until) {
      for (auto& [name, m] : members) {
        const json s = m->Status(milliseconds(300));
        if (s.is_object() && s["cluster"].value("role", "") == "leader" && Ready(s)) return name;
      }
    }
    throw std::runtime_error("takeover bench: no member leads");
  };
  const std::string first = leader();
  {
    // The leader's own etcd writes: those of the one-at-a-time commands
    // (what one write costs in place, with a follower watching), and the
    // records each carried once the pipelined load is done.
    json serial;
    const auto [p50, per_second] =
        Latency(members[first]->endpoint(), commands, [&] { serial = members[first]->Status(milliseconds(5000)); });
    const json after = members[first]->Status(milliseconds(5000));
    const auto pipelined_records_per_write = [](const json& before, const json& now) {
      const double writes = now.value("etcd_writes", 0.0) - before.value("etcd_writes", 0.0);
      const double records = now.value("etcd_writes", 0.0) * now.value("records_per_write", 0.0) -
                             before.value("etcd_writes", 0.0) * before.value("records_per_write", 0.0);
      return writes > 0 ? records / writes : 0.0;
    };
    if (!serial.is_object() || !after.is_object()) throw std::runtime_error("takeover bench: no status from the leader");
    out["cluster"] = {{"p50_us", p50},
                      {"pipelined_per_second", per_second},
                      {"leader_etcd_write_p50_us", serial["cluster"]["etcd_write_p50_us"]},
                      {"records_per_write", pipelined_records_per_write(serial["cluster"], after["cluster"])},
                      {"stages", serial["nvsd"]["stages"]}};
  }
  {
    // The same with the follower paused (SIGSTOP of its nvsd and variants):
    // on this 2-core machine the follower applies each command on the same
    // cores as the leader, at the same moment; on its own host it would
    // not. The difference is what that sharing costs.
    const std::string follower = first == "a" ? "b" : "a";
    members[follower]->Pause(true);
    json serial;
    const auto [p50, per_second] =
        Latency(members[first]->endpoint(), commands, [&] { serial = members[first]->Status(milliseconds(5000)); });
    members[follower]->Pause(false);
    out["cluster_follower_paused"] = {
        {"p50_us", p50},
        {"pipelined_per_second", per_second},
        {"leader_etcd_write_p50_us", serial.is_object() ? serial["cluster"]["etcd_write_p50_us"] : json()},
        {"stages", serial.is_object() ? serial["nvsd"]["stages"] : json()}};
  }

  // Takeovers under load.
  std::vector<double> takeover;
  nvs::testing::LoadClient load({members["a"]->endpoint(), members["b"]->endpoint()}, 16);
  std::mt19937 phase(17);  // (fixed: the same kill points in every run)
  for (int k = 0; k < kills; ++k) {
    const std::string lead = leader();
    const std::string follower = lead == "a" ? "b" : "a";
    // The follower is hot: ready, and caught up.
    WaitFor(*members[follower], [](const json& s) { return s["cluster"].value("role", "") == "follower" && Ready(s); },
            milliseconds(60000), "a ready follower");
    Clock::time_point killed{};
    const int before = 100 + static_cast<int>(phase() % 1500);
    if (!load.Run(before + 100, milliseconds(60000), before, [&] {
          killed = Clock::now();
          members[lead]->KillHost();
        })) {
      throw std::runtime_error("takeover bench: the load did not go on after a kill");
    }
    const auto first_ack = load.FirstAckAfter(killed, lead == "a" ? 0 : 1);  // (by the new leader)
    if (!first_ack) throw std::runtime_error("takeover bench: nothing committed after a kill");
    takeover.push_back(Ms(*first_ack - killed));
    std::fprintf(stderr, "  takeover %d: %.0f ms\n", k + 1, takeover.back());
    members[lead]->Start();  // (it rejoins from etcd, as a follower)
  }
  for (const auto& reply : load.unexpected()) std::fprintf(stderr, "takeover bench: unexpected reply %s\n", reply.c_str());
  out["takeover"] = {{"kills", kills},
                     {"lease_ttl_s", 1},
                     {"p50_ms", Percentile(takeover, 0.5)},
                     {"max_ms", takeover.empty() ? 0 : *std::max_element(takeover.begin(), takeover.end())},
                     {"samples_ms", takeover},
                     {"acknowledged", load.acked().size()},
                     {"resent", load.resent()},
                     {"not_leader", load.not_leader()},
                     // (Replies other than committed, not_leader and unavailable: there should be none.)
                     {"unexpected_replies", load.unexpected().size()},
                     {"unexpected_examples", std::vector<std::string>(load.unexpected().begin(),
                                                                      load.unexpected().begin() +
                                                                          std::min<std::ptrdiff_t>(3, load.unexpected().size()))}};
  members.clear();
  out["two_hosts_pinned"] = PinnedLatency(commands, dir);
  std::error_code ec;
  if (getenv("NVS_BENCH_KEEP") == nullptr) fs::remove_all(dir, ec);
  return out;
}

}  // namespace nvs::bench
