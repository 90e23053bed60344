// The first filters of the HTTP chain: authorization and the router.
#include <fmt/format.h>

#include "base/log.h"
#include "base/time.h"
#include "proxy/authz.h"
#include "proxy/filter.h"
#include "proxy/rate_limit.h"
#include "proxy/router.h"
#include "proxy/worker.h"

namespace weft::proxy {
namespace {

// Authorization: the caller's verified identity and the request against the
// listener's precompiled policies (no allocation when allowed).
class AuthzFilter final : public Filter {
 public:
  std::string_view name() const override { return "authorization"; }
  FilterStatus OnRequestHeaders(Exchange& x) const override {
    const authz::Policies* policies = x.lc->authz.get();
    if (policies == nullptr) return FilterStatus::kContinue;
    authz::Request ar;
    ar.peer = x.peer;
    ar.method = x.request->method;
    ar.path = RequestPath(x.request->path);
    ar.headers = &x.request->fields;
    const authz::Decision d = policies->Evaluate(ar);
    if (d.policy >= 0) {
      AuthzStats& as =
          x.state->snap->authz_stats[x.listener_index][static_cast<size_t>(d.policy)]->at(x.worker);
      (d.allow ? as.allow : as.deny).Inc();
    }
    if (d.allow) return FilterStatus::kContinue;
    x.Reply(403, fmt::format("denied by AuthorizationPolicy {}{}",
                             d.policy >= 0 ? policies->names()[static_cast<size_t>(d.policy)] : "-",
                             d.by_default ? " (default: deny)" : ""));
    LOG_INFO("listener {}: {} {} from {}: {}", x.lc->name, x.request->method, ar.path,
             x.peer.empty() ? x.client_addr : x.peer, x.reply_body);
    return FilterStatus::kStop;
  }
};

// The router: the first matching route, its traffic split, and the cluster.
// Forwarding itself is the connection manager's upstream step.
class RouterFilter final : public Filter {
 public:
  std::string_view name() const override { return "router"; }
  FilterStatus OnRequestHeaders(Exchange& x) const override {
    const http::RequestHeaders& req = *x.request;
    const RouteConfig* route = MatchRoute(x.lc->routes, req);
    if (route == nullptr) {
      x.Reply(404, fmt::format("no route for {}", RequestPath(req.path)));
      return FilterStatus::kStop;
    }
    x.route = route;
    const size_t route_index = static_cast<size_t>(route - x.lc->routes.data());
    x.route_stats = &x.state->snap->route_stats[x.listener_index][route_index]->at(x.worker);
    const uint64_t body_limit = x.lc->max_request_body_bytes;
    if (body_limit && req.body == http::BodyKind::kLength && req.content_length > body_limit) {
      x.Reply(413,
              fmt::format("request body of {} bytes exceeds the limit of {} bytes",
                          req.content_length, body_limit),
              true);
      return FilterStatus::kStop;
    }
    size_t cluster_index = route->cluster_index;
    if (route->weighted.size() > 1) {
      // A traffic split: pick a cluster by weight.
      uint64_t total = 0;
      for (const auto& w : route->weighted) total += w.weight;
      uint64_t v = x.rng->Below(total);
      for (const auto& w : route->weighted) {
        if (v < w.weight) {
          cluster_index = w.index;
          break;
        }
        v -= w.weight;
      }
    }
    x.cluster_index = cluster_index;
    const auto& golden = x.state->snap->golden;  // (a snapshot without: none counted)
    if (x.listener_index < golden.size() && route_index < golden[x.listener_index].size()) {
      for (const auto& [i, g] : golden[x.listener_index][route_index])
        if (i == cluster_index) x.golden = &g->at(x.worker);
    }
    ClusterRuntime& cr = *x.state->clusters[cluster_index];
    if (cr.cfg.endpoints.empty()) {
      // A control-plane cluster whose service has no healthy instance.
      cr.stats->cx_connect_fail.Inc();
      cr.stats->http.Record(503, 0);
      x.route_stats->http.Record(503, (MonoNanos() - x.start_ns) / 1000);
      if (x.golden) x.golden->http.Record(503, (MonoNanos() - x.start_ns) / 1000);
      x.Reply(503, fmt::format("no healthy upstream for cluster {}", cr.cfg.name));
      return FilterStatus::kStop;
    }
    return FilterStatus::kContinue;
  }
};

// Fault injection: the matched route's delay and abort, each for its share
// of the requests (as Istio's HTTPFaultInjection). An abort answers here;
// a delay is served by the connection manager before it forwards.
class FaultFilter final : public Filter {
 public:
  std::string_view name() const override { return "fault"; }
  FilterStatus OnRequestHeaders(Exchange& x) const override {
    const FaultConfig& f = x.route->fault;
    if (!f.any()) return FilterStatus::kContinue;
    auto chance = [&](double percent) {
      return percent >= 100 || static_cast<double>(x.rng->Below(1000000)) < percent * 10000;
    };
    if (f.delay_ms > 0 && f.delay_percent > 0 && chance(f.delay_percent)) {
      x.fault_delay_ms = f.delay_ms;
      x.route_stats->fault_delays.Inc();
    }
    if (f.abort_status > 0 && f.abort_percent > 0 && chance(f.abort_percent)) {
      x.route_stats->fault_aborts.Inc();
      // What the caller got from this destination (the golden metrics
      // count what the caller sees, injected failures included).
      if (x.golden) x.golden->http.Record(f.abort_status, (MonoNanos() - x.start_ns) / 1000);
      x.reply_grpc_status = f.abort_grpc;
      x.Reply(f.abort_status, "fault injected: abort");
      return FilterStatus::kStop;
    }
    return FilterStatus::kContinue;
  }
};

// Local rate limiting: the matched route's token buckets (all requests,
// and each caller's), shared by the workers. Over a limit: 429 with
// retry-after (a gRPC call: RESOURCE_EXHAUSTED). After fault injection, so
// an injected abort spends no token.
class RateLimitFilter final : public Filter {
 public:
  std::string_view name() const override { return "rate_limit"; }
  FilterStatus OnRequestHeaders(Exchange& x) const override {
    if (!x.route->rate_limit.any()) return FilterStatus::kContinue;
    const size_t route_index = static_cast<size_t>(x.route - x.lc->routes.data());
    RateLimiter* rl = x.state->snap->rate_limiters[x.listener_index][route_index].get();
    if (rl == nullptr) return FilterStatus::kContinue;
    // The caller: its verified identity, else its address (without the port).
    std::string_view caller = x.peer;
    if (caller.empty()) {
      caller = x.client_addr;
      if (const size_t colon = caller.rfind(':'); colon != std::string_view::npos)
        caller = caller.substr(0, colon);
    }
    const int64_t wait_s = rl->Check(caller, MonoNanos());
    if (wait_s == 0) return FilterStatus::kContinue;
    x.route_stats->rate_limited.Inc();
    if (x.golden) x.golden->http.Record(429, (MonoNanos() - x.start_ns) / 1000);
    x.reply_retry_after_s = wait_s;
    x.reply_grpc_status = 8;  // RESOURCE_EXHAUSTED
    x.Reply(429, fmt::format("rate limited: route {} allows {}", x.route->name,
                             DescribeLimit(rl->config())));
    LOG_INFO_LIMITED("listener {}: {} {} from {}: {}", x.lc->name, x.request->method,
                     RequestPath(x.request->path), caller, x.reply_body);
    return FilterStatus::kStop;
  }

 private:
  static std::string DescribeLimit(const mesh::RateLimit& r) {
    std::string out;
    if (r.requests_per_second > 0) out = fmt::format("{} requests/s", r.requests_per_second);
    if (r.per_caller_rps > 0)
      out +=
          fmt::format("{}{} requests/s per caller", out.empty() ? "" : " and ", r.per_caller_rps);
    return out;
  }
};

const AuthzFilter kAuthz;
const RouterFilter kRouter;
const FaultFilter kFault;
const RateLimitFilter kRateLimit;
// Mirroring goes after rate limiting.
const Filter* const kChain[] = {&kAuthz, &kRouter, &kFault, &kRateLimit};

}  // namespace

std::span<const Filter* const> HttpFilterChain() { return kChain; }

}  // namespace weft::proxy
