#include "sim_world.h"

#include <signal.h>

#include <set>
#include <sstream>

namespace nvs::simulation {

namespace {

// "router-a.3.<hex>" -> "router-a.3"
std::string IdentityOfWire(const std::string& wire) {
  const auto dot = wire.rfind('.');
  return dot == std::string::npos ? wire : wire.substr(0, dot);
}

std::string Brief(std::string_view bytes) {
  std::string out(bytes.substr(0, 120));
  if (bytes.size() > 120) out += "...";
  return out;
}

}  // namespace

Result<std::unique_ptr<supervisor::Process>> World::Spawn(const supervisor::SpawnSpec& spec) {
  std::string wire;
  for (const auto& e : spec.env) {
    if (e.rfind("NVS_VARIANT=", 0) == 0) wire = e.substr(12);
  }
  if (wire.empty()) return Status::Error("no NVS_VARIANT in the spawn's environment");
  // The program's faults are its argv[1]: markers separated by commas.
  std::set<std::string> faulty_for;
  if (spec.argv.size() > 1) {
    std::stringstream markers(spec.argv[1]);
    for (std::string m; std::getline(markers, m, ',');) {
      if (!m.empty()) faulty_for.insert(m);
    }
  }
  const std::string identity = IdentityOfWire(wire);
  SimProc p{wire, identity, SimVariant(identity, 4, faulty_for), true, false, std::nullopt, true, {}, {}};
  p.to_nvsd.push_back(p.model.Hello(wire));
  procs.erase(wire);
  procs.emplace(wire, std::move(p));
  if (note) note("spawn " + identity);
  return std::unique_ptr<supervisor::Process>(new SimProcess(*this, wire, next_pid++));
}

bool World::Send(const std::string& wire, std::string_view bytes) {
  auto it = procs.find(wire);
  if (it == procs.end()) return false;
  SimProc& p = it->second;
  if (on_send) on_send(p, bytes);
  // A dead process's connection takes a moment to close: until what it
  // sent is in, a send is still taken (and lost).
  if (!p.alive) return !p.to_nvsd.empty();
  p.to_variant.emplace_back(bytes);
  return true;
}

bool World::ConnectionGone(const std::string& wire) {
  auto it = procs.find(wire);
  return it == procs.end() || (!it->second.alive && it->second.to_nvsd.empty());
}

bool World::Receive(std::string* wire, std::vector<std::string>* parts) {
  if (arrived.empty()) return false;
  *wire = std::move(arrived.front().first);
  parts->assign(1, std::move(arrived.front().second));
  arrived.pop_front();
  return true;
}

bool World::Receive(std::vector<std::string>* frames, std::string* user) {
  if (client_in.empty()) return false;
  *frames = std::move(client_in.front());
  client_in.pop_front();
  user->clear();
  return true;
}

supervisor::ClientTransport::SendResult World::Send(const std::vector<std::string>& frames) {
  if (frames.size() < 2) return SendResult::kGone;
  if (on_reply) on_reply(frames.front(), frames.back());
  return SendResult::kSent;
}

void World::Publish(std::string_view topic, std::string_view text) {
  ++events[std::string(topic)];
  if (note) note("event " + std::string(topic) + " " + Brief(text));
}

void World::Deliver(SimProc& p) {
  std::string bytes = std::move(p.to_variant.front());
  p.to_variant.pop_front();
  if (!p.alive) return;
  const auto out = p.model.Receive(bytes);
  if (note) {
    note(p.identity + " <- " + Brief(bytes) + (out.died ? "  [dies]" : out.hangs ? "  [hangs]" : ""));
  }
  for (const auto& reply : out.replies) p.to_nvsd.push_back(reply);
  if (out.died) Die(p, SIGSEGV);
}

void World::Arrive(SimProc& p) {
  if (note) note("nvsd <- " + p.identity + " " + Brief(p.to_nvsd.front()));
  arrived.emplace_back(p.wire, std::move(p.to_nvsd.front()));
  p.to_nvsd.pop_front();
}

void World::Die(SimProc& p, int signal) {
  if (!p.alive) return;
  p.alive = false;
  p.to_variant.clear();
  supervisor::ExitInfo info;
  info.signaled = true;
  info.signal = signal;
  p.exit = info;
  if (note) note(p.identity + " exits (signal " + std::to_string(signal) + ")");
}

void TakeTurn(World& world, supervisor::Supervisor& nvsd) {
  world.Advance(std::chrono::microseconds(1));
  supervisor::Readiness ready;
  ready.clients = !world.client_in.empty();
  ready.variants = !world.arrived.empty();
  for (const supervisor::Process* p : nvsd.Processes()) {
    auto it = world.procs.find(static_cast<const SimProcess*>(p)->wire());
    if (it != world.procs.end() && it->second.exit_noticed) ready.exited.insert(p);
  }
  nvsd.Turn(ready);
}

Result<std::unique_ptr<supervisor::Supervisor>> StartSimulated(World& world, supervisor::StateDir& state,
                                                               supervisor::EventSink& events,
                                                               supervisor::Config config) {
  supervisor::SimulatedWorld w;
  w.env = &world;
  w.state = &state;
  w.variants = &world;
  w.clients = &world;
  w.events = &events;
  w.pid = 4242;  // (what its start record says)
  return supervisor::Supervisor::Simulated(std::move(config), w);
}

SimProcess::~SimProcess() {
  auto it = world_.procs.find(wire_);
  if (it == world_.procs.end()) return;
  world_.Die(it->second, SIGKILL);
  it->second.has_handle = false;
}

void SimProcess::SignalGroup(int signal) const {
  if (signal != SIGKILL && signal != SIGTERM) return;
  auto it = world_.procs.find(wire_);
  if (it != world_.procs.end()) world_.Die(it->second, signal);
}

std::optional<supervisor::ExitInfo> SimProcess::TryReap() {
  if (exit_) return exit_;
  auto it = world_.procs.find(wire_);
  if (it == world_.procs.end() || it->second.alive) return std::nullopt;
  exit_ = it->second.exit;
  return exit_;
}

}  // namespace nvs::simulation
