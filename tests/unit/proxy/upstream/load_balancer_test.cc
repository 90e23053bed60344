#include "proxy/upstream/load_balancer.h"

#include <gtest/gtest.h>

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
  for (auto p : {LbPolicy::kRoundRobin, LbPolicy::kRandom, LbPolicy::kLeastRequest}) {
    LoadBalancer lb(p, {1, 1}, 5);
    std::vector<uint32_t> active(2, 0);
    for (int i = 0; i < 100; ++i) EXPECT_EQ(lb.Pick(active, 0), 1u) << LbPolicyName(p);
  }
  LoadBalancer single(LbPolicy::kRoundRobin, {1}, 5);
  std::vector<uint32_t> active(1, 0);
  EXPECT_EQ(single.Pick(active, 0), 0u);
}

}  // namespace
}  // namespace weft::proxy::upstream
