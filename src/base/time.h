// Clocks. Monotonic time for durations and deadlines, wall time for logs.
#pragma once

#include <time.h>

#include <cstdint>

namespace weft {

inline int64_t MonoNanos() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}
inline int64_t MonoMillis() { return MonoNanos() / 1000000; }

inline int64_t WallMicros() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

}  // namespace weft
