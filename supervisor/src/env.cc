#include "env.h"

#include <sys/random.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include "log.h"

namespace nvs::supervisor {
namespace {

class SystemEnvImpl : public Env {
 public:
  std::chrono::steady_clock::time_point Now() override { return std::chrono::steady_clock::now(); }
  std::int64_t UnixNowNs() override { return nvs::supervisor::UnixNowNs(); }
  void RandomBytes(unsigned char* out, std::size_t size) override {
    std::size_t got = 0;
    while (got < size) {
      const ssize_t n = getrandom(out + got, size - got, 0);
      if (n > 0) {
        got += static_cast<std::size_t>(n);
      } else if (errno != EINTR) {
        throw std::runtime_error(std::string("getrandom: ") + std::strerror(errno));
      }
    }
  }
  Result<std::unique_ptr<Process>> Spawn(const SpawnSpec& spec) override {
    auto process = VariantProcess::Spawn(spec);
    if (!process.ok()) return process.status();
    return std::unique_ptr<Process>(std::move(process.value()));
  }
};

}  // namespace

Env& SystemEnv() {
  static SystemEnvImpl env;
  return env;
}

}  // namespace nvs::supervisor
