// Load balancers over a cluster's endpoints. One instance per worker and
// cluster: not thread-safe by design (shared-nothing), no locks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "base/random.h"
#include "proxy/config.h"

namespace weft::proxy::upstream {

class LoadBalancer {
 public:
  // weights: one per endpoint, each >= 1.
  LoadBalancer(LbPolicy policy, std::vector<uint32_t> weights, uint64_t seed);

  // Picks an endpoint index. `active` holds the in-flight request count per
  // endpoint (used by least_request). `exclude` (or -1) is an endpoint to
  // avoid, for a retry; it is still returned when it is the only endpoint.
  size_t Pick(const std::vector<uint32_t>& active, long exclude = -1);

  size_t size() const { return weights_.size(); }

 private:
  size_t PickWeightedRandom();
  size_t PickRoundRobin();

  // Constant after construction.
  const LbPolicy policy_;
  const std::vector<uint32_t> weights_;
  std::vector<uint64_t> cumulative_;  // prefix sums of weights
  bool uniform_ = true;
  // Mutable pick state.
  std::vector<int64_t> current_;  // smooth weighted round robin
  size_t rr_next_ = 0;            // plain round robin (all weights equal)
  Rng rng_;
};

}  // namespace weft::proxy::upstream
