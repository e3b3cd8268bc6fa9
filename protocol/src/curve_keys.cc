#include "nvs/protocol/curve_keys.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>

namespace nvs::protocol {
namespace {

// A key file is a few lines; an authorized-keys file may list many clients.
constexpr std::size_t kMaxKeyFileBytes = 64 * 1024;
constexpr std::size_t kMaxAuthorizedKeysBytes = 16 * 1024 * 1024;

constexpr std::string_view kBlanks = " \t\r\v\f";

std::string_view Trim(std::string_view text) {
  const auto first = text.find_first_not_of(kBlanks);
  if (first == std::string_view::npos) return {};
  return text.substr(first, text.find_last_not_of(kBlanks) - first + 1);
}

// The lines of `text`, each with its 1-based number, trimmed; blank ones skipped.
template <typename Visit>
void ForEachLine(std::string_view text, Visit visit) {
  int number = 0;
  while (!text.empty()) {
    const auto end = text.find('\n');
    const std::string_view line = Trim(text.substr(0, end));
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    ++number;
    if (!line.empty() && !visit(number, line)) return;
  }
}

// Splits a trimmed line into its first word and the (trimmed) rest.
std::pair<std::string_view, std::string_view> FirstWord(std::string_view line) {
  const auto end = line.find_first_of(kBlanks);
  if (end == std::string_view::npos) return {line, {}};
  return {line.substr(0, end), Trim(line.substr(end))};
}

std::string LineError(int number, const std::string& what) { return "line " + std::to_string(number) + ": " + what; }

const char* const kNotAKey = "not a Z85 CURVE key (40 characters of the Z85 alphabet), nor a '#' comment";

std::string Octal(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

// Reads a regular file of at most `limit` bytes through one descriptor (so
// the permissions checked are those of the file read). `forbidden`: mode
// bits that make the file unacceptable, why, and what mends it (a chmod,
// completed with the path).
// With `own`, the file must belong to this process's user (or root): a key
// another user owns is theirs to change (OpenSSH's StrictModes).
Result<std::string> ReadGuarded(const std::filesystem::path& path, std::size_t limit, mode_t forbidden,
                                const std::string& why, const std::string& fix, bool own = false) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return Status::Error(path.string() + ": cannot read: " + std::strerror(errno));
  struct stat st {};
  std::string error;
  if (fstat(fd, &st) != 0) {
    error = std::string("cannot stat: ") + std::strerror(errno);
  } else if (!S_ISREG(st.st_mode)) {
    error = "not a regular file";
  } else if ((st.st_mode & forbidden) != 0) {
    error = why + " (mode " + Octal(st.st_mode) + "); " + fix + " " + path.string();
  } else if (own && st.st_uid != geteuid() && st.st_uid != 0) {
    error = "owned by uid " + std::to_string(st.st_uid) + ", not by this user (uid " + std::to_string(geteuid()) +
            ") or root: another user could change it; chown it";
  } else if (static_cast<std::size_t>(st.st_size) > limit) {
    error = "larger than " + std::to_string(limit) + " bytes";
  }
  std::string text;
  if (error.empty()) {
    char buffer[8192];
    for (;;) {
      const ssize_t n = read(fd, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        error = std::string("cannot read: ") + std::strerror(errno);
        break;
      }
      if (n == 0) break;
      text.append(buffer, static_cast<std::size_t>(n));
      if (text.size() > limit) {
        error = "larger than " + std::to_string(limit) + " bytes";
        break;
      }
    }
  }
  close(fd);
  if (!error.empty()) return Status::Error(path.string() + ": " + error);
  return text;
}

// Creates `path` (it must not exist) with `mode` and `text`, synced.
Status WriteNewFile(const std::filesystem::path& path, mode_t mode, const std::string& text) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) {
    if (errno == EEXIST) return Status::Error(path.string() + ": already exists; a key is never overwritten");
    return Status::Error(path.string() + ": cannot create: " + std::strerror(errno));
  }
  std::string error;
  if (fchmod(fd, mode) != 0) error = std::string("cannot chmod: ") + std::strerror(errno);
  std::size_t done = 0;
  while (error.empty() && done < text.size()) {
    const ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error = std::string("cannot write: ") + std::strerror(errno);
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  if (error.empty() && fsync(fd) != 0) error = std::string("cannot sync: ") + std::strerror(errno);
  if (close(fd) != 0 && error.empty()) error = std::string("cannot close: ") + std::strerror(errno);
  if (!error.empty()) {
    unlink(path.c_str());
    return Status::Error(path.string() + ": " + error);
  }
  return Status::Ok();
}

}  // namespace

bool IsZ85Key(std::string_view text) {
  if (text.size() != kZ85KeyLength) return false;
  const std::string terminated(text);
  std::uint8_t bytes[kCurveKeyBytes];
  // zmq_z85_decode rejects characters outside the alphabet and values over 2^32.
  return zmq_z85_decode(bytes, terminated.c_str()) != nullptr;
}

std::string DecodeZ85Key(std::string_view z85) {
  const std::string terminated(z85);
  std::uint8_t bytes[kCurveKeyBytes] = {};
  zmq_z85_decode(bytes, terminated.c_str());
  return std::string(reinterpret_cast<const char*>(bytes), sizeof bytes);
}

std::string EncodeZ85Key(std::string_view binary) {
  char text[kZ85KeyLength + 1] = {};
  zmq_z85_encode(text, reinterpret_cast<const std::uint8_t*>(binary.data()), kCurveKeyBytes);
  return text;
}

Result<std::string> ParseKeyFile(std::string_view text) {
  std::string key;
  int key_line = 0;
  std::string error;
  ForEachLine(text, [&](int number, std::string_view line) {
    const auto [word, rest] = FirstWord(line);
    if (IsZ85Key(word)) {
      if (key_line != 0) {
        error = LineError(number, "a second key (the first is on line " + std::to_string(key_line) +
                                      "); a key file holds one key");
        return false;
      }
      key = std::string(word);
      key_line = number;
      return true;
    }
    if (line.front() == '#') return true;
    // The line is not echoed: it may be a damaged secret key.
    error = LineError(number, kNotAKey);
    return false;
  });
  if (!error.empty()) return Status::Error(error);
  if (key_line == 0) return Status::Error("no key in it (a key file holds one Z85 key on a line of its own)");
  return key;
}

Result<std::vector<AuthorizedKey>> ParseAuthorizedKeys(std::string_view text) {
  std::vector<AuthorizedKey> keys;
  std::map<std::string, int> seen;   // key -> line
  std::map<std::string, int> names;  // name -> line: a name is an identity (review, request ids), one key each
  std::string error;
  ForEachLine(text, [&](int number, std::string_view line) {
    const auto [word, rest] = FirstWord(line);
    if (IsZ85Key(word)) {
      auto [at, fresh] = seen.emplace(std::string(word), number);
      if (!fresh) {
        error = LineError(number, "the key of line " + std::to_string(at->second) + " again");
        return false;
      }
      if (!rest.empty()) {
        auto [named, first] = names.emplace(std::string(rest), number);
        if (!first) {
          error = LineError(number, "the name \"" + std::string(rest) + "\" of line " + std::to_string(named->second) +
                                        " again: a name stands for one key (who reviewed, whose request ids)");
          return false;
        }
      }
      keys.push_back({std::string(word), std::string(rest), number});
      return true;
    }
    if (line.front() == '#') return true;
    error = LineError(number, kNotAKey);
    return false;
  });
  if (!error.empty()) return Status::Error(error);
  return keys;
}

Result<CurveKeyPair> ReadSecretKeyFile(const std::filesystem::path& path) {
  auto text = ReadGuarded(path, kMaxKeyFileBytes, S_IRWXG | S_IRWXO,
                          "group or others may read or write this secret key", "make it owner-only: chmod 600",
                          /*own=*/true);
  if (!text.ok()) return text.status();
  auto key = ParseKeyFile(text.value());
  if (!key.ok()) return Status::Error(path.string() + ": " + key.status().message());
  char public_key[kZ85KeyLength + 1] = {};
  if (zmq_curve_public(public_key, key.value().c_str()) != 0) {
    return Status::Error(path.string() + ": cannot derive the public key: " + zmq_strerror(zmq_errno()));
  }
  return CurveKeyPair{public_key, key.value()};
}

Result<std::string> ReadPublicKeyFile(const std::filesystem::path& path) {
  auto text = ReadGuarded(path, kMaxKeyFileBytes, 0, "", "");
  if (!text.ok()) return text.status();
  auto key = ParseKeyFile(text.value());
  if (!key.ok()) return Status::Error(path.string() + ": " + key.status().message());
  return key;
}

Result<std::vector<AuthorizedKey>> ReadAuthorizedKeysFile(const std::filesystem::path& path) {
  auto text = ReadGuarded(path, kMaxAuthorizedKeysBytes, S_IWGRP | S_IWOTH,
                          "group or others may write it, and so let any client in",
                          "make it writable by its owner only: chmod go-w", /*own=*/true);
  if (!text.ok()) return text.status();
  auto keys = ParseAuthorizedKeys(text.value());
  if (!keys.ok()) return Status::Error(path.string() + ": " + keys.status().message());
  return keys;
}

Result<CurveKeyPair> GenerateKeyPair() {
  char public_key[kZ85KeyLength + 1] = {};
  char secret_key[kZ85KeyLength + 1] = {};
  if (zmq_curve_keypair(public_key, secret_key) != 0) {
    return Status::Error(std::string("cannot make a CURVE key pair: ") + zmq_strerror(zmq_errno()));
  }
  return CurveKeyPair{public_key, secret_key};
}

Result<CurveKeyPair> WriteKeyPair(const std::filesystem::path& base) {
  if (base.filename().empty()) return Status::Error(base.string() + ": give a file name (DIR/NAME)");
  const std::filesystem::path folder = base.has_parent_path() ? base.parent_path() : ".";
  std::error_code ec;
  if (!std::filesystem::is_directory(folder, ec)) return Status::Error(folder.string() + ": not a folder");
  const std::filesystem::path secret_path = base.string() + ".key";
  const std::filesystem::path public_path = base.string() + ".pub";
  for (const auto& path : {secret_path, public_path}) {
    if (std::filesystem::symlink_status(path, ec).type() != std::filesystem::file_type::not_found) {
      return Status::Error(path.string() + ": already exists; a key is never overwritten");
    }
  }
  auto pair = GenerateKeyPair();
  if (!pair.ok()) return pair.status();
  const std::string name = base.filename().string();
  Status written = WriteNewFile(secret_path, 0600,
                                "# nvs CURVE secret key (Z85) \"" + name + "\", written by nvs keygen.\n"
                                "# Keep it owner-only (chmod 600); give it to nothing but the program it is for.\n"
                                "# public key: " + pair.value().public_key + "\n" +
                                pair.value().secret_key + "\n");
  if (!written.ok()) return written;
  // The name after the key: `cat NAME.pub >> authorized_keys` lists it under that name.
  written = WriteNewFile(public_path, 0644,
                         "# nvs CURVE public key (Z85) \"" + name + "\", written by nvs keygen: a client's goes\n"
                         "# into nvsd's authorized_keys_file, nvsd's to its clients.\n" +
                         pair.value().public_key + " " + name + "\n");
  if (!written.ok()) {
    unlink(secret_path.c_str());
    return written;
  }
  return pair;
}

}  // namespace nvs::protocol
