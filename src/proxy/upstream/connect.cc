#include "proxy/upstream/connect.h"

#include <fmt/format.h>
#include <openssl/ssl.h>

#include "base/time.h"
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

}  // namespace weft::proxy::upstream
