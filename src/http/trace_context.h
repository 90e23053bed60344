// Distributed tracing context as requests carry it (issue: tracing with
// OpenTelemetry): W3C Trace Context (`traceparent`, `tracestate`), and B3
// in its single-header and multi-header forms, which the proxy accepts and
// translates to W3C. Parsers of outside input: strict, bounded, never
// throwing; what they refuse is dropped as if absent (a new trace starts).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace weft::http::trace {

using TraceId = std::array<uint8_t, 16>;
using SpanId = std::array<uint8_t, 8>;

struct SpanContext {
  TraceId trace_id{};
  SpanId span_id{};  // the sender's span: the parent of ours
  bool sampled = false;
  bool operator==(const SpanContext&) const = default;
};

// traceparent: "VV-<32 hex>-<16 hex>-FF", lowercase hex, neither id all
// zeros, version "ff" invalid; version 00 is exactly 55 characters, a
// later version may go on after a '-' (its first 55 read as version 00).
std::optional<SpanContext> ParseTraceparent(std::string_view v);
// Version 00, 55 characters.
std::string FormatTraceparent(const SpanContext& c);
inline constexpr size_t kTraceparentSize = 55;
// FormatTraceparent into out[0, kTraceparentSize), with no allocation.
void WriteTraceparent(const SpanContext& c, char* out);

// tracestate: at most kMaxTracestateMembers list members `key=value`
// (W3C keys: lcalpha then [a-z0-9_-*/], or tenant@system; values printable
// ASCII without ',' and '=', not ending in a space; no key twice). Returns
// the value to send on (trimmed of empty members and optional white space),
// or nullopt when it is invalid (not propagated, as the spec asks). Over
// kMaxTracestateBytes, members over 128 characters go first, then members
// from the end.
std::optional<std::string> NormalizeTracestate(std::string_view v);
inline constexpr size_t kMaxTracestateMembers = 32;
inline constexpr size_t kMaxTracestateBytes = 512;
inline constexpr size_t kMaxTracestateInput = 64 * 1024;  // larger: refused unread

// B3 single header "b3": "{TraceId}-{SpanId}[-{Sampled}[-{ParentSpanId}]]"
// (TraceId 16 or 32 hex, lowercase; Sampled 0, 1 or d), or "0", "1", "d"
// alone (a sampling decision without ids). `decision` gets 0 (not
// sampled), 1 (sampled) or -1 (none said); a context comes back only with
// ids.
std::optional<SpanContext> ParseB3Single(std::string_view v, int* decision);
// B3 multi headers: X-B3-TraceId, X-B3-SpanId, X-B3-Sampled ("0", "1",
// "true", "false"), X-B3-Flags ("1": debug, sampled). Empty: absent.
std::optional<SpanContext> ParseB3Multi(std::string_view trace_id, std::string_view span_id,
                                        std::string_view sampled, std::string_view flags,
                                        int* decision);

// Lowercase hex of `n` bytes.
std::string Hex(const uint8_t* p, size_t n);
// Lowercase hex of `n` bytes into out[0, 2n), with no allocation.
void WriteHex(const uint8_t* p, size_t n, char* out);
inline std::string Hex(const TraceId& t) { return Hex(t.data(), t.size()); }
inline std::string Hex(const SpanId& s) { return Hex(s.data(), s.size()); }

// Head sampling: whether a request is sampled. A parent's decision is kept
// (parent-based); without one, `rate` (0..1) decides with `random` in [0, 1).
inline bool Sample(int parent_decision, double rate, double random) {
  if (parent_decision >= 0) return parent_decision == 1;
  return random < rate;
}

}  // namespace weft::http::trace
