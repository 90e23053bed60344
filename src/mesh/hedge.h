// Hedged requests, as a TrafficPolicy's or a Route rule's retries.hedge
// writes them and the proxy honours them (proxy/hedge.h): a request still
// unanswered after `delay_ms`, or after its instance's recent p95, is sent
// once more to another instance; the first answer the retry policy would
// not retry wins and the other attempt is cancelled. One struct for the
// manifest, the compiler and the proxy.
#pragma once

#include <cstdint>
#include <string>

namespace YAML {
class Node;
}

namespace weft::mesh {

inline constexpr int64_t kMaxHedgeDelayMs = 3600000;

struct Hedge {
  int64_t delay_ms = 0;  // a fixed delay (1 ms to 1 h); 0: none
  bool p95 = false;      // the first attempt's instance's recent p95
  bool any() const { return delay_ms > 0 || p95; }
  bool operator==(const Hedge&) const = default;
};

// `hedge: {delay: 50ms | p95}` at `at` (errors name it).
Hedge ParseHedge(const YAML::Node& n, const std::string& at);

}  // namespace weft::mesh
