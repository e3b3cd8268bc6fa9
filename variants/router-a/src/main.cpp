// router-a: entry point. Parses the router size (SPEC §1), hands everything
// else to the variant SDK (PROTOCOL.md), and runs the controller.
#include <cstdint>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "nvs/protocol/variant_sdk.h"
#include "router.h"

namespace {

constexpr const char* kUsage =
    "usage: router-a [--inputs N] [--outputs N] [--fault KIND-on=S]... [--received-log PATH]\n"
    "       N is a decimal integer in [1, 1024] (default 16)\n";

// Accepts "--name VALUE" and "--name=VALUE". Returns false on a usage error.
bool TakeSize(const std::vector<std::string>& args, std::size_t& i, std::string_view name,
              std::int32_t& target, bool& matched) {
  const std::string& a = args[i];
  std::string value;
  if (a == name) {
    if (i + 1 >= args.size()) {
      std::cerr << "router-a: " << name << " needs a value\n" << kUsage;
      return false;
    }
    value = args[++i];
  } else if (a.size() > name.size() && a.compare(0, name.size(), name) == 0 && a[name.size()] == '=') {
    value = a.substr(name.size() + 1);
  } else {
    matched = false;
    return true;
  }
  matched = true;
  const auto parsed = router_a::ParseSizeArgument(value);
  if (!parsed) {
    std::cerr << "router-a: invalid value '" << value << "' for " << name
              << ": expected a decimal integer in [1, 1024]\n";
    return false;
  }
  target = *parsed;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);

  nvs::sdk::VariantOptions options;
  std::string error;
  if (!nvs::sdk::ParseSdkOptions(args, options, error)) {
    std::cerr << "router-a: " << error << "\n" << kUsage;
    return 2;
  }

  std::int32_t inputs = 16;
  std::int32_t outputs = 16;
  for (std::size_t i = 0; i < args.size(); ++i) {
    bool matched = false;
    if (!TakeSize(args, i, "--inputs", inputs, matched)) return 2;
    if (matched) continue;
    if (!TakeSize(args, i, "--outputs", outputs, matched)) return 2;
    if (matched) continue;
    std::cerr << "router-a: unknown argument '" << args[i] << "'\n" << kUsage;
    return 2;
  }

  options.impl = "router-a 1.0 (C++, dense arrays)";
  router_a::Router controller(inputs, outputs);
  return nvs::sdk::RunVariant(controller, options);
}
