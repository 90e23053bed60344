// `weft server`: its flags, then control::RunServer.
#include "control/server.h"

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include "base/strings.h"
#include "cli/ctl.h"
#include "cli/ctl_internal.h"

namespace weft::cli {
namespace {

constexpr const char* kServerUsage =
    "weft server --data-dir DIR [--http ADDR] [--https ADDR] [--grpc ADDR] [--store "
    "etcd[s]://H:P,...] "
    "[--etcd-ca FILE] [--etcd-cert FILE --etcd-key FILE] [--etcd-user U --etcd-password-file F] "
    "[--dev] "
    "[--name NAME] [--join-token-file FILE] [--join-token-ttl DUR] [--trust-domain TD] [--ca-cert "
    "FILE --ca-key FILE] [--cert-ttl "
    "DUR] [--node-timeout DUR] [--grpc-tls (with --dev; always on without)] "
    "[--http-max-connections N] [--http-header-timeout DUR] [--max-blocking-queries N] "
    "[--max-blocking-queries-per-client N] [--max-nodes N] [--max-streams-per-peer N] "
    "[--http-allow-host NAME] [--acl-bootstrap-token-file FILE] [--max-streams N] "
    "[--log-level LEVEL]";

}  // namespace

int ServerMain(const Args& args) {
  control::ServerOptions o;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string v, err;
    if (FlagValue(args, &i, "--data-dir", &v)) {
      o.data_dir = v;
    } else if (FlagValue(args, &i, "--http", &v)) {
      o.http_addr = v;
    } else if (FlagValue(args, &i, "--https", &v)) {
      o.https_addr = v;
    } else if (FlagValue(args, &i, "--grpc", &v)) {
      o.grpc_addr = v;
    } else if (FlagValue(args, &i, "--store", &v)) {
      o.store = v;
    } else if (FlagValue(args, &i, "--etcd-ca", &v)) {
      o.etcd_ca_file = v;
    } else if (FlagValue(args, &i, "--etcd-cert", &v)) {
      o.etcd_cert_file = v;
    } else if (FlagValue(args, &i, "--etcd-key", &v)) {
      o.etcd_key_file = v;
    } else if (FlagValue(args, &i, "--etcd-user", &v)) {
      o.etcd_user = v;
    } else if (FlagValue(args, &i, "--etcd-password-file", &v)) {
      o.etcd_password_file = v;
    } else if (FlagValue(args, &i, "--name", &v)) {
      o.name = v;
    } else if (FlagValue(args, &i, "--join-token", &v)) {
      o.join_token = v;
      WarnSecretInArgv("--join-token", "--join-token-file FILE or WEFT_JOIN_TOKEN");
    } else if (FlagValue(args, &i, "--join-token-file", &v)) {
      o.join_token = ReadSecretFile(v, &err);
      if (!err.empty()) return BadUsage("--join-token-file \"" + v + "\": " + err, kServerUsage);
    } else if (FlagValue(args, &i, "--join-token-ttl", &v)) {
      auto ms = v == "0" ? std::optional<int64_t>(0) : ParseDurationMs(v);
      if (!ms || (*ms != 0 && *ms < 1000) || *ms > 365LL * 86400 * 1000)
        return BadUsage("--join-token-ttl \"" + v + "\": use 0 (never) or 1s to 8760h",
                        kServerUsage);
      o.join_token_ttl_s = *ms / 1000;
    } else if (FlagValue(args, &i, "--trust-domain", &v)) {
      o.trust_domain = v;
    } else if (FlagValue(args, &i, "--ca-cert", &v)) {
      o.ca_cert_file = v;
    } else if (FlagValue(args, &i, "--ca-key", &v)) {
      o.ca_key_file = v;
    } else if (FlagValue(args, &i, "--ca-kek-file", &v)) {
      o.ca_kek_file = v;
    } else if (FlagValue(args, &i, "--cert-ttl", &v)) {
      auto ms = ParseDurationMs(v);
      if (!ms || *ms < 60000 || *ms > 366LL * 86400 * 1000)
        return BadUsage("--cert-ttl \"" + v + "\": use a duration from 1m to 8784h (a year)",
                        kServerUsage);
      o.cert_ttl_s = *ms / 1000;
    } else if (args[i] == "--grpc-tls") {
      o.grpc_tls = true;
    } else if (FlagValue(args, &i, "--node-timeout", &v)) {
      auto ms = ParseDurationMs(v);
      if (!ms || *ms < 1000 || *ms > 3600 * 1000)
        return BadUsage("--node-timeout \"" + v + "\": use a duration from 1s to 1h", kServerUsage);
      o.node_timeout_ms = *ms;
    } else if (FlagValue(args, &i, "--http-max-connections", &v)) {
      auto n = ParseDecimal(v);
      if (!n || *n == 0 || *n > 1000000)
        return BadUsage("--http-max-connections \"" + v + "\": use 1-1000000", kServerUsage);
      o.max_connections = *n;
    } else if (FlagValue(args, &i, "--max-nodes", &v)) {
      auto n = ParseDecimal(v);
      if (!n || *n == 0 || *n > 10000000)
        return BadUsage("--max-nodes \"" + v + "\": use 1-10000000", kServerUsage);
      o.max_nodes = *n;
    } else if (FlagValue(args, &i, "--max-streams-per-peer", &v)) {
      auto n = ParseDecimal(v);
      if (!n || *n == 0 || *n > 1000000)
        return BadUsage("--max-streams-per-peer \"" + v + "\": use 1-1000000", kServerUsage);
      o.max_streams_per_peer = *n;
    } else if (FlagValue(args, &i, "--max-blocking-queries-per-client", &v)) {
      auto n = ParseDecimal(v);
      if (!n || *n == 0 || *n > 1000000)
        return BadUsage("--max-blocking-queries-per-client \"" + v + "\": use 1-1000000",
                        kServerUsage);
      o.max_blocking_queries_per_client = *n;
    } else if (FlagValue(args, &i, "--max-blocking-queries", &v)) {
      auto n = ParseDecimal(v);
      if (!n || *n == 0 || *n > 1000000)
        return BadUsage("--max-blocking-queries \"" + v + "\": use 1-1000000", kServerUsage);
      o.max_blocking_queries = *n;
    } else if (FlagValue(args, &i, "--http-header-timeout", &v)) {
      auto ms = ParseDurationMs(v);
      if (!ms || *ms <= 0)
        return BadUsage("--http-header-timeout \"" + v + "\": use a duration such as 10s",
                        kServerUsage);
      o.header_read_timeout_ms = *ms;
    } else if (FlagValue(args, &i, "--max-streams", &v)) {
      auto n = ParseDecimal(v);
      if (!n || *n < 2 || *n > 1000000)
        return BadUsage("--max-streams \"" + v + "\": use 2-1000000", kServerUsage);
      o.max_streams = *n;
    } else if (FlagValue(args, &i, "--http-allow-host", &v)) {
      o.allowed_hosts.push_back(v);
    } else if (FlagValue(args, &i, "--acl-bootstrap-token-file", &v)) {
      o.acl_bootstrap_token_file = v;
    } else if (args[i] == "--dev") {
      o.dev = true;
    } else if (LogLevelFlag(args, &i, &err)) {
      if (!err.empty()) return BadUsage(err, kServerUsage);
    } else if (args[i] == "--help" || args[i] == "-h") {
      std::printf("usage: %s\n", kServerUsage);
      return 0;
    } else {
      return BadUsage("server: unknown or incomplete flag \"" + std::string(args[i]) + "\"",
                      kServerUsage);
    }
  }
  if (o.join_token.empty())
    if (const char* t = std::getenv("WEFT_JOIN_TOKEN")) o.join_token = t;
  return control::RunServer(o);
}

}  // namespace weft::cli
