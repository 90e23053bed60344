// The static proxy bootstrap (`weft proxy --config FILE`), parsed and fully
// validated into plain structs. Every error names the field path and the fix:
//   config error: listeners[1].address "127.0.0.1:99999": port out of range
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/net.h"
#include "http/http1/parser.h"
#include "http/http2/settings.h"
#include "mesh/hash_policy.h"
#include "mesh/hedge.h"
#include "mesh/outlier.h"
#include "mesh/rate_limit.h"
#include "mesh/tracing.h"
#include "proxy/authz.h"

namespace weft::proxy {

enum class Protocol : uint8_t { kHttp, kTcp };
// Mesh TLS on an inbound listener: off (plain), strict (mTLS only), or
// permissive (mTLS, and plaintext for clients not yet in the mesh).
enum class MeshTlsMode : uint8_t { kOff, kStrict, kPermissive };
// MeshTlsModeName, LbPolicyName and UpstreamProtocolName return string literals.
const char* MeshTlsModeName(MeshTlsMode m);
enum class LbPolicy : uint8_t { kRoundRobin, kLeastRequest, kRandom, kEwma, kRingHash, kMaglev };
const char* LbPolicyName(LbPolicy p);
// The HTTP version a cluster speaks to its endpoints.
enum class UpstreamProtocol : uint8_t { kHttp1, kHttp2 };
const char* UpstreamProtocolName(UpstreamProtocol p);  // http1 | http2

// One table per enum, shared by the bootstrap file and the config stream:
// the name to value, or nullopt for a name this proxy does not know.
std::optional<LbPolicy> LbPolicyFromName(std::string_view name);        // ewma | round_robin | ...
std::optional<MeshTlsMode> MeshTlsModeFromName(std::string_view name);  // off | strict | permissive
std::optional<UpstreamProtocol> UpstreamProtocolFromName(std::string_view name);  // http1 | http2
// Retry conditions, as a bit mask (RouteConfig::retry_on).
inline constexpr uint32_t kRetryOnConnectFailure = 1;
inline constexpr uint32_t kRetryOnReset = 2;
inline constexpr uint32_t kRetryOn5xx = 4;                    // any 5xx answer
inline constexpr uint32_t kRetryOnGatewayError = 8;           // 502, 503, 504
inline constexpr uint32_t kRetryOnRetriableStatusCodes = 16;  // RouteConfig's list
// gRPC calls: the status of a trailers-only answer.
inline constexpr uint32_t kRetryOnCancelled = 32;           // CANCELLED (1)
inline constexpr uint32_t kRetryOnDeadlineExceeded = 64;    // DEADLINE_EXCEEDED (4)
inline constexpr uint32_t kRetryOnInternal = 128;           // INTERNAL (13)
inline constexpr uint32_t kRetryOnResourceExhausted = 256;  // RESOURCE_EXHAUSTED (8)
inline constexpr uint32_t kRetryOnUnavailable = 512;        // UNAVAILABLE (14)
inline constexpr uint32_t kRetryOnGrpc = kRetryOnCancelled | kRetryOnDeadlineExceeded |
                                         kRetryOnInternal | kRetryOnResourceExhausted |
                                         kRetryOnUnavailable;
// The default: failures that cannot have reached the app, and a 503 (the
// app or its sidecar said it cannot serve now), for requests that can be
// sent again as they are.
inline constexpr uint32_t kRetryOnAll =
    kRetryOnConnectFailure | kRetryOnReset | kRetryOnRetriableStatusCodes;
std::optional<uint32_t> RetryOnFromName(std::string_view name);  // mesh::kRetryOnNames
std::string RetryOnNameList();  // "connect-failure, reset, ...", for errors

struct HeaderMatch {
  std::string name;  // lower-case
  std::string value;
};

struct WeightedCluster {
  std::string cluster;
  uint32_t weight = 1;
  size_t index = 0;  // resolved at load
};

// Fault injection on a route (filters.cc FaultFilter; docs/traffic.md).
struct FaultConfig {
  int64_t delay_ms = 0;
  double delay_percent = 0;  // 0..100
  int abort_status = 0;      // HTTP status; 0: no abort
  int abort_grpc = 0;        // gRPC calls: this grpc-status; 0: the one abort_status maps to
  double abort_percent = 0;  // 0..100
  bool any() const {
    return (delay_ms > 0 && delay_percent > 0) || (abort_status > 0 && abort_percent > 0);
  }
};

// Mirroring on a route: a share of its requests is copied to another
// cluster, whose answers are read and dropped (mirror.h; docs/traffic.md).
struct MirrorConfig {
  std::string cluster;
  double percent = 0;        // 0..100
  size_t cluster_index = 0;  // resolved at load
  bool any() const { return !cluster.empty() && percent > 0; }
};

struct RouteConfig {
  std::string name;  // "listener/index" unless named
  std::string prefix;
  std::string path;  // exact match when non-empty
  std::vector<HeaderMatch> headers;
  std::string cluster;                    // the first of `weighted` when that is set
  std::vector<WeightedCluster> weighted;  // a traffic split; empty: all to `cluster`
  int64_t timeout_ms = 0;                 // 0: the listener's request timeout
  int64_t per_try_timeout_ms = 0;         // each attempt's wait for a head; 0: the timeout
  FaultConfig fault;
  MirrorConfig mirror;
  mesh::RateLimit rate_limit;       // local rate limit (rate_limit.h); none by default
  int retries = -1;                 // -1: one retry when the cluster has 2+ endpoints
  uint32_t retry_on = kRetryOnAll;  // kRetryOn* bits: the failures that are retried
  std::vector<uint16_t> retriable_status_codes{503};  // for kRetryOnRetriableStatusCodes
  mesh::Hedge hedge;                                  // hedged requests (hedge.h); off by default
  size_t cluster_index = 0;                           // resolved at load
};

struct AccessLogConfig {
  std::string path;  // "" off, "stdout", or a file path
};

struct ListenerConfig {
  std::string name;
  SocketAddress address;
  Protocol protocol = Protocol::kHttp;
  std::vector<RouteConfig> routes;  // http
  std::string cluster;              // tcp
  size_t cluster_index = 0;
  AccessLogConfig access_log;
  MeshTlsMode mtls = MeshTlsMode::kOff;
  std::shared_ptr<const authz::Policies> authz;  // inbound: null when no policy applies
  http1::Limits limits;
  http2::Settings http2;                // HTTP/2 clients (preface or ALPN h2)
  uint64_t max_connections = 10000;     // per worker
  uint64_t max_request_body_bytes = 0;  // 0: unlimited (streamed)
  // A request body is copied while it goes up, up to this size, so that a
  // retry can send it again; a larger one is not retried once sent (0: no
  // copies, only requests without a body are retried after they went up).
  uint64_t retry_buffer_bytes = 64 * 1024;
  int64_t header_read_timeout_ms = 10000;  // until the request head is complete -> 408
  int64_t idle_timeout_ms = 60000;         // keep-alive / tcp inactivity
  int64_t request_timeout_ms = 15000;      // until the upstream response head -> 504
  // Transparent interception. A capture listener takes the connections
  // iptables redirected to it and hands each to one of its virtual
  // listeners (capture_of names it; they have no socket) by original
  // destination or, for HTTP, by Host; anything else passes through to the
  // original destination (protocol tcp, no cluster) unless registry_only.
  bool capture = false;
  std::string capture_of;
  std::vector<std::string> match_addresses;  // virtual: "IP:PORT"
  std::vector<std::string> match_hosts;      // virtual, http: lower-case, no port
  bool registry_only = false;
  int64_t detect_timeout_ms = 300;  // capture: wait for a client's first bytes, then call it TCP
  size_t max_detect_bytes = 8192;   // capture: the most of the first bytes read to find a host
  std::map<std::string, size_t> by_address;  // capture: filled by ResolveConfig
  std::map<std::string, size_t> by_host;
};

struct Endpoint {
  SocketAddress address;
  uint32_t weight = 1;
  bool mtls = false;  // a sidecar: connect with mesh TLS
  std::string zone;   // its locality (zone-aware balancing)
};

// Outlier detection (upstream/outlier.h): the same settings a
// TrafficPolicy's outlierDetection writes.
using OutlierConfig = mesh::OutlierDetection;

struct ClusterConfig {
  std::string name;
  LbPolicy lb = LbPolicy::kEwma;
  int64_t ewma_decay_ms = 10000;  // ewma: how fast a latency estimate forgets
  mesh::HashPolicy hash;          // ring_hash and maglev: the request's key, the table size
  // Slow start: an endpoint that joins a running cluster takes its full
  // share over this window, (age / window) ^ (1 / aggression) of it, at
  // least min_weight_percent. 0: off.
  // Zone-aware balancing: the caller's own zone ("": off). Requests stay
  // on endpoints of this zone while they are in service, and spill to the
  // others in proportion to the share of them that is not.
  std::string local_zone;
  int64_t slow_start_ms = 0;
  double slow_start_aggression = 1.0;
  uint32_t slow_start_min_weight_percent = 10;
  // Retries per worker at most this share of the cluster's requests, plus
  // this many per second, over 10 s (upstream/retry.h RetryBudget).
  uint32_t retry_budget_percent = 20;
  uint32_t retry_budget_min_per_s = 10;
  // Circuit breakers for the whole proxy; each worker takes its share,
  // rounded up (ShareOf). Over one: 503 with x-weft-overloaded at once.
  uint32_t max_connections = 1024;       // HTTP/1.1 connections open
  uint32_t max_pending_requests = 1024;  // requests waiting for a connection
  uint32_t max_requests = 1024;          // requests in flight
  uint32_t max_retries = 1024;           // requests in flight that are being retried
  OutlierConfig outlier;
  // The HTTP version spoken to the endpoints: HTTP/1.1, or HTTP/2 with prior
  // knowledge (plaintext) / ALPN h2 (mesh TLS).
  UpstreamProtocol protocol = UpstreamProtocol::kHttp1;
  // Endpoints that run a sidecar (Endpoint::mtls) speak HTTP/2 over mesh
  // TLS whatever `protocol` says, unless this is false (the config
  // stream's mesh_protocol: http1).
  bool mesh_http2 = true;
  int64_t connect_timeout_ms = 1000;
  // HTTP/1.1 connections kept idle per endpoint and worker (as many as
  // HTTP/2 clients may have streams in flight on one connection by default).
  uint32_t max_idle_per_endpoint = 1024;
  std::string peer_id;  // mesh TLS: the SPIFFE ID its endpoints must present
  std::vector<Endpoint> endpoints;
};

// Distributed tracing (mesh/tracing.h): the bootstrap's `tracing:` block,
// or the Telemetry that applies to the sidecar's service.
struct TracingConfig {
  bool enabled = false;  // spans are recorded and exported (a collector is named)
  double sampling = mesh::kDefaultTraceSampling;  // new traces recorded, 0..1
  std::string otlp;                               // the collector's URL as written
  std::string host_port, path;                    // ... split (mesh::ParseOtlpUrl)
  bool json = false;                              // OTLP/JSON instead of protobuf
  std::string service_name = "weft-proxy";        // the spans' service.name
  std::string service_namespace;                  // service.namespace; "": none
  bool operator==(const TracingConfig&) const = default;
};

// Fills `out` from the parsed settings. False with *error for a setting
// without a collector.
bool ResolveTracing(const mesh::Tracing& t, TracingConfig* out, std::string* error);

struct ProxyConfig {
  std::string source_path;
  TracingConfig tracing;
  std::optional<SocketAddress> admin;
  int workers = 0;  // resolved to the core count when absent
  int64_t drain_timeout_ms = 10000;
  std::vector<ListenerConfig> listeners;
  std::vector<ClusterConfig> clusters;
};

// Loads and validates. On failure returns nullptr and sets *error to one line
// starting with "config error: ". The config is immutable from then on: the
// workers read it from their own threads without locks.
std::shared_ptr<const ProxyConfig> LoadConfigFile(const std::string& path, std::string* error);
std::shared_ptr<const ProxyConfig> ParseConfig(const std::string& yaml, const std::string& source,
                                               std::string* error);

// The checks across fields that every config passes, from the bootstrap
// file (after its fields are parsed) or from the control plane's stream:
// the name rule for listeners and clusters (route names are the bootstrap
// parser's: the stream names them LISTENER/N), duplicates, listener addresses, cluster references,
// split weights, retry limits. Resolves the cluster references and the capture tables. On failure
// returns false with one line: the field's path in the config as the admin /config lists it
// ("listeners[1].routes[0].cluster
// \"x\": no cluster with that name").
inline constexpr size_t kMaxSplitClusters = 64;
inline constexpr uint32_t kMaxSplitWeight = 10000;
bool ResolveConfig(ProxyConfig* cfg, std::string* error);

// JSON rendering for /config_dump.
std::string ConfigToJson(const ProxyConfig& c);

}  // namespace weft::proxy
