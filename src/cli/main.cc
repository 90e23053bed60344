// The weft binary: one program, several roles chosen by subcommand.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "base/log.h"
#include "base/strings.h"
#include "cli/ctl.h"
#include "cli/ctl_internal.h"
#include "cli/flags.h"
#include "proxy/proxy.h"
#include "xds/proxy_source.h"
#include "xds/stream_client.h"

#ifndef WEFT_VERSION
#define WEFT_VERSION "0.0.0-dev"
#endif

namespace {

constexpr const char* kUsage =
    "weft: a service mesh (proxy, control plane and node agent in one binary)\n"
    "\n"
    "usage: weft <command> [flags]\n"
    "\n"
    "commands:\n"
    "  proxy --config FILE [--validate] [--log-level LEVEL]\n"
    "        run the data-plane proxy from a static bootstrap file\n"
    "  proxy --server GRPC_ADDR[,...] --service NAME [--proxy-id ID] [--admin ADDR] [--workers N]\n"
    "        [--token-file FILE] (or WEFT_TOKEN: an ACL token with service:write on NAME;\n"
    "        not needed with --agent) [--server-ca FILE] (the servers' DATA_DIR/ca.pem)\n"
    "        run a sidecar whose configuration streams from the control plane\n"
    "  proxy --agent unix:PATH --service NAME [...] [--socket-mark N] [--tap-rate N]\n"
    "        the same, from the node agent's local socket\n"
    "  server --data-dir DIR [--http ADDR] [--grpc ADDR] [--store etcd://H:P,...] [--dev]\n"
    "        run the control plane (catalog, config entries, REST API, config stream)\n"
    "  agent --server GRPC_ADDR[,...] --node NAME --data-dir DIR [--http ADDR] [--dns ADDR]\n"
    "        run the node agent (cached catalog: Consul-shaped HTTP API and DNS)\n"
    "  apply -f FILE|DIR|-        create or update config entries from manifests\n"
    "  get KIND [NAME] [-o yaml|json] [-n NS|-A]   show config entries\n"
    "  delete KIND NAME [-n NS]   delete a config entry\n"
    "  members                    list the servers (and connected proxies)\n"
    "  check                      diagnose the mesh: server, CA, proxies, configs, certificates\n"
    "  stat [SERVICE] [--window DUR]  golden metrics of the mesh's services from their proxies\n"
    "  tap SERVICE [--route R] [--method M] [--path PREFIX] [--max N] [-o json]\n"
    "                             live requests through the service's sidecars\n"
    "  top [SERVICE] [--window DUR]  the busiest paths now, by requests/s, with latency\n"
    "  demo-app --name NAME [--listen ADDR] [--latency DUR] [--error-rate F] [--call "
    "HOST:PORT/PATH]\n"
    "                             a demo HTTP service (latency, errors, calls to others)\n"
    "  up FILE [--duration DUR] [--dir DIR] [--keep]\n"
    "                             a whole mesh on this machine (try examples/quickstart.yaml)\n"
    "  redirect [--outbound-port P] [--inbound-port P] [--proxy-mark N] [...] | redirect --undo\n"
    "                             send this network namespace's TCP through the sidecar "
    "(iptables)\n"
    "  ca roots | ca rotate [--propagate DUR] [--overlap DUR]\n"
    "                             the mesh CA's trust bundle; introduce a new root\n"
    "  acl policy|token create|update|list|read|delete ...   ACL policies and tokens\n"
    "        apply/get/delete/members/ca/acl/stat/check talk to --server URL (or WEFT_SERVER;\n"
    "        default http://127.0.0.1:8500) with --token T, --token-file FILE or WEFT_TOKEN\n"
    "        (a server without --dev creates DATA_DIR/bootstrap-token on first start)\n"
    "  version            print the version\n"
    "  help               print this help\n"
    "\n"
    "proxy flags:\n"
    "  --config FILE      bootstrap YAML (listeners, routes, clusters, admin)\n"
    "  --validate         check the config, print the verdict, exit (0 ok, 2 invalid)\n"
    "  --log-level LEVEL  trace|debug|info|warn|error|off (default info)\n"
    "\n"
    "signals: SIGHUP reloads the config, SIGTERM drains and exits 0.\n";

int Usage(const char* err) {
  std::fprintf(stderr, "weft: %s\n\n%s", err, kUsage);
  return 2;
}

int ProxyMain(const std::vector<std::string_view>& args) {
  weft::proxy::ProxyOptions opts;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view a = args[i];
    weft::cli::FlagArg flag(args, &i);
    auto value = [&](std::string_view name, std::string* out) { return flag.Is(name, out); };
    std::string v;
    if (value("--config", &v) || value("-c", &v)) {
      opts.config_path = v;
    } else if (a == "--validate") {
      opts.validate_only = true;
    } else if (value("--server", &v) || value("--agent", &v)) {
      // --agent: the node agent's local socket (unix:PATH) or address, the
      // same stream served from the agent's cache.
      opts.server = v;
    } else if (value("--service", &v)) {
      opts.service = v;
    } else if (value("--namespace", &v) || value("-n", &v)) {
      opts.ns = v;
    } else if (value("--proxy-id", &v)) {
      opts.proxy_id = v;
    } else if (value("--node", &v)) {
      opts.node = v;
    } else if (value("--server-ca", &v)) {
      std::string err;
      opts.server_ca_pem = weft::xds::ReadServerCa(v, &err);
      if (!err.empty()) return Usage(("--server-ca \"" + v + "\": " + err).c_str());
    } else if (value("--token", &v)) {
      opts.token = v;
      weft::cli::WarnSecretInArgv("--token", "--token-file FILE or WEFT_TOKEN");
    } else if (value("--token-file", &v)) {
      std::string err;
      opts.token = weft::cli::ReadSecretFile(v, &err);
      if (!err.empty()) return Usage(("--token-file \"" + v + "\": " + err).c_str());
    } else if (value("--join-token", &v)) {
      return Usage(
          "proxy: --join-token is for agents; a proxy without an agent presents an ACL token "
          "with service:write on its service (--token-file FILE or WEFT_TOKEN)");
    } else if (value("--admin", &v)) {
      opts.admin = v;
    } else if (value("--socket-mark", &v)) {
      char* end = nullptr;
      const unsigned long m = std::strtoul(v.c_str(), &end, 0);
      if (v.empty() || *end || m == 0 || m > 0xffffffffUL)
        return Usage("--socket-mark: use a number from 1 to 4294967295 (0x1-0xffffffff)");
      opts.socket_mark = static_cast<uint32_t>(m);
    } else if (value("--tap-rate", &v)) {
      char* end = nullptr;
      const long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end || n < 0 || n > 100000)
        return Usage("--tap-rate: events per second for `weft tap`, 0 (off) to 100000");
      opts.tap_rate = static_cast<uint32_t>(n);
    } else if (value("--workers", &v)) {
      char* end = nullptr;
      const long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end || n < 1 || n > 256) return Usage("--workers: use 1-256");
      opts.workers = static_cast<int>(n);
    } else if (value("--log-level", &v)) {
      weft::log::Level l;
      if (!weft::log::ParseLevel(v, &l)) {
        return Usage(
            ("--log-level \"" + v + "\": use trace, debug, info, warn, error or off").c_str());
      }
      weft::log::SetLevel(l);
    } else if (a == "--help" || a == "-h") {
      std::printf("%s", kUsage);
      return 0;
    } else {
      return Usage(("proxy: unknown or incomplete flag \"" + std::string(a) + "\"").c_str());
    }
  }
  if (opts.token.empty()) {
    if (const char* t = std::getenv("WEFT_TOKEN")) opts.token = t;
  }
  if (opts.config_path.empty() && opts.server.empty())
    return Usage("proxy: --config FILE or --server ADDR --service NAME is required");
  if (!opts.config_path.empty() && !opts.server.empty())
    return Usage("proxy: use either --config FILE or --server ADDR, not both");
  if (opts.config_path.empty() && weft::SplitCommas(opts.server).empty())
    return Usage("proxy: --server needs at least one address (ADDR[,ADDR...])");
  return weft::proxy::RunProxy(opts,
                               opts.server.empty() ? nullptr : weft::xds::NewProxySource(opts));
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  if (args.empty()) return Usage("no command given");
  std::string_view cmd = args[0];
  args.erase(args.begin());
  if (cmd == "proxy") return ProxyMain(args);
  if (cmd == "server") return weft::cli::ServerMain(args);
  if (cmd == "agent") return weft::cli::AgentMain(args);
  if (cmd == "apply") return weft::cli::ApplyMain(args);
  if (cmd == "get") return weft::cli::GetMain(args);
  if (cmd == "delete") return weft::cli::DeleteMain(args);
  if (cmd == "members") return weft::cli::MembersMain(args);
  if (cmd == "ca") return weft::cli::CaMain(args);
  if (cmd == "acl") return weft::cli::AclMain(args);
  if (cmd == "demo-app") return weft::cli::DemoMain(args);
  if (cmd == "stat") return weft::cli::StatMain(args);
  if (cmd == "tap") return weft::cli::TapMain(args);
  if (cmd == "top") return weft::cli::TopMain(args);
  if (cmd == "check") return weft::cli::CheckMain(args);
  if (cmd == "up") return weft::cli::UpMain(args);
  if (cmd == "redirect") return weft::cli::RedirectMain(args);
  if (cmd == "version" || cmd == "--version" || cmd == "-v") {
    std::printf("weft %s\n", WEFT_VERSION);
    return 0;
  }
  if (cmd == "help" || cmd == "--help" || cmd == "-h") {
    std::printf("%s", kUsage);
    return 0;
  }
  return Usage(("unknown command \"" + std::string(cmd) + "\"").c_str());
}
