// `weft check`: diagnoses a running mesh from one server (or agent).
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <nlohmann/json.hpp>

#include "cli/ctl.h"
#include "cli/ctl_internal.h"
#include "cli/stat.h"

namespace weft::cli {
namespace {

using json = nlohmann::json;

constexpr const char* kCheckUsage = "weft check [--server URL]";

}  // namespace

// Diagnoses a running mesh from one server (or agent): each check prints ok
// or what is wrong and the fix; exit 1 when anything failed.
int CheckMain(const Args& args) {
  CtlFlags f;
  if (int rc = ParseCtlFlags(args, &f, kCheckUsage); rc >= 0) return rc;
  if (!f.positional.empty())
    return BadUsage("check: unexpected \"" + f.positional[0] + "\"", kCheckUsage);
  const std::string addr = ServerAddress(f.server);
  int failed = 0;
  auto report = [&](bool ok, const std::string& what, const std::string& fix) {
    std::printf("%s %s%s\n", ok ? "ok  " : "FAIL", what.c_str(),
                ok ? "" : ("\n     fix: " + fix).c_str());
    if (!ok) ++failed;
  };
  http::Client c(addr, ApiClientOptions());
  auto ready = c.Do("GET", "/ready");
  report(ready.ok() && ready->status == 200, "server " + addr + " answers",
         "start `weft server` (or point --server / WEFT_SERVER at one)");
  if (!ready.ok() || ready->status != 200) return 1;
  auto roots = c.Do("GET", "/v1/connect/ca/roots");
  json rj = roots.ok() && roots->status == 200 ? json::parse(roots->body, nullptr, false) : json();
  const bool have_ca = rj.is_object() && !rj.value("ActiveRootID", "").empty();
  report(have_ca, "the mesh CA has an active root",
         "a server creates one on start; check its log for CA errors");
  // Agents and proxies the server turned away for their credentials do not
  // show up as members: say so while it is recent (the log names them).
  if (auto m = c.Do("GET", "/metrics"); m.ok() && m->status == 200) {
    auto value = [&](std::string_view name) -> int64_t {
      const std::string& b = m->body;
      size_t at = b.find("\n" + std::string(name) + " ");
      if (at == std::string::npos) return 0;
      return std::strtoll(b.c_str() + at + name.size() + 2, nullptr, 10);
    };
    const int64_t last = value("weft_server_last_unauthenticated_unix");
    const int64_t ago = static_cast<int64_t>(std::time(nullptr)) - last;
    report(last == 0 || ago > 600,
           "no agent or proxy refused for its credentials in the last 10 minutes" +
               (last == 0 ? std::string()
                          : " (" + std::to_string(value("weft_server_unauthenticated_total")) +
                                " refused so far, the last " + std::to_string(ago) + "s ago)"),
           "a proxy's ACL token (--token-file; service:write on its service) or an agent's join "
           "token is wrong or missing: the server's log names the peer and the reason "
           "(\"refused\")");
    // Instances of strict Services that have no sidecar get no traffic
    // (they would be dialled in plaintext): name each.
    size_t sidecarless = 0;
    for (size_t at = m->body.find("\nweft_server_sidecarless_instance{"); at != std::string::npos;
         at = m->body.find("\nweft_server_sidecarless_instance{", at + 1)) {
      const std::string_view line =
          std::string_view(m->body).substr(at + 1, m->body.find('\n', at + 1) - at - 1);
      auto label = [&](std::string_view name) {
        const std::string key = std::string(name) + "=\"";
        size_t b = line.find(key);
        if (b == std::string_view::npos) return std::string();
        b += key.size();
        return std::string(line.substr(b, line.find('"', b) - b));
      };
      ++sidecarless;
      report(false,
             "instance " + label("instance") + " of " + label("service") + " (namespace " +
                 label("namespace") + ", node " + label("node") +
                 ") gets no traffic: its Service is mtls: strict and it has no sidecar",
             "register a sidecar for it (Kind connect-proxy, Proxy.DestinationServiceID " +
                 label("instance") +
                 "), or set mtls: permissive on the Service while sidecars are added");
    }
    if (sidecarless == 0)
      report(true, "every instance of a strict Service runs behind a sidecar", "");
  }
  std::vector<MeshMember> members;
  std::string err;
  if (!ListMembers(addr, &members, &err)) {
    report(false, "member list: " + err,
           "the server's /v1/agent/members did not answer a JSON list");
    return 1;
  }
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  size_t proxies = 0, agents = 0;
  for (const auto& m : members) {
    if (m.role == "agent") {
      ++agents;
      report(m.detail.rfind("unreachable", 0) != 0,
             "agent " + m.name + (m.admin.empty() ? "" : " at " + m.admin) + " answers",
             m.detail + ": is the agent running, and is its --http address reachable from here?");
      continue;
    }
    if (m.role != "proxy") continue;
    ++proxies;
    const std::string name =
        "proxy " + m.name + " (" + m.service + ")" + (m.via.empty() ? "" : " via " + m.via);
    const std::string& detail = m.detail;
    report(
        detail.find("acked -") == std::string::npos && detail.find("nacked") == std::string::npos,
        name + ": config acknowledged (" + detail + ")",
        "the proxy refused or has not applied its config: see its log for the reason");
    const std::string& admin = m.admin;
    if (admin.empty()) {
      report(false, name + ": admin address known", "start the proxy with --admin ADDR");
      continue;
    }
    http::Client pc(admin);
    auto pr = pc.Do("GET", "/ready");
    report(pr.ok() && pr->status == 200, name + ": ready at " + admin,
           pr.ok() ? "its /ready says: " + pr->body
                   : "the admin port does not answer: is it running?");
    auto cr = pc.Do("GET", "/certs");
    json cj = cr.ok() && cr->status == 200 ? json::parse(cr->body, nullptr, false) : json();
    if (!cj.is_object() || !cj.value("mtls_needed", false)) continue;
    const int64_t not_after = cj.value("not_after_unix", int64_t{0});
    report(not_after > now,
           name + ": has a valid workload certificate (" + cj.value("spiffe_id", "none") + ")",
           "the proxy has no current certificate: check the proxy's ACL token (--token-file; "
           "service:write on its service) and the "
           "server's log for refused certificate requests");
    if (not_after > now) {
      report(not_after - now > 300,
             name + ": certificate valid for " + std::to_string((not_after - now) / 60) +
                 " more minutes",
             "renewal is overdue: check that the proxy (or its agent) reaches a server");
    }
  }
  std::printf("%zu agents and %zu proxies checked; %d problem(s)\n", agents, proxies, failed);
  return failed ? 1 : 0;
}

}  // namespace weft::cli
