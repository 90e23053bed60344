// What the web dashboard (/ui/) shows beyond the catalog and config: the
// mesh's live traffic, read from the sidecars' admin endpoints on demand.
//
// Nothing runs while nobody looks: each /v1/ui/overview asks Overview(),
// which reads every sidecar's /stats (and, now and then, /certs) when the
// last reading is older than the refresh interval, and answers from that
// reading otherwise. One reading serves every viewer (the API filters it by
// the viewer's rights), so ten dashboards cost about what one does.
//
// Sidecars behind an agent are found by asking that agent
// (/v1/agent/members, which it answers anyone). No token is ever sent: the
// addresses read are what agents and sidecars said of themselves. An
// address on loopback is read only when what announced it is on this
// machine too (else it would name something of the server's own).
// Dashboard taps are kept per token and page session (one viewer's poll
// never takes another's events).
//
// Thread-safe; every call blocks on HTTP (run them off the io thread).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "control/mesh_stats.h"

namespace weft::http {
class Client;
}

namespace weft::control {

struct UiLimits {
  int64_t interval_ms = 2000;      // the freshest reading is at most this old
  size_t history = 60;             // points kept per service and edge (2 min at 2 s)
  int64_t read_budget_ms = 3000;   // a reading stops there; sidecars not read count unreachable
  size_t read_threads = 8;         // sidecars read at once
  size_t max_proxies = 4096;       // sidecars read per refresh
  size_t max_viewers = 16;         // tokens with dashboard taps kept
  int64_t viewer_idle_ms = 60000;  // a token's taps are forgotten after this long unasked
  size_t max_taps = 4;             // taps (filters, page sessions) per token
  size_t max_tap_events = 500;     // events a dashboard tap keeps between polls
};

// A member as /v1/agent/members lists it; `addr`: where it connected from
// (its Addr: an IP, or "fd:N" for a local socket).
struct UiMember {
  std::string name, role, service, node, admin, detail, via, addr;
  std::string unreachable;  // why its admin address is not read ("": it is)
};
UiMember UiMemberOf(const nlohmann::json& m);

// Tap events: the other end of each request (source, destination) becomes
// "(hidden)" when `may_read` says no to its service (a caller's SPIFFE ID
// by its service; an address, a caller without a mesh identity, is no
// service and stays).
void HideUnreadable(nlohmann::json* events,
                    const std::function<bool(const std::string&)>& may_read);

class UiScraper {
 public:
  explicit UiScraper(UiLimits limits = {});
  ~UiScraper();
  // Tokens with taps kept.
  size_t viewers() const;

  // `members`: this process's own list (servers, agents and the sidecars
  // connected here). Answers {"interval_s", "updated_ms", "error",
  // "services": [...], "edges": [...], "sidecars": [...]}; services are
  // those with sidecars (the caller adds the catalog's). Shared, and never
  // changed once handed out.
  std::shared_ptr<const nlohmann::json> Overview(const std::vector<UiMember>& members,
                                                 int64_t now_ms);

  // One poll of a dashboard's tap of `service` (for `token`'s page
  // `session`): what its sidecars' tap sessions (opened on the first poll,
  // kept while polled) gathered since, numbered; answers {"events": [...],
  // "next", "dropped" (since the last poll), "error"} with the events
  // numbered `since` and after.
  nlohmann::json Tap(const std::string& token, const std::string& session,
                     const std::vector<UiMember>& members, const std::string& service,
                     const std::string& route, const std::string& method, const std::string& path,
                     uint64_t since, int64_t now_ms);

 private:
  struct Point {
    int64_t ms;
    Rates r;
  };
  struct Series {
    std::deque<Point> points;
    Rates last;
  };
  struct Cert {
    std::string spiffe_id;
    int64_t not_after = 0;
    int64_t read_ms = 0;
  };
  // Kept-alive clients, by address (one thread uses each at a time).
  using Clients = std::map<std::string, std::unique_ptr<http::Client>>;
  struct Reading {
    std::mutex mu;
    int64_t read_ms = 0, prev_ms = 0;
    std::vector<UiMember> proxies;
    std::map<std::string, ProxyStats> prev, cur;  // by admin address (absent: unreachable)
    std::map<std::string, Cert> certs;            // by admin address
    std::map<std::string, Series> services;
    std::map<std::pair<std::string, std::string>, Series> edges;
    Clients clients;
    std::shared_ptr<const nlohmann::json> answer;
  };
  struct TapBuf {
    std::string id;  // the sessions' id at the sidecars
    std::deque<nlohmann::json> events;
    uint64_t next = 0, dropped = 0;
    int64_t asked_ms = 0;
  };
  struct Viewer {
    std::mutex mu;
    std::atomic<int64_t> asked_ms{0};
    std::map<std::vector<std::string>, TapBuf> taps;  // (session, service, filter)
    Clients clients;
  };
  std::shared_ptr<Viewer> ViewerFor(const std::string& token, int64_t now_ms);
  // The sidecars: those in `members` and those each agent there lists.
  std::vector<UiMember> Proxies(Clients& clients, const std::vector<UiMember>& members,
                                std::string* err);
  http::Client& ClientFor(Clients& clients, const std::string& addr);
  void Read(const std::vector<UiMember>& members, int64_t now_ms);  // under shared_.mu

  const UiLimits limits_;
  Reading shared_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Viewer>> viewers_;  // by token; guarded by mu_
};

}  // namespace weft::control
