#include "cli/stat.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string_view>
#include <thread>

#include "base/strings.h"
#include "cli/ctl.h"
#include "cli/ctl_internal.h"
#include "http/client.h"

namespace weft::cli {
namespace {

using json = nlohmann::json;

}  // namespace

namespace {

bool MembersOf(const std::string& api, std::vector<MeshMember>* out, std::string* err) {
  http::ClientOptions o = ApiClientOptions();
  o.connect_timeout_ms = 1000;
  o.io_timeout_ms = 2000;
  http::Client c(api, o);
  auto r = c.Do("GET", "/v1/agent/members");
  if (!r.ok()) {
    *err = r.status().message();
    return false;
  }
  json members = r->status == 200 ? json::parse(r->body, nullptr, false) : json();
  if (!members.is_array()) {
    *err =
        api + " answered /v1/agent/members with " + std::to_string(r->status) + ", not a JSON list";
    return false;
  }
  for (const auto& m : members) {
    if (!m.is_object()) continue;
    const json tags = m.value("Tags", json::object());
    if (!tags.is_object()) continue;
    MeshMember mm;
    mm.name = m.value("Name", "");
    mm.role = tags.value("role", "");
    mm.service = tags.value("service", "");
    mm.node = tags.value("node", "");
    mm.admin = tags.value("admin", "");
    mm.detail = tags.value("detail", "");
    out->push_back(std::move(mm));
  }
  return true;
}

}  // namespace

bool ListMembers(const std::string& server, std::vector<MeshMember>* out, std::string* err) {
  if (!MembersOf(server, out, err)) return false;
  const size_t n = out->size();
  for (size_t i = 0; i < n; ++i) {
    const MeshMember m = (*out)[i];
    if (m.role != "agent" || m.admin.empty() || m.admin == server) continue;
    std::vector<MeshMember> local;
    std::string e;
    if (!MembersOf(m.admin, &local, &e)) {
      (*out)[i].detail = "unreachable: " + e;
      continue;
    }
    for (auto& l : local) {
      if (l.role != "proxy") continue;
      l.via = m.name;
      out->push_back(std::move(l));
    }
  }
  return true;
}

InboundStats ParseInbound(const std::string& text) {
  return control::ParseProxyStats(text).inbound;
}

StatSampler::StatSampler(std::string server, std::string only)
    : server_(std::move(server)), only_(std::move(only)) {}

bool StatSampler::Sample(std::string* err) {
  std::vector<MeshMember> members;
  if (!ListMembers(server_, &members, err)) return false;
  proxies_.clear();
  for (const auto& m : members) {
    if (m.role != "proxy" || m.admin.empty()) continue;
    if (!only_.empty() && m.service != only_) continue;
    auto& list = proxies_[m.service];
    if (std::find(list.begin(), list.end(), m.admin) == list.end()) list.push_back(m.admin);
  }
  if (proxies_.empty()) {
    *err = only_.empty() ? "no proxies connected to " + server_
                         : "no proxy of service " + only_ + " is connected to " + server_;
    return false;
  }
  prev_ = std::move(cur_);
  cur_.clear();
  http::ClientOptions o;
  o.connect_timeout_ms = 1000;
  o.io_timeout_ms = 2000;
  for (const auto& [svc, admins] : proxies_) {
    for (const auto& adm : admins) {
      http::Client pc(adm, o);
      auto s = pc.Do("GET", "/stats");
      if (s.ok() && s->status == 200) cur_[adm] = ParseInbound(s->body);
    }
  }
  return true;
}

std::vector<ServiceStat> StatSampler::Rows(double secs) const {
  std::vector<ServiceStat> out;
  for (const auto& [svc, admins] : proxies_) {
    ServiceStat row;
    row.service = svc;
    InboundStats a, b;
    for (const auto& adm : admins) {
      ++row.proxies;
      auto p = prev_.find(adm);
      auto c = cur_.find(adm);
      if (c == cur_.end()) {
        ++row.unreachable;
        continue;
      }
      if (p == prev_.end()) continue;  // new since the last sample: from the next one on
      a.Add(p->second);
      b.Add(c->second);
    }
    const control::Rates r = control::RatesBetween(a, b, secs);
    row.rps = r.rps;
    row.success = r.success;
    row.p50_ms = r.p50_ms;
    row.p99_ms = r.p99_ms;
    row.mtls = r.mtls;
    out.push_back(row);
  }
  return out;
}

std::string FormatStatTable(const std::vector<ServiceStat>& rows) {
  auto ms = [](double v) -> std::string {
    if (v < 0) return "-";
    if (v >= 1e9) return ">10s";
    return fmt::format("≤{:g}ms", v);
  };
  // "≤" is three bytes and one column wide: pad by hand.
  auto pad = [](const std::string& s, size_t w) {
    size_t cols = 0;
    for (unsigned char ch : s) cols += (ch & 0xC0) != 0x80;
    return s + std::string(cols < w ? w - cols : 0, ' ');
  };
  std::string t = fmt::format("{:<24} {:<9} {:<10} {:<9} {:<10} {:<10} {}\n", "SERVICE", "PROXIES",
                              "RPS", "SUCCESS", "P50", "P99", "MTLS");
  for (const auto& r : rows) {
    const bool any = r.rps > 0;
    t += fmt::format("{:<24} {:<9} {:<10.1f} {:<9} {} {} {}\n", r.service,
                     std::to_string(r.proxies - r.unreachable) + "/" + std::to_string(r.proxies),
                     r.rps, any ? fmt::format("{:.2f}%", r.success * 100) : "-",
                     pad(ms(r.p50_ms), 10), pad(ms(r.p99_ms), 10),
                     any ? fmt::format("{:.0f}%", r.mtls * 100) : "-");
  }
  return t;
}

namespace {

constexpr const char* kStatUsage =
    "weft stat [SERVICE] [--window DUR] [-o table|json] [--server URL]";

}  // namespace

int StatMain(const Args& args) {
  int64_t window_ms = 1000;
  Args rest;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string v;
    if (FlagValue(args, &i, "--window", &v)) {
      auto ms = ParseDurationMs(v);
      if (!ms || *ms < 100 || *ms > 60000)
        return BadUsage("--window \"" + v + "\": use a duration from 100ms to 1m", kStatUsage);
      window_ms = *ms;
    } else {
      rest.push_back(args[i]);
    }
  }
  CtlFlags f;
  if (int rc = ParseCtlFlags(rest, &f, kStatUsage); rc >= 0) return rc;
  if (f.positional.size() > 1) return BadUsage("stat: at most one SERVICE", kStatUsage);
  const std::string only = f.positional.empty() ? "" : f.positional[0];
  StatSampler sampler(ServerAddress(f.server), only);
  std::string err;
  if (!sampler.Sample(&err)) return Fail("stat: " + err);
  std::this_thread::sleep_for(std::chrono::milliseconds(window_ms));
  if (!sampler.Sample(&err)) return Fail("stat: " + err);
  const auto rows = sampler.Rows(static_cast<double>(window_ms) / 1000.0);
  if (f.output == "json") {
    json out = json::array();
    for (const auto& r : rows) {
      out.push_back({{"service", r.service},
                     {"proxies", r.proxies},
                     {"unreachable", r.unreachable},
                     {"rps", r.rps},
                     {"success", r.success},
                     {"p50_ms", r.p50_ms},
                     {"p99_ms", r.p99_ms},
                     {"mtls", r.mtls}});
    }
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::fputs(FormatStatTable(rows).c_str(), stdout);
  return 0;
}

}  // namespace weft::cli
