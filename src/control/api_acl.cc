// The REST API's gate (what every request passes before its handler: the
// Host and Content-Type rules, the token, the route's permission) and the
// /v1/acl endpoints (policies and tokens, Consul's shapes).
#include <unistd.h>

#include <ctime>
#include <functional>
#include <optional>
#include <tuple>
#include <utility>

#include "base/log.h"
#include "base/strings.h"
#include "control/api.h"
#include "control/api_internal.h"
#include "control/join_token.h"

namespace weft::control {

using json = nlohmann::json;
using acl::Access;
using acl::Resource;
using http::Request;
using http::Response;
using internal::HttpStatusFor;
using internal::StartsWith;

namespace {

// The host part of a Host header ("h", "h:port", "[v6]:port").
std::string_view HostName(std::string_view host) {
  if (!host.empty() && host[0] == '[') {
    const size_t close = host.find(']');
    return close == std::string_view::npos ? host : host.substr(1, close - 1);
  }
  const size_t colon = host.rfind(':');
  return colon == std::string_view::npos ? host : host.substr(0, colon);
}

std::string_view MediaType(std::string_view ct) { return TrimOws(ct.substr(0, ct.find(';'))); }

bool IsWrite(const std::string& method) {
  return method != "GET" && method != "HEAD" && method != "OPTIONS";
}

}  // namespace

std::string_view Api::TokenOf(const Request& req) {
  std::string_view t = req.Header("x-consul-token");
  if (t.empty()) {
    std::string_view auth = req.Header("authorization");
    if (auth.size() > 7 && IEquals(auth.substr(0, 7), "bearer ")) t = auth.substr(7);
  }
  return TrimOws(t);
}

std::optional<Response> Api::Refuse(const Request& req) {
  // DNS rebinding: a page on a name the attacker controls, resolved to this
  // address, reaches the API with its own name as Host.
  if (std::string_view host = req.Header("host"); !host.empty()) {
    const std::string_view name = HostName(host);
    // Besides: this machine's name, and the mesh's own DNS names (the agents
    // answer for .weft; no one can register one on the internet).
    static const std::string self = [] {
      char h[256] = {};
      return gethostname(h, sizeof(h) - 1) == 0 ? std::string(h) : std::string();
    }();
    bool ok = mesh::ValidIp(name) || IEquals(name, "localhost") ||
              (!self.empty() && IEquals(name, self)) ||
              (name.size() > 5 && IEquals(name.substr(name.size() - 5), ".weft"));
    for (const auto& allowed : opts_.allowed_hosts) {
      // ".example.com": any name under example.com.
      const bool suffix = !allowed.empty() && allowed[0] == '.' && name.size() > allowed.size();
      ok = ok || IEquals(name, allowed) ||
           (suffix && IEquals(name.substr(name.size() - allowed.size()), allowed));
    }
    if (!ok) {
      ++counters_.refused_host;
      LOG_WARN_LIMITED(
          "api: {} {} from {} refused: Host \"{}\" is not a name this server answers to",
          req.method, req.path, req.peer, name);
      return Error(403, "Host \"" + std::string(name) +
                            "\" is not a name this server answers to (an IP address, localhost, or "
                            "a name given with --http-allow-host)");
    }
  }
  // A browser names the page a request comes from (Origin, Sec-Fetch-Site)
  // on every cross-site write, forms and no-cors fetches alike; the CLI and
  // API clients send neither.
  if (IsWrite(req.method)) {
    const std::string_view origin = req.Header("origin");
    const std::string_view site = req.Header("sec-fetch-site");
    std::string_view origin_host = origin;
    if (const size_t scheme = origin.find("://"); scheme != std::string_view::npos)
      origin_host = origin.substr(scheme + 3);
    const bool foreign = (!origin.empty() && !IEquals(origin_host, req.Header("host"))) ||
                         IEquals(site, "cross-site") || IEquals(site, "same-site");
    if (foreign) {
      ++counters_.refused_origin;
      LOG_WARN_LIMITED("api: {} {} from {} refused: a cross-site request (Origin \"{}\")",
                       req.method, req.path, req.peer, origin);
      return Error(403, "cross-site request refused: Origin \"" + std::string(origin) +
                            "\" is not this server");
    }
  }
  // Cross-site forms can send only these types without asking first.
  if (IsWrite(req.method)) {
    std::string ct(MediaType(req.Header("content-type")));
    for (char& c : ct) c = AsciiLower(c);
    if (ct == "application/x-www-form-urlencoded" || ct == "multipart/form-data" ||
        ct == "text/plain") {
      ++counters_.refused_content_type;
      LOG_WARN_LIMITED("api: {} {} from {} refused: Content-Type {}", req.method, req.path,
                       req.peer, ct);
      return Error(415, "Content-Type " + ct +
                            " is refused on writes (a browser form can send it): send "
                            "application/json (curl: -H 'Content-Type: application/json')");
    }
  }
  if (!req.body.empty() && JsonNestingDepth(req.body) > kMaxJsonDepth)
    return Error(400, "the body nests deeper than " + std::to_string(kMaxJsonDepth) +
                          " levels of objects and lists");
  if (req.HasQuery("token"))
    return Error(400,
                 "?token= is refused: tokens end up in logs and browser history; send it as "
                 "X-Consul-Token or Authorization: Bearer");
  return std::nullopt;
}

Response Api::Denied(const Request& req, const std::string& why) {
  ++counters_.acl_denied;
  LOG_WARN_LIMITED("api: {} {} from {}: {}", req.method, req.path, req.peer, why);
  Response r = Response::Text(403, why);
  ++counters_.rejected;
  return r;
}

std::string Api::Deny(const Request& req, Resource r, std::string_view name, Access need) const {
  if (!opts_.acl) return "";
  auto it = callers_.find(&req);
  if (it == callers_.end()) return "Permission denied: no token resolved for this request";
  return it->second.Denied(r, name, need);
}

std::string Api::RouteDenied(const Request& req) const {
  const std::string_view path = req.path;
  const bool get = !IsWrite(req.method);
  auto need = [&](Resource r, std::string_view name, Access a) { return Deny(req, r, name, a); };
  if (path == "/ready" || StartsWith(path, "/v1/status/") || path == "/v1/connect/ca/roots")
    return "";
  if (path == "/metrics" || path == "/stats" || StartsWith(path, "/v1/agent/"))
    return need(Resource::kOperator, "", Access::kRead);
  if (path == "/v1/connect/ca/rotate") return need(Resource::kOperator, "", Access::kWrite);
  if (path == "/v1/weft/prometheus-sd") return "";  // filtered by the handler
  // The dashboard: its files hold no data; its overview is filtered by the
  // handler; a tap of a service shows its requests (paths, callers).
  if (path == "/" || path == "/ui" || StartsWith(path, "/ui/") || path == "/v1/ui/overview")
    return "";
  if (path == "/v1/ui/tap") {
    const std::string* s = req.Query("service");
    return need(Resource::kService, s ? *s : "", Access::kRead);
  }
  if (StartsWith(path, "/v1/catalog/")) {
    const std::string_view rest = path.substr(12);
    if (!get) return "";  // register/deregister: checked against the body
    if (rest == "services" || rest == "nodes") return "";  // filtered by the handler
    if (StartsWith(rest, "service/"))
      return need(Resource::kService, rest.substr(8), Access::kRead);
    if (StartsWith(rest, "node/")) return need(Resource::kNode, rest.substr(5), Access::kRead);
    return "";
  }
  if (StartsWith(path, "/v1/health/")) {
    const std::string_view rest = path.substr(11);
    if (StartsWith(rest, "service/"))
      return need(Resource::kService, rest.substr(8), Access::kRead);
    if (StartsWith(rest, "checks/")) return need(Resource::kService, rest.substr(7), Access::kRead);
    if (StartsWith(rest, "node/")) return need(Resource::kNode, rest.substr(5), Access::kRead);
    return "";  // state/: filtered by the handler
  }
  if (StartsWith(path, "/v1/config")) {
    if (!get) return "";  // the namespace may come from the body: checked there
    std::string_view rest = path.substr(10);
    if (!rest.empty() && rest[0] == '/') rest.remove_prefix(1);
    const size_t slash = rest.find('/');
    const std::string kind(rest.substr(0, slash));
    // Lists (every kind, or one) are filtered by the handler.
    if (kind.empty() || slash == std::string_view::npos) return "";
    const std::string* ns = req.Query("ns");
    const std::string name(rest.substr(slash + 1));
    return need(Resource::kConfig, ConfigRuleName(kind, ns && !ns->empty() ? *ns : "default", name),
                Access::kRead);
  }
  // Routes added by other parts of the server that are not named above:
  // closed unless the token may operate the cluster.
  if (routes_.count(path)) return need(Resource::kOperator, "", Access::kWrite);
  return "";  // /v1/acl checks in its handlers; anything else is a 404
}

std::string Api::ConfigRuleName(std::string_view kind, std::string_view ns, std::string_view name) {
  return std::string(kind) + "/" + std::string(ns) + "/" + std::string(name);
}

// ---- /v1/acl ----

asio::awaitable<Response> Api::AclRequest(Request& req, std::string_view rest) {
  if (!opts_.acl)
    co_return Error(404, "ACLs are off on this server (--dev): there are no tokens or policies");
  const bool get = req.method == "GET" || req.method == "HEAD";
  const bool put = req.method == "PUT" || req.method == "POST";
  const bool del = req.method == "DELETE";
  if (rest == "token/self" && get) {
    const acl::Token* t = acl_.TokenBySecret(TokenOf(req));
    if (!t) co_return Error(404, "no token in this request (X-Consul-Token)");
    co_return Reply(t->ToJson(acl_.policies()), t->modify_index);
  }
  if (std::string why = Deny(req, Resource::kAcl, "", get ? Access::kRead : Access::kWrite);
      !why.empty())
    co_return Denied(req, why);
  if (rest == "policies" && get) {
    json out = json::array();
    for (const auto& [id, p] : acl_.policies()) out.push_back(p.ToJson());
    co_return Reply(out, acl_.index());
  }
  if (rest == "tokens" && get) {
    json out = json::array();
    for (const auto& [id, t] : acl_.tokens()) out.push_back(t.ToJson(acl_.policies()));
    co_return Reply(out, acl_.index());
  }
  if (rest == "policy" && put) co_return co_await AclPolicyPut(req, "");
  if (StartsWith(rest, "policy/name/") && get) {
    const acl::Policy* p = acl_.PolicyByName(rest.substr(12));
    if (!p) co_return Error(404, "no policy named \"" + std::string(rest.substr(12)) + "\"");
    co_return Reply(p->ToJson(), p->modify_index);
  }
  if (StartsWith(rest, "policy/")) {
    const std::string id(rest.substr(7));
    if (put) co_return co_await AclPolicyPut(req, id);
    const acl::Policy* p = acl_.PolicyById(id);
    if (!p) co_return Error(404, "no policy " + id);
    if (get) co_return Reply(p->ToJson(), p->modify_index);
    if (del) {
      if (id == acl::kManagementPolicyId || id == acl::kAnonymousPolicyId)
        co_return Error(400, "policy " + p->name + " is built in and cannot be deleted");
      for (const auto& [acc, t] : acl_.tokens())
        for (const auto& pid : t.policy_ids)
          if (pid == id)
            co_return Error(
                409, "policy " + p->name + " is used by token " + acc + ": delete the token first");
      const std::string key = std::string(acl::kPolicyPrefix) + id;
      const std::string name = p->name;  // p goes with the entry once the delete applies
      store::Store* st = store_.get();
      const std::function<Result<int64_t>()> write = [st, key] { return st->Delete(key); };
      Status s = co_await RunWrite(write);
      if (!s.ok()) co_return Error(HttpStatusFor(s), "policy delete: " + s.message());
      LOG_INFO("acl: policy {} ({}) deleted by a request from {}", id, name, req.peer);
      co_return Reply(true, acl_.index());
    }
    co_return Error(405, "use GET, PUT or DELETE /v1/acl/policy/ID");
  }
  if (rest == "join-tokens" || StartsWith(rest, "join-token"))
    co_return co_await AclJoinToken(req, rest);
  if (rest == "token" && put) co_return co_await AclTokenPut(req, "");
  if (StartsWith(rest, "token/")) {
    const std::string accessor(rest.substr(6));
    if (put) co_return co_await AclTokenPut(req, accessor);
    const acl::Token* t = acl_.TokenByAccessor(accessor);
    if (!t) co_return Error(404, "no token " + accessor);
    if (get) co_return Reply(t->ToJson(acl_.policies()), t->modify_index);
    if (del) {
      const std::string key = std::string(acl::kTokenPrefix) + accessor;
      store::Store* st = store_.get();
      const std::function<Result<int64_t>()> write = [st, key] { return st->Delete(key); };
      Status s = co_await RunWrite(write);
      if (!s.ok()) co_return Error(HttpStatusFor(s), "token delete: " + s.message());
      LOG_INFO("acl: token {} deleted by a request from {}", accessor, req.peer);
      co_return Reply(true, acl_.index());
    }
    co_return Error(405, "use GET, PUT or DELETE /v1/acl/token/ACCESSOR");
  }
  co_return Error(404, "not found: " + std::string(req.path) +
                           " (see docs/api.md: /v1/acl/policy, /v1/acl/token)");
}

asio::awaitable<Response> Api::AclPolicyPut(Request& req, std::string id) {
  json body = json::parse(req.body, nullptr, false);
  if (body.is_discarded() || !body.is_object())
    co_return Error(400, "policy: the body must be a JSON object {Name, Description, Rules}");
  for (const auto& [k, v] : body.items()) {
    if (k == "ID" && v.is_string() && v.get<std::string>() != id)
      co_return Error(400, "policy: ID \"" + v.get<std::string>() +
                               "\" is not the one in the path (IDs are made by the server)");
    if (k != "Name" && k != "Description" && k != "Rules" && k != "ID")
      co_return Error(400, "policy: unknown field \"" + k + "\" (use Name, Description, Rules)");
    if (!v.is_string()) co_return Error(400, "policy: " + k + " must be a string");
  }
  acl::Policy p;
  const acl::Policy* old = id.empty() ? nullptr : acl_.PolicyById(id);
  if (!id.empty() && !old) co_return Error(404, "no policy " + id);
  p.id = id.empty() ? acl::NewUuid() : id;
  p.name = body.value("Name", old ? old->name : "");
  p.description = body.value("Description", old ? old->description : "");
  p.rules_text = body.value("Rules", old ? old->rules_text : "");
  if (!mesh::ValidName(p.name))
    co_return Error(400, "policy: Name \"" + p.name +
                             "\" must be a name (lower-case letters, digits, '-', at most 63)");
  if (old && id == acl::kManagementPolicyId)
    co_return Error(400, "policy global-management is built in and cannot be changed");
  if (old && id == acl::kAnonymousPolicyId && p.name != old->name)
    co_return Error(400, "policy anonymous is built in: its rules may change, not its name");
  if (const acl::Policy* same = acl_.PolicyByName(p.name); same && same->id != p.id)
    co_return Error(409, "policy: a policy named \"" + p.name + "\" exists (" + same->id + ")");
  if (!old && acl_.policies().size() >= acl::kMaxPolicies)
    co_return Error(400, "policy: at most " + std::to_string(acl::kMaxPolicies) + " policies");
  auto rules = acl::ParseRules(p.rules_text);
  if (!rules.ok()) co_return Error(400, "policy " + p.name + ": " + rules.status().message());
  const std::string key = std::string(acl::kPolicyPrefix) + p.id;
  const std::string doc = acl::PolicyDoc(p);
  const int64_t expected = old ? old->modify_index : 0;
  store::Store* st = store_.get();
  const std::function<Result<int64_t>()> write = [st, key, doc, expected] {
    return st->PutIf(key, doc, expected);
  };
  Status s = co_await RunWrite(write);
  if (!s.ok()) co_return Error(HttpStatusFor(s), "policy " + p.name + ": " + s.message());
  LOG_INFO("acl: policy {} ({}) {} by a request from {}", p.name, p.id, old ? "updated" : "created",
           req.peer);
  const acl::Policy* now = acl_.PolicyById(p.id);
  if (!now) co_return Error(503, "policy " + p.name + " written but not yet seen");
  co_return Reply(now->ToJson(), now->modify_index);
}

asio::awaitable<Response> Api::AclTokenPut(Request& req, std::string accessor) {
  json body = json::parse(req.body, nullptr, false);
  if (body.is_discarded() || !body.is_object())
    co_return Error(400, "token: the body must be a JSON object {Description, Policies}");
  // An update changes what its body names (Policies replaces the list) and
  // keeps the rest, the secret included.
  const acl::Token* old = accessor.empty() ? nullptr : acl_.TokenByAccessor(accessor);
  if (!accessor.empty() && !old) co_return Error(404, "no token " + accessor);
  acl::Token t = old ? *old : acl::Token{};
  for (const auto& [k, v] : body.items()) {
    if (k == "Description" && v.is_string()) {
      t.description = v.get<std::string>();
    } else if (k == "Policies" && v.is_array()) {
      t.policy_ids.clear();
      if (v.size() > acl::kMaxPoliciesPerToken)
        co_return Error(
            400, "token: at most " + std::to_string(acl::kMaxPoliciesPerToken) + " policies");
      for (const auto& link : v) {
        const acl::Policy* p = nullptr;
        if (link.is_object() && link.contains("ID") && link["ID"].is_string()) {
          p = acl_.PolicyById(link["ID"].get<std::string>());
        } else if (link.is_object() && link.contains("Name") && link["Name"].is_string()) {
          p = acl_.PolicyByName(link["Name"].get<std::string>());
        } else {
          co_return Error(400, "token: each of Policies is {\"ID\": ...} or {\"Name\": ...}");
        }
        if (!p) co_return Error(400, "token: no such policy: " + link.dump());
        t.policy_ids.push_back(p->id);
      }
    } else if ((k == "AccessorID" && v.is_string() && old && v.get<std::string>() == accessor) ||
               (old && (k == "CreateTime" || k == "CreateIndex" || k == "ModifyIndex"))) {
      // Echoed back from a read (Consul's clients send the whole token).
    } else if (k == "SecretID") {
      co_return Error(400, "token: SecretID is made by the server and cannot be set or changed");
    } else {
      co_return Error(400, "token: unknown or mistyped field \"" + k +
                               "\" (use Description: string, Policies: [{ID|Name}])");
    }
  }
  if (t.description.size() > 1024) co_return Error(400, "token: Description over 1024 bytes");
  std::string secret;
  if (!old) {
    if (acl_.tokens().size() >= acl::kMaxTokens)
      co_return Error(400, "token: at most " + std::to_string(acl::kMaxTokens) + " tokens");
    t.accessor = acl::NewUuid();
    secret = acl::NewUuid();
    t.secret_hash = acl::HashSecret(secret);
    t.create_time = static_cast<int64_t>(std::time(nullptr));
  }
  const std::string key = std::string(acl::kTokenPrefix) + t.accessor;
  const std::string doc = acl::TokenDoc(t);
  const int64_t expected = old ? old->modify_index : 0;
  store::Store* st = store_.get();
  const std::function<Result<int64_t>()> write = [st, key, doc, expected] {
    return st->PutIf(key, doc, expected);
  };
  Status s = co_await RunWrite(write);
  if (!s.ok()) co_return Error(HttpStatusFor(s), "token: " + s.message());
  LOG_INFO("acl: token {} {} by a request from {}", t.accessor, old ? "updated" : "created",
           req.peer);
  const acl::Token* now = acl_.TokenByAccessor(t.accessor);
  json out = (now ? *now : t).ToJson(acl_.policies());
  if (!secret.empty()) out["SecretID"] = secret;  // shown once: the store has only its hash
  co_return Reply(out, now ? now->modify_index : acl_.index());
}

asio::awaitable<Response> Api::AclJoinToken(Request& req, std::string_view rest) {
  const bool get = req.method == "GET" || req.method == "HEAD";
  store::Store* st = store_.get();
  if (rest == "join-tokens" && get) {
    json out = json::array();
    const std::function<Result<int64_t>()> read = [st, &out]() -> Result<int64_t> {
      auto all = join::List(st);
      if (!all.ok()) return all.status();
      for (const auto& t : all.value()) out.push_back(t.ToJson());
      return int64_t{0};
    };
    Status s = co_await RunWrite(read);
    if (!s.ok()) co_return Error(HttpStatusFor(s), "join tokens: " + s.message());
    co_return Reply(out, acl_.index());
  }
  if (rest == "join-token" && (req.method == "PUT" || req.method == "POST")) {
    json body = req.body.empty() ? json::object() : json::parse(req.body, nullptr, false);
    if (!body.is_object())
      co_return Error(400, "join token: the body must be a JSON object {TTL, Description}");
    int64_t ttl_s = join::kDefaultTtlS;
    std::string description;
    for (const auto& [k, v] : body.items()) {
      if (k == "TTL" && v.is_string()) {
        const std::string t = v.get<std::string>();
        auto ms = t == "0" ? std::optional<int64_t>(0) : ParseDurationMs(t);
        if (!ms || (*ms != 0 && *ms < 1000) || *ms / 1000 > join::kMaxTtlS)
          co_return Error(400, "join token: TTL \"" + t + "\": use 0 (never) or 1s to 8760h");
        ttl_s = *ms / 1000;
      } else if (k == "Description" && v.is_string()) {
        description = v.get<std::string>();
      } else {
        co_return Error(400, "join token: unknown or mistyped field \"" + k +
                                 "\" (use TTL: duration string, Description: string)");
      }
    }
    join::Token made;
    std::string secret;
    const std::function<Result<int64_t>()> write = [&]() -> Result<int64_t> {
      auto t = join::Create(st, ttl_s, description, "", &made);
      if (!t.ok()) return t.status();
      secret = t.value();
      return int64_t{0};
    };
    Status s = co_await RunWrite(write);
    if (!s.ok()) co_return Error(HttpStatusFor(s), "join token: " + s.message());
    LOG_INFO("acl: join token {} created by a request from {} (expires {})", made.id, req.peer,
             made.expiration_time);
    json out = made.ToJson();
    out["SecretID"] = secret;  // shown once: the store has only its hash
    co_return Reply(out, acl_.index());
  }
  if (StartsWith(rest, "join-token/") && req.method == "DELETE") {
    const std::string id(rest.substr(11));
    join::Token gone;
    const std::function<Result<int64_t>()> write = [&]() -> Result<int64_t> {
      Status r = join::Revoke(st, id, &gone);
      if (!r.ok()) return r;
      return int64_t{0};
    };
    Status s = co_await RunWrite(write);
    if (!s.ok()) co_return Error(HttpStatusFor(s), "join token: " + s.message());
    LOG_INFO("acl: join token {} revoked by a request from {}", gone.id, req.peer);
    co_return Reply(true, acl_.index());
  }
  co_return Error(405,
                  "use GET /v1/acl/join-tokens, PUT /v1/acl/join-token, DELETE "
                  "/v1/acl/join-token/ID");
}

Result<std::string> BootstrapAcl(store::Store* st, std::string secret) {
  auto done = st->Get(acl::kBootstrapKey);
  if (done.ok()) return std::string();
  if (done.status().code() != StatusCode::kNotFound) return done.status();
  // The built-in policies (fixed IDs: every replica writes the same ones).
  for (const auto& [id, name, rules] :
       {std::tuple{acl::kManagementPolicyId, acl::kManagementPolicy, acl::ManagementRules()},
        std::tuple{acl::kAnonymousPolicyId, acl::kAnonymousPolicy, acl::DefaultAnonymousRules()}}) {
    acl::Policy p;
    p.id = id;
    p.name = name;
    p.rules_text = rules;
    p.description = name == acl::kManagementPolicy ? "Everything (built in)"
                                                   : "What callers without a token may do";
    auto w = st->PutIf(std::string(acl::kPolicyPrefix) + p.id, acl::PolicyDoc(p), 0);
    if (!w.ok() && w.status().code() != StatusCode::kFailedPrecondition) return w.status();
  }
  if (secret.empty()) secret = acl::NewUuid();
  acl::Token t;
  t.accessor = acl::NewUuid();
  t.secret_hash = acl::HashSecret(secret);
  t.description = "Bootstrap management token";
  t.policy_ids = {std::string(acl::kManagementPolicyId)};
  t.create_time = static_cast<int64_t>(std::time(nullptr));
  const std::string key = std::string(acl::kTokenPrefix) + t.accessor;
  auto w = st->PutIf(key, acl::TokenDoc(t), 0);
  if (!w.ok()) return w.status();
  // The marker last: a replica that loses the race takes its token back.
  auto m = st->PutIf(acl::kBootstrapKey, t.accessor, 0);
  if (!m.ok()) {
    (void)st->Delete(key);
    if (m.status().code() == StatusCode::kFailedPrecondition) return std::string();
    return m.status();
  }
  return secret;
}

}  // namespace weft::control
