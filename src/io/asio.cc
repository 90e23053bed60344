#include "io/asio.h"

#include <cstring>

namespace weft::io {

asio::ip::tcp::endpoint ToEndpoint(const SocketAddress& a) {
  asio::ip::tcp::endpoint ep;
  std::memcpy(ep.data(), &a.storage, a.len);
  ep.resize(a.len);
  return ep;
}

std::optional<asio::ip::tcp::endpoint> ParseEndpoint(std::string_view s) {
  std::string why;
  auto a = ParseSocketAddress(s, &why);
  if (!a) return std::nullopt;
  return ToEndpoint(*a);
}

std::string FormatEndpoint(const asio::ip::tcp::endpoint& ep) {
  sockaddr_storage ss{};
  std::memcpy(&ss, ep.data(), ep.size());
  return FormatSockaddr(ss);
}

}  // namespace weft::io
