#include "mesh/rate_limit.h"

#include <fmt/format.h>

namespace weft::mesh {

std::string RateLimitError(const RateLimit& r) {
  if (r.requests_per_second > kMaxRateLimitRps)
    return fmt::format("requests_per_second {}: at most {}", r.requests_per_second,
                       kMaxRateLimitRps);
  if (r.per_caller_rps > kMaxRateLimitRps)
    return fmt::format("per_caller_requests_per_second {}: at most {}", r.per_caller_rps,
                       kMaxRateLimitRps);
  if (r.burst > kMaxRateLimitBurst)
    return fmt::format("burst {}: at most {}", r.burst, kMaxRateLimitBurst);
  if (r.per_caller_burst > kMaxRateLimitBurst)
    return fmt::format("per_caller_burst {}: at most {}", r.per_caller_burst, kMaxRateLimitBurst);
  if (r.burst > 0 && r.requests_per_second == 0) return "burst without requests_per_second";
  if (r.per_caller_burst > 0 && r.per_caller_rps == 0)
    return "per_caller_burst without per_caller_requests_per_second";
  return "";
}

}  // namespace weft::mesh
