// What the fuzz targets share: a check that stops the run with a message
// (libFuzzer then saves the input), and a private scratch folder for the
// targets whose parser reads a file.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>

// A property the parser promises; a violation is a finding like a crash.
#define NVS_FUZZ_CHECK(condition)                                                                 \
  do {                                                                                            \
    if (!(condition)) {                                                                           \
      std::fprintf(stderr, "%s:%d: NVS_FUZZ_CHECK(%s) failed\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                                               \
    }                                                                                             \
  } while (0)

namespace nvs::fuzz {

inline std::string_view AsText(const unsigned char* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// A folder of this process's own under $TMPDIR (scripts/fuzz points it into
// build/fuzz), created on first use and removed at exit.
inline const std::filesystem::path& ScratchDir() {
  // Never destroyed, so the exit handler can still use it.
  static const std::filesystem::path* const dir = [] {
    std::error_code ec;
    std::string pattern = (std::filesystem::temp_directory_path(ec) / "nvs-fuzz-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    return new std::filesystem::path(pattern);
  }();
  static const bool cleanup = [] {
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(*dir, ignored);
    });
    return true;
  }();
  (void)cleanup;
  return *dir;
}

// Writes `bytes` to `path`, replacing it.
inline void WriteFile(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  NVS_FUZZ_CHECK(out.good());
}

}  // namespace nvs::fuzz
