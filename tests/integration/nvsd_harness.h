// Integration harness: a real nvsd process with real variants, driven through
// its real client socket and watched through its event socket. Every wait
// has a deadline.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace nvs::testing {

// One variant line of the generated config.
struct VariantSpec {
  VariantSpec(const char* program) : name(program) {}  // NOLINT: implicit for brevity in tests
  VariantSpec(std::string program, std::vector<std::string> extra_args, std::string name_in_config = {})
      : name(std::move(program)), extra(std::move(extra_args)), config_name(std::move(name_in_config)) {}
  std::string name;                // router-a, router-b or router-c (also used as the config name)
  std::vector<std::string> extra;  // extra arguments, e.g. {"--fault", "crash-on=X"}
  std::string config_name;         // defaults to `name`
  std::vector<std::string> wrapper;  // router-c only: misbehaving_variant.py options (see that file)
  nlohmann::json config = nlohmann::json::object();  // merged into the variant's config (e.g. "limits")
};

struct NvsdOptions {
  NvsdOptions(std::vector<VariantSpec> specs, nlohmann::json config_overrides = nlohmann::json::object())
      : variants(std::move(specs)), overrides(std::move(config_overrides)) {}
  std::vector<VariantSpec> variants;
  nlohmann::json overrides;  // merged into the config (JSON merge patch)
  int inputs = 16;
  int outputs = 16;
  // Where the variants' received logs go; empty: the harness's own temp dir.
  // Set it to keep the logs across nvsd incarnations (the chaos test).
  std::filesystem::path log_dir;
  // client_curve: nvsd's client endpoint requires CURVE. The harness makes
  // nvsd's key pair and one client key pair (listed in the authorized-keys
  // file under the name "harness") in keys_dir(), a client config for them
  // (client_config()), and its own client uses them.
  bool curve = false;
  // With `curve`: more client key pairs, listed in authorized_keys under
  // these names, each with a client config keys_dir()/NAME.json (for `nvs
  // --client-config`).
  std::vector<std::string> client_keys;
  // Started through this program and arguments (nvsd's path and arguments
  // follow them), which must end by exec'ing nvsd (its pid is nvsd's):
  // e.g. `unshare --mount -- sh -c '...; exec "$@"' sh`.
  std::vector<std::string> launcher;
};

class NvsdHarness {
 public:
  using Clock = std::chrono::steady_clock;

  explicit NvsdHarness(const NvsdOptions& options);
  ~NvsdHarness();  // SIGTERM nvsd, wait, SIGKILL if needed; removes the temp dir
  NvsdHarness(const NvsdHarness&) = delete;
  NvsdHarness& operator=(const NvsdHarness&) = delete;

  // Waits for the `ready` event. Returns false at the deadline.
  bool WaitReady(std::chrono::milliseconds deadline = std::chrono::milliseconds(20000));

  // Sends a command and waits for its reply (the parsed reply object), or
  // returns a null json at the deadline.
  nlohmann::json Command(const nlohmann::json& cmd, std::chrono::milliseconds deadline = std::chrono::milliseconds(20000));
  nlohmann::json Query(const nlohmann::json& query, std::chrono::milliseconds deadline = std::chrono::milliseconds(20000));
  nlohmann::json Status(std::chrono::milliseconds deadline = std::chrono::milliseconds(10000));
  // Pipelining: send a command without waiting; collect its reply later.
  std::string SendCommand(const nlohmann::json& cmd, const std::string& id = "");
  nlohmann::json ReplyTo(const std::string& id, std::chrono::milliseconds deadline = std::chrono::milliseconds(20000));
  // Sends raw bytes as a request and returns the raw reply.
  std::optional<std::string> Raw(const std::string& bytes, std::chrono::milliseconds deadline = std::chrono::milliseconds(10000));

  // Waits for an event for which `match` is true (events seen earlier and
  // not yet consumed count too). Returns it, or null at the deadline.
  nlohmann::json WaitEvent(const std::function<bool(const nlohmann::json&)>& match,
                           std::chrono::milliseconds deadline = std::chrono::milliseconds(20000));
  // Every event seen so far.
  const std::vector<nlohmann::json>& events() const;

  // Waits until every configured variant is healthy and voting, with no
  // command and no request in flight (so no fault is still on its way).
  bool WaitAllHealthy(std::chrono::milliseconds deadline = std::chrono::milliseconds(20000));

  // Polls `status` (between events) until `match` is true; that status, or
  // null at the deadline.
  nlohmann::json WaitStatus(const std::function<bool(const nlohmann::json&)>& match,
                            std::chrono::milliseconds deadline = std::chrono::milliseconds(20000));

  // The pid of a variant's current incarnation (from `status`), or -1.
  int VariantPid(const std::string& name);

  // The lines of a variant's received log (its --received-log, always set).
  std::vector<nlohmann::json> ReceivedLog(const std::string& name) const;
  // Those of its lines the variant's own incarnations received ("received_by"
  // NAME.N), not nvsd's disposable processes of its program (probes,
  // retests), which write to the same log.
  std::vector<nlohmann::json> DeliveredTo(const std::string& name) const;

  const std::filesystem::path& state_dir() const;
  // nvsd's client endpoint (for running `nvs` against it).
  std::string client_endpoint() const;
  // What nvsd wrote to stderr so far (its JSON-lines log).
  std::string NvsdLog() const;
  // Waits (inotify on the log, with a deadline) until `done` is true of nvsd's log.
  bool WaitNvsdLog(const std::function<bool(const std::string&)>& done,
                   std::chrono::milliseconds deadline = std::chrono::milliseconds(10000)) const;
  // The harness's temporary folder (removed with it).
  const std::filesystem::path& dir() const;
  // With NvsdOptions::curve: the folder of the key files (nvsd.key, nvsd.pub,
  // client.key, client.pub, authorized_keys) and the client config
  // (client.json: endpoint, server_public_key_file, secret_key_file).
  std::filesystem::path keys_dir() const;
  std::filesystem::path client_config() const;
  int nvsd_pid() const;
  // Waits for nvsd to exit; its wait status.
  std::optional<int> WaitNvsdExit(std::chrono::milliseconds deadline);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Waits until `done()` is true, asking again each time `file` is written
// (inotify), up to the deadline. Returns the last answer.
bool WaitForFileCondition(const std::filesystem::path& file, const std::function<bool()>& done,
                          std::chrono::milliseconds deadline);

// nvsd's log lines (JSON, one a line) of one event.
std::vector<nlohmann::json> LogEvents(const std::string& log, const std::string& event);

// Paths to the programs built in this tree.
std::string NvsdPath();
// A loopback TCP port nobody listens on now (the kernel's choice).
int FreeTcpPort();
// Runs a shell command; its stdout, with its exit status in *status. Its
// stderr goes to `stderr_file`.
std::string RunCapture(const std::string& command, const std::filesystem::path& stderr_file, int* status);
std::string PythonPath();
std::string RouterPath(const std::string& name);  // router-a / router-b executable, or router_c.py
// GET http://ADDRESS/PATH (ADDRESS: "host:port"), 10 s at most: the HTTP
// status (0: no answer) and the body.
std::pair<int, std::string> HttpGet(const std::string& address, const std::string& path);
// Debian's `promtool check metrics` on a scraped page: "" when it accepts
// it with no complaint, else what it said. (Missing promtool is a failure:
// scripts/bootstrap installs it.)
std::string PromtoolProblems(const std::string& page, const std::filesystem::path& scratch_dir);
// The value of one sample in a metrics page ("name{labels}" exactly as
// written), or nullopt.
std::optional<double> MetricValue(const std::string& page, const std::string& series);
std::string MisbehavingVariantPath();

}  // namespace nvs::testing
