// The REST API's plumbing: the view of the store and how it follows the
// store's watch, writes off the io thread, blocking queries, replies, and
// the routing of a request to its handler (api_*.cc).
#include "control/api.h"

#include <chrono>

#include "base/log.h"
#include "base/random.h"
#include "base/strings.h"
#include "control/api_internal.h"
#include "io/asio.h"

namespace weft::control {
namespace {

using json = nlohmann::json;
using http::Request;
using http::Response;
using internal::NowMs;
using internal::StartsWith;

}  // namespace

Api::Api(asio::io_context& io, std::unique_ptr<store::Store> store, ApiOptions opts,
         std::unique_ptr<ApiRole> role)
    : io_(io),
      store_(std::move(store)),
      opts_(std::move(opts)),
      role_(role ? std::move(role) : std::make_unique<ApiRole>()),
      pool_(opts_.write_threads) {}

Api::~Api() {
  try {
    Stop();
    pool_.join();
    ui_pool_.join();
  } catch (...) {  // NOLINT(bugprone-empty-catch): nothing to do while tearing down
  }
}

void Api::Stop() {
  if (stopped_) return;
  stopped_ = true;
  *alive_ = false;
  if (watch_id_) store_->Unwatch(watch_id_);
  watch_id_ = 0;
  for (auto* t : waiters_) t->cancel();
  if (member_timer_) member_timer_->cancel();
}

void Api::SetAddresses(std::string http, std::string grpc) {
  http_addr_ = std::move(http);
  grpc_addr_ = std::move(grpc);
}

Status Api::Start() {
  auto r = store_->Range("");
  if (!r.ok()) return r.status();
  for (const auto& kv : r->kvs) ApplyKv(kv.key, &kv.value, kv.mod_revision, kv.create_revision);
  applied_ = r->revision;
  auto alive = alive_;
  auto w = store_->Watch("", r->revision, [this, alive](const std::vector<store::Event>& evs) {
    // Node documents are parsed here, on the store's thread, so the API's
    // thread only swaps them in.
    auto batch = std::make_shared<std::vector<ParsedEvent>>();
    batch->reserve(evs.size());
    for (const auto& e : evs) {
      ParsedEvent p{e, std::nullopt};
      if (e.type == store::Event::Type::kPut && StartsWith(e.kv.key, mesh::kNodePrefix)) {
        auto n = mesh::NodeFromJson(e.kv.value);
        if (n.ok()) p.node = std::move(n).value();
      }
      batch->push_back(std::move(p));
    }
    asio::post(io_, [this, alive, batch] {
      if (*alive) ApplyEvents(*batch);
    });
  });
  if (!w.ok()) return w.status();
  watch_id_ = w.value();
  LOG_INFO("state loaded at revision {}: {} nodes, {} config entries", applied_,
           catalog_.nodes().size(), config_.List("", "").size());
  return {};
}

void Api::ApplyKv(const std::string& key, const std::string* value, int64_t rev, int64_t create) {
  if (StartsWith(key, mesh::kNodePrefix)) {
    catalog_.Apply(key.substr(mesh::kNodePrefix.size()), value, rev, create);
  } else if (StartsWith(key, kConfigPrefix)) {
    config_.Apply(key, value, rev, create);
    config_changed_ = true;
  } else if (auto h = key_hooks_.find(key); h != key_hooks_.end()) {
    h->second(value);
  } else if (StartsWith(key, acl::kPrefix)) {
    acl_.Apply(key, value, rev, create);
  } else if (key == "leader/singleton") {
    leader_name_ = value ? *value : "";
  } else if (StartsWith(key, "members/")) {
    if (value) {
      members_[key] = *value;
    } else {
      members_.erase(key);
    }
  }
}

void Api::ApplyEvents(std::vector<ParsedEvent>& events) {
  // One batch is one write, possibly of several keys at the same revision
  // (a transaction, a lease expiring).
  int64_t seen = applied_;
  for (auto& pe : events) {
    const store::Event& e = pe.event;
    if (e.type == store::Event::Type::kReset) {
      // The store's history was compacted past this replica's watch: the
      // rest of the batch is the whole current state.
      LOG_WARN("store reset at revision {}: rebuilding the view", e.kv.mod_revision);
      catalog_.Clear(e.kv.mod_revision);
      config_.Clear(e.kv.mod_revision);
      acl_.Clear();
      config_changed_ = true;
      members_.clear();
      leader_name_.clear();
      seen = 0;
      applied_ = e.kv.mod_revision;
      continue;
    }
    if (e.kv.mod_revision <= seen) continue;  // already seen
    if (StartsWith(e.kv.key, mesh::kNodePrefix)) {
      catalog_.ApplyParsed(e.kv.key.substr(mesh::kNodePrefix.size()),
                           e.type == store::Event::Type::kPut ? std::move(pe.node) : std::nullopt,
                           e.kv.mod_revision, e.kv.create_revision);
    } else {
      ApplyKv(e.kv.key, e.type == store::Event::Type::kPut ? &e.kv.value : nullptr,
              e.kv.mod_revision, e.kv.create_revision);
    }
    applied_ = std::max(applied_, e.kv.mod_revision);
  }
  WakeWaiters();
  for (auto& fn : listeners_) fn();
}

void Api::WakeWaiters() {
  for (auto* t : waiters_) t->cancel();
}

asio::awaitable<Status> Api::RunWrite(const std::function<Result<int64_t>()>& fn) {
  Result<int64_t> r = co_await OffLoop(fn);
  if (!r.ok()) co_return r.status();
  co_await WaitApplied(r.value());
  co_return Status{};
}

asio::awaitable<void> Api::WaitApplied(int64_t revision) {
  const int64_t deadline = NowMs() + 5000;
  while (applied_ < revision && !stopped_ && NowMs() < deadline) {
    asio::steady_timer t(io_, std::chrono::milliseconds(deadline - NowMs()));
    waiters_.insert(&t);
    co_await t.async_wait(kNoThrow);
    waiters_.erase(&t);
  }
  if (applied_ < revision)
    LOG_WARN("write at revision {} not seen by this replica's watch after 5 s (at {})", revision,
             applied_);
}

asio::awaitable<void> Api::Block(const Request& req, const std::function<int64_t()>& index_fn) {
  const std::string* idx = req.Query("index");
  if (!idx) co_return;
  auto seen = ParseDecimal(*idx);
  if (!seen || *seen == 0) co_return;
  int64_t wait = opts_.default_wait_ms;
  if (const std::string* w = req.Query("wait")) {
    auto ms = ParseDurationMs(*w);
    if (ms && *ms > 0) wait = *ms;
  }
  wait = std::min(wait, opts_.max_wait_ms);
  // Up to wait/16 of jitter, as Consul does, so many watchers do not all
  // return in the same instant.
  static thread_local Rng rng(static_cast<uint64_t>(NowMs()) * 2654435761u);
  wait += static_cast<int64_t>(rng.Below(static_cast<uint64_t>(wait / 16 + 1)));
  auto current = [&] { return std::max<int64_t>(1, index_fn()); };
  // Answered at once when the index moved (or went backwards: a reset store).
  if (current() != static_cast<int64_t>(*seen)) co_return;
  if (waiters_.size() >= opts_.max_blocking_queries) {
    ++counters_.blocking_refused;
    LOG_WARN_LIMITED(
        "blocking query {} answered at once: {} already waiting (max_blocking_queries)", req.target,
        waiters_.size());
    co_return;
  }
  // One client address may hold only its share: a single host cannot take
  // every slot from the others.
  std::string client = req.peer.substr(0, req.peer.rfind(':'));
  size_t& mine = waiting_per_client_[client];
  if (mine >= opts_.max_blocking_queries_per_client) {
    ++counters_.blocking_refused;
    LOG_WARN_LIMITED(
        "blocking query {} from {} answered at once: it has {} waiting "
        "(max_blocking_queries_per_client)",
        req.target, client, mine);
    if (mine == 0) waiting_per_client_.erase(client);
    co_return;
  }
  ++mine;
  struct Release {
    std::unordered_map<std::string, size_t>* m;
    std::string key;
    ~Release() {
      auto it = m->find(key);
      if (it != m->end() && --it->second == 0) m->erase(it);
    }
  } release{&waiting_per_client_, client};
  ++counters_.blocking_started;
  const int64_t deadline = NowMs() + wait;
  while (!stopped_ && current() == static_cast<int64_t>(*seen) && NowMs() < deadline) {
    asio::steady_timer t(io_, std::chrono::milliseconds(deadline - NowMs()));
    waiters_.insert(&t);
    co_await t.async_wait(kNoThrow);
    waiters_.erase(&t);
  }
}

Response Api::Reply(const json& body, int64_t index) { return ReplyBody(body.dump(), index); }

Response Api::FilteredReply(json body, int64_t index,
                            const std::function<bool(const json&)>& keep) {
  bool dropped = false;
  if (opts_.acl) {
    if (body.is_array()) {
      json kept = json::array();
      for (auto& e : body) {
        if (keep(e))
          kept.push_back(std::move(e));
        else
          dropped = true;
      }
      body = std::move(kept);
    } else if (body.is_object()) {
      for (auto it = body.begin(); it != body.end();) {
        if (keep(json(it.key()))) {
          ++it;
        } else {
          it = body.erase(it);
          dropped = true;
        }
      }
    }
  }
  Response r = Reply(body, index);
  if (dropped) r.headers.emplace_back("X-Consul-Results-Filtered-By-ACLs", "true");
  return r;
}

Response Api::ReplyBody(std::string body, int64_t index) {
  Response r = Response::Json(200, std::move(body));
  r.headers.emplace_back("X-Consul-Index", std::to_string(std::max<int64_t>(1, index)));
  // An agent answers from its cache: it says how fresh that is (a server is
  // always fresh).
  const Freshness f = role_->CurrentFreshness();
  r.headers.emplace_back("X-Consul-KnownLeader", f.known_leader ? "true" : "false");
  r.headers.emplace_back("X-Consul-LastContact", std::to_string(f.last_contact_ms));
  if (f.stale) r.headers.emplace_back("X-Weft-Stale", "true");
  return r;
}

Response Api::ReplyCached(const std::string& key, int64_t index,
                          const std::function<std::string()>& render) {
  // Lookups repeat far more often than the catalog changes: keep each
  // rendered answer until its index moves. Bounded: cleared when full.
  auto it = body_cache_.find(key);
  if (it == body_cache_.end() || it->second.first != index) {
    if (body_cache_.size() >= kBodyCacheEntries) body_cache_.clear();
    it = body_cache_.insert_or_assign(key, std::make_pair(index, render())).first;
  }
  return ReplyBody(it->second.second, index);
}

Response Api::Error(int status, const std::string& msg) {
  if (status >= 500) {
    ++counters_.store_errors;
    LOG_ERROR("api: {}", msg);
  } else {
    ++counters_.rejected;
    LOG_DEBUG("api: {} {}", status, msg);
  }
  return Response::Text(status, msg);
}

asio::awaitable<Response> Api::Handle(Request& req) {
  ++counters_.requests;
  std::string_view path = req.path;
  if (std::optional<Response> refused = Refuse(req)) co_return std::move(*refused);
  // The caller's rights, for the route and for the handlers' checks against
  // the body; forgotten when the request ends.
  struct Forget {
    Api* api;
    const Request* req;
    ~Forget() { api->callers_.erase(req); }
  } forget{this, &req};
  if (opts_.acl) {
    const acl::Token* token = nullptr;
    if (std::string_view secret = TokenOf(req); !secret.empty()) {
      token = acl_.TokenBySecret(secret);
      if (!token) co_return Denied(req, "ACL not found");
    }
    callers_.insert_or_assign(&req, acl_.AuthzFor(token));
    if (std::string why = RouteDenied(req); !why.empty()) co_return Denied(req, why);
  }

  if (auto rt = routes_.find(path); rt != routes_.end()) co_return co_await rt->second(req);
  if (path == "/ready" || path == "/v1/status/leader" || path == "/v1/status/peers")
    co_return StatusRequest(path);
  if (path == "/metrics" || path == "/stats") co_return MetricsRequest();
  if (path == "/v1/agent/self") co_return AgentSelf();
  if (path == "/v1/agent/members") co_return AgentMembers();
  if (path == "/v1/connect/ca/roots") co_return CaRoots();
  if (path == "/v1/weft/prometheus-sd") co_return PrometheusSd(req);
  if (StartsWith(path, "/v1/catalog/")) co_return co_await CatalogRequest(req, path.substr(12));
  if (StartsWith(path, "/v1/health/")) co_return co_await HealthRequest(req, path.substr(11));
  if (StartsWith(path, "/v1/acl/")) co_return co_await AclRequest(req, path.substr(8));
  if (path == "/" || path == "/ui" || StartsWith(path, "/ui/")) co_return UiFile(req);
  if (StartsWith(path, "/v1/ui/")) co_return co_await UiRequest(req, path.substr(7));
  if (StartsWith(path, "/v1/config")) {
    std::string_view rest = path.substr(10);
    if (!rest.empty() && rest[0] != '/') co_return Error(404, "not found: " + std::string(path));
    // Worked out before the co_await: GCC 12 miscompiles a conditional
    // expression in its operand (the request never completed).
    const std::string_view sub = rest.empty() ? rest : rest.substr(1);
    co_return co_await ConfigRequest(req, sub);
  }
  co_return Error(404, "not found: " + std::string(path) +
                           " (see docs/api.md: /v1/catalog, /v1/health, /v1/config)");
}

}  // namespace weft::control
