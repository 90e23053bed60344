// What the REST API's files (api.cc, api_status.cc, api_catalog.cc,
// api_health.cc, api_config.cc) share; not for use outside control/.
#pragma once

#include <asio.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include "base/status.h"
#include "control/api.h"
#include "mesh/catalog.h"

namespace weft::control {
namespace internal {

// Compare-and-swap attempts on one node document before a write gives up.
inline constexpr int kMaxCasAttempts = 32;

inline bool StartsWith(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}

inline int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The HTTP status for a store or validation error.
inline int HttpStatusFor(const Status& s) {
  switch (s.code()) {
    case StatusCode::kInvalidArgument:
      return 400;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kFailedPrecondition:
      return 409;
    default:
      return 503;
  }
}

inline std::string NodeKey(std::string_view node) {
  return std::string(mesh::kNodePrefix) + std::string(node);
}

}  // namespace internal

template <typename F>
asio::awaitable<std::invoke_result_t<F>> Api::OffLoop(const F& f, asio::thread_pool* pool) {
  using R = std::invoke_result_t<F>;
  // co_spawn's result must be default-constructible; Result<T> is not.
  auto task = [&f]() -> asio::awaitable<std::optional<R>> { co_return std::optional<R>(f()); };
  // (Chosen outside the co_await: GCC 12 miscompiles a conditional
  // expression in its operand.)
  asio::thread_pool& on = pool ? *pool : pool_;
  std::optional<R> r = co_await asio::co_spawn(on, task, asio::use_awaitable);
  co_return std::move(*r);
}

}  // namespace weft::control
