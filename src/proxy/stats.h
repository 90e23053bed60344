// Proxy statistics. Each worker owns one slot of every stat block and is the
// only writer of it (plain relaxed loads and stores, no read-modify-write
// atomics on the request path); the admin thread sums the slots on scrape.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "base/counter.h"
#include "http/http2/violation.h"

namespace weft::proxy {

using weft::Counter;

// Request latency histogram with fixed bucket bounds (seconds, Prometheus style).
class Histogram {
 public:
  static constexpr std::array<int64_t, 14> kBoundsUs = {250,    500,     1000,    2500,    5000,
                                                        10000,  25000,   50000,   100000,  250000,
                                                        500000, 1000000, 2500000, 10000000};
  static size_t BucketOf(int64_t us) {
    size_t i = 0;
    while (i < kBoundsUs.size() && us > kBoundsUs[i]) ++i;
    return i;
  }
  void Observe(int64_t us) {
    buckets_[BucketOf(us)].Inc();
    sum_us_.Inc(static_cast<uint64_t>(us < 0 ? 0 : us));
  }
  uint64_t Bucket(size_t i) const { return buckets_[i].Get(); }
  uint64_t SumUs() const { return sum_us_.Get(); }

 private:
  std::array<Counter, kBoundsUs.size() + 1> buckets_;
  Counter sum_us_;
};

// Why a downstream request or connection was refused by the proxy itself.
enum class Reject : uint8_t {
  kBadRequest,       // 400: malformed message
  kUriTooLong,       // 414
  kHeadersTooLarge,  // 431
  kBodyTooLarge,     // 413
  kHeaderTimeout,    // 408
  kNoRoute,          // 404
  kUnsupported,      // 405/501/505
  kConnectionLimit,  // connection closed at accept: max_connections reached
  kTlsHandshake,     // mesh TLS handshake failed (plaintext into a strict port, a bad certificate)
  kNoIdentity,       // mesh TLS needed before this proxy has its certificate
  kPeerIdentity,     // the peer's certificate names no SPIFFE ID of this trust domain
  kDenied,           // an authorization policy denied it (403, or a TCP close)
  kNotRedirected,    // capture: reached the capture port directly, not through iptables
  kEgressBlocked,    // capture: a destination outside the mesh under registry-only egress
  kAmbiguousPath,    // 400: an escaped '/', '\' or NUL, a backslash or a control byte in the path
  kCount,
};
const char* RejectName(Reject r);

struct HttpCounters {
  std::array<Counter, 5> rq_class;  // 1xx..5xx
  Histogram latency;
  // gRPC calls by grpc-status: 0..16, then any other value.
  static constexpr size_t kGrpcSlots = 18;
  std::array<Counter, kGrpcSlots> grpc;
  void Record(int status, int64_t us) {
    int c = status / 100 - 1;
    if (c >= 0 && c < 5) rq_class[static_cast<size_t>(c)].Inc();
    latency.Observe(us);
  }
  void RecordGrpc(int code) {
    grpc[code >= 0 && code < static_cast<int>(kGrpcSlots) - 1 ? static_cast<size_t>(code)
                                                              : kGrpcSlots - 1]
        .Inc();
  }
};

struct alignas(64) ListenerStats {
  Counter cx_total, cx_active, bytes_in, bytes_out;
  Counter tls_handshakes, tls_resumed, plaintext;  // inbound mesh TLS; plaintext: permissive
  Counter cx_http2;                                // connections that spoke HTTP/2
  // What HTTP/2 clients did wrong (http2::Counters), and the GOAWAYs with an
  // error code they were sent for it.
  std::array<Counter, http2::kViolationCount> http2_violations;
  Counter http2_goaways;
  std::array<Counter, static_cast<size_t>(Reject::kCount)> rejected;
  // Capture: empty SETTINGS sent to HTTP/2 clients that waited for the
  // server's (or that failed to go out whole), and connections passed
  // through with the client's ACK of one not taken out (capture.cc).
  Counter capture_h2_settings, capture_h2_settings_failed, capture_h2_ack_forwarded;
  HttpCounters http;
  void Rejected(Reject r) { rejected[static_cast<size_t>(r)].Inc(); }
};

// OpenMetrics exemplars of a latency histogram: per bucket, the latest
// traced request that fell in it (its trace id, duration and wall time).
// One writer (the worker) under a sequence count; a scrape that meets a
// write in progress leaves that bucket's exemplar out.
class Exemplars {
 public:
  struct Read {
    uint8_t trace_id[16];
    uint64_t value_us = 0;
    uint64_t wall_ms = 0;  // 0: none
  };
  void Record(int64_t us, const uint8_t* trace_id, int64_t wall_ms);
  bool Get(size_t bucket, Read* out) const;

 private:
  struct Slot {
    std::atomic<uint64_t> seq{0};
    std::atomic<uint64_t> hi{0}, lo{0}, value_us{0}, wall_ms{0};
  };
  std::array<Slot, Histogram::kBoundsUs.size() + 1> slots_;
};

struct alignas(64) RouteStats {
  HttpCounters http;
  Exemplars exemplars;                 // on http.latency: traced requests (tracing on)
  Counter fault_delays, fault_aborts;  // fault injection: requests delayed, aborted
  Counter rate_limited;                // answered 429 by the route's rate limit
};

struct alignas(64) ClusterStats {
  Counter cx_total, cx_active, cx_connect_fail, cx_reused, rq_retry, rq_timeout, rq_reset;
  Counter rq_retry_budget_exhausted;  // retries the budget refused
  Counter rq_per_try_timeout;         // attempts past the route's per-try timeout
  // Circuit breakers: requests answered 503 (x-weft-overloaded) per limit.
  Counter cx_overflow, rq_pending_overflow, rq_overflow, rq_retry_overflow;
  Counter bytes_in, bytes_out;                    // to / from upstream
  Counter tls_handshakes, tls_resumed, tls_fail;  // mesh TLS towards sidecars
  Counter cx_http2;                               // upstream connections speaking HTTP/2
  // Outlier detection: ejections by reason (upstream::EjectReason order:
  // consecutive 5xx, consecutive gateway errors, success rate), those the
  // cap refused, endpoints put back, and picks made in panic.
  std::array<Counter, 3> outlier_ejections;
  Counter outlier_overflow, outlier_returns, lb_panic;
  Counter zone_local, zone_spill;  // zone-aware picks kept in the caller's zone, sent out of it
  // Mirrored copies sent here (mirror.h): answered, without an answer, dropped.
  Counter mirror_sent, mirror_failed, mirror_dropped;
  // Hedges (hedge.h): sent, those whose answer won, and those not sent
  // (the retry budget or max_retries said no, or the body was not whole).
  Counter hedge_sent, hedge_won, hedge_skipped;
  HttpCounters http;
};

// The golden metrics of one (route, destination) as the caller's sidecar
// sees them: requests by class, latency with exemplars. Its source is the
// sidecar's own identity (StatsRegistry::SetSelf).
struct alignas(64) GoldenStats {
  HttpCounters http;
  Exemplars exemplars;
};

// Requests on an inbound listener by the verified identity of the caller.
struct alignas(64) SourceStats {
  HttpCounters http;
};

// Authorization decisions of one policy.
struct alignas(64) AuthzStats {
  Counter allow, deny;
};

// One stat block per name, with one slot per worker. Blocks outlive config
// reloads (same name, same counters) and are never freed while running.
template <typename T>
class PerWorker {
 public:
  explicit PerWorker(size_t workers) : slots_(workers) {}
  // Slot `w` is written on worker w's thread only; any thread reads it.
  T& at(size_t w) { return slots_[w]; }
  const std::vector<T>& slots() const { return slots_; }

 private:
  std::vector<T> slots_;
};

// Thread-safe. Blocks are never freed: the pointers returned stay valid for
// the registry's life.
class StatsRegistry {
 public:
  explicit StatsRegistry(size_t workers) : workers_(workers) {}
  // Returns the block for `name`, creating it. Called on config load only.
  PerWorker<ListenerStats>* Listener(const std::string& name);
  PerWorker<RouteStats>* Route(const std::string& listener, const std::string& route);
  PerWorker<ClusterStats>* Cluster(const std::string& name);
  // Per caller identity; past kMaxSources identities per listener the rest
  // share source="other". May be called by workers (once per connection).
  PerWorker<SourceStats>* Source(const std::string& listener, const std::string& source);
  PerWorker<AuthzStats>* Authz(const std::string& policy);
  // A route's requests to one of its clusters (the destination), on a
  // listener that is not the mesh's inbound side.
  PerWorker<GoldenStats>* Golden(const std::string& listener, const std::string& route,
                                 const std::string& cluster);
  // The source label of the golden metrics: this sidecar's SPIFFE ID, once
  // it has one ("unknown" until then, and without mesh TLS).
  void SetSelf(const std::string& spiffe_id);
  static constexpr size_t kMaxSources = 1000;

  // Each has one writer thread (Counter): the proxy's main loop.
  // The endpoints a cluster has ejected now (outlier detection), read on
  // scrape; replaced on every config load.
  void SetEjectedGauge(const std::string& cluster, std::function<uint64_t()> f);

  // Spans the tracing exporter sent, dropped (its queue was full) and lost
  // with a failed export, read on scrape (null: tracing never configured).
  struct SpanCounts {
    uint64_t exported = 0, dropped = 0, failed = 0;
  };
  void SetSpanCounts(std::function<SpanCounts()> f);
  // Live requests (tap.h): sessions open, and events handed to sessions,
  // dropped from their full buffers, or left out by the per-second budget.
  struct TapCounts {
    uint64_t sessions = 0, events = 0, dropped = 0, over_budget = 0;
  };
  void SetTapCounts(std::function<TapCounts()> f);

  Counter& config_reload_ok() { return reload_ok_; }
  Counter& config_reload_fail() { return reload_fail_; }

  // Prometheus text exposition format, version 0.0.4; or OpenMetrics 1.0,
  // with the latency exemplars (base/prometheus.h).
  std::string RenderPrometheus(bool openmetrics = false);

 private:
  const size_t workers_;
  std::mutex mu_;  // guards the maps below (blocks are created on load, summed on scrape)
  std::map<std::string, std::unique_ptr<PerWorker<ListenerStats>>> listeners_;  // guarded by mu_
  std::map<std::pair<std::string, std::string>, std::unique_ptr<PerWorker<RouteStats>>> routes_;
  std::map<std::string, std::unique_ptr<PerWorker<ClusterStats>>> clusters_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<PerWorker<SourceStats>>> sources_;
  std::map<std::string, size_t> sources_per_listener_;
  std::map<std::string, std::unique_ptr<PerWorker<AuthzStats>>> authz_;
  std::map<std::tuple<std::string, std::string, std::string>,
           std::unique_ptr<PerWorker<GoldenStats>>>
      golden_;
  std::string self_ = "unknown";
  std::map<std::string, std::function<uint64_t()>> ejected_;
  std::function<SpanCounts()> span_counts_;  // guarded by mu_
  std::function<TapCounts()> tap_counts_;    // guarded by mu_
  Counter reload_ok_, reload_fail_;
};

}  // namespace weft::proxy
