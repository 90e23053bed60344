// `weft agent`: the per-node agent. It follows the servers' config stream as
// a catalog client and keeps the catalog and config entries in memory (and
// on disk, so a restart answers at once even with no server reachable),
// answering the Consul-shaped HTTP API and DNS from that copy with no
// network hop.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace weft::agent {

struct AgentOptions {
  std::vector<std::string> servers;  // gRPC HOST:PORT of the servers
  std::string node;
  std::string data_dir;
  std::string zone;
  // To join once (the server's DATA_DIR/join-token, or `weft acl join-token
  // create`); a node certificate kept in the data dir does the rest.
  std::string join_token;
  // The local API's own token (Consul's agent token): writes, config reads
  // and the agent's metrics need it. "": DATA_DIR/agent-token, made (0600)
  // on first start.
  std::string agent_token;
  std::string server_ca_pem;          // TLS to servers run with --grpc-tls (their DATA_DIR/ca.pem)
  std::string address = "127.0.0.1";  // this node's address in the catalog
  std::string http_addr = "127.0.0.1:8500";
  std::string dns_addr = "127.0.0.1:8600";
  std::string socket_path;  // local proxies' config stream; default DATA_DIR/weft.sock
  // The socket is 0660, owned by this group ("": the agent's own); a group
  // needs a socket outside the data dir (which is its owner's only).
  std::string socket_group;
  std::string domain = "weft";
  uint32_t dns_ttl_s = 5;
  int64_t stale_after_ms = 10000;  // out of touch this long: answers are marked stale
  size_t max_dns_tcp_connections = 256;
  // The local socket's connections: in all, and from one uid.
  size_t max_socket_connections = 1024;
  size_t max_socket_connections_per_uid = 256;
};

// Runs until SIGTERM/SIGINT. Returns the process exit code.
int RunAgent(const AgentOptions& opts);

}  // namespace weft::agent
