#include "cluster_member.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <utility>

#include "log.h"

namespace nvs::supervisor {

namespace {

using nlohmann::json;
using std::chrono::milliseconds;

std::int64_t UnixMs() {
  return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

ClusterMember::ClusterMember(const ClusterConfig& config, std::string etcd_password)
    : config_(config),
      password_(std::move(etcd_password)),
      prefix_("/nvs/" + config.name + "/"),
      clock_(milliseconds(config.lease_ttl_s * 1000), milliseconds(config.serve_margin_ms)) {
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  loop_client_ = std::make_unique<cluster::EtcdClient>(Options());
}

ClusterMember::~ClusterMember() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto* t : {&lease_thread_, &campaign_thread_, &watch_thread_}) {
    if (t->joinable()) t->join();
  }
  // (A lease revoked now lets the next member lead at once, instead of
  // after the TTL; a member that is simply gone loses it by the TTL.)
  if (lease_ != 0) (void)loop_client_->Revoke(lease_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

cluster::EtcdOptions ClusterMember::Options() const {
  cluster::EtcdOptions o;
  o.endpoints = config_.etcd_endpoints;
  o.timeout = milliseconds(config_.etcd_timeout_ms);
  o.ca_file = config_.etcd_ca_file.string();
  o.cert_file = config_.etcd_cert_file.string();
  o.key_file = config_.etcd_key_file.string();
  o.username = config_.etcd_user;
  o.password = password_;
  return o;
}

std::string ClusterMember::LogKeySuffix(std::uint64_t index) {
  char text[32];
  std::snprintf(text, sizeof text, "log/%020" PRIu64, index);
  return text;
}

Result<cluster::RangeResult> ClusterMember::ReadAll() { return loop_client_->RangeFrom(prefix_, prefix_); }

Result<std::vector<cluster::KeyValue>> ClusterMember::ReadLogFrom(std::uint64_t from) {
  auto read = loop_client_->RangeFrom(Key(LogKeySuffix(from)), Key("log/"));
  if (!read.ok()) return read.status();
  return std::move(read.value().kvs);
}

Status ClusterMember::Start(const cluster::RangeResult& initial) {
  for (const auto& kv : initial.kvs) {
    const std::string suffix = kv.key.substr(std::min(kv.key.size(), prefix_.size()));
    if (suffix.rfind("election/", 0) == 0 || suffix.rfind("members/", 0) == 0) OnEvent({kv, false});
  }
  const std::int64_t revision = initial.revision;
  const auto sent = Clock::now();
  auto lease = loop_client_->GrantLease(config_.lease_ttl_s);
  if (!lease.ok()) return Status::Error("cluster: cannot get a lease from etcd: " + lease.status().message());
  {
    std::lock_guard lock(mu_);
    lease_ = lease.value();
    // (Not a renewal: a lease granted is not one this member may lead on
    // until its campaign wins; the clock only matters while leading.)
    clock_.Renewed(sent, milliseconds(config_.lease_ttl_s * 1000));
  }
  lease_thread_ = std::thread([this] { LeaseLoop(); });
  campaign_thread_ = std::thread([this] { CampaignLoop(); });
  watch_thread_ = std::thread([this, revision] { WatchLoop(revision); });
  return Status::Ok();
}

void ClusterMember::Wake() {
  const std::uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof one);
}

ClusterMember::News ClusterMember::Take() {
  std::uint64_t count = 0;
  (void)!read(wake_fd_, &count, sizeof count);
  std::lock_guard lock(mu_);
  News out = std::move(news_);
  news_ = News{};
  return out;
}

void ClusterMember::NoteError(const std::string& what) {
  std::lock_guard lock(mu_);
  last_error_ = what;
}

bool ClusterMember::WaitUntil(Clock::time_point until) {
  std::unique_lock lock(mu_);
  cv_.wait_until(lock, until, [&] { return stop_; });
  return !stop_;
}

bool ClusterMember::Leading() const {
  std::lock_guard lock(mu_);
  return leadership_.has_value() && !resigned_;
}

std::optional<cluster::Leadership> ClusterMember::leadership() const {
  std::lock_guard lock(mu_);
  return leadership_;
}

bool ClusterMember::MayServe(Clock::time_point now) const {
  std::lock_guard lock(mu_);
  return leadership_ && !resigned_ && clock_.MayServe(now);
}

std::optional<ClusterMember::Clock::time_point> ClusterMember::ServeUntil() const {
  std::lock_guard lock(mu_);
  return leadership_ ? clock_.ServeUntil() : std::nullopt;
}

Result<bool> ClusterMember::Write(const std::vector<std::pair<std::string, std::string>>& puts,
                                  const std::vector<std::pair<std::string, std::string>>& delete_ranges) {
  std::optional<cluster::Leadership> l;
  std::optional<Clock::time_point> until;
  std::optional<std::size_t> prefer;  // etcd's leader, found since the last write
  {
    std::lock_guard lock(mu_);
    l = leadership_;
    until = clock_.ServeUntil();
    prefer = std::exchange(etcd_leader_to_prefer_, std::nullopt);
  }
  if (prefer) loop_client_->Prefer(*prefer);
  if (!l) return Status::Error("this member's leadership is gone (its lease ended or it resigned)");
  if (!until) return Status::Error("its lease has no renewal on record");
  const auto left = std::chrono::duration_cast<milliseconds>(*until - Clock::now());
  if (left <= milliseconds(0)) return Status::Error("the lease may have ended (no renewal came back in time)");
  auto written = loop_client_->FencedTxn(*l, puts, delete_ranges, std::min(left, milliseconds(config_.etcd_timeout_ms)));
  if (!written.ok()) NoteError(written.status().message());
  return written;
}

Status ClusterMember::Resign() {
  std::optional<cluster::Leadership> l;
  {
    std::lock_guard lock(mu_);
    l = leadership_;
    resigned_ = true;
  }
  if (!l) return Status::Ok();
  return loop_client_->Resign(*l);
}

void ClusterMember::SetApplied(std::uint64_t seq, std::string role) {
  {
    std::lock_guard lock(mu_);
    applied_seq_ = seq;
    if (role == role_) return;
    role_ = std::move(role);
    publish_now_ = true;  // (a new role is told at once, not at the next renewal)
  }
  cv_.notify_all();
}

ClusterMember::View ClusterMember::GetView() const {
  std::lock_guard lock(mu_);
  View v;
  if (leadership_ && !resigned_) {  // (it does not watch the election while it leads)
    v.leader = config_.member;
    v.leader_endpoint = config_.advertise_endpoint;
  }
  const std::pair<std::int64_t, std::string>* first = nullptr;
  for (const auto& [key, entry] : election_) {
    if (first == nullptr || entry.first < first->first) first = &entry;
  }
  if (first != nullptr && v.leader.empty()) {
    const json value = json::parse(first->second, nullptr, false);
    if (value.is_object() && value.contains("member") && value["member"].is_string() && value.contains("endpoint") &&
        value["endpoint"].is_string()) {
      v.leader = value["member"].get<std::string>();
      v.leader_endpoint = value["endpoint"].get<std::string>();
    }
  }
  for (const auto& [name, info] : members_) v.members.push_back(info);
  v.lease = lease_;
  if (leadership_ && !resigned_ && clock_.ServeUntil()) {
    v.serve_left_ms = std::chrono::duration<double, std::milli>(*clock_.ServeUntil() - Clock::now()).count();
  }
  v.last_error = last_error_;
  if (leadership_ && !resigned_ && etcd_leader_) v.etcd_leader_endpoint = config_.etcd_endpoints.at(*etcd_leader_);
  return v;
}

// Renews the lease at a third of its TTL, and says who this member is
// (members/MEMBER, on the lease). A lease etcd no longer has is replaced
// while this member does not lead (a leader whose lease is gone stops
// serving by its clock, and its nvsd steps down).
void ClusterMember::LeaseLoop() {
  cluster::EtcdClient client(Options());
  const milliseconds ttl(config_.lease_ttl_s * 1000);
  std::optional<Clock::time_point> retry_at;  // after a keepalive etcd did not answer
  while (true) {
    Clock::time_point due;
    std::int64_t lease = 0;
    {
      std::lock_guard lock(mu_);
      due = retry_at.value_or(clock_.RenewAt().value_or(Clock::now()));
      lease = lease_;
    }
    bool publish_only = false;
    {
      std::unique_lock lock(mu_);
      cv_.wait_until(lock, due, [&] { return stop_ || publish_now_; });
      if (stop_) return;
      publish_only = publish_now_ && Clock::now() < due;
      publish_now_ = false;
    }
    if (publish_only) {
      PublishSelf(client, lease);
      continue;
    }
    retry_at.reset();
    const auto sent = Clock::now();
    auto left = client.KeepAlive(lease);
    bool leading = false;
    {
      std::lock_guard lock(mu_);
      leading = leadership_.has_value();
      if (left.ok() && left.value() > 0) {
        clock_.Renewed(sent, std::chrono::seconds(left.value()));
      } else if (left.ok()) {
        clock_.Lost();
      }
    }
    if (!left.ok()) {
      NoteError("keepalive: " + left.status().message());
      // (Tried again a tenth of the TTL later while etcd cannot be reached.)
      retry_at = Clock::now() + ttl / 10;
      continue;
    }
    if (left.value() == 0) {
      Log(LogLevel::kWarn, "cluster_lease_lost", {{"lease", lease}, {"leading", leading}});
      retry_at = Clock::now() + ttl / 10;  // (not again at once)
      if (leading) continue;  // (the loop steps down by its clock)
      const auto asked = Clock::now();
      auto granted = client.GrantLease(config_.lease_ttl_s);
      if (!granted.ok()) {
        NoteError("lease grant: " + granted.status().message());
        continue;
      }
      retry_at.reset();
      std::lock_guard lock(mu_);
      lease_ = granted.value();
      clock_.Renewed(asked, ttl);
      cv_.notify_all();
      continue;
    }
    PublishSelf(client, lease);
  }
}

void ClusterMember::PublishSelf(cluster::EtcdClient& client, std::int64_t lease) {
  std::string info;
  {
    std::lock_guard lock(mu_);
    info = json{{"member", config_.member}, {"endpoint", config_.advertise_endpoint}, {"role", role_},
                {"applied_seq", applied_seq_}, {"updated_ms", UnixMs()}}
               .dump();
  }
  if (Status put = client.Put(Key("members/" + config_.member), info, lease); !put.ok()) {
    NoteError("member info: " + put.message());
  }
}

// Campaigns until this member leads (then it never campaigns again: a
// deposed leader's nvsd starts over as a follower).
void ClusterMember::CampaignLoop() {
  cluster::EtcdClient client(Options());
  const std::string value = json{{"member", config_.member}, {"endpoint", config_.advertise_endpoint}}.dump();
  while (true) {
    std::int64_t lease = 0;
    {
      std::lock_guard lock(mu_);
      if (stop_) return;
      lease = lease_;
    }
    // One campaign per lease, waiting as long as it takes: stopped only when
    // the lease changes or nvsd stops (etcd resigns a campaign cut short,
    // in the background, so one ended and begun again could lead on a key
    // that cleanup then deletes: the fence refused such a leader's first
    // write in the takeover bench).
    const std::function<bool()> go_on = [&] {
      std::lock_guard lock(mu_);
      return !stop_ && lease_ == lease;
    };
    auto won = client.Campaign(Key("election"), lease, value, std::chrono::hours(24), &go_on);
    if (won.ok()) {
      {
        std::lock_guard lock(mu_);
        if (stop_) return;
        leadership_ = won.value();
        news_.elected = true;
      }
      Log(LogLevel::kInfo, "cluster_elected", {{"member", config_.member}, {"key", won.value().key},
                                               {"revision", won.value().create_revision}});
      Wake();
      FindEtcdLeader(client);
      return;
    }
    // Stopped (a new lease: campaign again on it), or an error: tried
    // again a little later.
    if (!go_on()) continue;
    NoteError("campaign: " + won.status().message());
    if (!WaitUntil(Clock::now() + milliseconds(100))) return;
  }
}

// While this member leads: which etcd endpoint is etcd's own leader, found
// at once and every kEtcdLeaderEvery after, for the leader's writes (Write).
// Sent to another etcd member, each write took one more hop, etcd passing
// it on to its leader: about 150 us of a 1.5 ms write on loopback, and a
// network round trip between etcd's hosts.
void ClusterMember::FindEtcdLeader(cluster::EtcdClient& client) {
  constexpr auto kEtcdLeaderEvery = std::chrono::seconds(5);
  // (Each endpoint gets a short time: a host that is down must not hold
  // the next look for the etcd timeout.)
  const auto each = std::min(milliseconds(config_.etcd_timeout_ms), milliseconds(300));
  const std::function<bool()> go_on = [&] {
    std::lock_guard lock(mu_);
    return !stop_;
  };
  do {
    auto found = client.LeaderEndpoint(each, &go_on);
    std::lock_guard lock(mu_);
    if (!found.ok()) {
      if (!stop_) last_error_ = "looking up etcd's leader: " + found.status().message();
      continue;  // (the writes go on where they went)
    }
    // Each look is news, even of the same endpoint: a write that failed
    // over to another endpoint meanwhile is brought back to etcd's leader.
    // None found (the endpoints that answered are not etcd's leader): the
    // writes go where the client's order takes them.
    etcd_leader_ = found.value();
    etcd_leader_to_prefer_ = found.value();
  } while (WaitUntil(Clock::now() + kEtcdLeaderEvery));
}

// The cluster's keys as they change: log batches and reports for the
// loop; the election and the members for the view. Read again from the
// start when the watch cannot go on from where it was.
void ClusterMember::WatchLoop(std::int64_t revision) {
  cluster::EtcdClient client(Options());
  std::int64_t next = revision + 1;
  while (true) {
    bool leads = false;
    {
      std::lock_guard lock(mu_);
      if (stop_) return;
      leads = leadership_.has_value();
    }
    // A leader watches only the members and the quarantine reports (keys
    // from "members/" on): not the election, which it won (it never
    // campaigns again; a deposed leader's nvsd starts over), and not the
    // log and checkpoint it writes itself. Those came back to it at every
    // command: etcd encoded each batch for its watch, and its watch thread
    // parsed it, on the cores its variants vote on.
    auto watched = client.Watch(
        prefix_, next, milliseconds(1000),
        [&](const cluster::WatchEvent& e) {
          OnEvent(e);
          std::lock_guard lock(mu_);
          return !stop_;
        },
        leads ? prefix_ + "members/" : std::string());
    if (watched.ok()) {
      next = watched.value();
      continue;
    }
    NoteError("watch: " + watched.status().message());
    if (watched.status().message().find("compact") != std::string::npos) {
      // (etcd compacted the revision: everything is read again; the loop
      // skips log batches it has.)
      auto all = client.RangeFrom(prefix_, prefix_);
      if (all.ok()) {
        for (const auto& kv : all.value().kvs) OnEvent({kv, false});
        next = all.value().revision + 1;
      }
    }
    if (!WaitUntil(Clock::now() + milliseconds(100))) return;
  }
}

void ClusterMember::OnEvent(const cluster::WatchEvent& e) {
  try {
    OnEventUnchecked(e);
  } catch (const std::exception& error) {
    // (A value of another shape under the cluster's prefix: not nvsd's.)
    NoteError("watch: " + e.kv.key + ": " + error.what());
  }
}

void ClusterMember::OnEventUnchecked(const cluster::WatchEvent& e) {
  const std::string& key = e.kv.key;
  if (key.rfind(prefix_, 0) != 0) return;
  const std::string suffix = key.substr(prefix_.size());
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    if (suffix.rfind("log/", 0) == 0 || suffix == "checkpoint") {
      // (Not while this member leads: its own writes, coming back, woke its
      // loop for nothing at every command. A member elected reads the log
      // it has not applied from etcd itself, in Promote.)
      if (!e.deleted && !leadership_) {
        news_.log.push_back(e.kv);
        wake = true;
      }
    } else if (suffix.rfind("quarantine/", 0) == 0) {
      if (!e.deleted) {
        news_.reports.push_back(e.kv);
        wake = true;
      }
    } else if (suffix.rfind("election/", 0) == 0) {
      if (e.deleted) {
        election_.erase(key);
      } else {
        election_[key] = {e.kv.create_revision, e.kv.value};
      }
    } else if (suffix.rfind("members/", 0) == 0) {
      const std::string name = suffix.substr(8);
      if (e.deleted) {
        members_.erase(name);
      } else {
        const json v = json::parse(e.kv.value, nullptr, false);
        if (v.is_object()) {
          members_[name] = MemberInfo{name, v.value("endpoint", ""), v.value("role", ""),
                                      v.value("applied_seq", std::uint64_t{0}), v.value("updated_ms", std::int64_t{0})};
        }
      }
    }
  }
  if (wake) Wake();
}

}  // namespace nvs::supervisor
