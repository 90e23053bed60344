#include "control/ui_scraper.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <thread>

#include "http/client.h"
#include "http/server.h"

namespace weft::control {
namespace {

using json = nlohmann::json;

constexpr int64_t kCertRefreshMs = 30000;
constexpr int64_t kTapIdleMs = 30000;
constexpr size_t kTapAnswerMax = 500;

json RatesJson(const Rates& r) {
  auto round = [](double v, double unit) { return std::round(v / unit) * unit; };
  return {{"rps", round(r.rps, 0.01)},
          {"success", round(r.success, 0.0001)},
          {"p50_ms", r.p50_ms},
          {"p99_ms", r.p99_ms},
          {"mtls", round(r.mtls, 0.0001)}};
}

std::string Brief(const std::string& body) {
  std::string s = body.substr(0, 200);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

}  // namespace

UiMember UiMemberOf(const json& m) {
  UiMember u;
  if (!m.is_object()) return u;
  u.name = m.value("Name", "");
  const json tags = m.value("Tags", json::object());
  if (!tags.is_object()) return u;
  auto tag = [&](const char* k) {
    auto it = tags.find(k);
    return it != tags.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  u.role = tag("role");
  u.service = tag("service");
  u.node = tag("node");
  u.admin = tag("admin");
  u.detail = tag("detail");
  return u;
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
    // (asked_ms is written under the viewer's own lock: a stale read only
    // delays the forgetting.)
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

http::Client& UiScraper::ClientFor(Viewer& v, const std::string& addr) {
  // No token goes out: an agent lists its sidecars to anyone, and the
  // addresses come from what agents and sidecars said of themselves, which
  // a viewer's token must never be sent to.
  auto& c = v.clients[addr];
  if (!c) {
    http::ClientOptions o;
    o.connect_timeout_ms = 500;
    o.io_timeout_ms = 1500;
    o.max_body_bytes = 8 << 20;
    c = std::make_unique<http::Client>(addr, o);
  }
  return *c;
}

std::vector<UiMember> UiScraper::Proxies(Viewer& v, const std::vector<UiMember>& members,
                                         std::string* err) {
  std::vector<UiMember> out;
  auto add = [&](UiMember m) {
    if (m.role != "proxy" || m.admin.empty() || out.size() >= limits_.max_proxies) return;
    for (const auto& o : out)
      if (o.admin == m.admin) return;
    out.push_back(std::move(m));
  };
  for (const auto& m : members) add(m);
  for (const auto& m : members) {
    if (m.role != "agent" || m.admin.empty()) continue;
    // The agent's own API: its sidecars.
    auto r = ClientFor(v, m.admin).Do("GET", "/v1/agent/members");
    json list = r.ok() && r->status == 200 ? json::parse(r->body, nullptr, false) : json();
    if (!list.is_array()) {
      if (!err->empty()) *err += "; ";
      *err += "agent " + m.name + " (" + m.admin + "): " +
              (r.ok() ? std::to_string(r->status) + " " + Brief(r->body)
                      : std::string(r.status().message()));
      continue;
    }
    for (const auto& j : list) {
      UiMember p = UiMemberOf(j);
      p.via = m.name;
      if (p.node.empty()) p.node = m.node;
      add(std::move(p));
    }
  }
  return out;
}

void UiScraper::Read(Viewer& v, const std::vector<UiMember>& members, int64_t now_ms) {
  std::string err;
  v.proxies = Proxies(v, members, &err);
  v.prev = std::move(v.cur);
  v.cur.clear();
  v.prev_ms = v.read_ms;
  v.read_ms = now_ms;
  for (const auto& p : v.proxies) {
    http::Client& c = ClientFor(v, p.admin);
    auto r = c.Do("GET", "/stats");
    if (!r.ok() || r->status != 200) continue;
    v.cur[p.admin] = ParseProxyStats(r->body);
    Cert& cert = v.certs[p.admin];
    if (now_ms - cert.read_ms > kCertRefreshMs) {
      auto cr = c.Do("GET", "/certs");
      const json j = cr.ok() && cr->status == 200 ? json::parse(cr->body, nullptr, false) : json();
      if (j.is_object()) {
        cert.spiffe_id = j.value("spiffe_id", "");
        cert.not_after = j.value("not_after_unix", int64_t{0});
        cert.read_ms = now_ms;
      }
    }
  }
  // Forget the connections and certificates of sidecars that went away.
  for (auto it = v.certs.begin(); it != v.certs.end();)
    it = v.cur.count(it->first) ? std::next(it) : v.certs.erase(it);
  if (v.clients.size() > 2 * v.proxies.size() + 64) v.clients.clear();

  const double secs = v.prev_ms > 0 ? static_cast<double>(now_ms - v.prev_ms) / 1000.0 : 0;
  std::map<std::string, std::pair<Traffic, Traffic>> svc;  // (before, after)
  std::map<std::pair<std::string, std::string>, std::pair<Traffic, Traffic>> edge;
  std::map<std::string, std::pair<size_t, size_t>> counts;  // service -> (proxies, unreachable)
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
    svc[p.service].first.Add(b->second.inbound);
    svc[p.service].second.Add(c->second.inbound);
    for (const auto& [dest, t] : c->second.outbound) {
      auto& e = edge[{p.service, dest}];
      e.second.Add(t);
      if (auto o = b->second.outbound.find(dest); o != b->second.outbound.end())
        e.first.Add(o->second);
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
    sidecars.push_back({{"name", p.name},
                        {"service", p.service},
                        {"node", p.node},
                        {"admin", p.admin},
                        {"via", p.via},
                        {"detail", p.detail},
                        {"reachable", v.cur.count(p.admin) > 0},
                        {"spiffe_id", cert == v.certs.end() ? "" : cert->second.spiffe_id},
                        {"not_after_unix", cert == v.certs.end() ? 0 : cert->second.not_after}});
  }
  v.error = err;
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
  // One reading for every viewer: what each may see is filtered by the
  // caller. (Tokens are printable: this key is no one's.)
  std::shared_ptr<Viewer> v = ViewerFor(std::string(1, '\1'), now_ms);
  std::lock_guard<std::mutex> l(v->mu);
  v->asked_ms = now_ms;
  // The first reading only counts totals: a second one follows at once
  // (a short interval), so that a new dashboard shows rates straight away.
  if (v->read_ms == 0) {
    Read(*v, members, now_ms - 250);
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    Read(*v, members, now_ms);
  } else if (now_ms - v->read_ms >= limits_.interval_ms - 100) {
    Read(*v, members, now_ms);
  }
  return v->answer;
}

json UiScraper::Tap(const std::string& token, const std::vector<UiMember>& members,
                    const std::string& service, const std::string& route, const std::string& method,
                    const std::string& path, uint64_t since, int64_t now_ms) {
  std::shared_ptr<Viewer> v = ViewerFor(token, now_ms);
  std::lock_guard<std::mutex> l(v->mu);
  v->asked_ms = now_ms;
  for (auto it = v->taps.begin(); it != v->taps.end();)
    it = now_ms - it->second.asked_ms > kTapIdleMs ? v->taps.erase(it) : std::next(it);
  if (v->taps.size() >= 16 && !v->taps.count({service, route, method, path}))
    return {{"events", json::array()},
            {"next", since},
            {"dropped", 0},
            {"error", "too many taps open for this token (16)"}};
  Viewer::TapBuf& t = v->taps[{service, route, method, path}];
  t.asked_ms = now_ms;
  if (t.id.empty()) {
    std::random_device rd;
    t.id = fmt::format("ui-{:08x}{:08x}", rd(), rd());
  }
  std::string err;
  std::vector<UiMember> proxies = Proxies(*v, members, &err);
  size_t tapped = 0;
  const std::string target = "/tap?id=" + t.id + "&route=" + http::PercentEncode(route) +
                             "&method=" + http::PercentEncode(method) +
                             "&path=" + http::PercentEncode(path);
  for (const auto& p : proxies) {
    if (p.service != service) continue;
    ++tapped;
    auto r = ClientFor(*v, p.admin).Do("GET", target);
    const json j = r.ok() ? json::parse(r->body, nullptr, false) : json();
    if (!r.ok() || r->status != 200 || !j.is_object() || !j["events"].is_array()) {
      if (!err.empty()) err += "; ";
      err += "sidecar " + p.name + ": " +
             (!r.ok()                                ? std::string(r.status().message())
              : j.is_object() && j.contains("error") ? j["error"].dump()
                                                     : std::to_string(r->status));
      continue;
    }
    t.dropped += j.value("dropped", uint64_t{0});
    for (json ev : j["events"]) {
      ev["proxy"] = p.name;
      ev["seq"] = t.next++;
      t.events.push_back(std::move(ev));
      if (t.events.size() > limits_.max_tap_events) {
        t.events.pop_front();
        ++t.dropped;
      }
    }
  }
  if (tapped == 0 && err.empty()) err = "no sidecar of service " + service + " is connected";
  json events = json::array();
  for (const json& ev : t.events) {
    if (ev["seq"].get<uint64_t>() < since) continue;
    if (events.size() >= kTapAnswerMax) break;
    events.push_back(ev);
  }
  const uint64_t next =
      events.empty() ? std::max(since, t.next) : events.back()["seq"].get<uint64_t>() + 1;
  // What was handed out is not kept for later polls.
  while (!t.events.empty() && t.events.front()["seq"].get<uint64_t>() < next) t.events.pop_front();
  return {{"events", std::move(events)}, {"next", next}, {"dropped", t.dropped}, {"error", err}};
}

}  // namespace weft::control
