#include "control/compiler.h"

#include <gtest/gtest.h>

namespace weft::control {
namespace {

using json = nlohmann::json;

class CompilerTest : public ::testing::Test {
 protected:
  void Put(const std::string& node, const json& body) {
    mesh::Node n;
    if (const mesh::Node* cur = catalog_.FindNode(node)) n = *cur;
    ASSERT_TRUE(mesh::ApplyRegistration(body, mesh::CatalogLimits{}, &n).ok()) << body.dump();
    std::string doc = mesh::NodeToJson(n);
    catalog_.Apply(node, &doc, ++rev_, rev_);
  }
  void Register(const std::string& node, const std::string& svc, const std::string& id, int port) {
    Put(node, {{"Node", node},
               {"Address", "127.0.0.1"},
               {"Service", {{"Service", svc}, {"ID", id}, {"Port", port}}}});
  }
  void Apply(const std::string& yaml) {
    auto m = mesh::ParseManifests(yaml);
    ASSERT_TRUE(m.ok()) << m.status().message();
    for (const auto& x : m.value()) {
      std::string j = mesh::ToJson(x);
      config_.Apply(ConfigKey(x.kind, x.ns, x.name), &j, ++rev_, rev_);
    }
  }
  void Changed(bool config = false) {
    compiler_.Invalidate(catalog_.TakeChangedServices(), catalog_.TakeChangedNodes(), config);
  }
  void Sidecar() {
    Put("web-node", json::parse(R"({"Node":"web-node","Address":"127.0.0.1","Service":{
        "Service":"web-sidecar","ID":"web-sc","Kind":"connect-proxy","Port":15001,
        "Proxy":{"DestinationServiceName":"web","LocalServicePort":8080,
                 "Upstreams":[{"DestinationName":"reviews","LocalBindPort":9001}]}}})"));
  }
  const v1::Resource* Find(const SnapshotPtr& s, const std::string& key) {
    auto it = s->resources.find(key);
    return it == s->resources.end() ? nullptr : it->second.get();
  }

  mesh::CatalogView catalog_;
  ConfigView config_;
  Compiler compiler_{catalog_, config_};
  int64_t rev_ = 0;
  Identity web_{"proxy", "web", "default", ""};
};

TEST_F(CompilerTest, ProxySnapshotFromRegistrationCatalogAndConfig) {
  Register("a", "reviews", "r1", 7001);
  Register("b", "reviews", "r2", 7002);
  Sidecar();
  SnapshotPtr s = compiler_.Get(web_);
  ASSERT_NE(Find(s, "listener/inbound"), nullptr);
  EXPECT_EQ(Find(s, "listener/inbound")->listener().address(), "127.0.0.1:15001");
  const auto* up = Find(s, "listener/upstream_reviews");
  ASSERT_NE(up, nullptr);
  EXPECT_EQ(up->listener().address(), "127.0.0.1:9001");
  const auto* eps = Find(s, "endpoints/reviews");
  ASSERT_NE(eps, nullptr);
  ASSERT_EQ(eps->endpoints().endpoints_size(), 2);
  EXPECT_EQ(eps->endpoints().endpoints(0).address(), "127.0.0.1:7001");
  EXPECT_EQ(Find(s, "endpoints/local_app")->endpoints().endpoints(0).address(), "127.0.0.1:8080");

  // A Route splits traffic; its backends become clusters.
  Register("c", "reviews-v2", "v2", 7003);
  Apply(R"(kind: Route
metadata: {name: reviews}
spec:
  service: reviews
  rules:
    - backends: [{service: reviews, weight: 90}, {service: reviews-v2, weight: 10}]
)");
  Changed(true);
  auto changed = compiler_.TakeChanged();
  ASSERT_EQ(changed.size(), 1u);
  s = changed[0].second;
  const auto& rt = Find(s, "route/upstream_reviews")->route();
  ASSERT_EQ(rt.routes_size(), 1);  // the rule is a catch-all: no default appended
  ASSERT_EQ(rt.routes(0).clusters_size(), 2);
  EXPECT_EQ(rt.routes(0).clusters(1).cluster(), "reviews-v2");
  EXPECT_EQ(rt.routes(0).clusters(1).weight(), 10u);
  EXPECT_NE(Find(s, "endpoints/reviews-v2"), nullptr);
}

TEST_F(CompilerTest, RecompilesOnlyWhatAChangeTouches) {
  Register("a", "reviews", "r1", 7001);
  Sidecar();
  SnapshotPtr first = compiler_.Get(web_);
  Changed();
  EXPECT_TRUE(compiler_.TakeChanged().empty());

  // An unrelated service: no push.
  Register("z", "unrelated", "u1", 1);
  Changed();
  EXPECT_TRUE(compiler_.TakeChanged().empty());

  // An upstream instance: a new snapshot where only the endpoints moved.
  Register("b", "reviews", "r2", 7002);
  Changed();
  auto changed = compiler_.TakeChanged();
  ASSERT_EQ(changed.size(), 1u);
  SnapshotPtr second = changed[0].second;
  EXPECT_NE(second->version, first->version);
  EXPECT_EQ(Find(second, "listener/inbound")->version(),
            Find(first, "listener/inbound")->version());
  EXPECT_EQ(Find(second, "cluster/reviews")->version(), Find(first, "cluster/reviews")->version());
  EXPECT_NE(Find(second, "endpoints/reviews")->version(),
            Find(first, "endpoints/reviews")->version());

  // A config change that compiles to the same snapshot pushes nothing.
  Apply("kind: Service\nmetadata: {name: unrelated}\nspec: {ports: [{port: 1}]}\n");
  Changed(true);
  EXPECT_TRUE(compiler_.TakeChanged().empty());
}

TEST_F(CompilerTest, UnhealthyInstancesAndSidecarsShapeEndpoints) {
  Register("a", "reviews", "r1", 7001);
  Register("b", "reviews", "r2", 7002);
  Sidecar();
  Put("b",
      json::parse(
          R"({"Node":"b","Address":"127.0.0.1","Check":{"Name":"c","Status":"critical","ServiceID":"r2"}})"));
  // r1 has a sidecar of its own: traffic to r1 enters through it.
  Put("a",
      json::parse(
          R"({"Node":"a","Address":"127.0.0.1","Service":{"Service":"reviews-sidecar","ID":"r1-sc",
      "Kind":"connect-proxy","Port":15002,"Proxy":{"DestinationServiceName":"reviews","DestinationServiceID":"r1",
      "LocalServicePort":7001}}})"));
  SnapshotPtr s = compiler_.Get(web_);
  const auto& eps = Find(s, "endpoints/reviews")->endpoints();
  ASSERT_EQ(eps.endpoints_size(), 1);
  EXPECT_EQ(eps.endpoints(0).address(), "127.0.0.1:15002");
}

TEST_F(CompilerTest, AnInstanceWithAnUnusableAddressIsLeftOutNotTheWholeUpdate) {
  Register("a", "reviews", "r1", 7001);
  Sidecar();
  // A document stored before registrations were checked (the API now
  // refuses this address: see the registration test below).
  mesh::Node bad;
  bad.name = "b";
  bad.address = "10.0.0.1\r\nx";
  mesh::ServiceInstance inst;
  inst.id = "r2";
  inst.service = "reviews";
  inst.port = 7002;
  bad.services["r2"] = inst;
  std::string doc = mesh::NodeToJson(bad);
  catalog_.Apply("b", &doc, ++rev_, rev_);
  SnapshotPtr s = compiler_.Get(web_);
  const auto& eps = Find(s, "endpoints/reviews")->endpoints();
  ASSERT_EQ(eps.endpoints_size(), 1);
  EXPECT_EQ(eps.endpoints(0).address(), "127.0.0.1:7001");
  EXPECT_EQ(compiler_.skipped_endpoints(), 1u);
  mesh::Node n;
  for (const char* addr : {"10.0.0.1\r\nx", "a b", "-x.example", "x..y", "unix:/run/x.sock", ""}) {
    Status st =
        mesh::ApplyRegistration({{"Node", "c"}, {"Address", addr}}, mesh::CatalogLimits{}, &n);
    EXPECT_FALSE(st.ok()) << addr;
  }
  for (const char* addr : {"10.0.0.1", "::1", "fd00::2", "db-1.example.com", "host_1"}) {
    mesh::Node ok;
    EXPECT_TRUE(
        mesh::ApplyRegistration({{"Node", "c"}, {"Address", addr}}, mesh::CatalogLimits{}, &ok)
            .ok())
        << addr;
  }
  Status st = mesh::ApplyRegistration(
      {{"Node", "c"}, {"Address", "10.0.0.1"}, {"Service", {{"Service", "x"}, {"Address", "x y"}}}},
      mesh::CatalogLimits{}, &n);
  EXPECT_FALSE(st.ok());
}

TEST_F(CompilerTest, UnregisteredProxyGetsAnEmptySnapshot) {
  SnapshotPtr s = compiler_.Get(web_);
  EXPECT_TRUE(s->resources.empty());
  Register("a", "reviews", "r1", 7001);
  Sidecar();
  Changed();
  auto changed = compiler_.TakeChanged();
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_FALSE(changed[0].second->resources.empty());
}

TEST_F(CompilerTest, CatalogSnapshotPatchesNodes) {
  Register("a", "x", "x1", 1);
  Identity agent{"catalog", "", "default", ""};
  SnapshotPtr s = compiler_.Get(agent);
  EXPECT_EQ(s->resources.size(), 1u);
  Register("b", "y", "y1", 2);
  Changed();
  auto changed = compiler_.TakeChanged();
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0].second->resources.size(), 2u);
  EXPECT_EQ(changed[0].second->resources.at("node/a")->version(),
            s->resources.at("node/a")->version());
}

ResourcePtr Bundle(const std::string& td) {
  v1::Resource r;
  r.set_type("bundle");
  r.set_name("roots");
  r.mutable_bundle()->set_trust_domain(td);
  r.mutable_bundle()->add_roots_pem("root");
  r.set_version(ResourceVersion(r));
  return std::make_shared<const v1::Resource>(std::move(r));
}

TEST_F(CompilerTest, BundleReachesProxiesAndCatalogClientsWhateverHappenedBefore) {
  compiler_.SetBundle(Bundle("weft.local"));
  // Changes with no catalog client subscribed must not lose the bundle.
  Register("a", "reviews", "r1", 7001);
  Changed();
  Identity agent{"agent", "", "default", ""};
  SnapshotPtr cat = compiler_.Get(agent);
  ASSERT_NE(Find(cat, "bundle/roots"), nullptr);
  EXPECT_EQ(Find(cat, "bundle/roots")->bundle().trust_domain(), "weft.local");
  Sidecar();
  SnapshotPtr s = compiler_.Get(web_);
  ASSERT_NE(Find(s, "bundle/roots"), nullptr);
  // A new bundle (root rotation) reaches both.
  compiler_.SetBundle(Bundle("weft.local2"));
  auto changed = compiler_.TakeChanged();
  EXPECT_EQ(changed.size(), 2u);
  EXPECT_EQ(Find(compiler_.Get(web_), "bundle/roots")->bundle().trust_domain(), "weft.local2");
}

TEST_F(CompilerTest, SecretOnlyInItsOwnServicesSnapshot) {
  Sidecar();
  v1::Resource r;
  r.set_type("secret");
  r.set_name("workload");
  r.mutable_secret()->set_spiffe_id("spiffe://weft.local/ns/default/sa/web");
  r.set_version(ResourceVersion(r));
  compiler_.Get(web_);
  compiler_.SetSecret("default", "web", std::make_shared<const v1::Resource>(r));
  auto changed = compiler_.TakeChanged();
  ASSERT_EQ(changed.size(), 1u);
  ASSERT_NE(Find(changed[0].second, "secret/workload"), nullptr);
  Identity other{"proxy", "reviews", "default", ""};
  EXPECT_EQ(Find(compiler_.Get(other), "secret/workload"), nullptr);
}

TEST_F(CompilerTest, InboundIsStrictByDefaultAndEndpointsBehindSidecarsSpeakMtls) {
  Register("a", "reviews", "r1", 7001);
  Register("b", "reviews", "r2", 7002);
  Put("a", json::parse(R"({"Node":"a","Address":"127.0.0.1","Service":{
      "Service":"reviews-sidecar","ID":"r1-sc","Kind":"connect-proxy","Port":17001,
      "Proxy":{"DestinationServiceName":"reviews","DestinationServiceID":"r1","LocalServicePort":7001}}})"));
  Sidecar();
  SnapshotPtr s = compiler_.Get(web_);
  EXPECT_EQ(Find(s, "listener/inbound")->listener().mtls(), "strict");
  // reviews runs behind a sidecar and is strict by default: r2, registered
  // without one, is left out rather than dialled in plaintext.
  const auto& strict_eps = Find(s, "endpoints/reviews")->endpoints().endpoints();
  ASSERT_EQ(strict_eps.size(), 1);
  EXPECT_EQ(strict_eps[0].address(), "127.0.0.1:17001");
  EXPECT_TRUE(strict_eps[0].mtls());
  EXPECT_EQ(compiler_.sidecarless_skipped(), 1u);
  // permissive: r2 is reached directly, r1 through its sidecar.
  Apply(
      "kind: Service\nmetadata: {name: reviews}\nspec:\n  ports: [{port: 7001}]\n  mtls: "
      "permissive\n");
  Changed(true);
  compiler_.TakeChanged();
  s = compiler_.Get(web_);
  const auto& eps = Find(s, "endpoints/reviews")->endpoints().endpoints();
  ASSERT_EQ(eps.size(), 2);
  for (const auto& e : eps) EXPECT_EQ(e.mtls(), e.address() == "127.0.0.1:17001") << e.address();
  Apply("kind: Service\nmetadata: {name: web}\nspec:\n  ports: [{port: 80}]\n  mtls: permissive\n");
  Changed(true);
  compiler_.TakeChanged();
  EXPECT_EQ(Find(compiler_.Get(web_), "listener/inbound")->listener().mtls(), "permissive");
}

// Listeners speak "http" for every HTTP version; clusters say which one
// their endpoints speak: http2 for http2 and grpc services.
TEST_F(CompilerTest, ClusterProtocolFollowsTheServicePort) {
  Register("a", "reviews", "r1", 7001);
  Sidecar();
  SnapshotPtr s = compiler_.Get(web_);
  EXPECT_EQ(Find(s, "listener/inbound")->listener().protocol(), "http");
  EXPECT_EQ(Find(s, "cluster/local_app")->cluster().protocol(), "http") << "no Service: http";
  EXPECT_EQ(Find(s, "cluster/reviews")->cluster().protocol(), "http");

  Apply(
      "kind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 8080, protocol: grpc}]}\n"
      "---\n"
      "kind: Service\nmetadata: {name: reviews}\nspec: {ports: [{port: 7001, protocol: http2}]}\n");
  Changed(true);
  compiler_.TakeChanged();
  s = compiler_.Get(web_);
  const auto& inbound = Find(s, "listener/inbound")->listener();
  EXPECT_EQ(inbound.protocol(), "http");
  EXPECT_EQ(inbound.route_table(), "inbound");
  EXPECT_EQ(Find(s, "cluster/local_app")->cluster().protocol(), "http2");
  EXPECT_EQ(Find(s, "listener/upstream_reviews")->listener().protocol(), "http");
  EXPECT_EQ(Find(s, "cluster/reviews")->cluster().protocol(), "http2");

  Apply(
      "kind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 8080, protocol: tcp}]}\n"
      "---\n"
      "kind: Service\nmetadata: {name: reviews}\nspec: {ports: [{port: 7001, protocol: http}]}\n");
  Changed(true);
  compiler_.TakeChanged();
  s = compiler_.Get(web_);
  EXPECT_EQ(Find(s, "listener/inbound")->listener().protocol(), "tcp");
  EXPECT_EQ(Find(s, "cluster/local_app")->cluster().protocol(), "tcp");
  EXPECT_EQ(Find(s, "listener/upstream_reviews")->listener().protocol(), "http");
  EXPECT_EQ(Find(s, "cluster/reviews")->cluster().protocol(), "http");
  EXPECT_EQ(Find(s, "cluster/reviews")->cluster().mesh_protocol(), "http2")
      << "HTTP between sidecars rides HTTP/2 unless the Service says otherwise";

  Apply(
      "kind: Service\nmetadata: {name: reviews}\n"
      "spec: {ports: [{port: 7001, protocol: http}], meshProtocol: http1}\n");
  Changed(true);
  compiler_.TakeChanged();
  s = compiler_.Get(web_);
  EXPECT_EQ(Find(s, "cluster/reviews")->cluster().mesh_protocol(), "http1");
}

TEST_F(CompilerTest, TrafficPolicyCompilesOutlierDetectionAndTheInboundRateLimit) {
  Register("a", "reviews", "r1", 7001);
  Sidecar();
  Apply(
      "kind: TrafficPolicy\nmetadata: {name: reviews}\nspec:\n  outlierDetection: "
      "{consecutive5xxErrors: 3, maxEjectionPercent: 50}\n"
      "---\n"
      "kind: TrafficPolicy\nmetadata: {name: web}\nspec:\n  rateLimit: {requestsPerSecond: 100, "
      "burst: 20, perCaller: {requestsPerSecond: 10}}\n"
      "---\n"
      "kind: Route\nmetadata: {name: reviews}\nspec:\n  service: reviews\n  rules:\n"
      "    - backends: [{service: reviews}]\n      rateLimit: {requestsPerSecond: 7}\n");
  Changed(true);
  compiler_.TakeChanged();
  SnapshotPtr s = compiler_.Get(web_);
  const auto& od = Find(s, "cluster/reviews")->cluster().outlier_detection();
  EXPECT_TRUE(od.enabled());
  EXPECT_EQ(od.consecutive_5xx(), 3u);
  EXPECT_EQ(od.max_ejection_percent(), 50u);
  EXPECT_EQ(od.base_ejection_ms(), 30000);
  // web's own policy limits what reaches web: its sidecar's inbound route.
  const auto& in = Find(s, "route/inbound")->route().routes(0).rate_limit();
  EXPECT_EQ(in.requests_per_second(), 100u);
  EXPECT_EQ(in.burst(), 20u);
  EXPECT_EQ(in.per_caller_requests_per_second(), 10u);
  // The Route rule's limit is the caller's outbound route's.
  bool found = false;
  for (const auto& [key, r] : s->resources) {
    if (r->type() != "route" || key == "route/inbound") continue;
    for (const auto& rt : r->route().routes()) {
      if (rt.has_rate_limit()) {
        EXPECT_EQ(rt.rate_limit().requests_per_second(), 7u);
        found = true;
      }
    }
  }
  EXPECT_TRUE(found);
}

TEST_F(CompilerTest, ARouteRulesTimeoutAndRetriesReplaceThePolicysForThatRule) {
  Register("a", "reviews", "r1", 7001);
  Sidecar();
  Apply(
      "kind: TrafficPolicy\nmetadata: {name: reviews}\nspec:\n  requestTimeout: 5s\n"
      "  retries: {attempts: 2, on: [reset]}\n"
      "---\n"
      "kind: Route\nmetadata: {name: reviews}\nspec:\n  service: reviews\n  rules:\n"
      "    - match: {pathPrefix: /slow}\n      backends: [{service: reviews}]\n"
      "      timeout: 300ms\n      retries: {attempts: 0}\n"
      "    - backends: [{service: reviews}]\n");
  Changed(true);
  compiler_.TakeChanged();
  SnapshotPtr s = compiler_.Get(web_);
  const v1::Route* slow = nullptr;
  const v1::Route* rest = nullptr;
  for (const auto& [key, r] : s->resources) {
    if (r->type() != "route" || key == "route/inbound") continue;
    for (const auto& rt : r->route().routes()) (rt.prefix() == "/slow" ? slow : rest) = &rt;
  }
  ASSERT_NE(slow, nullptr);
  ASSERT_NE(rest, nullptr);
  EXPECT_EQ(slow->timeout_ms(), 300);
  EXPECT_EQ(slow->retry().attempts(), 0u);
  EXPECT_EQ(slow->retry().on_size(), 0);
  EXPECT_EQ(rest->timeout_ms(), 5000);
  EXPECT_EQ(rest->retry().attempts(), 2u);
  EXPECT_EQ(rest->retry().on(0), "reset");
}

TEST_F(CompilerTest, ClustersCarryTheCallersZoneUnlessZoneAwarenessIsOff) {
  Put("a", {{"Node", "a"},
            {"Address", "127.0.0.1"},
            {"Zone", "z1"},
            {"Service", {{"Service", "reviews"}, {"ID", "r1"}, {"Port", 7001}}}});
  Put("b",
      {{"Node", "b"},
       {"Address", "127.0.0.1"},
       {"Service",
        {{"Service", "reviews"}, {"ID", "r2"}, {"Port", 7002}, {"Locality", {{"Zone", "z2"}}}}}});
  Put("web-node", json::parse(R"({"Node":"web-node","Address":"127.0.0.1","Zone":"z1","Service":{
        "Service":"web-sidecar","ID":"web-sc","Kind":"connect-proxy","Port":15001,
        "Proxy":{"DestinationServiceName":"web","LocalServicePort":8080,
                 "Upstreams":[{"DestinationName":"reviews","LocalBindPort":9001}]}}})"));
  SnapshotPtr s = compiler_.Get(web_);
  EXPECT_EQ(Find(s, "cluster/reviews")->cluster().local_zone(), "z1");
  std::map<std::string, std::string> zones;
  for (const auto& e : Find(s, "endpoints/reviews")->endpoints().endpoints())
    zones[e.instance_id()] = e.zone();
  EXPECT_EQ(zones, (std::map<std::string, std::string>{{"r1", "z1"}, {"r2", "z2"}}));
  Apply(
      "kind: TrafficPolicy\nmetadata: {name: reviews}\nspec:\n  loadBalancer: {zoneAware: "
      "false}\n");
  Changed(true);
  compiler_.TakeChanged();
  s = compiler_.Get(web_);
  EXPECT_EQ(Find(s, "cluster/reviews")->cluster().local_zone(), "");
}

TEST_F(CompilerTest, PoliciesForTheServiceAndMeshWideOnes) {
  Sidecar();
  Apply(R"(kind: AuthorizationPolicy
metadata: {name: web}
spec: {service: web, default: deny}
---
kind: AuthorizationPolicy
metadata: {name: everyone, namespace: ops}
spec: {service: "*", default: deny}
---
kind: AuthorizationPolicy
metadata: {name: reviews}
spec: {service: reviews}
---
kind: AuthorizationPolicy
metadata: {name: web, namespace: other}
spec: {service: web}
)");
  Changed(true);
  compiler_.TakeChanged();
  SnapshotPtr s = compiler_.Get(web_);
  EXPECT_NE(Find(s, "policy/default/web"), nullptr);
  EXPECT_NE(Find(s, "policy/ops/everyone"), nullptr);
  EXPECT_EQ(Find(s, "policy/default/reviews"), nullptr);
  EXPECT_EQ(Find(s, "policy/other/web"), nullptr);
}

TEST_F(CompilerTest, TelemetryMergesTheMeshWideOnesThenTheServicesOwn) {
  Sidecar();
  EXPECT_EQ(Find(compiler_.Get(web_), "telemetry/mesh"), nullptr);  // none applies
  // Off for the mesh, on for web (which names its collector), sampling
  // from the later mesh-wide one by name; another namespace's web, and
  // another service, do not count.
  Apply(R"(kind: Telemetry
metadata: {name: a, namespace: ops}
spec: {service: "*", tracing: {sampling: 0.5, otlp: "http://c:4318", format: json}}
---
kind: Telemetry
metadata: {name: b, namespace: ops}
spec: {service: "*", tracing: {enabled: false}}
---
kind: Telemetry
metadata: {name: web}
spec: {service: web, tracing: {otlp: "http://web-collector:4318"}}
---
kind: Telemetry
metadata: {name: web, namespace: other}
spec: {service: web, tracing: {sampling: 0.9, otlp: "http://x:1"}}
---
kind: Telemetry
metadata: {name: reviews}
spec: {service: reviews, tracing: {sampling: 0.7, otlp: "http://y:1"}}
)");
  Changed(true);
  compiler_.TakeChanged();
  const auto* t = Find(compiler_.Get(web_), "telemetry/mesh");
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(t->telemetry().tracing());
  EXPECT_EQ(t->telemetry().otlp(), "http://web-collector:4318");
  EXPECT_DOUBLE_EQ(t->telemetry().sampling(), 0.5);
  EXPECT_EQ(t->telemetry().format(), "json");
}

}  // namespace
TEST_F(CompilerTest, TransparentSidecarCapturesEveryServiceByAddressAndHost) {
  Put("a", {{"Node", "a"},
            {"Address", "10.0.0.1"},
            {"Service", {{"Service", "reviews"}, {"ID", "r1"}, {"Port", 9080}}}});
  Put("b", {{"Node", "b"},
            {"Address", "10.0.0.2"},
            {"Service", {{"Service", "redis"}, {"ID", "db"}, {"Port", 6379}}}});
  Apply("kind: Service\nmetadata: {name: redis}\nspec:\n  ports: [{port: 6379, protocol: tcp}]\n");
  Put("web-node", json::parse(R"({"Node":"web-node","Address":"10.0.0.9","Service":{
      "Service":"web-sidecar","ID":"web-sc","Kind":"connect-proxy","Port":21000,
      "Proxy":{"DestinationServiceName":"web","LocalServicePort":8080,"Mode":"transparent",
               "TransparentProxy":{"OutboundListenerPort":15006,"MeshDestinationsOnly":true}}}})"));
  SnapshotPtr s = compiler_.Get(web_);
  const auto* cap = Find(s, "listener/outbound_capture");
  ASSERT_NE(cap, nullptr);
  EXPECT_EQ(cap->listener().address(), "127.0.0.1:15006");
  EXPECT_EQ(cap->listener().protocol(), "capture");
  EXPECT_EQ(cap->listener().egress(), "registry_only");
  const auto* rv = Find(s, "listener/capture_reviews");
  ASSERT_NE(rv, nullptr);
  EXPECT_EQ(rv->listener().capture_of(), "outbound_capture");
  EXPECT_EQ(rv->listener().protocol(), "http");
  ASSERT_EQ(rv->listener().match_addresses_size(), 1);
  EXPECT_EQ(rv->listener().match_addresses(0), "10.0.0.1:9080");
  EXPECT_EQ(rv->listener().match_hosts(1), "reviews.service.weft");
  ASSERT_NE(Find(s, "route/capture_reviews"), nullptr);
  const auto* db = Find(s, "listener/capture_redis");
  ASSERT_NE(db, nullptr);
  EXPECT_EQ(db->listener().protocol(), "tcp");
  EXPECT_EQ(db->listener().cluster(), "redis");
  EXPECT_EQ(Find(s, "listener/capture_web-sidecar"), nullptr);  // sidecars are not destinations

  // A new service anywhere in the catalog reaches the transparent sidecar.
  Put("c", {{"Node", "c"},
            {"Address", "10.0.0.3"},
            {"Service", {{"Service", "ratings"}, {"ID", "ra"}, {"Port", 7000}}}});
  Changed();
  auto changed = compiler_.TakeChanged();
  ASSERT_EQ(changed.size(), 1u);
  const auto* ra = Find(changed[0].second, "listener/capture_ratings");
  ASSERT_NE(ra, nullptr);
  EXPECT_EQ(ra->listener().match_addresses(0), "10.0.0.3:7000");
}

TEST(CatalogProxyMode, ModeAndTransparentProxyAreCheckedAndKept) {
  mesh::Node n;
  auto reg = [&](const std::string& proxy) {
    return mesh::ApplyRegistration(json::parse(R"({"Node":"n","Address":"10.0.0.1","Service":{
        "Service":"web-sidecar","Kind":"connect-proxy","Port":21000,"Proxy":)" +
                                               proxy + "}}"),
                                   mesh::CatalogLimits{}, &n);
  };
  EXPECT_TRUE(reg(R"({"DestinationServiceName":"web","Mode":"transparent"})").ok());
  EXPECT_EQ(n.services.begin()->second.proxy->mode, "transparent");
  EXPECT_EQ(n.services.begin()->second.proxy->outbound_listener_port, 15001u);
  auto bad = reg(R"({"DestinationServiceName":"web","Mode":"sideways"})");
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("Proxy.Mode"), std::string::npos) << bad.message();
  bad =
      reg(R"({"DestinationServiceName":"web","TransparentProxy":{"MeshDestinationsOnly":"yes"}})");
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("MeshDestinationsOnly"), std::string::npos) << bad.message();
  ASSERT_TRUE(reg(R"({"DestinationServiceName":"web","Mode":"transparent",
                      "TransparentProxy":{"OutboundListenerPort":15006,"MeshDestinationsOnly":true}})")
                  .ok());
  // The stored document keeps it (agents sync it to servers).
  auto back = mesh::NodeFromJson(mesh::NodeToJson(n));
  ASSERT_TRUE(back.ok());
  const auto& p = *back->services.begin()->second.proxy;
  EXPECT_EQ(p.outbound_listener_port, 15006u);
  EXPECT_TRUE(p.mesh_destinations_only);
}

}  // namespace weft::control
