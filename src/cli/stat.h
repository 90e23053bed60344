// Golden metrics of mesh services, read from their proxies' admin /stats:
// what `weft stat` prints once and `weft up` refreshes every second.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "control/mesh_stats.h"

namespace weft::cli {

// One service over one interval, from the inbound side of its proxies.
struct ServiceStat {
  std::string service;
  size_t proxies = 0;
  size_t unreachable = 0;
  double rps = 0;
  double success = 1;  // share of requests not answered 5xx
  double p50_ms = -1;  // upper bound of the histogram bucket; -1: no requests
  double p99_ms = -1;
  double mtls = 0;  // share of requests that came with a verified mesh identity
};

// A member of the mesh as /v1/agent/members describes it.
struct MeshMember {
  std::string name, role, service, node, admin, detail;
  std::string via;  // the agent a proxy is connected to ("" when direct)
};
// The members `server` (HOST:PORT of a server's or agent's API) lists, plus
// the proxies connected to each agent among them (asked at the agent's API).
// An agent that does not answer is listed with detail "unreachable".
bool ListMembers(const std::string& server, std::vector<MeshMember>* out, std::string* err);

// What one proxy's /stats says about its inbound listener.
using InboundStats = control::Traffic;
InboundStats ParseInbound(const std::string& text);

// Scrapes every proxy the server knows of (members with role "proxy" and an
// admin address). Each Sample() is compared with the one before it. One
// thread at a time; Sample() blocks on HTTP.
class StatSampler {
 public:
  // `server`: HOST:PORT of a server's (or agent's) HTTP API; `only`: one
  // service, or "" for all.
  StatSampler(std::string server, std::string only);
  // False with *err when the server cannot be asked or knows no proxy.
  bool Sample(std::string* err);
  // Per service (sorted by name), between the last two samples `secs` apart.
  std::vector<ServiceStat> Rows(double secs) const;

 private:
  const std::string server_, only_;
  std::map<std::string, std::vector<std::string>> proxies_;  // service -> admin addresses
  std::map<std::string, InboundStats> prev_, cur_;           // admin -> stats (absent: unreachable)
};

std::string FormatStatTable(const std::vector<ServiceStat>& rows);

}  // namespace weft::cli
