#include "proxy/upstream/retry.h"

#include <algorithm>

#include "base/time.h"

namespace weft::proxy::upstream {

bool Idempotent(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "PUT" || m == "DELETE" || m == "TRACE";
}

RetryBudget::SlotCounts& RetryBudget::Slot(int64_t now_s) {
  SlotCounts& s = slots_[static_cast<size_t>(now_s % kWindowS)];
  if (s.second != now_s) s = SlotCounts{now_s, 0, 0};
  return s;
}

bool RetryBudget::Withdraw(int64_t now_s) {
  uint64_t requests = 0, retries = 0;
  for (const SlotCounts& s : slots_) {
    if (s.second > now_s - kWindowS && s.second <= now_s) {
      requests += s.requests;
      retries += s.retries;
    }
  }
  // retries + 1 <= the larger of percent% of requests and min_per_s x window
  if ((retries + 1) * 100 >
      std::max<uint64_t>(requests * percent_, uint64_t{min_per_s_} * kWindowS * 100))
    return false;
  Slot(now_s).retries++;
  return true;
}

bool RetryState::Spend() {
  if (left_ <= 0) return false;
  if (budget_ && !budget_->Withdraw(MonoNanos() / 1000000000)) {
    budget_exhausted_ = true;
    return false;
  }
  --left_;
  return true;
}

bool RetryState::ShouldRetry(AttemptFailure f, size_t ep, bool reused) {
  budget_exhausted_ = false;
  if (!attempts_left()) return false;
  exclude_ = static_cast<long>(ep);
  if (f == AttemptFailure::kConnect) {
    // Nothing was sent: always safe to send elsewhere.
    return (on_ & kRetryOnConnectFailure) && Spend();
  }
  if (!replayable_) return false;
  if (reused) {
    // A pooled connection the upstream had closed: free, and the endpoint
    // itself is fine.
    exclude_ = -1;
    return true;
  }
  return (on_ & kRetryOnReset) && Spend();
}

bool RetryState::Retriable(int status) const {
  if ((on_ & kRetryOn5xx) && status >= 500 && status <= 599) return true;
  if ((on_ & kRetryOnGatewayError) && (status == 502 || status == 503 || status == 504))
    return true;
  if ((on_ & kRetryOnRetriableStatusCodes) && codes_ &&
      std::find(codes_->begin(), codes_->end(), status) != codes_->end())
    return true;
  return false;
}

bool RetryState::RetriableGrpc(int code) const {
  switch (code) {
    case 1:
      return on_ & kRetryOnCancelled;
    case 4:
      return on_ & kRetryOnDeadlineExceeded;
    case 8:
      return on_ & kRetryOnResourceExhausted;
    case 13:
      return on_ & kRetryOnInternal;
    case 14:
      return on_ & kRetryOnUnavailable;
    default:
      return false;
  }
}

bool RetryState::ShouldRetryGrpc(int code, size_t ep) {
  budget_exhausted_ = false;
  if (!replayable_ || !attempts_left() || !RetriableGrpc(code)) return false;
  exclude_ = static_cast<long>(ep);
  return Spend();
}

bool RetryState::ShouldRetryStatus(int status, size_t ep) {
  budget_exhausted_ = false;
  if (!replayable_ || !attempts_left() || !Retriable(status)) return false;
  exclude_ = static_cast<long>(ep);
  return Spend();
}

int64_t RetryState::BackoffMs(double random) const {
  const int64_t cap = std::min<int64_t>(int64_t{25} << std::clamp(attempts_ - 1, 0, 4), 250);
  return static_cast<int64_t>(random * static_cast<double>(cap));
}

}  // namespace weft::proxy::upstream
