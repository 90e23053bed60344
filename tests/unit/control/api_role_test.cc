#include <gtest/gtest.h>

#include <asio.hpp>
#include <exception>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "control/api.h"
#include "control/store/memory_store.h"

namespace weft::control {
namespace {

using nlohmann::json;

// A process that serves a read-only copy, as the agent does.
class ReadOnlyRole final : public ApiRole {
 public:
  bool IsServer() const override { return false; }
  std::string_view Label() const override { return "copy"; }
  std::string RefuseWrite(const http::Request& req) const override {
    return req.method + " " + req.path + ": read-only";
  }
  Freshness CurrentFreshness() const override { return {false, 1500, true}; }
};

class ApiRoleTest : public ::testing::Test {
 protected:
  void Make(std::unique_ptr<ApiRole> role) {
    ApiOptions o;
    o.name = "n1";
    o.write_threads = 1;
    api_ = std::make_unique<Api>(io_, std::make_unique<store::MemoryStore>(), o, std::move(role));
    ASSERT_TRUE(api_->Start().ok());
    api_->SetAddresses("127.0.0.1:8500", "127.0.0.1:8502");
  }

  http::Response Call(const std::string& method, const std::string& path,
                      const std::string& body = "") {
    http::Request req;
    req.method = method;
    req.target = path;
    req.path = path;
    req.body = body;
    std::optional<http::Response> out;
    asio::co_spawn(io_, api_->Handle(req), [&](const std::exception_ptr& e, http::Response r) {
      if (!e) out = std::move(r);
    });
    io_.restart();
    io_.run();
    EXPECT_TRUE(out.has_value()) << method << " " << path;
    return out.value_or(http::Response{});
  }

  static std::string Header(const http::Response& r, const std::string& name) {
    for (const auto& [k, v] : r.headers)
      if (k == name) return v;
    return "";
  }

  asio::io_context io_{1};
  std::unique_ptr<Api> api_;
};

constexpr const char* kRegister =
    R"({"Node":"n2","Address":"10.0.0.2","Service":{"Service":"web"}})";
constexpr const char* kService =
    "kind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n";

TEST_F(ApiRoleTest, DefaultIsAServerThatTakesWrites) {
  Make(nullptr);
  json self = json::parse(Call("GET", "/v1/agent/self").body);
  EXPECT_EQ(self["Config"]["Server"], true);
  json members = json::parse(Call("GET", "/v1/agent/members").body);
  EXPECT_EQ(members[0]["Tags"]["role"], "server");
  EXPECT_EQ(Call("PUT", "/v1/catalog/register", kRegister).status, 200);
  EXPECT_EQ(Call("PUT", "/v1/config/Service/web", kService).status, 200);
  http::Response r = Call("GET", "/v1/catalog/services");
  EXPECT_TRUE(json::parse(r.body).contains("web"));
  EXPECT_EQ(Header(r, "X-Consul-KnownLeader"), "true");
  EXPECT_EQ(Header(r, "X-Consul-LastContact"), "0");
  EXPECT_EQ(Header(r, "X-Weft-Stale"), "");
}

TEST_F(ApiRoleTest, ARoleDescribesTheProcessAndRefusesWrites) {
  Make(std::make_unique<ReadOnlyRole>());
  json self = json::parse(Call("GET", "/v1/agent/self").body);
  EXPECT_EQ(self["Config"]["Server"], false);
  json members = json::parse(Call("GET", "/v1/agent/members").body);
  EXPECT_EQ(members[0]["Tags"]["role"], "copy");

  http::Response reg = Call("PUT", "/v1/catalog/register", kRegister);
  EXPECT_EQ(reg.status, 405);
  EXPECT_EQ(reg.body, "PUT /v1/catalog/register: read-only\n");
  EXPECT_EQ(Call("PUT", "/v1/catalog/deregister", R"({"Node":"n2"})").status, 405);
  EXPECT_EQ(Call("PUT", "/v1/config/Service/web", kService).status, 405);
  EXPECT_EQ(Call("DELETE", "/v1/config/Service/web").status, 405);
  // The request's own checks come first.
  EXPECT_EQ(Call("GET", "/v1/catalog/register").body, "use PUT /v1/catalog/register\n");
  EXPECT_EQ(Call("PUT", "/v1/config/Bogus/web", kService).status, 404);
  EXPECT_EQ(api_->counters().writes, 0u);
  EXPECT_EQ(api_->counters().rejected, 6u);

  http::Response r = Call("GET", "/v1/catalog/services");
  EXPECT_EQ(json::parse(r.body), json::object());
  EXPECT_EQ(Header(r, "X-Consul-KnownLeader"), "false");
  EXPECT_EQ(Header(r, "X-Consul-LastContact"), "1500");
  EXPECT_EQ(Header(r, "X-Weft-Stale"), "true");
}

}  // namespace
}  // namespace weft::control
