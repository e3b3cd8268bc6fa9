#include "rb_options.hpp"

#include <charconv>
#include <string_view>
#include <utility>

namespace routerb {
namespace {

// Decimal digits only, 1..1024.
std::optional<int> PortCount(std::string_view text) {
  if (text.empty() || text.size() > 9) return std::nullopt;
  for (char c : text)
    if (c < '0' || c > '9') return std::nullopt;
  int v = 0;
  std::from_chars(text.data(), text.data() + text.size(), v);
  if (v < 1 || v > 1024) return std::nullopt;
  return v;
}

std::optional<FaultRule> Fault(std::string_view spec) {
  static const std::pair<std::string_view, FaultRule::Kind> kKinds[] = {
      {"crash-on=", FaultRule::Kind::kCrash}, {"abort-on=", FaultRule::Kind::kAbort},
      {"exit-on=", FaultRule::Kind::kExit},   {"hang-on=", FaultRule::Kind::kHang},
      {"wrong-on=", FaultRule::Kind::kWrong}, {"corrupt-on=", FaultRule::Kind::kCorrupt},
  };
  for (const auto& [prefix, kind] : kKinds)
    if (spec.substr(0, prefix.size()) == prefix)
      return FaultRule{kind, std::string(spec.substr(prefix.size()))};
  return std::nullopt;
}

}  // namespace

std::optional<Options> ParseOptions(const std::vector<std::string>& args, std::string* error) {
  Options opts;
  auto fail = [error](std::string message) -> std::optional<Options> {
    if (error) *error = std::move(message);
    return std::nullopt;
  };
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string name = args[i];
    std::optional<std::string> value;
    if (auto eq = name.find('='); name.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    if (name != "--inputs" && name != "--outputs" && name != "--fault" &&
        name != "--received-log")
      return fail("unknown argument '" + args[i] + "'");
    if (!value) {
      if (i + 1 >= args.size()) return fail("option " + name + " needs a value");
      value = args[++i];
    }
    if (name == "--inputs" || name == "--outputs") {
      auto n = PortCount(*value);
      if (!n) return fail(name + " must be an integer from 1 to 1024, got '" + *value + "'");
      (name == "--inputs" ? opts.inputs : opts.outputs) = *n;
    } else if (name == "--fault") {
      auto rule = Fault(*value);
      if (!rule)
        return fail("--fault must be crash-on=S, abort-on=S, exit-on=S, hang-on=S, "
                    "wrong-on=S or corrupt-on=S, got '" + *value + "'");
      opts.faults.push_back(std::move(*rule));
    } else {
      if (value->empty()) return fail("--received-log needs a file path");
      opts.received_log = *value;
    }
  }
  return opts;
}

}  // namespace routerb
