// Opaque TCP proxying: pick an endpoint, connect through upstream::Connect
// (the same connect, mesh TLS and stats as HTTP; one retry on another
// endpoint), then copy bytes both ways with half-close passed through.
#include <fmt/format.h>

#include <asio/experimental/awaitable_operators.hpp>

#include "base/log.h"
#include "base/time.h"
#include "proxy/upstream/connect.h"
#include "proxy/worker.h"

namespace weft::proxy {
namespace {

constexpr size_t kTunnelBuffer = 64 * 1024;

class TcpSession : public Deadline, public std::enable_shared_from_this<TcpSession> {
 public:
  TcpSession(Worker* w, std::shared_ptr<ListenerRuntime> l, tcp::socket s,
             std::optional<SocketAddress> direct, std::string pending)
      : w_(w),
        listener_(std::move(l)),
        down_(std::move(s)),
        up_(w->io()),
        direct_(std::move(direct)),
        pending_(std::move(pending)) {
    w_->Track(this);
    w_->ConnectionOpened();
    ++listener_->active;
  }
  ~TcpSession() {
    w_->Untrack(this);
    w_->ConnectionClosed();
    --listener_->active;
    if (ls_) ls_->cx_active.Dec();
    if (cs_ && connected_) cs_->cx_active.Dec();
    if (cluster_ && connected_) cluster_->active[up_.endpoint]--;
  }
  void OnDeadline() override {
    down_.Cancel();
    up_.stream.Cancel();
    timed_out_ = true;
  }

  asio::awaitable<void> Run() {
    auto self = shared_from_this();
    if (listener_->removed) co_return;
    std::shared_ptr<WorkerState> st = w_->state();
    const ListenerConfig& lc = st->snap->cfg->listeners[listener_->index];
    ls_ = &st->snap->listener_stats[listener_->index]->at(w_->id());
    ls_->cx_total.Inc();
    ls_->cx_active.Inc();
    std::string peer;
    if (!co_await AcceptMeshTls(w_, lc, *ls_, down_, this, &peer)) {
      down_.Close();
      co_return;
    }
    if (lc.authz) {
      // TCP: decided once, before any byte is forwarded; a denial closes.
      authz::Request ar;
      ar.peer = peer;
      ar.tcp = true;
      const authz::Decision d = lc.authz->Evaluate(ar);
      if (d.policy >= 0) {
        AuthzStats& as = st->snap->authz_stats[listener_->index][d.policy]->at(w_->id());
        (d.allow ? as.allow : as.deny).Inc();
      }
      if (!d.allow) {
        ls_->Rejected(Reject::kDenied);
        LOG_INFO("listener {}: connection from {} denied by AuthorizationPolicy {}{}", lc.name,
                 peer.empty() ? "a plaintext client" : peer,
                 d.policy >= 0 ? lc.authz->names()[d.policy] : "-",
                 d.by_default ? " (default: deny)" : "");
        down_.Close();
        co_return;
      }
    }
    if (direct_) {
      co_await PassThrough(lc);
      co_return;
    }
    cluster_ = st->clusters[lc.cluster_index];
    cs_ = cluster_->stats;
    long exclude = -1;
    if (cluster_->cfg.endpoints.empty()) {
      cs_->cx_connect_fail.Inc();
      LOG_WARN("listener {}: no healthy upstream for cluster {}", lc.name, cluster_->cfg.name);
    }
    // One retry on another endpoint when the connect fails.
    for (int attempt = 0; attempt < 2 && !connected_ && !cluster_->cfg.endpoints.empty();
         ++attempt) {
      // A TCP connection's only key is its source address.
      uint64_t hash = 0;
      const bool hashed =
          cluster_->cfg.hash.source_ip &&
          (cluster_->cfg.lb == LbPolicy::kRingHash || cluster_->cfg.lb == LbPolicy::kMaglev);
      if (hashed) {
        asio::error_code ec;
        const auto peer = down_.socket().remote_endpoint(ec);
        hash = upstream::LoadBalancer::Hash(ec ? std::string() : peer.address().to_string());
      }
      up_.endpoint = cluster_->Pick(exclude, hashed ? &hash : nullptr);
      exclude = static_cast<long>(up_.endpoint);
      timed_out_ = false;
      std::string err;
      if (!co_await upstream::Connect(w_, *cluster_, kAlpnTcp, up_, this, &timed_out_, &err)) {
        LOG_WARN("listener {}: {}", lc.name, err);
        cluster_->Outlier(up_.endpoint, upstream::Outcome::kGateway, MonoNanos());
        if (cluster_->cfg.endpoints.size() > 1 && attempt == 0) {
          cs_->rq_retry.Inc();
          continue;
        }
        break;
      }
      connected_ = true;
      // A TCP cluster has no answers to judge: a connect is its success
      // (for outlier detection; its balancer counts connections only).
      cluster_->Outlier(up_.endpoint, upstream::Outcome::kSuccess, MonoNanos());
    }
    if (connected_) {
      co_await Tunnel(down_, up_.stream, {}, {}, this, lc.idle_timeout_ms,
                      {&ls_->bytes_in, &cs_->bytes_in}, {&cs_->bytes_out, &ls_->bytes_out});
      if (timed_out_) LOG_DEBUG("listener {}: idle timeout", lc.name);
    }
    down_.Close();
    up_.stream.Close();
  }

 private:
  // To the original destination of a captured connection, outside the
  // mesh: plain TCP, counted on the capture listener only.
  asio::awaitable<void> PassThrough(const ListenerConfig& lc) {
    timed_out_ = false;
    deadline_ms = Now() + kPassThroughConnectMs;
    const tcp::endpoint to = ToEndpoint(*direct_);
    asio::error_code ec = PrepareUpstream(up_.stream.socket(), to);
    if (!ec) std::tie(ec) = co_await up_.stream.socket().async_connect(to, kNoThrow);
    deadline_ms = kNever;
    if (ec) {
      LOG_INFO("listener {}: pass-through to {}: {}", lc.name, direct_->text,
               timed_out_ ? "connect timeout" : ec.message());
      down_.Close();
      co_return;
    }
    asio::error_code ignored;
    up_.stream.socket().set_option(tcp::no_delay(true), ignored);
    co_await Tunnel(down_, up_.stream, pending_, {}, this, lc.idle_timeout_ms,
                    {&ls_->bytes_in, &uncounted_}, {&uncounted_, &ls_->bytes_out});
    down_.Close();
    up_.stream.Close();
  }

  static constexpr int64_t kPassThroughConnectMs = 5000;
  Worker* const w_;
  const std::shared_ptr<ListenerRuntime> listener_;
  io::Stream down_;
  UpstreamConn up_;
  const std::optional<SocketAddress> direct_;
  const std::string pending_;  // pass-through: the client's bytes the capture took
  Counter uncounted_;
  std::shared_ptr<ClusterRuntime> cluster_;
  ListenerStats* ls_ = nullptr;
  ClusterStats* cs_ = nullptr;
  bool connected_ = false;
  bool timed_out_ = false;
};

// One direction of a tunnel. On EOF from `from`, shuts down `to`'s sending
// side (the half-close travels on); on an error, ends both directions.
asio::awaitable<void> CopyOneWay(io::Stream& from, io::Stream& to, std::string_view pending,
                                 Deadline* dl, int64_t idle_ms, std::array<Counter*, 2> ctr) {
  auto abort_both = [&] {
    from.ShutdownBoth();
    to.ShutdownBoth();
    from.Cancel();
    to.Cancel();
  };
  if (!pending.empty()) {
    auto [wec, n] = co_await to.Write(pending.data(), pending.size());
    if (wec) {
      abort_both();
      co_return;
    }
    for (Counter* c : ctr) c->Inc(n);
  }
  std::unique_ptr<char[]> buf(new char[kTunnelBuffer]);
  for (;;) {
    auto [rec, n] = co_await from.ReadSome(buf.get(), kTunnelBuffer);
    if (rec) {
      if (rec == asio::error::eof) {
        to.ShutdownSend();
      } else {
        abort_both();
      }
      co_return;
    }
    dl->deadline_ms = dl->Now() + idle_ms;
    auto [wec, wn] = co_await to.Write(buf.get(), n);
    if (wec) {
      abort_both();
      co_return;
    }
    for (Counter* c : ctr) c->Inc(wn);
  }
}

}  // namespace

asio::awaitable<void> Tunnel(io::Stream& a, io::Stream& b, std::string_view a_pending,
                             std::string_view b_pending, Deadline* dl, int64_t idle_ms,
                             std::array<Counter*, 2> a_to_b, std::array<Counter*, 2> b_to_a) {
  using namespace asio::experimental::awaitable_operators;
  dl->deadline_ms = dl->Now() + idle_ms;
  co_await (CopyOneWay(a, b, a_pending, dl, idle_ms, a_to_b) &&
            CopyOneWay(b, a, b_pending, dl, idle_ms, b_to_a));
  dl->deadline_ms = Deadline::kNever;
}

void StartTcpSession(Worker* w, std::shared_ptr<ListenerRuntime> l, tcp::socket s,
                     std::optional<SocketAddress> direct, std::string pending) {
  auto session = std::make_shared<TcpSession>(w, std::move(l), std::move(s), std::move(direct),
                                              std::move(pending));
  asio::co_spawn(
      w->io(), [session]() -> asio::awaitable<void> { co_await session->Run(); }, asio::detached);
}

}  // namespace weft::proxy
