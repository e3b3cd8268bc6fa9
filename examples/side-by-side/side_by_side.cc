// nvs-side-by-side SCRIPT.jsonl [--inputs N --outputs N]
//
// Starts the three router variants (real processes, real ZeroMQ), sends each
// command of a script to all of them, and prints their replies side by side,
// marking where they disagree. Script lines: {"apply": CMD, "note": TEXT} or
// {"query": CMD, "note": TEXT}. Exit status 0 when all variants agreed on
// every command and digest, 1 otherwise, 2 on a usage error.
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "variant_harness.h"

namespace proto = nvs::protocol;
using nlohmann::json;

namespace {

std::string Shorten(const std::string& text, std::size_t width) {
  return text.size() <= width ? text : text.substr(0, width - 3) + "...";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: nvs-side-by-side SCRIPT.jsonl [--inputs N --outputs N]\n";
    return 2;
  }
  std::ifstream script(argv[1]);
  if (!script) {
    std::cerr << "cannot read " << argv[1] << "\n";
    return 2;
  }
  std::vector<std::string> extra(argv + 2, argv + argc);

  nvs::testing::VariantHarness harness;
  std::vector<std::string> names;
  for (const auto& command : nvs::testing::RouterVariants(extra)) {
    std::string error;
    auto hello = harness.Start(command, error);
    if (!hello) {
      std::cerr << error << "\n";
      return 1;
    }
    std::cout << "started " << command.name << ": " << hello->impl << "\n";
    names.push_back(command.name);
  }
  std::cout << "\n";

  bool all_agree = true;
  std::uint64_t seq = 0;
  std::string line;
  int number = 0;
  while (std::getline(script, line)) {
    if (line.empty()) continue;
    json step = json::parse(line, nullptr, false);
    if (step.is_discarded() || !(step.contains("apply") || step.contains("query"))) {
      std::cerr << argv[1] << ": bad script line: " << line << "\n";
      return 2;
    }
    ++number;
    const bool query = step.contains("query");
    const std::string cmd = (query ? step["query"] : step["apply"]).dump();
    std::cout << "#" << number << " " << (query ? "query " : "apply ") << Shorten(cmd, 110) << "\n";
    if (step.contains("note")) std::cout << "   (" << step["note"].get<std::string>() << ")\n";
    std::vector<std::string> results;
    ++seq;
    for (const auto& name : names) {
      harness.Send(name, query ? proto::Request(proto::Query{seq, cmd}) : proto::Request(proto::Apply{seq, number, cmd}));
    }
    for (const auto& name : names) {
      auto raw = harness.Receive(name);
      std::string shown = "(no reply)";
      if (raw) {
        auto decoded = proto::DecodeReply(*raw);
        if (decoded.ok() && std::holds_alternative<proto::Applied>(decoded.value())) {
          shown = std::get<proto::Applied>(decoded.value()).result;
        } else if (decoded.ok() && std::holds_alternative<proto::Answer>(decoded.value())) {
          shown = std::get<proto::Answer>(decoded.value()).result;
        } else {
          shown = *raw;
        }
      }
      results.push_back(shown);
    }
    bool agree = true;
    for (std::size_t v = 1; v < results.size(); ++v) agree = agree && nvs::testing::CompareResults(results[0], results[v]).empty();
    all_agree = all_agree && agree;
    for (std::size_t v = 0; v < names.size(); ++v) {
      std::cout << "   " << names[v] << "  " << Shorten(results[v], 110) << "\n";
    }
    std::cout << "   => " << (agree ? "all agree" : "VARIANTS DISAGREE") << "\n\n";
  }

  ++seq;
  std::cout << "final state digests:";
  std::vector<std::string> digests;
  for (const auto& name : names) {
    std::string error;
    auto reply = harness.Call(name, proto::DigestRequest{seq}, error);
    auto* digest = reply ? std::get_if<proto::DigestReply>(&*reply) : nullptr;
    digests.push_back(digest != nullptr ? digest->digest : "?");
    std::cout << "  " << name << "=" << digests.back();
  }
  const bool digests_agree = std::all_of(digests.begin(), digests.end(), [&](const auto& d) { return d == digests[0] && d != "?"; });
  std::cout << "\n" << (all_agree && digests_agree ? "all variants agree on every reply and on the final state\n"
                                                   : "THE VARIANTS DISAGREE\n");
  return all_agree && digests_agree ? 0 : 1;
}
