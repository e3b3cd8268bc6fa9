// What nvsd remembers of the requests it answered: the final reply of the
// last `capacity` request ids (per client key, RequestKey), so that a retry
// is answered again and never carried out twice (protocol/CLIENT.md §3).
// Those read back at recovery from before the checkpoint are kept as their
// verdict record's text and read on a retry. Part of the core: no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <unordered_map>

#include "nvs/protocol/client_messages.h"

namespace nvs::supervisor {

struct RememberedReply {
  std::optional<protocol::ClientReply> reply;
  std::string verdict_record;
  // nvsd's ordinal of its verdict record while that may not be on disk yet
  // (0: read from the journal, so on disk).
  std::uint64_t record = 0;
  // The reply. nullopt only for a record that cannot be read back, which
  // PeekJournalRecord vouched for: a bug, said by the caller.
  std::optional<protocol::ClientReply> Get() const;
};

class RequestMemory {
 public:
  explicit RequestMemory(std::size_t capacity) : capacity_(capacity) {}

  // Remembers (or replaces) the reply to `key`; the oldest one goes when
  // more than `capacity` are remembered. A replaced one counts as new.
  void Remember(const std::string& key, RememberedReply reply);
  // Forgets `key` (its reply was withdrawn: a retry must run it).
  void Forget(const std::string& key);
  const RememberedReply* Find(const std::string& key) const;
  bool Contains(const std::string& key) const { return Find(key) != nullptr; }
  std::size_t size() const { return by_key_.size(); }
  std::size_t capacity() const { return capacity_; }

 private:
  std::size_t capacity_;
  std::list<std::string> order_;  // oldest first
  struct Entry {
    RememberedReply reply;
    std::list<std::string>::iterator at;
  };
  std::unordered_map<std::string, Entry> by_key_;
};

}  // namespace nvs::supervisor
