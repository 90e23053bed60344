#include "proxy/authz.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

// Counts heap allocations while armed, to check that a decision allocates
// nothing.
namespace {
std::atomic<bool> g_count{false};
std::atomic<size_t> g_allocs{0};
}  // namespace

void* operator new(size_t n) {
  if (g_count.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace weft::proxy::authz {
namespace {

constexpr const char* kWeb = "spiffe://weft.local/ns/default/sa/web";
constexpr const char* kAdmin = "spiffe://weft.local/ns/ops/sa/admin";

Policies::Input Parse(const std::string& name, const std::string& yaml) {
  auto m = mesh::ParseManifests("kind: AuthorizationPolicy\nmetadata: {name: " + name +
                                "}\nspec:\n" + yaml);
  EXPECT_TRUE(m.ok()) << m.status().message();
  return {"default/" + name, std::get<mesh::AuthorizationPolicySpec>(m.value()[0].spec)};
}

Decision Http(const Policies& p, std::string_view peer, std::string_view method,
              std::string_view path, const http::HeaderList* headers = nullptr) {
  Request r;
  r.peer = peer;
  r.method = method;
  r.path = path;
  r.headers = headers;
  return p.Evaluate(r);
}

TEST(Authz, NoPolicyAllowsEverything) {
  auto p = Policies::Compile({}, "reviews");
  EXPECT_TRUE(p->empty());
  auto d = Http(*p, "", "GET", "/");
  EXPECT_TRUE(d.allow);
  EXPECT_EQ(d.policy, -1);
}

TEST(Authz, AllowRulesWithDefaultDeny) {
  auto p = Policies::Compile({Parse("reviews", R"(  service: reviews
  default: deny
  rules:
    - action: allow
      from: [spiffe://weft.local/ns/default/sa/web]
      to: {methods: [GET, HEAD], paths: [/reviews/*, /health]}
)")},
                             "reviews");
  EXPECT_TRUE(Http(*p, kWeb, "GET", "/reviews/1").allow);
  EXPECT_TRUE(Http(*p, kWeb, "HEAD", "/health").allow);
  EXPECT_FALSE(Http(*p, kWeb, "GET", "/healthz").allow);  // exact
  EXPECT_FALSE(Http(*p, kWeb, "POST", "/reviews/1").allow);
  EXPECT_FALSE(Http(*p, kAdmin, "GET", "/reviews/1").allow);
  EXPECT_FALSE(Http(*p, "", "GET", "/reviews/1").allow);  // plaintext: no identity
  auto d = Http(*p, kAdmin, "GET", "/reviews/1");
  EXPECT_TRUE(d.by_default);
  EXPECT_EQ(p->names()[static_cast<size_t>(d.policy)], "default/reviews");
}

TEST(Authz, DenyWinsAndPrefixesAndWildcards) {
  auto p = Policies::Compile({Parse("a", R"(  service: reviews
  rules:
    - action: allow
      from: ["*"]
    - action: deny
      from: ["spiffe://weft.local/ns/ops/*"]
      to: {paths: [/admin*]}
)")},
                             "reviews");
  EXPECT_TRUE(Http(*p, kAdmin, "GET", "/reviews").allow);
  auto d = Http(*p, kAdmin, "GET", "/admin/users");
  EXPECT_FALSE(d.allow);
  EXPECT_FALSE(d.by_default);
  EXPECT_TRUE(Http(*p, kWeb, "GET", "/admin/users").allow);
  // "*" means any mesh identity, not plaintext; with no default set, a
  // request no rule matches is allowed.
  auto plain = Http(*p, "", "GET", "/x");
  EXPECT_TRUE(plain.allow);
  EXPECT_TRUE(plain.by_default);
}

TEST(Authz, HeaderConditions) {
  auto p = Policies::Compile({Parse("h", R"(  service: reviews
  default: deny
  rules:
    - action: allow
      to: {headers: {x-role: admin, x-team: "pay*", x-trace: "*"}}
)")},
                             "reviews");
  http::HeaderList ok = {{"X-Role", "admin"}, {"x-team", "payments"}, {"x-trace", "1"}};
  http::HeaderList missing = {{"x-role", "admin"}, {"x-team", "payments"}};
  http::HeaderList wrong = {{"x-role", "guest"}, {"x-team", "payments"}, {"x-trace", ""}};
  EXPECT_TRUE(Http(*p, "", "GET", "/", &ok).allow);
  EXPECT_FALSE(Http(*p, "", "GET", "/", &missing).allow);
  EXPECT_FALSE(Http(*p, "", "GET", "/", &wrong).allow);
}

TEST(Authz, ServiceDefaultOverridesMeshWideAndDenyWinsBetweenEquals) {
  auto mesh_deny = Parse("mesh", "  service: \"*\"\n  default: deny\n");
  auto own_allow = Parse("own", "  service: reviews\n  default: allow\n");
  auto own_plain = Parse("plain", "  service: reviews\n");
  auto own_deny = Parse("strict", "  service: reviews\n  default: deny\n");
  auto other = Parse("other", "  service: ratings\n  default: deny\n");
  // Mesh-wide deny applies when the service sets no default.
  auto p = Policies::Compile({mesh_deny, own_plain, other}, "reviews");
  auto d = Http(*p, kWeb, "GET", "/");
  EXPECT_FALSE(d.allow);
  EXPECT_EQ(p->names()[static_cast<size_t>(d.policy)], "default/mesh");
  EXPECT_EQ(p->names().size(), 2u);  // ratings' policy does not apply
  // The service's own default wins over the mesh-wide one.
  EXPECT_TRUE(Http(*Policies::Compile({mesh_deny, own_allow}, "reviews"), kWeb, "GET", "/").allow);
  // Two defaults for one service: deny wins.
  EXPECT_FALSE(Http(*Policies::Compile({own_allow, own_deny}, "reviews"), kWeb, "GET", "/").allow);
}

TEST(Authz, TcpConnectionsAndHttpOnlyConditions) {
  auto p = Policies::Compile({Parse("t", R"(  service: cache
  default: deny
  rules:
    - action: allow
      from: [spiffe://weft.local/ns/default/sa/web]
      to: {paths: [/x]}
    - action: allow
      from: [spiffe://weft.local/ns/ops/sa/admin]
    - action: deny
      from: [spiffe://weft.local/ns/ops/sa/admin]
      to: {methods: [DELETE]}
)")},
                             "cache");
  Request r;
  r.tcp = true;
  r.peer = kWeb;
  EXPECT_FALSE(p->Evaluate(r).allow);  // the allow rule has HTTP conditions
  r.peer = kAdmin;
  EXPECT_FALSE(p->Evaluate(r).allow);  // the deny rule matches on its source alone
}

TEST(Authz, DecisionsDoNotAllocate) {
  std::vector<Policies::Input> in;
  for (int i = 0; i < 20; ++i) {
    in.push_back(Parse("p" + std::to_string(i),
                       "  service: reviews\n  default: deny\n  rules:\n"
                       "    - action: allow\n      from: [spiffe://weft."
                       "local/ns/default/sa/svc" +
                           std::to_string(i) +
                           "]\n      to: {paths: [/a/*], headers: {x-a: "
                           "b}}\n"));
  }
  auto p = Policies::Compile(in, "reviews");
  http::HeaderList h = {{"x-a", "b"}};
  g_allocs = 0;
  g_count = true;
  bool allowed = false;
  for (int i = 0; i < 1000; ++i)
    allowed ^= Http(*p, "spiffe://weft.local/ns/default/sa/svc19", "GET", "/a/b", &h).allow;
  g_count = false;
  EXPECT_EQ(g_allocs.load(), 0u);
  EXPECT_FALSE(allowed);  // an even number of allowed decisions
}

}  // namespace
}  // namespace weft::proxy::authz
