#include "proxy/tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <cstring>

#include "identity/ca.h"

namespace weft::proxy {

namespace {

// TLS 1.3 only; AES-128-GCM first (the fastest with AES-NI, and enough).
constexpr const char* kCipherSuites =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
constexpr size_t kMaxClientSessions = 4096;
// Resumed sessions carry the peer's identity as first verified; bound how
// long that stands without a full handshake.
constexpr long kSessionTimeoutS = 600;

int SessionIndex() {
  static const int idx = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return idx;
}
int AlpnIndex() {
  static const int idx = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return idx;
}

std::string LastError(const char* what) {
  unsigned long e = ERR_get_error();
  char buf[256] = "unknown error";
  if (e) ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return std::string(what) + ": " + buf;
}

// Loads the chain, key and bundle into `ctx`, and requires the peer to show
// a certificate that chains to the bundle.
bool Load(SSL_CTX* ctx, OSSL_LIB_CTX* lib, const MeshIdentity& id, std::string* error) {
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_ciphersuites(ctx, kCipherSuites);
  // Buffers are released between records: an idle connection holds none.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  // One read(2) for a whole record (and what follows it), not one for the
  // record header and another for its body.
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
  BIO* b = BIO_new_mem_buf(id.cert_chain_pem.data(), static_cast<int>(id.cert_chain_pem.size()));
  X509* leaf = X509_new_ex(lib, nullptr);
  bool ok = leaf && PEM_read_bio_X509(b, &leaf, nullptr, nullptr) &&
            SSL_CTX_use_certificate(ctx, leaf) == 1;
  X509_free(leaf);
  while (ok) {
    X509* extra = X509_new_ex(lib, nullptr);
    if (!extra || !PEM_read_bio_X509(b, &extra, nullptr, nullptr)) {
      X509_free(extra);
      break;
    }
    ok = SSL_CTX_add0_chain_cert(ctx, extra) == 1;
    if (!ok) X509_free(extra);
  }
  BIO_free(b);
  ERR_clear_error();  // the end of the PEM stream
  if (!ok) {
    *error = LastError("workload certificate");
    return false;
  }
  b = BIO_new_mem_buf(id.key_pem.data(), static_cast<int>(id.key_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey_ex(b, nullptr, nullptr, nullptr, lib, nullptr);
  BIO_free(b);
  ok = key && SSL_CTX_use_PrivateKey(ctx, key) == 1 && SSL_CTX_check_private_key(ctx) == 1;
  EVP_PKEY_free(key);
  if (!ok) {
    *error = LastError("workload key");
    return false;
  }
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  // Every certificate in the bundle is a trust anchor, so an operator's
  // intermediate can be the mesh CA without its parents.
  X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN);
  size_t roots = 0;
  for (const auto& pem : id.roots_pem) {
    b = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    for (;;) {
      X509* root = X509_new_ex(lib, nullptr);
      if (!root || !PEM_read_bio_X509(b, &root, nullptr, nullptr)) {
        X509_free(root);
        break;
      }
      if (X509_STORE_add_cert(store, root) == 1) ++roots;
      X509_free(root);
    }
    BIO_free(b);
    ERR_clear_error();
  }
  if (roots == 0) {
    *error = "trust bundle: no usable root certificate";
    return false;
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  SSL_CTX_set_verify_depth(ctx, 4);
  SSL_CTX_set_timeout(ctx, kSessionTimeoutS);
  return true;
}

// One OpenSSL library context per thread (each worker's own). OpenSSL 3.0
// keeps its algorithm, name and decoder caches per library context behind
// locks; with one shared context, handshakes on 8 workers spent 1.8x the
// CPU of one worker's (bench/RESULTS-mtls.md). Refcounted: contexts built
// from it may outlive the thread.
std::shared_ptr<OSSL_LIB_CTX> ThreadLibCtx() {
  thread_local std::shared_ptr<OSSL_LIB_CTX> lib(OSSL_LIB_CTX_new(), OSSL_LIB_CTX_free);
  return lib;
}

int SelectAlpn(SSL* ssl, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void*) {
  // The listener's names in its order of preference, empty-terminated.
  const auto* want = static_cast<const std::string_view*>(SSL_get_ex_data(ssl, AlpnIndex()));
  if (!want) return SSL_TLSEXT_ERR_NOACK;
  for (; !want->empty(); ++want) {
    for (unsigned int i = 0; i < inlen;) {
      const unsigned int n = in[i];
      if (i + 1 + n > inlen) break;
      if (std::string_view(reinterpret_cast<const char*>(in + i + 1), n) == *want) {
        *out = in + i + 1;
        *outlen = static_cast<unsigned char>(n);
        return SSL_TLSEXT_ERR_OK;
      }
      i += 1 + n;
    }
  }
  return SSL_TLSEXT_ERR_NOACK;
}

}  // namespace

int OnNewClientSession(SSL* ssl, SSL_SESSION* sess) {
  auto* slot = static_cast<SSL_SESSION**>(SSL_get_ex_data(ssl, SessionIndex()));
  if (!slot) return 0;
  if (*slot) SSL_SESSION_free(*slot);
  *slot = sess;
  return 1;  // we keep the reference
}

TicketKeys TicketKeys::Random() {
  TicketKeys k;
  RAND_bytes(k.bytes.data(), static_cast<int>(k.bytes.size()));
  return k;
}

std::shared_ptr<TlsContexts> TlsContexts::Build(const MeshIdentity& id, const TicketKeys& keys,
                                                std::string* error) {
  std::shared_ptr<TlsContexts> t(new TlsContexts());
  t->id_ = id;
  t->lib_ = ThreadLibCtx();
  if (!t->lib_) {
    *error = LastError("OSSL_LIB_CTX_new");
    return nullptr;
  }
  t->server_ = SSL_CTX_new_ex(t->lib_.get(), nullptr, TLS_server_method());
  t->client_ = SSL_CTX_new_ex(t->lib_.get(), nullptr, TLS_client_method());
  if (!t->server_ || !t->client_) {
    *error = LastError("SSL_CTX_new");
    return nullptr;
  }
  if (!Load(t->server_, t->lib_.get(), id, error) || !Load(t->client_, t->lib_.get(), id, error))
    return nullptr;
  // Server: stateless tickets under keys every worker shares; one ticket per
  // handshake is enough for a client that keeps one session per endpoint.
  SSL_CTX_set_tlsext_ticket_keys(t->server_, const_cast<unsigned char*>(keys.bytes.data()),
                                 keys.bytes.size());
  SSL_CTX_set_num_tickets(t->server_, 1);
  // Resuming a session whose client certificate was verified needs a
  // session context (the same on every worker).
  static const unsigned char kSidCtx[] = "weft-mesh";
  SSL_CTX_set_session_id_context(t->server_, kSidCtx, sizeof(kSidCtx) - 1);
  SSL_CTX_set_session_cache_mode(t->server_, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_alpn_select_cb(t->server_, SelectAlpn, nullptr);
  // Client: sessions kept per endpoint by this object, not by OpenSSL.
  SSL_CTX_set_session_cache_mode(t->client_,
                                 SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(t->client_, OnNewClientSession);
  return t;
}

TlsContexts::~TlsContexts() {
  for (auto& [k, s] : sessions_)
    if (s) SSL_SESSION_free(s);
  SSL_CTX_free(server_);
  SSL_CTX_free(client_);
}

SSL* TlsContexts::NewServer(std::string_view alpn) {
  SSL* ssl = SSL_new(server_);
  if (!ssl) return nullptr;
  SSL_set_accept_state(ssl);
  // The listener's protocol names live as long as the program (constants).
  static const std::string_view kHttp[] = {kAlpnHttp2, kAlpnHttp1, {}};
  static const std::string_view kTcp[] = {kAlpnTcp, {}};
  SSL_set_ex_data(ssl, AlpnIndex(), const_cast<std::string_view*>(alpn == kAlpnTcp ? kTcp : kHttp));
  return ssl;
}

SSL* TlsContexts::NewClient(const std::string& endpoint_key, std::string_view alpn) {
  SSL* ssl = SSL_new(client_);
  if (!ssl) return nullptr;
  SSL_set_connect_state(ssl);
  unsigned char wire[32];
  const size_t n = std::min<size_t>(alpn.size(), sizeof(wire) - 1);
  wire[0] = static_cast<unsigned char>(n);
  std::memcpy(wire + 1, alpn.data(), n);
  SSL_set_alpn_protos(ssl, wire, static_cast<unsigned int>(n + 1));
  // Past the bound, new endpoints go without resumption (slots are never
  // freed while connections may still point at them).
  if (sessions_.size() >= kMaxClientSessions && !sessions_.count(endpoint_key)) return ssl;
  SSL_SESSION*& slot = sessions_[endpoint_key];
  if (slot) {
    if (SSL_SESSION_is_resumable(slot)) {
      SSL_set_session(ssl, slot);
    } else {
      SSL_SESSION_free(slot);
      slot = nullptr;
    }
  }
  // Map nodes are stable: the new-session callback writes straight into it.
  SSL_set_ex_data(ssl, SessionIndex(), &slot);
  return ssl;
}

void TlsContexts::ForgetSession(const std::string& endpoint_key) {
  auto it = sessions_.find(endpoint_key);
  if (it != sessions_.end() && it->second) {
    SSL_SESSION_free(it->second);
    it->second = nullptr;
  }
}

std::string PeerSpiffeId(SSL* ssl) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (!cert || SSL_get_verify_result(ssl) != X509_V_OK) return "";
  std::string id = identity::UriSan(cert);
  return identity::TrustDomainOf(id).empty() ? "" : id;
}

std::string_view TrustDomainOf(std::string_view spiffe_id) {
  return identity::TrustDomainOf(spiffe_id);
}

std::string_view NegotiatedAlpn(SSL* ssl) {
  const unsigned char* p = nullptr;
  unsigned int n = 0;
  SSL_get0_alpn_selected(ssl, &p, &n);
  return p ? std::string_view(reinterpret_cast<const char*>(p), n) : std::string_view();
}

}  // namespace weft::proxy
