// Consul's catalog writes applied to a node document: registrations,
// deregistrations, and the case-insensitive field names of their bodies.
#include <strings.h>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "mesh/catalog.h"
#include "mesh/catalog_internal.h"

namespace weft::mesh {

using json = nlohmann::json;
using internal::Invalid;
using internal::ParseCheck;
using internal::ParseService;
using internal::ReadName;
using internal::ReadString;
using internal::ReadStringMap;

namespace {

constexpr const char* kFieldNames[] = {"Node",
                                       "ID",
                                       "Address",
                                       "Datacenter",
                                       "TaggedAddresses",
                                       "NodeMeta",
                                       "Service",
                                       "Services",
                                       "Check",
                                       "Checks",
                                       "SkipNodeUpdate",
                                       "ServiceID",
                                       "ServiceName",
                                       "CheckID",
                                       "Name",
                                       "Status",
                                       "Notes",
                                       "Output",
                                       "Type",
                                       "Tags",
                                       "Port",
                                       "Meta",
                                       "Weights",
                                       "Passing",
                                       "Warning",
                                       "Kind",
                                       "Proxy",
                                       "Namespace",
                                       "Locality",
                                       "Zone",
                                       "Region",
                                       "DestinationServiceName",
                                       "DestinationServiceID",
                                       "LocalServiceAddress",
                                       "LocalServicePort",
                                       "Mode",
                                       "TransparentProxy",
                                       "OutboundListenerPort",
                                       "MeshDestinationsOnly",
                                       "Upstreams",
                                       "DestinationName",
                                       "DestinationNamespace",
                                       "LocalBindAddress",
                                       "LocalBindPublic",
                                       "LocalBindPort",
                                       "EnableTagOverride",
                                       "Interval",
                                       "Timeout",
                                       "HTTP",
                                       "TCP",
                                       "GRPC",
                                       "GRPCUseTLS",
                                       "TTL",
                                       "Method",
                                       "Header",
                                       "TLSSkipVerify",
                                       "DeregisterCriticalServiceAfter",
                                       "SuccessBeforePassing",
                                       "FailuresBeforeCritical",
                                       "FailuresBeforeWarning",
                                       "Definition",
                                       "Connect",
                                       "SidecarService"};

// Keys whose values are user maps: their keys are data, not field names.
bool IsUserMap(std::string_view key) {
  return key == "Meta" || key == "NodeMeta" || key == "TaggedAddresses" || key == "Header";
}

}  // namespace

void CanonicalizeKeys(json* j) {
  if (j->is_array()) {
    for (auto& e : *j) CanonicalizeKeys(&e);
    return;
  }
  if (!j->is_object()) return;
  json out = json::object();
  for (auto& [k, v] : j->items()) {
    std::string key = k;
    for (const char* f : kFieldNames) {
      if (key.size() == std::strlen(f) && strncasecmp(key.c_str(), f, key.size()) == 0) {
        key = f;
        break;
      }
    }
    json val = std::move(v);
    if (!IsUserMap(key)) CanonicalizeKeys(&val);
    out[key] = std::move(val);
  }
  *j = std::move(out);
}

Status ApplyRegistration(const json& body, const CatalogLimits& lim, Node* node) {
  if (!body.is_object()) return Invalid("body", "expected a JSON object");
  std::string name;
  if (Status s = ReadName(body, "Node", "", &name); !s.ok()) return s;
  if (name.empty()) return Invalid("Node", "required: the node name");
  const bool is_new = node->name.empty();
  node->name = name;
  bool skip_node = false;
  if (auto it = body.find("SkipNodeUpdate"); it != body.end() && it->is_boolean())
    skip_node = it->get<bool>() && !is_new;
  if (!skip_node) {
    std::string addr = node->address;
    if (Status s = ReadString(body, "Address", "", &addr, 256); !s.ok()) return s;
    if (addr.empty()) return Invalid("Address", "required: the node's address");
    if (!ValidHost(addr))
      return Invalid("Address", "\"" + addr + "\": expected an IP address or a DNS name");
    node->address = addr;
    if (Status s = ReadString(body, "ID", "", &node->id, 64); !s.ok()) return s;
    if (Status s = ReadString(body, "Datacenter", "", &node->datacenter, 64); !s.ok()) return s;
    if (node->datacenter.empty()) node->datacenter = "dc1";
    if (Status s = ReadString(body, "Zone", "", &node->zone, 128); !s.ok()) return s;
    if (Status s = ReadStringMap(body, "NodeMeta", "", lim, &node->meta); !s.ok()) return s;
    if (Status s = ReadStringMap(body, "TaggedAddresses", "", lim, &node->tagged_addresses);
        !s.ok())
      return s;
  }
  std::string service_id;
  if (auto it = body.find("Service"); it != body.end() && !it->is_null()) {
    ServiceInstance s;
    if (Status st = ParseService(*it, lim, &s); !st.ok()) return st;
    if (s.proxy) {
      for (size_t i = 0; i < s.proxy->upstreams.size(); ++i) {
        const Upstream& u = s.proxy->upstreams[i];
        if (u.local_bind_public || IsLoopbackIp(u.local_bind_address)) continue;
        return Invalid("Service.Proxy.Upstreams[" + std::to_string(i) + "].LocalBindAddress",
                       "\"" + u.local_bind_address +
                           "\" is not a loopback address: the upstream would be open to the "
                           "network under this sidecar's identity; add \"LocalBindPublic\": true "
                           "to mean that");
      }
    }
    if (!node->services.count(s.id) && node->services.size() >= lim.max_services_per_node)
      return Invalid("Service", "node " + name + " already has " +
                                    std::to_string(lim.max_services_per_node) +
                                    " services (the limit per node)");
    service_id = s.id;
    node->services[s.id] = std::move(s);
  }
  std::vector<std::pair<const json*, std::string>> checks;
  if (auto it = body.find("Check"); it != body.end() && !it->is_null())
    checks.emplace_back(&*it, "Check.");
  if (auto it = body.find("Checks"); it != body.end() && !it->is_null()) {
    if (!it->is_array()) return Invalid("Checks", "expected a list");
    for (size_t i = 0; i < it->size(); ++i)
      checks.emplace_back(&(*it)[i], "Checks[" + std::to_string(i) + "].");
  }
  for (const auto& [cj, path] : checks) {
    Check c;
    if (Status st = ParseCheck(*cj, path, &c); !st.ok()) return st;
    if (!c.service_id.empty()) {
      auto sit = node->services.find(c.service_id);
      if (sit == node->services.end())
        return Invalid(path + "ServiceID", "\"" + c.service_id + "\" is not registered on node " +
                                               name + ": register the service first");
      c.service_name = sit->second.service;
    }
    if (!node->checks.count(c.id) && node->checks.size() >= lim.max_checks_per_node)
      return Invalid(path.substr(0, path.size() - 1), "node " + name + " already has " +
                                                          std::to_string(lim.max_checks_per_node) +
                                                          " checks (the limit per node)");
    node->checks[c.id] = std::move(c);
  }
  return {};
}

Status ApplyDeregistration(const json& body, Node* node, bool* remove_node) {
  *remove_node = false;
  if (!body.is_object()) return Invalid("body", "expected a JSON object");
  std::string service_id, check_id;
  if (Status s = ReadName(body, "ServiceID", "", &service_id); !s.ok()) return s;
  if (Status s = ReadName(body, "CheckID", "", &check_id); !s.ok()) return s;
  if (service_id.empty() && check_id.empty()) {
    *remove_node = true;
    return {};
  }
  if (!service_id.empty()) {
    if (!node->services.erase(service_id))
      return {StatusCode::kNotFound,
              "service " + service_id + " is not registered on node " + node->name};
    std::erase_if(node->checks, [&](const auto& kv) { return kv.second.service_id == service_id; });
  }
  if (!check_id.empty() && !node->checks.erase(check_id))
    return {StatusCode::kNotFound,
            "check " + check_id + " is not registered on node " + node->name};
  return {};
}

}  // namespace weft::mesh
