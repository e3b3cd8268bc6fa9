// Which TCP peers the gateway lets in (`--allow CIDR`), and whether a listen
// address reaches beyond this machine. The Videohub protocol has no
// authentication: the network a client comes from is all the gateway can
// check (SECURITY.md).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <optional>
#include <string>
#include <vector>

namespace nvs::videohub {

// One network: an IPv4 or IPv6 prefix. IPv4 is kept as its IPv4-mapped IPv6
// form, so a peer on a dual-stack socket (::ffff:10.1.2.3) matches 10.1.2.0/24.
struct Network {
  std::array<unsigned char, 16> address{};
  int prefix_bits = 128;  // of the 16-byte form
  std::string text;       // as given
};

// "10.1.2.0/24", "192.168.1.7" (a /32), "fd00::/8", "::1". nullopt and a
// reason in *why when it is not one.
std::optional<Network> ParseNetwork(const std::string& text, std::string* why);

// True when `peer` (an AF_INET or AF_INET6 address) is in one of `allowed`.
bool Allowed(const std::vector<Network>& allowed, const sockaddr_storage& peer);

// True when HOST of a HOST:PORT listen address is loopback only (127.0.0.0/8,
// ::1, localhost); false for a wildcard (0.0.0.0, ::, empty) or any other.
bool LoopbackOnly(const std::string& listen_address);

}  // namespace nvs::videohub
