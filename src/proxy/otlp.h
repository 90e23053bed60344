// OTLP trace export encoding (OpenTelemetry's protocol): an
// ExportTraceServiceRequest with one resource (the sidecar's service) and
// one instrumentation scope ("weft"), as protobuf (OTLP/HTTP's default,
// `application/x-protobuf`) or as OTLP/JSON (`application/json`: ids in
// hex, 64-bit integers as strings). Written by hand: the proxy needs
// these few messages only, and no generated code rides on its hot path.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "http/trace_context.h"

namespace weft::proxy::otlp {

// OpenTelemetry's SpanKind values.
enum class SpanKind : uint8_t { kInternal = 1, kServer = 2, kClient = 3 };
// Status codes: unset (the default, for a span that did not fail), error.
enum class StatusCode : uint8_t { kUnset = 0, kOk = 1, kError = 2 };

struct Attribute {
  std::string_view key;  // a literal (static storage): no allocation per attribute
  std::variant<std::string, int64_t, bool, double> value;
};

struct Span {
  http::trace::TraceId trace_id{};
  http::trace::SpanId span_id{};
  http::trace::SpanId parent_span_id{};  // all zero: a root span
  std::string trace_state;
  std::string name;
  SpanKind kind = SpanKind::kServer;
  uint64_t start_unix_ns = 0, end_unix_ns = 0;
  std::vector<Attribute> attributes;
  StatusCode status = StatusCode::kUnset;
  std::string status_message;
};

struct Resource {
  std::string service_name;           // service.name
  std::vector<Attribute> attributes;  // any others (service.instance.id, ...)
  std::string scope_version;          // the instrumentation scope's version
};

// Appends the encoded request to `out`.
void EncodeProtobuf(const Resource& r, std::span<const Span> spans, std::string* out);
void EncodeJson(const Resource& r, std::span<const Span> spans, std::string* out);

}  // namespace weft::proxy::otlp
