// `weft tap SERVICE` and `weft top [SERVICE]`: live requests from the
// sidecars' tap sessions (admin /tap, src/proxy/tap.h), as they pass or
// summed up by path.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "base/strings.h"
#include "cli/ctl.h"
#include "cli/ctl_internal.h"
#include "cli/flags.h"
#include "cli/stat.h"
#include "cli/up_processes.h"
#include "http/client.h"
#include "http/server.h"

namespace weft::cli {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kTapUsage =
    "weft tap SERVICE [--route R] [--method M] [--path PREFIX] [--max N] [--duration DUR] "
    "[-o json] [--server URL]";
constexpr const char* kTopUsage =
    "weft top [SERVICE] [--route R] [--method M] [--path PREFIX] [--window DUR] [--duration DUR] "
    "[-o json] [--server URL]";

struct TapArgs {
  std::string route, method, path;
  int64_t max = 0;          // events, then stop (0: no limit)
  int64_t duration_ms = 0;  // then stop (0: until interrupted)
  int64_t window_ms = 10000;
};

// One sidecar's tap session, polled.
struct Sidecar {
  MeshMember m;
  std::unique_ptr<http::Client> client;
  uint64_t over_budget = 0;
  bool seen = false;
  std::string error;
};

// An event as a sidecar sent it, with only the fields a tap has, each of
// its type (null: not an object). Whatever a sidecar sends, the printing
// below reads these safely.
json CleanEvent(const json& e) {
  if (!e.is_object()) return json();
  json ev = json::object();
  for (const char* k : {"direction", "listener", "method", "authority", "path", "source",
                        "destination", "route", "upstream", "flags", "trace_id"}) {
    auto it = e.find(k);
    ev[k] = it != e.end() && it->is_string() ? it->get<std::string>().substr(0, 1024) : "";
  }
  for (const char* k : {"time_ms", "status"}) {
    auto it = e.find(k);
    ev[k] = it != e.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
  }
  auto g = e.find("grpc_status");
  ev["grpc_status"] = g != e.end() && g->is_number_integer() ? *g : json(nullptr);
  auto d = e.find("duration_ms");
  ev["duration_ms"] = d != e.end() && d->is_number() ? d->get<double>() : 0.0;
  return ev;
}

// Polls every sidecar of `service` ("" for all) in turn; `fn(event, weight)`
// for each event, weight being how many requests it stands for (more than
// one when the sidecar's budget left some out). Returns the exit code.
template <typename Fn>
int PollTaps(const std::string& server, const std::string& service, const TapArgs& a,
             const std::function<bool()>& tick, Fn fn) {
  std::vector<MeshMember> members;
  std::string err;
  if (!ListMembers(server, &members, &err)) return Fail("tap: " + err);
  std::vector<Sidecar> sidecars;
  for (auto& m : members) {
    if (m.role != "proxy" || m.admin.empty()) continue;
    if (!service.empty() && m.service != service) continue;
    http::ClientOptions o;
    o.connect_timeout_ms = 1000;
    o.io_timeout_ms = 3000;
    Sidecar s;
    s.m = m;
    s.client = std::make_unique<http::Client>(m.admin, o);
    sidecars.push_back(std::move(s));
  }
  if (sidecars.empty())
    return Fail(service.empty() ? "tap: no sidecar is connected to " + server
                                : "tap: no sidecar of service " + service + " is connected to " +
                                      server + " (see `weft members`)");
  std::random_device rd;
  const std::string id = fmt::format("cli-{:08x}{:08x}", rd(), rd());
  const std::string target = "/tap?id=" + id + "&route=" + http::PercentEncode(a.route) +
                             "&method=" + http::PercentEncode(a.method) +
                             "&path=" + http::PercentEncode(a.path);
  const auto start = Clock::now();
  for (;;) {
    const auto round = Clock::now();
    size_t ok = 0;
    for (auto& s : sidecars) {
      auto r = s.client->Do("GET", target);
      json j = r.ok() ? json::parse(r->body, nullptr, false) : json();
      if (!r.ok() || r->status != 200 || !j.is_object() || !j.contains("events") ||
          !j["events"].is_array()) {
        std::string why = !r.ok() ? std::string(r.status().message())
                          : j.is_object() && j["error"].is_string()
                              ? j["error"].get<std::string>()
                              : "answered " + std::to_string(r->status);
        if (why != s.error)
          std::fprintf(stderr, "weft tap: sidecar %s (%s): %s\n", s.m.name.c_str(),
                       s.m.admin.c_str(), why.c_str());
        s.error = why;
        continue;
      }
      ++ok;
      s.error.clear();
      const uint64_t over =
          j["over_budget"].is_number_unsigned() ? j["over_budget"].get<uint64_t>() : 0;
      const size_t n = j["events"].size();
      // Requests the budget left out since the last poll, spread over the
      // events that were kept (an estimate: the budget is the sidecar's,
      // shared by every session).
      // (Counted only when events come: what the budget left out while
      // none did stands for those that come next. The budget and its count
      // are the sidecar's, shared with any other tap open there.)
      const double weight =
          n && s.seen && over >= s.over_budget ? double(n + (over - s.over_budget)) / n : 1.0;
      if (n > 0 || !s.seen) s.over_budget = over;
      s.seen = true;
      for (const json& e : j["events"]) {
        json ev = CleanEvent(e);
        if (ev.is_null()) continue;
        ev["proxy"] = s.m.name;
        if (!fn(ev, weight)) return 0;
      }
    }
    if (ok == 0 && std::all_of(sidecars.begin(), sidecars.end(),
                               [](const Sidecar& s) { return !s.error.empty(); }))
      return Fail("tap: no sidecar answered");
    if (!tick()) return 0;
    if (StopRequested()) return 0;
    if (a.duration_ms > 0 && Clock::now() - start >= std::chrono::milliseconds(a.duration_ms))
      return 0;
    std::this_thread::sleep_until(round + std::chrono::milliseconds(250));
  }
}

// A mesh identity as its workload's name (spiffe://TD/ns/NS/sa/NAME ->
// NAME, or NS/NAME outside the default namespace), for narrow columns.
std::string Short(const std::string& id) {
  const size_t ns = id.find("/ns/"), sa = id.find("/sa/");
  if (id.rfind("spiffe://", 0) != 0 || ns == std::string::npos || sa == std::string::npos ||
      sa < ns)
    return id;
  const std::string n = id.substr(ns + 4, sa - ns - 4), name = id.substr(sa + 4);
  return n == "default" ? name : n + "/" + name;
}

std::string TimeOf(int64_t ms) {
  const std::time_t t = ms / 1000;
  std::tm tm{};
  localtime_r(&t, &tm);
  return fmt::format("{:02}:{:02}:{:02}.{:03}", tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
}

// The flags both commands take; returns -1 to go on, else the exit code.
int ParseTapFlags(const Args& args, TapArgs* a, CtlFlags* f, const char* usage, bool top) {
  Args rest;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string v;
    if (FlagValue(args, &i, "--route", &v)) {
      a->route = v;
    } else if (FlagValue(args, &i, "--method", &v)) {
      a->method = v;
    } else if (FlagValue(args, &i, "--path", &v)) {
      if (v.empty() || v[0] != '/') return BadUsage("--path: a path prefix starting with /", usage);
      a->path = v;
    } else if (!top && FlagValue(args, &i, "--max", &v)) {
      char* end = nullptr;
      const long long n = std::strtoll(v.c_str(), &end, 10);
      if (v.empty() || *end || n < 1 || n > 100000000)
        return BadUsage("--max: a number of requests, 1 or more", usage);
      a->max = n;
    } else if (FlagValue(args, &i, "--duration", &v)) {
      auto ms = ParseDurationMs(v);
      if (!ms || *ms < 100) return BadUsage("--duration \"" + v + "\": e.g. 10s, 5m", usage);
      a->duration_ms = *ms;
    } else if (top && FlagValue(args, &i, "--window", &v)) {
      auto ms = ParseDurationMs(v);
      if (!ms || *ms < 1000 || *ms > 600000)
        return BadUsage("--window \"" + v + "\": a duration from 1s to 10m", usage);
      a->window_ms = *ms;
    } else {
      rest.push_back(args[i]);
    }
  }
  if (a->route.size() > 256 || a->method.size() > 32 || a->path.size() > 1024)
    return BadUsage("--route, --method or --path too long", usage);
  if (int rc = ParseCtlFlags(rest, f, usage); rc >= 0) return rc;
  if (!f->output.empty() && f->output != "json" && f->output != "table")
    return BadUsage("-o: table or json", usage);
  return -1;
}

}  // namespace

int TapMain(const Args& args) {
  TapArgs a;
  CtlFlags f;
  if (int rc = ParseTapFlags(args, &a, &f, kTapUsage, false); rc >= 0) return rc;
  if (f.positional.size() != 1) return BadUsage("tap: name one SERVICE", kTapUsage);
  CatchStopSignals();
  const bool as_json = f.output == "json";
  int64_t shown = 0;
  if (!as_json)
    std::printf("%-12s %-8s %-44s %-7s %-30s %-6s %-9s %s\n", "TIME", "DIR",
                "SOURCE -> DESTINATION", "METHOD", "PATH", "STATUS", "LATENCY", "TRACE");
  return PollTaps(
      ServerAddress(f.server), f.positional[0], a, [] { return true; },
      [&](const json& ev, double) {
        if (as_json) {
          std::printf("%s\n", ev.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
        } else {
          std::string status = std::to_string(ev.value("status", 0));
          if (ev["grpc_status"].is_number()) status += "/" + ev["grpc_status"].dump();
          std::printf(
              "%-12s %-8s %-44s %-7s %-30s %-6s %-9s %s\n",
              TimeOf(ev.value("time_ms", int64_t{0})).c_str(), ev.value("direction", "").c_str(),
              (Short(ev.value("source", "")) + " -> " + ev.value("destination", "")).c_str(),
              ev.value("method", "").c_str(), ev.value("path", "").c_str(), status.c_str(),
              fmt::format("{:.1f}ms", ev.value("duration_ms", 0.0)).c_str(),
              ev.value("trace_id", "").c_str());
        }
        std::fflush(stdout);
        return a.max == 0 || ++shown < a.max;
      });
}

int TopMain(const Args& args) {
  TapArgs a;
  CtlFlags f;
  if (int rc = ParseTapFlags(args, &a, &f, kTopUsage, true); rc >= 0) return rc;
  if (f.positional.size() > 1) return BadUsage("top: at most one SERVICE", kTopUsage);
  const std::string service = f.positional.empty() ? "" : f.positional[0];
  CatchStopSignals();
  const bool as_json = f.output == "json";
  const bool tty = !as_json && isatty(STDOUT_FILENO);
  struct Seen {
    int64_t ms;
    double weight, duration_ms;
    bool ok;
  };
  // (source, destination, method, path) -> the window's requests.
  std::map<std::vector<std::string>, std::deque<Seen>> paths;
  auto last_frame = Clock::now();
  const auto start = Clock::now();
  auto frame = [&] {
    const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    // The window, or the time since the start while it is shorter.
    const double secs = std::max(
        0.5,
        std::min<double>(a.window_ms,
                         std::chrono::duration<double, std::milli>(Clock::now() - start).count()) /
            1000.0);
    struct Row {
      std::vector<std::string> key;
      double rps, success, p50, p99;
      size_t seen;
    };
    std::vector<Row> rows;
    for (auto it = paths.begin(); it != paths.end();) {
      auto& q = it->second;
      while (!q.empty() && q.front().ms < now - a.window_ms) q.pop_front();
      if (q.empty()) {
        it = paths.erase(it);
        continue;
      }
      double n = 0, good = 0;
      std::vector<double> lat;
      for (const Seen& s : q) {
        n += s.weight;
        good += s.ok ? s.weight : 0;
        lat.push_back(s.duration_ms);
      }
      std::sort(lat.begin(), lat.end());
      auto at = [&](double q) { return lat[std::min(lat.size() - 1, size_t(q * lat.size()))]; };
      rows.push_back({it->first, n / secs, good / n, at(0.5), at(0.99), lat.size()});
      ++it;
    }
    std::sort(rows.begin(), rows.end(), [](const Row& x, const Row& y) {
      return x.rps != y.rps ? x.rps > y.rps : x.key < y.key;
    });
    if (as_json) {
      json out = json::array();
      for (const Row& r : rows)
        out.push_back({{"source", r.key[0]},
                       {"destination", r.key[1]},
                       {"method", r.key[2]},
                       {"path", r.key[3]},
                       {"rps", r.rps},
                       {"success", r.success},
                       {"p50_ms", r.p50},
                       {"p99_ms", r.p99},
                       {"tapped", r.seen}});
      std::printf("%s\n",
                  json({{"time_ms", now}, {"window_s", secs}, {"paths", out}}).dump().c_str());
    } else {
      std::string t = tty ? "\x1b[H\x1b[2J" : "\n";
      t += fmt::format("weft top {}  (last {:.0f}s, busiest first; Ctrl-C to stop)\n\n",
                       service.empty() ? "(all services, as their callees saw them)" : service,
                       secs);
      t += fmt::format("{:<40} {:<18} {:<7} {:<32} {:>9} {:>8} {:>9} {:>9}\n", "SOURCE",
                       "DESTINATION", "METHOD", "PATH", "RPS", "SUCCESS", "P50", "P99");
      size_t shown = 0;
      for (const Row& r : rows) {
        if (++shown > 30) break;
        t += fmt::format("{:<40} {:<18} {:<7} {:<32} {:>9.1f} {:>7.2f}% {:>7.1f}ms {:>7.1f}ms\n",
                         Short(r.key[0]).substr(0, 40), r.key[1].substr(0, 18), r.key[2],
                         r.key[3].substr(0, 32), r.rps, r.success * 100, r.p50, r.p99);
      }
      if (rows.empty()) t += "(no requests yet)\n";
      std::fputs(t.c_str(), stdout);
    }
    std::fflush(stdout);
  };
  const int rc = PollTaps(
      ServerAddress(f.server), service, a,
      [&] {
        if (Clock::now() - last_frame >= std::chrono::seconds(1)) {
          last_frame = Clock::now();
          frame();
        }
        return true;
      },
      [&](const json& ev, double weight) {
        // Across all services each request passes two sidecars: counted
        // where it arrives.
        if (service.empty() && ev.value("direction", "") != "inbound") return true;
        std::string source = ev.value("source", "");
        const int status = ev.value("status", 0);
        const bool ok = status > 0 && status < 500 &&
                        (!ev["grpc_status"].is_number() || ev["grpc_status"].get<int>() == 0);
        paths[{source, ev.value("destination", ""), ev.value("method", ""), ev.value("path", "")}]
            .push_back({ev.value("time_ms", int64_t{0}), weight, ev.value("duration_ms", 0.0), ok});
        return true;
      });
  if (rc == 0) frame();
  return rc;
}

}  // namespace weft::cli
