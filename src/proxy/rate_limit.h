// Local rate limiting: token buckets shared by a proxy's workers.
//
// A bucket is kept as the time at which it would be full again (GCRA, the
// token bucket's equivalent): taking a token is one compare-and-swap on one
// shared word, with no lock and no timer. A route's limiter has a bucket for
// all of its requests and, when asked, one per caller (its SPIFFE ID, else
// its IP address); at most kMaxCallers of those are kept, and a caller that
// finds the table full shares one bucket with the other latecomers until
// idle callers' buckets (full again, so equal to new ones) are swept out.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "mesh/rate_limit.h"

namespace weft::proxy {

class TokenBucket {
 public:
  // `rps` >= 1 tokens a second, holding up to `burst` (0: rps).
  TokenBucket(uint32_t rps, uint32_t burst);
  // Takes a token at `now_ns` (monotonic): 0 when there was one, else how
  // long until there will be (ns).
  int64_t Take(int64_t now_ns);
  // Full again at `now_ns`: taking from it is as from a new bucket.
  bool Full(int64_t now_ns) const { return full_at_.load(std::memory_order_relaxed) <= now_ns; }

 private:
  const int64_t interval_ns_;   // one token's worth of time
  const int64_t tolerance_ns_;  // burst x interval
  std::atomic<int64_t> full_at_{0};
};

class RateLimiter {
 public:
  static constexpr size_t kMaxCallers = 10000;
  explicit RateLimiter(const mesh::RateLimit& cfg);
  // A request from `caller` at `now_ns`: 0 when it may go, else the seconds
  // (at least 1) after which it would (for retry-after). The caller's own
  // bucket is asked first, so a caller over its limit spends nothing of
  // everyone's.
  int64_t Check(std::string_view caller, int64_t now_ns);
  const mesh::RateLimit& config() const { return cfg_; }
  size_t callers() const;

 private:
  TokenBucket* CallerBucket(std::string_view caller, int64_t now_ns);
  const mesh::RateLimit cfg_;
  std::unique_ptr<TokenBucket> total_;  // null: no limit on all together
  mutable std::mutex mu_;               // guards callers_
  std::unordered_map<std::string, std::unique_ptr<TokenBucket>> callers_;
  std::unique_ptr<TokenBucket> latecomers_;  // callers past kMaxCallers
};

}  // namespace weft::proxy
