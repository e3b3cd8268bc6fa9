#include "nvs/core/variant_channel.h"

namespace nvs::supervisor {

const char* PurposeName(Purpose purpose) {
  static const char* const kNames[] = {"command",           "catch-up",          "restore", "sync round digest",
                                       "sync round snapshot", "checkpoint digest", "checkpoint snapshot", "ping",
                                       "probe snapshot", "checkpoint restore"};
  return kNames[static_cast<int>(purpose)];
}

VariantChannel::Transmission VariantChannel::Transmit(Sent sent, std::string bytes, Time now) {
  if (fifo_.empty()) last_reply_at_ = now;  // the deadline of a new head counts from now
  last_sent_at_ = now;
  sent.sent_at = now;
  fifo_.push_back(sent);
  return {sent, std::move(bytes)};
}

std::optional<VariantChannel::Transmission> VariantChannel::Send(Sent sent, std::string bytes, Time now) {
  if (!held_.empty() || (sent.purpose == Purpose::kVote && AwaitingNonCommand())) {
    sent.sent_at = now;
    held_.emplace_back(sent, std::move(bytes));
    return std::nullopt;
  }
  return Transmit(sent, std::move(bytes), now);
}

void VariantChannel::PumpPaced(std::size_t window, Time now, std::vector<Transmission>& out) {
  while (!paced_.empty() && in_flight() < window) {
    auto [sent, bytes] = std::move(paced_.front());
    paced_.pop_front();
    if (auto now_out = Send(sent, std::move(bytes), now)) out.push_back(std::move(*now_out));
  }
}

std::vector<VariantChannel::Transmission> VariantChannel::Pace(Sent sent, std::string bytes, std::size_t window,
                                                               Time now) {
  paced_.emplace_back(sent, std::move(bytes));
  std::vector<Transmission> out;
  PumpPaced(window, now, out);
  return out;
}

std::vector<VariantChannel::Transmission> VariantChannel::Answered(Time now,
                                                                   const std::function<bool(const Sent&)>& undeliverable,
                                                                   std::vector<Sent>* dropped, std::size_t window) {
  std::vector<Transmission> out;
  if (!fifo_.empty()) fifo_.pop_front();
  last_reply_at_ = now;
  while (!held_.empty() && (held_.front().first.purpose != Purpose::kVote || !AwaitingNonCommand())) {
    auto [sent, bytes] = std::move(held_.front());
    held_.pop_front();
    if (sent.purpose == Purpose::kVote && undeliverable && undeliverable(sent)) {
      if (dropped != nullptr) dropped->push_back(sent);
      continue;
    }
    out.push_back(Transmit(sent, std::move(bytes), now));
  }
  PumpPaced(window, now, out);
  return out;
}

std::vector<std::pair<Sent, bool>> VariantChannel::Outstanding() const {
  std::vector<std::pair<Sent, bool>> out;
  for (const auto& sent : fifo_) out.emplace_back(sent, true);
  for (const auto& [sent, bytes] : held_) out.emplace_back(sent, false);
  return out;
}

void VariantChannel::Clear() {
  fifo_.clear();
  held_.clear();
  paced_.clear();
}

}  // namespace nvs::supervisor
