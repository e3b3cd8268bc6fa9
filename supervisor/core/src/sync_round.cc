#include "nvs/core/sync_round.h"

#include <map>
#include <utility>

namespace nvs::supervisor {

RoundDecision DecideRound(const std::vector<RoundMember>& members) {
  RoundDecision d;
  for (const auto& m : members) {
    if (m.trusted) d.pool.push_back(m.name);
  }
  const bool everyone = d.pool.empty();
  if (everyone) {
    for (const auto& m : members) d.pool.push_back(m.name);
  }
  // digest -> (members of the pool holding it, how many of them vote)
  std::map<std::string, std::pair<int, int>> votes;
  for (const auto& m : members) {
    if (!everyone && !m.trusted) continue;
    auto& vote = votes[m.digest];
    ++vote.first;
    vote.second += m.voting ? 1 : 0;
  }
  std::pair<int, int> best{-1, -1};
  for (const auto& [digest, vote] : votes) {
    if (vote > best) {
      best = vote;
      d.chosen = digest;
    }
  }
  d.digests = votes.size();
  d.tie = votes.size() > 1 && static_cast<std::size_t>(best.first) * 2 <= d.pool.size();
  const RoundMember* donor = nullptr;
  for (const auto& m : members) {
    if (m.digest == d.chosen) {
      if (donor == nullptr || (m.voting && !donor->voting)) donor = &m;
    } else if (m.voting) {
      d.restart.push_back(m.name);
    } else {
      d.receivers.push_back(m.name);
    }
  }
  if (donor != nullptr) d.donor = donor->name;
  return d;
}

}  // namespace nvs::supervisor
