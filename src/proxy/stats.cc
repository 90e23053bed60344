#include "proxy/stats.h"

#include <fmt/format.h>

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

PerWorker<RouteStats>* StatsRegistry::Route(const std::string& listener, const std::string& route) {
  std::lock_guard<std::mutex> l(mu_);
  auto& p = routes_[{listener, route}];
  if (!p) p = std::make_unique<PerWorker<RouteStats>>(workers_);
  return p.get();
}

PerWorker<ClusterStats>* StatsRegistry::Cluster(const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  auto& p = clusters_[name];
  if (!p) p = std::make_unique<PerWorker<ClusterStats>>(workers_);
  return p.get();
}

namespace {

template <typename T, typename F>
uint64_t Sum(const PerWorker<T>& pw, F&& f) {
  uint64_t s = 0;
  for (const T& t : pw.slots()) s += f(t).Get();
  return s;
}

class Writer {
 public:
  void Header(const char* name, const char* type, const char* help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  }
  void Line(const char* name, const std::string& labels, uint64_t v) {
    out += fmt::format("{}{{{}}} {}\n", name, labels, v);
  }
  std::string out;
};

template <typename T>
void RenderHttp(Writer& w, const char* prefix, const std::string& labels, const PerWorker<T>& pw,
                const HttpCounters& (*get)(const T&)) {
  static constexpr const char* kClass[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  for (size_t c = 0; c < 5; ++c) {
    w.Line(fmt::format("{}_rq_total", prefix).c_str(),
           labels + fmt::format(",class=\"{}\"", kClass[c]),
           Sum(pw, [&](const T& t) -> const Counter& { return get(t).rq_class[c]; }));
  }
  uint64_t cum = 0;
  std::string bucket = fmt::format("{}_rq_duration_seconds_bucket", prefix);
  for (size_t b = 0; b <= Histogram::kBoundsUs.size(); ++b) {
    uint64_t n = 0;
    for (const T& t : pw.slots()) n += get(t).latency.Bucket(b);
    cum += n;
    std::string le = b < Histogram::kBoundsUs.size()
                         ? fmt::format("{:g}", static_cast<double>(Histogram::kBoundsUs[b]) / 1e6)
                         : "+Inf";
    w.Line(bucket.c_str(), labels + ",le=\"" + le + "\"", cum);
  }
  uint64_t sum = 0;
  for (const T& t : pw.slots()) sum += get(t).latency.SumUs();
  w.out += fmt::format("{}_rq_duration_seconds_sum{{{}}} {:.6f}\n", prefix, labels,
                       static_cast<double>(sum) / 1e6);
  w.out += fmt::format("{}_rq_duration_seconds_count{{{}}} {}\n", prefix, labels, cum);
}

}  // namespace

std::string StatsRegistry::RenderPrometheus() {
  std::lock_guard<std::mutex> l(mu_);
  Writer w;
  w.Header("weft_config_reloads_total", "counter", "Config reloads by result.");
  w.Line("weft_config_reloads_total", "result=\"ok\"", reload_ok_.Get());
  w.Line("weft_config_reloads_total", "result=\"rejected\"", reload_fail_.Get());

  for (const auto& [name, pw] : listeners_) {
    std::string lb = fmt::format("listener=\"{}\"", name);
    w.Line("weft_listener_downstream_cx_total", lb,
           Sum(*pw, [](const ListenerStats& s) -> const Counter& { return s.cx_total; }));
    w.Line("weft_listener_downstream_cx_active", lb,
           Sum(*pw, [](const ListenerStats& s) -> const Counter& { return s.cx_active; }));
    w.Line("weft_listener_downstream_bytes_received_total", lb,
           Sum(*pw, [](const ListenerStats& s) -> const Counter& { return s.bytes_in; }));
    w.Line("weft_listener_downstream_bytes_sent_total", lb,
           Sum(*pw, [](const ListenerStats& s) -> const Counter& { return s.bytes_out; }));
    for (size_t r = 0; r < static_cast<size_t>(Reject::kCount); ++r) {
      w.Line("weft_listener_downstream_rq_rejected_total",
             lb + fmt::format(",reason=\"{}\"", RejectName(static_cast<Reject>(r))),
             Sum(*pw, [r](const ListenerStats& s) -> const Counter& { return s.rejected[r]; }));
    }
    RenderHttp<ListenerStats>(w, "weft_listener_downstream", lb, *pw,
                              [](const ListenerStats& s) -> const HttpCounters& { return s.http; });
  }
  for (const auto& [key, pw] : routes_) {
    std::string lb = fmt::format("listener=\"{}\",route=\"{}\"", key.first, key.second);
    RenderHttp<RouteStats>(w, "weft_route", lb, *pw,
                           [](const RouteStats& s) -> const HttpCounters& { return s.http; });
  }
  for (const auto& [name, pw] : clusters_) {
    std::string lb = fmt::format("cluster=\"{}\"", name);
    const PerWorker<ClusterStats>& blocks = *pw;
    auto line = [&](const char* metric, Counter ClusterStats::*m) {
      w.Line(metric, lb,
             Sum(blocks, [m](const ClusterStats& s) -> const Counter& { return s.*m; }));
    };
    line("weft_cluster_upstream_cx_total", &ClusterStats::cx_total);
    line("weft_cluster_upstream_cx_active", &ClusterStats::cx_active);
    line("weft_cluster_upstream_cx_connect_fail_total", &ClusterStats::cx_connect_fail);
    line("weft_cluster_upstream_cx_reused_total", &ClusterStats::cx_reused);
    line("weft_cluster_upstream_rq_retry_total", &ClusterStats::rq_retry);
    line("weft_cluster_upstream_rq_timeout_total", &ClusterStats::rq_timeout);
    line("weft_cluster_upstream_rq_reset_total", &ClusterStats::rq_reset);
    line("weft_cluster_upstream_bytes_sent_total", &ClusterStats::bytes_in);
    line("weft_cluster_upstream_bytes_received_total", &ClusterStats::bytes_out);
    RenderHttp<ClusterStats>(w, "weft_cluster_upstream", lb, *pw,
                             [](const ClusterStats& s) -> const HttpCounters& { return s.http; });
  }
  return w.out;
}

}  // namespace weft::proxy
