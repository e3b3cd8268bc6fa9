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
#include "nvs/core/blame.h"
#include "nvs/core/checkpointer.h"
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
#include "client_transport.h"
#include "env.h"
#include "event_sink.h"
#include "log.h"
#include "quarantine_store.h"
#include "recovery.h"
#include "variant_transport.h"

extern char** environ;

namespace nvs::supervisor {
namespace {

namespace proto = nvs::protocol;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The life of one variant slot (s6-style: every transition is in
// Impl::SetState and happens for a reason that is logged).
enum class VariantState {
  kDown,      // no process (between a death and the restart)
  kStarting,  // spawned, waiting for hello
  kSyncing,   // said hello; waits for a sync round to restore and check it
  kHealthy,   // votes
  kStopping,  // killed on purpose; waiting for the process to exit
  kFailed,    // restarted too often; left down
};

const char* Name(VariantState state) {
  static const char* const kNames[] = {"down", "starting", "syncing", "healthy", "stopping", "failed"};
  return kNames[static_cast<int>(state)];
}

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
  VariantState state = VariantState::kDown;
  int incarnation = 0;
  std::string identity;  // NVS_VARIANT of the current incarnation
  std::unique_ptr<Process> process;
  // What is out at its process, held or paced (a sync round's catch-up).
  VariantChannel channel;
  Clock::time_point state_since;
  RestartIntensity intensity{5, 10000};
  int restarts = 0;
  std::string last_fault;
  bool needs_sync = true;          // must be restored and checked before it votes
  bool restart_when_idle = false;  // diverged: restart once its FIFO drains
  std::optional<std::string> round_digest;
  std::string stop_reason;
  std::optional<std::string> restart_pending;  // spawn at the end of this loop turn
  // Why it refused the checkpoint's restore, or gave another digest (a sync round).
  std::optional<std::string> refused_checkpoint;
  Clock::time_point restart_requested_at;
  std::optional<Clock::time_point> exit_seen_at;  // process gone, death not judged yet (exit_grace_ms)
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
};

struct CommittedEntry {
  std::uint64_t seq;
  std::int64_t time_ns;
  std::string payload;
};

// The bytes of a HexIdentity (what is not hex is skipped).
std::string Unhex(const std::string& hex) {
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

std::string HexIdentity(const std::string& bytes) {
  static const char* const kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
  }
  return out;
}

double MillisSince(Clock::time_point start, Clock::time_point now) {
  return std::chrono::duration<double, std::milli>(now - start).count();
}

// JSON text of a value that may hold bytes from outside (a variant's stderr,
// a client's strings): invalid UTF-8 becomes U+FFFD instead of an exception.
std::string Dump(const json& value, int indent = -1) {
  return value.dump(indent, ' ', false, json::error_handler_t::replace);
}

json ParseOrString(const std::string& text) {
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  return value.is_discarded() ? json(text) : value;
}

}  // namespace

struct Supervisor::Impl {
  Impl(Config c, Env& e) : env(e), config(std::move(c)) {}

  // The clocks and randomness every decision reads (env.h): Now() and
  // env.UnixNowNs() below, never the system's directly.
  Env& env;
  Config config;
  // The real endpoints (StartShell): ZeroMQ sockets and the ZAP handler.
  // A simulation gives its own transports and has none of these.
  struct Sockets {
    zmq::context_t context{1};
    // client_curve: the ZAP handler. Declared before `clients` so that it is
    // closed after it: a CURVE server without its handler lets anyone in.
    std::unique_ptr<ClientGate> client_gate;
    ZmqClientTransport clients{context};
    ZmqVariantTransport variants{context};
    std::optional<ZmqEventSink> events;  // when configured
  };
  std::unique_ptr<Sockets> sockets;
  // What the decisions use: the client endpoint (client_transport.h), the
  // variants endpoint (variant_transport.h) and the event endpoint
  // (event_sink.h; nullptr: none). The poll loop polls the sockets.
  ClientTransport* client_transport = nullptr;
  VariantTransport* variant_transport = nullptr;
  EventSink* event_sink = nullptr;
  // A simulation's nvsd (Supervisor::Simulated): no subreaper, cgroups,
  // orphan sweep or systemd.
  bool simulated = false;
  std::vector<Variant> variants;
  std::map<std::string, std::size_t> by_identity;
  std::optional<QuarantineStore> quarantine;
  std::filesystem::path bridge;

  AdmissionQueue<Command> waiting;  // admitted, not dispatched: one FIFO per client, served in turn
  std::deque<Command> active;      // dispatched, not all outcomes in
  std::uint64_t next_command_id = 1;
  std::uint64_t last_seq = 0;
  std::vector<CommittedEntry> tail;  // committed since the checkpoint
  std::optional<Checkpoint> checkpoint;
  int commits_since_checkpoint = 0;

  Checkpointer checkpointer;  // a periodic checkpoint in the making

  // A sync round (only when the pipeline is quiescent): every live variant
  // reports its digest; the digest the trusted variants hold wins; a donor's
  // snapshot becomes the checkpoint and is restored into every variant that
  // lacks that state; restored digests are checked before they vote.
  struct Round {
    enum class Phase { kDigests, kSnapshot, kRestoring } phase = Phase::kDigests;
    std::set<std::string> participants;
    std::set<std::string> trusted;    // voted until now, or rolled back from the checkpoint
    std::set<std::string> receivers;  // get the donor's state
    std::string chosen_digest;
    std::string donor;
    Clock::time_point started;
  };
  // The state dir (locked while nvsd runs), and the journal segment being
  // written in it.
  std::unique_ptr<PosixStateDir> posix_state;  // the real one (StartShell)
  StateDir* state = nullptr;                   // what nvsd reads and writes
  std::unique_ptr<JournalWriter> journal;
  FsyncPolicy journal_policy = FsyncPolicy::kAlways;
  std::uint64_t journal_segment = 0;  // index of the segment being written
  struct ClosedSegment {
    std::uint64_t index = 0;
    std::uint64_t max_seq = 0;  // no record in it has a higher sequence number
  };
  std::deque<ClosedSegment> closed_segments;  // oldest first
  // The checkpoint before the current one (checkpoint.prev.json): recovery
  // falls back to it, so the journal it needs is kept too.
  std::optional<Checkpoint> previous_checkpoint;
  std::optional<Checkpoint> saved_checkpoint;  // what checkpoint.json holds
  // Every variant refused the checkpoint: nvsd does not serve (the reason
  // names the file and the way out).
  std::optional<std::string> checkpoint_problem;
  // The file `checkpoint` was read from or written to (kCheckpointFile or,
  // after a fallback at start, kPreviousCheckpointFile): what a message names.
  std::string checkpoint_file = kCheckpointFile;
  // The last checkpoint could not be written (SaveCheckpoint); status says so.
  std::optional<std::string> checkpoint_error;
  // Storage trouble: the journal (or a quarantine report) could not be
  // written. nvsd refuses commands (`unavailable`, with the reason), answers
  // reads, and tries again every second (RetryJournal).
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
  std::optional<JournalTrouble> journal_trouble;
  Clock::time_point journal_retry_at{};
  // Replies whose verdict records may or may not be on disk (the writer
  // could not cut them off): held until that is settled (RetryJournal).
  std::vector<OutgoingReply> replies_in_doubt;
  // Quarantines whose reports could not be written yet (QuarantineUnwritten).
  struct UnwrittenReport {
    std::string id;
    std::string text;
    std::string verdict_record;
  };
  std::vector<UnwrittenReport> unwritten_reports;
  // Replies wait here until the journal records they depend on are flushed
  // (group commit: one flush per loop turn, then every reply of the turn).
  std::vector<OutgoingReply> outbox;
  // Every journal record appended gets the next ordinal (AppendRecord); a
  // reply names the ordinal of the verdict record it rests on, so a failed
  // flush settles exactly the replies whose records it lost, and never one
  // resting on a record already on disk (a retry answered from memory).
  std::uint64_t journal_appended = 0;
  // The ordinal of the current segment's record 0 (its k-th record is
  // journal_base + k); reset after records are cut off or rolled over.
  std::uint64_t journal_base = 0;
  // Final replies by request id, so a retry is answered, never re-applied.
  // (Those recovery read from before the checkpoint are kept as their
  // verdict records' text, read on a retry: RememberedReply.)
  RequestMemory answered{config.remembered_requests};

  // Replies a client has not taken yet: its connection's ZeroMQ queue was
  // full (the client socket is ROUTER_MANDATORY, so a full queue is an
  // error, never a silent drop). They go out in order as it drains.
  struct Backlog {
    std::deque<std::vector<std::string>> messages;  // each: the frames of one reply
    std::size_t bytes = 0;
  };
  std::map<std::string, Backlog> backlogs;  // by routing id
  // Clients cut off for not taking their replies (client_backlog_limit):
  // their later requests are not carried out. Oldest first, bounded.
  std::deque<std::string> cut_off_order;
  std::set<std::string> cut_off;
  struct ClientCounters {
    std::uint64_t cut_off = 0;             // clients cut off
    std::uint64_t replies_dropped = 0;     // replies dropped with them
    std::uint64_t replies_undeliverable = 0;  // the client had disconnected
    std::uint64_t requests_ignored = 0;    // from a client that was cut off
    std::uint64_t rejected = 0;            // requests answered `rejected` for their bytes
  } client_counters;
  LogThrottle rejected_log{10, std::chrono::seconds(1)};
  LogThrottle undeliverable_log{10, std::chrono::seconds(1)};

  // Commands the journal shows admitted but not decided when nvsd last
  // stopped: it may have sent them to its variants, so each is retested
  // (Retest) before anything else is dispatched, and quarantined if it
  // kills the fresh processes, never simply delivered again.
  struct Suspect {
    std::uint64_t seq = 0;
    std::int64_t time_ns = 0;
    std::string request_id;
    std::string client;  // hex routing id, as journaled
    std::string fingerprint;
    std::string payload;
    std::string key;     // the client's CURVE key name, as journaled
  };
  std::deque<Suspect> suspects;
  // The retest in progress (one at a time): of a hung-only command (its id)
  // or of suspects.front() (command 0). Its processes, by identity.
  // A release waiting for nvsd's own retest of the command (its answer goes
  // out when the retest is done).
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
  std::optional<RunningRetest> retest;
  int retest_probes_started = 0;

  // Why nvsd cannot take commands at all now (status), or nullopt.
  std::optional<std::string> unavailable_reason;
  // Requests answered `unavailable` since a command was last dispatched
  // (the `unavailable` and `available` events).
  struct Refusing {
    Clock::time_point since;
    Clock::time_point last_event;
    std::uint64_t total = 0;
    std::uint64_t unreported = 0;
    std::string reason;
  };
  std::optional<Refusing> refusing;
  // The start of the last read of the variants' socket that emptied it:
  // a deadline is only judged once a read that began after it found no
  // reply (see CheckDeadlines).
  Clock::time_point variants_drained_at{};
  bool stalled = false;       // this turn began long after the poll was due
  bool recheck_soon = false;  // the next turn comes at once (after a stall)

  // standby, policy "probe": a disposable process of the new active's
  // program, restored to the state before the command the old active failed
  // on, that runs the command first. It is not a variant: it never votes and
  // is never restarted; its identity is "probe.N".
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
  std::optional<Probe> probe;
  // A spare: a probe process started ahead of need for the program of the
  // variant that would be promoted next, idle after its hello. A probe then
  // costs a snapshot, a restore and the command, not a process start.
  std::optional<Probe> spare;
  Clock::time_point spare_not_before;  // after a spare failed: not again before this
  int probes_started = 0;

  std::optional<Round> round;
  bool tie_retried = false;  // the last round ended in a digest tie and was retried from the checkpoint
  std::vector<std::string> reports_awaiting_pre_state;

  bool stopping = false;
  bool ready = false;  // the first sync round is done
  // standby mode: the variant that takes commands (the others follow it).
  bool standby = false;
  std::string active_name;
  // systemd's watchdog (WATCHDOG_USEC): petted from the loop at half the interval.
  std::optional<milliseconds> watchdog_every;
  Clock::time_point watchdog_last;
  Clock::time_point started_at = Now();
  std::uint64_t commits = 0;
  struct RecentVerdict {
    std::uint64_t seq;
    bool query;
    std::string kind;
    std::int64_t time_ns;
    double ms;
  };
  std::deque<RecentVerdict> recent_verdicts;  // the last 10, oldest first

  // ---- small helpers ------------------------------------------------------

  Clock::time_point Now() const { return env.Now(); }

  Variant* Find(const std::string& name) {
    return const_cast<Variant*>(std::as_const(*this).Find(name));
  }
  const Variant* Find(const std::string& name) const {
    for (const auto& v : variants) {
      if (v.config.name == name) return &v;
    }
    return nullptr;
  }

  Command* FindActive(std::uint64_t id) {
    for (auto& c : active) {
      if (c.id == id) return &c;
    }
    return nullptr;
  }

  // Events carry no result values (the event socket is read by whoever can
  // reach it, SECURITY.md): a retest's probes are published without theirs,
  // wherever a retest appears in the event (a verdict carries one too).
  static void StripProbeResults(json& value) {
    if (value.is_array()) {
      for (auto& item : value) StripProbeResults(item);
      return;
    }
    if (!value.is_object()) return;
    if (auto probes = value.find("probes"); probes != value.end() && probes->is_array()) {
      for (auto& p : *probes) {
        if (p.is_object()) p.erase("result");
      }
    }
    for (auto& [key, member] : value.items()) StripProbeResults(member);
  }

  void Publish(const std::string& event, json body) {
    if (event_sink == nullptr) return;
    StripProbeResults(body);
    body["event"] = event;
    body["time_ns"] = env.UnixNowNs();
    const std::string text = body.dump(-1, ' ', false, json::error_handler_t::replace);
    event_sink->Publish(event, text);
  }

  // `record`: the ordinal of the journal record the reply rests on (0: none).
  void Reply(const ClientAddress& to, const proto::ClientReply& reply, std::uint64_t record = 0) {
    if (reply.status == proto::ClientStatus::kUnavailable) NoteUnavailable(reply.reason);
    outbox.push_back({to, reply, record});
  }

  // Queues a journal record; its ordinal.
  std::uint64_t AppendRecord(std::string_view payload) {
    journal->Append(payload);
    return ++journal_appended;
  }

  // Answers `unavailable` are published (CLIENT.md §5): the first at once,
  // then at most one event a second while they go on, each with how many
  // requests were so answered since the last one and the latest reason;
  // `available` once a command is dispatched again.
  void NoteUnavailable(const std::string& reason) {
    const auto now = Now();
    if (!refusing) refusing = Refusing{now, {}, 0, 0, ""};
    ++refusing->total;
    ++refusing->unreported;
    refusing->reason = reason;
    if (refusing->total == 1 || now - refusing->last_event >= std::chrono::seconds(1)) PublishUnavailable(now);
  }

  void PublishUnavailable(Clock::time_point now) {
    if (!refusing || refusing->unreported == 0) return;
    Publish("unavailable", {{"reason", refusing->reason}, {"requests", refusing->unreported}});
    Log(LogLevel::kWarn, "answered_unavailable", {{"reason", refusing->reason}, {"requests", refusing->unreported}});
    refusing->unreported = 0;
    refusing->last_event = now;
  }

  void NoteDispatched() {
    if (!refusing) return;
    PublishUnavailable(Now());
    const double ms = MillisSince(refusing->since, Now());
    Publish("available", {{"refused", refusing->total}, {"after_ms", ms}});
    Log(LogLevel::kInfo, "available", {{"refused", refusing->total}, {"after_ms", ms}});
    refusing.reset();
  }

  // Makes the journal durable (as the fsync policy says), then sends every
  // reply of this turn. A journal that cannot be written turns committed
  // replies into `unavailable`: nothing is acknowledged that is not on disk.
  void FlushJournalAndReplies() {
    if (!outbox.empty() || (journal && journal->pending())) {
      if (journal) {
        Flushed flushed = journal->Flush();
        if (!flushed.ok()) OnJournalFailure(flushed);
      }
      for (auto& out : outbox) SendNow(out.to, out.reply);
      outbox.clear();
    }
    RetryBacklogs();
  }

  // ---- storage trouble -------------------------------------------------------------

  // The journal could not be written. What the failed flush held is gone
  // (kNotWritten: the writer cut the segment back) or in doubt (kInDoubt: it
  // could not). A commit whose verdict went with it is undone: the variants
  // are put back on the state before it, and its reply says `unavailable`
  // (never carried out), or, in doubt, is held until the writer can cut it
  // off. nvsd then refuses commands, keeps answering reads, and tries again
  // every second (RetryJournal). An outside test filled the disk: a torn
  // record was followed by later ones, 87 acknowledged commits vanished at
  // the restart, and six commands answered `unavailable` had been applied.
  void OnJournalFailure(const Flushed& flushed) {
    const int e = flushed.error.error_number;
    const bool doubt = flushed.result == Flushed::Result::kInDoubt;
    const std::string kind = doubt                            ? "in_doubt"
                             : e == ENOSPC || e == EDQUOT     ? "full"
                             : e == EROFS                     ? "read_only"
                                                              : "io_error";
    std::string reason = DescribeStorageError(e) + " (" + flushed.error.message + ")";
    if (doubt) reason += "; what was written after the last good record may or may not be on disk, and cannot be cut off";
    if (!journal_trouble) {
      Log(LogLevel::kError, "journal_degraded", {{"kind", kind}, {"reason", reason}});
      Publish("journal", {{"state", "degraded"}, {"kind", kind}, {"reason", reason}});
      journal_trouble = JournalTrouble{kind, reason, Now()};
      journal_retry_at = Now() + std::chrono::seconds(1);
    } else {
      // (Not a new retry time: while the segment is in doubt every flush
      // fails, and a turn comes at least every heartbeat, so a retry put
      // off at each failure never came, and nvsd never served again. The
      // simulator found it.)
      journal_trouble->kind = kind;
      journal_trouble->reason = reason;
    }
    // The replies that rest on records the flush lost (or left in doubt):
    // those from this ordinal on. Replies resting on records already on disk
    // (a retry answered from memory) are sent as they are.
    const std::uint64_t first_lost = journal_base + flushed.records_kept + 1;
    journal_base = journal_appended - journal->records();
    std::vector<OutgoingReply> keep;
    for (auto& out : outbox) {
      const auto status = out.reply.status;
      if (out.record < first_lost || status == proto::ClientStatus::kQuarantined ||
          status == proto::ClientStatus::kUnavailable) {
        // (A quarantine rests on its report, written before its verdict: a
        // restart finds the report and blocks the command again.)
        keep.push_back(std::move(out));
        continue;
      }
      if (out.reply.id) answered.Forget(RequestKey(out.to.user, *out.reply.id));  // (a retry must not be told so)
      if (doubt) {
        replies_in_doubt.push_back(std::move(out));
      } else {
        keep.push_back(NotCarriedOut(std::move(out), reason));
      }
    }
    outbox = std::move(keep);
  }

  // A reply whose verdict record never reached the disk: a commit is undone
  // and a refusal withdrawn; either is answered `unavailable` (not carried
  // out), which a retry may change. A refusal told to a client but lost on
  // disk would be carried out after a restart: the command comes back as an
  // undecided admit, and its id is free again.
  OutgoingReply NotCarriedOut(OutgoingReply out, const std::string& reason) {
    if (out.reply.status == proto::ClientStatus::kCommitted) UndoCommit(out.reply.seq);
    out.reply = proto::ClientReply::Unavailable(out.reply.id, "the journal cannot be written (" + reason +
                                                                  "): not carried out");
    out.record = 0;
    return out;
  }

  // A commit whose verdict never reached the disk: out of the tail, and
  // every variant back on the checkpoint and the commits still durable.
  void UndoCommit(std::uint64_t seq) {
    const auto before = tail.size();
    std::erase_if(tail, [&](const CommittedEntry& e) { return e.seq == seq; });
    if (tail.size() < before) {
      --commits;
      commits_since_checkpoint = static_cast<int>(tail.size());
    }
    checkpointer.Abandon();
    for (auto& v : variants) {
      if (v.state == VariantState::kHealthy) v.needs_sync = true;
    }
    Log(LogLevel::kError, "commit_undone", {{"seq", seq}, {"why", "its verdict could not be written to the journal"}});
  }

  // Once a second while the journal is in trouble: cut off what is in
  // doubt, then write and fsync a small record. When both work, nvsd takes
  // commands again.
  void RetryJournal() {
    if (!journal_trouble || Now() < journal_retry_at || !journal) return;
    journal_retry_at = Now() + std::chrono::seconds(1);
    ++journal_trouble->attempts;
    if (journal->in_doubt()) {
      Flushed resolved = journal->Resolve();
      if (!resolved.ok()) return;
      journal_base = journal_appended - journal->records();
    }
    // What was in doubt is cut off now: not carried out, for sure.
    for (auto& out : replies_in_doubt) {
      OutgoingReply settled = NotCarriedOut(std::move(out), journal_trouble->reason);
      Reply(settled.to, settled.reply);
    }
    replies_in_doubt.clear();
    while (!unwritten_reports.empty()) {
      const auto& pending = unwritten_reports.front();
      Status written = quarantine->Write(pending.id, pending.text);
      if (!written.ok()) {
        journal_trouble->reason = "a quarantine report cannot be written: " + written.message();
        return;
      }
      Log(LogLevel::kWarn, "quarantine_written", {{"report", pending.id}});
      AppendRecord(pending.verdict_record);
      unwritten_reports.erase(unwritten_reports.begin());
    }
    JournalRecord mark;
    mark.type = "mark";
    mark.time_ns = env.UnixNowNs();
    mark.note = "the journal can be written again";
    AppendRecord(EncodeJournalRecord(mark));
    Flushed flushed = journal->Flush(/*force=*/true);
    if (!flushed.ok()) {
      OnJournalFailure(flushed);
      return;
    }
    const double ms = MillisSince(journal_trouble->since, Now());
    Log(LogLevel::kWarn, "journal_ok", {{"after_ms", ms}, {"was", journal_trouble->reason}});
    Publish("journal", {{"state", "ok"}, {"after_ms", ms}, {"was", journal_trouble->reason}});
    journal_trouble.reset();
  }

  // Sends one reply now, or queues it behind the client's backlog. Never a
  // silent drop: a reply that cannot be delivered is counted and logged.
  void SendNow(const ClientAddress& to, const proto::ClientReply& reply) {
    const std::string& peer = to.envelope[0];
    if (cut_off.count(peer) != 0) {
      ++client_counters.replies_dropped;  // (its cut-off was logged, with what it dropped then)
      return;
    }
    std::vector<std::string> frames = to.envelope;
    frames.push_back(proto::Encode(reply));
    if (auto it = backlogs.find(peer); it != backlogs.end()) {
      Queue(peer, it->second, std::move(frames));
      return;
    }
    switch (TrySend(frames)) {
      case SendResult::kSent: return;
      case SendResult::kFull: Queue(peer, backlogs[peer], std::move(frames)); return;
      case SendResult::kGone: Undeliverable(peer, 1); return;
    }
  }

  using SendResult = ClientTransport::SendResult;
  SendResult TrySend(const std::vector<std::string>& frames) { return client_transport->Send(frames); }

  void Queue(const std::string& peer, Backlog& backlog, std::vector<std::string> frames) {
    for (const auto& f : frames) backlog.bytes += f.size();
    backlog.messages.push_back(std::move(frames));
    if (backlog.messages.size() > config.client_backlog_limit || backlog.bytes > kMaxBacklogBytes) {
      CutOff(peer);
      return;
    }
    // All clients together: beyond kMaxAllBacklogsBytes, the one holding the
    // most is cut off (many slow readers must not exhaust nvsd's memory).
    std::size_t total = 0;
    const Backlog* largest = nullptr;
    std::string largest_peer;
    for (const auto& [p, b] : backlogs) {
      total += b.bytes;
      if (largest == nullptr || b.bytes > largest->bytes) {
        largest = &b;
        largest_peer = p;
      }
    }
    if (total > kMaxAllBacklogsBytes) CutOff(largest_peer);
  }

  // A client that has not taken client_backlog_limit replies is cut off:
  // what waits for it is dropped, and its later requests are not carried
  // out (ZeroMQ cannot close one peer's connection of a ROUTER socket; a
  // client that reconnects gets a new routing id and a clean slate).
  void CutOff(const std::string& peer) {
    auto it = backlogs.find(peer);
    const std::size_t dropped = it != backlogs.end() ? it->second.messages.size() : 0;
    const std::size_t bytes = it != backlogs.end() ? it->second.bytes : 0;
    if (it != backlogs.end()) backlogs.erase(it);
    ++client_counters.cut_off;
    client_counters.replies_dropped += dropped;
    Log(LogLevel::kError, "client_cut_off",
        {{"peer", HexIdentity(peer)}, {"replies_dropped", dropped}, {"bytes_dropped", bytes},
         {"why", "it did not take its replies (client_backlog_limit " + std::to_string(config.client_backlog_limit) +
                     "): its later requests are ignored until it reconnects"}});
    cut_off.insert(peer);
    cut_off_order.push_back(peer);
    while (cut_off_order.size() > kMaxCutOffRemembered) {
      cut_off.erase(cut_off_order.front());
      cut_off_order.pop_front();
    }
  }

  // Replies for a client that disconnected before it took them: counted and
  // logged (at most 10 lines a second).
  void Undeliverable(const std::string& peer, std::size_t replies) {
    client_counters.replies_undeliverable += replies;
    if (undeliverable_log.Admit(Now())) {
      Log(LogLevel::kWarn, "reply_undeliverable",
          {{"peer", HexIdentity(peer)}, {"replies", replies}, {"why", "the client disconnected before it took them"}});
    }
  }

  // Sends what waits in the backlogs, in order, as far as each client's
  // queue takes it.
  void RetryBacklogs() {
    for (auto it = backlogs.begin(); it != backlogs.end();) {
      Backlog& b = it->second;
      bool gone = false;
      while (!b.messages.empty()) {
        const SendResult result = TrySend(b.messages.front());
        if (result == SendResult::kFull) break;
        if (result == SendResult::kGone) {
          gone = true;
          break;
        }
        for (const auto& f : b.messages.front()) b.bytes -= f.size();
        b.messages.pop_front();
      }
      if (gone) Undeliverable(it->first, b.messages.size());
      it = gone || b.messages.empty() ? backlogs.erase(it) : std::next(it);
    }
    const auto now = Now();
    if (const auto n = undeliverable_log.TakeSuppressed(now)) {
      Log(LogLevel::kWarn, "reply_undeliverable_suppressed", {{"count", n}});
    }
    if (const auto n = rejected_log.TakeSuppressed(now)) Log(LogLevel::kInfo, "client_rejections_suppressed", {{"count", n}});
  }

  int HealthyVoters() const {
    int n = 0;
    for (const auto& v : variants) n += (Voting(v) && !v.restart_when_idle) ? 1 : 0;
    return n;
  }

  int NotFailed() const {
    int n = 0;
    for (const auto& v : variants) n += v.state != VariantState::kFailed ? 1 : 0;
    return n;
  }

  void SetState(Variant& v, VariantState state, const std::string& why) {
    if (v.state == state) return;
    v.state = state;
    v.state_since = Now();
    Log(state == VariantState::kFailed ? LogLevel::kError : LogLevel::kInfo, "variant_state",
        {{"variant", v.config.name}, {"state", Name(state)}, {"incarnation", v.incarnation}, {"why", why}});
    Publish("variant", {{"variant", v.config.name},
                        {"state", Name(state)},
                        {"pid", v.process ? v.process->pid() : -1},
                        {"incarnation", v.incarnation},
                        {"why", why}});
  }

  // Sends a request to `v`, or holds it (VariantChannel says which, and why).
  // Not sent (its connection is gone, or full): the request stays out, and
  // the variant's exit or its deadline settles it.
  void Send(Variant& v, const proto::Request& request, Purpose purpose, std::string_view reply_type,
            std::uint64_t command = 0) {
    Sent sent{purpose, reply_type, proto::SeqOf(request), command, {}};
    if (auto out = v.channel.Send(sent, proto::Encode(request), Now())) SendToIdentity(v.identity, out->bytes);
  }

  // One message to a variant or probe through the ROUTER_MANDATORY variants
  // socket; false when its connection is gone or its queue is full.
  bool SendToIdentity(const std::string& identity, const std::string& bytes) {
    return variant_transport->Send(WireId(identity), bytes);
  }

  // Whether the connection that carried `identity`'s messages is gone from
  // the variants socket, so that nothing it sent can still arrive (used
  // only for processes seen dead).
  bool ConnectionGone(const std::string& identity) { return variant_transport->ConnectionGone(WireId(identity)); }

  // Its head was answered: what was held or paced behind it goes out. A
  // held command decided meanwhile other than by a commit (a poison, a
  // rollback) is not sent at all: it could only kill another variant, and
  // the variant's state is repaired by the round that follows a rollback.
  // (A committed one is: a slower variant must still apply it, and its
  // late reply is still compared.)
  void OnAnswered(Variant& v) {
    std::vector<Sent> dropped;
    const auto undeliverable = [&](const Sent& sent) {
      const Command* c = FindActive(sent.command);
      return c != nullptr && c->verdict && (c->verdict->kind != voter::VerdictKind::kCommit || c->expired);
    };
    for (const auto& out : v.channel.Answered(Now(), undeliverable, &dropped, kCatchUpWindow)) {
      SendToIdentity(v.identity, out.bytes);
    }
    for (const Sent& sent : dropped) {
      Command* c = FindActive(sent.command);
      auto& outcome = c->outcomes[v.config.name];
      if (outcome.kind == voter::OutcomeKind::kPending) {
        outcome.kind = voter::OutcomeKind::kExcluded;
        outcome.detail = "not delivered: decided (" + std::string(voter::ToString(c->verdict->kind)) +
                         ") before it could be sent";
      }
    }
  }

  // Requests sent and held.
  static std::size_t InFlight(const Variant& v) { return v.channel.in_flight(); }

  // ---- lifecycle ------------------------------------------------------------

  // ---- orphans ---------------------------------------------------------------------
  //
  // nvsd is a child subreaper (PR_SET_CHILD_SUBREAPER, set in Start): a
  // process a variant started that left its process group (setsid) and
  // outlived it is handed to nvsd, not to init. Any child of nvsd that is
  // not one of its variants, probes or retests is such an orphan: killed
  // and reaped. (An outside test had a variant's setsid child survive the
  // variant's kill and nvsd's stop.)
  std::set<pid_t> orphans;  // killed, not reaped yet
  Clock::time_point next_orphan_check{};
  // A cgroup per variant process where the host offers one (cgroups.h);
  // else nullptr, and `no_cgroups` says why.
  std::unique_ptr<VariantCgroups> cgroups;
  std::string no_cgroups;

  std::set<std::string> LiveIdentities() const {
    std::set<std::string> live;
    for (const auto& v : variants) {
      if (v.process) live.insert(v.identity);
    }
    if (probe && probe->process) live.insert(probe->identity);
    if (spare && spare->process) live.insert(spare->identity);
    if (retest) {
      for (const auto& [identity, process] : retest->processes) live.insert(identity);
    }
    return live;
  }

  // The cgroups of processes that are gone: whatever is left in them is killed.
  void EmptyDeadCgroups() {
    if (!cgroups) return;
    const auto live = LiveIdentities();
    for (const auto& identity : cgroups->identities()) {
      if (live.count(identity) != 0) continue;
      if (const int killed = cgroups->Destroy(identity); killed > 0) {
        Log(LogLevel::kWarn, "cgroup_emptied",
            {{"process", identity}, {"killed", killed},
             {"why", "processes it started outlived it: nothing a variant starts may outlive it"}});
      }
    }
    cgroups->Retry();
  }

  std::set<pid_t> OwnChildren() const {
    std::set<pid_t> known;
    const auto add = [&](const std::unique_ptr<Process>& p) {
      if (p) known.insert(p->pid());
    };
    for (const auto& v : variants) add(v.process);
    if (probe) add(probe->process);
    if (spare) add(spare->process);
    if (retest) {
      for (const auto& [identity, process] : retest->processes) add(process);
    }
    return known;
  }

  void KillOrphans(bool now = false) {
    if (simulated) return;
    const auto at = Now();
    if (!now && at < next_orphan_check) return;
    next_orphan_check = at + milliseconds(250);
    EmptyDeadCgroups();
    const std::set<pid_t> known = OwnChildren();
    std::error_code ec;
    for (std::filesystem::directory_iterator task("/proc/self/task", ec), end; !ec && task != end; task.increment(ec)) {
      std::ifstream children(task->path() / "children");
      for (pid_t pid = 0; children >> pid;) {
        if (known.count(pid) != 0 || orphans.count(pid) != 0) continue;
        std::string name;
        std::ifstream(std::filesystem::path("/proc") / std::to_string(pid) / "comm") >> name;
        kill(pid, SIGKILL);
        orphans.insert(pid);
        Log(LogLevel::kWarn, "orphan_killed",
            {{"pid", pid}, {"name", name}, {"why", "a process a variant started outlived it (it left the variant's "
                                                    "process group): nothing a variant starts may outlive it"}});
      }
    }
    for (auto it = orphans.begin(); it != orphans.end();) {
      it = waitpid(*it, nullptr, WNOHANG) != 0 ? orphans.erase(it) : std::next(it);
    }
  }

  // ---- routing ids ---------------------------------------------------------------
  //
  // A process's identity (router-a.3, probe.7, retest.2) names it in logs,
  // events and status. On the variants socket it is known by its routing id:
  // the identity, a dot and 32 random hex digits, given to it in NVS_VARIANT
  // and to nobody else. A process that guesses the identity of the next
  // incarnation (the event socket announces restarts) cannot connect as it:
  // a message from an unknown routing id is ignored, and nothing is sent to
  // one. (An outside test did so over a tcp variant endpoint, received the
  // state and every command, and won a vote with a lie.)
  std::unordered_map<std::string, std::string> wire_of;      // identity -> routing id
  std::unordered_map<std::string, std::string> identity_of;  // routing id -> identity
  std::deque<std::string> wire_order;                        // identities, oldest first
  std::uint64_t unknown_peers = 0;                           // messages from routing ids nvsd never gave out

  const std::string& NewWireId(const std::string& identity) {
    unsigned char random[16];
    env.RandomBytes(random, sizeof random);
    static const char* const kHex = "0123456789abcdef";
    std::string wire = identity + ".";
    for (unsigned char b : random) {
      wire += kHex[b >> 4];
      wire += kHex[b & 15];
    }
    if (auto old = wire_of.find(identity); old != wire_of.end()) identity_of.erase(old->second);
    else wire_order.push_back(identity);
    identity_of[wire] = identity;
    // Only the latest processes are alive: the oldest entries are dead ones.
    while (wire_order.size() > 4096) {
      if (auto it = wire_of.find(wire_order.front()); it != wire_of.end()) {
        identity_of.erase(it->second);
        wire_of.erase(it);
      }
      wire_order.pop_front();
    }
    return wire_of[identity] = std::move(wire);
  }

  // The routing id given to `identity` (itself if none was: it then reaches nobody).
  const std::string& WireId(const std::string& identity) const {
    const auto it = wire_of.find(identity);
    return it == wire_of.end() ? identity : it->second;
  }

  // The identity of a routing id nvsd gave out, or nullptr.
  const std::string* IdentityOf(const std::string& routing_id) {
    const auto it = identity_of.find(routing_id);
    if (it != identity_of.end()) return &it->second;
    if (++unknown_peers == 1 || unknown_peers % 1000 == 0) {
      Log(LogLevel::kWarn, "unknown_variant_peer",
          {{"messages", unknown_peers},
           {"why", "a message on the variants socket from a routing id nvsd never gave out: ignored (a process "
                   "that was not started by nvsd, or a stale one)"}});
    }
    return nullptr;
  }

  // How to start a process of `vc` under `identity`, its stderr going to
  // logs/LOG_NAME. Each call gives the process a new routing id.
  Result<SpawnSpec> SpecFor(const VariantConfig& vc, const std::string& identity, const std::string& log_name) {
    SpawnContext context;
    context.config_dir = config.config_dir;
    context.stdio_bridge = bridge;
    context.endpoint = config.variant_endpoint;
    context.stderr_log = config.state_dir / "logs" / log_name;
    context.stderr_log_bytes = config.stderr_log_bytes;
    context.stderr_tail_bytes = config.stderr_tail_bytes;
    auto spec = SpecForVariant(vc, NewWireId(identity), context);
    if (spec.ok() && cgroups) {
      auto joined = cgroups->Create(identity, vc.limits.processes);
      if (joined.ok()) {
        spec.value().join_cgroups = std::move(joined.value());
      } else {
        Log(LogLevel::kWarn, "cgroup_failed", {{"process", identity}, {"error", joined.status().message()}});
      }
    }
    return spec;
  }

  // Starts a new incarnation. On failure the slot is counted as a failed
  // start and the next restart is attempted through the intensity.
  void Spawn(Variant& v, const std::string& why) {
    by_identity.erase(v.identity);
    ++v.incarnation;
    v.identity = v.config.name + "." + std::to_string(v.incarnation);
    by_identity[v.identity] = static_cast<std::size_t>(&v - variants.data());
    v.channel.Clear();
    v.refused_checkpoint.reset();
    v.needs_sync = true;
    v.restart_when_idle = false;
    v.round_digest.reset();
    v.exit_seen_at.reset();

    auto spec = SpecFor(v.config, v.identity, v.config.name + ".log");
    if (!spec.ok()) {
      Log(LogLevel::kError, "spawn_failed", {{"variant", v.config.name}, {"error", spec.status().message()}});
      v.last_fault = spec.status().message();
      SetState(v, VariantState::kFailed, spec.status().message());
      return;
    }
    auto process = env.Spawn(spec.value());
    if (!process.ok()) {
      Log(LogLevel::kError, "spawn_failed", {{"variant", v.config.name}, {"error", process.status().message()}});
      v.last_fault = process.status().message();
      v.process.reset();
      SetState(v, VariantState::kDown, "spawn failed: " + process.status().message());
      Restart(v, "spawn failed");
      return;
    }
    v.process = std::move(process.value());
    SetState(v, VariantState::kStarting, why);
  }

  // Restarts a variant whose process is gone, within the restart intensity.
  void Restart(Variant& v, const std::string& why) {
    if (stopping) return;
    const auto now_ms = std::chrono::duration_cast<milliseconds>(Now() - started_at).count();
    if (!v.intensity.Allow(now_ms)) {
      const std::string reason = "restarted more than " + std::to_string(config.restart.intensity) + " times in " +
                                 std::to_string(config.restart.period_ms) + " ms (last: " + why + ")";
      v.process.reset();
      SetState(v, VariantState::kFailed, reason);
      Publish("failed", {{"variant", v.config.name}, {"why", reason}});
      UpdateAvailability();  // `unavailable` once fewer than min_healthy are left
      return;
    }
    ++v.restarts;
    Publish("restart", {{"variant", v.config.name}, {"incarnation", v.incarnation + 1}, {"why", why}});
    // Spawned after this loop turn's verdicts and replies: a fork and exec
    // must not delay the answer to the command the death just decided.
    v.restart_pending = "restart: " + why;
    v.restart_requested_at = Now();
  }

  // A fork and exec stalls the loop for a millisecond or more: while a
  // command is undecided it would delay that command's verdict, so restarts
  // wait for it (at most a deadline, since every undecided command has one).
  void SpawnPendingRestarts() {
    if (std::none_of(variants.begin(), variants.end(), [](const Variant& v) { return v.restart_pending.has_value(); })) {
      return;  // the usual turn: nothing to spawn, nothing to ask the socket
    }
    // A client request that arrived during this turn is served first: after
    // a failover the next command should not wait behind a fork and exec.
    const bool client_waiting = client_transport->Waiting();
    const bool undecided = client_waiting ||
                           std::any_of(active.begin(), active.end(), [](const Command& c) { return !c.verdict; });
    for (auto& v : variants) {
      if (!v.restart_pending || stopping) continue;
      // Under a steady pipelined load something is always undecided: wait
      // for a gap, but not longer than kMaxRestartDelay.
      if (undecided && Now() - v.restart_requested_at < kMaxRestartDelay) continue;
      if (Now() - v.restart_requested_at < kRestartHoldoff) continue;
      const std::string why = *v.restart_pending;
      v.restart_pending.reset();
      Spawn(v, why);
    }
  }

  // Takes a variant out: kills its process group at once. Outstanding votes
  // get `blame` for the command at the head and `excluded` for the rest.
  void Kill(Variant& v, const std::string& why, std::optional<voter::OutcomeKind> blame, const std::string& detail) {
    FailOutstanding(v, blame, detail);
    v.stop_reason = why;
    v.last_fault = why;
    if (v.process && !v.process->exit_info()) {
      v.process->SignalGroup(SIGKILL);
      SetState(v, VariantState::kStopping, why);
    } else {
      SetState(v, VariantState::kDown, why);
      Restart(v, why);
    }
  }

  // Gives every vote outstanding at `v` an outcome (AttributeBlame: the
  // rules, and their table test), and drops its other requests.
  void FailOutstanding(Variant& v, std::optional<voter::OutcomeKind> blame, const std::string& detail) {
    std::vector<const Sent*> requests;
    std::vector<OutstandingRequest> table;
    const auto add = [&](const Sent& sent, bool was_sent) {
      OutstandingRequest r;
      r.vote = sent.purpose == Purpose::kVote;
      r.sent = was_sent;
      r.delivered = Delivered(v, sent);
      const Command* c = r.vote ? FindActive(sent.command) : nullptr;
      r.pending = c != nullptr;  // (a command no longer active: nothing to give an outcome)
      if (c != nullptr) {
        const auto outcome = c->outcomes.find(v.config.name);
        r.pending = outcome == c->outcomes.end() || outcome->second.kind == voter::OutcomeKind::kPending;
        r.decided = c->verdict.has_value();
      }
      requests.push_back(&sent);
      table.push_back(r);
    };
    const auto outstanding = v.channel.Outstanding();
    for (const auto& [sent, was_sent] : outstanding) add(sent, was_sent);
    for (const Attribution& a : AttributeBlame(table, blame, detail)) {
      const Sent& sent = *requests[a.index];
      Command* c = FindActive(sent.command);
      auto& outcome = c->outcomes[v.config.name];
      outcome.kind = a.kind;
      outcome.detail = a.detail;
      if (a.blamed) {
        c->evidence[v.config.name] = {{"incarnation", v.incarnation},
                                      {"after_ms", MillisSince(sent.sent_at, Now())},
                                      {"queued", a.queued},
                                      {"stderr_tail", v.process ? v.process->stderr_tail() : ""}};
      }
    }
    for (std::size_t i = 0; i < requests.size(); ++i) {
      const Sent& sent = *requests[i];
      if (sent.purpose == Purpose::kCheckpointDigest || sent.purpose == Purpose::kCheckpointSnapshot) {
        checkpointer.Abandon();  // the next one will do
      } else if (sent.purpose == Purpose::kProbeSnapshot && probe && probe->command == sent.command) {
        EndProbe("inconclusive", "the new active " + v.config.name + " failed while its state was taken: " + detail);
      }
    }
    v.channel.Clear();  // (a catch-up not sent yet blames nothing)
    v.round_digest.reset();
    if (round) {
      round->participants.erase(v.config.name);
      if (round->phase == Round::Phase::kSnapshot && round->donor == v.config.name) {
        Log(LogLevel::kWarn, "sync_round_abandoned", {{"donor", v.config.name}, {"why", detail}});
        round.reset();  // the next round picks another donor
      }
    }
  }

  // Its process has exited and the death is not judged yet.
  static bool InExitGrace(const Variant& v) { return v.exit_seen_at && v.process && !v.process->exit_info(); }

  // Whether `sent` went out before the process was seen dead.
  static bool Delivered(const Variant& v, const Sent& sent) { return !v.exit_seen_at || sent.sent_at < *v.exit_seen_at; }

  // Its pidfd said the process is gone. What it said before dying counts,
  // and its last messages may still be on their way: unless it was being
  // stopped, the death is judged once nothing sent before the exit is
  // outstanding, or once its connection is gone from the variants socket
  // (ConnectionGone: then everything it sent has been read), or after
  // exit_grace_ms when the transport cannot tell (SettleExits), without
  // holding up the loop meanwhile. (An outside test found every crash with a
  // command in flight judged 50 ms late when only the grace ended it.)
  void OnPidfdReadable(Variant& v) {
    if (v.exit_seen_at) return;
    v.exit_seen_at = Now();
    DrainVariantSocket();
    SettleExits();
  }

  void SettleExits() {
    const auto now = Now();
    for (auto& v : variants) {
      if (!InExitGrace(v)) continue;
      const bool waiting_for_reply = v.channel.head() != nullptr && Delivered(v, *v.channel.head());
      if (v.state == VariantState::kStopping || !waiting_for_reply) {
        OnProcessExit(v);
      } else if (ConnectionGone(v.identity)) {
        DrainVariantSocket(std::numeric_limits<int>::max());  // what it sent before its connection closed
        OnProcessExit(v);
      } else if (now >= *v.exit_seen_at + milliseconds(config.exit_grace_ms)) {
        Log(LogLevel::kDebug, "exit_grace_over", {{"variant", v.config.name}});
        OnProcessExit(v);
      }
    }
  }

  void OnProcessExit(Variant& v) {
    const auto info = v.process->TryReap();
    if (!info) return;
    const std::string how = info->Describe();
    if (v.state == VariantState::kStopping) {
      Log(LogLevel::kInfo, "variant_stopped", {{"variant", v.config.name}, {"how", how}, {"why", v.stop_reason}});
      SetState(v, VariantState::kDown, v.stop_reason + " (" + how + ")");
      Restart(v, v.stop_reason);
      return;
    }
    // An unexpected death: the command at the head of its FIFO, if a vote
    // that reached it, is the one it died on.
    std::string what = how;
    if (const Sent* head = v.channel.head(); head != nullptr && head->purpose == Purpose::kVote && Delivered(v, *head)) {
      if (Command* c = FindActive(head->command)) {
        what = how + (c->is_query ? " on a query" : " on seq " + std::to_string(c->seq));
      }
    } else {
      what = how + " with no command in flight";
    }
    Log(LogLevel::kWarn, "variant_died",
        {{"variant", v.config.name}, {"incarnation", v.incarnation}, {"how", what}, {"state", Name(v.state)},
         {"stderr_tail", v.process->stderr_tail()}});
    FailOutstanding(v, voter::OutcomeKind::kCrashed, how);
    v.last_fault = what;
    for (auto& c : active) {
      auto it = c.evidence.find(v.config.name);
      if (it != c.evidence.end() && c.outcomes[v.config.name].kind == voter::OutcomeKind::kCrashed &&
          it->second.value("incarnation", 0) == v.incarnation) {
        it->second["exit"] = {{"signal", info->signaled ? info->signal : 0},
                              {"exit_code", info->signaled ? json() : json(info->exit_code)},
                              {"description", how}};
        it->second["stderr_tail"] = v.process->stderr_tail();
      }
    }
    SetState(v, VariantState::kDown, what);
    Restart(v, what);
  }

  // ---- variant messages -------------------------------------------------------

  // Reads what the variants sent, at most `max` messages; true when it
  // emptied the socket.
  bool DrainVariantSocket(int max = kMaxMessagesPerTurn) {
    std::string identity;
    std::vector<std::string> parts;
    for (int taken = 0;; ++taken) {
      if (taken >= max) return false;
      if (!variant_transport->Receive(&identity, &parts)) return true;
      const std::string* known = IdentityOf(identity);
      if (known == nullptr) continue;
      const std::string& from = *known;
      if (spare && from == spare->identity) {
        OnSpareMessage(parts.size() == 1 ? std::string_view(parts[0]) : std::string_view());
        continue;
      }
      if (probe && from == probe->identity) {
        if (parts.size() == 1) {
          OnProbeMessage(std::string_view(parts[0]));
        } else {
          EndProbe(probe->phase == Probe::Phase::kApplying ? "failed" : "inconclusive", "sent a multi-part message");
        }
        continue;
      }
      if (retest && retest->retest->Owns(from)) {
        // (PumpRetest, later in the turn, sends what it asks for.)
        retest->retest->OnMessage(from, parts.size() == 1 ? std::string_view(parts[0]) : "multi-part", Now());
        continue;
      }
      auto it = by_identity.find(from);
      if (it == by_identity.end()) continue;
      Variant& v = variants[it->second];
      if (v.identity != from) {
        Log(LogLevel::kDebug, "stale_message", {{"identity", from}});
        continue;  // a late message from a dead incarnation
      }
      if (v.state == VariantState::kStopping || v.state == VariantState::kDown || v.state == VariantState::kFailed) {
        continue;
      }
      if (parts.size() != 1) {
        Kill(v, "sent a multi-part message", voter::OutcomeKind::kProtocolError, "multi-part message");
        continue;
      }
      OnVariantMessage(v, std::string_view(parts[0]));
    }
  }

  void OnVariantMessage(Variant& v, std::string_view bytes) {
    auto decoded = proto::DecodeReply(bytes);
    if (!decoded.ok()) {
      const std::string why = "sent garbage (" + decoded.error().reason + ")";
      Log(LogLevel::kWarn, "variant_protocol_error",
          {{"variant", v.config.name}, {"error", decoded.error().reason}, {"bytes", std::string(bytes.substr(0, 200))}});
      Kill(v, why, voter::OutcomeKind::kProtocolError, why);
      return;
    }
    const proto::Reply& reply = decoded.value();
    if (auto* hello = std::get_if<proto::Hello>(&reply)) {
      if (v.state != VariantState::kStarting || hello->protocol != proto::kProtocolVersion) {
        Kill(v, "unexpected hello (protocol " + std::to_string(hello->protocol) + ")",
             voter::OutcomeKind::kProtocolError, "unexpected hello");
        return;
      }
      // It presents its secret: hello's `variant` is its NVS_VARIANT
      // (PROTOCOL.md §2.1), routing id and token included.
      if (hello->variant != WireId(v.identity)) {
        Kill(v, "its hello names another variant than the one it was started as (NVS_VARIANT)",
             voter::OutcomeKind::kProtocolError, "hello with a wrong variant");
        return;
      }
      Log(LogLevel::kInfo, "hello", {{"variant", v.config.name}, {"impl", hello->impl}, {"incarnation", v.incarnation}});
      SetState(v, VariantState::kSyncing, "said hello (" + hello->impl + ")");
      return;
    }
    if (v.channel.head() == nullptr) {
      Kill(v, "sent an unsolicited " + std::string(proto::TypeName(reply)), voter::OutcomeKind::kProtocolError,
           "unsolicited message");
      return;
    }
    const Sent sent = *v.channel.head();
    const auto seq = proto::SeqOf(reply);
    if (std::holds_alternative<proto::Error>(reply) && sent.purpose != Purpose::kRestore &&
        sent.purpose != Purpose::kCheckpointRestore) {
      const auto& e = std::get<proto::Error>(reply);
      Kill(v, "answered a protocol error: " + e.code + " (" + e.reason + ")", voter::OutcomeKind::kProtocolError,
           "protocol error " + e.code + ": " + e.reason);
      return;
    }
    if (!seq || *seq != sent.seq ||
        (proto::TypeName(reply) != sent.reply_type && !std::holds_alternative<proto::Error>(reply))) {
      Kill(v,
           "answered out of order: expected " + std::string(sent.reply_type) + " " + std::to_string(sent.seq) +
               ", got " + std::string(proto::TypeName(reply)) + (seq ? " " + std::to_string(*seq) : ""),
           voter::OutcomeKind::kProtocolError, "reply out of order");
      return;
    }
    OnAnswered(v);
    switch (sent.purpose) {
      case Purpose::kVote: {
        Command* c = FindActive(sent.command);
        if (c == nullptr) break;
        auto& outcome = c->outcomes[v.config.name];
        outcome.kind = voter::OutcomeKind::kReply;
        c->answered_ms[v.config.name] = MillisSince(c->dispatched_at, Now());
        outcome.result = std::holds_alternative<proto::Applied>(reply) ? std::get<proto::Applied>(reply).result
                                                                       : std::get<proto::Answer>(reply).result;
        // Equal replies are usually equal bytes (the codec normalises them):
        // compute the comparable form once per distinct reply.
        for (const auto& [name, other] : c->outcomes) {
          if (name != v.config.name && !other.comparable.empty() && other.result == outcome.result) {
            outcome.comparable = other.comparable;
            break;
          }
        }
        if (outcome.comparable.empty()) outcome.comparable = voter::ComparableForm(outcome.result, config.policy.ignored);
        OnLateOutcome(*c, v);
        break;
      }
      case Purpose::kCatchUp:
      case Purpose::kHeartbeat:
        break;
      case Purpose::kCheckpointRestore:
        if (const auto* e = std::get_if<proto::Error>(&reply)) {
          v.refused_checkpoint = "refused to restore it: " + e->code + " (" + e->reason + ")";
        } else if (checkpoint && std::get<proto::Restored>(reply).digest != checkpoint->digest) {
          v.refused_checkpoint = "restored it to digest " + std::get<proto::Restored>(reply).digest +
                                 ", but the checkpoint says " + checkpoint->digest;
        }
        break;
      case Purpose::kRestore:
        if (auto* e = std::get_if<proto::Error>(&reply)) {
          Kill(v, "refused a restore: " + e->code + " (" + e->reason + ")", std::nullopt, "");
        } else {
          v.round_digest = std::get<proto::Restored>(reply).digest;
        }
        break;
      case Purpose::kRoundDigest:
        v.round_digest = std::get<proto::DigestReply>(reply).digest;
        break;
      case Purpose::kRoundSnapshot:
        OnRoundSnapshot(v, std::get<proto::StateReply>(reply));
        break;
      case Purpose::kProbeSnapshot:
        OnProbeSnapshot(sent.command, std::get<proto::StateReply>(reply));
        break;
      case Purpose::kCheckpointDigest:
        checkpointer.OnDigest(v.config.name, sent.seq, std::get<proto::DigestReply>(reply).digest);
        break;
      case Purpose::kCheckpointSnapshot:
        checkpointer.OnSnapshot(v.config.name, sent.seq, std::get<proto::StateReply>(reply).state,
                                std::get<proto::StateReply>(reply).digest);
        break;
    }
  }

  // A reply that arrives after its command was decided is still compared.
  void OnLateOutcome(Command& c, Variant& v) {
    if (!c.verdict || c.verdict->kind != voter::VerdictKind::kCommit || c.expired) return;
    const auto& outcome = c.outcomes[v.config.name];
    const auto& winner = CountedOutcome(c, c.verdict->agreeing.front());
    if (outcome.comparable == winner.comparable) return;
    MarkDivergent(c, v, outcome.result);
  }

  void MarkDivergent(const Command& c, Variant& v, const std::string& got) {
    if (v.restart_when_idle) return;
    const std::string why = "diverged on " + (c.is_query ? std::string("a query") : "seq " + std::to_string(c.seq));
    Log(LogLevel::kWarn, "divergence",
        {{"variant", v.config.name}, {"seq", c.seq}, {"expected", ParseOrString(c.verdict->result)},
         {"got", ParseOrString(got)}});
    // (The event carries no result values: only their fingerprints, to tell
    // answers apart. The values are in the log.)
    Publish("divergence", {{"seq", c.seq},
                           {"variant", v.config.name},
                           {"expected_fingerprint", proto::Fnv1a64Hex(c.verdict->result)},
                           {"got_fingerprint", proto::Fnv1a64Hex(got)}});
    v.last_fault = why;
    v.restart_when_idle = true;
    v.stop_reason = why;
  }

  // ---- clients -----------------------------------------------------------------

  // Reads client requests: at most kMaxClientMessagesPerTurn, and none
  // after kClientTurnBudget (the rest wait for the next turn, after the
  // variants' replies and the deadlines). libzmq's ROUTER takes one message
  // from each connection in turn, so a flooding client does not hold up
  // another's request either.
  void DrainClientSocket() {
    const auto until = Now() + kClientTurnBudget;
    std::vector<std::string> frames;
    std::string user;
    for (int taken = 0; taken < kMaxClientMessagesPerTurn && client_transport->Receive(&frames, &user); ++taken) {
      ClientAddress address;
      if (frames.size() >= 2) {
        // [identity, (empty delimiter of a REQ,) payload]; extra frames are an error.
        for (std::size_t i = 0; i + 1 < frames.size(); ++i) address.envelope.push_back(frames[i]);
        if (config.client_curve) address.user = user;
        const bool req_envelope = address.envelope.size() == 2 && address.envelope[1].empty();
        if (cut_off.count(address.envelope[0]) != 0) {
          ++client_counters.requests_ignored;  // (its cut-off was logged)
        } else if (address.envelope.size() > 1 && !req_envelope) {
          address.envelope.resize(1);
          RejectUnreadable(address, proto::ClientReply::Rejected(std::nullopt, "bad_request",
                                                                 "a request is one single-part message"));
        } else {
          OnClientRequest(address, frames.back());
        }
      }
      if (Now() >= until) break;
    }
  }

  // A request whose bytes nvsd cannot take: answered, counted, and logged
  // at most 10 times a second (the rest are counted and their number logged
  // once the second is over): a flood of garbage cannot fill the disk.
  void RejectUnreadable(const ClientAddress& address, const proto::ClientReply& rejection) {
    ++client_counters.rejected;
    if (rejected_log.Admit(Now())) {
      Log(LogLevel::kInfo, "client_rejected",
          {{"peer", HexIdentity(address.envelope[0])}, {"id", rejection.id ? json(*rejection.id) : json()},
           {"reason", rejection.reason}});
    }
    Reply(address, rejection);
  }

  std::int64_t UnixNowMs() const { return env.UnixNowNs() / 1'000'000; }

  // The client's deadline for `c` (expires_at_ms) has passed: it must not
  // be carried out (CLIENT.md §2).
  bool HasExpired(const Command& c) const { return c.expires_at_ms && UnixNowMs() > *c.expires_at_ms; }

  proto::ClientReply ExpiredReply(const Command& c, const std::string& when) const {
    return proto::ClientReply::Rejected(c.request_id, "expired",
                                        "its expires_at_ms (" + std::to_string(*c.expires_at_ms) + ") had passed " +
                                            when + " (Unix time " + std::to_string(UnixNowMs()) +
                                            " ms): not carried out");
  }

  void OnClientRequest(const ClientAddress& address, std::string_view bytes) {
    auto decoded = proto::DecodeClientRequest(bytes);
    if (!decoded.request) {
      RejectUnreadable(address, decoded.rejection);
      return;
    }
    const proto::ClientRequest& request = *decoded.request;
    if (request.type == proto::ClientRequestType::kStatus) {
      Reply(address, StatusReply(request.id));
      return;
    }
    if (request.type == proto::ClientRequestType::kQuarantine) {
      // (A release is answered once nvsd's own retest is done.)
      if (auto reply = QuarantineReply(address, request.id, json::parse(request.payload, nullptr, false))) {
        Reply(address, *reply);
      }
      return;
    }
    if (stopping) {
      Reply(address, proto::ClientReply::Unavailable(request.id, "nvsd is shutting down"));
      return;
    }
    Command c;
    c.id = next_command_id++;
    c.is_query = request.type == proto::ClientRequestType::kQuery;
    c.payload = request.payload;
    c.fingerprint = proto::Fnv1a64Hex(request.payload);
    c.request_id = request.id;
    c.client = address;
    c.client_key = address.envelope[0];
    c.expires_at_ms = request.expires_at_ms;
    c.admitted_at = Now();
    if (!c.is_query && AnswerRetry(c)) return;
    if (HasExpired(c)) {
      const auto reply = ExpiredReply(c, "when nvsd read it");
      Reply(address, reply);
      if (!c.is_query) Remember(RequestKey(c.client.user, c.request_id), reply);  // (its id stays expired)
      return;
    }
    if (journal_trouble && !c.is_query) {
      Reply(address, proto::ClientReply::Unavailable(request.id, "the journal cannot be written: " +
                                                                     journal_trouble->reason + " (queries are answered)"));
      return;
    }
    if (checkpoint_problem) {  // (a person must act: waiting out the queue deadline helps nobody)
      Reply(address, proto::ClientReply::Unavailable(request.id, *checkpoint_problem));
      return;
    }
    if (RefuseIfBlocked(c)) return;
    if (NotFailed() < config.min_healthy) {
      Reply(address, proto::ClientReply::Unavailable(
                         request.id, "only " + std::to_string(NotFailed()) + " variants are not failed; min_healthy is " +
                                         std::to_string(config.min_healthy)));
      return;
    }
    if (waiting.size() >= config.queue_limit) {
      Reply(address, proto::ClientReply::Unavailable(request.id, "queue full (" + std::to_string(waiting.size()) +
                                                                     " commands wait; queue_limit)"));
      return;
    }
    if (waiting.SizeOf(c.client_key) >= config.client_queue_limit) {
      Reply(address, proto::ClientReply::Unavailable(
                         request.id, "this client already has " + std::to_string(waiting.SizeOf(c.client_key)) +
                                         " commands waiting (client_queue_limit): send fewer at once"));
      return;
    }
    const std::string key = c.client_key;  // (not c.client_key itself: c is moved into the queue)
    waiting.Push(key, std::move(c));
  }

  // A request id seen before: answered from memory (never applied twice),
  // or attached to the same command if it is still pending.
  bool AnswerRetry(const Command& c) {
    if (const RememberedReply* remembered = answered.Find(RequestKey(c.client.user, c.request_id))) {
      Log(LogLevel::kInfo, "retry_answered", {{"id", c.request_id}});
      if (auto reply = remembered->Get()) {
        Reply(c.client, *reply, remembered->record);
      } else {
        // (Never: recovery skims only records that read back. Not applied
        // again in any case: the request was answered before.)
        Log(LogLevel::kError, "remembered_reply_unreadable", {{"id", c.request_id}});
        Reply(c.client, proto::ClientReply::Unavailable(
                            c.request_id, "this request id was answered before, but its answer in the journal cannot "
                                          "be read back: not carried out again"));
      }
      return true;
    }
    // Decided, but its verdict record may or may not be on disk: the retry
    // gets the same answer once that is settled (RetryJournal), never an
    // `unavailable` of its own while the first may still turn out committed.
    const std::string key = RequestKey(c.client.user, c.request_id);
    for (std::size_t i = 0, n = replies_in_doubt.size(); i < n; ++i) {
      const OutgoingReply& held = replies_in_doubt[i];
      if (held.reply.id && RequestKey(held.to.user, *held.reply.id) == key) {
        replies_in_doubt.push_back({c.client, held.reply, held.record});
        return true;
      }
    }
    bool attached = false;
    waiting.ForRequest(c.request_id, [&](Command& pending) {
      if (!attached && !pending.is_query && pending.client.user == c.client.user) {
        pending.also_reply.push_back(c.client);
        attached = true;
      }
    });
    if (attached) return true;
    for (auto& pending : active) {
      if (!pending.is_query && pending.request_id == c.request_id && pending.client.user == c.client.user &&
          !pending.verdict) {
        pending.also_reply.push_back(c.client);
        return true;
      }
    }
    return false;
  }

  bool RefuseIfBlocked(const Command& c) {
    std::string report;
    if (!quarantine->IsBlocked(c.fingerprint, &report)) return false;
    for (const auto& pending : unwritten_reports) {
      if (pending.id != report) continue;
      // Blocked only in memory so far: a restart would forget it, so no
      // client is told `quarantined` until the report is on disk.
      const auto reply = proto::ClientReply::Unavailable(
          c.request_id, "identical to command " + report + ", which is blocked while nvsd runs, but its quarantine "
                        "report cannot be written yet: not carried out");
      Reply(c.client, reply);
      for (const auto& also : c.also_reply) Reply(also, reply);
      return true;
    }
    proto::ClientReply reply;
    reply.id = c.request_id;
    reply.status = proto::ClientStatus::kQuarantined;
    reply.report = report;
    reply.fingerprint = c.fingerprint;
    reply.reason = "identical to quarantined command " + report + "; refused without dispatch";
    Reply(c.client, reply);
    for (const auto& also : c.also_reply) Reply(also, reply);  // retries while it waited
    Log(LogLevel::kWarn, "blocked", {{"fingerprint", c.fingerprint}, {"report", report}});
    Publish("blocked", {{"fingerprint", c.fingerprint}, {"report", report}});
    return true;
  }

  // The last verdicts, for `status`.
  // (Kept raw: this runs for every command; `status` formats them.)
  void RememberVerdict(const Command& c) {
    recent_verdicts.push_back({c.seq, c.is_query, c.expired ? "EXPIRED" : std::string(voter::ToString(c.verdict->kind)),
                               env.UnixNowNs(), c.decided_ms});
    if (recent_verdicts.size() > 10) recent_verdicts.pop_front();
  }

  json RecentVerdictsJson() const {
    json out = json::array();
    for (const auto& r : recent_verdicts) {
      out.push_back({{"seq", r.seq},
                     {"query", r.query},
                     {"verdict", r.kind},
                     {"time", IsoTime(r.time_ns)},
                     {"ms", r.ms}});
    }
    return out;
  }

  // ---- quarantine review (CLIENT.md §4) ----------------------------------------

  static proto::ClientReply Ok(const std::string& id, const json& body) {
    proto::ClientReply reply;
    reply.id = id;
    reply.status = proto::ClientStatus::kOk;
    reply.body = Dump(body);
    return reply;
  }

  // list / show / release / reject. A release lifts the block (the command
  // is not sent: a client must send it again); a reject keeps it blocked
  // for good. Both are recorded in the report's review history, with who
  // decided as the ZAP handler vouched for it: with client_curve, only the
  // keys `reviewers` names may, and `by` is the key's name; on a plain
  // endpoint anyone who reaches it may (it can send any command too), and
  // `by` says "unauthenticated". A release is accepted only once nvsd's own
  // retest (fresh probes of the configured programs on the saved pre-state)
  // survives it: nothing a client says about a retest is taken. nullopt:
  // the answer comes later (a release, when its retest is done).
  std::optional<proto::ClientReply> QuarantineReply(const ClientAddress& from, const std::string& id, const json& args) {
    for (const char* key : {"action", "report", "note", "by"}) {
      if (args.is_object() && args.contains(key) && !args[key].is_string()) {
        return proto::ClientReply::Rejected(id, "bad_request", std::string("member '") + key + "' must be a string");
      }
    }
    if (!args.is_object()) return proto::ClientReply::Rejected(id, "bad_request", "not a JSON object");
    if (args.contains("force") && !args["force"].is_boolean()) {
      return proto::ClientReply::Rejected(id, "bad_request", "member 'force' must be true or false");
    }
    const std::string action = args.value("action", "");
    if (action == "list") {
      json reports = json::array();
      for (const auto& report_id : quarantine->ids()) {
        auto text = quarantine->Read(report_id);
        const json report = text ? json::parse(*text, nullptr, false) : json();
        if (!report.is_object()) continue;
        reports.push_back(ReportSummary(report));
      }
      return Ok(id, {{"reports", reports}});
    }
    const std::string report_id = args.value("report", "");
    auto text = quarantine->Read(report_id);
    json report = text ? json::parse(*text, nullptr, false) : json();
    if (!report.is_object()) return proto::ClientReply::Rejected(id, "not_found", "no quarantine report '" + report_id + "'");
    if (action == "show") {
      json pre_state;
      if (auto state = quarantine->ReadAttachment(SnapshotFileName(report))) {
        pre_state = json::parse(*state, nullptr, false);
        if (pre_state.is_discarded()) pre_state = json();
      }
      return Ok(id, {{"report", report}, {"pre_state_snapshot", pre_state}});
    }
    if (action != "release" && action != "reject") {
      return proto::ClientReply::Rejected(id, "bad_request", "action must be list, show, release or reject");
    }
    if (config.client_curve) {
      const auto& reviewers = config.client_curve->reviewers;
      if (std::find(reviewers.begin(), reviewers.end(), from.user) == reviewers.end()) {
        Log(LogLevel::kWarn, "review_refused", {{"report", report_id}, {"action", action}, {"key", from.user}});
        return proto::ClientReply::Rejected(
            id, "forbidden",
            "key \"" + from.user + "\" may not " + action + " a quarantined command: only the keys client_curve." +
                "reviewers names may" + (reviewers.empty() ? " (it names none)" : ""));
      }
    }
    const std::string note = args.value("note", "");
    if (note.empty()) return proto::ClientReply::Rejected(id, "bad_request", "a release or reject needs a note (why)");
    const std::string status = ReportStatus(report);
    if (status != "blocked" && !(action == "reject" && status == "released")) {
      return proto::ClientReply::Rejected(id, "bad_request",
                                          "report " + report_id + " is " + status + ": only a blocked report can be " +
                                              (action == "release" ? "released" : "rejected"));
    }
    PendingRelease decision{from, id, report_id, note, config.client_curve ? json(from.user) : json("unauthenticated"),
                            !config.client_curve && args.contains("by") ? args["by"] : json()};
    if (action == "reject") return Review(decision, "rejected", json());
    if (args.value("force", false)) {
      return Review(decision, "released", {{"skipped", true}, {"why", "forced by the reviewer"}});
    }
    // nvsd's own retest first.
    const std::string snapshot_file = SnapshotFileName(report);
    auto snapshot = snapshot_file.empty() ? std::nullopt : quarantine->ReadAttachment(snapshot_file);
    const json pre = report.value("pre_state", json::object());
    if (!snapshot || !pre.is_object() || !pre.value("digest", json()).is_string()) {
      return proto::ClientReply::Rejected(
          id, "no_pre_state",
          "report " + report_id + " has no saved pre-command state, so a retest would run on another state and "
          "prove nothing: not released (force lifts the block without a retest, recorded as such)");
    }
    if (retest || !suspects.empty()) {
      return proto::ClientReply::Unavailable(id, "a retest is running now; ask again when it is done");
    }
    while (!snapshot->empty() && (snapshot->back() == '\n' || snapshot->back() == ' ')) snapshot->pop_back();
    Retest::PreState pre_state;
    pre_state.checkpoint =
        Checkpoint{pre.value("snapshot_seq", std::uint64_t{0}), *snapshot, pre["digest"].get<std::string>(), 0};
    const json command = report.value("command", json());
    std::vector<std::string> names;
    for (const auto& v : variants) names.push_back(v.config.name);
    StartRetestOf(names, {report.value("seq", std::uint64_t{0}), report.value("time_ns", std::int64_t{0}), Dump(command),
                          report.value("kind", "command") == "query"},
                  std::move(pre_state), 0, "release of " + report_id + " asked by " + decision.by.dump(),
                  std::move(decision));
    return std::nullopt;
  }

  // Records a review decision in the report, lifts or keeps the block, and
  // says so (log, event); the answer to the reviewer.
  proto::ClientReply Review(const PendingRelease& d, const std::string& action, const json& retested) {
    auto text = quarantine->Read(d.report);
    json report = text ? json::parse(*text, nullptr, false) : json();
    if (!report.is_object()) return proto::ClientReply::Rejected(d.request_id, "not_found", "no quarantine report '" + d.report + "'");
    const std::string status = ReportStatus(report);
    if (status != "blocked" && !(action == "rejected" && status == "released")) {
      return proto::ClientReply::Rejected(d.request_id, "bad_request", "report " + d.report + " is " + status + " now");
    }
    json entry = {{"time", IsoTime(env.UnixNowNs())}, {"action", action}, {"by", d.by}, {"note", d.note}};
    if (!d.claimed_by.is_null()) entry["claimed_by"] = d.claimed_by;
    if (!retested.is_null()) entry["retest"] = retested;
    report["status"] = action;
    if (!report["review"].is_array()) report["review"] = json::array();
    report["review"].push_back(entry);
    Status written = quarantine->WriteThenIndex(d.report, Dump(report));
    if (!written.ok()) {
      return proto::ClientReply::Unavailable(d.request_id,
                                             "cannot write the report, so nothing changed: " + written.message());
    }
    const json said = {{"report", d.report}, {"fingerprint", report.value("fingerprint", "")}, {"by", d.by},
                       {"note", d.note}};
    Log(LogLevel::kWarn, action, said);
    Publish(action, said);
    return Ok(d.request_id, {{"report", report}});
  }

  // nvsd's retest for a release is done: released if every configured
  // variant's fresh probe ran the command and answered; else refused, with
  // what each probe did.
  void FinishRelease(Retest& r, const PendingRelease& d, json described) {
    bool survived = true;
    std::string failed;
    for (const auto& o : r.Outcomes()) {
      if (o.kind == voter::OutcomeKind::kReply && r.Conclusive(o.variant)) continue;
      survived = false;
      failed += (failed.empty() ? "" : ", ") + o.variant + " " + std::string(voter::ToString(o.kind)) + " (" +
                o.detail + ")";
    }
    described["survived"] = survived;
    described["on_saved_state"] = true;
    described["by"] = "nvsd";
    described["time"] = IsoTime(env.UnixNowNs());
    const json event = {{"phase", "done"}, {"report", d.report}, {"survived", survived}, {"probes", described["probes"]}};
    Log(LogLevel::kWarn, "retest", event);
    Publish("retest", event);
    if (survived) {
      Reply(d.to, Review(d, "released", described));
      return;
    }
    proto::ClientReply refused = proto::ClientReply::Rejected(
        d.request_id, "retest_failed",
        "not released: nvsd's retest on fresh probes restored to the state before it still fails: " + failed);
    refused.body = Dump({{"retest", described}});
    Reply(d.to, refused);
  }

  proto::ClientReply StatusReply(const std::string& id) {
    json variants_json = json::array();
    for (const auto& v : variants) {
      variants_json.push_back({{"name", v.config.name},
                               {"state", Name(v.state)},
                               {"pid", v.process && !v.process->exit_info() ? v.process->pid() : -1},
                               {"incarnation", v.incarnation},
                               {"restarts", v.restarts},
                               {"voting", Voting(v) && !v.restart_when_idle},
                               {"in_flight", InFlight(v)},
                               {"role", !standby ? "voter" : v.config.name == active_name ? "active" : "backup"},
                               {"cgroup", cgroups && v.process ? json(cgroups->Where(v.identity).string()) : json()},
                               {"last_fault", v.last_fault}});
    }
    json body = {{"nvsd",
                  {{"pid", getpid()},
                   {"ready", ready},
                   {"seq", last_seq},
                   {"commits", commits},
                   {"policy", std::string(voter::ToString(config.policy.kind))},
                   {"mode", config.mode},
                   {"active_variant", standby ? json(active_name) : json()},
                   {"min_healthy", config.min_healthy},
                   {"healthy", HealthyVoters()},
                   {"available", ready && !unavailable_reason.has_value() && suspects.empty()},
                   {"unavailable_reason", unavailable_reason ? json(*unavailable_reason) : json()},
                   {"waiting", waiting.size()},
                   {"clients_waiting", waiting.clients()},
                   {"clients", {{"backlogged", backlogs.size()},
                                {"cut_off", client_counters.cut_off},
                                {"replies_dropped", client_counters.replies_dropped},
                                {"replies_undeliverable", client_counters.replies_undeliverable},
                                {"requests_ignored", client_counters.requests_ignored},
                                {"rejected", client_counters.rejected}}},
                   {"retest", retest ? retest->retest->Describe() : json()},
                   {"suspects", suspects.size()},
                   {"unknown_variant_peers", unknown_peers},
                   {"active", active.size()},
                   {"syncing", round.has_value()},
                   {"quarantined", quarantine->blocked_count()},
                   {"reports", quarantine->report_count()},
                   {"checkpoint_seq", checkpoint ? checkpoint->seq : 0},
                   {"journal", {{"segment", journal ? state->Where(JournalSegmentName(journal_segment)).string() : ""},
                                {"state", journal_trouble ? "degraded" : "ok"},
                                {"trouble", journal_trouble ? json{{"kind", journal_trouble->kind},
                                                                   {"reason", journal_trouble->reason},
                                                                   {"attempts", journal_trouble->attempts},
                                                                   {"for_ms", MillisSince(journal_trouble->since, Now())}}
                                                            : json()},
                                {"replies_in_doubt", replies_in_doubt.size()},
                                {"checkpoint_error", checkpoint_error ? json(*checkpoint_error) : json()},
                                {"segment_bytes", journal ? journal->bytes() : 0},
                                {"closed_segments", closed_segments.size()},
                                {"fsync", config.fsync}}},
                   {"recent_verdicts", RecentVerdictsJson()},
                   {"probe", probe ? json{{"variant", probe->target},
                                          {"probe", probe->identity},
                                          {"pid", probe->process ? probe->process->pid() : -1}}
                                   : json()},
                   {"probe_spare", spare ? json{{"variant", spare->target},
                                                {"pid", spare->process ? spare->process->pid() : -1},
                                                {"ready", spare->said_hello}}
                                         : json()}}},
                 {"variants", variants_json}};
    proto::ClientReply reply;
    reply.id = id;
    reply.status = proto::ClientStatus::kOk;
    reply.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
    return reply;
  }

  // ---- the pipeline -----------------------------------------------------------

  bool RoundNeeded() const {
    if (checkpoint_problem) return false;  // (nothing a round can do: a person must)
    if (!checkpoint) return true;
    // A report quarantined outside the pipeline (a suspect at recovery)
    // still needs the snapshot of the state before its command.
    if (!reports_awaiting_pre_state.empty()) return true;
    for (const auto& v : variants) {
      if (v.state == VariantState::kSyncing) return true;
      if (v.state == VariantState::kHealthy && v.needs_sync) return true;
    }
    return false;
  }

  bool Quiescent() const {
    if (checkpointer.pending()) return false;
    for (const auto& c : active) {
      if (!c.verdict) return false;
    }
    for (const auto& v : variants) {
      if (v.state != VariantState::kHealthy && v.state != VariantState::kSyncing) continue;
      for (const auto& sent : v.channel.out()) {
        if (sent.purpose != Purpose::kHeartbeat) return false;  // replies are FIFO: a ping in flight is harmless
      }
      if (v.channel.waiting()) return false;
    }
    return true;
  }

  bool CanDispatch() const {
    if (round || RoundNeeded() || !suspects.empty() || checkpoint_problem) return false;
    for (const auto& c : active) {
      if (!c.verdict) return false;  // one undecided command at a time
    }
    if (HealthyVoters() < config.min_healthy) return false;
    const auto answering_since = Now() - milliseconds(std::max<std::int64_t>(1, config.deadline_ms / 4));
    for (const auto& v : variants) {
      if (IsPacing(v, answering_since)) return false;
    }
    // standby: Dispatch asks PromoteIfNeeded(), which promotes a voting variant if
    // the active cannot serve; here it is enough that one exists, and that
    // the active is not a process whose death is still being judged.
    if (const Variant* current = standby ? Find(active_name) : nullptr; current != nullptr && InExitGrace(*current)) {
      return false;
    }
    return !standby || std::any_of(variants.begin(), variants.end(),
                                   [&](const Variant& v) { return Voting(v) && !v.restart_when_idle; });
  }

  // A voting variant far behind that still answers sets the pace. One that
  // has not answered for a quarter of the deadline does not (a stopped or
  // hung variant must not stall the others; its deadline catches it), nor
  // one about to be restarted.
  bool IsPacing(const Variant& v, Clock::time_point answering_since) const {
    return Voting(v) && !v.restart_when_idle && InFlight(v) >= kPaceBehind && v.channel.last_reply_at() >= answering_since;
  }

  // standby: the active variant, promoting the first voting variant (in
  // config order) when the active can no longer take commands.
  // standby: the variant that takes commands, after promoting a backup if
  // the active cannot (ChooseActive: the rule, and its table test); nullptr
  // when there is none for now.
  Variant* PromoteIfNeeded() {
    std::vector<StandbyMember> members;
    for (const auto& v : variants) members.push_back({v.config.name, Voting(v) && !v.restart_when_idle, InExitGrace(v)});
    const ActiveChoice choice = ChooseActive(active_name, members);
    if (choice.kind == ActiveChoice::Kind::kPromote) {
      const Variant* current = Find(active_name);
      const std::string why = "the active " + active_name + " cannot take commands (" +
                              (current != nullptr ? current->last_fault : std::string("gone")) + ")";
      Log(LogLevel::kWarn, "promoted", {{"variant", choice.name}, {"previous", active_name}, {"why", why}});
      Publish("promoted", {{"variant", choice.name}, {"previous", active_name}, {"why", why}});
      active_name = choice.name;
    }
    return choice.kind == ActiveChoice::Kind::kKeep || choice.kind == ActiveChoice::Kind::kPromote ? Find(choice.name)
                                                                                                   : nullptr;
  }

  // standby: the decision for a command sent to the active alone.
  void DecideStandby(Command& c) {
    if (probe && probe->command == c.id) return;  // the probe decides first
    const std::string asked = c.standby_active;
    const voter::Outcome& outcome = c.outcomes[asked];
    if (outcome.kind == voter::OutcomeKind::kPending) return;
    voter::Verdict verdict;
    if (outcome.kind == voter::OutcomeKind::kReply) {
      verdict.kind = voter::VerdictKind::kCommit;
      verdict.result = outcome.result;
      verdict.agreeing = {asked};
      verdict.reason = "the active " + asked + " answered";
      if (!c.probe.empty()) verdict.reason += ", after a probe of it survived the command its predecessor failed on";
    } else {
      if (config.standby_policy == "probe" && !c.probed && StartProbe(c)) return;
      if (c.probe.value("outcome", "") == "survived" && !c.probe.value("delivered", false) && DeliverAfterProbe(c)) {
        return;
      }
      // The active died, hung or lied on it: the command is not resent to a
      // backup (that is how a hot standby dies the same death).
      const std::string& failed = c.probe.value("delivered", false) ? c.probe.value("failed_active", asked) : asked;
      verdict.kind = voter::VerdictKind::kPoison;
      for (const auto& [name, o] : c.outcomes) {
        if (o.kind == voter::OutcomeKind::kHung) verdict.hung.push_back(name);
        if (o.kind == voter::OutcomeKind::kCrashed) verdict.crashed.push_back(name);
        if (o.kind == voter::OutcomeKind::kProtocolError) verdict.faulty.push_back(name);
      }
      const voter::Outcome& first = c.outcomes[failed];
      verdict.reason = "the active " + failed + " failed on it (" + first.detail + ")";
      if (!c.probe.empty()) {
        const std::string probe_outcome = c.probe.value("outcome", "");
        if (probe_outcome == "survived") {
          verdict.reason += "; a probe survived it, but the new active " + asked + " then failed on it too (" +
                            outcome.detail + ")";
        } else if (probe_outcome == "inconclusive") {
          verdict.reason += "; the probe could not be run (" + c.probe.value("detail", "") + ")";
        } else {
          verdict.reason += "; a probe of " + c.probe.value("variant", "") + " restored to the state before it " +
                            probe_outcome + " too (" + c.probe.value("detail", "") + ")";
        }
      }
      verdict.reason += "; quarantined and not resent to a backup (standby policy " + config.standby_policy + ")";
    }
    c.verdict = verdict;
    c.decided_ms = MillisSince(c.dispatched_at, Now());
    if (verdict.kind == voter::VerdictKind::kCommit && !c.is_query && HasExpired(c)) {
      OnExpired(c);  // (the backups never see it: they only apply commits)
      return;
    }
    RememberVerdict(c);
    Publish("verdict", {{"seq", c.seq}, {"query", c.is_query}, {"verdict", std::string(voter::ToString(verdict.kind))},
                        {"reason", verdict.reason}, {"active", asked}});
    if (verdict.kind == voter::VerdictKind::kCommit) {
      // The backups follow, one behind: they apply only what was committed.
      // (Before OnCommit: a periodic checkpoint it starts asks them for
      // their digest after this command. The other way round, every
      // checkpoint in standby mode compared the backups' state one command
      // short, was rejected, and sent every variant through a sync round,
      // during which a hung active had no backup to probe with and its
      // command was quarantined: the simulator found it.)
      if (!c.is_query) {
        for (auto& v : variants) {
          if (v.config.name != asked && Voting(v)) {
            Send(v, proto::Apply{c.seq, c.time_ns, c.payload}, Purpose::kCatchUp, "applied");
          }
        }
      }
      OnCommit(c);
    } else {
      Log(LogLevel::kWarn, "verdict", {{"seq", c.seq}, {"verdict", "POISON"}, {"reason", verdict.reason}});
      OnPoison(c);
      PromoteIfNeeded();  // now, before the next command
    }
  }

  // ---- retests (Retest) ------------------------------------------------------

  // The state before `seq`: the checkpoint and what was committed after it.
  Retest::PreState PreStateBefore(std::uint64_t seq) const {
    Retest::PreState pre;
    pre.checkpoint = checkpoint;
    for (const auto& e : tail) {
      if (e.seq < seq) pre.tail.push_back({e.seq, e.time_ns, e.payload});
    }
    return pre;
  }

  // Starts fresh processes of `names`' programs that run `command` on the
  // state before `pre_state_seq`. `command_id`: the undecided command it is
  // for, or 0 for suspects.front().
  void StartRetest(const std::vector<std::string>& names, const Retest::Command& command, std::uint64_t pre_state_seq,
                   std::uint64_t command_id, const std::string& why) {
    StartRetestOf(names, command, PreStateBefore(pre_state_seq), command_id, why, std::nullopt);
  }

  // The same on an explicit pre-state; with `release`, for that release.
  void StartRetestOf(const std::vector<std::string>& names, const Retest::Command& command, Retest::PreState pre_state,
                     std::uint64_t command_id, const std::string& why, std::optional<PendingRelease> release) {
    RunningRetest r;
    r.command = command_id;
    r.release = std::move(release);
    r.retest = std::make_unique<Retest>(names, command, std::move(pre_state),
                                        Retest::Deadlines{milliseconds(config.sync_deadline_ms),
                                                          milliseconds(config.deadline_ms)},
                                        Now(), retest_probes_started + 1);
    retest_probes_started += static_cast<int>(names.size());
    json probes = json::array();
    for (const auto& p : r.retest->probes()) {
      auto spec = SpecFor(Find(p.variant)->config, p.identity, "retest.log");
      auto process = spec.ok() ? env.Spawn(spec.value()) : Result<std::unique_ptr<Process>>(spec.status());
      if (!process.ok()) {
        r.retest->OnSpawnFailed(p.identity, process.status().message(), Now());
        probes.push_back({{"variant", p.variant}, {"probe", p.identity}, {"error", process.status().message()}});
        continue;
      }
      probes.push_back({{"variant", p.variant}, {"probe", p.identity}, {"pid", process.value()->pid()}});
      r.processes[p.identity] = std::move(process.value());
    }
    const json event = {{"phase", "started"}, {"seq", command.seq}, {"why", why}, {"probes", probes}};
    Log(LogLevel::kWarn, "retest", event);
    Publish("retest", event);
    retest = std::move(r);
    PumpRetest();
  }

  void StartHungRetest(const Command& c, const std::vector<std::string>& hung) {
    std::string names;
    for (const auto& name : hung) names += (names.empty() ? "" : ", ") + name;
    const std::string what = c.is_query ? std::string("a query") : "seq " + std::to_string(c.seq);
    StartRetest(hung, {c.is_query ? last_seq : c.seq, c.time_ns, c.payload, c.is_query},
                c.is_query ? last_seq + 1 : c.seq, c.id,
                "every failure on " + what + " was a hang (" + names +
                    "): a stop, a paused machine or a starved host looks the same, so it is run on fresh processes "
                    "restored to the state before it before it is called poison");
  }

  // At start (and after each one is decided): the next suspect's retest.
  void StartSuspectRetest() {
    if (suspects.empty() || retest || stopping) return;
    const Suspect& s = suspects.front();
    std::vector<std::string> names;
    for (const auto& v : variants) names.push_back(v.config.name);
    StartRetest(names, {s.seq, s.time_ns, s.payload, false}, s.seq, 0,
                "seq " + std::to_string(s.seq) + " was admitted before nvsd stopped and never decided: its variants "
                "may have been sent it, and it may be what stopped them, so it is run on fresh processes restored to "
                "the state before it before anything else is dispatched");
  }

  // Sends what the retest asks, kills the probes it is done with, and
  // finishes it once every probe is done.
  void PumpRetest() {
    while (retest) {
      for (const auto& [identity, bytes] : retest->retest->TakeOutgoing()) SendToIdentity(identity, bytes);
      for (const auto& identity : retest->retest->TakeKills()) {
        if (auto it = retest->processes.find(identity); it != retest->processes.end()) {
          it->second->DrainStderr();
          retest->processes.erase(it);  // SIGKILLs its group and reaps it
        }
        retest->exit_seen.erase(identity);
      }
      if (!retest->retest->done()) return;
      FinishRetest();
    }
  }

  // A probe's process is gone: once its connection is gone too (or
  // exit_grace_ms passed), everything it sent has been read.
  void SettleRetestExits() {
    if (!retest) return;
    const auto now = Now();
    for (auto it = retest->exit_seen.begin(); it != retest->exit_seen.end();) {
      const std::string identity = it->first;
      if (!ConnectionGone(identity) && now < it->second + milliseconds(config.exit_grace_ms)) {
        ++it;
        continue;
      }
      it = retest->exit_seen.erase(it);
      DrainVariantSocket(std::numeric_limits<int>::max());
      auto process = retest->processes.find(identity);
      if (process == retest->processes.end()) continue;
      process->second->DrainStderr();
      const auto info = process->second->TryReap();
      retest->retest->OnExit(identity, info ? info->Describe() : "exited", now);
    }
  }

  void FinishRetest() {
    RunningRetest r = std::move(*retest);
    retest.reset();
    r.processes.clear();
    json described = r.retest->Describe();
    if (r.release) {
      FinishRelease(*r.retest, *r.release, std::move(described));
      // What waited for the retest slot meanwhile.
      StartSuspectRetest();
      for (auto& c : active) {
        if (!c.verdict) Decide(c);
      }
      return;
    }
    if (r.command == 0) {
      FinishSuspect(*r.retest, std::move(described));
      StartSuspectRetest();
      return;
    }
    Command* c = FindActive(r.command);
    if (c == nullptr || c->verdict) return;
    c->retested = true;
    std::vector<std::string> answered, failed, inconclusive;
    for (const auto& o : r.retest->Outcomes()) {
      if (!r.retest->Conclusive(o.variant)) {
        inconclusive.push_back(o.variant + " (" + o.detail + ")");
        continue;
      }
      voter::Outcome counted = o;
      counted.detail = "hung; a fresh process of its program, restored to the state before it: " + o.detail;
      if (counted.kind == voter::OutcomeKind::kReply) {
        counted.comparable = voter::ComparableForm(counted.result, config.policy.ignored);
        answered.push_back(o.variant);
      } else {
        failed.push_back(o.variant + " " + std::string(voter::ToString(o.kind)) + " (" + o.detail + ")");
      }
      c->retest_outcomes[o.variant] = std::move(counted);
    }
    const auto join = [](const std::vector<std::string>& items) {
      std::string out;
      for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
      return out;
    };
    std::string conclusion = "retest on fresh processes restored to the state before it:";
    if (!answered.empty()) conclusion += " " + join(answered) + " answered";
    if (!failed.empty()) conclusion += std::string(answered.empty() ? " " : "; ") + join(failed);
    if (!inconclusive.empty()) {
      conclusion += std::string(answered.empty() && failed.empty() ? " " : "; ") + "could not be run for " +
                    join(inconclusive) + " (their hangs stand)";
    }
    if (failed.empty() && inconclusive.empty()) conclusion += ": the hangs were not the command's doing";
    described["conclusion"] = conclusion;
    c->retest = described;
    json event = {{"phase", "done"}, {"seq", c->seq}, {"conclusion", conclusion}, {"probes", described["probes"]}};
    Log(LogLevel::kWarn, "retest", event);
    Publish("retest", event);
  }

  // What the retest of a suspect showed: poison is quarantined (blocked,
  // with a report); a command fresh processes survive was never carried
  // out and is abandoned (a retry by its client runs it).
  void FinishSuspect(const Retest& r, json described) {
    Suspect s = std::move(suspects.front());
    suspects.pop_front();
    std::vector<voter::Outcome> outcomes = r.Outcomes();
    bool inconclusive = false;
    int failed = 0;
    int survived = 0;
    for (const auto& o : outcomes) {
      inconclusive = inconclusive || !r.Conclusive(o.variant);
      const bool fail = o.kind == voter::OutcomeKind::kCrashed || o.kind == voter::OutcomeKind::kHung ||
                        o.kind == voter::OutcomeKind::kProtocolError;
      failed += fail ? 1 : 0;
      survived += !fail && r.Conclusive(o.variant) && o.kind == voter::OutcomeKind::kReply ? 1 : 0;
    }
    voter::Policy policy = config.policy;
    policy.configured = variants.size();
    voter::Verdict verdict = voter::Decide(outcomes, policy);
    std::string why;
    bool poison = false;
    if (standby && config.standby_policy == "quarantine") {
      // The active alone had it: a program that fails on it, or one that
      // could not be tried, is reason enough (the policy's own rule: a
      // command the active fails on is never delivered).
      poison = failed > 0 || inconclusive;
      why = failed > 0 ? "a fresh process failed on it (standby policy quarantine: a command a program fails on is "
                         "not delivered)"
                       : "it could not be run on every program, so it is not shown safe";
    } else if (standby) {
      // Policy probe: live, a command the active fails on is still
      // delivered when a probe of the next active's program survives it.
      // The same here: poison when two programs fail on it, or none is
      // shown to survive it. (One failing program alone is what the probe
      // policy survives: quarantining it here, after a restart, refused a
      // command the running nvsd would have carried out. The simulator
      // found it.)
      poison = failed >= 2 || survived == 0;
      why = failed >= 2 ? "fresh processes of " + std::to_string(failed) + " programs failed on it"
                        : "no fresh process could be shown to survive it";
    } else {
      poison = verdict.kind == voter::VerdictKind::kPoison ||
               (verdict.kind != voter::VerdictKind::kCommit && inconclusive);
      why = verdict.kind == voter::VerdictKind::kPoison ? verdict.reason
                                                        : "too few fresh processes could run it to show it safe";
    }
    const std::string seq = "seq " + std::to_string(s.seq);
    if (!poison) {
      const std::string reason = "admitted before nvsd stopped and never decided; fresh processes restored to the state "
                                 "before it survived it (" + std::string(voter::ToString(verdict.kind)) +
                                 "): not carried out, and not remembered, so a retry runs it";
      if (journal) {
        JournalRecord abandoned;
        abandoned.type = "verdict";
        abandoned.seq = s.seq;
        abandoned.id = s.request_id;
        abandoned.key = s.key;
        abandoned.verdict = "ABANDONED";
        abandoned.reason = reason;
        AppendRecord(EncodeJournalRecord(abandoned));
      }
      json event = {{"phase", "done"}, {"seq", s.seq}, {"conclusion", reason}, {"probes", described["probes"]}};
      Log(LogLevel::kInfo, "retest", event);
      Publish("retest", event);
      return;
    }
    Command c;
    c.seq = s.seq;
    c.time_ns = s.time_ns;
    c.payload = s.payload;
    c.fingerprint = s.fingerprint.empty() ? proto::Fnv1a64Hex(s.payload) : s.fingerprint;
    c.request_id = s.request_id;
    c.client.envelope = {Unhex(s.client)};
    c.client.user = s.key;
    for (auto& o : outcomes) {
      o.detail = "a fresh process, after nvsd restarted: " + o.detail;
      c.outcomes[o.variant] = o;
    }
    verdict.kind = voter::VerdictKind::kPoison;
    verdict.reason = seq + " was admitted before nvsd stopped and never decided, and a retest on fresh processes "
                     "restored to the state before it says it is not safe: " + why +
                     "; quarantined, never delivered again";
    c.verdict = verdict;
    c.retested = true;
    described["conclusion"] = verdict.reason;
    described["found_at_recovery"] = true;
    c.retest = described;
    c.report_id = ReportId("q", c.seq, c.fingerprint);
    std::string report_text;
    if (Status written = WriteReport(c, "blocked", &report_text); !written.ok()) {
      // Blocked in memory; undecided on disk, so the next start retests it again.
      Log(LogLevel::kError, "quarantined_in_memory", {{"report", c.report_id}, {"seq", c.seq}});
      QuarantineUnwritten(c, report_text, written.message());
      return;
    }
    JournalVerdict(c);
    proto::ClientReply reply;
    reply.id = c.request_id;
    reply.status = proto::ClientStatus::kQuarantined;
    reply.report = c.report_id;
    reply.fingerprint = c.fingerprint;
    reply.reason = verdict.reason;
    // Its client is gone: a retry is answered. (Unless the id already has a
    // later answer, e.g. a retry committed after this admit was undone.)
    if (!c.request_id.empty() && !answered.Contains(RequestKey(c.client.user, c.request_id))) {
      Remember(RequestKey(c.client.user, c.request_id), reply, c.verdict_record);
    }
    reports_awaiting_pre_state.push_back(c.report_id);
    Publish("quarantine", {{"report", c.report_id}, {"fingerprint", c.fingerprint}, {"seq", c.seq}, {"reason", verdict.reason}});
    Log(LogLevel::kError, "quarantined",
        {{"report", c.report_id}, {"fingerprint", c.fingerprint}, {"seq", c.seq}, {"reason", verdict.reason}});
  }

  // ---- standby probe (policy "probe") ---------------------------------------

  // The active failed on `c`: promote a backup, take its state (the state
  // before `c`: backups are one behind), and start a disposable process of
  // its program to run `c` on that state first. False when no probe can be
  // run (no backup to promote, or the program cannot be started): the caller
  // quarantines.
  bool StartProbe(Command& c) {
    c.probed = true;
    Variant* target = PromoteIfNeeded();
    if (target == nullptr || target->config.name == c.standby_active) {
      c.probe = {{"outcome", "inconclusive"}, {"detail", "no backup to probe with"}};
      return false;
    }
    Probe p;
    if (spare && spare->target == target->config.name && spare->process && !spare->process->exit_info()) {
      p = std::move(*spare);  // warm: started ahead of need
      spare.reset();
    } else {
      spare.reset();
      auto started = StartProbeProcess(target->config);
      if (!started.ok()) {
        c.probe = {{"variant", target->config.name}, {"outcome", "inconclusive"},
                   {"detail", "cannot start: " + started.status().message()}};
        return false;
      }
      p = std::move(started.value());
    }
    p.command = c.id;
    p.phase = Probe::Phase::kPreparing;
    p.started = p.phase_since = Now();
    Send(*target, proto::SnapshotRequest{last_seq}, Purpose::kProbeSnapshot, "state", c.id);
    json event = {{"seq", c.seq}, {"variant", p.target}, {"probe", p.identity}, {"pid", p.process->pid()},
                  {"failed_active", c.standby_active}};
    Log(LogLevel::kWarn, "probe_started", event);
    event["phase"] = "started";
    Publish("probe", event);
    probe = std::move(p);
    return true;
  }

  Result<Probe> StartProbeProcess(const VariantConfig& vc) {
    Probe p;
    p.target = vc.name;
    p.identity = "probe." + std::to_string(++probes_started);
    auto spec = SpecFor(vc, p.identity, "probe.log");
    if (!spec.ok()) return spec.status();
    auto process = env.Spawn(spec.value());
    if (!process.ok()) return process.status();
    p.process = std::move(process.value());
    p.started = p.phase_since = Now();
    return p;
  }

  // standby + probe: keeps a spare probe for the variant that would be
  // promoted if the active failed now (the first other voting variant in
  // config order). Started only when nothing is undecided, like a restart.
  void KeepSpare() {
    if (!standby || config.standby_policy != "probe" || !ready || stopping || probe) return;
    const Variant* next = nullptr;
    for (const auto& v : variants) {
      if (v.config.name != active_name && Voting(v)) {
        next = &v;
        break;
      }
    }
    if (spare && (next == nullptr || spare->target != next->config.name)) spare.reset();
    if (spare || next == nullptr) return;
    if (std::any_of(active.begin(), active.end(), [](const Command& c) { return !c.verdict; })) return;
    if (client_transport->Waiting()) return;
    if (Now() < spare_not_before) return;
    auto started = StartProbeProcess(next->config);
    if (!started.ok()) {
      spare_not_before = Now() + kSpareRespawn;
      Log(LogLevel::kWarn, "probe_spare_failed", {{"variant", next->config.name}, {"error", started.status().message()}});
      return;
    }
    spare = std::move(started.value());
  }

  // A spare says hello and then nothing until it is used.
  void OnSpareMessage(std::string_view bytes) {
    auto decoded = proto::DecodeReply(bytes);
    if (decoded.ok() && std::holds_alternative<proto::Hello>(decoded.value()) && !spare->said_hello &&
        std::get<proto::Hello>(decoded.value()).protocol == proto::kProtocolVersion) {
      spare->said_hello = true;
      return;
    }
    Log(LogLevel::kWarn, "probe_spare_dropped", {{"variant", spare->target}, {"why", "unexpected message"}});
    spare.reset();
    spare_not_before = Now() + kSpareRespawn;
  }

  void OnSpareExit() {
    if (!spare || !spare->process || !spare->process->TryReap()) return;
    Log(LogLevel::kWarn, "probe_spare_died", {{"variant", spare->target}, {"how", spare->process->exit_info()->Describe()},
                                              {"stderr_tail", spare->process->stderr_tail()}});
    spare.reset();
    spare_not_before = Now() + kSpareRespawn;
  }

  // The probe survived: the command goes to the new active (the program the
  // probe ran) and is committed on its answer. If the active changed again
  // meanwhile, the probe says nothing about the new one: quarantined.
  bool DeliverAfterProbe(Command& c) {
    Variant* target = PromoteIfNeeded();
    if (target == nullptr || target->config.name != c.probe.value("variant", "")) return false;
    c.probe["delivered"] = true;
    c.probe["failed_active"] = c.standby_active;
    c.standby_active = target->config.name;
    c.outcomes[target->config.name] = voter::Outcome{target->config.name, voter::OutcomeKind::kPending, "", "", ""};
    const std::uint64_t wire_seq = c.is_query ? last_seq : c.seq;
    if (c.is_query) {
      Send(*target, proto::Query{wire_seq, c.payload}, Purpose::kVote, "answer", c.id);
    } else {
      Send(*target, proto::Apply{wire_seq, c.time_ns, c.payload}, Purpose::kVote, "applied", c.id);
    }
    Log(LogLevel::kInfo, "probe_delivered", {{"seq", c.seq}, {"variant", target->config.name}});
    return true;
  }

  // False (and the probe ended, inconclusive) when its connection is gone.
  bool SendToProbe(const proto::Request& request) {
    if (SendToIdentity(probe->identity, proto::Encode(request))) return true;
    EndProbe("inconclusive", "its connection to nvsd is gone");
    return false;
  }

  // Ends the probe: `outcome` is "survived", "crashed", "hung", "failed"
  // (a protocol error on the command) or "inconclusive" (it could not be
  // prepared). The process is killed and reaped; the command is decided at
  // the next Pump.
  void EndProbe(const std::string& outcome, const std::string& detail, const std::string& result = "") {
    if (!probe) return;
    Command* c = FindActive(probe->command);
    json record = {{"variant", probe->target},
                   {"probe", probe->identity},
                   {"outcome", outcome},
                   {"detail", detail},
                   {"after_ms", MillisSince(probe->started, Now())}};
    if (probe->process) {
      record["pid"] = probe->process->pid();
      probe->process->DrainStderr();
      record["stderr_tail"] = probe->process->stderr_tail();
      if (const auto& exit = probe->process->exit_info()) {
        record["exit"] = {{"signal", exit->signaled ? exit->signal : 0},
                          {"exit_code", exit->signaled ? json() : json(exit->exit_code)},
                          {"description", exit->Describe()}};
      }
    }
    if (outcome == "survived") record["result"] = ParseOrString(result);
    json event = {{"seq", c != nullptr ? c->seq : 0}, {"variant", probe->target}, {"probe", probe->identity},
                  {"phase", "done"}, {"outcome", outcome}, {"detail", detail}};
    Log(outcome == "survived" ? LogLevel::kInfo : LogLevel::kWarn, "probe_done", event);
    Publish("probe", event);
    if (c != nullptr) c->probe = std::move(record);
    probe->process.reset();  // SIGKILLs its group and reaps it
    probe.reset();
  }

  void AdvanceProbe() {
    if (!probe || probe->phase != Probe::Phase::kPreparing || !probe->said_hello || !probe->snapshot) return;
    Command* c = FindActive(probe->command);
    if (c == nullptr) {
      EndProbe("inconclusive", "the command is gone");
      return;
    }
    probe->phase = Probe::Phase::kRestoring;
    probe->phase_since = Now();
    SendToProbe(proto::Restore{last_seq, probe->snapshot->state});
  }

  void OnProbeMessage(std::string_view bytes) {
    auto decoded = proto::DecodeReply(bytes);
    const bool applying = probe->phase == Probe::Phase::kApplying;
    if (!decoded.ok()) {
      EndProbe(applying ? "failed" : "inconclusive", "sent garbage (" + decoded.error().reason + ")");
      return;
    }
    const proto::Reply& reply = decoded.value();
    if (auto* hello = std::get_if<proto::Hello>(&reply)) {
      if (probe->said_hello || hello->protocol != proto::kProtocolVersion) {
        EndProbe(applying ? "failed" : "inconclusive", "unexpected hello");
        return;
      }
      probe->said_hello = true;
      AdvanceProbe();
      return;
    }
    if (auto* error = std::get_if<proto::Error>(&reply)) {
      EndProbe(applying ? "failed" : "inconclusive", "protocol error " + error->code + ": " + error->reason);
      return;
    }
    if (probe->phase == Probe::Phase::kRestoring && std::holds_alternative<proto::Restored>(reply)) {
      const auto& restored = std::get<proto::Restored>(reply);
      if (restored.digest != probe->snapshot->digest) {
        EndProbe("inconclusive", "restored digest " + restored.digest + " differs from " + probe->snapshot->digest);
        return;
      }
      Command* c = FindActive(probe->command);
      if (c == nullptr) {
        EndProbe("inconclusive", "the command is gone");
        return;
      }
      // (Applying only once it was sent: a death before it says nothing of the command.)
      if (c->is_query ? SendToProbe(proto::Query{last_seq, c->payload})
                      : SendToProbe(proto::Apply{c->seq, c->time_ns, c->payload})) {
        probe->phase = Probe::Phase::kApplying;
        probe->phase_since = Now();
      }
      return;
    }
    if (applying && std::holds_alternative<proto::Applied>(reply)) {
      EndProbe("survived", "answered", std::get<proto::Applied>(reply).result);
      return;
    }
    if (applying && std::holds_alternative<proto::Answer>(reply)) {
      EndProbe("survived", "answered", std::get<proto::Answer>(reply).result);
      return;
    }
    EndProbe(applying ? "failed" : "inconclusive", "unexpected " + std::string(proto::TypeName(reply)));
  }

  void OnProbeExit() {
    DrainVariantSocket();  // an answer sent just before the exit still counts
    if (!probe || !probe->process) return;
    const auto info = probe->process->TryReap();
    if (!info) return;
    if (probe->phase == Probe::Phase::kApplying) {
      EndProbe("crashed", info->Describe());
    } else {
      EndProbe("inconclusive", "died before it could run the command: " + info->Describe());
    }
  }

  void OnProbeSnapshot(std::uint64_t command, const proto::StateReply& state) {
    if (!probe || probe->command != command) return;
    probe->snapshot = state;
    AdvanceProbe();
  }

  Clock::time_point ProbeDeadline() const {
    return probe->phase_since +
           milliseconds(probe->phase == Probe::Phase::kApplying ? config.deadline_ms : config.sync_deadline_ms);
  }

  void CheckProbeDeadline() {
    if (spare && !spare->said_hello && Now() - spare->started > milliseconds(config.sync_deadline_ms)) {
      Log(LogLevel::kWarn, "probe_spare_dropped", {{"variant", spare->target}, {"why", "no hello"}});
      spare.reset();
      spare_not_before = Now() + kSpareRespawn;
    }
    if (!probe || Now() < ProbeDeadline()) return;
    if (probe->phase == Probe::Phase::kApplying) {
      EndProbe("hung", "no reply within " + std::to_string(config.deadline_ms) + " ms");
    } else {
      EndProbe("inconclusive", "not ready within " + std::to_string(config.sync_deadline_ms) + " ms");
    }
  }

  void Dispatch(Command c) {
    if (!c.is_query) c.seq = ++last_seq;
    c.time_ns = env.UnixNowNs();
    if (journal && !c.is_query) {
      // Write-ahead: the admit record is on disk (fsync "always") before any
      // variant is sent the command, so a restarted nvsd knows every
      // command its variants may have seen, and retests the one it never
      // decided instead of delivering it again (Recover). It was only
      // buffered until the verdict's fsync, about 50 ms later after a crash:
      // an outside test killed nvsd in that window, and the resent poison
      // killed both variants again. The flush also writes the verdicts
      // decided before it in this turn: under load, one fsync per command.
      JournalRecord admit;
      admit.type = "admit";
      admit.seq = c.seq;
      admit.time_ns = c.time_ns;
      admit.id = c.request_id;
      admit.client = HexIdentity(c.client.envelope[0]);
      admit.fingerprint = c.fingerprint;
      admit.key = c.client.user;  // (its request ids are this key's)
      admit.cmd = c.payload;
      AppendRecord(EncodeJournalRecord(admit));
      if (Flushed flushed = journal->Flush(); !flushed.ok()) {
        OnJournalFailure(flushed);
        const auto reply = proto::ClientReply::Unavailable(
            c.request_id, "the journal cannot be written (" + journal_trouble->reason + "): not sent to any variant");
        Reply(c.client, reply);
        for (const auto& also : c.also_reply) Reply(also, reply);
        return;
      }
    }
    c.dispatched_at = Now();
    NoteDispatched();
    const std::uint64_t wire_seq = c.is_query ? last_seq : c.seq;
    // Every configured variant has an outcome: the voters start pending; the
    // others (failed, restarting, syncing) are excluded, so a vote never
    // waits for a variant that was not asked.
    Variant* the_active = standby ? PromoteIfNeeded() : nullptr;
    if (the_active != nullptr) c.standby_active = the_active->config.name;
    for (auto& v : variants) {
      const bool votes = standby ? &v == the_active
                                 : Voting(v) && !v.restart_when_idle;
      c.outcomes[v.config.name] =
          voter::Outcome{v.config.name, votes ? voter::OutcomeKind::kPending : voter::OutcomeKind::kExcluded, "",
                         votes ? "" : v.exit_seen_at ? std::string("not voting: its process exited")
                                                     : std::string("not voting: ") + Name(v.state),
                         ""};
    }
    active.push_back(std::move(c));
    Command& placed = active.back();
    for (auto& [name, outcome] : placed.outcomes) {
      if (outcome.kind != voter::OutcomeKind::kPending) continue;
      Variant& v = *Find(name);
      if (placed.is_query) {
        Send(v, proto::Query{wire_seq, placed.payload}, Purpose::kVote, "answer", placed.id);
      } else {
        Send(v, proto::Apply{wire_seq, placed.time_ns, placed.payload}, Purpose::kVote, "applied", placed.id);
      }
    }
  }

  // The outcomes the vote counts: each variant's, or, for a hung variant
  // whose hang was retested (Retest), what its fresh probe did.
  std::vector<voter::Outcome> OutcomesOf(const Command& c) const {
    std::vector<voter::Outcome> list;
    for (const auto& [name, outcome] : c.outcomes) {
      auto retested = c.retest_outcomes.find(name);
      list.push_back(retested != c.retest_outcomes.end() ? retested->second : outcome);
    }
    return list;
  }

  const voter::Outcome& CountedOutcome(const Command& c, const std::string& name) const {
    auto retested = c.retest_outcomes.find(name);
    return retested != c.retest_outcomes.end() ? retested->second : c.outcomes.at(name);
  }

  // Every failure on `c` was a hang (none crashed or answered garbage), so
  // the voter's POISON rests on hangs alone: a stopped process, a paused VM
  // or a starved host look the same. Found by an outside test: SIGSTOP of
  // two of three variants for 2 s quarantined (and blocked for good) the
  // benign command in flight in 4 of 8 trials.
  bool OnlyHangsMakeItPoison(const Command& c, const voter::Verdict& verdict) const {
    return !standby && !c.retested && verdict.kind == voter::VerdictKind::kPoison && !verdict.hung.empty() &&
           verdict.crashed.empty() && verdict.faulty.empty() && checkpoint.has_value();
  }

  void Decide(Command& c) {
    if (standby) {
      DecideStandby(c);
      return;
    }
    if (retest && retest->command == c.id) return;  // decided when the retest is done
    voter::Policy policy = config.policy;
    policy.configured = variants.size();
    voter::Verdict verdict = voter::Decide(OutcomesOf(c), policy);
    if (verdict.kind == voter::VerdictKind::kPending) return;
    if (OnlyHangsMakeItPoison(c, verdict)) {
      if (!retest) StartHungRetest(c, verdict.hung);
      return;
    }
    if (c.retested) verdict.reason += "; " + c.retest.value("conclusion", std::string());
    c.verdict = verdict;
    c.decided_ms = MillisSince(c.dispatched_at, Now());
    if (verdict.kind == voter::VerdictKind::kCommit && !c.is_query && HasExpired(c)) {
      OnExpired(c);
      return;
    }
    RememberVerdict(c);
    json event = {{"seq", c.seq},
                  {"query", c.is_query},
                  {"verdict", std::string(voter::ToString(verdict.kind))},
                  {"reason", verdict.reason},
                  {"agreeing", verdict.agreeing},
                  {"dissenting", verdict.dissenting},
                  {"crashed", verdict.crashed},
                  {"hung", verdict.hung},
                  {"faulty", verdict.faulty},
                  {"latency_ms", MillisSince(c.dispatched_at, Now())}};
    if (c.retested) event["retest"] = c.retest;
    Publish("verdict", event);
    if (verdict.kind != voter::VerdictKind::kCommit) Log(LogLevel::kWarn, "verdict", event);

    switch (verdict.kind) {
      case voter::VerdictKind::kCommit: OnCommit(c); break;
      case voter::VerdictKind::kPoison: OnPoison(c); break;
      case voter::VerdictKind::kNoQuorum: OnNoQuorum(c); break;
      case voter::VerdictKind::kPending: break;
    }
  }

  // A command the variants agreed on, decided after the client's deadline
  // (expires_at_ms) passed: its client may have given up and told its user
  // it was not done (the Videohub gateway answers NAK), so it is not: it is
  // refused and rolled back like a refused command.
  void OnExpired(Command& c) {
    c.expired = true;
    RememberVerdict(c);
    const auto reply = ExpiredReply(c, "by the time the variants agreed on it");
    json event = {{"seq", c.seq}, {"query", false}, {"verdict", "EXPIRED"}, {"reason", reply.reason},
                  {"latency_ms", MillisSince(c.dispatched_at, Now())}};
    Publish("verdict", event);
    Log(LogLevel::kWarn, "verdict", event);
    c.verdict->reason = reply.reason;
    JournalVerdict(c);
    ReplyCommand(c, reply);
    RollBack(c);
  }

  // Once every outcome of a decided command is in (late replies, crashes and
  // hangs included), the complete picture.
  void PublishSettled(const Command& c) {
    voter::Policy policy = config.policy;
    policy.configured = variants.size();
    const voter::Verdict full = standby ? *c.verdict : voter::Decide(OutcomesOf(c), policy);
    Publish("settled", {{"seq", c.seq},
                        {"query", c.is_query},
                        {"verdict", c.expired ? "EXPIRED" : std::string(voter::ToString(c.verdict->kind))},
                        {"agreeing", full.agreeing},
                        {"dissenting", full.dissenting},
                        {"crashed", full.crashed},
                        {"hung", full.hung},
                        {"faulty", full.faulty},
                        {"excluded", full.excluded}});
  }

  // The final reply to a command, to every client that asked for it; kept
  // by request id so that a retry gets it again.
  void ReplyCommand(const Command& c, const proto::ClientReply& reply) {
    Reply(c.client, reply, c.verdict_record);
    for (const auto& also : c.also_reply) Reply(also, reply, c.verdict_record);
    if (!c.is_query) Remember(RequestKey(c.client.user, c.request_id), reply, c.verdict_record);
  }

  // `record`: the ordinal of its verdict record (0: none, or one on disk).
  // `key`: RequestKey of the request.
  void Remember(const std::string& key, const proto::ClientReply& reply, std::uint64_t record = 0) {
    answered.Remember(key, RememberedReply{reply, {}, record});
  }

  void JournalVerdict(Command& c) {
    if (!journal || c.is_query) return;
    c.verdict_record = AppendRecord(EncodeJournalRecord(VerdictRecord(c)));
  }

  static JournalRecord VerdictRecord(const Command& c) {
    JournalRecord record;
    record.type = "verdict";
    record.seq = c.seq;
    record.id = c.request_id;
    record.key = c.client.user;
    record.verdict = c.expired ? "EXPIRED" : std::string(voter::ToString(c.verdict->kind));
    if (c.expired) {
      record.reason = c.verdict->reason;
    } else if (c.verdict->kind == voter::VerdictKind::kCommit) {
      record.result = c.verdict->result;
    } else {
      record.report = c.report_id;
      record.fingerprint = c.fingerprint;
      record.reason = c.verdict->reason;
    }
    return record;
  }

  void OnCommit(Command& c) {
    const voter::Verdict& verdict = *c.verdict;
    proto::ClientReply reply;
    reply.id = c.request_id;
    if (c.is_query) {
      reply.status = proto::ClientStatus::kAnswered;
    } else {
      reply.status = proto::ClientStatus::kCommitted;
      reply.seq = c.seq;
      tail.push_back({c.seq, c.time_ns, c.payload});
      ++commits;
      ++commits_since_checkpoint;
    }
    reply.result = verdict.result;
    JournalVerdict(c);
    ReplyCommand(c, reply);
    for (const auto& name : verdict.dissenting) {
      // (A retest probe that dissented stood in for a variant already
      // restarted for its hang: its new incarnation did nothing wrong.)
      if (!c.retest_outcomes.count(name)) MarkDivergent(c, *Find(name), CountedOutcome(c, name).result);
    }
    if (!c.is_query && commits_since_checkpoint >= config.checkpoint_interval && !checkpointer.pending()) {
      StartCheckpoint(c);
    }
  }

  // "q-000000000042-1a2b3c4d": the kind, the seq, the fingerprint's start.
  static std::string ReportId(const char* kind, std::uint64_t seq, const std::string& fingerprint) {
    const std::string digits = std::to_string(seq);
    return std::string(kind) + "-" + std::string(12 - std::min<std::size_t>(12, digits.size()), '0') + digits + "-" +
           fingerprint.substr(0, 8);
  }

  void OnPoison(Command& c) {
    c.report_id = ReportId("q", c.seq, c.fingerprint);
    std::string report_text;
    if (Status written = WriteReport(c, "blocked", &report_text); !written.ok()) {
      // The block holds in memory, but a quarantine a restart would forget
      // is not one to announce (an outside test: a poison answered
      // `quarantined` while the disk was full was delivered again after a
      // restart). No verdict record either: the admit stays undecided, so
      // the next start retests it and quarantines it for good.
      const auto unavailable = proto::ClientReply::Unavailable(
          c.request_id, "it killed variants (" + c.verdict->reason + "), and is blocked while nvsd runs, but the "
                        "quarantine report cannot be written (" + written.message() + "): not carried out");
      Reply(c.client, unavailable);
      for (const auto& also : c.also_reply) Reply(also, unavailable);
      Log(LogLevel::kError, "quarantined_in_memory",
          {{"report", c.report_id}, {"fingerprint", c.fingerprint}, {"seq", c.seq}, {"error", written.message()}});
      QuarantineUnwritten(c, report_text, written.message());
      RollBack(c);
      return;
    }
    proto::ClientReply reply;
    reply.id = c.request_id;
    reply.status = proto::ClientStatus::kQuarantined;
    reply.report = c.report_id;
    reply.fingerprint = c.fingerprint;
    reply.reason = c.verdict->reason;
    JournalVerdict(c);
    ReplyCommand(c, reply);
    Publish("quarantine",
            {{"report", c.report_id}, {"fingerprint", c.fingerprint}, {"seq", c.seq}, {"reason", c.verdict->reason}});
    Log(LogLevel::kError, "quarantined",
        {{"report", c.report_id}, {"fingerprint", c.fingerprint}, {"seq", c.seq}, {"reason", c.verdict->reason}});
    RollBack(c);
  }

  void OnNoQuorum(Command& c) {
    c.report_id = ReportId("n", c.seq, c.fingerprint);
    WriteReport(c, "no_quorum");
    JournalVerdict(c);
    ReplyCommand(c, proto::ClientReply::Rejected(c.request_id, "no_quorum",
                                                 c.verdict->reason + "; rolled back, recorded as " + c.report_id));
    RollBack(c);
  }

  // Every variant that applied a refused command goes back to the state
  // before it (checkpoint + committed tail), through a sync round.
  void RollBack(Command& c) {
    if (c.is_query) return;
    for (auto& [name, outcome] : c.outcomes) {
      Variant& v = *Find(name);
      if (outcome.kind == voter::OutcomeKind::kReply || outcome.kind == voter::OutcomeKind::kPending) {
        v.needs_sync = true;
        v.last_fault = "rolled back: seq " + std::to_string(c.seq) + " was " +
                       (c.expired ? std::string("agreed on after its deadline")
                                  : "refused (" + std::string(voter::ToString(c.verdict->kind)) + ")");
      }
    }
    if (!c.report_id.empty()) reports_awaiting_pre_state.push_back(c.report_id);
  }

  json ReportOf(const Command& c, const std::string& status) {
    json outcomes = json::array();
    for (const auto& [name, outcome] : c.outcomes) {
      json entry = {{"variant", name}, {"outcome", std::string(voter::ToString(outcome.kind))}};
      if (outcome.kind == voter::OutcomeKind::kReply) entry["result"] = ParseOrString(outcome.result);
      if (auto it = c.answered_ms.find(name); it != c.answered_ms.end()) entry["after_ms"] = it->second;
      if (!outcome.detail.empty()) entry["detail"] = outcome.detail;
      if (auto it = c.evidence.find(name); it != c.evidence.end()) {
        for (const auto& [key, value] : it->second.items()) entry[key] = value;
      }
      outcomes.push_back(entry);
    }
    return {{"id", c.report_id},
            {"status", status},
            {"fingerprint", c.fingerprint},
            {"kind", c.is_query ? "query" : "command"},
            {"command", ParseOrString(c.payload)},
            {"seq", c.seq},
            {"time_ns", c.time_ns},
            {"time", IsoTime(c.time_ns)},
            {"client", {{"request_id", c.request_id},
                        {"key", config.client_curve ? json(c.client.user) : json()},
                        {"authenticated", config.client_curve.has_value()}}},
            {"pre_state",
             {{"checkpoint_seq", checkpoint ? checkpoint->seq : 0},
              {"checkpoint_digest", checkpoint ? checkpoint->digest : ""},
              {"tail_seqs", [&] {
                 json seqs = json::array();
                 for (const auto& e : tail) seqs.push_back(e.seq);
                 return seqs;
               }()}}},
            {"outcomes", outcomes},
            {"verdict", std::string(voter::ToString(c.verdict->kind))},
            {"decided_ms", c.decided_ms},
            {"reason", c.verdict->reason},
            {"policy", std::string(voter::ToString(config.policy.kind))},
            {"mode", config.mode},
            {"config", json::parse(VariantsAndPolicyJson(config))},
            {"review", json::array({{{"time", IsoTime(env.UnixNowNs())},
                                     {"action", status == "blocked" ? "quarantined" : "recorded"},
                                     {"by", "nvsd"},
                                     {"note", c.verdict->reason}}})}};
  }

  Status WriteReport(const Command& c, const std::string& status, std::string* text = nullptr) {
    json report = ReportOf(c, status);
    if (!c.probe.empty()) report["probe"] = c.probe;  // standby probe policy: what the probe did
    if (c.retested) report["retest"] = c.retest;       // hangs, or a suspect at recovery: what fresh processes did
    if (auto existing = quarantine->Read(c.report_id)) {
      json old = json::parse(*existing, nullptr, false);
      if (!old.is_discarded()) {
        if (old.contains("pre_state")) report["pre_state"] = old["pre_state"];
        if (old.contains("review")) report["review"] = old["review"];
      }
    }
    if (text != nullptr) *text = Dump(report);
    Status written = quarantine->Write(c.report_id, Dump(report));
    if (!written.ok()) Log(LogLevel::kError, "report_write_failed", {{"report", c.report_id}, {"error", written.message()}});
    return written;
  }

  // A quarantine whose report could not be written: blocked in memory, its
  // verdict not journaled (the admit stays undecided, so a restart retests
  // it), and nvsd takes no command until the report is on disk (a
  // checkpoint must not pass over the undecided admit meanwhile).
  void QuarantineUnwritten(const Command& c, const std::string& text, const std::string& error) {
    unwritten_reports.push_back({c.report_id, text, EncodeJournalRecord(VerdictRecord(c))});
    const std::string kind = error.find("No space") != std::string::npos    ? "full"
                             : error.find("Read-only") != std::string::npos ? "read_only"
                                                                            : "io_error";
    const std::string reason = "a quarantine report cannot be written: " + error;
    if (!journal_trouble) {
      Log(LogLevel::kError, "journal_degraded", {{"kind", kind}, {"reason", reason}});
      Publish("journal", {{"state", "degraded"}, {"kind", kind}, {"reason", reason}});
      journal_trouble = JournalTrouble{kind, reason, Now()};
    }
    journal_retry_at = Now() + std::chrono::seconds(1);
  }

  // After the round that rolled the variants back: record the pre-command
  // state (digest and snapshot file) in the reports that wait for it.
  void RecordPreState() {
    if (!checkpoint) return;
    for (const auto& id : reports_awaiting_pre_state) {
      auto text = quarantine->Read(id);
      if (!text) continue;
      json report = json::parse(*text, nullptr, false);
      if (!report.is_object()) continue;
      if (!report["pre_state"].is_object()) report["pre_state"] = json::object();
      auto file = quarantine->WriteAttachment(id + ".state.json", checkpoint->state + "\n");
      report["pre_state"]["digest"] = checkpoint->digest;
      report["pre_state"]["snapshot"] = file.ok() ? file.value() : "";
      report["pre_state"]["snapshot_seq"] = checkpoint->seq;
      Status written = quarantine->Write(id, Dump(report));
      if (!written.ok()) Log(LogLevel::kError, "report_write_failed", {{"report", id}, {"error", written.message()}});
    }
    reports_awaiting_pre_state.clear();
  }

  // ---- checkpoints and sync rounds --------------------------------------------

  void StartCheckpoint(const Command& c) {
    std::vector<Variant*> agreeing;
    for (const auto& name : c.verdict->agreeing) {
      Variant* v = Find(name);
      if (v != nullptr && Voting(*v) && !v->restart_when_idle) {
        agreeing.push_back(v);
      }
    }
    if (agreeing.empty()) return;
    const std::string snapshot_from = agreeing.front()->config.name;
    std::vector<Variant*> others;
    for (auto& v : variants) {
      if (v.state != VariantState::kHealthy || v.needs_sync || v.config.name == snapshot_from) continue;
      if (!standby && c.outcomes.at(v.config.name).kind == voter::OutcomeKind::kExcluded) continue;
      others.push_back(&v);
    }
    std::vector<std::string> names;
    for (const Variant* v : others) names.push_back(v->config.name);
    checkpointer.Start(c.seq, snapshot_from, names);
    Send(*agreeing.front(), proto::SnapshotRequest{c.seq}, Purpose::kCheckpointSnapshot, "state");
    for (Variant* v : others) Send(*v, proto::DigestRequest{c.seq}, Purpose::kCheckpointDigest, "digest");
  }

  void AdvanceCheckpoint() {
    // (Taken out of the checkpointer first: a failed flush below undoes
    // commits, which abandons what is pending.)
    const auto decision = checkpointer.Take();
    if (!decision) return;
    const Checkpointer::Decision& d = *decision;
    if (!d.accepted) {
      Log(LogLevel::kWarn, "checkpoint_rejected", {{"seq", d.seq}, {"reason", "no majority for the snapshot's digest"}});
      for (const auto& name : d.asked) {
        if (Variant* v = Find(name)) v->needs_sync = true;  // let a round settle who is right
      }
      return;
    }
    // A checkpoint holds only commits whose verdicts are on disk: while the
    // journal is in trouble, or if this flush fails, there is none (a later
    // one is taken when the journal is back).
    if (journal_trouble) return;
    if (journal) {
      Flushed flushed = journal->Flush(/*force=*/true);
      if (!flushed.ok()) {
        OnJournalFailure(flushed);
        return;
      }
    }
    checkpoint = Checkpoint{d.seq, d.state, d.digest};
    SaveCheckpoint();
    std::erase_if(tail, [&](const CommittedEntry& e) { return e.seq <= d.seq; });
    commits_since_checkpoint = static_cast<int>(tail.size());
    Log(LogLevel::kDebug, "checkpoint", {{"seq", d.seq}, {"digest", checkpoint->digest}});
    for (const auto& name : d.mismatched) {
      Variant& v = *Find(name);
      v.last_fault = "state digest differs at checkpoint seq " + std::to_string(d.seq);
      v.restart_when_idle = true;
      v.stop_reason = v.last_fault;
      Log(LogLevel::kWarn, "digest_mismatch", {{"variant", name}, {"seq", d.seq}, {"digest", d.digests.at(name)},
                                               {"expected", checkpoint->digest}});
    }
  }

  // The checkpoint on disk: written atomically, after the journal records it
  // covers are durable (so a recovery never finds a state without the
  // records that explain it). The one it replaces is kept as
  // checkpoint.prev.json: recovery falls back to it when the newest is
  // damaged.
  void SaveCheckpoint() {
    if (!checkpoint) return;
    if (journal) {
      Flushed flushed = journal->Flush(/*force=*/true);
      if (!flushed.ok()) {
        OnJournalFailure(flushed);
        return;
      }
    }
    checkpoint->commits =
        commits - static_cast<std::uint64_t>(std::count_if(tail.begin(), tail.end(), [&](const CommittedEntry& e) {
          return e.seq > checkpoint->seq;
        }));
    // The new one whole on disk first, under its own name; then the current
    // one becomes the previous, and the new one the current. A failure at
    // any step leaves a pair recovery starts from (at worst: no current, and
    // the last one as the previous), never fewer checkpoints than before.
    StorageError error;
    Status written = state->WriteAtomically(kNextCheckpointFile, FormatCheckpoint(*checkpoint), &error);
    const bool had = saved_checkpoint && state->Exists(kCheckpointFile);
    if (written.ok() && had) written = state->Rename(kCheckpointFile, kPreviousCheckpointFile, &error);
    if (written.ok()) written = state->Rename(kNextCheckpointFile, kCheckpointFile, &error);
    if (!written.ok()) {
      const std::string what = DescribeStorageError(error.error_number);
      if (!checkpoint_error) {
        Publish("journal", {{"state", "checkpoint_failing"}, {"reason", written.message()}, {"what", what}});
      }
      checkpoint_error = "checkpoint seq " + std::to_string(checkpoint->seq) + " could not be written: " +
                         written.message() + " (" + what + "); commands are still journaled, but a restart replays "
                         "more of the journal and no segment is pruned";
      Log(LogLevel::kError, "checkpoint_write_failed",
          {{"seq", checkpoint->seq}, {"error", written.message()}, {"what", what}});
      return;
    }
    if (checkpoint_error) {
      Log(LogLevel::kWarn, "checkpoint_written_again", {{"seq", checkpoint->seq}, {"was", *checkpoint_error}});
      Publish("journal", {{"state", "checkpoint_ok"}, {"seq", checkpoint->seq}});
      checkpoint_error.reset();
    }
    if (had) previous_checkpoint = saved_checkpoint;
    saved_checkpoint = checkpoint;
    checkpoint_file = kCheckpointFile;
    RotateJournal();
  }

  // At a checkpoint (on disk): a new segment once the current one is big
  // enough, and the pruning of old segments the retention lets go. A segment
  // is only pruned when both kept checkpoints cover every record in it.
  void RotateJournal() {
    if (!journal || journal->bytes() < config.journal_segment_bytes) return;
    // The current segment whole on disk first: a closed segment is never
    // torn (recovery takes damage in one for what it is).
    Flushed flushed = journal->Flush(/*force=*/true);
    if (!flushed.ok()) {
      OnJournalFailure(flushed);
      return;
    }
    StorageError error;
    const std::string next = JournalSegmentName(journal_segment + 1);
    auto file = state->OpenForAppend(next, &error);
    auto opened = file.ok() ? JournalWriter::Start(std::move(file.value()), journal_policy, config.fsync_batch_ms, &error)
                            : Result<std::unique_ptr<JournalWriter>>(file.status());
    Status synced = opened.ok() ? state->SyncDir(kJournalDir, &error) : opened.status();
    if (!synced.ok()) {
      Log(LogLevel::kError, "journal_rotate_failed", {{"segment", state->Where(next).string()}, {"error", synced.message()}});
      return;  // the current segment goes on growing
    }
    closed_segments.push_back({journal_segment, last_seq});
    journal = std::move(opened.value());
    journal_base = journal_appended;
    ++journal_segment;
    Log(LogLevel::kInfo, "journal_segment", {{"segment", state->Where(next).string()}, {"seq", last_seq}});
    // Nor while it holds a verdict of the last `remembered_requests`
    // commands: their ids are remembered across a restart only while their
    // verdict records are there to read (each seq has at most one verdict,
    // so those are within the last remembered_requests seqs).
    const std::uint64_t remembered_from =
        last_seq > config.remembered_requests ? last_seq - config.remembered_requests : 0;
    const std::uint64_t covered = std::min({checkpoint ? checkpoint->seq : 0,
                                            previous_checkpoint ? previous_checkpoint->seq : checkpoint ? checkpoint->seq : 0,
                                            remembered_from});
    while (config.journal_keep_segments > 0 && closed_segments.size() > config.journal_keep_segments &&
           closed_segments.front().max_seq <= covered) {
      const std::string name = JournalSegmentName(closed_segments.front().index);
      Status removed = state->Remove(name, &error);
      Log(removed.ok() ? LogLevel::kInfo : LogLevel::kError, "journal_pruned",
          {{"segment", state->Where(name).string()}, {"max_seq", closed_segments.front().max_seq},
           {"error", removed.ok() ? "" : removed.message()}});
      if (!removed.ok()) break;
      closed_segments.pop_front();
    }
  }

  void StartRound() {
    Round r;
    r.started = Now();
    // With no voting variant left (all rolled back or restarted), the truth
    // is the checkpoint plus the committed tail, never a fresh process.
    const bool any_voting = std::any_of(variants.begin(), variants.end(), [&](const Variant& v) { return Voting(v); });
    for (auto& v : variants) {
      if (v.state != VariantState::kHealthy && v.state != VariantState::kSyncing) continue;
      r.participants.insert(v.config.name);
      v.round_digest.reset();
      v.refused_checkpoint.reset();
      if (v.state == VariantState::kHealthy || (!any_voting && checkpoint)) {
        r.trusted.insert(v.config.name);
        if (v.needs_sync && checkpoint) {
          // Rolled back: the checkpoint and the committed commands since.
          SendPaced(v, proto::Restore{checkpoint->seq, checkpoint->state}, Purpose::kCheckpointRestore, "restored");
          for (const auto& e : tail) SendPaced(v, proto::Apply{e.seq, e.time_ns, e.payload}, Purpose::kCatchUp, "applied");
        }
      } else if (!checkpoint && !tail.empty()) {
        // No checkpoint left, the whole journal there: the state is rebuilt
        // by replaying every commit on the variants' initial state.
        for (const auto& e : tail) SendPaced(v, proto::Apply{e.seq, e.time_ns, e.payload}, Purpose::kCatchUp, "applied");
      }
      SendPaced(v, proto::DigestRequest{last_seq}, Purpose::kRoundDigest, "digest");
    }
    if (r.participants.empty()) return;
    Log(LogLevel::kInfo, "sync_round", {{"participants", r.participants}, {"trusted", r.trusted},
                                        {"checkpoint_seq", checkpoint ? checkpoint->seq : 0}, {"tail", tail.size()}});
    round = std::move(r);
  }

  // The seq of the last committed command (the state's seq).
  std::uint64_t LastCommittedSeq() const {
    return !tail.empty() ? tail.back().seq : checkpoint ? checkpoint->seq : 0;
  }

  // A catch-up request, sent when fewer than kCatchUpWindow requests are
  // unanswered at the variant.
  void SendPaced(Variant& v, const proto::Request& request, Purpose purpose, std::string_view reply_type) {
    const Sent sent{purpose, reply_type, proto::SeqOf(request), 0, {}};
    for (const auto& out : v.channel.Pace(sent, proto::Encode(request), kCatchUpWindow, Now())) {
      SendToIdentity(v.identity, out.bytes);
    }
  }

  // Healthy, checked, and its process not seen dead.
  bool Voting(const Variant& v) const { return v.state == VariantState::kHealthy && !v.needs_sync && !v.exit_seen_at; }

  void AdvanceRound() {
    if (!round) return;
    Round& r = *round;
    if (r.participants.empty()) {
      round.reset();
      return;
    }
    switch (r.phase) {
      case Round::Phase::kDigests: {
        for (const auto& name : r.participants) {
          if (!Find(name)->round_digest) return;
        }
        if (RefusedCheckpoint(r)) return;
        // Which digest wins, who gives it, who is restarted (DecideRound:
        // the rules, and their table test).
        std::vector<RoundMember> members;
        for (const auto& name : r.participants) {
          const Variant& v = *Find(name);
          members.push_back({name, *v.round_digest, r.trusted.count(name) != 0, Voting(v)});
        }
        const RoundDecision decision = DecideRound(members);
        r.chosen_digest = decision.chosen;
        if (decision.tie) {
          // No strict majority: nobody can tell which state is right. Once,
          // put every participant back on the checkpoint plus the committed
          // tail (fresh ones included, as extra witnesses) and compare again.
          // Or, while another variant is coming back, wait for it as a
          // witness (ReadyForRound): an unresolved tie picks a digest that
          // may be a faulty variant's (the simulator found a variant that
          // corrupts its state winning a tie against a correct one, with the
          // third about to join).
          bool coming = false;
          for (const auto& v : variants) {
            if (r.participants.count(v.config.name) == 0 &&
                (v.state == VariantState::kStarting || v.state == VariantState::kSyncing ||
                 (v.state == VariantState::kDown && v.restart_pending))) {
              coming = true;
            }
          }
          if (!tie_retried || coming) {
            Log(LogLevel::kWarn, "digest_tie", {{"pool", decision.pool}, {"digests", decision.digests},
                                                {"waiting_for_another", coming}});
            tie_retried = true;
            for (const auto& name : r.participants) Find(name)->needs_sync = true;
            round.reset();
            return;
          }
          Log(LogLevel::kError, "digest_tie_unresolved",
              {{"pool", decision.pool}, {"chosen", r.chosen_digest}, {"why", "no majority even after replaying the checkpoint"}});
        }
        tie_retried = false;
        r.donor = decision.donor;
        for (const auto& name : decision.restart) {
          Variant& v = *Find(name);
          const std::string why = "state digest " + *v.round_digest + " differs from " + r.chosen_digest;
          Log(LogLevel::kWarn, "digest_mismatch", {{"variant", name}, {"digest", *v.round_digest}, {"expected", r.chosen_digest}});
          r.participants.erase(name);
          Kill(v, why, std::nullopt, "");
        }
        r.receivers.insert(decision.receivers.begin(), decision.receivers.end());
        const bool want_snapshot = !r.receivers.empty() || !checkpoint || !reports_awaiting_pre_state.empty() ||
                                   static_cast<int>(tail.size()) >= config.checkpoint_interval;
        if (want_snapshot && !r.donor.empty()) {
          r.phase = Round::Phase::kSnapshot;
          Send(*Find(r.donor), proto::SnapshotRequest{last_seq}, Purpose::kRoundSnapshot, "state");
          return;
        }
        FinishRound();
        return;
      }
      case Round::Phase::kSnapshot:
        return;  // OnRoundSnapshot moves on
      case Round::Phase::kRestoring:
        for (const auto& name : r.receivers) {
          if (r.participants.count(name) && !Find(name)->round_digest) return;
        }
        FinishRound();
        return;
    }
  }

  // A variant that refused the checkpoint's restore (or restored it to
  // another digest) is taken out; when every trusted participant did, the
  // checkpoint is what is wrong: nvsd names the file and stops serving
  // rather than start on a state nobody vouches for (an outside test put an
  // out-of-range route in checkpoint.json: every variant refused it, and
  // nvsd said nothing of the file). True when the round is over.
  bool RefusedCheckpoint(Round& r) {
    std::vector<std::string> refused;
    std::size_t trusted = 0;
    for (const auto& name : r.participants) {
      const Variant& v = *Find(name);
      if (r.trusted.count(name)) ++trusted;
      if (v.refused_checkpoint) refused.push_back(name);
    }
    if (refused.empty()) return false;
    if (refused.size() >= trusted) {
      std::string details;
      for (const auto& name : refused) {
        details += (details.empty() ? "" : "; ") + name + " " + *Find(name)->refused_checkpoint;
      }
      const bool current = checkpoint_file == kCheckpointFile;
      checkpoint_problem = state->Where(checkpoint_file).string() + " (seq " + std::to_string(checkpoint->seq) +
                           ") is refused by every variant: " + details +
                           ". Stop nvsd and move that file away: it then starts from " +
                           (current ? std::string(kPreviousCheckpointFile) + " (or, with no checkpoint left, "
                                    : std::string("(with no checkpoint left) ")) +
                           "by replaying the whole journal, which needs every segment since the first command" +
                           (current ? ")" : "") + ", or restore it from a backup; `nvs journal check` says more";
      Log(LogLevel::kError, "checkpoint_refused", {{"file", state->Where(checkpoint_file).string()},
                                                   {"seq", checkpoint->seq}, {"details", details}});
      Publish("journal", {{"state", "checkpoint_refused"}, {"reason", *checkpoint_problem}});
      round.reset();
      return true;
    }
    for (const auto& name : refused) {
      Variant& v = *Find(name);
      const std::string why = "the checkpoint (seq " + std::to_string(checkpoint->seq) + "): " + *v.refused_checkpoint;
      r.participants.erase(name);
      Kill(v, why, std::nullopt, "");
    }
    return false;
  }

  void OnRoundSnapshot(Variant& v, const proto::StateReply& state) {
    if (!round || round->phase != Round::Phase::kSnapshot || round->donor != v.config.name) return;
    Round& r = *round;
    if (state.digest != r.chosen_digest) {
      Log(LogLevel::kWarn, "digest_mismatch", {{"variant", v.config.name}, {"digest", state.digest},
                                               {"expected", r.chosen_digest}, {"during", "snapshot"}});
      round.reset();
      Kill(v, "its snapshot's digest differs from the digest it reported", std::nullopt, "");
      return;
    }
    // The receivers restore while the checkpoint goes to disk.
    r.phase = Round::Phase::kRestoring;
    for (const auto& name : r.receivers) {
      Variant& receiver = *Find(name);
      receiver.round_digest.reset();
      Send(receiver, proto::Restore{last_seq, state.state}, Purpose::kRestore, "restored");
    }
    const bool first = !checkpoint;
    if (!first && (journal_trouble || !replies_in_doubt.empty())) {
      // A commit may be undone yet (its verdict may not be on disk): the
      // state is not a checkpoint. The receivers have it, as the others
      // do; the checkpoint and the tail stay, so that an undo puts every
      // variant back without that commit. (Taking it as the checkpoint
      // baked the undone commit in, and a client told `not carried out`
      // found it applied: the simulator found it.)
      AdvanceRound();
      return;
    }
    // Labelled with the last committed seq, not the last seq given out: a
    // later seq may be an undecided admit (a suspect being retested), and a
    // checkpoint past it would hide it from the next recovery (found by a
    // review: a poison in flight through two nvsd crashes was delivered
    // again). The state is the same: only commits change it.
    checkpoint = Checkpoint{LastCommittedSeq(), state.state, state.digest, 0};
    SaveCheckpoint();
    tail.clear();
    commits_since_checkpoint = 0;
    RecordPreState();
    if (first) Log(LogLevel::kInfo, "checkpoint", {{"seq", checkpoint->seq}, {"digest", state.digest}, {"first", true}});
    AdvanceRound();
  }

  // Every participant that holds the chosen state now votes; the others are
  // restarted.
  void FinishRound() {
    Round r = std::move(*round);
    round.reset();
    const bool was_ready = ready;
    for (const auto& name : r.participants) {
      Variant& v = *Find(name);
      if (v.round_digest && *v.round_digest == r.chosen_digest) {
        v.needs_sync = false;
        if (v.state == VariantState::kSyncing) {
          SetState(v, VariantState::kHealthy, "restored and checked (digest " + r.chosen_digest + ")");
        }
      } else if (v.state == VariantState::kHealthy || v.state == VariantState::kSyncing) {
        Kill(v, "restored state has digest " + v.round_digest.value_or("?") + ", expected " + r.chosen_digest,
             std::nullopt, "");
      }
    }
    if (standby && config.preempt) {
      Variant& home = *Find(config.variants.front().name);
      if (Voting(home) && active_name != home.config.name) {
        Log(LogLevel::kInfo, "promoted", {{"variant", home.config.name}, {"previous", active_name}, {"why", "preempt"}});
        Publish("promoted", {{"variant", home.config.name}, {"previous", active_name}, {"why", "preempt"}});
        active_name = home.config.name;
      }
    }
    ready = checkpoint.has_value();
    if (ready && !was_ready) {
      std::vector<std::string> healthy;
      for (const auto& variant : variants) {
        if (Voting(variant)) healthy.push_back(variant.config.name);
      }
      Log(LogLevel::kInfo, "ready", {{"healthy", healthy}, {"digest", r.chosen_digest}});
      Publish("ready", {{"healthy", healthy}});
      if (!simulated) sd_notify(0, "READY=1\nSTATUS=serving");
    }
  }

  // ---- deadlines -----------------------------------------------------------------

  milliseconds DeadlineFor(Purpose purpose) const {
    switch (purpose) {
      case Purpose::kVote: return milliseconds(config.deadline_ms);
      case Purpose::kHeartbeat: return milliseconds(config.heartbeat_timeout_ms);
      // A periodic checkpoint's digest is asked of healthy variants in the
      // pipeline and costs about what a command does: a variant stopped just
      // after it was asked is caught within the command deadline, not the
      // (much longer) sync deadline (found by the chaos campaign: a SIGSTOP
      // went unnoticed for the sync deadline). The snapshot, which can be
      // large, keeps the sync deadline.
      case Purpose::kCheckpointDigest: return milliseconds(config.deadline_ms);
      default: return milliseconds(config.sync_deadline_ms);
    }
  }

  // The undecided command that waits for `v`'s vote while `v` works on a
  // request that is not a command, or nullptr. Such a request may have a
  // long deadline (a checkpoint snapshot has the sync deadline), but the
  // command does not wait past the command deadline for it: the chaos
  // campaign found a donor stopped right after a checkpoint's snapshot
  // request stall the service for the whole stop, as the command needed its
  // vote (the other two disagreed).
  const Command* WaitingBehind(const Variant& v) const {
    if (active.empty() || active.back().verdict || v.channel.head() == nullptr ||
        v.channel.head()->purpose == Purpose::kVote) {
      return nullptr;  // (one undecided command at a time: the newest)
    }
    const Command& c = active.back();
    const auto it = c.outcomes.find(v.config.name);
    return it != c.outcomes.end() && it->second.kind == voter::OutcomeKind::kPending ? &c : nullptr;
  }

  Clock::time_point VoteDeadline(const Variant& v, const Command& c) const {
    return std::max(c.dispatched_at, v.channel.last_reply_at()) + milliseconds(config.deadline_ms);
  }

  // ---- a variant's timers -----------------------------------------------------
  //
  // Each rule is written once: NextDeadline wakes the loop at it, and the
  // code that acts (CheckDeadlines, SendHeartbeats) acts when it has passed.
  // (Written twice, they drifted: a syncing variant while the checkpoint was
  // refused woke the loop at a deadline nothing acted on, every turn.)

  // Its oldest request's reply is due (from its sending, or the last reply).
  std::optional<Clock::time_point> ReplyDue(const Variant& v) const {
    const Sent* head = v.channel.head();
    if (head == nullptr) return std::nullopt;
    return std::max(head->sent_at, v.channel.last_reply_at()) + DeadlineFor(head->purpose);
  }
  // A command waits behind a request that is not a command: the command's
  // deadline applies to that request.
  std::optional<Clock::time_point> BehindDue(const Variant& v) const {
    const Command* c = WaitingBehind(v);
    if (c == nullptr) return std::nullopt;
    return VoteDeadline(v, *c);
  }
  // Starting, or syncing with no round, for too long. (Syncing with no
  // round because the checkpoint is refused is not the variant's fault: a
  // restart would not help, so it waits for a person.)
  std::optional<Clock::time_point> ProgressDue(const Variant& v) const {
    if (v.state == VariantState::kStarting || (v.state == VariantState::kSyncing && !round && !checkpoint_problem)) {
      return v.state_since + milliseconds(config.sync_deadline_ms);
    }
    return std::nullopt;
  }
  // Killed on purpose and not gone: SIGKILL to its whole group.
  std::optional<Clock::time_point> StopDue(const Variant& v) const {
    if (v.state != VariantState::kStopping) return std::nullopt;
    return v.state_since + milliseconds(config.stop_grace_ms + 1000);
  }
  // Idle: a ping is due.
  std::optional<Clock::time_point> PingDue(const Variant& v) const {
    if ((v.state != VariantState::kHealthy && v.state != VariantState::kSyncing) || v.channel.head() != nullptr) {
      return std::nullopt;
    }
    return v.channel.last_sent_at() + milliseconds(config.heartbeat_interval_ms);
  }

  // The loop is alive as long as it turns: tell systemd so.
  void PetWatchdog() {
    if (!watchdog_every || Now() - watchdog_last < *watchdog_every) return;
    sd_notify(0, "WATCHDOG=1");
    watchdog_last = Now();
  }

  // Pings every variant that has had nothing to do for a heartbeat interval:
  // a process that is stopped (SIGSTOP) or wedged while idle is noticed
  // within interval + timeout, not at its next command.
  void SendHeartbeats() {
    const auto now = Now();
    for (auto& v : variants) {
      if (const auto due = PingDue(v); due && now >= *due) Send(v, proto::Ping{last_seq}, Purpose::kHeartbeat, "pong");
    }
  }

  Clock::time_point NextDeadline() const {
    auto next = Now() + milliseconds(200);
    for (const auto& v : variants) {
      if (InExitGrace(v)) continue;  // (SettleExits judges it: below)
      for (const auto& due : {ReplyDue(v), BehindDue(v), ProgressDue(v), StopDue(v), PingDue(v)}) {
        if (due) next = std::min(next, *due);
      }
    }
    if (!waiting.empty()) next = std::min(next, waiting.OldestAdmission() + milliseconds(config.queue_deadline_ms));
    if (recheck_soon || !backlogs.empty()) next = std::min(next, Now() + kExitPoll);
    if (journal_trouble) next = std::min(next, journal_retry_at);
    if (refusing && refusing->unreported > 0) next = std::min(next, refusing->last_event + std::chrono::seconds(1));
    if (retest) {
      next = std::min(next, retest->retest->NextDeadline());
      if (!retest->exit_seen.empty()) next = std::min(next, Now() + kExitPoll);
    }
    if (watchdog_every) next = std::min(next, watchdog_last + *watchdog_every);
    if (probe) next = std::min(next, ProbeDeadline());
    // (A spare is otherwise (re)started on a loop turn, and turns come at
    // least every heartbeat interval.)
    if (!spare && spare_not_before > Now()) next = std::min(next, spare_not_before);
    for (const auto& v : variants) {
      if (InExitGrace(v)) next = std::min(next, Now() + kExitPoll);  // (ConnectionGone, or exit_grace_ms)
      if (v.restart_pending) next = std::min(next, v.restart_requested_at + kRestartHoldoff);
      if (v.restart_pending) next = std::min(next, v.restart_requested_at + kMaxRestartDelay);
    }
    return next;
  }

  // Why a command waited past queue_deadline_ms, for its `unavailable` reply.
  std::string WhyStillWaiting() const {
    const std::string within = " within " + std::to_string(config.queue_deadline_ms) + " ms";
    if (HealthyVoters() < config.min_healthy) {
      return "not enough healthy variants" + within + " (healthy " + std::to_string(HealthyVoters()) + ", min_healthy " +
             std::to_string(config.min_healthy) + ")";
    }
    const auto answering_since = Now() - milliseconds(std::max<std::int64_t>(1, config.deadline_ms / 4));
    for (const auto& v : variants) {
      if (IsPacing(v, answering_since)) {
        return "not dispatched" + within + ": " + v.config.name + " is " + std::to_string(InFlight(v)) +
               " requests behind, and commands go at the pace of the slowest variant (send fewer at once)";
      }
    }
    return "not dispatched" + within + " (a sync round or the command before it was still being decided)";
  }

  // A variant is judged hung only by what nvsd could see: the variants'
  // socket is read right before, and a deadline counts as passed only if a
  // read that began after it found no reply. After a stall of nvsd itself
  // (a turn that began long after the poll was due), nothing is judged
  // until a later turn has read the socket again, once ZeroMQ's I/O thread
  // (stalled too) has caught up. An outside test had all three idle,
  // healthy variants killed at once for pongs that were waiting unread
  // while one turn took 800 ms on a client's flood.
  void CheckDeadlines() {
    const auto read_started = Now();
    if (DrainVariantSocket()) variants_drained_at = read_started;
    if (stalled) {
      Log(LogLevel::kWarn, "loop_stalled", {{"why", "a turn began long after the poll was due: deadlines are "
                                                    "judged on the next turn, after the variants' replies are read"}});
      recheck_soon = true;
      CheckQueueDeadlines();
      return;
    }
    const auto now = variants_drained_at;
    for (auto& v : variants) {
      if (InExitGrace(v)) continue;  // dead: SettleExits judges it
      if (v.state == VariantState::kStopping) {
        if (const auto due = StopDue(v); due && now > *due && v.process) v.process->SignalGroup(SIGKILL);
        continue;
      }
      if (InFlight(v) > kMaxInFlightPerVariant) {
        const std::string what = "fell behind: " + std::to_string(InFlight(v)) + " requests unanswered";
        Log(LogLevel::kWarn, "variant_hung", {{"variant", v.config.name}, {"what", what}});
        Kill(v, "hung: " + what, voter::OutcomeKind::kHung, what);
        continue;
      }
      if (const auto due = BehindDue(v); due && now >= *due) {
        const Command* c = WaitingBehind(v);
        const std::string what = "no reply within " + std::to_string(config.deadline_ms) + " ms while seq " +
                                 std::to_string(c->seq) + " waited behind its " +
                                 PurposeName(v.channel.head()->purpose) + " request";
        Log(LogLevel::kWarn, "variant_hung", {{"variant", v.config.name}, {"what", what}});
        Kill(v, "hung: " + what, voter::OutcomeKind::kHung, what);
        continue;
      }
      if (const auto due = ReplyDue(v); due && now >= *due) {
        const Sent& head = *v.channel.head();
        std::string what = std::string(head.purpose == Purpose::kHeartbeat ? "no pong" : "no reply") + " within " +
                           std::to_string(DeadlineFor(head.purpose).count()) + " ms";
        if (head.purpose == Purpose::kVote) {
          if (Command* c = FindActive(head.command)) {
            what += c->is_query ? " to a query" : " to seq " + std::to_string(c->seq);
          }
        }
        Log(LogLevel::kWarn, "variant_hung", {{"variant", v.config.name}, {"what", what}});
        Kill(v, "hung: " + what, voter::OutcomeKind::kHung, what);
        continue;
      }
      if (const auto due = ProgressDue(v); due && now > *due) {
        Kill(v, std::string("no progress while ") + Name(v.state) + " for " + std::to_string(config.sync_deadline_ms) + " ms",
             std::nullopt, "");
      }
    }
    CheckQueueDeadlines();
  }

  // Commands that waited past queue_deadline_ms are answered `unavailable`.
  void CheckQueueDeadlines() {
    const auto cutoff = Now() - milliseconds(config.queue_deadline_ms);
    if (waiting.empty() || waiting.OldestAdmission() >= cutoff) return;
    const std::string why = WhyStillWaiting();
    for (auto& c : waiting.TakeAdmittedBefore(cutoff)) {
      const auto reply = proto::ClientReply::Unavailable(c.request_id, why);
      Reply(c.client, reply);
      for (const auto& also : c.also_reply) Reply(also, reply);
    }
  }

  // Why nvsd cannot take commands now (it answers them `unavailable`), or
  // nullopt when it can. Before the first sync round it is only starting.
  std::optional<std::string> UnavailableNow() const {
    if (stopping) return "nvsd is shutting down";
    if (journal_trouble) return "the journal cannot be written: " + journal_trouble->reason;
    if (checkpoint_problem) return *checkpoint_problem;
    if (NotFailed() < config.min_healthy) {
      return "only " + std::to_string(NotFailed()) + " variants are not failed; min_healthy is " +
             std::to_string(config.min_healthy);
    }
    return std::nullopt;
  }

  // Keeps status's view of whether nvsd can take commands (and logs a change).
  void UpdateAvailability() {
    auto now = UnavailableNow();
    if (now == unavailable_reason) return;
    if (now) {
      Log(LogLevel::kError, "unavailable", {{"reason", *now}});
    } else {
      Log(LogLevel::kInfo, "takes_commands_again", {{"was", *unavailable_reason}});
    }
    unavailable_reason = std::move(now);
  }

  // ---- the state machine step ----------------------------------------------------

  void Pump() {
    if (standby && ready) PromoteIfNeeded();  // a backup takes over as soon as the active is gone, not at the next command
    for (int guard = 0; guard < 1000; ++guard) {
      bool changed = false;
      for (auto& c : active) {
        if (!c.verdict) {
          Decide(c);
          changed = changed || c.verdict.has_value();
        }
      }
      // Update reports of refused commands once every outcome is in.
      while (!active.empty() && active.front().verdict &&
             std::none_of(active.front().outcomes.begin(), active.front().outcomes.end(),
                          [](const auto& o) { return o.second.kind == voter::OutcomeKind::kPending; })) {
        Command& done = active.front();
        PublishSettled(done);
        if (!done.report_id.empty()) {
          WriteReport(done, done.verdict->kind == voter::VerdictKind::kPoison ? "blocked" : "no_quorum");
        }
        active.pop_front();
        changed = true;
      }
      for (auto& v : variants) {
        if (v.restart_when_idle && v.channel.head() == nullptr && v.state == VariantState::kHealthy) {
          Kill(v, v.stop_reason, std::nullopt, "");
          changed = true;
        }
      }
      AdvanceCheckpoint();
      if (round) {
        const bool had = round.has_value();
        AdvanceRound();
        changed = changed || (had && !round);
      } else if (RoundNeeded() && Quiescent() && ReadyForRound()) {
        StartRound();
        changed = changed || round.has_value();
      }
      while (!waiting.empty() && CanDispatch()) {
        Command c = waiting.Pop();
        changed = true;
        if (RefuseIfBlocked(c)) continue;  // quarantined while it waited
        if (!c.is_query && journal_trouble) {
          const auto reply = proto::ClientReply::Unavailable(
              c.request_id, "the journal cannot be written: " + journal_trouble->reason + "; not sent to any variant");
          Reply(c.client, reply);
          for (const auto& also : c.also_reply) Reply(also, reply);
          continue;
        }
        if (HasExpired(c)) {
          const auto reply = ExpiredReply(c, "before it could be sent to the variants");
          Reply(c.client, reply);
          for (const auto& also : c.also_reply) Reply(also, reply);
          if (!c.is_query) Remember(RequestKey(c.client.user, c.request_id), reply);
          continue;
        }
        Dispatch(std::move(c));
        break;  // one undecided command at a time
      }
      if (!changed) return;
    }
  }

  // The first round waits until every variant that can has said hello (or
  // the sync deadline passed), so start-up compares all of them at once.
  bool ReadyForRound() const {
    bool any = false;
    std::size_t syncing = 0;
    bool coming = false;  // a variant that is starting, or down and about to be, within sync_deadline_ms
    for (const auto& v : variants) {
      if (v.state == VariantState::kSyncing || (v.state == VariantState::kHealthy && v.needs_sync)) any = true;
      if (v.state == VariantState::kSyncing || v.state == VariantState::kHealthy) ++syncing;
      const bool starting = v.state == VariantState::kStarting || (v.state == VariantState::kDown && v.restart_pending);
      if (starting && Now() - std::max(started_at, v.state_since) < milliseconds(config.sync_deadline_ms)) coming = true;
      if (!ready && v.state == VariantState::kStarting &&
          Now() - started_at < milliseconds(config.sync_deadline_ms)) {
        return false;
      }
    }
    // With no variant voting (a command killed them all), the state is
    // rebuilt from the checkpoint and the tail by each variant, and only
    // their agreement shows a replay right: while fewer than a majority of
    // the variants could take part, the round waits for those coming back
    // (within sync_deadline_ms). Otherwise the first one back rebuilt it
    // alone, unchecked, and its state became the checkpoint: the simulator
    // found a variant that corrupts its state on one command handing that
    // state to the others this way.
    const bool any_voting = std::any_of(variants.begin(), variants.end(), [&](const Variant& v) { return Voting(v); });
    if (ready && !any_voting && coming && syncing < variants.size() / 2 + 1) return false;
    // After a digest tie, a variant coming back is a witness worth waiting for.
    if (tie_retried && coming) return false;
    return any || !checkpoint || !reports_awaiting_pre_state.empty();
  }

  // An ipc socket file is made owner-only (tcp endpoints have no file).
  static void OwnerOnly(const std::string& endpoint) {
    if (endpoint.rfind("ipc://", 0) != 0) return;
    std::error_code ec;
    std::filesystem::permissions(endpoint.substr(6), std::filesystem::perms::owner_read | std::filesystem::perms::owner_write,
                                 ec);
  }

  // ---- run ---------------------------------------------------------------------------

  // The real world around the decisions: the subreaper, the state dir
  // (checked, locked), the cgroups, the sockets. Then StartCore.
  Status Start() {
    std::error_code ec;
    // Orphans of the variants come to nvsd, which kills them (KillOrphans).
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
      return Status::Error(std::string("cannot become a child subreaper: ") + std::strerror(errno));
    }

    // The state dir holds the journal and the quarantine decisions. As
    // OpenSSH's StrictModes (and PostgreSQL's data directory): it, every
    // folder and file in it, and the folders above it must be nvsd's user's
    // (or root's, above it), no link, nothing others can write. A state dir
    // that fails is refused, naming the path and the reason, never "fixed"
    // silently. (An outside test had nvsd take a dir another user made,
    // follow their `journal` link, append to a root file through a linked
    // log, and obey a report they wrote.)
    namespace fs = std::filesystem;
    const fs::path dir = fs::absolute(config.state_dir, ec).lexically_normal();
    struct stat st {};
    if (lstat(dir.c_str(), &st) != 0) {
      fs::create_directories(dir.parent_path(), ec);
      if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
        return Status::Error("state_dir " + dir.string() + ": " + std::strerror(errno));
      }
    }
    if (Status own = CheckOwnPath(dir, /*directory=*/true); !own.ok()) return Status::Error("state_dir: " + own.message());
    if (Status above = CheckAncestors(dir); !above.ok()) return Status::Error("state_dir: " + above.message());
    auto opened_dir = PosixStateDir::Open(dir);
    if (!opened_dir.ok()) return Status::Error("state_dir " + opened_dir.status().message());
    posix_state = std::move(opened_dir.value());
    posix_state->ReadOwnFilesOnly();
    state = posix_state.get();
    // One nvsd per state dir: two would both append to its journal (an
    // outside test lost thousands of acknowledged commits that way).
    Status locked = posix_state->Lock();
    if (!locked.ok()) return locked;
    fs::permissions(dir, fs::perms::owner_all, ec);
    for (const char* sub : {kJournalDir, "logs", "quarantine"}) {
      StorageError error;
      if (Status made = state->MakeDir(sub, &error); !made.ok()) return Status::Error("state_dir " + made.message());
    }
    if (Status tree = CheckOwnTree(dir, {kJournalDir, "logs", "quarantine"}); !tree.ok()) {
      return Status::Error("state_dir: " + tree.message());
    }
    for (const char* sub : {kJournalDir, "logs", "quarantine"}) fs::permissions(dir / sub, fs::perms::owner_all, ec);

    // (After the checks: a refused start leaves no cgroup behind.)
    cgroups = VariantCgroups::Open("nvsd." + std::to_string(getpid()), &no_cgroups);
    bridge = config.stdio_bridge;
    if (bridge.empty()) {
      std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
      bridge = self.parent_path() / "nvs-stdio-bridge";
    }
    sockets = std::make_unique<Sockets>();
    if (config.client_curve) {
      // Before the bind: no client may meet the CURVE server before its ZAP handler.
      auto gate = ClientGate::Open(sockets->context, sockets->clients.socket(), *config.client_curve);
      if (!gate.ok()) return gate.status();
      sockets->client_gate = std::move(gate.value());
    }
    try {
      if (Status bound = sockets->clients.Bind(config.client_endpoint); !bound.ok()) return bound;
      OwnerOnly(config.client_endpoint);
      if (Status bound = sockets->variants.Bind(config.variant_endpoint); !bound.ok()) return bound;
      OwnerOnly(config.variant_endpoint);
      if (!config.event_endpoint.empty()) {
        sockets->events.emplace(sockets->context);
        if (Status bound = sockets->events->Bind(config.event_endpoint); !bound.ok()) return bound;
        event_sink = &*sockets->events;
        OwnerOnly(config.event_endpoint);
      }
    } catch (const zmq::error_t& e) {
      return Status::Error(std::string("cannot bind: ") + e.what());
    }
    client_transport = &sockets->clients;
    variant_transport = &sockets->variants;
    Status core = StartCore(getpid());
    if (!core.ok()) return core;
    Log(LogLevel::kInfo, "starting",
        {{"client_endpoint", config.client_endpoint},
         {"client_security", config.client_curve ? "curve" : "none"},
         {"authorized_keys", config.client_curve ? json(config.client_curve->authorized.size()) : json()},
         {"event_endpoint", config.event_endpoint},
         {"variant_endpoint", config.variant_endpoint},
         {"variants", variants.size()},
         {"policy", std::string(voter::ToString(config.policy.kind))},
         {"quarantined", quarantine->blocked_count()},
         {"containment", cgroups ? cgroups->Describe()
                                 : "a child subreaper only (no cgroup: " + no_cgroups + ")"}});
    {
      // What the variants' clean environment leaves out of nvsd's (names
      // only): a variant that needed one gets it through its `env`.
      json dropped = json::array();
      for (char** e = environ; *e != nullptr; ++e) {
        const std::string_view entry(*e);
        const std::string name(entry.substr(0, entry.find('=')));
        if (!PassedToVariants(name) && name != "PATH") dropped.push_back(name);
      }
      if (!dropped.empty()) {
        Log(LogLevel::kInfo, "variant_environment",
            {{"not_passed", dropped},
             {"why", "a variant gets a clean environment: PATH, NVS_* and its config's env (supervisor/CONFIG.md)"}});
      }
    }
    for (const auto& v : config.variants) {
      if (geteuid() == 0 && v.user.empty()) {
        Log(LogLevel::kWarn, "variant_runs_as_root",
            {{"variant", v.name}, {"why", "it has no \"user\": it runs as nvsd does, and is trusted as nvsd is "
                                          "(it could read nvsd's key and write its journal)"}});
      }
    }
    std::uint64_t watchdog_usec = 0;
    if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0) {
      watchdog_every = milliseconds(std::max<std::uint64_t>(1, watchdog_usec / 2000));
      Log(LogLevel::kInfo, "watchdog", {{"every_ms", watchdog_every->count()}});
    }
    SpawnAll();
    return Status::Ok();
  }

  // What every nvsd does at start, over whatever state dir and transports
  // it was given: the quarantine decisions read, recovery, the `start`
  // record (`pid`: whose). The variants are then spawned (SpawnAll).
  Status StartCore(std::int64_t pid) {
    std::vector<std::string> warnings;
    auto store = QuarantineStore::Open(*state, "quarantine", warnings);
    if (!store.ok()) return store.status();
    quarantine = std::move(store.value());
    for (const auto& w : warnings) Log(LogLevel::kWarn, "quarantine_store", {{"warning", w}});
    standby = config.mode == "standby";
    active_name = config.variants.front().name;
    Status recovered = Recover();
    if (!recovered.ok()) return recovered;
    // Which programs ran from here on: `nvs replay` starts the same ones
    // when it is given no config.
    JournalRecord start;
    start.type = "start";
    start.time_ns = env.UnixNowNs();
    start.pid = pid;
    start.config = VariantsAndPolicyJson(config);
    AppendRecord(EncodeJournalRecord(start));
    for (const auto& vc : config.variants) {
      Variant v;
      v.config = vc;
      v.intensity = RestartIntensity(config.restart.intensity, config.restart.period_ms);
      variants.push_back(std::move(v));
    }
    return Status::Ok();
  }

  void SpawnAll() {
    for (auto& v : variants) Spawn(v, "start");
    variants_drained_at = Now();
    StartSuspectRetest();
  }

  // Rebuilds what nvsd knew before it stopped (or was killed) from the
  // state dir (recovery.h): the checkpoint, the committed tail after it, the
  // last sequence number, the final replies by request id, and the suspects
  // (admitted, never decided: retested before anything is dispatched). Then
  // opens the newest journal segment for appending, a torn tail cut off.
  Status Recover() {
    journal_policy = config.fsync == "always" ? FsyncPolicy::kAlways
                     : config.fsync == "batch" ? FsyncPolicy::kBatch
                                               : FsyncPolicy::kNone;
    StorageError error;
    auto recovered = RecoverStateDir(*state, RecoveryOptions{config.remembered_requests});
    if (!recovered.ok()) return recovered.status();
    Recovered& r = recovered.value();
    for (const auto& warning : r.warnings) Log(LogLevel::kError, "recovery", {{"warning", warning}});
    checkpoint = r.checkpoint;
    // What checkpoint.json holds, if it is good: the next checkpoint keeps
    // it as the previous one (a damaged one is simply replaced).
    if (r.checkpoint_is_current) saved_checkpoint = r.checkpoint;
    checkpoint_file = r.checkpoint && !r.checkpoint_is_current ? kPreviousCheckpointFile : kCheckpointFile;
    previous_checkpoint = r.checkpoint_is_current ? r.previous_checkpoint : r.checkpoint;
    last_seq = r.last_seq;
    commits = r.commits;
    for (auto& e : r.tail) tail.push_back({e.seq, e.time_ns, std::move(e.payload)});
    for (auto& [id, reply] : r.remembered) answered.Remember(id, std::move(reply));
    for (auto& s : r.suspects) {
      suspects.push_back({s.seq, s.time_ns, std::move(s.request_id), std::move(s.client), std::move(s.fingerprint),
                          std::move(s.payload), std::move(s.key)});
    }
    for (const auto& c : r.closed) closed_segments.push_back({c.index, c.max_seq});
    journal_segment = r.current;
    auto file = state->OpenForAppend(JournalSegmentName(journal_segment), &error);
    if (!file.ok()) return Status::Error("cannot open the journal: " + file.status().message());
    auto writer = r.current_good_bytes == 0
                      ? JournalWriter::Start(std::move(file.value()), journal_policy, config.fsync_batch_ms, &error)
                      : JournalWriter::Continue(std::move(file.value()), r.current_good_bytes, r.current_records,
                                                journal_policy, config.fsync_batch_ms, &error);
    if (!writer.ok()) return Status::Error("cannot write the journal: " + writer.status().message());
    journal = std::move(writer.value());
    journal_appended = journal->records();
    journal_base = 0;
    if (r.current_good_bytes == 0) {
      Status synced = state->SyncDir(kJournalDir, &error);
      if (!synced.ok()) return synced;
    }
    if (!r.torn.empty()) {
      Log(LogLevel::kWarn, "journal_tail_cut", {{"segment", state->Where(JournalSegmentName(journal_segment)).string()},
                                                {"damage", r.torn}, {"records_kept", r.current_records}});
    }
    if (r.skipped > 0) {
      Log(LogLevel::kError, "journal_records_skipped",
          {{"count", r.skipped}, {"first", r.skipped_examples},
           {"why", "records of a shape nvsd does not write (a bug or a hand edit); what they held is not recovered"}});
    }
    if (r.commits_without_command_count > 0) {
      Log(LogLevel::kError, "journal_commits_without_command",
          {{"count", r.commits_without_command_count}, {"seqs", r.commits_without_command},
           {"why", "committed after the checkpoint but their admit records are missing or unreadable; "
                   "the state is rebuilt without them"}});
    }
    commits_since_checkpoint = static_cast<int>(tail.size());
    if (r.records_read > 0 || checkpoint) {
      Log(LogLevel::kInfo, "recovered",
          {{"checkpoint_seq", checkpoint ? checkpoint->seq : 0}, {"tail", tail.size()}, {"last_seq", last_seq},
           {"commits", commits}, {"suspects", suspects.size()}, {"segments_read", r.segments_read},
           {"records_read", r.records_read}, {"requests_remembered", answered.size()}});
    }
    return Status::Ok();
  }

  // At SIGTERM: a checkpoint of the committed state, so the next start
  // replays nothing (an outside test: no checkpoint at stop, and the next
  // start replayed every commit since the last periodic one). Taken from an
  // idle voting variant, and only when every other idle voting variant's
  // digest agrees; within stop_grace_ms, else not at all.
  void FinalCheckpoint() {
    if (!journal || journal_trouble || checkpoint_problem || (checkpoint && tail.empty())) return;
    if (std::any_of(active.begin(), active.end(), [](const Command& c) { return !c.verdict; })) return;
    std::vector<Variant*> idle;
    for (auto& v : variants) {
      if (Voting(v) && !v.restart_when_idle && v.channel.idle()) idle.push_back(&v);
    }
    if (idle.empty()) return;
    const std::uint64_t seq = LastCommittedSeq();
    std::optional<proto::StateReply> snapshot;
    std::map<std::string, std::string> digests;  // identity -> digest
    SendToIdentity(idle.front()->identity, proto::Encode(proto::Request(proto::SnapshotRequest{seq})));
    for (std::size_t i = 1; i < idle.size(); ++i) {
      SendToIdentity(idle[i]->identity, proto::Encode(proto::Request(proto::DigestRequest{seq})));
    }
    const auto until = Now() + milliseconds(config.stop_grace_ms);
    while ((!snapshot || digests.size() + 1 < idle.size()) && Now() < until) {
      variant_transport->Wait(std::max(milliseconds(1), std::chrono::duration_cast<milliseconds>(until - Now())));
      std::string identity;
      std::vector<std::string> parts;
      while (variant_transport->Receive(&identity, &parts)) {
        if (parts.size() != 1) continue;
        auto decoded = proto::DecodeReply(parts[0]);
        if (!decoded.ok() || proto::SeqOf(decoded.value()) != seq) continue;
        const std::string* from = IdentityOf(identity);
        if (from == nullptr) continue;
        if (auto* st = std::get_if<proto::StateReply>(&decoded.value()); st != nullptr && *from == idle.front()->identity) {
          snapshot = *st;
        } else if (auto* d = std::get_if<proto::DigestReply>(&decoded.value())) {
          digests[*from] = d->digest;
        }
      }
    }
    const bool agreed = snapshot && digests.size() + 1 == idle.size() &&
                        std::all_of(digests.begin(), digests.end(),
                                    [&](const auto& entry) { return entry.second == snapshot->digest; });
    if (!agreed) {
      Log(LogLevel::kWarn, "checkpoint_at_stop_skipped",
          {{"why", snapshot ? "the variants' digests differ" : "no snapshot within stop_grace_ms"}});
      return;
    }
    checkpoint = Checkpoint{seq, snapshot->state, snapshot->digest, 0};
    SaveCheckpoint();
    tail.clear();
    Log(LogLevel::kInfo, "checkpoint_at_stop", {{"seq", seq}, {"digest", snapshot->digest}});
  }

  void Shutdown() {
    stopping = true;
    sd_notify(0, "STOPPING=1");
    for (auto& c : waiting.TakeAll()) {
      const auto reply = proto::ClientReply::Unavailable(c.request_id, "nvsd is shutting down");
      Reply(c.client, reply);
      for (const auto& also : c.also_reply) Reply(also, reply);
    }
    for (auto& c : active) {
      if (c.verdict) continue;
      // (Its admit is on disk: the next start retests it, and never carries
      // it out without a client sending it again.)
      const auto reply = proto::ClientReply::Unavailable(c.request_id, "nvsd is shutting down");
      Reply(c.client, reply);
      for (const auto& also : c.also_reply) Reply(also, reply);
    }
    FlushJournalAndReplies();
    if (journal) journal->Flush(/*force=*/true);
    std::size_t unsent = 0;
    for (const auto& [peer, backlog] : backlogs) unsent += backlog.messages.size();
    if (unsent > 0) {
      Log(LogLevel::kWarn, "replies_unsent_at_stop",
          {{"replies", unsent}, {"clients", backlogs.size()}, {"why", "their clients did not take them before nvsd stopped"}});
    }
    if (retest && retest->release) {
      Reply(retest->release->to, proto::ClientReply::Unavailable(retest->release->request_id,
                                                                 "nvsd is shutting down: its retest for the release "
                                                                 "was stopped, and nothing was released"));
      FlushJournalAndReplies();
    }
    probe.reset();  // a probe is disposable: killed, never waited for
    spare.reset();
    retest.reset();
    FinalCheckpoint();
    for (auto& v : variants) {
      if (v.process && !v.process->exit_info()) v.process->SignalGroup(SIGTERM);
    }
    const auto until = Now() + milliseconds(config.stop_grace_ms);
    for (auto& v : variants) {
      if (!v.process) continue;
      while (!v.process->TryReap() && Now() < until) {
        pollfd fd{v.process->pidfd(), POLLIN, 0};
        const auto left = std::chrono::duration_cast<milliseconds>(until - Now()).count();
        poll(&fd, 1, static_cast<int>(std::max<long>(1, left)));
      }
      v.process.reset();  // SIGKILLs the group if it is still there
    }
    // Whatever they started that left their groups: killed, and reaped
    // (each SIGKILLed process is waited for at most a second).
    KillOrphans(/*now=*/true);
    cgroups.reset();  // (empties and removes what is left of them)
    for (const pid_t pid : orphans) {
      const int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
      if (fd >= 0) {
        pollfd p{fd, POLLIN, 0};
        poll(&p, 1, 1000);
        close(fd);
      }
      waitpid(pid, nullptr, WNOHANG);
    }
    Log(LogLevel::kInfo, "stopped", {{"seq", last_seq}, {"commits", commits}});
  }

  // Every process nvsd watches, with what to poll of it: its pidfd (until
  // its exit was seen) and its stderr (until EOF). Run polls these; a
  // simulation asks its own processes.
  struct Watched {
    const Process* process;
    bool exit = false;    // poll its pidfd
    bool output = false;  // poll its stderr
  };
  std::vector<Watched> WatchedProcesses() const {
    std::vector<Watched> out;
    for (const auto& v : variants) {
      if (!v.process || v.process->exit_info()) continue;
      // (A pidfd stays readable: once is enough.)
      out.push_back({v.process.get(), !v.exit_seen_at, v.process->stderr_fd() >= 0});
    }
    for (const auto* one : {&probe, &spare}) {
      if (!*one || !(*one)->process || (*one)->process->exit_info()) continue;
      out.push_back({(*one)->process.get(), true, (*one)->process->stderr_fd() >= 0});
    }
    if (retest) {
      for (const auto& [identity, process] : retest->processes) {
        if (process->exit_info()) continue;
        out.push_back({process.get(), !retest->exit_seen.count(identity), process->stderr_fd() >= 0});
      }
    }
    return out;
  }

  Status Run(int signal_fd) {
    Status started = Start();
    if (!started.ok()) return started;
    while (!stopping) {
      std::vector<zmq::pollitem_t> items;
      items.push_back({sockets->clients.socket().handle(), 0, ZMQ_POLLIN, 0});
      items.push_back({sockets->variants.socket().handle(), 0, ZMQ_POLLIN, 0});
      items.push_back({nullptr, signal_fd, ZMQ_POLLIN, 0});
      const std::vector<Watched> watched = WatchedProcesses();
      std::vector<std::pair<const Process*, bool>> polled;  // (process, is its pidfd), one per item from items[3]
      for (const auto& w : watched) {
        if (w.exit) {
          items.push_back({nullptr, w.process->pidfd(), ZMQ_POLLIN, 0});
          polled.emplace_back(w.process, true);
        }
        if (w.output) {
          items.push_back({nullptr, w.process->stderr_fd(), ZMQ_POLLIN, 0});
          polled.emplace_back(w.process, false);
        }
      }
      // While a dead process's connection may still be closing, the variants
      // socket's own signalling fd wakes the loop when libzmq has news for it
      // (the pipe's termination, which ConnectionGone sees), instead of the
      // next kExitPoll. (Its readiness is only a hint: SettleExits looks.)
      const bool settling = std::any_of(variants.begin(), variants.end(), [](const Variant& v) { return InExitGrace(v); }) ||
                            (retest && !retest->exit_seen.empty());
      if (settling) items.push_back({nullptr, sockets->variants.socket().get(zmq::sockopt::fd), ZMQ_POLLIN, 0});
      // client_curve: the ZAP handler and the client socket's monitor, last.
      const std::size_t gate_at = items.size();
      if (sockets->client_gate) {
        items.push_back({sockets->client_gate->zap().handle(), 0, ZMQ_POLLIN, 0});
        items.push_back({sockets->client_gate->monitor().handle(), 0, ZMQ_POLLIN, 0});
      }
      const auto wait = std::max(milliseconds(0), std::chrono::duration_cast<milliseconds>(NextDeadline() - Now()));
      recheck_soon = false;
      const auto due = Now() + wait + milliseconds(1);
      try {
        zmq::poll(items.data(), items.size(), wait + milliseconds(1));
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;
      }
      stalled = Now() > due + kStallThreshold;
      try {
        if (items[2].revents & ZMQ_POLLIN) OnSignal(signal_fd);
        if (stopping) break;
        // zmq_poll's revents are exact for ZeroMQ sockets: a socket that is
        // not readable is not touched (every recv attempt costs system calls).
        Readiness ready;
        ready.clients = (items[0].revents & ZMQ_POLLIN) != 0;
        ready.variants = (items[1].revents & ZMQ_POLLIN) != 0;
        for (std::size_t k = 0; k < polled.size(); ++k) {
          const short revents = items[3 + k].revents;
          if (polled[k].second && (revents & ZMQ_POLLIN)) ready.exited.insert(polled[k].first);
          if (!polled[k].second && (revents & (ZMQ_POLLIN | ZMQ_POLLERR))) ready.output.insert(polled[k].first);
        }
        if (sockets->client_gate) {
          ready.zap = (items[gate_at].revents & ZMQ_POLLIN) != 0;
          ready.monitor = (items[gate_at + 1].revents & ZMQ_POLLIN) != 0;
        }
        Turn(ready);
      } catch (const std::exception& e) {
        // A bug must not take the supervisor down with it: log, and go on
        // with the next turn (every state has a deadline that recovers it).
        Log(LogLevel::kError, "internal_error", {{"what", e.what()}});
      }
    }
    Shutdown();
    return Status::Ok();
  }

  void OnSignal(int signal_fd) {
    signalfd_siginfo info{};
    if (read(signal_fd, &info, sizeof info) != sizeof info) return;
    Log(LogLevel::kInfo, "signal", {{"signal", info.ssi_signo}});
    if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT) {
      stopping = true;
    } else if (info.ssi_signo == SIGHUP) {
      // logrotate: the variants' stderr logs are opened again. (nvsd's own
      // log is its stderr, which whoever started it redirects.)
      for (auto& v : variants) {
        if (v.process) v.process->ReopenLog();
      }
      Publish("logs_reopened", json::object());
    }
  }

  // One turn of the loop, given what is ready (Run's poll, or a
  // simulation): variant messages, stderr, deaths, clients, deadlines, then
  // the state machine, then the group commit and what waits for it.
  void Turn(const Readiness& ready) {
    if (ready.variants) DrainVariantSocket();
    // The retest's probes: stderr, and exits (settled by SettleRetestExits).
    if (retest) {
      for (const auto& [identity, process] : retest->processes) {
        if (process->exit_info()) continue;
        if (ready.output.count(process.get()) != 0) process->DrainStderr();
        if (ready.exited.count(process.get()) != 0 && !retest->exit_seen.count(identity)) {
          retest->exit_seen[identity] = Now();
        }
      }
    }
    for (auto& v : variants) {
      if (v.process && !v.process->exit_info() && ready.output.count(v.process.get()) != 0) v.process->DrainStderr();
    }
    for (auto* one : {&probe, &spare}) {
      if (*one && (*one)->process && ready.output.count((*one)->process.get()) != 0) (*one)->process->DrainStderr();
    }
    for (auto& v : variants) {
      if (v.process && !v.process->exit_info() && !v.exit_seen_at && ready.exited.count(v.process.get()) != 0) {
        OnPidfdReadable(v);
      }
    }
    if (probe && probe->process && !probe->process->exit_info() && ready.exited.count(probe->process.get()) != 0) {
      OnProbeExit();
    }
    if (spare && spare->process && !spare->process->exit_info() && ready.exited.count(spare->process.get()) != 0) {
      OnSpareExit();
    }
    SettleExits();
    SettleRetestExits();
    if (sockets && sockets->client_gate) {
      // Handshakes wait for these answers: before the clients' requests.
      const auto now = Now();
      if (ready.zap) sockets->client_gate->OnZapReadable(now, kMaxMessagesPerTurn);
      if (ready.monitor) sockets->client_gate->OnMonitorReadable(now, kMaxMessagesPerTurn);
      sockets->client_gate->Tick(now);
    }
    if (ready.clients) DrainClientSocket();
    CheckDeadlines();
    // (Not in a stalled turn: replies that came meanwhile are not read
    // yet. Retests are judged, like variants, as of the last full read.)
    if (!stalled) CheckProbeDeadline();
    RetryJournal();
    if (retest && !stalled) retest->retest->OnTime(variants_drained_at);
    PumpRetest();
    Pump();
    SendHeartbeats();
    UpdateAvailability();
    if (refusing && Now() - refusing->last_event >= std::chrono::seconds(1)) PublishUnavailable(Now());
    FlushJournalAndReplies();
    PetWatchdog();
    SpawnPendingRestarts();
    KillOrphans();
    KeepSpare();
  }
};

Supervisor::Supervisor(Config config) : impl_(std::make_unique<Impl>(std::move(config), SystemEnv())) {}
Supervisor::Supervisor(Config config, Env& env) : impl_(std::make_unique<Impl>(std::move(config), env)) {}
Supervisor::~Supervisor() = default;

Result<std::unique_ptr<Supervisor>> Supervisor::Simulated(Config config, const SimulatedWorld& world) {
  std::unique_ptr<Supervisor> nvsd(new Supervisor(std::move(config), *world.env));
  Impl& impl = *nvsd->impl_;
  impl.simulated = true;
  impl.state = world.state;
  impl.variant_transport = world.variants;
  impl.client_transport = world.clients;
  impl.event_sink = world.events;
  Status started = impl.StartCore(world.pid);
  if (!started.ok()) return started;
  impl.SpawnAll();
  return nvsd;
}

void Supervisor::Turn(const Readiness& ready) {
  try {
    impl_->Turn(ready);
  } catch (const std::exception& e) {
    Log(LogLevel::kError, "internal_error", {{"what", e.what()}});  // (as Run does)
  }
}

std::chrono::steady_clock::time_point Supervisor::NextDeadline() const { return impl_->NextDeadline(); }

std::vector<const Process*> Supervisor::Processes() const {
  std::vector<const Process*> out;
  for (const auto& w : impl_->WatchedProcesses()) out.push_back(w.process);
  return out;
}

Status Supervisor::Run(int signal_fd) { return impl_->Run(signal_fd); }

}  // namespace nvs::supervisor
