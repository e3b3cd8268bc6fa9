#include "event_sink.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <vector>

namespace nvs::supervisor {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Until `pred` holds (subscriptions travel through ZeroMQ's I/O threads),
// within a deadline.
bool Eventually(const std::function<bool()>& pred) {
  const auto until = Clock::now() + milliseconds(10000);
  while (Clock::now() < until) {
    if (pred()) return true;
    zmq::poll(static_cast<zmq_pollitem_t*>(nullptr), 0, milliseconds(2));
  }
  return pred();
}

class ZmqEventSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/nvs-events-XXXXXX";
    dir_ = mkdtemp(pattern);
    endpoint_ = "ipc://" + (dir_ / "events.sock").string();
    ASSERT_TRUE(sink_.Bind(endpoint_).ok());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
  std::string endpoint_;
  zmq::context_t context_{1};
  ZmqEventSink sink_{context_};
};

// Nobody subscribes: nvsd builds no event. A subscriber to one topic makes
// that topic (and only it) worth building; when it goes, nothing is.
TEST_F(ZmqEventSinkTest, KnowsWhichTopicsHaveASubscriber) {
  EXPECT_FALSE(sink_.Listening("verdict"));
  {
    zmq::socket_t sub(context_, zmq::socket_type::sub);
    sub.set(zmq::sockopt::linger, 0);
    sub.set(zmq::sockopt::subscribe, "verdict");
    sub.connect(endpoint_);
    ASSERT_TRUE(Eventually([&] { return sink_.Listening("verdict"); }));
    EXPECT_FALSE(sink_.Listening("settled"));
    // What it hears once it is known to listen.
    sink_.Publish("verdict", R"({"seq":1})");
    zmq::pollitem_t item{sub.handle(), 0, ZMQ_POLLIN, 0};
    ASSERT_EQ(zmq::poll(&item, 1, milliseconds(10000)), 1);
    zmq::message_t topic, body;
    ASSERT_TRUE(sub.recv(topic));
    ASSERT_TRUE(sub.recv(body));
    EXPECT_EQ(topic.to_string(), "verdict");
    EXPECT_EQ(body.to_string(), R"({"seq":1})");
  }
  EXPECT_TRUE(Eventually([&] { return !sink_.Listening("verdict"); })) << "a subscriber that went away still counts";
}

// A subscription to everything (the empty topic, as `nvs events` makes).
TEST_F(ZmqEventSinkTest, AnEmptySubscriptionIsEveryTopic) {
  zmq::socket_t all(context_, zmq::socket_type::sub);
  all.set(zmq::sockopt::linger, 0);
  all.set(zmq::sockopt::subscribe, "");
  all.connect(endpoint_);
  ASSERT_TRUE(Eventually([&] { return sink_.Listening("settled") && sink_.Listening("verdict"); }));
  all.close();
  EXPECT_TRUE(Eventually([&] { return !sink_.Listening("settled"); }));
}

// The event endpoint has no authentication: what a peer subscribes to is
// bounded. Past 1024 distinct topics nvsd builds every event (as if all
// were wanted) rather than keep more.
TEST_F(ZmqEventSinkTest, SubscriptionsAreBoundedAndTooManyMeanEveryEventIsBuilt) {
  // (400 topics a socket: a SUB socket's subscriptions beyond its
  // high-water mark of 1000 are lost on the way, for libzmq as for nvsd.)
  std::vector<zmq::socket_t> subs;
  const auto subscriber = [&](int k) {
    zmq::socket_t sub(context_, zmq::socket_type::sub);
    sub.set(zmq::sockopt::linger, 0);
    if (k == 0) sub.set(zmq::sockopt::subscribe, std::string(200, 'v'));  // (longer than any event's name: matches none)
    for (int i = 0; i < 400; ++i) sub.set(zmq::sockopt::subscribe, "x" + std::to_string(k) + "-" + std::to_string(i));
    sub.connect(endpoint_);
    subs.push_back(std::move(sub));
  };
  subscriber(0);
  subscriber(1);
  ASSERT_TRUE(Eventually([&] { return sink_.Listening("x0-399") && sink_.Listening("x1-399"); }));
  EXPECT_FALSE(sink_.Listening("verdict"));
  subscriber(2);  // (1,201 topics in all)
  EXPECT_TRUE(Eventually([&] { return sink_.Listening("verdict"); }));
}

}  // namespace
}  // namespace nvs::supervisor
