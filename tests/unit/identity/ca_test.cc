#include "identity/ca.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

namespace weft::identity {
namespace {

std::string Shell(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

class CaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto root = NewRoot("weft.local");
    ASSERT_TRUE(root.ok()) << root.status().message();
    root_ = root.value();
    auto ca = Authority::Load(root_.cert_pem, root_.key_pem, "weft.local");
    ASSERT_TRUE(ca.ok()) << ca.status().message();
    ca_ = std::move(ca).value();
  }
  KeyPair root_;
  std::unique_ptr<Authority> ca_;
};

TEST_F(CaTest, IssuesSpiffeCertificatesFromCsrs) {
  auto id = SpiffeId("weft.local", "default", "reviews");
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(id.value(), "spiffe://weft.local/ns/default/sa/reviews");
  auto key = NewKey();
  ASSERT_TRUE(key.ok());
  auto csr = NewCsr(key.value(), id.value());
  ASSERT_TRUE(csr.ok()) << csr.status().message();
  auto cert = ca_->Sign(csr.value(), id.value(), 3600);
  ASSERT_TRUE(cert.ok()) << cert.status().message();
  auto verified = VerifyWorkload(cert.value(), root_.cert_pem);
  ASSERT_TRUE(verified.ok()) << verified.status().message();
  EXPECT_EQ(verified.value(), id.value());

  // What openssl itself reads in it: the URI SAN, a one-hour lifetime,
  // client and server auth, not a CA.
  ASSERT_EQ(access("/usr/bin/openssl", X_OK), 0)
      << "the openssl tool is required: run scripts/deps.sh";
  const std::string path = testing::TempDir() + "/leaf.pem";
  std::ofstream(path) << cert.value();
  const std::string text = Shell("openssl x509 -noout -text -in " + path + " 2>&1");
  EXPECT_NE(text.find("URI:spiffe://weft.local/ns/default/sa/reviews"), std::string::npos) << text;
  EXPECT_NE(text.find("CA:FALSE"), std::string::npos);
  EXPECT_NE(text.find("TLS Web Client Authentication"), std::string::npos);
  EXPECT_NE(text.find("ASN1 OID: prime256v1"), std::string::npos);
  const std::string dates = Shell("openssl x509 -noout -startdate -enddate -in " + path);
  EXPECT_NE(dates.find("notAfter"), std::string::npos);
  const std::string root_path = testing::TempDir() + "/root.pem";
  std::ofstream(root_path) << root_.cert_pem;
  EXPECT_NE(Shell("openssl verify -CAfile " + root_path + " " + path + " 2>&1").find(": OK"),
            std::string::npos);
}

TEST_F(CaTest, RefusesWhatItShouldNotSign) {
  auto key = NewKey();
  auto csr = NewCsr(key.value(), "spiffe://weft.local/ns/default/sa/a");
  // Outside the trust domain.
  EXPECT_EQ(ca_->Sign(csr.value(), "spiffe://evil.example/ns/default/sa/a", 3600).status().code(),
            StatusCode::kInvalidArgument);
  // Lifetimes out of range.
  EXPECT_FALSE(ca_->Sign(csr.value(), "spiffe://weft.local/ns/default/sa/a", 10).ok());
  // Not a CSR, or a tampered one.
  EXPECT_FALSE(ca_->Sign("garbage", "spiffe://weft.local/ns/default/sa/a", 3600).ok());
  std::string bad = csr.value();
  bad[bad.size() / 2] = bad[bad.size() / 2] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(ca_->Sign(bad, "spiffe://weft.local/ns/default/sa/a", 3600).ok());
  // Bad names.
  EXPECT_FALSE(SpiffeId("weft.local", "a/b", "x").ok());
  // A certificate from another CA does not verify against this root.
  auto other = NewRoot("weft.local");
  auto other_ca = Authority::Load(other->cert_pem, other->key_pem, "weft.local");
  auto foreign = other_ca.value()->Sign(csr.value(), "spiffe://weft.local/ns/default/sa/a", 3600);
  ASSERT_TRUE(foreign.ok());
  EXPECT_FALSE(VerifyWorkload(foreign.value(), root_.cert_pem).ok());
  // A key that does not match the certificate.
  EXPECT_FALSE(Authority::Load(root_.cert_pem, key.value(), "weft.local").ok());
}

TEST_F(CaTest, ServerCertificatesCarryTheirDnsNames) {
  auto id = SpiffeId("weft.local", "weft", "server");
  ASSERT_TRUE(id.ok());
  auto key = NewKey();
  auto csr = NewCsr(key.value(), id.value());
  ASSERT_TRUE(csr.ok());
  auto cert = ca_->Sign(csr.value(), id.value(), 3600, {"server.weft"});
  ASSERT_TRUE(cert.ok()) << cert.status().message();
  // Still one URI SAN: it verifies as a workload of this trust domain.
  auto verified = VerifyWorkload(cert.value(), root_.cert_pem);
  ASSERT_TRUE(verified.ok()) << verified.status().message();
  const std::string path = testing::TempDir() + "/server.pem";
  std::ofstream(path) << cert.value();
  const std::string text = Shell("openssl x509 -noout -ext subjectAltName -in " + path + " 2>&1");
  EXPECT_NE(text.find("DNS:server.weft"), std::string::npos) << text;
  for (const char* bad : {"Server.Weft", "a b", "x,DNS:evil.example", ""}) {
    auto r = ca_->Sign(csr.value(), id.value(), 3600, {bad});
    EXPECT_FALSE(r.ok()) << bad;
  }
}

}  // namespace
}  // namespace weft::identity
