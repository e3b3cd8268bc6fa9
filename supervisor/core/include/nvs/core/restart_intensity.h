// Restart intensity, as in OTP supervisors: a variant may restart at most
// `intensity` times within any `period`; one more marks it failed. A pure
// function of (history, now): the caller owns the clock.
#pragma once

#include <cstdint>
#include <deque>

namespace nvs::supervisor {

class RestartIntensity {
 public:
  RestartIntensity(int intensity, std::int64_t period_ms) : intensity_(intensity), period_ms_(period_ms) {}

  // Records a restart at `now_ms`. Returns false when this restart exceeds the
  // intensity (the variant should be marked failed instead of restarted).
  bool Allow(std::int64_t now_ms) {
    while (!history_.empty() && history_.front() <= now_ms - period_ms_) history_.pop_front();
    if (static_cast<int>(history_.size()) >= intensity_) return false;
    history_.push_back(now_ms);
    return true;
  }

  // Restarts counted within the period ending at `now_ms`.
  int Recent(std::int64_t now_ms) const {
    int count = 0;
    for (auto t : history_) count += t > now_ms - period_ms_ ? 1 : 0;
    return count;
  }

  void Reset() { history_.clear(); }

 private:
  int intensity_;
  std::int64_t period_ms_;
  std::deque<std::int64_t> history_;
};

}  // namespace nvs::supervisor
