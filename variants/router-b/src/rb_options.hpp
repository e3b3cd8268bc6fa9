// router-b: command-line options (SPEC.md §1, PROTOCOL.md §6).
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace routerb {

struct FaultRule {
  enum class Kind { kCrash, kAbort, kExit, kHang, kWrong, kCorrupt };
  Kind kind;
  std::string needle;  // substring of the compact serialisation of cmd/query
};

struct Options {
  int inputs = 16;
  int outputs = 16;
  std::vector<FaultRule> faults;  // command-line order
  std::optional<std::string> received_log;
};

// args excludes argv[0]. On failure returns nullopt and sets *error.
std::optional<Options> ParseOptions(const std::vector<std::string>& args, std::string* error);

}  // namespace routerb
