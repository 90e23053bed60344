// The agent's local HTTP API: its own endpoints (/v1/agent/services,
// /v1/agent/checks, service registration), then the catalog API served from
// the cache.
#include <nlohmann/json.hpp>
#include <string_view>

#include "agent/agent_internal.h"
#include "base/log.h"

namespace weft::agent {

asio::awaitable<http::Response> Agent::Handle(http::Request& r) {
  using nlohmann::json;
  const std::string_view path = r.path;
  if (path == "/v1/agent/services")
    co_return http::Response::Json(200, local_.AgentServices().dump());
  if (path == "/v1/agent/checks") co_return http::Response::Json(200, local_.AgentChecks().dump());
  if (path == "/v1/agent/service/register") {
    if (r.method != "PUT" && r.method != "POST")
      co_return http::Response::Text(405, "use PUT /v1/agent/service/register");
    json body = json::parse(r.body, nullptr, false);
    std::string id;
    Status s = body.is_discarded() ? Status(StatusCode::kInvalidArgument, "the body must be JSON")
                                   : local_.Register(body, &id);
    if (!s.ok()) {
      LOG_WARN("agent: service registration refused: {}", s.message());
      co_return http::Response::Text(s.code() == StatusCode::kInvalidArgument ? 400 : 500,
                                     "service registration: " + s.message());
    }
    LOG_INFO("agent: service {} registered", id);
    LocalChanged();
    co_return http::Response::Text(200, "");
  }
  constexpr std::string_view kDereg = "/v1/agent/service/deregister/";
  if (path.substr(0, kDereg.size()) == kDereg) {
    // PUT as Consul documents it; GET as older Consul versions (and their
    // clients, python-consul among them) still send it.
    if (r.method != "PUT" && r.method != "POST" && r.method != "GET")
      co_return http::Response::Text(405, "use PUT /v1/agent/service/deregister/ID");
    const std::string id(path.substr(kDereg.size()));
    Status s = local_.Deregister(id);
    if (!s.ok())
      co_return http::Response::Text(s.code() == StatusCode::kNotFound ? 404 : 500, s.message());
    LOG_INFO("agent: service {} deregistered", id);
    LocalChanged();
    co_return http::Response::Text(200, "");
  }
  co_return co_await api_->Handle(r);
}

}  // namespace weft::agent
