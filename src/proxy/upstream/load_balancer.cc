#include "proxy/upstream/load_balancer.h"

#include <algorithm>
#include <cmath>

#include "base/time.h"
#include "mesh/hash_policy.h"

namespace weft::proxy::upstream {

uint64_t LoadBalancer::Hash(std::string_view s, uint64_t seed) {
  // FNV-1a, then a 64-bit finalizer (splitmix64's) so that close inputs
  // ("10.0.0.1:80_3", "..._4") land far apart.
  uint64_t h = 1469598103934665603ULL ^ seed;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  return h ^ (h >> 31);
}

LoadBalancer::LoadBalancer(LbPolicy policy, std::vector<uint32_t> weights, uint64_t seed,
                           int64_t decay_ms, const std::vector<std::string>& keys,
                           uint32_t table_size)
    : policy_(policy),
      weights_(std::move(weights)),
      current_(weights_.size(), 0),
      rng_(seed),
      decay_ns_(static_cast<double>(std::max<int64_t>(decay_ms, 1)) * 1e6) {
  if (policy_ == LbPolicy::kEwma) ewma_.resize(weights_.size());
  uint64_t sum = 0;
  for (uint32_t w : weights_) {
    sum += w;
    cumulative_.push_back(sum);
    if (w != weights_[0]) uniform_ = false;
  }
  // Start round robin at a random place so workers do not move in lockstep.
  if (!weights_.empty()) rr_next_ = rng_.Below(weights_.size());
  const size_t n = weights_.size();
  if (n == 0 || keys.size() != n) return;
  if (policy_ == LbPolicy::kRingHash) {
    // `table_size` points per unit of weight, the same whoever else is in
    // the cluster: an endpoint that leaves takes only its own points (and
    // keys) with it. A huge total is scaled down evenly. A point is the
    // hash of "NAME_i".
    const uint64_t total = cumulative_.back() * std::max<uint32_t>(table_size, 1);
    const double scale = total > mesh::kMaxRingTotal
                             ? static_cast<double>(mesh::kMaxRingTotal) / static_cast<double>(total)
                             : 1.0;
    for (size_t e = 0; e < n; ++e) {
      const uint64_t points =
          std::max<uint64_t>(1, static_cast<uint64_t>(static_cast<double>(weights_[e]) *
                                                      std::max<uint32_t>(table_size, 1) * scale));
      for (uint64_t i = 0; i < points; ++i)
        ring_.emplace_back(Hash(keys[e] + "_" + std::to_string(i)), static_cast<uint32_t>(e));
    }
    std::sort(ring_.begin(), ring_.end());
  } else if (policy_ == LbPolicy::kMaglev) {
    // Maglev: each endpoint walks its own permutation of the table (from
    // offset by skip, both from its name) and takes the next free slot in
    // turn; a heavier endpoint takes turns more often.
    const uint64_t m = std::max<uint32_t>(table_size, 2);
    std::vector<uint64_t> offset(n), skip(n), next(n, 0);
    for (size_t e = 0; e < n; ++e) {
      offset[e] = Hash(keys[e], 1) % m;
      skip[e] = Hash(keys[e], 2) % (m - 1) + 1;
    }
    uint32_t max_w = *std::max_element(weights_.begin(), weights_.end());
    std::vector<double> credit(n, 0);
    maglev_.assign(m, UINT32_MAX);
    uint64_t filled = 0;
    while (filled < m) {
      for (size_t e = 0; e < n && filled < m; ++e) {
        credit[e] += static_cast<double>(weights_[e]) / max_w;
        if (credit[e] < 1) continue;
        credit[e] -= 1;
        uint64_t slot;
        do {
          slot = (offset[e] + next[e] * skip[e]) % m;
          ++next[e];
        } while (maglev_[slot] != UINT32_MAX);
        maglev_[slot] = static_cast<uint32_t>(e);
        ++filled;
      }
    }
  }
}

template <typename Usable>
size_t LoadBalancer::PickHashed(uint64_t hash, Usable usable) {
  const size_t n = weights_.size();
  if (!ring_.empty()) {
    // The first point at or after the hash (wrapping), then on around the
    // ring past endpoints to avoid.
    auto it = std::lower_bound(ring_.begin(), ring_.end(), std::make_pair(hash, uint32_t{0}));
    size_t i = static_cast<size_t>(it - ring_.begin()) % ring_.size();
    for (size_t k = 0; k < ring_.size(); ++k) {
      const uint32_t e = ring_[(i + k) % ring_.size()].second;
      if (usable(e)) return e;
    }
    return ring_[i].second;
  }
  if (!maglev_.empty()) {
    // The key's slot; for an endpoint to avoid, the slots of rehashes of
    // the key (so keys of a failed endpoint spread over the others).
    for (uint64_t k = 0; k < 8; ++k) {
      const uint32_t e = maglev_[(k == 0 ? hash : Hash(std::to_string(hash), k)) % maglev_.size()];
      if (usable(e)) return e;
    }
    return maglev_[hash % maglev_.size()];
  }
  return static_cast<size_t>(hash % n);
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

double LoadBalancer::Estimate(size_t ep, int64_t now_ns) const {
  if (ep >= ewma_.size() || ewma_[ep].at == 0) return 0;
  const Ewma& e = ewma_[ep];
  const double idle = static_cast<double>(std::max<int64_t>(now_ns - e.at, 0));
  return e.ns * std::exp(-idle / decay_ns_);
}

void LoadBalancer::Observe(size_t ep, int64_t rtt_ns, int64_t now_ns) {
  if (ep >= ewma_.size()) return;
  Ewma& e = ewma_[ep];
  const double rtt = static_cast<double>(std::max<int64_t>(rtt_ns, 1));
  if (e.at == 0) {
    e.ns = rtt;
  } else {
    // The same weight moves the estimate toward a new answer and, between
    // answers, toward zero: what counts is how long ago the last one was.
    const double w =
        std::exp(-static_cast<double>(std::max<int64_t>(now_ns - e.at, 0)) / decay_ns_);
    const double decayed = e.ns * w;
    e.ns = rtt > decayed ? rtt : decayed + (1 - w) * rtt;
  }
  e.at = now_ns;
}

void LoadBalancer::Inherit(size_t ep, const LoadBalancer& old, size_t from) {
  if (ep < ewma_.size() && from < old.ewma_.size()) ewma_[ep] = old.ewma_[from];
}

size_t LoadBalancer::PickTwo(const std::vector<uint32_t>& active,
                             const std::vector<uint8_t>* skip) {
  const size_t n = weights_.size();
  size_t a = PickWeightedRandom();
  size_t b = PickWeightedRandom();
  if (skip != nullptr) {
    // Candidates among the endpoints not skipped (a few draws; the caller
    // copes with a skipped one).
    for (int k = 0; k < 8 && (*skip)[a] != 0; ++k) a = PickWeightedRandom();
    for (int k = 0; k < 8 && ((*skip)[b] != 0 || b == a); ++k) b = PickWeightedRandom();
  }
  if (a == b) b = (a + 1 + rng_.Below(n - 1)) % n;
  if (policy_ == LbPolicy::kEwma) {
    // Cost: estimate x (in flight + 1) / weight. An endpoint with nothing
    // observed yet borrows the other's estimate: requests in flight decide.
    // A tie goes to the unknown one: its first answer is worth having.
    const int64_t now = MonoNanos();
    double ea = Estimate(a, now), eb = Estimate(b, now);
    const bool unknown_a = ea == 0, unknown_b = eb == 0;
    if (ea == 0) ea = eb > 0 ? eb : 1;
    if (eb == 0) eb = ea;
    const double ca = ea * (active[a] + 1) / weights_[a];
    const double cb = eb * (active[b] + 1) / weights_[b];
    // Costs within kTie of each other are the same: healthy endpoints share
    // the traffic instead of the one a little faster (by noise) taking all
    // of it; a slow or failing one is far outside.
    if (ca > cb * kTie) return b;
    if (cb > ca * kTie) return a;
    if (unknown_a != unknown_b) return unknown_a ? a : b;
    if (active[a] != active[b]) return active[a] < active[b] ? a : b;
    return rng_.Below(2) == 0 ? a : b;
  }
  const uint64_t la = static_cast<uint64_t>(active[a]) * weights_[b];
  const uint64_t lb = static_cast<uint64_t>(active[b]) * weights_[a];
  return (la < lb || (la == lb && weights_[a] >= weights_[b])) ? a : b;
}

size_t LoadBalancer::Pick(const std::vector<uint32_t>& active, long exclude,
                          const std::vector<uint8_t>* skip, const uint64_t* hash) {
  const size_t n = weights_.size();
  if (n == 1) return 0;
  auto usable = [&](size_t i) {
    return static_cast<long>(i) != exclude && (skip == nullptr || (*skip)[i] == 0);
  };
  if (policy_ == LbPolicy::kRingHash || policy_ == LbPolicy::kMaglev) {
    const size_t pick = PickHashed(hash ? *hash : rng_.Next(), usable);
    if (usable(pick)) return pick;
    for (size_t k = 1; k < n; ++k)
      if (usable((pick + k) % n)) return (pick + k) % n;
    return pick;
  }
  size_t pick = 0;
  for (int attempt = 0; attempt < 4; ++attempt) {
    switch (policy_) {
      case LbPolicy::kRoundRobin:
        pick = PickRoundRobin();
        break;
      case LbPolicy::kRandom:
        pick = PickWeightedRandom();
        break;
      case LbPolicy::kRingHash:
      case LbPolicy::kMaglev:  // handled above
      case LbPolicy::kLeastRequest:
      case LbPolicy::kEwma:
        // Power of two choices: of two weighted-random candidates take the
        // cheaper (fewer requests in flight per unit of weight; for ewma,
        // times the latency estimate).
        pick = PickTwo(active, skip);
        break;
    }
    if (usable(pick)) return pick;
  }
  // Every attempt hit an endpoint to avoid: the next one that is not, else
  // the next one in service (a retry may go back to the one that failed),
  // else the pick.
  for (size_t k = 1; k < n; ++k)
    if (usable((pick + k) % n)) return (pick + k) % n;
  if (skip != nullptr)
    for (size_t k = 0; k < n; ++k)
      if ((*skip)[(pick + k) % n] == 0) return (pick + k) % n;
  return pick;
}

}  // namespace weft::proxy::upstream
