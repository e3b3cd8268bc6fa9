// nvs-bench --only takeover (issue 17): cluster mode on this machine, in
// one run: a local 3-member etcd (heartbeat 50 ms, election 500 ms), two
// nvsd members on loopback with two variants each (lease TTL 1 s), and the
// same two variants under one plain nvsd for comparison.
//   - the round trip of one fenced etcd transaction (what cluster mode adds
//     to a command, per write);
//   - a command's latency (one at a time, single-host, cluster and the
//     bare transaction in interleaved rounds) and pipelined throughput (32
//     out), single-host and cluster; one at a time again with the follower paused,
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
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>
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

// A plain nvsd (one host) with the same variants, in dir/NAME: started, and
// ready.
std::unique_ptr<Member> StartSingleHost(const fs::path& dir, const std::string& name) {
  auto m = std::make_unique<Member>(dir / name, json{{"state_dir", (dir / name / "state").string()},
                                                     {"client_endpoint", "ipc://" + (dir / (name + ".sock")).string()},
                                                     {"event_endpoint", ""},
                                                     {"variants", Variants()}});
  m->Start();
  WaitFor(*m, Ready, milliseconds(30000), ("single-host nvsd ready (" + name + ")").c_str());
  return m;
}

// A client sending one command at a time (or 32 out at once) to one nvsd.
class SerialClient {
 public:
  explicit SerialClient(const std::string& endpoint) : socket_(context_, zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.connect(endpoint);
    for (std::size_t i = 0; i < 100; ++i) {  // (warm-up)
      Send(i);
      Receive();
    }
  }
  // Each command's round trip (us), one at a time.
  std::vector<double> OneAtATime(std::size_t commands) {
    std::vector<double> samples;
    for (std::size_t i = 0; i < commands; ++i) {
      const auto t0 = Clock::now();
      Send(i);
      Receive();
      samples.push_back(Ms(Clock::now() - t0) * 1000);
    }
    return samples;
  }
  // Commits per second with 32 out at once.
  double Pipelined(std::size_t commands) {
    const auto start = Clock::now();
    std::size_t sent = 0, received = 0;
    while (received < commands) {
      while (sent < commands && sent - received < 32) Send(sent++);
      Receive();
      ++received;
    }
    return static_cast<double>(commands) / std::chrono::duration<double>(Clock::now() - start).count();
  }

 private:
  void Send(std::size_t i) {
    static int next = 0;
    const json cmd = {{"op", "route"}, {"client", "bench"}, {"routes", {{{"output", i % 16}, {"input", (i * 7) % 16}}}}};
    const std::string request =
        json{{"type", "command"}, {"cmd", cmd}, {"id", "t" + std::to_string(getpid()) + "-" + std::to_string(++next)}}
            .dump();
    socket_.send(zmq::buffer(request), zmq::send_flags::none);
  }
  void Receive() {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, milliseconds(20000)) == 0) throw std::runtime_error("takeover bench: no reply in time");
    zmq::message_t m;
    (void)socket_.recv(m, zmq::recv_flags::none);
    if (m.to_string().find("\"committed\"") == std::string::npos) {
      throw std::runtime_error("takeover bench: not committed: " + m.to_string());
    }
  }
  zmq::context_t context_{1};
  zmq::socket_t socket_;
};

// One command at a time, then 32 out at once: (p50 us of the first, commits/s of the second).
// `between`: called after the one-at-a-time part, before the pipelined one.
std::pair<double, double> Latency(const std::string& endpoint, std::size_t commands,
                                  const std::function<void()>& between = {}) {
  SerialClient client(endpoint);
  const double p50 = Percentile(client.OneAtATime(commands), 0.5);
  if (between) between();
  return {p50, client.Pipelined(commands)};
}

// Fenced transactions on a leader key of the bench's own, each a batch of
// one record (~300 bytes unless told), as cluster mode writes them.
// `watched`: a watch on the keys written, on CPU 1, as a hot follower
// keeps on the cluster's log (etcd sends each write to its watchers).
class FencedWriter {
 public:
  explicit FencedWriter(const cluster::LocalEtcd& etcd, std::size_t record_bytes = 300, bool watched = false)
      : client_({etcd.client_urls(), milliseconds(5000)}), record_(record_bytes, 'x') {
    // (A lease that outlives the rounds, never kept alive: the writer is
    // the only one in its election.)
    auto lease = client_.GrantLease(3600);
    if (!lease.ok()) throw std::runtime_error("takeover bench: " + lease.status().message());
    lease_ = lease.value();
    // (To etcd's leader, as a cluster leader writes: the bound is then the
    // best one transaction can do, with no hop through another member.)
    if (auto leader = client_.LeaderEndpoint(milliseconds(500)); leader.ok() && leader.value()) {
      client_.Prefer(*leader.value());
    }
    auto led = client_.Campaign(prefix_ + "election", lease_, "bench", milliseconds(5000));
    if (!led.ok()) throw std::runtime_error("takeover bench: " + led.status().message());
    leadership_ = led.value();
    if (watched) {
      watcher_ = std::thread([this, urls = etcd.client_urls()] {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(1, &set);
        (void)sched_setaffinity(0, sizeof(set), &set);
        cluster::EtcdClient watch_client({urls, milliseconds(5000)});
        std::int64_t from = 0;
        while (!stop_) {  // (in watches of a second each, so that the end is never waited for long)
          auto next = watch_client.Watch(prefix_ + "log/", from, milliseconds(1000), [this](const cluster::WatchEvent&) {
            ++events_;
            return !stop_;
          });
          if (next.ok()) from = next.value();
        }
      });
      // (Until the watch is in place: a write seen by it.)
      const auto until = Clock::now() + milliseconds(10000);
      while (events_ == 0 && Clock::now() < until) Txns(1);
      if (events_ == 0) throw std::runtime_error("takeover bench: the bench's watch saw nothing");
    }
  }
  ~FencedWriter() {
    stop_ = true;
    if (watcher_.joinable()) watcher_.join();
    (void)client_.Revoke(lease_);
  }
  // `n` round trips (us).
  std::vector<double> Txns(int n) {
    std::vector<double> txn;
    for (int i = 0; i < n; ++i) {
      const auto t0 = Clock::now();
      auto w = client_.FencedPut(leadership_, {{prefix_ + "log/" + std::to_string(next_++), record_}});
      if (!w.ok() || !w.value()) throw std::runtime_error("takeover bench: a fenced write failed");
      txn.push_back(Ms(Clock::now() - t0) * 1000);
    }
    return txn;
  }

 private:
  inline static int writers_ = 0;
  const std::string prefix_ = "/bench/" + std::to_string(++writers_) + "/";
  cluster::EtcdClient client_;
  const std::string record_;
  std::int64_t lease_ = 0;
  cluster::Leadership leadership_;
  int next_ = 0;
  std::thread watcher_;
  std::atomic<bool> stop_{false};
  std::atomic<int> events_{0};
};

// One at a time, single-host against cluster against a bare fenced Txn, in
// kRounds interleaved rounds, each round in a rotated order, so that a slow
// moment of the VM falls on all alike: timed one after the other, a minute
// apart, the same code came out 0.9% over the goal in one run and 22% over
// in another. `extra`: more parts for the same rounds (samples appended).
constexpr int kRounds = 10;
struct Interleaved {
  std::vector<double> single_us, cluster_us, txn_us;
};
Interleaved InterleavedRounds(SerialClient& to_single, SerialClient& to_leader, FencedWriter& writer,
                              std::size_t commands, std::vector<std::function<void()>> extra = {}) {
  Interleaved r;
  const std::size_t per_round = std::max<std::size_t>(1, commands / kRounds);
  const auto append = [](std::vector<double>& to, const std::vector<double>& from) {
    to.insert(to.end(), from.begin(), from.end());
  };
  std::vector<std::function<void()>> parts = {[&] { append(r.single_us, to_single.OneAtATime(per_round)); },
                                              [&] { append(r.cluster_us, to_leader.OneAtATime(per_round)); },
                                              [&] { append(r.txn_us, writer.Txns(30)); }};
  for (auto& e : extra) parts.push_back(std::move(e));
  for (int round = 0; round < kRounds; ++round) {
    for (std::size_t part = 0; part < parts.size(); ++part) parts[(round + part) % parts.size()]();
  }
  return r;
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
// The three are measured in interleaved rounds (InterleavedRounds).
json PinnedLatency(std::size_t commands, const fs::path& dir) {
  json out;
  PinTo({1});
  cluster::LocalEtcd etcd;
  if (Status up = etcd.Start(3, milliseconds(30000)); !up.ok()) throw std::runtime_error("takeover bench: " + up.message());
  PinTo({0});
  const auto single = StartSingleHost(dir, "pinned-single");
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

  SerialClient to_single(single->endpoint());
  SerialClient to_leader(a->endpoint());  // (its warm-up: 100 commands one at a time)
  // What the leader's writes of one command at a time carry: the admit of
  // a command and the verdict of the one before, one value of this size
  // (the median of its log's values so far).
  std::size_t leader_write_bytes = 0;
  {
    cluster::EtcdClient reader({etcd.client_urls(), milliseconds(5000)});
    auto log = reader.Prefix("/nvs/pinned/log/");
    if (!log.ok() || log.value().empty()) throw std::runtime_error("takeover bench: the pinned leader's log is not in etcd");
    std::vector<double> sizes;
    for (const auto& kv : log.value()) sizes.push_back(static_cast<double>(kv.value.size()));
    leader_write_bytes = static_cast<std::size_t>(Percentile(sizes, 0.5));
  }
  FencedWriter writer(etcd);
  FencedWriter like_the_leader(etcd, leader_write_bytes, true);
  std::vector<double> like_us;
  const Interleaved rounds = InterleavedRounds(to_single, to_leader, writer, commands, {[&] {
                                                 const auto more = like_the_leader.Txns(30);
                                                 like_us.insert(like_us.end(), more.begin(), more.end());
                                               }});
  const auto& [single_us, cluster_us, txn_us] = rounds;
  out["rounds"] = kRounds;
  out["single_host_p50_us"] = Percentile(single_us, 0.5);
  out["cluster_p50_us"] = Percentile(cluster_us, 0.5);
  out["etcd_fenced_txn_p50_us"] = Percentile(txn_us, 0.5);
  out["cluster_minus_bound_us"] =
      Percentile(cluster_us, 0.5) - Percentile(single_us, 0.5) - Percentile(txn_us, 0.5);
  // The same transaction shaped as the leader's are: its value's size, and
  // a watcher on its keys (the follower's watch on the log).
  out["leader_write_bytes"] = leader_write_bytes;
  out["etcd_fenced_txn_like_the_leaders_p50_us"] = Percentile(like_us, 0.5);
  const json serial = a->Status(milliseconds(5000));
  if (serial.is_object()) {
    out["leader_etcd_write_p50_us"] = serial["cluster"]["etcd_write_p50_us"];
    out["stages"] = serial["nvsd"]["stages"];
  }
  const json alone = single->Status(milliseconds(5000));
  if (alone.is_object()) out["single_host_stages"] = alone["nvsd"]["stages"];
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

  // Single-host, the same variants, beside the cluster.
  const auto single = StartSingleHost(dir, "single");

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
    // One at a time: single-host, cluster and one fenced transaction's
    // round trip (a batch of one ~300-byte record), in interleaved rounds;
    // the leader's own etcd writes meanwhile (what one write costs in
    // place, with a follower watching). Then 32 out at once, and the
    // records each of the leader's writes carried.
    SerialClient to_single(single->endpoint());
    SerialClient to_leader(members[first]->endpoint());
    FencedWriter writer(etcd);
    const Interleaved rounds = InterleavedRounds(to_single, to_leader, writer, commands);
    const json single_serial = single->Status(milliseconds(5000));
    const json serial = members[first]->Status(milliseconds(5000));
    if (!serial.is_object() || !single_serial.is_object()) throw std::runtime_error("takeover bench: no status");
    out["etcd_fenced_txn"] = {{"p50_us", Percentile(rounds.txn_us, 0.5)}, {"p99_us", Percentile(rounds.txn_us, 0.99)}};
    out["interleaved_rounds"] = kRounds;
    out["single_host"] = {{"p50_us", Percentile(rounds.single_us, 0.5)},
                          {"pipelined_per_second", to_single.Pipelined(commands)},
                          {"stages", single_serial["nvsd"]["stages"]}};
    const double cluster_per_second = to_leader.Pipelined(commands);
    const json after = members[first]->Status(milliseconds(5000));
    if (!after.is_object()) throw std::runtime_error("takeover bench: no status from the leader");
    const auto pipelined_records_per_write = [](const json& before, const json& now) {
      const double writes = now.value("etcd_writes", 0.0) - before.value("etcd_writes", 0.0);
      const double records = now.value("etcd_writes", 0.0) * now.value("records_per_write", 0.0) -
                             before.value("etcd_writes", 0.0) * before.value("records_per_write", 0.0);
      return writes > 0 ? records / writes : 0.0;
    };
    out["cluster"] = {{"p50_us", Percentile(rounds.cluster_us, 0.5)},
                      {"pipelined_per_second", cluster_per_second},
                      {"leader_etcd_write_p50_us", serial["cluster"]["etcd_write_p50_us"]},
                      {"records_per_write", pipelined_records_per_write(serial["cluster"], after["cluster"])},
                      {"stages", serial["nvsd"]["stages"]}};
  }
  single->Stop();
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
