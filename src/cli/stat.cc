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

// The value of label `name` in a Prometheus sample line ("" when absent).
std::string LabelOf(std::string_view line, std::string_view name) {
  const std::string key = std::string(name) + "=\"";
  size_t at = line.find(key);
  if (at == std::string_view::npos) return "";
  at += key.size();
  const size_t end = line.find('"', at);
  return std::string(line.substr(at, end == std::string_view::npos ? 0 : end - at));
}

// The upper bound of the bucket holding quantile q of the requests counted
// between two scrapes, in milliseconds (-1: none).
double QuantileMs(const InboundStats& a, const InboundStats& b, double q) {
  const double n = b.total - a.total;
  if (n <= 0) return -1;
  for (const auto& [le, cum] : b.buckets) {
    auto it = a.buckets.find(le);
    const double d = cum - (it == a.buckets.end() ? 0 : it->second);
    if (d >= q * n) return le >= 1e300 ? 1e9 : le * 1000;
  }
  return -1;
}

void Add(InboundStats* into, const InboundStats& s) {
  into->total += s.total;
  into->errors += s.errors;
  into->mtls += s.mtls;
  for (const auto& [le, v] : s.buckets) into->buckets[le] += v;
}

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
  InboundStats st;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string_view line(text.data() + pos, eol - pos);
    pos = eol + 1;
    if (line.empty() || line[0] == '#' || LabelOf(line, "listener") != "inbound") continue;
    const size_t sp = line.rfind(' ');
    if (sp == std::string_view::npos) continue;
    const double v = std::strtod(std::string(line.substr(sp + 1)).c_str(), nullptr);
    if (line.rfind("weft_listener_downstream_rq_total{", 0) == 0) {
      st.total += v;
      if (LabelOf(line, "class") == "5xx") st.errors += v;
    } else if (line.rfind("weft_listener_downstream_rq_duration_seconds_bucket{", 0) == 0) {
      const std::string le = LabelOf(line, "le");
      st.buckets[le == "+Inf" ? 1e300 : std::strtod(le.c_str(), nullptr)] += v;
    } else if (line.rfind("weft_listener_downstream_grpc_total{", 0) == 0) {
      // A gRPC call is a failure when its grpc-status is not OK (the HTTP
      // status of it is 200).
      if (LabelOf(line, "grpc_status") != "OK") st.errors += v;
    } else if (line.rfind("weft_inbound_rq_total{", 0) == 0) {
      st.mtls += v;
    }
  }
  return st;
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
      Add(&a, p->second);
      Add(&b, c->second);
    }
    const double n = b.total - a.total;
    row.rps = secs > 0 ? n / secs : 0;
    row.success = n > 0 ? 1.0 - (b.errors - a.errors) / n : 1.0;
    row.p50_ms = QuantileMs(a, b, 0.5);
    row.p99_ms = QuantileMs(a, b, 0.99);
    // The per-caller and per-listener counters are read a moment apart in
    // one scrape: the share can overshoot by a request.
    row.mtls = n > 0 ? std::clamp((b.mtls - a.mtls) / n, 0.0, 1.0) : 0.0;
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
