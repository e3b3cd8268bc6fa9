// Finding 1 of the security review (issue 15): a report, a log or a reply is
// data. `nvs replay`, `nvs quarantine retest` and `nvs quarantine release`
// never start a program named in one: they run the config the operator
// gives (--config, $NVS_CONFIG or /etc/nvs/nvsd.json), refuse without one,
// and say where the recorded programs differ from it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "nvs/supervisor/journal.h"
#include "nvsd_harness.h"
#include "security_support.h"

namespace nvs::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// The config an attacker records: every variant is a shell that leaves a
// mark (a real variant would do anything else the attacker likes).
json EvilConfig(const fs::path& mark) {
  json variants = json::array();
  for (const std::string name : {"router-a", "router-b", "router-c"}) {
    variants.push_back({{"name", name},
                        {"argv", {"/bin/sh", "-c", "echo ran >> " + mark.string() + "; sleep 5"}},
                        {"env", {{"LD_PRELOAD", "/tmp/evil.so"}}}});
  }
  return {{"variants", variants},
          {"stdio_bridge", "/bin/sh"},
          {"policy", {{"kind", "majority"}}},
          {"config_dir", "/"}};
}

json Label(const std::string& text) {
  return {{"op", "label"}, {"kind", "input"}, {"labels", {{{"index", 1}, {"text", text}}}}};
}

class Programs : public SecurityTest {};

TEST_F(Programs, ACraftedLogRunsNothingWithoutAConfigAndTheGivenOneWithIt) {
  const fs::path mark = dir() / "mark";
  const fs::path log = dir() / "incident.jsonl";
  std::ofstream(log) << json{{"config", EvilConfig(mark)}}.dump() << "\n"
                     << json{{"seq", 1}, {"cmd", Label("CAM 1")}}.dump() << "\n";
  int status = 0;
  Nvs("replay " + log.string() + " --json", &status);
  EXPECT_EQ(status, 2) << Stderr();
  EXPECT_NE(Stderr().find("never starts programs read from a log"), std::string::npos) << Stderr();
  EXPECT_FALSE(fs::exists(mark)) << "a program named in the log ran";

  // With the operator's config: its programs run, and the differences are said.
  const std::string out = Nvs("replay " + log.string() + " --json --config " + RoutersConfig().string(), &status);
  EXPECT_EQ(status, 0) << out << Stderr();
  EXPECT_NE(Stderr().find("variant router-a differs from the recorded one"), std::string::npos) << Stderr();
  EXPECT_NE(Stderr().find("stdio_bridge"), std::string::npos) << Stderr();
  EXPECT_FALSE(fs::exists(mark)) << "a program named in the log ran";

  // $NVS_CONFIG is the operator's own config too.
  Nvs("replay " + log.string() + " --json", &status, "NVS_CONFIG=" + RoutersConfig().string());
  EXPECT_EQ(status, 0) << Stderr();
  EXPECT_FALSE(fs::exists(mark));
}

TEST_F(Programs, ACraftedJournalRunsNothing) {
  // A state dir handed over for an incident: its start record names the programs.
  const fs::path mark = dir() / "mark";
  const fs::path journal = dir() / "state" / "journal";
  fs::create_directories(journal);
  std::string segment(supervisor::kJournalMagic);
  segment += supervisor::FrameRecord(json{{"t", "start"}, {"time_ns", 1}, {"pid", 1}, {"config", EvilConfig(mark)}}.dump());
  segment += supervisor::FrameRecord(
      json{{"t", "admit"}, {"seq", 1}, {"time_ns", 2}, {"id", "r1"}, {"client", "c"}, {"cmd", Label("CAM 1")}}.dump());
  std::ofstream(supervisor::JournalSegmentPath(journal, 1), std::ios::binary) << segment;
  int status = 0;
  Nvs("replay " + (dir() / "state").string() + " --json", &status);
  EXPECT_EQ(status, 2) << Stderr();
  EXPECT_FALSE(fs::exists(mark)) << "a program named in the journal ran";
}

// A server on the endpoint the operator was told to use (or nvsd serving a
// report planted in its folder): it answers every request with a report
// whose config names the attacker's programs.
class RogueServer {
 public:
  explicit RogueServer(json config) : socket_(context_, zmq::socket_type::router) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.bind("tcp://127.0.0.1:*");
    endpoint_ = socket_.get(zmq::sockopt::last_endpoint);
    thread_ = std::thread([this, config] {
      while (!stop_) {
        zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}};
        zmq::poll(items, 1, std::chrono::milliseconds(50));
        std::vector<zmq::message_t> frames;
        if (!zmq::recv_multipart(socket_, std::back_inserter(frames), zmq::recv_flags::dontwait)) continue;
        if (frames.size() != 2) continue;
        const json request = json::parse(frames[1].to_string(), nullptr, false);
        if (!request.is_object()) continue;
        const json report = {{"id", "q-000000000001-00000000"}, {"status", "quarantined"}, {"seq", 1},
                             {"time_ns", 1}, {"verdict", "POISON"}, {"command", Label("POISON")},
                             {"config", config}, {"pre_state", json::object()}};
        const json reply = {{"id", request.value("id", "")}, {"status", "ok"}, {"report", report},
                            {"pre_state_snapshot", nullptr}};
        socket_.send(frames[0], zmq::send_flags::sndmore);
        socket_.send(zmq::buffer(reply.dump()));
        ++answered_;
      }
    });
  }
  ~RogueServer() {
    stop_ = true;
    thread_.join();
  }
  const std::string& endpoint() const { return endpoint_; }
  int answered() const { return answered_; }

 private:
  zmq::context_t context_{1};
  zmq::socket_t socket_;
  std::string endpoint_;
  std::atomic<bool> stop_{false};
  std::atomic<int> answered_{0};
  std::thread thread_;
};

TEST_F(Programs, ARogueEndpointsReportRunsNothing) {
  const fs::path mark = dir() / "mark";
  RogueServer rogue(EvilConfig(mark));
  const std::string at = " --endpoint " + rogue.endpoint() + " --timeout 5000";
  int status = 0;
  Nvs("quarantine retest q-000000000001-00000000" + at, &status);
  EXPECT_EQ(status, 2) << Stderr();
  EXPECT_NE(Stderr().find("never starts programs read from a log, report or reply"), std::string::npos) << Stderr();
  // (A release runs nothing here at all: nvsd retests it, with its own programs.)
  Nvs("quarantine release q-000000000001-00000000 --note n" + at, &status);
  EXPECT_GE(rogue.answered(), 2) << "the rogue server was never asked: the test proves nothing";
  EXPECT_FALSE(fs::exists(mark)) << "a program named in the reply ran";

  // With the operator's config the probes are its programs.
  Nvs("quarantine retest q-000000000001-00000000 --json --config " + RoutersConfig().string() + at, &status);
  EXPECT_EQ(status, 0) << Stderr();
  EXPECT_NE(Stderr().find("differs from the recorded one"), std::string::npos) << Stderr();
  EXPECT_FALSE(fs::exists(mark)) << "a program named in the reply ran";
}

}  // namespace
}  // namespace nvs::testing
