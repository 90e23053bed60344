#include "proxy/worker.h"

#include <unistd.h>

#include "base/log.h"
#include "base/time.h"
#include "proxy/upstream/pool.h"

namespace weft::proxy {

namespace {
constexpr int kTickMs = 100;
constexpr size_t kAccessLogFlushBytes = 64 * 1024;
}  // namespace

AccessLogSink::~AccessLogSink() {
  if (owned && fd >= 0) ::close(fd);
}

Worker::Worker(size_t id, const Clock& clock)
    : id_(id),
      clock_(&clock),
      io_(ASIO_CONCURRENCY_HINT_UNSAFE_IO),
      tick_(io_),
      rng_(0x5eed1234ULL * (id + 1) ^ static_cast<uint64_t>(MonoNanos())) {}

Worker::~Worker() { Stop(); }

void Worker::Start() {
  work_.emplace(io_.get_executor());
  ArmTick();
  thread_ = std::thread([this] { io_.run(); });
}

void Worker::Stop() {
  if (!thread_.joinable()) return;
  asio::post(io_, [this] {
    FlushAccessLogs();
    tick_.cancel();
    for (auto& [name, l] : listeners_) {
      asio::error_code ec;
      l->acceptor.close(ec);
    }
    work_.reset();
    io_.stop();
  });
  thread_.join();
}

void Worker::Apply(std::shared_ptr<const Snapshot> snap,
                   std::map<std::string, std::pair<int, bool>> fds) {
  asio::post(io_, [this, snap = std::move(snap), fds = std::move(fds)]() mutable {
    ApplyOnLoop(std::move(snap), std::move(fds));
  });
}

void Worker::ApplyOnLoop(std::shared_ptr<const Snapshot> snap,
                         std::map<std::string, std::pair<int, bool>> fds) {
  FlushAccessLogs();
  auto st = std::make_shared<WorkerState>();
  st->snap = std::move(snap);
  const Snapshot& sn = *st->snap;
  const ProxyConfig& cfg = *sn.cfg;
  // What the balancers learnt about endpoints that stay (ewma latency
  // estimates) carries over, by cluster name and endpoint address, and so
  // does each cluster's retry budget window.
  std::map<std::string_view, const ClusterRuntime*> before;
  if (state_)
    for (const auto& c : state_->clusters) before[c->cfg.name] = c.get();
  for (size_t i = 0; i < cfg.clusters.size(); ++i) {
    st->clusters.push_back(std::make_shared<ClusterRuntime>(
        cfg.clusters[i], &sn.cluster_stats[i]->at(id_), rng_.Next()));
    // Each worker takes its share of the cluster's limits, rounded up.
    const uint32_t workers = static_cast<uint32_t>(std::max(cfg.workers, 1));
    auto share = [workers](uint32_t total) { return (total + workers - 1) / workers; };
    ClusterRuntime& rt = *st->clusters.back();
    rt.lim_connections = share(cfg.clusters[i].max_connections);
    rt.lim_pending = share(cfg.clusters[i].max_pending_requests);
    rt.lim_requests = share(cfg.clusters[i].max_requests);
    rt.lim_retries = share(cfg.clusters[i].max_retries);
    rt.worker = id_;
    if (i < sn.outliers.size()) rt.outlier = sn.outliers[i];
    auto old = before.find(cfg.clusters[i].name);
    if (old != before.end()) rt.Inherit(*old->second, MonoNanos() / 1000000);
  }
  // Listeners: keep the ones whose sockets are reused, open new ones, close
  // the ones that went away. Connections already accepted are not touched.
  std::map<std::string, std::shared_ptr<ListenerRuntime>> next;
  for (size_t i = 0; i < cfg.listeners.size(); ++i) {
    const ListenerConfig& lc = cfg.listeners[i];
    const bool is_virtual = !lc.capture_of.empty();  // reached through a capture listener
    auto f = fds.find(lc.name);
    if (!is_virtual && f == fds.end()) continue;
    auto old = listeners_.find(lc.name);
    std::shared_ptr<ListenerRuntime> rt;
    if (old != listeners_.end() &&
        (is_virtual ? !old->second->acceptor.is_open() : f->second.second)) {
      rt = old->second;
      listeners_.erase(old);
    } else {
      rt = std::make_shared<ListenerRuntime>(io_);
      rt->name = lc.name;
      if (!is_virtual) {
        asio::error_code ec;
        rt->acceptor.assign(lc.address.storage.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(),
                            f->second.first, ec);
        if (ec) {
          LOG_ERROR("worker {}: listener {}: {}", id_, lc.name, ec.message());
          ::close(f->second.first);
          continue;
        }
        if (!draining_) asio::co_spawn(io_, AcceptLoop(rt), asio::detached);
      }
    }
    rt->index = i;
    next[lc.name] = rt;
  }
  for (auto& [name, rt] : listeners_) {
    rt->removed = true;
    asio::error_code ec;
    rt->acceptor.close(ec);
  }
  listeners_ = std::move(next);
  by_index_.assign(cfg.listeners.size(), nullptr);
  for (const auto& [name, rt] : listeners_) by_index_[rt->index] = rt;
  // The previous snapshot's clusters may live on in sessions that are mid
  // request or waiting on keep-alive: close their idle upstream connections
  // now and pool nothing more there.
  if (state_) {
    for (const auto& old : state_->clusters) {
      old->retired = true;
      upstream::CloseIdle(*old);
    }
  }
  state_ = std::move(st);
}

asio::awaitable<void> Worker::AcceptLoop(std::shared_ptr<ListenerRuntime> l) {
  for (;;) {
    auto [ec, sock] = co_await l->acceptor.async_accept(kNoThrow);
    if (ec) {
      if (ec == asio::error::operation_aborted || !l->acceptor.is_open() || l->removed) co_return;
      // Out of descriptors or memory: log, back off briefly, keep serving.
      LOG_WARN("worker {}: listener {}: accept: {}", id_, l->name, ec.message());
      asio::steady_timer t(io_, std::chrono::milliseconds(50));
      co_await t.async_wait(kNoThrow);
      continue;
    }
    Serve(l, std::move(sock));
    if (draining_ || l->removed) co_return;
  }
}

void Worker::Serve(const std::shared_ptr<ListenerRuntime>& l, tcp::socket sock,
                   bool empty_settings_sent) {
  if (l->removed) return;  // accepted just as a reload removed the listener: closes
  const std::shared_ptr<const Snapshot>& snap = state_->snap;
  const ListenerConfig& lc = snap->cfg->listeners[l->index];
  ListenerStats& ls = snap->listener_stats[l->index]->at(id_);
  if (l->active >= lc.max_connections) {
    ls.Rejected(Reject::kConnectionLimit);
    LOG_WARN("listener {}: connection refused: max_connections {} reached on worker {}", lc.name,
             lc.max_connections, id_);
    asio::error_code ignored;
    sock.close(ignored);
    return;
  }
  asio::error_code ignored;
  sock.set_option(tcp::no_delay(true), ignored);
  if (lc.capture) {
    StartCaptureSession(this, l, std::move(sock));
  } else if (lc.protocol == Protocol::kHttp) {
    StartHttpSession(this, l, std::move(sock), empty_settings_sent);
  } else {
    StartTcpSession(this, l, std::move(sock));
  }
}

namespace {
std::atomic<uint32_t> g_upstream_mark{0};
}  // namespace

void SetUpstreamMark(uint32_t mark) { g_upstream_mark.store(mark, std::memory_order_relaxed); }

asio::error_code PrepareUpstream(tcp::socket& s, const tcp::endpoint& to) {
  asio::error_code ec;
  if (!s.is_open()) s.open(to.protocol(), ec);
  if (ec) return ec;
  const uint32_t mark = g_upstream_mark.load(std::memory_order_relaxed);
  if (mark != 0 && ::setsockopt(s.native_handle(), SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) {
    ec.assign(errno, asio::error::get_system_category());
  }
  return ec;
}

void Worker::BeginDrain(int64_t idle_grace_ms) {
  asio::post(io_, [this, idle_grace_ms] {
    draining_ = true;
    for (auto& [name, l] : listeners_) {
      // Serve what the kernel already accepted for us: closing a listening
      // socket resets the connections still in its backlog.
      asio::error_code ec;
      l->acceptor.non_blocking(true, ec);
      for (int i = 0; i < 4096 && !ec; ++i) {
        tcp::socket s(io_);
        l->acceptor.accept(s, ec);
        if (!ec) Serve(l, std::move(s));
      }
      l->acceptor.close(ec);
    }
    // Busy connections end after their current exchange (answered with
    // "connection: close"). Idle keep-alive connections get a short grace to
    // send one last request: closing them at once would race with a client
    // that is sending right now, and fail its request.
    const int64_t until = clock_->MonoMillis() + idle_grace_ms;
    for (Deadline* d = deadlines_; d != nullptr; d = d->next_) {
      if (d->idle && d->deadline_ms > until) d->deadline_ms = until;
    }
    CheckDeadlines();
  });
}

void Worker::Track(Deadline* d) {
  d->clock_ = clock_;
  d->prev_ = nullptr;
  d->next_ = deadlines_;
  if (deadlines_) deadlines_->prev_ = d;
  deadlines_ = d;
}

void Worker::Untrack(Deadline* d) {
  if (d->prev_)
    d->prev_->next_ = d->next_;
  else
    deadlines_ = d->next_;
  if (d->next_) d->next_->prev_ = d->prev_;
  d->prev_ = d->next_ = nullptr;
}

void Worker::ArmTick() {
  tick_.expires_after(std::chrono::milliseconds(kTickMs));
  tick_.async_wait([this](const asio::error_code& ec) {
    if (ec) return;
    CheckDeadlines();
    if (state_) {
      for (const auto& c : state_->clusters) upstream::WatchIdle(c);
    }
    FlushAccessLogs();
    FlushSpans();
    // A sink the config no longer names is let go of (the proxy ends it).
    if (span_sink_ && (!state_ || state_->snap->spans != span_sink_)) span_sink_.reset();
    ArmTick();
  });
}

void Worker::CheckDeadlines() {
  const int64_t now = clock_->MonoMillis();
  for (Deadline* d = deadlines_; d != nullptr; d = d->next_) {
    if (d->deadline_ms <= now) {
      d->deadline_ms = Deadline::kNever;
      d->OnDeadline();
    }
  }
}

void Worker::AccessLog(const std::shared_ptr<AccessLogSink>& sink, const std::string& line) {
  std::string& buf = access_bufs_[sink];
  buf += line;
  if (buf.size() >= kAccessLogFlushBytes) FlushAccessLogs();
}

void Worker::FlushAccessLogs() {
  for (auto it = access_bufs_.begin(); it != access_bufs_.end();) {
    std::string& buf = it->second;
    size_t off = 0;
    while (off < buf.size()) {
      ssize_t n = ::write(it->first->fd, buf.data() + off, buf.size() - off);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        break;  // disk full or closed: drop rather than block the loop
      }
      off += static_cast<size_t>(n);
    }
    // Forget sinks that only this map still holds (gone after a reload).
    if (it->first.use_count() == 1) {
      it = access_bufs_.erase(it);
    } else {
      buf.clear();
      ++it;
    }
  }
}

TapHub* Worker::Tap(std::string_view route, std::string_view method, std::string_view path) {
  if (!tap_ || !tap_->active()) return nullptr;
  if (tap_->generation() != tap_gen_) tap_filters_ = tap_->Filters(&tap_gen_);
  path = path.substr(0, path.find('?'));
  for (const TapFilter& f : tap_filters_)
    if (f.Matches(route, method, path))
      return tap_->TakeBudget(clock_->MonoMillis()) ? tap_ : nullptr;
  return nullptr;
}

void Worker::FlushSpans() {
  if (!spans_.empty() && span_sink_) span_sink_->Submit(&spans_);
  spans_.clear();
}

void Worker::SetIdentity(std::shared_ptr<const MeshIdentity> id,
                         std::shared_ptr<const TicketKeys> keys) {
  asio::post(io_, [this, id = std::move(id), keys = std::move(keys)] {
    if (!id) {
      tls_.reset();
      return;
    }
    std::string err;
    auto t = TlsContexts::Build(*id, *keys, &err);
    if (!t) {
      LOG_ERROR("worker {}: workload identity {} not usable: {}", id_, id->spiffe_id, err);
      return;  // keep the previous one
    }
    tls_ = std::move(t);
  });
}

}  // namespace weft::proxy
