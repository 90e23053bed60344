// Load balancers over a cluster's endpoints. One instance per worker and
// cluster: not thread-safe by design (shared-nothing), no locks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/random.h"
#include "proxy/config.h"

namespace weft::proxy::upstream {

// ewma (the default): peak-EWMA with power of two choices. Each endpoint
// has a latency estimate that jumps at once to any slower observation and
// otherwise follows faster ones, and drifts toward zero while the endpoint
// gets no traffic, with time constant `decay_ms` (so a slow endpoint that
// stopped being chosen is tried again, and kept if it recovered). Of two
// weighted-random candidates the one with the lower estimate x (requests in
// flight + 1) / weight wins (within 25 %, a tie: fewer in flight, else
// either). Failures (5xx, resets, connect failures) count
// as a slow answer (kFailurePenaltyNs), so an endpoint that fails fast does
// not draw traffic.
class LoadBalancer {
 public:
  static constexpr int64_t kFailurePenaltyNs = 1'000'000'000;  // 1 s
  static constexpr int64_t kDefaultDecayMs = 10'000;
  // Two candidates whose costs are within this factor count as equal: the
  // one with fewer requests in flight wins, else either at random.
  static constexpr double kTie = 1.25;

  // weights: one per endpoint, each >= 1. ring_hash and maglev: `keys`
  // names each endpoint (its address: the same key lands on the same
  // endpoint in every worker and proxy), `table_size` is the ring's points
  // per unit of weight, or Maglev's table entries (a prime).
  LoadBalancer(LbPolicy policy, std::vector<uint32_t> weights, uint64_t seed,
               int64_t decay_ms = kDefaultDecayMs, const std::vector<std::string>& keys = {},
               uint32_t table_size = 0);

  // A stable 64-bit hash (the same in every process and release): of
  // request keys and of endpoint names.
  static uint64_t Hash(std::string_view s, uint64_t seed = 0);

  // Picks an endpoint index. `active` holds the in-flight request count per
  // endpoint (used by least_request and ewma). `exclude` (or -1) is an
  // endpoint to avoid, for a retry; it is still returned when it is the
  // only endpoint. `skip` (may be null): per endpoint, nonzero for those out
  // of service (ejected); one of them is returned only when all are.
  // `hash` (ring_hash and maglev; may be null: a random one) is the
  // request's key hash: the same hash gets the same endpoint while it is in
  // service; otherwise the next one on the ring.
  size_t Pick(const std::vector<uint32_t>& active, long exclude = -1,
              const std::vector<uint8_t>* skip = nullptr, const uint64_t* hash = nullptr);

  // ewma: an answer from `ep` after `rtt_ns`, or a failure. `now_ns` is
  // MonoNanos(). No-ops for the other policies.
  void Observe(size_t ep, int64_t rtt_ns, int64_t now_ns);
  void ObserveFailure(size_t ep, int64_t now_ns) { Observe(ep, kFailurePenaltyNs, now_ns); }
  // The estimate of `ep` now, in ns (0: nothing observed).
  double Estimate(size_t ep, int64_t now_ns) const;
  // Takes endpoint `from`'s estimate of `old` (a config reload keeps what
  // was learnt about an endpoint that stays).
  void Inherit(size_t ep, const LoadBalancer& old, size_t from);

  size_t size() const { return weights_.size(); }
  LbPolicy policy() const { return policy_; }

 private:
  size_t PickWeightedRandom();
  size_t PickRoundRobin();
  size_t PickTwo(const std::vector<uint32_t>& active, const std::vector<uint8_t>* skip);
  template <typename Usable>
  size_t PickHashed(uint64_t hash, Usable usable);
  struct Ewma {
    double ns = 0;   // the estimate when last updated
    int64_t at = 0;  // MonoNanos() of that update (0: never)
  };

  // Constant after construction.
  const LbPolicy policy_;
  const std::vector<uint32_t> weights_;
  std::vector<uint64_t> cumulative_;  // prefix sums of weights
  bool uniform_ = true;
  // Mutable pick state.
  std::vector<int64_t> current_;  // smooth weighted round robin
  size_t rr_next_ = 0;            // plain round robin (all weights equal)
  Rng rng_;
  const double decay_ns_;
  std::vector<Ewma> ewma_;  // ewma only: per endpoint
  // ring_hash: points (hash, endpoint) sorted by hash; maglev: the lookup
  // table (endpoint per slot).
  std::vector<std::pair<uint64_t, uint32_t>> ring_;
  std::vector<uint32_t> maglev_;
};

}  // namespace weft::proxy::upstream
