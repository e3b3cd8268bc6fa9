#include "local_etcd.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#include "nvs/cluster/etcd.h"

namespace nvs::cluster {

namespace {

// A loopback port nobody listens on now (the kernel's choice).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t size = sizeof(a);
  int port = -1;
  if (fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &size) == 0) {
    port = ntohs(a.sin_port);
  }
  if (fd >= 0) close(fd);
  return port;
}

}  // namespace

Status LocalEtcd::Start(int members, std::chrono::milliseconds deadline) {
  const char* etcd = "/usr/bin/etcd";
  if (access(etcd, X_OK) != 0) {
    return Status::Error(std::string(etcd) + " is not there: install etcd-server (scripts/bootstrap does)");
  }
  char pattern[] = "/tmp/nvs-etcd-XXXXXX";
  if (mkdtemp(pattern) == nullptr) return Status::Error("cannot make a temporary directory");
  dir_ = pattern;
  std::vector<std::string> peer_urls;
  std::string cluster;
  for (int i = 0; i < members; ++i) {
    client_urls_.push_back("http://127.0.0.1:" + std::to_string(FreePort()));
    peer_urls.push_back("http://127.0.0.1:" + std::to_string(FreePort()));
    cluster += (i ? "," : "") + std::string("m") + std::to_string(i) + "=" + peer_urls.back();
  }
  for (int i = 0; i < members; ++i) {
    const std::string name = "m" + std::to_string(i);
    std::vector<std::string> args = {etcd,
                                     "--name", name,
                                     "--data-dir", (dir_ / name).string(),
                                     "--listen-client-urls", client_urls_[i],
                                     "--advertise-client-urls", client_urls_[i],
                                     "--listen-peer-urls", peer_urls[i],
                                     "--initial-advertise-peer-urls", peer_urls[i],
                                     "--initial-cluster", cluster,
                                     "--initial-cluster-state", "new",
                                     "--heartbeat-interval", "50",
                                     "--election-timeout", "500"};
    const std::string log = (dir_ / (name + ".log")).string();
    const pid_t pid = fork();
    if (pid < 0) return Status::Error("fork failed");
    if (pid == 0) {
      const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
      }
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(etcd, argv.data());
      _exit(127);
    }
    pids_.push_back(pid);
  }
  // Up when a write goes through (a leader is elected and a quorum answers).
  EtcdClient client({client_urls_, std::chrono::milliseconds(500)});
  const auto until = std::chrono::steady_clock::now() + deadline;
  Status last = Status::Error("not tried");
  while (std::chrono::steady_clock::now() < until) {
    last = client.Put("nvs-test/up", "1");
    if (last.ok()) return last;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // (polling a process that is starting)
  }
  return Status::Error("etcd did not take a write within " + std::to_string(deadline.count()) + " ms: " +
                       last.message() + " (logs in " + dir_.string() + ")");
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
