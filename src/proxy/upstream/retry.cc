#include "proxy/upstream/retry.h"

namespace weft::proxy::upstream {

bool Idempotent(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "PUT" || m == "DELETE" || m == "TRACE";
}

bool RetryState::ShouldRetry(AttemptFailure f, size_t ep, bool reused) {
  if (!attempts_left()) return false;
  exclude_ = static_cast<long>(ep);
  if (f == AttemptFailure::kConnect) {
    // Nothing was sent: always safe to send elsewhere.
    return (on_ & kRetryOnConnectFailure) && left_-- > 0;
  }
  if (!replayable_) return false;
  if (reused) {
    // A pooled connection the upstream had closed: free, and the endpoint
    // itself is fine.
    exclude_ = -1;
    return true;
  }
  return (on_ & kRetryOnReset) && left_-- > 0;
}

}  // namespace weft::proxy::upstream
