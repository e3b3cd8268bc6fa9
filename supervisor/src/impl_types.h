// nvsd's own types and helpers, shared by the files of Supervisor::Impl
// (impl.h). Private to nvsd: nothing outside supervisor/src includes it.
#pragma once

#include "nvs/supervisor/supervisor.h"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <fstream>
#include <map>
#include <sstream>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>
#include <utility>
#include <zmq.hpp>

#include "nvs/core/admission_queue.h"
#include "nvs/metrics/endpoint.h"
#include "nvs/metrics/exposition.h"
#include "nvs/core/blame.h"
#include "nvs/core/checkpointer.h"
#include "nvs/core/lifecycle.h"
#include "nvs/core/request_memory.h"
#include "nvs/core/restart_intensity.h"
#include "nvs/core/retest.h"
#include "nvs/core/standby.h"
#include "nvs/core/sync_round.h"
#include "nvs/core/variant_channel.h"
#include "nvs/protocol/client_messages.h"
#include "nvs/protocol/messages.h"
#include "nvs/supervisor/journal.h"
#include "nvs/supervisor/state_dir.h"
#include "nvs/supervisor/variant_process.h"
#include "nvs/voter/voter.h"

#include "cgroups.h"
#include "client_gate.h"
#include "cluster_member.h"
#include "client_transport.h"
#include "env.h"
#include "event_sink.h"
#include "log.h"
#include "quarantine_store.h"
#include "recovery.h"
#include "variant_transport.h"

extern char** environ;

namespace nvs::supervisor {

namespace proto = nvs::protocol;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// A variant answering just inside every deadline could still fall ever
// further behind; past this many unanswered requests it counts as hung.
constexpr std::size_t kMaxInFlightPerVariant = 1024;
// A healthy variant this many requests behind holds back new commands: the
// pipeline goes at the pace of the slowest variant that is still answering,
// rather than leaving it ever further behind until it is killed for it
// (found by the chaos campaign: under sustained load on a busy machine, a
// slower but correct variant was killed again and again, and a poison
// command arriving while one of its targets was down for that reason could
// not be recognised as poison). Only a variant that still answers sets the
// pace (IsPacing); one that stops is caught by its deadline.
constexpr std::size_t kPaceBehind = 256;
// Per loop turn, at most this many messages are taken from one socket, so a
// flood from one peer cannot starve the others or the deadlines.
constexpr int kMaxMessagesPerTurn = 1000;
// Client requests cost more (a request can be 1 MiB of JSON to check and
// normalise): a turn takes at most this many, and stops taking them after
// kClientTurnBudget, so one client's flood cannot hold up the variants'
// replies and the deadlines (found by an outside test: 3,000 pipelined
// 10 KB requests made one turn last 800 ms, and three idle variants were
// killed for pongs that had arrived meanwhile).
constexpr int kMaxClientMessagesPerTurn = 256;
constexpr std::chrono::milliseconds kClientTurnBudget{2};
// A turn that starts this much later than the poll asked for means nvsd
// itself was not running (a stopped process, a starved host): deadlines that
// passed meanwhile are judged only after the variants' socket has been read
// again on a later turn, once ZeroMQ's I/O thread caught up too.
constexpr std::chrono::milliseconds kStallThreshold{50};
// While a dead variant's connection may still hold replies, nvsd looks
// again this often (zmq_poll's finest timeout).
constexpr std::chrono::milliseconds kExitPoll{1};
// fsync "always", one machine: the longest a commit's verdict, written and
// answered, waits for its fsync when no admit's fsync carries it sooner.
constexpr std::chrono::milliseconds kVerdictSyncDelay{5};
// Cluster mode: the longest a leader's records wait for a write of their
// own when no admit (or refusal, report, checkpoint) carries them sooner.
constexpr std::chrono::milliseconds kClusterLazy{10};
// Cluster mode: the most commands a leader admits in one etcd write (the
// one it dispatches and those queued behind it; see Dispatch).
constexpr std::size_t kAdmitAhead = 16;
// Cluster mode: etcd takes at most 1.5 MiB per request (its default
// --max-request-bytes), and the JSON gateway carries keys and values in
// base64 (4/3 of their size). So a write carries at most 1 MiB of keys and
// values (a value over that is not written: said in the log), a batch is
// closed at 512 KiB of admits, and a command over 256 KiB (its normal form)
// is refused in cluster mode.
constexpr std::size_t kClusterWriteBytes = 1u << 20;
constexpr std::size_t kClusterBatchBytes = 512u << 10;
constexpr std::size_t kClusterMaxCommandBytes = 256u << 10;
// A COMMIT verdict record over this goes to etcd with its result left out
// (see Replicate): the command is committed on every member all the same.
constexpr std::size_t kClusterMaxRecordBytes = 512u << 10;
// A client's backlog of replies (see Supervisor::Impl::Backlog) beyond
// this many bytes cuts it off, whatever client_backlog_limit says.
constexpr std::size_t kMaxBacklogBytes = 64u << 20;
constexpr std::size_t kMaxAllBacklogsBytes = 256u << 20;
// Clients cut off whose later requests are still recognised and ignored.
constexpr std::size_t kMaxCutOffRemembered = 1024;
// A sync round's catch-up goes out this many requests ahead of the
// variant's answers (PumpPaced), well below kMaxInFlightPerVariant.
constexpr std::size_t kCatchUpWindow = 128;
// After a spare probe failed (died, could not start, said something), the
// next one waits this long: a program that dies at start must not become a
// fork loop.
constexpr std::chrono::milliseconds kSpareRespawn{1000};
// A restart waits for a moment when no command is undecided, at most this long.
constexpr std::chrono::milliseconds kMaxRestartDelay{20};
constexpr std::chrono::microseconds kRestartHoldoff{3000};

struct Variant {
  VariantConfig config;
  // Changed only by Impl::Transit (the table in nvs/core/lifecycle.h).
  Life life = Life::kDown;
  Life life_before_exit = Life::kDown;  // (for the log: what it was doing when its exit was seen)
  int incarnation = 0;
  std::string identity;  // NVS_VARIANT of the current incarnation
  std::unique_ptr<Process> process;
  // What is out at its process, held or paced (a sync round's catch-up).
  VariantChannel channel;
  Clock::time_point state_since;
  RestartIntensity intensity{5, 10000};
  int restarts = 0;
  // How long it took to answer its last votes (ms after dispatch, newest
  // last, at most kPaceWindow): who sets the pace (Impl::UpdatePace).
  std::deque<double> answer_ms;
  std::string last_fault;
  std::optional<std::string> round_digest;
  std::string stop_reason;
  std::optional<std::string> restart_pending;  // kDown: spawn at the end of a loop turn (SpawnPendingRestarts)
  // Why it refused the checkpoint's restore, or gave another digest (a sync round).
  std::optional<std::string> refused_checkpoint;
  Clock::time_point restart_requested_at;
  // When its process was seen gone (kExited, or kStopping about to be
  // reaped): what was sent before counts as delivered (Delivered).
  std::optional<Clock::time_point> exit_seen_at;
};

struct ClientAddress {
  std::vector<std::string> envelope;  // routing frames, including a REQ's empty delimiter
  // Who sent it: the name of its CURVE key in authorized_keys (its key when
  // unnamed), as the ZAP handler vouched for it; "" on a plain endpoint,
  // where nobody is authenticated. Never a field the client fills in.
  std::string user;
};

struct Command {
  std::uint64_t id = 0;
  // The ordinal of its verdict record in the journal (Impl::AppendRecord); 0: none.
  std::uint64_t verdict_record = 0;
  bool is_query = false;
  std::string client_key;    // the client's routing id: its queue (AdmissionQueue)
  std::optional<std::int64_t> expires_at_ms;  // the client's deadline (CLIENT.md §2)
  std::uint64_t seq = 0;     // commands: the sequence number given at dispatch
  std::string payload;       // normal-form JSON
  std::string fingerprint;
  std::int64_t time_ns = 0;
  std::string request_id;
  ClientAddress client;
  std::vector<ClientAddress> also_reply;  // retries of the same request id while it was pending
  std::string standby_active;             // standby: the active it was sent to
  Clock::time_point admitted_at;
  Clock::time_point dispatched_at;
  std::map<std::string, voter::Outcome> outcomes;  // one per participant
  std::map<std::string, json> evidence;            // per variant: death details, stderr tail
  std::optional<voter::Verdict> verdict;           // once decided
  std::string report_id;                           // POISON / NO_QUORUM
  std::map<std::string, double> answered_ms;       // per variant: its reply, ms after dispatch (for reports)
  double decided_ms = 0;                           // the verdict, ms after dispatch
  bool probed = false;                             // standby probe policy: a probe ran (or was tried)
  json probe = json::object();                     // what the probe did (for the report); empty: no probe
  // Every failure on it was a hang: it was retested on fresh processes
  // (Retest), whose outcomes stand in for the hung variants' in the vote.
  bool retested = false;
  json retest = json::object();                    // what the retest did (for events and reports)
  std::map<std::string, voter::Outcome> retest_outcomes;
  bool expired = false;  // agreed on after its expires_at_ms: refused and rolled back (OnExpired)
  bool admitted = false;  // cluster leader: admitted ahead (its seq given, its admit written) while it waits its turn
};

// A verdict record with only what every kind has (its seq, request id and
// key, and the verdict); the caller adds the rest.
inline JournalRecord VerdictOf(std::uint64_t seq, std::string id, std::string key, std::string verdict) {
  JournalRecord record;
  record.type = "verdict";
  record.seq = seq;
  record.id = std::move(id);
  record.key = std::move(key);
  record.verdict = std::move(verdict);
  return record;
}

// The latest durations of one kind (us), for status: p50 and p99 of the
// last 1000 (null before the first).
// What nvsd counts for its metrics endpoint (Impl::RenderMetrics; the
// README lists them). Plain numbers: the loop owns them and renders the
// page itself when a scrape asks (metrics::PageRequests).
struct MetricCounters {
  std::map<std::pair<std::string, std::string>, std::uint64_t> verdicts;  // (verdict, command|query)
  std::uint64_t dispatched[2] = {0, 0};                                   // commands, queries
  std::uint64_t replies[8] = {};                                         // by proto::ClientStatus
  metrics::Histogram command_seconds{metrics::LatencyBuckets()};          // dispatch -> verdict, commands
  metrics::Histogram query_seconds{metrics::LatencyBuckets()};            // the same, queries
  metrics::Histogram journal_sync_seconds{metrics::LatencyBuckets()};
  std::map<std::pair<std::string, std::string>, std::uint64_t> deaths;    // (variant, cause)
  std::map<std::string, std::uint64_t> hangs, divergences;                // by variant
  std::map<std::string, metrics::Histogram> answer_seconds;               // by variant
  std::map<std::string, std::uint64_t> probes;                            // by outcome
  std::uint64_t quarantines = 0, blocked = 0, promotions = 0, leaderships = 0, pace_changes = 0;
};

// The pace: over a variant's last kPaceWindow answers, one whose median is
// kPaceFactor times the next slowest's (and kPaceMinMs more) falls behind
// and, once kCatchUpWindow commands behind, holds every command back; it
// stops being named below kPaceClearFactor.
constexpr std::size_t kPaceWindow = 64;
constexpr std::size_t kPaceMinSamples = 16;
constexpr double kPaceFactor = 3.0;
constexpr double kPaceClearFactor = 2.0;
constexpr double kPaceMinMs = 1.0;
constexpr std::chrono::seconds kPaceIdle{10};

class LatencyWindow {
 public:
  void Add(double us) {
    samples_.push_back(us);
    if (samples_.size() > 1000) samples_.pop_front();
  }
  json Percentile(double q) const {
    if (samples_.empty()) return nullptr;
    std::vector<double> us(samples_.begin(), samples_.end());
    const auto at = us.begin() + static_cast<std::ptrdiff_t>(q * static_cast<double>(us.size() - 1));
    std::nth_element(us.begin(), at, us.end());
    return *at;
  }
  json Json() const { return {{"p50_us", Percentile(0.5)}, {"p99_us", Percentile(0.99)}}; }

 private:
  std::deque<double> samples_;
};

struct CommittedEntry {
  std::uint64_t seq;
  std::int64_t time_ns;
  std::string payload;
};

// The bytes of a HexIdentity (what is not hex is skipped).
inline std::string Unhex(const std::string& hex) {
  const auto nibble = [](char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
  };
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    const int hi = nibble(hex[i]);
    const int lo = nibble(hex[i + 1]);
    if (hi >= 0 && lo >= 0) out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

inline std::string HexIdentity(const std::string& bytes) {
  static const char* const kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
  }
  return out;
}

inline double MillisSince(Clock::time_point start, Clock::time_point now) {
  return std::chrono::duration<double, std::milli>(now - start).count();
}

// JSON text of a value that may hold bytes from outside (a variant's stderr,
// a client's strings): invalid UTF-8 becomes U+FFFD instead of an exception.
inline std::string Dump(const json& value, int indent = -1) {
  return value.dump(indent, ' ', false, json::error_handler_t::replace);
}

inline json ParseOrString(const std::string& text) {
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  return value.is_discarded() ? json(text) : value;
}

// The types Supervisor::Impl keeps its state in (impl.h names each).
namespace nvsd {

struct Sockets {
  zmq::context_t context{1};
  // client_curve: the ZAP handler. Declared before `clients` so that it is
  // closed after it: a CURVE server without its handler lets anyone in.
  std::unique_ptr<ClientGate> client_gate;
  ZmqClientTransport clients{context};
  ZmqVariantTransport variants{context};
  std::optional<ZmqEventSink> events;  // when configured
};

struct Round {
  enum class Phase { kDigests, kSnapshot, kRestoring } phase = Phase::kDigests;
  std::set<std::string> participants;
  std::set<std::string> trusted;    // voted until now, or rolled back from the checkpoint
  std::set<std::string> receivers;  // get the donor's state
  std::string chosen_digest;
  std::string donor;
  Clock::time_point started;
};

struct ClosedSegment {
  std::uint64_t index = 0;
  std::uint64_t max_seq = 0;  // no record in it has a higher sequence number
};

struct OutgoingReply {
  ClientAddress to;
  proto::ClientReply reply;
  std::uint64_t record = 0;  // the verdict record it rests on (an ordinal); 0: none
};

struct JournalTrouble {
  std::string kind;    // "full", "read_only", "io_error", "in_doubt"
  std::string reason;  // the system's words, with the file
  Clock::time_point since;
  int attempts = 0;    // RetryJournal's tries so far
};

struct UnwrittenReport {
  std::string id;
  std::string text;
  std::string verdict_record;
};

struct Backlog {
  std::deque<std::vector<std::string>> messages;  // each: the frames of one reply
  std::size_t bytes = 0;
};

struct ClientCounters {
  std::uint64_t cut_off = 0;             // clients cut off
  std::uint64_t replies_dropped = 0;     // replies dropped with them
  std::uint64_t replies_undeliverable = 0;  // the client had disconnected
  std::uint64_t requests_ignored = 0;    // from a client that was cut off
  std::uint64_t rejected = 0;            // requests answered `rejected` for their bytes
};

struct Suspect {
  std::uint64_t seq = 0;
  std::int64_t time_ns = 0;
  std::string request_id;
  std::string client;  // hex routing id, as journaled
  std::string fingerprint;
  std::string payload;
  std::string key;     // the client's CURVE key name, as journaled
  // Cluster mode, found undecided in etcd by a new leader: the old one may
  // have answered it `committed` (a commit's reply does not wait for its
  // verdict to reach etcd), so one fresh processes survive and agree on is
  // committed, at its seq, with their result, not abandoned.
  bool rederive = false;
  // rederive: the client's deadline (Unix ms; 0: none). A commit before it
  // was in etcd before its reply (FlushJournalAndReplies), so one past it
  // and undecided was never answered `committed`: it is not carried out.
  std::int64_t expires_at_ms = 0;
  int retests = 0;  // rederive: retests that could not run on every program (tried again, up to 3)
  // Retries of its request id while it is unsettled: answered with what it
  // comes to (it may be committed, so they are neither refused nor run).
  std::vector<ClientAddress> retries;
};

struct PendingRelease {
  ClientAddress to;
  std::string request_id;
  std::string report;
  std::string note;
  json by;          // the reviewer's key name, or "unauthenticated"
  json claimed_by;  // on a plain endpoint: the name the client gave (unchecked)
};

struct RunningRetest {
  std::unique_ptr<Retest> retest;
  std::optional<PendingRelease> release;  // a release's retest (then `command` is unused)
  std::uint64_t command = 0;  // 0: the suspect at the front of `suspects`
  std::map<std::string, std::unique_ptr<Process>> processes;
  std::map<std::string, Clock::time_point> exit_seen;  // process gone, its last messages maybe still coming
};

struct Refusing {
  Clock::time_point since;
  Clock::time_point last_event;
  std::uint64_t total = 0;
  std::uint64_t unreported = 0;
  std::string reason;
};

struct Probe {
  enum class Phase { kPreparing, kRestoring, kApplying } phase = Phase::kPreparing;
  std::uint64_t command = 0;  // the command's id
  std::string target;         // the new active, whose program it runs
  std::string identity;
  std::unique_ptr<Process> process;
  bool said_hello = false;
  std::optional<proto::StateReply> snapshot;  // the target's state before the command
  Clock::time_point started;
  Clock::time_point phase_since;
};

struct RecentVerdict {
  std::uint64_t seq;
  bool query;
  std::string kind;
  std::int64_t time_ns;
  double ms;
};

struct Watched {
  const Process* process;
  bool exit = false;    // poll its pidfd
  bool output = false;  // poll its stderr
};

}  // namespace nvsd
}  // namespace nvs::supervisor
