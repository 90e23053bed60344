// Process log: one line per event on stderr, filtered by a global level.
// Thread-safe: each line is formatted locally and written with one write(2).
#pragma once

#include <fmt/format.h>

#include <atomic>
#include <cstdint>
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

// Lets a call site through a few times a second and drops the rest, so that
// what a hostile peer can trigger at will (a malformed frame per packet)
// cannot flood the log. The first line let through after some were dropped
// says how many: "... (N similar lines suppressed)". Nothing is said of
// lines dropped in the last window until the site logs again.
//
// Thread-safe (relaxed atomics; one per call site, shared by every worker).
class Limiter {
 public:
  // `per_second`: at most 2^24 - 1.
  explicit constexpr Limiter(uint32_t per_second = 5) : per_second_(per_second) {}
  // Whether a line may be written at `now_s` (any monotonic count of
  // seconds). When it may, *suppressed is how many were dropped since the
  // last one let through.
  [[nodiscard]] bool Allow(int64_t now_s, uint64_t* suppressed);
  // The same at the monotonic clock's current second.
  [[nodiscard]] bool Allow(uint64_t* suppressed);

 private:
  static constexpr int kCountBits = 24;
  static constexpr uint64_t kCountMask = (uint64_t{1} << kCountBits) - 1;
  const uint32_t per_second_;
  // The current second (high bits) and the lines let through in it (low
  // kCountBits). Starts in no second.
  std::atomic<uint64_t> state_{~uint64_t{0} << kCountBits};
  std::atomic<uint64_t> dropped_{0};  // since the last line let through
};

// Writes `msg`, with the note of `suppressed` dropped lines when non-zero.
void WriteLimited(Level l, std::string_view msg, uint64_t suppressed);

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

// Rate-limited per call site (log::Limiter's default: 5 lines a second). The
// arguments are not evaluated for a line that is dropped.
#define WEFT_LOG_LIMITED(lvl, ...)                                                       \
  do {                                                                                   \
    if (static_cast<int>(lvl) >= ::weft::log::g_level.load(std::memory_order_relaxed)) { \
      static ::weft::log::Limiter weft_log_limiter_;                                     \
      uint64_t weft_log_suppressed_ = 0;                                                 \
      if (weft_log_limiter_.Allow(&weft_log_suppressed_))                                \
        ::weft::log::WriteLimited(lvl, fmt::format(__VA_ARGS__), weft_log_suppressed_);  \
    }                                                                                    \
  } while (0)
#define LOG_INFO_LIMITED(...) WEFT_LOG_LIMITED(::weft::log::Level::kInfo, __VA_ARGS__)
#define LOG_WARN_LIMITED(...) WEFT_LOG_LIMITED(::weft::log::Level::kWarn, __VA_ARGS__)
#define LOG_ERROR_LIMITED(...) WEFT_LOG_LIMITED(::weft::log::Level::kError, __VA_ARGS__)
