// Mesh TLS for the proxy: the workload identity the control plane hands
// over (certificate chain, private key, trust bundle) and, per worker, the
// OpenSSL contexts built from it once (algorithms fetched once, contexts not
// shared between threads). Proxy-to-proxy connections are TLS 1.3 with a
// certificate on both sides; peers are named by the SPIFFE ID in their
// certificate's URI SAN.
#pragma once

#include <openssl/ssl.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace weft::proxy {

// What a proxy is and whom it trusts. Immutable once built.
struct MeshIdentity {
  std::string spiffe_id;  // ours
  std::string trust_domain;
  std::string cert_chain_pem;  // leaf first
  std::string key_pem;
  std::vector<std::string> roots_pem;  // the trust bundle
  int64_t not_after_unix = 0;
  std::string version;  // for logs: which certificate and bundle
};

// Session-ticket keys shared by every worker of one proxy process, so a
// ticket issued on one worker resumes on any other.
struct TicketKeys {
  std::array<unsigned char, 80> bytes{};
  static TicketKeys Random();
};

// The ALPN names mesh connections carry.
inline constexpr std::string_view kAlpnHttp1 = "http/1.1";
inline constexpr std::string_view kAlpnHttp2 = "h2";
inline constexpr std::string_view kAlpnTcp = "weft-tcp";

// One worker's server and client contexts for one identity: that worker's
// thread only.
class TlsContexts {
 public:
  // nullptr with *error set when the material does not load.
  static std::shared_ptr<TlsContexts> Build(const MeshIdentity& id, const TicketKeys& keys,
                                            std::string* error);
  ~TlsContexts();
  TlsContexts(const TlsContexts&) = delete;
  TlsContexts& operator=(const TlsContexts&) = delete;

  // NewServer and NewClient return an SSL the caller owns (nullptr on
  // failure). A client SSL stores new sessions into this object whenever a
  // ticket arrives, also after the handshake: keep the contexts alive as
  // long as the SSL (UpstreamConn::tls does).

  // A server-side SSL for an inbound mesh connection whose listener speaks
  // `alpn` (the name is selected when the client offers it). An HTTP
  // listener (kAlpnHttp1) also speaks HTTP/2 and prefers it when offered.
  SSL* NewServer(std::string_view alpn);
  // A client-side SSL towards `endpoint_key`, offering `alpn`, resuming
  // the last session with that endpoint when there is one.
  SSL* NewClient(const std::string& endpoint_key, std::string_view alpn);

  // Drops the session kept for `endpoint_key` (a resumption that failed:
  // the next connection does a full handshake).
  void ForgetSession(const std::string& endpoint_key);

  const MeshIdentity& identity() const { return id_; }

 private:
  TlsContexts() = default;
  MeshIdentity id_;
  std::shared_ptr<OSSL_LIB_CTX> lib_;  // this thread's; outlives the SSL_CTXs below
  SSL_CTX* server_ = nullptr;
  SSL_CTX* client_ = nullptr;
  // Client sessions by endpoint (this worker only), for resumption.
  std::unordered_map<std::string, SSL_SESSION*> sessions_;
  friend int OnNewClientSession(SSL* ssl, SSL_SESSION* sess);
};

// The SPIFFE ID in the peer's verified certificate; "" when there is none.
std::string PeerSpiffeId(SSL* ssl);
// The trust domain of a SPIFFE ID ("" when it is not one): a view into
// `spiffe_id`.
std::string_view TrustDomainOf(std::string_view spiffe_id);
// The ALPN name the handshake settled on ("" when none): a view into the
// SSL's memory, valid while `ssl` lives.
std::string_view NegotiatedAlpn(SSL* ssl);

}  // namespace weft::proxy
