// `weft proxy`: loads the bootstrap, runs the workers and the admin listener,
// reloads on SIGHUP / POST /reload, drains on SIGTERM.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace weft::proxy {

struct ProxyOptions {
  std::string config_path;
  bool validate_only = false;
  // Control-plane mode (no bootstrap file): the configuration streams from
  // the servers' gRPC ports, for the sidecar of `service`.
  std::string server;  // HOST:PORT[,HOST:PORT...]
  std::string service;
  std::string ns = "default";
  std::string proxy_id;  // its connect-proxy registration id (optional)
  std::string node;
  // Without an agent: an ACL token with service:write on `service`, sent
  // with the config stream and certificate requests (not needed behind an
  // agent, whose socket is the node's own).
  std::string token;
  std::string server_ca_pem;  // TLS to servers run with --grpc-tls (not used with --agent)
  std::string admin = "127.0.0.1:15000";
  int workers = 0;           // 0: the number of cores
  uint32_t socket_mark = 0;  // SO_MARK on upstream sockets (see `weft redirect --proxy-mark`)
  // Live requests (`weft tap`): events per second the sidecar copies out to
  // tap sessions, all together; 0 turns the admin /tap endpoint off.
  uint32_t tap_rate = 100;
};

class ConfigSource;

// Runs until drained. Returns the process exit code: 0 after a clean drain,
// 2 for a config error, 1 for a runtime failure (e.g. a port in use). With
// `opts.server`, configs and identities come from `source` (the config
// stream, src/xds/); without it, from the bootstrap file. The main loop runs
// on the calling thread. Once the proxy is built it never returns: it ends
// the process with std::_Exit(code) and never destroys `source`; only
// errors found before that, and validate_only, return.
int RunProxy(const ProxyOptions& opts, std::unique_ptr<ConfigSource> source = nullptr);

}  // namespace weft::proxy
