// Outlier detection: endpoints that keep failing are taken out of their
// cluster's balancing for a while (ejected), then put back.
//
// One detector per cluster and config snapshot, shared by every worker (an
// endpoint that fails on one worker is failing for all of them). The request
// path touches it with relaxed atomics only: an answer that is not a failure
// reads one counter and writes nothing unless a failure run was in progress;
// success-rate counts go to the answering worker's own slots. Ejecting and
// returning an endpoint, and the periodic success-rate pass, take a mutex:
// they are rare by construction.
//
// - consecutive 5xx: `consecutive_5xx` failures in a row (a 5xx answer, a
//   failed connect, a reset or a timeout) eject the endpoint;
// - consecutive gateway errors: the same with only 502, 503, 504, failed
//   connects, resets and timeouts;
// - success rate: every `interval`, among the endpoints with at least
//   `request_volume` answers in it (at least `min_hosts` of them), those
//   whose success rate is below mean - stdev_factor x standard deviation.
//
// An ejection lasts base_ejection x (times ejected), at most max_ejection;
// the count of times goes down by one for each interval spent in service.
// At most max_ejection_percent of the endpoints are out at once (at least
// one may always be). When fewer than min_health_percent of the endpoints
// are in service the balancer ignores ejections (panic).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/counter.h"
#include "proxy/config.h"

namespace weft::proxy::upstream {

// What an attempt on an endpoint came to.
enum class Outcome : uint8_t {
  kSuccess,  // an answer below 500
  k5xx,      // 500, 501, 505..599
  kGateway,  // 502, 503, 504, a failed connect, a reset, a timeout
};
Outcome OutcomeOf(int status);

enum class EjectReason : uint8_t { kConsecutive5xx, kConsecutiveGateway, kSuccessRate, kCount };
const char* EjectReasonName(EjectReason r);

// What a worker counts (its own slots: one writer each).
struct OutlierCounters {
  Counter* ejections[static_cast<size_t>(EjectReason::kCount)] = {};
  Counter* overflow = nullptr;  // ejections the cap refused
  Counter* returns = nullptr;   // endpoints put back
};

class OutlierDetector {
 public:
  // `addresses`: the cluster's endpoints, by index. `previous` (may be
  // null): the detector of the snapshot before, whose state for endpoints
  // of the same address carries over (an ejected endpoint stays ejected
  // across a config update).
  OutlierDetector(std::string cluster, const std::vector<std::string>& addresses,
                  const OutlierConfig& cfg, size_t workers, const OutlierDetector* previous,
                  int64_t now_ms);

  // Records an attempt's outcome on `ep`, seen by worker `worker`. May eject
  // it (or, once per interval, run the success-rate pass).
  void Record(size_t worker, size_t ep, Outcome o, int64_t now_ms, const OutlierCounters& c);

  // Incremented by every ejection and return: a worker whose view is older
  // rebuilds it with View().
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  // Per endpoint, until when it is out (0: in service), and whether the
  // cluster is in panic (ejections ignored). Returns the generation read.
  uint64_t View(std::vector<int64_t>* until, bool* panic) const;
  // Puts `ep` back if its ejection has run out (first caller only).
  void MaybeReturn(size_t ep, int64_t now_ms, const OutlierCounters& c);

  // Endpoints out now (for the admin view and the gauge).
  size_t EjectedNow(int64_t now_ms) const;
  bool enabled() const { return cfg_.enabled; }
  size_t size() const { return hosts_.size(); }

 private:
  struct Host {
    std::string address;
    std::atomic<uint32_t> consecutive_5xx{0}, consecutive_gateway{0};
    std::atomic<int64_t> until_ms{0};  // ejected until (0: in service)
    // Under mu_: how many times ejected (decays), when it last returned,
    // and the success-rate totals at the last pass.
    uint32_t times = 0;
    int64_t returned_ms = 0;
    uint64_t last_total = 0, last_ok = 0;
  };
  // One worker's success-rate counts (its own cache lines).
  struct alignas(64) Slots {
    std::unique_ptr<Counter[]> total, ok;
  };
  void Eject(size_t ep, EjectReason why, int64_t now_ms, const OutlierCounters& c);  // mu_ held
  void SuccessRatePass(int64_t now_ms, const OutlierCounters& c);

  const std::string cluster_;
  const OutlierConfig cfg_;
  std::vector<std::unique_ptr<Host>> hosts_;
  std::vector<Slots> slots_;  // by worker
  const bool success_rate_;   // configured and enough endpoints for it
  std::atomic<uint64_t> generation_{1};
  std::atomic<int64_t> next_pass_ms_;
  mutable std::mutex mu_;
};

}  // namespace weft::proxy::upstream
