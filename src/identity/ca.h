// The mesh's certificate authority (OpenSSL 3): an ECDSA P-256 root, and
// short-lived workload certificates issued from CSRs, each naming its
// workload with a SPIFFE ID as its only URI SAN:
//   spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE
// The workload's private key is made where the workload runs and never
// comes here: the CA sees CSRs only. (The first piece of the identity work;
// the server, agents and proxies use it next.)
#pragma once

#include <openssl/x509.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace weft::identity {

// The name in a server's config-stream certificate that clients check
// (servers run with --grpc-tls; the certificate comes from the mesh CA).
inline constexpr const char* kServerTlsName = "server.weft";

struct KeyPair {
  std::string key_pem;   // PKCS#8 private key
  std::string cert_pem;  // the certificate
};

// A new ECDSA P-256 private key, PEM.
Result<std::string> NewKey();

// A self-signed root for `trust_domain`, valid `days`.
Result<KeyPair> NewRoot(const std::string& trust_domain, int days = 3650);

// A CSR for `spiffe_id` signed with `key_pem` (what an agent sends).
Result<std::string> NewCsr(const std::string& key_pem, const std::string& spiffe_id);

// "spiffe://TD/ns/NS/sa/SVC", or InvalidArgument naming the bad part.
Result<std::string> SpiffeId(const std::string& trust_domain, const std::string& ns,
                             const std::string& service);

class Authority {
 public:
  // From a root (or intermediate) certificate and its key, PEM.
  static Result<std::unique_ptr<Authority>> Load(const std::string& cert_pem,
                                                 const std::string& key_pem,
                                                 const std::string& trust_domain);
  ~Authority();

  // Issues a certificate for `spiffe_id` from `csr_pem`, valid `ttl_s`
  // seconds (backdated a minute for clock skew). The CSR must be signed by
  // its own key; its subject and extensions are ignored: the CA decides
  // what the certificate says. InvalidArgument when the CSR is bad or the
  // ID is outside this trust domain.
  // `dns_names` adds DNS SANs (a server's certificate: clients check the
  // name they dialled).
  Result<std::string> Sign(const std::string& csr_pem, const std::string& spiffe_id, int64_t ttl_s,
                           const std::vector<std::string>& dns_names = {}) const;

  const std::string& cert_pem() const { return cert_pem_; }
  const std::string& trust_domain() const { return trust_domain_; }

 private:
  Authority() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string cert_pem_;
  std::string trust_domain_;
};

// "aa:bb:..." SHA-256 of the certificate's DER: a stable id for roots.
Result<std::string> Fingerprint(const std::string& cert_pem);

// The one URI SAN of a certificate ("" when it has none or several). Borrows
// `cert`.
std::string UriSan(X509* cert);
// The trust domain of "spiffe://TD/..." ("" when it is not a SPIFFE ID): a
// view into `spiffe_id`, valid as long as its bytes are.
std::string_view TrustDomainOf(std::string_view spiffe_id);

// The end of a certificate's validity, in seconds since the epoch.
Result<int64_t> NotAfterUnix(const std::string& cert_pem);

// Checks that `cert_pem` chains to one of the roots in `root_pem` (one or
// more PEM certificates) and is valid now; returns its SPIFFE ID.
Result<std::string> VerifyWorkload(const std::string& cert_pem, const std::string& root_pem);

// A node's identity: "spiffe://TD/ns/weft/node/NAME" (an agent's
// certificate, which authenticates its calls to the servers). Node names
// with characters a SPIFFE path may not hold are refused.
Result<std::string> NodeSpiffeId(const std::string& trust_domain, const std::string& node);
// The node a node identity in `trust_domain` names ("" for anything else).
std::string NodeOf(std::string_view spiffe_id, std::string_view trust_domain);
// Checks an operator's root (or intermediate) before it signs anything: a
// CA certificate (basicConstraints CA:TRUE), allowed to sign certificates
// when it has a keyUsage, valid now and for at least another day, with an
// ECDSA key of 256 bits or more or an RSA key of 2048 or more.
// InvalidArgument says which.
Status ValidateRoot(const std::string& cert_pem);
// A certificate's serial number, lower-case hex ("" when unreadable).
std::string SerialHex(const std::string& cert_pem);

}  // namespace weft::identity
