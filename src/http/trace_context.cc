#include "http/trace_context.h"

#include <algorithm>
#include <vector>

namespace weft::http::trace {
namespace {

int LowerHex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// `s` (2n lowercase hex digits) into n bytes; false on any other character.
bool FromHex(std::string_view s, uint8_t* out, size_t n) {
  if (s.size() != 2 * n) return false;
  for (size_t i = 0; i < n; ++i) {
    const int hi = LowerHex(s[2 * i]), lo = LowerHex(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

template <size_t N>
bool AllZero(const std::array<uint8_t, N>& a) {
  return std::all_of(a.begin(), a.end(), [](uint8_t b) { return b == 0; });
}

// A B3 trace id: 32 hex digits, or 16 (the high half zero).
bool B3TraceId(std::string_view s, TraceId* out) {
  *out = {};
  if (s.size() == 16) return FromHex(s, out->data() + 8, 8) && !AllZero(*out);
  return s.size() == 32 && FromHex(s, out->data(), 16) && !AllZero(*out);
}

bool B3SpanId(std::string_view s, SpanId* out) {
  return FromHex(s, out->data(), 8) && !AllZero(*out);
}

bool KeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '*' ||
         c == '/';
}

// A tracestate key: simple-key, or tenant-id@system-id.
bool ValidKey(std::string_view k) {
  const size_t at = k.find('@');
  if (at == std::string_view::npos) {
    if (k.empty() || k.size() > 256 || !(k[0] >= 'a' && k[0] <= 'z')) return false;
    return std::all_of(k.begin(), k.end(), KeyChar);
  }
  const std::string_view tenant = k.substr(0, at), system = k.substr(at + 1);
  if (tenant.empty() || tenant.size() > 241 || system.empty() || system.size() > 14) return false;
  if (!((tenant[0] >= 'a' && tenant[0] <= 'z') || (tenant[0] >= '0' && tenant[0] <= '9')))
    return false;
  if (!(system[0] >= 'a' && system[0] <= 'z')) return false;
  return std::all_of(tenant.begin(), tenant.end(), KeyChar) &&
         std::all_of(system.begin(), system.end(), KeyChar);
}

bool ValidValue(std::string_view v) {
  if (v.empty() || v.size() > 256 || v.back() == ' ') return false;
  return std::all_of(v.begin(), v.end(),
                     [](char c) { return c >= 0x20 && c <= 0x7e && c != ',' && c != '='; });
}

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

void WriteHex(const uint8_t* p, size_t n, char* out) {
  static constexpr char kDigits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[p[i] >> 4];
    out[2 * i + 1] = kDigits[p[i] & 15];
  }
}

std::string Hex(const uint8_t* p, size_t n) {
  std::string out(2 * n, '0');
  WriteHex(p, n, out.data());
  return out;
}

std::optional<SpanContext> ParseTraceparent(std::string_view v) {
  v = TrimOws(v);
  if (v.size() < kTraceparentSize) return std::nullopt;
  uint8_t version = 0;
  if (!FromHex(v.substr(0, 2), &version, 1) || version == 0xff) return std::nullopt;
  if (version == 0 && v.size() != kTraceparentSize) return std::nullopt;
  if (v.size() > kTraceparentSize && v[kTraceparentSize] != '-') return std::nullopt;
  if (v[2] != '-' || v[35] != '-' || v[52] != '-') return std::nullopt;
  SpanContext c;
  uint8_t flags = 0;
  if (!FromHex(v.substr(3, 32), c.trace_id.data(), 16) ||
      !FromHex(v.substr(36, 16), c.span_id.data(), 8) || !FromHex(v.substr(53, 2), &flags, 1))
    return std::nullopt;
  if (AllZero(c.trace_id) || AllZero(c.span_id)) return std::nullopt;
  c.sampled = flags & 1;
  return c;
}

void WriteTraceparent(const SpanContext& c, char* out) {
  out[0] = out[1] = '0';
  out[2] = out[35] = out[52] = '-';
  WriteHex(c.trace_id.data(), c.trace_id.size(), out + 3);
  WriteHex(c.span_id.data(), c.span_id.size(), out + 36);
  out[53] = '0';
  out[54] = c.sampled ? '1' : '0';
}

std::string FormatTraceparent(const SpanContext& c) {
  std::string out(kTraceparentSize, '0');
  WriteTraceparent(c, out.data());
  return out;
}

std::optional<std::string> NormalizeTracestate(std::string_view v) {
  // Bounded before any work, above the largest valid value (32 members of
  // a 256-character key and value, with white space around them).
  if (v.size() > kMaxTracestateInput) return std::nullopt;
  std::vector<std::string_view> members;
  std::vector<std::string_view> keys;
  size_t start = 0;
  while (start <= v.size()) {
    size_t comma = v.find(',', start);
    if (comma == std::string_view::npos) comma = v.size();
    const std::string_view m = TrimOws(v.substr(start, comma - start));
    start = comma + 1;
    if (m.empty()) continue;  // empty list members are allowed, and dropped
    const size_t eq = m.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    const std::string_view key = m.substr(0, eq), value = m.substr(eq + 1);
    if (!ValidKey(key) || !ValidValue(value)) return std::nullopt;
    if (std::find(keys.begin(), keys.end(), key) != keys.end()) return std::nullopt;
    keys.push_back(key);
    members.push_back(m);
    if (members.size() > kMaxTracestateMembers) return std::nullopt;
  }
  auto joined_size = [&members] {
    size_t n = 0;
    for (std::string_view m : members) n += m.size();
    return n + (members.empty() ? 0 : members.size() - 1);
  };
  // Too long: members over 128 characters go first, then from the end.
  for (size_t i = members.size(); i-- > 0 && joined_size() > kMaxTracestateBytes;) {
    if (members[i].size() > 128) members.erase(members.begin() + static_cast<long>(i));
  }
  while (!members.empty() && joined_size() > kMaxTracestateBytes) members.pop_back();
  std::string out;
  for (std::string_view m : members) {
    if (!out.empty()) out.push_back(',');
    out.append(m);
  }
  return out;
}

std::optional<SpanContext> ParseB3Single(std::string_view v, int* decision) {
  *decision = -1;
  v = TrimOws(v);
  if (v == "0") {
    *decision = 0;
    return std::nullopt;
  }
  if (v == "1" || v == "d") {
    *decision = 1;
    return std::nullopt;
  }
  const size_t d1 = v.find('-');
  if (d1 == std::string_view::npos) return std::nullopt;
  SpanContext c;
  if (!B3TraceId(v.substr(0, d1), &c.trace_id)) return std::nullopt;
  std::string_view rest = v.substr(d1 + 1);
  const size_t d2 = rest.find('-');
  if (!B3SpanId(rest.substr(0, d2), &c.span_id)) return std::nullopt;
  if (d2 != std::string_view::npos) {
    rest = rest.substr(d2 + 1);
    const size_t d3 = rest.find('-');
    const std::string_view s = rest.substr(0, d3);
    if (s == "1" || s == "d") {
      *decision = 1;
    } else if (s == "0") {
      *decision = 0;
    } else {
      return std::nullopt;
    }
    if (d3 != std::string_view::npos) {
      SpanId parent;  // the sender's parent: checked, not used
      if (!B3SpanId(rest.substr(d3 + 1), &parent)) return std::nullopt;
    }
  }
  c.sampled = *decision == 1;
  return c;
}

std::optional<SpanContext> ParseB3Multi(std::string_view trace_id, std::string_view span_id,
                                        std::string_view sampled, std::string_view flags,
                                        int* decision) {
  *decision = -1;
  sampled = TrimOws(sampled);
  if (TrimOws(flags) == "1" || sampled == "1" || sampled == "true") {
    *decision = 1;
  } else if (sampled == "0" || sampled == "false") {
    *decision = 0;
  }
  trace_id = TrimOws(trace_id);
  span_id = TrimOws(span_id);
  if (trace_id.empty() && span_id.empty()) return std::nullopt;
  SpanContext c;
  if (!B3TraceId(trace_id, &c.trace_id) || !B3SpanId(span_id, &c.span_id)) return std::nullopt;
  c.sampled = *decision == 1;
  return c;
}

}  // namespace weft::http::trace
