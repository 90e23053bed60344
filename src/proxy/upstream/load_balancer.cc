#include "proxy/upstream/load_balancer.h"

#include <algorithm>

namespace weft::proxy::upstream {

LoadBalancer::LoadBalancer(LbPolicy policy, std::vector<uint32_t> weights, uint64_t seed)
    : policy_(policy), weights_(std::move(weights)), current_(weights_.size(), 0), rng_(seed) {
  uint64_t sum = 0;
  for (uint32_t w : weights_) {
    sum += w;
    cumulative_.push_back(sum);
    if (w != weights_[0]) uniform_ = false;
  }
  // Start round robin at a random place so workers do not move in lockstep.
  if (!weights_.empty()) rr_next_ = rng_.Below(weights_.size());
}

size_t LoadBalancer::PickWeightedRandom() {
  if (uniform_) return rng_.Below(weights_.size());
  uint64_t r = rng_.Below(cumulative_.back());
  return static_cast<size_t>(std::upper_bound(cumulative_.begin(), cumulative_.end(), r) -
                             cumulative_.begin());
}

size_t LoadBalancer::PickRoundRobin() {
  if (uniform_) {
    size_t i = rr_next_;
    rr_next_ = (rr_next_ + 1) % weights_.size();
    return i;
  }
  // Smooth weighted round robin: spreads heavier endpoints evenly over the cycle.
  int64_t total = 0;
  size_t best = 0;
  for (size_t i = 0; i < weights_.size(); ++i) {
    current_[i] += weights_[i];
    total += weights_[i];
    if (current_[i] > current_[best]) best = i;
  }
  current_[best] -= total;
  return best;
}

size_t LoadBalancer::Pick(const std::vector<uint32_t>& active, long exclude) {
  const size_t n = weights_.size();
  if (n == 1) return 0;
  size_t pick = 0;
  for (int attempt = 0; attempt < 4; ++attempt) {
    switch (policy_) {
      case LbPolicy::kRoundRobin:
        pick = PickRoundRobin();
        break;
      case LbPolicy::kRandom:
        pick = PickWeightedRandom();
        break;
      case LbPolicy::kLeastRequest: {
        // Power of two choices: of two weighted-random candidates take the one
        // with fewer requests in flight per unit of weight.
        size_t a = PickWeightedRandom();
        size_t b = PickWeightedRandom();
        if (a == b) b = (a + 1 + rng_.Below(n - 1)) % n;
        uint64_t la = static_cast<uint64_t>(active[a]) * weights_[b];
        uint64_t lb = static_cast<uint64_t>(active[b]) * weights_[a];
        pick = (la < lb || (la == lb && weights_[a] >= weights_[b])) ? a : b;
        break;
      }
    }
    if (static_cast<long>(pick) != exclude) return pick;
  }
  // Every attempt hit the excluded endpoint: take its neighbour.
  return (pick + 1) % n;
}

}  // namespace weft::proxy::upstream
