// Retries: when an exchange that failed is tried again, and where.
//
// The policy today: a request is tried again on another endpoint when the
// upstream cannot have acted on it: the connect failed, or (requests that
// are idempotent and carry no body) the connection was reset or closed
// before any response byte arrived. A failure on a connection taken from
// the idle pool (the upstream closed it while idle) is retried without
// spending the budget and may reuse the same endpoint. The budget is the
// route's `retries`, else one retry when the cluster has two or more
// endpoints. A route's `retry_on` narrows which failures count: without
// connect-failure a failed connect is answered at once, without reset a
// reset is. A pooled connection that turns out closed is always tried
// again: the request never reached anyone.
#pragma once

#include <cstdint>
#include <string_view>

#include "proxy/config.h"

namespace weft::proxy::upstream {

// What went wrong with an attempt.
enum class AttemptFailure : uint8_t {
  kConnect,       // no connection (refused, timeout, mesh TLS)
  kResetOnSend,   // the connection failed while the request was sent
  kResetNoBytes,  // it closed or reset before any response byte
};

struct RetryPolicy {
  int budget = 0;             // retries allowed after the first attempt
  uint32_t on = kRetryOnAll;  // kRetryOn* bits: which failures are retried

  // The route's policy. retries < 0: the default (one retry with two or
  // more endpoints).
  static RetryPolicy For(const RouteConfig& r, size_t endpoints) {
    return RetryPolicy{r.retries >= 0 ? r.retries : (endpoints > 1 ? 1 : 0), r.retry_on};
  }
};

// Whether a method is idempotent (RFC 9110 9.2.2).
bool Idempotent(std::string_view method);

class RetryState {
 public:
  // `replayable`: the request can be sent again as it is (idempotent, no body).
  RetryState(const RetryPolicy& p, bool replayable)
      : left_(p.budget), on_(p.on), max_attempts_(p.budget + 3), replayable_(replayable) {}

  // After a failed attempt on endpoint `ep` (`reused`: a pooled connection).
  // True when another attempt should follow; next_exclude() then says which
  // endpoint to avoid (-1: none).
  bool ShouldRetry(AttemptFailure f, size_t ep, bool reused);
  // Whether more attempts may start at all (a bound on loops).
  bool attempts_left() const { return attempts_ < max_attempts_; }
  void Started() { ++attempts_; }
  long next_exclude() const { return exclude_; }

 private:
  int left_;
  const uint32_t on_;
  // Failures on pooled connections spend no budget; this bounds them.
  const int max_attempts_;
  const bool replayable_;
  long exclude_ = -1;
  int attempts_ = 0;
};

}  // namespace weft::proxy::upstream
