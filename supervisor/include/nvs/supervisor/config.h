// nvsd's configuration: a JSON file, validated as a whole before anything
// starts; every error names the field ("variants[1].argv: must be a
// non-empty array of strings"). Defaults live here and nowhere else.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nvs/protocol/curve_keys.h"
#include "nvs/status.h"
#include "nvs/voter/voter.h"

namespace nvs::supervisor {

// How nvsd talks to a variant (protocol/PROTOCOL.md §1).
enum class Transport {
  kZmq,    // the variant speaks ZeroMQ itself
  kStdio,  // JSON lines on stdin/stdout; nvsd wraps it in nvs-stdio-bridge
};

// Per-variant resource limits (setrlimit in the child). Unset = inherited.
struct ResourceLimits {
  std::optional<std::uint64_t> address_space_mb;  // RLIMIT_AS
  std::optional<std::uint64_t> cpu_seconds;       // RLIMIT_CPU
  std::optional<std::uint64_t> open_files;        // RLIMIT_NOFILE
  bool core_dumps = false;                        // RLIMIT_CORE = 0 unless true
  std::uint64_t processes = 256;                  // pids.max of the variant's cgroup (processes and threads)
};

struct VariantConfig {
  std::string name;                          // unique, [A-Za-z0-9_.-]{1,32}, no '.' followed by digits at the end
  std::vector<std::string> argv;             // argv[0]: a path (relative to the config file's folder) or a PATH name
  Transport transport = Transport::kZmq;
  std::map<std::string, std::string> env;    // added to nvsd's environment
  std::filesystem::path working_dir;         // empty = the config file's folder
  ResourceLimits limits;
  // Run as this user (a name or a uid) and group (a name or a gid; default:
  // the user's primary group). Needs nvsd to run as root and the stdio
  // transport: the relay stays nvsd's, only the variant drops to the user.
  std::string user;
  std::string group;
  // "UID:GID" of `user` and `group`, resolved once when nvsd starts
  // (ResolveVariantUsers): a restart never waits on, or fails with, the
  // user database. Empty: resolved at each spawn (`nvs replay`).
  std::string run_as;
};

// Restart intensity as in OTP supervisors: more than `intensity` restarts of
// one variant within `period_ms` marks it failed.
struct RestartConfig {
  int intensity = 5;
  std::int64_t period_ms = 10'000;
};

// CURVE on the client endpoint (`client_curve`; protocol/CLIENT.md §7): only
// clients whose public key is listed get in. Unset: a plain endpoint.
struct ClientCurveConfig {
  std::filesystem::path secret_key_file;       // nvsd's secret key, owner-only; the public key is derived from it
  std::filesystem::path authorized_keys_file;  // the client public keys let in, one per line
  // The names (in authorized_keys) of the keys that may release or reject a
  // quarantined command. None: no key may.
  std::vector<std::string> reviewers;
  // Read from those files by LoadClientCurveKeys (not by ParseConfig: `nvs
  // replay --config` reads the config without needing nvsd's secret key).
  protocol::CurveKeyPair keys;
  std::vector<protocol::AuthorizedKey> authorized;
};

// Cluster mode (`cluster`; README "Running on several machines"): members
// on separate hosts elect a leader through etcd; the leader serves clients
// and writes every journal record to etcd (fenced on its leader key) before
// it acts on it; the others apply the committed commands, one behind.
struct ClusterConfig {
  std::vector<std::string> etcd_endpoints;  // "http://host:port" or "https://host:port", 1 to 16
  std::string name;                         // the cluster: etcd keys under /nvs/NAME/
  std::string member;                       // this member, unique in the cluster
  // The client endpoint clients are told to use for this member when it
  // leads (`not_leader`, status). Default: client_endpoint.
  std::string advertise_endpoint;
  int lease_ttl_s = 1;                      // the leader's etcd lease (takeover takes about this long)
  // The leader stops serving this long before its lease could have ended
  // on etcd's clock (LeaseClock).
  std::int64_t serve_margin_ms = 100;
  std::int64_t etcd_timeout_ms = 1000;      // one etcd request (the leader's writes: at most until its lease ends)
  std::filesystem::path etcd_ca_file;       // https: the CA of etcd's certificate
  std::filesystem::path etcd_cert_file;     // https: this member's client certificate (etcd --client-cert-auth)
  std::filesystem::path etcd_key_file;
  std::string etcd_user;                    // etcd authentication (etcdctl auth enable)
  std::filesystem::path etcd_password_file; // owner-only, the password on its first line
};

struct Config {
  std::filesystem::path config_dir;          // the folder of the config file (for relative paths)
  std::filesystem::path state_dir;           // required: quarantine reports, variant logs
  std::string client_endpoint = "tcp://127.0.0.1:5555";  // ROUTER for clients (protocol/CLIENT.md)
  std::string event_endpoint = "tcp://127.0.0.1:5556";   // PUB for events; "" = none
  std::string metrics_endpoint;                          // HOST:PORT for Prometheus (HTTP GET /metrics); "" = none
  std::string variant_endpoint;              // ROUTER for variants; "" = ipc://STATE_DIR/variants.sock
  std::optional<ClientCurveConfig> client_curve;  // unset: the client endpoint is plain
  std::vector<VariantConfig> variants;       // 1 to 8
  voter::Policy policy;                      // default: Policy::DefaultFor(variants.size())
  // "lockstep" (every variant gets every command; votes) or "standby" (one
  // active takes commands; backups apply what it committed, one behind;
  // ARCHITECTURE.md §4).
  std::string mode = "lockstep";
  // standby: what happens to the command the active died on. "quarantine":
  // quarantined, never resent to the new active. "probe": first run on a
  // disposable process of the new active's program, restored to the state
  // before the command; delivered to the new active only if the probe
  // survives and answers, else quarantined.
  std::string standby_policy = "quarantine";
  bool preempt = false;  // standby: the first variant takes the active role back once resynced
  std::int64_t deadline_ms = 1000;           // a variant's reply to apply/query, else it is hung
  std::int64_t sync_deadline_ms = 30'000;    // start-up (hello) and resync (restore + replay) of a variant
  std::int64_t stop_grace_ms = 2000;         // SIGTERM -> SIGKILL
  std::int64_t heartbeat_interval_ms = 250;  // an idle variant is pinged this often (4 per second)
  std::int64_t heartbeat_timeout_ms = 500;   // a ping unanswered this long: the variant is dead (hung)
  std::int64_t queue_deadline_ms = 5000;     // a client command waits at most this long for nvsd to be ready
  std::size_t queue_limit = 10'000;          // commands waiting; beyond, `unavailable`
  // Commands one client (one connection) may have waiting; beyond, that
  // client's next ones are `unavailable`. Default: a quarter of queue_limit,
  // so one client's burst never fills the queue for the others.
  std::size_t client_queue_limit = 2'500;
  // Replies nvsd holds for one client that does not take them as fast as
  // they come (its connection's ZeroMQ queue is full); beyond, that client
  // is cut off: what waits is dropped, logged and counted (CLIENT.md §1).
  std::size_t client_backlog_limit = 10'000;
  // At most this long after a variant's process is seen dead, nvsd waits
  // for the replies it sent before it died, when the transport cannot tell
  // sooner that nothing more will come (PROTOCOL.md §5).
  std::int64_t exit_grace_ms = 50;
  int checkpoint_interval = 100;             // commits between checkpoints
  // The journal's segments: a new one is started at the first checkpoint
  // after the current one reaches this size. Closed segments wholly covered
  // by the checkpoint are pruned beyond the newest `journal_keep_segments`
  // (0: every segment is kept, the whole command history).
  std::uint64_t journal_segment_bytes = 64u << 20;
  std::size_t journal_keep_segments = 0;
  RestartConfig restart;
  int min_healthy = 0;                       // default: the quorum of the policy
  std::size_t stderr_tail_bytes = 4096;      // kept per variant for reports
  std::uint64_t stderr_log_bytes = 8u << 20; // per variant log file, rotated once at this size
  std::filesystem::path stdio_bridge;        // default: nvs-stdio-bridge beside nvsd
  // Journal durability (protocol/JOURNAL.md): "always" (a committed reply is
  // never sent before its record is on disk; one fsync per loop turn serves
  // every command decided in it), "batch" (fsync at most every
  // fsync_batch_ms), "none" (the kernel decides).
  std::string fsync = "always";
  int fsync_batch_ms = 5;
  std::size_t remembered_requests = 100'000;  // request ids answered from memory on a retry
  std::optional<ClusterConfig> cluster;       // unset: one machine
};

// Parses and validates a config. `text` is the file's content, `path` its
// location (for relative paths and messages).
Result<Config> ParseConfig(const std::string& text, const std::filesystem::path& path);

// Reads, parses and validates a config file.
Result<Config> LoadConfig(const std::filesystem::path& path);

// Reads the key files `config.client_curve` names into it (nothing to do
// without client_curve): the secret key must exist, hold one Z85 key and be
// owner-only; the authorized-keys file must parse and not be writable by
// group or others. nvsd calls it before it starts and for --check. Errors
// are worded like ParseConfig's ("PATH: invalid configuration:" and one
// "client_curve.FIELD: ..." line per problem).
Status LoadClientCurveKeys(Config& config, const std::filesystem::path& path);

// "UID:GID" for a variant's `user` and `group` (names or numbers). Fails
// when this process is not root, the user or group does not exist, or
// either is 0 (a variant is not run as root on purpose).
Result<std::string> ResolveRunAs(const std::string& user, const std::string& group);

// Resolves every variant's `user` and `group` into its run_as. nvsd calls
// it before it starts and for --check; errors are worded like ParseConfig's
// ("PATH: invalid configuration:" and one "variants[I] (NAME).user: ..."
// line per variant).
Status ResolveVariantUsers(Config& config, const std::filesystem::path& path);

// The variants and the policy of `config` as config JSON text
// ({"variants":[...],"policy":{...}}, paths as written): what nvsd records
// in its journal and reports, so that a replay can start the same programs.
std::string VariantsAndPolicyJson(const Config& config);

}  // namespace nvs::supervisor
