// Commands admitted but not yet dispatched, one FIFO per client, served
// round-robin: one client's burst never makes another client's single
// command wait behind it (protocol/CLIENT.md §1). Pure: no I/O, no clock of
// its own (times come in), no knowledge of what a command is beyond the
// few members it reads.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <unordered_map>

namespace nvs::supervisor {

// `Item` must have `std::string request_id` (empty for requests that are
// not remembered, such as queries) and `Clock::time_point admitted_at`.
template <typename Item>
class AdmissionQueue {
 public:
  using Clock = std::chrono::steady_clock;

  // Queues `item` at the back of `client`'s FIFO. `client` must not be a
  // member of the item moved in (the order in which arguments are made is
  // unspecified: it can be moved from first).
  void Push(const std::string& client, Item item) {
    auto& queue = queues_[client];
    if (queue.empty()) turn_.push_back(client);
    if (!item.request_id.empty()) ++pending_ids_[item.request_id];
    queue.push_back(std::move(item));
    ++size_;
  }

  bool empty() const { return size_ == 0; }
  std::size_t size() const { return size_; }
  std::size_t clients() const { return turn_.size(); }
  std::size_t SizeOf(const std::string& client) const {
    auto it = queues_.find(client);
    return it == queues_.end() ? 0 : it->second.size();
  }

  // The next item in round-robin order: the front of the client whose turn
  // it is; that client then goes to the back of the turn.
  // REQUIRES: !empty().
  Item Pop() {
    const std::string client = turn_.front();
    turn_.pop_front();
    auto it = queues_.find(client);
    Item item = std::move(it->second.front());
    it->second.pop_front();
    if (it->second.empty()) {
      queues_.erase(it);
    } else {
      turn_.push_back(client);
    }
    Forget(item);
    --size_;
    return item;
  }

  // Calls `f` with each client and its FIFO (for the metrics).
  void ForEachQueue(const std::function<void(const std::string&, const std::deque<Item>&)>& f) const {
    for (const auto& [client, queue] : queues_) f(client, queue);
  }

  // Whether an item with this request id waits (O(1)).
  bool HoldsRequest(const std::string& request_id) const { return pending_ids_.count(request_id) != 0; }

  // Calls `f` on every item with this request id, oldest first per client.
  void ForRequest(const std::string& request_id, const std::function<void(Item&)>& f) {
    if (!HoldsRequest(request_id)) return;
    for (auto& [client, queue] : queues_) {
      for (auto& item : queue) {
        if (item.request_id == request_id) f(item);
      }
    }
  }

  // Removes and returns, oldest first per client, every item admitted
  // before `cutoff` (each FIFO is in admission order, so only fronts are
  // looked at).
  std::deque<Item> TakeAdmittedBefore(Clock::time_point cutoff) {
    std::deque<Item> out;
    for (auto it = queues_.begin(); it != queues_.end();) {
      auto& queue = it->second;
      while (!queue.empty() && queue.front().admitted_at < cutoff) {
        Forget(queue.front());
        out.push_back(std::move(queue.front()));
        queue.pop_front();
        --size_;
      }
      if (queue.empty()) {
        std::erase(turn_, it->first);
        it = queues_.erase(it);
      } else {
        ++it;
      }
    }
    return out;
  }

  // Removes and returns everything, oldest first per client.
  std::deque<Item> TakeAll() { return TakeAdmittedBefore(Clock::time_point::max()); }

  // The earliest admission time of anything waiting; max() when empty.
  Clock::time_point OldestAdmission() const {
    auto oldest = Clock::time_point::max();
    for (const auto& [client, queue] : queues_) oldest = std::min(oldest, queue.front().admitted_at);
    return oldest;
  }

 private:
  void Forget(const Item& item) {
    if (item.request_id.empty()) return;
    auto it = pending_ids_.find(item.request_id);
    if (it != pending_ids_.end() && --it->second == 0) pending_ids_.erase(it);
  }

  std::map<std::string, std::deque<Item>> queues_;  // non-empty FIFOs only
  std::deque<std::string> turn_;                     // clients with a non-empty FIFO, next first
  std::unordered_map<std::string, std::size_t> pending_ids_;
  std::size_t size_ = 0;
};

}  // namespace nvs::supervisor
