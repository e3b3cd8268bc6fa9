#include "nvs/core/checkpointer.h"

#include <utility>

namespace nvs::supervisor {

void Checkpointer::Start(std::uint64_t seq, const std::string& snapshot_from, const std::vector<std::string>& others) {
  Pending p;
  p.seq = seq;
  p.snapshot_from = snapshot_from;
  p.digests[snapshot_from] = std::nullopt;
  for (const auto& name : others) p.digests[name] = std::nullopt;
  pending_ = std::move(p);
}

void Checkpointer::OnDigest(const std::string& variant, std::uint64_t seq, const std::string& digest) {
  if (!pending_ || pending_->seq != seq) return;
  pending_->digests[variant] = digest;
}

void Checkpointer::OnSnapshot(const std::string& variant, std::uint64_t seq, const std::string& state,
                              const std::string& digest) {
  if (!pending_ || pending_->seq != seq) return;
  pending_->state = state;
  pending_->snapshot_digest = digest;
  pending_->digests[variant] = digest;
}

std::optional<Checkpointer::Decision> Checkpointer::Take() {
  if (!pending_) return std::nullopt;
  for (const auto& [name, digest] : pending_->digests) {
    if (!digest) return std::nullopt;
  }
  Pending p = std::move(*pending_);
  pending_.reset();
  Decision d;
  d.seq = p.seq;
  std::map<std::string, int> votes;
  for (const auto& [name, digest] : p.digests) {
    ++votes[*digest];
    d.asked.push_back(name);
    d.digests[name] = *digest;
  }
  const int majority = static_cast<int>(p.digests.size()) / 2 + 1;
  d.accepted = p.snapshot_digest && p.state && votes[*p.snapshot_digest] >= majority;
  if (d.accepted) {
    d.state = std::move(*p.state);
    d.digest = *p.snapshot_digest;
    for (const auto& [name, digest] : p.digests) {
      if (*digest != d.digest) d.mismatched.push_back(name);
    }
  }
  return d;
}

}  // namespace nvs::supervisor
