// Differential suite: seeded random command streams, valid and invalid, fed
// to all three router variants in step through the real wire protocol. After
// every command their results must be equal (ignoring /message), their
// digests every 100 commands; every 1000 commands a snapshot of one variant is
// restored into another and the digests must match.
//
// NVS_DIFF_SEED=N fixes the seed (otherwise it is random and printed);
// NVS_DIFF_COMMANDS=N changes the stream length.
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <random>

#include "variant_harness.h"

namespace nvs::testing {
namespace {

namespace proto = nvs::protocol;
using nlohmann::json;

std::uint64_t EnvOr(const char* name, std::uint64_t fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::strtoull(value, nullptr, 10) : fallback;
}

// Generates router commands: mostly valid, with a steady share of every kind
// of invalid input SPEC.md names.
class CommandGenerator {
 public:
  CommandGenerator(std::uint64_t seed, int inputs, int outputs) : rng_(seed), inputs_(inputs), outputs_(outputs) {}

  json Next() {
    const int pick = Uniform(0, 99);
    if (pick < 33) return Route();
    if (pick < 52) return Label();
    if (pick < 70) return Lock();
    if (pick < 79) return SalvoDefine();
    if (pick < 90) return SalvoFire();
    if (pick < 91) return SalvoDelete();  // rare, so the 64-salvo limit is reached
    if (pick < 94) return json{{"op", "dump"}};
    return Garbage();
  }

  // A read-only or mutating query for the `query` path.
  json NextQuery() { return Chance(50) ? json{{"op", "dump"}} : Next(); }

 private:
  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool Chance(int percent) { return Uniform(0, 99) < percent; }

  json Client() {
    static const char* const kClients[] = {"panel-1", "panel-2", "automation", "ü-desk"};
    if (Chance(97)) return kClients[Uniform(0, 3)];
    switch (Uniform(0, 4)) {
      case 0: return "";
      case 1: return std::string(65, 'c');
      case 2: return "bad\nclient";
      case 3: return 7;
      default: return nullptr;
    }
  }

  json Index(int size) {
    if (Chance(94)) return Uniform(0, size - 1);
    switch (Uniform(0, 9)) {
      case 0: return -1;
      case 1: return size;
      case 2: return size + Uniform(1, 2000);
      case 3: return std::numeric_limits<std::int64_t>::max();
      case 4: return std::numeric_limits<std::int64_t>::min();
      case 5: return static_cast<std::uint64_t>(1) << 63;
      case 6: return 1.0;
      case 7: return "3";
      case 8: return true;
      default: return nullptr;
    }
  }

  json Routes(int max_entries) {
    json routes = json::array();
    const int n = Chance(3) ? 0 : Uniform(1, max_entries);
    for (int i = 0; i < n; ++i) {
      json entry{{"output", Index(outputs_)}, {"input", Index(inputs_)}};
      if (Chance(2)) entry.erase(Chance(50) ? "output" : "input");
      if (Chance(2)) entry["extra"] = 1;
      routes.push_back(entry);
    }
    return routes;
  }

  json Route() { return json{{"op", "route"}, {"client", Client()}, {"routes", Routes(4)}}; }

  json Text() {
    static const char* const kTexts[] = {
        "CAM 1", "", "PGM", "Studio \"A\"", "back\\slash", "Ausgang ü", "カメラ", "🎥 main",
        "tab\there", "line\nbreak", "del\x7f", "nul\u0000x", "\u0085 next-line is not a C0 control",
        "0123456789012345678901234567890123456789012345678901234567890123",    // 64 bytes
        "01234567890123456789012345678901234567890123456789012345678901234",   // 65 bytes
        "üüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüü",                                   // 64 bytes in 32 characters
        "üüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüa",                                  // 65 bytes
    };
    return std::string(kTexts[Uniform(0, static_cast<int>(std::size(kTexts)) - 1)]);
  }

  json Label() {
    const bool input = Chance(50);
    json labels = json::array();
    const int n = Chance(3) ? 0 : Uniform(1, 3);
    for (int i = 0; i < n; ++i) labels.push_back({{"index", Index(input ? inputs_ : outputs_)}, {"text", Text()}});
    if (!labels.empty() && Chance(2)) labels[0]["text"] = 5;
    json kind = input ? "input" : "output";
    if (Chance(2)) kind = "inputs";
    return json{{"op", "label"}, {"client", Client()}, {"kind", kind}, {"labels", labels}};
  }

  json Lock() {
    static const char* const kActions[] = {"O", "U", "F"};
    json locks = json::array();
    const int n = Chance(3) ? 0 : Uniform(1, 3);
    for (int i = 0; i < n; ++i) {
      json action = Chance(98) ? json(kActions[Uniform(0, 2)]) : json("o");
      locks.push_back({{"output", Index(outputs_)}, {"action", action}});
    }
    return json{{"op", "lock"}, {"client", Client()}, {"locks", locks}};
  }

  json SalvoName() {
    if (Chance(98)) return "salvo-" + std::to_string(Uniform(0, 71));
    switch (Uniform(0, 3)) {
      case 0: return "";
      case 1: return std::string(33, 's');
      case 2: return "née";
      default: return 12;
    }
  }

  json SalvoDefine() {
    return json{{"op", "salvo_define"}, {"client", Client()}, {"name", SalvoName()}, {"routes", Routes(5)}};
  }
  json SalvoFire() { return json{{"op", "salvo_fire"}, {"client", Client()}, {"name", SalvoName()}}; }
  json SalvoDelete() { return json{{"op", "salvo_delete"}, {"client", Client()}, {"name", SalvoName()}}; }

  json Garbage() {
    switch (Uniform(0, 6)) {
      case 0: return json::array({1, 2});
      case 1: return "route";
      case 2: return json{{"client", "a"}};
      case 3: return json{{"op", "explode"}};
      case 4: return json{{"op", 3}};
      case 5: {
        json cmd = Route();
        cmd["priority"] = 1;
        return cmd;
      }
      default: return json{{"op", "dump"}, {"client", "panel-1"}};
    }
  }

  std::mt19937_64 rng_;
  int inputs_;
  int outputs_;
};

struct Size {
  int inputs;
  int outputs;
  std::uint64_t commands;
};

class Differential : public ::testing::TestWithParam<Size> {};

TEST_P(Differential, VariantsAgreeOnRandomStreams) {
  const Size size = GetParam();
  const std::uint64_t seed = EnvOr("NVS_DIFF_SEED", std::random_device{}());
  const std::uint64_t commands = EnvOr("NVS_DIFF_COMMANDS", size.commands);
  std::cout << "differential: seed " << seed << " (rerun with NVS_DIFF_SEED=" << seed << "), " << commands
            << " commands on " << size.inputs << "x" << size.outputs << "\n";

  const std::vector<std::string> extra = {"--inputs", std::to_string(size.inputs), "--outputs",
                                          std::to_string(size.outputs)};
  VariantHarness harness;
  std::vector<std::string> names;
  for (const auto& command : RouterVariants(extra)) {
    std::string error;
    ASSERT_TRUE(harness.Start(command, error)) << error;
    names.push_back(command.name);
  }

  CommandGenerator generator(seed, size.inputs, size.outputs);
  std::uint64_t seq = 0;
  const auto call_all = [&](const proto::Request& request) {
    std::vector<proto::Reply> replies;
    for (const auto& name : names) harness.Send(name, request);
    for (const auto& name : names) {
      auto raw = harness.Receive(name);
      if (!raw) {
        ADD_FAILURE() << name << " did not answer " << proto::Encode(request).substr(0, 300) << " (seed " << seed
                      << ")";
        return replies;
      }
      auto decoded = proto::DecodeReply(*raw);
      if (!decoded.ok() || proto::SeqOf(decoded.value()) != proto::SeqOf(request)) {
        ADD_FAILURE() << name << " sent a bad reply: " << raw->substr(0, 300) << " (seed " << seed << ")";
        return replies;
      }
      replies.push_back(decoded.value());
    }
    return replies;
  };
  const auto result_of = [](const proto::Reply& reply) -> std::string {
    if (auto* a = std::get_if<proto::Applied>(&reply)) return a->result;
    if (auto* a = std::get_if<proto::Answer>(&reply)) return a->result;
    return proto::Encode(reply);
  };
  const auto digests_agree = [&](std::uint64_t index) {
    auto replies = call_all(proto::DigestRequest{++seq});
    if (replies.size() != names.size()) return false;
    const auto digest = [](const proto::Reply& reply) {
      auto* d = std::get_if<proto::DigestReply>(&reply);
      return d != nullptr ? d->digest : "not a digest: " + proto::Encode(reply);
    };
    for (std::size_t v = 1; v < replies.size(); ++v) {
      if (digest(replies[v]) != digest(replies[0])) {
        ADD_FAILURE() << "digests differ after command " << index << " (seed " << seed << "): " << names[0] << " "
                      << digest(replies[0]) << ", " << names[v] << " " << digest(replies[v]);
        return false;
      }
    }
    return true;
  };

  std::uint64_t accepted = 0;
  for (std::uint64_t i = 1; i <= commands; ++i) {
    const bool as_query = i % 50 == 0;
    const json cmd = as_query ? generator.NextQuery() : generator.Next();
    const proto::Request request = as_query ? proto::Request(proto::Query{++seq, cmd.dump()})
                                            : proto::Request(proto::Apply{++seq, static_cast<std::int64_t>(i), cmd.dump()});
    auto replies = call_all(request);
    ASSERT_EQ(replies.size(), names.size());
    const std::string first = result_of(replies[0]);
    for (std::size_t v = 1; v < replies.size(); ++v) {
      const std::string diff = CompareResults(first, result_of(replies[v]));
      ASSERT_TRUE(diff.empty()) << "first difference at command " << i << " (seed " << seed << ")\n  command: "
                                << proto::Encode(request) << "\n  " << names[0] << ": " << first << "\n  " << names[v]
                                << ": " << result_of(replies[v]);
    }
    if (first.find(R"("ok":true)") != std::string::npos) ++accepted;
    if (i % 100 == 0) {
      ASSERT_TRUE(digests_agree(i));
    }
    if (i % 1000 == 0) {
      // Cross-implementation resync: one variant's snapshot restored into the next.
      const std::string& from = names[(i / 1000) % names.size()];
      const std::string& to = names[(i / 1000 + 1) % names.size()];
      std::string error;
      auto snapshot = harness.Call(from, proto::SnapshotRequest{++seq}, error);
      ASSERT_TRUE(snapshot) << error;
      auto* state = std::get_if<proto::StateReply>(&*snapshot);
      ASSERT_NE(state, nullptr) << proto::Encode(*snapshot);
      auto restored = harness.Call(to, proto::Restore{++seq, state->state}, error);
      ASSERT_TRUE(restored) << error;
      auto* done = std::get_if<proto::Restored>(&*restored);
      ASSERT_NE(done, nullptr) << to << " refused " << from << "'s snapshot: " << proto::Encode(*restored);
      ASSERT_EQ(done->digest, state->digest) << to << " restored " << from << "'s snapshot (seed " << seed << ")";
      ASSERT_TRUE(digests_agree(i));
    }
  }
  ASSERT_TRUE(digests_agree(commands));
  std::cout << "differential: " << commands << " commands, " << accepted << " accepted, all variants agree\n";
  // A stream that is almost all rejections would prove little.
  EXPECT_GT(accepted, commands / 5);
  EXPECT_LT(accepted, commands - commands / 10);
}

INSTANTIATE_TEST_SUITE_P(Sizes, Differential,
                         ::testing::Values(Size{12, 10, 10000}, Size{1024, 1024, 2000}, Size{1, 3, 2000}),
                         [](const auto& info) {
                           return std::to_string(info.param.inputs) + "x" + std::to_string(info.param.outputs);
                         });

}  // namespace
}  // namespace nvs::testing
