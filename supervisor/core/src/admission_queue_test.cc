#include "nvs/core/admission_queue.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace nvs::supervisor {
namespace {

using Clock = std::chrono::steady_clock;

struct Item {
  std::string request_id;
  Clock::time_point admitted_at;
  std::string label;
};

Clock::time_point At(int ms) { return Clock::time_point() + std::chrono::milliseconds(ms); }

std::vector<std::string> Drain(AdmissionQueue<Item>& q) {
  std::vector<std::string> out;
  while (!q.empty()) out.push_back(q.Pop().label);
  return out;
}

// One client's burst does not hold back another's single command: an
// outside test had a status poll wait behind 3,000 queued commands until
// queue_deadline_ms answered it `unavailable`.
TEST(AdmissionQueue, ClientsAreServedInTurnNotInArrivalOrder) {
  AdmissionQueue<Item> q;
  for (int i = 0; i < 5; ++i) q.Push("flood", {"f" + std::to_string(i), At(i), "f" + std::to_string(i)});
  q.Push("panel", {"p0", At(10), "p0"});
  q.Push("other", {"o0", At(11), "o0"});
  EXPECT_EQ(q.size(), 7u);
  EXPECT_EQ(q.clients(), 3u);
  EXPECT_EQ(q.SizeOf("flood"), 5u);
  EXPECT_EQ(Drain(q), (std::vector<std::string>{"f0", "p0", "o0", "f1", "f2", "f3", "f4"}));
  EXPECT_EQ(q.clients(), 0u);
}

TEST(AdmissionQueue, EachClientKeepsItsOwnOrder) {
  AdmissionQueue<Item> q;
  q.Push("a", {"", At(0), "a0"});
  q.Push("b", {"", At(1), "b0"});
  q.Push("a", {"", At(2), "a1"});
  q.Push("b", {"", At(3), "b1"});
  EXPECT_EQ(q.Pop().label, "a0");
  q.Push("c", {"", At(4), "c0"});  // joins the turn behind b and a
  EXPECT_EQ(Drain(q), (std::vector<std::string>{"b0", "a1", "c0", "b1"}));
}

TEST(AdmissionQueue, FindsPendingRequestIds) {
  AdmissionQueue<Item> q;
  q.Push("a", {"id-1", At(0), "a0"});
  q.Push("a", {"id-1", At(1), "a1"});
  q.Push("b", {"id-2", At(2), "b0"});
  q.Push("b", {"", At(3), "query"});
  EXPECT_TRUE(q.HoldsRequest("id-1"));
  EXPECT_FALSE(q.HoldsRequest("id-3"));
  std::vector<std::string> seen;
  q.ForRequest("id-1", [&](Item& item) { seen.push_back(item.label); });
  EXPECT_EQ(seen, (std::vector<std::string>{"a0", "a1"}));
  (void)q.Pop();  // a0
  EXPECT_TRUE(q.HoldsRequest("id-1"));
  (void)Drain(q);
  EXPECT_FALSE(q.HoldsRequest("id-1"));
  EXPECT_FALSE(q.HoldsRequest("id-2"));
}

TEST(AdmissionQueue, TakesWhatWaitedPastACutoff) {
  AdmissionQueue<Item> q;
  q.Push("a", {"x", At(0), "a0"});
  q.Push("a", {"", At(50), "a1"});
  q.Push("b", {"", At(20), "b0"});
  q.Push("c", {"", At(70), "c0"});
  EXPECT_EQ(q.OldestAdmission(), At(0));
  auto old = q.TakeAdmittedBefore(At(30));
  std::vector<std::string> labels;
  for (const auto& item : old) labels.push_back(item.label);
  EXPECT_EQ(labels, (std::vector<std::string>{"a0", "b0"}));
  EXPECT_FALSE(q.HoldsRequest("x"));
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(q.clients(), 2u);
  EXPECT_EQ(q.OldestAdmission(), At(50));
  EXPECT_EQ(Drain(q), (std::vector<std::string>{"a1", "c0"}));
  EXPECT_EQ(q.OldestAdmission(), Clock::time_point::max());
}

}  // namespace
}  // namespace nvs::supervisor
