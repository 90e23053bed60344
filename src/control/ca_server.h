// The certificate authority as a server runs it: the stored CA state
// (`ca/root`, see ca_state.h) followed on every replica, the root that signs
// now, the trust bundle handed to the config stream and served at
// /v1/connect/ca/roots, workload certificates from CSRs (the Sign RPC), and
// root rotation (PUT /v1/connect/ca/rotate, `weft ca rotate`).
#pragma once

#include <asio.hpp>
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
};

}  // namespace weft::control
