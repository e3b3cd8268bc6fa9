// CURVE key files for nvsd's client endpoint (protocol/CLIENT.md §7): a key
// file, the list of client keys nvsd lets in, and key generation. Keys are
// Z85 text, 40 characters for 32 bytes, as libzmq prints them. Used by nvsd
// (its key pair, the authorized keys), nvs and nvs-videohub (their key pair,
// nvsd's public key) and `nvs keygen`.
//
// File formats (one format for every key file, so `cat` and an editor are
// the only tools an operator needs):
//   - A key file (NAME.key: a secret key; NAME.pub: a public key) holds
//     exactly one line whose first word is a Z85 key (the rest of that line
//     is ignored). Blank lines and lines starting with '#' are comments (no
//     Z85 key starts with '#': its first five characters would exceed 2^32).
//   - An authorized-keys file holds one client public key per line,
//     optionally followed by whitespace and a name (the rest of the line),
//     which nvsd logs; comments and blank lines as above. A key listed twice
//     is an error.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "nvs/status.h"

namespace nvs::protocol {

inline constexpr std::size_t kZ85KeyLength = 40;  // characters of a Z85 CURVE key
inline constexpr std::size_t kCurveKeyBytes = 32;

struct CurveKeyPair {
  std::string public_key;  // Z85
  std::string secret_key;  // Z85
};

// True when `text` is a Z85 CURVE key: 40 characters of the Z85 alphabet
// that decode to 32 bytes.
bool IsZ85Key(std::string_view text);

// The 32 bytes of a Z85 key. REQUIRES: IsZ85Key(z85).
std::string DecodeZ85Key(std::string_view z85);
// The Z85 text of a 32-byte key. REQUIRES: binary.size() == 32.
std::string EncodeZ85Key(std::string_view binary);

// The one key in a key file's text; errors name the line ("line 3: ...").
Result<std::string> ParseKeyFile(std::string_view text);

// One line of an authorized-keys file.
struct AuthorizedKey {
  std::string public_key;  // Z85
  std::string name;        // the rest of the line, trimmed; may be empty
  int line = 0;            // 1-based
};

// An authorized-keys file's text; errors name the line. An empty list is
// valid (nobody gets in).
Result<std::vector<AuthorizedKey>> ParseAuthorizedKeys(std::string_view text);

// Reads a secret key file. It must be a regular file that neither group nor
// others may access at all (mode 0600 or stricter: a secret key readable by
// others is not secret), holding one key. The public key is derived from it
// (zmq_curve_public). Errors start with the path.
Result<CurveKeyPair> ReadSecretKeyFile(const std::filesystem::path& path);

// Reads a public key file (any permissions). Errors start with the path.
Result<std::string> ReadPublicKeyFile(const std::filesystem::path& path);

// Reads an authorized-keys file. Refused when group or others may write it:
// whoever can write it can let a client in. Errors start with the path.
Result<std::vector<AuthorizedKey>> ReadAuthorizedKeysFile(const std::filesystem::path& path);

// A new key pair from libzmq (zmq_curve_keypair).
Result<CurveKeyPair> GenerateKeyPair();

// Writes a new key pair to `base`.key (the secret key, mode 0600) and
// `base`.pub (the public key, mode 0644), with comments saying what they
// are; never overwrites either file (an existing one is an error). The
// folder must exist. Returns the pair.
Result<CurveKeyPair> WriteKeyPair(const std::filesystem::path& base);

}  // namespace nvs::protocol
