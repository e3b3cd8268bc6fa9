// When a cluster leader may serve, on its own clock (issue 17: "a leader
// that cannot renew its lease within the TTL stops serving on its own
// clock"; losing two of three etcd members gives it no other signal).
//
// etcd counts a lease's TTL from when it handles a keepalive, which is
// after the leader sent it; so the lease surely lives until the send time
// of the last keepalive that succeeded plus the TTL it granted. The leader
// serves only until that bound minus a margin (for its clock running slower
// than etcd's, and for the time a reply takes to leave it), and renews at a
// third of the TTL, so two renewals can fail before it has to stop. Pure:
// times in, decisions out.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

namespace nvs::cluster {

class LeaseClock {
 public:
  using Clock = std::chrono::steady_clock;
  using Time = Clock::time_point;

  // `ttl`: the lease's TTL; `margin`: how long before the bound it stops.
  LeaseClock(std::chrono::milliseconds ttl, std::chrono::milliseconds margin) : ttl_(ttl), margin_(margin) {}

  // A keepalive (or the grant) sent at `sent_at` came back with `ttl_left`
  // (0: the lease had expired: there is nothing to serve on).
  void Renewed(Time sent_at, std::chrono::milliseconds ttl_left) {
    if (ttl_left <= std::chrono::milliseconds(0)) {
      until_.reset();
      return;
    }
    const Time until = sent_at + std::min(ttl_left, ttl_) - margin_;
    if (!until_ || until > *until_) until_ = until;
    last_sent_ = sent_at;
  }
  // The lease is known gone (revoked, resigned, or etcd said so).
  void Lost() { until_.reset(); }

  bool MayServe(Time now) const { return until_ && now < *until_; }
  // When it must stop serving unless a renewal comes back first.
  std::optional<Time> ServeUntil() const { return until_; }
  // When the next keepalive is due: a third of the TTL after the last one sent.
  std::optional<Time> RenewAt() const {
    if (!last_sent_) return std::nullopt;
    return *last_sent_ + ttl_ / 3;
  }

 private:
  std::chrono::milliseconds ttl_;
  std::chrono::milliseconds margin_;
  std::optional<Time> until_;
  std::optional<Time> last_sent_;
};

}  // namespace nvs::cluster
