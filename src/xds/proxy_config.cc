#include "xds/proxy_config.h"

#include <fmt/format.h>

#include <tuple>

#include "base/strings.h"
#include "mesh/hash_policy.h"
#include "mesh/manifest.h"
#include "mesh/outlier.h"
#include "mesh/rate_limit.h"

namespace weft::xds {

using proxy::ClusterConfig;
using proxy::Endpoint;
using proxy::ListenerConfig;
using proxy::MeshIdentity;
using proxy::Protocol;
using proxy::ProxyConfig;
using proxy::RouteConfig;
namespace authz = proxy::authz;

namespace {

namespace pb = weft::v1;

}  // namespace

std::shared_ptr<const ProxyConfig> ConfigFromResources(const ProxyConfig& base,
                                                       const ResourceMap& state,
                                                       std::string* error) {
  auto cfg = std::make_shared<ProxyConfig>();
  cfg->source_path = "control plane";
  cfg->admin = base.admin;
  cfg->workers = base.workers;
  cfg->drain_timeout_ms = base.drain_timeout_ms;
  cfg->tracing.service_name = base.tracing.service_name;
  cfg->tracing.service_namespace = base.tracing.service_namespace;
  auto find = [&](const std::string& type, const std::string& name) -> const pb::Resource* {
    auto it = state.find(type + "/" + name);
    return it == state.end() ? nullptr : it->second.get();
  };
  auto fail = [&](const std::string& msg) {
    *error = msg;
    return nullptr;
  };
  if (const pb::Resource* t = find("telemetry", "mesh")) {
    // Checked as a manifest's spec.tracing is: a stream is not trusted more.
    const pb::Telemetry& tm = t->telemetry();
    mesh::Tracing tr;
    tr.enabled = tm.tracing();
    if (tm.has_sampling()) {
      if (!(tm.sampling() >= 0 && tm.sampling() <= 1))
        return fail(fmt::format("telemetry: sampling {}: use 0 to 1", tm.sampling()));
      tr.sampling = tm.sampling();
    }
    tr.otlp = tm.otlp();
    if (!tm.format().empty() && tm.format() != "protobuf" && tm.format() != "json")
      return fail("telemetry: format \"" + tm.format() + "\": use protobuf or json");
    tr.format = tm.format();
    std::string err;
    if (!proxy::ResolveTracing(tr, &cfg->tracing, &err)) return fail("telemetry: " + err);
  }
  std::string trust_domain;
  if (const pb::Resource* b = find("bundle", "roots")) trust_domain = b->bundle().trust_domain();
  // Authorization policies, compiled once per config for the inbound side.
  std::vector<authz::Policies::Input> policies;
  for (const auto& [key, r] : state) {
    if (r->type() != "policy") continue;
    auto m = mesh::FromJson(r->policy().json());
    if (!m.ok()) return fail("policy " + r->name() + ": " + m.status().message());
    const auto* spec = std::get_if<mesh::AuthorizationPolicySpec>(&m->spec);
    if (!spec) return fail("policy " + r->name() + ": not an AuthorizationPolicy");
    policies.push_back({r->name(), *spec});
  }
  for (const auto& [key, r] : state) {
    if (r->type() != "cluster") continue;
    const pb::Cluster& c = r->cluster();
    ClusterConfig cc;
    cc.name = c.name();
    if (!c.lb().empty()) {
      auto lb = proxy::LbPolicyFromName(c.lb());
      if (!lb) return fail("cluster " + c.name() + ": unknown lb \"" + c.lb() + "\"");
      cc.lb = *lb;
    }
    if (c.lb_decay_ms() != 0) {
      if (cc.lb != proxy::LbPolicy::kEwma || c.lb_decay_ms() < 100 || c.lb_decay_ms() > 600000)
        return fail("cluster " + c.name() + ": lb_decay_ms " + std::to_string(c.lb_decay_ms()) +
                    ": only for ewma, 100 to 600000");
      cc.ewma_decay_ms = c.lb_decay_ms();
    }
    for (auto [v, out, what] :
         {std::tuple{c.max_connections(), &cc.max_connections, "max_connections"},
          std::tuple{c.max_pending_requests(), &cc.max_pending_requests, "max_pending_requests"},
          std::tuple{c.max_requests(), &cc.max_requests, "max_requests"},
          std::tuple{c.max_retries(), &cc.max_retries, "max_retries"}}) {
      if (v > 1000000)
        return fail("cluster " + c.name() + ": " + what + " " + std::to_string(v) +
                    " is over 1000000");
      if (v != 0) *out = v;
    }
    if (c.has_retry_budget_percent()) {
      if (c.retry_budget_percent() > 100)
        return fail("cluster " + c.name() + ": retry_budget_percent over 100");
      cc.retry_budget_percent = c.retry_budget_percent();
    }
    if (c.has_retry_budget_min_per_s()) {
      if (c.retry_budget_min_per_s() > 10000)
        return fail("cluster " + c.name() + ": retry_budget_min_per_s over 10000");
      cc.retry_budget_min_per_s = c.retry_budget_min_per_s();
    }
    if (cc.lb == proxy::LbPolicy::kRingHash || cc.lb == proxy::LbPolicy::kMaglev) {
      if (!c.has_hash_policy())
        return fail("cluster " + c.name() + ": lb " + c.lb() + " needs a hash_policy");
      const pb::HashPolicy& hp = c.hash_policy();
      cc.hash.header = hp.header();
      cc.hash.cookie = hp.cookie();
      cc.hash.cookie_ttl_ms = hp.cookie_ttl_ms();
      if (!hp.cookie_path().empty()) cc.hash.cookie_path = hp.cookie_path();
      cc.hash.source_ip = hp.source_ip();
      if (hp.ring_points() != 0) cc.hash.ring_points = hp.ring_points();
      if (hp.table_size() != 0) cc.hash.table_size = hp.table_size();
      if (std::string e = mesh::HashPolicyError(cc.hash); !e.empty())
        return fail("cluster " + c.name() + ": " + e);
    } else if (c.has_hash_policy()) {
      return fail("cluster " + c.name() + ": hash_policy is only for lb ring_hash or maglev");
    }
    if (!c.local_zone().empty()) {
      if (cc.lb == proxy::LbPolicy::kRingHash || cc.lb == proxy::LbPolicy::kMaglev)
        return fail("cluster " + c.name() + ": local_zone is not for ring_hash or maglev");
      cc.local_zone = c.local_zone();
    }
    if (c.slow_start_window_ms() != 0) {
      const bool hashed = cc.lb == proxy::LbPolicy::kRingHash || cc.lb == proxy::LbPolicy::kMaglev;
      const double agg = c.slow_start_aggression() == 0 ? 1.0 : c.slow_start_aggression();
      const uint32_t minw =
          c.slow_start_min_weight_percent() == 0 ? 10 : c.slow_start_min_weight_percent();
      if (hashed || c.slow_start_window_ms() < 1000 || c.slow_start_window_ms() > 3600000 ||
          !(agg >= 0.1 && agg <= 10) || minw > 100)
        return fail("cluster " + c.name() + ": slow_start: window 1000 to 3600000 ms, aggression " +
                    "0.1 to 10, min_weight_percent 1 to 100, not with ring_hash or maglev");
      cc.slow_start_ms = c.slow_start_window_ms();
      cc.slow_start_aggression = agg;
      cc.slow_start_min_weight_percent = minw;
    }
    if (c.has_outlier_detection()) {
      const pb::OutlierDetection& od = c.outlier_detection();
      proxy::OutlierConfig& o = cc.outlier;
      o.enabled = od.enabled();
      o.consecutive_5xx = od.consecutive_5xx();
      o.consecutive_gateway = od.consecutive_gateway_errors();
      o.interval_ms = od.interval_ms();
      o.base_ejection_ms = od.base_ejection_ms();
      o.max_ejection_ms = od.max_ejection_ms();
      o.max_ejection_percent = od.max_ejection_percent();
      o.min_health_percent = od.min_health_percent();
      o.success_rate_min_hosts = od.success_rate_min_hosts();
      o.success_rate_request_volume = od.success_rate_request_volume();
      o.success_rate_stdev_factor = od.success_rate_stdev_factor();
      if (std::string e = mesh::OutlierError(o); !e.empty())
        return fail("cluster " + c.name() + ": outlier_detection." + e);
    }
    // "" and "http": HTTP/1.1; "http2" and "grpc": HTTP/2; "tcp": a tcp
    // listener's cluster, where the HTTP version does not apply.
    if (c.protocol() == "http2" || c.protocol() == "grpc") {
      cc.protocol = proxy::UpstreamProtocol::kHttp2;
    } else if (!c.protocol().empty() && c.protocol() != "http" && c.protocol() != "tcp") {
      return fail("cluster " + c.name() + ": unknown protocol \"" + c.protocol() +
                  "\" (use http, http2, grpc or tcp)");
    }
    if (c.mesh_protocol() == "http1") {
      cc.mesh_http2 = false;
    } else if (!c.mesh_protocol().empty() && c.mesh_protocol() != "http2") {
      return fail("cluster " + c.name() + ": unknown mesh_protocol \"" + c.mesh_protocol() +
                  "\" (use http2 or http1)");
    }
    if (c.connect_timeout_ms() > 0) cc.connect_timeout_ms = c.connect_timeout_ms();
    if (!trust_domain.empty() && !c.service().empty() && c.name() != "local_app") {
      cc.peer_id = "spiffe://" + trust_domain + "/ns/" +
                   (c.namespace_().empty() ? std::string("default") : c.namespace_()) + "/sa/" +
                   c.service();
    }
    if (const pb::Resource* e = find("endpoints", c.name())) {
      for (const auto& ep : e->endpoints().endpoints()) {
        std::string why;
        auto addr = ParseSocketAddress(ep.address(), &why);
        if (!addr)
          return fail("endpoints " + c.name() + ": address \"" + ep.address() + "\": " + why);
        Endpoint x;
        x.address = *addr;
        x.weight = std::max<uint32_t>(1, ep.weight());
        x.mtls = ep.mtls();
        x.zone = ep.zone();
        cc.endpoints.push_back(std::move(x));
      }
    }
    cfg->clusters.push_back(std::move(cc));
  }
  for (const auto& [key, r] : state) {
    if (r->type() != "listener") continue;
    const pb::Listener& l = r->listener();
    ListenerConfig lc;
    lc.name = l.name();
    std::string why;
    auto addr = ParseSocketAddress(l.address(), &why);
    if (!addr) return fail("listener " + l.name() + ": address \"" + l.address() + "\": " + why);
    lc.address = *addr;
    if (l.request_timeout_ms() > 0) lc.request_timeout_ms = l.request_timeout_ms();
    if (l.idle_timeout_ms() > 0) lc.idle_timeout_ms = l.idle_timeout_ms();
    if (!l.mtls().empty()) {
      auto mode = proxy::MeshTlsModeFromName(l.mtls());
      if (!mode) return fail("listener " + l.name() + ": unknown mtls mode \"" + l.mtls() + "\"");
      lc.mtls = *mode;
    }
    if (l.direction() == "inbound" && !policies.empty()) {
      const pb::Resource* local = find("cluster", "local_app");
      const std::string service = local ? local->cluster().service() : "";
      lc.authz = authz::Policies::Compile(policies, service);
    }
    lc.capture_of = l.capture_of();
    for (const auto& a : l.match_addresses()) {
      auto ma = ParseSocketAddress(a, &why);
      if (!ma) return fail("listener " + l.name() + ": match address \"" + a + "\": " + why);
      lc.match_addresses.push_back(ma->Canonical());
    }
    for (const auto& h : l.match_hosts()) {
      std::string n = h;
      for (auto& ch : n) ch = AsciiLower(ch);
      lc.match_hosts.push_back(std::move(n));
    }
    if (l.protocol() == "capture") {
      lc.protocol = Protocol::kTcp;  // what passes through is opaque TCP
      lc.capture = true;
      if (l.egress() == "registry_only") {
        lc.registry_only = true;
      } else if (!l.egress().empty() && l.egress() != "allow_any") {
        return fail("listener " + l.name() + ": unknown egress \"" + l.egress() + "\"");
      }
    } else if (l.protocol() == "tcp") {
      lc.protocol = Protocol::kTcp;
      lc.cluster = l.cluster();
    } else if (l.protocol() == "http" || l.protocol().empty()) {
      lc.protocol = Protocol::kHttp;
      const pb::Resource* rt = find("route", l.route_table());
      if (!rt)
        return fail("listener " + l.name() + ": route table \"" + l.route_table() + "\" missing");
      for (const auto& pr : rt->route().routes()) {
        RouteConfig rc;
        rc.name = pr.name();
        rc.prefix = pr.prefix();
        rc.path = pr.path();
        if (rc.prefix.empty() && rc.path.empty()) rc.prefix = "/";
        for (const auto& h : pr.headers()) {
          std::string n = h.name();
          for (auto& ch : n) ch = AsciiLower(ch);
          rc.headers.push_back({n, h.value()});
        }
        for (const auto& wc : pr.clusters()) rc.weighted.push_back({wc.cluster(), wc.weight(), 0});
        if (rc.weighted.empty()) return fail("route " + pr.name() + ": no clusters");
        if (rc.weighted.size() == 1) {
          rc.cluster = rc.weighted[0].cluster;
          rc.weighted.clear();
        }
        rc.timeout_ms = pr.timeout_ms();
        if (pr.has_fault()) {
          const pb::Fault& f = pr.fault();
          const std::string where = "route " + pr.name() + ": fault.";
          if (f.delay_ms() < 0 || f.delay_ms() > 600000)
            return fail(where + "delay_ms: " + std::to_string(f.delay_ms()) +
                        " is not 0 to 600000");
          if (!(f.delay_percent() >= 0 && f.delay_percent() <= 100) ||
              !(f.abort_percent() >= 0 && f.abort_percent() <= 100))
            return fail(where + "percent: not 0 to 100");
          if (f.abort_http_status() != 0 &&
              (f.abort_http_status() < 200 || f.abort_http_status() > 599))
            return fail(where + "abort_http_status: " + std::to_string(f.abort_http_status()) +
                        " is not 200 to 599");
          if (f.abort_grpc_status() < 0 || f.abort_grpc_status() > 16)
            return fail(where + "abort_grpc_status: " + std::to_string(f.abort_grpc_status()) +
                        " is not 0 to 16");
          rc.fault = {f.delay_ms(), f.delay_percent(), static_cast<int>(f.abort_http_status()),
                      f.abort_grpc_status(), f.abort_percent()};
        }
        if (pr.has_mirror()) {
          // The cluster is checked with the others (ResolveConfig).
          const pb::Mirror& m = pr.mirror();
          if (m.cluster().empty() || !(m.percent() > 0 && m.percent() <= 100))
            return fail("route " + pr.name() +
                        ": mirror: a cluster and a percent over 0, at most 100");
          rc.mirror.cluster = m.cluster();
          rc.mirror.percent = m.percent();
        }
        if (pr.has_rate_limit()) {
          const pb::RateLimit& rl = pr.rate_limit();
          rc.rate_limit = {rl.requests_per_second(), rl.burst(),
                           rl.per_caller_requests_per_second(), rl.per_caller_burst()};
          if (std::string e = mesh::RateLimitError(rc.rate_limit); !e.empty())
            return fail("route " + pr.name() + ": rate_limit." + e);
        }
        if (pr.has_retry()) {
          // Refused, not clamped or dropped: what the proxy cannot honour is
          // NACKed with the reason (the server refuses it at apply time too).
          const pb::RetryPolicy& rp = pr.retry();
          const std::string where = "route " + pr.name() + ": retry.";
          if (rp.per_try_timeout_ms() < 0 || rp.per_try_timeout_ms() > 3600000)
            return fail(where + "per_try_timeout_ms: " + std::to_string(rp.per_try_timeout_ms()) +
                        " is not 0 to 3600000");
          rc.per_try_timeout_ms = rp.per_try_timeout_ms();
          if (rp.hedge_delay_ms() < 0 || rp.hedge_delay_ms() > mesh::kMaxHedgeDelayMs)
            return fail(where + "hedge_delay_ms: " + std::to_string(rp.hedge_delay_ms()) +
                        " is not 0 to 3600000");
          if (rp.hedge_p95() && rp.hedge_delay_ms() > 0)
            return fail(where + "hedge: a delay or p95, not both");
          rc.hedge = {rp.hedge_delay_ms(), rp.hedge_p95()};
          // Bounded by ResolveConfig, as the bootstrap's retries are.
          if (rp.has_attempts())
            rc.retries = static_cast<int>(std::min<uint32_t>(rp.attempts(), INT32_MAX));
          if (rp.on_size() > 0) rc.retry_on = 0;
          for (const auto& on : rp.on()) {
            auto bit = proxy::RetryOnFromName(on);
            if (!bit) {
              return fail(where + "on \"" + on + "\": not supported by this proxy yet (" +
                          proxy::RetryOnNameList() + ")");
            }
            rc.retry_on |= *bit;
          }
          if (rp.retriable_status_codes_size() > 0) {
            if (static_cast<size_t>(rp.retriable_status_codes_size()) >
                mesh::kMaxRetriableStatusCodes)
              return fail(where + "retriable_status_codes: at most 16");
            rc.retriable_status_codes.clear();
            for (uint32_t code : rp.retriable_status_codes()) {
              if (code < 400 || code > 599)
                return fail(where + "retriable_status_codes: " + std::to_string(code) +
                            " is not 400-599");
              rc.retriable_status_codes.push_back(static_cast<uint16_t>(code));
            }
          }
        }
        lc.routes.push_back(std::move(rc));
      }
    } else {
      return fail("listener " + l.name() + ": unknown protocol \"" + l.protocol() + "\"");
    }
    cfg->listeners.push_back(std::move(lc));
  }
  if (!proxy::ResolveConfig(cfg.get(), error)) return nullptr;
  return cfg;
}

std::shared_ptr<const MeshIdentity> IdentityFrom(const pb::Bundle& bundle,
                                                 const pb::Secret& secret) {
  if (bundle.roots_pem().empty() || secret.cert_chain_pem().empty() || secret.key_pem().empty())
    return nullptr;
  auto id = std::make_shared<MeshIdentity>();
  id->spiffe_id = secret.spiffe_id();
  id->trust_domain = bundle.trust_domain();
  id->cert_chain_pem = secret.cert_chain_pem();
  id->key_pem = secret.key_pem();
  id->roots_pem.assign(bundle.roots_pem().begin(), bundle.roots_pem().end());
  id->not_after_unix = secret.not_after_unix();
  id->version = secret.root_id() + "/" + std::to_string(secret.not_after_unix()) + "/" +
                std::to_string(bundle.roots_pem_size());
  return id;
}

}  // namespace weft::xds
