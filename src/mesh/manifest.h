// weft's declarative config: Kubernetes-style manifests (kind, metadata,
// spec) as `weft apply -f` reads them and the server stores them. Parsing
// validates every field and names the one that is wrong:
//   manifest error: document 2 (Route default/reviews): spec.rules[0].backends[1].weight "x":
//   expected a non-negative integer
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "base/status.h"
#include "mesh/hash_policy.h"
#include "mesh/hedge.h"
#include "mesh/outlier.h"
#include "mesh/rate_limit.h"
#include "mesh/tracing.h"

namespace weft::mesh {

struct ServicePort {
  uint32_t port = 0;
  std::string protocol = "http";  // http | http2 | grpc | tcp
};

struct ServiceSpec {
  std::vector<ServicePort> ports;
  std::string mtls = "strict";  // strict | permissive
  // How HTTP travels between sidecars: multiplexed on HTTP/2 over the mesh
  // TLS connection (whatever the app speaks), or one HTTP/1.1 exchange per
  // connection at a time ("http1": for an app that needs it).
  std::string mesh_protocol = "http2";  // http2 | http1
};

// The most retries one request may get, wherever a retry count is written
// (manifests, the proxy's bootstrap file, the config stream).
inline constexpr uint32_t kMaxRetryAttempts = 5;
// The most status codes a retry policy may list (retriableStatusCodes).
inline constexpr size_t kMaxRetriableStatusCodes = 16;

// The retry conditions the proxy honours. On a response: 5xx (any),
// gateway-error (502, 503, 504), retriable-status-codes (the policy's list,
// default 503); on a failure: connect-failure, reset; on a gRPC call's
// status (a trailers-only answer, before anything reached the caller):
// cancelled, deadline-exceeded, internal, resource-exhausted, unavailable.
inline constexpr const char* kRetryOnNames[] = {"connect-failure",
                                                "reset",
                                                "5xx",
                                                "gateway-error",
                                                "retriable-status-codes",
                                                "cancelled",
                                                "deadline-exceeded",
                                                "internal",
                                                "resource-exhausted",
                                                "unavailable"};

struct RetryPolicy {
  int attempts = -1;               // 0..kMaxRetryAttempts; -1: not set (the proxy's default)
  int64_t per_try_timeout_ms = 0;  // each attempt's wait for an answer; 0: the request timeout
  std::vector<std::string> on;     // kRetryOnNames; empty: the proxy's default
  std::vector<uint32_t> retriable_status_codes;  // empty: 503
  // The retry budget (per caller's worker and service): retries at most
  // this share of requests, plus min_per_s each second, over 10 s.
  uint32_t budget_percent = 20;
  uint32_t budget_min_per_s = 10;
  Hedge hedge;  // hedge: {delay: DURATION | p95}; off by default
};

// Circuit breakers: a caller's limits towards one service (shared by its
// sidecar's workers, each taking its share, rounded up). Over a limit the
// request is answered 503 at once with x-weft-overloaded: true.
struct ConnectionPool {
  uint32_t max_connections = 1024;       // upstream connections open (HTTP/1.1)
  uint32_t max_pending_requests = 1024;  // requests waiting for a connection
  uint32_t max_requests = 1024;          // requests in flight
  uint32_t max_retries = 1024;           // requests in flight that are being retried
};

struct TrafficPolicySpec {
  // loadBalancer.policy (or the shorthand lb): ewma | round_robin |
  // least_request | random | ring_hash | maglev.
  std::string lb = "ewma";
  int64_t lb_decay_ms = 10000;  // loadBalancer.decay: ewma's time constant
  HashPolicy hash;              // loadBalancer.hash, ringPoints, tableSize: ring_hash and maglev
  // loadBalancer.slowStart: {window, aggression, minWeightPercent}; 0: off.
  // loadBalancer.zoneAware: prefer instances in the caller's zone (on by
  // default; not for ring_hash and maglev).
  bool zone_aware = true;
  int64_t slow_start_ms = 0;
  double slow_start_aggression = 1.0;
  uint32_t slow_start_min_weight_percent = 10;
  int64_t connect_timeout_ms = 1000;
  int64_t request_timeout_ms = 15000;
  RetryPolicy retries;
  ConnectionPool connection_pool;
  OutlierDetection outlier;  // outlierDetection
  RateLimit rate_limit;      // rateLimit: enforced by the service's own sidecar (inbound)
};

struct HeaderMatch {
  std::string name;  // lower-case
  std::string value;
};

struct RouteMatch {
  std::string path_prefix;  // one of path_prefix / path (default prefix "/")
  std::string path;
  std::vector<HeaderMatch> headers;
};

struct WeightedBackend {
  std::string service;
  uint32_t weight = 1;
};

// Fault injection on a route rule (Istio's HTTPFaultInjection): a share of
// the requests it matches waits, or is answered by the caller's sidecar
// with an error, before reaching any instance.
struct FaultSpec {
  int64_t delay_ms = 0;        // delay.fixed
  double delay_percent = 0;    // delay.percent, 0..100
  int abort_http_status = 0;   // abort.httpStatus (200..599); 0: no abort
  int abort_grpc_status = -1;  // abort.grpcStatus (1..16) for gRPC calls; -1: from httpStatus
  double abort_percent = 0;    // abort.percent, 0..100
};

// Mirroring on a route rule (Istio's mirror and mirrorPercentage): a share
// of the rule's requests is copied to another service; its answers are
// dropped, and it never slows or fails the request.
struct MirrorSpec {
  std::string service;   // "": none
  double percent = 100;  // over 0, at most 100
};

struct RouteRule {
  RouteMatch match;
  std::vector<WeightedBackend> backends;
  FaultSpec fault;
  MirrorSpec mirror;
  RateLimit rate_limit;  // rateLimit: each caller's sidecar's own bucket for the rule
  // The rule's own request timeout and retries, in place of the service's
  // TrafficPolicy's (0 / unset: the policy's). The budget stays the
  // service's.
  int64_t timeout_ms = 0;
  std::optional<RetryPolicy> retries;
};

struct RouteSpec {
  std::string service;  // the service whose calls this route steers
  std::vector<RouteRule> rules;
};

struct AuthorizationRule {
  std::string action;             // allow | deny
  std::vector<std::string> from;  // SPIFFE IDs, "prefix*" or "*"; empty: any caller
  std::vector<std::string> methods;
  std::vector<std::string> paths;    // exact, or prefix ending in '*'
  std::vector<HeaderMatch> headers;  // value exact, "prefix*", or "*" (present)
};

struct AuthorizationPolicySpec {
  std::string service;         // a service, or "*": every service in the mesh
  std::string default_action;  // allow | deny | "" (not set: the mesh-wide one, else allow)
  std::vector<AuthorizationRule> rules;
};

// Telemetry: what the sidecars observe and where they send it. `service`
// "*" applies mesh-wide (every namespace: writing one takes operator
// rights); a service's own (in its namespace) overrides the fields it
// sets. Several of one scope merge in name order.
struct TelemetrySpec {
  std::string service;  // a service, or "*"
  Tracing tracing;      // spec.tracing (mesh/tracing.h)
};

using Spec =
    std::variant<ServiceSpec, TrafficPolicySpec, RouteSpec, AuthorizationPolicySpec, TelemetrySpec>;

struct Manifest {
  std::string kind;  // Service | TrafficPolicy | Route | AuthorizationPolicy | Telemetry
  std::string name;
  std::string ns = "default";
  Spec spec;
};

// The kinds weft knows, in the spelling manifests use (a static list).
const std::vector<std::string>& Kinds();

// Parses one or more YAML documents ("---" separated). On any error returns
// InvalidArgument with a one-line message naming document and field.
Result<std::vector<Manifest>> ParseManifests(const std::string& yaml);

// Canonical JSON (the stored form and the API's), and back. FromJson runs
// the same validation as the YAML path (JSON is YAML).
std::string ToJson(const Manifest& m);
Result<Manifest> FromJson(const std::string& json);

}  // namespace weft::mesh
