#include "http/path.h"

#include <gtest/gtest.h>

#include <string>

namespace weft::http {
namespace {

std::string Norm(std::string_view in) {
  std::string out;
  switch (NormalizePath(in, &out)) {
    case PathVerdict::kUnchanged:
      return std::string(in);
    case PathVerdict::kNormalized:
      return out;
    case PathVerdict::kRejected:
      return "REJECTED";
  }
  return "?";
}

TEST(NormalizePath, OneSpellingPerPath) {
  EXPECT_EQ(Norm("/admin"), "/admin");
  EXPECT_EQ(Norm("//admin"), "/admin");
  EXPECT_EQ(Norm("/%61dmin"), "/admin");
  EXPECT_EQ(Norm("/./admin"), "/admin");
  EXPECT_EQ(Norm("/x/../admin"), "/admin");
  EXPECT_EQ(Norm("/%2e%2e/admin"), "/admin");
  EXPECT_EQ(Norm("/../../admin"), "/admin");  // never above the root
  EXPECT_EQ(Norm("/a//b///c"), "/a/b/c");
  EXPECT_EQ(Norm("/a/b/"), "/a/b/");
  EXPECT_EQ(Norm("/a/b/.."), "/a/");
  EXPECT_EQ(Norm("/a/."), "/a/");
  EXPECT_EQ(Norm("/"), "/");
  EXPECT_EQ(Norm("/.."), "/");
  EXPECT_EQ(Norm("/a%7e"), "/a~");
  EXPECT_EQ(Norm("/a%3fb"), "/a%3Fb");  // reserved: stays escaped, hex upper-cased
  EXPECT_EQ(Norm("/a%3Fb"), "/a%3Fb");
}

TEST(NormalizePath, QueryIsKeptAsSent) {
  EXPECT_EQ(Norm("//admin?x=/../%2F"), "/admin?x=/../%2F");
  EXPECT_EQ(Norm("/admin?x=1"), "/admin?x=1");
}

TEST(NormalizePath, AmbiguousPathsAreRejected) {
  for (const char* bad : {"/public#/../admin", "/a?x#y", "/a%2Fb", "/a%2fb", "/a%5Cb", "/a\\b",
                          "/a%00b", "/a%", "/a%zz", "/a%4", "/a\tb", "/a\x7f"})
    EXPECT_EQ(Norm(bad), "REJECTED") << bad;
}

TEST(NormalizePath, AbsoluteFormBecomesOriginForm) {
  EXPECT_EQ(Norm("http://h/a/../b"), "/b");
  EXPECT_EQ(Norm("http://h//admin?q"), "/admin?q");
  EXPECT_EQ(Norm("http://h"), "/");
  EXPECT_EQ(Norm("http://h?x"), "/?x");
  EXPECT_EQ(Norm("http://h/a%2fb"), "REJECTED");
  EXPECT_EQ(Norm("*"), "*");
  EXPECT_EQ(Norm(""), "");
}

}  // namespace
}  // namespace weft::http
