// A simulated variant for the simulator (ARCHITECTURE.md §7): a small,
// deterministic controller model that speaks the real variant protocol
// (protocol/PROTOCOL.md) byte for byte, with the faults a real variant
// shows, chosen per command by marker. It runs in the simulator's process;
// the simulated transport carries its bytes.
//
// The model: `slots` integer registers, all 0 at start. Commands (compact
// JSON): {"op":"set","slot":S,"value":V} and {"op":"add","slot":S,"value":V}
// change one; {"op":"get","slot":S} is a query. A command may carry
// "fault": a marker whose kind (before any ':', as in "crash:router-a")
// is "crash", "hang", "wrong", "corrupt" or "drop" (each variant
// configured as faulty for that marker misbehaves on it; others do not):
// - crash:   dies on it, without answering;
// - hang:    never answers it, nor anything after;
// - wrong:   answers with another result (and applies it correctly);
// - corrupt: applies it, answers correctly, and silently changes another
//            register (its state differs from here on);
// - drop:    applies it, dies, and the answer is lost with it.
// The canonical state is {"slots":[...]}, its digest the FNV-1a 64 hex of
// that text, the same for every variant (as the real ones share theirs).
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace nvs::simulation {

class SimVariant {
 public:
  // `faulty_for`: the fault markers this variant misbehaves on.
  SimVariant(std::string name, std::size_t slots, std::set<std::string> faulty_for);

  // What it does with one request: the replies it sends (in order), and
  // whether it died (after sending them) or hangs from now on.
  struct Outcome {
    std::vector<std::string> replies;
    bool died = false;
    bool hangs = false;
  };
  // Its first message, with its NVS_VARIANT.
  std::string Hello(const std::string& nvs_variant) const;
  Outcome Receive(const std::string& bytes);

  bool dead() const { return dead_; }
  bool hung() const { return hung_; }
  const std::string& name() const { return name_; }
  // Its state now, canonical, and the digest of it.
  std::string State() const;
  std::string Digest() const;

  // The model itself: the result of `cmd` on `slots` (changed in place; a
  // command it refuses, a bad op or slot, changes nothing and its result
  // says why). The simulator's reference replay uses it too.
  static std::string Apply(std::vector<std::int64_t>& slots, const std::string& cmd);
  static std::string StateOf(const std::vector<std::int64_t>& slots);

 private:
  std::string name_;
  std::set<std::string> faulty_for_;
  std::vector<std::int64_t> slots_;
  bool dead_ = false;
  bool hung_ = false;
};

}  // namespace nvs::simulation
