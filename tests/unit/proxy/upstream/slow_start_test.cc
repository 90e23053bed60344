// Slow start, through the cluster runtime a worker builds on a config
// update: an endpoint that joins a running cluster takes its share of the
// traffic over the window.
#include <gtest/gtest.h>

#include "base/net.h"
#include "base/time.h"
#include "proxy/upstream/cluster.h"

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

}  // namespace
}  // namespace weft::proxy
