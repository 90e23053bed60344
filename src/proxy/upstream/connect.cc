#include "proxy/upstream/connect.h"

#include <fmt/format.h>
#include <openssl/ssl.h>

#include "base/time.h"
#include "http/http2/codec.h"
#include "proxy/upstream/pool.h"
#include "proxy/worker.h"

namespace weft::proxy::upstream {

asio::awaitable<bool> Connect(Worker* w, ClusterRuntime& cr, std::string_view alpn,
                              UpstreamConn& conn, Deadline* dl, const bool* timed_out,
                              std::string* err) {
  const size_t ep = conn.endpoint;
  const SocketAddress& addr = cr.cfg.endpoints[ep].address;
  dl->deadline_ms = dl->Now() + cr.cfg.connect_timeout_ms;
  const tcp::endpoint to = ToEndpoint(addr);
  asio::error_code ec = PrepareUpstream(conn.stream.socket(), to);
  if (!ec) std::tie(ec) = co_await conn.stream.socket().async_connect(to, kNoThrow);
  dl->deadline_ms = Deadline::kNever;
  if (ec) {
    *err = fmt::format("upstream connect error: {}: {}", addr.text,
                       *timed_out ? "connect timeout" : ec.message());
    cr.stats->cx_connect_fail.Inc();
    conn.stream.Close();
    co_return false;
  }
  asio::error_code ignored;
  conn.stream.socket().set_option(tcp::no_delay(true), ignored);
  if (cr.cfg.endpoints[ep].mtls) {
    if (!co_await ConnectMeshTls(w, cr.cfg, ep, alpn, conn, dl, err)) {
      if (*timed_out) *err += " (connect timeout)";
      cr.stats->tls_fail.Inc();
      cr.stats->cx_connect_fail.Inc();
      conn.stream.Close();
      co_return false;
    }
    cr.stats->tls_handshakes.Inc();
    if (SSL_session_reused(conn.stream.ssl())) cr.stats->tls_resumed.Inc();
  }
  cr.stats->cx_total.Inc();
  cr.stats->cx_active.Inc();
  cr.active[ep]++;
  co_return true;
}

asio::awaitable<bool> Ready(bool v) { co_return v; }

asio::awaitable<bool> ConnectThen(Worker* w, ClusterRuntime& cr, std::string_view alpn,
                                  UpstreamConn& conn, Deadline* dl, const bool* timed_out,
                                  std::string* err, std::function<void(bool)> then) {
  const bool ok = co_await Connect(w, cr, alpn, conn, dl, timed_out, err);
  then(ok);
  co_return ok;
}

asio::awaitable<bool> AcquireHttp2(Worker* w, std::shared_ptr<ClusterRuntime> cr, size_t ep,
                                   Deadline* dl, const bool* timed_out,
                                   std::shared_ptr<http2::ClientConnection>* out,
                                   UpstreamConn** connecting, Http2Pool** waiting, std::string* err,
                                   std::function<void(bool)> then) {
  Http2Pool& pool = cr->h2[ep];
  const SocketAddress& addr = cr->cfg.endpoints[ep].address;
  for (;;) {
    *out = FindHttp2(*cr, ep);
    if (*out) break;
    if (pool.connecting) {
      // One connect per endpoint at a time: the others wait for it.
      if (!pool.connected) {
        pool.connected = std::make_unique<asio::steady_timer>(w->io());
        pool.connected->expires_at(asio::steady_timer::time_point::max());
      }
      *waiting = &pool;
      dl->deadline_ms = dl->Now() + cr->cfg.connect_timeout_ms;
      co_await pool.connected->async_wait(kNoThrow);
      dl->deadline_ms = Deadline::kNever;
      *waiting = nullptr;
      if (*timed_out) {
        *err = fmt::format("upstream connect error: {}: connect timeout", addr.text);
        then(false);
        co_return false;
      }
      continue;
    }
    pool.connecting = true;
    auto conn = std::make_shared<UpstreamConn>(w->io());
    conn->endpoint = ep;
    *connecting = conn.get();
    const bool ok = co_await Connect(w, *cr, kAlpnHttp2, *conn, dl, timed_out, err);
    *connecting = nullptr;
    pool.connecting = false;
    if (pool.connected) pool.connected->cancel();
    if (!ok) {
      then(false);
      co_return false;
    }
    cr->active[ep]--;  // Connect counted a request: streams count themselves
    if (conn->stream.tls() && NegotiatedAlpn(conn->stream.ssl()) != kAlpnHttp2) {
      *err = fmt::format("upstream {} does not speak HTTP/2 (ALPN)", addr.text);
      cr->stats->cx_active.Dec();
      then(false);
      co_return false;
    }
    ClusterStats* stats = cr->stats;
    auto h2 = std::make_shared<http2::ClientConnection>(
        conn->stream, http2::Settings{}, http2::Counters{&stats->bytes_out, &stats->bytes_in});
    if (!h2->Init()) {
      *err = "HTTP/2 session setup failed";
      stats->cx_active.Dec();
      then(false);
      co_return false;
    }
    h2->Own(conn, [stats] { stats->cx_active.Dec(); });
    h2->Start();
    stats->cx_http2.Inc();
    pool.conns.push_back(h2);
  }
  then(true);
  co_return true;
}

}  // namespace weft::proxy::upstream
