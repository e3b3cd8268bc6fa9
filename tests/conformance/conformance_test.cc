// Runs every scenario file in tests/conformance/ against every router
// variant, through the real wire protocol (real processes, real sockets).
// The file format is described in tests/conformance/README.md.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "variant_harness.h"

namespace nvs::testing {
namespace {

namespace fs = std::filesystem;
namespace proto = nvs::protocol;
using nlohmann::json;

struct Scenario {
  std::string variant;
  fs::path file;
};

std::vector<fs::path> ScenarioFiles() {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(NVS_CONFORMANCE_DIR)) {
    if (entry.path().extension() == ".jsonl" && entry.path().stem() != "digest-vectors") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<Scenario> AllScenarios() {
  std::vector<Scenario> all;
  for (const auto& file : ScenarioFiles()) {
    for (const char* variant : {"router-a", "router-b", "router-c"}) all.push_back({variant, file});
  }
  return all;
}

std::string TestName(const ::testing::TestParamInfo<Scenario>& info) {
  std::string name = info.param.variant + "_" + info.param.file.stem().string();
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

std::string HexToBytes(const std::string& hex) {
  std::string bytes;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return bytes;
}

// Drives one variant through one scenario file.
class ScenarioRunner {
 public:
  ScenarioRunner(VariantHarness& harness, std::string variant) : harness_(harness), variant_(std::move(variant)) {}

  // Runs one step; returns an empty string on success, else what went wrong.
  std::string Step(const json& step) {
    if (step.contains("apply")) return CheckResult(Exchange(proto::Apply{++seq_, TimeNs(), step["apply"].dump()}), step);
    if (step.contains("query")) return CheckResult(Exchange(proto::Query{++seq_, step["query"].dump()}), step);
    if (step.contains("expect_state") && step.size() <= 2) return CheckState(step["expect_state"]);
    if (step.contains("restore")) return Restore(step);
    if (step.contains("expect_digest") && !step.contains("restore")) return CheckDigest(step["expect_digest"]);
    if (step.contains("send_hex") && step.contains("expect_reply")) {
      return ExpectReply(HexToBytes(step["send_hex"].get<std::string>()), step["expect_reply"]);
    }
    if (step.contains("send_parts")) return ExpectIgnored(step["send_parts"]);
    if (step.contains("send")) return ExpectProtocolError(step["send"].dump(), step);
    if (step.contains("send_text")) return ExpectProtocolError(step["send_text"].get<std::string>(), step);
    if (step.contains("send_hex")) return ExpectProtocolError(HexToBytes(step["send_hex"].get<std::string>()), step);
    return "unknown step kind";
  }

 private:
  std::int64_t TimeNs() const { return 1'764'000'000'000'000'000 + static_cast<std::int64_t>(seq_); }

  std::optional<proto::Reply> Exchange(const proto::Request& request) {
    error_.clear();
    auto reply = harness_.Call(variant_, request, error_);
    if (reply && proto::SeqOf(*reply) != proto::SeqOf(request)) {
      error_ = "reply seq does not echo the request's";
      return std::nullopt;
    }
    return reply;
  }

  std::string CheckResult(const std::optional<proto::Reply>& reply, const json& step) {
    if (!reply) return error_;
    std::string result;
    if (auto* applied = std::get_if<proto::Applied>(&*reply)) result = applied->result;
    else if (auto* answer = std::get_if<proto::Answer>(&*reply)) result = answer->result;
    else return "unexpected reply " + proto::Encode(*reply);
    json expected;
    if (step.contains("expect_error")) {
      expected = {{"ok", false}, {"error", step["expect_error"]}};
    } else if (step.contains("expect")) {
      expected = step["expect"];
    } else {
      return "step has no expectation";
    }
    const json actual = json::parse(result);
    if (actual.is_object() && actual.contains("ok") && actual["ok"] == false &&
        (!actual.contains("message") || !actual["message"].is_string())) {
      return "failed result without a string 'message': " + result;
    }
    std::string diff = CompareResults(result, expected.dump());
    return diff.empty() ? "" : "result differs: got " + result + ", expected " + expected.dump();
  }

  std::string CheckState(const json& expected) {
    auto dump = Exchange(proto::Query{++seq_, R"({"op":"dump"})"});
    if (!dump) return error_;
    auto* answer = std::get_if<proto::Answer>(&*dump);
    if (answer == nullptr) return "dump: unexpected reply " + proto::Encode(*dump);
    json result = json::parse(answer->result);
    if (result.value("state", json()) != expected) return "dump state differs: got " + answer->result;
    auto snapshot = Exchange(proto::SnapshotRequest{++seq_});
    if (!snapshot) return error_;
    auto* state = std::get_if<proto::StateReply>(&*snapshot);
    if (state == nullptr) return "snapshot: unexpected reply " + proto::Encode(*snapshot);
    if (json::parse(state->state) != expected) return "snapshot state differs: got " + state->state;
    auto digest = Exchange(proto::DigestRequest{++seq_});
    if (!digest) return error_;
    auto* d = std::get_if<proto::DigestReply>(&*digest);
    if (d == nullptr || d->digest != state->digest) return "snapshot digest differs from digest reply";
    return "";
  }

  std::string CheckDigest(const json& expected) {
    auto reply = Exchange(proto::DigestRequest{++seq_});
    if (!reply) return error_;
    auto* d = std::get_if<proto::DigestReply>(&*reply);
    if (d == nullptr) return "unexpected reply " + proto::Encode(*reply);
    return d->digest == expected.get<std::string>() ? "" : "digest " + d->digest + " != " + expected.dump();
  }

  std::string Restore(const json& step) {
    auto reply = Exchange(proto::Restore{++seq_, step["restore"].dump()});
    if (!reply) return error_;
    if (step.contains("expect_protocol_error")) {
      auto* e = std::get_if<proto::Error>(&*reply);
      if (e == nullptr) return "restore should be refused, got " + proto::Encode(*reply);
      return e->code == step["expect_protocol_error"].get<std::string>() ? "" : "error code " + e->code;
    }
    auto* restored = std::get_if<proto::Restored>(&*reply);
    if (restored == nullptr) return "restore refused: " + proto::Encode(*reply);
    if (step.contains("expect_digest") && restored->digest != step["expect_digest"].get<std::string>()) {
      return "restored digest " + restored->digest + " != " + step["expect_digest"].dump();
    }
    return "";
  }

  std::string ExpectProtocolError(const std::string& bytes, const json& step) {
    harness_.Send(variant_, bytes);
    auto raw = harness_.Receive(variant_);
    if (!raw) return "no reply to raw message";
    auto decoded = proto::DecodeReply(*raw);
    if (!decoded.ok()) return "undecodable reply: " + *raw;
    auto* e = std::get_if<proto::Error>(&decoded.value());
    if (e == nullptr) return "expected a protocol error, got " + *raw;
    const std::string want = step.value("expect_protocol_error", std::string());
    return e->code == want ? "" : "error code " + e->code + ", expected " + want;
  }

  // Raw bytes that form a valid message: the reply must be `expected` (a
  // result is compared as CheckResult does, `message` aside).
  std::string ExpectReply(const std::string& bytes, const json& expected) {
    harness_.Send(variant_, bytes);
    auto raw = harness_.Receive(variant_);
    if (!raw) return "no reply to raw message";
    const json actual = json::parse(*raw, nullptr, false);
    if (!actual.is_object()) return "reply is not a JSON object: " + *raw;
    if (actual.value("type", "") != expected.value("type", "") || actual.value("seq", json()) != expected["seq"]) {
      return "reply " + *raw + ", expected " + expected.dump();
    }
    if (expected.contains("result")) {
      if (!actual.contains("result")) return "reply without a result: " + *raw;
      const std::string diff = CompareResults(actual["result"].dump(), expected["result"].dump());
      if (!diff.empty()) return "result differs: got " + *raw + ", expected " + expected.dump();
    }
    return "";
  }

  // A multi-part message must get no reply: the pong to the ping sent
  // after it must be the next reply.
  std::string ExpectIgnored(const json& parts) {
    std::vector<std::string> frames;
    for (const auto& part : parts) frames.push_back(part.get<std::string>());
    harness_.SendParts(variant_, frames);
    auto reply = Exchange(proto::Ping{++seq_});
    if (!reply) return "after a multi-part message: " + error_;
    if (!std::holds_alternative<proto::Pong>(*reply)) {
      return "a multi-part message was answered (the next reply is " + proto::Encode(*reply) + ")";
    }
    return "";
  }

  VariantHarness& harness_;
  std::string variant_;
  std::uint64_t seq_ = 0;
  std::string error_;
};

// Keeps gtest from printing the parameter as raw bytes.
void PrintTo(const Scenario& scenario, std::ostream* out) {
  *out << scenario.variant << " on " << scenario.file.filename().string();
}

class Conformance : public ::testing::TestWithParam<Scenario> {};

TEST_P(Conformance, Scenario) {
  const Scenario& scenario = GetParam();
  std::ifstream in(scenario.file);
  ASSERT_TRUE(in) << scenario.file;
  std::string line;
  ASSERT_TRUE(std::getline(in, line)) << "empty scenario file";
  const json header = json::parse(line);
  const auto& config = header.at("config");
  VariantHarness harness;
  std::string error;
  auto hello = harness.Start(RouterVariant(scenario.variant, {"--inputs", std::to_string(config.at("inputs").get<int>()),
                                                               "--outputs", std::to_string(config.at("outputs").get<int>())}),
                             error);
  ASSERT_TRUE(hello) << error;
  ScenarioRunner runner(harness, scenario.variant);
  int line_number = 1;
  int failures = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (line.empty()) continue;
    const json step = json::parse(line);
    std::string problem = runner.Step(step);
    if (!problem.empty()) {
      ADD_FAILURE() << scenario.file.filename().string() << ":" << line_number << ": " << problem
                    << (step.contains("note") ? "\n  note: " + step["note"].get<std::string>() : "")
                    << "\n  step: " << line.substr(0, 400);
      if (++failures >= 20 || harness.Pid(scenario.variant) < 0) break;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllVariants, Conformance, ::testing::ValuesIn(AllScenarios()), TestName);

class DigestVectors : public ::testing::TestWithParam<std::string> {};

TEST_P(DigestVectors, RestoreGivesTheDigest) {
  const std::string variant = GetParam();
  std::ifstream in(fs::path(NVS_CONFORMANCE_DIR) / "digest-vectors.jsonl");
  ASSERT_TRUE(in);
  VariantHarness harness;
  std::string error;
  ASSERT_TRUE(harness.Start(RouterVariant(variant), error)) << error;
  std::string line;
  std::uint64_t seq = 0;
  int vectors = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const json vector = json::parse(line);
    ++vectors;
    auto reply = harness.Call(variant, proto::Restore{++seq, vector.at("state").dump()}, error);
    ASSERT_TRUE(reply) << error;
    auto* restored = std::get_if<proto::Restored>(&*reply);
    ASSERT_NE(restored, nullptr) << proto::Encode(*reply);
    EXPECT_EQ(restored->digest, vector.at("digest").get<std::string>()) << line.substr(0, 300);
    auto snapshot = harness.Call(variant, proto::SnapshotRequest{++seq}, error);
    ASSERT_TRUE(snapshot) << error;
    auto* state = std::get_if<proto::StateReply>(&*snapshot);
    ASSERT_NE(state, nullptr);
    // The digest proves the variant's canonical bytes; the snapshot must be the same value.
    EXPECT_EQ(json::parse(state->state), json::parse(vector.at("canonical").get<std::string>()));
    EXPECT_EQ(state->digest, vector.at("digest").get<std::string>());
  }
  EXPECT_GE(vectors, 4);
}

INSTANTIATE_TEST_SUITE_P(AllVariants, DigestVectors, ::testing::Values("router-a", "router-b", "router-c"),
                         [](const auto& info) { std::string n = info.param; n[6] = '_'; return n; });

}  // namespace
}  // namespace nvs::testing
