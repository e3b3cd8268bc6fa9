// Cluster mode's shell (ARCHITECTURE.md §8): this member's lease, its
// campaign and its view of the cluster in etcd, kept by two threads, and
// the leader's fenced writes, made from the loop's thread.
//
// etcd keys, under /nvs/NAME/ (protocol/JOURNAL.md, "Cluster mode"):
//   election/...        the election (etcd's election API); the leader's
//                       value: {"member", "endpoint"}
//   log/INDEX           a batch of journal records, one per line, INDEX
//                       (20 digits) the cluster-wide ordinal of its first
//   checkpoint          the latest checkpoint and the log INDEX from which
//                       the batches after it are kept
//   quarantine/ID       a quarantine report
//   members/MEMBER      each member's role and applied seq, on its lease
//
// The loop learns what changed through wake_fd() and Take(); nothing here
// decides what nvsd does with it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "nvs/cluster/etcd.h"
#include "nvs/cluster/lease_clock.h"
#include "nvs/status.h"
#include "nvs/supervisor/config.h"

namespace nvs::supervisor {

class ClusterMember {
 public:
  using Clock = std::chrono::steady_clock;

  // What the etcd side saw since the last Take, in etcd's order.
  struct News {
    std::vector<cluster::KeyValue> log;        // log batches and the leader's checkpoints, in etcd's order
    std::vector<cluster::KeyValue> reports;    // quarantine reports
    bool elected = false;                      // this member's campaign won
  };

  struct MemberInfo {
    std::string name;
    std::string endpoint;
    std::string role;
    std::uint64_t applied_seq = 0;
    std::int64_t updated_ms = 0;
  };

  // What status shows.
  struct View {
    std::string leader;           // the leading member's name ("": none)
    std::string leader_endpoint;  // its advertised client endpoint
    std::vector<MemberInfo> members;
    std::int64_t lease = 0;
    std::optional<double> serve_left_ms;  // leading: how long it may serve without a renewal
    std::string last_error;               // the last etcd call that failed, and when
    std::string etcd_leader_endpoint;     // leading: etcd's leader, where its writes go first
  };

  // Reads nothing yet: call ReadAll (the state at start), then Start.
  ClusterMember(const ClusterConfig& config, std::string etcd_password);
  ~ClusterMember();  // stops the threads; revokes the lease
  ClusterMember(const ClusterMember&) = delete;
  ClusterMember& operator=(const ClusterMember&) = delete;

  // Everything under the cluster's prefix, and the revision it was read at
  // (the watch goes on from there).
  Result<cluster::RangeResult> ReadAll();
  // The log batches from INDEX `from` on.
  Result<std::vector<cluster::KeyValue>> ReadLogFrom(std::uint64_t from);
  // Grants the lease (within the etcd timeout) and starts the threads:
  // keepalive, campaign, and the watch after `initial` (what ReadAll read:
  // its election and members seed the view; the loop took its log).
  Status Start(const cluster::RangeResult& initial);

  int wake_fd() const { return wake_fd_; }
  News Take();  // (and clears the wake fd)

  bool Leading() const;
  std::optional<cluster::Leadership> leadership() const;
  // Leading, and its lease surely alive on etcd's clock (LeaseClock).
  bool MayServe(Clock::time_point now) const;
  std::optional<Clock::time_point> ServeUntil() const;

  // The leader's write: puts and range deletions in one transaction fenced
  // on its leader key, within its lease (or the etcd timeout, if sooner).
  // false: the fence refused it (another member leads).
  Result<bool> Write(const std::vector<std::pair<std::string, std::string>>& puts,
                     const std::vector<std::pair<std::string, std::string>>& delete_ranges);
  // Gives up leadership (nvs cluster handover, or a stop): the next member
  // in line leads once etcd has the resignation.
  Status Resign();

  // What this member publishes about itself (members/MEMBER).
  void SetApplied(std::uint64_t seq, std::string role);
  View GetView() const;

  std::string Key(const std::string& suffix) const { return prefix_ + suffix; }
  const std::string& prefix() const { return prefix_; }
  const ClusterConfig& config() const { return config_; }
  static std::string LogKeySuffix(std::uint64_t index);

 private:
  void Wake();
  void NoteError(const std::string& what);
  void LeaseLoop();
  void PublishSelf(cluster::EtcdClient& client, std::int64_t lease);
  void CampaignLoop();
  void FindEtcdLeader(cluster::EtcdClient& client);
  void WatchLoop(std::int64_t revision);
  void OnEvent(const cluster::WatchEvent& event);
  void OnEventUnchecked(const cluster::WatchEvent& event);
  // Waits until `until` or the stop; false at the stop.
  bool WaitUntil(Clock::time_point until);
  cluster::EtcdOptions Options() const;

  ClusterConfig config_;
  std::string password_;
  std::string prefix_;  // "/nvs/NAME/"
  int wake_fd_ = -1;

  // Each thread has its own client (an EtcdClient is not shared).
  std::unique_ptr<cluster::EtcdClient> loop_client_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::int64_t lease_ = 0;
  cluster::LeaseClock clock_;
  std::optional<cluster::Leadership> leadership_;
  bool resigned_ = false;
  News news_;
  std::map<std::string, std::pair<std::int64_t, std::string>> election_;  // key -> (create revision, value)
  std::map<std::string, MemberInfo> members_;
  std::uint64_t applied_seq_ = 0;
  std::string role_ = "follower";
  bool publish_now_ = false;
  std::string last_error_;
  // etcd's leader among the endpoints, as FindEtcdLeader last found it
  // (the view), and the same until the next Write takes it (one look, one
  // Prefer: a write that fails over meanwhile stays where it went until
  // the next look).
  std::optional<std::size_t> etcd_leader_;
  std::optional<std::size_t> etcd_leader_to_prefer_;

  std::thread lease_thread_;
  std::thread campaign_thread_;
  std::thread watch_thread_;
};

}  // namespace nvs::supervisor
