#include "proxy/rate_limit.h"

#include <algorithm>

namespace weft::proxy {

TokenBucket::TokenBucket(uint32_t rps, uint32_t burst)
    : interval_ns_(1'000'000'000 / std::max<uint32_t>(rps, 1)),
      tolerance_ns_(interval_ns_ * static_cast<int64_t>(burst > 0 ? burst : std::max(rps, 1u))) {}

int64_t TokenBucket::Take(int64_t now_ns) {
  int64_t full_at = full_at_.load(std::memory_order_relaxed);
  for (;;) {
    // Taking a token moves the time it is full again one interval later;
    // more than `burst` intervals ahead of now, the bucket is empty.
    const int64_t next = std::max(full_at, now_ns) + interval_ns_;
    if (next - now_ns > tolerance_ns_) return next - now_ns - tolerance_ns_;
    if (full_at_.compare_exchange_weak(full_at, next, std::memory_order_relaxed)) return 0;
  }
}

RateLimiter::RateLimiter(const mesh::RateLimit& cfg) : cfg_(cfg) {
  if (cfg.requests_per_second > 0)
    total_ = std::make_unique<TokenBucket>(cfg.requests_per_second, cfg.burst);
  if (cfg.per_caller_rps > 0)
    latecomers_ = std::make_unique<TokenBucket>(cfg.per_caller_rps, cfg.per_caller_burst);
}

size_t RateLimiter::callers() const {
  std::lock_guard<std::mutex> l(mu_);
  return callers_.size();
}

TokenBucket* RateLimiter::CallerBucket(std::string_view caller, int64_t now_ns) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = callers_.find(std::string(caller));
  if (it != callers_.end()) return it->second.get();
  if (callers_.size() >= kMaxCallers) {
    // Full: buckets that have refilled hold nothing a new one would not.
    std::erase_if(callers_, [now_ns](const auto& kv) { return kv.second->Full(now_ns); });
    if (callers_.size() >= kMaxCallers) return latecomers_.get();
  }
  auto b = std::make_unique<TokenBucket>(cfg_.per_caller_rps, cfg_.per_caller_burst);
  TokenBucket* p = b.get();
  callers_.emplace(std::string(caller), std::move(b));
  return p;
}

int64_t RateLimiter::Check(std::string_view caller, int64_t now_ns) {
  int64_t wait = 0;
  if (latecomers_) wait = CallerBucket(caller, now_ns)->Take(now_ns);
  if (wait == 0 && total_) wait = total_->Take(now_ns);
  if (wait == 0) return 0;
  return std::max<int64_t>(1, (wait + 999'999'999) / 1'000'000'000);
}

}  // namespace weft::proxy
