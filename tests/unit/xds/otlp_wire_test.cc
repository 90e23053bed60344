// The proxy's OTLP encoding (proxy/otlp.h), read back by libprotobuf's own wire-format parser
// (UnknownFieldSet: no schema of ours in between): field numbers, wire
// types and values as OpenTelemetry's trace.proto and common.proto define
// them.
#include <google/protobuf/unknown_field_set.h>
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>

#include "proxy/otlp.h"

namespace weft::proxy::otlp {
namespace {

using google::protobuf::UnknownField;
using google::protobuf::UnknownFieldSet;

// The fields numbered `n` of `set`.
std::vector<const UnknownField*> Fields(const UnknownFieldSet& set, int n) {
  std::vector<const UnknownField*> out;
  for (int i = 0; i < set.field_count(); ++i)
    if (set.field(i).number() == n) out.push_back(&set.field(i));
  return out;
}

// The message a length-delimited field holds.
std::unique_ptr<UnknownFieldSet> Sub(const UnknownField* f) {
  auto s = std::make_unique<UnknownFieldSet>();
  EXPECT_EQ(f->type(), UnknownField::TYPE_LENGTH_DELIMITED);
  EXPECT_TRUE(s->ParseFromString(f->length_delimited()));
  return s;
}

std::string One(const UnknownFieldSet& set, int n) {
  auto f = Fields(set, n);
  EXPECT_EQ(f.size(), 1u) << "field " << n;
  return f.empty() ? "" : f[0]->length_delimited();
}

Span Example() {
  Span s;
  for (int i = 0; i < 16; ++i) s.trace_id[i] = static_cast<uint8_t>(i + 1);
  for (int i = 0; i < 8; ++i) s.span_id[i] = static_cast<uint8_t>(0xa0 + i);
  s.parent_span_id[7] = 9;
  s.name = "GET /reviews";
  s.kind = SpanKind::kClient;
  s.start_unix_ns = 1'700'000'000'000'000'001ull;
  s.end_unix_ns = 1'700'000'000'002'000'001ull;
  s.attributes = {{"http.request.method", std::string("GET")},
                  {"http.response.status_code", int64_t{503}},
                  {"weft.retried", true},
                  {"weft.ratio", 0.25},
                  {"url.path", std::string("/bad\xff")}};
  s.status = StatusCode::kError;
  s.status_message = "upstream reset";
  s.trace_state = "rojo=1";
  return s;
}

TEST(Otlp, ProtobufHasTheFieldsOfExportTraceServiceRequest) {
  std::string out;
  const Span spans[] = {Example()};
  EncodeProtobuf({"reviews", {{"service.instance.id", std::string("node-1")}}, "0.1.0"}, spans,
                 &out);
  UnknownFieldSet req;
  ASSERT_TRUE(req.ParseFromString(out));
  auto rs = Fields(req, 1);  // resource_spans
  ASSERT_EQ(rs.size(), 1u);
  auto rs_owner = Sub(rs[0]);
  const UnknownFieldSet& resource_spans = *rs_owner;
  UnknownFieldSet resource;
  ASSERT_TRUE(resource.ParseFromString(One(resource_spans, 1)));
  auto attrs = Fields(resource, 1);
  ASSERT_EQ(attrs.size(), 2u);
  auto kv_owner = Sub(attrs[0]);
  const UnknownFieldSet& kv = *kv_owner;
  EXPECT_EQ(One(kv, 1), "service.name");
  UnknownFieldSet any;
  ASSERT_TRUE(any.ParseFromString(One(kv, 2)));
  EXPECT_EQ(One(any, 1), "reviews");

  UnknownFieldSet scope_spans;
  ASSERT_TRUE(scope_spans.ParseFromString(One(resource_spans, 2)));
  UnknownFieldSet scope;
  ASSERT_TRUE(scope.ParseFromString(One(scope_spans, 1)));
  EXPECT_EQ(One(scope, 1), "weft");
  EXPECT_EQ(One(scope, 2), "0.1.0");
  UnknownFieldSet span;
  ASSERT_TRUE(span.ParseFromString(One(scope_spans, 2)));
  const Span ex = Example();
  EXPECT_EQ(One(span, 1), std::string(reinterpret_cast<const char*>(ex.trace_id.data()), 16));
  EXPECT_EQ(One(span, 2), std::string(reinterpret_cast<const char*>(ex.span_id.data()), 8));
  EXPECT_EQ(One(span, 3), "rojo=1");
  EXPECT_EQ(One(span, 4), std::string(reinterpret_cast<const char*>(ex.parent_span_id.data()), 8));
  EXPECT_EQ(One(span, 5), "GET /reviews");
  ASSERT_EQ(Fields(span, 6).size(), 1u);
  EXPECT_EQ(Fields(span, 6)[0]->varint(), 3u);  // SPAN_KIND_CLIENT
  ASSERT_EQ(Fields(span, 7).size(), 1u);
  EXPECT_EQ(Fields(span, 7)[0]->type(), UnknownField::TYPE_FIXED64);
  EXPECT_EQ(Fields(span, 7)[0]->fixed64(), ex.start_unix_ns);
  EXPECT_EQ(Fields(span, 8)[0]->fixed64(), ex.end_unix_ns);
  auto sattrs = Fields(span, 9);
  ASSERT_EQ(sattrs.size(), 5u);
  // int_value = 3 (varint), bool_value = 2, double_value = 4 (fixed64).
  UnknownFieldSet v1, v2, v3, v4;
  ASSERT_TRUE(v1.ParseFromString(One(*Sub(sattrs[1]), 2)));
  EXPECT_EQ(Fields(v1, 3)[0]->varint(), 503u);
  ASSERT_TRUE(v2.ParseFromString(One(*Sub(sattrs[2]), 2)));
  EXPECT_EQ(Fields(v2, 2)[0]->varint(), 1u);
  ASSERT_TRUE(v3.ParseFromString(One(*Sub(sattrs[3]), 2)));
  double d;
  const uint64_t bits = Fields(v3, 4)[0]->fixed64();
  std::memcpy(&d, &bits, sizeof d);
  EXPECT_EQ(d, 0.25);
  // A value that is not UTF-8 is repaired, never sent as is.
  ASSERT_TRUE(v4.ParseFromString(One(*Sub(sattrs[4]), 2)));
  EXPECT_EQ(One(v4, 1), "/bad\xEF\xBF\xBD");
  // Status { message = 2; code = 3 }
  UnknownFieldSet status;
  ASSERT_TRUE(status.ParseFromString(One(span, 15)));
  EXPECT_EQ(One(status, 2), "upstream reset");
  EXPECT_EQ(Fields(status, 3)[0]->varint(), 2u);  // STATUS_CODE_ERROR
}

TEST(Otlp, ARootSpanHasNoParentAndAnUnsetStatusIsLeftOut) {
  Span s = Example();
  s.parent_span_id = {};
  s.status = StatusCode::kUnset;
  s.status_message.clear();
  std::string out;
  EncodeProtobuf({"a", {}, ""}, std::span<const Span>(&s, 1), &out);
  UnknownFieldSet req, rs, ss, span;
  ASSERT_TRUE(req.ParseFromString(out));
  ASSERT_TRUE(rs.ParseFromString(One(req, 1)));
  ASSERT_TRUE(ss.ParseFromString(One(rs, 2)));
  ASSERT_TRUE(span.ParseFromString(One(ss, 2)));
  EXPECT_TRUE(Fields(span, 4).empty());
  EXPECT_TRUE(Fields(span, 15).empty());
}

TEST(Otlp, JsonUsesHexIdsAndStringIntegers) {
  std::string out;
  const Span spans[] = {Example()};
  EncodeJson({"reviews", {}, "0.1.0"}, spans, &out);
  auto j = nlohmann::json::parse(out);
  const auto& span = j["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
  EXPECT_EQ(span["traceId"], "0102030405060708090a0b0c0d0e0f10");
  EXPECT_EQ(span["spanId"], "a0a1a2a3a4a5a6a7");
  EXPECT_EQ(span["parentSpanId"], "0000000000000009");
  EXPECT_EQ(span["kind"], 3);
  EXPECT_EQ(span["startTimeUnixNano"], "1700000000000000001");
  EXPECT_EQ(span["attributes"][1]["value"]["intValue"], "503");
  EXPECT_EQ(span["status"]["code"], 2);
  EXPECT_EQ(j["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"], "reviews");
}

TEST(Otlp, JsonSpellsNonFiniteDoublesAndNamesTheServiceOnce) {
  Span s = Example();
  s.attributes = {{"a", std::numeric_limits<double>::quiet_NaN()},
                  {"b", -std::numeric_limits<double>::infinity()}};
  std::string out;
  EncodeJson({"reviews", {{"service.name", std::string("other")}}, ""},
             std::span<const Span>(&s, 1), &out);
  auto j = nlohmann::json::parse(out);
  const auto& attrs = j["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"];
  EXPECT_EQ(attrs[0]["value"]["doubleValue"], "NaN");
  EXPECT_EQ(attrs[1]["value"]["doubleValue"], "-Infinity");
  EXPECT_EQ(j["resourceSpans"][0]["resource"]["attributes"].size(), 1u);
}

}  // namespace
}  // namespace weft::proxy::otlp
