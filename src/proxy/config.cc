#include "proxy/config.h"

#include <arpa/inet.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "base/strings.h"
#include "base/yaml_fields.h"
#include "mesh/names.h"

namespace weft::proxy {
namespace {

using yaml::CheckKeys;
using yaml::Duration;
using yaml::Fail;
using yaml::Quoted;
using yaml::Scalar;
using yaml::Unsigned;

SocketAddress Address(const YAML::Node& n, const std::string& path) {
  std::string s = Scalar(n, path);
  std::string why;
  auto a = ParseSocketAddress(s, &why);
  if (!a) Fail(path + " \"" + s + "\"", why);
  return *a;
}

std::string Name(const YAML::Node& n, const std::string& path) {
  if (!n) Fail(path, "missing (every entry needs a name)");
  std::string s = Scalar(n, path);
  if (!mesh::IsIdentifier(s)) Fail(path + " \"" + s + "\"", mesh::kIdentifierRule);
  return s;
}

RouteConfig ParseRoute(const YAML::Node& n, const std::string& path) {
  CheckKeys(n, path,
            {"name", "match", "cluster", "clusters", "timeout", "per_try_timeout", "retries",
             "hedge", "retry_on", "retriable_status_codes", "fault", "rate_limit", "mirror"});
  RouteConfig r;
  if (n["name"]) r.name = Name(n["name"], path + ".name");
  if (n["match"]) {
    const YAML::Node& m = n["match"];
    std::string mp = path + ".match";
    CheckKeys(m, mp, {"prefix", "path", "headers"});
    if (m["prefix"] && m["path"]) Fail(mp, "set either prefix or path, not both");
    if (m["prefix"]) {
      r.prefix = Scalar(m["prefix"], mp + ".prefix");
      if (r.prefix.empty() || r.prefix[0] != '/') {
        Fail(mp + ".prefix " + Quoted(m["prefix"]), "must start with '/'");
      }
    }
    if (m["path"]) {
      r.path = Scalar(m["path"], mp + ".path");
      if (r.path.empty() || r.path[0] != '/') {
        Fail(mp + ".path " + Quoted(m["path"]), "must start with '/'");
      }
    }
    if (m["headers"]) {
      if (!m["headers"].IsMap()) Fail(mp + ".headers", "expected a mapping of name: value");
      for (const auto& kv : m["headers"]) {
        std::string name = kv.first.Scalar();
        for (char& c : name) {
          if (!http1::IsTokenChar(static_cast<unsigned char>(c))) {
            Fail(mp + ".headers." + name, "invalid header name");
          }
          c = AsciiLower(c);
        }
        r.headers.push_back({name, Scalar(kv.second, mp + ".headers." + name)});
      }
    }
  }
  if (r.prefix.empty() && r.path.empty()) r.prefix = "/";
  if (n["cluster"] && n["clusters"]) Fail(path, "set either cluster or clusters, not both");
  if (n["clusters"]) {
    const YAML::Node& cs = n["clusters"];
    if (!cs.IsSequence() || cs.size() == 0)
      Fail(path + ".clusters", "expected a list of {name, weight}");
    if (cs.size() > kMaxSplitClusters)
      Fail(path + ".clusters",
           "at most " + std::to_string(kMaxSplitClusters) + " clusters in a split");
    for (size_t i = 0; i < cs.size(); ++i) {
      std::string cp = path + ".clusters[" + std::to_string(i) + "]";
      CheckKeys(cs[i], cp, {"name", "weight"});
      if (!cs[i]["name"]) Fail(cp + ".name", "missing");
      WeightedCluster w;
      w.cluster = Scalar(cs[i]["name"], cp + ".name");
      if (cs[i]["weight"])
        w.weight =
            static_cast<uint32_t>(Unsigned(cs[i]["weight"], cp + ".weight", 0, kMaxSplitWeight));
      r.weighted.push_back(std::move(w));
    }
    r.cluster = r.weighted[0].cluster;
  } else {
    if (!n["cluster"]) Fail(path + ".cluster", "missing (name the cluster this route sends to)");
    r.cluster = Scalar(n["cluster"], path + ".cluster");
  }
  if (n["timeout"]) r.timeout_ms = Duration(n["timeout"], path + ".timeout");
  if (n["mirror"]) {
    const YAML::Node& m = n["mirror"];
    const std::string at = path + ".mirror";
    CheckKeys(m, at, {"cluster", "percent"});
    if (!m["cluster"]) Fail(at + ".cluster", "missing (name the cluster that gets the copies)");
    r.mirror.cluster = Scalar(m["cluster"], at + ".cluster");
    r.mirror.percent = 100;
    if (m["percent"]) {
      const std::string v = Scalar(m["percent"], at + ".percent");
      char* end = nullptr;
      const double d = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(d > 0 && d <= 100))
        Fail(at + ".percent", "a number over 0, at most 100");
      r.mirror.percent = d;
    }
  }
  if (n["fault"]) {
    const YAML::Node& f = n["fault"];
    const std::string at = path + ".fault";
    CheckKeys(f, at,
              {"delay", "delay_percent", "abort_status", "abort_grpc_status", "abort_percent"});
    auto percent = [&](const char* key) {
      if (!f[key]) return 100.0;
      const std::string v = Scalar(f[key], at + "." + key);
      char* end = nullptr;
      const double d = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(d >= 0 && d <= 100))
        Fail(at + "." + key, "a number from 0 to 100");
      return d;
    };
    if (f["delay"]) {
      r.fault.delay_ms = Duration(f["delay"], at + ".delay");
      if (r.fault.delay_ms <= 0 || r.fault.delay_ms > 600000) Fail(at + ".delay", "use 1ms to 10m");
      r.fault.delay_percent = percent("delay_percent");
    }
    if (f["abort_status"]) {
      r.fault.abort_status =
          static_cast<int>(Unsigned(f["abort_status"], at + ".abort_status", 200, 599));
      r.fault.abort_percent = percent("abort_percent");
    }
    if (f["abort_grpc_status"]) {
      if (!f["abort_status"]) Fail(at + ".abort_grpc_status", "only with abort_status");
      r.fault.abort_grpc =
          static_cast<int>(Unsigned(f["abort_grpc_status"], at + ".abort_grpc_status", 1, 16));
    }
    if (!r.fault.any()) Fail(at, "needs delay or abort_status");
  }
  if (const YAML::Node& rl = n["rate_limit"]) {
    // rate_limit: {requests_per_second, burst, per_caller: {requests_per_second, burst}}
    const std::string at = path + ".rate_limit";
    CheckKeys(rl, at, {"requests_per_second", "burst", "per_caller"});
    auto count = [](const YAML::Node& m, const std::string& p, const char* key, uint32_t max) {
      return m[key] ? static_cast<uint32_t>(Unsigned(m[key], p + "." + key, 1, max)) : 0u;
    };
    r.rate_limit.requests_per_second = count(rl, at, "requests_per_second", mesh::kMaxRateLimitRps);
    r.rate_limit.burst = count(rl, at, "burst", mesh::kMaxRateLimitBurst);
    if (const YAML::Node& pc = rl["per_caller"]) {
      CheckKeys(pc, at + ".per_caller", {"requests_per_second", "burst"});
      r.rate_limit.per_caller_rps =
          count(pc, at + ".per_caller", "requests_per_second", mesh::kMaxRateLimitRps);
      r.rate_limit.per_caller_burst =
          count(pc, at + ".per_caller", "burst", mesh::kMaxRateLimitBurst);
    }
    if (std::string e = mesh::RateLimitError(r.rate_limit); !e.empty()) Fail(at, e);
    if (!r.rate_limit.any()) Fail(at, "needs requests_per_second or per_caller");
  }
  if (n["per_try_timeout"]) {
    r.per_try_timeout_ms = Duration(n["per_try_timeout"], path + ".per_try_timeout");
    if (r.per_try_timeout_ms <= 0) Fail(path + ".per_try_timeout", "must be more than 0");
  }
  if (n["hedge"]) r.hedge = mesh::ParseHedge(n["hedge"], path + ".hedge");  // {delay: 50ms | p95}
  if (n["retries"]) {
    r.retries =
        static_cast<int>(Unsigned(n["retries"], path + ".retries", 0, mesh::kMaxRetryAttempts));
  }
  if (n["retry_on"]) {
    const YAML::Node& on = n["retry_on"];
    if (!on.IsSequence())
      Fail(path + ".retry_on", "expected a list (connect-failure, reset, 5xx, ...)");
    r.retry_on = 0;
    for (size_t i = 0; i < on.size(); ++i) {
      const std::string at = path + ".retry_on[" + std::to_string(i) + "]";
      const std::string v = Scalar(on[i], at);
      auto bit = RetryOnFromName(v);
      if (!bit) Fail(at + " \"" + v + "\"", "unknown condition (use " + RetryOnNameList() + ")");
      r.retry_on |= *bit;
    }
  }
  if (n["retriable_status_codes"]) {
    const YAML::Node& codes = n["retriable_status_codes"];
    const std::string at = path + ".retriable_status_codes";
    if (!codes.IsSequence() || codes.size() == 0 || codes.size() > mesh::kMaxRetriableStatusCodes)
      Fail(at, "expected a list of 1 to 16 status codes (400-599)");
    if (!(r.retry_on & kRetryOnRetriableStatusCodes))
      Fail(at, "only with retriable-status-codes in retry_on");
    r.retriable_status_codes.clear();
    for (size_t i = 0; i < codes.size(); ++i)
      r.retriable_status_codes.push_back(
          static_cast<uint16_t>(Unsigned(codes[i], at + "[" + std::to_string(i) + "]", 400, 599)));
  }
  return r;
}

ListenerConfig ParseListener(const YAML::Node& n, const std::string& path) {
  CheckKeys(n, path,
            {"name", "address", "protocol", "routes", "cluster", "access_log", "limits", "timeouts",
             "max_connections", "http2"});
  ListenerConfig l;
  l.name = Name(n["name"], path + ".name");
  if (!n["address"]) Fail(path + ".address", "missing (e.g. 127.0.0.1:8080)");
  l.address = Address(n["address"], path + ".address");
  std::string proto = n["protocol"] ? Scalar(n["protocol"], path + ".protocol") : "http";
  if (proto == "http") {
    l.protocol = Protocol::kHttp;
  } else if (proto == "tcp") {
    l.protocol = Protocol::kTcp;
  } else {
    Fail(path + ".protocol \"" + proto + "\"", "unknown protocol (use http or tcp)");
  }
  if (l.protocol == Protocol::kHttp) {
    if (n["cluster"]) Fail(path + ".cluster", "http listeners route with routes:, not cluster:");
    if (!n["routes"] || !n["routes"].IsSequence() || n["routes"].size() == 0) {
      Fail(path + ".routes", "an http listener needs at least one route");
    }
    for (size_t i = 0; i < n["routes"].size(); ++i) {
      RouteConfig r = ParseRoute(n["routes"][i], path + ".routes[" + std::to_string(i) + "]");
      if (r.name.empty()) r.name = l.name + "." + std::to_string(i);
      l.routes.push_back(std::move(r));
    }
  } else {
    if (n["routes"]) Fail(path + ".routes", "tcp listeners take cluster:, not routes:");
    if (!n["cluster"]) Fail(path + ".cluster", "missing (a tcp listener forwards to one cluster)");
    l.cluster = Scalar(n["cluster"], path + ".cluster");
  }
  if (n["access_log"]) {
    const YAML::Node& a = n["access_log"];
    if (a.IsScalar()) {
      l.access_log.path = a.Scalar();
    } else {
      CheckKeys(a, path + ".access_log", {"path"});
      l.access_log.path = Scalar(a["path"], path + ".access_log.path");
    }
    if (l.access_log.path.empty()) Fail(path + ".access_log", "give a file path or stdout");
  }
  if (n["limits"]) {
    const YAML::Node& m = n["limits"];
    std::string lp = path + ".limits";
    CheckKeys(m, lp,
              {"max_request_line", "max_header_bytes", "max_headers", "max_request_body",
               "retry_buffer"});
    if (m["max_request_line"]) {
      l.limits.max_request_line =
          Unsigned(m["max_request_line"], lp + ".max_request_line", 64, 1 << 20);
    }
    if (m["max_header_bytes"]) {
      l.limits.max_header_bytes =
          Unsigned(m["max_header_bytes"], lp + ".max_header_bytes", 256, 1 << 20);
    }
    if (m["max_headers"])
      l.limits.max_headers = Unsigned(m["max_headers"], lp + ".max_headers", 1, 10000);
    if (m["max_request_body"]) {
      l.max_request_body_bytes =
          Unsigned(m["max_request_body"], lp + ".max_request_body", 0, UINT64_MAX / 2);
    }
    if (m["retry_buffer"])
      l.retry_buffer_bytes = Unsigned(m["retry_buffer"], lp + ".retry_buffer", 0, 16 << 20);
    if (l.limits.max_request_line > l.limits.max_header_bytes) {
      Fail(lp + ".max_request_line", "must not exceed max_header_bytes");
    }
  }
  if (n["timeouts"]) {
    const YAML::Node& t = n["timeouts"];
    std::string tp = path + ".timeouts";
    CheckKeys(t, tp, {"header_read", "idle", "request"});
    if (t["header_read"])
      l.header_read_timeout_ms = Duration(t["header_read"], tp + ".header_read");
    if (t["idle"]) l.idle_timeout_ms = Duration(t["idle"], tp + ".idle");
    if (t["request"]) l.request_timeout_ms = Duration(t["request"], tp + ".request");
  }
  if (n["max_connections"]) {
    l.max_connections = Unsigned(n["max_connections"], path + ".max_connections", 1, 10000000);
  }
  if (n["http2"]) {
    // The limits HTTP/2 clients are held to (http2::Settings).
    const YAML::Node& h = n["http2"];
    const std::string hp = path + ".http2";
    CheckKeys(h, hp,
              {"max_concurrent_streams", "max_header_list_bytes", "reset_burst", "reset_rate",
               "max_reset_streams", "max_empty_data_per_second", "connection_send_buffer"});
    const auto field = [&](const char* key, uint32_t* out, uint64_t min, uint64_t max) {
      if (h[key]) *out = static_cast<uint32_t>(Unsigned(h[key], hp + "." + key, min, max));
    };
    field("max_concurrent_streams", &l.http2.max_concurrent_streams, 1, 100000);
    field("max_header_list_bytes", &l.http2.max_header_list_bytes, 1024, 16 << 20);
    field("reset_burst", &l.http2.reset_burst, 1, 1000000);
    field("reset_rate", &l.http2.reset_rate, 1, 1000000);
    field("max_reset_streams", &l.http2.max_reset_streams, 1, UINT32_MAX);
    field("max_empty_data_per_second", &l.http2.max_empty_data_per_second, 1, 1000000);
    field("connection_send_buffer", &l.http2.connection_send_buffer, 16 * 1024, 1u << 30);
  }
  return l;
}

// outlier_detection: {enabled, consecutive_5xx, consecutive_gateway_errors,
// interval, base_ejection_time, max_ejection_time, max_ejection_percent,
// min_health_percent, success_rate: {minimum_hosts, request_volume, stdev_factor}}
OutlierConfig ParseOutlier(const YAML::Node& n, const std::string& at) {
  CheckKeys(
      n, at,
      {"enabled", "consecutive_5xx", "consecutive_gateway_errors", "interval", "base_ejection_time",
       "max_ejection_time", "max_ejection_percent", "min_health_percent", "success_rate"});
  OutlierConfig o;
  if (n["enabled"])
    o.enabled = yaml::OneOf(n["enabled"], at + ".enabled", {"true", "false"}) == "true";
  auto count = [&](const YAML::Node& m, const std::string& p, const char* key, uint32_t* v,
                   uint64_t min, uint64_t max) {
    if (m[key]) *v = static_cast<uint32_t>(Unsigned(m[key], p + "." + key, min, max));
  };
  auto span = [&](const char* key, int64_t* v, int64_t min, int64_t max, const char* range) {
    if (!n[key]) return;
    *v = Duration(n[key], at + "." + key);
    if (*v < min || *v > max) Fail(at + "." + key, std::string("use ") + range);
  };
  count(n, at, "consecutive_5xx", &o.consecutive_5xx, 0, mesh::kMaxConsecutiveErrors);
  count(n, at, "consecutive_gateway_errors", &o.consecutive_gateway, 0,
        mesh::kMaxConsecutiveErrors);
  span("interval", &o.interval_ms, mesh::kMinOutlierMs, mesh::kMaxOutlierIntervalMs, "100ms to 1h");
  span("base_ejection_time", &o.base_ejection_ms, mesh::kMinOutlierMs, mesh::kMaxOutlierIntervalMs,
       "100ms to 1h");
  span("max_ejection_time", &o.max_ejection_ms, mesh::kMinOutlierMs, mesh::kMaxOutlierEjectionMs,
       "100ms to 24h");
  if (o.max_ejection_ms < o.base_ejection_ms)
    Fail(at + ".max_ejection_time", "shorter than base_ejection_time");
  count(n, at, "max_ejection_percent", &o.max_ejection_percent, 0, 100);
  count(n, at, "min_health_percent", &o.min_health_percent, 0, 100);
  if (const YAML::Node& sr = n["success_rate"]) {
    const std::string sp = at + ".success_rate";
    CheckKeys(sr, sp, {"minimum_hosts", "request_volume", "stdev_factor"});
    count(sr, sp, "minimum_hosts", &o.success_rate_min_hosts, 1, 100000);
    count(sr, sp, "request_volume", &o.success_rate_request_volume, 1, 1000000);
    if (sr["stdev_factor"]) {
      const std::string v = Scalar(sr["stdev_factor"], sp + ".stdev_factor");
      char* end = nullptr;
      const double f = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(f >= 0 && f * 1000 <= mesh::kMaxStdevFactor))
        Fail(sp + ".stdev_factor " + Quoted(sr["stdev_factor"]),
             "use a number from 0 (off) to 100, for example 1.9");
      o.success_rate_stdev_factor = static_cast<uint32_t>(f * 1000 + 0.5);
    }
  }
  return o;
}

ClusterConfig ParseCluster(const YAML::Node& n, const std::string& path) {
  CheckKeys(n, path,
            {"name", "lb", "ewma_decay", "protocol", "connect_timeout", "endpoints",
             "max_idle_per_endpoint", "retry_budget", "circuit_breakers", "outlier_detection",
             "hash", "ring_points", "maglev_table_size", "slow_start", "local_zone"});
  ClusterConfig c;
  c.name = Name(n["name"], path + ".name");
  if (n["lb"]) {
    std::string lb = Scalar(n["lb"], path + ".lb");
    auto p = LbPolicyFromName(lb);
    if (!p)
      Fail(path + ".lb \"" + lb + "\"",
           "unknown policy (use ewma, round_robin, least_request, random, ring_hash or maglev)");
    c.lb = *p;
  }
  if (n["ewma_decay"]) {
    if (c.lb != LbPolicy::kEwma) Fail(path + ".ewma_decay", "only for lb: ewma");
    c.ewma_decay_ms = Duration(n["ewma_decay"], path + ".ewma_decay");
    if (c.ewma_decay_ms < 100 || c.ewma_decay_ms > 600000)
      Fail(path + ".ewma_decay", "use 100ms to 10m");
  }
  const bool hashed = c.lb == LbPolicy::kRingHash || c.lb == LbPolicy::kMaglev;
  if (hashed && !n["hash"])
    Fail(path + ".hash", "missing: ring_hash and maglev hash a request key");
  if (n["hash"]) {
    // hash: {header: NAME} | {cookie: {name, ttl, path}} | {source_ip: true}
    if (!hashed) Fail(path + ".hash", "only for lb: ring_hash or maglev");
    const YAML::Node& h = n["hash"];
    const std::string at = path + ".hash";
    CheckKeys(h, at, {"header", "cookie", "source_ip"});
    if (h["header"]) c.hash.header = AsciiLower(Scalar(h["header"], at + ".header"));
    if (const YAML::Node& ck = h["cookie"]) {
      CheckKeys(ck, at + ".cookie", {"name", "ttl", "path"});
      if (!ck["name"]) Fail(at + ".cookie.name", "missing");
      c.hash.cookie = Scalar(ck["name"], at + ".cookie.name");
      if (ck["ttl"]) c.hash.cookie_ttl_ms = Duration(ck["ttl"], at + ".cookie.ttl");
      if (ck["path"]) c.hash.cookie_path = Scalar(ck["path"], at + ".cookie.path");
    }
    if (h["source_ip"])
      c.hash.source_ip =
          yaml::OneOf(h["source_ip"], at + ".source_ip", {"true", "false"}) == "true";
  }
  if (n["ring_points"]) {
    if (c.lb != LbPolicy::kRingHash) Fail(path + ".ring_points", "only for lb: ring_hash");
    c.hash.ring_points = static_cast<uint32_t>(Unsigned(
        n["ring_points"], path + ".ring_points", mesh::kMinRingPoints, mesh::kMaxRingPoints));
  }
  if (n["maglev_table_size"]) {
    if (c.lb != LbPolicy::kMaglev) Fail(path + ".maglev_table_size", "only for lb: maglev");
    c.hash.table_size = static_cast<uint32_t>(Unsigned(
        n["maglev_table_size"], path + ".maglev_table_size", 2, mesh::kMaxMaglevTableSize));
  }
  if (hashed) {
    if (std::string e = mesh::HashPolicyError(c.hash); !e.empty()) Fail(path, e);
  }
  if (n["local_zone"]) {
    if (hashed)
      Fail(path + ".local_zone", "not with ring_hash or maglev: a key keeps its endpoint");
    c.local_zone = Scalar(n["local_zone"], path + ".local_zone");
  }
  if (const YAML::Node& ss = n["slow_start"]) {
    // slow_start: {window, aggression, min_weight_percent}
    const std::string at = path + ".slow_start";
    if (hashed) Fail(at, "not with ring_hash or maglev: a key's endpoint does not take turns");
    CheckKeys(ss, at, {"window", "aggression", "min_weight_percent"});
    if (!ss["window"]) Fail(at + ".window", "missing");
    c.slow_start_ms = Duration(ss["window"], at + ".window");
    if (c.slow_start_ms < 1000 || c.slow_start_ms > 3600000) Fail(at + ".window", "use 1s to 1h");
    if (ss["aggression"]) {
      const std::string v = Scalar(ss["aggression"], at + ".aggression");
      char* end = nullptr;
      c.slow_start_aggression = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' ||
          !(c.slow_start_aggression >= 0.1 && c.slow_start_aggression <= 10))
        Fail(at + ".aggression", "a number from 0.1 to 10 (1: linear)");
    }
    if (ss["min_weight_percent"])
      c.slow_start_min_weight_percent = static_cast<uint32_t>(
          Unsigned(ss["min_weight_percent"], at + ".min_weight_percent", 1, 100));
  }
  if (n["protocol"]) {
    std::string proto = Scalar(n["protocol"], path + ".protocol");
    auto p = UpstreamProtocolFromName(proto);
    if (!p) Fail(path + ".protocol \"" + proto + "\"", "unknown protocol (use http1 or http2)");
    c.protocol = *p;
  }
  if (n["connect_timeout"])
    c.connect_timeout_ms = Duration(n["connect_timeout"], path + ".connect_timeout");
  if (n["circuit_breakers"]) {
    const YAML::Node& b = n["circuit_breakers"];
    const std::string at = path + ".circuit_breakers";
    CheckKeys(b, at, {"max_connections", "max_pending_requests", "max_requests", "max_retries"});
    auto limit = [&](const char* key, uint32_t* v) {
      if (b[key]) *v = static_cast<uint32_t>(Unsigned(b[key], at + "." + key, 1, 1000000));
    };
    limit("max_connections", &c.max_connections);
    limit("max_pending_requests", &c.max_pending_requests);
    limit("max_requests", &c.max_requests);
    limit("max_retries", &c.max_retries);
  }
  if (n["outlier_detection"])
    c.outlier = ParseOutlier(n["outlier_detection"], path + ".outlier_detection");
  if (n["retry_budget"]) {
    const YAML::Node& b = n["retry_budget"];
    CheckKeys(b, path + ".retry_budget", {"percent", "min_per_second"});
    if (b["percent"])
      c.retry_budget_percent =
          static_cast<uint32_t>(Unsigned(b["percent"], path + ".retry_budget.percent", 0, 100));
    if (b["min_per_second"])
      c.retry_budget_min_per_s = static_cast<uint32_t>(
          Unsigned(b["min_per_second"], path + ".retry_budget.min_per_second", 0, 10000));
  }
  if (n["max_idle_per_endpoint"]) {
    if (c.protocol == UpstreamProtocol::kHttp2) {
      Fail(path + ".max_idle_per_endpoint",
           "applies to HTTP/1.1 upstreams; an http2 cluster carries its requests as streams on one "
           "connection per endpoint and worker");
    }
    c.max_idle_per_endpoint = static_cast<uint32_t>(
        Unsigned(n["max_idle_per_endpoint"], path + ".max_idle_per_endpoint", 0, 100000));
  }
  const YAML::Node& eps = n["endpoints"];
  if (!eps || !eps.IsSequence() || eps.size() == 0) {
    Fail(path + ".endpoints", "a cluster needs at least one endpoint");
  }
  for (size_t i = 0; i < eps.size(); ++i) {
    std::string ep = path + ".endpoints[" + std::to_string(i) + "]";
    Endpoint e;
    if (eps[i].IsScalar()) {
      e.address = Address(eps[i], ep);
    } else {
      CheckKeys(eps[i], ep, {"address", "weight", "zone"});
      if (eps[i]["zone"]) e.zone = Scalar(eps[i]["zone"], ep + ".zone");
      if (!eps[i]["address"]) Fail(ep + ".address", "missing");
      e.address = Address(eps[i]["address"], ep + ".address");
      if (eps[i]["weight"]) {
        e.weight = static_cast<uint32_t>(Unsigned(eps[i]["weight"], ep + ".weight", 1, 10000));
      }
    }
    c.endpoints.push_back(std::move(e));
  }
  return c;
}

std::shared_ptr<ProxyConfig> Parse(const YAML::Node& root) {
  auto cfg = std::make_shared<ProxyConfig>();
  if (!root.IsMap()) Fail("(top level)", "expected a mapping with listeners: and clusters:");
  CheckKeys(root, "(top level)",
            {"admin", "workers", "listeners", "clusters", "drain_timeout", "tracing"});
  if (const YAML::Node& t = root["tracing"]) {
    // The bootstrap names its spans' service; the rest is a Telemetry's.
    YAML::Node settings = YAML::Clone(t);
    if (t.IsMap() && t["service_name"]) {
      cfg->tracing.service_name = Name(t["service_name"], "tracing.service_name");
      settings.remove("service_name");
    }
    const mesh::Tracing parsed = mesh::ParseTracing(settings, "tracing");
    std::string err;
    if (!ResolveTracing(parsed, &cfg->tracing, &err)) Fail("tracing", err);
  }
  if (root["admin"]) {
    CheckKeys(root["admin"], "admin", {"address"});
    cfg->admin = Address(root["admin"]["address"], "admin.address");
  }
  if (root["workers"])
    cfg->workers = static_cast<int>(Unsigned(root["workers"], "workers", 1, 256));
  if (cfg->workers == 0) cfg->workers = std::max(1u, std::thread::hardware_concurrency());
  if (root["drain_timeout"])
    cfg->drain_timeout_ms = Duration(root["drain_timeout"], "drain_timeout");

  if (root["clusters"]) {
    if (!root["clusters"].IsSequence()) Fail("clusters", "expected a list");
    for (size_t i = 0; i < root["clusters"].size(); ++i) {
      std::string p = "clusters[" + std::to_string(i) + "]";
      ClusterConfig c = ParseCluster(root["clusters"][i], p);
      cfg->clusters.push_back(std::move(c));
    }
  }
  if (!root["listeners"] || !root["listeners"].IsSequence() || root["listeners"].size() == 0) {
    Fail("listeners", "at least one listener is needed");
  }
  for (size_t i = 0; i < root["listeners"].size(); ++i) {
    std::string p = "listeners[" + std::to_string(i) + "]";
    ListenerConfig l = ParseListener(root["listeners"][i], p);
    cfg->listeners.push_back(std::move(l));
  }
  return cfg;
}

}  // namespace

bool ResolveTracing(const mesh::Tracing& t, TracingConfig* out, std::string* error) {
  out->enabled = t.active();
  out->sampling = t.sampling.value_or(mesh::kDefaultTraceSampling);
  out->json = t.format == "json";
  out->otlp = t.otlp;
  out->host_port.clear();
  out->path.clear();
  if (t.enabled.value_or(true) && t.otlp.empty()) {
    *error = "otlp: required: the collector's URL (http://HOST:4318), or enabled: false";
    return false;
  }
  if (!t.otlp.empty()) {
    const auto target = mesh::ParseOtlpUrl(t.otlp, error);
    if (!target) return false;
    out->host_port = target->host_port;
    out->path = target->path;
  }
  return true;
}

const char* MeshTlsModeName(MeshTlsMode m) {
  switch (m) {
    case MeshTlsMode::kStrict:
      return "strict";
    case MeshTlsMode::kPermissive:
      return "permissive";
    default:
      return "off";
  }
}

std::optional<LbPolicy> LbPolicyFromName(std::string_view name) {
  for (LbPolicy p : {LbPolicy::kEwma, LbPolicy::kRoundRobin, LbPolicy::kLeastRequest,
                     LbPolicy::kRandom, LbPolicy::kRingHash, LbPolicy::kMaglev}) {
    if (name == LbPolicyName(p)) return p;
  }
  return std::nullopt;
}

std::optional<MeshTlsMode> MeshTlsModeFromName(std::string_view name) {
  for (MeshTlsMode m : {MeshTlsMode::kOff, MeshTlsMode::kStrict, MeshTlsMode::kPermissive}) {
    if (name == MeshTlsModeName(m)) return m;
  }
  return std::nullopt;
}

std::optional<UpstreamProtocol> UpstreamProtocolFromName(std::string_view name) {
  for (UpstreamProtocol p : {UpstreamProtocol::kHttp1, UpstreamProtocol::kHttp2}) {
    if (name == UpstreamProtocolName(p)) return p;
  }
  return std::nullopt;
}

namespace {
// mesh::kRetryOnNames, in order.
constexpr uint32_t kRetryOnBits[] = {kRetryOnConnectFailure,
                                     kRetryOnReset,
                                     kRetryOn5xx,
                                     kRetryOnGatewayError,
                                     kRetryOnRetriableStatusCodes,
                                     kRetryOnCancelled,
                                     kRetryOnDeadlineExceeded,
                                     kRetryOnInternal,
                                     kRetryOnResourceExhausted,
                                     kRetryOnUnavailable};
static_assert(std::size(kRetryOnBits) == std::size(mesh::kRetryOnNames));
}  // namespace

std::string RetryOnNameList() {
  std::string out;
  for (const char* n : mesh::kRetryOnNames) out += (out.empty() ? "" : ", ") + std::string(n);
  return out;
}

std::optional<uint32_t> RetryOnFromName(std::string_view name) {
  for (size_t i = 0; i < std::size(kRetryOnBits); ++i)
    if (name == mesh::kRetryOnNames[i]) return kRetryOnBits[i];
  return std::nullopt;
}

const char* LbPolicyName(LbPolicy p) {
  switch (p) {
    case LbPolicy::kRoundRobin:
      return "round_robin";
    case LbPolicy::kLeastRequest:
      return "least_request";
    case LbPolicy::kRandom:
      return "random";
    case LbPolicy::kEwma:
      return "ewma";
    case LbPolicy::kRingHash:
      return "ring_hash";
    case LbPolicy::kMaglev:
      return "maglev";
  }
  return "?";
}

const char* UpstreamProtocolName(UpstreamProtocol p) {
  switch (p) {
    case UpstreamProtocol::kHttp1:
      return "http1";
    case UpstreamProtocol::kHttp2:
      return "http2";
  }
  return "?";
}

std::shared_ptr<const ProxyConfig> ParseConfig(const std::string& yaml, const std::string& source,
                                               std::string* error) {
  try {
    YAML::Node root = YAML::Load(yaml);
    auto cfg = Parse(root);
    cfg->source_path = source;
    // The checks across fields, shared with the control plane's stream.
    std::string why;
    if (!ResolveConfig(cfg.get(), &why)) {
      *error = "config error: " + why;
      return nullptr;
    }
    return cfg;
  } catch (const yaml::FieldError& e) {
    *error = e.Line("config error: ");
  } catch (const YAML::Exception& e) {
    *error = "config error: " + source + ": line " + std::to_string(e.mark.line + 1) + ": " + e.msg;
  }
  return nullptr;
}

std::shared_ptr<const ProxyConfig> LoadConfigFile(const std::string& path, std::string* error) {
  std::ifstream in(path);
  if (!in) {
    *error = "config error: cannot read " + path + ": " + strerror(errno);
    return nullptr;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseConfig(ss.str(), path, error);
}

bool ResolveConfig(ProxyConfig* cfg, std::string* error) {
  // One message shape for both sources: the field's path in the config as
  // the admin endpoint's /config lists it, the value, and why.
  const auto fail = [&](const std::string& path, const std::string& value, std::string_view why) {
    *error = path + (value.empty() ? "" : " \"" + value + "\"") + ": " + std::string(why);
    return false;
  };
  std::map<std::string, size_t> clusters;
  for (size_t i = 0; i < cfg->clusters.size(); ++i) {
    const ClusterConfig& c = cfg->clusters[i];
    const std::string p = "clusters[" + std::to_string(i) + "].name";
    if (!mesh::IsIdentifier(c.name)) return fail(p, c.name, mesh::kIdentifierRule);
    if (!clusters.emplace(c.name, i).second) return fail(p, c.name, "duplicate cluster name");
  }
  const auto find = [&](const std::string& name, const std::string& path, size_t* out) {
    auto it = clusters.find(name);
    if (it == clusters.end()) return fail(path, name, "no cluster with that name");
    *out = it->second;
    return true;
  };
  std::set<std::string> names;
  for (size_t i = 0; i < cfg->listeners.size(); ++i) {
    ListenerConfig& l = cfg->listeners[i];
    const std::string p = "listeners[" + std::to_string(i) + "]";
    if (!mesh::IsIdentifier(l.name)) return fail(p + ".name", l.name, mesh::kIdentifierRule);
    if (!names.insert(l.name).second) return fail(p + ".name", l.name, "duplicate listener name");
    // Virtual listeners (capture_of) are tables, not sockets.
    if (l.capture_of.empty() && l.address.port() != 0) {
      for (size_t k = 0; k < i; ++k) {
        const ListenerConfig& o = cfg->listeners[k];
        if (o.capture_of.empty() && o.address == l.address)
          return fail(p + ".address", l.address.text, "already used by listener " + o.name);
      }
    }
    if (l.protocol == Protocol::kTcp && !l.capture &&
        !find(l.cluster, p + ".cluster", &l.cluster_index))
      return false;
    for (size_t j = 0; j < l.routes.size(); ++j) {
      RouteConfig& r = l.routes[j];
      const std::string rp = p + ".routes[" + std::to_string(j) + "]";
      if (r.retries > static_cast<int>(mesh::kMaxRetryAttempts)) {
        return fail(rp + ".retries", std::to_string(r.retries),
                    "exceeds the limit of " + std::to_string(mesh::kMaxRetryAttempts));
      }
      if (r.weighted.size() > kMaxSplitClusters) {
        return fail(rp + ".clusters", "",
                    "at most " + std::to_string(kMaxSplitClusters) + " clusters in a split");
      }
      if (r.weighted.empty() && !find(r.cluster, rp + ".cluster", &r.cluster_index)) return false;
      if (r.mirror.any()) {
        if (!find(r.mirror.cluster, rp + ".mirror.cluster", &r.mirror.cluster_index)) return false;
      }
      uint64_t total = 0;
      for (size_t k = 0; k < r.weighted.size(); ++k) {
        WeightedCluster& w = r.weighted[k];
        const std::string wp = rp + ".clusters[" + std::to_string(k) + "]";
        if (!find(w.cluster, wp + ".name", &w.index)) return false;
        if (w.weight > kMaxSplitWeight) {
          return fail(wp + ".weight", std::to_string(w.weight),
                      "exceeds " + std::to_string(kMaxSplitWeight));
        }
        total += w.weight;
      }
      if (!r.weighted.empty()) {
        if (total == 0)
          return fail(rp + ".clusters", "", "the weights add up to 0 (give at least one a weight)");
        r.cluster = r.weighted[0].cluster;
        r.cluster_index = r.weighted[0].index;
      }
    }
  }
  // Virtual listeners into their capture listener's tables (the first
  // listener to claim an address or host keeps it).
  for (size_t i = 0; i < cfg->listeners.size(); ++i) {
    const ListenerConfig& v = cfg->listeners[i];
    if (v.capture_of.empty()) continue;
    ListenerConfig* cap = nullptr;
    for (auto& l : cfg->listeners)
      if (l.capture && l.name == v.capture_of) cap = &l;
    if (!cap) {
      return fail("listeners[" + std::to_string(i) + "].capture_of", v.capture_of,
                  "no capture listener with that name");
    }
    for (const auto& a : v.match_addresses) cap->by_address.emplace(a, i);
    if (v.protocol == Protocol::kHttp)
      for (const auto& h : v.match_hosts) cap->by_host.emplace(h, i);
  }
  return true;
}

std::string ConfigToJson(const ProxyConfig& c) {
  using nlohmann::json;
  json j;
  j["source"] = c.source_path;
  j["workers"] = c.workers;
  j["drain_timeout_ms"] = c.drain_timeout_ms;
  if (c.admin) j["admin"]["address"] = c.admin->text;
  if (c.tracing.enabled || !c.tracing.otlp.empty()) {
    json& t = j["tracing"];
    t["enabled"] = c.tracing.enabled;
    t["sampling"] = c.tracing.sampling;
    t["otlp"] = c.tracing.otlp;
    t["format"] = c.tracing.json ? "json" : "protobuf";
    t["service_name"] = c.tracing.service_name;
  }
  j["listeners"] = json::array();
  for (const auto& l : c.listeners) {
    json jl;
    jl["name"] = l.name;
    jl["address"] = l.address.text;
    jl["protocol"] = l.protocol == Protocol::kHttp ? "http" : "tcp";
    jl["max_connections"] = l.max_connections;
    jl["timeouts"] = {{"header_read_ms", l.header_read_timeout_ms},
                      {"idle_ms", l.idle_timeout_ms},
                      {"request_ms", l.request_timeout_ms}};
    jl["limits"] = {{"max_request_line", l.limits.max_request_line},
                    {"max_header_bytes", l.limits.max_header_bytes},
                    {"max_headers", l.limits.max_headers},
                    {"max_request_body", l.max_request_body_bytes},
                    {"retry_buffer", l.retry_buffer_bytes}};
    jl["http2"] = {{"max_concurrent_streams", l.http2.max_concurrent_streams},
                   {"max_header_list_bytes", l.http2.max_header_list_bytes},
                   {"reset_burst", l.http2.reset_burst},
                   {"reset_rate", l.http2.reset_rate},
                   {"max_reset_streams", l.http2.max_reset_streams},
                   {"max_empty_data_per_second", l.http2.max_empty_data_per_second},
                   {"connection_send_buffer", l.http2.connection_send_buffer}};
    if (!l.access_log.path.empty()) jl["access_log"] = l.access_log.path;
    if (l.mtls != MeshTlsMode::kOff) jl["mtls"] = MeshTlsModeName(l.mtls);
    if (l.protocol == Protocol::kTcp) {
      jl["cluster"] = l.cluster;
    } else {
      jl["routes"] = json::array();
      for (const auto& r : l.routes) {
        json jr{{"name", r.name}, {"cluster", r.cluster}};
        if (!r.prefix.empty()) jr["match"]["prefix"] = r.prefix;
        if (!r.path.empty()) jr["match"]["path"] = r.path;
        for (const auto& h : r.headers) jr["match"]["headers"][h.name] = h.value;
        if (r.timeout_ms) jr["timeout_ms"] = r.timeout_ms;
        if (r.retries >= 0) jr["retries"] = r.retries;
        if (r.per_try_timeout_ms > 0) jr["per_try_timeout_ms"] = r.per_try_timeout_ms;
        if (r.hedge.p95) jr["hedge"] = {{"delay", "p95"}};
        if (r.hedge.delay_ms > 0) jr["hedge"] = {{"delay_ms", r.hedge.delay_ms}};
        if (r.rate_limit.any()) {
          const mesh::RateLimit& rl = r.rate_limit;
          jr["rate_limit"] = {
              {"requests_per_second", rl.requests_per_second},
              {"burst", rl.burst},
              {"per_caller",
               {{"requests_per_second", rl.per_caller_rps}, {"burst", rl.per_caller_burst}}}};
        }
        if (r.mirror.any())
          jr["mirror"] = {{"cluster", r.mirror.cluster}, {"percent", r.mirror.percent}};
        if (r.fault.any()) {
          jr["fault"] = {{"delay_ms", r.fault.delay_ms},
                         {"delay_percent", r.fault.delay_percent},
                         {"abort_status", r.fault.abort_status},
                         {"abort_grpc_status", r.fault.abort_grpc},
                         {"abort_percent", r.fault.abort_percent}};
        }
        if (r.retry_on & kRetryOnRetriableStatusCodes)
          jr["retriable_status_codes"] = r.retriable_status_codes;
        if (r.retry_on != kRetryOnAll) {
          nlohmann::json on = nlohmann::json::array();
          for (size_t b = 0; b < std::size(kRetryOnBits); ++b)
            if (r.retry_on & kRetryOnBits[b]) on.push_back(mesh::kRetryOnNames[b]);
          jr["retry_on"] = on;
        }
        if (!r.weighted.empty()) {
          jr.erase("cluster");
          for (const auto& w : r.weighted)
            jr["clusters"].push_back({{"name", w.cluster}, {"weight", w.weight}});
        }
        jl["routes"].push_back(jr);
      }
    }
    j["listeners"].push_back(jl);
  }
  j["clusters"] = json::array();
  for (const auto& cl : c.clusters) {
    json jc{{"name", cl.name},
            {"lb", LbPolicyName(cl.lb)},
            {"protocol", UpstreamProtocolName(cl.protocol)},
            {"connect_timeout_ms", cl.connect_timeout_ms},
            {"max_idle_per_endpoint", cl.max_idle_per_endpoint}};
    if (!cl.peer_id.empty()) jc["peer_id"] = cl.peer_id;
    if (!cl.mesh_http2) jc["mesh_protocol"] = "http1";
    if (cl.lb == LbPolicy::kEwma) jc["ewma_decay_ms"] = cl.ewma_decay_ms;
    if (!cl.local_zone.empty()) jc["local_zone"] = cl.local_zone;
    if (cl.slow_start_ms > 0)
      jc["slow_start"] = {{"window_ms", cl.slow_start_ms},
                          {"aggression", cl.slow_start_aggression},
                          {"min_weight_percent", cl.slow_start_min_weight_percent}};
    if (cl.lb == LbPolicy::kRingHash || cl.lb == LbPolicy::kMaglev) {
      json h = json::object();
      if (!cl.hash.header.empty()) h["header"] = cl.hash.header;
      if (!cl.hash.cookie.empty())
        h["cookie"] = {{"name", cl.hash.cookie},
                       {"ttl_ms", cl.hash.cookie_ttl_ms},
                       {"path", cl.hash.cookie_path}};
      if (cl.hash.source_ip) h["source_ip"] = true;
      jc["hash"] = h;
      if (cl.lb == LbPolicy::kRingHash) jc["ring_points"] = cl.hash.ring_points;
      if (cl.lb == LbPolicy::kMaglev) jc["maglev_table_size"] = cl.hash.table_size;
    }
    jc["retry_budget"] = {{"percent", cl.retry_budget_percent},
                          {"min_per_second", cl.retry_budget_min_per_s}};
    jc["circuit_breakers"] = {{"max_connections", cl.max_connections},
                              {"max_pending_requests", cl.max_pending_requests},
                              {"max_requests", cl.max_requests},
                              {"max_retries", cl.max_retries}};
    const OutlierConfig& o = cl.outlier;
    jc["outlier_detection"] = {{"enabled", o.enabled},
                               {"consecutive_5xx", o.consecutive_5xx},
                               {"consecutive_gateway_errors", o.consecutive_gateway},
                               {"interval_ms", o.interval_ms},
                               {"base_ejection_time_ms", o.base_ejection_ms},
                               {"max_ejection_time_ms", o.max_ejection_ms},
                               {"max_ejection_percent", o.max_ejection_percent},
                               {"min_health_percent", o.min_health_percent},
                               {"success_rate",
                                {{"minimum_hosts", o.success_rate_min_hosts},
                                 {"request_volume", o.success_rate_request_volume},
                                 {"stdev_factor", o.success_rate_stdev_factor / 1000.0}}}};
    jc["endpoints"] = json::array();
    for (const auto& e : cl.endpoints) {
      json je{{"address", e.address.text}, {"weight", e.weight}};
      if (e.mtls) je["mtls"] = true;
      if (!e.zone.empty()) je["zone"] = e.zone;
      jc["endpoints"].push_back(je);
    }
    j["clusters"].push_back(jc);
  }
  // Display only: bytes that are not UTF-8 (a header value, say) print as U+FFFD.
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace weft::proxy
