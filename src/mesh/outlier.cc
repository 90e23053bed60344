#include "mesh/outlier.h"

#include <fmt/format.h>

namespace weft::mesh {

std::string OutlierError(const OutlierDetection& o) {
  auto range = [](const char* field, int64_t v, int64_t min, int64_t max) -> std::string {
    if (v >= min && v <= max) return "";
    return fmt::format("{} {}: use {} to {}", field, v, min, max);
  };
  for (const std::string& e :
       {range("consecutive_5xx", o.consecutive_5xx, 0, kMaxConsecutiveErrors),
        range("consecutive_gateway_errors", o.consecutive_gateway, 0, kMaxConsecutiveErrors),
        range("interval_ms", o.interval_ms, kMinOutlierMs, kMaxOutlierIntervalMs),
        range("base_ejection_ms", o.base_ejection_ms, kMinOutlierMs, kMaxOutlierIntervalMs),
        range("max_ejection_ms", o.max_ejection_ms, o.base_ejection_ms, kMaxOutlierEjectionMs),
        range("max_ejection_percent", o.max_ejection_percent, 0, 100),
        range("min_health_percent", o.min_health_percent, 0, 100),
        range("success_rate_min_hosts", o.success_rate_min_hosts, 1, 100000),
        range("success_rate_request_volume", o.success_rate_request_volume, 1, 1000000),
        range("success_rate_stdev_factor", o.success_rate_stdev_factor, 0, kMaxStdevFactor)}) {
    if (!e.empty()) return e;
  }
  return "";
}

}  // namespace weft::mesh
