#include "proxy/tap.h"

#include <nlohmann/json.hpp>

namespace weft::proxy {

bool TapFilter::Matches(std::string_view r, std::string_view m, std::string_view p) const {
  if (!route.empty() && route != r) return false;
  if (!method.empty() && method != m) return false;
  return path_prefix.empty() || p.substr(0, path_prefix.size()) == path_prefix;
}

TapHub::TapHub(TapLimits limits, std::string service)
    : limits_(limits), service_(std::move(service)) {}

std::vector<TapFilter> TapHub::Filters(uint64_t* gen) const {
  std::lock_guard<std::mutex> l(mu_);
  *gen = gen_.load(std::memory_order_relaxed);
  std::vector<TapFilter> out;
  out.reserve(sessions_.size());
  for (const auto& [id, s] : sessions_) out.push_back(s.filter);
  return out;
}

bool TapHub::TakeBudget(int64_t now_ms) {
  // One word: the second (high 32 bits) and what is left of its budget
  // (low 32), so that a new second and a spend never interleave.
  const uint64_t second = static_cast<uint32_t>(now_ms / 1000);
  uint64_t seen = budget_.load(std::memory_order_relaxed);
  for (;;) {
    uint64_t left = (seen >> 32) == second ? (seen & 0xffffffffu) : limits_.rate;
    if (left == 0) {
      over_budget_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    if (budget_.compare_exchange_weak(seen, (second << 32) | (left - 1), std::memory_order_relaxed))
      return true;
  }
}

std::string TapRecordJson(const TapRecord& r, int64_t wall_ms) {
  using json = nlohmann::json;
  // Never the query: it may carry credentials.
  std::string_view path = r.path.substr(0, r.path.find('?'));
  if (path.size() > TapLimits::kMaxPath) path = path.substr(0, TapLimits::kMaxPath);
  auto str = [](std::string_view v) {
    // Bounded, whatever a client sent (a Host header can be long); bytes
    // that are not UTF-8 are replaced by dump().
    return json(std::string(v.substr(0, TapLimits::kMaxField)));
  };
  json j = {{"time_ms", wall_ms},
            {"direction", r.inbound ? "inbound" : "outbound"},
            {"listener", str(r.listener)},
            {"method", str(r.method)},
            {"authority", str(r.authority)},
            {"path", str(path)},
            {"status", r.status},
            {"grpc_status", r.grpc_status >= 0 ? json(r.grpc_status) : json(nullptr)},
            {"duration_ms", static_cast<double>(r.duration_us) / 1000.0},
            {"source", str(r.source)},
            {"destination", str(r.destination)},
            {"route", str(r.route)},
            {"upstream", str(r.upstream)},
            {"flags", str(r.flags)},
            {"trace_id", str(r.trace_id)}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

void TapHub::Offer(const TapRecord& r, int64_t wall_ms) {
  std::string ev = TapRecordJson(r, wall_ms);
  std::string_view path = r.path.substr(0, r.path.find('?'));
  std::lock_guard<std::mutex> l(mu_);
  for (auto& [id, s] : sessions_) {
    if (!s.filter.Matches(r.route, r.method, path)) continue;
    if (s.events.size() >= limits_.buffer) {
      s.events.pop_front();
      ++s.dropped;
      dropped_total_.fetch_add(1, std::memory_order_relaxed);
    }
    s.events.push_back(ev);
    events_.fetch_add(1, std::memory_order_relaxed);
  }
}

bool TapHub::Poll(const std::string& id, const TapFilter& filter, int64_t now_ms, std::string* out,
                  size_t* taken, uint64_t* dropped, std::string* err) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) {
    if (sessions_.size() >= limits_.max_sessions) {
      *err = "too many tap sessions open on this sidecar (at most " +
             std::to_string(limits_.max_sessions) + ")";
      return false;
    }
    it = sessions_.emplace(id, Session{}).first;
    it->second.filter = filter;
    Changed();
  } else if (it->second.filter.route != filter.route || it->second.filter.method != filter.method ||
             it->second.filter.path_prefix != filter.path_prefix) {
    // The same session with another filter: what it held no longer applies.
    it->second.filter = filter;
    it->second.events.clear();
    Changed();
  }
  Session& s = it->second;
  s.last_poll_ms = now_ms;
  *taken = 0;
  for (std::string& ev : s.events) {
    if (*taken) out->push_back(',');
    out->append(ev);
    ++*taken;
  }
  s.events.clear();
  *dropped = std::exchange(s.dropped, 0);
  return true;
}

void TapHub::Expire(int64_t now_ms) {
  std::lock_guard<std::mutex> l(mu_);
  bool changed = false;
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    if (now_ms - it->second.last_poll_ms > limits_.idle_ms) {
      it = sessions_.erase(it);
      changed = true;
    } else {
      ++it;
    }
  }
  if (changed) Changed();
}

size_t TapHub::sessions() const {
  std::lock_guard<std::mutex> l(mu_);
  return sessions_.size();
}

void TapHub::Changed() {
  gen_.fetch_add(1, std::memory_order_release);
  active_.store(!sessions_.empty(), std::memory_order_relaxed);
}

}  // namespace weft::proxy
