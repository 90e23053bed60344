#include "proxy/xds.h"

#include "base/strings.h"

namespace weft::proxy {
namespace {

namespace pb = weft::v1;

bool ParseLb(const std::string& s, LbPolicy* out) {
  if (s.empty() || s == "round_robin") {
    *out = LbPolicy::kRoundRobin;
  } else if (s == "least_request") {
    *out = LbPolicy::kLeastRequest;
  } else if (s == "random") {
    *out = LbPolicy::kRandom;
  } else {
    return false;
  }
  return true;
}

}  // namespace

std::shared_ptr<const ProxyConfig> ConfigFromResources(const ProxyConfig& base,
                                                       const control::ResourceMap& state,
                                                       std::string* error) {
  auto cfg = std::make_shared<ProxyConfig>();
  cfg->source_path = "control plane";
  cfg->admin = base.admin;
  cfg->workers = base.workers;
  cfg->drain_timeout_ms = base.drain_timeout_ms;
  auto find = [&](const std::string& type, const std::string& name) -> const pb::Resource* {
    auto it = state.find(type + "/" + name);
    return it == state.end() ? nullptr : it->second.get();
  };
  auto fail = [&](const std::string& msg) {
    *error = msg;
    return nullptr;
  };
  for (const auto& [key, r] : state) {
    if (r->type() != "cluster") continue;
    const pb::Cluster& c = r->cluster();
    ClusterConfig cc;
    cc.name = c.name();
    if (!ParseLb(c.lb(), &cc.lb))
      return fail("cluster " + c.name() + ": unknown lb \"" + c.lb() + "\"");
    if (c.connect_timeout_ms() > 0) cc.connect_timeout_ms = c.connect_timeout_ms();
    if (const pb::Resource* e = find("endpoints", c.name())) {
      for (const auto& ep : e->endpoints().endpoints()) {
        std::string why;
        auto addr = ParseSocketAddress(ep.address(), &why);
        if (!addr)
          return fail("endpoints " + c.name() + ": address \"" + ep.address() + "\": " + why);
        Endpoint x;
        x.address = *addr;
        x.weight = std::max<uint32_t>(1, ep.weight());
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
    if (l.protocol() == "tcp") {
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
        if (pr.has_retry())
          rc.retries = static_cast<int>(std::min<uint32_t>(pr.retry().attempts(), 5));
        lc.routes.push_back(std::move(rc));
      }
    } else {
      return fail("listener " + l.name() + ": unknown protocol \"" + l.protocol() + "\"");
    }
    cfg->listeners.push_back(std::move(lc));
  }
  if (!ResolveConfig(cfg.get(), error)) return nullptr;
  return cfg;
}

}  // namespace weft::proxy
