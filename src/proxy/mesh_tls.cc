// Mesh TLS on both ends of a proxy connection: the inbound handshake (with
// strict/permissive handling) and the outbound one towards a sidecar, with
// the peer's SPIFFE ID checked against the destination service.
#include <openssl/ssl.h>

#include "base/log.h"
#include "base/time.h"
#include "proxy/worker.h"

namespace weft::proxy {

asio::awaitable<bool> AcceptMeshTls(Worker* w, const ListenerConfig& lc, ListenerStats& ls,
                                    io::Stream& s, Deadline* dl, std::string* peer) {
  peer->clear();
  if (lc.mtls == MeshTlsMode::kOff) co_return true;
  dl->deadline_ms = dl->Now() + lc.header_read_timeout_ms;
  if (lc.mtls == MeshTlsMode::kPermissive) {
    // A TLS connection opens with a handshake record (content type 22);
    // anything else is a plaintext client, let through in permissive mode.
    unsigned char first = 0;
    auto [ec, n] = co_await s.socket().async_receive(asio::buffer(&first, 1),
                                                     tcp::socket::message_peek, kNoThrow);
    if (ec || n == 0) {
      dl->deadline_ms = Deadline::kNever;
      co_return false;
    }
    if (first != 22) {
      dl->deadline_ms = Deadline::kNever;
      ls.plaintext.Inc();
      co_return true;
    }
  }
  // A copy, not a reference: a new identity may replace the worker's
  // contexts while this handshake waits.
  // NOLINTNEXTLINE(performance-unnecessary-copy-initialization)
  const std::shared_ptr<TlsContexts> tls = w->tls();
  if (!tls) {
    dl->deadline_ms = Deadline::kNever;
    ls.Rejected(Reject::kNoIdentity);
    LOG_WARN("listener {}: mesh TLS connection refused: no workload certificate yet", lc.name);
    co_return false;
  }
  SSL* ssl = tls->NewServer(lc.protocol == Protocol::kTcp ? kAlpnTcp : kAlpnHttp1);
  if (!ssl || !s.AttachTls(ssl)) {
    dl->deadline_ms = Deadline::kNever;
    ls.Rejected(Reject::kTlsHandshake);
    co_return false;
  }
  const asio::error_code ec = co_await s.Handshake();
  dl->deadline_ms = Deadline::kNever;
  if (ec) {
    ls.Rejected(Reject::kTlsHandshake);
    asio::error_code ignored;
    auto remote = s.socket().remote_endpoint(ignored);
    LOG_WARN("listener {}: mesh TLS handshake from {}:{} refused: {}", lc.name,
             remote.address().to_string(), remote.port(), ec.message());
    co_return false;
  }
  ls.tls_handshakes.Inc();
  if (SSL_session_reused(s.ssl())) ls.tls_resumed.Inc();
  *peer = PeerSpiffeId(s.ssl());
  if (peer->empty() || TrustDomainOf(*peer) != tls->identity().trust_domain) {
    ls.Rejected(Reject::kPeerIdentity);
    LOG_WARN(
        "listener {}: mesh TLS peer refused: its certificate names no identity of trust "
        "domain {}",
        lc.name, tls->identity().trust_domain);
    peer->clear();
    co_return false;
  }
  co_return true;
}

asio::awaitable<bool> ConnectMeshTls(Worker* w, const ClusterConfig& cc, size_t ep,
                                     std::string_view alpn, UpstreamConn& conn, Deadline* dl,
                                     std::string* err) {
  const SocketAddress& addr = cc.endpoints[ep].address;
  if (!w->tls()) {
    *err = "no workload certificate yet for mesh TLS to " + addr.text;
    co_return false;
  }
  // The connection keeps the contexts it was made with (the worker may get
  // new ones while the handshake waits).
  conn.tls = w->tls();
  TlsContexts* tls = conn.tls.get();
  const std::string session_key = addr.text + "|" + cc.peer_id;
  SSL* ssl = tls->NewClient(session_key, alpn);
  if (!ssl || !conn.stream.AttachTls(ssl)) {
    *err = "mesh TLS setup failed for " + addr.text;
    co_return false;
  }
  dl->deadline_ms = dl->Now() + cc.connect_timeout_ms;
  const asio::error_code ec = co_await conn.stream.Handshake();
  dl->deadline_ms = Deadline::kNever;
  if (ec) {
    *err = "mesh TLS handshake with " + addr.text + " failed: " + ec.message();
    tls->ForgetSession(session_key);
    co_return false;
  }
  const std::string peer = PeerSpiffeId(conn.stream.ssl());
  const bool ok =
      cc.peer_id.empty() ? TrustDomainOf(peer) == tls->identity().trust_domain : peer == cc.peer_id;
  if (!ok) {
    *err = "mesh TLS peer " + addr.text + " is " + (peer.empty() ? "unidentified" : peer) +
           ", expected " + (cc.peer_id.empty() ? "an identity of this trust domain" : cc.peer_id);
    co_return false;
  }
  co_return true;
}

}  // namespace weft::proxy
