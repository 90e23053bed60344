// A cluster as one worker sees it under one config snapshot: its load
// balancer, the in-flight count per endpoint, and the pool of idle upstream
// connections per endpoint (HTTP/1.1), or of shared ones (HTTP/2). Worker thread only (shared
// nothing).
#pragma once

#include <asio.hpp>
#include <memory>
#include <vector>

#include "base/random.h"
#include "io/stream.h"
#include "proxy/config.h"
#include "proxy/stats.h"
#include "proxy/tls.h"
#include "proxy/upstream/load_balancer.h"
#include "proxy/upstream/outlier.h"
#include "proxy/upstream/recent_latency.h"
#include "proxy/upstream/retry.h"

namespace weft::http2 {
class ClientConnection;
}

namespace weft::proxy {

// One connection to an upstream endpoint (TCP, or mesh TLS to a sidecar).
struct UpstreamConn {
  explicit UpstreamConn(asio::io_context& io) : stream(io) {}
  io::Stream stream;
  std::shared_ptr<TlsContexts> tls;  // mesh TLS: the contexts its SSL came from
  size_t endpoint = 0;
  bool reused = false;    // taken from the idle pool (not freshly connected)
  bool watching = false;  // an idle-watch read is pending (pooled for over a tick)
  char watch_byte = 0;    // target of the idle-watch read
};

// HTTP/2 connections to one endpoint, shared by the exchanges on them.
struct Http2Pool {
  std::vector<std::shared_ptr<http2::ClientConnection>> conns;
  bool connecting = false;  // a connection is being opened: others wait for it
  std::unique_ptr<asio::steady_timer> connected;  // wakes those waiting (lazily made)
};

struct ClusterRuntime {
  ClusterRuntime(const ClusterConfig& c, ClusterStats* s, uint64_t seed);
  ~ClusterRuntime();
  const ClusterConfig& cfg;  // lives in the snapshot this runtime was made for
  ClusterStats* stats;
  upstream::LoadBalancer lb;
  upstream::RetryBudget budget;  // this worker's retries to this cluster
  // Circuit breakers: this worker's share of the cluster's limits (set by
  // the worker), and what counts against them now.
  uint32_t lim_connections = UINT32_MAX, lim_pending = UINT32_MAX, lim_requests = UINT32_MAX,
           lim_retries = UINT32_MAX;
  uint32_t rq_active = 0;        // requests in flight (Forward)
  uint32_t rq_pending = 0;       // of those, waiting for a connection
  uint32_t cx_opening = 0;       // HTTP/1.1 connections being opened for them
  uint32_t retries_active = 0;   // of those, being retried
  std::vector<uint32_t> active;  // requests in flight per endpoint
  std::vector<std::vector<std::unique_ptr<UpstreamConn>>> idle;  // per endpoint (upstream/pool.cc)
  std::vector<Http2Pool> h2;       // per endpoint: the HTTP/2 connections of those that speak it
  std::vector<uint8_t> speaks_h2;  // per endpoint: HTTP/2 (the cluster's protocol, or mesh TLS)
  bool retired = false;            // replaced by a reload: pools nothing more

  // Outlier detection: the cluster's detector (shared by the workers; null
  // when off), this worker's view of it and its counters.
  std::shared_ptr<upstream::OutlierDetector> outlier;
  upstream::OutlierCounters outlier_counters;
  size_t worker = 0;

  // What the runtime of the same cluster under the snapshot before learnt
  // (ewma estimates, the retry budget's window, when each endpoint joined),
  // by endpoint address; an endpoint `old` did not have joins at `now_ms`
  // (its slow start begins).
  void Inherit(const ClusterRuntime& old, int64_t now_ms);

  // The endpoint for an attempt: the balancer's choice among those in
  // service (every endpoint in panic). `exclude`: as LoadBalancer::Pick.
  // `hash`: the request's key hash (ring_hash, maglev), or null.
  size_t Pick(long exclude, const uint64_t* hash = nullptr);
  // What an attempt on `ep` came to, for the balancer and outlier
  // detection: an answer with `status` after `rtt_ns`, or a failure (a
  // failed connect, a reset, a timeout). `now_ns`: MonoNanos().
  // `outcome_later`: the answer's outcome comes at its end (a gRPC call's
  // trailers): the balancer learns the latency now, outlier detection waits
  // for Concluded.
  void Answered(size_t ep, int status, int64_t rtt_ns, int64_t now_ns, bool outcome_later = false);
  void Concluded(size_t ep, int status, int64_t now_ns) {
    Outlier(ep, upstream::OutcomeOf(status), now_ns);
  }
  void Failed(size_t ep, int64_t now_ns);
  // An attempt on `ep` given up after `elapsed_ns` without an answer,
  // because another attempt answered first (a hedge): the balancer learns
  // that `ep` is at least that slow; outlier detection learns nothing.
  void Abandoned(size_t ep, int64_t elapsed_ns, int64_t now_ns) {
    if (static_cast<double>(elapsed_ns) > lb.Estimate(ep, now_ns))
      lb.Observe(ep, elapsed_ns, now_ns);
  }
  // The p95 of `ep`'s recent answers in ns (0: too few yet). Tracked from
  // the first call on, for the clusters a route hedges at p95.
  int64_t RecentP95Ns(size_t ep) {
    if (recent_.empty()) recent_.resize(cfg.endpoints.size());
    return recent_[ep].Quantile(0.95);
  }
  // For outlier detection only (TCP: a connect, or a failure to).
  void Outlier(size_t ep, upstream::Outcome o, int64_t now_ns) {
    if (outlier) outlier->Record(worker, ep, o, now_ns / 1000000, outlier_counters);
  }

 private:
  void RefreshEjections(int64_t now_ms);
  size_t PickInService(long exclude, const uint64_t* hash);
  // Slow start: the share of its weight endpoint `ep` has now (1: all).
  double WarmFactor(size_t ep, int64_t now_ms) const;
  std::vector<upstream::RecentLatency> recent_;  // per endpoint, once RecentP95Ns asked
  std::vector<int64_t> out_until_;               // per endpoint: ejected until (ms; 0: in service)
  std::vector<uint8_t> skip_;                    // per endpoint: out now (the balancer's mask)
  uint64_t outlier_gen_ = 0;                     // the detector's generation out_until_ is from
  int64_t next_return_ms_ = INT64_MAX;
  bool any_out_ = false, panic_ = false;
  // Slow start: when each endpoint joined (worker clock, ms; 0: with the
  // cluster, no slow start), and whether any is still warming up.
  std::vector<int64_t> joined_ms_;
  bool warming_ = false;
  // Zone-aware balancing: which endpoints are in the caller's zone (and how
  // many), the masks that keep a pick in it or out of it, and the share of
  // requests it keeps.
  void ZoneMasks();
  std::vector<uint8_t> local_, skip_local_, skip_remote_;
  size_t n_local_ = 0, n_in_local_ = 0;
  bool zoned_ = false;
  double p_local_ = 1;
  Rng rng_;
};

}  // namespace weft::proxy
