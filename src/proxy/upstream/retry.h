// Retries: when an exchange that failed is tried again, and where.
//
// A request is tried again on another endpoint when the upstream cannot
// have acted on it: the connect failed, or (requests that can be sent again
// as they are: idempotent, no body) the connection was reset or closed
// before any response byte arrived. Requests that can be sent again are
// also retried on an answer the route's policy names (5xx, gateway-error,
// retriable-status-codes: by default 503). A failure on a connection taken
// from the idle pool (the upstream closed it while idle) is retried without
// spending anything and may reuse the same endpoint.
//
// Every other retry spends one of the route's attempts (its `retries`, else
// one when the cluster has two or more endpoints) and one from the
// cluster's retry budget (RetryBudget): however many attempts a route
// allows, retries stay a bounded share of the traffic, so they cannot
// multiply an outage.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

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
  const std::vector<uint16_t>* status_codes = nullptr;  // kRetryOnRetriableStatusCodes

  // The route's policy. retries < 0: the default (one retry with two or
  // more endpoints).
  static RetryPolicy For(const RouteConfig& r, size_t endpoints) {
    return RetryPolicy{r.retries >= 0 ? r.retries : (endpoints > 1 ? 1 : 0), r.retry_on,
                       &r.retriable_status_codes};
  }
};

// A cluster's retry budget on one worker: over the last 10 s, retries may
// be at most `percent` of the requests, or `min_per_s` per second when that
// is more (so a quiet service can still retry). The floor is not added to
// the share: under load, extra traffic from retries stays within `percent`.
// Not thread-safe: its worker's.
class RetryBudget {
 public:
  static constexpr int64_t kWindowS = 10;
  RetryBudget(uint32_t percent = 20, uint32_t min_per_s = 10)
      : percent_(percent), min_per_s_(min_per_s) {}
  // A request started (its first attempt) at `now_s` (monotonic seconds).
  void Deposit(int64_t now_s) { Slot(now_s).requests++; }
  // Takes one retry if the budget has room; false (and counted by the
  // caller) when it has not.
  bool Withdraw(int64_t now_s);
  // Takes the counts of `old` (a config reload keeps the window).
  void Inherit(const RetryBudget& old) { slots_ = old.slots_; }

 private:
  struct SlotCounts {
    int64_t second = -1;
    uint64_t requests = 0, retries = 0;
  };
  SlotCounts& Slot(int64_t now_s);
  uint32_t percent_, min_per_s_;
  std::array<SlotCounts, kWindowS> slots_{};
};

// Whether a method is idempotent (RFC 9110 9.2.2).
bool Idempotent(std::string_view method);

class RetryState {
 public:
  // `replayable`: the request can be sent again as it is (idempotent, no
  // body). `budget` (may be null: no budget) is the cluster's.
  RetryState(const RetryPolicy& p, bool replayable, RetryBudget* budget = nullptr)
      : left_(p.budget),
        on_(p.on),
        codes_(p.status_codes),
        max_attempts_(p.budget + 3),
        replayable_(replayable),
        budget_(budget) {}

  // After a failed attempt on endpoint `ep` (`reused`: a pooled connection).
  // True when another attempt should follow; next_exclude() then says which
  // endpoint to avoid (-1: none).
  bool ShouldRetry(AttemptFailure f, size_t ep, bool reused);
  // After an answer with `status` from endpoint `ep`: true when the policy
  // names it, the request can be sent again, and attempts and budget allow.
  bool ShouldRetryStatus(int status, size_t ep);
  // Whether the policy would retry an answer with `status` (before
  // attempts and budget).
  bool Retriable(int status) const;
  // The same for a gRPC call's trailers-only answer with grpc-status `code`.
  bool RetriableGrpc(int code) const;
  bool ShouldRetryGrpc(int code, size_t ep);
  // Whether the request can be sent again as it is: known at the start for
  // a request without a body, and once its body has been copied whole (or
  // found too large to copy) for one with a body.
  void set_replayable(bool r) { replayable_ = r; }
  bool replayable() const { return replayable_; }
  // The last refusal was the budget's (count it).
  bool budget_exhausted() const { return budget_exhausted_; }
  // Attempts started so far (1 for the first).
  int attempts() const { return attempts_; }
  // How long to wait before attempt attempts()+1 (exponential from 25 ms,
  // at most 250 ms, with full jitter from `random` in [0, 1)).
  int64_t BackoffMs(double random) const;
  // Whether more attempts may start at all (a bound on loops).
  bool attempts_left() const { return attempts_ < max_attempts_; }
  void Started() { ++attempts_; }
  long next_exclude() const { return exclude_; }

 private:
  // Spends one attempt and one from the budget; false when either is out.
  bool Spend();
  int left_;
  const uint32_t on_;
  const std::vector<uint16_t>* codes_;
  // Failures on pooled connections spend no budget; this bounds them.
  const int max_attempts_;
  bool replayable_;
  RetryBudget* budget_;
  long exclude_ = -1;
  int attempts_ = 0;
  bool budget_exhausted_ = false;
};

}  // namespace weft::proxy::upstream
