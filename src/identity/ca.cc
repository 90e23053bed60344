#include "identity/ca.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cctype>
#include <ctime>

namespace weft::identity {
namespace {

// Owners for OpenSSL objects.
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct CertFree {
  void operator()(X509* c) const { X509_free(c); }
};
struct ReqFree {
  void operator()(X509_REQ* r) const { X509_REQ_free(r); }
};
struct StoreFree {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* s) const { X509_STORE_CTX_free(s); }
};
using Bio = std::unique_ptr<BIO, BioFree>;
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;
using Cert = std::unique_ptr<X509, CertFree>;
using Req = std::unique_ptr<X509_REQ, ReqFree>;

std::string OpenSslError(const std::string& what) {
  unsigned long e = ERR_get_error();
  char buf[256] = {};
  if (e) ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return what + (e ? std::string(": ") + buf : "");
}

Bio MemIn(const std::string& s) {
  return Bio(BIO_new_mem_buf(s.data(), static_cast<int>(s.size())));
}

std::string MemOut(BIO* b) {
  char* p = nullptr;
  long n = BIO_get_mem_data(b, &p);
  return std::string(p, static_cast<size_t>(n));
}

Key ReadKey(const std::string& pem) {
  Bio b = MemIn(pem);
  return Key(PEM_read_bio_PrivateKey(b.get(), nullptr, nullptr, nullptr));
}

Cert ReadCert(const std::string& pem) {
  Bio b = MemIn(pem);
  return Cert(PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr));
}

std::string CertPem(X509* c) {
  Bio b(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(b.get(), c);
  return MemOut(b.get());
}

bool AddExt(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext) return false;
  const bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

bool RandomSerial(X509* cert) {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) return false;
  bytes[0] &= 0x7f;  // positive
  BIGNUM* bn = BN_bin2bn(bytes, sizeof(bytes), nullptr);
  const bool ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != nullptr;
  BN_free(bn);
  return ok;
}

}  // namespace

std::string UriSan(X509* cert) {
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (!names) return "";
  std::string uri;
  int count = 0;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
    if (n->type != GEN_URI) continue;
    ++count;
    const ASN1_IA5STRING* s = n->d.uniformResourceIdentifier;
    uri.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
               static_cast<size_t>(ASN1_STRING_length(s)));
  }
  GENERAL_NAMES_free(names);
  return count == 1 ? uri : "";
}

std::string_view TrustDomainOf(std::string_view spiffe_id) {
  constexpr std::string_view kScheme = "spiffe://";
  if (spiffe_id.substr(0, kScheme.size()) != kScheme) return {};
  std::string_view rest = spiffe_id.substr(kScheme.size());
  return rest.substr(0, rest.find('/'));
}

struct Authority::Impl {
  Key key;
  Cert cert;
};

Authority::~Authority() = default;

Result<std::string> NewKey() {
  Key k(EVP_EC_gen("P-256"));
  if (!k) return Status(StatusCode::kInternal, OpenSslError("EC key generation"));
  Bio b(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PrivateKey(b.get(), k.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
    return Status(StatusCode::kInternal, OpenSslError("writing the key"));
  return MemOut(b.get());
}

Result<std::string> SpiffeId(const std::string& trust_domain, const std::string& ns,
                             const std::string& service) {
  auto ok = [](const std::string& s) {
    if (s.empty() || s.size() > 253) return false;
    for (char c : s)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_'))
        return false;
    return true;
  };
  if (!ok(trust_domain))
    return Status(StatusCode::kInvalidArgument,
                  "trust domain \"" + trust_domain + "\": use letters, digits, - . _");
  if (!ok(ns))
    return Status(StatusCode::kInvalidArgument,
                  "namespace \"" + ns + "\": use letters, digits, - . _");
  if (!ok(service))
    return Status(StatusCode::kInvalidArgument,
                  "service \"" + service + "\": use letters, digits, - . _");
  return "spiffe://" + trust_domain + "/ns/" + ns + "/sa/" + service;
}

Result<KeyPair> NewRoot(const std::string& trust_domain, int days) {
  auto key_pem = NewKey();
  if (!key_pem.ok()) return key_pem.status();
  Key key = ReadKey(key_pem.value());
  Cert cert(X509_new());
  if (!key || !cert) return Status(StatusCode::kInternal, OpenSslError("root"));
  X509_set_version(cert.get(), 2);
  if (!RandomSerial(cert.get())) return Status(StatusCode::kInternal, OpenSslError("serial"));
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(days) * 86400);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>("weft"), -1, -1, 0);
  const std::string cn = "weft root CA " + trust_domain;
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  X509_set_pubkey(cert.get(), key.get());
  const std::string san = "URI:spiffe://" + trust_domain;
  if (!AddExt(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE") ||
      !AddExt(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign") ||
      !AddExt(cert.get(), cert.get(), NID_subject_key_identifier, "hash") ||
      !AddExt(cert.get(), cert.get(), NID_subject_alt_name, san.c_str()))
    return Status(StatusCode::kInternal, OpenSslError("root extensions"));
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0)
    return Status(StatusCode::kInternal, OpenSslError("signing the root"));
  return KeyPair{key_pem.value(), CertPem(cert.get())};
}

Result<std::string> NewCsr(const std::string& key_pem, const std::string& spiffe_id) {
  Key key = ReadKey(key_pem);
  if (!key)
    return Status(StatusCode::kInvalidArgument, OpenSslError("the key is not a PEM private key"));
  Req req(X509_REQ_new());
  X509_REQ_set_version(req.get(), 0);
  X509_REQ_set_pubkey(req.get(), key.get());
  STACK_OF(X509_EXTENSION)* exts = sk_X509_EXTENSION_new_null();
  const std::string san = "URI:" + spiffe_id;
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, san.c_str());
  if (!ext) {
    sk_X509_EXTENSION_free(exts);
    return Status(StatusCode::kInvalidArgument, OpenSslError("SAN " + spiffe_id));
  }
  sk_X509_EXTENSION_push(exts, ext);
  X509_REQ_add_extensions(req.get(), exts);
  sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  if (X509_REQ_sign(req.get(), key.get(), EVP_sha256()) == 0)
    return Status(StatusCode::kInternal, OpenSslError("signing the CSR"));
  Bio b(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_REQ(b.get(), req.get());
  return MemOut(b.get());
}

Result<std::unique_ptr<Authority>> Authority::Load(const std::string& cert_pem,
                                                   const std::string& key_pem,
                                                   const std::string& trust_domain) {
  std::unique_ptr<Authority> a(new Authority());
  a->impl_ = std::make_unique<Impl>();
  a->impl_->cert = ReadCert(cert_pem);
  a->impl_->key = ReadKey(key_pem);
  if (!a->impl_->cert) return Status(StatusCode::kInvalidArgument, OpenSslError("CA certificate"));
  if (!a->impl_->key) return Status(StatusCode::kInvalidArgument, OpenSslError("CA key"));
  if (X509_check_private_key(a->impl_->cert.get(), a->impl_->key.get()) != 1)
    return Status(StatusCode::kInvalidArgument, "the CA key does not match the CA certificate");
  a->cert_pem_ = cert_pem;
  a->trust_domain_ = trust_domain;
  return a;
}

Result<std::string> Authority::Sign(const std::string& csr_pem, const std::string& spiffe_id,
                                    int64_t ttl_s,
                                    const std::vector<std::string>& dns_names) const {
  for (const auto& d : dns_names) {
    if (d.empty() || d.size() > 253 ||
        d.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789.-") != std::string::npos)
      return Status(StatusCode::kInvalidArgument, "DNS name \"" + d + "\": use [a-z0-9.-]");
  }
  if (spiffe_id.rfind("spiffe://" + trust_domain_ + "/", 0) != 0)
    return Status(StatusCode::kInvalidArgument,
                  "\"" + spiffe_id + "\" is not in trust domain " + trust_domain_);
  if (ttl_s < 60 || ttl_s > 366LL * 86400)
    return Status(StatusCode::kInvalidArgument, "ttl: between 1 minute and a year");
  if (csr_pem.size() > 16384) return Status(StatusCode::kInvalidArgument, "CSR over 16 KiB");
  Bio b = MemIn(csr_pem);
  Req req(PEM_read_bio_X509_REQ(b.get(), nullptr, nullptr, nullptr));
  if (!req) return Status(StatusCode::kInvalidArgument, OpenSslError("the CSR is not PEM"));
  Key pub(X509_REQ_get_pubkey(req.get()));
  if (!pub || X509_REQ_verify(req.get(), pub.get()) != 1)
    return Status(StatusCode::kInvalidArgument,
                  OpenSslError("the CSR's signature does not verify"));
  if (EVP_PKEY_get_base_id(pub.get()) != EVP_PKEY_EC || EVP_PKEY_get_bits(pub.get()) < 256)
    return Status(StatusCode::kInvalidArgument, "the CSR's key must be ECDSA P-256 or stronger");
  Cert cert(X509_new());
  X509_set_version(cert.get(), 2);
  if (!RandomSerial(cert.get())) return Status(StatusCode::kInternal, OpenSslError("serial"));
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(ttl_s));
  X509_set_issuer_name(cert.get(), X509_get_subject_name(impl_->cert.get()));
  X509_set_pubkey(cert.get(), pub.get());
  std::string san = "critical,URI:" + spiffe_id;
  for (const auto& d : dns_names) san += ",DNS:" + d;
  if (!AddExt(cert.get(), impl_->cert.get(), NID_basic_constraints, "critical,CA:FALSE") ||
      !AddExt(cert.get(), impl_->cert.get(), NID_key_usage,
              "critical,digitalSignature,keyAgreement") ||
      !AddExt(cert.get(), impl_->cert.get(), NID_ext_key_usage, "serverAuth,clientAuth") ||
      !AddExt(cert.get(), impl_->cert.get(), NID_authority_key_identifier, "keyid,issuer") ||
      !AddExt(cert.get(), impl_->cert.get(), NID_subject_alt_name, san.c_str()))
    return Status(StatusCode::kInternal, OpenSslError("certificate extensions"));
  if (X509_sign(cert.get(), impl_->key.get(), EVP_sha256()) == 0)
    return Status(StatusCode::kInternal, OpenSslError("signing the certificate"));
  return CertPem(cert.get());
}

Result<std::string> VerifyWorkload(const std::string& cert_pem, const std::string& root_pem) {
  Cert cert = ReadCert(cert_pem);
  if (!cert) return Status(StatusCode::kInvalidArgument, OpenSslError("certificate PEM"));
  std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
  // Every certificate of the bundle is a root (during a rotation, two).
  Bio b = MemIn(root_pem);
  int roots = 0;
  while (Cert root{PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr)}) {
    X509_STORE_add_cert(store.get(), root.get());
    ++roots;
  }
  ERR_clear_error();  // the end of the bundle reads as an error
  if (roots == 0) return Status(StatusCode::kInvalidArgument, "no root certificate to verify with");
  std::unique_ptr<X509_STORE_CTX, StoreCtxFree> ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), nullptr);
  if (X509_verify_cert(ctx.get()) != 1)
    return Status(StatusCode::kInvalidArgument,
                  std::string("does not verify: ") +
                      X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get())));
  std::string id = UriSan(cert.get());
  if (id.rfind("spiffe://", 0) != 0)
    return Status(StatusCode::kInvalidArgument, "no single spiffe:// URI SAN");
  return id;
}

Result<std::string> NodeSpiffeId(const std::string& trust_domain, const std::string& node) {
  auto id = SpiffeId(trust_domain, "weft", node);
  if (!id.ok())
    return Status(
        StatusCode::kInvalidArgument,
        "node \"" + node + "\" cannot be named in a certificate: use letters, digits, - . _");
  return "spiffe://" + trust_domain + "/ns/weft/node/" + node;
}

std::string NodeOf(std::string_view spiffe_id, std::string_view trust_domain) {
  const std::string prefix = "spiffe://" + std::string(trust_domain) + "/ns/weft/node/";
  if (spiffe_id.substr(0, prefix.size()) != prefix) return "";
  std::string_view node = spiffe_id.substr(prefix.size());
  if (node.empty() || node.find('/') != std::string_view::npos) return "";
  return std::string(node);
}

Status ValidateRoot(const std::string& cert_pem) {
  Cert cert = ReadCert(cert_pem);
  if (!cert) return Status(StatusCode::kInvalidArgument, OpenSslError("the root is not PEM"));
  if (X509_check_ca(cert.get()) == 0 || !(X509_get_extension_flags(cert.get()) & EXFLAG_CA))
    return Status(StatusCode::kInvalidArgument,
                  "the root is not a CA certificate (basicConstraints CA:TRUE)");
  if ((X509_get_extension_flags(cert.get()) & EXFLAG_KUSAGE) &&
      !(X509_get_key_usage(cert.get()) & KU_KEY_CERT_SIGN))
    return Status(StatusCode::kInvalidArgument, "the root's keyUsage does not allow keyCertSign");
  if (X509_cmp_current_time(X509_get0_notBefore(cert.get())) > 0)
    return Status(StatusCode::kInvalidArgument, "the root is not valid yet (notBefore)");
  time_t day = time(nullptr) + 86400;
  if (X509_cmp_time(X509_get0_notAfter(cert.get()), &day) < 0)
    return Status(StatusCode::kInvalidArgument,
                  "the root expires within a day (or has expired): notAfter");
  EVP_PKEY* pub = X509_get0_pubkey(cert.get());
  if (!pub) return Status(StatusCode::kInvalidArgument, "the root has no readable public key");
  const int type = EVP_PKEY_get_base_id(pub), bits = EVP_PKEY_get_bits(pub);
  if (!((type == EVP_PKEY_EC && bits >= 256) || (type == EVP_PKEY_RSA && bits >= 2048)))
    return Status(StatusCode::kInvalidArgument,
                  "the root's key must be ECDSA (256 bits or more) or RSA (2048 or more), not " +
                      std::to_string(bits) + "-bit " + OBJ_nid2sn(type));
  return {};
}

std::string SerialHex(const std::string& cert_pem) {
  Cert cert = ReadCert(cert_pem);
  if (!cert) return "";
  std::unique_ptr<BIGNUM, decltype(&BN_free)> bn(
      ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert.get()), nullptr), &BN_free);
  if (!bn) return "";
  char* hex = BN_bn2hex(bn.get());
  std::string out = hex ? hex : "";
  OPENSSL_free(hex);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

Result<std::string> Fingerprint(const std::string& cert_pem) {
  Cert cert = ReadCert(cert_pem);
  if (!cert) return Status(StatusCode::kInvalidArgument, OpenSslError("certificate PEM"));
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (X509_digest(cert.get(), EVP_sha256(), md, &n) != 1)
    return Status(StatusCode::kInternal, OpenSslError("digest"));
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < n; ++i) {
    if (i) out.push_back(':');
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
  return out;
}

Result<int64_t> NotAfterUnix(const std::string& cert_pem) {
  Cert cert = ReadCert(cert_pem);
  if (!cert) return Status(StatusCode::kInvalidArgument, OpenSslError("certificate PEM"));
  struct tm t {};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert.get()), &t) != 1)
    return Status(StatusCode::kInvalidArgument, "certificate notAfter unreadable");
  return static_cast<int64_t>(timegm(&t));
}

}  // namespace weft::identity
