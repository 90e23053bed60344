#include "base/net.h"

#include <arpa/inet.h>

#include <cstring>

#include "base/strings.h"

namespace weft {

uint16_t SocketAddress::port() const {
  if (storage.ss_family == AF_INET)
    return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
  return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
}

std::string SocketAddress::Canonical() const { return FormatSockaddr(storage); }

bool SocketAddress::operator==(const SocketAddress& o) const {
  return len == o.len && std::memcmp(&storage, &o.storage, len) == 0;
}

bool SplitHostPort(std::string_view s, std::string* host, uint16_t* port, std::string* why) {
  std::string_view h, p;
  if (!s.empty() && s[0] == '[') {
    size_t close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') {
      *why = "expected [IPv6]:port";
      return false;
    }
    h = s.substr(1, close - 1);
    p = s.substr(close + 2);
  } else {
    size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) {
      *why = "expected host:port";
      return false;
    }
    h = s.substr(0, colon);
    p = s.substr(colon + 1);
  }
  auto n = ParseDecimal(p);
  if (!n) {
    *why = "port is not a number";
    return false;
  }
  if (*n > 65535) {
    *why = "port out of range";
    return false;
  }
  host->assign(h);
  *port = static_cast<uint16_t>(*n);
  return true;
}

std::optional<SocketAddress> ParseSocketAddress(std::string_view s, std::string* why) {
  SocketAddress a;
  a.text = std::string(s);
  std::string host;
  uint16_t port = 0;
  if (!SplitHostPort(s, &host, &port, why)) return std::nullopt;
  if (host == "localhost") host = "127.0.0.1";
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    a.len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    a.len = sizeof(sockaddr_in6);
  } else {
    *why = "host must be an IP address (or localhost)";
    return std::nullopt;
  }
  return a;
}

std::string FormatSockaddr(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    return JoinHostPort(host, ntohs(a->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    return JoinHostPort(host, ntohs(a->sin6_port));
  }
  return "";
}

std::string FormatSockName(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  std::string s = FormatSockaddr(ss);
  return s.empty() ? "?" : s;
}

std::string JoinHostPort(std::string_view host, uint16_t port) {
  std::string out;
  const bool v6 = host.find(':') != std::string_view::npos;
  out.reserve(host.size() + 8);
  if (v6) out += '[';
  out += host;
  if (v6) out += ']';
  out += ':';
  out += std::to_string(port);
  return out;
}

}  // namespace weft
