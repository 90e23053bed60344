// One endpoint's recent answer latencies, for hedging at its p95
// (proxy/hedge.h): a histogram with four buckets per power of two of
// microseconds (a quantile is read as its bucket's upper bound, within
// 25 % above the truth), every count halved each kHalfLife answers so that
// it follows an endpoint that turned slow or recovered. Worker thread only.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>

namespace weft::proxy::upstream {

class RecentLatency {
 public:
  // Fewer answers than this: no quantile yet (0).
  static constexpr uint32_t kMinSamples = 20;
  static constexpr uint32_t kHalfLife = 512;

  void Add(int64_t ns) {
    const uint64_t us = ns > 0 ? static_cast<uint64_t>(ns) / 1000 : 0;
    ++b_[Bucket(us)];
    if (++n_ >= 2 * kHalfLife) {
      n_ = 0;
      for (uint32_t& c : b_) n_ += (c >>= 1);
    }
  }

  // The q-quantile (0 < q < 1) in ns; 0 with fewer than kMinSamples.
  int64_t Quantile(double q) const {
    if (n_ < kMinSamples) return 0;
    const double want = q * static_cast<double>(n_);
    double seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += b_[i];
      if (seen >= want) return static_cast<int64_t>(UpperUs(i)) * 1000;
    }
    return static_cast<int64_t>(UpperUs(kBuckets - 1)) * 1000;
  }

  // The bucket of `us` microseconds, and its bounds' upper end (for tests).
  static int Bucket(uint64_t us) {
    if (us < 4) return static_cast<int>(us);
    const int e = std::bit_width(us) - 1;  // us in [2^e, 2^(e+1)), e >= 2
    const int sub = static_cast<int>((us >> (e - 2)) & 3);
    return std::min(4 * (e - 1) + sub, kBuckets - 1);
  }
  static uint64_t UpperUs(int i) {
    if (i < 4) return static_cast<uint64_t>(i) + 1;
    const int e = i / 4 + 1, sub = i % 4;
    return static_cast<uint64_t>(4 + sub + 1) << (e - 2);
  }

 private:
  static constexpr int kBuckets = 4 * 27;  // up to 2^28 us (about 4.5 min)
  std::array<uint32_t, kBuckets> b_{};
  uint32_t n_ = 0;
};

}  // namespace weft::proxy::upstream
