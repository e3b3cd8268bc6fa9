// A pipelined client of an nvs cluster for the multihost tests and the
// takeover benchmark (issue 17): it follows the leader as protocol/CLIENT.md
// §8 says a client should, and records what it was told.
#pragma once

#include <unistd.h>

#include <chrono>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>
#include <zmq.hpp>

namespace nvs::testing {

using Clock = std::chrono::steady_clock;

// What a client was told.
struct Acked {
  std::uint64_t seq = 0;
  std::string result;
};

// A pipelined client of the cluster: `window` commands out at once, each
// with its own id; a `not_leader` reply or a member that does not answer
// within `try_ms` sends every outstanding command again, with the same id,
// to the leader named (else the next member).
class LoadClient {
 public:
  LoadClient(std::vector<std::string> endpoints, int window) : endpoints_(std::move(endpoints)), window_(window) {
    for (const auto& e : endpoints_) {
      sockets_.emplace_back(context_, zmq::socket_type::dealer);
      sockets_.back().set(zmq::sockopt::linger, 0);
      sockets_.back().set(zmq::sockopt::reconnect_ivl, 50);
      sockets_.back().connect(e);
    }
  }

  // Runs until `acks` more commands were committed, or `deadline`.
  // `during` is called once, after `trigger_after` acks.
  bool Run(int acks, std::chrono::milliseconds deadline, int trigger_after = -1, const std::function<void()>& during = {}) {
    const auto until = Clock::now() + deadline;
    const std::size_t goal = acked_.size() + static_cast<std::size_t>(acks);
    const std::size_t trigger = acked_.size() + static_cast<std::size_t>(std::max(trigger_after, 0));
    bool triggered = trigger_after < 0;
    while (acked_.size() < goal && Clock::now() < until) {
      while (static_cast<int>(out_.size()) < window_) Send(NewCommand());
      if (!triggered && acked_.size() >= trigger) {
        triggered = true;
        if (during) during();
      }
      std::vector<zmq::pollitem_t> items;
      for (auto& s : sockets_) items.push_back({s.handle(), 0, ZMQ_POLLIN, 0});
      zmq::poll(items.data(), items.size(), std::chrono::milliseconds(20));
      for (std::size_t k = 0; k < sockets_.size(); ++k) {
        zmq::message_t m;
        while (sockets_[k].recv(m, zmq::recv_flags::dontwait)) OnReply(nlohmann::json::parse(m.to_string(), nullptr, false), k);
      }
      if (!out_.empty() && Clock::now() - last_progress_ > std::chrono::milliseconds(kTryMs)) {
        // Silent: no reply at all during the try (a member answering
        // not_leader is not silent, only not the leader yet).
        if (last_heard_ < last_progress_) {
          gave_up_on_ = target_;
        } else {
          gave_up_on_.reset();
        }
        target_ = (target_ + 1) % endpoints_.size();
        ResendAll();
      }
      if (retry_at_ && Clock::now() >= *retry_at_) {
        retry_at_.reset();
        ResendAll();  // (this member may be the next leader: it gets the time the silent one's lease takes)
      }
    }
    return acked_.size() >= goal;
  }

  const std::map<std::string, Acked>& acked() const { return acked_; }
  int not_leader() const { return not_leader_; }
  // Replies other than committed, not_leader and unavailable (a test expects none).
  const std::vector<std::string>& unexpected() const { return unexpected_; }
  int resent() const { return resent_; }
  // When the first command was acknowledged after `since` (the takeover),
  // by any member but `not_by` (an index into the endpoints: a killed
  // member's last replies can still be read after the kill).
  std::optional<Clock::time_point> FirstAckAfter(Clock::time_point since,
                                                 std::optional<std::size_t> not_by = std::nullopt) const {
    for (const auto& [t, by] : ack_times_) {
      if (t > since && by != not_by) return t;
    }
    return std::nullopt;
  }

 private:
  static constexpr int kTryMs = 500;

  std::pair<std::string, std::string> NewCommand() {
    const std::string id = "load-" + std::to_string(getpid()) + "-" + std::to_string(++next_);
    // (Routes and labels that name the command: a member that missed
    // commands ends on another state, not only on another count.)
    const nlohmann::json cmd =
        next_ % 2 == 0 ? nlohmann::json{{"op", "route"}, {"client", "load"},
                                        {"routes", {{{"output", next_ % 16}, {"input", (next_ * 7) % 16}}}}}
                       : nlohmann::json{{"op", "label"}, {"client", "load"}, {"kind", "output"},
                                        {"labels", {{{"index", next_ % 16}, {"text", "n" + std::to_string(next_)}}}}};
    return {id, nlohmann::json{{"type", "command"}, {"cmd", cmd}, {"id", id}}.dump()};
  }

  void Send(const std::pair<std::string, std::string>& request) {
    out_[request.first] = request.second;
    sockets_[target_].send(zmq::buffer(request.second), zmq::send_flags::dontwait);
    if (out_.size() == 1) last_progress_ = Clock::now();
  }

  void ResendAll() {
    last_progress_ = Clock::now();
    for (const auto& [id, bytes] : out_) {
      sockets_[target_].send(zmq::buffer(bytes), zmq::send_flags::dontwait);
      ++resent_;
    }
  }

  void OnReply(const nlohmann::json& reply, std::size_t from) {
    if (!reply.is_object()) return;
    const std::string id = reply.value("id", "");
    last_heard_ = Clock::now();
    if (!out_.count(id)) return;
    const std::string status = reply.value("status", "");
    if (status == "committed") {
      acked_[id] = Acked{reply.value("seq", std::uint64_t{0}), reply["result"].dump()};
      gave_up_on_.reset();
      ack_times_.emplace_back(Clock::now(), from);
      out_.erase(id);
      last_progress_ = Clock::now();
    } else if (status == "not_leader") {
      ++not_leader_;
      const std::string leader = reply.value("leader", "");
      // The member that did not answer is still named while its lease
      // lasts: this member is asked again shortly (it may be the next
      // leader), rather than the silent one again.
      const bool named_the_silent_one = gave_up_on_ && endpoints_[*gave_up_on_] == leader;
      if (named_the_silent_one || leader.empty()) {
        if (!retry_at_) retry_at_ = Clock::now() + std::chrono::milliseconds(kTryMs / 10);
        return;
      }
      for (std::size_t k = 0; k < endpoints_.size(); ++k) {
        if (endpoints_[k] == leader) target_ = k;
      }
      sockets_[target_].send(zmq::buffer(out_[id]), zmq::send_flags::dontwait);
      ++resent_;
    } else if (status == "unavailable") {
      sockets_[target_].send(zmq::buffer(out_[id]), zmq::send_flags::dontwait);  // (nvsd not ready yet)
      ++resent_;
    } else {
      unexpected_.push_back(reply.dump());
      out_.erase(id);
    }
  }

  std::vector<std::string> endpoints_;
  int window_;
  zmq::context_t context_{1};
  std::vector<zmq::socket_t> sockets_;
  std::size_t target_ = 0;
  std::optional<std::size_t> gave_up_on_;      // the member that last did not answer in time
  std::optional<Clock::time_point> retry_at_;  // when to send the outstanding again to target_
  Clock::time_point last_heard_{};             // the last reply of any kind
  std::map<std::string, std::string> out_;  // id -> request bytes
  std::map<std::string, Acked> acked_;
  std::vector<std::pair<Clock::time_point, std::size_t>> ack_times_;  // (when, which member)
  Clock::time_point last_progress_ = Clock::now();
  std::vector<std::string> unexpected_;
  int next_ = 0;
  int not_leader_ = 0;
  int resent_ = 0;
};

}  // namespace nvs::testing
