#include "nvs/supervisor/config.h"

#include <arpa/inet.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "nvs/metrics/endpoint.h"
#include <regex>
#include <set>
#include <sstream>

namespace nvs::supervisor {
namespace {

using nlohmann::json;

// Walks a JSON object, collecting every problem with the field's path.
class Fields {
 public:
  Fields(const json& object, std::string path, std::vector<std::string>& errors)
      : object_(object), path_(std::move(path)), errors_(errors) {}

  std::string Path(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
  void Error(const std::string& key, const std::string& what) { errors_.push_back(Path(key) + ": " + what); }
  const json* Find(const std::string& key) {
    seen_.insert(key);
    auto it = object_.find(key);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }

  void String(const std::string& key, std::string& out, bool required = false) {
    const json* v = Find(key);
    if (v == nullptr) {
      if (required) Error(key, "required");
      return;
    }
    if (!v->is_string()) return Error(key, "must be a string");
    out = v->get<std::string>();
  }

  template <typename Int>
  void Integer(const std::string& key, Int& out, std::int64_t min, std::int64_t max) {
    const json* v = Find(key);
    if (v == nullptr) return;
    if (!v->is_number_integer()) return Error(key, "must be an integer");
    const auto value = v->is_number_unsigned() && v->get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)
                           ? INT64_MAX
                           : v->get<std::int64_t>();
    if (value < min || value > max) {
      return Error(key, "must be between " + std::to_string(min) + " and " + std::to_string(max));
    }
    out = static_cast<Int>(value);
  }

  void Bool(const std::string& key, bool& out) {
    const json* v = Find(key);
    if (v == nullptr) return;
    if (!v->is_boolean()) return Error(key, "must be true or false");
    out = v->get<bool>();
  }

  // Reports members nobody asked for: a typo must not pass silently.
  void RejectUnknown() {
    for (const auto& [key, value] : object_.items()) {
      if (!seen_.count(key)) Error(key, "unknown field");
    }
  }

 private:
  const json& object_;
  std::string path_;
  std::vector<std::string>& errors_;
  std::set<std::string> seen_;
};

bool ValidEndpoint(const std::string& endpoint) {
  return endpoint.rfind("tcp://", 0) == 0 || endpoint.rfind("ipc://", 0) == 0 || endpoint.rfind("inproc://", 0) == 0;
}

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

void ParseCluster(const json& value, Config& config, std::vector<std::string>& errors) {
  if (!value.is_object()) {
    errors.push_back("cluster: must be an object");
    return;
  }
  Fields c(value, "cluster", errors);
  ClusterConfig cluster;
  if (const json* endpoints = c.Find("etcd_endpoints")) {
    if (!endpoints->is_array() || endpoints->empty() || endpoints->size() > 16) {
      c.Error("etcd_endpoints", "must be an array of 1 to 16 URLs (\"http://host:2379\")");
    } else {
      for (const auto& e : *endpoints) {
        const std::string url = e.is_string() ? e.get<std::string>() : "";
        if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) {
          c.Error("etcd_endpoints", "every entry must be an http:// or https:// URL of an etcd client endpoint");
          break;
        }
        cluster.etcd_endpoints.push_back(url);
      }
    }
  } else {
    c.Error("etcd_endpoints", "required");
  }
  for (auto [key, out] : {std::pair{"name", &cluster.name}, std::pair{"member", &cluster.member}}) {
    c.String(key, *out, /*required=*/true);
    if (c.Find(key) != nullptr && !ValidName(*out)) c.Error(key, "must be 1 to 64 of A-Z a-z 0-9 - _ .");
  }
  c.String("advertise_endpoint", cluster.advertise_endpoint);
  if (cluster.advertise_endpoint.empty()) cluster.advertise_endpoint = config.client_endpoint;
  if (cluster.advertise_endpoint.rfind("tcp://", 0) != 0 && cluster.advertise_endpoint.rfind("ipc://", 0) != 0) {
    c.Error("advertise_endpoint", "must be a tcp:// or ipc:// endpoint clients can reach (default: client_endpoint)");
  }
  c.Integer("lease_ttl_s", cluster.lease_ttl_s, 1, 3600);
  c.Integer("serve_margin_ms", cluster.serve_margin_ms, 0, 60'000);
  if (cluster.serve_margin_ms >= cluster.lease_ttl_s * 1000) {
    c.Error("serve_margin_ms", "must be less than the lease (lease_ttl_s)");
  }
  c.Integer("etcd_timeout_ms", cluster.etcd_timeout_ms, 10, 60'000);
  for (auto [key, out] : {std::pair{"etcd_ca_file", &cluster.etcd_ca_file},
                          std::pair{"etcd_cert_file", &cluster.etcd_cert_file},
                          std::pair{"etcd_key_file", &cluster.etcd_key_file},
                          std::pair{"etcd_password_file", &cluster.etcd_password_file}}) {
    std::string file;
    c.String(key, file);
    if (!file.empty()) *out = (config.config_dir / file).lexically_normal();
  }
  if (cluster.etcd_cert_file.empty() != cluster.etcd_key_file.empty()) {
    c.Error("etcd_cert_file", "etcd_cert_file and etcd_key_file go together");
  }
  c.String("etcd_user", cluster.etcd_user);
  if (cluster.etcd_user.empty() != cluster.etcd_password_file.empty()) {
    c.Error("etcd_user", "etcd_user and etcd_password_file go together");
  }
  c.RejectUnknown();
  config.cluster = std::move(cluster);
}

void ParseLimits(const json& value, const std::string& path, ResourceLimits& limits, std::vector<std::string>& errors) {
  if (!value.is_object()) {
    errors.push_back(path + ": must be an object");
    return;
  }
  Fields f(value, path, errors);
  std::uint64_t number = 0;
  if (f.Find("address_space_mb")) {
    f.Integer("address_space_mb", number, 16, 1 << 24);
    limits.address_space_mb = number;
  }
  if (f.Find("cpu_seconds")) {
    f.Integer("cpu_seconds", number, 1, 1 << 30);
    limits.cpu_seconds = number;
  }
  if (f.Find("open_files")) {
    f.Integer("open_files", number, 16, 1 << 20);
    limits.open_files = number;
  }
  if (f.Find("processes")) {
    f.Integer("processes", number, 8, 1 << 22);
    limits.processes = number;
  }
  f.Bool("core_dumps", limits.core_dumps);
  f.RejectUnknown();
}

void ParseVariant(const json& value, const std::string& path, VariantConfig& variant, std::vector<std::string>& errors) {
  if (!value.is_object()) {
    errors.push_back(path + ": must be an object");
    return;
  }
  Fields f(value, path, errors);
  f.String("name", variant.name, /*required=*/true);
  static const std::regex kName("[A-Za-z0-9_-][A-Za-z0-9_.-]{0,31}");
  if (f.Find("name") != nullptr && f.Find("name")->is_string() && !std::regex_match(variant.name, kName)) {
    f.Error("name", "must be 1 to 32 of A-Z a-z 0-9 _ . - (not starting with '.')");
  }
  if (variant.name == "probe" || variant.name == "retest") {
    f.Error("name", "\"" + variant.name + "\" is taken: nvsd names its disposable processes " + variant.name + ".N");
  }
  const json* argv = f.Find("argv");
  if (argv == nullptr) {
    f.Error("argv", "required");
  } else if (!argv->is_array() || argv->empty() ||
             !std::all_of(argv->begin(), argv->end(), [](const json& a) { return a.is_string(); })) {
    f.Error("argv", "must be a non-empty array of strings");
  } else {
    variant.argv = argv->get<std::vector<std::string>>();
    if (variant.argv[0].empty()) f.Error("argv", "the program (argv[0]) must not be empty");
  }
  std::string transport = "zmq";
  f.String("transport", transport);
  if (transport == "zmq") {
    variant.transport = Transport::kZmq;
  } else if (transport == "stdio") {
    variant.transport = Transport::kStdio;
  } else {
    f.Error("transport", "must be \"zmq\" or \"stdio\"");
  }
  if (const json* env = f.Find("env")) {
    if (!env->is_object()) {
      f.Error("env", "must be an object of strings");
    } else {
      for (const auto& [key, val] : env->items()) {
        if (!val.is_string() || key.empty() || key.find('=') != std::string::npos) {
          f.Error("env." + key, "must be a string, under a name without '='");
        } else if (key == "NVS_VARIANT" || key == "NVS_ENDPOINT") {
          f.Error("env." + key, "is set by nvsd");
        } else {
          variant.env[key] = val.get<std::string>();
        }
      }
    }
  }
  std::string dir;
  f.String("working_dir", dir);
  variant.working_dir = dir;
  if (const json* limits = f.Find("limits")) ParseLimits(*limits, f.Path("limits"), variant.limits, errors);
  f.String("user", variant.user);
  f.String("group", variant.group);
  if (f.Find("user") != nullptr && variant.user.empty()) f.Error("user", "must not be empty");
  if (!variant.group.empty() && variant.user.empty()) f.Error("group", "needs \"user\" too");
  if (!variant.user.empty() && variant.transport != Transport::kStdio) {
    // Its socket file is owner-only (nvsd's user): the variant could not
    // connect. Over stdio the relay stays nvsd's and only the variant drops.
    f.Error("user", "needs \"transport\": \"stdio\" (the variants' socket is owner-only)");
  }
  f.RejectUnknown();
}

void ParsePolicy(const json& value, Config& config, std::vector<std::string>& errors) {
  if (!value.is_object()) {
    errors.push_back("policy: must be an object");
    return;
  }
  Fields f(value, "policy", errors);
  std::string kind;
  f.String("kind", kind);
  if (kind == "majority") {
    config.policy.kind = voter::PolicyKind::kMajority;
  } else if (kind == "unanimous") {
    config.policy.kind = voter::PolicyKind::kUnanimous;
  } else if (kind == "primary") {
    config.policy.kind = voter::PolicyKind::kPrimary;
  } else if (!kind.empty() || f.Find("kind") != nullptr) {
    f.Error("kind", "must be \"majority\", \"unanimous\" or \"primary\"");
  }
  f.String("primary", config.policy.primary);
  if (config.policy.kind == voter::PolicyKind::kPrimary) {
    const bool known = std::any_of(config.variants.begin(), config.variants.end(),
                                   [&](const VariantConfig& v) { return v.name == config.policy.primary; });
    if (!known) f.Error("primary", "must name a configured variant when kind is \"primary\"");
  } else if (!config.policy.primary.empty()) {
    f.Error("primary", "only with kind \"primary\"");
  }
  if (const json* ignore = f.Find("ignore")) {
    if (!ignore->is_array()) {
      f.Error("ignore", "must be an array of JSON pointers");
    } else {
      config.policy.ignored.clear();
      for (std::size_t i = 0; i < ignore->size(); ++i) {
        const json& p = (*ignore)[i];
        if (!p.is_string() || (!p.get<std::string>().empty() && p.get<std::string>()[0] != '/')) {
          f.Error("ignore[" + std::to_string(i) + "]", "must be a JSON pointer such as \"/message\"");
          continue;
        }
        try {
          json::json_pointer pointer(p.get<std::string>());
        } catch (const std::exception& e) {
          f.Error("ignore[" + std::to_string(i) + "]", std::string("not a JSON pointer: ") + e.what());
          continue;
        }
        config.policy.ignored.push_back(p.get<std::string>());
      }
    }
  }
  f.RejectUnknown();
}

}  // namespace

Result<Config> ParseConfig(const std::string& text, const std::filesystem::path& path) {
  const json root = json::parse(text, nullptr, /*allow_exceptions=*/false, /*ignore_comments=*/true);
  if (root.is_discarded()) return Status::Error(path.string() + ": not valid JSON");
  if (!root.is_object()) return Status::Error(path.string() + ": must be a JSON object");

  Config config;
  config.config_dir = std::filesystem::absolute(path).parent_path();
  std::vector<std::string> errors;
  Fields f(root, "", errors);

  std::string state_dir;
  f.String("state_dir", state_dir, /*required=*/true);
  if (!state_dir.empty()) config.state_dir = (config.config_dir / state_dir).lexically_normal();
  f.String("client_endpoint", config.client_endpoint);
  f.String("event_endpoint", config.event_endpoint);
  f.String("variant_endpoint", config.variant_endpoint);
  f.String("metrics_endpoint", config.metrics_endpoint);
  if (!config.metrics_endpoint.empty()) {
    if (auto parsed = metrics::ParseHostPort(config.metrics_endpoint); !parsed.ok()) {
      f.Error("metrics_endpoint", parsed.status().message() + ", or \"\" for none");
    }
  }
  if (!ValidEndpoint(config.client_endpoint)) f.Error("client_endpoint", "must be a tcp://, ipc:// or inproc:// address");
  if (!config.event_endpoint.empty() && !ValidEndpoint(config.event_endpoint)) {
    f.Error("event_endpoint", "must be a tcp://, ipc:// or inproc:// address, or \"\"");
  }
  if (!config.variant_endpoint.empty() && !ValidEndpoint(config.variant_endpoint)) {
    f.Error("variant_endpoint", "must be a tcp://, ipc:// or inproc:// address");
  } else if (config.variant_endpoint.rfind("tcp://", 0) == 0) {
    // The variants run on this machine. Their routing ids are their secrets
    // (PROTOCOL.md §1.1) and travel in clear, as do the commands: never over
    // a network.
    const std::string host = config.variant_endpoint.substr(6, config.variant_endpoint.rfind(':') - 6);
    in_addr v4{};
    const bool loopback = host == "localhost" || host == "[::1]" ||
                          (inet_pton(AF_INET, host.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127);
    if (!loopback) {
      f.Error("variant_endpoint", "a tcp endpoint must be on loopback (127.0.0.1, [::1] or localhost), not " + host +
                                      ": variants run on this machine, and their ids and commands travel in clear; the "
                                      "default ipc endpoint in the state dir is safer still");
    }
  }
  if (const json* curve = f.Find("client_curve")) {
    if (!curve->is_object()) {
      f.Error("client_curve", "must be an object");
    } else {
      Fields c(*curve, "client_curve", errors);
      ClientCurveConfig curve_config;
      for (auto [key, out] : {std::pair{"secret_key_file", &curve_config.secret_key_file},
                              std::pair{"authorized_keys_file", &curve_config.authorized_keys_file}}) {
        std::string file;
        c.String(key, file, /*required=*/true);
        if (c.Find(key) != nullptr && c.Find(key)->is_string() && file.empty()) c.Error(key, "must not be empty");
        if (!file.empty()) *out = (config.config_dir / file).lexically_normal();
      }
      if (const json* reviewers = c.Find("reviewers")) {
        if (!reviewers->is_array() || reviewers->size() > 256) {
          c.Error("reviewers", "must be an array of key names (as in authorized_keys_file)");
        } else {
          for (const auto& name : *reviewers) {
            if (!name.is_string() || name.get<std::string>().empty()) {
              c.Error("reviewers", "every entry must be a non-empty key name");
              break;
            }
            curve_config.reviewers.push_back(name.get<std::string>());
          }
        }
      }
      c.RejectUnknown();
      // inproc:// connections skip the security handshake altogether.
      if (config.client_endpoint.rfind("inproc://", 0) == 0) {
        f.Error("client_curve", "needs a tcp:// or ipc:// client_endpoint (inproc:// has no handshake)");
      }
      // The events (verdicts, variants' pids, review notes) must not be open
      // to whoever reaches a port while the client endpoint requires keys.
      // (Not given: the events go to an ipc socket in the state dir.)
      if (f.Find("event_endpoint") == nullptr) {
        config.event_endpoint = "ipc://" + (config.state_dir / "events.sock").string();
      } else if (config.event_endpoint.rfind("tcp://", 0) == 0 || config.event_endpoint.rfind("ipc://@", 0) == 0) {
        f.Error("event_endpoint", "with client_curve it must be an ipc:// endpoint on a file (nvsd makes its socket "
                                  "owner-only; an abstract ipc://@ one cannot be) or \"\": a tcp event endpoint has "
                                  "no authentication (SECURITY.md)");
      }
      config.client_curve = std::move(curve_config);
    }
  }

  const json* variants = f.Find("variants");
  if (variants == nullptr) {
    f.Error("variants", "required");
  } else if (!variants->is_array() || variants->empty() || variants->size() > 8) {
    f.Error("variants", "must be an array of 1 to 8 variants");
  } else {
    std::set<std::string> names;
    for (std::size_t i = 0; i < variants->size(); ++i) {
      VariantConfig variant;
      const std::string where = "variants[" + std::to_string(i) + "]";
      ParseVariant((*variants)[i], where, variant, errors);
      if (!variant.name.empty() && !names.insert(variant.name).second) {
        errors.push_back(where + ".name: \"" + variant.name + "\" is used twice");
      }
      config.variants.push_back(std::move(variant));
    }
  }
  config.policy = voter::Policy::DefaultFor(std::max<std::size_t>(1, config.variants.size()));
  if (const json* policy = f.Find("policy")) ParsePolicy(*policy, config, errors);

  f.Integer("deadline_ms", config.deadline_ms, 1, 3'600'000);
  f.Integer("sync_deadline_ms", config.sync_deadline_ms, 10, 3'600'000);
  f.Integer("stop_grace_ms", config.stop_grace_ms, 0, 600'000);
  f.Integer("heartbeat_interval_ms", config.heartbeat_interval_ms, 10, 3'600'000);
  f.Integer("heartbeat_timeout_ms", config.heartbeat_timeout_ms, 10, 3'600'000);
  f.Integer("queue_deadline_ms", config.queue_deadline_ms, 0, 3'600'000);
  f.Integer("queue_limit", config.queue_limit, 1, 10'000'000);
  config.client_queue_limit = std::max<std::size_t>(1, config.queue_limit / 4);
  f.Integer("client_queue_limit", config.client_queue_limit, 1, 10'000'000);
  if (config.client_queue_limit > config.queue_limit) {
    f.Error("client_queue_limit", "cannot exceed queue_limit (" + std::to_string(config.queue_limit) + ")");
  }
  f.Integer("client_backlog_limit", config.client_backlog_limit, 1, 10'000'000);
  f.Integer("exit_grace_ms", config.exit_grace_ms, 1, 600'000);
  f.Integer("checkpoint_interval", config.checkpoint_interval, 1, 100'000'000);
  f.Integer("journal_segment_bytes", config.journal_segment_bytes, 4096, std::int64_t{1} << 40);
  f.Integer("journal_keep_segments", config.journal_keep_segments, 0, 1'000'000);
  f.Integer("stderr_tail_bytes", config.stderr_tail_bytes, 0, 1 << 20);
  f.Integer("stderr_log_bytes", config.stderr_log_bytes, 4096, std::int64_t{1} << 40);
  if (const json* restart = f.Find("restart")) {
    if (!restart->is_object()) {
      f.Error("restart", "must be an object");
    } else {
      Fields r(*restart, "restart", errors);
      r.Integer("intensity", config.restart.intensity, 0, 1'000'000);
      r.Integer("period_ms", config.restart.period_ms, 1, 86'400'000);
      r.RejectUnknown();
    }
  }
  f.String("mode", config.mode);
  if (config.mode != "lockstep" && config.mode != "standby") f.Error("mode", "must be \"lockstep\" or \"standby\"");
  f.String("standby_policy", config.standby_policy);
  if (config.standby_policy != "quarantine" && config.standby_policy != "probe") {
    f.Error("standby_policy", "must be \"quarantine\" or \"probe\"");
  }
  f.Bool("preempt", config.preempt);
  const int quorum = config.mode == "standby" ? 1 : static_cast<int>(config.policy.Quorum());
  config.min_healthy = quorum;
  f.Integer("min_healthy", config.min_healthy, 1, 8);
  if (!config.variants.empty() && config.min_healthy > static_cast<int>(config.variants.size())) {
    f.Error("min_healthy", "cannot exceed the number of variants (" + std::to_string(config.variants.size()) + ")");
  }
  f.String("fsync", config.fsync);
  if (config.fsync != "always" && config.fsync != "batch" && config.fsync != "none") {
    f.Error("fsync", "must be \"always\", \"batch\" or \"none\"");
  }
  f.Integer("fsync_batch_ms", config.fsync_batch_ms, 1, 10'000);
  f.Integer("remembered_requests", config.remembered_requests, 0, 100'000'000);
  if (const json* cluster = f.Find("cluster")) ParseCluster(*cluster, config, errors);
  std::string bridge;
  f.String("stdio_bridge", bridge);
  if (!bridge.empty()) config.stdio_bridge = (config.config_dir / bridge).lexically_normal();
  f.RejectUnknown();

  if (!errors.empty()) {
    std::string message = path.string() + ": invalid configuration:";
    for (const auto& e : errors) message += "\n  " + e;
    return Status::Error(message);
  }
  if (config.variant_endpoint.empty()) config.variant_endpoint = "ipc://" + (config.state_dir / "variants.sock").string();
  return config;
}

Result<Config> LoadConfig(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return Status::Error(path.string() + ": cannot read");
  std::stringstream text;
  text << in.rdbuf();
  return ParseConfig(text.str(), path);
}

Status LoadClientCurveKeys(Config& config, const std::filesystem::path& path) {
  if (!config.client_curve) return Status::Ok();
  ClientCurveConfig& curve = *config.client_curve;
  std::vector<std::string> errors;
  auto keys = protocol::ReadSecretKeyFile(curve.secret_key_file);
  if (keys.ok()) {
    curve.keys = keys.value();
  } else {
    errors.push_back("client_curve.secret_key_file: " + keys.status().message());
  }
  auto authorized = protocol::ReadAuthorizedKeysFile(curve.authorized_keys_file);
  if (authorized.ok()) {
    curve.authorized = authorized.value();
    for (const auto& reviewer : curve.reviewers) {
      const bool listed = std::any_of(curve.authorized.begin(), curve.authorized.end(),
                                      [&](const protocol::AuthorizedKey& k) { return k.name == reviewer; });
      if (!listed) {
        errors.push_back("client_curve.reviewers: no key named \"" + reviewer + "\" in " +
                         curve.authorized_keys_file.string());
      }
    }
  } else {
    errors.push_back("client_curve.authorized_keys_file: " + authorized.status().message());
  }
  if (errors.empty()) return Status::Ok();
  std::string message = path.string() + ": invalid configuration:";
  for (const auto& e : errors) message += "\n  " + e;
  return Status::Error(message);
}

Result<std::string> ResolveRunAs(const std::string& user, const std::string& group) {
  if (geteuid() != 0) {
    return Status::Error("user " + user + ": nvsd must run as root to start a variant as another user");
  }
  const auto number = [](const std::string& text) -> std::optional<unsigned long> {
    if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
    return std::stoul(text);
  };
  // getpw*_r and getgr*_r: 0 with no entry, or an entry, or an error number
  // (some C libraries say "not found" with one of the first four). The
  // buffer grows on ERANGE: a group with many members needs more than 16 KiB.
  std::vector<char> buffer(16384);
  const auto look_up = [&](const auto& call) {
    while (true) {
      const int error = call(buffer.data(), buffer.size());
      if (error != ERANGE || buffer.size() >= (16u << 20)) return error;
      buffer.resize(buffer.size() * 4);
    }
  };
  const auto not_found = [](int error) {
    return error == 0 || error == ENOENT || error == ESRCH || error == EBADF || error == EPERM;
  };
  const auto cannot = [](const std::string& what, int error) {
    return Status::Error(what + ": cannot look it up (" + std::strerror(error) + ")");
  };
  uid_t uid = 0;
  gid_t gid = 0;
  struct passwd pw {};
  struct passwd* found = nullptr;
  if (auto n = number(user)) {
    uid = static_cast<uid_t>(*n);
    const int error = look_up([&](char* b, std::size_t size) { return getpwuid_r(uid, &pw, b, size, &found); });
    if (found == nullptr && !not_found(error)) return cannot("user " + user, error);
    if (found == nullptr && group.empty()) return Status::Error("user " + user + ": no such uid; give a group too");
    if (found != nullptr) gid = found->pw_gid;
  } else {
    const int error = look_up([&](char* b, std::size_t size) { return getpwnam_r(user.c_str(), &pw, b, size, &found); });
    if (found == nullptr && !not_found(error)) return cannot("user " + user, error);
    if (found == nullptr) return Status::Error("user " + user + ": no such user");
    uid = found->pw_uid;
    gid = found->pw_gid;
  }
  if (!group.empty()) {
    if (auto n = number(group)) {
      gid = static_cast<gid_t>(*n);
    } else {
      struct group gr {};
      struct group* g = nullptr;
      const int error =
          look_up([&](char* b, std::size_t size) { return getgrnam_r(group.c_str(), &gr, b, size, &g); });
      if (g == nullptr && !not_found(error)) return cannot("group " + group, error);
      if (g == nullptr) return Status::Error("group " + group + ": no such group");
      gid = g->gr_gid;
    }
  }
  if (uid == 0) return Status::Error("user " + user + ": a variant is not run as root on purpose; leave `user` out");
  if (gid == 0) return Status::Error("user " + user + ": group 0 (root) is refused; give `group`");
  return std::to_string(uid) + ":" + std::to_string(gid);
}

Status ResolveVariantUsers(Config& config, const std::filesystem::path& path) {
  std::vector<std::string> errors;
  for (std::size_t i = 0; i < config.variants.size(); ++i) {
    VariantConfig& v = config.variants[i];
    if (v.user.empty()) continue;
    auto ids = ResolveRunAs(v.user, v.group);
    if (ids.ok()) {
      v.run_as = ids.value();
    } else {
      errors.push_back("variants[" + std::to_string(i) + "] (" + v.name + ").user: " + ids.status().message());
    }
  }
  // One user per variant: processes of one user can signal and trace each
  // other, so a variant could kill or read another (an outside test did).
  for (std::size_t i = 0; i < config.variants.size(); ++i) {
    const auto& a = config.variants[i];
    if (a.run_as.empty()) continue;
    const std::string uid_a = a.run_as.substr(0, a.run_as.find(':'));
    for (std::size_t j = 0; j < i; ++j) {
      const auto& b = config.variants[j];
      if (!b.run_as.empty() && b.run_as.substr(0, b.run_as.find(':')) == uid_a) {
        errors.push_back("variants[" + std::to_string(i) + "] (" + a.name + ").user: " + a.user +
                         " is also the user of " + b.name + " (uid " + uid_a +
                         "): each variant needs a user of its own, or one could kill or read the other");
      }
    }
  }
  if (errors.empty()) return Status::Ok();
  std::string message = path.string() + ": invalid configuration:";
  for (const auto& e : errors) message += "\n  " + e;
  return Status::Error(message);
}

std::string VariantsAndPolicyJson(const Config& config) {
  json variants = json::array();
  for (const auto& v : config.variants) {
    json entry = {{"name", v.name}, {"argv", v.argv}, {"transport", v.transport == Transport::kStdio ? "stdio" : "zmq"}};
    if (!v.env.empty()) entry["env"] = v.env;
    if (!v.working_dir.empty()) entry["working_dir"] = v.working_dir.string();
    json limits = json::object();
    if (v.limits.address_space_mb) limits["address_space_mb"] = *v.limits.address_space_mb;
    if (v.limits.cpu_seconds) limits["cpu_seconds"] = *v.limits.cpu_seconds;
    if (v.limits.open_files) limits["open_files"] = *v.limits.open_files;
    if (v.limits.core_dumps) limits["core_dumps"] = true;
    if (!limits.empty()) entry["limits"] = limits;
    if (!v.user.empty()) entry["user"] = v.user;
    if (!v.group.empty()) entry["group"] = v.group;
    variants.push_back(entry);
  }
  json policy = {{"kind", std::string(voter::ToString(config.policy.kind))}, {"ignore", config.policy.ignored}};
  if (!config.policy.primary.empty()) policy["primary"] = config.policy.primary;
  return json{{"variants", variants}, {"policy", policy}, {"config_dir", config.config_dir.string()}}.dump(
      -1, ' ', false, json::error_handler_t::replace);
}

}  // namespace nvs::supervisor
