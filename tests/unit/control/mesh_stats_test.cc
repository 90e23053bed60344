#include "control/mesh_stats.h"

#include <gtest/gtest.h>

namespace weft::control {
namespace {

constexpr const char* kBefore = R"(# HELP weft_listener_downstream_rq_total Requests.
# TYPE weft_listener_downstream_rq_total counter
weft_listener_downstream_rq_total{listener="inbound",class="2xx"} 100
weft_listener_downstream_rq_total{listener="inbound",class="5xx"} 0
weft_listener_downstream_rq_total{listener="public",class="2xx"} 999
weft_listener_downstream_rq_duration_seconds_bucket{listener="inbound",le="0.005"} 50
weft_listener_downstream_rq_duration_seconds_bucket{listener="inbound",le="0.01"} 100
weft_listener_downstream_rq_duration_seconds_bucket{listener="inbound",le="+Inf"} 100
weft_inbound_rq_total{listener="inbound",source="spiffe://td/ns/default/sa/a"} 100
weft_golden_rq_total{source="spiffe://td/ns/default/sa/me",destination="db",route="r",listener="upstream_db",class="2xx"} 10
weft_golden_rq_duration_seconds_bucket{source="spiffe://td/ns/default/sa/me",destination="db",route="r",listener="upstream_db",le="0.001"} 10
weft_golden_rq_duration_seconds_bucket{source="spiffe://td/ns/default/sa/me",destination="db",route="r",listener="upstream_db",le="+Inf"} 10
)";

constexpr const char* kAfter =
    R"(weft_listener_downstream_rq_total{listener="inbound",class="2xx"} 290
weft_listener_downstream_rq_total{listener="inbound",class="5xx"} 10
weft_listener_downstream_rq_duration_seconds_bucket{listener="inbound",le="0.005"} 150
weft_listener_downstream_rq_duration_seconds_bucket{listener="inbound",le="0.01"} 290
weft_listener_downstream_rq_duration_seconds_bucket{listener="inbound",le="+Inf"} 300
weft_inbound_rq_total{listener="inbound",source="spiffe://td/ns/default/sa/a"} 250
weft_golden_rq_total{source="spiffe://td/ns/default/sa/me",destination="db",route="r",listener="upstream_db",class="2xx"} 30
weft_golden_rq_total{source="spiffe://td/ns/default/sa/me",destination="db",route="r",listener="upstream_db",class="5xx"} 10
weft_golden_rq_duration_seconds_bucket{source="spiffe://td/ns/default/sa/me",destination="db",route="r",listener="upstream_db",le="0.001"} 20 # {trace_id="0af7651916cd43dd8448eb211c80319c"} 0.0007 1700000000.0
weft_golden_rq_duration_seconds_bucket{source="spiffe://td/ns/default/sa/me",destination="db",route="r",listener="upstream_db",le="+Inf"} 40
weft_golden_grpc_total{source="a\"b,c=d",destination="db",route="r",listener="upstream_db",grpc_status="UNAVAILABLE"} 2
# EOF
)";

TEST(MeshStats, InboundAndPerDestinationTrafficBetweenTwoReadings) {
  const ProxyStats a = ParseProxyStats(kBefore), b = ParseProxyStats(kAfter);
  EXPECT_EQ(a.inbound.total, 100);
  ASSERT_EQ(b.outbound.count("db"), 1u);
  const Rates in = RatesBetween(a.inbound, b.inbound, 2.0);
  EXPECT_DOUBLE_EQ(in.rps, 100);
  EXPECT_DOUBLE_EQ(in.success, 0.95);
  EXPECT_DOUBLE_EQ(in.p50_ms, 5);    // 100 of the 200 within 5 ms
  EXPECT_DOUBLE_EQ(in.p99_ms, 1e9);  // past the last finite bucket
  EXPECT_DOUBLE_EQ(in.mtls, 0.75);
  const Rates out = RatesBetween(a.outbound.at("db"), b.outbound.at("db"), 1.0);
  EXPECT_DOUBLE_EQ(out.rps, 30);
  // 10 5xx and 2 gRPC failures (a label value with a quote and a comma
  // does not confuse the labels after it).
  EXPECT_NEAR(out.success, 1 - 12.0 / 30, 1e-9);
  EXPECT_DOUBLE_EQ(out.p50_ms, 1e9);
  EXPECT_DOUBLE_EQ(out.p99_ms, 1e9);
}

TEST(MeshStats, NoRequestsNoRatesAndGarbageIsIgnored) {
  const ProxyStats a = ParseProxyStats(kBefore);
  const Rates r = RatesBetween(a.inbound, a.inbound, 1.0);
  EXPECT_EQ(r.rps, 0);
  EXPECT_EQ(r.success, 1);
  EXPECT_EQ(r.p99_ms, -1);
  const ProxyStats g = ParseProxyStats(
      "weft_golden_rq_total{destination=\"x 5\nweft_golden_rq_total{\n{}\nweft_listener_downstream_"
      "rq_total{listener=\"inbound\"} notanumber\n\xff\xfe");
  EXPECT_EQ(g.inbound.total, 0);
  EXPECT_TRUE(g.outbound.empty());
}

}  // namespace
}  // namespace weft::control
