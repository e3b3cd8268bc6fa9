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
  // a write. Fails, saying why, when etcd is not installed.
  Status Start(int members, std::chrono::milliseconds deadline);
  const std::vector<std::string>& client_urls() const { return client_urls_; }
  // kill -9 of one member.
  void Kill(int member);

 private:
  std::filesystem::path dir_;
  std::vector<std::string> client_urls_;
  std::vector<pid_t> pids_;
};

}  // namespace nvs::cluster
