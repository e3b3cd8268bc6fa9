// nvsd --config FILE
//
// The nvs supervisor daemon. Exit codes: 0 stopped by SIGTERM/SIGINT;
// 1 could not start (bind, state dir, ...); 2 usage or configuration error
// (the client_curve key files included). Cluster mode: a leader that
// steps down executes itself again, as a follower.
#include <signal.h>
#include <sys/signalfd.h>

#include <cstring>
#include <iostream>
#include <string>

#include "nvs/supervisor/config.h"
#include "nvs/supervisor/supervisor.h"

namespace {

void Usage(std::ostream& out) {
  out << "usage: nvsd --config FILE [--check]\n"
         "  --config FILE  the JSON configuration (see examples/)\n"
         "  --check        validate the configuration and exit\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if ((arg == "--config" || arg == "-c") && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg.rfind("--config=", 0) == 0) {
      config_path = arg.substr(9);
    } else if (arg == "--check") {
      check_only = true;
    } else if (arg == "--help" || arg == "-h") {
      Usage(std::cout);
      return 0;
    } else {
      std::cerr << "nvsd: unknown argument '" << arg << "'\n";
      Usage(std::cerr);
      return 2;
    }
  }
  if (config_path.empty()) {
    Usage(std::cerr);
    return 2;
  }
  auto config = nvs::supervisor::LoadConfig(config_path);
  if (!config.ok()) {
    std::cerr << "nvsd: " << config.status().message() << "\n";
    return 2;
  }
  // The key files too: a missing, malformed or readable secret key is a
  // configuration error, found by --check as well.
  const nvs::Status keys = nvs::supervisor::LoadClientCurveKeys(config.value(), config_path);
  if (!keys.ok()) {
    std::cerr << "nvsd: " << keys.message() << "\n";
    return 2;
  }
  // The variants' users too, once: a restart of a variant then never
  // depends on the user database.
  const nvs::Status users = nvs::supervisor::ResolveVariantUsers(config.value(), config_path);
  if (!users.ok()) {
    std::cerr << "nvsd: " << users.message() << "\n";
    return 2;
  }
  // A variant without a user of its own runs as nvsd: as root, it could do
  // anything nvsd can (read its key, write its journal). Said, not refused:
  // a test rig or a single-purpose host may accept it.
  if (check_only && geteuid() == 0) {
    for (const auto& v : config->variants) {
      if (v.user.empty()) {
        std::cerr << "nvsd: warning: variant " << v.name << " has no \"user\": it runs as root, as nvsd does, and is "
                     "trusted as nvsd is (SECURITY.md)\n";
      }
    }
  }
  if (check_only) {
    std::cout << "nvsd: " << config_path << " is valid (" << config->variants.size() << " variants";
    if (config->client_curve) {
      std::cout << "; CURVE on the client endpoint, public key " << config->client_curve->keys.public_key << ", "
                << config->client_curve->authorized.size() << " authorized client keys";
    }
    std::cout << ")\n";
    return 0;
  }

  // Block the stop signals in every thread (ZeroMQ's included, so block them
  // before any socket exists) and read them from a signalfd in the poll loop.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  const int signal_fd = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd < 0) {
    std::cerr << "nvsd: signalfd: " << std::strerror(errno) << "\n";
    return 1;
  }

  bool restart = false;
  {
    nvs::supervisor::Supervisor supervisor(std::move(config.value()));
    const nvs::Status status = supervisor.Run(signal_fd);
    if (!status.ok()) {
      std::cerr << "nvsd: " << status.message() << "\n";
      return 1;
    }
    restart = supervisor.RestartAsFollower();
  }  // (everything closed, the state dir's lock and the lease included)
  if (restart) {
    // Cluster mode: a leader that stepped down starts over as a follower,
    // the same program with the same arguments (the state dir rebuilt from
    // etcd), so nothing it held that etcd lacks survives.
    close(signal_fd);
    std::cerr << "nvsd: stepped down as the cluster's leader: starting again as a follower\n";
    execv("/proc/self/exe", argv);
    std::cerr << "nvsd: cannot start again: " << std::strerror(errno) << "\n";
    return 1;
  }
  return 0;
}
