#include "base/clock.h"

#include <chrono>

#include "base/time.h"

namespace weft {
namespace {

class RealClock final : public Clock {
 public:
  int64_t MonoMillis() const override { return weft::MonoMillis(); }
  int64_t WallMillis() const override { return WallMicros() / 1000; }
  void WaitUntilWall(std::unique_lock<std::mutex>& l, std::condition_variable& cv,
                     int64_t deadline_ms) const override {
    const int64_t left = deadline_ms - WallMillis();
    if (left > 0) cv.wait_for(l, std::chrono::milliseconds(left));
  }
};

}  // namespace

const Clock& Clock::Real() {
  static const RealClock real;
  return real;
}

ManualClock::ManualClock() : mono_(1'000'000), wall_(WallMicros() / 1000) {}

void ManualClock::WaitUntilWall(std::unique_lock<std::mutex>& l, std::condition_variable& cv,
                                int64_t deadline_ms) const {
  // Advance does not know the waiters: they look again every millisecond.
  if (deadline_ms > WallMillis()) cv.wait_for(l, std::chrono::milliseconds(1));
}

}  // namespace weft
