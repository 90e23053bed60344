#include "proxy/upstream/pool.h"

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
          seed),
      active(c.endpoints.size(), 0),
      idle(c.endpoints.size()) {}

ClusterRuntime::~ClusterRuntime() { upstream::CloseIdle(*this); }

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
}

// Not a coroutine itself, and no coroutine is defined in this file: GCC 12
// miscompiled the frames of coroutines defined here (the ramp and the actor
// disagreed on the frame layout by one word; see the note of issue 12). The
// awaitables come from connect.cc.
asio::awaitable<bool> Http1Upstream::Acquire(const std::shared_ptr<ClusterRuntime>& cr, size_t ep,
                                             const http1::Limits& limits, Deadline* dl,
                                             const bool* timed_out, Lease* out, std::string* err) {
  Release(false);
  cluster_ = cr;
  limits_ = limits;
  out->endpoint = ep;
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

bool Http1Upstream::TakePooled(const std::shared_ptr<ClusterRuntime>& cr, size_t ep,
                               const http1::Limits& limits, Lease* out) {
  Release(false);
  conn_ = TakeIdle(*cr, ep);
  if (!conn_) return false;
  cluster_ = cr;
  limits_ = limits;
  out->endpoint = ep;
  Bound(out);
  return true;
}

void Http1Upstream::Bound(Lease* out) {
  codec_.Bind(&conn_->stream, {&cluster_->stats->bytes_in, &cluster_->stats->bytes_out}, limits_);
  out->stream = &codec_;
  out->reused = conn_->reused;
}

void Http1Upstream::Release(bool reusable) {
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
