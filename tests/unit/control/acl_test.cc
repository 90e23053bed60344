#include "control/acl.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "control/api.h"
#include "control/store/memory_store.h"

namespace weft::control::acl {
namespace {

Authz With(const std::string& rules) {
  auto r = ParseRules(rules);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return Authz({std::make_shared<const Rules>(std::move(r).value())}, "token");
}

TEST(AclRules, MostSpecificNameDecides) {
  Authz a = With(R"({"service_prefix": {"": {"policy": "read"}, "pay": {"policy": "write"}},
                     "service": {"payments-admin": {"policy": "deny"}}})");
  EXPECT_TRUE(a.Allowed(Resource::kService, "web", Access::kRead));
  EXPECT_FALSE(a.Allowed(Resource::kService, "web", Access::kWrite));
  EXPECT_TRUE(a.Allowed(Resource::kService, "payments", Access::kWrite));
  // An exact deny beats the longer prefix's write.
  EXPECT_FALSE(a.Allowed(Resource::kService, "payments-admin", Access::kRead));
  // No rule for nodes: nothing.
  EXPECT_FALSE(a.Allowed(Resource::kNode, "n1", Access::kRead));
  EXPECT_EQ(a.Denied(Resource::kService, "web", Access::kWrite),
            "Permission denied: token lacks service:write on \"web\"");
}

TEST(AclRules, ExactRuleBeatsAPrefixDenyAndDenyWinsATie) {
  Authz a = With(
      R"({"service_prefix": {"": {"policy": "deny"}}, "service": {"web": {"policy": "read"}}})");
  EXPECT_TRUE(a.Allowed(Resource::kService, "web", Access::kRead));
  EXPECT_FALSE(a.Allowed(Resource::kService, "webx", Access::kRead));
  // Two policies on one token, the same name: deny wins.
  auto r1 = ParseRules(R"({"node": {"n1": {"policy": "write"}}})");
  auto r2 = ParseRules(R"({"node": {"n1": {"policy": "deny"}}})");
  Authz both({std::make_shared<const Rules>(r1.value()), std::make_shared<const Rules>(r2.value())},
             "token");
  EXPECT_FALSE(both.Allowed(Resource::kNode, "n1", Access::kRead));
}

TEST(AclRules, OperatorAndAclAreLevels) {
  Authz a = With(R"({"operator": "read", "acl": "write"})");
  EXPECT_TRUE(a.Allowed(Resource::kOperator, "", Access::kRead));
  EXPECT_FALSE(a.Allowed(Resource::kOperator, "", Access::kWrite));
  EXPECT_TRUE(a.Allowed(Resource::kAcl, "", Access::kWrite));
  EXPECT_EQ(a.Denied(Resource::kOperator, "", Access::kWrite),
            "Permission denied: token lacks operator:write");
}

TEST(AclRules, ConfigPrefixesMatchKindNamespaceName) {
  Authz a = With(
      R"({"config_prefix": {"Route/": {"policy": "write"}, "Route/prod/": {"policy": "read"}}})");
  EXPECT_TRUE(a.Allowed(Resource::kConfig, "Route/default/web", Access::kWrite));
  EXPECT_FALSE(a.Allowed(Resource::kConfig, "Route/prod/web", Access::kWrite));
  EXPECT_TRUE(a.Allowed(Resource::kConfig, "Route/prod/web", Access::kRead));
  EXPECT_FALSE(a.Allowed(Resource::kConfig, "Service/default/web", Access::kRead));
}

TEST(AclRules, BadRulesAreRefusedWithTheirName) {
  for (const char* bad : {R"({"services": {}})", R"({"service": {"web": {"policy": "admin"}}})",
                          R"({"service": {"web": "read"}})", R"({"operator": {"policy": "read"}})",
                          R"(service "web" { policy = "read" })", "[1]"}) {
    auto r = ParseRules(bad);
    EXPECT_FALSE(r.ok()) << bad;
  }
  EXPECT_NE(ParseRules(R"({"services": {}})").status().message().find("services"),
            std::string::npos);
  EXPECT_FALSE(ParseRules(std::string(kMaxRulesBytes + 1, ' ')).ok());
  EXPECT_TRUE(ParseRules("").ok());  // a policy with no rules grants nothing
}

TEST(AclSecrets, HashesAndUuids) {
  EXPECT_EQ(HashSecret("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string a = NewUuid(), b = NewUuid();
  EXPECT_EQ(a.size(), 36u);
  EXPECT_EQ(a[14], '4');
  EXPECT_NE(a, b);
}

TEST(AclBootstrap, OnceperStoreAndTheStateResolvesTheToken) {
  store::MemoryStore st;
  auto secret = BootstrapAcl(&st, "");
  ASSERT_TRUE(secret.ok());
  ASSERT_FALSE(secret->empty());
  // A second replica (or a restart) makes nothing new.
  auto again = BootstrapAcl(&st, "");
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->empty());
  AclState state;
  auto all = st.Range("acl/");
  ASSERT_TRUE(all.ok());
  for (const auto& kv : all->kvs) {
    EXPECT_EQ(kv.value.find(secret.value()), std::string::npos) << kv.key;  // only the hash
    state.Apply(kv.key, &kv.value, kv.mod_revision, kv.create_revision);
  }
  const Token* t = state.TokenBySecret(secret.value());
  ASSERT_NE(t, nullptr);
  Authz mgmt = state.AuthzFor(t);
  EXPECT_TRUE(mgmt.Allowed(Resource::kAcl, "", Access::kWrite));
  EXPECT_TRUE(mgmt.Allowed(Resource::kConfig, "Route/default/x", Access::kWrite));
  EXPECT_EQ(state.TokenBySecret("not-a-token"), nullptr);
  Authz anon = state.AuthzFor(nullptr);
  EXPECT_TRUE(anon.Allowed(Resource::kService, "web", Access::kRead));
  EXPECT_FALSE(anon.Allowed(Resource::kService, "web", Access::kWrite));
  EXPECT_FALSE(anon.Allowed(Resource::kConfig, "", Access::kRead));
  EXPECT_EQ(anon.Denied(Resource::kConfig, "", Access::kRead),
            "Permission denied: anonymous token lacks config:read on \"\"");
  // A deleted token no longer resolves.
  state.Apply(std::string(kTokenPrefix) + t->accessor, nullptr, 99, 0);
  EXPECT_EQ(state.TokenBySecret(secret.value()), nullptr);
}

}  // namespace
}  // namespace weft::control::acl
