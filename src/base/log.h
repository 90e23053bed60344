// Process log: one line per event on stderr, filtered by a global level.
// Thread-safe: each line is formatted locally and written with one write(2).
#pragma once

#include <fmt/format.h>

#include <atomic>
#include <string_view>

namespace weft::log {

enum class Level { kTrace = 0, kDebug, kInfo, kWarn, kError, kOff };

// Parses "trace|debug|info|warn|error|off". Returns false on anything else.
[[nodiscard]] bool ParseLevel(std::string_view s, Level* out);
// SetLevel and GetLevel are thread-safe (one relaxed atomic).
void SetLevel(Level l);
Level GetLevel();
inline std::atomic<int> g_level{static_cast<int>(Level::kInfo)};

void Write(Level l, std::string_view msg);

template <typename... Args>
void Log(Level l, fmt::format_string<Args...> f, Args&&... args) {
  if (static_cast<int>(l) < g_level.load(std::memory_order_relaxed)) return;
  Write(l, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace weft::log

#define WEFT_LOG_AT(lvl, ...)                                                          \
  do {                                                                                 \
    if (static_cast<int>(lvl) >= ::weft::log::g_level.load(std::memory_order_relaxed)) \
      ::weft::log::Write(lvl, fmt::format(__VA_ARGS__));                               \
  } while (0)
#define LOG_DEBUG(...) WEFT_LOG_AT(::weft::log::Level::kDebug, __VA_ARGS__)
#define LOG_INFO(...) WEFT_LOG_AT(::weft::log::Level::kInfo, __VA_ARGS__)
#define LOG_WARN(...) WEFT_LOG_AT(::weft::log::Level::kWarn, __VA_ARGS__)
#define LOG_ERROR(...) WEFT_LOG_AT(::weft::log::Level::kError, __VA_ARGS__)
