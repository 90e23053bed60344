#include "proxy/config.h"

#include <gtest/gtest.h>

namespace weft::proxy {
namespace {

std::string Error(const std::string& yaml) {
  std::string err;
  auto cfg = ParseConfig(yaml, "test.yaml", &err);
  EXPECT_EQ(cfg, nullptr) << yaml;
  return err;
}

constexpr const char* kClusters = "clusters: [{name: c, endpoints: [127.0.0.1:9001]}]\n";

TEST(Config, DesignExampleParses) {
  std::string err;
  auto cfg = ParseConfig(R"(
admin: {address: 127.0.0.1:15000}
workers: 2
listeners:
  - name: public
    address: 127.0.0.1:8080
    protocol: http
    routes:
      - match: {prefix: /v2, headers: {x-canary: "1"}}
        cluster: api-v2
      - match: {prefix: /}
        cluster: api
        timeout: 5s
  - name: db
    address: 127.0.0.1:6380
    protocol: tcp
    cluster: redis
clusters:
  - name: api
    lb: round_robin
    connect_timeout: 1s
    endpoints: [127.0.0.1:9001, {address: 127.0.0.1:9002, weight: 2}]
  - name: api-v2
    endpoints: [127.0.0.1:9003]
  - name: redis
    lb: least_request
    endpoints: ["[::1]:6379"]
)",
                         "t", &err);
  ASSERT_NE(cfg, nullptr) << err;
  EXPECT_EQ(cfg->workers, 2);
  ASSERT_EQ(cfg->listeners.size(), 2u);
  EXPECT_EQ(cfg->listeners[0].routes[0].headers[0].name, "x-canary");
  EXPECT_EQ(cfg->listeners[0].routes[1].timeout_ms, 5000);
  EXPECT_EQ(cfg->listeners[0].routes[1].cluster_index, 0u);
  EXPECT_EQ(cfg->listeners[1].protocol, Protocol::kTcp);
  EXPECT_EQ(cfg->listeners[1].cluster_index, 2u);
  EXPECT_EQ(cfg->clusters[0].endpoints[1].weight, 2u);
  EXPECT_EQ(cfg->clusters[0].connect_timeout_ms, 1000);
  EXPECT_EQ(cfg->clusters[2].lb, LbPolicy::kLeastRequest);
  EXPECT_EQ(cfg->clusters[2].endpoints[0].address.port(), 6379);
}

TEST(Config, ErrorsNameTheFieldAndTheFix) {
  EXPECT_EQ(Error(std::string(
                      "listeners:\n  - {name: a, address: 127.0.0.1:8080, routes: [{cluster: c}]}\n"
                      "  - {name: b, address: 127.0.0.1:99999, protocol: tcp, cluster: c}\n") +
                  kClusters),
            "config error: listeners[1].address \"127.0.0.1:99999\": port out of range");
  EXPECT_EQ(Error(std::string(
                      "listeners: [{name: a, address: 127.0.0.1:1, routes: [{cluster: nope}]}]\n") +
                  kClusters),
            "config error: listeners[0].routes[0].cluster \"nope\": no cluster with that name");
  EXPECT_EQ(Error(std::string("listeners: [{name: a, address: '[::1]:1', routes: [{cluster: c}]},"
                              "{name: b, address: '[0:0::1]:1', routes: [{cluster: "
                              "c}]}]\n") +
                  kClusters),
            "config error: listeners[1].address \"[0:0::1]:1\": already used by "
            "listener a");
  EXPECT_EQ(Error(std::string(
                      "listeners: [{name: a, address: 127.0.0.1:1, protocol: udp, cluster: c}]\n") +
                  kClusters),
            "config error: listeners[0].protocol \"udp\": unknown protocol (use http or tcp)");
  EXPECT_EQ(Error("listeners: [{name: a, address: 127.0.0.1:1, routes: [{cluster: c}]}]\n"
                  "clusters: [{name: c, lb: fastest, endpoints: [127.0.0.1:1]}]\n"),
            "config error: clusters[0].lb \"fastest\": unknown policy (use ewma, round_robin, "
            "least_request, random, ring_hash or maglev)");
  EXPECT_EQ(Error(std::string("listeners: [{name: a, address: 127.0.0.1:1, routes: [{cluster: c, "
                              "timeout: soon}]}]\n") +
                  kClusters),
            "config error: listeners[0].routes[0].timeout \"soon\": invalid duration (use e.g. "
            "250ms, 5s, 2m)");
  EXPECT_NE(Error(std::string("listeners: [{name: a, adress: 127.0.0.1:1}]\n") + kClusters)
                .find("listeners[0].adress: unknown field"),
            std::string::npos);
  EXPECT_NE(Error("listeners: [{name: a, address: 127.0.0.1:1, routes: [{cluster: c}]}]\nclusters: "
                  "[{name: c, endpoints: []}]\n")
                .find("clusters[0].endpoints: a cluster needs at least one endpoint"),
            std::string::npos);
  EXPECT_NE(
      Error(std::string("listeners: [{name: a, address: nohost:1, routes: [{cluster: c}]}]\n") +
            kClusters)
          .find("host must be an IP address"),
      std::string::npos);
  EXPECT_NE(Error("listeners: [\n").find("config error: test.yaml: line"), std::string::npos);
  EXPECT_NE(Error(std::string("listeners: [{name: a, address: '[::1]:1', routes: [{cluster: c}]},"
                              "{name: a, address: 127.0.0.1:2, routes: [{cluster: c}]}]\n") +
                  kClusters)
                .find("duplicate listener name"),
            std::string::npos);
  EXPECT_NE(Error(std::string("listeners: [{name: a, address: 127.0.0.1:1, routes: [{cluster: c, "
                              "match: {prefix: nope}}]}]\n") +
                  kClusters)
                .find("must start with '/'"),
            std::string::npos);
  EXPECT_NE(Error(std::string("listeners: [{name: a, address: 127.0.0.1:1, limits: {max_headers: "
                              "0}, routes: [{cluster: c}]}]\n") +
                  kClusters)
                .find("listeners[0].limits.max_headers \"0\": out of range"),
            std::string::npos);
}

// clusters[].protocol: the HTTP version spoken to the endpoints.
TEST(Config, TracingNamesACollector) {
  const std::string listeners =
      "listeners: [{name: l, address: 127.0.0.1:0, routes: [{match: {prefix: /}, cluster: c}]}]\n";
  std::string err;
  auto cfg = ParseConfig(std::string("tracing: {sampling: 0.25, otlp: 'http://127.0.0.1:4318', "
                                     "service_name: front}\n") +
                             listeners + kClusters,
                         "t.yaml", &err);
  ASSERT_TRUE(cfg) << err;
  EXPECT_TRUE(cfg->tracing.enabled);
  EXPECT_DOUBLE_EQ(cfg->tracing.sampling, 0.25);
  EXPECT_EQ(cfg->tracing.host_port, "127.0.0.1:4318");
  EXPECT_EQ(cfg->tracing.path, "/v1/traces");
  EXPECT_FALSE(cfg->tracing.json);
  EXPECT_EQ(cfg->tracing.service_name, "front");
  cfg = ParseConfig(
      std::string("tracing: {otlp: {endpoint: 'http://[::1]:4318/otlp/traces', format: json}}\n") +
          listeners + kClusters,
      "t.yaml", &err);
  ASSERT_TRUE(cfg) << err;
  EXPECT_EQ(cfg->tracing.host_port, "[::1]:4318");
  EXPECT_EQ(cfg->tracing.path, "/otlp/traces");
  EXPECT_TRUE(cfg->tracing.json);
  EXPECT_DOUBLE_EQ(cfg->tracing.sampling, 0.01);  // the default
  EXPECT_EQ(cfg->tracing.service_name, "weft-proxy");
  cfg = ParseConfig(listeners + kClusters, "t.yaml", &err);
  ASSERT_TRUE(cfg) << err;
  EXPECT_FALSE(cfg->tracing.enabled);
  EXPECT_NE(
      Error(std::string("tracing: {sampling: 2, otlp: 'http://c:1'}\n") + listeners + kClusters)
          .find("tracing.sampling \"2\""),
      std::string::npos);
  EXPECT_NE(Error(std::string("tracing: {sampling: 0.5}\n") + listeners + kClusters)
                .find("tracing.otlp: required"),
            std::string::npos);
  EXPECT_NE(Error(std::string("tracing: {otlp: 'http://c:1', service_name: 'a b'}\n") + listeners +
                  kClusters)
                .find("tracing.service_name"),
            std::string::npos);
}

TEST(Config, ClusterProtocol) {
  std::string err;
  auto cfg = ParseConfig(
      "listeners: [{name: a, address: 127.0.0.1:1, routes: [{cluster: h2}]}]\n"
      "clusters: [{name: h2, protocol: http2, endpoints: [127.0.0.1:1]},\n"
      "           {name: h1, protocol: http1, endpoints: [127.0.0.1:2]},\n"
      "           {name: plain, endpoints: [127.0.0.1:3]}]\n",
      "t", &err);
  ASSERT_NE(cfg, nullptr) << err;
  EXPECT_EQ(cfg->clusters[0].protocol, UpstreamProtocol::kHttp2);
  EXPECT_EQ(cfg->clusters[1].protocol, UpstreamProtocol::kHttp1);
  EXPECT_EQ(cfg->clusters[2].protocol, UpstreamProtocol::kHttp1) << "the default";
  // The admin /config dump shows it.
  const std::string json = ConfigToJson(*cfg);
  EXPECT_NE(json.find("\"protocol\": \"http2\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"protocol\": \"http1\""), std::string::npos) << json;

  EXPECT_EQ(Error("listeners: [{name: a, address: 127.0.0.1:1, routes: [{cluster: c}]}]\n"
                  "clusters: [{name: c, protocol: http3, endpoints: [127.0.0.1:1]}]\n"),
            "config error: clusters[0].protocol \"http3\": unknown protocol (use http1 or http2)");
  // The HTTP/1.1 idle pool does not exist for an http2 cluster: refused,
  // not ignored. The default follows HTTP/2 clients' streams in flight.
  EXPECT_EQ(
      Error("listeners: [{name: a, address: 127.0.0.1:1, routes: [{cluster: c}]}]\n"
            "clusters: [{name: c, max_idle_per_endpoint: 8, protocol: http2, "
            "endpoints: [127.0.0.1:1]}]\n"),
      "config error: clusters[0].max_idle_per_endpoint: applies to HTTP/1.1 upstreams; an "
      "http2 cluster carries its requests as streams on one connection per endpoint and worker");
  EXPECT_EQ(cfg->clusters[1].max_idle_per_endpoint, 1024u);
  EXPECT_EQ(UpstreamProtocolFromName("h2"), std::nullopt);
  EXPECT_EQ(UpstreamProtocolFromName("http2"), UpstreamProtocol::kHttp2);
  EXPECT_STREQ(UpstreamProtocolName(UpstreamProtocol::kHttp1), "http1");
}

TEST(Config, LimitsAndTimeouts) {
  std::string err;
  auto cfg = ParseConfig(std::string(R"(
listeners:
  - name: a
    address: 127.0.0.1:0
    limits: {max_request_line: 1024, max_header_bytes: 4096, max_headers: 20, max_request_body: 1000}
    timeouts: {header_read: 2s, idle: 30s, request: 250ms}
    max_connections: 5
    routes: [{cluster: c}]
)") + kClusters,
                         "t", &err);
  ASSERT_NE(cfg, nullptr) << err;
  const auto& l = cfg->listeners[0];
  EXPECT_EQ(l.limits.max_request_line, 1024u);
  EXPECT_EQ(l.limits.max_header_bytes, 4096u);
  EXPECT_EQ(l.limits.max_headers, 20u);
  EXPECT_EQ(l.max_request_body_bytes, 1000u);
  EXPECT_EQ(l.header_read_timeout_ms, 2000);
  EXPECT_EQ(l.idle_timeout_ms, 30000);
  EXPECT_EQ(l.request_timeout_ms, 250);
  EXPECT_EQ(l.max_connections, 5u);
  EXPECT_EQ(l.routes[0].prefix, "/");
}

// listeners[].http2: the limits HTTP/2 clients are held to.
TEST(Config, Http2Limits) {
  std::string err;
  auto cfg = ParseConfig(std::string(R"(
listeners:
  - name: a
    address: 127.0.0.1:0
    http2: {max_concurrent_streams: 10, max_header_list_bytes: 8192, reset_burst: 50,
            reset_rate: 5, max_reset_streams: 200, max_empty_data_per_second: 20,
            connection_send_buffer: 65536}
    routes: [{cluster: c}]
  - name: b
    address: 127.0.0.1:1
    routes: [{cluster: c}]
)") + kClusters,
                         "t", &err);
  ASSERT_NE(cfg, nullptr) << err;
  const http2::Settings& h = cfg->listeners[0].http2;
  EXPECT_EQ(h.max_concurrent_streams, 10u);
  EXPECT_EQ(h.max_header_list_bytes, 8192u);
  EXPECT_EQ(h.reset_burst, 50u);
  EXPECT_EQ(h.reset_rate, 5u);
  EXPECT_EQ(h.max_reset_streams, 200u);
  EXPECT_EQ(h.max_empty_data_per_second, 20u);
  EXPECT_EQ(h.connection_send_buffer, 65536u);
  // Absent: the defaults.
  const http2::Settings d;
  EXPECT_EQ(cfg->listeners[1].http2.max_concurrent_streams, d.max_concurrent_streams);
  EXPECT_EQ(cfg->listeners[1].http2.max_reset_streams, d.max_reset_streams);
  EXPECT_EQ(cfg->listeners[1].http2.connection_send_buffer, 1024u * 1024);
  const std::string json = ConfigToJson(*cfg);
  EXPECT_NE(json.find("\"max_reset_streams\": 200"), std::string::npos) << json;

  EXPECT_EQ(Error(std::string("listeners: [{name: a, address: 127.0.0.1:1, http2: {reset_rate: 0}, "
                              "routes: [{cluster: c}]}]\n") +
                  kClusters),
            "config error: listeners[0].http2.reset_rate \"0\": out of range (1..1000000)");
  EXPECT_NE(
      Error(std::string("listeners: [{name: a, address: 127.0.0.1:1, http2: {max_streams: 5}, "
                        "routes: [{cluster: c}]}]\n") +
            kClusters)
          .find("listeners[0].http2.max_streams: unknown field"),
      std::string::npos);
}

}  // namespace
}  // namespace weft::proxy

namespace weft::proxy {
namespace {

std::string RouteWith(const std::string& extra) {
  return "listeners:\n  - name: l\n    address: 127.0.0.1:1\n    routes:\n"
         "      - match: {prefix: /}\n        cluster: c\n" +
         extra + "clusters:\n  - name: c\n    endpoints: [127.0.0.1:2]\n";
}

TEST(Config, RetriesShareTheManifestLimitAndRetryOnIsHonoured) {
  std::string err;
  auto cfg = ParseConfig(RouteWith("        retries: 5\n        retry_on: [reset]\n"), "t", &err);
  ASSERT_TRUE(cfg) << err;
  EXPECT_EQ(cfg->listeners[0].routes[0].retries, 5);
  EXPECT_EQ(cfg->listeners[0].routes[0].retry_on, kRetryOnReset);
  EXPECT_NE(Error(RouteWith("        retries: 6\n")).find("routes[0].retries"), std::string::npos)
      << "one past mesh::kMaxRetryAttempts";
  EXPECT_NE(Error(RouteWith("        retry_on: [refused-stream]\n"))
                .find("retry_on[0] \"refused-stream\": unknown condition (use connect-failure, "
                      "reset, 5xx, gateway-error, retriable-status-codes, cancelled, "
                      "deadline-exceeded, internal, resource-exhausted, unavailable)"),
            std::string::npos);
  cfg = ParseConfig(RouteWith("        retry_on: [unavailable, deadline-exceeded]\n"), "t", &err);
  ASSERT_TRUE(cfg) << err;
  EXPECT_EQ(cfg->listeners[0].routes[0].retry_on, kRetryOnUnavailable | kRetryOnDeadlineExceeded);
  // Conditions on the answer, and the status codes of retriable-status-codes.
  cfg = ParseConfig(RouteWith("        retry_on: [5xx, retriable-status-codes]\n"
                              "        retriable_status_codes: [429, 503]\n"),
                    "t", &err);
  ASSERT_TRUE(cfg) << err;
  EXPECT_EQ(cfg->listeners[0].routes[0].retry_on, kRetryOn5xx | kRetryOnRetriableStatusCodes);
  EXPECT_EQ(cfg->listeners[0].routes[0].retriable_status_codes, (std::vector<uint16_t>{429, 503}));
  std::string seventeen = "500";
  for (int c = 501; c < 517; ++c) seventeen += ", " + std::to_string(c);
  EXPECT_NE(
      Error(RouteWith(
                "        retry_on: [retriable-status-codes]\n        retriable_status_codes: [" +
                seventeen + "]\n"))
          .find("1 to 16 status codes"),
      std::string::npos);
  EXPECT_NE(Error(RouteWith("        retry_on: [5xx]\n        retriable_status_codes: [503]\n"))
                .find("only with retriable-status-codes in retry_on"),
            std::string::npos);
  EXPECT_NE(Error(RouteWith("        retry_on: [retriable-status-codes]\n"
                            "        retriable_status_codes: [200]\n"))
                .find("retriable_status_codes[0]"),
            std::string::npos);
}

}  // namespace
TEST(Config, ClusterPolicyFieldsAreReadOrRefusedByName) {
  const std::string head =
      "listeners: [{name: l, address: 127.0.0.1:1, routes: [{cluster: c}]}]\n"
      "clusters:\n  - name: c\n    endpoints: [127.0.0.1:2]\n";
  std::string err;
  auto cfg = ParseConfig(head +
                             "    ewma_decay: 2s\n"
                             "    retry_budget: {percent: 50, min_per_second: 3}\n"
                             "    circuit_breakers: {max_connections: 7, max_pending_requests: 8, "
                             "max_requests: 9, max_retries: 10}\n",
                         "t", &err);
  ASSERT_TRUE(cfg) << err;
  const ClusterConfig& c = cfg->clusters[0];
  EXPECT_EQ(c.lb, LbPolicy::kEwma);  // the default
  EXPECT_EQ(c.ewma_decay_ms, 2000);
  EXPECT_EQ(c.retry_budget_percent, 50u);
  EXPECT_EQ(c.retry_budget_min_per_s, 3u);
  EXPECT_EQ(c.max_connections, 7u);
  EXPECT_EQ(c.max_pending_requests, 8u);
  EXPECT_EQ(c.max_requests, 9u);
  EXPECT_EQ(c.max_retries, 10u);
  EXPECT_NE(Error(head + "    lb: random\n    ewma_decay: 2s\n").find("only for lb: ewma"),
            std::string::npos);
  EXPECT_NE(Error(head + "    circuit_breakers: {max_requests: 0}\n")
                .find("circuit_breakers.max_requests"),
            std::string::npos);
  EXPECT_NE(Error(head + "    circuit_breakers: {max_streams: 3}\n").find("max_streams"),
            std::string::npos);
  EXPECT_NE(Error(head + "    retry_budget: {percent: 101}\n").find("retry_budget.percent"),
            std::string::npos);
}

TEST(Config, OutlierDetectionIsReadOrRefusedByName) {
  const std::string head =
      "listeners: [{name: l, address: 127.0.0.1:1, routes: [{cluster: c}]}]\n"
      "clusters:\n  - name: c\n    endpoints: [127.0.0.1:2]\n";
  std::string err;
  auto def = ParseConfig(head, "t", &err);
  ASSERT_TRUE(def) << err;
  EXPECT_TRUE(def->clusters[0].outlier.enabled);  // on by default
  EXPECT_EQ(def->clusters[0].outlier.consecutive_5xx, 5u);
  auto cfg =
      ParseConfig(head +
                      "    outlier_detection: {consecutive_5xx: 0, consecutive_gateway_errors: "
                      "3, interval: 2s, base_ejection_time: 5s, max_ejection_time: 1m, "
                      "max_ejection_percent: 40, min_health_percent: 0, success_rate: "
                      "{minimum_hosts: 3, request_volume: 20, stdev_factor: 1.5}}\n",
                  "t", &err);
  ASSERT_TRUE(cfg) << err;
  const OutlierConfig& o = cfg->clusters[0].outlier;
  EXPECT_EQ(o.consecutive_5xx, 0u);
  EXPECT_EQ(o.consecutive_gateway, 3u);
  EXPECT_EQ(o.interval_ms, 2000);
  EXPECT_EQ(o.base_ejection_ms, 5000);
  EXPECT_EQ(o.max_ejection_ms, 60000);
  EXPECT_EQ(o.max_ejection_percent, 40u);
  EXPECT_EQ(o.min_health_percent, 0u);
  EXPECT_EQ(o.success_rate_min_hosts, 3u);
  EXPECT_EQ(o.success_rate_request_volume, 20u);
  EXPECT_EQ(o.success_rate_stdev_factor, 1500u);
  auto off = ParseConfig(head + "    outlier_detection: {enabled: false}\n", "t", &err);
  ASSERT_TRUE(off) << err;
  EXPECT_FALSE(off->clusters[0].outlier.enabled);
  for (const auto& [bad, field] : std::vector<std::pair<std::string, std::string>>{
           {"{enabled: maybe}", "outlier_detection.enabled"},
           {"{interval: 10ms}", "outlier_detection.interval"},
           {"{base_ejection_time: 2m, max_ejection_time: 1m}",
            "outlier_detection.max_ejection_time"},
           {"{max_ejection_percent: 101}", "outlier_detection.max_ejection_percent"},
           {"{consecutive_5xx: 1001}", "outlier_detection.consecutive_5xx"},
           {"{success_rate: {stdev_factor: -1}}", "success_rate.stdev_factor"},
           {"{success_rate: {minimum_hosts: 0}}", "success_rate.minimum_hosts"},
           {"{ejection: 3}", "ejection"}}) {
    EXPECT_NE(Error(head + "    outlier_detection: " + bad + "\n").find(field), std::string::npos)
        << bad << ": " << Error(head + "    outlier_detection: " + bad + "\n");
  }
}

TEST(Config, RouteMirrorNamesAClusterAndAShare) {
  std::string err;
  const std::string two = "  - name: m\n    endpoints: [127.0.0.1:3]\n";
  auto cfg = ParseConfig(RouteWith("        mirror: {cluster: m, percent: 10}\n") + two, "t", &err);
  ASSERT_TRUE(cfg) << err;
  const MirrorConfig& m = cfg->listeners[0].routes[0].mirror;
  EXPECT_EQ(m.cluster, "m");
  EXPECT_DOUBLE_EQ(m.percent, 10);
  EXPECT_EQ(m.cluster_index, 1u);
  cfg = ParseConfig(RouteWith("        mirror: {cluster: m}\n") + two, "t", &err);
  ASSERT_TRUE(cfg) << err;
  EXPECT_DOUBLE_EQ(cfg->listeners[0].routes[0].mirror.percent, 100);
  EXPECT_NE(Error(RouteWith("        mirror: {cluster: nope}\n"))
                .find("routes[0].mirror.cluster \"nope\": no cluster with that name"),
            std::string::npos);
  EXPECT_NE(Error(RouteWith("        mirror: {cluster: c, percent: 0}\n"))
                .find("routes[0].mirror.percent: a number over 0, at most 100"),
            std::string::npos);
  EXPECT_NE(Error(RouteWith("        mirror: {percent: 5}\n")).find("routes[0].mirror.cluster"),
            std::string::npos);
  EXPECT_NE(Error(RouteWith("        mirror: {cluster: c, host: x}\n")).find("mirror.host"),
            std::string::npos);
}

TEST(Config, RouteHedgeTakesADelayOrP95) {
  std::string err;
  auto cfg = ParseConfig(RouteWith("        hedge: {delay: 30ms}\n"), "t", &err);
  ASSERT_TRUE(cfg) << err;
  EXPECT_EQ(cfg->listeners[0].routes[0].hedge.delay_ms, 30);
  cfg = ParseConfig(RouteWith("        hedge: {delay: p95}\n"), "t", &err);
  ASSERT_TRUE(cfg) << err;
  EXPECT_TRUE(cfg->listeners[0].routes[0].hedge.p95);
  EXPECT_FALSE(ParseConfig(RouteWith(""), "t", &err)->listeners[0].routes[0].hedge.any());
  EXPECT_NE(Error(RouteWith("        hedge: {delay: 0ms}\n"))
                .find("routes[0].hedge.delay: use p95, or a duration of at least 1ms"),
            std::string::npos);
  EXPECT_NE(Error(RouteWith("        hedge: {}\n")).find("routes[0].hedge.delay: required"),
            std::string::npos);
  EXPECT_NE(Error(RouteWith("        hedge: {delay: 5ms, max: 2}\n")).find("hedge.max"),
            std::string::npos);
}

TEST(Config, RouteRateLimitIsReadOrRefusedByName) {
  const std::string head =
      "listeners:\n  - name: l\n    address: 127.0.0.1:1\n    routes:\n      - cluster: c\n";
  const std::string tail = "clusters: [{name: c, endpoints: [127.0.0.1:2]}]\n";
  std::string err;
  auto cfg = ParseConfig(head +
                             "        rate_limit: {requests_per_second: 10, burst: 4, per_caller: "
                             "{requests_per_second: 2}}\n" +
                             tail,
                         "t", &err);
  ASSERT_TRUE(cfg) << err;
  EXPECT_EQ(cfg->listeners[0].routes[0].rate_limit, (mesh::RateLimit{10, 4, 2, 0}));
  for (const auto& [bad, field] : std::vector<std::pair<std::string, std::string>>{
           {"{}", "needs requests_per_second"},
           {"{requests_per_second: 0}", "rate_limit.requests_per_second"},
           {"{burst: 3}", "burst without requests_per_second"},
           {"{requests_per_second: 10000001}", "rate_limit.requests_per_second"},
           {"{per_caller: {burst: 2}}", "per_caller_burst without"},
           {"{per_second: 2}", "per_second"}}) {
    const std::string e = Error(head + "        rate_limit: " + bad + "\n" + tail);
    EXPECT_NE(e.find(field), std::string::npos) << bad << ": " << e;
  }
}

TEST(Config, ConsistentHashingNeedsOneKeySource) {
  const std::string head =
      "listeners: [{name: l, address: 127.0.0.1:1, routes: [{cluster: c}]}]\n"
      "clusters:\n  - name: c\n    endpoints: [127.0.0.1:2, 127.0.0.1:3]\n";
  std::string err;
  auto cfg = ParseConfig(
      head + "    lb: ring_hash\n    hash: {header: X-User}\n    ring_points: 64\n", "t", &err);
  ASSERT_TRUE(cfg) << err;
  EXPECT_EQ(cfg->clusters[0].lb, LbPolicy::kRingHash);
  EXPECT_EQ(cfg->clusters[0].hash.header, "x-user");
  EXPECT_EQ(cfg->clusters[0].hash.ring_points, 64u);
  cfg = ParseConfig(
      head + "    lb: maglev\n    hash: {cookie: {name: sticky, ttl: 1h, path: /app}}\n", "t",
      &err);
  ASSERT_TRUE(cfg) << err;
  EXPECT_EQ(cfg->clusters[0].hash.cookie, "sticky");
  EXPECT_EQ(cfg->clusters[0].hash.cookie_ttl_ms, 3600000);
  EXPECT_EQ(cfg->clusters[0].hash.cookie_path, "/app");
  EXPECT_EQ(cfg->clusters[0].hash.table_size, 65537u);
  for (const auto& [bad, field] : std::vector<std::pair<std::string, std::string>>{
           {"    lb: ring_hash\n", "clusters[0].hash: missing"},
           {"    lb: ewma\n    hash: {source_ip: true}\n", "only for lb: ring_hash or maglev"},
           {"    lb: maglev\n    hash: {header: a, source_ip: true}\n", "exactly one"},
           {"    lb: maglev\n    hash: {source_ip: true}\n    maglev_table_size: 1000\n",
            "maglev_table_size 1000: use a prime"},
           {"    lb: maglev\n    hash: {source_ip: true}\n    ring_points: 10\n",
            "only for lb: ring_hash"},
           {"    lb: ring_hash\n    hash: {cookie: {name: \"a b\"}}\n", "not a cookie name"},
           {"    lb: ring_hash\n    hash: {header: \"a:b\"}\n", "not a header name"}}) {
    const std::string e = Error(head + bad);
    EXPECT_NE(e.find(field), std::string::npos) << bad << ": " << e;
  }
}

TEST(Config, SlowStartIsReadOrRefused) {
  const std::string head =
      "listeners: [{name: l, address: 127.0.0.1:1, routes: [{cluster: c}]}]\n"
      "clusters:\n  - name: c\n    endpoints: [127.0.0.1:2]\n";
  std::string err;
  auto cfg = ParseConfig(head + "    slow_start: {window: 20s, aggression: 1.5}\n", "t", &err);
  ASSERT_TRUE(cfg) << err;
  EXPECT_EQ(cfg->clusters[0].slow_start_ms, 20000);
  EXPECT_EQ(cfg->clusters[0].slow_start_aggression, 1.5);
  EXPECT_EQ(cfg->clusters[0].slow_start_min_weight_percent, 10u);
  EXPECT_NE(Error(head + "    slow_start: {aggression: 2}\n").find("slow_start.window"),
            std::string::npos);
  EXPECT_NE(Error(head + "    slow_start: {window: 2h}\n").find("slow_start.window"),
            std::string::npos);
  EXPECT_NE(
      Error(head + "    lb: ring_hash\n    hash: {source_ip: true}\n    slow_start: {window: 5s}\n")
          .find("not with ring_hash"),
      std::string::npos);
}

}  // namespace weft::proxy
