// `weft up FILE`: a whole mesh on this machine. It starts a server, an agent,
// demo services each behind its own sidecar, applies the file's manifests,
// sends traffic and shows the services' golden metrics every second until
// Ctrl-C (or --duration), then stops every process it started.
//
// The LocalMesh document: up_spec.cc; starting and stopping processes:
// up_processes.cc; the traffic and the live table: up_traffic.cc.
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "base/file.h"
#include "base/strings.h"
#include "cli/ctl.h"
#include "cli/flags.h"
#include "cli/up_processes.h"
#include "cli/up_spec.h"
#include "cli/up_traffic.h"
#include "http/client.h"

namespace weft::cli {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kUpUsage =
    "weft up FILE [--duration DUR] [--dir DIR] [--keep]\n"
    "  FILE: a LocalMesh document (server, agent, services, traffic) and the manifests to apply";

int BadUsageUp(const std::string& msg) { return BadUsage("up: " + msg, kUpUsage); }

// An HTTP PUT to the agent's API; "" or the error.
// A write to the agent's local API, with its agent token.
std::string AgentPut(const std::string& agent, const std::string& token, const std::string& target,
                     const json& body) {
  http::Client c(agent);
  auto r = c.Do("PUT", target, body.dump(),
                {{"content-type", "application/json"}, {"x-consul-token", token}});
  if (!r.ok()) return r.status().message();
  if (r->status != 200) return "status " + std::to_string(r->status) + ": " + r->body;
  return "";
}

}  // namespace

int UpMain(const Args& args) {
  std::string file, dir;
  int64_t duration_ms = 0;
  bool keep = false;
  for (size_t i = 0; i < args.size(); ++i) {
    FlagArg flag(args, &i);
    const std::string a(flag.name());
    auto value = [&](std::string* out) { return flag.Value(out); };
    std::string v;
    if (a == "--duration") {
      if (!value(&v)) return BadUsageUp("--duration needs a value");
      auto ms = ParseDurationMs(v);
      if (!ms || *ms <= 0) return BadUsageUp("--duration \"" + v + "\": use a duration like 30s");
      duration_ms = *ms;
    } else if (a == "--dir") {
      if (!value(&dir)) return BadUsageUp("--dir needs a value");
    } else if (a == "--keep") {
      keep = true;
    } else if (a == "--help" || a == "-h") {
      std::printf("usage: %s\n", kUpUsage);
      return 0;
    } else if (!a.empty() && a[0] == '-') {
      return BadUsageUp("unknown or incomplete flag \"" + a + "\"");
    } else if (file.empty()) {
      file = a;
    } else {
      return BadUsageUp("one FILE only");
    }
  }
  if (file.empty()) return BadUsageUp("FILE is required (try examples/quickstart.yaml)");
  std::string err;
  const std::string text = ReadWholeFile(file, &err);
  if (!err.empty()) {
    std::fprintf(stderr, "weft up: %s\n", err.c_str());
    return 1;
  }
  UpSpec spec;
  if (!ParseUpFile(text, &spec, &err)) {
    std::fprintf(stderr, "weft up: %s: %s\n", file.c_str(), err.c_str());
    return 1;
  }

  // Every port we will listen on must be free before anything starts.
  std::vector<std::pair<uint16_t, std::string>> ports = {
      {PortOf(spec.server_http), "server API"},
      {PortOf(spec.server_grpc), "server config stream"},
      {PortOf(spec.agent_http), "agent API"},
      {spec.loadgen_sidecar, "traffic sidecar"},
      {spec.loadgen_sidecar_admin, "traffic sidecar admin"},
      {spec.loadgen_upstream, "traffic sidecar upstream"}};
  for (const auto& u : spec.services) {
    ports.emplace_back(u.port, u.name + " app");
    ports.emplace_back(u.sidecar, u.name + " sidecar");
    ports.emplace_back(u.admin, u.name + " sidecar admin");
    for (uint16_t p : u.upstream_ports) ports.emplace_back(p, u.name + " sidecar upstream");
  }
  std::set<uint16_t> seen;
  for (const auto& [p, what] : ports) {
    if (!seen.insert(p).second) {
      std::fprintf(stderr,
                   "weft up: port %u (%s) is used twice in %s; change the ports or portBase\n", p,
                   what.c_str(), file.c_str());
      return 1;
    }
    if (!PortFree(p)) {
      std::fprintf(stderr,
                   "weft up: port %u (%s) is in use; stop what holds it (is another `weft up` "
                   "running?) or change portBase in %s\n",
                   p, what.c_str(), file.c_str());
      return 1;
    }
  }

  namespace fs = std::filesystem;
  bool made_dir = false;
  if (dir.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "weft-up-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) {
      std::fprintf(stderr, "weft up: mkdtemp: %s\n", std::strerror(errno));
      return 1;
    }
    dir = tmpl;
    made_dir = true;
  } else {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) {
      std::fprintf(stderr, "weft up: --dir %s: %s\n", dir.c_str(), ec.message().c_str());
      return 1;
    }
  }
  CatchStopSignals();

  const bool tty = ::isatty(STDOUT_FILENO);
  auto step = [](const std::string& what, const std::string& detail) {
    std::printf("  %-12s %s\n", what.c_str(), detail.c_str());
    std::fflush(stdout);
  };
  Processes procs(dir);
  int rc = 0;
  auto fail = [&](const std::string& msg) {
    std::fprintf(stderr, "weft up: %s\n", msg.c_str());
    rc = StopRequested() ? 0 : 1;
  };
  std::unique_ptr<Traffic> traffic;
  const std::string sock = "unix:" + dir + "/agent/weft.sock";
  const std::string loadgen_addr = "127.0.0.1:" + std::to_string(spec.loadgen_upstream);
  const auto t0 = Clock::now();
  auto elapsed = [&] {
    return fmt::format("{:.1f}s", std::chrono::duration<double>(Clock::now() - t0).count());
  };
  std::printf("weft up %s (logs in %s)\n", file.c_str(), dir.c_str());
  do {
    if (!procs.Start("server",
                     {"server", "--dev", "--data-dir", dir + "/server", "--http", spec.server_http,
                      "--grpc", spec.server_grpc, "--grpc-tls"},
                     &err)) {
      fail(err);
      break;
    }
    if (err = WaitHttp(procs, spec.server_http, "/ready", 20000); !err.empty()) {
      fail("server: " + err);
      break;
    }
    step("server", "http://" + spec.server_http + " (API)  " + spec.server_grpc +
                       " (config stream, TLS)  embedded store, mesh CA  [" + elapsed() + "]");
    if (!procs.Start("agent",
                     {"agent", "--server", spec.server_grpc, "--node", "local", "--data-dir",
                      dir + "/agent", "--http", spec.agent_http, "--dns", spec.agent_dns,
                      "--server-ca", dir + "/server/ca.pem"},
                     &err)) {
      fail(err);
      break;
    }
    if (err = WaitHttp(procs, spec.agent_http, "/ready", 20000); !err.empty()) {
      fail("agent: " + err);
      break;
    }
    // The agent made its token on first start (0600, in its data dir).
    const std::string agent_token(TrimSpace(ReadWholeFile(dir + "/agent/agent-token", &err)));
    if (!err.empty()) {
      fail("agent: " + err);
      break;
    }
    step("agent", "http://" + spec.agent_http + " (API)  " + spec.agent_dns +
                      " (DNS: NAME.service.weft)  [" + elapsed() + "]");
    if (!spec.manifests.empty()) {
      if (ApplyManifests(spec.server_http, spec.manifests, nullptr) != 0) {
        fail("applying the manifests of " + file + " failed (above)");
        break;
      }
      std::string names;
      for (const auto& m : spec.manifests)
        names += (names.empty() ? "" : ", ") + m.kind + "/" + m.name;
      step("applied", names);
    }
    // Apps and their registrations first (health checks), then sidecars.
    for (const auto& u : spec.services) {
      std::vector<std::string> a = {"demo-app",
                                    "--name",
                                    u.name,
                                    "--version",
                                    u.version,
                                    "--listen",
                                    "127.0.0.1:" + std::to_string(u.port)};
      if (u.latency_ms) a.insert(a.end(), {"--latency", std::to_string(u.latency_ms) + "ms"});
      if (u.jitter_ms) a.insert(a.end(), {"--jitter", std::to_string(u.jitter_ms) + "ms"});
      if (u.error_rate > 0) a.insert(a.end(), {"--error-rate", fmt::format("{}", u.error_rate)});
      for (size_t k = 0; k < u.calls.size(); ++k)
        a.insert(a.end(),
                 {"--call", "127.0.0.1:" + std::to_string(u.upstream_ports[k]) + u.calls[k].path});
      if (!procs.Start(u.name, a, &err)) break;
      json reg = {{"Name", u.name},
                  {"ID", u.name + "-1"},
                  {"Address", "127.0.0.1"},
                  {"Port", u.port},
                  {"Meta", {{"version", u.version}}},
                  {"Check",
                   {{"HTTP", "http://127.0.0.1:" + std::to_string(u.port) + "/healthz"},
                    {"Interval", "1s"}}}};
      json ups = json::array();
      for (size_t k = 0; k < u.calls.size(); ++k)
        ups.push_back(
            {{"DestinationName", u.calls[k].service}, {"LocalBindPort", u.upstream_ports[k]}});
      json sc = {{"Name", u.name + "-sidecar"},
                 {"ID", u.name + "-sidecar"},
                 {"Kind", "connect-proxy"},
                 {"Address", "127.0.0.1"},
                 {"Port", u.sidecar},
                 {"Proxy",
                  {{"DestinationServiceName", u.name},
                   {"DestinationServiceID", u.name + "-1"},
                   {"LocalServicePort", u.port},
                   {"Upstreams", ups}}}};
      if (err = AgentPut(spec.agent_http, agent_token, "/v1/agent/service/register", reg);
          err.empty())
        err = AgentPut(spec.agent_http, agent_token, "/v1/agent/service/register", sc);
      if (!err.empty()) {
        err = "registering " + u.name + " with the agent: " + err;
        break;
      }
    }
    if (!err.empty()) {
      fail(err);
      break;
    }
    json lg = {{"Name", "loadgen-sidecar"},
               {"ID", "loadgen-sidecar"},
               {"Kind", "connect-proxy"},
               {"Address", "127.0.0.1"},
               {"Port", spec.loadgen_sidecar},
               {"Proxy",
                {{"DestinationServiceName", "loadgen"},
                 {"Upstreams", json::array({{{"DestinationName", spec.traffic_to},
                                             {"LocalBindPort", spec.loadgen_upstream}}})}}}};
    if (err = AgentPut(spec.agent_http, agent_token, "/v1/agent/service/register", lg);
        !err.empty()) {
      fail("registering the traffic sidecar: " + err);
      break;
    }
    auto start_proxy = [&](const std::string& svc, uint16_t admin) {
      return procs.Start(svc + "-sidecar",
                         {"proxy", "--agent", sock, "--service", svc, "--admin",
                          "127.0.0.1:" + std::to_string(admin), "--workers", "1"},
                         &err);
    };
    for (const auto& u : spec.services)
      if (!start_proxy(u.name, u.admin)) break;
    if (err.empty()) start_proxy("loadgen", spec.loadgen_sidecar_admin);
    if (!err.empty()) {
      fail(err);
      break;
    }
    for (const auto& u : spec.services) {
      if (err = WaitHttp(procs, "127.0.0.1:" + std::to_string(u.port), "/healthz", 10000);
          !err.empty())
        break;
      if (err = WaitHttp(procs, "127.0.0.1:" + std::to_string(u.admin), "/ready", 20000);
          !err.empty())
        break;
      std::string calls;
      for (const auto& c : u.calls) calls += (calls.empty() ? "  calls " : ", ") + c.service;
      step(u.name, fmt::format("{} app 127.0.0.1:{}  sidecar 127.0.0.1:{} (mTLS)  admin "
                               "127.0.0.1:{}{}  [{}]",
                               u.version, u.port, u.sidecar, u.admin, calls, elapsed()));
    }
    if (!err.empty()) {
      fail(err);
      break;
    }
    if (err = WaitHttp(procs, "127.0.0.1:" + std::to_string(spec.loadgen_sidecar_admin), "/ready",
                       20000);
        !err.empty()) {
      fail("traffic sidecar: " + err);
      break;
    }
    // The first request through the whole graph proves it is wired.
    if (err = WaitHttp(procs, loadgen_addr, spec.traffic_path, 20000); !err.empty()) {
      fail("the mesh does not answer through the traffic sidecar: " + err);
      break;
    }
    step("traffic", fmt::format("{:g} req/s GET {} to {} from the loadgen sidecar  [{}]", spec.rate,
                                spec.traffic_path, spec.traffic_to, elapsed()));
    step("dashboard", "http://" + spec.server_http + "/ui/  (topology, services, live requests)");
    std::printf(
        "\n  try: weft stat   weft top   weft tap frontend   weft check   weft get routes   "
        "(WEFT_SERVER=http://%s)\n"
        "       dig @127.0.0.1 -p %u %s.service.weft\n\n",
        spec.server_http.c_str(), PortOf(spec.agent_dns), spec.traffic_to.c_str());
    std::fflush(stdout);
    traffic = std::make_unique<Traffic>(loadgen_addr, spec.traffic_path, spec.rate);
    traffic->Start();

    if (err = ShowLiveTable(spec, procs, *traffic, duration_ms, tty); !err.empty()) fail(err);
  } while (false);

  if (traffic) traffic->Stop();
  const size_t n = procs.StopAll();
  std::printf("\nweft up: stopped %zu processes%s\n", n,
              keep || !made_dir ? (", logs kept in " + dir).c_str() : "");
  if (made_dir && !keep) {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  return rc;
}

}  // namespace weft::cli
