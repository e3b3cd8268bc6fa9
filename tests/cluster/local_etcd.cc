#include "local_etcd.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "nvs/cluster/etcd.h"
#include "nvsd_harness.h"

namespace nvs::cluster {

namespace {
constexpr const char* kEtcd = "/usr/bin/etcd";
}  // namespace

Status LocalEtcd::Start(int members, std::chrono::milliseconds deadline, bool listen_all) {
  if (access(kEtcd, X_OK) != 0) {
    return Status::Error(std::string(kEtcd) + " is not there: install etcd-server (scripts/bootstrap does)");
  }
  char pattern[] = "/tmp/nvs-etcd-XXXXXX";
  if (mkdtemp(pattern) == nullptr) return Status::Error("cannot make a temporary directory");
  dir_ = pattern;
  std::vector<std::string> peer_urls;
  std::string cluster;
  for (int i = 0; i < members; ++i) {
    client_ports_.push_back(nvs::testing::FreeTcpPort());
    client_urls_.push_back("http://127.0.0.1:" + std::to_string(client_ports_.back()));
    peer_urls.push_back("http://127.0.0.1:" + std::to_string(nvs::testing::FreeTcpPort()));
    cluster += (i ? "," : "") + std::string("m") + std::to_string(i) + "=" + peer_urls.back();
  }
  for (int i = 0; i < members; ++i) {
    const std::string name = "m" + std::to_string(i);
    const std::string listen = listen_all ? "http://0.0.0.0:" + std::to_string(client_ports_[i]) : client_urls_[i];
    args_.push_back({kEtcd,
                     "--name", name,
                     "--data-dir", (dir_ / name).string(),
                     "--listen-client-urls", listen,
                     "--advertise-client-urls", client_urls_[i],
                     "--listen-peer-urls", peer_urls[i],
                     "--initial-advertise-peer-urls", peer_urls[i],
                     "--initial-cluster", cluster,
                     "--initial-cluster-state", "new",
                     "--heartbeat-interval", "50",
                     "--election-timeout", "500"});
    const std::string log = (dir_ / (name + ".log")).string();
    // (Made here, so the wait below can watch it before etcd writes to it.)
    const int made = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (made < 0) return Status::Error("cannot create " + log);
    close(made);
    pids_.push_back(-1);
    if (Status launched = Launch(i); !launched.ok()) return launched;
  }
  // Up when every member says it serves clients (it has joined the
  // cluster, which needs a leader), read from its log as it is written.
  const auto until = std::chrono::steady_clock::now() + deadline;
  for (int i = 0; i < members; ++i) {
    if (Status up = WaitServing(i, until, 0); !up.ok()) return up;
  }
  // And the cluster takes a write.
  EtcdClient client({client_urls_, std::chrono::milliseconds(5000)});
  const Status wrote = client.Put("nvs-test/up", "1");
  if (!wrote.ok()) return Status::Error("etcd is up but took no write: " + wrote.message());
  return wrote;
}

Status LocalEtcd::Launch(int member) {
  const std::string log = (dir_ / ("m" + std::to_string(member) + ".log")).string();
  const pid_t pid = fork();
  if (pid < 0) return Status::Error("fork failed");
  if (pid == 0) {
    const int fd = open(log.c_str(), O_WRONLY | O_APPEND);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    std::vector<char*> argv;
    for (auto& a : args_[member]) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(kEtcd, argv.data());
    _exit(127);
  }
  pids_[member] = pid;
  return Status::Ok();
}

// Serving once its log says so after `after_bytes` (a restarted member's
// earlier lines do not count).
Status LocalEtcd::WaitServing(int member, std::chrono::steady_clock::time_point until, std::size_t after_bytes) {
  const auto log = dir_ / ("m" + std::to_string(member) + ".log");
  const auto ready = [&] {
    std::ifstream in(log);
    std::stringstream text;
    text << in.rdbuf();
    const std::string all = text.str();
    return all.size() > after_bytes && all.find("ready to serve client requests", after_bytes) != std::string::npos;
  };
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
  if (!nvs::testing::WaitForFileCondition(log, ready, std::max(left, std::chrono::milliseconds(1)))) {
    return Status::Error("etcd member m" + std::to_string(member) + " did not serve clients in time (logs in " +
                         dir_.string() + ")");
  }
  return Status::Ok();
}

Status LocalEtcd::Restart(int member, std::chrono::milliseconds deadline) {
  if (member < 0 || member >= static_cast<int>(pids_.size()) || pids_[member] > 0) {
    return Status::Error("etcd member m" + std::to_string(member) + " is not a killed member");
  }
  std::error_code ec;
  const auto size = std::filesystem::file_size(dir_ / ("m" + std::to_string(member) + ".log"), ec);
  if (Status launched = Launch(member); !launched.ok()) return launched;
  return WaitServing(member, std::chrono::steady_clock::now() + deadline, ec ? 0 : size);
}

void LocalEtcd::Kill(int member) {
  if (member < 0 || member >= static_cast<int>(pids_.size()) || pids_[member] <= 0) return;
  kill(pids_[member], SIGKILL);
  waitpid(pids_[member], nullptr, 0);
  pids_[member] = -1;
}

LocalEtcd::~LocalEtcd() {
  for (int i = 0; i < static_cast<int>(pids_.size()); ++i) Kill(i);
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

}  // namespace nvs::cluster
