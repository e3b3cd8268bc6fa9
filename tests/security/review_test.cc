// Finding 5 of the security review (issue 15): review had no authority.
// Any admitted key, the gateway's included, could release a quarantined
// command, with any `by` it liked and a retest it made up; nvsd did not
// retest itself; the report's client was a routing id the client chose. The
// poison was then delivered again. Now: only the keys client_curve.reviewers
// names may release or reject; `by` is the key's name; nvsd retests the
// command itself on fresh probes of its own programs and releases only if
// they survive; the report names the authenticated key.
#include <signal.h>

#include <fstream>
#include <zmq.hpp>

#include "nvs/protocol/curve_client.h"
#include "nvsd_harness.h"
#include "security_support.h"
#include "variant_harness.h"

namespace nvs::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
namespace fs = std::filesystem;

json Poison() { return {{"op", "label"}, {"kind", "input"}, {"labels", {{{"index", 2}, {"text", "POISON-R"}}}}}; }

// One request as the holder of `client_config`'s key; the reply, or null.
json AskAs(const fs::path& client_config, const json& request) {
  auto config = protocol::LoadClientConfig(client_config);
  if (!config.ok()) return json();
  zmq::context_t context(1);
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  socket.set(zmq::sockopt::linger, 0);
  protocol::ApplyCurveClient(socket, config.value());
  socket.connect(config.value().endpoint);
  socket.send(zmq::buffer(request.dump()), zmq::send_flags::none);
  zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, milliseconds(60000)) <= 0) return json();
  zmq::message_t reply;
  if (!socket.recv(reply, zmq::recv_flags::none)) return json();
  return json::parse(reply.to_string(), nullptr, false);
}

class Review : public SecurityTest {
 protected:
  NvsdOptions Options(bool faulty) {
    std::vector<VariantSpec> variants = {"router-a", "router-b", "router-c"};
    if (faulty) {
      variants = {VariantSpec("router-a", {"--fault", "crash-on=POISON"}),
                  VariantSpec("router-b", {"--fault", "crash-on=POISON"}), "router-c"};
    }
    NvsdOptions options(variants, {{"state_dir", (dir() / "state").string()},
                                   {"client_curve", {{"reviewers", {"alice"}}}}});
    options.curve = true;
    options.client_keys = {"alice", "gateway"};
    return options;
  }
  std::string Report(const std::string& id) {
    std::ifstream in(dir() / "state" / "quarantine" / (id + ".json"));
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
};

TEST_F(Review, OnlyAReviewerKeyReleasesAndOnlyAfterNvsdsOwnRetestSurvives) {
  std::string id;
  {
    NvsdHarness nvsd(Options(/*faulty=*/true));
    ASSERT_TRUE(nvsd.WaitAllHealthy());
    const json poison = nvsd.Command(Poison());
    ASSERT_EQ(poison["status"], "quarantined") << poison.dump();
    id = poison["report"];
    ASSERT_TRUE(nvsd.WaitStatus([&](const json&) {
                      const json r = json::parse(Report(id), nullptr, false);
                      return r.is_object() && r.value("/pre_state/snapshot"_json_pointer, std::string()) != "";
                    }).is_object());
    const json report = json::parse(Report(id));
    EXPECT_EQ(report["client"]["key"], "harness") << "the report names the authenticated key";
    EXPECT_EQ(report["client"]["authenticated"], true);
    EXPECT_FALSE(report["client"].contains("peer")) << "a routing id the client chose";

    const fs::path keys = nvsd.keys_dir();
    // The gateway's key, with a grand name and a retest it made up: refused.
    const json forged = {{"type", "quarantine"}, {"id", "f1"}, {"action", "release"}, {"report", id},
                         {"note", "trust me"}, {"by", "alice@ops (Head of Engineering)"}, {"force", true},
                         {"retest", {{"survived", true}, {"on_saved_state", true}}}};
    json reply = AskAs(keys / "gateway.json", forged);
    EXPECT_EQ(reply.value("status", ""), "rejected") << reply.dump();
    EXPECT_EQ(reply.value("code", ""), "forbidden") << reply.dump();
    reply = AskAs(keys / "client.json", forged);  // (the harness's key: admitted, not a reviewer)
    EXPECT_EQ(reply.value("code", ""), "forbidden") << reply.dump();
    // A reviewer's release runs nvsd's own retest on its (still faulty)
    // programs; the retest the client sent is ignored.
    json asked = forged;
    asked.erase("force");
    reply = AskAs(keys / "alice.json", asked);
    EXPECT_EQ(reply.value("code", ""), "retest_failed") << reply.dump();
    EXPECT_EQ(reply.value("/retest/survived"_json_pointer, true), false) << reply.dump();
    EXPECT_EQ(json::parse(Report(id))["status"], "blocked");
    EXPECT_EQ(nvsd.Command(Poison())["status"], "quarantined") << "released by someone";
  }
  // The fix deployed: nvsd runs fixed programs; alice's release is retested by
  // nvsd on them, survives, and is recorded under her key's name.
  NvsdHarness nvsd(Options(/*faulty=*/false));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  // (A new harness made new keys; the state dir and its report are the same.)
  const json asked = {{"type", "quarantine"}, {"id", "r1"}, {"action", "release"}, {"report", id},
                      {"note", "fixed in 2.1"}, {"by", "mallory"}};
  const json reply = AskAs(nvsd.keys_dir() / "alice.json", asked);
  ASSERT_EQ(reply.value("status", ""), "ok") << reply.dump();
  const json entry = reply["report"]["review"].back();
  EXPECT_EQ(entry["action"], "released");
  EXPECT_EQ(entry["by"], "alice") << "by is the key's name, not what the client says";
  EXPECT_FALSE(entry.contains("claimed_by")) << "a claim has no place where the key is known";
  EXPECT_EQ(entry["retest"]["by"], "nvsd");
  EXPECT_EQ(entry["retest"]["survived"], true);
  EXPECT_EQ(nvsd.Command(Poison())["status"], "committed") << "the fixed programs take it";
}

// Finding 7: request ids were remembered per id, not per client: one key's
// id returned another key's reply, and its command was never applied. Now a
// key's ids are its own, across a restart too.
TEST_F(Review, RequestIdsAreRememberedPerClientKey) {
  const auto route = [](int output, int input) {
    return json{{"op", "route"}, {"client", "sec"}, {"routes", {{{"output", output}, {"input", input}}}}};
  };
  json alice_reply, gateway_reply;
  {
    NvsdHarness nvsd(Options(/*faulty=*/false));
    ASSERT_TRUE(nvsd.WaitAllHealthy());
    const fs::path keys = nvsd.keys_dir();
    alice_reply = AskAs(keys / "alice.json", {{"type", "command"}, {"id", "same-1"}, {"cmd", route(1, 2)}});
    gateway_reply = AskAs(keys / "gateway.json", {{"type", "command"}, {"id", "same-1"}, {"cmd", route(3, 4)}});
    ASSERT_EQ(alice_reply.value("status", ""), "committed") << alice_reply.dump();
    ASSERT_EQ(gateway_reply.value("status", ""), "committed") << gateway_reply.dump();
    EXPECT_NE(gateway_reply["seq"], alice_reply["seq"]) << "the gateway was given alice's reply; its command was never applied";
    const json routes = nvsd.Query({{"op", "dump"}})["result"]["state"]["routes"];
    EXPECT_EQ(routes[1], 2);
    EXPECT_EQ(routes[3], 4);
    // Each key's retry is its own.
    EXPECT_EQ(AskAs(keys / "alice.json", {{"type", "command"}, {"id", "same-1"}, {"cmd", route(5, 5)}})["seq"],
              alice_reply["seq"]);
    ASSERT_TRUE(SignalProcess(nvsd.nvsd_pid(), SIGKILL));
    ASSERT_TRUE(nvsd.WaitNvsdExit(milliseconds(10000)));
  }
  // And after a restart, from the journal.
  NvsdHarness nvsd(Options(/*faulty=*/false));
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  const fs::path keys = nvsd.keys_dir();
  EXPECT_EQ(AskAs(keys / "gateway.json", {{"type", "command"}, {"id", "same-1"}, {"cmd", route(6, 6)}})["seq"],
            gateway_reply["seq"]);
  EXPECT_EQ(AskAs(keys / "alice.json", {{"type", "command"}, {"id", "same-1"}, {"cmd", route(6, 6)}})["seq"],
            alice_reply["seq"]);
  const json retried = nvsd.Command(route(7, 7));  // (the harness's own key: no id of its own is "same-1")
  EXPECT_EQ(retried["status"], "committed");
}

}  // namespace
}  // namespace nvs::testing
