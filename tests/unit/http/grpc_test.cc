#include "http/grpc.h"

#include <gtest/gtest.h>

namespace weft::http::grpc {
namespace {

TEST(Grpc, TellsACallByItsContentType) {
  RequestHeaders h;
  h.fields = {{"content-type", "application/grpc"}};
  EXPECT_TRUE(IsGrpc(h));
  h.fields = {{"Content-Type", "application/grpc+proto"}};
  EXPECT_TRUE(IsGrpc(h));
  h.fields = {{"content-type", "application/grpc-web"}};
  EXPECT_FALSE(IsGrpc(h)) << "grpc-web is another protocol";
  h.fields = {{"content-type", "application/json"}};
  EXPECT_FALSE(IsGrpc(h));
  h.fields = {};
  EXPECT_FALSE(IsGrpc(h));
}

TEST(Grpc, TimeoutUnitsRoundUpToMilliseconds) {
  EXPECT_EQ(ParseTimeout("1H"), 3600000);
  EXPECT_EQ(ParseTimeout("2M"), 120000);
  EXPECT_EQ(ParseTimeout("3S"), 3000);
  EXPECT_EQ(ParseTimeout("250m"), 250);
  EXPECT_EQ(ParseTimeout("1500u"), 2);
  EXPECT_EQ(ParseTimeout("1n"), 1);
  EXPECT_EQ(ParseTimeout("99999999m"), 99999999);
  for (const char* bad : {"", "m", "100", "100x", "-5m", "123456789m", "1.5S", " 5S"}) {
    EXPECT_EQ(ParseTimeout(bad), -1) << bad;
  }
  std::string out;
  FormatTimeout(250, &out);
  EXPECT_EQ(out, "250m");
  FormatTimeout(123456789012, &out);
  EXPECT_EQ(out, "123456789S") << "at most 8 digits: whole seconds";
  FormatTimeout(-3, &out);
  EXPECT_EQ(out, "0m");
}

TEST(Grpc, StatusOfFieldsAndNames) {
  EXPECT_EQ(StatusOf({{"grpc-status", "14"}, {"grpc-message", "x"}}), 14);
  EXPECT_EQ(StatusOf({{"grpc-message", "x"}}), -1);
  EXPECT_EQ(StatusOf({{"grpc-status", "1x"}}), -1);
  EXPECT_EQ(StatusOf({{"grpc-status", ""}}), -1);
  EXPECT_STREQ(CodeName(0), "OK");
  EXPECT_STREQ(CodeName(14), "UNAVAILABLE");
  EXPECT_STREQ(CodeName(16), "UNAUTHENTICATED");
  EXPECT_STREQ(CodeName(17), "OTHER");
  EXPECT_STREQ(CodeName(-1), "OTHER");
}

TEST(Grpc, ProxyErrorsMapToTheStatusAUserExpects) {
  EXPECT_EQ(CodeForHttpStatus(503), kUnavailable);
  EXPECT_EQ(CodeForHttpStatus(502), kUnavailable);
  EXPECT_EQ(CodeForHttpStatus(504), kDeadlineExceeded);
  EXPECT_EQ(CodeForHttpStatus(403), kPermissionDenied);
  EXPECT_EQ(CodeForHttpStatus(413), kResourceExhausted);
  EXPECT_EQ(CodeForHttpStatus(431), kResourceExhausted);
  EXPECT_EQ(CodeForHttpStatus(404), kUnimplemented);
  EXPECT_EQ(CodeForHttpStatus(400), kInternal);
  EXPECT_EQ(CodeForHttpStatus(418), kUnknown);
}

TEST(Grpc, StatusesCountAsTheirHttpEquivalents) {
  EXPECT_EQ(HttpStatusForCode(0), 200);
  EXPECT_EQ(HttpStatusForCode(kUnavailable), 503);
  EXPECT_EQ(HttpStatusForCode(kDeadlineExceeded), 504);
  EXPECT_EQ(HttpStatusForCode(kInternal), 500);
  EXPECT_EQ(HttpStatusForCode(kResourceExhausted), 429);
  EXPECT_EQ(HttpStatusForCode(kUnimplemented), 501);
  EXPECT_EQ(HttpStatusForCode(kPermissionDenied), 403);
  EXPECT_EQ(HttpStatusForCode(1), 499) << "CANCELLED: the caller's doing, not the endpoint's";
  EXPECT_EQ(HttpStatusForCode(2), 500);
  EXPECT_EQ(HttpStatusForCode(99), 500);
  // Unavailable and back: the same status.
  EXPECT_EQ(CodeForHttpStatus(HttpStatusForCode(kUnavailable)), kUnavailable);
}

TEST(Grpc, MessageIsPercentEncoded) {
  std::string out;
  EncodeMessage("no upstream: 10.0.0.1:80 100%\n\xc3\xa9", &out);
  EXPECT_EQ(out, "no upstream: 10.0.0.1:80 100%25%0A%C3%A9");
}

}  // namespace
}  // namespace weft::http::grpc
