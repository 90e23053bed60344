// The agent's own node: the services registered on it through the local API
// and their checks. The agent is authoritative for it: it is kept on disk
// (DIR/local.json) and pushed whole to the servers (anti-entropy), so a
// server that lost its data, or holds entries for this node that the agent
// does not know, is put right.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "base/status.h"
#include "mesh/catalog.h"

namespace weft::agent {

// How a check is run locally (Consul's agent check definition subset).
struct CheckDefinition {
  std::string id;
  std::string service_id;
  std::string http;  // URL: passing on 2xx/3xx
  std::string method = "GET";
  std::string tcp;   // HOST:PORT: passing when a connection opens
  std::string grpc;  // HOST:PORT[/SERVICE]: grpc.health.v1 SERVING
  std::string ttl;   // reserved (TTL checks are not run by the agent yet)
  int64_t interval_ms = 10000;
  int64_t timeout_ms = 5000;
  uint32_t success_before_passing = 0;
  uint32_t failures_before_critical = 0;
};

// Not thread-safe: the agent's io thread only.
class LocalState {
 public:
  LocalState(std::string node, std::string address, std::string zone, std::string path);

  // Loads DIR/local.json when present.
  Status Load();
  // Whether Load found a file (false: a new or wiped data dir).
  bool loaded_file() const { return loaded_file_; }
  // Takes the services and checks of the servers' copy of this node
  // (`doc`, a node document) that this agent does not have: an agent
  // started on an empty data dir adopts what its node ran instead of
  // wiping it. Adopted checks keep their last status and are not run here
  // until registered again (the document has no check definitions).
  // Returns how many services were adopted.
  Result<size_t> Adopt(const std::string& doc);

  // PUT /v1/agent/service/register (Consul's AgentServiceRegistration).
  // InvalidArgument names the field. Sets *id to the service id.
  Status Register(const nlohmann::json& body, std::string* id);
  // PUT /v1/agent/service/deregister/ID. NotFound when unknown.
  Status Deregister(const std::string& id);
  // A check's new status from its runner; false when unchanged.
  bool SetCheckStatus(const std::string& check_id, const std::string& status,
                      const std::string& output);

  // Whether `token` is the Token of a registration on this node of a
  // service `service` (or of a sidecar fronting it): a proxy that presents
  // it may act as that service's proxy on the agent's socket.
  bool ProxyTokenAllows(const std::string& service, std::string_view token) const;

  // Valid until the next Load, Register, Deregister or SetCheckStatus.
  const mesh::Node& node() const { return node_; }
  const std::map<std::string, CheckDefinition>& checks() const { return defs_; }
  // The node document as stored by the servers.
  std::string Document() const { return mesh::NodeToJson(node_); }
  nlohmann::json AgentServices() const;  // GET /v1/agent/services
  nlohmann::json AgentChecks() const;    // GET /v1/agent/checks

 private:
  Status Save() const;
  Status LoadFrom(const nlohmann::json& j);  // Load's body; json errors throw
  const std::string path_;
  bool loaded_file_ = false;
  mesh::Node node_;
  std::map<std::string, CheckDefinition> defs_;  // by check id
  // Registration id -> the service its Token lets a proxy act as, and the
  // token's SHA-256 (hex): only the hash is kept, on disk too. Not part of
  // the node document: servers never see it.
  struct ProxyToken {
    std::string service, sha256;
  };
  std::map<std::string, ProxyToken> proxy_tokens_;
};

}  // namespace weft::agent
