#include "control/join_token.h"

#include <gtest/gtest.h>

#include "control/acl.h"
#include "control/store/memory_store.h"

namespace weft::control::join {
namespace {

TEST(JoinToken, StoredAsAHashCheckedForExpiryAndRevocable) {
  store::MemoryStore st;
  Token made;
  auto secret = Create(&st, 3600, "ci", "", &made);
  ASSERT_TRUE(secret.ok()) << secret.status().message();
  // Only the hash is stored, as the key; the secret appears nowhere.
  auto all = st.Range(kTokenPrefix);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->kvs.size(), 1u);
  EXPECT_EQ(all->kvs[0].key, std::string(kTokenPrefix) + acl::HashSecret(secret.value()));
  EXPECT_EQ(all->kvs[0].value.find(secret.value()), std::string::npos);
  const int64_t now = made.create_time;
  EXPECT_TRUE(Check(&st, secret.value(), now).ok());
  EXPECT_FALSE(Check(&st, "wrong", now).ok());
  EXPECT_FALSE(Check(&st, "", now).ok());
  auto late = Check(&st, secret.value(), now + 3600);
  ASSERT_FALSE(late.ok());
  EXPECT_NE(late.message().find("expired"), std::string::npos);
  // 0: never expires.
  auto forever = Create(&st, 0, "forever");
  ASSERT_TRUE(forever.ok());
  EXPECT_TRUE(Check(&st, forever.value(), now + 10LL * 365 * 86400).ok());
  // Revoked by an ID prefix of at least 8 digits.
  EXPECT_FALSE(Revoke(&st, made.id.substr(0, 4)).ok());
  ASSERT_TRUE(Revoke(&st, made.id.substr(0, 8)).ok());
  EXPECT_FALSE(Check(&st, secret.value(), now).ok());
  EXPECT_EQ(Revoke(&st, made.id).code(), StatusCode::kNotFound);
}

TEST(JoinToken, LimitsAreEnforced) {
  store::MemoryStore st;
  EXPECT_FALSE(Create(&st, -1, "").ok());
  EXPECT_FALSE(Create(&st, kMaxTtlS + 1, "").ok());
  EXPECT_FALSE(Create(&st, 60, std::string(1025, 'd')).ok());
  for (size_t i = 0; i < kMaxTokens; ++i) ASSERT_TRUE(Create(&st, 60, "").ok()) << i;
  auto over = Create(&st, 60, "");
  ASSERT_FALSE(over.ok());
  EXPECT_NE(over.status().message().find("at most 1000 join tokens"), std::string::npos);
}

TEST(JoinToken, ThePlaintextTokenOfEarlierVersionsMovesToAHashedRecord) {
  store::MemoryStore st;
  ASSERT_TRUE(st.Put(kLegacyKey, "0123456789abcdef0123456789abcdef").ok());
  auto moved = MigrateLegacy(&st, 3600);
  ASSERT_TRUE(moved.ok()) << moved.status().message();
  EXPECT_EQ(moved.value(), "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(st.Get(kLegacyKey).status().code(), StatusCode::kNotFound);
  auto list = List(&st);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_TRUE(Check(&st, moved.value(), list.value()[0].create_time).ok());
  auto again = MigrateLegacy(&st, 3600);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.value(), "");
}

}  // namespace
}  // namespace weft::control::join
