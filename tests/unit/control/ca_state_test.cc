#include "control/ca_state.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "identity/ca.h"

namespace weft::control {
namespace {

CaRoot MakeRoot() {
  auto kp = identity::NewRoot("weft.local").value();
  CaRoot r;
  r.cert_pem = kp.cert_pem;
  r.key_pem = kp.key_pem;
  r.id = identity::Fingerprint(kp.cert_pem).value();
  return r;
}

TEST(CaState, ReadsTheFirstSingleRootShape) {
  CaRoot r = MakeRoot();
  nlohmann::json j = {{"TrustDomain", "weft.local"}, {"RootCert", r.cert_pem}, {"Key", r.key_pem}};
  auto s = CaState::Parse(j.dump());
  ASSERT_TRUE(s.ok()) << s.status().message();
  ASSERT_EQ(s->roots.size(), 1u);
  EXPECT_EQ(s->Signing(0)->id, r.id);
  // Round trip through the current shape.
  auto again = CaState::Parse(s->ToJson());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->roots[0].id, r.id);
}

TEST(CaState, RotationTrustsBothThenSwitchesSigningThenRetiresTheOld) {
  CaState s;
  s.trust_domain = "weft.local";
  CaRoot a = MakeRoot(), b = MakeRoot();
  s.roots.push_back(a);
  s.Rotate(b, /*now=*/1000, /*propagate=*/10, /*overlap=*/60);
  // Before activation: both trusted, the old one signs.
  EXPECT_EQ(s.Trusted(1005).size(), 2u);
  EXPECT_EQ(s.Signing(1005)->id, a.id);
  // Activated: the new one signs, both still trusted.
  EXPECT_EQ(s.Signing(1010)->id, b.id);
  EXPECT_EQ(s.Trusted(1069).size(), 2u);
  // Retired: only the new one.
  ASSERT_EQ(s.Trusted(1070).size(), 1u);
  EXPECT_EQ(s.Trusted(1070)[0]->id, b.id);
  EXPECT_EQ(s.Signing(1070)->id, b.id);
  // A later rotation drops the retired root from the document.
  CaRoot c = MakeRoot();
  s.Rotate(c, 2000, 5, 5);
  ASSERT_EQ(s.roots.size(), 2u);
  EXPECT_EQ(s.roots[0].id, b.id);
  EXPECT_EQ(s.roots[0].retire_at, 2010);
}

TEST(CaState, KeysAreEncryptedWithTheKekAndBoundToTheirRoot) {
  CaState s;
  s.trust_domain = "weft.local";
  CaRoot a = MakeRoot(), b = MakeRoot();
  s.roots = {a, b};
  const std::string kek(64, '7');
  const std::string doc = s.ToJson(kek);
  // The private keys are not in the document in any readable form.
  EXPECT_EQ(doc.find("PRIVATE KEY"), std::string::npos);
  EXPECT_EQ(doc.find("\"Key\""), std::string::npos);
  auto back = CaState::Parse(doc, kek);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_FALSE(back->plaintext_keys);
  EXPECT_EQ(back->roots[0].key_pem, a.key_pem);
  EXPECT_EQ(back->roots[1].key_pem, b.key_pem);
  // Without the KEK, or with another one: refused, saying why.
  auto none = CaState::Parse(doc);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("--ca-kek-file"), std::string::npos);
  auto wrong = CaState::Parse(doc, std::string(64, '8'));
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("wrong key-encryption key"), std::string::npos);
  // A key moved to another root's entry does not decrypt (the root's
  // fingerprint is bound in).
  auto j = nlohmann::json::parse(doc);
  std::swap(j["Roots"][0]["KeyEnc"], j["Roots"][1]["KeyEnc"]);
  EXPECT_FALSE(CaState::Parse(j.dump(), kek).ok());
  // A flipped byte: refused.
  std::string tampered = doc;
  tampered[tampered.find("aes256gcm:") + 40] ^= 1;
  EXPECT_FALSE(CaState::Parse(tampered, kek).ok());
  // Clear keys (earlier versions) still read, and say so.
  auto clear = CaState::Parse(s.ToJson(), kek);
  ASSERT_TRUE(clear.ok());
  EXPECT_TRUE(clear->plaintext_keys);
}

TEST(CaState, DropRetiredRemovesRootsAndTheirKeys) {
  CaState s;
  s.trust_domain = "weft.local";
  CaRoot a = MakeRoot(), b = MakeRoot();
  s.roots.push_back(a);
  s.Rotate(b, 1000, 10, 60);
  EXPECT_FALSE(s.DropRetired(1069));
  EXPECT_TRUE(s.DropRetired(1070));
  ASSERT_EQ(s.roots.size(), 1u);
  EXPECT_EQ(s.roots[0].id, b.id);
  EXPECT_EQ(s.ToJson().find(a.key_pem), std::string::npos);
}

TEST(CaState, OperatorRootsAreValidated) {
  auto kp = identity::NewRoot("weft.local").value();
  EXPECT_TRUE(identity::ValidateRoot(kp.cert_pem).ok());
  // A leaf is not a root.
  auto ca = identity::Authority::Load(kp.cert_pem, kp.key_pem, "weft.local").value();
  auto key = identity::NewKey().value();
  auto csr = identity::NewCsr(key, "spiffe://weft.local/ns/default/sa/x").value();
  auto leaf = ca->Sign(csr, "spiffe://weft.local/ns/default/sa/x", 3600).value();
  auto st = identity::ValidateRoot(leaf);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("CA:TRUE"), std::string::npos);
  EXPECT_FALSE(identity::ValidateRoot("not a certificate").ok());
}

TEST(CaState, RefusesBrokenDocuments) {
  EXPECT_FALSE(CaState::Parse("[]").ok());
  EXPECT_FALSE(CaState::Parse(R"({"TrustDomain":"x"})").ok());
  EXPECT_FALSE(CaState::Parse(R"({"TrustDomain":"x","Roots":[]})").ok());
  EXPECT_FALSE(
      CaState::Parse(R"({"TrustDomain":"x","Roots":[{"RootCert":"junk","Key":"k"}]})").ok());
}

}  // namespace
}  // namespace weft::control
