// nvsd's metrics page (metrics_endpoint; the README's "Metrics" lists
// every family) and the pace: which variant, if any, holds the commands
// back.
#include <cstring>

#include "impl.h"

namespace nvs::supervisor {
namespace {

using metrics::Exposition;
using metrics::MetricType;

double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  const auto middle = values.begin() + static_cast<std::ptrdiff_t>(values.size() / 2);
  std::nth_element(values.begin(), middle, values.end());
  return *middle;
}

double MedianOf(const std::deque<double>& window) { return Median({window.begin(), window.end()}); }

// The process's own figures, as Prometheus's client libraries name them.
void ProcessFamilies(Exposition& page) {
  std::ifstream stat("/proc/self/stat");
  std::string line;
  std::getline(stat, line);
  const auto close = line.rfind(')');
  if (close == std::string::npos) return;
  std::istringstream fields(line.substr(close + 2));
  std::vector<std::string> f;
  for (std::string field; fields >> field;) f.push_back(field);
  // (Fields 3 on: state is f[0]; utime 14, stime 15, starttime 22, rss 24.)
  if (f.size() < 22) return;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page_size = static_cast<double>(sysconf(_SC_PAGESIZE));
  double boot_time = 0;
  std::ifstream proc_stat("/proc/stat");
  for (std::string key; proc_stat >> key;) {
    if (key == "btime") {
      proc_stat >> boot_time;
      break;
    }
  }
  page.Counter("process_cpu_seconds_total", "User and system CPU time nvsd spent, in seconds.",
               (std::stod(f[11]) + std::stod(f[12])) / ticks);
  page.Gauge("process_start_time_seconds", "When nvsd started, in seconds since the Unix epoch.",
             boot_time + std::stod(f[19]) / ticks);
  page.Gauge("process_resident_memory_bytes", "nvsd's resident memory, in bytes.", std::stod(f[21]) * page_size);
  std::error_code ec;
  double fds = 0;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end; it.increment(ec)) ++fds;
  page.Gauge("process_open_fds", "File descriptors nvsd has open.", fds);
}

}  // namespace

std::string Supervisor::Impl::RenderMetrics() const {
  Exposition page;
  const auto& m = metric_counters;
  page.Family("nvs_info", MetricType::kGauge, "Always 1; the labels say how nvsd runs.");
  page.Sample("nvs_info", {{"mode", config.mode}, {"policy", std::string(voter::ToString(config.policy.kind))},
                           {"member", config.cluster ? config.cluster->member : ""}},
              1);
  page.Gauge("nvs_ready", "1 once the first sync round has restored and checked the variants.", ready ? 1 : 0);
  page.Gauge("nvs_available", "1 while nvsd takes commands (0: it refuses them as unavailable).",
             ready && !unavailable_reason && suspects.empty() ? 1 : 0);
  page.Gauge("nvs_seq", "The sequence number of the last command admitted.", static_cast<double>(last_seq));
  // (A gauge: a commit whose verdict the journal could not keep is taken
  // back. For a rate, nvs_verdicts_total{verdict="COMMIT"}.)
  page.Gauge("nvs_commits", "Commands committed since nvsd started (a commit the journal could not keep is taken back).",
             static_cast<double>(commits));

  page.Family("nvs_commands_dispatched_total", MetricType::kCounter,
              "Commands and queries sent to the variants (kind: command or query).");
  page.Sample("nvs_commands_dispatched_total", {{"kind", "command"}}, static_cast<double>(m.dispatched[0]));
  page.Sample("nvs_commands_dispatched_total", {{"kind", "query"}}, static_cast<double>(m.dispatched[1]));
  page.Family("nvs_verdicts_total", MetricType::kCounter,
              "Verdicts, by verdict (COMMIT, POISON, NO_QUORUM, EXPIRED...) and kind (command or query).");
  // Every verdict and kind from the start, at 0 before the first: a series
  // that appears at 1 shows no increase() (an alert on the first NO_QUORUM
  // would stay silent).
  auto verdicts = m.verdicts;
  for (const char* verdict : {"COMMIT", "POISON", "NO_QUORUM", "EXPIRED"}) {
    for (const char* kind : {"command", "query"}) verdicts.try_emplace({verdict, kind}, 0);
  }
  for (const auto& [key, count] : verdicts) {
    page.Sample("nvs_verdicts_total", {{"verdict", key.first}, {"kind", key.second}}, static_cast<double>(count));
  }
  page.Family("nvs_replies_total", MetricType::kCounter,
              "Replies to clients, by status (committed, answered, rejected, quarantined, unavailable, ok, "
              "not_leader).");
  for (const auto status : {proto::ClientStatus::kCommitted, proto::ClientStatus::kAnswered, proto::ClientStatus::kRejected,
                            proto::ClientStatus::kQuarantined, proto::ClientStatus::kUnavailable, proto::ClientStatus::kOk,
                            proto::ClientStatus::kNotLeader}) {
    page.Sample("nvs_replies_total", {{"status", std::string(proto::ToString(status))}},
                static_cast<double>(m.replies[static_cast<std::size_t>(status)]));
  }
  page.Family("nvs_command_duration_seconds", MetricType::kHistogram,
              "From a command's dispatch to its verdict, in seconds (kind: command or query).");
  page.Observations("nvs_command_duration_seconds", {{"kind", "command"}}, m.command_seconds);
  page.Observations("nvs_command_duration_seconds", {{"kind", "query"}}, m.query_seconds);
  page.Family("nvs_journal_sync_duration_seconds", MetricType::kHistogram, "How long each journal fsync took, in seconds.");
  page.Observations("nvs_journal_sync_duration_seconds", {}, m.journal_sync_seconds);
  page.Gauge("nvs_journal_degraded", "1 while the journal cannot be written (nvsd refuses commands meanwhile).",
             journal_trouble ? 1 : 0);
  page.Gauge("nvs_replies_in_doubt", "Replies held until it is known whether their verdict reached the disk.",
             static_cast<double>(replies_in_doubt.size()));

  page.Gauge("nvs_queue_depth", "Commands admitted and waiting to be dispatched, all clients together.",
             static_cast<double>(waiting.size() + admitted_ahead.size()));
  std::map<std::string, std::size_t> by_user;
  waiting.ForEachQueue([&](const std::string&, const std::deque<Command>& queue) {
    if (!queue.empty()) by_user[queue.front().client.user.empty() ? "unauthenticated" : queue.front().client.user] += queue.size();
  });
  page.Family("nvs_client_queue_depth", MetricType::kGauge,
              "Commands waiting, by client (the name of its CURVE key; \"unauthenticated\" on a plain endpoint).");
  if (by_user.empty()) page.Sample("nvs_client_queue_depth", {{"client", "unauthenticated"}}, 0);
  for (const auto& [user, depth] : by_user) page.Sample("nvs_client_queue_depth", {{"client", user}}, static_cast<double>(depth));
  page.Gauge("nvs_clients_waiting", "Clients with commands waiting.", static_cast<double>(waiting.clients()));

  // Each variant, one series per state (1 for the one it is in).
  page.Family("nvs_variant_state", MetricType::kGauge,
              "1 for the state each variant is in (down, starting, syncing, healthy, checking, diverged, exited, "
              "stopping, failed), 0 for the others.");
  for (const auto& v : variants) {
    for (int s = 0; s < kLifeStates; ++s) {
      const Life life = static_cast<Life>(s);
      page.Sample("nvs_variant_state", {{"variant", v.config.name}, {"state", std::string(Name(life))}},
                  v.life == life ? 1 : 0);
    }
  }
  page.Family("nvs_variant_up", MetricType::kGauge, "1 while the variant is healthy and votes.");
  for (const auto& v : variants) page.Sample("nvs_variant_up", {{"variant", v.config.name}}, Voting(v) ? 1 : 0);
  page.Family("nvs_variant_role", MetricType::kGauge, "Always 1; role: voter (lockstep), active or backup (standby).");
  for (const auto& v : variants) {
    page.Sample("nvs_variant_role",
                {{"variant", v.config.name},
                 {"role", !standby ? "voter" : v.config.name == active_name ? "active" : "backup"}},
                1);
  }
  page.Family("nvs_variant_incarnation", MetricType::kGauge, "The variant's incarnation (1 at the first start).");
  for (const auto& v : variants) page.Sample("nvs_variant_incarnation", {{"variant", v.config.name}}, v.incarnation);
  page.Family("nvs_variant_restarts_total", MetricType::kCounter, "Restarts of the variant.");
  for (const auto& v : variants) page.Sample("nvs_variant_restarts_total", {{"variant", v.config.name}}, v.restarts);
  page.Family("nvs_variant_deaths_total", MetricType::kCounter,
              "Deaths nvsd did not cause, by cause: the signal (SIGSEGV, SIGKILL...) or exit.");
  auto deaths = m.deaths;  // (the usual causes at 0 from the start, as above)
  for (const auto& v : variants) {
    for (const char* cause : {"SIGSEGV", "SIGABRT", "SIGBUS", "SIGFPE", "SIGILL", "SIGKILL", "exit"}) {
      deaths.try_emplace({v.config.name, cause}, 0);
    }
  }
  for (const auto& [key, count] : deaths) {
    page.Sample("nvs_variant_deaths_total", {{"variant", key.first}, {"cause", key.second}}, static_cast<double>(count));
  }
  const auto per_variant = [&](const char* name, const char* help, const std::map<std::string, std::uint64_t>& counts) {
    page.Family(name, MetricType::kCounter, help);
    for (const auto& v : variants) {
      const auto it = counts.find(v.config.name);
      page.Sample(name, {{"variant", v.config.name}}, static_cast<double>(it == counts.end() ? 0 : it->second));
    }
  };
  per_variant("nvs_variant_hangs_total", "Times the variant did not answer within its deadline.", m.hangs);
  per_variant("nvs_variant_divergences_total", "Times the variant answered otherwise than the verdict.", m.divergences);
  page.Family("nvs_variant_answer_duration_seconds", MetricType::kHistogram,
              "From a vote's dispatch to the variant's answer, in seconds.");
  for (const auto& v : variants) {
    const auto it = m.answer_seconds.find(v.config.name);
    page.Observations("nvs_variant_answer_duration_seconds", {{"variant", v.config.name}},
                      it != m.answer_seconds.end() ? it->second : metrics::Histogram(metrics::LatencyBuckets()));
  }
  page.Family("nvs_variant_sets_pace", MetricType::kGauge,
              "1 for a variant so much slower than the others that the commands wait for it (README, \"The pace\").");
  for (const auto& v : variants) {
    page.Sample("nvs_variant_sets_pace", {{"variant", v.config.name}}, paced_by == v.config.name ? 1 : 0);
  }
  page.Counter("nvs_pace_changes_total", "Times the variant that sets the pace changed (to one, or to none).",
               static_cast<double>(m.pace_changes));

  page.Family("nvs_probes_total", MetricType::kCounter,
              "Probes finished (a suspect command run on a disposable process), by outcome.");
  auto probes = m.probes;
  for (const char* outcome : {"survived", "crashed", "hung", "failed", "inconclusive"}) probes.try_emplace(outcome, 0);
  for (const auto& [outcome, count] : probes) page.Sample("nvs_probes_total", {{"outcome", outcome}}, static_cast<double>(count));
  page.Counter("nvs_quarantines_total", "Commands quarantined.", static_cast<double>(m.quarantines));
  page.Counter("nvs_blocked_resends_total", "Commands refused without dispatch as identical to a quarantined one.",
               static_cast<double>(m.blocked));
  page.Gauge("nvs_quarantined", "Fingerprints blocked now.", static_cast<double>(quarantine ? quarantine->blocked_count() : 0));
  page.Gauge("nvs_suspects", "Commands admitted before a restart and not settled yet (nvsd refuses others meanwhile).",
             static_cast<double>(suspects.size()));
  page.Counter("nvs_promotions_total", "Standby: backups promoted to active.", static_cast<double>(m.promotions));
  page.Counter("nvs_unknown_variant_peers_total", "Messages on the variants socket from routing ids nvsd never gave out.",
               static_cast<double>(unknown_peers));
  if (config.cluster) {
    page.Gauge("nvs_cluster_leader", "1 while this member leads the cluster (serves clients).", leading ? 1 : 0);
    page.Counter("nvs_cluster_leaderships_total", "Times this member became the leader.", static_cast<double>(m.leaderships));
  }
  ProcessFamilies(page);
  return page.Take();
}

// A command's every outcome is in: each variant's answer time.
void Supervisor::Impl::NoteSettled(const Command& c) {
  for (const auto& [name, ms] : c.answered_ms) {
    auto it = metric_counters.answer_seconds.find(name);
    if (it == metric_counters.answer_seconds.end()) {
      it = metric_counters.answer_seconds.emplace(name, metrics::Histogram(metrics::LatencyBuckets())).first;
    }
    it->second.Observe(ms / 1000);
    for (auto& v : variants) {
      if (v.config.name != name) continue;
      v.answer_ms.push_back(ms);
      if (v.answer_ms.size() > kPaceWindow) v.answer_ms.pop_front();
    }
  }
  last_settled_at = Now();
  if (++settled_since_pace_check >= kPaceMinSamples) UpdatePace();
}

// Each turn while a variant is named: it stops setting the pace when it
// stops voting (a restart starts its window afresh) or when no command
// has settled for kPaceIdle (it sets the pace of nothing).
void Supervisor::Impl::CheckPace() {
  if (!paced_by) return;
  for (const auto& v : variants) {
    if (v.config.name == *paced_by && (!Voting(v) || v.answer_ms.size() < kPaceMinSamples)) {
      UpdatePace();
      return;
    }
  }
  if (Now() - last_settled_at >= kPaceIdle) UpdatePace();
}

// Lockstep lets a voter fall behind by at most kCatchUpWindow commands,
// then waits for it: the slowest voter sets the pace of all. Named when its median answer is kPaceFactor
// times the next slowest's (an event, a warning, status and the metrics);
// no longer once it is under kPaceClearFactor times, or stops voting.
void Supervisor::Impl::UpdatePace() {
  settled_since_pace_check = 0;
  std::vector<std::pair<double, const Variant*>> medians;
  for (const auto& v : variants) {
    if (Voting(v) && v.answer_ms.size() >= kPaceMinSamples) medians.emplace_back(MedianOf(v.answer_ms), &v);
  }
  std::sort(medians.begin(), medians.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::optional<std::string> now;
  const bool idle = Now() - last_settled_at >= kPaceIdle;
  if (medians.size() >= 2 && !idle) {
    const auto& [slowest, v] = medians[0];
    const double next = medians[1].first;
    const double factor = paced_by == v->config.name ? kPaceClearFactor : kPaceFactor;
    if (slowest >= factor * next && slowest - next >= kPaceMinMs) now = v->config.name;
  }
  if (now == paced_by) return;
  ++metric_counters.pace_changes;
  if (now) {
    const double slowest = medians[0].first, next = medians[1].first;
    const json event = {{"variant", *now},
                        {"answer_p50_ms", slowest},
                        {"next_slowest", medians[1].second->config.name},
                        {"next_slowest_p50_ms", next},
                        {"why", *now + " answers in " + std::to_string(static_cast<long>(slowest + 0.5)) +
                                    " ms (median), " + std::to_string(static_cast<long>(slowest / next + 0.5)) +
                                    " times the next slowest: it falls behind, and once it is " +
                                    std::to_string(kCatchUpWindow) + " commands behind every command waits for it"}};
    Log(LogLevel::kWarn, "pace", event);
    Publish("pace", event);
  } else {
    const bool voting = std::any_of(variants.begin(), variants.end(), [&](const Variant& v) {
      return v.config.name == *paced_by && Voting(v) && v.answer_ms.size() >= kPaceMinSamples;
    });
    const json event = {{"variant", nullptr},
                        {"was", *paced_by},
                        {"why", idle      ? "no command for " + std::to_string(kPaceIdle.count()) + " s"
                                : !voting ? *paced_by + " restarted or stopped voting"
                                          : *paced_by + " keeps up again"}};
    Log(LogLevel::kInfo, "pace", event);
    Publish("pace", event);
  }
  paced_by = now;
}

// For status: the variant's median answer and whether it sets the pace.
json Supervisor::Impl::PaceJson(const Variant& v) const {
  return {{"answer_p50_ms", v.answer_ms.empty() ? json() : json(MedianOf(v.answer_ms))},
          {"sets_pace", paced_by == v.config.name}};
}

}  // namespace nvs::supervisor
