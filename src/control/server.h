// `weft server`: the control plane. Holds the catalog and config entries in a
// store (embedded SQLite, or etcd shared by several replicas), keeps an
// in-memory view of both fed by the store's watch, answers the REST API
// (Consul's shapes for catalog and health, weft's own for config entries),
// and streams compiled per-proxy configuration over gRPC.
#pragma once

#include <string>
#include <vector>

namespace weft::control {

struct ServerOptions {
  std::string data_dir;  // embedded store's directory
  std::string store;     // "" (embedded), etcd://H:P,H:P or etcds://H:P,... (TLS)
  // etcd's TLS files and auth (store/open.h).
  std::string etcd_ca_file, etcd_cert_file, etcd_key_file, etcd_user, etcd_password_file;
  std::string http_addr = "127.0.0.1:8500";
  std::string https_addr;  // the REST API over HTTPS too (certificate from the mesh CA)
  std::string grpc_addr = "127.0.0.1:8502";
  std::string name;  // member name (default: hostname-pid)
  bool dev = false;  // throwaway data dir when none is given; no ACLs, join tokens or TLS
  // An operator's join token (at least 16 characters), recorded with
  // join_token_ttl_s on first sight; "": one is made on first start and
  // written to DATA_DIR/join-token.
  std::string join_token;
  int64_t join_token_ttl_s = 24 * 3600;  // 0: never expires
  std::string trust_domain = "weft.local";
  std::string ca_cert_file, ca_key_file;  // an operator's root or intermediate; else made once
  // Encrypts the CA's keys in the store; "": DATA_DIR/ca-kek, made once
  // (required with a shared store).
  std::string ca_kek_file;
  int64_t cert_ttl_s = 24 * 3600;   // workload certificates' lifetime
  int64_t node_timeout_ms = 10000;  // agent gone this long: its node turns critical
  bool grpc_tls = false;            // the config stream over TLS with --dev (always on without it)
  size_t max_body_bytes = 1024 * 1024;
  size_t max_connections = 4096;
  int64_t header_read_timeout_ms = 10000;  // a request head (and body) must arrive within this
  int64_t max_wait_ms = 10 * 60 * 1000;    // longest blocking query
  size_t max_blocking_queries = 8192;      // beyond: answered at once
  size_t max_blocking_queries_per_client = 1024;  // per client address
  size_t max_nodes = 50000;                       // new nodes beyond are refused
  size_t max_streams_per_peer = 1000;             // config streams from one address
  size_t max_streams = 10000;  // config streams; the last tenth need a node certificate
  // Host names API requests may carry besides IP literals, localhost, names
  // under .weft and this machine's hostname (DNS rebinding protection);
  // ".example.com" allows every name under example.com.
  std::vector<std::string> allowed_hosts;
  // ACLs (on unless dev): the bootstrap token's secret, from this file
  // instead of a new one written to DATA_DIR/bootstrap-token.
  std::string acl_bootstrap_token_file;
};

// Runs until SIGTERM/SIGINT. Returns the process exit code.
int RunServer(const ServerOptions& opts);

}  // namespace weft::control
