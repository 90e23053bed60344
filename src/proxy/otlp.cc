#include "proxy/otlp.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "base/strings.h"

namespace weft::proxy::otlp {
namespace {

// Protobuf wire format: the few pieces these messages need.
enum WireType : uint8_t { kVarint = 0, kFixed64 = 1, kLen = 2 };

void Varint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

void Tag(uint32_t field, WireType t, std::string* out) {
  Varint(static_cast<uint64_t>(field) << 3 | t, out);
}

void Bytes(uint32_t field, std::string_view b, std::string* out) {
  Tag(field, kLen, out);
  Varint(b.size(), out);
  out->append(b);
}

// A protobuf `string` must be UTF-8 (receivers refuse the message
// otherwise); attribute values come from requests: bytes that are not
// UTF-8 become U+FFFD.
void String(uint32_t field, std::string_view s, std::string* out) {
  size_t bad = 0;
  if (IsValidUtf8(s, &bad)) {
    Bytes(field, s, out);
    return;
  }
  std::string fixed;
  while (!s.empty()) {
    if (IsValidUtf8(s, &bad)) {
      fixed.append(s);
      break;
    }
    fixed.append(s.substr(0, bad)).append("\xEF\xBF\xBD");
    s.remove_prefix(bad + 1);
  }
  Bytes(field, fixed, out);
}

void Fixed64(uint32_t field, uint64_t v, std::string* out) {
  Tag(field, kFixed64, out);
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

void VarintField(uint32_t field, uint64_t v, std::string* out) {
  Tag(field, kVarint, out);
  Varint(v, out);
}

template <size_t N>
std::string_view Raw(const std::array<uint8_t, N>& a) {
  return {reinterpret_cast<const char*>(a.data()), N};
}

template <size_t N>
bool Zero(const std::array<uint8_t, N>& a) {
  return std::all_of(a.begin(), a.end(), [](uint8_t b) { return b == 0; });
}

// KeyValue { key = 1; AnyValue value = 2 }, AnyValue { string_value = 1;
// bool_value = 2; int_value = 3; double_value = 4 }.
void KeyValue(uint32_t field, const Attribute& a, std::string* out, std::string* scratch) {
  std::string& any = *scratch;
  any.clear();
  if (const auto* s = std::get_if<std::string>(&a.value)) {
    String(1, *s, &any);
  } else if (const auto* b = std::get_if<bool>(&a.value)) {
    VarintField(2, *b ? 1 : 0, &any);
  } else if (const auto* i = std::get_if<int64_t>(&a.value)) {
    VarintField(3, static_cast<uint64_t>(*i), &any);
  } else {
    uint64_t bits;
    const double d = std::get<double>(a.value);
    std::memcpy(&bits, &d, sizeof bits);
    Fixed64(4, bits, &any);
  }
  std::string kv;
  String(1, a.key, &kv);
  Bytes(2, any, &kv);
  Bytes(field, kv, out);
}

nlohmann::json AnyJson(const Attribute& a) {
  if (const auto* s = std::get_if<std::string>(&a.value)) return {{"stringValue", *s}};
  if (const auto* b = std::get_if<bool>(&a.value)) return {{"boolValue", *b}};
  if (const auto* i = std::get_if<int64_t>(&a.value)) return {{"intValue", std::to_string(*i)}};
  // Proto3 JSON spells the doubles JSON has no number for.
  const double d = std::get<double>(a.value);
  if (std::isnan(d)) return {{"doubleValue", "NaN"}};
  if (std::isinf(d)) return {{"doubleValue", d > 0 ? "Infinity" : "-Infinity"}};
  return {{"doubleValue", d}};
}

nlohmann::json AttributesJson(const std::vector<Attribute>& attrs) {
  nlohmann::json out = nlohmann::json::array();
  for (const Attribute& a : attrs) out.push_back({{"key", a.key}, {"value", AnyJson(a)}});
  return out;
}

}  // namespace

void EncodeProtobuf(const Resource& r, std::span<const Span> spans, std::string* out) {
  std::string scratch, kv_scratch;
  // ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2 }
  std::string scope_spans;
  {
    std::string scope;
    String(1, "weft", &scope);
    if (!r.scope_version.empty()) String(2, r.scope_version, &scope);
    Bytes(1, scope, &scope_spans);
  }
  std::string span;
  for (const Span& s : spans) {
    span.clear();
    Bytes(1, Raw(s.trace_id), &span);
    Bytes(2, Raw(s.span_id), &span);
    if (!s.trace_state.empty()) String(3, s.trace_state, &span);
    if (!Zero(s.parent_span_id)) Bytes(4, Raw(s.parent_span_id), &span);
    String(5, s.name, &span);
    VarintField(6, static_cast<uint64_t>(s.kind), &span);
    Fixed64(7, s.start_unix_ns, &span);
    Fixed64(8, s.end_unix_ns, &span);
    for (const Attribute& a : s.attributes) KeyValue(9, a, &span, &kv_scratch);
    if (s.status != StatusCode::kUnset || !s.status_message.empty()) {
      // Status { message = 2; code = 3 }
      scratch.clear();
      if (!s.status_message.empty()) String(2, s.status_message, &scratch);
      VarintField(3, static_cast<uint64_t>(s.status), &scratch);
      Bytes(15, scratch, &span);
    }
    Bytes(2, span, &scope_spans);
  }
  // Resource { repeated KeyValue attributes = 1 }
  std::string resource;
  KeyValue(1, Attribute{"service.name", r.service_name}, &resource, &kv_scratch);
  for (const Attribute& a : r.attributes)
    if (a.key != "service.name") KeyValue(1, a, &resource, &kv_scratch);  // said once
  // ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2 }
  std::string resource_spans;
  Bytes(1, resource, &resource_spans);
  Bytes(2, scope_spans, &resource_spans);
  // ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1 }
  Bytes(1, resource_spans, out);
}

void EncodeJson(const Resource& r, std::span<const Span> spans, std::string* out) {
  using nlohmann::json;
  json js = json::array();
  for (const Span& s : spans) {
    json j = {{"traceId", http::trace::Hex(s.trace_id)},
              {"spanId", http::trace::Hex(s.span_id)},
              {"name", s.name},
              {"kind", static_cast<int>(s.kind)},
              {"startTimeUnixNano", std::to_string(s.start_unix_ns)},
              {"endTimeUnixNano", std::to_string(s.end_unix_ns)},
              {"attributes", AttributesJson(s.attributes)}};
    if (!Zero(s.parent_span_id)) j["parentSpanId"] = http::trace::Hex(s.parent_span_id);
    if (!s.trace_state.empty()) j["traceState"] = s.trace_state;
    if (s.status != StatusCode::kUnset || !s.status_message.empty()) {
      j["status"] = {{"code", static_cast<int>(s.status)}};
      if (!s.status_message.empty()) j["status"]["message"] = s.status_message;
    }
    js.push_back(std::move(j));
  }
  std::vector<Attribute> resource = {Attribute{"service.name", r.service_name}};
  for (const Attribute& a : r.attributes)
    if (a.key != "service.name") resource.push_back(a);
  json scope = {{"name", "weft"}};
  if (!r.scope_version.empty()) scope["version"] = r.scope_version;
  const json req = {
      {"resourceSpans",
       json::array({{{"resource", {{"attributes", AttributesJson(resource)}}},
                     {"scopeSpans", json::array({{{"scope", scope}, {"spans", js}}})}}})}};
  // Attribute values come from requests: bytes that are not UTF-8 are
  // replaced, never thrown on.
  out->append(req.dump(-1, ' ', false, json::error_handler_t::replace));
}

}  // namespace weft::proxy::otlp
