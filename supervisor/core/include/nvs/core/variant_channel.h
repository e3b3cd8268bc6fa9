// The requests nvsd has out at one variant process, in the order it will
// answer them (PROTOCOL.md: a variant answers in order), and what waits
// behind them. Part of the core: no I/O, no clock; the caller puts on the
// wire what it returns.
//
// Two things wait instead of going out at once:
// - *Held*: a command is not sent behind an unanswered request that is not
//   a command (a checkpoint digest, a ping). A variant that answers such a
//   request and dies on the command right behind it can take the answer
//   with it (libzmq writes it from its I/O thread, which an abort stops),
//   and nvsd could not tell that death from one on the digest itself, which
//   blames no command: found by the chaos campaign, where two variants
//   aborting on a poison right after a checkpoint made it `no_quorum`, and
//   it was delivered again when resent. Held, the command goes out once the
//   answer is in, so the request a variant dies on is always the oldest one
//   unanswered (blame.h).
// - *Paced*: a sync round's catch-up (a checkpoint and the commits after
//   it) goes out a window at a time as the variant answers: a long tail
//   sent at once left every variant "fell behind" and killed, again and
//   again (an outside test, 1,100 commits after the checkpoint).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nvs::supervisor {

// Why a request was sent to a variant; replies are matched in FIFO order.
enum class Purpose {
  kVote,                // apply/query of a pipeline command; the reply is an outcome
  kCatchUp,             // rollback: restore of the checkpoint, then the committed tail; not voted
  kRestore,             // restore of a donor's snapshot during a sync round
  kRoundDigest,         // digest at the end of a sync round
  kRoundSnapshot,       // snapshot that becomes the checkpoint after a round
  kCheckpointDigest,    // digest for a periodic checkpoint
  kCheckpointSnapshot,  // snapshot for a periodic checkpoint
  kHeartbeat,           // ping of an idle variant
  kProbeSnapshot,       // standby probe: the new active's state before the command its predecessor died on
  kCheckpointRestore,   // a sync round's restore of the checkpoint: its digest must be the checkpoint's
};
const char* PurposeName(Purpose purpose);

struct Sent {
  using Time = std::chrono::steady_clock::time_point;
  Purpose purpose = Purpose::kVote;
  std::string_view reply_type;  // the reply type expected (a static string of the codec)
  std::uint64_t seq = 0;
  std::uint64_t command = 0;    // kVote: the command's id
  Time sent_at{};
};

class VariantChannel {
 public:
  using Time = Sent::Time;
  // A request to put on the wire now.
  struct Transmission {
    Sent sent;
    std::string bytes;
  };

  // A request (`bytes`: its encoding): returned to be sent now, or held.
  std::optional<Transmission> Send(Sent sent, std::string bytes, Time now);
  // A request of a catch-up: queued, and sent (through Send) while fewer
  // than `window` requests are out or held. What may go now is returned.
  std::vector<Transmission> Pace(Sent sent, std::string bytes, std::size_t window, Time now);

  // The request a reply must answer (nullptr: none is out).
  const Sent* head() const { return fifo_.empty() ? nullptr : &fifo_.front(); }
  // The head was answered: it is dropped, and what may go now is returned:
  // held requests in order, up to the next command that must wait (a held
  // vote for which `undeliverable` is true is not sent: it is returned in
  // *dropped), then paced ones up to `window`.
  std::vector<Transmission> Answered(Time now, const std::function<bool(const Sent&)>& undeliverable,
                                     std::vector<Sent>* dropped, std::size_t window);

  // Everything outstanding, oldest first: the requests out, then the held
  // ones (with false: never sent). Paced ones blame nothing and are left out.
  std::vector<std::pair<Sent, bool>> Outstanding() const;
  // Forgets everything (the process is gone, or was never started).
  void Clear();

  const std::deque<Sent>& out() const { return fifo_; }
  bool idle() const { return fifo_.empty() && held_.empty() && paced_.empty(); }
  bool waiting() const { return !held_.empty() || !paced_.empty(); }  // something not sent yet
  std::size_t in_flight() const { return fifo_.size() + held_.size(); }  // out and held
  // When the head's deadline counts from: its sending, or the last reply
  // (a variant answering in time is not late for what queued behind).
  Time last_reply_at() const { return last_reply_at_; }
  Time last_sent_at() const { return last_sent_at_; }  // for heartbeats: an idle variant is pinged

 private:
  // Whether a request that is not a command is out. Only such requests
  // are sent behind one, so it is enough to look at the newest.
  bool AwaitingNonCommand() const { return !fifo_.empty() && fifo_.back().purpose != Purpose::kVote; }
  Transmission Transmit(Sent sent, std::string bytes, Time now);
  void PumpPaced(std::size_t window, Time now, std::vector<Transmission>& out);

  std::deque<Sent> fifo_;
  std::deque<std::pair<Sent, std::string>> held_;
  std::deque<std::pair<Sent, std::string>> paced_;
  Time last_reply_at_{};
  Time last_sent_at_{};
};

}  // namespace nvs::supervisor
