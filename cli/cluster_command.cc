// nvs cluster status | handover: cluster mode (protocol/CLIENT.md §8).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "client.h"
#include "common.h"

namespace nvs::cli {

namespace {

using nlohmann::json;

// The cluster as the member asked sees it: who leads, and every member.
int ClusterStatus(const Options& o) {
  auto client = Connect(o, "nvs cluster");
  if (!client) return kExitUsage;
  auto call = client->Call({{"type", "status"}}, o.timeout_ms);
  if (!call.ok() || !call.value()) return NoReply("nvs cluster", *client, call, o.timeout_ms);
  const json c = (*call.value()).value("cluster", json());
  if (o.json_output) {
    std::cout << c.dump() << "\n";
    return c.is_object() && !c.value("leader", "").empty() ? kExitOk : kExitRefused;
  }
  if (!c.is_object()) {
    std::cerr << "nvs cluster: the nvsd at " << client->endpoint() << " is not a cluster member\n";
    return kExitRefused;
  }
  const std::string leader = c.value("leader", "");
  std::cout << "cluster " << c.value("name", "?") << ": asked " << c.value("member", "?") << " ("
            << c.value("role", "?") << "); leader " << (leader.empty() ? "NONE" : leader) << " at "
            << c.value("leader_endpoint", "-") << "\n";
  if (c.contains("serve_left_ms") && c["serve_left_ms"].is_number()) {
    std::printf("lease %lld, TTL %d s, may serve %.0f ms more without a renewal\n", c.value("lease", 0LL),
                c.value("lease_ttl_s", 0), c["serve_left_ms"].get<double>());
  }
  if (!c.value("etcd_leader_endpoint", "").empty()) {
    std::cout << "writes to etcd's leader at " << c.value("etcd_leader_endpoint", "");
    if (c.contains("etcd_write_p50_us") && c["etcd_write_p50_us"].is_number()) {
      std::printf(" (p50 %.0f us over its last 1000 writes)", c["etcd_write_p50_us"].get<double>());
    }
    std::cout << "\n";
  }
  std::printf("%-20s %-14s %12s  %s\n", "MEMBER", "ROLE", "APPLIED SEQ", "ENDPOINT");
  for (const auto& m : c.value("members", json::array())) {
    std::printf("%-20s %-14s %12llu  %s\n", m.value("member", "?").c_str(), m.value("role", "?").c_str(),
                m.value("applied_seq", 0ULL), m.value("endpoint", "?").c_str());
  }
  if (!c.value("last_etcd_error", "").empty()) std::cout << "last etcd error: " << c.value("last_etcd_error", "") << "\n";
  return leader.empty() ? kExitRefused : kExitOk;
}

// Asks the leader to hand over: it finishes what it decides, resigns, and
// follows; the next member in line leads.
int Handover(const Options& o, const std::string& note) {
  auto client = Connect(o, "nvs cluster");
  if (!client) return kExitUsage;
  auto call = client->Call({{"type", "cluster"}, {"action", "handover"}, {"note", note}}, o.timeout_ms);
  if (!call.ok() || !call.value()) return NoReply("nvs cluster", *client, call, o.timeout_ms);
  const json& reply = *call.value();
  if (o.json_output) std::cout << reply.dump() << "\n";
  if (reply.value("status", "") != "ok") {
    if (!o.json_output) std::cerr << "nvs cluster handover: " << reply.value("status", "?") << ": " << reply.value("reason", "") << "\n";
    return kExitRefused;
  }
  if (!o.json_output) {
    std::cout << "member " << reply.value("member", "?") << " handed the cluster over at seq " << reply.value("seq", 0)
              << "; the next member in line leads (nvs cluster status)\n";
  }
  return kExitOk;
}

}  // namespace

void AddClusterCommand(CLI::App& app, Options& o) {
  auto note = std::make_shared<std::string>();
  CLI::App* c = app.add_subcommand("cluster", "cluster mode: the members, the leader, and moving leadership on purpose");
  c->require_subcommand(1);
  const auto common = [&](CLI::App* sub) {
    AddConnectionOptions(*sub, o);
    sub->add_option("--timeout", o.timeout_ms, "how long to wait for nvsd, ms")->capture_default_str();
    sub->add_flag("--json", o.json_output, "JSON output");
  };
  CLI::App* status = c->add_subcommand("status", "who leads, and each member's role and applied seq (any member answers)");
  common(status);
  status->callback([&o] { o.exit_code = ClusterStatus(o); });
  CLI::App* handover = c->add_subcommand(
      "handover", "the leader finishes what it is deciding, resigns and follows; the next member leads (maintenance)");
  common(handover);
  handover->add_option("--note", *note, "why (logged)");
  handover->callback([&o, note] { o.exit_code = Handover(o, *note); });
}

}  // namespace nvs::cli
