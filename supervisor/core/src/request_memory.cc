#include "nvs/core/request_memory.h"

#include <utility>

#include "nvs/core/records.h"

namespace nvs::supervisor {

std::optional<protocol::ClientReply> RememberedReply::Get() const {
  if (reply) return reply;
  auto record = ParseJournalRecord(verdict_record);
  if (!record.ok()) return std::nullopt;
  return ReplyOfVerdict(std::move(record.value()));
}

void RequestMemory::Remember(const std::string& key, RememberedReply reply) {
  if (capacity_ == 0) return;
  Forget(key);
  order_.push_back(key);
  by_key_.emplace(key, Entry{std::move(reply), std::prev(order_.end())});
  while (by_key_.size() > capacity_) {
    by_key_.erase(order_.front());
    order_.pop_front();
  }
}

void RequestMemory::Forget(const std::string& key) {
  const auto it = by_key_.find(key);
  if (it == by_key_.end()) return;
  order_.erase(it->second.at);
  by_key_.erase(it);
}

const RememberedReply* RequestMemory::Find(const std::string& key) const {
  const auto it = by_key_.find(key);
  return it == by_key_.end() ? nullptr : &it->second.reply;
}

}  // namespace nvs::supervisor
