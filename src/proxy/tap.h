// Live requests ("tap"): a sample of the exchanges a sidecar finishes, for
// `weft tap` and the dashboard, read from the admin endpoint
// `GET /tap?id=ID[&route=R][&method=M][&path=PREFIX][&wait_ms=W]`.
//
// A tap session is a client's filter plus a bounded buffer of what matched.
// It opens on its first poll and closes when nobody has polled it for
// TapLimits::idle_ms. Each poll takes what the buffer holds (JSON, one object
// per event), waiting up to wait_ms for the first.
//
// Cost. With no session open, a finished exchange reads one atomic flag.
// With sessions open, the worker matches the exchange against its own copy
// of the filters (refreshed when a session opens or closes), and only a
// match spends the sidecar's budget (TapLimits::rate events per second, all
// sessions together); only an exchange within the budget is copied out,
// under the hub's lock. Paths go without their query string, and no header
// value is ever copied: tap shows who called what, never what was sent.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace weft::proxy {

struct TapLimits {
  uint32_t rate = 100;         // events per second copied out, all sessions together
  size_t max_sessions = 16;    // sessions open at once; one more is refused (429)
  size_t buffer = 1000;        // events a session holds between polls (older ones dropped)
  int64_t idle_ms = 10000;     // a session nobody polled for this long closes
  int64_t max_wait_ms = 5000;  // the longest a poll waits for a first event
  static constexpr size_t kMaxPath = 256;   // bytes of path an event keeps
  static constexpr size_t kMaxField = 256;  // of any other string
};

struct TapFilter {
  std::string route, method, path_prefix;  // "": any
  bool Matches(std::string_view route, std::string_view method, std::string_view path) const;
};

// One finished exchange, as the worker hands it over (views valid for the
// call only).
struct TapRecord {
  bool inbound = false;
  std::string_view listener, method, authority, path, route, destination, source, upstream, flags;
  int status = 0;
  int grpc_status = -1;  // -1: not gRPC or none
  int64_t duration_us = 0;
  std::string_view trace_id;  // 32 hex digits or ""
};

class TapHub {
 public:
  // `service`: the sidecar's service (the destination of what comes in,
  // the source of what goes out).
  explicit TapHub(TapLimits limits = {}, std::string service = "");
  const std::string& service() const { return service_; }

  // Any thread: whether a session is open (one relaxed load).
  bool active() const { return active_.load(std::memory_order_relaxed); }
  // Bumped whenever the set of filters changes.
  uint64_t generation() const { return gen_.load(std::memory_order_acquire); }
  // The filters now open (a worker's copy; taken under the lock).
  std::vector<TapFilter> Filters(uint64_t* gen) const;
  // Spends one event of the budget; false when this second's is spent.
  bool TakeBudget(int64_t now_ms);
  // Hands a matching record to every session whose filter it matches.
  void Offer(const TapRecord& r, int64_t wall_ms);

  // The admin loop. The events session `id` holds, taken (JSON objects
  // appended to *out, comma-separated), opening it with `filter` when new;
  // *dropped: events this session lost since the last poll. False (and
  // *err) when a new session would exceed max_sessions.
  bool Poll(const std::string& id, const TapFilter& filter, int64_t now_ms, std::string* out,
            size_t* taken, uint64_t* dropped, std::string* err);
  // Closes sessions idle past idle_ms.
  void Expire(int64_t now_ms);

  const TapLimits& limits() const { return limits_; }
  // Counters, for /stats.
  uint64_t events() const { return events_.load(std::memory_order_relaxed); }
  uint64_t dropped() const { return dropped_total_.load(std::memory_order_relaxed); }
  uint64_t over_budget() const { return over_budget_.load(std::memory_order_relaxed); }
  size_t sessions() const;

 private:
  struct Session {
    TapFilter filter;
    std::deque<std::string> events;  // rendered JSON objects
    uint64_t dropped = 0;
    int64_t last_poll_ms = 0;
  };
  void Changed();  // under mu_

  const TapLimits limits_;
  const std::string service_;
  std::atomic<bool> active_{false};
  std::atomic<uint64_t> gen_{0};
  // The second (high 32 bits, ~0 before the first) and its budget left.
  std::atomic<uint64_t> budget_{~uint64_t{0} << 32};
  std::atomic<uint64_t> events_{0}, dropped_total_{0}, over_budget_{0};
  mutable std::mutex mu_;
  std::map<std::string, Session> sessions_;  // guarded by mu_
};

// The JSON object of one record (no trailing newline).
std::string TapRecordJson(const TapRecord& r, int64_t wall_ms);

}  // namespace weft::proxy
