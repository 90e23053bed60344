// `weft agent`: its flags, then agent::RunAgent.
#include "agent/agent.h"

#include <cstdio>
#include <cstdlib>
#include <string>

#include "base/strings.h"
#include "cli/ctl.h"
#include "cli/ctl_internal.h"
#include "xds/stream_client.h"

namespace weft::cli {

int AgentMain(const Args& args) {
  agent::AgentOptions o;
  static constexpr const char* kAgentUsage =
      "weft agent --server GRPC_ADDR[,...] --node NAME --data-dir DIR [--http ADDR] [--dns ADDR] "
      "[--zone Z] [--domain D] [--dns-max-tcp N] [--join-token-file FILE] [--server-ca FILE] "
      "[--socket PATH] [--socket-group GROUP] [--socket-max-connections N (1024)] "
      "[--socket-max-connections-per-uid N (256)] [--agent-token-file FILE] "
      "[--log-level LEVEL]";
  for (size_t i = 0; i < args.size(); ++i) {
    std::string v, err;
    if (FlagValue(args, &i, "--server", &v)) {
      o.servers = SplitCommas(v);
    } else if (FlagValue(args, &i, "--node", &v)) {
      o.node = v;
    } else if (FlagValue(args, &i, "--data-dir", &v)) {
      o.data_dir = v;
    } else if (FlagValue(args, &i, "--http", &v)) {
      o.http_addr = v;
    } else if (FlagValue(args, &i, "--dns", &v)) {
      o.dns_addr = v;
    } else if (FlagValue(args, &i, "--dns-max-tcp", &v)) {
      auto n = ParseDecimal(v);
      if (!n || *n == 0 || *n > 100000)
        return BadUsage("--dns-max-tcp \"" + v + "\": use 1-100000", kAgentUsage);
      o.max_dns_tcp_connections = *n;
    } else if (FlagValue(args, &i, "--socket-max-connections", &v)) {
      auto n = ParseDecimal(v);
      if (!n || *n == 0 || *n > 100000)
        return BadUsage("--socket-max-connections \"" + v + "\": use 1-100000", kAgentUsage);
      o.max_socket_connections = *n;
    } else if (FlagValue(args, &i, "--socket-max-connections-per-uid", &v)) {
      auto n = ParseDecimal(v);
      if (!n || *n == 0 || *n > 100000)
        return BadUsage("--socket-max-connections-per-uid \"" + v + "\": use 1-100000",
                        kAgentUsage);
      o.max_socket_connections_per_uid = *n;
    } else if (FlagValue(args, &i, "--socket", &v)) {
      o.socket_path = v;
    } else if (FlagValue(args, &i, "--zone", &v)) {
      o.zone = v;
    } else if (FlagValue(args, &i, "--address", &v)) {
      o.address = v;
    } else if (FlagValue(args, &i, "--server-ca", &v)) {
      o.server_ca_pem = xds::ReadServerCa(v, &err);
      if (!err.empty()) return BadUsage("--server-ca \"" + v + "\": " + err, kAgentUsage);
    } else if (FlagValue(args, &i, "--join-token", &v)) {
      o.join_token = v;
      WarnSecretInArgv("--join-token", "--join-token-file FILE or WEFT_JOIN_TOKEN");
    } else if (FlagValue(args, &i, "--join-token-file", &v)) {
      o.join_token = ReadSecretFile(v, &err);
      if (!err.empty()) return BadUsage("--join-token-file \"" + v + "\": " + err, kAgentUsage);
    } else if (FlagValue(args, &i, "--agent-token-file", &v)) {
      o.agent_token = ReadSecretFile(v, &err);
      if (!err.empty()) return BadUsage("--agent-token-file \"" + v + "\": " + err, kAgentUsage);
    } else if (FlagValue(args, &i, "--socket-group", &v)) {
      o.socket_group = v;
    } else if (FlagValue(args, &i, "--domain", &v)) {
      o.domain = v;
    } else if (LogLevelFlag(args, &i, &err)) {
      if (!err.empty()) return BadUsage(err, kAgentUsage);
    } else if (args[i] == "--help" || args[i] == "-h") {
      std::printf("usage: %s\n", kAgentUsage);
      return 0;
    } else {
      return BadUsage("agent: unknown or incomplete flag \"" + std::string(args[i]) + "\"",
                      kAgentUsage);
    }
  }
  if (o.join_token.empty()) {
    if (const char* t = std::getenv("WEFT_JOIN_TOKEN")) o.join_token = t;
  }
  if (o.agent_token.empty()) {
    if (const char* t = std::getenv("WEFT_AGENT_TOKEN")) o.agent_token = TrimSpace(t);
  }
  return agent::RunAgent(o);
}

}  // namespace weft::cli
