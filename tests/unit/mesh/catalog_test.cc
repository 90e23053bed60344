#include "mesh/catalog.h"

#include <gtest/gtest.h>

#include "base/strings.h"

namespace weft::mesh {
namespace {

using json = nlohmann::json;

Node Register(Node n, const json& body) {
  Status s = ApplyRegistration(body, CatalogLimits{}, &n);
  EXPECT_TRUE(s.ok()) << s.message();
  return n;
}

TEST(Catalog, RegistrationBuildsTheNodeDocument) {
  Node n = Register({}, json::parse(R"({"Node":"n1","Address":"10.0.0.1",
      "Service":{"Service":"web","Port":80,"Tags":["a"],"Weights":{"Passing":5,"Warning":1}},
      "Check":{"Name":"http","Status":"passing","ServiceID":"web"}})"));
  EXPECT_EQ(n.name, "n1");
  ASSERT_EQ(n.services.size(), 1u);
  const ServiceInstance& s = n.services.at("web");  // ID defaults to the name
  EXPECT_EQ(s.port, 80u);
  EXPECT_EQ(s.weight_passing, 5u);
  ASSERT_EQ(n.checks.size(), 1u);
  EXPECT_EQ(n.checks.at("http").service_name, "web");
  EXPECT_EQ(InstanceHealth(n, s), "passing");

  // Round trip through the stored form.
  auto back = NodeFromJson(NodeToJson(n));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(NodeToJson(back.value()), NodeToJson(n));
}

TEST(Catalog, CheckStatusDefaultsToCriticalAndWorstWins) {
  Node n = Register(
      {}, json::parse(R"({"Node":"n","Address":"a","Service":{"Service":"s","ID":"s1"}})"));
  n = Register(n,
               json::parse(R"({"Node":"n","Address":"a","Check":{"Name":"c","ServiceID":"s1"}})"));
  EXPECT_EQ(n.checks.at("c").status, "critical");
  EXPECT_EQ(InstanceHealth(n, n.services.at("s1")), "critical");
  n = Register(
      n,
      json::parse(
          R"({"Node":"n","Address":"a","Check":{"Name":"c","ServiceID":"s1","Status":"warning"}})"));
  EXPECT_EQ(InstanceHealth(n, n.services.at("s1")), "warning");
  // A node-level check applies to every instance.
  n = Register(
      n, json::parse(R"({"Node":"n","Address":"a","Check":{"Name":"node","Status":"critical"}})"));
  EXPECT_EQ(InstanceHealth(n, n.services.at("s1")), "critical");
}

TEST(Catalog, ErrorsNameTheField) {
  struct Case {
    const char* body;
    const char* field;
  } cases[] = {
      {R"({"Address":"a"})", "Node"},
      {R"({"Node":"n"})", "Address"},
      {R"({"Node":"n","Address":"a","Service":{"Service":"s","Port":"80"}})", "Service.Port"},
      {R"({"Node":"n","Address":"a","Service":{"Service":"s","Tags":"x"}})", "Service.Tags"},
      {R"({"Node":"n","Address":"a","Service":{"Service":"s","Kind":"gateway"}})", "Service.Kind"},
      {R"({"Node":"n","Address":"a","Service":{"Service":"s","ID":"a/b"}})", "Service.ID"},
      {R"({"Node":"n","Address":"a","Checks":[{"Name":"c","Status":"ok"}]})", "Checks[0].Status"},
      {R"({"Node":"n","Address":"a","Service":{"Service":"p","Kind":"connect-proxy","Port":1,
          "Proxy":{"DestinationServiceName":"d","Upstreams":[{"DestinationName":"u"}]}}})",
       "Service.Proxy.Upstreams[0].LocalBindPort"},
  };
  for (const auto& c : cases) {
    Node n;
    Status s = ApplyRegistration(json::parse(c.body), CatalogLimits{}, &n);
    EXPECT_FALSE(s.ok()) << c.body;
    EXPECT_NE(s.message().find(c.field), std::string::npos) << s.message();
  }
}

TEST(Catalog, LimitsAreEnforced) {
  CatalogLimits lim;
  lim.max_services_per_node = 2;
  Node n;
  for (int i = 0; i < 2; ++i) {
    json b = {{"Node", "n"},
              {"Address", "a"},
              {"Service", {{"Service", "s"}, {"ID", "s" + std::to_string(i)}}}};
    ASSERT_TRUE(ApplyRegistration(b, lim, &n).ok());
  }
  json third = {{"Node", "n"}, {"Address", "a"}, {"Service", {{"Service", "s"}, {"ID", "s9"}}}};
  Status s = ApplyRegistration(third, lim, &n);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("limit"), std::string::npos);
  // Re-registering an existing id is not a new service.
  json again = {
      {"Node", "n"}, {"Address", "a"}, {"Service", {{"Service", "s"}, {"ID", "s1"}, {"Port", 9}}}};
  EXPECT_TRUE(ApplyRegistration(again, lim, &n).ok());
}

TEST(Catalog, FieldNamesAreCaseInsensitiveButMetaKeysAreData) {
  json b = json::parse(R"({"node":"n","address":"a","service":{"service":"s","port":1,
      "meta":{"someKey":"v"}}})");
  CanonicalizeKeys(&b);
  Node n;
  ASSERT_TRUE(ApplyRegistration(b, CatalogLimits{}, &n).ok());
  EXPECT_EQ(n.services.at("s").meta.at("someKey"), "v");
}

TEST(Catalog, DeregistrationRemovesServiceChecksOrNode) {
  Node n =
      Register({}, json::parse(R"({"Node":"n","Address":"a","Service":{"Service":"s","ID":"s1"},
      "Checks":[{"Name":"c1","ServiceID":"s1"},{"Name":"node"}]})"));
  bool remove = false;
  ASSERT_TRUE(
      ApplyDeregistration(json::parse(R"({"Node":"n","ServiceID":"s1"})"), &n, &remove).ok());
  EXPECT_FALSE(remove);
  EXPECT_TRUE(n.services.empty());
  EXPECT_EQ(n.checks.size(), 1u);  // the service's check went with it
  EXPECT_EQ(
      ApplyDeregistration(json::parse(R"({"Node":"n","ServiceID":"s1"})"), &n, &remove).code(),
      StatusCode::kNotFound);
  ASSERT_TRUE(ApplyDeregistration(json::parse(R"({"Node":"n"})"), &n, &remove).ok());
  EXPECT_TRUE(remove);
}

TEST(CatalogView, IndexesMoveOnlyForWhatChanged) {
  CatalogView v;
  Node a = Register(
      {}, json::parse(R"({"Node":"a","Address":"1","Service":{"Service":"web","ID":"w1"}})"));
  a = Register(a,
               json::parse(R"({"Node":"a","Address":"1","Service":{"Service":"db","ID":"d1"}})"));
  std::string doc = NodeToJson(a);
  v.Apply("a", &doc, 5, 5);
  EXPECT_EQ(v.service_index("web"), 5);
  EXPECT_EQ(v.service_index("db"), 5);
  EXPECT_EQ(v.services_index(), 5);
  EXPECT_EQ(v.TakeChangedServices(), (std::set<std::string>{"db", "web"}));

  // Only web changes: db keeps its index, and the set of services is the same.
  a = Register(
      a,
      json::parse(R"({"Node":"a","Address":"1","Service":{"Service":"web","ID":"w1","Port":8}})"));
  doc = NodeToJson(a);
  v.Apply("a", &doc, 9, 5);
  EXPECT_EQ(v.service_index("web"), 9);
  EXPECT_EQ(v.service_index("db"), 5);
  EXPECT_EQ(v.services_index(), 5);
  EXPECT_EQ(v.TakeChangedServices(), (std::set<std::string>{"web"}));
  EXPECT_EQ(v.Instances("web")[0].instance->modify_index, 9);
  EXPECT_EQ(v.Instances("web")[0].instance->create_index, 5);

  // Deleting the node removes both; a gone service reports the services index.
  v.Apply("a", nullptr, 12, 0);
  EXPECT_TRUE(v.Instances("web").empty());
  EXPECT_EQ(v.services_index(), 12);
  EXPECT_EQ(v.service_index("web"), 12);
  EXPECT_EQ(v.CatalogServices(), json::object());
}

TEST(CatalogView, SidecarChangesCountForTheServiceTheyFront) {
  CatalogView v;
  Node n = Register(
      {},
      json::parse(R"({"Node":"n","Address":"1","Service":{"Service":"web","ID":"w1","Port":80}})"));
  std::string doc = NodeToJson(n);
  v.Apply("n", &doc, 1, 1);
  v.TakeChangedServices();
  n = Register(
      n, json::parse(R"({"Node":"n","Address":"1","Service":{"Service":"web-sidecar","ID":"p1",
      "Kind":"connect-proxy","Port":15001,"Proxy":{"DestinationServiceName":"web","LocalServicePort":80}}})"));
  doc = NodeToJson(n);
  v.Apply("n", &doc, 2, 1);
  EXPECT_EQ(v.TakeChangedServices(), (std::set<std::string>{"web", "web-sidecar"}));
  ASSERT_EQ(v.ProxiesFor("web").size(), 1u);
  EXPECT_EQ(v.ProxiesFor("web")[0].instance->id, "p1");
}

}  // namespace
}  // namespace weft::mesh

namespace weft::mesh {
namespace {

TEST(CatalogView, ResetDropsEverythingAndCountsItAsChanged) {
  CatalogView v;
  Node n;
  ASSERT_TRUE(
      ApplyRegistration(nlohmann::json::parse(
                            R"({"Node":"n","Address":"1","Service":{"Service":"web","ID":"w"}})"),
                        CatalogLimits{}, &n)
          .ok());
  std::string doc = NodeToJson(n);
  v.Apply("n", &doc, 3, 3);
  v.TakeChangedServices();
  v.TakeChangedNodes();
  v.Clear(10);
  EXPECT_TRUE(v.nodes().empty());
  EXPECT_TRUE(v.Instances("web").empty());
  EXPECT_EQ(v.TakeChangedServices(), (std::set<std::string>{"web"}));
  EXPECT_EQ(v.TakeChangedNodes(), (std::set<std::string>{"n"}));
  EXPECT_EQ(v.services_index(), 10);
  EXPECT_EQ(v.service_index("web"), 10);
}

}  // namespace
}  // namespace weft::mesh
