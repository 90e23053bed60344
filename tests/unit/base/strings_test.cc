#include "base/strings.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace weft {
namespace {

TEST(Base64, RoundTripsAndRejectsGarbage) {
  for (const std::string& s :
       std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\x10", 3)}) {
    auto d = Base64Decode(Base64Encode(s));
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(*d, s);
  }
  EXPECT_EQ(Base64Encode("weft"), "d2VmdA==");
  EXPECT_FALSE(Base64Decode("abc").has_value());
  EXPECT_FALSE(Base64Decode("ab!d").has_value());
  EXPECT_FALSE(Base64Decode("a=bc").has_value());
}

TEST(Strings, HasUpperFindsEveryUpperCaseLetterAndNothingElse) {
  // Every byte value, alone and at each position of words of 8 and past them.
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    const bool upper = b >= 'A' && b <= 'Z';
    for (size_t len : {1u, 7u, 8u, 9u, 16u, 21u}) {
      for (size_t at = 0; at < len; ++at) {
        std::string s(len, 'a');
        s[at] = c;
        EXPECT_EQ(HasUpper(s), upper) << "byte " << b << " at " << at << " of " << len;
      }
    }
  }
  EXPECT_FALSE(HasUpper(""));
  EXPECT_FALSE(HasUpper("x-forwarded-for"));
  EXPECT_TRUE(HasUpper("x-forwarded-For"));
  EXPECT_FALSE(HasUpper("@[`{\x80\xc1\xda\xff"));  // around 'A'..'Z', and high bytes
}

}  // namespace
}  // namespace weft

namespace weft {
namespace {

TEST(Strings, JsonNestingDepthCountsOutsideStrings) {
  EXPECT_EQ(JsonNestingDepth(""), 0u);
  EXPECT_EQ(JsonNestingDepth("1"), 0u);
  EXPECT_EQ(JsonNestingDepth(R"({"a": [1, {"b": []}]})"), 4u);
  EXPECT_EQ(JsonNestingDepth(R"({"a": "[[[[{{{"})"), 1u);
  EXPECT_EQ(JsonNestingDepth(R"({"a": "\"[[[["})"), 1u);  // an escaped quote stays in the string
  EXPECT_EQ(JsonNestingDepth(std::string(400000, '[') + std::string(400000, ']')), 400000u);
  EXPECT_EQ(JsonNestingDepth("]]]][["), 2u);  // stray closers do not go below zero
}

}  // namespace
}  // namespace weft
