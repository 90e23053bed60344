// A small, fast, per-thread pseudo-random generator (xorshift64*). Not for
// secrets: used for load balancing, jitter and request ids.
#pragma once

#include <cstdint>

namespace weft {

class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed ? seed : 0x9e3779b97f4a7c15ULL) {}
  uint64_t Next() {
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return s_ * 0x2545F4914F6CDD1DULL;
  }
  // Uniform in [0, n), n > 0.
  uint64_t Below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<__uint128_t>(Next()) * n) >> 64);
  }

 private:
  uint64_t s_;
};

}  // namespace weft
