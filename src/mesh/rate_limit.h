// Local rate limits, as a TrafficPolicy's or a Route rule's rateLimit
// writes them and the proxy honours them (proxy/rate_limit.h): token buckets
// of `requests_per_second` refilled continuously, holding up to `burst`.
// One struct for the manifest, the compiler and the proxy.
#pragma once

#include <cstdint>
#include <string>

namespace weft::mesh {

struct RateLimit {
  uint32_t requests_per_second = 0;  // every request together (0: no limit)
  uint32_t burst = 0;                // 0: one second's worth
  uint32_t per_caller_rps = 0;       // each caller (SPIFFE ID, else address) (0: no limit)
  uint32_t per_caller_burst = 0;     // 0: one second's worth
  bool any() const { return requests_per_second > 0 || per_caller_rps > 0; }
  bool operator==(const RateLimit&) const = default;
};

inline constexpr uint32_t kMaxRateLimitRps = 10000000;
inline constexpr uint32_t kMaxRateLimitBurst = 100000000;

// "" when every field is within its range, else what is wrong, naming the
// field as the config stream does.
std::string RateLimitError(const RateLimit& r);

}  // namespace weft::mesh
