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
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nvs/status.h"

namespace nvs::cluster {

struct KeyValue {
  std::string key;
  std::string value;
  std::int64_t create_revision = 0;
  std::int64_t mod_revision = 0;
  std::int64_t lease = 0;
};

struct EtcdOptions {
  EtcdOptions() = default;
  EtcdOptions(std::vector<std::string> urls, std::chrono::milliseconds per_call)
      : endpoints(std::move(urls)), timeout(per_call) {}
  std::vector<std::string> endpoints;  // "http://host:port" or "https://host:port"
  std::chrono::milliseconds timeout{1000};
  // https: the CA that signed etcd's certificate (empty: the system's), and
  // this client's certificate and key when etcd asks for one
  // (--client-cert-auth).
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  // etcd's own authentication (`etcdctl auth enable`): a user and its
  // password; empty: none.
  std::string username;
  std::string password;
};

// One change the watch saw.
struct WatchEvent {
  KeyValue kv;
  bool deleted = false;
};

// A range read: the keys, and the store's revision it was read at.
struct RangeResult {
  std::vector<KeyValue> kvs;
  std::int64_t revision = 0;
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
  ~EtcdClient();
  EtcdClient(EtcdClient&&) noexcept;
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  // A lease of `ttl_seconds`; its id.
  Result<std::int64_t> GrantLease(int ttl_seconds);
  // Renews it; the seconds it has left (0: it had expired: whatever was
  // attached to it is gone).
  Result<std::int64_t> KeepAlive(std::int64_t lease);
  Status Revoke(std::int64_t lease);

  // Campaigns in `election` with `value` on `lease`: returns once this
  // campaign leads, or with an error when `wait` passes first, `go_on`
  // (asked a few times a second, when given) says stop, or the lease is
  // gone. NOTE: etcd resigns a campaign whose request is cut short (its
  // key is deleted, in the background): a campaign must not be ended and
  // begun again while it is in line, or the later one may lead on a key
  // the earlier one's cleanup then deletes. Give a long `wait` and stop it
  // only when its lease changes or at the end.
  Result<Leadership> Campaign(const std::string& election, std::int64_t lease, const std::string& value,
                              std::chrono::milliseconds wait, const std::function<bool()>* go_on = nullptr);
  // The leader's key and value (the election's oldest key), none when
  // nobody leads.
  Result<std::optional<KeyValue>> Leader(const std::string& election);
  Status Resign(const Leadership& leadership);

  // Puts every (key, value) in one transaction, only while `leadership`'s
  // key still exists with its creation revision: true when written, false
  // when the fence refused it (this member no longer leads).
  Result<bool> FencedPut(const Leadership& leadership, const std::vector<std::pair<std::string, std::string>>& puts);
  // The same, with deletions of key ranges [from, to) in the same
  // transaction, within `timeout` (not the client's).
  Result<bool> FencedTxn(const Leadership& leadership, const std::vector<std::pair<std::string, std::string>>& puts,
                         const std::vector<std::pair<std::string, std::string>>& delete_ranges,
                         std::chrono::milliseconds timeout);
  // Which endpoint is etcd's raft leader: each endpoint's status names its
  // own member and the leader, asked of each within `each` (an endpoint
  // that does not answer is passed over; `go_on`, when given, may stop it
  // early); its index in the endpoints. None when the endpoints that
  // answered are not etcd's leader (a list naming some members only, one
  // address in front of etcd, an election under way); an error when none
  // answered. A write sent to another member is passed on to the leader by
  // etcd, one more hop between etcd's hosts on a write's path.
  Result<std::optional<std::size_t>> LeaderEndpoint(std::chrono::milliseconds each,
                                                    const std::function<bool()>* go_on = nullptr);
  // The endpoint to try first from now on (an index in the endpoints; the
  // next request that it does not answer moves on, as always).
  void Prefer(std::size_t index);

  // `lease` 0: a key that lives until it is deleted.
  Status Put(const std::string& key, const std::string& value, std::int64_t lease = 0);
  // Every key starting with `prefix`, in key order.
  Result<std::vector<KeyValue>> Prefix(const std::string& prefix);
  // The keys in [from, PrefixEnd(prefix)) (every key from `from` on that
  // starts with `prefix`), in key order, and the revision read at.
  Result<RangeResult> RangeFrom(const std::string& from, const std::string& prefix);

  // Watches every key starting with `prefix` (from `from` on, when given:
  // the keys in [from, PrefixEnd(prefix))) from `start_revision` until
  // `wait` passes or `on_event` returns false; the revision to watch from
  // next. An error when etcd cannot be reached or refuses the watch (e.g.
  // the revision was compacted: read again with RangeFrom).
  Result<std::int64_t> Watch(const std::string& prefix, std::int64_t start_revision, std::chrono::milliseconds wait,
                             const std::function<bool(const WatchEvent&)>& on_event, const std::string& from = {});

 private:
  // POSTs `body` to `path` at the first endpoint that answers, all within
  // `timeout`; the answer's text, or etcd's error.
  Result<std::string> Call(const std::string& path, const std::string& body, std::chrono::milliseconds timeout,
                           const std::function<bool()>* go_on = nullptr);
  // One POST to one endpoint; the HTTP status and the answer (`on_data`,
  // when given, gets the answer as it comes, and may stop it by returning
  // false).
  struct Answer {
    bool reached = false;  // the endpoint answered at all
    long status = 0;
    std::string text;
    std::string error;  // !reached: why
  };
  Answer Post(const std::string& endpoint, const std::string& path, const std::string& body,
              std::chrono::milliseconds timeout, const std::function<bool(std::string_view)>* on_data,
              const std::function<bool()>* go_on = nullptr);
  // etcd auth: a token for the configured user (Authorization header).
  Status Authenticate(const std::string& endpoint, std::chrono::milliseconds timeout);

  struct CurlCleanup {
    void operator()(void* handle) const;
  };
  EtcdOptions options_;
  std::string token_;
  std::unique_ptr<void, CurlCleanup> handle_;  // libcurl's easy handle, kept for its connection
  std::size_t preferred_ = 0;  // the endpoint that answered last
};

// Base64 (RFC 4648, with padding), as the gateway wants keys and values.
std::string Base64Encode(std::string_view bytes);
// nullopt when `text` is not base64.
std::optional<std::string> Base64Decode(std::string_view text);

// The first key after every key that starts with `prefix` (etcd's range_end).
std::string PrefixEnd(std::string prefix);

}  // namespace nvs::cluster
