// A counter with one writer thread and any number of readers: relaxed loads
// and stores, no read-modify-write atomics. Stat blocks give each worker its
// own slot (proxy/stats.h); readers sum the slots.
#pragma once

#include <atomic>
#include <cstdint>

namespace weft {

class Counter {
 public:
  void Inc(uint64_t n = 1) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void Dec(uint64_t n = 1) {
    v_.store(v_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  }
  uint64_t Get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

}  // namespace weft
