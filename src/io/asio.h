// Asio as weft uses it: C++20 coroutines that return errors instead of
// throwing (the data plane never throws).
#pragma once

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "base/net.h"

namespace weft {

// Completion token for `co_await op(..., kNoThrow)`: the awaited result is a
// tuple whose first element is the asio::error_code.
inline constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);

namespace io {

// The socket addresses of base/net.h as Asio endpoints, and back.
asio::ip::tcp::endpoint ToEndpoint(const SocketAddress& a);
// "HOST:PORT" as ParseSocketAddress takes it; nullopt when invalid.
std::optional<asio::ip::tcp::endpoint> ParseEndpoint(std::string_view s);
// "IP:PORT" / "[IPv6]:PORT".
std::string FormatEndpoint(const asio::ip::tcp::endpoint& ep);

}  // namespace io
}  // namespace weft
