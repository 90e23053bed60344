// The catalog: nodes, the service instances registered on them, and health
// checks, in Consul's shapes. Each node is one document in the store
// (catalog/nodes/NAME) holding its services and checks, so a registration or
// deregistration is one atomic compare-and-swap write on any store.
//
// CatalogView is the in-memory index every server replica keeps, fed by the
// store's watch: it answers the Consul-shaped reads and tracks, per result
// set, the index (store revision) of its last change for blocking queries.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"

namespace weft::mesh {

inline constexpr std::string_view kNodePrefix = "catalog/nodes/";
// The node check a server sets critical when the node's agent has been gone
// for --node-timeout (Consul's name for its agent-liveness check).
inline constexpr std::string_view kAgentCheckId = "serfHealth";

// Limits on what one registration may carry (Consul's for metadata).
struct CatalogLimits {
  size_t max_nodes = 50000;  // new nodes beyond are refused (registration, join)
  size_t max_services_per_node = 1000;
  size_t max_checks_per_node = 2000;
  size_t max_tags = 64;
  size_t max_meta = 64;
  size_t max_meta_key = 128;
  size_t max_meta_value = 512;
  size_t max_upstreams = 256;
};

struct Check {
  std::string id;
  std::string name;
  std::string status = "critical";  // passing | warning | critical
  std::string notes;
  std::string output;
  std::string service_id;  // "" for a node-level check
  std::string service_name;
  std::string type;
  bool operator==(const Check&) const = default;
};

struct Upstream {
  std::string destination_name;
  std::string destination_namespace = "default";
  std::string local_bind_address = "127.0.0.1";
  uint32_t local_bind_port = 0;
  // An address outside loopback opens the upstream to the network under the
  // sidecar's identity: registrations need this set to ask for one.
  bool local_bind_public = false;
  bool operator==(const Upstream&) const = default;
};

// A sidecar's description of itself (Consul's "connect-proxy" Proxy block):
// the service it fronts and the services it calls.
struct SidecarProxy {
  std::string destination_service_name;
  std::string destination_service_id;
  std::string local_service_address = "127.0.0.1";
  uint32_t local_service_port = 0;
  std::vector<Upstream> upstreams;
  // "" (direct: apps call the upstream ports) or "transparent" (apps call
  // services by name or address and `weft redirect` sends their TCP to the
  // sidecar's outbound capture port).
  std::string mode;
  uint32_t outbound_listener_port = 15001;
  bool mesh_destinations_only = false;  // transparent: refuse destinations outside the mesh
  bool operator==(const SidecarProxy&) const = default;
};

struct ServiceInstance {
  std::string id;
  std::string service;
  std::string ns = "default";
  std::string kind;  // "" (a workload) or "connect-proxy"
  std::string address;
  uint32_t port = 0;
  std::vector<std::string> tags;
  std::map<std::string, std::string> meta;
  uint32_t weight_passing = 1;
  uint32_t weight_warning = 1;
  std::string zone;
  std::optional<SidecarProxy> proxy;
  // Indexes are the view's, not stored: revisions at which it appeared and
  // last changed.
  int64_t create_index = 0;
  int64_t modify_index = 0;
  // Equal in everything a client can see (indexes aside).
  bool SameAs(const ServiceInstance& o) const {
    return id == o.id && service == o.service && ns == o.ns && kind == o.kind &&
           address == o.address && port == o.port && tags == o.tags && meta == o.meta &&
           weight_passing == o.weight_passing && weight_warning == o.weight_warning &&
           zone == o.zone && proxy == o.proxy;
  }
};

struct Node {
  std::string name;
  std::string id;
  std::string address;
  std::string datacenter = "dc1";
  std::string zone;
  std::map<std::string, std::string> meta;
  std::map<std::string, std::string> tagged_addresses;
  std::map<std::string, ServiceInstance> services;  // by id
  std::map<std::string, Check> checks;              // by id
  int64_t create_index = 0;
  int64_t modify_index = 0;
};

// Stored form of a node document, and back.
std::string NodeToJson(const Node& n);
Result<Node> NodeFromJson(const std::string& json);

// The worst status of the node-level checks and the instance's own checks:
// critical > warning > passing (no checks: passing).
std::string InstanceHealth(const Node& n, const ServiceInstance& s);

// Applies a Consul catalog registration body (PUT /v1/catalog/register) to
// `node` (empty for a new node). InvalidArgument names the field.
Status ApplyRegistration(const nlohmann::json& body, const CatalogLimits& limits, Node* node);

// PUT /v1/catalog/deregister: {"Node"} removes the node, {"Node","ServiceID"}
// one instance and its checks, {"Node","CheckID"} one check. Sets *remove_node
// when the whole node goes. NotFound when the service or check is unknown.
Status ApplyDeregistration(const nlohmann::json& body, Node* node, bool* remove_node);

// Consul decodes field names case-insensitively ("service", "Service"), and
// its clients rely on it: rewrites the known field names of a request body
// to their canonical spelling (user maps such as Meta are left alone).
void CanonicalizeKeys(nlohmann::json* j);

// Node names, instance and check ids: the identifier rule of mesh/names.h.
bool ValidName(std::string_view s);
// An address a proxy can dial or bind: an IPv4 or IPv6 literal (bare), or a
// DNS name (labels of letters, digits, '-' and '_', at most 253 bytes).
bool ValidHost(std::string_view s);
// An IPv4 or IPv6 literal.
bool ValidIp(std::string_view s);
// 127.0.0.0/8, ::1 or ::ffff:127.x.y.z.
bool IsLoopbackIp(std::string_view s);

// Not thread-safe: one thread applies and reads (a server's or agent's Api
// io thread; the DNS server and the compiler read on it too).
class CatalogView {
 public:
  // A node document was written (or, with json == nullptr, deleted) at
  // `revision`. Updates the per-service indexes of whatever changed.
  void Apply(const std::string& node_name, const std::string* json, int64_t revision,
             int64_t create_revision);
  // The same with the document already parsed (nullptr: deleted), so a
  // caller can parse off the thread that owns the view.
  void ApplyParsed(const std::string& node_name, std::optional<Node> node, int64_t revision,
                   int64_t create_revision);
  // Drops everything (a store reset at `revision`); what was there counts
  // as changed.
  void Clear(int64_t revision);

  // References and pointers into the view (nodes(), FindNode, InstanceRef)
  // are valid until the next Apply, ApplyParsed or Clear.
  const std::map<std::string, Node>& nodes() const { return nodes_; }
  const Node* FindNode(const std::string& name) const;  // null when absent

  // Index of the last change to the set of services or their tags.
  int64_t services_index() const { return services_index_; }
  // Index of the last change to any instance (or health) of `service`.
  int64_t service_index(const std::string& service) const;
  int64_t nodes_index() const { return nodes_index_; }

  // Consul shapes.
  nlohmann::json CatalogServices() const;                        // {"name": [tags...]}
  nlohmann::json CatalogService(const std::string& name) const;  // [{Node, ServiceID, ...}]
  nlohmann::json HealthService(const std::string& name, bool passing_only) const;
  nlohmann::json CatalogNodes() const;

  struct InstanceRef {
    const Node* node;
    const ServiceInstance* instance;
  };
  // Names of every service with an instance (sidecars included), sorted.
  std::vector<std::string> ServiceNames() const;
  // Every instance of `service`, in node/id order.
  std::vector<InstanceRef> Instances(const std::string& service) const;
  // Sidecars (connect-proxy instances) that front `service`.
  std::vector<InstanceRef> ProxiesFor(const std::string& service) const;

  // Service names touched since the last call (a sidecar's change also names
  // the service it fronts), and node names written or deleted.
  std::set<std::string> TakeChangedServices() { return std::exchange(changed_services_, {}); }
  std::set<std::string> TakeChangedNodes() { return std::exchange(changed_nodes_, {}); }

 private:
  void Touch(const std::string& service, int64_t revision);
  // (node, id) pairs of `index[service]` -> the instances they name.
  std::vector<InstanceRef> Resolve(
      const std::map<std::string, std::set<std::pair<std::string, std::string>>>& index,
      const std::string& service) const;

  std::map<std::string, Node> nodes_;
  // service name -> (node, instance id)
  std::map<std::string, std::set<std::pair<std::string, std::string>>> by_service_;
  std::map<std::string, int64_t> service_index_;
  // destination service -> sidecar (node, instance id)
  std::map<std::string, std::set<std::pair<std::string, std::string>>> proxies_by_dest_;
  std::set<std::string> changed_services_;
  std::set<std::string> changed_nodes_;
  int64_t services_index_ = 0;
  int64_t nodes_index_ = 0;
};

nlohmann::json CheckToJson(const Node& n, const Check& c);
// Consul's Node shape (with indexes), and an instance as an agent service.
nlohmann::json NodeJson(const Node& n);
nlohmann::json InstanceJson(const ServiceInstance& s);

}  // namespace weft::mesh
