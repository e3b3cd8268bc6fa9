// Lockstep supervision end to end (issue 3): real nvsd, real variants, real
// sockets, for three variants (router-a, router-b, router-c) and for two
// (router-a, router-c). Faults come from the variants' --fault options.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "nvsd_harness.h"
#include "variant_harness.h"

namespace nvs::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

struct Setup {
  std::string label;
  std::vector<std::string> variants;
};

void PrintTo(const Setup& setup, std::ostream* out) { *out << setup.label; }

class Lockstep : public ::testing::TestWithParam<Setup> {
 protected:
  const std::vector<std::string>& names() const { return GetParam().variants; }
  const std::string& victim() const { return names().back(); }
  const std::string& survivor() const { return names().front(); }

  // The variant specs, with `faults[name]` appended to that variant's args.
  std::vector<VariantSpec> Specs(const std::map<std::string, std::vector<std::string>>& faults = {}) const {
    std::vector<VariantSpec> specs;
    for (const auto& name : names()) {
      auto it = faults.find(name);
      specs.emplace_back(name, it == faults.end() ? std::vector<std::string>{} : it->second);
    }
    return specs;
  }

  static json Label(const std::string& text, int index = 0) {
    return {{"op", "label"}, {"client", "it"}, {"kind", "input"}, {"labels", {{{"index", index}, {"text", text}}}}};
  }
  static json Route(int output, int input) {
    return {{"op", "route"}, {"client", "it"}, {"routes", {{{"output", output}, {"input", input}}}}};
  }

  static int CountContaining(const std::vector<json>& lines, const std::string& needle) {
    int n = 0;
    for (const auto& line : lines) n += line.dump().find(needle) != std::string::npos ? 1 : 0;
    return n;
  }

  static json VariantStatus(NvsdHarness& nvsd, const std::string& name) {
    json status = nvsd.Status();
    for (const auto& v : status["variants"]) {
      if (v["name"] == name) return v;
    }
    return json();
  }

  static json ReadReport(NvsdHarness& nvsd, const std::string& id) {
    std::ifstream in(nvsd.state_dir() / "quarantine" / (id + ".json"));
    std::stringstream text;
    text << in.rdbuf();
    return json::parse(text.str(), nullptr, false);
  }

  // The settled event of a sequence number: its verdict with every outcome in.
  static json SettledOf(NvsdHarness& nvsd, std::uint64_t seq) {
    return nvsd.WaitEvent([&](const json& e) { return e["event"] == "settled" && e["seq"] == seq && !e["query"]; });
  }
};

// 1. One variant crashes on X: X commits from the others; the crashed variant
// comes back and agrees before the next command.
TEST_P(Lockstep, OneCrashCommitsAndTheVariantComesBack) {
  NvsdHarness nvsd(NvsdOptions(Specs({{victim(), {"--fault", "crash-on=CRASH-ME"}}})));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  ASSERT_EQ(nvsd.Command(Route(1, 2))["status"], "committed");

  json reply = nvsd.Command(Label("CRASH-ME"));
  ASSERT_EQ(reply["status"], "committed") << reply.dump();
  EXPECT_EQ(reply["result"]["ok"], true);
  const json verdict = SettledOf(nvsd, reply["seq"].get<std::uint64_t>());
  EXPECT_EQ(verdict["verdict"], "COMMIT");
  EXPECT_EQ(verdict["crashed"], json::array({victim()})) << verdict.dump();

  ASSERT_TRUE(nvsd.WaitAllHealthy()) << "the crashed variant did not come back";
  const json status = VariantStatus(nvsd, victim());
  EXPECT_EQ(status["restarts"], 1);
  EXPECT_EQ(status["incarnation"], 2);
  EXPECT_NE(status["last_fault"].get<std::string>().find("SIGSEGV"), std::string::npos) << status.dump();

  // It votes with the others on the very next command, with the same state.
  json next = nvsd.Command(Route(2, 3));
  ASSERT_EQ(next["status"], "committed");
  const json next_verdict = SettledOf(nvsd, next["seq"].get<std::uint64_t>());
  EXPECT_EQ(next_verdict["agreeing"].size(), names().size()) << next_verdict.dump();
  // It was resynced from a snapshot, not by replaying X.
  EXPECT_EQ(CountContaining(nvsd.ReceivedLog(victim()), "CRASH-ME"), 1);
}

// 2. Two variants crash on X: quarantined, reported, never resent, and an
// identical resubmission is refused without dispatch.
TEST_P(Lockstep, TwoCrashesQuarantineTheCommand) {
  std::map<std::string, std::vector<std::string>> faults;
  faults[names()[0]] = {"--fault", "crash-on=KILLER"};
  faults[names()[1]] = {"--fault", "crash-on=KILLER"};
  const std::vector<std::string> dead = {names()[0], names()[1]};
  NvsdHarness nvsd(NvsdOptions(Specs(faults)));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  ASSERT_EQ(nvsd.Command(Route(1, 2))["status"], "committed");
  const json before = nvsd.Query({{"op", "dump"}});
  ASSERT_EQ(before["status"], "answered");

  json reply = nvsd.Command(Label("KILLER"));
  ASSERT_EQ(reply["status"], "quarantined") << reply.dump();
  const std::string report_id = reply["report"];
  const std::string fingerprint = reply["fingerprint"];
  EXPECT_EQ(fingerprint.size(), 16u);

  ASSERT_TRUE(nvsd.WaitAllHealthy()) << "the variants did not recover";
  // Rolled back everywhere: the state is the state before X.
  const json after = nvsd.Query({{"op", "dump"}});
  EXPECT_EQ(after["result"], before["result"]);

  // The report holds both deaths, the command, the verdict and the pre-state.
  json report = ReadReport(nvsd, report_id);
  ASSERT_TRUE(report.is_object()) << "no report " << report_id;
  EXPECT_EQ(report["status"], "blocked");
  EXPECT_EQ(report["verdict"], "POISON");
  EXPECT_EQ(report["fingerprint"], fingerprint);
  EXPECT_EQ(report["command"], Label("KILLER"));
  int deaths = 0;
  for (const auto& outcome : report["outcomes"]) {
    if (outcome["outcome"] == "crashed") {
      ++deaths;
      EXPECT_EQ(outcome["exit"]["signal"], 11) << outcome.dump();
      EXPECT_TRUE(outcome.contains("after_ms"));
      EXPECT_TRUE(outcome.contains("stderr_tail"));
    }
  }
  EXPECT_EQ(deaths, 2) << report.dump(2);
  EXPECT_FALSE(report["review"].empty());
  // The pre-command state is recorded once the rollback round is over.
  for (int i = 0; i < 100 && !report["pre_state"].contains("snapshot"); ++i) {
    nvsd.WaitEvent([](const json& e) { return e["event"] == "variant"; }, std::chrono::milliseconds(50));
    report = ReadReport(nvsd, report_id);
  }
  ASSERT_TRUE(report["pre_state"].contains("snapshot")) << report.dump(2);
  EXPECT_TRUE(fs::exists(nvsd.state_dir() / "quarantine" / report["pre_state"]["snapshot"].get<std::string>()));

  // X reached each variant exactly once: the crashed ones died on it, and no
  // incarnation got it again.
  std::map<std::string, int> seen;
  for (const auto& name : names()) {
    seen[name] = CountContaining(nvsd.ReceivedLog(name), "KILLER");
    EXPECT_EQ(seen[name], 1) << name;
  }

  // Any client sending X again is refused without dispatch.
  json again = nvsd.Command(Label("KILLER"));
  EXPECT_EQ(again["status"], "quarantined");
  EXPECT_EQ(again["report"], report_id);
  EXPECT_NE(again["reason"].get<std::string>().find("without dispatch"), std::string::npos);
  ASSERT_EQ(nvsd.Command(Route(3, 4))["status"], "committed");  // a benign command flows
  for (const auto& name : names()) EXPECT_EQ(CountContaining(nvsd.ReceivedLog(name), "KILLER"), seen[name]) << name;
}

// 3. A variant hangs on X: it is killed at the deadline and X still commits.
TEST_P(Lockstep, AHangIsKilledAtTheDeadlineAndTheCommandCommits) {
  NvsdHarness nvsd(NvsdOptions(Specs({{victim(), {"--fault", "hang-on=HANG-ME"}}}), {{"deadline_ms", 300}}));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  json reply = nvsd.Command(Label("HANG-ME"));
  ASSERT_EQ(reply["status"], "committed") << reply.dump();
  const json hung = nvsd.WaitEvent([&](const json& e) {
    return e["event"] == "variant" && e["variant"] == victim() && e["state"] == "stopping";
  });
  ASSERT_TRUE(hung.is_object()) << "the hung variant was not killed";
  EXPECT_NE(hung["why"].get<std::string>().find("hung"), std::string::npos) << hung.dump();
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  EXPECT_EQ(VariantStatus(nvsd, victim())["restarts"], 1);
  EXPECT_EQ(nvsd.Command(Route(4, 5))["status"], "committed");
}

// 4. A variant answers wrongly: outvoted and resynced (three variants); with
// two, the split is refused and rolled back.
TEST_P(Lockstep, AWrongAnswerIsOutvotedOrRefused) {
  NvsdHarness nvsd(NvsdOptions(Specs({{victim(), {"--fault", "wrong-on=WRONG-ME"}}})));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  const json before = nvsd.Query({{"op", "dump"}});
  json reply = nvsd.Command(Label("WRONG-ME"));
  if (names().size() >= 3) {
    ASSERT_EQ(reply["status"], "committed") << reply.dump();
    EXPECT_EQ(reply["result"]["ok"], true);
    EXPECT_FALSE(reply["result"].contains("fault"));
    const json divergence = nvsd.WaitEvent([](const json& e) { return e["event"] == "divergence"; });
    EXPECT_EQ(divergence["variant"], victim()) << divergence.dump();
    ASSERT_TRUE(nvsd.WaitAllHealthy());
    EXPECT_EQ(VariantStatus(nvsd, victim())["restarts"], 1);
    const json after = nvsd.Query({{"op", "dump"}});
    EXPECT_EQ(after["result"]["state"]["input_labels"][0], "WRONG-ME");
  } else {
    ASSERT_EQ(reply["status"], "rejected") << reply.dump();
    EXPECT_EQ(reply["code"], "no_quorum");
    ASSERT_TRUE(nvsd.WaitAllHealthy());
    EXPECT_EQ(nvsd.Query({{"op", "dump"}})["result"], before["result"]) << "not rolled back";
    bool found = false;
    for (const auto& entry : fs::directory_iterator(nvsd.state_dir() / "quarantine")) {
      if (entry.path().filename().string().rfind("n-", 0) == 0) {
        if (entry.path().stem().extension() == ".state") continue;  // the pre-state attachment
        json report = ReadReport(nvsd, entry.path().stem().string());
        found = true;
        EXPECT_EQ(report["status"], "no_quorum");
        EXPECT_EQ(report["verdict"], "NO_QUORUM");
      }
    }
    EXPECT_TRUE(found) << "the no-quorum command was not recorded for review";
  }
  EXPECT_EQ(nvsd.Command(Route(5, 6))["status"], "committed");
}

// 5. A variant that crash-loops is marked failed; nvsd serves on with the
// rest while they are at least min_healthy.
TEST_P(Lockstep, ACrashLoopingVariantIsMarkedFailedAndServiceContinues) {
  NvsdHarness nvsd(NvsdOptions(Specs({{victim(), {"--fault", "crash-on=\"op\""}}}),
                               {{"restart", {{"intensity", 2}, {"period_ms", 60000}}}}));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  for (int i = 0; i < 3; ++i) {
    json reply = nvsd.Command(Route(i, i + 1));
    ASSERT_EQ(reply["status"], "committed") << "command " << i << ": " << reply.dump();
    if (i < 2) {
      ASSERT_TRUE(nvsd.WaitAllHealthy()) << "restart " << i;
    }
  }
  const json failed = nvsd.WaitEvent([&](const json& e) { return e["event"] == "failed" && e["variant"] == victim(); });
  ASSERT_TRUE(failed.is_object());
  EXPECT_EQ(VariantStatus(nvsd, victim())["state"], "failed");
  for (int i = 0; i < 5; ++i) EXPECT_EQ(nvsd.Command(Route(i, 7))["status"], "committed");
}

// 5b. Below min_healthy nvsd answers unavailable rather than guess.
TEST_P(Lockstep, BelowTheMinimumItAnswersUnavailable) {
  const int all = static_cast<int>(names().size());
  NvsdHarness nvsd(NvsdOptions(Specs({{victim(), {"--fault", "crash-on=\"op\""}}}),
                               {{"restart", {{"intensity", 0}, {"period_ms", 60000}}}, {"min_healthy", all}}));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  json first = nvsd.Command(Route(1, 1));
  ASSERT_EQ(first["status"], "committed") << first.dump();  // the crash on it is survived...
  ASSERT_TRUE(nvsd.WaitEvent([&](const json& e) { return e["event"] == "failed"; }).is_object());
  json reply = nvsd.Command(Route(2, 2));  // ...but now too few are left
  EXPECT_EQ(reply["status"], "unavailable") << reply.dump();
  EXPECT_NE(reply["reason"].get<std::string>().find("min_healthy"), std::string::npos);
  json status = nvsd.Status();
  EXPECT_EQ(status["status"], "ok");
}

// 6. Garbage from a client and from a variant: clear errors, nvsd serves on.
TEST_P(Lockstep, GarbageFromClientsGetsClearErrors) {
  NvsdHarness nvsd{NvsdOptions(Specs())};
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  struct Case {
    std::string bytes;
    const char* code;
  };
  const Case cases[] = {
      {"this is not json", "bad_request"},
      {"[1,2,3]", "bad_request"},
      {R"({"type":"command","id":"x1"})", "bad_request"},
      {R"({"type":"explode","id":"x2"})", "unknown_type"},
      {R"({"type":"command","id":"x3","cmd":)" + std::string(200, '[') + std::string(200, ']') + "}", "bad_request"},
      {R"({"type":"command","id":"x4","cmd":")" + std::string(2 << 20, 'x') + "\"}", "too_large"},
      {std::string("\xff\xfe{", 3), "bad_request"},
  };
  for (const auto& c : cases) {
    auto raw = nvsd.Raw(c.bytes);
    ASSERT_TRUE(raw) << "no reply to " << c.bytes.substr(0, 60);
    json reply = json::parse(*raw);
    EXPECT_EQ(reply["status"], "rejected") << *raw;
    EXPECT_EQ(reply["code"], c.code) << *raw;
  }
  // A domain-level rejection is a committed, voted result.
  json unknown_op = nvsd.Command({{"op", "explode"}});
  EXPECT_EQ(unknown_op["status"], "committed");
  EXPECT_EQ(unknown_op["result"]["error"], "unknown_op");
  EXPECT_EQ(nvsd.Command(Route(1, 1))["status"], "committed");
}

TEST_P(Lockstep, GarbageFromAVariantIsAFault) {
  for (const std::string mode : {"garbage", "wrong-seq", "unsolicited", "flood"}) {
    SCOPED_TRACE(mode);
    auto specs = Specs();
    // The misbehaving wrapper runs router-c; make it the victim slot.
    specs.back() = VariantSpec("router-c", {}, victim());
    specs.back().wrapper = {"--" + mode + "-on=BAD-" + mode};
    NvsdHarness nvsd{NvsdOptions(specs)};
    ASSERT_TRUE(nvsd.WaitAllHealthy());
    json reply = nvsd.Command(Label("BAD-" + mode));
    EXPECT_EQ(reply["status"], "committed") << reply.dump();
    const json stopped = nvsd.WaitEvent([&](const json& e) {
      return e["event"] == "variant" && e["variant"] == victim() && e["state"] == "stopping";
    });
    ASSERT_TRUE(stopped.is_object()) << "the misbehaving variant was not taken out";
    ASSERT_TRUE(nvsd.WaitAllHealthy());
    EXPECT_EQ(nvsd.Command(Route(2, 2))["status"], "committed");
  }
}

// 7. A thousand mixed commands with random single-variant faults: every reply
// equals what one fault-free variant gives for the same stream.
TEST_P(Lockstep, MixedFaultsNeverChangeTheAnswers) {
  const bool three = names().size() >= 3;
  std::map<std::string, std::vector<std::string>> faults;
  faults[names()[0]] = {"--fault", "crash-on=FAULT-CRASH"};
  faults[victim()] = {"--fault", "hang-on=FAULT-HANG"};
  std::vector<std::string> tokens = {"FAULT-CRASH", "FAULT-HANG"};
  if (three) {
    faults[names()[1]] = {"--fault", "wrong-on=FAULT-WRONG", "--fault", "abort-on=FAULT-ABORT"};
    tokens.push_back("FAULT-WRONG");
    tokens.push_back("FAULT-ABORT");
  }
  NvsdHarness nvsd(NvsdOptions(Specs(faults), {{"deadline_ms", 300},
                                               {"restart", {{"intensity", 1000}, {"period_ms", 1000}}},
                                               {"checkpoint_interval", 50}}));
  VariantHarness reference;
  std::string error;
  ASSERT_TRUE(reference.Start(RouterVariant("router-a", {"--inputs", "16", "--outputs", "16"}), error)) << error;
  ASSERT_TRUE(nvsd.WaitAllHealthy());

  const std::uint64_t seed = std::random_device{}();
  std::mt19937_64 rng(seed);
  const auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  int faults_injected = 0;
  for (int i = 1; i <= 1000; ++i) {
    json cmd;
    const bool fault = uniform(0, 99) < 2;
    if (fault) {
      ASSERT_TRUE(nvsd.WaitAllHealthy()) << "before fault " << faults_injected;  // one fault at a time
      cmd = Label(tokens[static_cast<std::size_t>(uniform(0, static_cast<int>(tokens.size()) - 1))] + "-" +
                      std::to_string(i),
                  uniform(0, 15));
      ++faults_injected;
    } else {
      switch (uniform(0, 3)) {
        case 0: cmd = Route(uniform(0, 15), uniform(0, 16)); break;
        case 1: cmd = Label("L" + std::to_string(uniform(0, 9)), uniform(0, 16)); break;
        case 2:
          cmd = {{"op", "lock"}, {"client", uniform(0, 1) ? "a" : "b"},
                 {"locks", {{{"output", uniform(0, 15)}, {"action", uniform(0, 2) == 0 ? "O" : "U"}}}}};
          break;
        default: cmd = {{"op", "route"}, {"client", "b"}, {"routes", {{{"output", uniform(0, 15)}, {"input", 1}}}}};
      }
    }
    json reply = nvsd.Command(cmd);
    ASSERT_EQ(reply["status"], "committed") << "command " << i << " (seed " << seed << "): " << cmd.dump() << " -> "
                                            << reply.dump();
    auto expected = reference.Call("router-a", protocol::Apply{static_cast<std::uint64_t>(i), i, cmd.dump()}, error);
    ASSERT_TRUE(expected) << error;
    const auto& applied = std::get<protocol::Applied>(*expected);
    ASSERT_EQ(CompareResults(reply["result"].dump(), applied.result), "")
        << "command " << i << " (seed " << seed << "): " << cmd.dump();
  }
  EXPECT_GE(faults_injected, 5) << "seed " << seed;
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  // And the final state is the reference's.
  auto digest = reference.Call("router-a", protocol::Query{0, R"({"op":"dump"})"}, error);
  ASSERT_TRUE(digest);
  EXPECT_EQ(nvsd.Query({{"op", "dump"}})["result"], json::parse(std::get<protocol::Answer>(*digest).result));
}

INSTANTIATE_TEST_SUITE_P(Variants, Lockstep,
                         ::testing::Values(Setup{"three", {"router-a", "router-b", "router-c"}},
                                           Setup{"two", {"router-a", "router-c"}}),
                         [](const auto& info) { return info.param.label; });

}  // namespace
}  // namespace nvs::testing
