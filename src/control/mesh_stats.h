// The golden metrics of the mesh as its sidecars' admin /stats expose them,
// read and compared: what `weft stat`, `weft up`'s table and the dashboard
// (/v1/ui/overview) show. A sidecar counts what reaches its service on its
// inbound listener (weft_listener_downstream_* of listener "inbound") and,
// as a caller, what it sends to each destination service
// (weft_golden_rq_*).
#pragma once

#include <map>
#include <string>
#include <string_view>

namespace weft::control {

// Counters of one stream of requests at one moment.
struct Traffic {
  double total = 0, errors = 0;      // errors: 5xx, and gRPC calls whose status was not OK
  double mtls = 0;                   // requests that came with a verified mesh identity
  std::map<double, double> buckets;  // latency le (seconds; +Inf as 1e300) -> cumulative count
  void Add(const Traffic& t);
};

struct ProxyStats {
  Traffic inbound;
  std::map<std::string, Traffic> outbound;  // by destination service
};
// Parses Prometheus text (or OpenMetrics) from a sidecar's /stats.
ProxyStats ParseProxyStats(std::string_view text);

// What happened between two readings `secs` apart.
struct Rates {
  double rps = 0;
  double success = 1;  // share of requests that were not errors (1 with none)
  double p50_ms = -1;  // the upper bound of the bucket holding the quantile; -1: no requests
  double p99_ms = -1;  // (1e9: past the last finite bucket)
  double mtls = 0;
};
Rates RatesBetween(const Traffic& before, const Traffic& after, double secs);

}  // namespace weft::control
