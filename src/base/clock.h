// An injectable clock. Code that waits on time (deadlines, renewals) takes a
// Clock, so that its tests move time themselves instead of sleeping: the
// real one in production, a ManualClock in tests. Latency measurements keep
// using base/time.h directly.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace weft {

// Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic milliseconds (deadlines) and wall-clock Unix milliseconds.
  virtual int64_t MonoMillis() const = 0;
  virtual int64_t WallMillis() const = 0;
  // Waits on `cv` (with `l` held on entry and on return) until notified or
  // until WallMillis() reaches `deadline_ms`. It may return early: callers
  // wait in a loop that checks the time and their condition.
  virtual void WaitUntilWall(std::unique_lock<std::mutex>& l, std::condition_variable& cv,
                             int64_t deadline_ms) const = 0;

  // The system's clocks; lives for the whole process.
  static const Clock& Real();
};

// Time that moves only when told to (both clocks by the same amount). The
// wall clock starts at the real time, so certificates signed now are
// judged against it sensibly. A waiter notices an Advance within about a
// millisecond of real time.
class ManualClock final : public Clock {
 public:
  ManualClock();
  int64_t MonoMillis() const override { return mono_.load(); }
  int64_t WallMillis() const override { return wall_.load(); }
  void WaitUntilWall(std::unique_lock<std::mutex>& l, std::condition_variable& cv,
                     int64_t deadline_ms) const override;
  void Advance(int64_t ms) {
    mono_ += ms;
    wall_ += ms;
  }

 private:
  std::atomic<int64_t> mono_, wall_;
};

}  // namespace weft
