#include "proxy/stats.h"

#include <fmt/format.h>

#include "base/prometheus.h"
#include "http/grpc.h"
#include "http/trace_context.h"

namespace weft::proxy {

const char* RejectName(Reject r) {
  switch (r) {
    case Reject::kBadRequest:
      return "bad_request";
    case Reject::kUriTooLong:
      return "uri_too_long";
    case Reject::kHeadersTooLarge:
      return "headers_too_large";
    case Reject::kBodyTooLarge:
      return "body_too_large";
    case Reject::kHeaderTimeout:
      return "header_timeout";
    case Reject::kNoRoute:
      return "no_route";
    case Reject::kUnsupported:
      return "unsupported";
    case Reject::kConnectionLimit:
      return "connection_limit";
    case Reject::kTlsHandshake:
      return "tls_handshake";
    case Reject::kNoIdentity:
      return "no_identity";
    case Reject::kPeerIdentity:
      return "peer_identity";
    case Reject::kDenied:
      return "denied";
    case Reject::kNotRedirected:
      return "not_redirected";
    case Reject::kEgressBlocked:
      return "egress_blocked";
    case Reject::kAmbiguousPath:
      return "ambiguous_path";
    case Reject::kCount:
      break;
  }
  return "?";
}

PerWorker<ListenerStats>* StatsRegistry::Listener(const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  auto& p = listeners_[name];
  if (!p) p = std::make_unique<PerWorker<ListenerStats>>(workers_);
  return p.get();
}

PerWorker<SourceStats>* StatsRegistry::Source(const std::string& listener,
                                              const std::string& source) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = sources_.find({listener, source});
  if (it != sources_.end()) return it->second.get();
  size_t& n = sources_per_listener_[listener];
  std::pair<std::string, std::string> key{listener, n < kMaxSources ? source : "other"};
  auto& p = sources_[key];
  if (!p) {
    p = std::make_unique<PerWorker<SourceStats>>(workers_);
    ++n;
  }
  return p.get();
}

PerWorker<GoldenStats>* StatsRegistry::Golden(const std::string& listener, const std::string& route,
                                              const std::string& cluster) {
  std::lock_guard<std::mutex> l(mu_);
  auto& p = golden_[{listener, route, cluster}];
  if (!p) p = std::make_unique<PerWorker<GoldenStats>>(workers_);
  return p.get();
}

void StatsRegistry::SetSelf(const std::string& spiffe_id) {
  std::lock_guard<std::mutex> l(mu_);
  self_ = spiffe_id.empty() ? "unknown" : spiffe_id;
}

PerWorker<AuthzStats>* StatsRegistry::Authz(const std::string& policy) {
  std::lock_guard<std::mutex> l(mu_);
  auto& p = authz_[policy];
  if (!p) p = std::make_unique<PerWorker<AuthzStats>>(workers_);
  return p.get();
}

PerWorker<RouteStats>* StatsRegistry::Route(const std::string& listener, const std::string& route) {
  std::lock_guard<std::mutex> l(mu_);
  auto& p = routes_[{listener, route}];
  if (!p) p = std::make_unique<PerWorker<RouteStats>>(workers_);
  return p.get();
}

void StatsRegistry::SetEjectedGauge(const std::string& cluster, std::function<uint64_t()> f) {
  std::lock_guard<std::mutex> l(mu_);
  ejected_[cluster] = std::move(f);
}

void StatsRegistry::SetTapCounts(std::function<TapCounts()> f) {
  std::lock_guard<std::mutex> l(mu_);
  tap_counts_ = std::move(f);
}

void StatsRegistry::SetSpanCounts(std::function<SpanCounts()> f) {
  std::lock_guard<std::mutex> l(mu_);
  span_counts_ = std::move(f);
}

PerWorker<ClusterStats>* StatsRegistry::Cluster(const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  auto& p = clusters_[name];
  if (!p) p = std::make_unique<PerWorker<ClusterStats>>(workers_);
  return p.get();
}

void Exemplars::Record(int64_t us, const uint8_t* trace_id, int64_t wall_ms) {
  Slot& s = slots_[Histogram::BucketOf(us)];
  uint64_t hi = 0, lo = 0;
  for (int i = 0; i < 8; ++i) {
    hi = hi << 8 | trace_id[i];
    lo = lo << 8 | trace_id[8 + i];
  }
  const uint64_t seq = s.seq.load(std::memory_order_relaxed);
  s.seq.store(seq + 1, std::memory_order_relaxed);  // odd: a write in progress
  std::atomic_thread_fence(std::memory_order_release);
  s.hi.store(hi, std::memory_order_relaxed);
  s.lo.store(lo, std::memory_order_relaxed);
  s.value_us.store(static_cast<uint64_t>(us < 0 ? 0 : us), std::memory_order_relaxed);
  s.wall_ms.store(static_cast<uint64_t>(wall_ms), std::memory_order_relaxed);
  s.seq.store(seq + 2, std::memory_order_release);
}

bool Exemplars::Get(size_t bucket, Read* out) const {
  const Slot& s = slots_[bucket];
  const uint64_t before = s.seq.load(std::memory_order_acquire);
  if (before == 0 || (before & 1)) return false;
  const uint64_t hi = s.hi.load(std::memory_order_relaxed);
  const uint64_t lo = s.lo.load(std::memory_order_relaxed);
  out->value_us = s.value_us.load(std::memory_order_relaxed);
  out->wall_ms = s.wall_ms.load(std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_acquire);
  if (s.seq.load(std::memory_order_relaxed) != before) return false;
  for (int i = 0; i < 8; ++i) {
    out->trace_id[i] = static_cast<uint8_t>(hi >> (56 - 8 * i));
    out->trace_id[8 + i] = static_cast<uint8_t>(lo >> (56 - 8 * i));
  }
  return true;
}

namespace {

template <typename T, typename F>
uint64_t Sum(const PerWorker<T>& pw, F&& f) {
  uint64_t s = 0;
  for (const T& t : pw.slots()) s += f(t).Get();
  return s;
}

// Collects samples by metric family, so that each family is written once,
// contiguous, under its HELP and TYPE lines (as the text format requires),
// whatever order the stat blocks are walked in.
using prom::Labels;
using prom::Writer;

template <typename T>
void RenderHttp(Writer& w, const std::string& prefix, const Labels& labels, const PerWorker<T>& pw,
                const HttpCounters& (*get)(const T&),
                const Exemplars& (*exemplars)(const T&) = nullptr) {
  static constexpr const char* kClass[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  for (size_t c = 0; c < 5; ++c) {
    w.Counter(
        prefix + "_rq_total", "Requests by response status class.", labels.With("class", kClass[c]),
        Sum(pw, [&](const T& t) -> const weft::proxy::Counter& { return get(t).rq_class[c]; }));
  }
  // gRPC outcomes: only the codes seen (a series appears with its first call).
  for (size_t g = 0; g < HttpCounters::kGrpcSlots; ++g) {
    const uint64_t n =
        Sum(pw, [&](const T& t) -> const weft::proxy::Counter& { return get(t).grpc[g]; });
    if (n == 0) continue;
    const char* name =
        g + 1 < HttpCounters::kGrpcSlots ? http::grpc::CodeName(static_cast<int>(g)) : "OTHER";
    w.Counter(prefix + "_grpc_total", "gRPC calls by grpc-status.",
              labels.With("grpc_status", name), n);
  }
  const std::string family = prefix + "_rq_duration_seconds";
  const char* help = "Request duration, from the request head to the end of the response.";
  uint64_t cum = 0;
  for (size_t b = 0; b <= Histogram::kBoundsUs.size(); ++b) {
    uint64_t n = 0;
    for (const T& t : pw.slots()) n += get(t).latency.Bucket(b);
    cum += n;
    std::string le = b < Histogram::kBoundsUs.size()
                         ? fmt::format("{:g}", static_cast<double>(Histogram::kBoundsUs[b]) / 1e6)
                         : "+Inf";
    // OpenMetrics writes le as a canonical number: 1.0, not 1.
    if (w.openmetrics() && le != "+Inf" && le.find_first_of(".e") == std::string::npos) le += ".0";
    // The bucket's latest exemplar among the workers (OpenMetrics only).
    std::string ex;
    if (exemplars != nullptr && w.openmetrics()) {
      Exemplars::Read best, r;
      for (const T& t : pw.slots())
        if (exemplars(t).Get(b, &r) && r.wall_ms > best.wall_ms) best = r;
      if (best.wall_ms > 0) {
        ex = "{trace_id=\"" + http::trace::Hex(best.trace_id, 16) + "\"} " +
             fmt::format("{:g} {}.{:03}", static_cast<double>(best.value_us) / 1e6,
                         best.wall_ms / 1000, best.wall_ms % 1000);
      }
    }
    w.Sample(family, "histogram", help, family + "_bucket", labels.With("le", le),
             std::to_string(cum), ex);
  }
  uint64_t sum = 0;
  for (const T& t : pw.slots()) sum += get(t).latency.SumUs();
  w.Sample(family, "histogram", help, family + "_sum", labels,
           fmt::format("{:.6f}", static_cast<double>(sum) / 1e6));
  w.Sample(family, "histogram", help, family + "_count", labels, std::to_string(cum));
}

}  // namespace

std::string StatsRegistry::RenderPrometheus(bool openmetrics) {
  std::lock_guard<std::mutex> l(mu_);
  Writer w(openmetrics);
  w.Counter("weft_config_reloads_total", "Config reloads by result.", {{"result", "ok"}},
            reload_ok_.Get());
  w.Counter("weft_config_reloads_total", "Config reloads by result.", {{"result", "rejected"}},
            reload_fail_.Get());
  if (span_counts_) {
    const SpanCounts sc = span_counts_();
    const char* help =
        "Spans by what became of them: exported to the collector, dropped (the queue was full), "
        "or failed (the collector did not take them).";
    w.Counter("weft_tracing_spans_total", help, {{"result", "exported"}}, sc.exported);
    w.Counter("weft_tracing_spans_total", help, {{"result", "dropped"}}, sc.dropped);
    w.Counter("weft_tracing_spans_total", help, {{"result", "failed"}}, sc.failed);
  }
  if (tap_counts_) {
    const TapCounts tc = tap_counts_();
    w.Gauge("weft_tap_sessions", "Tap sessions open (weft tap, the dashboard).", {},
            static_cast<int64_t>(tc.sessions));
    const char* help =
        "Requests a tap session matched, by what became of them: delivered to the session, "
        "dropped (its buffer was full), or over_budget (past the sidecar's tap rate).";
    w.Counter("weft_tap_events_total", help, {{"result", "delivered"}}, tc.events);
    w.Counter("weft_tap_events_total", help, {{"result", "dropped"}}, tc.dropped);
    w.Counter("weft_tap_events_total", help, {{"result", "over_budget"}}, tc.over_budget);
  }

  for (const auto& [name, pw] : listeners_) {
    const Labels lb{{"listener", name}};
    const PerWorker<ListenerStats>& blocks = *pw;
    auto sum = [&](Counter ListenerStats::*m) {
      return Sum(blocks, [m](const ListenerStats& s) -> const Counter& { return s.*m; });
    };
    w.Counter("weft_listener_downstream_cx_total", "Downstream connections accepted.", lb,
              sum(&ListenerStats::cx_total));
    w.Gauge("weft_listener_downstream_cx_active", "Downstream connections open.", lb,
            static_cast<int64_t>(sum(&ListenerStats::cx_active)));
    w.Counter("weft_listener_downstream_bytes_received_total", "Bytes received from clients.", lb,
              sum(&ListenerStats::bytes_in));
    w.Counter("weft_listener_downstream_bytes_sent_total", "Bytes sent to clients.", lb,
              sum(&ListenerStats::bytes_out));
    for (size_t r = 0; r < static_cast<size_t>(Reject::kCount); ++r) {
      w.Counter(
          "weft_listener_downstream_rq_rejected_total",
          "Requests or connections refused by the proxy, by reason.",
          lb.With("reason", RejectName(static_cast<Reject>(r))),
          Sum(blocks, [r](const ListenerStats& s) -> const Counter& { return s.rejected[r]; }));
    }
    w.Counter("weft_listener_mtls_handshakes_total", "Inbound mesh TLS handshakes, by kind.",
              lb.With("kind", "full"),
              sum(&ListenerStats::tls_handshakes) - sum(&ListenerStats::tls_resumed));
    w.Counter("weft_listener_mtls_handshakes_total", "Inbound mesh TLS handshakes, by kind.",
              lb.With("kind", "resumed"), sum(&ListenerStats::tls_resumed));
    w.Counter("weft_listener_downstream_cx_http2_total",
              "Downstream connections that spoke HTTP/2 (ALPN h2 or the preface).", lb,
              sum(&ListenerStats::cx_http2));
    for (size_t v = 0; v < http2::kViolationCount; ++v) {
      w.Counter("weft_listener_http2_violations_total",
                "What HTTP/2 clients did against the protocol or its limits, by kind.",
                lb.With("kind", http2::ViolationName(static_cast<http2::Violation>(v))),
                Sum(blocks, [v](const ListenerStats& s) -> const Counter& {
                  return s.http2_violations[v];
                }));
    }
    w.Counter("weft_listener_http2_goaways_sent_total",
              "GOAWAYs with an error code sent to HTTP/2 clients (connections closed for what "
              "they did).",
              lb, sum(&ListenerStats::http2_goaways));
    w.Counter("weft_listener_capture_http2_settings_total",
              "Empty SETTINGS frames a capture listener sent to HTTP/2 clients that waited for "
              "the server's before their first request, by result.",
              lb.With("result", "sent"), sum(&ListenerStats::capture_h2_settings));
    w.Counter("weft_listener_capture_http2_settings_total",
              "Empty SETTINGS frames a capture listener sent to HTTP/2 clients that waited for "
              "the server's before their first request, by result.",
              lb.With("result", "failed"), sum(&ListenerStats::capture_h2_settings_failed));
    w.Counter("weft_listener_capture_http2_ack_forwarded_total",
              "Captured HTTP/2 connections passed through outside the mesh with the client's ACK "
              "of the capture's SETTINGS in them (not seen in time to take out).",
              lb, sum(&ListenerStats::capture_h2_ack_forwarded));
    w.Counter("weft_listener_plaintext_cx_total",
              "Plaintext connections accepted by a permissive mesh listener.", lb,
              sum(&ListenerStats::plaintext));
    RenderHttp<ListenerStats>(w, "weft_listener_downstream", lb, blocks,
                              [](const ListenerStats& s) -> const HttpCounters& { return s.http; });
  }
  for (const auto& [key, pw] : routes_) {
    const Labels lb{{"listener", key.first}, {"route", key.second}};
    RenderHttp<RouteStats>(
        w, "weft_route", lb, *pw, [](const RouteStats& s) -> const HttpCounters& { return s.http; },
        [](const RouteStats& s) -> const Exemplars& { return s.exemplars; });
    w.Counter("weft_route_fault_delays_total", "Requests delayed by the route's fault injection.",
              lb, Sum(*pw, [](const RouteStats& s) -> const Counter& { return s.fault_delays; }));
    w.Counter("weft_route_fault_aborts_total",
              "Requests answered by the route's fault injection instead of an upstream.", lb,
              Sum(*pw, [](const RouteStats& s) -> const Counter& { return s.fault_aborts; }));
    w.Counter("weft_route_rate_limited_total",
              "Requests answered 429 (gRPC: RESOURCE_EXHAUSTED) by the route's rate limit.", lb,
              Sum(*pw, [](const RouteStats& s) -> const Counter& { return s.rate_limited; }));
  }
  for (const auto& [name, pw] : clusters_) {
    const Labels lb{{"cluster", name}};
    const PerWorker<ClusterStats>& blocks = *pw;
    auto counter = [&](const char* metric, const char* help, Counter ClusterStats::*m) {
      w.Counter(metric, help, lb,
                Sum(blocks, [m](const ClusterStats& s) -> const Counter& { return s.*m; }));
    };
    counter("weft_cluster_upstream_cx_total", "Upstream connections opened.",
            &ClusterStats::cx_total);
    w.Gauge("weft_cluster_upstream_cx_active", "Upstream connections open (in use or pooled).", lb,
            static_cast<int64_t>(
                Sum(blocks, [](const ClusterStats& s) -> const Counter& { return s.cx_active; })));
    counter("weft_cluster_upstream_cx_http2_total", "Upstream connections opened for HTTP/2.",
            &ClusterStats::cx_http2);
    counter("weft_cluster_upstream_cx_connect_fail_total",
            "Upstream connect failures and timeouts.", &ClusterStats::cx_connect_fail);
    counter("weft_cluster_upstream_cx_reused_total", "Requests sent on a pooled connection.",
            &ClusterStats::cx_reused);
    counter("weft_cluster_upstream_rq_retry_total", "Requests tried again on another endpoint.",
            &ClusterStats::rq_retry);
    counter("weft_cluster_upstream_rq_retry_budget_exhausted_total",
            "Retries not made: the cluster's retry budget (a share of its requests) was spent.",
            &ClusterStats::rq_retry_budget_exhausted);
    counter("weft_cluster_upstream_rq_per_try_timeout_total",
            "Attempts that ran past their route's per-try timeout (retried, or answered 504).",
            &ClusterStats::rq_per_try_timeout);
    counter("weft_cluster_upstream_cx_overflow_total",
            "Requests answered 503 (x-weft-overloaded): max_connections was reached.",
            &ClusterStats::cx_overflow);
    counter("weft_cluster_upstream_rq_pending_overflow_total",
            "Requests answered 503 (x-weft-overloaded): max_pending_requests was reached.",
            &ClusterStats::rq_pending_overflow);
    counter("weft_cluster_upstream_rq_overflow_total",
            "Requests answered 503 (x-weft-overloaded): max_requests was reached.",
            &ClusterStats::rq_overflow);
    counter(
        "weft_cluster_upstream_rq_hedge_total",
        "Hedges: second attempts sent because the first was slower than the route's hedge delay.",
        &ClusterStats::hedge_sent);
    counter("weft_cluster_upstream_rq_hedge_won_total",
            "Hedges whose answer came first and was relayed (the first attempt was cancelled).",
            &ClusterStats::hedge_won);
    counter("weft_cluster_upstream_rq_hedge_skipped_total",
            "Hedges not sent: the retry budget or max_retries said no, or the request body was "
            "not whole yet.",
            &ClusterStats::hedge_skipped);
    counter("weft_cluster_mirror_sent_total",
            "Mirrored copies of requests that this cluster answered (answers dropped).",
            &ClusterStats::mirror_sent);
    counter("weft_cluster_mirror_failed_total",
            "Mirrored copies that got no answer (connect failure, reset, timeout).",
            &ClusterStats::mirror_failed);
    counter(
        "weft_cluster_mirror_dropped_total",
        "Mirrored copies not sent: too many in flight, a body too large to copy, or no instance.",
        &ClusterStats::mirror_dropped);
    counter("weft_cluster_upstream_rq_retry_overflow_total",
            "Requests answered 503 (x-weft-overloaded): max_retries was reached.",
            &ClusterStats::rq_retry_overflow);
    counter("weft_cluster_upstream_rq_timeout_total",
            "Requests that hit the request timeout (504).", &ClusterStats::rq_timeout);
    counter("weft_cluster_upstream_rq_reset_total", "Upstream resets before a response.",
            &ClusterStats::rq_reset);
    counter("weft_cluster_upstream_bytes_sent_total", "Bytes sent to upstreams.",
            &ClusterStats::bytes_in);
    counter("weft_cluster_upstream_bytes_received_total", "Bytes received from upstreams.",
            &ClusterStats::bytes_out);
    counter("weft_cluster_upstream_mtls_handshakes_total",
            "Mesh TLS handshakes with upstream sidecars (resumed included).",
            &ClusterStats::tls_handshakes);
    counter("weft_cluster_upstream_mtls_resumed_total", "Mesh TLS handshakes that resumed.",
            &ClusterStats::tls_resumed);
    counter("weft_cluster_upstream_mtls_fail_total",
            "Mesh TLS handshakes that failed or met the wrong peer identity.",
            &ClusterStats::tls_fail);
    for (size_t r = 0; r < 3; ++r) {
      static const char* const kReasons[] = {"consecutive_5xx", "consecutive_gateway_errors",
                                             "success_rate"};
      w.Counter("weft_cluster_outlier_ejections_total",
                "Endpoints taken out of balancing by outlier detection, by reason.",
                lb.With("reason", kReasons[r]),
                Sum(blocks, [r](const ClusterStats& s) -> const Counter& {
                  return s.outlier_ejections[r];
                }));
    }
    counter("weft_cluster_outlier_ejections_overflow_total",
            "Ejections not made: max_ejection_percent of the endpoints were out already.",
            &ClusterStats::outlier_overflow);
    counter("weft_cluster_outlier_returns_total",
            "Ejected endpoints put back into balancing when their time ran out.",
            &ClusterStats::outlier_returns);
    counter("weft_cluster_lb_panic_total",
            "Requests balanced over every endpoint, ejected ones included: too few were in "
            "service (min_health_percent).",
            &ClusterStats::lb_panic);
    w.Counter("weft_cluster_lb_zone_total",
              "Zone-aware picks: kept in the caller's zone (local) or sent to others (spill).",
              lb.With("result", "local"),
              Sum(blocks, [](const ClusterStats& s) -> const Counter& { return s.zone_local; }));
    w.Counter("weft_cluster_lb_zone_total",
              "Zone-aware picks: kept in the caller's zone (local) or sent to others (spill).",
              lb.With("result", "spill"),
              Sum(blocks, [](const ClusterStats& s) -> const Counter& { return s.zone_spill; }));
    if (auto e = ejected_.find(name); e != ejected_.end() && e->second)
      w.Gauge("weft_cluster_outlier_ejected", "Endpoints ejected now by outlier detection.", lb,
              static_cast<int64_t>(e->second()));
    RenderHttp<ClusterStats>(w, "weft_cluster_upstream", lb, blocks,
                             [](const ClusterStats& s) -> const HttpCounters& { return s.http; });
  }
  for (const auto& [key, pw] : golden_) {
    const auto& [listener, route, cluster] = key;
    const Labels lb{
        {"source", self_}, {"destination", cluster}, {"route", route}, {"listener", listener}};
    RenderHttp<GoldenStats>(
        w, "weft_golden", lb, *pw,
        [](const GoldenStats& s) -> const HttpCounters& { return s.http; },
        [](const GoldenStats& s) -> const Exemplars& { return s.exemplars; });
  }
  for (const auto& [key, pw] : sources_) {
    const Labels lb{{"listener", key.first}, {"source", key.second}};
    RenderHttp<SourceStats>(w, "weft_inbound", lb, *pw,
                            [](const SourceStats& s) -> const HttpCounters& { return s.http; });
  }
  for (const auto& [name, pw] : authz_) {
    for (int d = 0; d < 2; ++d) {
      w.Counter(
          "weft_authz_decisions_total", "Authorization decisions by policy.",
          Labels{{"policy", name}, {"decision", d ? "deny" : "allow"}},
          Sum(*pw, [d](const AuthzStats& s) -> const Counter& { return d ? s.deny : s.allow; }));
    }
  }
  return w.Finish();
}

}  // namespace weft::proxy
