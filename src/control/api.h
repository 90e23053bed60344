// The control plane's REST API and the in-memory state behind it.
//
// Threading: everything here runs on one io_context thread, except store
// writes, which run on a small pool so that a slow fsync or an etcd round
// trip never stalls reads or blocking queries. Store watch events are posted
// back to the io_context and applied in revision order; a write is answered
// only once its own revision has been applied, so a client reads its writes.
#pragma once

#include <asio.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "control/acl.h"
#include "control/config_view.h"
#include "control/store/store.h"
#include "control/ui_scraper.h"
#include "http/server.h"
#include "mesh/catalog.h"

namespace weft::prom {
class Writer;
}

namespace weft::control {

// How fresh an agent's cached answers are.
struct Freshness {
  bool known_leader = true;  // connected to a server
  int64_t last_contact_ms = 0;
  bool stale = false;  // out of touch for longer than the agent tolerates
};

// Who answers the API: what the process says about itself, which writes it
// takes and how fresh its reads are. The defaults are a server's; the agent
// supplies its own (agent/agent_api.cc). Owned by the Api; its methods are
// called on the io thread, from Handle(), for as long as requests arrive
// (Stop() does not end them).
class ApiRole {
 public:
  virtual ~ApiRole() = default;
  // Config.Server in /v1/agent/self.
  virtual bool IsServer() const { return true; }
  // This process's "role" tag in /v1/agent/members.
  virtual std::string_view Label() const { return "server"; }
  // A catalog or config write that passed the request's own checks: "" lets
  // it reach the store; any other text is the 405 answer.
  virtual std::string RefuseWrite(const http::Request& req) const { return ""; }
  // The X-Consul-KnownLeader, X-Consul-LastContact and X-Weft-Stale headers
  // of every read.
  virtual Freshness CurrentFreshness() const { return {}; }
};

struct ApiOptions {
  std::string name;
  int64_t max_wait_ms = 10 * 60 * 1000;
  int64_t default_wait_ms = 5 * 60 * 1000;
  size_t max_blocking_queries = 8192;
  size_t max_blocking_queries_per_client = 1024;  // per client address, of the above
  size_t write_threads = 64;  // store calls in flight (etcd round trips overlap)
  mesh::CatalogLimits limits;
  // Every request is checked against its token's policies (acl.h). Off:
  // everything is open (--dev).
  bool acl = false;
  // Host names requests may carry besides IP literals and localhost; ".x"
  // allows every name under x.
  std::vector<std::string> allowed_hosts;
};

struct ApiCounters {
  uint64_t requests = 0;
  uint64_t writes = 0;
  uint64_t write_conflicts = 0;  // compare-and-swap retries
  uint64_t rejected = 0;         // 4xx answers
  uint64_t store_errors = 0;     // 5xx answers
  uint64_t blocking_started = 0;
  uint64_t blocking_refused = 0;      // over max_blocking_queries: answered at once
  uint64_t acl_denied = 0;            // 403: unknown token or missing permission
  uint64_t refused_host = 0;          // 403: a Host this server does not answer to
  uint64_t refused_content_type = 0;  // 415: a write with a form's content type
  uint64_t refused_origin = 0;        // 403: a write a browser sent from another site
};

// Makes the built-in policies and a management token once per store (the
// first replica wins). Returns the token's secret (`secret`, or a new one)
// when this call made it, "" when the store was bootstrapped before.
Result<std::string> BootstrapAcl(store::Store* st, std::string secret);

class Api {
 public:
  // `role` null: a server's (ApiRole's defaults).
  Api(asio::io_context& io, std::unique_ptr<store::Store> store, ApiOptions opts,
      std::unique_ptr<ApiRole> role = nullptr);
  ~Api();

  // Call everything below on the io thread (before the io_context runs: on
  // the thread that will run it), except store(), which is thread-safe.

  // Loads the store's state and starts following its changes.
  Status Start();
  // Stops following the store and ends blocking queries, write waits and
  // RunMembership at their next wake-up; idempotent. Handle() still answers.
  void Stop();
  void SetAddresses(std::string http, std::string grpc);
  // The trust bundle served at /v1/connect/ca/roots (Consul's shape).
  void SetCaRoots(nlohmann::json roots) { ca_roots_ = std::move(roots); }

  // `req` must stay valid until the returned awaitable completes.
  asio::awaitable<http::Response> Handle(http::Request& req);
  // The checks every request passes before any handler, with or without
  // ACLs: a Host this server answers to (DNS rebinding), no form content
  // types on writes (cross-site forms), no token in the URL. For routes
  // served in front of Handle (the agent's own).
  std::optional<http::Response> Refuse(const http::Request& req);
  // The token a request carries (X-Consul-Token, or Authorization: Bearer).
  static std::string_view TokenOf(const http::Request& req);

  // Replicas sharing a store: announces this one under members/ (bound to
  // the store session) and keeps campaigning for the singleton duties, until
  // Stop().
  asio::awaitable<void> RunMembership();
  bool leader() const { return leader_; }

  // State, for the stream server and the compiler: valid as long as the Api;
  // what they hold (and pointers taken from them) changes when a batch of
  // store events is applied.
  const mesh::CatalogLimits& limits() const { return opts_.limits; }
  const mesh::CatalogView& catalog() const { return catalog_; }
  const ConfigView& config() const { return config_; }
  // The store, for writers outside the REST API (agents' node syncs); owned
  // by the Api, thread-safe.
  store::Store* store() const { return store_.get(); }
  int64_t applied_revision() const { return applied_; }
  // `fn` runs on the io thread after each batch of store events is applied;
  // never after Stop().
  void OnChange(std::function<void()> fn) { listeners_.push_back(std::move(fn)); }
  // `fn` runs on the io thread when store key `key` is written (value) or
  // deleted (nullptr), on every replica, and from Start() for a stored key
  // when registered before it; never after Stop(). The value pointer is
  // valid during the call only.
  void OnKey(const std::string& key, std::function<void(const std::string*)> fn) {
    key_hooks_[key] = std::move(fn);
  }
  // An extra endpoint (exact path), for parts of the server outside the API.
  // `fn` runs on the io thread for each request to `path`, also after Stop().
  using RouteFn = std::function<asio::awaitable<http::Response>(http::Request&)>;
  void AddRoute(const std::string& path, RouteFn fn) { routes_[path] = std::move(fn); }
  // Runs `fn` (blocking work: a store write) once on a write-pool thread, then
  // waits on the io thread until this replica's view has applied the revision
  // it returns (5 s at most, less after Stop()).
  asio::awaitable<Status> RunWrite(const std::function<Result<int64_t>()>& fn);
  // What changed since the last call: service names, node names, config.
  void TakeChanges(std::set<std::string>* services, std::set<std::string>* nodes, bool* config) {
    *services = catalog_.TakeChangedServices();
    *nodes = catalog_.TakeChangedNodes();
    *config = std::exchange(config_changed_, false);
  }
  const ApiCounters& counters() const { return counters_; }
  const acl::AclState& acl_state() const { return acl_; }
  // Adds text to /metrics: `fn` runs on the io thread for each /metrics or
  // /stats request, also after Stop().
  void AddMetricsSource(std::function<void(prom::Writer&)> fn) {
    metric_sources_.push_back(std::move(fn));
  }
  // Adds members (e.g. connected stream clients) to /v1/agent/members: `fn`
  // runs on the io thread for each such request, also after Stop().
  void AddMemberSource(std::function<void(nlohmann::json*)> fn) {
    member_sources_.push_back(std::move(fn));
  }

 private:
  struct ParsedEvent {
    store::Event event;
    std::optional<mesh::Node> node;  // node documents, parsed on the store's thread
  };
  void ApplyEvents(std::vector<ParsedEvent>& events);
  void ApplyKv(const std::string& key, const std::string* value, int64_t rev, int64_t create);
  void WakeWaiters();
  // Waits until index_fn() differs from `seen` (or the request's wait ends).
  asio::awaitable<void> Block(const http::Request& req, const std::function<int64_t()>& index_fn);
  asio::awaitable<void> WaitApplied(int64_t revision);
  // Runs f() on `pool` (default pool_) and resumes on the io thread with
  // its result; `f` is used by reference until then.
  template <typename F>
  asio::awaitable<std::invoke_result_t<F>> OffLoop(const F& f, asio::thread_pool* pool = nullptr);

  // The dashboard (api_ui.cc).
  http::Response UiFile(const http::Request& req);
  asio::awaitable<http::Response> UiRequest(http::Request& req, std::string_view rest);
  std::vector<UiMember> UiMembers() const;
  std::string UiOverviewBody(const nlohmann::json& reading, const std::set<std::string>& denied,
                             bool history, bool operate) const;
  // /v1/agent/members' list.
  nlohmann::json MembersJson() const;

  http::Response Reply(const nlohmann::json& body, int64_t index);
  // A rendered JSON body with the index and freshness headers.
  http::Response ReplyBody(std::string body, int64_t index);
  // A rendered read, memoized until the index of what it shows moves.
  http::Response ReplyCached(const std::string& key, int64_t index,
                             const std::function<std::string()>& render);
  static constexpr size_t kBodyCacheEntries = 4096;
  http::Response Error(int status, const std::string& msg);

  // The handlers, routed by Handle(). `rest`: the path after "/v1/catalog/",
  // "/v1/health/" or "/v1/config/".
  // api_status.cc
  http::Response StatusRequest(std::string_view path);  // /ready, /v1/status/*
  http::Response MetricsRequest();
  http::Response AgentSelf();
  http::Response AgentMembers();
  http::Response CaRoots();
  std::string Metrics() const;
  // api_health.cc
  asio::awaitable<http::Response> HealthRequest(http::Request& req, std::string_view rest);
  http::Response PrometheusSd(const http::Request& req);
  // api_catalog.cc
  asio::awaitable<http::Response> CatalogRequest(http::Request& req, std::string_view rest);
  asio::awaitable<http::Response> CatalogRegister(http::Request& req);
  asio::awaitable<http::Response> CatalogDeregister(http::Request& req);
  // "" when the caller may write node `node` and every service `body` (a
  // catalog register or deregister) touches, else the 403 text.
  std::string CatalogWriteDenied(const http::Request& req, const nlohmann::json& body,
                                 const std::string& node) const;
  // api_config.cc
  asio::awaitable<http::Response> ConfigRequest(http::Request& req, std::string_view rest);
  asio::awaitable<http::Response> ConfigPut(http::Request& req, const std::string& kind,
                                            const std::string& name, const std::string& ns);
  asio::awaitable<http::Response> ConfigDelete(http::Request& req, const std::string& kind,
                                               const std::string& name, const std::string& ns);
  // api_acl.cc
  asio::awaitable<http::Response> AclRequest(http::Request& req, std::string_view rest);
  asio::awaitable<http::Response> AclPolicyPut(http::Request& req, std::string id);
  // Creates a token (accessor "") or updates one (its Description and
  // Policies; the secret never changes).
  asio::awaitable<http::Response> AclTokenPut(http::Request& req, std::string accessor);
  // /v1/acl/join-tokens, /v1/acl/join-token[/ID] (join_token.h).
  asio::awaitable<http::Response> AclJoinToken(http::Request& req, std::string_view rest);
  // "" when the request's caller may do `need` on `name` (always, with ACLs
  // off), else the 403 text.
  std::string Deny(const http::Request& req, acl::Resource r, std::string_view name,
                   acl::Access need) const;
  // Lists show only what the caller may read (Consul's ACL filtering):
  // FilteredReply drops the entries `keep` refuses and says so in
  // X-Consul-Results-Filtered-By-ACLs.
  bool MayRead(const http::Request& req, acl::Resource r, std::string_view name) const {
    return Deny(req, r, name, acl::Access::kRead).empty();
  }
  http::Response FilteredReply(nlohmann::json body, int64_t index,
                               const std::function<bool(const nlohmann::json&)>& keep);
  // The permission a route needs that its path alone decides ("" when
  // allowed, or when its handler checks against the body).
  std::string RouteDenied(const http::Request& req) const;
  http::Response Denied(const http::Request& req, const std::string& why);
  // A config entry's name in ACL rules: KIND/NAMESPACE/NAME.
  static std::string ConfigRuleName(std::string_view kind, std::string_view ns,
                                    std::string_view name);

  // Constant after construction.
  asio::io_context& io_;
  std::unique_ptr<store::Store> store_;
  const ApiOptions opts_;
  const std::unique_ptr<const ApiRole> role_;
  asio::thread_pool pool_;  // runs the store calls of writes (OffLoop)
  // The dashboard's readings of sidecars (slow HTTP), apart from the
  // writes (an agent runs one write thread).
  asio::thread_pool ui_pool_{2};

  // Io thread only.
  mesh::CatalogView catalog_;
  ConfigView config_;
  acl::AclState acl_;
  // The rights of each request being handled (ACLs on), by request.
  std::unordered_map<const http::Request*, acl::Authz> callers_;
  int64_t applied_ = 0;
  int64_t watch_id_ = 0;
  std::set<asio::steady_timer*> waiters_;
  // Blocking queries waiting, per client address (entries leave at zero).
  std::unordered_map<std::string, size_t> waiting_per_client_;
  std::vector<std::function<void()>> listeners_;
  std::map<std::string, std::function<void(const std::string*)>> key_hooks_;
  std::map<std::string, RouteFn, std::less<>> routes_;
  std::vector<std::function<void(nlohmann::json*)>> member_sources_;
  std::unique_ptr<UiScraper> ui_ = std::make_unique<UiScraper>();
  // Rendered overviews, by what the caller may not read and whether the
  // series go: (reading's time, catalog index, body). Bounded.
  struct UiBody {
    int64_t updated_ms = 0, catalog_index = 0;
    std::string body;
  };
  std::map<std::string, UiBody> ui_bodies_;
  static constexpr size_t kUiBodies = 64;
  std::vector<std::function<void(prom::Writer&)>> metric_sources_;
  std::map<std::string, std::string> members_;  // members/... keys (other replicas)
  std::unordered_map<std::string, std::pair<int64_t, std::string>> body_cache_;  // ReplyCached
  std::string http_addr_, grpc_addr_;
  ApiCounters counters_;
  bool stopped_ = false;
  bool config_changed_ = false;
  bool leader_ = false;
  std::string leader_name_;  // holder of leader/singleton, from the store
  nlohmann::json ca_roots_;
  asio::steady_timer* member_timer_ = nullptr;  // RunMembership's wait, for Stop()
  // False after Stop(). Shared with store callbacks that may outlive a
  // stopped Api; the bool itself is read and written on the io thread only.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace weft::control
