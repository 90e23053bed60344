#include "control/ui_scraper.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "http/client.h"
#include "http/server.h"

namespace weft::control {
namespace {

using json = nlohmann::json;

constexpr int64_t kCertRefreshMs = 30000;
constexpr int64_t kTapIdleMs = 30000;
constexpr int64_t kTapProxiesFreshMs = 10000;  // a tap uses the shared reading's sidecars
constexpr size_t kTapAnswerMax = 500;
constexpr size_t kMaxFieldBytes = 256;  // of a string in a member or an event read

json RatesJson(const Rates& r) {
  auto round = [](double v, double unit) { return std::round(v / unit) * unit; };
  return {{"rps", round(r.rps, 0.01)},
          {"success", round(r.success, 0.0001)},
          {"p50_ms", r.p50_ms},
          {"p99_ms", r.p99_ms},
          {"mtls", round(r.mtls, 0.0001)}};
}

// A string field of an object read from a sidecar or an agent, which may be
// anything: "" when absent or not a string, cut to kMaxFieldBytes.
std::string Str(const json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return "";
  const std::string& s = it->get_ref<const std::string&>();
  return s.size() > kMaxFieldBytes ? s.substr(0, kMaxFieldBytes) : s;
}

int64_t Int(const json& j, const char* key) {
  if (!j.is_object()) return 0;
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

// The host of "HOST:PORT" names this machine only (a loopback or
// unspecified address, or localhost).
bool LoopbackHost(const std::string& host_port) {
  std::string host = host_port.substr(0, host_port.rfind(':'));
  if (!host.empty() && host.front() == '[') host = host.substr(1, host.size() - 2);
  return host.rfind("127.", 0) == 0 || host == "localhost" || host == "::1" || host == "0.0.0.0" ||
         host == "::" || host.empty();
}

// A member connected from this machine: a local socket, or loopback.
bool LocalPeer(const std::string& addr) {
  return addr.empty() || addr.rfind("fd:", 0) == 0 || addr.rfind("unix:", 0) == 0 ||
         LoopbackHost(addr + ":0");
}

}  // namespace

UiMember UiMemberOf(const json& m) {
  UiMember u;
  if (!m.is_object()) return u;
  u.name = Str(m, "Name");
  u.addr = Str(m, "Addr");
  auto tags = m.find("Tags");
  if (tags == m.end() || !tags->is_object()) return u;
  u.role = Str(*tags, "role");
  u.service = Str(*tags, "service");
  u.node = Str(*tags, "node");
  u.admin = Str(*tags, "admin");
  u.detail = Str(*tags, "detail");
  return u;
}

void HideUnreadable(json* events, const std::function<bool(const std::string&)>& may_read) {
  if (!events->is_array()) return;
  for (json& ev : *events) {
    if (!ev.is_object()) continue;
    for (const char* k : {"source", "destination"}) {
      const std::string v = Str(ev, k);
      std::string service = v;
      if (const size_t sa = v.rfind("/sa/"); v.rfind("spiffe://", 0) == 0) {
        service = sa == std::string::npos ? "" : v.substr(sa + 4);
      } else if (v.find(':') != std::string::npos) {
        continue;  // IP:PORT
      }
      if (!v.empty() && (service.empty() || !may_read(service))) ev[k] = "(hidden)";
    }
  }
}

UiScraper::UiScraper(UiLimits limits) : limits_(limits) {}
UiScraper::~UiScraper() = default;

size_t UiScraper::viewers() const {
  std::lock_guard<std::mutex> l(mu_);
  return viewers_.size();
}

std::shared_ptr<UiScraper::Viewer> UiScraper::ViewerFor(const std::string& token, int64_t now_ms) {
  std::lock_guard<std::mutex> l(mu_);
  for (auto it = viewers_.begin(); it != viewers_.end();) {
    if (it->first != token && now_ms - it->second->asked_ms > limits_.viewer_idle_ms &&
        it->second.use_count() == 1) {
      it = viewers_.erase(it);
    } else {
      ++it;
    }
  }
  auto it = viewers_.find(token);
  if (it == viewers_.end()) {
    if (viewers_.size() >= limits_.max_viewers) {
      auto oldest = viewers_.begin();
      for (auto j = viewers_.begin(); j != viewers_.end(); ++j)
        if (j->second->asked_ms < oldest->second->asked_ms) oldest = j;
      viewers_.erase(oldest);
    }
    it = viewers_.emplace(token, std::make_shared<Viewer>()).first;
    it->second->asked_ms = now_ms;
  }
  return it->second;
}

http::Client& UiScraper::ClientFor(Clients& clients, const std::string& addr) {
  // No token goes out (see the header).
  auto& c = clients[addr];
  if (!c) {
    http::ClientOptions o;
    o.connect_timeout_ms = 500;
    o.io_timeout_ms = 1500;
    o.max_body_bytes = 8 << 20;
    c = std::make_unique<http::Client>(addr, o);
  }
  return *c;
}

std::vector<UiMember> UiScraper::Proxies(Clients& clients, const std::vector<UiMember>& members,
                                         std::string* err) {
  std::vector<UiMember> out;
  auto note = [&](const std::string& e) {
    if (err->size() < 4096) *err += (err->empty() ? "" : "; ") + e;
  };
  auto add = [&](UiMember m) {
    if (m.role != "proxy" || m.admin.empty() || out.size() >= limits_.max_proxies) return;
    for (const auto& o : out)
      if (o.admin == m.admin && o.via == m.via) return;
    out.push_back(std::move(m));
  };
  for (UiMember m : members) {
    if (m.role == "proxy" && LoopbackHost(m.admin) && !LocalPeer(m.addr))
      m.unreachable = "its admin address is on its own loopback";
    add(std::move(m));
  }
  for (const auto& m : members) {
    if (m.role != "agent" || m.admin.empty()) continue;
    const bool local = LocalPeer(m.addr);
    if (LoopbackHost(m.admin) && !local) {
      note("agent " + m.name + " serves its API on its own loopback (" + m.admin +
           "): its sidecars cannot be read from here");
      continue;
    }
    // The agent's own API: its sidecars.
    auto r = ClientFor(clients, m.admin).Do("GET", "/v1/agent/members");
    json list = r.ok() && r->status == 200 ? json::parse(r->body, nullptr, false) : json();
    if (!list.is_array()) {
      // (Never its answer: only what went wrong.)
      note("agent " + m.name + " (" + m.admin + "): " +
           (r.ok() ? "answered " + std::to_string(r->status) + ", not a member list"
                   : std::string(r.status().message())));
      continue;
    }
    for (const auto& j : list) {
      UiMember p = UiMemberOf(j);
      p.via = m.name;
      if (p.node.empty()) p.node = m.node;
      // A sidecar on the agent's machine's loopback: not this one's.
      if (LoopbackHost(p.admin) && !local)
        p.unreachable = "its admin address is on its node's loopback";
      add(std::move(p));
    }
  }
  return out;
}

void UiScraper::Read(const std::vector<UiMember>& members, int64_t now_ms) {
  Reading& v = shared_;
  std::string err;
  v.proxies = Proxies(v.clients, members, &err);
  v.prev = std::move(v.cur);
  v.cur.clear();
  v.prev_ms = v.read_ms;
  v.read_ms = now_ms;
  // Several at once, within the budget: a sidecar that does not answer
  // costs its timeout, not everyone's.
  std::vector<const UiMember*> todo;  // one per address: a client is one thread's
  std::set<std::string> seen;
  for (const auto& p : v.proxies)
    if (p.unreachable.empty() && seen.insert(p.admin).second) todo.push_back(&p);
  for (const UiMember* p : todo) ClientFor(v.clients, p->admin);  // made here: one thread
  struct Got {
    std::optional<ProxyStats> stats;
    std::optional<Cert> cert;
  };
  std::vector<Got> got(todo.size());
  std::vector<bool> want_cert(todo.size());
  for (size_t i = 0; i < todo.size(); ++i) {
    auto c = v.certs.find(todo[i]->admin);
    want_cert[i] = c == v.certs.end() || now_ms - c->second.read_ms > kCertRefreshMs;
  }
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(limits_.read_budget_ms);
  std::vector<http::Client*> client(todo.size());
  for (size_t i = 0; i < todo.size(); ++i) client[i] = v.clients[todo[i]->admin].get();
  std::atomic<size_t> next{0}, skipped{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < todo.size();) {
      if (std::chrono::steady_clock::now() >= deadline) {
        ++skipped;
        continue;
      }
      auto r = client[i]->Do("GET", "/stats");
      if (!r.ok() || r->status != 200) continue;
      got[i].stats = ParseProxyStats(r->body);
      if (!want_cert[i]) continue;
      auto cr = client[i]->Do("GET", "/certs");
      const json j = cr.ok() && cr->status == 200 ? json::parse(cr->body, nullptr, false) : json();
      if (j.is_object()) got[i].cert = Cert{Str(j, "spiffe_id"), Int(j, "not_after_unix"), now_ms};
    }
  };
  {
    std::vector<std::thread> threads;
    const size_t n = std::min(limits_.read_threads, todo.size());
    for (size_t i = 1; i < n; ++i) threads.emplace_back(work);
    work();
    for (auto& t : threads) t.join();
  }
  for (size_t i = 0; i < todo.size(); ++i) {
    if (got[i].stats) v.cur[todo[i]->admin] = std::move(*got[i].stats);
    if (got[i].cert) v.certs[todo[i]->admin] = *got[i].cert;
  }
  if (skipped > 0)
    err += std::string(err.empty() ? "" : "; ") + std::to_string(skipped.load()) +
           " sidecars not read: the reading stopped at its " +
           std::to_string(limits_.read_budget_ms) + " ms budget";
  // Forget the connections and certificates of sidecars that went away.
  for (auto it = v.certs.begin(); it != v.certs.end();)
    it = v.cur.count(it->first) ? std::next(it) : v.certs.erase(it);
  if (v.clients.size() > 2 * v.proxies.size() + 64) v.clients.clear();

  const double secs = v.prev_ms > 0 ? static_cast<double>(now_ms - v.prev_ms) / 1000.0 : 0;
  std::map<std::string, std::pair<Traffic, Traffic>> svc;  // (before, after)
  std::map<std::pair<std::string, std::string>, std::pair<Traffic, Traffic>> edge;
  std::map<std::string, std::pair<size_t, size_t>> counts;  // service -> (proxies, unreachable)
  // A counter that went back: the sidecar restarted (behind the same
  // address); what it counted since is all new.
  auto before = [](const Traffic& b, const Traffic& c) {
    return c.total < b.total ? Traffic{} : b;
  };
  for (const auto& p : v.proxies) {
    auto& n = counts[p.service];
    ++n.first;
    auto c = v.cur.find(p.admin);
    if (c == v.cur.end()) {
      ++n.second;
      continue;
    }
    auto b = v.prev.find(p.admin);
    if (b == v.prev.end()) continue;  // new since the last reading: from the next one on
    svc[p.service].first.Add(before(b->second.inbound, c->second.inbound));
    svc[p.service].second.Add(c->second.inbound);
    for (const auto& [dest, t] : c->second.outbound) {
      auto& e = edge[{p.service, dest}];
      e.second.Add(t);
      if (auto o = b->second.outbound.find(dest); o != b->second.outbound.end())
        e.first.Add(before(o->second, t));
    }
  }
  auto point = [&](Series& s, const Rates& r) {
    s.last = r;
    if (secs <= 0) return;
    s.points.push_back({now_ms, r});
    while (s.points.size() > limits_.history) s.points.pop_front();
  };
  auto history = [](const Series& s) {
    json h = json::array();
    for (const Point& p : s.points)
      h.push_back({p.ms, std::round(p.r.rps * 100) / 100, std::round(p.r.success * 10000) / 10000,
                   p.r.p99_ms});
    return h;
  };
  json services = json::array(), edges = json::array(), sidecars = json::array();
  std::map<std::string, Series> keep_svc;
  for (const auto& [name, n] : counts) {
    Series& s = v.services[name];
    auto it = svc.find(name);
    point(s, it == svc.end() ? Rates{} : RatesBetween(it->second.first, it->second.second, secs));
    json row = RatesJson(s.last);
    row["name"] = name;
    row["proxies"] = n.first;
    row["unreachable"] = n.second;
    row["history"] = history(s);
    services.push_back(std::move(row));
    keep_svc[name] = std::move(s);
  }
  v.services = std::move(keep_svc);
  std::map<std::pair<std::string, std::string>, Series> keep_edge;
  for (const auto& [key, t] : edge) {
    Series& s = v.edges[key];
    point(s, RatesBetween(t.first, t.second, secs));
    json row = RatesJson(s.last);
    row["source"] = key.first;
    row["destination"] = key.second;
    row["history"] = history(s);
    edges.push_back(std::move(row));
    keep_edge[key] = std::move(s);
  }
  v.edges = std::move(keep_edge);
  for (const auto& p : v.proxies) {
    const auto cert = v.certs.find(p.admin);
    json row = {{"name", p.name},
                {"service", p.service},
                {"node", p.node},
                {"admin", p.admin},
                {"via", p.via},
                {"detail", p.detail},
                {"reachable", v.cur.count(p.admin) > 0},
                {"spiffe_id", cert == v.certs.end() ? "" : cert->second.spiffe_id},
                {"not_after_unix", cert == v.certs.end() ? 0 : cert->second.not_after}};
    if (!p.unreachable.empty()) row["unreachable"] = p.unreachable;
    sidecars.push_back(std::move(row));
  }
  v.answer = std::make_shared<const json>(
      json{{"interval_s", static_cast<double>(limits_.interval_ms) / 1000.0},
           {"updated_ms", now_ms},
           {"error", err},
           {"services", std::move(services)},
           {"edges", std::move(edges)},
           {"sidecars", std::move(sidecars)}});
}

std::shared_ptr<const json> UiScraper::Overview(const std::vector<UiMember>& members,
                                                int64_t now_ms) {
  std::lock_guard<std::mutex> l(shared_.mu);
  // A first reading only counts totals: a second one follows at once (a
  // short interval), so that a new dashboard shows rates straight away.
  // The same after a long pause, whose average would say little.
  if (shared_.read_ms == 0 || now_ms - shared_.read_ms > 3 * limits_.interval_ms) {
    shared_.read_ms = 0;
    shared_.cur.clear();
    Read(members, now_ms - 250);
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    Read(members, now_ms);
  } else if (now_ms - shared_.read_ms >= limits_.interval_ms - 100) {
    Read(members, now_ms);
  }
  return shared_.answer;
}

json UiScraper::Tap(const std::string& token, const std::string& session,
                    const std::vector<UiMember>& members, const std::string& service,
                    const std::string& route, const std::string& method, const std::string& path,
                    uint64_t since, int64_t now_ms) {
  // The sidecars: the shared reading's, when it is recent.
  std::vector<UiMember> proxies;
  bool have = false;
  {
    std::lock_guard<std::mutex> l(shared_.mu);
    if (shared_.read_ms > 0 && now_ms - shared_.read_ms < kTapProxiesFreshMs) {
      proxies = shared_.proxies;
      have = true;
    }
  }
  std::shared_ptr<Viewer> v = ViewerFor(token, now_ms);
  std::lock_guard<std::mutex> l(v->mu);
  v->asked_ms = now_ms;
  std::string err;
  if (!have) proxies = Proxies(v->clients, members, &err);
  for (auto it = v->taps.begin(); it != v->taps.end();)
    it = now_ms - it->second.asked_ms > kTapIdleMs ? v->taps.erase(it) : std::next(it);
  const std::vector<std::string> key{session, service, route, method, path};
  if (v->taps.size() >= limits_.max_taps && !v->taps.count(key))
    return {
        {"events", json::array()},
        {"next", since},
        {"dropped", 0},
        {"error", "too many taps open for this token (at most " + std::to_string(limits_.max_taps) +
                      "; each closes 30 s after its last poll)"}};
  TapBuf& t = v->taps[key];
  t.asked_ms = now_ms;
  if (t.id.empty()) {
    std::random_device rd;
    t.id = fmt::format("ui-{:08x}{:08x}", rd(), rd());
  }
  size_t tapped = 0;
  const std::string target = "/tap?id=" + t.id + "&route=" + http::PercentEncode(route) +
                             "&method=" + http::PercentEncode(method) +
                             "&path=" + http::PercentEncode(path);
  for (const auto& p : proxies) {
    if (p.service != service) continue;
    ++tapped;
    if (!p.unreachable.empty()) {
      err += (err.empty() ? "" : "; ") + ("sidecar " + p.name + ": " + p.unreachable);
      continue;
    }
    auto r = ClientFor(v->clients, p.admin).Do("GET", target);
    const json j = r.ok() ? json::parse(r->body, nullptr, false) : json();
    auto events = j.is_object() ? j.find("events") : j.end();
    if (!r.ok() || r->status != 200 || events == j.end() || !events->is_array()) {
      const std::string why = Str(j, "error");
      err += (err.empty() ? "" : "; ") + ("sidecar " + p.name + ": " +
                                          (!r.ok()       ? std::string(r.status().message())
                                           : why.empty() ? "answered " + std::to_string(r->status)
                                                         : why));
      continue;
    }
    t.dropped += static_cast<uint64_t>(std::max<int64_t>(0, Int(j, "dropped")));
    for (const json& e : *events) {
      if (!e.is_object()) continue;
      // Only the fields a tap has, each a bounded string or a number.
      json ev = {{"seq", t.next++}, {"proxy", p.name}};
      for (const char* k : {"direction", "listener", "method", "authority", "path", "source",
                            "destination", "route", "upstream", "flags", "trace_id"})
        ev[k] = Str(e, k);
      ev["time_ms"] = Int(e, "time_ms");
      ev["status"] = Int(e, "status");
      auto g = e.find("grpc_status");
      ev["grpc_status"] = g != e.end() && g->is_number_integer() ? *g : json(nullptr);
      auto d = e.find("duration_ms");
      ev["duration_ms"] = d != e.end() && d->is_number() ? d->get<double>() : 0.0;
      t.events.push_back(std::move(ev));
      if (t.events.size() > limits_.max_tap_events) {
        t.events.pop_front();
        ++t.dropped;
      }
    }
  }
  if (tapped == 0 && err.empty()) err = "no sidecar of service " + service + " is connected";
  json out = json::array();
  for (const json& ev : t.events) {
    if (ev["seq"].get<uint64_t>() < since) continue;
    if (out.size() >= kTapAnswerMax) break;
    out.push_back(ev);
  }
  const uint64_t next =
      out.empty() ? std::max(since, t.next) : out.back()["seq"].get<uint64_t>() + 1;
  // What was handed out is not kept for later polls.
  while (!t.events.empty() && t.events.front()["seq"].get<uint64_t>() < next) t.events.pop_front();
  const uint64_t dropped = std::exchange(t.dropped, 0);
  return {{"events", std::move(out)}, {"next", next}, {"dropped", dropped}, {"error", err}};
}

}  // namespace weft::control
