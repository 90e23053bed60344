// Small string helpers shared by the parsers, config and proxy.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace weft {

inline char AsciiLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }
inline std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = AsciiLower(c);
  return out;
}

// Case-insensitive ASCII equality (header names, tokens).
inline bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (AsciiLower(a[i]) != AsciiLower(b[i])) return false;
  }
  return true;
}

// Whether `s` has an upper-case ASCII letter: eight bytes at a time (the
// HTTP/2 encoder checks every field name it sends).
inline bool HasUpper(std::string_view s) {
  constexpr uint64_t kOnes = 0x0101010101010101;
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    const uint64_t low7 = w & (kOnes * 0x7f);
    // The top bit of a byte in low7 + 0x3f is set for >= 'A', in
    // low7 + 0x25 for > 'Z' (no carry crosses a byte); bytes >= 0x80 are
    // not letters.
    if ((low7 + kOnes * 0x3f) & ~(low7 + kOnes * 0x25) & ~w & (kOnes * 0x80)) return true;
  }
  for (; i < s.size(); ++i)
    if (s[i] >= 'A' && s[i] <= 'Z') return true;
  return false;
}

// A view into `s`'s bytes: valid as long as they are.
// Lower-case hex of `n` bytes.
inline std::string HexEncode(const void* data, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  const auto* p = static_cast<const unsigned char*>(data);
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kHex[p[i] >> 4]);
    out.push_back(kHex[p[i] & 15]);
  }
  return out;
}

// Without leading and trailing white space of any kind (a secret read from
// a file: `echo secret > file` leaves a newline).
inline std::string_view TrimSpace(std::string_view s) {
  auto space = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
  };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

inline std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls fn(token) for each comma-separated element of a header list value,
// with surrounding whitespace trimmed and empty elements skipped. fn runs on
// the caller's thread before this returns; each token is a view into `v`.
template <typename Fn>
void ForEachListElement(std::string_view v, Fn&& fn) {
  while (!v.empty()) {
    size_t comma = v.find(',');
    std::string_view el = TrimOws(v.substr(0, comma));
    if (!el.empty()) fn(el);
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
}

// Appends the decimal form of v.
inline void AppendDecimal(std::string* out, uint64_t v) {
  char tmp[20];
  int n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) out->push_back(tmp[--n]);
}

// Parses a duration such as "250ms", "5s", "2m", "1h" or a bare number of
// seconds. Returns milliseconds, or nullopt when malformed.
std::optional<int64_t> ParseDurationMs(std::string_view s);

// Parses an unsigned decimal with no sign, no spaces and no overflow.
std::optional<uint64_t> ParseDecimal(std::string_view s);

// True when s is well-formed UTF-8 (no overlongs, surrogates or values past
// U+10FFFF). Otherwise *bad_at is the offset of the first bad byte.
bool IsValidUtf8(std::string_view s, size_t* bad_at);

// The offset of the first ASCII control character other than tab, line
// feed and carriage return (YAML allows printable characters only), or
// npos when there is none.
size_t FindControlChar(std::string_view s);

// How deeply `{` and `[` nest in a JSON (or YAML flow) text, outside
// double-quoted strings: parsers and the code that walks their trees recurse
// once per level, so outside input is checked against kMaxJsonDepth first.
size_t JsonNestingDepth(std::string_view s);
inline constexpr size_t kMaxJsonDepth = 64;

// The non-empty elements of a comma-separated list ("a,b,,c" -> a b c).
std::vector<std::string> SplitCommas(std::string_view s);

// Standard base64 (RFC 4648, with padding).
std::string Base64Encode(std::string_view s);
// Nullopt on characters outside the alphabet or bad padding.
std::optional<std::string> Base64Decode(std::string_view s);

// Appends s to out as the body of a JSON string (without the quotes).
void AppendJsonEscaped(std::string* out, std::string_view s);

}  // namespace weft
