#include "nvs/metrics/endpoint.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <poll.h>

#include <atomic>
#include <future>
#include <thread>

#include "nvs/metrics/exposition.h"

namespace nvs::metrics {
namespace {

TEST(ParseHostPort, TakesHostAndPortAndSaysWhatIsWrong) {
  ASSERT_TRUE(ParseHostPort("127.0.0.1:9464").ok());
  EXPECT_EQ(ParseHostPort("127.0.0.1:9464").value(), std::make_pair(std::string("127.0.0.1"), 9464));
  EXPECT_EQ(ParseHostPort("[::1]:0").value(), std::make_pair(std::string("::1"), 0));
  EXPECT_EQ(ParseHostPort("localhost:80").value().first, "localhost");
  for (const char* bad : {"9464", ":9464", "127.0.0.1:", "127.0.0.1:x", "127.0.0.1:70000", "::1:9464", "[::1:9"}) {
    const auto parsed = ParseHostPort(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_NE(parsed.status().message().find("HOST:PORT"), std::string::npos) << parsed.status().message();
  }
}

TEST(Endpoint, ServesThePageInTheTextFormatAndNothingElse) {
  auto endpoint = Endpoint::Start("127.0.0.1:0", [] { return std::optional<std::string>("nvs_up 1\n"); });
  ASSERT_TRUE(endpoint.ok()) << endpoint.status().message();
  const std::string address = endpoint.value()->address();
  const int port = std::stoi(address.substr(address.rfind(':') + 1));
  ASSERT_GT(port, 0) << address;
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(5);
  client.set_read_timeout(5);
  auto got = client.Get("/metrics");
  ASSERT_TRUE(got) << httplib::to_string(got.error());
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(got->body, "nvs_up 1\n");
  EXPECT_EQ(got->get_header_value("Content-Type"), kContentType);
  auto other = client.Get("/");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 404);
  EXPECT_NE(other->body.find("/metrics"), std::string::npos);
  auto post = client.Post("/metrics", "x", "text/plain");
  ASSERT_TRUE(post);
  EXPECT_NE(post->status, 200);
}

TEST(Endpoint, APageNotHadInTimeIs503) {
  auto endpoint = Endpoint::Start("127.0.0.1:0", [] { return std::optional<std::string>(); });
  ASSERT_TRUE(endpoint.ok());
  const std::string address = endpoint.value()->address();
  httplib::Client client("127.0.0.1", std::stoi(address.substr(address.rfind(':') + 1)));
  client.set_read_timeout(5);
  auto got = client.Get("/metrics");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 503);
  EXPECT_NE(got->body.find("in time"), std::string::npos);
}

TEST(Endpoint, AnAddressInUseIsAnErrorNamingIt) {
  auto first = Endpoint::Start("127.0.0.1:0", [] { return std::optional<std::string>(""); });
  ASSERT_TRUE(first.ok());
  auto second = Endpoint::Start(first.value()->address(), [] { return std::optional<std::string>(""); });
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find(first.value()->address()), std::string::npos) << second.status().message();
}

// A client that holds a request open (a header sent a byte at a time,
// or a page that takes long) cannot hold up the program's stop. Here the
// page never comes until the endpoint is gone: without the bound on the
// stop, the destructor would wait forever (and the test fail at its
// TIMEOUT).
TEST(Endpoint, ARequestThatNeverEndsDoesNotHoldUpTheStop) {
  std::promise<void> entered, release;
  auto released = release.get_future().share();
  auto endpoint = Endpoint::Start("127.0.0.1:0", [&entered, released] {
    entered.set_value();
    released.wait();
    return std::optional<std::string>("x 1\n");
  });
  ASSERT_TRUE(endpoint.ok());
  const std::string address = endpoint.value()->address();
  std::thread client([port = std::stoi(address.substr(address.rfind(':') + 1))] {
    httplib::Client http("127.0.0.1", port);
    http.set_read_timeout(60);
    http.Get("/metrics");  // (answered or cut off: either way it returns)
  });
  entered.get_future().wait();  // a worker is inside the request now
  endpoint.value().reset();
  release.set_value();
  client.join();
}

// The page is rendered by the thread that polls the eventfd, once per
// batch of requests; a request nobody answers gets nothing after its deadline.
TEST(PageRequests, TheOwningThreadRendersWhatOthersAsk) {
  PageRequests requests;
  std::atomic<bool> done{false};
  int rendered = 0;
  std::thread owner([&] {
    while (!done) {
      pollfd fd{requests.fd(), POLLIN, 0};
      if (poll(&fd, 1, 50) == 1) requests.Answer([&] { return "page " + std::to_string(++rendered); });
    }
  });
  const auto first = requests.Ask(std::chrono::milliseconds(10000));
  const auto second = requests.Ask(std::chrono::milliseconds(10000));
  done = true;
  owner.join();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(*first, "page 1");
  EXPECT_EQ(*second, "page 2") << "a request is answered by a page rendered after it was made";
  EXPECT_FALSE(requests.Ask(std::chrono::milliseconds(1))) << "no one polls: nothing, after the deadline";
}

}  // namespace
}  // namespace nvs::metrics
