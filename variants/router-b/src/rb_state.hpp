// router-b: the router state, held sparsely in ordered associative
// containers. Only what differs from the initial value is stored:
//   routes_        output -> input, only where input != output mod inputs
//   input_labels_  index -> text,   only where text != "Input <index+1>"
//   output_labels_ index -> text,   only where text != "Output <index+1>"
//   locks_         output -> owner, only locked outputs
//   salvos_        name -> (output -> input); std::map<std::string> orders
//                  names byte-wise unsigned, exactly SPEC.md §6's order.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "rb_rapidjson.hpp"

namespace routerb {

inline constexpr int kMaxPorts = 1024;
inline constexpr std::size_t kMaxSalvos = 64;
inline constexpr std::size_t kMaxListLength = 1024;
inline constexpr std::size_t kMaxLabelBytes = 64;
inline constexpr std::size_t kMaxClientBytes = 64;
inline constexpr std::size_t kMaxSalvoNameBytes = 32;

enum class LabelKind { kInput, kOutput };

bool IsClientId(std::string_view s);   // 1..64 bytes, no control character
bool IsSalvoName(std::string_view s);  // 1..32 bytes, no control character
bool IsLabelText(std::string_view s);  // <= 64 bytes, no control character

std::uint64_t Fnv1a64(std::string_view bytes);
std::string HexDigest(std::uint64_t h);  // 16 lowercase hex digits

class RouterState {
 public:
  using SalvoRoutes = std::map<int, int>;  // output -> input
  using Salvos = std::map<std::string, SalvoRoutes>;

  RouterState(int inputs = 16, int outputs = 16);

  int Inputs() const { return inputs_; }
  int Outputs() const { return outputs_; }

  int RouteOf(int output) const;
  void SetRoute(int output, int input);

  std::string Label(LabelKind kind, int index) const;
  void SetLabel(LabelKind kind, int index, std::string text);

  const std::string* LockOwner(int output) const;  // nullptr when unlocked
  void SetLock(int output, std::optional<std::string> owner);

  const Salvos& GetSalvos() const { return salvos_; }
  Salvos& MutableSalvos() { return salvos_; }

  // SPEC.md §6.1 canonical bytes and §6.2 digest.
  std::string Canonical() const;
  std::string Digest() const { return HexDigest(Fnv1a64(Canonical())); }

  // SPEC.md §6.3: builds a state from a received canonical state value, or
  // returns nullopt (and a reason) when it is not a valid canonical state.
  static std::optional<RouterState> FromCanonical(const rapidjson::Value& v, std::string* why);

  friend bool operator==(const RouterState&, const RouterState&) = default;

 private:
  static std::string DefaultLabel(LabelKind kind, int index);
  std::map<int, std::string>& Labels(LabelKind kind) {
    return kind == LabelKind::kInput ? input_labels_ : output_labels_;
  }
  const std::map<int, std::string>& Labels(LabelKind kind) const {
    return kind == LabelKind::kInput ? input_labels_ : output_labels_;
  }

  int inputs_;
  int outputs_;
  std::map<int, int> routes_;
  std::map<int, std::string> input_labels_;
  std::map<int, std::string> output_labels_;
  std::map<int, std::string> locks_;
  Salvos salvos_;
};

}  // namespace routerb
