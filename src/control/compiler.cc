#include "control/compiler.h"

#include <fmt/format.h>

#include <algorithm>

#include "base/log.h"
#include "base/net.h"

namespace weft::control {
namespace {

namespace pb = weft::v1;

void SetRateLimit(const mesh::RateLimit& rl, pb::RateLimit* out) {
  out->set_requests_per_second(rl.requests_per_second);
  out->set_burst(rl.burst);
  out->set_per_caller_requests_per_second(rl.per_caller_rps);
  out->set_per_caller_burst(rl.per_caller_burst);
}

uint64_t Fnv1a(std::string_view s, uint64_t h = 1469598103934665603ULL) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

std::string ClusterName(const std::string& service, const std::string& ns) {
  return ns == "default" ? service : service + "." + ns;
}

ResourcePtr Finish(pb::Resource r) {
  r.set_version(ResourceVersion(r));
  return std::make_shared<const pb::Resource>(std::move(r));
}

SnapshotPtr Seal(std::map<std::string, ResourcePtr> resources) {
  auto s = std::make_shared<Snapshot>();
  uint64_t h = Fnv1a("weft");
  for (const auto& [k, r] : resources) {
    h = Fnv1a(k, h);
    h = Fnv1a(r->version(), h);
  }
  s->version = fmt::format("{:016x}", h);
  s->resources = std::move(resources);
  return s;
}

}  // namespace

std::string Identity::Key() const { return role + "|" + ns + "|" + service + "|" + proxy_id; }

std::string ResourceKey(const std::string& type, const std::string& name) {
  return type + "/" + name;
}

std::string ResourceVersion(const pb::Resource& r) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream out(&bytes);
    google::protobuf::io::CodedOutputStream coded(&out);
    coded.SetSerializationDeterministic(true);
    pb::Resource copy = r;
    copy.clear_version();
    copy.SerializeToCodedStream(&coded);
  }
  return fmt::format("{:016x}", Fnv1a(bytes));
}

void Compiler::Invalidate(const std::set<std::string>& services, const std::set<std::string>& nodes,
                          bool config_changed) {
  for (auto& [key, e] : entries_) {
    if (e.id.role != "proxy") {
      e.dirty = e.dirty || !nodes.empty() || config_changed;
      continue;
    }
    if (config_changed || (e.transparent && !services.empty())) {
      // A transparent sidecar can reach every service: any change may add,
      // remove or move one of its virtual listeners.
      e.dirty = e.full = true;
      continue;
    }
    for (const auto& s : services) {
      if (!e.deps.count(s)) continue;
      e.dirty = true;
      // The proxy's own registration (or the service it fronts) changed:
      // listeners may move. Anything else only moves endpoints.
      if (s == e.id.service || s == e.reg_service) {
        e.full = true;
      } else {
        e.dirty_services.insert(s);
      }
    }
  }
  bool catalog_clients = false;
  for (const auto& [key, e] : entries_) catalog_clients |= e.id.role != "proxy";
  if (!catalog_clients) {
    // Nobody follows the whole catalog: drop it, rebuild it on demand.
    catalog_loaded_ = false;
    catalog_resources_.clear();
    dirty_nodes_.clear();
    return;
  }
  dirty_nodes_.insert(nodes.begin(), nodes.end());
  config_dirty_ = config_dirty_ || config_changed;
}

void Compiler::SetBundle(ResourcePtr bundle) {
  if (bundle == bundle_ || (bundle && bundle_ && bundle->version() == bundle_->version())) return;
  bundle_ = std::move(bundle);
  for (auto& [key, e] : entries_) e.dirty = e.full = true;
}

void Compiler::SetSecret(const std::string& ns, const std::string& service, ResourcePtr secret) {
  const std::string k = ns + "/" + service;
  auto it = secrets_.find(k);
  if (secret) {
    if (it != secrets_.end() && it->second->version() == secret->version()) return;
    secrets_[k] = std::move(secret);
  } else {
    if (it == secrets_.end()) return;
    secrets_.erase(it);
  }
  for (auto& [key, e] : entries_) {
    if (e.id.role == "proxy" && e.id.ns == ns && e.id.service == service) e.dirty = e.full = true;
  }
}

SnapshotPtr Compiler::Get(const Identity& id) {
  const std::string key = id.Key();
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    Entry e;
    e.id = id;
    it = entries_.emplace(key, std::move(e)).first;
  }
  if (it->second.dirty) Build(&it->second);
  return it->second.snap;
}

void Compiler::Forget(const std::string& key) { entries_.erase(key); }

std::vector<std::pair<std::string, SnapshotPtr>> Compiler::TakeChanged() {
  std::vector<std::pair<std::string, SnapshotPtr>> out;
  // Keep the endpoints cache bounded by what is in use (clusters named by
  // snapshots); a rebuild after clearing costs one pass per service.
  if (endpoints_cache_.size() > 4 * entries_.size() + 64) endpoints_cache_.clear();
  for (auto& [key, e] : entries_) {
    if (!e.dirty) continue;
    const std::string before = e.snap ? e.snap->version : "";
    Build(&e);
    if (e.snap->version != before) out.emplace_back(key, e.snap);
  }
  return out;
}

void Compiler::Build(Entry* e) {
  if (e->id.role == "proxy") {
    if (!e->full && e->snap) {
      e->snap = PatchEndpoints(*e);
    } else {
      std::set<std::string> deps;
      e->snap = BuildProxy(e->id, &deps, &e->reg_service, &e->transparent);
      e->deps = std::move(deps);
    }
  } else {
    e->snap = BuildCatalog();
  }
  e->dirty = false;
  e->full = false;
  e->dirty_services.clear();
}

SnapshotPtr Compiler::PatchEndpoints(const Entry& e) {
  // Same listeners, routes and clusters; fresh endpoints for the services
  // that changed (shared with every other proxy calling them).
  std::map<std::string, ResourcePtr> out = e.snap->resources;
  for (const auto& [key, r] : e.snap->resources) {
    if (r->type() != "cluster" || r->name() == "local_app") continue;
    const auto& c = r->cluster();
    if (!e.dirty_services.count(c.service())) continue;
    out[ResourceKey("endpoints", c.name())] = EndpointsFor(c.name(), c.service(), c.namespace_());
  }
  return Seal(std::move(out));
}

ResourcePtr Compiler::EndpointsFor(const std::string& cluster, const std::string& service,
                                   const std::string& ns) {
  const int64_t index = catalog_.service_index(service);
  // A strict Service (its manifest's mtls, strict by default) that runs
  // behind sidecars is reached through sidecars only: an instance registered
  // without one is left out rather than dialled in plaintext. A service with
  // no sidecar anywhere is a plain backend called from the mesh, and
  // `mtls: permissive` admits both while sidecars are being added.
  const ConfigEntry* spec = config_.Find("Service", ns, service);
  const bool strict_mode =
      !spec || std::get<mesh::ServiceSpec>(spec->manifest.spec).mtls == "strict";
  CachedEndpoints& cached = endpoints_cache_[cluster];
  if (cached.resource && cached.index == index && cached.service == service &&
      cached.strict == strict_mode)
    return cached.resource;
  pb::Resource r;
  r.set_type("endpoints");
  r.set_name(cluster);
  pb::Endpoints* eps = r.mutable_endpoints();
  eps->set_cluster(cluster);
  const auto proxies = catalog_.ProxiesFor(service);
  bool meshed = false;
  for (const auto& p : proxies) meshed |= p.instance->ns == ns;
  const bool strict = strict_mode && meshed;
  std::vector<Skipped> sidecarless;
  for (const auto& ref : catalog_.Instances(service)) {
    const mesh::ServiceInstance& s = *ref.instance;
    if (s.kind == "connect-proxy" || s.ns != ns) continue;
    std::string health = mesh::InstanceHealth(*ref.node, s);
    if (health == "critical") continue;
    // Traffic to an instance with a sidecar enters through the sidecar.
    const mesh::ServiceInstance* target = &s;
    for (const auto& p : proxies) {
      if (p.node != ref.node) continue;
      const mesh::SidecarProxy& sp = *p.instance->proxy;
      if (sp.destination_service_id.empty() ? true : sp.destination_service_id == s.id) {
        target = p.instance;
        const std::string ph = mesh::InstanceHealth(*p.node, *p.instance);
        if (ph == "critical") health = ph;
        break;
      }
    }
    if (health == "critical" || target->port == 0) continue;
    if (strict && target == &s) {
      ++sidecarless_skipped_;
      sidecarless.push_back({ns, service, s.id, ref.node->name});
      LOG_WARN_LIMITED(
          "instance {} of {} left out of its endpoints: the Service is mtls: strict, runs behind "
          "sidecars, and this instance has none on node {} (it would be dialled in plaintext)",
          s.id, service, ref.node->name);
      continue;
    }
    const std::string& addr = target->address.empty() ? ref.node->address : target->address;
    if (!mesh::ValidHost(addr)) {
      // Stored before registrations were checked: one bad instance must
      // not make every caller refuse the whole update.
      ++skipped_endpoints_;
      LOG_WARN_LIMITED(
          "instance {} of {} left out of its endpoints: address \"{}\" is not an IP "
          "address or a DNS name",
          s.id, service, addr);
      continue;
    }
    pb::Endpoint* ep = eps->add_endpoints();
    ep->set_address(JoinHostPort(addr, target->port));
    ep->set_weight(health == "warning" ? s.weight_warning : s.weight_passing);
    ep->set_zone(s.zone.empty() ? ref.node->zone : s.zone);
    ep->set_health(health);
    ep->set_node(ref.node->name);
    ep->set_instance_id(s.id);
    ep->set_mtls(target != &s);  // through its sidecar: mesh TLS
    if (ep->weight() == 0) eps->mutable_endpoints()->RemoveLast();
  }
  cached.index = index;
  cached.service = service;
  cached.strict = strict_mode;
  cached.resource = Finish(std::move(r));
  if (sidecarless.empty()) {
    sidecarless_.erase(ns + "/" + service);
  } else {
    sidecarless_[ns + "/" + service] = std::move(sidecarless);
  }
  return cached.resource;
}

std::vector<Compiler::Skipped> Compiler::SidecarlessNow() const {
  std::vector<Skipped> out;
  for (const auto& [key, list] : sidecarless_) out.insert(out.end(), list.begin(), list.end());
  return out;
}

SnapshotPtr Compiler::BuildProxy(const Identity& id, std::set<std::string>* deps,
                                 std::string* reg_service, bool* transparent) {
  std::map<std::string, ResourcePtr> out;
  *transparent = false;
  deps->insert(id.service);
  // The sidecar's registration: by id when given, else the first that
  // fronts the service.
  const mesh::ServiceInstance* reg = nullptr;
  const mesh::Node* reg_node = nullptr;
  for (const auto& p : catalog_.ProxiesFor(id.service)) {
    if (p.instance->ns != id.ns) continue;
    if (!id.proxy_id.empty() && p.instance->id != id.proxy_id) continue;
    reg = p.instance;
    reg_node = p.node;
    break;
  }
  if (!reg) return Seal({});
  deps->insert(reg->service);
  if (bundle_) out[ResourceKey("bundle", bundle_->name())] = bundle_;
  if (auto sit = secrets_.find(id.ns + "/" + id.service); sit != secrets_.end())
    out[ResourceKey("secret", "workload")] = sit->second;
  *reg_service = reg->service;
  const mesh::SidecarProxy& sp = *reg->proxy;

  // The service's first port's protocol as its Service declares it: http,
  // http2, grpc or tcp (http when no Service is declared).
  auto port_protocol_of = [&](const std::string& svc, const std::string& ns) -> std::string {
    const ConfigEntry* e = config_.Find("Service", ns, svc);
    if (!e) return "http";
    const auto& spec = std::get<mesh::ServiceSpec>(e->manifest.spec);
    if (spec.ports.empty()) return "http";
    return spec.ports[0].protocol;
  };
  // A listener is "http" for every HTTP version (it accepts HTTP/1.1 and
  // HTTP/2 both) or "tcp".
  auto listener_protocol_of = [&](const std::string& svc, const std::string& ns) -> std::string {
    return port_protocol_of(svc, ns) == "tcp" ? "tcp" : "http";
  };
  // A cluster says what its endpoints speak: "http" (HTTP/1.1), "http2"
  // (http2 and grpc services) or "tcp".
  auto cluster_protocol_of = [&](const std::string& svc, const std::string& ns) -> std::string {
    const std::string p = port_protocol_of(svc, ns);
    return p == "http2" || p == "grpc" ? "http2" : p;
  };
  auto mesh_protocol_of = [&](const std::string& svc, const std::string& ns) -> std::string {
    const ConfigEntry* e = config_.Find("Service", ns, svc);
    if (!e) return "http2";
    return std::get<mesh::ServiceSpec>(e->manifest.spec).mesh_protocol;
  };
  auto mtls_of = [&](const std::string& svc, const std::string& ns) -> std::string {
    const ConfigEntry* e = config_.Find("Service", ns, svc);
    if (!e) return "strict";
    return std::get<mesh::ServiceSpec>(e->manifest.spec).mtls;
  };
  auto policy_of = [&](const std::string& svc, const std::string& ns) -> mesh::TrafficPolicySpec {
    const ConfigEntry* e = config_.Find("TrafficPolicy", ns, svc);
    if (!e) return {};
    return std::get<mesh::TrafficPolicySpec>(e->manifest.spec);
  };
  auto add_cluster = [&](const std::string& svc, const std::string& ns,
                         const mesh::TrafficPolicySpec& fallback, bool has_fallback) {
    std::string name = ClusterName(svc, ns);
    if (out.count(ResourceKey("cluster", name))) return name;
    deps->insert(svc);
    const ConfigEntry* tpe = config_.Find("TrafficPolicy", ns, svc);
    mesh::TrafficPolicySpec tp = tpe ? std::get<mesh::TrafficPolicySpec>(tpe->manifest.spec)
                                     : (has_fallback ? fallback : mesh::TrafficPolicySpec{});
    pb::Resource r;
    r.set_type("cluster");
    r.set_name(name);
    pb::Cluster* c = r.mutable_cluster();
    c->set_name(name);
    c->set_service(svc);
    c->set_namespace_(ns);
    c->set_lb(tp.lb);
    if (tp.lb == "ewma") c->set_lb_decay_ms(tp.lb_decay_ms);
    // Zone-aware: the caller's zone (its sidecar's registration, else its
    // node's), for balancers that take turns.
    if (tp.zone_aware && tp.lb != "ring_hash" && tp.lb != "maglev")
      c->set_local_zone(reg->zone.empty() ? reg_node->zone : reg->zone);
    if (tp.slow_start_ms > 0) {
      c->set_slow_start_window_ms(tp.slow_start_ms);
      c->set_slow_start_aggression(tp.slow_start_aggression);
      c->set_slow_start_min_weight_percent(tp.slow_start_min_weight_percent);
    }
    if (tp.lb == "ring_hash" || tp.lb == "maglev") {
      pb::HashPolicy* hp = c->mutable_hash_policy();
      hp->set_header(tp.hash.header);
      hp->set_cookie(tp.hash.cookie);
      hp->set_cookie_ttl_ms(tp.hash.cookie_ttl_ms);
      hp->set_cookie_path(tp.hash.cookie_path);
      hp->set_source_ip(tp.hash.source_ip);
      hp->set_ring_points(tp.hash.ring_points);
      hp->set_table_size(tp.hash.table_size);
    }
    c->set_retry_budget_percent(tp.retries.budget_percent);
    c->set_retry_budget_min_per_s(tp.retries.budget_min_per_s);
    c->set_max_connections(tp.connection_pool.max_connections);
    c->set_max_pending_requests(tp.connection_pool.max_pending_requests);
    c->set_max_requests(tp.connection_pool.max_requests);
    c->set_max_retries(tp.connection_pool.max_retries);
    c->set_connect_timeout_ms(tp.connect_timeout_ms);
    {
      const mesh::OutlierDetection& o = tp.outlier;
      pb::OutlierDetection* od = c->mutable_outlier_detection();
      od->set_enabled(o.enabled);
      od->set_consecutive_5xx(o.consecutive_5xx);
      od->set_consecutive_gateway_errors(o.consecutive_gateway);
      od->set_interval_ms(o.interval_ms);
      od->set_base_ejection_ms(o.base_ejection_ms);
      od->set_max_ejection_ms(o.max_ejection_ms);
      od->set_max_ejection_percent(o.max_ejection_percent);
      od->set_min_health_percent(o.min_health_percent);
      od->set_success_rate_min_hosts(o.success_rate_min_hosts);
      od->set_success_rate_request_volume(o.success_rate_request_volume);
      od->set_success_rate_stdev_factor(o.success_rate_stdev_factor);
    }
    c->set_protocol(cluster_protocol_of(svc, ns));
    c->set_mesh_protocol(mesh_protocol_of(svc, ns));
    out[ResourceKey("cluster", name)] = Finish(std::move(r));
    out[ResourceKey("endpoints", name)] = EndpointsFor(name, svc, ns);
    return name;
  };

  // Inbound: the sidecar's port in front of the local app.
  if (sp.local_service_port != 0) {
    const std::string proto = listener_protocol_of(id.service, id.ns);
    const std::string bind = reg->address.empty() ? reg_node->address : reg->address;
    pb::Resource l;
    l.set_type("listener");
    l.set_name("inbound");
    pb::Listener* li = l.mutable_listener();
    li->set_name("inbound");
    li->set_address(JoinHostPort(bind, reg->port));
    li->set_protocol(proto);
    li->set_direction("inbound");
    li->set_mtls(mtls_of(id.service, id.ns));
    if (proto == "http") {
      li->set_route_table("inbound");
      pb::Resource rt;
      rt.set_type("route");
      rt.set_name("inbound");
      pb::RouteTable* t = rt.mutable_route();
      t->set_name("inbound");
      pb::Route* route = t->add_routes();
      route->set_name("inbound/local_app");
      route->set_prefix("/");
      // The service's own TrafficPolicy limits what all its callers
      // together, and each of them, may send it.
      if (const ConfigEntry* own = config_.Find("TrafficPolicy", id.ns, id.service)) {
        const auto& rl = std::get<mesh::TrafficPolicySpec>(own->manifest.spec).rate_limit;
        if (rl.any()) SetRateLimit(rl, route->mutable_rate_limit());
      }
      auto* wc = route->add_clusters();
      wc->set_cluster("local_app");
      wc->set_weight(1);
      out[ResourceKey("route", "inbound")] = Finish(std::move(rt));
    } else {
      li->set_cluster("local_app");
    }
    out[ResourceKey("listener", "inbound")] = Finish(std::move(l));
    pb::Resource c;
    c.set_type("cluster");
    c.set_name("local_app");
    c.mutable_cluster()->set_name("local_app");
    c.mutable_cluster()->set_service(id.service);
    c.mutable_cluster()->set_namespace_(id.ns);
    c.mutable_cluster()->set_lb("round_robin");
    c.mutable_cluster()->set_connect_timeout_ms(1000);
    c.mutable_cluster()->set_protocol(cluster_protocol_of(id.service, id.ns));
    out[ResourceKey("cluster", "local_app")] = Finish(std::move(c));
    pb::Resource e;
    e.set_type("endpoints");
    e.set_name("local_app");
    e.mutable_endpoints()->set_cluster("local_app");
    auto* ep = e.mutable_endpoints()->add_endpoints();
    ep->set_address(sp.local_service_address + ":" + std::to_string(sp.local_service_port));
    ep->set_weight(1);
    ep->set_health("passing");
    out[ResourceKey("endpoints", "local_app")] = Finish(std::move(e));
  }

  // An outbound listener's traffic to `dest`: a cluster for TCP; for HTTP a
  // route table named after the listener, from the destination's Route.
  auto route_outbound = [&](pb::Listener* li, const std::string& dest, const std::string& ns) {
    deps->insert(dest);
    const std::string proto = listener_protocol_of(dest, ns);
    const mesh::TrafficPolicySpec tp = policy_of(dest, ns);
    const std::string& lname = li->name();
    li->set_protocol(proto);
    li->set_direction("outbound");
    if (proto == "tcp") {
      li->set_cluster(add_cluster(dest, ns, tp, false));
      return;
    }
    li->set_route_table(lname);
    li->set_request_timeout_ms(tp.request_timeout_ms);
    pb::Resource rt;
    rt.set_type("route");
    rt.set_name(lname);
    pb::RouteTable* t = rt.mutable_route();
    t->set_name(lname);
    // A route's timeout and retries: the rule's own where it has them,
    // else the service's TrafficPolicy's.
    auto fill_policy = [&](pb::Route* r, int64_t timeout_ms, const mesh::RetryPolicy& retries) {
      r->set_timeout_ms(timeout_ms > 0 ? timeout_ms : tp.request_timeout_ms);
      // Everything the policy says, and nothing it does not: an unset
      // attempt count stays unset (the proxy's default), an explicit 0 is 0.
      if (retries.attempts >= 0 || !retries.on.empty() || retries.per_try_timeout_ms > 0 ||
          retries.hedge.any()) {
        pb::RetryPolicy* rp = r->mutable_retry();
        if (retries.attempts >= 0) rp->set_attempts(static_cast<uint32_t>(retries.attempts));
        for (const auto& on : retries.on) rp->add_on(on);
        rp->set_per_try_timeout_ms(retries.per_try_timeout_ms);
        for (uint32_t code : retries.retriable_status_codes) rp->add_retriable_status_codes(code);
        rp->set_hedge_delay_ms(retries.hedge.delay_ms);
        rp->set_hedge_p95(retries.hedge.p95);
      }
    };
    bool catch_all = false;
    const mesh::RouteSpec* route_spec = nullptr;
    for (const auto* e : config_.List("Route", ns)) {
      const auto& rs = std::get<mesh::RouteSpec>(e->manifest.spec);
      if (rs.service == dest) {
        route_spec = &rs;
        if (e->manifest.name == dest) break;  // the Route named after the service wins
      }
    }
    if (route_spec) {
      for (size_t i = 0; i < route_spec->rules.size(); ++i) {
        const mesh::RouteRule& rule = route_spec->rules[i];
        pb::Route* r = t->add_routes();
        r->set_name(lname + "/" + std::to_string(i));
        if (!rule.match.path.empty()) {
          r->set_path(rule.match.path);
        } else {
          r->set_prefix(rule.match.path_prefix.empty() ? "/" : rule.match.path_prefix);
        }
        for (const auto& h : rule.match.headers) {
          auto* hm = r->add_headers();
          hm->set_name(h.name);
          hm->set_value(h.value);
        }
        for (const auto& b : rule.backends) {
          auto* wc = r->add_clusters();
          wc->set_cluster(add_cluster(b.service, ns, tp, true));
          wc->set_weight(b.weight);
        }
        fill_policy(r, rule.timeout_ms, rule.retries ? *rule.retries : tp.retries);
        if (rule.fault.delay_ms > 0 || rule.fault.abort_http_status > 0) {
          pb::Fault* f = r->mutable_fault();
          f->set_delay_ms(rule.fault.delay_ms);
          f->set_delay_percent(rule.fault.delay_percent);
          f->set_abort_http_status(static_cast<uint32_t>(rule.fault.abort_http_status));
          f->set_abort_grpc_status(std::max(rule.fault.abort_grpc_status, 0));
          f->set_abort_percent(rule.fault.abort_percent);
        }
        if (!rule.mirror.service.empty()) {
          // The mirror's own cluster, balanced by its own TrafficPolicy.
          pb::Mirror* m = r->mutable_mirror();
          m->set_cluster(add_cluster(rule.mirror.service, ns, tp, false));
          m->set_percent(rule.mirror.percent);
        }
        if (rule.rate_limit.any()) SetRateLimit(rule.rate_limit, r->mutable_rate_limit());
        if (r->path().empty() && r->prefix() == "/" && r->headers_size() == 0) catch_all = true;
      }
    }
    if (!catch_all) {
      pb::Route* r = t->add_routes();
      r->set_name(lname + "/default");
      r->set_prefix("/");
      auto* wc = r->add_clusters();
      wc->set_cluster(add_cluster(dest, ns, tp, false));
      wc->set_weight(1);
      fill_policy(r, 0, tp.retries);
    }
    out[ResourceKey("route", lname)] = Finish(std::move(rt));
  };

  // Outbound: one listener per upstream, routed by the upstream's Route.
  for (const auto& u : sp.upstreams) {
    const std::string lname =
        "upstream_" + ClusterName(u.destination_name, u.destination_namespace);
    pb::Resource l;
    l.set_type("listener");
    l.set_name(lname);
    pb::Listener* li = l.mutable_listener();
    li->set_name(lname);
    li->set_address(u.local_bind_address + ":" + std::to_string(u.local_bind_port));
    route_outbound(li, u.destination_name, u.destination_namespace);
    out[ResourceKey("listener", lname)] = Finish(std::move(l));
  }

  // Transparent mode: one capture listener that `weft redirect` sends the
  // app's outbound TCP to, and behind it a virtual listener per service of
  // the namespace, chosen by the original destination (an instance's
  // address) or, for HTTP, by the Host the app asked for.
  if (sp.mode == "transparent") {
    *transparent = true;
    const std::string cap = "outbound_capture";
    pb::Resource l;
    l.set_type("listener");
    l.set_name(cap);
    pb::Listener* li = l.mutable_listener();
    li->set_name(cap);
    li->set_address("127.0.0.1:" + std::to_string(sp.outbound_listener_port));
    li->set_protocol("capture");
    li->set_direction("outbound");
    li->set_egress(sp.mesh_destinations_only ? "registry_only" : "");
    out[ResourceKey("listener", cap)] = Finish(std::move(l));
    for (const std::string& svc : catalog_.ServiceNames()) {
      pb::Resource v;
      v.set_type("listener");
      pb::Listener* vl = v.mutable_listener();
      std::set<std::string> addrs;
      for (const auto& ref : catalog_.Instances(svc)) {
        const mesh::ServiceInstance& s = *ref.instance;
        if (s.kind == "connect-proxy" || s.ns != id.ns || s.port == 0) continue;
        const std::string& a = s.address.empty() ? ref.node->address : s.address;
        addrs.insert(JoinHostPort(a, s.port));
      }
      if (addrs.empty() && catalog_.ProxiesFor(svc).empty())
        continue;  // sidecars, other namespaces
      const std::string vname = "capture_" + ClusterName(svc, id.ns);
      v.set_name(vname);
      vl->set_name(vname);
      vl->set_address("127.0.0.1:" + std::to_string(sp.outbound_listener_port));
      vl->set_capture_of(cap);
      for (const auto& a : addrs) vl->add_match_addresses(a);
      vl->add_match_hosts(svc);
      vl->add_match_hosts(svc + ".service.weft");
      if (id.ns != "default") vl->add_match_hosts(svc + "." + id.ns + ".service.weft");
      route_outbound(vl, svc, id.ns);
      out[ResourceKey("listener", vname)] = Finish(std::move(v));
    }
  }

  // Authorization policies for the fronted service, and the mesh-wide ones
  // (service "*", from any namespace).
  for (const auto* e : config_.List("AuthorizationPolicy", "")) {
    const auto& ap = std::get<mesh::AuthorizationPolicySpec>(e->manifest.spec);
    if (!(ap.service == "*" || (ap.service == id.service && e->manifest.ns == id.ns))) continue;
    const std::string pname = e->manifest.ns + "/" + e->manifest.name;
    pb::Resource r;
    r.set_type("policy");
    r.set_name(pname);
    r.mutable_policy()->set_json(e->json);
    out[ResourceKey("policy", pname)] = Finish(std::move(r));
  }

  // Telemetry: the mesh-wide ones (service "*", any namespace), then the
  // service's own, each in name order; later fields win.
  {
    std::vector<std::pair<std::string, const mesh::TelemetrySpec*>> wide, own;
    for (const auto* e : config_.List("Telemetry", "")) {
      const auto& tm = std::get<mesh::TelemetrySpec>(e->manifest.spec);
      const std::string key = e->manifest.ns + "/" + e->manifest.name;
      if (tm.service == "*") {
        wide.emplace_back(key, &tm);
      } else if (tm.service == id.service && e->manifest.ns == id.ns) {
        own.emplace_back(key, &tm);
      }
    }
    if (!wide.empty() || !own.empty()) {
      std::sort(wide.begin(), wide.end());
      std::sort(own.begin(), own.end());
      mesh::Tracing t;
      for (const auto& [k, tm] : wide) t = t.Merge(tm->tracing);
      for (const auto& [k, tm] : own) t = t.Merge(tm->tracing);
      pb::Resource r;
      r.set_type("telemetry");
      r.set_name("mesh");
      pb::Telemetry* pt = r.mutable_telemetry();
      pt->set_tracing(t.active());
      if (t.sampling) pt->set_sampling(*t.sampling);
      pt->set_otlp(t.otlp);
      pt->set_format(t.format);
      out[ResourceKey("telemetry", "mesh")] = Finish(std::move(r));
    }
  }
  return Seal(std::move(out));
}

SnapshotPtr Compiler::BuildCatalog() {
  if (!catalog_loaded_) {
    for (const auto& [name, n] : catalog_.nodes()) dirty_nodes_.insert(name);
    catalog_loaded_ = true;
    config_dirty_ = true;
  }
  for (const auto& name : dirty_nodes_) {
    const std::string key = ResourceKey("node", name);
    const mesh::Node* n = catalog_.FindNode(name);
    if (!n) {
      catalog_resources_.erase(key);
      continue;
    }
    pb::Resource r;
    r.set_type("node");
    r.set_name(name);
    r.mutable_node()->set_json(mesh::NodeToJson(*n));
    catalog_resources_[key] = Finish(std::move(r));
  }
  dirty_nodes_.clear();
  if (config_dirty_) {
    std::erase_if(catalog_resources_,
                  [](const auto& kv) { return kv.first.rfind("config/", 0) == 0; });
    for (const auto* e : config_.List("", "")) {
      const std::string name = e->manifest.kind + "/" + e->manifest.ns + "/" + e->manifest.name;
      pb::Resource r;
      r.set_type("config");
      r.set_name(name);
      r.mutable_config()->set_json(e->json);
      catalog_resources_[ResourceKey("config", name)] = Finish(std::move(r));
    }
    config_dirty_ = false;
  }
  std::map<std::string, ResourcePtr> out = catalog_resources_;
  if (bundle_) out[ResourceKey("bundle", bundle_->name())] = bundle_;
  return Seal(std::move(out));
}

}  // namespace weft::control
