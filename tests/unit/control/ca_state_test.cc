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

TEST(CaState, RefusesBrokenDocuments) {
  EXPECT_FALSE(CaState::Parse("[]").ok());
  EXPECT_FALSE(CaState::Parse(R"({"TrustDomain":"x"})").ok());
  EXPECT_FALSE(CaState::Parse(R"({"TrustDomain":"x","Roots":[]})").ok());
  EXPECT_FALSE(
      CaState::Parse(R"({"TrustDomain":"x","Roots":[{"RootCert":"junk","Key":"k"}]})").ok());
}

}  // namespace
}  // namespace weft::control
