#include "proxy/upstream/retry.h"

#include <gtest/gtest.h>

namespace weft::proxy::upstream {
namespace {

RouteConfig Route(int retries, uint32_t on = kRetryOnAll) {
  RouteConfig r;
  r.retries = retries;
  r.retry_on = on;
  return r;
}

TEST(RetryPolicy, DefaultIsOneRetryWithTwoOrMoreEndpoints) {
  EXPECT_EQ(RetryPolicy::For(Route(-1), 1).budget, 0);
  EXPECT_EQ(RetryPolicy::For(Route(-1), 3).budget, 1);
  EXPECT_EQ(RetryPolicy::For(Route(4), 1).budget, 4);
  EXPECT_EQ(RetryPolicy::For(Route(0), 5).budget, 0);
}

TEST(RetryState, RetryOnNarrowsWhichFailuresAreRetried) {
  RetryState connect_only(RetryPolicy::For(Route(3, kRetryOnConnectFailure), 2), true);
  EXPECT_FALSE(connect_only.ShouldRetry(AttemptFailure::kResetNoBytes, 0, false));
  EXPECT_TRUE(connect_only.ShouldRetry(AttemptFailure::kConnect, 0, false));
  RetryState reset_only(RetryPolicy::For(Route(3, kRetryOnReset), 2), true);
  EXPECT_FALSE(reset_only.ShouldRetry(AttemptFailure::kConnect, 0, false));
  EXPECT_TRUE(reset_only.ShouldRetry(AttemptFailure::kResetOnSend, 0, false));
  EXPECT_TRUE(reset_only.ShouldRetry(AttemptFailure::kResetOnSend, 0, true))
      << "a stale pooled connection is always tried again";
}

TEST(RetryState, ConnectFailuresSpendTheBudgetAndAvoidTheFailedEndpoint) {
  RetryState r(RetryPolicy{1, kRetryOnAll}, false);
  EXPECT_TRUE(r.ShouldRetry(AttemptFailure::kConnect, 2, false));
  EXPECT_EQ(r.next_exclude(), 2);
  EXPECT_FALSE(r.ShouldRetry(AttemptFailure::kConnect, 0, false));
}

TEST(RetryState, ResetsAreRetriedOnlyForReplayableRequests) {
  RetryState post(RetryPolicy{3, kRetryOnAll}, false);
  EXPECT_FALSE(post.ShouldRetry(AttemptFailure::kResetNoBytes, 0, false));
  EXPECT_FALSE(post.ShouldRetry(AttemptFailure::kResetOnSend, 0, true));
  RetryState get(RetryPolicy{1, kRetryOnAll}, true);
  EXPECT_TRUE(get.ShouldRetry(AttemptFailure::kResetNoBytes, 1, false));
  EXPECT_EQ(get.next_exclude(), 1);
  EXPECT_FALSE(get.ShouldRetry(AttemptFailure::kResetNoBytes, 0, false));
}

TEST(RetryState, AStalePooledConnectionCostsNoBudgetButTheAttemptsAreBounded) {
  RetryState r(RetryPolicy{0, kRetryOnAll}, true);
  int retries = 0;
  while (r.attempts_left()) {
    r.Started();
    if (!r.ShouldRetry(AttemptFailure::kResetOnSend, 0, true)) break;
    EXPECT_EQ(r.next_exclude(), -1) << "the endpoint itself is fine";
    ++retries;
  }
  EXPECT_EQ(retries, 2) << "budget 0 + 3 attempts in all";
}

TEST(Idempotent, Rfc9110Methods) {
  for (auto m : {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}) EXPECT_TRUE(Idempotent(m));
  for (auto m : {"POST", "PATCH", "CONNECT", "get"}) EXPECT_FALSE(Idempotent(m));
}

}  // namespace
}  // namespace weft::proxy::upstream
