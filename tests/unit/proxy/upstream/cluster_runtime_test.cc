// A worker's cluster runtime: slow start (an endpoint that joins a running
// cluster takes its share over the window) and zone-aware balancing.
#include <gtest/gtest.h>

#include "base/net.h"
#include "base/time.h"
#include "proxy/upstream/cluster.h"
#include "proxy/upstream/outlier.h"

namespace weft::proxy {
namespace {

ClusterConfig Cluster(size_t n, int64_t slow_start_ms) {
  ClusterConfig c;
  c.name = "c";
  c.lb = LbPolicy::kRandom;
  c.slow_start_ms = slow_start_ms;
  for (size_t i = 0; i < n; ++i) {
    std::string why;
    c.endpoints.push_back(
        {*ParseSocketAddress("10.0.0." + std::to_string(i + 1) + ":80", &why), 1, false});
  }
  return c;
}

double ShareOfNewest(ClusterRuntime& rt) {
  int n = 0;
  const int picks = 30000;
  for (int i = 0; i < picks; ++i) n += rt.Pick(-1) == rt.cfg.endpoints.size() - 1;
  return static_cast<double>(n) / picks;
}

TEST(SlowStart, AJoiningEndpointTakesItsShareOverTheWindow) {
  ClusterStats stats;
  const ClusterConfig two = Cluster(2, 10000), three = Cluster(3, 10000);
  ClusterRuntime before(two, &stats, 1);
  const int64_t now = MonoNanos() / 1000000;
  {
    // Just joined: 10 % of its weight.
    ClusterRuntime rt(three, &stats, 2);
    rt.Inherit(before, now);
    const double s = ShareOfNewest(rt);
    EXPECT_LT(s, 0.08) << s;
    EXPECT_GT(s, 0.01) << s;
  }
  {
    // Joined 7.5 s into a 10 s window: three quarters of its weight.
    ClusterRuntime rt(three, &stats, 3);
    rt.Inherit(before, now - 7500);
    const double s = ShareOfNewest(rt);
    EXPECT_GT(s, 0.22) << s;
    EXPECT_LT(s, 0.33) << s;
  }
  {
    // Past the window: a full third.
    ClusterRuntime rt(three, &stats, 4);
    rt.Inherit(before, now - 11000);
    EXPECT_NEAR(ShareOfNewest(rt), 1.0 / 3, 0.02);
  }
  {
    // The same endpoint in the next update keeps its join time.
    ClusterRuntime first(three, &stats, 5);
    first.Inherit(before, now - 7500);
    ClusterRuntime next(three, &stats, 6);
    next.Inherit(first, now);
    EXPECT_GT(ShareOfNewest(next), 0.22);
  }
  {
    // Endpoints of a cluster's first config do not warm up; nor anything
    // when slow start is off.
    ClusterRuntime fresh(three, &stats, 7);
    EXPECT_NEAR(ShareOfNewest(fresh), 1.0 / 3, 0.02);
    const ClusterConfig off = Cluster(3, 0);
    ClusterRuntime rt(off, &stats, 8);
    rt.Inherit(before, now);
    EXPECT_NEAR(ShareOfNewest(rt), 1.0 / 3, 0.02);
  }
}

TEST(ZoneAware, RequestsStayInTheCallersZoneAndSpillInProportion) {
  ClusterConfig c = Cluster(6, 0);
  c.lb = LbPolicy::kLeastRequest;
  c.local_zone = "a";
  for (size_t i = 0; i < 6; ++i) c.endpoints[i].zone = i < 3 ? "a" : "b";
  c.outlier.consecutive_5xx = 1;
  c.outlier.max_ejection_percent = 50;
  ClusterStats stats;
  ClusterRuntime rt(c, &stats, 1);
  std::vector<std::string> addrs;
  for (const auto& e : c.endpoints) addrs.push_back(e.address.text);
  rt.outlier = std::make_shared<upstream::OutlierDetector>("c", addrs, c.outlier, 1, nullptr,
                                                           MonoNanos() / 1000000);
  auto zone_b_share = [&] {
    int b = 0;
    for (int i = 0; i < 9000; ++i) b += rt.Pick(-1) >= 3;
    return b / 9000.0;
  };
  EXPECT_EQ(zone_b_share(), 0.0);  // all in zone a while its endpoints are in service
  EXPECT_EQ(stats.zone_spill.Get(), 0u);
  // A retry away from a zone-a endpoint stays in zone a while another is in.
  EXPECT_LT(rt.Pick(0), 3u);
  // One of the three in zone a ejected: a third of its traffic spills to b.
  rt.Failed(1, MonoNanos());
  const double spill = zone_b_share();
  EXPECT_NEAR(spill, 1.0 / 3, 0.04);
  EXPECT_GT(stats.zone_spill.Get(), 0u);
  for (int i = 0; i < 1000; ++i) EXPECT_NE(rt.Pick(-1), 1u);
  // Two ejected: two thirds spill; a retry away from the last one leaves.
  rt.Failed(0, MonoNanos());
  EXPECT_NEAR(zone_b_share(), 2.0 / 3, 0.04);
  for (int i = 0; i < 100; ++i) EXPECT_GE(rt.Pick(2), 3u);
  // Without a local zone nothing is preferred.
  ClusterConfig plain = Cluster(6, 0);
  for (size_t i = 0; i < 6; ++i) plain.endpoints[i].zone = i < 3 ? "a" : "b";
  ClusterRuntime off(plain, &stats, 2);
  int b = 0;
  for (int i = 0; i < 9000; ++i) b += off.Pick(-1) >= 3;
  EXPECT_NEAR(b / 9000.0, 0.5, 0.04);
}

}  // namespace
}  // namespace weft::proxy
