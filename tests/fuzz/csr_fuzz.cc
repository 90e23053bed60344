// CSRs arrive from agents and proxies over the Sign RPC: whatever the bytes,
// the CA answers with a certificate or an error, never a crash, and a
// certificate it issues names only the identity the CA chose (never what
// the CSR asked for).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "identity/ca.h"

namespace {

const weft::identity::Authority& Ca() {
  static const weft::identity::Authority* ca = [] {
    auto root = weft::identity::NewRoot("weft.local").value();
    return weft::identity::Authority::Load(root.cert_pem, root.key_pem, "weft.local")
        .value()
        .release();
  }();
  return *ca;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string csr(reinterpret_cast<const char*>(data), size);
  const std::string id = "spiffe://weft.local/ns/default/sa/fuzz";
  auto cert = Ca().Sign(csr, id, 3600);
  if (cert.ok()) {
    auto named = weft::identity::VerifyWorkload(cert.value(), Ca().cert_pem());
    if (!named.ok() || named.value() != id) std::abort();
  }
  return 0;
}
