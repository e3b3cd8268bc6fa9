// A small client of etcd's v3 API through its JSON gateway (etcd 3.4:
// POST /v3/<service>/<method>, keys and values base64, 64-bit numbers as
// JSON strings), for nvs's cluster mode (issue: two machines elected and
// fenced by etcd). Synchronous: every call has one deadline (the client's
// `timeout`, a campaign's `wait`), within which it tries the endpoints in
// turn until one answers, and says why when none does. What it offers is what cluster mode needs: a lease and
// its keepalive, the election API (campaign, leader, resign), writes fenced
// on the leader key's creation revision, and reads by prefix.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nvs/status.h"

namespace nvs::cluster {

struct EtcdOptions {
  std::vector<std::string> endpoints;  // "http://host:port"
  std::chrono::milliseconds timeout{1000};
};

struct KeyValue {
  std::string key;
  std::string value;
  std::int64_t create_revision = 0;
  std::int64_t mod_revision = 0;
  std::int64_t lease = 0;
};

// Being the leader of an election: the key etcd made for this campaign,
// which lives as long as the lease, and its creation revision (the fence).
struct Leadership {
  std::string election;
  std::string key;
  std::int64_t create_revision = 0;
  std::int64_t lease = 0;
};

class EtcdClient {
 public:
  explicit EtcdClient(EtcdOptions options);

  // A lease of `ttl_seconds`; its id.
  Result<std::int64_t> GrantLease(int ttl_seconds);
  // Renews it; the seconds it has left (0: it had expired: whatever was
  // attached to it is gone).
  Result<std::int64_t> KeepAlive(std::int64_t lease);
  Status Revoke(std::int64_t lease);

  // Campaigns in `election` with `value` on `lease`: returns once this
  // campaign leads, or with an error when `wait` passes first (or the
  // lease is gone).
  Result<Leadership> Campaign(const std::string& election, std::int64_t lease, const std::string& value,
                              std::chrono::milliseconds wait);
  // The leader's key and value (the election's oldest key), none when
  // nobody leads.
  Result<std::optional<KeyValue>> Leader(const std::string& election);
  Status Resign(const Leadership& leadership);

  // Puts every (key, value) in one transaction, only while `leadership`'s
  // key still exists with its creation revision: true when written, false
  // when the fence refused it (this member no longer leads).
  Result<bool> FencedPut(const Leadership& leadership, const std::vector<std::pair<std::string, std::string>>& puts);
  Status Put(const std::string& key, const std::string& value);
  // Every key starting with `prefix`, in key order.
  Result<std::vector<KeyValue>> Prefix(const std::string& prefix);

 private:
  // POSTs `body` to `path` at the first endpoint that answers, all within
  // `timeout`; the answer's text, or etcd's error.
  Result<std::string> Call(const std::string& path, const std::string& body, std::chrono::milliseconds timeout);

  EtcdOptions options_;
  std::size_t preferred_ = 0;  // the endpoint that answered last
};

// Base64 (RFC 4648, with padding), as the gateway wants keys and values.
std::string Base64Encode(std::string_view bytes);
// nullopt when `text` is not base64.
std::optional<std::string> Base64Decode(std::string_view text);

}  // namespace nvs::cluster
