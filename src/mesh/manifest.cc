#include "mesh/manifest.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "base/strings.h"
#include "base/yaml_fields.h"
#include "mesh/names.h"

namespace weft::mesh {
namespace {

using yaml::CheckKeys;
using yaml::Duration;
using yaml::Fail;
using yaml::OneOf;
using yaml::Scalar;
using yaml::Unsigned;

// RFC 1123 label, as Kubernetes names: lower-case letters, digits and '-',
// starting and ending with a letter or digit, at most 63 characters.
std::string Label(const YAML::Node& n, const std::string& path) {
  if (!n) Fail(path, "missing");
  std::string s = Scalar(n, path);
  if (!IsDnsLabel(s)) Fail(path + " \"" + s + "\"", kDnsLabelRule);
  return s;
}

// Every list in a manifest has a bound, so that a small document cannot ask
// for unbounded work or memory (YAML aliases can repeat a large list many
// times over).
constexpr size_t kMaxListItems = 256;
constexpr size_t kMaxDocuments = 1000;

YAML::Node Seq(const YAML::Node& n, const std::string& path, size_t max = kMaxListItems) {
  if (!n.IsSequence()) Fail(path, "expected a list");
  if (n.size() > max) Fail(path, "too many items (at most " + std::to_string(max) + ")");
  return n;
}

std::vector<std::string> StringList(const YAML::Node& n, const std::string& path) {
  Seq(n, path, kMaxListItems);
  std::vector<std::string> out;
  for (size_t i = 0; i < n.size(); ++i)
    out.push_back(Scalar(n[i], path + "[" + std::to_string(i) + "]"));
  return out;
}

std::string At(const std::string& path, size_t i) { return path + "[" + std::to_string(i) + "]"; }

ServiceSpec ParseService(const YAML::Node& s) {
  CheckKeys(s, "spec", {"ports", "mtls", "meshProtocol"});
  ServiceSpec out;
  if (!s["ports"]) Fail("spec.ports", "missing (e.g. ports: [{port: 9080, protocol: http}])");
  const YAML::Node& ports = Seq(s["ports"], "spec.ports");
  for (size_t i = 0; i < ports.size(); ++i) {
    std::string p = At("spec.ports", i);
    CheckKeys(ports[i], p, {"port", "protocol", "name"});
    ServicePort sp;
    if (!ports[i]["port"]) Fail(p + ".port", "missing");
    sp.port = static_cast<uint32_t>(Unsigned(ports[i]["port"], p + ".port", 1, 65535));
    if (ports[i]["protocol"]) {
      sp.protocol = OneOf(ports[i]["protocol"], p + ".protocol", {"http", "http2", "grpc", "tcp"});
    }
    out.ports.push_back(sp);
  }
  if (out.ports.empty()) Fail("spec.ports", "a service needs at least one port");
  if (s["mtls"]) out.mtls = OneOf(s["mtls"], "spec.mtls", {"strict", "permissive"});
  if (s["meshProtocol"]) {
    out.mesh_protocol = OneOf(s["meshProtocol"], "spec.meshProtocol", {"http2", "http1"});
  }
  return out;
}

std::string Ms(int64_t ms) { return std::to_string(ms) + "ms"; }

// retries: {attempts, perTryTimeout, on, retriableStatusCodes, budget, hedge}
// (budget only where it belongs: the service's TrafficPolicy).
RetryPolicy ParseRetries(const YAML::Node& r, const std::string& at, bool budget) {
  RetryPolicy out;
  if (!budget && r["budget"])
    Fail(at + ".budget",
         "the retry budget is the service's, for all its routes: set it in its TrafficPolicy");
  CheckKeys(r, at, {"attempts", "perTryTimeout", "on", "retriableStatusCodes", "budget", "hedge"});
  if (r["attempts"])
    out.attempts =
        static_cast<int>(Unsigned(r["attempts"], at + ".attempts", 0, kMaxRetryAttempts));
  if (r["perTryTimeout"]) {
    out.per_try_timeout_ms = Duration(r["perTryTimeout"], at + ".perTryTimeout");
    if (out.per_try_timeout_ms <= 0 || out.per_try_timeout_ms > 3600000)
      Fail(at + ".perTryTimeout", "use more than 0 and at most 1h");
  }
  if (r["on"]) {
    const YAML::Node& on = Seq(r["on"], at + ".on");
    for (size_t i = 0; i < on.size(); ++i) {
      const std::string ai = At(at + ".on", i);
      const std::string v =
          OneOf(on[i], ai,
                {"connect-failure", "reset", "5xx", "gateway-error", "retriable-status-codes",
                 "refused-stream", "cancelled", "deadline-exceeded", "internal",
                 "resource-exhausted", "unavailable"});
      if (v == "refused-stream") {
        Fail(ai + " \"" + v + "\"",
             "a stream the upstream refused (or a pooled connection it had closed) is always "
             "tried again when the request can be sent again, without spending a retry: leave "
             "it out");
      }
      out.on.push_back(v);
    }
  }
  if (r["retriableStatusCodes"]) {
    const YAML::Node& codes = Seq(r["retriableStatusCodes"], at + ".retriableStatusCodes");
    if (codes.size() == 0 || codes.size() > kMaxRetriableStatusCodes)
      Fail(at + ".retriableStatusCodes",
           "list 1 to " + std::to_string(kMaxRetriableStatusCodes) + " status codes (400-599)");
    for (size_t i = 0; i < codes.size(); ++i)
      out.retriable_status_codes.push_back(
          static_cast<uint32_t>(Unsigned(codes[i], At(at + ".retriableStatusCodes", i), 400, 599)));
    if (std::find(out.on.begin(), out.on.end(), "retriable-status-codes") == out.on.end())
      Fail(at + ".retriableStatusCodes", "only with retriable-status-codes in " + at + ".on");
  }
  if (r["budget"]) {
    const YAML::Node& b = r["budget"];
    CheckKeys(b, at + ".budget", {"percent", "minPerSecond"});
    if (b["percent"])
      out.budget_percent =
          static_cast<uint32_t>(Unsigned(b["percent"], at + ".budget.percent", 0, 100));
    if (b["minPerSecond"])
      out.budget_min_per_s =
          static_cast<uint32_t>(Unsigned(b["minPerSecond"], at + ".budget.minPerSecond", 0, 10000));
  }
  if (r["hedge"]) out.hedge = ParseHedge(r["hedge"], at + ".hedge");
  return out;
}

nlohmann::json RetriesJson(const RetryPolicy& p, bool budget) {
  nlohmann::json r = nlohmann::json::object();
  if (p.attempts >= 0) r["attempts"] = p.attempts;
  if (!p.on.empty()) r["on"] = p.on;
  if (p.per_try_timeout_ms > 0) r["perTryTimeout"] = Ms(p.per_try_timeout_ms);
  if (!p.retriable_status_codes.empty()) r["retriableStatusCodes"] = p.retriable_status_codes;
  if (budget) r["budget"] = {{"percent", p.budget_percent}, {"minPerSecond", p.budget_min_per_s}};
  if (p.hedge.p95) r["hedge"] = {{"delay", "p95"}};
  if (p.hedge.delay_ms > 0) r["hedge"] = {{"delay", Ms(p.hedge.delay_ms)}};
  return r;
}

// rateLimit: {requestsPerSecond, burst, perCaller: {requestsPerSecond, burst}}
// (perCaller only where one sidecar sees every caller: a TrafficPolicy).
RateLimit ParseRateLimit(const YAML::Node& n, const std::string& at, bool per_caller) {
  CheckKeys(n, at,
            per_caller ? std::set<std::string>{"requestsPerSecond", "burst", "perCaller"}
                       : std::set<std::string>{"requestsPerSecond", "burst"});
  auto count = [](const YAML::Node& m, const std::string& p, const char* key, uint32_t max) {
    return m[key] ? static_cast<uint32_t>(Unsigned(m[key], p + "." + key, 1, max)) : 0u;
  };
  RateLimit r;
  r.requests_per_second = count(n, at, "requestsPerSecond", kMaxRateLimitRps);
  r.burst = count(n, at, "burst", kMaxRateLimitBurst);
  if (r.burst > 0 && r.requests_per_second == 0) Fail(at + ".burst", "only with requestsPerSecond");
  if (const YAML::Node& pc = n["perCaller"]) {
    const std::string pp = at + ".perCaller";
    CheckKeys(pc, pp, {"requestsPerSecond", "burst"});
    r.per_caller_rps = count(pc, pp, "requestsPerSecond", kMaxRateLimitRps);
    r.per_caller_burst = count(pc, pp, "burst", kMaxRateLimitBurst);
    if (r.per_caller_rps == 0) Fail(pp + ".requestsPerSecond", "missing");
  }
  if (!r.any())
    Fail(at, "needs requestsPerSecond" + std::string(per_caller ? " or perCaller" : ""));
  return r;
}

nlohmann::json RateLimitJson(const RateLimit& r) {
  nlohmann::json j = nlohmann::json::object();
  if (r.requests_per_second > 0) j["requestsPerSecond"] = r.requests_per_second;
  if (r.burst > 0) j["burst"] = r.burst;
  if (r.per_caller_rps > 0) {
    j["perCaller"]["requestsPerSecond"] = r.per_caller_rps;
    if (r.per_caller_burst > 0) j["perCaller"]["burst"] = r.per_caller_burst;
  }
  return j;
}

OutlierDetection ParseOutlierDetection(const YAML::Node& n) {
  const std::string at = "spec.outlierDetection";
  CheckKeys(n, at,
            {"enabled", "consecutive5xxErrors", "consecutiveGatewayErrors", "interval",
             "baseEjectionTime", "maxEjectionTime", "maxEjectionPercent", "minHealthPercent",
             "successRate"});
  OutlierDetection o;
  if (n["enabled"]) o.enabled = OneOf(n["enabled"], at + ".enabled", {"true", "false"}) == "true";
  auto count = [](const YAML::Node& m, const std::string& p, const char* key, uint32_t* v,
                  uint64_t min, uint64_t max) {
    if (m[key]) *v = static_cast<uint32_t>(Unsigned(m[key], p + "." + key, min, max));
  };
  auto span = [&](const char* key, int64_t* v, int64_t max, const char* range) {
    if (!n[key]) return;
    *v = Duration(n[key], at + "." + key);
    if (*v < kMinOutlierMs || *v > max) Fail(at + "." + key, std::string("use ") + range);
  };
  count(n, at, "consecutive5xxErrors", &o.consecutive_5xx, 0, kMaxConsecutiveErrors);
  count(n, at, "consecutiveGatewayErrors", &o.consecutive_gateway, 0, kMaxConsecutiveErrors);
  span("interval", &o.interval_ms, kMaxOutlierIntervalMs, "100ms to 1h");
  span("baseEjectionTime", &o.base_ejection_ms, kMaxOutlierIntervalMs, "100ms to 1h");
  span("maxEjectionTime", &o.max_ejection_ms, kMaxOutlierEjectionMs, "100ms to 24h");
  if (o.max_ejection_ms < o.base_ejection_ms)
    Fail(at + ".maxEjectionTime", "shorter than baseEjectionTime");
  count(n, at, "maxEjectionPercent", &o.max_ejection_percent, 0, 100);
  count(n, at, "minHealthPercent", &o.min_health_percent, 0, 100);
  if (const YAML::Node& sr = n["successRate"]) {
    const std::string sp = at + ".successRate";
    CheckKeys(sr, sp, {"minimumHosts", "requestVolume", "stdevFactor"});
    count(sr, sp, "minimumHosts", &o.success_rate_min_hosts, 1, 100000);
    count(sr, sp, "requestVolume", &o.success_rate_request_volume, 1, 1000000);
    if (sr["stdevFactor"]) {
      const std::string v = Scalar(sr["stdevFactor"], sp + ".stdevFactor");
      char* end = nullptr;
      const double f = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(f >= 0 && f * 1000 <= kMaxStdevFactor))
        Fail(sp + ".stdevFactor", "use a number from 0 (off) to 100, for example 1.9");
      o.success_rate_stdev_factor = static_cast<uint32_t>(f * 1000 + 0.5);
    }
  }
  return o;
}

TrafficPolicySpec ParseTrafficPolicy(const YAML::Node& s) {
  CheckKeys(s, "spec",
            {"lb", "loadBalancer", "connectTimeout", "requestTimeout", "retries", "connectionPool",
             "outlierDetection", "rateLimit"});
  TrafficPolicySpec out;
  static const std::vector<std::string> kPolicies = {"ewma",   "round_robin", "least_request",
                                                     "random", "ring_hash",   "maglev"};
  if (s["lb"] && s["loadBalancer"])
    Fail("spec.lb", "give loadBalancer.policy or lb (its shorthand), not both");
  if (s["lb"]) out.lb = OneOf(s["lb"], "spec.lb", kPolicies);
  if (s["loadBalancer"]) {
    const YAML::Node& lb = s["loadBalancer"];
    CheckKeys(lb, "spec.loadBalancer",
              {"policy", "decay", "hash", "ringPoints", "tableSize", "slowStart", "zoneAware"});
    if (lb["policy"]) out.lb = OneOf(lb["policy"], "spec.loadBalancer.policy", kPolicies);
    const bool hashed = out.lb == "ring_hash" || out.lb == "maglev";
    if (lb["hash"]) {
      // hash: {header: NAME} | {cookie: {name, ttl, path}} | {sourceIp: true}
      const std::string at = "spec.loadBalancer.hash";
      if (!hashed) Fail(at, "only for policy: ring_hash or maglev");
      const YAML::Node& h = lb["hash"];
      CheckKeys(h, at, {"header", "cookie", "sourceIp"});
      if (h["header"]) {
        out.hash.header = Scalar(h["header"], at + ".header");
        for (char& c : out.hash.header)
          c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      }
      if (const YAML::Node& ck = h["cookie"]) {
        CheckKeys(ck, at + ".cookie", {"name", "ttl", "path"});
        if (!ck["name"]) Fail(at + ".cookie.name", "missing");
        out.hash.cookie = Scalar(ck["name"], at + ".cookie.name");
        if (ck["ttl"]) out.hash.cookie_ttl_ms = Duration(ck["ttl"], at + ".cookie.ttl");
        if (ck["path"]) out.hash.cookie_path = Scalar(ck["path"], at + ".cookie.path");
      }
      if (h["sourceIp"])
        out.hash.source_ip = OneOf(h["sourceIp"], at + ".sourceIp", {"true", "false"}) == "true";
    } else if (hashed) {
      Fail("spec.loadBalancer.hash",
           "missing: " + out.lb + " hashes a request key (header, cookie or sourceIp)");
    }
    if (lb["zoneAware"]) {
      out.zone_aware =
          OneOf(lb["zoneAware"], "spec.loadBalancer.zoneAware", {"true", "false"}) == "true";
      if (out.zone_aware && hashed)
        Fail("spec.loadBalancer.zoneAware",
             "not with ring_hash or maglev: a key keeps its instance");
    }
    if (const YAML::Node& ss = lb["slowStart"]) {
      const std::string at = "spec.loadBalancer.slowStart";
      if (hashed) Fail(at, "not with ring_hash or maglev: a key's endpoint does not take turns");
      CheckKeys(ss, at, {"window", "aggression", "minWeightPercent"});
      if (!ss["window"]) Fail(at + ".window", "missing");
      out.slow_start_ms = Duration(ss["window"], at + ".window");
      if (out.slow_start_ms < 1000 || out.slow_start_ms > 3600000)
        Fail(at + ".window", "use 1s to 1h");
      if (ss["aggression"]) {
        const std::string v = Scalar(ss["aggression"], at + ".aggression");
        char* end = nullptr;
        out.slow_start_aggression = std::strtod(v.c_str(), &end);
        if (v.empty() || *end != '\0' ||
            !(out.slow_start_aggression >= 0.1 && out.slow_start_aggression <= 10))
          Fail(at + ".aggression", "a number from 0.1 to 10 (1: linear)");
      }
      if (ss["minWeightPercent"])
        out.slow_start_min_weight_percent = static_cast<uint32_t>(
            Unsigned(ss["minWeightPercent"], at + ".minWeightPercent", 1, 100));
    }
    if (lb["ringPoints"]) {
      if (out.lb != "ring_hash") Fail("spec.loadBalancer.ringPoints", "only for policy: ring_hash");
      out.hash.ring_points = static_cast<uint32_t>(Unsigned(
          lb["ringPoints"], "spec.loadBalancer.ringPoints", kMinRingPoints, kMaxRingPoints));
    }
    if (lb["tableSize"]) {
      if (out.lb != "maglev") Fail("spec.loadBalancer.tableSize", "only for policy: maglev");
      out.hash.table_size = static_cast<uint32_t>(
          Unsigned(lb["tableSize"], "spec.loadBalancer.tableSize", 2, kMaxMaglevTableSize));
    }
    if (hashed) {
      if (std::string e = HashPolicyError(out.hash); !e.empty()) Fail("spec.loadBalancer", e);
    }
    if (lb["decay"]) {
      if (out.lb != "ewma") Fail("spec.loadBalancer.decay", "only for policy: ewma");
      out.lb_decay_ms = Duration(lb["decay"], "spec.loadBalancer.decay");
      if (out.lb_decay_ms < 100 || out.lb_decay_ms > 600000)
        Fail("spec.loadBalancer.decay", "use 100ms to 10m");
    }
  }
  if ((out.lb == "ring_hash" || out.lb == "maglev") && !out.hash.any())
    Fail("spec.loadBalancer.hash",
         "missing: " + out.lb + " hashes a request key (header, cookie or sourceIp)");
  if (s["connectionPool"]) {
    const YAML::Node& cp = s["connectionPool"];
    CheckKeys(cp, "spec.connectionPool",
              {"maxConnections", "maxPendingRequests", "maxRequests", "maxRetries"});
    auto limit = [&](const char* key, uint32_t* out_v) {
      if (cp[key])
        *out_v = static_cast<uint32_t>(
            Unsigned(cp[key], std::string("spec.connectionPool.") + key, 1, 1000000));
    };
    limit("maxConnections", &out.connection_pool.max_connections);
    limit("maxPendingRequests", &out.connection_pool.max_pending_requests);
    limit("maxRequests", &out.connection_pool.max_requests);
    limit("maxRetries", &out.connection_pool.max_retries);
  }
  if (s["outlierDetection"]) out.outlier = ParseOutlierDetection(s["outlierDetection"]);
  if (s["rateLimit"]) out.rate_limit = ParseRateLimit(s["rateLimit"], "spec.rateLimit", true);
  if (s["connectTimeout"])
    out.connect_timeout_ms = Duration(s["connectTimeout"], "spec.connectTimeout");
  if (s["requestTimeout"])
    out.request_timeout_ms = Duration(s["requestTimeout"], "spec.requestTimeout");
  if (s["retries"]) out.retries = ParseRetries(s["retries"], "spec.retries", true);
  return out;
}

// A percentage: a number from 0 to 100 (fractions allowed).
double Percent(const YAML::Node& n, const std::string& path) {
  const std::string v = Scalar(n, path);
  char* end = nullptr;
  const double d = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || !(d >= 0 && d <= 100)) Fail(path, "a number from 0 to 100");
  return d;
}

FaultSpec ParseFault(const YAML::Node& f, const std::string& p) {
  CheckKeys(f, p, {"delay", "abort"});
  FaultSpec out;
  if (f["delay"]) {
    const YAML::Node& d = f["delay"];
    CheckKeys(d, p + ".delay", {"fixed", "percent"});
    if (!d["fixed"]) Fail(p + ".delay.fixed", "missing (e.g. fixed: 100ms)");
    out.delay_ms = Duration(d["fixed"], p + ".delay.fixed");
    if (out.delay_ms <= 0 || out.delay_ms > 600000) Fail(p + ".delay.fixed", "use 1ms to 10m");
    out.delay_percent = d["percent"] ? Percent(d["percent"], p + ".delay.percent") : 100;
  }
  if (f["abort"]) {
    const YAML::Node& a = f["abort"];
    CheckKeys(a, p + ".abort", {"httpStatus", "grpcStatus", "percent"});
    if (!a["httpStatus"] && !a["grpcStatus"])
      Fail(p + ".abort", "needs httpStatus (and grpcStatus for gRPC calls, if not derived)");
    out.abort_http_status =
        a["httpStatus"]
            ? static_cast<int>(Unsigned(a["httpStatus"], p + ".abort.httpStatus", 200, 599))
            : 503;
    if (a["grpcStatus"])
      out.abort_grpc_status =
          static_cast<int>(Unsigned(a["grpcStatus"], p + ".abort.grpcStatus", 1, 16));
    out.abort_percent = a["percent"] ? Percent(a["percent"], p + ".abort.percent") : 100;
  }
  if (!f["delay"] && !f["abort"]) Fail(p, "needs delay, abort or both");
  return out;
}

RouteSpec ParseRoute(const YAML::Node& s) {
  CheckKeys(s, "spec", {"service", "rules"});
  RouteSpec out;
  out.service = Label(s["service"], "spec.service");
  if (!s["rules"]) Fail("spec.rules", "missing (a route needs at least one rule)");
  const YAML::Node& rules = Seq(s["rules"], "spec.rules");
  if (rules.size() == 0) Fail("spec.rules", "a route needs at least one rule");
  for (size_t i = 0; i < rules.size(); ++i) {
    std::string p = At("spec.rules", i);
    CheckKeys(rules[i], p,
              {"match", "backends", "fault", "mirror", "rateLimit", "timeout", "retries"});
    RouteRule rule;
    if (rules[i]["timeout"]) {
      rule.timeout_ms = Duration(rules[i]["timeout"], p + ".timeout");
      if (rule.timeout_ms <= 0 || rule.timeout_ms > 3600000)
        Fail(p + ".timeout", "use more than 0 and at most 1h");
    }
    if (rules[i]["retries"])
      rule.retries = ParseRetries(rules[i]["retries"], p + ".retries", false);
    if (rules[i]["fault"]) rule.fault = ParseFault(rules[i]["fault"], p + ".fault");
    if (const YAML::Node& m = rules[i]["mirror"]) {
      CheckKeys(m, p + ".mirror", {"service", "percent"});
      if (!m["service"]) Fail(p + ".mirror.service", "missing (the service that gets the copies)");
      rule.mirror.service = Label(m["service"], p + ".mirror.service");
      if (m["percent"]) {
        rule.mirror.percent = Percent(m["percent"], p + ".mirror.percent");
        if (rule.mirror.percent <= 0)
          Fail(p + ".mirror.percent", "over 0 (or leave the mirror out)");
      }
      if (rule.mirror.service == out.service)
        Fail(p + ".mirror.service \"" + rule.mirror.service + "\"",
             "the route's own service: its instances would get every request twice");
    }
    if (rules[i]["rateLimit"]) {
      if (rules[i]["rateLimit"]["perCaller"])
        Fail(p + ".rateLimit.perCaller",
             "a route's limit is each calling sidecar's own (it sees one caller); limit each "
             "caller in the service's TrafficPolicy rateLimit.perCaller");
      rule.rate_limit = ParseRateLimit(rules[i]["rateLimit"], p + ".rateLimit", false);
    }
    if (rules[i]["match"]) {
      const YAML::Node& m = rules[i]["match"];
      CheckKeys(m, p + ".match", {"pathPrefix", "path", "headers"});
      if (m["pathPrefix"] && m["path"])
        Fail(p + ".match", "set either pathPrefix or path, not both");
      if (m["pathPrefix"])
        rule.match.path_prefix = Scalar(m["pathPrefix"], p + ".match.pathPrefix");
      if (m["path"]) rule.match.path = Scalar(m["path"], p + ".match.path");
      for (const std::string* v : {&rule.match.path_prefix, &rule.match.path}) {
        if (!v->empty() && (*v)[0] != '/')
          Fail(p + ".match \"" + *v + "\"", "paths start with '/'");
      }
      if (m["headers"]) {
        if (!m["headers"].IsMap()) Fail(p + ".match.headers", "expected a mapping of name: value");
        if (m["headers"].size() > 32) Fail(p + ".match.headers", "too many headers (at most 32)");
        for (const auto& kv : m["headers"]) {
          std::string name = kv.first.Scalar();
          for (char& c : name) c = AsciiLower(c);
          rule.match.headers.push_back({name, Scalar(kv.second, p + ".match.headers." + name)});
        }
      }
    }
    if (rule.match.path.empty() && rule.match.path_prefix.empty()) rule.match.path_prefix = "/";
    if (!rules[i]["backends"])
      Fail(p + ".backends", "missing (e.g. backends: [{service: reviews-v1}])");
    const YAML::Node& bs = Seq(rules[i]["backends"], p + ".backends");
    uint64_t total = 0;
    for (size_t j = 0; j < bs.size(); ++j) {
      std::string bp = At(p + ".backends", j);
      CheckKeys(bs[j], bp, {"service", "weight"});
      WeightedBackend b;
      b.service = Label(bs[j]["service"], bp + ".service");
      if (bs[j]["weight"])
        b.weight = static_cast<uint32_t>(Unsigned(bs[j]["weight"], bp + ".weight", 0, 1000000));
      total += b.weight;
      rule.backends.push_back(b);
    }
    if (rule.backends.empty() || total == 0)
      Fail(p + ".backends", "needs at least one backend with a weight above 0");
    out.rules.push_back(std::move(rule));
  }
  return out;
}

AuthorizationPolicySpec ParseAuthorizationPolicy(const YAML::Node& s) {
  CheckKeys(s, "spec", {"service", "default", "rules"});
  AuthorizationPolicySpec out;
  if (s["service"] && s["service"].IsScalar() && s["service"].Scalar() == "*") {
    out.service = "*";
  } else {
    out.service = Label(s["service"], "spec.service");
  }
  if (s["default"]) out.default_action = OneOf(s["default"], "spec.default", {"allow", "deny"});
  if (s["rules"]) {
    const YAML::Node& rules = Seq(s["rules"], "spec.rules");
    for (size_t i = 0; i < rules.size(); ++i) {
      std::string p = At("spec.rules", i);
      CheckKeys(rules[i], p, {"action", "from", "to"});
      AuthorizationRule r;
      if (!rules[i]["action"]) Fail(p + ".action", "missing (allow or deny)");
      r.action = OneOf(rules[i]["action"], p + ".action", {"allow", "deny"});
      if (rules[i]["from"]) {
        r.from = StringList(rules[i]["from"], p + ".from");
        for (size_t j = 0; j < r.from.size(); ++j) {
          const std::string& f = r.from[j];
          if (f != "*" && f.rfind("spiffe://", 0) != 0) {
            Fail(At(p + ".from", j) + " \"" + f + "\"",
                 "use a SPIFFE ID (spiffe://...), a prefix ending in '*', or '*'");
          }
        }
      }
      if (rules[i]["to"]) {
        const YAML::Node& to = rules[i]["to"];
        CheckKeys(to, p + ".to", {"methods", "paths", "headers"});
        if (to["methods"]) r.methods = StringList(to["methods"], p + ".to.methods");
        if (to["paths"]) r.paths = StringList(to["paths"], p + ".to.paths");
        for (size_t j = 0; j < r.paths.size(); ++j) {
          if (r.paths[j].empty() || r.paths[j][0] != '/')
            Fail(At(p + ".to.paths", j), "paths start with '/'");
        }
        if (to["headers"]) {
          const std::string hp = p + ".to.headers";
          if (!to["headers"].IsMap()) Fail(hp, "expected a mapping of header name to value");
          for (const auto& kv : to["headers"]) {
            std::string name = kv.first.Scalar();
            if (name.empty() || !kv.second.IsScalar())
              Fail(hp + "." + name, "expected a header name and a value (exact, prefix*, or *)");
            for (auto& ch : name) ch = AsciiLower(ch);
            r.headers.push_back({name, kv.second.Scalar()});
          }
        }
      }
      out.rules.push_back(std::move(r));
    }
  }
  return out;
}

TelemetrySpec ParseTelemetry(const YAML::Node& s) {
  CheckKeys(s, "spec", {"service", "tracing"});
  TelemetrySpec out;
  // Said outright: "*" reaches every sidecar of every namespace.
  if (!s["service"]) Fail("spec.service", "missing: a service, or \"*\" for the whole mesh");
  if (s["service"].IsScalar() && s["service"].Scalar() == "*") {
    out.service = "*";
  } else {
    out.service = Label(s["service"], "spec.service");
  }
  if (!s["tracing"]) Fail("spec.tracing", "missing: {sampling: 0.01, otlp: http://HOST:4318}");
  out.tracing = ParseTracing(s["tracing"], "spec.tracing");
  return out;
}

Manifest ParseOne(const YAML::Node& doc, std::string* label) {
  if (!doc.IsMap()) Fail("(document)", "expected a mapping with kind, metadata and spec");
  CheckKeys(doc, "(document)", {"kind", "metadata", "spec", "apiVersion"});
  Manifest m;
  if (!doc["kind"])
    Fail("kind", "missing (one of Service, TrafficPolicy, Route, AuthorizationPolicy, Telemetry)");
  m.kind = OneOf(doc["kind"], "kind", Kinds());
  if (!doc["metadata"]) Fail("metadata", "missing (metadata: {name: ..., namespace: ...})");
  CheckKeys(doc["metadata"], "metadata", {"name", "namespace", "labels"});
  m.name = Label(doc["metadata"]["name"], "metadata.name");
  if (doc["metadata"]["namespace"])
    m.ns = Label(doc["metadata"]["namespace"], "metadata.namespace");
  *label = m.kind + " " + m.ns + "/" + m.name;
  if (!doc["spec"]) Fail("spec", "missing");
  const YAML::Node& s = doc["spec"];
  if (m.kind == "Service")
    m.spec = ParseService(s);
  else if (m.kind == "TrafficPolicy")
    m.spec = ParseTrafficPolicy(s);
  else if (m.kind == "Route")
    m.spec = ParseRoute(s);
  else if (m.kind == "Telemetry")
    m.spec = ParseTelemetry(s);
  else
    m.spec = ParseAuthorizationPolicy(s);
  return m;
}

}  // namespace

const std::vector<std::string>& Kinds() {
  static const std::vector<std::string> kinds = {"Service", "TrafficPolicy", "Route",
                                                 "AuthorizationPolicy", "Telemetry"};
  return kinds;
}

Result<std::vector<Manifest>> ParseManifests(const std::string& text) {
  if (JsonNestingDepth(text) > kMaxJsonDepth)
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("manifest error: nested deeper than {} levels", kMaxJsonDepth));
  size_t bad = 0;
  if (!IsValidUtf8(text, &bad)) {
    return Status(
        StatusCode::kInvalidArgument,
        fmt::format("manifest error: not valid UTF-8 (byte {}): manifests are UTF-8 text", bad));
  }
  // YAML allows printable characters only; a control character (a NUL in a
  // scalar, say) comes out of the YAML reader as something else.
  if (const size_t ctl = FindControlChar(text); ctl != std::string::npos) {
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("manifest error: control character 0x{:02x} at byte {}: manifests "
                              "are printable text",
                              static_cast<unsigned char>(text[ctl]), ctl));
  }
  std::vector<YAML::Node> docs;
  try {
    docs = yaml::LoadAll(text, kMaxDocuments);
  } catch (const YAML::Exception& e) {
    if (e.mark.is_null()) return Status(StatusCode::kInvalidArgument, "manifest error: " + e.msg);
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("manifest error: line {}: {}", e.mark.line + 1, e.msg));
  }
  std::vector<Manifest> out;
  size_t n = 0;
  for (const YAML::Node& doc : docs) {
    if (doc.IsNull()) continue;
    ++n;
    std::string label;
    try {
      out.push_back(ParseOne(doc, &label));
    } catch (const yaml::FieldError& e) {
      std::string where =
          label.empty() ? fmt::format("document {}", n) : fmt::format("document {} ({})", n, label);
      return Status(StatusCode::kInvalidArgument,
                    e.Line(("manifest error: " + where + ": ").c_str()));
    } catch (const YAML::Exception& e) {
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("manifest error: document {}: {}", n, e.msg));
    }
  }
  return out;
}

std::string ToJson(const Manifest& m) {
  using nlohmann::json;
  json j{{"kind", m.kind}, {"metadata", {{"name", m.name}, {"namespace", m.ns}}}};
  json& s = j["spec"];
  if (const auto* sv = std::get_if<ServiceSpec>(&m.spec)) {
    s["ports"] = json::array();
    for (const auto& p : sv->ports)
      s["ports"].push_back({{"port", p.port}, {"protocol", p.protocol}});
    s["mtls"] = sv->mtls;
    s["meshProtocol"] = sv->mesh_protocol;
  } else if (const auto* tp = std::get_if<TrafficPolicySpec>(&m.spec)) {
    json lb = {{"policy", tp->lb}};
    if (tp->lb == "ewma") lb["decay"] = Ms(tp->lb_decay_ms);
    if (tp->lb != "ring_hash" && tp->lb != "maglev") lb["zoneAware"] = tp->zone_aware;
    if (tp->slow_start_ms > 0)
      lb["slowStart"] = {{"window", Ms(tp->slow_start_ms)},
                         {"aggression", tp->slow_start_aggression},
                         {"minWeightPercent", tp->slow_start_min_weight_percent}};
    if (tp->lb == "ring_hash" || tp->lb == "maglev") {
      json h = json::object();
      if (!tp->hash.header.empty()) h["header"] = tp->hash.header;
      if (!tp->hash.cookie.empty()) {
        h["cookie"] = {{"name", tp->hash.cookie}, {"path", tp->hash.cookie_path}};
        if (tp->hash.cookie_ttl_ms > 0) h["cookie"]["ttl"] = Ms(tp->hash.cookie_ttl_ms);
      }
      if (tp->hash.source_ip) h["sourceIp"] = true;
      lb["hash"] = h;
      if (tp->lb == "ring_hash") lb["ringPoints"] = tp->hash.ring_points;
      if (tp->lb == "maglev") lb["tableSize"] = tp->hash.table_size;
    }
    s = {{"loadBalancer", lb},
         {"connectTimeout", Ms(tp->connect_timeout_ms)},
         {"requestTimeout", Ms(tp->request_timeout_ms)}};
    s["retries"] = RetriesJson(tp->retries, true);
    s["connectionPool"] = {{"maxConnections", tp->connection_pool.max_connections},
                           {"maxPendingRequests", tp->connection_pool.max_pending_requests},
                           {"maxRequests", tp->connection_pool.max_requests},
                           {"maxRetries", tp->connection_pool.max_retries}};
    const OutlierDetection& o = tp->outlier;
    s["outlierDetection"] = {{"enabled", o.enabled},
                             {"consecutive5xxErrors", o.consecutive_5xx},
                             {"consecutiveGatewayErrors", o.consecutive_gateway},
                             {"interval", Ms(o.interval_ms)},
                             {"baseEjectionTime", Ms(o.base_ejection_ms)},
                             {"maxEjectionTime", Ms(o.max_ejection_ms)},
                             {"maxEjectionPercent", o.max_ejection_percent},
                             {"minHealthPercent", o.min_health_percent},
                             {"successRate",
                              {{"minimumHosts", o.success_rate_min_hosts},
                               {"requestVolume", o.success_rate_request_volume},
                               {"stdevFactor", o.success_rate_stdev_factor / 1000.0}}}};
    if (tp->rate_limit.any()) s["rateLimit"] = RateLimitJson(tp->rate_limit);
  } else if (const auto* rt = std::get_if<RouteSpec>(&m.spec)) {
    s["service"] = rt->service;
    s["rules"] = json::array();
    for (const auto& r : rt->rules) {
      json jr;
      if (!r.match.path.empty())
        jr["match"]["path"] = r.match.path;
      else
        jr["match"]["pathPrefix"] = r.match.path_prefix;
      for (const auto& h : r.match.headers) jr["match"]["headers"][h.name] = h.value;
      jr["backends"] = json::array();
      for (const auto& b : r.backends)
        jr["backends"].push_back({{"service", b.service}, {"weight", b.weight}});
      if (r.fault.delay_ms > 0)
        jr["fault"]["delay"] = {{"fixed", Ms(r.fault.delay_ms)},
                                {"percent", r.fault.delay_percent}};
      if (r.fault.abort_http_status > 0) {
        jr["fault"]["abort"] = {{"httpStatus", r.fault.abort_http_status},
                                {"percent", r.fault.abort_percent}};
        if (r.fault.abort_grpc_status > 0)
          jr["fault"]["abort"]["grpcStatus"] = r.fault.abort_grpc_status;
      }
      if (!r.mirror.service.empty())
        jr["mirror"] = {{"service", r.mirror.service}, {"percent", r.mirror.percent}};
      if (r.rate_limit.any()) jr["rateLimit"] = RateLimitJson(r.rate_limit);
      if (r.timeout_ms > 0) jr["timeout"] = Ms(r.timeout_ms);
      if (r.retries) jr["retries"] = RetriesJson(*r.retries, false);
      s["rules"].push_back(jr);
    }
  } else if (const auto* ap = std::get_if<AuthorizationPolicySpec>(&m.spec)) {
    s["service"] = ap->service;
    if (!ap->default_action.empty()) s["default"] = ap->default_action;
    s["rules"] = json::array();
    for (const auto& r : ap->rules) {
      json jr{{"action", r.action}, {"from", r.from}};
      jr["to"] = {{"methods", r.methods}, {"paths", r.paths}};
      for (const auto& h : r.headers) jr["to"]["headers"][h.name] = h.value;
      s["rules"].push_back(jr);
    }
  } else if (const auto* tm = std::get_if<TelemetrySpec>(&m.spec)) {
    s["service"] = tm->service;
    json t = json::object();
    if (tm->tracing.enabled) t["enabled"] = *tm->tracing.enabled;
    if (tm->tracing.sampling) t["sampling"] = *tm->tracing.sampling;
    if (!tm->tracing.otlp.empty()) t["otlp"] = tm->tracing.otlp;
    if (!tm->tracing.format.empty()) t["format"] = tm->tracing.format;
    s["tracing"] = t;
  }
  return j.dump();
}

Result<Manifest> FromJson(const std::string& json) {
  auto r = ParseManifests(json);
  if (!r.ok()) return r.status();
  if (r.value().size() != 1) {
    return Status(StatusCode::kInvalidArgument, "manifest error: expected exactly one document");
  }
  return std::move(r.value()[0]);
}

}  // namespace weft::mesh
