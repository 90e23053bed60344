#include "proxy/upstream/outlier.h"

#include <gtest/gtest.h>

#include "proxy/upstream/load_balancer.h"

namespace weft::proxy::upstream {
namespace {

std::vector<std::string> Addrs(size_t n) {
  std::vector<std::string> a;
  for (size_t i = 0; i < n; ++i) a.push_back("10.0.0." + std::to_string(i + 1) + ":80");
  return a;
}

struct Counts {
  Counter ejections[3], overflow, returns;
  OutlierCounters c;
  Counts() {
    for (size_t i = 0; i < 3; ++i) c.ejections[i] = &ejections[i];
    c.overflow = &overflow;
    c.returns = &returns;
  }
};

bool Out(const OutlierDetector& d, size_t ep) {
  std::vector<int64_t> until;
  bool panic = false;
  d.View(&until, &panic);
  return until[ep] != 0;
}

TEST(OutlierDetector, ConsecutiveFailuresEjectAndASuccessBreaksTheRun) {
  OutlierConfig cfg;  // consecutive_5xx 5
  Counts k;
  OutlierDetector d("c", Addrs(3), cfg, 2, nullptr, 0);
  for (int i = 0; i < 4; ++i) d.Record(i % 2, 0, Outcome::k5xx, 10, k.c);
  d.Record(0, 0, Outcome::kSuccess, 10, k.c);
  for (int i = 0; i < 4; ++i) d.Record(1, 0, Outcome::kGateway, 10, k.c);
  EXPECT_FALSE(Out(d, 0));
  const uint64_t gen = d.generation();
  d.Record(0, 0, Outcome::k5xx, 10, k.c);  // the fifth in a row, over both workers
  EXPECT_TRUE(Out(d, 0));
  EXPECT_NE(d.generation(), gen);
  EXPECT_EQ(k.ejections[static_cast<size_t>(EjectReason::kConsecutive5xx)].Get(), 1u);
  EXPECT_EQ(d.EjectedNow(10), 1u);
  EXPECT_FALSE(Out(d, 1));
}

TEST(OutlierDetector, GatewayErrorsCountOnlyGatewayFailures) {
  OutlierConfig cfg;
  cfg.consecutive_5xx = 0;
  cfg.consecutive_gateway = 3;
  Counts k;
  OutlierDetector d("c", Addrs(3), cfg, 1, nullptr, 0);
  d.Record(0, 1, Outcome::kGateway, 1, k.c);
  d.Record(0, 1, Outcome::kGateway, 1, k.c);
  d.Record(0, 1, Outcome::k5xx, 1, k.c);  // a 500 is the app's answer: breaks the run
  d.Record(0, 1, Outcome::kGateway, 1, k.c);
  d.Record(0, 1, Outcome::kGateway, 1, k.c);
  EXPECT_FALSE(Out(d, 1));
  d.Record(0, 1, Outcome::kGateway, 1, k.c);
  EXPECT_TRUE(Out(d, 1));
  EXPECT_EQ(k.ejections[static_cast<size_t>(EjectReason::kConsecutiveGateway)].Get(), 1u);
}

TEST(OutlierDetector, EjectionsGrowWithRepeatsArePaidBackInServiceAndAreCapped) {
  OutlierConfig cfg;
  cfg.consecutive_5xx = 1;
  cfg.base_ejection_ms = 1000;
  cfg.max_ejection_ms = 2500;
  cfg.interval_ms = 10000;
  Counts k;
  OutlierDetector d("c", Addrs(2), cfg, 1, nullptr, 0);
  std::vector<int64_t> until;
  bool panic = false;
  int64_t now = 100;
  d.Record(0, 0, Outcome::k5xx, now, k.c);
  d.View(&until, &panic);
  EXPECT_EQ(until[0], now + 1000);
  // Not back before its time; back after it, once.
  d.MaybeReturn(0, now + 999, k.c);
  EXPECT_TRUE(Out(d, 0));
  now += 1000;
  d.MaybeReturn(0, now, k.c);
  d.MaybeReturn(0, now, k.c);
  EXPECT_FALSE(Out(d, 0));
  EXPECT_EQ(k.returns.Get(), 1u);
  // Ejected again at once: twice the base; a third time: the cap.
  d.Record(0, 0, Outcome::k5xx, now, k.c);
  d.View(&until, &panic);
  EXPECT_EQ(until[0], now + 2000);
  now += 2000;
  d.MaybeReturn(0, now, k.c);
  d.Record(0, 0, Outcome::k5xx, now, k.c);
  d.View(&until, &panic);
  EXPECT_EQ(until[0], now + 2500);
  // Two intervals in service pay back two ejections: the next is 2 x base.
  now += 2500;
  d.MaybeReturn(0, now, k.c);
  now += 2 * cfg.interval_ms;
  d.Record(0, 0, Outcome::k5xx, now, k.c);
  d.View(&until, &panic);
  EXPECT_EQ(until[0], now + 2000);
}

TEST(OutlierDetector, AtMostTheConfiguredShareIsOutAndAtLeastOneMayBe) {
  OutlierConfig cfg;
  cfg.consecutive_5xx = 1;
  Counts k;
  OutlierDetector d("c", Addrs(10), cfg, 1, nullptr, 0);  // 10 %: one of ten
  d.Record(0, 3, Outcome::k5xx, 5, k.c);
  d.Record(0, 4, Outcome::k5xx, 5, k.c);
  EXPECT_TRUE(Out(d, 3));
  EXPECT_FALSE(Out(d, 4));
  EXPECT_EQ(k.overflow.Get(), 1u);
  EXPECT_EQ(d.EjectedNow(5), 1u);

  cfg.max_ejection_percent = 50;
  Counts k2;
  OutlierDetector half("c", Addrs(4), cfg, 1, nullptr, 0);
  for (size_t ep = 0; ep < 4; ++ep) half.Record(0, ep, Outcome::kGateway, 5, k2.c);
  EXPECT_EQ(half.EjectedNow(5), 2u);
  EXPECT_EQ(k2.overflow.Get(), 2u);
}

TEST(OutlierDetector, BelowMinHealthTheClusterPanics) {
  OutlierConfig cfg;
  cfg.consecutive_5xx = 1;
  cfg.max_ejection_percent = 100;
  cfg.min_health_percent = 60;
  Counts k;
  OutlierDetector d("c", Addrs(5), cfg, 1, nullptr, 0);
  std::vector<int64_t> until;
  bool panic = true;
  d.View(&until, &panic);
  EXPECT_FALSE(panic);
  d.Record(0, 0, Outcome::k5xx, 1, k.c);
  d.Record(0, 1, Outcome::k5xx, 1, k.c);
  d.View(&until, &panic);
  EXPECT_FALSE(panic);  // 3 of 5 in service: 60 %
  d.Record(0, 2, Outcome::k5xx, 1, k.c);
  d.View(&until, &panic);
  EXPECT_TRUE(panic);  // 2 of 5
  // With the threshold at 0 there is no panic until none is left.
  cfg.min_health_percent = 0;
  OutlierDetector all("c", Addrs(2), cfg, 1, nullptr, 0);
  all.Record(0, 0, Outcome::k5xx, 1, k.c);
  all.View(&until, &panic);
  EXPECT_FALSE(panic);
  all.Record(0, 1, Outcome::k5xx, 1, k.c);
  all.View(&until, &panic);
  EXPECT_TRUE(panic);
}

TEST(OutlierDetector, SuccessRateEjectsTheEndpointFarBelowTheOthers) {
  OutlierConfig cfg;
  cfg.consecutive_5xx = 0;
  cfg.interval_ms = 1000;
  Counts k;
  OutlierDetector d("c", Addrs(6), cfg, 2, nullptr, 0);
  for (int i = 0; i < 200; ++i) {
    for (size_t ep = 0; ep < 6; ++ep) {
      // Endpoint 5 fails one answer in two; endpoint 4 one in a hundred.
      Outcome o = Outcome::kSuccess;
      if (ep == 5 && i % 2 == 0) o = Outcome::k5xx;
      if (ep == 4 && i % 100 == 0) o = Outcome::kGateway;
      d.Record(static_cast<size_t>(i % 2), ep, o, 500, k.c);
    }
  }
  EXPECT_EQ(d.EjectedNow(500), 0u);  // the interval has not ended
  d.Record(0, 0, Outcome::kSuccess, 1000, k.c);
  EXPECT_TRUE(Out(d, 5));
  EXPECT_FALSE(Out(d, 4));
  EXPECT_EQ(k.ejections[static_cast<size_t>(EjectReason::kSuccessRate)].Get(), 1u);
  // Fewer endpoints with enough volume than minimum_hosts: no pass.
  Counts k2;
  OutlierDetector few("c", Addrs(6), cfg, 1, nullptr, 0);
  for (int i = 0; i < 50; ++i) few.Record(0, 5, Outcome::k5xx, 10, k2.c);
  few.Record(0, 0, Outcome::kSuccess, 1000, k2.c);
  EXPECT_EQ(few.EjectedNow(1000), 0u);
}

TEST(OutlierDetector, ANewSnapshotKeepsWhatItKnewOfEndpointsThatStay) {
  OutlierConfig cfg;
  cfg.consecutive_5xx = 2;
  cfg.max_ejection_percent = 100;
  cfg.min_health_percent = 0;
  Counts k;
  OutlierDetector d("c", {"a:1", "b:1", "c:1"}, cfg, 1, nullptr, 0);
  d.Record(0, 1, Outcome::k5xx, 1, k.c);
  d.Record(0, 1, Outcome::k5xx, 1, k.c);  // b out
  d.Record(0, 2, Outcome::k5xx, 1, k.c);  // c one failure into a run
  OutlierDetector next("c", {"c:1", "b:1", "d:1"}, cfg, 1, &d, 2);
  EXPECT_FALSE(Out(next, 0));
  EXPECT_TRUE(Out(next, 1));
  next.Record(0, 0, Outcome::k5xx, 3, k.c);  // c's second in a row
  EXPECT_TRUE(Out(next, 0));
  // Turned off: nothing is recorded and nothing stays out.
  cfg.enabled = false;
  OutlierDetector off("c", {"c:1", "b:1"}, cfg, 1, &next, 4);
  EXPECT_EQ(off.EjectedNow(4), 0u);
  for (int i = 0; i < 10; ++i) off.Record(0, 1, Outcome::k5xx, 5, k.c);
  EXPECT_EQ(off.EjectedNow(5), 0u);
}

TEST(LoadBalancer, SkippedEndpointsAreNotPickedWhileOthersAreIn) {
  for (LbPolicy p :
       {LbPolicy::kRoundRobin, LbPolicy::kRandom, LbPolicy::kLeastRequest, LbPolicy::kEwma}) {
    LoadBalancer lb(p, {1, 1, 1, 1, 1}, 9);
    std::vector<uint32_t> active(5, 0);
    std::vector<uint8_t> skip = {0, 1, 1, 1, 0};
    std::vector<int> seen(5, 0);
    for (int i = 0; i < 400; ++i) seen[lb.Pick(active, -1, &skip)]++;
    EXPECT_EQ(seen[1] + seen[2] + seen[3], 0) << LbPolicyName(p);
    EXPECT_GT(seen[0], 100) << LbPolicyName(p);
    EXPECT_GT(seen[4], 100) << LbPolicyName(p);
    // A retry away from 0 goes to 4, the only other one in service.
    for (int i = 0; i < 50; ++i) EXPECT_EQ(lb.Pick(active, 0, &skip), 4u) << LbPolicyName(p);
    // Only the excluded one in service: it is taken rather than a skipped one.
    std::vector<uint8_t> one = {1, 1, 0, 1, 1};
    EXPECT_EQ(lb.Pick(active, 2, &one), 2u) << LbPolicyName(p);
  }
}

}  // namespace
}  // namespace weft::proxy::upstream
