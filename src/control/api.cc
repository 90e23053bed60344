#include "control/api.h"

#include <asio/experimental/as_tuple.hpp>
#include <chrono>

#include "base/log.h"
#include "base/prometheus.h"
#include "base/random.h"
#include "base/strings.h"
#include "io/asio.h"

namespace weft::control {
namespace {

using json = nlohmann::json;
using http::Request;
using http::Response;
constexpr int kMaxCasAttempts = 32;

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int HttpStatusFor(const Status& s) {
  switch (s.code()) {
    case StatusCode::kInvalidArgument:
      return 400;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kFailedPrecondition:
      return 409;
    default:
      return 503;
  }
}

std::string NodeKey(std::string_view node) {
  return std::string(mesh::kNodePrefix) + std::string(node);
}

}  // namespace

Api::Api(asio::io_context& io, std::unique_ptr<store::Store> store, ApiOptions opts)
    : io_(io), store_(std::move(store)), opts_(std::move(opts)), pool_(opts_.write_threads) {}

Api::~Api() {
  try {
    Stop();
    pool_.join();
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

template <typename F>
asio::awaitable<std::invoke_result_t<F>> Api::OffLoop(const F& f) {
  using R = std::invoke_result_t<F>;
  // co_spawn's result must be default-constructible; Result<T> is not.
  auto task = [&f]() -> asio::awaitable<std::optional<R>> { co_return std::optional<R>(f()); };
  std::optional<R> r = co_await asio::co_spawn(pool_, task, asio::use_awaitable);
  co_return std::move(*r);
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
    LOG_WARN("blocking query {} answered at once: {} already waiting (max_blocking_queries)",
             req.target, waiters_.size());
    co_return;
  }
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

Response Api::ReplyBody(std::string body, int64_t index) {
  Response r = Response::Json(200, std::move(body));
  r.headers.emplace_back("X-Consul-Index", std::to_string(std::max<int64_t>(1, index)));
  if (opts_.freshness) {
    // An agent answers from its cache: say how fresh it is.
    const Freshness f = opts_.freshness();
    r.headers.emplace_back("X-Consul-KnownLeader", f.known_leader ? "true" : "false");
    r.headers.emplace_back("X-Consul-LastContact", std::to_string(f.last_contact_ms));
    if (f.stale) r.headers.emplace_back("X-Weft-Stale", "true");
  } else {
    r.headers.emplace_back("X-Consul-KnownLeader", "true");
    r.headers.emplace_back("X-Consul-LastContact", "0");
  }
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
  const bool get = req.method == "GET" || req.method == "HEAD";
  const bool put = req.method == "PUT" || req.method == "POST";

  if (auto rt = routes_.find(path); rt != routes_.end()) co_return co_await rt->second(req);
  if (path == "/ready" || path == "/v1/status/leader") {
    if (path == "/ready") co_return Response::Text(200, "ready");
    co_return Response::Json(200, json(http_addr_).dump());
  }
  if (path == "/metrics" || path == "/stats") {
    Response r = Response::Text(200, Metrics());
    r.content_type = "text/plain; version=0.0.4";
    co_return r;
  }
  if (path == "/v1/status/peers") co_return Response::Json(200, json::array({http_addr_}).dump());
  if (path == "/v1/agent/self") {
    co_return Reply({{"Config",
                      {{"Datacenter", "dc1"},
                       {"NodeName", opts_.name},
                       {"Server", !opts_.agent_mode},
                       {"Version", WEFT_VERSION}}},
                     {"Member", {{"Name", opts_.name}, {"Addr", http_addr_}, {"Status", 1}}}},
                    applied_);
  }

  if (path == "/v1/connect/ca/roots") {
    if (ca_roots_.is_null()) co_return Error(404, "no CA on this process");
    co_return Reply(ca_roots_, applied_);
  }
  if (path == "/v1/weft/prometheus-sd") {
    // Prometheus HTTP service discovery (http_sd_configs): one target group
    // per healthy instance, with __meta_weft_* labels for relabelling.
    const std::string* only = req.Query("service");
    json out = json::array();
    auto label_name = [](const std::string& k) {
      std::string n;
      for (char c : k) n += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
      return n;
    };
    for (const auto& [name, n] : catalog_.nodes()) {
      for (const auto& [id, s] : n.services) {
        if (s.kind == "connect-proxy" || (only && s.service != *only) || s.port == 0) continue;
        const std::string health = mesh::InstanceHealth(n, s);
        if (health == "critical") continue;
        const std::string& addr = s.address.empty() ? n.address : s.address;
        std::string tags = ",";
        for (const auto& t : s.tags) tags += t + ",";
        json labels = {{"__meta_weft_service", s.service},
                       {"__meta_weft_service_id", s.id},
                       {"__meta_weft_namespace", s.ns},
                       {"__meta_weft_node", n.name},
                       {"__meta_weft_health", health},
                       {"__meta_weft_tags", tags},
                       {"__meta_weft_zone", s.zone.empty() ? n.zone : s.zone}};
        for (const auto& [k, v] : s.meta)
          labels["__meta_weft_service_metadata_" + label_name(k)] = v;
        const std::string target = addr.find(':') != std::string::npos
                                       ? "[" + addr + "]:" + std::to_string(s.port)
                                       : addr + ":" + std::to_string(s.port);
        out.push_back({{"targets", json::array({target})}, {"labels", labels}});
      }
    }
    co_return Reply(out, catalog_.services_index());
  }

  if (path == "/v1/agent/members") {
    json out = json::array();
    auto host_port = [](const std::string& a) {
      size_t c = a.rfind(':');
      return std::make_pair(a.substr(0, c),
                            c == std::string::npos ? 0 : std::atoi(a.c_str() + c + 1));
    };
    auto [addr, port] = host_port(http_addr_);
    out.push_back({{"Name", opts_.name},
                   {"Addr", addr},
                   {"Port", port},
                   {"Status", 1},
                   {"Tags",
                    {{"role", opts_.agent_mode ? "agent" : "server"},
                     {"grpc", grpc_addr_},
                     {"detail", std::string("self") + (leader_ ? ", leader" : "")}}}});
    for (const auto& [key, value] : members_) {
      json m = json::parse(value, nullptr, false);
      if (!m.is_object() || m.value("Name", "") == opts_.name) continue;
      auto [a, p] = host_port(m.value("Http", ""));
      out.push_back({{"Name", m.value("Name", "")},
                     {"Addr", a},
                     {"Port", p},
                     {"Status", 1},
                     {"Tags",
                      {{"role", m.value("Role", "server")},
                       {"grpc", m.value("Grpc", "")},
                       {"detail", m.value("Name", "") == leader_name_ ? "leader" : ""}}}});
    }
    for (const auto& fn : member_sources_) fn(&out);
    co_return Reply(out, applied_);
  }

  if (StartsWith(path, "/v1/catalog/")) {
    std::string_view rest = path.substr(12);
    if (rest == "register") {
      if (!put) co_return Error(405, "use PUT /v1/catalog/register");
      if (opts_.agent_mode) co_return AgentRefusesWrite(req);
      co_return co_await CatalogRegister(req);
    }
    if (rest == "deregister") {
      if (!put) co_return Error(405, "use PUT /v1/catalog/deregister");
      if (opts_.agent_mode) co_return AgentRefusesWrite(req);
      co_return co_await CatalogDeregister(req);
    }
    if (!get) co_return Error(405, "use GET");
    if (rest == "services") {
      if (req.HasQuery("index")) {  // a blocking query
        const std::function<int64_t()> ix = [this] { return catalog_.services_index(); };
        co_await Block(req, ix);
      }
      co_return Reply(catalog_.CatalogServices(), catalog_.services_index());
    }
    if (rest == "nodes") {
      if (req.HasQuery("index")) {  // a blocking query
        const std::function<int64_t()> ix = [this] { return catalog_.nodes_index(); };
        co_await Block(req, ix);
      }
      co_return Reply(catalog_.CatalogNodes(), catalog_.nodes_index());
    }
    if (StartsWith(rest, "service/")) {
      std::string name(rest.substr(8));
      if (req.HasQuery("index")) {  // a blocking query
        const std::function<int64_t()> ix = [this, &name] { return catalog_.service_index(name); };
        co_await Block(req, ix);
      }
      const std::string* tag = req.Query("tag");
      const int64_t index = catalog_.service_index(name);
      co_return ReplyCached("c|" + name + (tag ? "|" + *tag : ""), index, [&] {
        json out = catalog_.CatalogService(name);
        if (tag) {
          json f = json::array();
          for (auto& e : out)
            for (const auto& t : e["ServiceTags"])
              if (t == *tag) {
                f.push_back(e);
                break;
              }
          out = std::move(f);
        }
        return out.dump();
      });
    }
    if (StartsWith(rest, "node/")) {
      std::string name(rest.substr(5));
      if (req.HasQuery("index")) {  // a blocking query
        const std::function<int64_t()> ix = [this] { return catalog_.nodes_index(); };
        co_await Block(req, ix);
      }
      const mesh::Node* n = catalog_.FindNode(name);
      if (!n) co_return Reply(nullptr, catalog_.nodes_index());
      json services = json::object();
      for (const auto& [id, s] : n->services) services[id] = mesh::InstanceJson(s);
      co_return Reply({{"Node", mesh::NodeJson(*n)}, {"Services", services}}, n->modify_index);
    }
    co_return Error(404, "unknown catalog endpoint " + std::string(path));
  }

  if (StartsWith(path, "/v1/health/")) {
    if (!get) co_return Error(405, "use GET");
    std::string_view rest = path.substr(11);
    if (StartsWith(rest, "service/")) {
      std::string name(rest.substr(8));
      const std::string* passing = req.Query("passing");
      const bool only = passing && *passing != "false" && *passing != "0";
      if (req.HasQuery("index")) {  // a blocking query
        const std::function<int64_t()> ix = [this, &name] { return catalog_.service_index(name); };
        co_await Block(req, ix);
      }
      const std::string* tag = req.Query("tag");
      const int64_t index = catalog_.service_index(name);
      co_return ReplyCached("h|" + name + (only ? "|p" : "") + (tag ? "|t|" + *tag : ""), index,
                            [&] {
                              json out = catalog_.HealthService(name, only);
                              if (tag) {
                                json f = json::array();
                                for (auto& e : out) {
                                  const auto& tags = e["Service"]["Tags"];
                                  if (std::find(tags.begin(), tags.end(), *tag) != tags.end())
                                    f.push_back(std::move(e));
                                }
                                out = std::move(f);
                              }
                              return out.dump();
                            });
    }
    if (StartsWith(rest, "checks/")) {
      std::string name(rest.substr(7));
      if (req.HasQuery("index")) {  // a blocking query
        const std::function<int64_t()> ix = [this, &name] { return catalog_.service_index(name); };
        co_await Block(req, ix);
      }
      json out = json::array();
      for (const auto& r : catalog_.Instances(name))
        for (const auto& [id, c] : r.node->checks)
          if (c.service_id == r.instance->id) out.push_back(mesh::CheckToJson(*r.node, c));
      co_return Reply(out, catalog_.service_index(name));
    }
    if (StartsWith(rest, "node/")) {
      std::string name(rest.substr(5));
      if (req.HasQuery("index")) {  // a blocking query
        const std::function<int64_t()> ix = [this] { return catalog_.nodes_index(); };
        co_await Block(req, ix);
      }
      json out = json::array();
      if (const mesh::Node* n = catalog_.FindNode(name))
        for (const auto& [id, c] : n->checks) out.push_back(mesh::CheckToJson(*n, c));
      co_return Reply(out, catalog_.nodes_index());
    }
    if (StartsWith(rest, "state/")) {
      std::string state(rest.substr(6));
      if (state != "any" && state != "passing" && state != "warning" && state != "critical")
        co_return Error(400,
                        "health state \"" + state + "\": use any, passing, warning or critical");
      if (req.HasQuery("index")) {  // a blocking query
        const std::function<int64_t()> ix = [this] { return catalog_.nodes_index(); };
        co_await Block(req, ix);
      }
      json out = json::array();
      for (const auto& [name, n] : catalog_.nodes())
        for (const auto& [id, c] : n.checks)
          if (state == "any" || c.status == state) out.push_back(mesh::CheckToJson(n, c));
      co_return Reply(out, catalog_.nodes_index());
    }
    co_return Error(404, "unknown health endpoint " + std::string(path));
  }

  if (StartsWith(path, "/v1/config")) {
    std::string_view rest = path.substr(10);
    if (!rest.empty() && rest[0] != '/') co_return Error(404, "not found: " + std::string(path));
    co_return co_await ConfigRequest(req, rest.empty() ? rest : rest.substr(1));
  }
  co_return Error(404, "not found: " + std::string(path) +
                           " (see docs/api.md: /v1/catalog, /v1/health, /v1/config)");
}

// A catalog write's body: a JSON object (field names as Consul spells them,
// in any case) naming a valid node. Returns "" or what is wrong.
static std::string ParseCatalogBody(const std::string& text, json* body, std::string* node_name) {
  *body = json::parse(text, nullptr, false);
  if (body->is_discarded() || !body->is_object()) return "the body must be a JSON object";
  mesh::CanonicalizeKeys(body);
  if (auto it = body->find("Node"); it != body->end() && it->is_string()) *node_name = *it;
  if (node_name->empty() || !mesh::ValidName(*node_name))
    return "Node: required, a valid node name";
  return "";
}

Response Api::AgentRefusesWrite(const Request& req) {
  return Error(405, req.method + " " + req.path +
                        ": this is an agent serving a read-only copy of the catalog; register "
                        "local services with PUT /v1/agent/service/register, and send catalog and "
                        "config writes to a server");
}

asio::awaitable<Response> Api::CatalogRegister(Request& req) {
  json body;
  std::string node_name;
  if (std::string err = ParseCatalogBody(req.body, &body, &node_name); !err.empty())
    co_return Error(400, "catalog register: " + err);
  const std::string key = NodeKey(node_name);
  const mesh::CatalogLimits limits = opts_.limits;
  store::Store* st = store_.get();
  uint64_t conflicts = 0;
  // Read-modify-write of the node document with compare-and-swap, so
  // concurrent registrations on one node (from any replica) never lose one.
  // The first attempt starts from this replica's view (no read round trip);
  // if the view was behind, the swap fails and the next attempts read.
  std::optional<mesh::Node> cached;
  if (const mesh::Node* n = catalog_.FindNode(node_name)) cached = *n;
  const bool known_absent = !cached && catalog_.FindNode(node_name) == nullptr;
  const auto work = [st, key, body, limits, &conflicts, &cached,
                     known_absent]() -> Result<int64_t> {
    for (int attempt = 0; attempt < kMaxCasAttempts; ++attempt) {
      mesh::Node node;
      int64_t expected = 0;
      if (attempt == 0 && (cached || known_absent)) {
        if (cached) {
          node = *cached;
          expected = cached->modify_index;
        }
        if (Status s = mesh::ApplyRegistration(body, limits, &node); !s.ok()) return s;
        auto w = st->PutIf(key, mesh::NodeToJson(node), expected);
        if (w.ok() || w.status().code() != StatusCode::kFailedPrecondition) return w;
        ++conflicts;
        continue;
      }
      auto cur = st->Get(key);
      if (cur.ok()) {
        auto parsed = mesh::NodeFromJson(cur->value);
        if (!parsed.ok()) return parsed.status();
        node = std::move(parsed).value();
        expected = cur->mod_revision;
      } else if (cur.status().code() != StatusCode::kNotFound) {
        return cur.status();
      }
      if (Status s = mesh::ApplyRegistration(body, limits, &node); !s.ok()) return s;
      auto w = st->PutIf(key, mesh::NodeToJson(node), expected);
      if (w.ok() || w.status().code() != StatusCode::kFailedPrecondition) return w;
      ++conflicts;
    }
    return Status(StatusCode::kUnavailable, "catalog register: too many concurrent writes to node");
  };
  Result<int64_t> r = co_await OffLoop(work);
  counters_.write_conflicts += conflicts;
  if (!r.ok())
    co_return Error(HttpStatusFor(r.status()), "catalog register: " + r.status().message());
  ++counters_.writes;
  co_await WaitApplied(r.value());
  co_return Reply(true, r.value());
}

asio::awaitable<Response> Api::CatalogDeregister(Request& req) {
  json body;
  std::string node_name;
  if (std::string err = ParseCatalogBody(req.body, &body, &node_name); !err.empty())
    co_return Error(400, "catalog deregister: " + err);
  const std::string key = NodeKey(node_name);
  store::Store* st = store_.get();
  uint64_t conflicts = 0;
  const auto work = [st, key, body, &conflicts]() -> Result<int64_t> {
    for (int attempt = 0; attempt < kMaxCasAttempts; ++attempt) {
      auto cur = st->Get(key);
      if (!cur.ok()) return cur.status();
      auto parsed = mesh::NodeFromJson(cur->value);
      if (!parsed.ok()) return parsed.status();
      mesh::Node node = std::move(parsed).value();
      bool remove_node = false;
      if (Status s = mesh::ApplyDeregistration(body, &node, &remove_node); !s.ok()) return s;
      // Delete is not conditional in the Store interface; overwrite with a
      // CAS first so a concurrent registration is not lost, then delete.
      if (remove_node) {
        auto w = st->PutIf(key, cur->value, cur->mod_revision);
        if (!w.ok()) {
          if (w.status().code() == StatusCode::kFailedPrecondition) {
            ++conflicts;
            continue;
          }
          return w;
        }
        return st->Delete(key);
      }
      auto w = st->PutIf(key, mesh::NodeToJson(node), cur->mod_revision);
      if (w.ok() || w.status().code() != StatusCode::kFailedPrecondition) return w;
      ++conflicts;
    }
    return Status(StatusCode::kUnavailable,
                  "catalog deregister: too many concurrent writes to node");
  };
  Result<int64_t> r = co_await OffLoop(work);
  counters_.write_conflicts += conflicts;
  if (!r.ok()) {
    if (r.status().code() == StatusCode::kNotFound)
      co_return Error(404, "catalog deregister: " + r.status().message());
    co_return Error(HttpStatusFor(r.status()), "catalog deregister: " + r.status().message());
  }
  ++counters_.writes;
  co_await WaitApplied(r.value());
  co_return Reply(true, r.value());
}

asio::awaitable<Response> Api::ConfigRequest(Request& req, std::string_view rest) {
  // /v1/config, /v1/config/KIND, /v1/config/KIND/NAME; ?ns= picks the namespace.
  std::string kind, name;
  size_t slash = rest.find('/');
  kind = std::string(rest.substr(0, slash));
  if (slash != std::string_view::npos) name = std::string(rest.substr(slash + 1));
  if (!kind.empty()) {
    bool known = false;
    for (const auto& k : mesh::Kinds()) known |= k == kind;
    if (!known) {
      std::string kinds;
      for (const auto& k : mesh::Kinds()) kinds += (kinds.empty() ? "" : ", ") + k;
      co_return Error(404, "unknown config kind \"" + kind + "\": use one of " + kinds);
    }
  }
  if (!name.empty() && !mesh::ValidName(name))
    co_return Error(400, "invalid name \"" + name + "\"");
  std::string ns = "default";
  bool all_ns = false;
  if (const std::string* q = req.Query("ns")) {
    if (*q == "*") {
      all_ns = true;
    } else if (!q->empty()) {
      if (!mesh::ValidName(*q)) co_return Error(400, "invalid namespace \"" + *q + "\"");
      ns = *q;
    }
  }
  if (req.method == "PUT" || req.method == "POST") {
    if (kind.empty() || name.empty()) co_return Error(405, "use PUT /v1/config/KIND/NAME");
    if (opts_.agent_mode) co_return AgentRefusesWrite(req);
    co_return co_await ConfigPut(req, kind, name, ns);
  }
  if (req.method == "DELETE") {
    if (kind.empty() || name.empty()) co_return Error(405, "use DELETE /v1/config/KIND/NAME");
    if (opts_.agent_mode) co_return AgentRefusesWrite(req);
    co_return co_await ConfigDelete(req, kind, name, ns);
  }
  if (req.method != "GET" && req.method != "HEAD") co_return Error(405, "use GET, PUT or DELETE");
  if (name.empty()) {
    if (req.HasQuery("index")) {  // a blocking query
      const std::function<int64_t()> ix = [this, &kind] { return config_.kind_index(kind); };
      co_await Block(req, ix);
    }
    json out = json::array();
    for (const auto* e : config_.List(kind, all_ns ? "" : ns)) {
      json j = json::parse(e->json);
      j["CreateIndex"] = e->create_index;
      j["ModifyIndex"] = e->modify_index;
      out.push_back(std::move(j));
    }
    co_return Reply(out, config_.kind_index(kind));
  }
  if (req.HasQuery("index")) {  // a blocking query
    const std::function<int64_t()> ix = [&] { return config_.entry_index(kind, ns, name); };
    co_await Block(req, ix);
  }
  const ConfigEntry* e = config_.Find(kind, ns, name);
  if (!e) {
    Response r = Error(404, kind + " " + ns + "/" + name + " not found");
    r.headers.emplace_back("X-Consul-Index", std::to_string(std::max<int64_t>(
                                                 1, config_.entry_index(kind, ns, name))));
    co_return r;
  }
  json j = json::parse(e->json);
  j["CreateIndex"] = e->create_index;
  j["ModifyIndex"] = e->modify_index;
  co_return Reply(j, e->modify_index);
}

asio::awaitable<Response> Api::ConfigPut(Request& req, const std::string& kind,
                                         const std::string& name, const std::string& ns) {
  auto parsed = mesh::ParseManifests(req.body);
  if (!parsed.ok()) co_return Error(400, parsed.status().message());
  if (parsed->size() != 1)
    co_return Error(
        400, "expected exactly one manifest in the body, got " + std::to_string(parsed->size()));
  mesh::Manifest m = std::move(parsed.value()[0]);
  if (m.kind != kind)
    co_return Error(400, "kind: the body is a " + m.kind + " but the path says " + kind);
  if (m.name != name)
    co_return Error(
        400, "metadata.name: the body names \"" + m.name + "\" but the path says \"" + name + "\"");
  if (req.Query("ns") == nullptr) {
    // The manifest's own namespace decides when the URL does not.
  } else if (m.ns != ns) {
    co_return Error(
        400, "metadata.namespace: the body says \"" + m.ns + "\" but ?ns= says \"" + ns + "\"");
  }
  const std::string key = ConfigKey(kind, m.ns, name);
  const std::string value = mesh::ToJson(m);
  int64_t expected = -1;
  if (const std::string* cas = req.Query("cas")) {
    auto v = ParseDecimal(*cas);
    if (!v) co_return Error(400, "cas \"" + *cas + "\": expected an index");
    expected = static_cast<int64_t>(*v);
  }
  store::Store* st = store_.get();
  struct Outcome {
    Result<int64_t> rev = int64_t{0};
    std::string result;
  };
  const auto work = [st, key, value, expected]() -> Outcome {
    auto cur = st->Get(key);
    if (!cur.ok() && cur.status().code() != StatusCode::kNotFound) return {cur.status(), ""};
    const bool exists = cur.ok();
    if (expected >= 0 && (exists ? cur->mod_revision : 0) != expected)
      return {Status(StatusCode::kFailedPrecondition,
                     "cas: the entry's index is " + std::to_string(exists ? cur->mod_revision : 0) +
                         ", not " + std::to_string(expected)),
              ""};
    if (exists && cur->value == value) return {cur->mod_revision, "unchanged"};
    auto w = st->PutIf(key, value, exists ? cur->mod_revision : 0);
    return {w, exists ? "configured" : "created"};
  };
  Outcome out = co_await OffLoop(work);
  if (!out.rev.ok()) {
    if (out.rev.status().code() == StatusCode::kFailedPrecondition)
      co_return Error(409, out.rev.status().message());
    co_return Error(HttpStatusFor(out.rev.status()), out.rev.status().message());
  }
  if (out.result != "unchanged") {
    ++counters_.writes;
    co_await WaitApplied(out.rev.value());
  }
  co_return Reply({{"Result", out.result},
                   {"Kind", kind},
                   {"Name", name},
                   {"Namespace", m.ns},
                   {"Index", out.rev.value()}},
                  out.rev.value());
}

asio::awaitable<Response> Api::ConfigDelete(Request& req, const std::string& kind,
                                            const std::string& name, const std::string& ns) {
  const std::string key = ConfigKey(kind, ns, name);
  store::Store* st = store_.get();
  const auto work = [st, key]() { return st->Delete(key); };
  Result<int64_t> r = co_await OffLoop(work);
  if (!r.ok()) {
    if (r.status().code() == StatusCode::kNotFound)
      co_return Error(404, kind + " " + ns + "/" + name + " not found");
    co_return Error(HttpStatusFor(r.status()), r.status().message());
  }
  ++counters_.writes;
  co_await WaitApplied(r.value());
  co_return Reply({{"Result", "deleted"},
                   {"Kind", kind},
                   {"Name", name},
                   {"Namespace", ns},
                   {"Index", r.value()}},
                  r.value());
}

asio::awaitable<void> Api::RunMembership() {
  const std::string key = "members/server/" + opts_.name;
  const std::string record = nlohmann::json{
      {"Name", opts_.name},
      {"Http", http_addr_},
      {"Grpc", grpc_addr_},
      {"Role", "server"}}.dump();
  store::Store* st = store_.get();
  const std::string name = opts_.name;
  bool announced = false;
  while (!stopped_) {
    if (!announced) {
      const auto put = [st, key, record] { return st->PutEphemeral(key, record); };
      auto r = co_await OffLoop(put);
      announced = r.ok();
      if (!r.ok()) LOG_WARN("announcing this replica: {}", r.status().message());
    }
    const auto campaign = [st, name] { return st->Campaign("leader/singleton", name); };
    auto held = co_await OffLoop(campaign);
    if (held.ok()) {
      if (held.value() != leader_)
        LOG_INFO("{} the singleton duties (leader/singleton)", held.value() ? "took" : "lost");
      leader_ = held.value();
    }
    asio::steady_timer t(io_, std::chrono::seconds(2));
    member_timer_ = &t;  // Stop() cancels it
    co_await t.async_wait(kNoThrow);
    member_timer_ = nullptr;
    // A lost lease (etcd restarted, long pause) drops our record: re-announce.
    if (store_->shared() && !members_.count(key)) announced = false;
  }
}

std::string Api::Metrics() const {
  prom::Writer w;
  auto counter = [&](const char* name, const char* help, uint64_t v) {
    w.Counter(name, help, {}, v);
  };
  auto gauge = [&](const char* name, const char* help, int64_t v) { w.Gauge(name, help, {}, v); };
  counter("weft_server_http_requests_total", "API requests handled.", counters_.requests);
  counter("weft_server_writes_total", "Acknowledged store writes.", counters_.writes);
  counter("weft_server_write_conflicts_total", "Compare-and-swap retries on node documents.",
          counters_.write_conflicts);
  counter("weft_server_rejected_total", "Requests answered with a 4xx.", counters_.rejected);
  counter("weft_server_store_errors_total", "Requests failed by the store (5xx).",
          counters_.store_errors);
  counter("weft_server_blocking_queries_total", "Blocking queries that waited.",
          counters_.blocking_started);
  counter("weft_server_blocking_refused_total",
          "Blocking queries answered at once because max_blocking_queries were waiting.",
          counters_.blocking_refused);
  gauge("weft_server_blocking_queries_waiting", "Blocking queries waiting now.",
        static_cast<int64_t>(waiters_.size()));
  gauge("weft_server_leader", "1 when this replica holds the singleton duties.", leader_ ? 1 : 0);
  gauge("weft_server_store_revision", "Store revision applied to this replica's view.", applied_);
  gauge("weft_server_catalog_nodes", "Nodes in the catalog.",
        static_cast<int64_t>(catalog_.nodes().size()));
  gauge("weft_server_config_entries", "Config entries.",
        static_cast<int64_t>(config_.List("", "").size()));
  for (const auto& fn : metric_sources_) fn(w);
  return w.Finish();
}

}  // namespace weft::control
