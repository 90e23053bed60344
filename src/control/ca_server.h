// The certificate authority as a server runs it: the stored CA state
// (`ca/root`, see ca_state.h) followed on every replica, the root that signs
// now, the trust bundle handed to the config stream and served at
// /v1/connect/ca/roots, workload certificates from CSRs (the Sign RPC), and
// root rotation (PUT /v1/connect/ca/rotate, `weft ca rotate`).
#pragma once

#include <asio.hpp>
#include <functional>
#include <memory>
#include <string>

#include "base/status.h"
#include "control/api.h"
#include "control/ca_state.h"
#include "control/stream_server.h"
#include "identity/ca.h"

namespace weft::control {

inline constexpr std::string_view kCaKey = "ca/root";

struct CaOptions {
  std::string trust_domain = "weft.local";
  std::string cert_pem, key_pem;  // an operator's root or intermediate ("": made once)
  int64_t cert_ttl_s = 24 * 3600;
  // Encrypts the roots' keys in the store (ca_state.h); "" keeps them in
  // the clear (tests of the state document only: servers always have one).
  std::string kek;
};

// The stored CA state, created on first start (or from the operator's
// root). Returns the document.
Result<std::string> EnsureCaState(store::Store* st, const CaOptions& opts);

// The server's own certificate (name server.weft, SPIFFE ID
// .../ns/weft/sa/server) for the config stream and the REST API's HTTPS.
inline constexpr int64_t kServerCertTtlS = 90LL * 86400;
struct ServerCert {
  std::string chain_pem;  // leaf, then the signing root
  std::string issuer_id;  // the root that signed it
  int64_t renew_at = 0;   // unix seconds: two thirds into its life
};
// Signs `key_pem`'s certificate with the root of `state` that signs now.
Result<ServerCert> IssueServerCert(const CaState& state, const std::string& key_pem, int64_t now);

// Io thread only. Keeps references to `api` and `stream`, which must outlive
// it; it registers an OnKey hook and the /v1/connect/ca/rotate route with the
// Api, and its 1 s timer runs while the io_context does (there is no Stop()):
// destroy it after the io_context stopped running.
class CaServer {
 public:
  CaServer(asio::io_context& io, Api& api, StreamServer& stream, const CaOptions& opts);

  // Installs the stored state (io thread), follows its changes, and
  // re-checks the clock every second (activation and retirement times).
  Status Start(const std::string& doc);
  // The Sign RPC (io thread): who may hold which identity, then a
  // certificate from the signing root. Every certificate issued is logged
  // with its identity, node, peer and serial.
  Status Sign(const Caller& caller, const weft::v1::SignRequest& req, weft::v1::SignResponse* resp);
  // Keeps the server's own certificate (`first`, for `key_pem`) current: a
  // new one when another root starts signing (so clients that follow the
  // bundle keep verifying it after the old root retires) or two thirds into
  // its life; `renewed` gets each new chain (io thread).
  void KeepServerCert(std::string key_pem, ServerCert first,
                      std::function<void(const ServerCert&)> renewed);
  // Writes the trust bundle (the roots' PEM) to `path`, 0644, now and each
  // time it changes: the file agents, proxies and the CLI verify servers with.
  void WriteBundleTo(std::string path);

 private:
  Status Load(const std::string& doc);
  // Removes roots past their retirement from the stored state and their
  // keys from the store's history (any replica; compare-and-swap).
  asio::awaitable<void> DropRetired();
  bool dropping_ = false;
  Status SignNode(const Caller& caller, const weft::v1::SignRequest& req,
                  weft::v1::SignResponse* resp);
  Status Issued(const Caller& caller, const std::string& node, const std::string& id,
                const std::string& cert, weft::v1::SignResponse* resp);
  void Refresh();
  void Tick();
  asio::awaitable<http::Response> Rotate(http::Request& req);

  asio::io_context& io_;
  Api& api_;
  StreamServer& stream_;
  const CaOptions opts_;
  asio::steady_timer timer_;
  CaState state_;
  std::shared_ptr<identity::Authority> signer_;
  std::string signer_id_;
  std::string bundle_ids_;  // the trusted roots' ids, to see a change
  std::string server_key_pem_;
  ServerCert server_cert_;
  std::function<void(const ServerCert&)> server_cert_renewed_;
  int64_t server_cert_retry_at_ = 0;  // after a failed renewal
  std::string bundle_path_;
  void RenewServerCert(int64_t now);
  void WriteBundle(int64_t now);
};

}  // namespace weft::control
