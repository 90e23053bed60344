// The agent's local HTTP API: its own endpoints (/v1/agent/services,
// /v1/agent/checks, service registration), then the catalog API served from
// the cache in the agent's role.
#include <openssl/crypto.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "agent/agent_internal.h"
#include "base/log.h"
#include "base/time.h"

namespace weft::agent {

class Agent::Role final : public control::ApiRole {
 public:
  explicit Role(const Agent& agent) : agent_(agent) {}

  bool IsServer() const override { return false; }
  std::string_view Label() const override { return "agent"; }
  std::string RefuseWrite(const http::Request& req) const override {
    return req.method + " " + req.path +
           ": this is an agent serving a read-only copy of the catalog; register local services "
           "with PUT /v1/agent/service/register, and send catalog and config writes to a server";
  }
  control::Freshness CurrentFreshness() const override {
    control::Freshness f;
    f.known_leader = agent_.stream_ && agent_.stream_->connected();
    f.last_contact_ms = f.known_leader ? 0 : MonoMillis() - agent_.last_contact_ms_.load();
    f.stale = !f.known_leader;
    return f;
  }

 private:
  const Agent& agent_;  // outlives the Api that owns this role
};

std::unique_ptr<control::ApiRole> Agent::MakeApiRole() const {
  return std::make_unique<Role>(*this);
}

std::string Agent::LocalDenied(const http::Request& r) const {
  const std::string_view token = control::Api::TokenOf(r);
  // Compared in constant time: the secret is not guessable byte by byte.
  if (token.size() == agent_token_.size() &&
      CRYPTO_memcmp(token.data(), agent_token_.data(), token.size()) == 0)
    return "";
  // Any other token counts as none: the agent cannot resolve the servers'
  // tokens, and a scraper sending one token to servers and agents alike
  // still reads what anyone may.
  const std::string_view p = r.path;
  auto starts = [&](std::string_view pre) { return p.substr(0, pre.size()) == pre; };
  const bool read = r.method == "GET" || r.method == "HEAD";
  // Anyone: what the anonymous catalog read shows anyway (the node's
  // services, catalog and health, the CA roots), the agent's metrics
  // (counts, with no more names than those) and its members (the local
  // proxies, for `weft stat` and `weft check` run with a server's token).
  if (read &&
      (p == "/ready" || p == "/v1/agent/services" || p == "/v1/agent/checks" ||
       p == "/v1/agent/members" || p == "/v1/connect/ca/roots" || p == "/v1/weft/prometheus-sd" ||
       p == "/metrics" || starts("/v1/status/") || starts("/v1/catalog/") ||
       starts("/v1/health/") || p == "/" || p == "/ui" || starts("/ui/") || p == "/v1/ui/overview"))
    return "";
  // (The dashboard's files and its overview, the local proxies' numbers,
  // are for anyone like /metrics; its tap shows requests' paths and
  // callers, and takes the agent's token.)
  return "Permission denied: " +
         std::string(token.empty() ? "the anonymous token" : "a token that is not this agent's") +
         " lacks agent:" + (read ? "read" : "write") +
         " (present this agent's token, from DATA_DIR/agent-token or --agent-token-file, as "
         "X-Consul-Token)";
}

asio::awaitable<http::Response> Agent::Handle(http::Request& r) {
  using nlohmann::json;
  const std::string_view path = r.path;
  // The API's own checks (Host, form content types, no token in the URL)
  // for the agent's endpoints too.
  if (std::optional<http::Response> refused = api_->Refuse(r)) co_return std::move(*refused);
  if (std::string why = LocalDenied(r); !why.empty()) {
    LOG_WARN_LIMITED("agent api: {} {} from {} refused: {}", r.method, r.path, r.peer, why);
    co_return http::Response::Text(403, why);
  }
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
    // PUT as Consul documents it. Not GET, as old clients sent it: a page in
    // a browser could deregister a service with an image tag.
    if (r.method != "PUT" && r.method != "POST")
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
