// nvsd's supervisor (ARCHITECTURE.md §3-§7): the public face of
// Supervisor::Impl (impl.h), whose members are in the supervisor_*.cc files.
#include "nvs/supervisor/supervisor.h"

#include "impl.h"

namespace nvs::supervisor {

Supervisor::Supervisor(Config config) : impl_(std::make_unique<Impl>(std::move(config), SystemEnv())) {}
Supervisor::Supervisor(Config config, Env& env) : impl_(std::make_unique<Impl>(std::move(config), env)) {}
Supervisor::~Supervisor() = default;

Result<std::unique_ptr<Supervisor>> Supervisor::Simulated(Config config, const SimulatedWorld& world) {
  std::unique_ptr<Supervisor> nvsd(new Supervisor(std::move(config), *world.env));
  Impl& impl = *nvsd->impl_;
  impl.simulated = true;
  impl.state = world.state;
  impl.variant_transport = world.variants;
  impl.client_transport = world.clients;
  impl.event_sink = world.events;
  Status started = impl.StartCore(world.pid);
  if (!started.ok()) return started;
  impl.SpawnAll();
  return nvsd;
}

void Supervisor::Turn(const Readiness& ready) {
  try {
    impl_->Turn(ready);
  } catch (const std::exception& e) {
    Log(LogLevel::kError, "internal_error", {{"what", e.what()}});  // (as Run does)
  }
}

std::chrono::steady_clock::time_point Supervisor::NextDeadline() const { return impl_->NextDeadline(); }

bool Supervisor::Unsettled() const {
  return impl_->journal_trouble.has_value() || !impl_->replies_in_doubt.empty() || !impl_->journal_rewrite.empty() ||
         !impl_->suspects.empty();
}

std::vector<const Process*> Supervisor::Processes() const {
  std::vector<const Process*> out;
  for (const auto& w : impl_->WatchedProcesses()) out.push_back(w.process);
  return out;
}

Status Supervisor::Run(int signal_fd) { return impl_->Run(signal_fd); }

bool Supervisor::RestartAsFollower() const { return impl_->restart_as_follower; }

}  // namespace nvs::supervisor
