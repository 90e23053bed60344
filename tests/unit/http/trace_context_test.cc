#include "http/trace_context.h"

#include <gtest/gtest.h>

namespace weft::http::trace {
namespace {

constexpr std::string_view kExample = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

TEST(Traceparent, TheSpecExampleRoundTrips) {
  auto c = ParseTraceparent(kExample);
  ASSERT_TRUE(c);
  EXPECT_EQ(Hex(c->trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(Hex(c->span_id), "00f067aa0ba902b7");
  EXPECT_TRUE(c->sampled);
  EXPECT_EQ(FormatTraceparent(*c), kExample);
  c = ParseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->sampled);
}

TEST(Traceparent, WhatTheSpecRefusesIsRefused) {
  for (std::string_view bad : {
           "",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",    // short
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",  // v00 with more
           "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",   // uppercase
           "00-00000000000000000000000000000000-00f067aa0ba902b7-01",   // zero trace id
           "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",   // zero parent
           "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   // version ff
           "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   // separator
           "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",   // not hex
           "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",  // later version, no '-'
       }) {
    EXPECT_FALSE(ParseTraceparent(bad)) << bad;
  }
  // A later version: its first 55 characters are read as version 00.
  auto c = ParseTraceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-comes");
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->sampled);
  EXPECT_TRUE(ParseTraceparent(std::string(" ") + std::string(kExample) + " "));
}

TEST(Tracestate, ValidListsAreKeptAndCleaned) {
  EXPECT_EQ(NormalizeTracestate("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
  EXPECT_EQ(NormalizeTracestate(" a=1 ,, b@sys=x y ,\t"), "a=1,b@sys=x y");
  EXPECT_EQ(NormalizeTracestate(""), "");
  for (std::string_view bad :
       {"a", "A=1", "a=1,a=2", "a=1=2", "1a=x", "a=\x01", "a@=1", "@b=1", "a@B=1"}) {
    EXPECT_FALSE(NormalizeTracestate(bad)) << bad;
  }
  std::string many;
  for (int i = 0; i < 33; ++i) many += "k" + std::to_string(i) + "=v,";
  EXPECT_FALSE(NormalizeTracestate(many)) << "more than 32 members";
}

TEST(Tracestate, OverTheSizeLimitLongMembersGoFirstThenTheLast) {
  const std::string big = "big=" + std::string(200, 'x');
  std::string v = "a=" + std::string(100, 'a') + "," + big;
  for (int i = 0; i < 5; ++i) v += ",m" + std::to_string(i) + "=" + std::string(100, 'm');
  auto out = NormalizeTracestate(v);
  ASSERT_TRUE(out);
  EXPECT_LE(out->size(), kMaxTracestateBytes);
  EXPECT_EQ(out->find("big="), std::string::npos);
  EXPECT_EQ(out->rfind("a=", 0), 0u) << *out;  // the first member stays
  EXPECT_EQ(out->find("m3="), std::string::npos) << "then from the end";
  EXPECT_EQ(out->find("m4="), std::string::npos);
  EXPECT_NE(out->find("m2="), std::string::npos) << *out;
  // A valid value far over 512 bytes (32 members of 200 characters) is cut
  // down, not refused.
  std::string large;
  for (int i = 0; i < 32; ++i)
    large += (i ? "," : "") + ("k" + std::to_string(i)) + "=" + std::string(200, 'v');
  out = NormalizeTracestate(large);
  ASSERT_TRUE(out) << "valid: truncated, not dropped";
  EXPECT_LE(out->size(), kMaxTracestateBytes);
  EXPECT_EQ(out->rfind("k0=", 0), 0u) << "long members go from the end until it fits";
  EXPECT_NE(out->find(",k1="), std::string::npos);
  EXPECT_EQ(out->find(",k2="), std::string::npos);
  large.clear();
  for (int i = 0; i < 32; ++i)
    large += (i ? "," : "") + ("k" + std::to_string(i)) + "=" + std::string(100, 'v');
  out = NormalizeTracestate(large);
  ASSERT_TRUE(out);
  EXPECT_EQ(out->rfind("k0=", 0), 0u);
  EXPECT_LE(out->size(), kMaxTracestateBytes);
  EXPECT_FALSE(NormalizeTracestate(std::string(kMaxTracestateInput + 1, ' ')));
}

TEST(B3, SingleHeaderFormsAndDecisions) {
  int d = 7;
  auto c =
      ParseB3Single("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90", &d);
  ASSERT_TRUE(c);
  EXPECT_EQ(d, 1);
  EXPECT_TRUE(c->sampled);
  EXPECT_EQ(Hex(c->trace_id), "80f198ee56343ba864fe8b2a57d3eff7");
  EXPECT_EQ(Hex(c->span_id), "e457b5a2e4d86bd1");
  // A 64-bit trace id is the low half.
  c = ParseB3Single("a3ce929d0e0e4736-00f067aa0ba902b7", &d);
  ASSERT_TRUE(c);
  EXPECT_EQ(d, -1);
  EXPECT_EQ(Hex(c->trace_id), "0000000000000000a3ce929d0e0e4736");
  c = ParseB3Single("a3ce929d0e0e4736-00f067aa0ba902b7-d", &d);
  ASSERT_TRUE(c);
  EXPECT_EQ(d, 1);
  EXPECT_FALSE(ParseB3Single("0", &d));
  EXPECT_EQ(d, 0);
  EXPECT_FALSE(ParseB3Single("d", &d));
  EXPECT_EQ(d, 1);
  for (std::string_view bad :
       {"x", "a3ce929d0e0e4736", "a3ce929d0e0e4736-00f067aa0ba902b7-2",
        "a3ce929d0e0e473-00f067aa0ba902b7", "0000000000000000-00f067aa0ba902b7",
        "a3ce929d0e0e4736-00f067aa0ba902b7-1-zz"}) {
    EXPECT_FALSE(ParseB3Single(bad, &d)) << bad;
  }
}

TEST(B3, MultiHeaders) {
  int d = 7;
  auto c = ParseB3Multi("80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1", "1", "", &d);
  ASSERT_TRUE(c);
  EXPECT_EQ(d, 1);
  c = ParseB3Multi("80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1", "false", "", &d);
  ASSERT_TRUE(c);
  EXPECT_EQ(d, 0);
  EXPECT_FALSE(c->sampled);
  c = ParseB3Multi("80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1", "", "1", &d);
  ASSERT_TRUE(c);
  EXPECT_EQ(d, 1) << "debug is sampled";
  EXPECT_FALSE(ParseB3Multi("", "", "0", "", &d));
  EXPECT_EQ(d, 0) << "a decision without ids";
  EXPECT_FALSE(ParseB3Multi("80f198ee56343ba864fe8b2a57d3eff7", "", "1", "", &d));
}

TEST(Sampling, AParentsDecisionIsKeptOtherwiseTheRate) {
  EXPECT_TRUE(Sample(1, 0.0, 0.5));
  EXPECT_FALSE(Sample(0, 1.0, 0.0));
  EXPECT_TRUE(Sample(-1, 0.01, 0.005));
  EXPECT_FALSE(Sample(-1, 0.01, 0.5));
}

}  // namespace
}  // namespace weft::http::trace
