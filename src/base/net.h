// Socket addresses: the one parser and formatter of "HOST:PORT" every part of
// weft uses (bootstrap, stream, flags, API clients, logs).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace weft {

// An IPv4 or IPv6 address and port, as the kernel takes it, with the text it
// was written as.
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t len = 0;
  std::string text;  // as written ("127.0.0.1:8080", "[::1]:80", "localhost:80")

  uint16_t port() const;
  bool is_v6() const { return storage.ss_family == AF_INET6; }
  // Points into `storage`: valid while this SocketAddress lives.
  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&storage); }
  // Canonical "IP:PORT" / "[IPv6]:PORT" (not the text as written).
  std::string Canonical() const;
  // Same family, address and port.
  bool operator==(const SocketAddress& o) const;
};

// Parses "IPv4:PORT", "[IPv6]:PORT" or "localhost:PORT" (127.0.0.1). Port 0 is
// accepted (bind: the kernel picks one). Refuses host names other than
// localhost: nothing on the request path resolves names. On failure returns
// nullopt and sets *why to a reason that completes `FIELD "VALUE": ...`.
std::optional<SocketAddress> ParseSocketAddress(std::string_view s, std::string* why);

// "IP:PORT" / "[IPv6]:PORT" of a kernel address; "" for another family.
std::string FormatSockaddr(const sockaddr_storage& ss);
// The local address a descriptor is bound to, formatted ("?" on error).
std::string FormatSockName(int fd);
// "HOST:PORT", bracketing an IPv6 host.
std::string JoinHostPort(std::string_view host, uint16_t port);
// The other way: "HOST:PORT" or "[IPv6]:PORT" into the host (no brackets;
// any text, names included) and a port of 0-65535. False with *why (as
// ParseSocketAddress words it) when it is not of that shape.
bool SplitHostPort(std::string_view s, std::string* host, uint16_t* port, std::string* why);

}  // namespace weft
