// A throwaway etcd cluster on loopback for tests: `members` etcd processes
// (Debian's etcd-server) on free ports, tuned as nvs's cluster mode
// expects (heartbeat 50 ms, election timeout 500 ms), in a temporary
// directory; killed and removed when it goes out of scope.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "nvs/status.h"

namespace nvs::cluster {

class LocalEtcd {
 public:
  LocalEtcd() = default;
  ~LocalEtcd();
  LocalEtcd(const LocalEtcd&) = delete;
  LocalEtcd& operator=(const LocalEtcd&) = delete;

  // Starts the members and waits (up to `deadline`) until the cluster takes
  // a write. Fails, saying why, when etcd is not installed. `listen_all`:
  // the client ports listen on every address of this network namespace
  // (the multihost tests' hosts reach them through their links), not only
  // on loopback.
  Status Start(int members, std::chrono::milliseconds deadline, bool listen_all = false);
  const std::vector<std::string>& client_urls() const { return client_urls_; }
  // The client port of each member.
  const std::vector<int>& client_ports() const { return client_ports_; }
  // What member `member` logged (etcd's own log, its raft transitions
  // among it).
  std::filesystem::path log(int member) const { return dir_ / ("m" + std::to_string(member) + ".log"); }
  // kill -9 of one member.
  void Kill(int member);
  // Starts a killed member again on its data, and waits (up to `deadline`)
  // until it serves clients.
  Status Restart(int member, std::chrono::milliseconds deadline);

 private:
  Status Launch(int member);
  Status WaitServing(int member, std::chrono::steady_clock::time_point until, std::size_t after_bytes);

  std::filesystem::path dir_;
  std::vector<std::string> client_urls_;
  std::vector<int> client_ports_;
  std::vector<std::vector<std::string>> args_;
  std::vector<pid_t> pids_;
};

}  // namespace nvs::cluster
