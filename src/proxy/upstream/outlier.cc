#include "proxy/upstream/outlier.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "base/log.h"

namespace weft::proxy::upstream {

Outcome OutcomeOf(int status) {
  if (status >= 502 && status <= 504) return Outcome::kGateway;
  if (status >= 500) return Outcome::k5xx;
  return Outcome::kSuccess;
}

const char* EjectReasonName(EjectReason r) {
  switch (r) {
    case EjectReason::kConsecutive5xx:
      return "consecutive_5xx";
    case EjectReason::kConsecutiveGateway:
      return "consecutive_gateway_errors";
    case EjectReason::kSuccessRate:
      return "success_rate";
    case EjectReason::kCount:
      break;
  }
  return "unknown";
}

OutlierDetector::OutlierDetector(std::string cluster, const std::vector<std::string>& addresses,
                                 const OutlierConfig& cfg, size_t workers,
                                 const OutlierDetector* previous, int64_t now_ms)
    : cluster_(std::move(cluster)),
      cfg_(cfg),
      slots_(std::max<size_t>(workers, 1)),
      success_rate_(cfg.enabled && cfg.success_rate_stdev_factor > 0 &&
                    addresses.size() >= std::max<uint32_t>(cfg.success_rate_min_hosts, 1)),
      next_pass_ms_(now_ms + cfg.interval_ms) {
  std::map<std::string_view, const Host*> before;
  std::unique_lock<std::mutex> lock;
  if (previous) {
    lock = std::unique_lock<std::mutex>(previous->mu_);
    for (const auto& h : previous->hosts_) before.emplace(h->address, h.get());
  }
  for (const auto& a : addresses) {
    auto h = std::make_unique<Host>();
    h->address = a;
    if (auto it = before.find(a); it != before.end()) {
      const Host& o = *it->second;
      h->consecutive_5xx = o.consecutive_5xx.load(std::memory_order_relaxed);
      h->consecutive_gateway = o.consecutive_gateway.load(std::memory_order_relaxed);
      h->until_ms = cfg.enabled ? o.until_ms.load(std::memory_order_relaxed) : 0;
      h->times = o.times;
      h->returned_ms = o.returned_ms;
    }
    hosts_.push_back(std::move(h));
  }
  if (success_rate_) {
    for (Slots& s : slots_) {
      s.total = std::make_unique<Counter[]>(hosts_.size());
      s.ok = std::make_unique<Counter[]>(hosts_.size());
    }
  }
}

void OutlierDetector::Record(size_t worker, size_t ep, Outcome o, int64_t now_ms,
                             const OutlierCounters& c) {
  if (!cfg_.enabled || ep >= hosts_.size()) return;
  Host& h = *hosts_[ep];
  if (success_rate_ && worker < slots_.size()) {
    slots_[worker].total[ep].Inc();
    if (o == Outcome::kSuccess) slots_[worker].ok[ep].Inc();
  }
  if (o == Outcome::kSuccess) {
    // The common case reads and writes nothing shared but these loads.
    if (h.consecutive_5xx.load(std::memory_order_relaxed) != 0)
      h.consecutive_5xx.store(0, std::memory_order_relaxed);
    if (h.consecutive_gateway.load(std::memory_order_relaxed) != 0)
      h.consecutive_gateway.store(0, std::memory_order_relaxed);
  } else {
    const uint32_t n5 = h.consecutive_5xx.fetch_add(1, std::memory_order_relaxed) + 1;
    uint32_t ng = 0;
    if (o == Outcome::kGateway) {
      ng = h.consecutive_gateway.fetch_add(1, std::memory_order_relaxed) + 1;
    } else if (h.consecutive_gateway.load(std::memory_order_relaxed) != 0) {
      h.consecutive_gateway.store(0, std::memory_order_relaxed);
    }
    const bool by5 = cfg_.consecutive_5xx > 0 && n5 >= cfg_.consecutive_5xx;
    const bool bygw = cfg_.consecutive_gateway > 0 && ng >= cfg_.consecutive_gateway;
    if ((by5 || bygw) && h.until_ms.load(std::memory_order_relaxed) == 0) {
      std::lock_guard<std::mutex> l(mu_);
      Eject(ep, bygw ? EjectReason::kConsecutiveGateway : EjectReason::kConsecutive5xx, now_ms, c);
    }
  }
  if (success_rate_ && now_ms >= next_pass_ms_.load(std::memory_order_relaxed)) {
    int64_t due = next_pass_ms_.load(std::memory_order_relaxed);
    if (now_ms >= due && next_pass_ms_.compare_exchange_strong(due, now_ms + cfg_.interval_ms,
                                                               std::memory_order_relaxed)) {
      SuccessRatePass(now_ms, c);
    }
  }
}

void OutlierDetector::Eject(size_t ep, EjectReason why, int64_t now_ms, const OutlierCounters& c) {
  Host& h = *hosts_[ep];
  if (h.until_ms.load(std::memory_order_relaxed) != 0) return;  // already out
  // The cap: at most this share of the cluster out at once (one may
  // always be).
  size_t out = 0;
  for (const auto& o : hosts_) out += o->until_ms.load(std::memory_order_relaxed) > now_ms;
  const size_t cap =
      std::max<size_t>(1, hosts_.size() * std::min<uint32_t>(cfg_.max_ejection_percent, 100) / 100);
  if (out >= cap) {
    if (c.overflow) c.overflow->Inc();
    LOG_WARN_LIMITED(
        "cluster {}: endpoint {} would be ejected ({}), but {} of {} already are "
        "(max_ejection_percent {})",
        cluster_, h.address, EjectReasonName(why), out, hosts_.size(), cfg_.max_ejection_percent);
    h.consecutive_5xx.store(0, std::memory_order_relaxed);
    h.consecutive_gateway.store(0, std::memory_order_relaxed);
    return;
  }
  // Time in service since the last return pays back one ejection per
  // interval; each ejection adds one.
  if (h.times > 0 && cfg_.interval_ms > 0) {
    const int64_t paid = (now_ms - h.returned_ms) / cfg_.interval_ms;
    h.times = paid >= h.times ? 0 : h.times - static_cast<uint32_t>(paid);
  }
  ++h.times;
  const int64_t span = std::min<int64_t>(cfg_.base_ejection_ms * h.times,
                                         std::max(cfg_.max_ejection_ms, cfg_.base_ejection_ms));
  h.until_ms.store(now_ms + span, std::memory_order_relaxed);
  h.consecutive_5xx.store(0, std::memory_order_relaxed);
  h.consecutive_gateway.store(0, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  if (c.ejections[static_cast<size_t>(why)]) c.ejections[static_cast<size_t>(why)]->Inc();
  LOG_WARN("cluster {}: endpoint {} ejected for {} ms ({}, ejection {})", cluster_, h.address, span,
           EjectReasonName(why), h.times);
}

void OutlierDetector::MaybeReturn(size_t ep, int64_t now_ms, const OutlierCounters& c) {
  if (ep >= hosts_.size()) return;
  Host& h = *hosts_[ep];
  std::lock_guard<std::mutex> l(mu_);
  const int64_t until = h.until_ms.load(std::memory_order_relaxed);
  if (until == 0 || until > now_ms) return;
  h.until_ms.store(0, std::memory_order_relaxed);
  h.returned_ms = now_ms;
  generation_.fetch_add(1, std::memory_order_release);
  if (c.returns) c.returns->Inc();
  LOG_INFO("cluster {}: endpoint {} back in service", cluster_, h.address);
}

uint64_t OutlierDetector::View(std::vector<int64_t>* until, bool* panic) const {
  const uint64_t gen = generation_.load(std::memory_order_acquire);
  until->resize(hosts_.size());
  size_t out = 0;
  for (size_t i = 0; i < hosts_.size(); ++i) {
    (*until)[i] = hosts_[i]->until_ms.load(std::memory_order_relaxed);
    out += (*until)[i] != 0;
  }
  // Panic: too few in service; the balancer then uses every endpoint.
  const size_t in = hosts_.size() - out;
  *panic = out > 0 && in * 100 < hosts_.size() * cfg_.min_health_percent;
  if (hosts_.size() > 0 && in == 0) *panic = true;
  return gen;
}

size_t OutlierDetector::EjectedNow(int64_t now_ms) const {
  size_t out = 0;
  for (const auto& h : hosts_) out += h->until_ms.load(std::memory_order_relaxed) > now_ms;
  return out;
}

void OutlierDetector::SuccessRatePass(int64_t now_ms, const OutlierCounters& c) {
  std::lock_guard<std::mutex> l(mu_);
  struct Rate {
    size_t ep;
    double rate;
  };
  std::vector<Rate> rates;
  for (size_t i = 0; i < hosts_.size(); ++i) {
    Host& h = *hosts_[i];
    uint64_t total = 0, ok = 0;
    for (const Slots& s : slots_) {
      total += s.total[i].Get();
      ok += s.ok[i].Get();
    }
    const uint64_t dt = total - h.last_total, dok = ok - h.last_ok;
    h.last_total = total;
    h.last_ok = ok;
    if (h.until_ms.load(std::memory_order_relaxed) != 0) continue;
    if (dt >= std::max<uint32_t>(cfg_.success_rate_request_volume, 1))
      rates.push_back({i, static_cast<double>(dok) / static_cast<double>(dt)});
  }
  if (rates.size() < std::max<uint32_t>(cfg_.success_rate_min_hosts, 1)) return;
  double mean = 0;
  for (const Rate& r : rates) mean += r.rate;
  mean /= static_cast<double>(rates.size());
  double var = 0;
  for (const Rate& r : rates) var += (r.rate - mean) * (r.rate - mean);
  const double stdev = std::sqrt(var / static_cast<double>(rates.size()));
  const double floor = mean - stdev * cfg_.success_rate_stdev_factor / 1000.0;
  for (const Rate& r : rates) {
    if (r.rate < floor) {
      LOG_INFO(
          "cluster {}: endpoint {} success rate {:.1f}% is below the cluster's {:.1f}% - {:.2f} "
          "x {:.1f}%",
          cluster_, hosts_[r.ep]->address, r.rate * 100, mean * 100,
          cfg_.success_rate_stdev_factor / 1000.0, stdev * 100);
      Eject(r.ep, EjectReason::kSuccessRate, now_ms, c);
    }
  }
}

}  // namespace weft::proxy::upstream
