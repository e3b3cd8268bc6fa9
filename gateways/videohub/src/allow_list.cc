#include "nvs/videohub/allow_list.h"

#include <arpa/inet.h>

#include <cstring>

namespace nvs::videohub {
namespace {

std::array<unsigned char, 16> Mapped(const in_addr& v4) {
  std::array<unsigned char, 16> out{};
  out[10] = out[11] = 0xff;
  std::memcpy(out.data() + 12, &v4, 4);
  return out;
}

std::optional<std::array<unsigned char, 16>> ParseAddress(const std::string& text, bool* v4) {
  in_addr a4{};
  if (inet_pton(AF_INET, text.c_str(), &a4) == 1) {
    *v4 = true;
    return Mapped(a4);
  }
  in6_addr a6{};
  if (inet_pton(AF_INET6, text.c_str(), &a6) == 1) {
    *v4 = false;
    std::array<unsigned char, 16> out{};
    std::memcpy(out.data(), &a6, 16);
    return out;
  }
  return std::nullopt;
}

bool InPrefix(const std::array<unsigned char, 16>& a, const std::array<unsigned char, 16>& net, int bits) {
  for (int i = 0; i < 16 && bits > 0; ++i, bits -= 8) {
    const unsigned char mask = bits >= 8 ? 0xff : static_cast<unsigned char>(0xff << (8 - bits));
    if ((a[i] & mask) != (net[i] & mask)) return false;
  }
  return true;
}

}  // namespace

std::optional<Network> ParseNetwork(const std::string& text, std::string* why) {
  const auto slash = text.find('/');
  const std::string address = text.substr(0, slash);
  bool v4 = false;
  const auto parsed = ParseAddress(address, &v4);
  if (!parsed) {
    *why = "'" + address + "' is not an IPv4 or IPv6 address";
    return std::nullopt;
  }
  Network n;
  n.address = *parsed;
  n.text = text;
  const int max_bits = v4 ? 32 : 128;
  int bits = max_bits;
  if (slash != std::string::npos) {
    const std::string length = text.substr(slash + 1);
    if (length.empty() || length.size() > 3 || length.find_first_not_of("0123456789") != std::string::npos ||
        std::stoi(length) > max_bits) {
      *why = "'/" + length + "' is not a prefix length of 0 to " + std::to_string(max_bits);
      return std::nullopt;
    }
    bits = std::stoi(length);
  }
  n.prefix_bits = v4 ? 96 + bits : bits;
  // The host bits must be zero: "10.1.2.3/24" is a typo for a host or a network.
  std::array<unsigned char, 16> zeroed{};
  for (int i = 0, left = n.prefix_bits; i < 16; ++i, left -= 8) {
    const unsigned char mask = left >= 8 ? 0xff : left <= 0 ? 0 : static_cast<unsigned char>(0xff << (8 - left));
    zeroed[i] = n.address[i] & mask;
  }
  if (zeroed != n.address) {
    *why = "'" + text + "' has bits set past its prefix (a host, or a typo for a network?)";
    return std::nullopt;
  }
  return n;
}

bool Allowed(const std::vector<Network>& allowed, const sockaddr_storage& peer) {
  std::array<unsigned char, 16> a{};
  if (peer.ss_family == AF_INET) {
    a = Mapped(reinterpret_cast<const sockaddr_in&>(peer).sin_addr);
  } else if (peer.ss_family == AF_INET6) {
    std::memcpy(a.data(), &reinterpret_cast<const sockaddr_in6&>(peer).sin6_addr, 16);
  } else {
    return false;
  }
  for (const auto& n : allowed) {
    if (InPrefix(a, n.address, n.prefix_bits)) return true;
  }
  return false;
}

bool LoopbackOnly(const std::string& listen_address) {
  const auto colon = listen_address.rfind(':');
  std::string host = colon == std::string::npos ? listen_address : listen_address.substr(0, colon);
  if (host.size() > 1 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost") return true;
  bool v4 = false;
  const auto a = ParseAddress(host, &v4);
  if (!a) return false;
  if (v4) return (*a)[12] == 127;
  static const std::array<unsigned char, 16> kLoopback6 = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return *a == kLoopback6;
}

}  // namespace nvs::videohub
