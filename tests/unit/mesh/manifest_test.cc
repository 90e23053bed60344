#include "mesh/manifest.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace weft::mesh {
namespace {

std::string ReadExample() {
  std::ifstream in(std::string(WEFT_SOURCE_DIR) + "/examples/mesh.yaml");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Error(const std::string& yaml) {
  auto r = ParseManifests(yaml);
  EXPECT_FALSE(r.ok()) << yaml;
  return r.ok() ? "" : r.status().message();
}

TEST(Manifest, DesignExampleParses) {
  auto r = ParseManifests(ReadExample());
  ASSERT_TRUE(r.ok()) << r.status().message();
  const auto& ms = r.value();
  ASSERT_EQ(ms.size(), 4u);
  EXPECT_EQ(ms[0].kind, "Service");
  const auto& svc = std::get<ServiceSpec>(ms[0].spec);
  EXPECT_EQ(svc.ports[0].port, 9080u);
  EXPECT_EQ(svc.mtls, "strict");
  const auto& tp = std::get<TrafficPolicySpec>(ms[1].spec);
  EXPECT_EQ(tp.lb, "ewma");
  EXPECT_EQ(tp.lb_decay_ms, 10000);
  EXPECT_EQ(tp.connect_timeout_ms, 1000);
  EXPECT_EQ(tp.retries.attempts, 2);
  EXPECT_EQ(tp.retries.on.size(), 2u);
  const auto& rt = std::get<RouteSpec>(ms[2].spec);
  ASSERT_EQ(rt.rules.size(), 2u);
  EXPECT_EQ(rt.rules[0].match.headers[0].name, "x-canary");
  EXPECT_EQ(rt.rules[1].match.path_prefix, "/") << "a rule without a match matches everything";
  EXPECT_EQ(rt.rules[1].backends[1].weight, 10u);
  const auto& ap = std::get<AuthorizationPolicySpec>(ms[3].spec);
  EXPECT_EQ(ap.default_action, "deny");
  EXPECT_EQ(ap.rules[0].paths[0], "/reviews/*");
}

TEST(Manifest, JsonRoundTrip) {
  auto r = ParseManifests(ReadExample());
  ASSERT_TRUE(r.ok());
  for (const auto& m : r.value()) {
    std::string j = ToJson(m);
    auto back = FromJson(j);
    ASSERT_TRUE(back.ok()) << back.status().message() << "\n" << j;
    EXPECT_EQ(ToJson(back.value()), j);
  }
}

TEST(Manifest, OutlierDetectionIsReadWithDefaultsAndRefusedByField) {
  auto r = ParseManifests(
      "kind: TrafficPolicy\nmetadata: {name: a}\nspec:\n  outlierDetection: {consecutive5xxErrors: "
      "3, consecutiveGatewayErrors: 2, interval: 5s, baseEjectionTime: 10s, maxEjectionTime: 1m, "
      "maxEjectionPercent: 50, minHealthPercent: 0, successRate: {minimumHosts: 3, requestVolume: "
      "10, stdevFactor: 2.5}}\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const auto& o = std::get<TrafficPolicySpec>(r.value()[0].spec).outlier;
  EXPECT_TRUE(o.enabled);
  EXPECT_EQ(o.consecutive_5xx, 3u);
  EXPECT_EQ(o.consecutive_gateway, 2u);
  EXPECT_EQ(o.interval_ms, 5000);
  EXPECT_EQ(o.base_ejection_ms, 10000);
  EXPECT_EQ(o.max_ejection_ms, 60000);
  EXPECT_EQ(o.max_ejection_percent, 50u);
  EXPECT_EQ(o.min_health_percent, 0u);
  EXPECT_EQ(o.success_rate_min_hosts, 3u);
  EXPECT_EQ(o.success_rate_request_volume, 10u);
  EXPECT_EQ(o.success_rate_stdev_factor, 2500u);
  // It survives the store's JSON round trip.
  auto back = FromJson(ToJson(r.value()[0]));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(std::get<TrafficPolicySpec>(back.value().spec).outlier.success_rate_stdev_factor,
            2500u);
  EXPECT_EQ(std::get<TrafficPolicySpec>(back.value().spec).outlier.max_ejection_ms, 60000);
  // Defaults: on, 5 in a row.
  auto d = ParseManifests("kind: TrafficPolicy\nmetadata: {name: a}\nspec: {}\n");
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(std::get<TrafficPolicySpec>(d.value()[0].spec).outlier.enabled);
  EXPECT_EQ(std::get<TrafficPolicySpec>(d.value()[0].spec).outlier.consecutive_5xx, 5u);
  for (const auto& [bad, field] : std::vector<std::pair<std::string, std::string>>{
           {"{enabled: yes}", "spec.outlierDetection.enabled"},
           {"{interval: 1ms}", "spec.outlierDetection.interval"},
           {"{baseEjectionTime: 1m, maxEjectionTime: 10s}",
            "spec.outlierDetection.maxEjectionTime"},
           {"{maxEjectionPercent: 120}", "spec.outlierDetection.maxEjectionPercent"},
           {"{successRate: {stdevFactor: lots}}", "spec.outlierDetection.successRate.stdevFactor"},
           {"{consecutive5xx: 3}", "consecutive5xx"}}) {
    const std::string e =
        Error("kind: TrafficPolicy\nmetadata: {name: a}\nspec:\n  outlierDetection: " + bad + "\n");
    EXPECT_NE(e.find(field), std::string::npos) << bad << ": " << e;
  }
}

TEST(Manifest, RateLimitsOnTrafficPoliciesAndRouteRules) {
  auto r = ParseManifests(
      "kind: TrafficPolicy\nmetadata: {name: a}\nspec:\n  rateLimit: {requestsPerSecond: 50, "
      "burst: "
      "100, perCaller: {requestsPerSecond: 5, burst: 10}}\n---\n"
      "kind: Route\nmetadata: {name: a}\nspec:\n  service: a\n  rules:\n"
      "    - backends: [{service: a}]\n      rateLimit: {requestsPerSecond: 3}\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const auto& tp = std::get<TrafficPolicySpec>(r.value()[0].spec).rate_limit;
  EXPECT_EQ(tp, (RateLimit{50, 100, 5, 10}));
  const auto& rule = std::get<RouteSpec>(r.value()[1].spec).rules[0].rate_limit;
  EXPECT_EQ(rule, (RateLimit{3, 0, 0, 0}));
  for (const auto& m : r.value()) {
    auto back = FromJson(ToJson(m));
    ASSERT_TRUE(back.ok()) << back.status().message();
    EXPECT_EQ(ToJson(back.value()), ToJson(m));
  }
  for (const auto& [bad, field] : std::vector<std::pair<std::string, std::string>>{
           {"spec:\n  rateLimit: {}\n", "spec.rateLimit"},
           {"spec:\n  rateLimit: {requestsPerSecond: 0}\n", "spec.rateLimit.requestsPerSecond"},
           {"spec:\n  rateLimit: {burst: 5}\n", "spec.rateLimit.burst"},
           {"spec:\n  rateLimit: {perCaller: {burst: 5}}\n",
            "spec.rateLimit.perCaller.requestsPerSecond"},
           {"spec:\n  rateLimit: {requestsPerSecond: 20000000}\n",
            "spec.rateLimit.requestsPerSecond"},
           {"spec:\n  rateLimit: {rps: 5}\n", "rps"}}) {
    const std::string e = Error("kind: TrafficPolicy\nmetadata: {name: a}\n" + bad);
    EXPECT_NE(e.find(field), std::string::npos) << bad << ": " << e;
  }
  // A route's limit is each calling sidecar's: per caller is refused there.
  const std::string e = Error(
      "kind: Route\nmetadata: {name: a}\nspec:\n  service: a\n  rules:\n"
      "    - backends: [{service: a}]\n      rateLimit: {perCaller: {requestsPerSecond: 3}}\n");
  EXPECT_NE(e.find("spec.rules[0].rateLimit.perCaller"), std::string::npos) << e;
}

TEST(Manifest, HedgesTakeADelayOrP95AndReadBack) {
  auto r = ParseManifests(
      "kind: TrafficPolicy\nmetadata: {name: a}\nspec: {retries: {hedge: {delay: 25ms}}}\n"
      "---\nkind: TrafficPolicy\nmetadata: {name: b}\nspec: {retries: {hedge: {delay: p95}}}\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const auto& a = std::get<TrafficPolicySpec>(r.value()[0].spec).retries.hedge;
  const auto& b = std::get<TrafficPolicySpec>(r.value()[1].spec).retries.hedge;
  EXPECT_EQ(a.delay_ms, 25);
  EXPECT_FALSE(a.p95);
  EXPECT_TRUE(b.p95);
  EXPECT_EQ(b.delay_ms, 0);
  for (const auto& m : r.value()) {
    auto back = FromJson(ToJson(m));
    ASSERT_TRUE(back.ok()) << back.status().message();
    EXPECT_EQ(ToJson(back.value()), ToJson(m));
  }
  for (const char* bad :
       {"{delay: 0ms}", "{delay: 2h}", "{delay: p99}", "{}", "25ms", "{delay: 1ms, x: 1}"}) {
    auto e = ParseManifests(
        std::string("kind: TrafficPolicy\nmetadata: {name: a}\nspec: {retries: {hedge: ") + bad +
        "}}\n");
    ASSERT_FALSE(e.ok()) << bad;
    EXPECT_NE(e.status().message().find("spec.retries.hedge"), std::string::npos)
        << bad << ": " << e.status().message();
  }
}

TEST(Manifest, TelemetryNamesItsCollectorAndReadsBack) {
  auto r = ParseManifests(
      "kind: Telemetry\nmetadata: {name: mesh}\n"
      "spec: {service: '*', tracing: {sampling: 0.01, otlp: 'http://collector:4318'}}\n"
      "---\nkind: Telemetry\nmetadata: {name: b}\n"
      "spec: {service: billing, tracing: {sampling: 1, otlp: {endpoint: 'http://c:4318/x', "
      "format: json}}}\n"
      "---\nkind: Telemetry\nmetadata: {name: c}\nspec: {service: ui, tracing: {enabled: "
      "false}}\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const auto& a = std::get<TelemetrySpec>(r.value()[0].spec);
  const auto& b = std::get<TelemetrySpec>(r.value()[1].spec);
  const auto& c = std::get<TelemetrySpec>(r.value()[2].spec);
  EXPECT_EQ(a.service, "*");
  EXPECT_DOUBLE_EQ(*a.tracing.sampling, 0.01);
  EXPECT_EQ(a.tracing.otlp, "http://collector:4318");
  EXPECT_TRUE(a.tracing.active());
  EXPECT_EQ(b.service, "billing");
  EXPECT_EQ(b.tracing.format, "json");
  EXPECT_EQ(b.tracing.otlp, "http://c:4318/x");
  EXPECT_FALSE(c.tracing.active());
  // A service's own fields win over the mesh-wide ones; the rest inherit.
  Tracing m = a.tracing.Merge(b.tracing);
  EXPECT_DOUBLE_EQ(*m.sampling, 1);
  EXPECT_EQ(m.format, "json");
  EXPECT_FALSE(a.tracing.Merge(c.tracing).active());
  EXPECT_EQ(a.tracing.Merge(c.tracing).otlp, "http://collector:4318");
  for (const auto& man : r.value()) {
    auto back = FromJson(ToJson(man));
    ASSERT_TRUE(back.ok()) << back.status().message();
    EXPECT_EQ(ToJson(back.value()), ToJson(man));
  }
  const std::pair<const char*, const char*> bad[] = {
      {"{sampling: 1.5, otlp: 'http://c:4318'}", "spec.tracing.sampling \"1.5\""},
      {"{sampling: -0.1, otlp: 'http://c:4318'}", "spec.tracing.sampling"},
      {"{sampling: 1%, otlp: 'http://c:4318'}", "spec.tracing.sampling"},
      {"{sampling: 0.5}", "spec.tracing.otlp: required"},
      {"{otlp: 'https://c:4318'}", "https collectors are not supported"},
      {"{otlp: 'http://c'}", "with a port"},
      {"{otlp: 'http://c:99999'}", "1 to 65535"},
      {"{otlp: 'c:4318'}", "expected http://"},
      {"{otlp: 'http://c:4318/?q'}", "no spaces"},
      {"{otlp: 'http://c:4318', format: xml}", "spec.tracing.format"},
      {"{otlp: {endpoint: 'http://c:4318', format: json}, format: json}", "give the format once"},
      {"{otlp: 'http://c:4318', sample: 1}", "spec.tracing"},
      {"{enabled: maybe, otlp: 'http://c:4318'}", "spec.tracing.enabled"},
  };
  for (const auto& [tracing, want] : bad) {
    const std::string e =
        Error(std::string("kind: Telemetry\nmetadata: {name: a}\nspec: {service: a, tracing: ") +
              tracing + "}\n");
    EXPECT_NE(e.find(want), std::string::npos) << tracing << ": " << e;
  }
  // Naming a collector turns tracing on, over a mesh-wide enabled: false.
  Tracing off;
  off.enabled = false;
  EXPECT_TRUE(off.Merge(b.tracing).active());
  EXPECT_NE(Error("kind: Telemetry\nmetadata: {name: a}\nspec: {tracing: {otlp: 'http://c:1'}}\n")
                .find("spec.service: missing"),
            std::string::npos);
  EXPECT_NE(Error("kind: Telemetry\nmetadata: {name: a}\nspec: {service: a}\n")
                .find("spec.tracing: missing"),
            std::string::npos);
}

TEST(Manifest, RouteRulesHaveTheirOwnTimeoutAndRetries) {
  auto r = ParseManifests(
      "kind: Route\nmetadata: {name: a}\nspec:\n  service: a\n  rules:\n"
      "    - match: {pathPrefix: /slow}\n      backends: [{service: a}]\n      timeout: 250ms\n"
      "      retries: {attempts: 3, on: [5xx], perTryTimeout: 100ms}\n"
      "    - backends: [{service: a}]\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const auto& rules = std::get<RouteSpec>(r.value()[0].spec).rules;
  EXPECT_EQ(rules[0].timeout_ms, 250);
  ASSERT_TRUE(rules[0].retries.has_value());
  EXPECT_EQ(rules[0].retries->attempts, 3);
  EXPECT_EQ(rules[0].retries->on, std::vector<std::string>{"5xx"});
  EXPECT_EQ(rules[0].retries->per_try_timeout_ms, 100);
  EXPECT_EQ(rules[1].timeout_ms, 0);
  EXPECT_FALSE(rules[1].retries.has_value());
  auto back = FromJson(ToJson(r.value()[0]));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(ToJson(back.value()), ToJson(r.value()[0]));
  const std::string head =
      "kind: Route\nmetadata: {name: a}\nspec:\n  service: a\n  rules:\n"
      "    - backends: [{service: a}]\n";
  EXPECT_NE(
      Error(head + "      retries: {budget: {percent: 50}}\n").find("spec.rules[0].retries.budget"),
      std::string::npos);
  EXPECT_NE(
      Error(head + "      retries: {on: [refused-stream]}\n").find("spec.rules[0].retries.on[0]"),
      std::string::npos);
  EXPECT_NE(Error(head + "      timeout: 0s\n").find("spec.rules[0].timeout"), std::string::npos);
}

TEST(Manifest, ConsistentHashingPolicies) {
  auto r = ParseManifests(
      "kind: TrafficPolicy\nmetadata: {name: a}\nspec:\n  loadBalancer: {policy: ring_hash, hash: "
      "{cookie: {name: s, ttl: 30m}}, ringPoints: 200}\n---\n"
      "kind: TrafficPolicy\nmetadata: {name: b}\nspec:\n  loadBalancer: {policy: maglev, hash: "
      "{header: X-Tenant}}\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const auto& a = std::get<TrafficPolicySpec>(r.value()[0].spec);
  EXPECT_EQ(a.lb, "ring_hash");
  EXPECT_EQ(a.hash.cookie, "s");
  EXPECT_EQ(a.hash.cookie_ttl_ms, 1800000);
  EXPECT_EQ(a.hash.ring_points, 200u);
  const auto& b = std::get<TrafficPolicySpec>(r.value()[1].spec);
  EXPECT_EQ(b.hash.header, "x-tenant");
  EXPECT_EQ(b.hash.table_size, 65537u);
  for (const auto& m : r.value()) {
    auto back = FromJson(ToJson(m));
    ASSERT_TRUE(back.ok()) << back.status().message();
    EXPECT_EQ(ToJson(back.value()), ToJson(m));
  }
  for (const auto& [bad, field] : std::vector<std::pair<std::string, std::string>>{
           {"{lb: maglev}", "spec.loadBalancer.hash"},
           {"{loadBalancer: {policy: ring_hash}}", "spec.loadBalancer.hash"},
           {"{loadBalancer: {policy: ewma, hash: {sourceIp: true}}}", "spec.loadBalancer.hash"},
           {"{loadBalancer: {policy: maglev, hash: {sourceIp: true}, tableSize: 100}}", "a prime"},
           {"{loadBalancer: {policy: maglev, hash: {sourceIp: true}, ringPoints: 100}}",
            "spec.loadBalancer.ringPoints"},
           {"{loadBalancer: {policy: ring_hash, hash: {}}}", "exactly one"}}) {
    const std::string e = Error("kind: TrafficPolicy\nmetadata: {name: a}\nspec: " + bad + "\n");
    EXPECT_NE(e.find(field), std::string::npos) << bad << ": " << e;
  }
}

TEST(Manifest, SlowStart) {
  auto r = ParseManifests(
      "kind: TrafficPolicy\nmetadata: {name: a}\nspec:\n  loadBalancer: {policy: least_request, "
      "slowStart: {window: 30s, aggression: 2, minWeightPercent: 5}}\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const auto& tp = std::get<TrafficPolicySpec>(r.value()[0].spec);
  EXPECT_EQ(tp.slow_start_ms, 30000);
  EXPECT_EQ(tp.slow_start_aggression, 2.0);
  EXPECT_EQ(tp.slow_start_min_weight_percent, 5u);
  auto back = FromJson(ToJson(r.value()[0]));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(ToJson(back.value()), ToJson(r.value()[0]));
  for (const auto& [bad, field] : std::vector<std::pair<std::string, std::string>>{
           {"{slowStart: {}}", "slowStart.window"},
           {"{slowStart: {window: 100ms}}", "slowStart.window"},
           {"{slowStart: {window: 10s, aggression: 0}}", "slowStart.aggression"},
           {"{slowStart: {window: 10s, minWeightPercent: 0}}", "slowStart.minWeightPercent"},
           {"{policy: maglev, hash: {sourceIp: true}, slowStart: {window: 10s}}",
            "spec.loadBalancer.slowStart"}}) {
    const std::string e =
        Error("kind: TrafficPolicy\nmetadata: {name: a}\nspec:\n  loadBalancer: " + bad + "\n");
    EXPECT_NE(e.find(field), std::string::npos) << bad << ": " << e;
  }
}

TEST(Manifest, ZoneAwarenessIsOnUnlessTurnedOff) {
  auto r = ParseManifests(
      "kind: TrafficPolicy\nmetadata: {name: a}\nspec: {}\n---\n"
      "kind: TrafficPolicy\nmetadata: {name: b}\nspec:\n  loadBalancer: {zoneAware: false}\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(std::get<TrafficPolicySpec>(r.value()[0].spec).zone_aware);
  EXPECT_FALSE(std::get<TrafficPolicySpec>(r.value()[1].spec).zone_aware);
  auto back = FromJson(ToJson(r.value()[1]));
  ASSERT_TRUE(back.ok());
  EXPECT_FALSE(std::get<TrafficPolicySpec>(back.value().spec).zone_aware);
  const std::string e = Error(
      "kind: TrafficPolicy\nmetadata: {name: a}\nspec:\n  loadBalancer: {policy: maglev, hash: "
      "{sourceIp: true}, zoneAware: true}\n");
  EXPECT_NE(e.find("spec.loadBalancer.zoneAware"), std::string::npos) << e;
}

TEST(Manifest, RetriableStatusCodesAreAtMostSixteen) {
  std::string sixteen, seventeen;
  for (int c = 500; c < 516; ++c) sixteen += (sixteen.empty() ? "" : ", ") + std::to_string(c);
  seventeen = sixteen + ", 516";
  const std::string head =
      "kind: TrafficPolicy\nmetadata: {name: a}\nspec:\n  retries: {on: [retriable-status-codes], "
      "retriableStatusCodes: [";
  auto ok = ParseManifests(head + sixteen + "]}\n");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(std::get<TrafficPolicySpec>(ok.value()[0].spec).retries.retriable_status_codes.size(),
            16u);
  EXPECT_NE(
      Error(head + seventeen + "]}\n").find("spec.retries.retriableStatusCodes: list 1 to 16"),
      std::string::npos);
}

TEST(Manifest, ErrorsNameDocumentAndField) {
  EXPECT_EQ(Error("kind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 99999}]}\n"),
            "manifest error: document 1 (Service default/a): spec.ports[0].port \"99999\": out of "
            "range (1..65535)");
  EXPECT_EQ(Error("kind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}\n---\n"
                  "kind: Route\nmetadata: {name: r, namespace: shop}\nspec:\n  service: a\n"
                  "  rules: [{backends: [{service: a, weight: x}]}]\n"),
            "manifest error: document 2 (Route shop/r): spec.rules[0].backends[0].weight \"x\": "
            "expected a "
            "non-negative integer");
  EXPECT_EQ(Error("kind: Gateway\nmetadata: {name: a}\nspec: {}\n"),
            "manifest error: document 1: kind \"Gateway\": unknown value (use Service, "
            "TrafficPolicy, Route, "
            "AuthorizationPolicy, Telemetry)");
  EXPECT_EQ(Error("kind: Service\nmetadata: {name: Bad_Name}\nspec: {ports: [{port: 80}]}\n"),
            "manifest error: document 1: metadata.name \"Bad_Name\": use 1-63 lower-case letters, "
            "digits and '-', "
            "starting and ending with a letter or digit");
  EXPECT_NE(Error("kind: TrafficPolicy\nmetadata: {name: a}\nspec: {lb: fastest}\n")
                .find("spec.lb \"fastest\""),
            std::string::npos);
  EXPECT_NE(Error("kind: TrafficPolicy\nmetadata: {name: a}\nspec: {retries: {on: [sometimes]}}\n")
                .find("spec.retries.on[0] \"sometimes\""),
            std::string::npos);
}

// What the proxy cannot honour yet is refused at apply time with the reason,
// never accepted and dropped.
TEST(Manifest, FieldsTheProxyCannotHonourAreRefused) {
  EXPECT_NE(Error("kind: TrafficPolicy\nmetadata: {name: a}\nspec: {retries: {on: [reset, "
                  "refused-stream]}}\n")
                .find("spec.retries.on[1] \"refused-stream\": a stream the upstream refused"),
            std::string::npos);
  EXPECT_NE(Error("kind: TrafficPolicy\nmetadata: {name: a}\nspec: {retries: {on: [5xx], "
                  "retriableStatusCodes: [503]}}\n")
                .find("only with retriable-status-codes"),
            std::string::npos);
  EXPECT_NE(Error("kind: TrafficPolicy\nmetadata: {name: a}\nspec: {lb: random, loadBalancer: "
                  "{policy: ewma}}\n")
                .find("not both"),
            std::string::npos);
  EXPECT_NE(Error("kind: TrafficPolicy\nmetadata: {name: a}\nspec: {loadBalancer: {policy: "
                  "random, decay: 1s}}\n")
                .find("spec.loadBalancer.decay: only for policy: ewma"),
            std::string::npos);
  EXPECT_NE(
      Error("kind: TrafficPolicy\nmetadata: {name: a}\nspec: {retries: {perTryTimeout: 0s}}\n")
          .find("spec.retries.perTryTimeout: use more than 0"),
      std::string::npos);
  EXPECT_NE(Error("kind: TrafficPolicy\nmetadata: {name: a}\nspec: {retries: {attempts: 6}}\n")
                .find("spec.retries.attempts"),
            std::string::npos)
      << "the same limit as the proxy's";
  EXPECT_NE(Error("kind: Route\nmetadata: {name: a}\nspec: {service: s, rules: [{backends: "
                  "[{service: b, weight: 0}]}]}\n")
                .find("needs at least one backend with a weight above 0"),
            std::string::npos);
  EXPECT_NE(Error("kind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {service: s, rules: "
                  "[{action: allow, from: [frontend]}]}\n")
                .find("use a SPIFFE ID"),
            std::string::npos);
  EXPECT_NE(Error("kind: Service\nmetadata: {name: a}\nspec: {portz: []}\n")
                .find("spec.portz: unknown field"),
            std::string::npos);
  EXPECT_NE(Error("kind: [\n").find("manifest error: line"), std::string::npos);
}

TEST(Manifest, ServiceMeshProtocol) {
  auto r = ParseManifests(
      "kind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}], meshProtocol: http1}\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(std::get<ServiceSpec>(r.value()[0].spec).mesh_protocol, "http1");
  EXPECT_NE(ToJson(r.value()[0]).find("\"meshProtocol\":\"http1\""), std::string::npos);
  r = ParseManifests("kind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}\n");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(std::get<ServiceSpec>(r.value()[0].spec).mesh_protocol, "http2") << "the default";
  EXPECT_NE(Error("kind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}], "
                  "meshProtocol: spdy}\n")
                .find("spec.meshProtocol"),
            std::string::npos);
}

TEST(Manifest, ServicePortProtocols) {
  auto r = ParseManifests(
      "kind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 50051, protocol: grpc}, "
      "{port: 8443, protocol: http2}, {port: 80, protocol: http}, {port: 5432, protocol: tcp}, "
      "{port: 81}]}\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const auto& svc = std::get<ServiceSpec>(r.value()[0].spec);
  ASSERT_EQ(svc.ports.size(), 5u);
  EXPECT_EQ(svc.ports[0].protocol, "grpc");
  EXPECT_EQ(svc.ports[1].protocol, "http2");
  EXPECT_EQ(svc.ports[2].protocol, "http");
  EXPECT_EQ(svc.ports[3].protocol, "tcp");
  EXPECT_EQ(svc.ports[4].protocol, "http") << "the default";
  // And back through the JSON the server stores.
  auto back = FromJson(ToJson(r.value()[0]));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(std::get<ServiceSpec>(back.value().spec).ports[0].protocol, "grpc");

  EXPECT_EQ(
      Error("kind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 1, protocol: http3}]}\n"),
      "manifest error: document 1 (Service default/a): spec.ports[0].protocol \"http3\": unknown "
      "value (use http, http2, grpc, tcp)");
}

TEST(Manifest, ListsAreBounded) {
  // 300 backends, and a rules list that repeats a 200-backend rule through a
  // YAML alias: both refused by the per-list bound, not parsed at length.
  std::string many =
      "kind: Route\nmetadata: {name: r}\nspec:\n  service: s\n  rules: [{backends: [";
  for (int i = 0; i < 300; ++i) many += "{service: b}, ";
  many += "]}]\n";
  EXPECT_NE(Error(many).find("spec.rules[0].backends: too many items (at most 256)"),
            std::string::npos);
  std::string bomb =
      "kind: Route\nmetadata: {name: r}\nspec:\n  service: s\n  rules:\n    - &r {backends: [";
  for (int i = 0; i < 200; ++i) bomb += "{service: b}, ";
  bomb += "]}\n";
  for (int i = 0; i < 300; ++i) bomb += "    - *r\n";
  EXPECT_NE(Error(bomb).find("spec.rules: too many items (at most 256)"), std::string::npos);
}

// Found by the fuzzer: bytes that are not UTF-8 reached the JSON encoder.
TEST(Manifest, InputMustBeUtf8) {
  EXPECT_EQ(Error("kind: Route\nmetadata: {name: r}\nspec: {service: s, rules: [{match: {headers: "
                  "{x: \"\xff\"}}, "
                  "backends: [{service: b}]}]}\n"),
            "manifest error: not valid UTF-8 (byte 82): manifests are UTF-8 text");
  auto ok = ParseManifests(
      "kind: Route\nmetadata: {name: r}\nspec: {service: s, rules: [{match: {headers: "
      "{x: \"caf\u00e9 \\xff\"}}, backends: [{service: b}]}]}\n");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(FromJson(ToJson(ok.value()[0])).ok(), true);
}

// Found by the fuzzer: a NUL in a plain scalar came out of the YAML reader
// as a byte that is not UTF-8, and the JSON encoder threw.
TEST(Manifest, ControlCharactersAreRefused) {
  EXPECT_EQ(Error(std::string("kind: Route\nmetadata: {name: r}\nspec: {service: s\0x}\n", 53)),
            "manifest error: control character 0x00 at byte 49: manifests are printable text");
  EXPECT_NE(Error("kind: Route\nmetadata: {name: \x1b[31mr}\n").find("control character 0x1b"),
            std::string::npos);
  // Tabs, line feeds and carriage returns are text.
  EXPECT_TRUE(
      ParseManifests(
          "kind: TrafficPolicy\r\nmetadata: {name: a}\r\nspec: {retries: {attempts: 1}}\t\r\n")
          .ok());
}

TEST(Manifest, HeaderMatchesAndDocumentCountAreBounded) {
  std::string headers =
      "kind: Route\nmetadata: {name: r}\nspec: {service: s, rules: [{match: {headers: {";
  for (int i = 0; i < 33; ++i) headers += "h" + std::to_string(i) + ": v, ";
  headers += "}}, backends: [{service: b}]}]}\n";
  EXPECT_NE(Error(headers).find("spec.rules[0].match.headers: too many headers (at most 32)"),
            std::string::npos);
  std::string docs;
  for (int i = 0; i < 1001; ++i)
    docs += "kind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 1}]}\n---\n";
  EXPECT_EQ(Error(docs), "manifest error: too many documents: at most 1000 in one request");
}

// Found by the fuzzer: yaml-cpp's LoadAll never returned on a document
// whose first token is ',' (memory grew without end); each of these must
// come back at once with a line-numbered error.
TEST(Manifest, StrayLeadingCommaIsAnErrorNotAHang) {
  for (const char* text :
       {",\n", "--- ,\n", "&x ,\n", "\t,\n", "...\n,\n", "# c\n  ,\n",
        "kind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 1}]}\n---\n,\n"}) {
    const std::string e = Error(text);
    EXPECT_EQ(e.rfind("manifest error: line ", 0), 0u) << text << " -> " << e;
  }
  // The line is counted in the whole stream, not in its document (yaml-cpp
  // names the line after an unclosed list).
  EXPECT_EQ(Error("kind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 1}]}\n---\n"
                  "kind: [\n")
                .rfind("manifest error: line 6", 0),
            0u);
}

TEST(Manifest, DocumentMarkersSplitTheStream) {
  auto r = ParseManifests(
      "%YAML 1.2\n--- # first\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 1}]}\n"
      "...\n# between\n--- {kind: Service, metadata: {name: b}, spec: {ports: [{port: 2}]}}\n"
      "---\nkind: Service\nmetadata:\n  name: c\nspec:\n  ports:\n  - port: 3\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r.value().size(), 3u);
  EXPECT_EQ(r.value()[0].name, "a");
  EXPECT_EQ(r.value()[1].name, "b");
  EXPECT_EQ(r.value()[2].name, "c");
}

TEST(Manifest, EmptyDocumentsAreSkipped) {
  auto r = ParseManifests(
      "---\n---\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 1}]}\n---\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r.value().size(), 1u);
}

}  // namespace
TEST(Manifest, RouteFaultsAreParsedCheckedAndWrittenBack) {
  auto r = ParseManifests(
      "kind: Route\nmetadata: {name: r}\nspec:\n  service: r\n  rules:\n"
      "    - backends: [{service: r}]\n"
      "      fault: {delay: {fixed: 20ms, percent: 12.5}, abort: {httpStatus: 503, grpcStatus: "
      "14, percent: 1}}\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const FaultSpec& f = std::get<RouteSpec>(r.value()[0].spec).rules[0].fault;
  EXPECT_EQ(f.delay_ms, 20);
  EXPECT_DOUBLE_EQ(f.delay_percent, 12.5);
  EXPECT_EQ(f.abort_http_status, 503);
  EXPECT_EQ(f.abort_grpc_status, 14);
  EXPECT_DOUBLE_EQ(f.abort_percent, 1);
  const std::string head =
      "kind: Route\nmetadata: {name: r}\nspec:\n  service: r\n  rules:\n"
      "    - backends: [{service: r}]\n      fault: ";
  EXPECT_NE(Error(head + "{delay: {percent: 5}}\n").find("spec.rules[0].fault.delay.fixed"),
            std::string::npos);
  EXPECT_NE(
      Error(head + "{abort: {httpStatus: 99}}\n").find("spec.rules[0].fault.abort.httpStatus"),
      std::string::npos);
  EXPECT_NE(Error(head + "{abort: {httpStatus: 503, percent: 101}}\n")
                .find("spec.rules[0].fault.abort.percent"),
            std::string::npos);
  EXPECT_NE(Error(head + "{}\n").find("needs delay, abort or both"), std::string::npos);
}

TEST(Manifest, RouteMirrorIsParsedCheckedAndWrittenBack) {
  auto r = ParseManifests(
      "kind: Route\nmetadata: {name: r}\nspec:\n  service: r\n  rules:\n"
      "    - backends: [{service: r}]\n      mirror: {service: r-v2, percent: 2.5}\n"
      "    - backends: [{service: r}]\n      mirror: {service: r-v3}\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const auto& rules = std::get<RouteSpec>(r.value()[0].spec).rules;
  EXPECT_EQ(rules[0].mirror.service, "r-v2");
  EXPECT_DOUBLE_EQ(rules[0].mirror.percent, 2.5);
  EXPECT_DOUBLE_EQ(rules[1].mirror.percent, 100) << "every request by default";
  auto back = ParseManifests(ToJson(r.value()[0]));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(std::get<RouteSpec>(back.value()[0].spec).rules[0].mirror.service, "r-v2");
  const std::string head =
      "kind: Route\nmetadata: {name: r}\nspec:\n  service: r\n  rules:\n"
      "    - backends: [{service: r}]\n      mirror: ";
  EXPECT_NE(Error(head + "{percent: 5}\n").find("spec.rules[0].mirror.service: missing"),
            std::string::npos);
  EXPECT_NE(Error(head + "{service: r}\n").find("the route's own service"), std::string::npos);
  EXPECT_NE(Error(head + "{service: x, percent: 0}\n").find("spec.rules[0].mirror.percent"),
            std::string::npos);
  EXPECT_NE(Error(head + "{service: x, percent: 100.5}\n").find("spec.rules[0].mirror.percent"),
            std::string::npos);
  EXPECT_NE(Error(head + "{service: x, host: y}\n").find("spec.rules[0].mirror.host"),
            std::string::npos);
}

}  // namespace weft::mesh
