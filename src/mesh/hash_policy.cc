#include "mesh/hash_policy.h"

#include <fmt/format.h>

namespace weft::mesh {
namespace {

bool Prime(uint32_t n) {
  if (n < 2) return false;
  for (uint32_t d = 2; static_cast<uint64_t>(d) * d <= n; ++d)
    if (n % d == 0) return false;
  return true;
}

bool Token(const std::string& s) {
  if (s.empty() || s.size() > 256) return false;
  for (unsigned char c : s) {
    if (c <= 0x20 || c >= 0x7f || c == '(' || c == ')' || c == '<' || c == '>' || c == '@' ||
        c == ',' || c == ';' || c == ':' || c == '\\' || c == '"' || c == '/' || c == '[' ||
        c == ']' || c == '?' || c == '=' || c == '{' || c == '}')
      return false;
  }
  return true;
}

}  // namespace

std::string HashPolicyError(const HashPolicy& h) {
  const int sources = !h.header.empty() + !h.cookie.empty() + h.source_ip;
  if (sources != 1) return "hash: give exactly one of header, cookie and source_ip";
  if (!h.header.empty() && !Token(h.header))
    return fmt::format("hash.header \"{}\": not a header name", h.header);
  for (char c : h.header)
    if (c >= 'A' && c <= 'Z') return fmt::format("hash.header \"{}\": use lower case", h.header);
  if (!h.cookie.empty() && !Token(h.cookie))
    return fmt::format("hash.cookie \"{}\": not a cookie name", h.cookie);
  if (h.cookie_ttl_ms < 0 || h.cookie_ttl_ms > 366LL * 86400 * 1000)
    return "hash.cookie_ttl: use 0 (a session cookie) to 366 days";
  if (h.cookie_path.empty() || h.cookie_path[0] != '/' || h.cookie_path.size() > 1024)
    return fmt::format("hash.cookie_path \"{}\": a path starting with /", h.cookie_path);
  for (unsigned char c : h.cookie_path)
    if (c <= 0x20 || c >= 0x7f || c == ';')
      return fmt::format("hash.cookie_path \"{}\": no spaces, controls or ';'", h.cookie_path);
  if (h.ring_points < kMinRingPoints || h.ring_points > kMaxRingPoints)
    return fmt::format("ring_points {}: use {} to {}", h.ring_points, kMinRingPoints,
                       kMaxRingPoints);
  if (h.table_size > kMaxMaglevTableSize || !Prime(h.table_size))
    return fmt::format("maglev_table_size {}: use a prime up to {}", h.table_size,
                       kMaxMaglevTableSize);
  return "";
}

}  // namespace weft::mesh
