#include "base/log.h"

#include <time.h>
#include <unistd.h>

#include <string>

namespace weft::log {

bool ParseLevel(std::string_view s, Level* out) {
  static constexpr std::pair<std::string_view, Level> kNames[] = {
      {"trace", Level::kTrace}, {"debug", Level::kDebug}, {"info", Level::kInfo},
      {"warn", Level::kWarn},   {"error", Level::kError}, {"off", Level::kOff}};
  for (const auto& [name, lvl] : kNames) {
    if (s == name) {
      *out = lvl;
      return true;
    }
  }
  return false;
}

void SetLevel(Level l) { g_level.store(static_cast<int>(l), std::memory_order_relaxed); }
Level GetLevel() { return static_cast<Level>(g_level.load(std::memory_order_relaxed)); }

void Write(Level l, std::string_view msg) {
  static constexpr const char* kTags[] = {"trace", "debug", "info", "warn", "error", "off"};
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t;
  gmtime_r(&ts.tv_sec, &t);
  std::string line = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z [{}] {}\n",
                                 t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min,
                                 t.tm_sec, ts.tv_nsec / 1000000, kTags[static_cast<int>(l)], msg);
  ssize_t rc = ::write(STDERR_FILENO, line.data(), line.size());
  (void)rc;
}

bool Limiter::Allow(int64_t now_s, uint64_t* suppressed) {
  // The second and the lines let through in it, in one word: a new second
  // and its first line are one compare-and-swap, so the budget is exact.
  const uint64_t second = static_cast<uint64_t>(now_s) << kCountBits;
  uint64_t s = state_.load(std::memory_order_relaxed);
  for (;;) {
    uint64_t next;
    if ((s & ~kCountMask) != second) {
      next = second | 1;
    } else if ((s & kCountMask) < per_second_) {
      next = s + 1;
    } else {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    if (state_.compare_exchange_weak(s, next, std::memory_order_relaxed)) break;
  }
  *suppressed = dropped_.exchange(0, std::memory_order_relaxed);
  return true;
}

bool Limiter::Allow(uint64_t* suppressed) {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return Allow(static_cast<int64_t>(ts.tv_sec), suppressed);
}

void WriteLimited(Level l, std::string_view msg, uint64_t suppressed) {
  if (suppressed == 0) {
    Write(l, msg);
    return;
  }
  Write(l, fmt::format("{} ({} similar lines suppressed)", msg, suppressed));
}

}  // namespace weft::log
