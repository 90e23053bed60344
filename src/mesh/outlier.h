// Outlier detection settings, as a TrafficPolicy's outlierDetection writes
// them and the proxy honours them (proxy/upstream/outlier.h): when an
// endpoint that keeps failing is taken out of its cluster's balancing, and
// for how long. One struct for the manifest, the compiler and the proxy.
#pragma once

#include <cstdint>
#include <string>

namespace weft::mesh {

struct OutlierDetection {
  bool enabled = true;
  uint32_t consecutive_5xx = 5;      // failures in a row that eject (0: off)
  uint32_t consecutive_gateway = 0;  // 502/503/504, connect failures, resets in a row (0: off)
  int64_t interval_ms = 10000;       // success-rate pass; one ejection paid back per interval
  int64_t base_ejection_ms = 30000;  // the first ejection; times the number of ejections after
  int64_t max_ejection_ms = 300000;
  uint32_t max_ejection_percent = 10;  // of the endpoints out at once (at least one may be)
  uint32_t min_health_percent = 50;    // below: ejections ignored (panic); 0: never
  uint32_t success_rate_min_hosts = 5;
  uint32_t success_rate_request_volume = 100;  // answers in an interval for an endpoint to count
  uint32_t success_rate_stdev_factor = 1900;   // thousandths (1.9); 0: no success-rate ejection
};

// Ranges every writer checks (manifest, bootstrap file, config stream).
inline constexpr uint32_t kMaxConsecutiveErrors = 1000;
inline constexpr int64_t kMinOutlierMs = 100;
inline constexpr int64_t kMaxOutlierIntervalMs = 3600000;       // 1 h (interval, base ejection)
inline constexpr int64_t kMaxOutlierEjectionMs = 24 * 3600000;  // 24 h
inline constexpr uint32_t kMaxStdevFactor = 100000;             // thousandths (100.0)

// "" when every field is within its range, else what is wrong, naming the
// field as the config stream does ("interval_ms 50: use 100 to 3600000").
std::string OutlierError(const OutlierDetection& o);

}  // namespace weft::mesh
