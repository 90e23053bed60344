// Consistent hashing for session affinity (the ring_hash and maglev
// balancers): what a request's key is taken from, and the table sizes. One
// struct for the manifest, the compiler and the proxy.
#pragma once

#include <cstdint>
#include <string>

namespace weft::mesh {

struct HashPolicy {
  // Exactly one source: a request header, a cookie, or the caller's address.
  std::string header;         // lower-case name
  std::string cookie;         // name; set by the proxy when a request has none
  int64_t cookie_ttl_ms = 0;  // the cookie's Max-Age; 0: a session cookie
  std::string cookie_path = "/";
  bool source_ip = false;
  // ring_hash: points on the ring per endpoint of weight 1 (so an endpoint
  // that leaves or joins moves only its own keys).
  uint32_t ring_points = 128;
  uint32_t table_size = 65537;  // maglev: entries (a prime)
  bool any() const { return !header.empty() || !cookie.empty() || source_ip; }
  bool operator==(const HashPolicy&) const = default;
};

inline constexpr uint32_t kMinRingPoints = 1;
inline constexpr uint32_t kMaxRingPoints = 65536;
inline constexpr uint64_t kMaxRingTotal = 1u << 23;  // all points: weights scale down past it
inline constexpr uint32_t kMaxMaglevTableSize = 5000011;

// "" when the policy is usable, else what is wrong (the config stream's
// field names): not exactly one source, a bad name, a size out of range, a
// table size that is not prime.
std::string HashPolicyError(const HashPolicy& h);

}  // namespace weft::mesh
