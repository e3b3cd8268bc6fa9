// router-a: the router domain (variants/router/SPEC.md) with dense arrays.
//
// State layout: one int32 route per output, one label string per input and
// per output, one optional owner per output, and the salvos in a vector kept
// sorted by name (byte-wise). Every op is validated by one straight-line
// function: shape pass, semantic pass, then apply.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "nvs/protocol/variant_sdk.h"

namespace router_a {

inline constexpr std::int64_t kMaxSize = 1024;        // inputs / outputs
inline constexpr std::size_t kMaxList = 1024;         // list elements
inline constexpr std::size_t kMaxSalvos = 64;
inline constexpr std::size_t kMaxClientBytes = 64;
inline constexpr std::size_t kMaxNameBytes = 32;
inline constexpr std::size_t kMaxLabelBytes = 64;

struct SalvoRoute {
  std::int32_t output = 0;
  std::int32_t input = 0;
};

struct Salvo {
  std::string name;
  std::vector<SalvoRoute> routes;  // sorted by output, distinct outputs
};

struct RouterState {
  std::int32_t inputs = 0;
  std::int32_t outputs = 0;
  std::vector<std::int32_t> routes;                 // size outputs
  std::vector<std::string> input_labels;            // size inputs
  std::vector<std::string> output_labels;           // size outputs
  std::vector<std::optional<std::string>> owners;   // size outputs
  std::vector<Salvo> salvos;                        // sorted by name bytes
};

// The initial state of SPEC §2. Requires 1 <= inputs, outputs <= 1024.
RouterState InitialState(std::int32_t inputs, std::int32_t outputs);

// SPEC §6.1 canonical bytes (own serializer, only \" and \\ escapes).
std::string CanonicalBytes(const RouterState& state);

// SPEC §6.2: FNV-1a 64 and its 16-digit lowercase hex form.
std::uint64_t Fnv1a64(std::string_view bytes);
std::string Hex16(std::uint64_t value);

// Parses and fully validates a canonical state value (SPEC §6.3). On
// failure returns the reason and leaves `out` in an unspecified state.
std::optional<std::string> ParseState(const nlohmann::json& value, RouterState& out);

// Parses a command-line size (SPEC §1): decimal digits only, 1..1024.
std::optional<std::int32_t> ParseSizeArgument(std::string_view text);

class Router final : public nvs::sdk::Controller {
 public:
  Router(std::int32_t inputs, std::int32_t outputs);

  nlohmann::json Apply(const nlohmann::json& cmd, std::int64_t time_ns) override;
  nlohmann::json Query(const nlohmann::json& query) override;
  std::string CanonicalState() const override;
  std::string Digest() const override;
  std::optional<std::string> Restore(const nlohmann::json& state) override;
  void CorruptForTest() override;

  const RouterState& state() const { return state_; }

 private:
  struct Pair {  // a validated-shape (output, input) entry, not yet in range
    std::int64_t output;
    std::int64_t input;
  };

  nlohmann::json Execute(const nlohmann::json& cmd, bool query_only);
  nlohmann::json OpRoute(const nlohmann::json& cmd);
  nlohmann::json OpLabel(const nlohmann::json& cmd);
  nlohmann::json OpLock(const nlohmann::json& cmd);
  nlohmann::json OpSalvoDefine(const nlohmann::json& cmd);
  nlohmann::json OpSalvoFire(const nlohmann::json& cmd);
  nlohmann::json OpSalvoDelete(const nlohmann::json& cmd);
  nlohmann::json OpDump(const nlohmann::json& cmd) const;

  // Semantic pass and apply shared by `route` and `salvo_fire`.
  nlohmann::json RouteSemanticAndApply(const std::string& client,
                                       const std::vector<Pair>& entries);
  // Index of the salvo named `name`, or -1.
  std::ptrdiff_t FindSalvo(const std::string& name) const;
  nlohmann::json StateJson() const;

  RouterState state_;
};

}  // namespace router_a
