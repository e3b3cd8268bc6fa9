// The world a simulated nvsd lives in (ARCHITECTURE.md §7): one object is
// its clock and randomness (Env), its processes (SimProcess over a
// SimVariant), the variants' connections (VariantTransport: one FIFO each
// way per process; the scheduler decides when a message moves, so messages
// of different variants are reordered as a real transport can), its
// clients' connection (ClientTransport) and its events (EventSink). The
// scheduler (simulator.cc) moves things along; nothing here decides.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "client_transport.h"
#include "env.h"
#include "event_sink.h"
#include "nvs/supervisor/config.h"
#include "nvs/supervisor/state_dir.h"
#include "nvs/supervisor/supervisor.h"
#include "sim_variant.h"
#include "variant_transport.h"

namespace nvs::simulation {

using Clock = std::chrono::steady_clock;

// One process nvsd started, as the world sees it.
struct SimProc {
  std::string wire;      // its routing id (NVS_VARIANT)
  std::string identity;  // router-a.3, probe.2, retest.1, ...
  SimVariant model;
  bool alive = true;
  bool exit_noticed = false;          // nvsd's poll may see its pidfd readable
  std::optional<supervisor::ExitInfo> exit;
  bool has_handle = true;             // nvsd still holds its Process
  std::deque<std::string> to_variant;  // sent by nvsd, not yet read by it
  std::deque<std::string> to_nvsd;     // sent by it, not yet arrived at nvsd
  bool IsVariant() const { return identity.rfind("router-", 0) == 0; }
};

class World : public supervisor::Env,
              public supervisor::VariantTransport,
              public supervisor::ClientTransport,
              public supervisor::EventSink {
 public:
  explicit World(std::uint64_t seed) : rng_(seed) {}

  // Env
  Clock::time_point Now() override { return now_; }
  std::int64_t UnixNowNs() override {
    return kUnixBase + std::chrono::duration_cast<std::chrono::nanoseconds>(now_.time_since_epoch()).count();
  }
  void RandomBytes(unsigned char* out, std::size_t size) override {
    for (std::size_t i = 0; i < size; ++i) out[i] = static_cast<unsigned char>(rng_());
  }
  Result<std::unique_ptr<supervisor::Process>> Spawn(const supervisor::SpawnSpec& spec) override;

  // VariantTransport
  bool Send(const std::string& wire, std::string_view bytes) override;
  bool ConnectionGone(const std::string& wire) override;
  bool Receive(std::string* wire, std::vector<std::string>* parts) override;
  void Wait(std::chrono::milliseconds) override {}

  // ClientTransport: requests in `client_in`; replies to `on_reply`.
  bool Receive(std::vector<std::string>* frames, std::string* user) override;
  SendResult Send(const std::vector<std::string>& frames) override;
  bool Waiting() override { return !client_in.empty(); }

  // EventSink
  void Publish(std::string_view topic, std::string_view text) override;

  // What the scheduler moves.
  void Deliver(SimProc& p);  // nvsd -> variant: the front message is read and acted on
  void Arrive(SimProc& p);   // variant -> nvsd: the front message arrives
  void Die(SimProc& p, int signal);

  std::mt19937_64& rng() { return rng_; }
  void Advance(Clock::duration by) { now_ += by; }
  void AdvanceTo(Clock::time_point t) { now_ = std::max(now_, t); }

  std::map<std::string, SimProc> procs;                         // by routing id
  std::deque<std::pair<std::string, std::string>> arrived;      // (wire, bytes): nvsd may read them
  std::deque<std::vector<std::string>> client_in;               // client requests' frames
  std::function<void(const std::string& client, const std::string& bytes)> on_reply;
  // Called with every message nvsd sends a process: (process, bytes).
  std::function<void(const SimProc&, std::string_view)> on_send;
  std::function<void(const std::string&)> note;  // the transcript
  std::map<std::string, int> events;            // published, by topic
  int next_pid = 1000;

 private:
  static constexpr std::int64_t kUnixBase = 1'800'000'000'000'000'000;
  std::mt19937_64 rng_;
  Clock::time_point now_{std::chrono::hours(1)};
};

// One turn of `nvsd` over `world`: the turn takes a microsecond (so what
// it sends is stamped after what earlier turns did: nvsd judges "sent
// before the exit was seen" by these stamps), with whatever the world
// holds ready for it (client requests, variants' messages, exits noticed).
void TakeTurn(World& world, supervisor::Supervisor& nvsd);

// A simulated nvsd over `world` (its clock, processes, both transports)
// and `state`, publishing to `events`.
Result<std::unique_ptr<supervisor::Supervisor>> StartSimulated(World& world, supervisor::StateDir& state,
                                                               supervisor::EventSink& events,
                                                               supervisor::Config config);

// nvsd's handle on a simulated process.
class SimProcess : public supervisor::Process {
 public:
  SimProcess(World& world, std::string wire, int pid) : world_(world), wire_(std::move(wire)), pid_(pid) {}
  ~SimProcess() override;  // as a real one: the process group is killed

  const std::string& wire() const { return wire_; }
  int pid() const override { return pid_; }
  int pidfd() const override { return -1; }
  int stderr_fd() const override { return -1; }
  void DrainStderr() override {}
  const std::string& stderr_tail() const override { return tail_; }
  void ReopenLog() override {}
  void SignalGroup(int signal) const override;
  std::optional<supervisor::ExitInfo> TryReap() override;
  const std::optional<supervisor::ExitInfo>& exit_info() const override { return exit_; }

 private:
  World& world_;
  std::string wire_;
  int pid_;
  std::string tail_;
  std::optional<supervisor::ExitInfo> exit_;
};

}  // namespace nvs::simulation
