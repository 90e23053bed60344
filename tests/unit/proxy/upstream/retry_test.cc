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

TEST(RetryState, AnswersTheRouteNamesAreRetriedOnAnotherEndpoint) {
  const std::vector<uint16_t> codes = {503};
  // The default: 503 (retriable-status-codes), not other 5xx.
  RetryState r(RetryPolicy{2, kRetryOnAll, &codes}, true);
  EXPECT_FALSE(r.ShouldRetryStatus(500, 0));
  EXPECT_TRUE(r.ShouldRetryStatus(503, 2));
  EXPECT_EQ(r.next_exclude(), 2);
  EXPECT_TRUE(r.ShouldRetryStatus(503, 1));
  EXPECT_FALSE(r.ShouldRetryStatus(503, 0)) << "two retries spent";
  // 5xx and gateway-error.
  RetryState any(RetryPolicy{5, kRetryOn5xx, &codes}, true);
  EXPECT_TRUE(any.ShouldRetryStatus(500, 0));
  EXPECT_FALSE(any.ShouldRetryStatus(429, 0));
  RetryState gw(RetryPolicy{5, kRetryOnGatewayError, &codes}, true);
  EXPECT_FALSE(gw.ShouldRetryStatus(500, 0));
  EXPECT_TRUE(gw.ShouldRetryStatus(504, 0));
  // A request that cannot be sent again as it is (a body, POST) never is.
  RetryState post(RetryPolicy{5, kRetryOn5xx, &codes}, false);
  EXPECT_FALSE(post.ShouldRetryStatus(503, 0));
}

TEST(RetryState, GrpcStatusesTheRouteNamesAreRetried) {
  RetryState r(RetryPolicy{3, kRetryOnUnavailable | kRetryOnCancelled, nullptr}, true);
  EXPECT_TRUE(r.RetriableGrpc(14));
  EXPECT_TRUE(r.RetriableGrpc(1));
  EXPECT_FALSE(r.RetriableGrpc(4)) << "DEADLINE_EXCEEDED is not named";
  EXPECT_FALSE(r.RetriableGrpc(0));
  EXPECT_FALSE(r.ShouldRetryGrpc(13, 0)) << "INTERNAL is not named";
  EXPECT_TRUE(r.ShouldRetryGrpc(14, 1));
  EXPECT_EQ(r.next_exclude(), 1);
  RetryState each(RetryPolicy{5, kRetryOnGrpc, nullptr}, true);
  for (int code : {1, 4, 8, 13, 14}) EXPECT_TRUE(each.RetriableGrpc(code)) << code;
  for (int code : {0, 2, 3, 5, 6, 7, 9, 10, 11, 12, 15, 16}) EXPECT_FALSE(each.RetriableGrpc(code));
  // Replayable only once the body's copy is whole.
  RetryState later(RetryPolicy{2, kRetryOnUnavailable, nullptr}, false);
  EXPECT_FALSE(later.ShouldRetryGrpc(14, 0));
  later.set_replayable(true);
  EXPECT_TRUE(later.ShouldRetryGrpc(14, 0));
}

TEST(RetryBudget, RetriesStayAShareOfRequestsOrAFloor) {
  RetryBudget b(20, 0);
  const int64_t now = 1000;
  for (int i = 0; i < 100; ++i) b.Deposit(now);
  int granted = 0;
  while (b.Withdraw(now)) ++granted;
  EXPECT_EQ(granted, 20);
  // The floor: 10 per second over the 10 s window, with no requests at all.
  RetryBudget floor(20, 10);
  granted = 0;
  while (floor.Withdraw(now)) ++granted;
  EXPECT_EQ(granted, 100);
  // Requests and retries older than the window no longer count.
  EXPECT_TRUE(floor.Withdraw(now + RetryBudget::kWindowS));
}

TEST(RetryBudget, UnderLoadTheFloorIsNotAddedToTheShare) {
  // 1000 requests in the window: 20 % is 200 retries, more than the floor's
  // 100, and the floor does not come on top (the extra load stays 20 %).
  RetryBudget b(20, 10);
  const int64_t now = 5000;
  for (int i = 0; i < 1000; ++i) b.Deposit(now);
  int granted = 0;
  while (b.Withdraw(now)) ++granted;
  EXPECT_EQ(granted, 200);
  // 100 requests: 20 % is 20, the floor allows 100.
  RetryBudget quiet(20, 10);
  for (int i = 0; i < 100; ++i) quiet.Deposit(now);
  granted = 0;
  while (quiet.Withdraw(now)) ++granted;
  EXPECT_EQ(granted, 100);
}

TEST(RetryBudget, AnExhaustedBudgetStopsRetriesAndSaysSo) {
  RetryBudget b(0, 0);
  const std::vector<uint16_t> codes = {503};
  RetryState r(RetryPolicy{3, kRetryOnAll, &codes}, true, &b);
  EXPECT_FALSE(r.ShouldRetryStatus(503, 0));
  EXPECT_TRUE(r.budget_exhausted());
  EXPECT_FALSE(r.ShouldRetry(AttemptFailure::kConnect, 0, false));
  EXPECT_TRUE(r.budget_exhausted());
  // A stale pooled connection costs nothing, budget or not.
  EXPECT_TRUE(r.ShouldRetry(AttemptFailure::kResetOnSend, 0, true));
  EXPECT_FALSE(r.budget_exhausted());
}

TEST(RetryState, BackoffGrowsExponentiallyWithJitterAndACap) {
  RetryState r(RetryPolicy{5, kRetryOnAll}, true);
  r.Started();
  EXPECT_EQ(r.BackoffMs(0.999), 24);  // up to 25 ms after the first attempt
  EXPECT_EQ(r.BackoffMs(0), 0);
  r.Started();
  EXPECT_EQ(r.BackoffMs(0.5), 25);  // up to 50 ms after the second
  for (int i = 0; i < 5; ++i) r.Started();
  EXPECT_LE(r.BackoffMs(0.999), 250);
}

}  // namespace
}  // namespace weft::proxy::upstream
