// Transparent interception in the config a proxy builds from the stream:
// capture tables that map original destinations to virtual listeners.
#include "xds/proxy_config.h"

#include <gtest/gtest.h>

#include <functional>
#include <utility>
#include <vector>

#include "weft/v1/config.pb.h"

namespace weft::xds {
namespace {

using proxy::ListenerConfig;
using proxy::ProxyConfig;

namespace pb = weft::v1;

std::shared_ptr<const pb::Resource> Res(pb::Resource r) {
  return std::make_shared<const pb::Resource>(std::move(r));
}

ResourceMap CaptureState() {
  ResourceMap m;
  pb::Resource cap;
  cap.set_type("listener");
  cap.set_name("outbound_capture");
  auto* l = cap.mutable_listener();
  l->set_name("outbound_capture");
  l->set_address("127.0.0.1:15001");
  l->set_protocol("capture");
  l->set_egress("registry_only");
  m["listener/outbound_capture"] = Res(cap);
  pb::Resource c;
  c.set_type("cluster");
  c.set_name("redis");
  c.mutable_cluster()->set_name("redis");
  c.mutable_cluster()->set_service("redis");
  m["cluster/redis"] = Res(c);
  pb::Resource v;
  v.set_type("listener");
  v.set_name("capture_redis");
  auto* vl = v.mutable_listener();
  vl->set_name("capture_redis");
  vl->set_address("127.0.0.1:15001");
  vl->set_protocol("tcp");
  vl->set_cluster("redis");
  vl->set_capture_of("outbound_capture");
  vl->add_match_addresses("10.0.0.2:6379");
  vl->add_match_addresses("[2001:db8:0::1]:6379");
  vl->add_match_hosts("Redis.Service.Weft");
  m["listener/capture_redis"] = Res(v);
  return m;
}

TEST(Capture, TablesMapOriginalDestinationsToVirtualListeners) {
  std::string err;
  auto cfg = ConfigFromResources(ProxyConfig{}, CaptureState(), &err);
  ASSERT_NE(cfg, nullptr) << err;
  const ListenerConfig* cap = nullptr;
  size_t redis = SIZE_MAX;
  for (size_t i = 0; i < cfg->listeners.size(); ++i) {
    if (cfg->listeners[i].capture) cap = &cfg->listeners[i];
    if (cfg->listeners[i].name == "capture_redis") redis = i;
  }
  ASSERT_NE(cap, nullptr);
  EXPECT_TRUE(cap->registry_only);
  EXPECT_EQ(cap->by_address.at("10.0.0.2:6379"), redis);
  EXPECT_EQ(cap->by_address.at("[2001:db8::1]:6379"), redis);  // canonical form
  // Host matching is for HTTP destinations only: redis is TCP.
  EXPECT_TRUE(cap->by_host.empty());
}

TEST(Capture, AVirtualListenerNeedsItsCaptureListener) {
  auto state = CaptureState();
  state.erase("listener/outbound_capture");
  std::string err;
  EXPECT_EQ(ConfigFromResources(ProxyConfig{}, state, &err), nullptr);
  EXPECT_NE(err.find(".capture_of \"outbound_capture\": no capture listener with that name"),
            std::string::npos)
      << err;
  state = CaptureState();
  pb::Resource bad = *state["listener/outbound_capture"];
  bad.mutable_listener()->set_egress("everywhere");
  state["listener/outbound_capture"] = Res(bad);
  EXPECT_EQ(ConfigFromResources(ProxyConfig{}, state, &err), nullptr);
  EXPECT_NE(err.find("unknown egress"), std::string::npos) << err;
}

}  // namespace
}  // namespace weft::xds

namespace weft::xds {
namespace {

// An HTTP listener with one route to one cluster; `edit` changes the route.
ResourceMap RouteState(const std::function<void(pb::Route*)>& edit) {
  ResourceMap m;
  pb::Resource c;
  c.set_type("cluster");
  c.set_name("api");
  c.mutable_cluster()->set_name("api");
  m["cluster/api"] = Res(c);
  pb::Resource l;
  l.set_type("listener");
  l.set_name("out");
  auto* li = l.mutable_listener();
  li->set_name("out");
  li->set_address("127.0.0.1:15000");
  li->set_protocol("http");
  li->set_route_table("out");
  m["listener/out"] = Res(l);
  pb::Resource rt;
  rt.set_type("route");
  rt.set_name("out");
  auto* t = rt.mutable_route();
  t->set_name("out");
  pb::Route* r = t->add_routes();
  r->set_name("all");
  r->set_prefix("/");
  r->add_clusters()->set_cluster("api");
  edit(r);
  m["route/out"] = Res(rt);
  return m;
}

std::string Nack(const ResourceMap& state) {
  std::string err;
  auto cfg = ConfigFromResources(ProxyConfig{}, state, &err);
  EXPECT_EQ(cfg, nullptr);
  return err;
}

TEST(Stream, TelemetryIsHonouredOrRefused) {
  auto with = [](const std::function<void(pb::Telemetry*)>& edit) {
    ResourceMap m = RouteState([](pb::Route*) {});
    pb::Resource t;
    t.set_type("telemetry");
    t.set_name("mesh");
    edit(t.mutable_telemetry());
    m["telemetry/mesh"] = Res(t);
    return m;
  };
  ProxyConfig base;
  base.tracing.service_name = "billing";
  base.tracing.service_namespace = "prod";
  std::string err;
  auto cfg = ConfigFromResources(base, with([](pb::Telemetry* t) {
                                   t->set_tracing(true);
                                   t->set_sampling(0.5);
                                   t->set_otlp("http://10.0.0.9:4318");
                                   t->set_format("json");
                                 }),
                                 &err);
  ASSERT_TRUE(cfg) << err;
  EXPECT_TRUE(cfg->tracing.enabled);
  EXPECT_DOUBLE_EQ(cfg->tracing.sampling, 0.5);
  EXPECT_EQ(cfg->tracing.host_port, "10.0.0.9:4318");
  EXPECT_TRUE(cfg->tracing.json);
  EXPECT_EQ(cfg->tracing.service_name, "billing");
  EXPECT_EQ(cfg->tracing.service_namespace, "prod");
  // No telemetry resource, or one that turns tracing off: no spans.
  cfg = ConfigFromResources(base, RouteState([](pb::Route*) {}), &err);
  ASSERT_TRUE(cfg) << err;
  EXPECT_FALSE(cfg->tracing.enabled);
  cfg = ConfigFromResources(base, with([](pb::Telemetry* t) { t->set_tracing(false); }), &err);
  ASSERT_TRUE(cfg) << err;
  EXPECT_FALSE(cfg->tracing.enabled);
  EXPECT_NE(Nack(with([](pb::Telemetry* t) {
              t->set_tracing(true);
              t->set_otlp("http://c:4318");
              t->set_sampling(1.5);
            })).find("telemetry: sampling"),
            std::string::npos);
  EXPECT_NE(Nack(with([](pb::Telemetry* t) { t->set_tracing(true); })).find("otlp: required"),
            std::string::npos);
  EXPECT_NE(Nack(with([](pb::Telemetry* t) {
              t->set_tracing(true);
              t->set_otlp("https://c:4318");
            })).find("https collectors"),
            std::string::npos);
  EXPECT_NE(Nack(with([](pb::Telemetry* t) {
              t->set_tracing(true);
              t->set_otlp("http://c:4318");
              t->set_format("thrift");
            })).find("format \"thrift\""),
            std::string::npos);
}

TEST(Stream, RetryPolicyIsHonouredOrRefusedNeverClampedOrDropped) {
  std::string err;
  auto cfg = ConfigFromResources(ProxyConfig{}, RouteState([](pb::Route* r) {
                                   r->mutable_retry()->set_attempts(3);
                                   r->mutable_retry()->add_on("connect-failure");
                                 }),
                                 &err);
  ASSERT_NE(cfg, nullptr) << err;
  EXPECT_EQ(cfg->listeners[0].routes[0].retries, 3);
  EXPECT_EQ(cfg->listeners[0].routes[0].retry_on, proxy::kRetryOnConnectFailure);

  cfg = ConfigFromResources(
      ProxyConfig{}, RouteState([](pb::Route* r) { r->mutable_retry()->add_on("reset"); }), &err);
  ASSERT_NE(cfg, nullptr) << err;
  EXPECT_EQ(cfg->listeners[0].routes[0].retries, -1) << "an unset count keeps the default";

  EXPECT_NE(Nack(RouteState([](pb::Route* r) {
              r->mutable_retry()->set_attempts(9);
            })).find("listeners[0].routes[0].retries \"9\": exceeds the limit of 5"),
            std::string::npos);
  // A count past what an int holds is refused too, not wrapped to "unset".
  EXPECT_NE(Nack(RouteState([](pb::Route* r) {
              r->mutable_retry()->set_attempts(4000000000u);
            })).find("exceeds the limit of 5"),
            std::string::npos);
  EXPECT_NE(Nack(RouteState([](pb::Route* r) {
              r->mutable_retry()->set_per_try_timeout_ms(-1);
            })).find("per_try_timeout_ms: -1 is not 0 to 3600000"),
            std::string::npos);
  // Hedging: a delay or p95, honoured; both at once, or out of range, refused.
  cfg = ConfigFromResources(
      ProxyConfig{}, RouteState([](pb::Route* r) { r->mutable_retry()->set_hedge_delay_ms(40); }),
      &err);
  ASSERT_TRUE(cfg) << err;
  EXPECT_EQ(cfg->listeners[0].routes[0].hedge.delay_ms, 40);
  EXPECT_NE(Nack(RouteState([](pb::Route* r) {
              r->mutable_retry()->set_hedge_delay_ms(40);
              r->mutable_retry()->set_hedge_p95(true);
            })).find("hedge: a delay or p95, not both"),
            std::string::npos);
  EXPECT_NE(Nack(RouteState([](pb::Route* r) {
              r->mutable_retry()->set_hedge_delay_ms(3600001);
            })).find("hedge_delay_ms: 3600001 is not 0 to 3600000"),
            std::string::npos);
  // gRPC statuses are honoured; a name this proxy does not know is refused.
  cfg = ConfigFromResources(ProxyConfig{}, RouteState([](pb::Route* r) {
                              r->mutable_retry()->add_on("unavailable");
                              r->mutable_retry()->add_on("cancelled");
                            }),
                            &err);
  ASSERT_NE(cfg, nullptr) << err;
  EXPECT_EQ(cfg->listeners[0].routes[0].retry_on,
            proxy::kRetryOnUnavailable | proxy::kRetryOnCancelled);
  EXPECT_NE(Nack(RouteState([](pb::Route* r) {
              r->mutable_retry()->add_on("refused-stream");
            })).find("retry.on \"refused-stream\": not supported by this proxy yet"),
            std::string::npos);
  EXPECT_NE(Nack(RouteState([](pb::Route* r) {
              r->mutable_retry()->add_on("retriable-status-codes");
              r->mutable_retry()->add_retriable_status_codes(200);
            })).find("retriable_status_codes: 200 is not 400-599"),
            std::string::npos);
  EXPECT_NE(Nack(RouteState([](pb::Route* r) {
              for (uint32_t c = 500; c < 517; ++c)
                r->mutable_retry()->add_retriable_status_codes(c);
            })).find("retriable_status_codes: at most 16"),
            std::string::npos);
}

// The checks across fields are the bootstrap's (ResolveConfig), with the
// same field paths: the name rule, duplicates, split bounds.
TEST(Stream, GoesThroughTheBootstrapsValidator) {
  auto bad_name = RouteState([](pb::Route*) {});
  pb::Resource c = *bad_name["cluster/api"];
  c.mutable_cluster()->set_name("api cluster");
  bad_name["cluster/api"] = Res(c);
  EXPECT_NE(Nack(bad_name).find("clusters[0].name \"api cluster\": "), std::string::npos)
      << Nack(bad_name);
  EXPECT_NE(Nack(RouteState([](pb::Route* r) {
              r->clear_clusters();
              for (int i = 0; i < 2; ++i) {
                auto* w = r->add_clusters();
                w->set_cluster("api");
                w->set_weight(0);
              }
            })).find("listeners[0].routes[0].clusters: the weights add up to 0"),
            std::string::npos);
  EXPECT_NE(Nack(RouteState([](pb::Route* r) {
              r->clear_clusters();
              for (int i = 0; i < 65; ++i) r->add_clusters()->set_cluster("api");
            })).find("at most 64 clusters in a split"),
            std::string::npos);
  EXPECT_NE(Nack(RouteState([](pb::Route* r) {
              r->clear_clusters();
              for (int i = 0; i < 2; ++i) {
                auto* w = r->add_clusters();
                w->set_cluster("api");
                w->set_weight(10001);
              }
            })).find("listeners[0].routes[0].clusters[0].weight \"10001\": exceeds 10000"),
            std::string::npos);
}

TEST(Stream, EnumsComeFromTheSameTablesAsTheBootstrap) {
  auto state = RouteState([](pb::Route*) {});
  pb::Resource c = *state["cluster/api"];
  c.mutable_cluster()->set_lb("least_request");
  state["cluster/api"] = Res(c);
  pb::Resource l = *state["listener/out"];
  l.mutable_listener()->set_mtls("off");
  state["listener/out"] = Res(l);
  std::string err;
  auto cfg = ConfigFromResources(ProxyConfig{}, state, &err);
  ASSERT_NE(cfg, nullptr) << err;
  EXPECT_EQ(cfg->clusters[0].lb, proxy::LbPolicy::kLeastRequest);
  EXPECT_EQ(cfg->listeners[0].mtls, proxy::MeshTlsMode::kOff);
}

// The cluster's protocol: "" and "http" are HTTP/1.1, "http2" and "grpc"
// HTTP/2; "tcp" (a tcp listener's cluster) keeps the default.
TEST(Stream, ClusterProtocolPicksTheUpstreamHttpVersion) {
  auto state = RouteState([](pb::Route*) {});
  pb::Resource c = *state["cluster/api"];
  for (const auto& [name, want] : std::vector<std::pair<std::string, proxy::UpstreamProtocol>>{
           {"", proxy::UpstreamProtocol::kHttp1},
           {"http", proxy::UpstreamProtocol::kHttp1},
           {"tcp", proxy::UpstreamProtocol::kHttp1},
           {"http2", proxy::UpstreamProtocol::kHttp2},
           {"grpc", proxy::UpstreamProtocol::kHttp2}}) {
    c.mutable_cluster()->set_protocol(name);
    state["cluster/api"] = Res(c);
    std::string err;
    auto cfg = ConfigFromResources(ProxyConfig{}, state, &err);
    ASSERT_NE(cfg, nullptr) << name << ": " << err;
    EXPECT_EQ(cfg->clusters[0].protocol, want) << name;
  }

  c.mutable_cluster()->set_protocol("spdy");
  state["cluster/api"] = Res(c);
  EXPECT_EQ(Nack(state), "cluster api: unknown protocol \"spdy\" (use http, http2, grpc or tcp)");
}

TEST(Stream, OutlierDetectionIsHonouredOrRefused) {
  auto state = RouteState([](pb::Route*) {});
  std::string err;
  auto cfg = ConfigFromResources(ProxyConfig{}, state, &err);
  ASSERT_NE(cfg, nullptr) << err;
  EXPECT_TRUE(cfg->clusters[0].outlier.enabled);  // absent: the proxy's defaults
  EXPECT_EQ(cfg->clusters[0].outlier.consecutive_5xx, 5u);
  pb::Resource c = *state["cluster/api"];
  pb::OutlierDetection* od = c.mutable_cluster()->mutable_outlier_detection();
  od->set_enabled(true);
  od->set_consecutive_5xx(7);
  od->set_consecutive_gateway_errors(2);
  od->set_interval_ms(1000);
  od->set_base_ejection_ms(2000);
  od->set_max_ejection_ms(9000);
  od->set_max_ejection_percent(30);
  od->set_min_health_percent(20);
  od->set_success_rate_min_hosts(4);
  od->set_success_rate_request_volume(50);
  od->set_success_rate_stdev_factor(2500);
  state["cluster/api"] = Res(c);
  cfg = ConfigFromResources(ProxyConfig{}, state, &err);
  ASSERT_NE(cfg, nullptr) << err;
  const proxy::OutlierConfig& o = cfg->clusters[0].outlier;
  EXPECT_EQ(o.consecutive_5xx, 7u);
  EXPECT_EQ(o.consecutive_gateway, 2u);
  EXPECT_EQ(o.interval_ms, 1000);
  EXPECT_EQ(o.base_ejection_ms, 2000);
  EXPECT_EQ(o.max_ejection_ms, 9000);
  EXPECT_EQ(o.max_ejection_percent, 30u);
  EXPECT_EQ(o.min_health_percent, 20u);
  EXPECT_EQ(o.success_rate_min_hosts, 4u);
  EXPECT_EQ(o.success_rate_request_volume, 50u);
  EXPECT_EQ(o.success_rate_stdev_factor, 2500u);
  // Out of range: refused, never clamped.
  od->set_max_ejection_percent(101);
  state["cluster/api"] = Res(c);
  EXPECT_EQ(Nack(state), "cluster api: outlier_detection.max_ejection_percent 101: use 0 to 100");
  od->set_max_ejection_percent(30);
  od->set_max_ejection_ms(1000);
  state["cluster/api"] = Res(c);
  EXPECT_EQ(Nack(state),
            "cluster api: outlier_detection.max_ejection_ms 1000: use 2000 to 86400000");
  od->set_max_ejection_ms(9000);
  od->set_interval_ms(0);
  state["cluster/api"] = Res(c);
  EXPECT_EQ(Nack(state), "cluster api: outlier_detection.interval_ms 0: use 100 to 3600000");
}

TEST(Stream, RateLimitIsHonouredOrRefused) {
  auto state = RouteState([](pb::Route* r) {
    r->mutable_rate_limit()->set_requests_per_second(9);
    r->mutable_rate_limit()->set_per_caller_requests_per_second(3);
    r->mutable_rate_limit()->set_per_caller_burst(6);
  });
  std::string err;
  auto cfg = ConfigFromResources(ProxyConfig{}, state, &err);
  ASSERT_NE(cfg, nullptr) << err;
  bool found = false;
  for (const auto& l : cfg->listeners)
    for (const auto& r : l.routes)
      if (r.rate_limit.any()) {
        EXPECT_EQ(r.rate_limit, (mesh::RateLimit{9, 0, 3, 6}));
        found = true;
      }
  EXPECT_TRUE(found);
  EXPECT_NE(Nack(RouteState([](pb::Route* r) {
              r->mutable_rate_limit()->set_burst(4);
            })).find("rate_limit.burst without requests_per_second"),
            std::string::npos);
  EXPECT_NE(Nack(RouteState([](pb::Route* r) {
              r->mutable_rate_limit()->set_requests_per_second(20000000);
            })).find("rate_limit.requests_per_second 20000000"),
            std::string::npos);
}

TEST(Stream, HashPolicyIsHonouredOrRefused) {
  auto state = RouteState([](pb::Route*) {});
  pb::Resource c = *state["cluster/api"];
  c.mutable_cluster()->set_lb("maglev");
  state["cluster/api"] = Res(c);
  EXPECT_EQ(Nack(state), "cluster api: lb maglev needs a hash_policy");
  c.mutable_cluster()->mutable_hash_policy()->set_header("x-user");
  state["cluster/api"] = Res(c);
  std::string err;
  auto cfg = ConfigFromResources(ProxyConfig{}, state, &err);
  ASSERT_NE(cfg, nullptr) << err;
  EXPECT_EQ(cfg->clusters[0].lb, proxy::LbPolicy::kMaglev);
  EXPECT_EQ(cfg->clusters[0].hash.header, "x-user");
  EXPECT_EQ(cfg->clusters[0].hash.table_size, 65537u);
  c.mutable_cluster()->mutable_hash_policy()->set_table_size(65536);
  state["cluster/api"] = Res(c);
  EXPECT_NE(Nack(state).find("maglev_table_size 65536: use a prime"), std::string::npos);
  c.mutable_cluster()->set_lb("ewma");
  c.mutable_cluster()->mutable_hash_policy()->set_table_size(0);
  state["cluster/api"] = Res(c);
  EXPECT_EQ(Nack(state), "cluster api: hash_policy is only for lb ring_hash or maglev");
}

TEST(Stream, MeshProtocolTurnsHttp2BetweenSidecarsOff) {
  auto state = RouteState([](pb::Route*) {});
  pb::Resource c = *state["cluster/api"];
  for (const auto& [name, want] :
       std::vector<std::pair<std::string, bool>>{{"", true}, {"http2", true}, {"http1", false}}) {
    c.mutable_cluster()->set_mesh_protocol(name);
    state["cluster/api"] = Res(c);
    std::string err;
    auto cfg = ConfigFromResources(ProxyConfig{}, state, &err);
    ASSERT_NE(cfg, nullptr) << name << ": " << err;
    EXPECT_EQ(cfg->clusters[0].mesh_http2, want) << name;
  }
  c.mutable_cluster()->set_mesh_protocol("h3");
  state["cluster/api"] = Res(c);
  EXPECT_EQ(Nack(state), "cluster api: unknown mesh_protocol \"h3\" (use http2 or http1)");
}

}  // namespace
}  // namespace weft::xds
