// Distributed tracing settings, as a Telemetry manifest's spec.tracing and
// the proxy's bootstrap `tracing:` block write them: how many requests
// start a trace, and the OTLP/HTTP collector the sidecars export spans to.
// One parser for both, so that they accept and refuse the same things.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace YAML {
class Node;
}

namespace weft::mesh {

inline constexpr double kDefaultTraceSampling = 0.01;  // 1 %, as Istio's default

struct Tracing {
  // Each field is optional: a service's Telemetry sets some and inherits the
  // others from the mesh-wide one (Merge).
  std::optional<bool> enabled;     // `enabled: false` turns tracing off
  std::optional<double> sampling;  // the share of new traces recorded, 0..1
  std::string otlp;                // the collector, "http://HOST:PORT[/PATH]"; "": not set
  std::string format;              // protobuf | json; "": not set
  bool operator==(const Tracing&) const = default;
  // `over`'s fields where it sets them, this one's elsewhere.
  Tracing Merge(const Tracing& over) const;
  // Whether spans are recorded: not turned off, and a collector named.
  bool active() const { return enabled.value_or(true) && !otlp.empty(); }
};

// `tracing: {sampling: 0.01, otlp: http://HOST:4318, format: protobuf}`,
// `otlp` also as `{endpoint: URL, format: F}`, at `at` (errors name it).
Tracing ParseTracing(const YAML::Node& n, const std::string& at);

// An OTLP/HTTP traces URL split for the exporter: "HOST:PORT" and the path
// (/v1/traces when the URL has none). Only http: the exporter speaks plain
// HTTP (a collector on the node or reached through the mesh). nullopt with
// *error set for anything else.
struct OtlpTarget {
  std::string host_port;
  std::string path;
};
std::optional<OtlpTarget> ParseOtlpUrl(std::string_view url, std::string* error);

}  // namespace weft::mesh
