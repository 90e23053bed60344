#include "proxy/upstream/load_balancer.h"

#include <gtest/gtest.h>

#include <cstdio>

#include "base/time.h"
#include "proxy/upstream/recent_latency.h"

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

std::vector<std::string> Names(size_t n, size_t skip = SIZE_MAX) {
  std::vector<std::string> v;
  for (size_t i = 0; i < n; ++i)
    if (i != skip) v.push_back("10.0.0." + std::to_string(i + 1) + ":8080");
  return v;
}

LoadBalancer Hashed(LbPolicy p, const std::vector<std::string>& names, uint64_t seed = 1,
                    std::vector<uint32_t> weights = {}) {
  if (weights.empty()) weights.assign(names.size(), 1);
  return LoadBalancer(p, weights, seed, LoadBalancer::kDefaultDecayMs, names,
                      p == LbPolicy::kRingHash ? 128 : 65537);
}

TEST(ConsistentHash, AKeyGoesToOneEndpointInEveryWorker) {
  for (LbPolicy p : {LbPolicy::kRingHash, LbPolicy::kMaglev}) {
    auto names = Names(5);
    LoadBalancer a = Hashed(p, names, 1), b = Hashed(p, names, 99);
    std::vector<uint32_t> active(5, 0);
    for (int k = 0; k < 2000; ++k) {
      const uint64_t h = LoadBalancer::Hash("user-" + std::to_string(k));
      const size_t ea = a.Pick(active, -1, nullptr, &h);
      EXPECT_EQ(ea, b.Pick(active, -1, nullptr, &h)) << LbPolicyName(p);
      EXPECT_EQ(ea, a.Pick(active, -1, nullptr, &h)) << LbPolicyName(p);
    }
  }
}

// The share of keys that change endpoint when one of ten leaves: ideally
// only its own tenth.
double Moved(LbPolicy p) {
  auto all = Names(10), nine = Names(10, 3);
  LoadBalancer before = Hashed(p, all), after = Hashed(p, nine);
  std::vector<uint32_t> a10(10, 0), a9(9, 0);
  int moved = 0;
  const int keys = 100000;
  for (int k = 0; k < keys; ++k) {
    const uint64_t h = LoadBalancer::Hash("key-" + std::to_string(k));
    moved += all[before.Pick(a10, -1, nullptr, &h)] != nine[after.Pick(a9, -1, nullptr, &h)];
  }
  return static_cast<double>(moved) / keys;
}

TEST(ConsistentHash, FewKeysMoveWhenOneOfTenEndpointsLeaves) {
  const double ring = Moved(LbPolicy::kRingHash), maglev = Moved(LbPolicy::kMaglev);
  // Printed for bench/RESULTS-resilience.md.
  std::printf("keys moved when 1 of 10 endpoints leaves: ring_hash %.1f%%, maglev %.1f%%\n",
              ring * 100, maglev * 100);
  EXPECT_GT(ring, 0.05);   // the leaving endpoint's keys had to move
  EXPECT_LT(ring, 0.115);  // only the leaving endpoint's own keys
  EXPECT_GT(maglev, 0.05);
  EXPECT_LT(maglev, 0.13);
}

TEST(ConsistentHash, LoadFollowsWeights) {
  for (LbPolicy p : {LbPolicy::kRingHash, LbPolicy::kMaglev}) {
    auto names = Names(4);
    LoadBalancer lb = Hashed(p, names, 1, {1, 1, 1, 3});
    std::vector<uint32_t> active(4, 0);
    std::vector<int> c(4, 0);
    const int keys = 60000;
    for (int k = 0; k < keys; ++k) {
      const uint64_t h = LoadBalancer::Hash("k" + std::to_string(k));
      c[lb.Pick(active, -1, nullptr, &h)]++;
    }
    const double tol = p == LbPolicy::kMaglev ? 0.02 : 0.05;
    for (int e = 0; e < 3; ++e) EXPECT_NEAR(c[e] / double(keys), 1.0 / 6, tol) << LbPolicyName(p);
    EXPECT_NEAR(c[3] / double(keys), 0.5, tol) << LbPolicyName(p);
  }
}

TEST(ConsistentHash, AnEndpointToAvoidPassesItsKeysOnAndGetsThemBack) {
  for (LbPolicy p : {LbPolicy::kRingHash, LbPolicy::kMaglev}) {
    auto names = Names(5);
    LoadBalancer lb = Hashed(p, names);
    std::vector<uint32_t> active(5, 0);
    std::vector<uint8_t> skip(5, 0);
    int checked = 0;
    for (int k = 0; k < 500; ++k) {
      const uint64_t h = LoadBalancer::Hash("s" + std::to_string(k));
      const size_t home = lb.Pick(active, -1, nullptr, &h);
      skip.assign(5, 0);
      skip[home] = 1;
      const size_t away = lb.Pick(active, -1, &skip, &h);
      EXPECT_NE(away, home);
      EXPECT_EQ(lb.Pick(active, -1, &skip, &h), away) << "the stand-in is stable too";
      EXPECT_NE(lb.Pick(active, static_cast<long>(home), nullptr, &h), home) << "a retry moves on";
      EXPECT_EQ(lb.Pick(active, -1, nullptr, &h), home);
      ++checked;
    }
    EXPECT_EQ(checked, 500);
    // No key (a request without the header): any endpoint, spread out.
    std::vector<int> c(5, 0);
    for (int i = 0; i < 5000; ++i) c[lb.Pick(active)]++;
    for (int e = 0; e < 5; ++e) EXPECT_GT(c[e], 600) << LbPolicyName(p);
  }
}

TEST(RecentLatency, BucketsCoverEveryValueWithinAQuarter) {
  for (uint64_t us : {0ull, 1ull, 3ull, 4ull, 7ull, 8ull, 9ull, 1000ull, 123456ull, 100000000ull}) {
    const int b = RecentLatency::Bucket(us);
    EXPECT_LT(us, RecentLatency::UpperUs(b)) << us;
    if (b > 0) EXPECT_GE(us, RecentLatency::UpperUs(b - 1)) << us;
    EXPECT_LE(static_cast<double>(RecentLatency::UpperUs(b)), 1.25 * static_cast<double>(us) + 1)
        << us;
  }
}

TEST(RecentLatency, P95NeedsEnoughAnswersThenFollowsChange) {
  RecentLatency r;
  for (int i = 0; i < 19; ++i) r.Add(1'000'000);
  EXPECT_EQ(r.Quantile(0.95), 0) << "too few answers to say";
  // 90 answers at 1 ms and 10 at 20 ms: the p95 is in the slow tail.
  for (int i = 0; i < 71; ++i) r.Add(1'000'000);
  for (int i = 0; i < 10; ++i) r.Add(20'000'000);
  const int64_t p95 = r.Quantile(0.95);
  EXPECT_GE(p95, 20'000'000);
  EXPECT_LE(p95, 25'000'000);
  EXPECT_LE(r.Quantile(0.5), 1'250'000);
  // The endpoint turns fast for good: old answers are halved away.
  for (int i = 0; i < 4 * static_cast<int>(RecentLatency::kHalfLife); ++i) r.Add(2'000'000);
  EXPECT_LE(r.Quantile(0.95), 2'500'000);
}

}  // namespace
}  // namespace weft::proxy::upstream
