#include "control/mesh_stats.h"

#include <algorithm>
#include <cstdlib>

namespace weft::control {
namespace {

// The value of label `name` in a sample line ("" when absent).
std::string_view LabelOf(std::string_view line, std::string_view name) {
  const size_t open = line.find('{');
  if (open == std::string_view::npos) return {};
  size_t at = open + 1;
  while (at < line.size()) {
    const size_t eq = line.find("=\"", at);
    if (eq == std::string_view::npos) return {};
    const std::string_view key = line.substr(at, eq - at);
    // The value ends at the first quote not escaped (values may hold \").
    size_t end = eq + 2;
    while (end < line.size() && line[end] != '"') end += line[end] == '\\' ? 2 : 1;
    if (end >= line.size()) return {};
    if (key == name) return line.substr(eq + 2, end - eq - 2);
    at = end + 1;
    if (at < line.size() && line[at] == ',') ++at;
    if (at < line.size() && line[at] == '}') return {};
  }
  return {};
}

double ValueOf(std::string_view line) {
  // After the labels: "VALUE" or "VALUE TIMESTAMP", then maybe an exemplar.
  size_t at = line.rfind('}');
  at = at == std::string_view::npos ? line.find(' ') : line.find(' ', at);
  if (at == std::string_view::npos) return 0;
  return std::strtod(std::string(line.substr(at + 1, line.find(' ', at + 1) - at - 1)).c_str(),
                     nullptr);
}

double LeOf(std::string_view line) {
  const std::string le(LabelOf(line, "le"));
  return le == "+Inf" ? 1e300 : std::strtod(le.c_str(), nullptr);
}

bool Starts(std::string_view line, std::string_view prefix) {
  return line.substr(0, prefix.size()) == prefix;
}

double QuantileMs(const Traffic& a, const Traffic& b, double q) {
  const double n = b.total - a.total;
  if (n <= 0) return -1;
  for (const auto& [le, cum] : b.buckets) {
    auto it = a.buckets.find(le);
    const double d = cum - (it == a.buckets.end() ? 0 : it->second);
    if (d >= q * n) return le >= 1e300 ? 1e9 : le * 1000;
  }
  return -1;
}

}  // namespace

void Traffic::Add(const Traffic& t) {
  total += t.total;
  errors += t.errors;
  mtls += t.mtls;
  for (const auto& [le, v] : t.buckets) buckets[le] += v;
}

ProxyStats ParseProxyStats(std::string_view text) {
  ProxyStats st;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    const std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.empty() || line[0] != 'w') continue;  // comments; only weft_* matter
    if (Starts(line, "weft_golden_")) {
      const std::string_view dest = LabelOf(line, "destination");
      if (dest.empty()) continue;
      if (Starts(line, "weft_golden_rq_total{")) {
        Traffic& t = st.outbound[std::string(dest)];
        const double v = ValueOf(line);
        t.total += v;
        if (LabelOf(line, "class") == "5xx") t.errors += v;
      } else if (Starts(line, "weft_golden_rq_duration_seconds_bucket{")) {
        st.outbound[std::string(dest)].buckets[LeOf(line)] += ValueOf(line);
      } else if (Starts(line, "weft_golden_grpc_total{")) {
        if (LabelOf(line, "grpc_status") != "OK")
          st.outbound[std::string(dest)].errors += ValueOf(line);
      }
      continue;
    }
    if (LabelOf(line, "listener") != "inbound") continue;
    Traffic& t = st.inbound;
    if (Starts(line, "weft_listener_downstream_rq_total{")) {
      const double v = ValueOf(line);
      t.total += v;
      if (LabelOf(line, "class") == "5xx") t.errors += v;
    } else if (Starts(line, "weft_listener_downstream_rq_duration_seconds_bucket{")) {
      t.buckets[LeOf(line)] += ValueOf(line);
    } else if (Starts(line, "weft_listener_downstream_grpc_total{")) {
      // A gRPC call is a failure when its grpc-status is not OK (the HTTP
      // status of it is 200).
      if (LabelOf(line, "grpc_status") != "OK") t.errors += ValueOf(line);
    } else if (Starts(line, "weft_inbound_rq_total{")) {
      t.mtls += ValueOf(line);
    }
  }
  return st;
}

Rates RatesBetween(const Traffic& a, const Traffic& b, double secs) {
  Rates r;
  const double n = b.total - a.total;
  r.rps = secs > 0 && n > 0 ? n / secs : 0;
  r.success = n > 0 ? std::clamp(1.0 - (b.errors - a.errors) / n, 0.0, 1.0) : 1.0;
  r.p50_ms = QuantileMs(a, b, 0.5);
  r.p99_ms = QuantileMs(a, b, 0.99);
  // The per-caller and per-listener counters are read a moment apart in
  // one scrape: the share can overshoot by a request.
  r.mtls = n > 0 ? std::clamp((b.mtls - a.mtls) / n, 0.0, 1.0) : 0.0;
  return r;
}

}  // namespace weft::control
