#include "proxy/upstream/pool.h"

#include <cmath>
#include <map>

#include "base/time.h"
#include "proxy/upstream/connect.h"
#include "proxy/worker.h"

namespace weft::proxy {

ClusterRuntime::ClusterRuntime(const ClusterConfig& c, ClusterStats* s, uint64_t seed)
    : cfg(c),
      stats(s),
      lb(
          c.lb,
          [&] {
            std::vector<uint32_t> w;
            for (const auto& e : c.endpoints) w.push_back(e.weight);
            return w;
          }(),
          seed, c.ewma_decay_ms,
          [&] {
            // ring_hash and maglev place endpoints by address.
            std::vector<std::string> keys;
            if (c.lb == LbPolicy::kRingHash || c.lb == LbPolicy::kMaglev)
              for (const auto& e : c.endpoints) keys.push_back(e.address.text);
            return keys;
          }(),
          c.lb == LbPolicy::kRingHash ? c.hash.ring_points : c.hash.table_size),
      budget(c.retry_budget_percent, c.retry_budget_min_per_s),
      active(c.endpoints.size(), 0),
      idle(c.endpoints.size()),
      speaks_h2(c.endpoints.size(), 0),
      joined_ms_(c.endpoints.size(), 0),
      rng_(seed ^ 0x5bd1e995u) {
  bool any = false;
  for (size_t i = 0; i < c.endpoints.size(); ++i) {
    speaks_h2[i] = c.protocol == UpstreamProtocol::kHttp2 || (c.endpoints[i].mtls && c.mesh_http2);
    any = any || speaks_h2[i];
  }
  if (any) h2.resize(c.endpoints.size());
  for (size_t r = 0; r < s->outlier_ejections.size(); ++r)
    outlier_counters.ejections[r] = &s->outlier_ejections[r];
  outlier_counters.overflow = &s->outlier_overflow;
  // Zone-aware: on when the caller's zone has endpoints here and so do
  // others (with all in one zone there is nothing to prefer).
  if (!c.local_zone.empty() && c.lb != LbPolicy::kRingHash && c.lb != LbPolicy::kMaglev) {
    local_.assign(c.endpoints.size(), 0);
    for (size_t i = 0; i < c.endpoints.size(); ++i) {
      local_[i] = c.endpoints[i].zone == c.local_zone;
      n_local_ += local_[i];
    }
    zoned_ = n_local_ > 0 && n_local_ < c.endpoints.size();
    skip_.assign(c.endpoints.size(), 0);
    ZoneMasks();
  }
  outlier_counters.returns = &s->outlier_returns;
}

void ClusterRuntime::RefreshEjections(int64_t now_ms) {
  // Endpoints whose time ran out go back first (the first worker to see it
  // does it, once), then the view is taken afresh.
  for (size_t i = 0; i < out_until_.size(); ++i)
    if (out_until_[i] != 0 && out_until_[i] <= now_ms)
      outlier->MaybeReturn(i, now_ms, outlier_counters);
  outlier_gen_ = outlier->View(&out_until_, &panic_);
  skip_.assign(out_until_.size(), 0);
  next_return_ms_ = INT64_MAX;
  any_out_ = false;
  for (size_t i = 0; i < out_until_.size(); ++i) {
    if (out_until_[i] == 0) continue;
    skip_[i] = 1;
    any_out_ = true;
    next_return_ms_ = std::min(next_return_ms_, out_until_[i]);
  }
  ZoneMasks();
}

void ClusterRuntime::ZoneMasks() {
  if (!zoned_) return;
  // In panic every endpoint counts as in service.
  const bool use_out = any_out_ && !panic_;
  size_t in_local = 0;
  skip_local_.assign(local_.size(), 0);
  skip_remote_.assign(local_.size(), 0);
  for (size_t i = 0; i < local_.size(); ++i) {
    const bool out = use_out && skip_[i] != 0;
    skip_local_[i] = out || !local_[i];
    skip_remote_[i] = out || local_[i];
    in_local += local_[i] && !out;
  }
  n_in_local_ = in_local;
  // The caller's zone keeps the share of its traffic that its endpoints in
  // service can take; the rest spills to the other zones.
  p_local_ = static_cast<double>(in_local) / static_cast<double>(n_local_);
}

void ClusterRuntime::Inherit(const ClusterRuntime& old, int64_t now_ms) {
  budget.Inherit(old.budget);
  std::map<std::string_view, size_t> by_addr;
  for (size_t k = 0; k < old.cfg.endpoints.size(); ++k)
    by_addr.emplace(old.cfg.endpoints[k].address.text, k);
  const bool same_lb = old.lb.policy() == cfg.lb;
  for (size_t k = 0; k < cfg.endpoints.size(); ++k) {
    auto it = by_addr.find(cfg.endpoints[k].address.text);
    if (it == by_addr.end()) {
      joined_ms_[k] = now_ms;  // new: warms up (when the cluster has a slow start)
      warming_ = warming_ || cfg.slow_start_ms > 0;
      continue;
    }
    joined_ms_[k] = old.joined_ms_[it->second];
    warming_ = warming_ || (cfg.slow_start_ms > 0 && joined_ms_[k] != 0 &&
                            now_ms - joined_ms_[k] < cfg.slow_start_ms);
    if (same_lb) lb.Inherit(k, old.lb, it->second);
  }
}

double ClusterRuntime::WarmFactor(size_t ep, int64_t now_ms) const {
  const int64_t joined = joined_ms_[ep];
  if (joined == 0 || cfg.slow_start_ms <= 0) return 1;
  const int64_t age = now_ms - joined;
  if (age >= cfg.slow_start_ms) return 1;
  // (age / window) ^ (1 / aggression), at least the minimum weight.
  const double f = std::pow(
      static_cast<double>(std::max<int64_t>(age, 0)) / static_cast<double>(cfg.slow_start_ms),
      1.0 / cfg.slow_start_aggression);
  return std::max(f, cfg.slow_start_min_weight_percent / 100.0);
}

size_t ClusterRuntime::Pick(long exclude, const uint64_t* hash) {
  if (warming_ && hash == nullptr) {
    // Slow start: a warming endpoint keeps a pick with the probability of
    // its weight factor; otherwise the balancer picks again (twice at
    // most), so its share of the traffic grows over the window.
    const int64_t now_ms = MonoNanos() / 1000000;
    bool any = false;
    size_t ep = 0;
    for (int attempt = 0; attempt < 3; ++attempt) {
      ep = PickInService(exclude, hash);
      const double f = WarmFactor(ep, now_ms);
      if (f < 1) any = true;
      if (f >= 1 || static_cast<double>(rng_.Below(1u << 20)) < f * (1u << 20)) break;
    }
    if (!any) {
      bool still = false;
      for (size_t k = 0; k < joined_ms_.size() && !still; ++k) still = WarmFactor(k, now_ms) < 1;
      warming_ = still;
    }
    return ep;
  }
  return PickInService(exclude, hash);
}

size_t ClusterRuntime::PickInService(long exclude, const uint64_t* hash) {
  if (outlier) {
    // Nothing to read but one shared counter while no endpoint is out.
    if (outlier->generation() != outlier_gen_) RefreshEjections(MonoNanos() / 1000000);
    if (any_out_) {
      const int64_t now_ms = MonoNanos() / 1000000;
      if (now_ms >= next_return_ms_) RefreshEjections(now_ms);
    }
    if (any_out_ && panic_) stats->lb_panic.Inc();
  }
  if (zoned_ && hash == nullptr) {
    // Zone-aware: this zone's endpoints with the share they can take, the
    // other zones' with the rest.
    const bool local = p_local_ >= 1 || (p_local_ > 0 && static_cast<double>(rng_.Below(1u << 20)) <
                                                             p_local_ * (1u << 20));
    // A retry away from the zone's only endpoint in service leaves it.
    const bool stay =
        local && !(exclude >= 0 && local_[static_cast<size_t>(exclude)] && n_in_local_ <= 1);
    (stay ? stats->zone_local : stats->zone_spill).Inc();
    return lb.Pick(active, exclude, stay ? &skip_local_ : &skip_remote_, hash);
  }
  if (any_out_ && !panic_) return lb.Pick(active, exclude, &skip_, hash);
  return lb.Pick(active, exclude, nullptr, hash);
}

void ClusterRuntime::Answered(size_t ep, int status, int64_t rtt_ns, int64_t now_ns,
                              bool outcome_later) {
  // A failure counts as slow for the balancer: a fast 503 must not draw
  // traffic.
  if (status >= 500) {
    lb.ObserveFailure(ep, now_ns);
  } else {
    lb.Observe(ep, rtt_ns, now_ns);
    if (!recent_.empty()) recent_[ep].Add(rtt_ns);
  }
  if (!outcome_later) Outlier(ep, upstream::OutcomeOf(status), now_ns);
}

void ClusterRuntime::Failed(size_t ep, int64_t now_ns) {
  lb.ObserveFailure(ep, now_ns);
  Outlier(ep, upstream::Outcome::kGateway, now_ns);
}

ClusterRuntime::~ClusterRuntime() {
  upstream::CloseIdle(*this);
  // HTTP/2 connections: those idle close now; those carrying streams were
  // told to go away (CloseIdle) and close with their last stream.
}

namespace upstream {
namespace {

void DropIdle(const std::weak_ptr<ClusterRuntime>& weak, UpstreamConn* raw) {
  auto cr = weak.lock();
  if (!cr) return;
  auto& p = cr->idle[raw->endpoint];
  for (auto it = p.begin(); it != p.end(); ++it) {
    if (it->get() == raw) {
      cr->stats->cx_active.Dec();
      p.erase(it);
      return;
    }
  }
}

void WatchIdleTls(const std::weak_ptr<ClusterRuntime>& weak, UpstreamConn* raw) {
  raw->stream.socket().async_wait(tcp::socket::wait_read, [weak, raw](const asio::error_code& ec) {
    if (ec == asio::error::operation_aborted) return;
    // A session ticket or key update keeps it; a close or stray data drops it.
    if (!ec && weak.lock() && raw->stream.IdleReadable()) {
      WatchIdleTls(weak, raw);
      return;
    }
    DropIdle(weak, raw);
  });
}

}  // namespace

std::unique_ptr<UpstreamConn> TakeIdle(ClusterRuntime& cr, size_t ep) {
  auto& pool = cr.idle[ep];
  if (pool.empty()) return nullptr;
  std::unique_ptr<UpstreamConn> c = std::move(pool.back());
  pool.pop_back();
  if (c->watching) {
    c->stream.Cancel();
    c->watching = false;
  }
  c->reused = true;
  cr.stats->cx_reused.Inc();
  cr.active[ep]++;
  return c;
}

void ReturnIdle(const std::shared_ptr<ClusterRuntime>& cr, std::unique_ptr<UpstreamConn> conn,
                bool closing) {
  cr->active[conn->endpoint]--;
  auto& pool = cr->idle[conn->endpoint];
  if (closing || cr->retired || pool.size() >= cr->cfg.max_idle_per_endpoint) {
    cr->stats->cx_active.Dec();
    return;  // closes
  }
  // No watch yet: a connection reused within a tick costs no syscall at all.
  conn->reused = false;
  conn->watching = false;
  pool.push_back(std::move(conn));
}

void Discard(ClusterRuntime& cr, std::unique_ptr<UpstreamConn> conn) {
  cr.active[conn->endpoint]--;
  cr.stats->cx_active.Dec();
}

void WatchIdle(const std::shared_ptr<ClusterRuntime>& c) {
  std::weak_ptr<ClusterRuntime> weak = c;
  for (auto& pool : c->idle) {
    for (auto& conn : pool) {
      if (conn->watching) continue;
      conn->watching = true;
      // If the upstream closes the idle connection (or sends anything),
      // drop it from the pool. A read, not a wait: Asio re-arms epoll for
      // every wait.
      UpstreamConn* raw = conn.get();
      if (raw->stream.tls()) {
        // TLS: the bytes are OpenSSL's to read. Wait, then let it look.
        WatchIdleTls(weak, raw);
        continue;
      }
      raw->stream.socket().async_read_some(asio::buffer(&raw->watch_byte, 1),
                                           [weak, raw](const asio::error_code& ec, size_t) {
                                             if (ec == asio::error::operation_aborted)
                                               return;  // taken from the pool, or closed
                                             DropIdle(weak, raw);
                                           });
    }
  }
}

void CloseIdle(ClusterRuntime& cr) {
  for (auto& pool : cr.idle) {
    cr.stats->cx_active.Dec(pool.size());
    pool.clear();
  }
  for (Http2Pool& p : cr.h2) {
    for (auto& c : p.conns) {
      if (c->active() == 0) c->Abort("cluster retired");
    }
    p.conns.clear();
  }
}

std::shared_ptr<http2::ClientConnection> FindHttp2(ClusterRuntime& cr, size_t ep) {
  if (ep >= cr.h2.size()) return nullptr;
  auto& conns = cr.h2[ep].conns;
  std::erase_if(conns, [](const auto& c) { return c->dead(); });
  for (const auto& c : conns)
    if (c->can_open()) return c;
  return nullptr;
}

// Not a coroutine itself, and no coroutine is defined in this file: GCC 12
// miscompiled the frames of coroutines defined here (the ramp and the actor
// disagreed on the frame layout by one word; see the note of issue 12). The
// awaitables come from connect.cc.
asio::awaitable<bool> PoolUpstream::Acquire(const std::shared_ptr<ClusterRuntime>& cr, size_t ep,
                                            const http1::Limits& limits, Deadline* dl,
                                            const bool* timed_out, Lease* out, std::string* err) {
  Release(false);
  cluster_ = cr;
  limits_ = limits;
  out->endpoint = ep;
  if (cr->speaks_h2[ep]) {
    h2_endpoint_ = ep;
    return AcquireHttp2(w_, cr, ep, dl, timed_out, &h2_, &connecting_, &waiting_, err,
                        [this, out](bool ok) {
                          connecting_ = nullptr;
                          waiting_ = nullptr;
                          if (!ok || !OpenStream(out)) {
                            h2_.reset();
                            cluster_.reset();
                          }
                        });
  }
  conn_ = TakeIdle(*cr, ep);
  if (conn_) {
    Bound(out);
    return Ready(true);
  }
  conn_ = std::make_unique<UpstreamConn>(w_->io());
  conn_->endpoint = ep;
  return ConnectThen(w_, *cr, kAlpnHttp1, *conn_, dl, timed_out, err, [this, out](bool ok) {
    if (ok) {
      Bound(out);
    } else {
      conn_.reset();
      cluster_.reset();
    }
  });
}

bool PoolUpstream::TakePooled(const std::shared_ptr<ClusterRuntime>& cr, size_t ep,
                              const http1::Limits& limits, Lease* out) {
  Release(false);
  if (cr->speaks_h2[ep]) {
    h2_ = FindHttp2(*cr, ep);
    if (!h2_) return false;
    cluster_ = cr;
    h2_endpoint_ = ep;
    out->endpoint = ep;
    if (OpenStream(out)) return true;
    h2_.reset();
    cluster_.reset();
    return false;
  }
  conn_ = TakeIdle(*cr, ep);
  if (!conn_) return false;
  cluster_ = cr;
  limits_ = limits;
  out->endpoint = ep;
  Bound(out);
  return true;
}

bool PoolUpstream::OpenStream(Lease* out) {
  h2_stream_ = h2_ ? h2_->Open() : nullptr;
  if (!h2_stream_) return false;
  cluster_->active[h2_endpoint_]++;
  cluster_->stats->cx_reused.Inc();
  out->stream = h2_stream_;
  // A stream the peer refuses or never processes (GOAWAY) reports no
  // bytes received: as safe to retry as a fresh connection's failure.
  out->reused = false;
  return true;
}

void PoolUpstream::Bound(Lease* out) {
  codec_.Bind(&conn_->stream, {&cluster_->stats->bytes_in, &cluster_->stats->bytes_out}, limits_);
  out->stream = &codec_;
  out->reused = conn_->reused;
}

void PoolUpstream::Cancel() {
  if (conn_) conn_->stream.Cancel();
  if (h2_ && h2_stream_) h2_->Cancel(h2_stream_);
  if (connecting_) connecting_->stream.Cancel();
  if (waiting_ && waiting_->connected) waiting_->connected->cancel();
}

void PoolUpstream::Abort() {
  if (conn_) conn_->stream.ShutdownBoth();
  if (connecting_) connecting_->stream.ShutdownBoth();
  Cancel();  // HTTP/2: the stream is reset, which later reads see
}

void PoolUpstream::Free() {
  if (!conn_) codec_.Free();
}

void PoolUpstream::Release(bool reusable) {
  if (h2_) {
    if (h2_stream_) {
      h2_->Done(h2_stream_);
      h2_stream_ = nullptr;
      cluster_->active[h2_endpoint_]--;
    }
    if (cluster_->retired && h2_->active() == 0) h2_->Abort("cluster retired");
    h2_.reset();
    cluster_.reset();
    return;
  }
  if (!conn_) return;
  if (reusable && codec_.reusable()) {
    ReturnIdle(cluster_, std::move(conn_), w_->draining());
  } else {
    Discard(*cluster_, std::move(conn_));
  }
  codec_.Idle();
  cluster_.reset();
}

}  // namespace upstream
}  // namespace weft::proxy
