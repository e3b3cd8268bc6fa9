// Cluster mode across "hosts" (issue 17): each host a network namespace
// this test makes, with one link to the test's namespace, its own address,
// and an nvsd member with its own variants; a 3-member etcd in the test's
// namespace, reached by every host over its link. Real processes, real
// sockets, real etcd. Needs root (ip netns): where namespaces cannot be
// made, the test says so and fails.
//
// After each scenario: every command a client was told `committed` is in
// etcd's log exactly once, at the seq it was told; the members still
// running end on the same state (their checkpoints at stop: same seq, same
// digest).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "cluster_load.h"
#include "local_etcd.h"
#include "nvs/cluster/etcd.h"
#include "nvsd_harness.h"

namespace {

using json = nlohmann::json;
using nvs::testing::LoadClient;
using nvs::testing::NvsdHarness;
using nvs::testing::NvsdOptions;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// An etcd member's count of the transactions it took from clients.
constexpr const char* kEtcdTxns =
    R"(grpc_server_started_total{grpc_method="Txn",grpc_service="etcdserverpb.KV",grpc_type="unary"})";

int Sh(const std::string& command) {
  const int status = std::system((command + " >/dev/null 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// One host: the namespace, its link (the test's end, and the host's), its
// address. Everything in it is killed and it is removed with the object.
class Host {
 public:
  Host(int subnet, int index) : index_(index) {
    const std::string tag = std::to_string(getpid() % 100000) + "h" + std::to_string(index);
    ns_ = "nvs-mh-" + tag;
    outer_ = "nv" + tag;  // (at most 15 characters)
    gateway_ = "10." + std::to_string(subnet) + "." + std::to_string(index) + ".1";
    address_ = "10." + std::to_string(subnet) + "." + std::to_string(index) + ".2";
    const std::string in = "ip netns exec " + ns_ + " ";
    const std::vector<std::string> steps = {
        "ip netns add " + ns_,
        "ip link add " + outer_ + " type veth peer name eth0 netns " + ns_,
        "ip addr add " + gateway_ + "/24 dev " + outer_,
        "ip link set " + outer_ + " up",
        in + "ip link set lo up",
        in + "ip addr add " + address_ + "/24 dev eth0",
        in + "ip link set eth0 up",
        in + "ip route add default via " + gateway_,
    };
    for (const auto& step : steps) {
      if (Sh(step) != 0) {
        error_ = "cannot make host " + std::to_string(index) + " (" + step + "): network namespaces need root "
                 "and iproute2; this test cannot run without them";
        return;
      }
    }
  }
  ~Host() {
    KillEverything();
    Sh("ip link del " + outer_);
    Sh("ip netns del " + ns_);
  }
  Host(const Host&) = delete;
  Host& operator=(const Host&) = delete;

  const std::string& error() const { return error_; }
  const std::string& ns() const { return ns_; }
  const std::string& address() const { return address_; }
  const std::string& gateway() const { return gateway_; }
  int index() const { return index_; }
  // The host's link down (or up): it is cut from etcd and from clients.
  bool Link(bool up) { return Sh("ip link set " + outer_ + (up ? " up" : " down")) == 0; }
  // kill -9 of every process of the host (its nvsd and variants).
  void KillEverything() { Sh("ip netns pids " + ns_ + " | xargs -r kill -9"); }

 private:
  int index_;
  std::string ns_, outer_, gateway_, address_, error_;
};

class Multihost : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) FAIL() << "the multihost tests make network namespaces, which needs root (CI runs as root)";
    const int subnet = 100 + getpid() % 100;
    for (int k = 1; k <= 3; ++k) {
      hosts_.push_back(std::make_unique<Host>(subnet, k));
      ASSERT_EQ(hosts_.back()->error(), "");
    }
    const nvs::Status up = etcd_.Start(3, milliseconds(30000), /*listen_all=*/true);
    ASSERT_TRUE(up.ok()) << up.message();
    name_ = "mh" + std::to_string(getpid());
  }

  // A failed test: first, each member's cluster story in a few short lines
  // (a CI log keeps only the start and the end of the output, and the
  // members' whole logs follow).
  void TearDown() override {
    if (!HasFailure()) return;
    for (const auto& [k, member] : members_) {
      if (!member) continue;
      std::cerr << "---- host" << k << ", its cluster events ----\n";
      std::stringstream log(member->NvsdLog());
      for (std::string line; std::getline(log, line);) {
        const json e = json::parse(line, nullptr, false);
        if (!e.is_object()) continue;
        const std::string event = e.value("event", "");
        if (!event.starts_with("cluster_") && event != "retest" && event != "ready" && event != "signal" &&
            event != "stopped" && event != "checkpoint_at_stop" && event != "checkpoint_at_stop_skipped") {
          continue;
        }
        if (event == "retest" && e.value("phase", "") == "started") continue;
        std::string text = line.size() > 240 ? line.substr(0, 240) + "..." : line;
        std::cerr << "  " << text << "\n";
      }
    }
  }

  // The member on host k (1-based), started (not yet waited for); `faults`:
  // test fault options for both its variants (PROTOCOL.md §6); `extra`:
  // more of its config.
  NvsdHarness& StartMember(int k, const std::vector<std::string>& faults = {}, const json& extra = json::object()) {
    Host& host = *hosts_[k - 1];
    json endpoints = json::array();
    for (const int port : etcd_.client_ports()) endpoints.push_back("http://" + host.gateway() + ":" + std::to_string(port));
    NvsdOptions options({nvs::testing::VariantSpec("router-a", faults), nvs::testing::VariantSpec("router-b", faults)},
                        {{"client_endpoint", "tcp://" + host.address() + ":5555"},
                         {"checkpoint_interval", 50},
                         {"cluster", {{"etcd_endpoints", endpoints},
                                      {"name", name_},
                                      {"member", "host" + std::to_string(k)},
                                      {"lease_ttl_s", 1}}}});
    options.overrides.update(extra);
    options.launcher = {"/usr/sbin/ip", "netns", "exec", host.ns()};  // (ip execs nvsd: its pid is nvsd's)
    members_[k] = std::make_unique<NvsdHarness>(options);
    return *members_[k];
  }

  std::string Endpoint(int k) const { return "tcp://" + hosts_[k - 1]->address() + ":5555"; }

  // The member k's status until `match`, or null at the deadline.
  // (Each status is asked with its own second: one sent while the member
  // was starting again is lost with the process that read it.)
  json WaitCluster(int k, const std::function<bool(const json&)>& match, milliseconds deadline = milliseconds(20000)) {
    return WaitMember(k, [&](const json& s) { return s.contains("cluster") && match(s["cluster"]); }, deadline);
  }
  json WaitMember(int k, const std::function<bool(const json&)>& match, milliseconds deadline = milliseconds(20000)) {
    const auto until = Clock::now() + deadline;
    while (Clock::now() < until) {
      const json s = members_[k]->Status(milliseconds(1000));
      if (s.is_object() && match(s)) return s;
      members_[k]->WaitEvent([](const json&) { return false; }, milliseconds(20));  // (between two asks)
    }
    return json();
  }

  // Once both variants of member 1 (the leader) have a command in flight:
  // kill -9 of its host; member 2 leads and settles what member 1 left
  // undecided. Member 2's status then, or null at a deadline.
  json KillInFlightLeaderAndSettle() {
    const json in_flight = members_[1]->WaitStatus([](const json& s) {
      for (const auto& v : s["variants"]) {
        if (v.value("in_flight", 0) == 0) return false;
      }
      return true;
    });
    if (in_flight.is_null()) return json();
    hosts_[0]->KillEverything();
    members_[1].reset();
    if (WaitCluster(2, [](const json& c) { return c.value("role", "") == "leader"; }).is_null()) return json();
    return members_[2]->WaitStatus(
        [](const json& s) { return s["nvsd"].value("suspects", 1) == 0 && s["nvsd"]["retest"].is_null(); });
  }

  // No variant of member k was ever sent a message holding `text`.
  void ExpectNeverDelivered(int k, const std::string& text) {
    for (const char* name : {"router-a", "router-b"}) {
      for (const auto& line : members_[k]->DeliveredTo(name)) {
        EXPECT_EQ(line.dump().find(text), std::string::npos) << name << " of member " << k << " was sent " << text;
      }
    }
  }

  // Member 1 alone (`faults` and `extra` as StartMember), ready and
  // leading; nullptr if it is not in time.
  NvsdHarness* StartLeader(const std::vector<std::string>& faults, const json& extra = json::object()) {
    StartMember(1, faults, extra);
    if (!members_[1]->WaitReady() || WaitLeader() != 1) return nullptr;
    return members_[1].get();
  }

  // Members 1 and 2, ready; the one that leads (0: none in time).
  int StartTwo() {
    StartMember(1);
    StartMember(2);
    for (int k = 1; k <= 2; ++k) {
      if (!members_[k]->WaitReady()) {
        ADD_FAILURE() << "host" << k << " not ready";
        return 0;
      }
    }
    return WaitLeader();
  }

  // Which member leads (as member 1..3 running sees it), 0 if none within the deadline.
  int WaitLeader(milliseconds deadline = milliseconds(20000)) {
    const auto until = Clock::now() + deadline;
    while (Clock::now() < until) {
      for (auto& [k, m] : members_) {
        if (!m) continue;
        const json s = m->Status(milliseconds(1000));
        if (s.is_object() && s["cluster"].value("role", "") == "leader" && s["nvsd"].value("available", false)) return k;
      }
      // (Each Status above waited for its reply: no sleep needed.)
    }
    return 0;
  }

  // etcd's log, whole: every verdict record ever written, in order (read
  // as etcd's history of the log's keys, since checkpoints delete the
  // batches they cover).
  std::vector<json> EtcdVerdicts() {
    nvs::cluster::EtcdClient client({etcd_.client_urls(), milliseconds(5000)});
    const std::string prefix = "/nvs/" + name_ + "/log/";
    auto now = client.RangeFrom(prefix, prefix);
    EXPECT_TRUE(now.ok()) << now.status().message();
    std::vector<json> out;
    if (!now.ok()) return out;
    std::vector<nvs::cluster::KeyValue> batches;
    std::int64_t next = 1;
    const auto until = Clock::now() + milliseconds(20000);
    while (next <= now.value().revision && Clock::now() < until) {
      auto watched = client.Watch(prefix, next, milliseconds(2000), [&](const nvs::cluster::WatchEvent& e) {
        if (!e.deleted) batches.push_back(e.kv);
        return e.kv.mod_revision < now.value().revision;
      });
      EXPECT_TRUE(watched.ok()) << watched.status().message();
      if (!watched.ok()) return out;
      if (watched.value() == next) break;  // (nothing more came)
      next = watched.value();
    }
    // Two leaders never wrote the same place of the log: each batch key was
    // put once, and each batch begins where the one before it ended.
    std::set<std::string> keys;
    for (const auto& kv : batches) EXPECT_TRUE(keys.insert(kv.key).second) << kv.key << " was written twice";
    for (const auto& kv : batches) {
      std::size_t from = 0;
      while (from < kv.value.size()) {
        const std::size_t eol = kv.value.find('\n', from);
        const json record = json::parse(kv.value.substr(from, eol - from), nullptr, false);
        if (record.is_object() && record.value("t", "") == "verdict") out.push_back(record);
        from = eol == std::string::npos ? kv.value.size() : eol + 1;
      }
    }
    return out;
  }

  // Every acknowledged command committed once in etcd's log, at its seq.
  // (A commit's verdict reaches etcd within 10 ms of its reply, or is
  // committed again by the next leader: the last ones are waited for.)
  void ExpectAckedExactlyOnce(const LoadClient& load) {
    for (const auto& reply : load.unexpected()) ADD_FAILURE() << "unexpected reply: " << reply;
    std::map<std::string, std::vector<std::uint64_t>> committed;
    for (const auto until = Clock::now() + milliseconds(5000);;) {
      committed.clear();
      for (const auto& v : EtcdVerdicts()) {
        if (v.value("verdict", "") == "COMMIT") committed[v.value("id", "")].push_back(v.value("seq", std::uint64_t{0}));
      }
      const bool all = std::all_of(load.acked().begin(), load.acked().end(),
                                   [&](const auto& ack) { return committed.count(ack.first) != 0; });
      if (all || Clock::now() >= until) break;
    }
    for (const auto& [id, ack] : load.acked()) {
      const auto it = committed.find(id);
      ASSERT_NE(it, committed.end()) << "acknowledged " << id << " at seq " << ack.seq << " is not in etcd's log";
      EXPECT_EQ(it->second.size(), 1u) << id << " committed " << it->second.size() << " times";
      EXPECT_EQ(it->second.front(), ack.seq) << id;
    }
    for (const auto& [id, seqs] : committed) EXPECT_EQ(seqs.size(), 1u) << id << " committed more than once";
  }

  // The members still running end on the same state: each is stopped (the
  // followers first), and its checkpoint at stop is compared.
  void ExpectSameState(const std::vector<int>& running) {
    int leader = 0;
    std::uint64_t seq = 0;
    for (const int k : running) {
      const json s = members_[k]->Status();
      if (s["cluster"].value("role", "") == "leader") {
        leader = k;
        seq = s["nvsd"].value("seq", std::uint64_t{0});
      }
    }
    ASSERT_NE(leader, 0);
    std::map<int, json> checkpoints;
    std::vector<int> order;
    for (const int k : running) {
      if (k != leader) order.push_back(k);
    }
    order.push_back(leader);
    for (const int k : order) {
      // (Applied, and its variants idle, the leader's too: the checkpoint at
      // stop is taken only from idle variants. Under ASan a leader stopped
      // with a request in flight left only its last periodic checkpoint.)
      ASSERT_FALSE(WaitMember(k, [&](const json& s) {
                         if (k != leader && s["cluster"].value("applied_seq", std::uint64_t{0}) < seq) return false;
                         for (const auto& v : s["variants"]) {
                           if (v.value("in_flight", 1) != 0) return false;
                         }
                         return true;
                       })
                       .is_null())
          << "host" << k << " did not apply up to seq " << seq << " with its variants idle";
      const std::filesystem::path dir = members_[k]->state_dir();
      kill(members_[k]->nvsd_pid(), SIGTERM);
      ASSERT_TRUE(members_[k]->WaitNvsdExit(milliseconds(20000)).has_value());
      std::ifstream in(dir / "checkpoint.json");
      std::stringstream text;
      text << in.rdbuf();
      checkpoints[k] = json::parse(text.str(), nullptr, false);
      ASSERT_TRUE(checkpoints[k].is_object()) << "host" << k << " left no checkpoint at stop";
    }
    for (const int k : running) {
      EXPECT_EQ(checkpoints[k].value("seq", 0), checkpoints[leader].value("seq", 0)) << "host" << k;
      EXPECT_EQ(checkpoints[k].value("commits", 0), checkpoints[leader].value("commits", 0)) << "host" << k;
      EXPECT_EQ(checkpoints[k].value("digest", ""), checkpoints[leader].value("digest", "")) << "host" << k;
    }
  }

  // Two members under load: after 100 acknowledged commands `fault` is
  // done to the leader (given its number); the other must take over;
  // `heal` undoes the fault; the old leader must have stepped down (it
  // writes nothing more) and follow; the load goes on.
  void DeposeTheLeader(const std::function<void(int)>& fault, const std::function<void(int)>& heal) {
    const int leader = StartTwo();
    ASSERT_NE(leader, 0);
    const int other = 3 - leader;
    LoadClient load({Endpoint(1), Endpoint(2)}, 8);
    ASSERT_TRUE(load.Run(300, milliseconds(60000), 100, [&] { fault(leader); }));
    ASSERT_FALSE(WaitCluster(other, [](const json& c) { return c.value("role", "") == "leader"; }).is_null());
    heal(leader);
    ASSERT_TRUE(members_[leader]->WaitNvsdLog(
        [](const std::string& log) { return log.find("\"cluster_stepped_down\"") != std::string::npos; },
        milliseconds(20000)));
    ASSERT_FALSE(WaitCluster(leader, [](const json& c) { return c.value("role", "") == "follower"; }).is_null());
    ASSERT_TRUE(load.Run(100, milliseconds(30000)));
    ExpectAckedExactlyOnce(load);
    ExpectSameState({1, 2});
  }

  std::vector<std::unique_ptr<Host>> hosts_;
  nvs::cluster::LocalEtcd etcd_;
  std::string name_;
  std::map<int, std::unique_ptr<NvsdHarness>> members_;
};

// kill -9 of every process of the leader's host under pipelined load: a
// follower takes over within about the lease's TTL, the clients move to it
// with the same request ids, and nothing acknowledged is lost or doubled.
TEST_F(Multihost, KillOfTheLeadersHostUnderLoad) {
  for (int k = 1; k <= 3; ++k) StartMember(k);
  for (int k = 1; k <= 3; ++k) ASSERT_TRUE(members_[k]->WaitReady()) << "host" << k;
  const int leader = WaitLeader();
  ASSERT_NE(leader, 0) << "no member leads";
  // Its writes go first to etcd's own leader, found once it leads: it
  // names it, and etcd's members count the transactions each took from a
  // client (one passed on to etcd's leader counts where it came in).
  nvs::cluster::EtcdClient probe({etcd_.client_urls(), milliseconds(2000)});
  const auto etcd_leader = probe.LeaderEndpoint(milliseconds(500));
  ASSERT_TRUE(etcd_leader.ok() && etcd_leader.value()) << etcd_leader.status().message();
  const std::size_t etcd_lead = *etcd_leader.value();
  const std::string port = ":" + std::to_string(etcd_.client_ports().at(etcd_lead));
  EXPECT_FALSE(WaitCluster(leader, [&](const json& c) {
                 const std::string at = c.value("etcd_leader_endpoint", "");
                 return at.size() > port.size() && at.ends_with(port);
               }).is_null())
      << "the leader does not name etcd's leader (port " << port << ") as where its writes go";
  const auto txns = [&] {
    std::vector<double> counts;
    for (const int p : etcd_.client_ports()) {
      const auto [status, page] = nvs::testing::HttpGet("127.0.0.1:" + std::to_string(p), "/metrics");
      counts.push_back(status == 200 ? nvs::testing::MetricValue(page, kEtcdTxns).value_or(-1) : -1);
    }
    return counts;
  };
  const std::vector<double> before = txns();
  std::vector<double> at_kill;
  LoadClient load({Endpoint(1), Endpoint(2), Endpoint(3)}, 16);
  Clock::time_point killed_at{};
  ASSERT_TRUE(load.Run(600, milliseconds(60000), 200, [&] {
    at_kill = txns();
    killed_at = Clock::now();
    hosts_[leader - 1]->KillEverything();
  })) << "acknowledged " << load.acked().size();
  {
    double all = 0;
    for (std::size_t m = 0; m < before.size(); ++m) {
      ASSERT_GE(before[m], 0) << "etcd member " << m << "'s metrics";
      ASSERT_GE(at_kill.at(m), 0) << "etcd member " << m << "'s metrics";
      all += at_kill[m] - before[m];
    }
    const double to_leader = at_kill[etcd_lead] - before[etcd_lead];
    EXPECT_GE(all, 10) << "the leader's writes under load (many commands per write)";
    EXPECT_GE(to_leader, 0.9 * all) << "of " << all << " transactions, " << to_leader << " went to etcd's leader";
  }
  const auto first = load.FirstAckAfter(killed_at, static_cast<std::size_t>(leader - 1));  // (by a new leader)
  ASSERT_TRUE(first.has_value());
  const double takeover_ms = std::chrono::duration<double, std::milli>(*first - killed_at).count();
  std::cout << "takeover: " << takeover_ms << " ms; resent " << load.resent() << ", not_leader " << load.not_leader()
            << "\n";
  EXPECT_LT(takeover_ms, 10000);
  members_[leader].reset();  // (its host is dead)
  ExpectAckedExactlyOnce(load);
  std::vector<int> running;
  for (int k = 1; k <= 3; ++k) {
    if (k != leader) running.push_back(k);
  }
  ExpectSameState(running);
}

// SIGSTOP of the leader's nvsd: it is deposed (its lease ends), the other
// member takes over, and when it wakes it writes nothing: it sees its lease
// gone on its own clock (or etcd's fence refuses it) and starts again as a
// follower, which then catches up.
TEST_F(Multihost, AStoppedLeaderIsDeposedAndWritesNothingWhenItWakes) {
  DeposeTheLeader(
      [&](int leader) { kill(members_[leader]->nvsd_pid(), SIGSTOP); },
      [&](int leader) { kill(members_[leader]->nvsd_pid(), SIGCONT); });
}

// The leader's host cut off (its link down: no etcd, no clients): it stops
// serving, the other member takes over; when the link is back it has
// stepped down and follows.
TEST_F(Multihost, APartitionedLeaderStopsAndTheOtherTakesOver) {
  DeposeTheLeader(
      [&](int leader) { ASSERT_TRUE(hosts_[leader - 1]->Link(false)); },
      [&](int leader) { ASSERT_TRUE(hosts_[leader - 1]->Link(true)); });
}

// nvs cluster handover, for maintenance, under load: the leader finishes
// what it is deciding, resigns and follows; the other member leads; no
// command is lost or doubled.
TEST_F(Multihost, AHandoverUnderLoadMovesLeadershipAndLosesNothing) {
  const int leader = StartTwo();
  ASSERT_NE(leader, 0);
  const int other = 3 - leader;
  const auto refused = members_[other]->Raw(R"({"type":"cluster","action":"handover","id":"h0"})");
  ASSERT_TRUE(refused.has_value());
  EXPECT_NE(refused->find("\"not_leader\""), std::string::npos) << *refused;
  LoadClient load({Endpoint(1), Endpoint(2)}, 8);
  std::optional<std::string> answer;
  ASSERT_TRUE(load.Run(300, milliseconds(60000), 100, [&] {
    answer = members_[leader]->Raw(R"({"type":"cluster","action":"handover","id":"h1","note":"maintenance"})");
  }));
  ASSERT_TRUE(answer.has_value());
  EXPECT_NE(answer->find("\"handed_over\":true"), std::string::npos) << *answer;
  ASSERT_FALSE(WaitCluster(other, [](const json& c) { return c.value("role", "") == "leader"; }).is_null());
  ASSERT_FALSE(WaitCluster(leader, [](const json& c) { return c.value("role", "") == "follower"; }).is_null());
  ASSERT_TRUE(load.Run(100, milliseconds(30000)));
  ExpectAckedExactlyOnce(load);
  ExpectSameState({1, 2});
}

// A member that rejoins after 10,000 commands (its host down meanwhile,
// its state dir gone) catches up from etcd's checkpoint and the log after
// it, and ends on the leader's state; etcd holds only the log since the
// last checkpoint (the checkpoints delete the batches they cover).
TEST_F(Multihost, AMemberRejoiningAfter10000CommandsCatchesUpFromEtcd) {
  const int leader = StartTwo();
  ASSERT_NE(leader, 0);
  const int other = 3 - leader;
  hosts_[other - 1]->KillEverything();
  members_[other].reset();
  LoadClient load({Endpoint(1), Endpoint(2)}, 32);
  ASSERT_TRUE(load.Run(10000, milliseconds(200000))) << "acknowledged " << load.acked().size();
  nvs::cluster::EtcdClient client({etcd_.client_urls(), milliseconds(5000)});
  auto log = client.Prefix("/nvs/" + name_ + "/log/");
  ASSERT_TRUE(log.ok());
  EXPECT_LT(log.value().size(), 200u) << "etcd keeps " << log.value().size() << " log batches after 10,000 commands";
  StartMember(other);  // (a new state dir: everything comes from etcd)
  ASSERT_TRUE(members_[other]->WaitReady());
  ASSERT_FALSE(WaitCluster(other, [](const json& c) { return c.value("role", "") == "follower"; }).is_null());
  ASSERT_TRUE(load.Run(100, milliseconds(30000)));
  // One command at a time, the follower is at each of the leader's
  // checkpoints when it comes, and checks its own state against it (the
  // checkpoint interval is 50).
  for (int i = 0; i < 60; ++i) {
    const json cmd = {{"op", "label"}, {"client", "t"}, {"kind", "input"},
                      {"labels", {{{"index", i % 16}, {"text", "s" + std::to_string(i)}}}}};
    ASSERT_EQ(members_[leader]->Command(cmd).value("status", ""), "committed");
  }
  EXPECT_FALSE(WaitCluster(other, [](const json& c) { return c.value("checkpoints_matched", 0) >= 1; }).is_null())
      << "the rejoined follower checked its state against none of the leader's checkpoints";
  ExpectAckedExactlyOnce(load);
  ExpectSameState({1, 2});
}

// Two of etcd's three members lost: the leader cannot renew its lease and
// stops serving within its TTL; nobody serves while etcd has no quorum;
// nothing acknowledged is lost; service resumes when they are back.
TEST_F(Multihost, LosingEtcdsQuorumStopsServiceUntilItIsBack) {
  ASSERT_NE(StartTwo(), 0);
  LoadClient load({Endpoint(1), Endpoint(2)}, 8);
  Clock::time_point lost{};
  ASSERT_TRUE(load.Run(150, milliseconds(60000)));
  lost = Clock::now();
  etcd_.Kill(1);
  etcd_.Kill(2);
  // Nobody acknowledges anything once the lease (1 s, granted as up to 2 s)
  // is over: the load runs 4 s and gets no ack in the last 2 of them.
  load.Run(1'000'000, milliseconds(4000));
  for (const auto& [k, m] : members_) {
    const json s = m->Status(milliseconds(3000));
    if (s.is_object()) {
      EXPECT_NE(s["cluster"].value("role", ""), "leader") << "host" << k << " still leads";
    }
  }
  const auto last = load.FirstAckAfter(lost + milliseconds(2000));
  EXPECT_FALSE(last.has_value()) << "a command was acknowledged while etcd had no quorum";
  ASSERT_TRUE(etcd_.Restart(1, milliseconds(30000)).ok());
  ASSERT_TRUE(etcd_.Restart(2, milliseconds(30000)).ok());
  ASSERT_TRUE(load.Run(100, milliseconds(60000))) << "service did not resume";
  ExpectAckedExactlyOnce(load);
  ExpectSameState({1, 2});
}

// A poison in flight when the leader's host dies: the leader's variants
// hang on it (so it is still undecided), the host is killed; the new
// leader knows it from etcd (its admit), retests it on disposable
// processes (which it kills), quarantines it, and never delivers it to its
// own variants; sent again, it is refused.
TEST_F(Multihost, APoisonInFlightWhenTheLeadersHostDiesIsQuarantinedNotDelivered) {
  ASSERT_NE(StartLeader({"--fault", "hang-on=POISON"}), nullptr);
  StartMember(2, {"--fault", "crash-on=POISON"});
  ASSERT_TRUE(members_[2]->WaitReady());
  ASSERT_EQ(members_[1]->Command({{"op", "route"}, {"client", "t"}, {"routes", {{{"output", 1}, {"input", 2}}}}})
                .value("status", ""),
            "committed");
  const json poison = {{"op", "label"}, {"client", "t"}, {"kind", "output"},
                       {"labels", {{{"index", 5}, {"text", "POISON"}}}}};
  members_[1]->SendCommand(poison);
  // In flight: both of the leader's variants have it and hang on it.
  const json settled = KillInFlightLeaderAndSettle();
  ASSERT_FALSE(settled.is_null());
  EXPECT_EQ(settled["nvsd"].value("quarantined", 0), 1);
  const json again = members_[2]->Command(poison);
  EXPECT_EQ(again.value("status", ""), "quarantined") << again.dump();
  ExpectNeverDelivered(2, "POISON");
}

// A leader admits the commands queued behind the one it dispatches in the
// same etcd write. One of them that turns out identical to a poison
// quarantined before its turn is refused at its turn: its ABANDONED verdict
// is in etcd before its client hears `quarantined` (a next leader finding
// its admit undecided would otherwise run it), and no variant is sent it.
TEST_F(Multihost, ACommandAdmittedAheadOfAQuarantineIsRefusedAtItsTurn) {
  // (Two poisons are decided, each after a hang and its retest, while the
  // others wait: past the default queue deadline, which abandons them.)
  NvsdHarness* leader = StartLeader({"--fault", "hang-on=POISON"}, {{"queue_deadline_ms", 30000}});
  ASSERT_NE(leader, nullptr);
  NvsdHarness& m = *leader;
  const auto label = [](int index, const std::string& text) {
    return json{{"op", "label"}, {"client", "t"}, {"kind", "output"}, {"labels", {{{"index", index}, {"text", text}}}}};
  };
  // A first poison holds the variants while the rest queue up behind it.
  const std::string holder = m.SendCommand(label(1, "POISON-first"));
  ASSERT_FALSE(m.WaitStatus([](const json& s) { return s["nvsd"].value("active", 0) == 1; }).is_null());
  const std::string poison = m.SendCommand(label(2, "POISON"));
  const std::string before = m.SendCommand(label(3, "benign before"));
  const std::string again = m.SendCommand(label(2, "POISON"));
  const std::string after = m.SendCommand(label(4, "benign after"));
  ASSERT_FALSE(m.WaitStatus([](const json& s) { return s["nvsd"].value("waiting", 0) == 4; }).is_null());
  EXPECT_EQ(m.ReplyTo(holder, milliseconds(30000)).value("status", ""), "quarantined");
  // The next dispatch (the second poison) admits the three behind it.
  const json first = m.ReplyTo(poison, milliseconds(30000));
  EXPECT_EQ(first.value("status", ""), "quarantined") << first.dump();
  EXPECT_EQ(m.ReplyTo(before).value("status", ""), "committed");
  const json refused = m.ReplyTo(again);
  EXPECT_EQ(refused.value("status", ""), "quarantined") << refused.dump();
  EXPECT_EQ(m.ReplyTo(after).value("status", ""), "committed");
  std::map<std::string, std::string> verdicts;
  for (const auto until = Clock::now() + milliseconds(5000); Clock::now() < until && !verdicts.count(after);) {
    for (const auto& v : EtcdVerdicts()) verdicts[v.value("id", "")] = v.value("verdict", "");  // (the last: within 10 ms)
  }
  EXPECT_EQ(verdicts[poison], "POISON");
  EXPECT_EQ(verdicts[before], "COMMIT");
  EXPECT_EQ(verdicts[again], "ABANDONED") << "an admit refused at its turn is settled in etcd";
  EXPECT_EQ(verdicts[after], "COMMIT");
  for (const char* name : {"router-a", "router-b"}) {
    int sent = 0;
    for (const auto& line : m.DeliveredTo(name)) {
      const std::string text = line.dump();
      sent += text.find("\"POISON\"") != std::string::npos ? 1 : 0;
    }
    EXPECT_EQ(sent, 1) << name << " was sent the second poison (or never the first)";
  }
}

// A command with a client deadline, in flight when the leader's host dies,
// is found undecided by the new leader after its deadline passed: it was
// never answered `committed` (such a commit is in etcd before its reply),
// and its client may have told its user it failed, so it is recorded
// EXPIRED and never carried out, and a retry is told so.
TEST_F(Multihost, AnUndecidedCommandPastItsDeadlineIsNotCarriedOutByTheNextLeader) {
  ASSERT_NE(StartLeader({"--fault", "hang-on=SLOW"}), nullptr);
  StartMember(2);
  ASSERT_TRUE(members_[2]->WaitReady());
  const json cmd = {{"op", "label"}, {"client", "t"}, {"kind", "output"}, {"labels", {{{"index", 3}, {"text", "SLOW"}}}}};
  const auto now_ms = std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch());
  // (600 ms: a takeover takes at least the lease TTL less one renewal
  // interval, 667 ms, after the kill.)
  const std::string request =
      json{{"type", "command"}, {"id", "deadline-1"}, {"cmd", cmd}, {"expires_at_ms", now_ms.count() + 600}}.dump();
  (void)members_[1]->Raw(request, milliseconds(1));
  ASSERT_FALSE(KillInFlightLeaderAndSettle().is_null());
  const auto retry = members_[2]->Raw(request);
  ASSERT_TRUE(retry.has_value());
  const json told = json::parse(*retry, nullptr, false);
  EXPECT_EQ(told.value("status", ""), "rejected") << *retry;
  EXPECT_EQ(told.value("code", ""), "expired") << *retry;
  std::string verdict;
  for (const auto& v : EtcdVerdicts()) {
    if (v.value("id", "") == "deadline-1") verdict = v.value("verdict", "");
  }
  EXPECT_EQ(verdict, "EXPIRED");
  ExpectNeverDelivered(2, "SLOW");
}

// etcd takes at most 1.5 MiB per write: in cluster mode a command over
// 256 KiB is refused before it is admitted (a leader whose write etcd
// refused would step down, and so would the next, on the client's retry).
TEST_F(Multihost, ACommandTooLargeForEtcdIsRefusedNotAdmitted) {
  NvsdHarness* leader = StartLeader({"--fault", "hang-on=HOLD"}, {{"queue_deadline_ms", 30000}});
  ASSERT_NE(leader, nullptr);
  NvsdHarness& m = *leader;
  const auto label = [](std::size_t bytes, const std::string& text = "x") {
    return json{{"op", "label"}, {"client", "t"}, {"kind", "output"},
                {"labels", {{{"index", 1}, {"text", text}}}}, {"padding", std::string(bytes, 'p')}};
  };
  const json big = m.Command(label(300 * 1024));
  EXPECT_EQ(big.value("status", ""), "rejected") << big.dump().substr(0, 300);
  EXPECT_EQ(big.value("code", ""), "too_large");
  const json fits = m.Command(label(200 * 1024));
  EXPECT_EQ(fits.value("status", ""), "committed") << fits.dump().substr(0, 300);
  // Eight queue up behind a command the variants hang on, and are admitted
  // together after it: in more than one write (2 MiB in one would be
  // refused by etcd, and the leader would step down).
  const std::string hold = m.SendCommand(label(0, "HOLD"));
  ASSERT_FALSE(m.WaitStatus([](const json& s) { return s["nvsd"].value("active", 0) == 1; }).is_null());
  std::vector<std::string> ids;
  for (int i = 0; i < 8; ++i) ids.push_back(m.SendCommand(label(250 * 1024 + i)));
  ASSERT_FALSE(m.WaitStatus([](const json& s) { return s["nvsd"].value("waiting", 0) == 8; }).is_null());
  EXPECT_EQ(m.ReplyTo(hold, milliseconds(30000)).value("status", ""), "quarantined");
  for (const auto& id : ids) EXPECT_EQ(m.ReplyTo(id).value("status", ""), "committed") << id;
  EXPECT_FALSE(WaitCluster(1, [](const json& c) { return c.value("role", "") == "leader"; }).is_null())
      << "the member still leads";
}

}  // namespace
