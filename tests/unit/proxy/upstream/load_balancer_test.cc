#include "proxy/upstream/load_balancer.h"

#include <gtest/gtest.h>

#include "base/time.h"

namespace weft::proxy::upstream {
namespace {

std::vector<int> Counts(LoadBalancer& lb, int n, std::vector<uint32_t> active = {}) {
  if (active.empty()) active.assign(lb.size(), 0);
  std::vector<int> c(lb.size(), 0);
  for (int i = 0; i < n; ++i) c[lb.Pick(active)]++;
  return c;
}

TEST(LoadBalancer, RoundRobinIsExactForEqualWeights) {
  LoadBalancer lb(LbPolicy::kRoundRobin, {1, 1, 1}, 42);
  auto c = Counts(lb, 300);
  EXPECT_EQ(c, (std::vector<int>{100, 100, 100}));
}

TEST(LoadBalancer, RoundRobinHonoursWeightsSmoothly) {
  LoadBalancer lb(LbPolicy::kRoundRobin, {1, 2}, 1);
  std::vector<uint32_t> active(2, 0);
  std::vector<size_t> seq;
  for (int i = 0; i < 6; ++i) seq.push_back(lb.Pick(active));
  int ones = 0;
  for (size_t s : seq) ones += s == 1;
  EXPECT_EQ(ones, 4);
  // Smooth: never three picks of the same endpoint in a row.
  for (size_t i = 2; i < seq.size(); ++i)
    EXPECT_FALSE(seq[i] == seq[i - 1] && seq[i] == seq[i - 2]);
}

TEST(LoadBalancer, RandomFollowsWeights) {
  LoadBalancer lb(LbPolicy::kRandom, {1, 3}, 7);
  auto c = Counts(lb, 40000);
  double share = c[1] / 40000.0;
  EXPECT_NEAR(share, 0.75, 0.02);
}

TEST(LoadBalancer, LeastRequestAvoidsBusyEndpoints) {
  LoadBalancer lb(LbPolicy::kLeastRequest, {1, 1, 1, 1}, 3);
  std::vector<uint32_t> active = {100, 0, 100, 100};
  auto c = Counts(lb, 1000, active);
  // Two choices: the idle endpoint wins whenever it is one of the two
  // candidates, so it gets about half of the picks, the rest tie evenly.
  EXPECT_GT(c[1], 400);
  EXPECT_LT(c[0], 250);
}

TEST(LoadBalancer, LeastRequestHonoursWeights) {
  LoadBalancer lb(LbPolicy::kLeastRequest, {1, 4}, 9);
  auto c = Counts(lb, 10000);
  EXPECT_GT(c[1], c[0] * 2);
}

TEST(LoadBalancer, ExcludeSkipsAnEndpointForRetries) {
  for (auto p :
       {LbPolicy::kRoundRobin, LbPolicy::kRandom, LbPolicy::kLeastRequest, LbPolicy::kEwma}) {
    LoadBalancer lb(p, {1, 1}, 5);
    std::vector<uint32_t> active(2, 0);
    for (int i = 0; i < 100; ++i) EXPECT_EQ(lb.Pick(active, 0), 1u) << LbPolicyName(p);
  }
  LoadBalancer single(LbPolicy::kRoundRobin, {1}, 5);
  std::vector<uint32_t> active(1, 0);
  EXPECT_EQ(single.Pick(active, 0), 0u);
}

constexpr int64_t kMs = 1'000'000;

TEST(LoadBalancer, EwmaStopsChoosingASlowEndpoint) {
  LoadBalancer lb(LbPolicy::kEwma, {1, 1, 1}, 11);
  int64_t now = MonoNanos() - 100 * kMs;
  std::vector<uint32_t> active(3, 0);
  // Endpoints 0 and 1 answer in 2 ms, endpoint 2 in 200 ms.
  for (int i = 0; i < 30; ++i) {
    now += kMs;
    lb.Observe(0, 2 * kMs, now);
    lb.Observe(1, 2 * kMs, now);
    lb.Observe(2, 200 * kMs, now);
  }
  // Two choices: the slow one loses every comparison it is in.
  std::vector<int> c(3, 0);
  for (int i = 0; i < 3000; ++i) c[lb.Pick(active)]++;
  EXPECT_EQ(c[2], 0);
  EXPECT_NEAR(c[0], 1500, 150);
}

TEST(LoadBalancer, EwmaSharesTrafficBetweenEndpointsThatAreAboutAsFast) {
  LoadBalancer lb(LbPolicy::kEwma, {1, 1}, 18);
  const int64_t now = MonoNanos();
  lb.Observe(0, 2'000'000, now);
  lb.Observe(1, 2'300'000, now);  // 15 % slower: noise, not a slow endpoint
  auto c = Counts(lb, 1000);
  EXPECT_GT(c[1], 400);
  EXPECT_GT(c[0], 400);
}

TEST(LoadBalancer, EwmaWeighsRequestsInFlight) {
  LoadBalancer lb(LbPolicy::kEwma, {1, 1}, 12);
  const int64_t now = MonoNanos();
  lb.Observe(0, 2 * kMs, now);
  lb.Observe(1, 3 * kMs, now);
  // 0 is faster but has 5 in flight: 2 x 6 > 3 x 1.
  std::vector<uint32_t> active = {5, 0};
  for (int i = 0; i < 100; ++i) EXPECT_EQ(lb.Pick(active), 1u);
}

TEST(LoadBalancer, EwmaJumpsToASlowAnswerAndForgetsItOverTheDecay) {
  LoadBalancer lb(LbPolicy::kEwma, {1}, 13, /*decay_ms=*/1000);
  int64_t now = 1'000'000'000;
  lb.Observe(0, 2 * kMs, now);
  lb.Observe(0, 200 * kMs, now += kMs);  // peak: at once
  EXPECT_NEAR(lb.Estimate(0, now), 200.0 * kMs, 1.0 * kMs);
  lb.Observe(0, 2 * kMs, now += kMs);  // a fast answer 1 ms later barely moves it
  EXPECT_GT(lb.Estimate(0, now), 190.0 * kMs);
  // Idle for five time constants: e^-5 of it is left.
  EXPECT_LT(lb.Estimate(0, now + 5000 * kMs), 2.0 * kMs);
  // Answers every 100 ms at 2 ms bring it down within a few decays.
  for (int i = 0; i < 50; ++i) lb.Observe(0, 2 * kMs, now += 100 * kMs);
  EXPECT_LT(lb.Estimate(0, now), 4.0 * kMs);
}

TEST(LoadBalancer, EwmaCountsFailuresAsSlowAndEndpointsWithoutAnswersGetTried) {
  LoadBalancer lb(LbPolicy::kEwma, {1, 1, 1}, 14);
  const int64_t now = MonoNanos();
  lb.Observe(0, 5 * kMs, now);
  lb.ObserveFailure(1, now);  // a fast 503 is not fast
  // Endpoint 2 has no answer yet: it borrows the other candidate's estimate,
  // so it is chosen as often as the good one and the failing one is not.
  std::vector<uint32_t> active(3, 0);
  std::vector<int> c(3, 0);
  for (int i = 0; i < 3000; ++i) c[lb.Pick(active)]++;
  EXPECT_EQ(c[1], 0);
  EXPECT_GT(c[2], 500);
  EXPECT_GT(c[0], 500);
}

TEST(LoadBalancer, EwmaHonoursWeights) {
  LoadBalancer lb(LbPolicy::kEwma, {1, 4}, 15);
  const int64_t now = MonoNanos();
  lb.Observe(0, 2 * kMs, now);
  lb.Observe(1, 4 * kMs, now);  // twice as slow, four times the weight
  auto c = Counts(lb, 1000);
  EXPECT_GT(c[1], c[0]);
}

TEST(LoadBalancer, EwmaEstimatesCarryOverToANewBalancer) {
  LoadBalancer old(LbPolicy::kEwma, {1, 1}, 16);
  const int64_t now = MonoNanos();
  old.Observe(1, 300 * kMs, now);
  LoadBalancer next(LbPolicy::kEwma, {1, 1, 1}, 17);
  next.Inherit(2, old, 1);  // the endpoint moved from index 1 to 2
  EXPECT_NEAR(next.Estimate(2, now), 300.0 * kMs, 1.0 * kMs);
  EXPECT_EQ(next.Estimate(1, now), 0);
}

}  // namespace
}  // namespace weft::proxy::upstream
