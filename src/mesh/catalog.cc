// The catalog model's stored form (one JSON document per node) and its
// Consul response shapes, and instance health.
#include "mesh/catalog.h"

#include <algorithm>
#include <cstdint>

#include "base/strings.h"
#include "mesh/catalog_internal.h"

namespace weft::mesh {

using json = nlohmann::json;

namespace internal {

json ServiceToJson(const ServiceInstance& s) {
  json j = {{"ID", s.id},
            {"Service", s.service},
            {"Namespace", s.ns},
            {"Tags", s.tags},
            {"Address", s.address},
            {"Port", s.port},
            {"Meta", s.meta},
            {"Weights", {{"Passing", s.weight_passing}, {"Warning", s.weight_warning}}}};
  if (!s.kind.empty()) j["Kind"] = s.kind;
  if (!s.zone.empty()) j["Locality"] = {{"Zone", s.zone}};
  if (s.proxy) {
    json ups = json::array();
    for (const auto& u : s.proxy->upstreams) {
      ups.push_back({{"DestinationName", u.destination_name},
                     {"DestinationNamespace", u.destination_namespace},
                     {"LocalBindAddress", u.local_bind_address},
                     {"LocalBindPort", u.local_bind_port}});
      if (u.local_bind_public) ups.back()["LocalBindPublic"] = true;
    }
    j["Proxy"] = {{"DestinationServiceName", s.proxy->destination_service_name},
                  {"DestinationServiceID", s.proxy->destination_service_id},
                  {"LocalServiceAddress", s.proxy->local_service_address},
                  {"LocalServicePort", s.proxy->local_service_port},
                  {"Upstreams", ups}};
    if (!s.proxy->mode.empty()) {
      j["Proxy"]["Mode"] = s.proxy->mode;
      j["Proxy"]["TransparentProxy"] = {{"OutboundListenerPort", s.proxy->outbound_listener_port},
                                        {"MeshDestinationsOnly", s.proxy->mesh_destinations_only}};
    }
  }
  return j;
}

json CheckStored(const Check& c) {
  return {{"CheckID", c.id},
          {"Name", c.name},
          {"Status", c.status},
          {"Notes", c.notes},
          {"Output", c.output},
          {"ServiceID", c.service_id},
          {"ServiceName", c.service_name},
          {"Type", c.type}};
}

}  // namespace internal

using internal::CheckStored;
using internal::ParseCheck;
using internal::ParseService;
using internal::ReadName;
using internal::ReadString;
using internal::ReadStringMap;
using internal::ServiceToJson;

namespace {

int Severity(const std::string& status) {
  return status == "critical" ? 2 : status == "warning" ? 1 : 0;
}

}  // namespace

std::string NodeToJson(const Node& n) {
  json services = json::array();
  for (const auto& [id, s] : n.services) services.push_back(ServiceToJson(s));
  json checks = json::array();
  for (const auto& [id, c] : n.checks) checks.push_back(CheckStored(c));
  json j = {{"Node", n.name},       {"ID", n.id},
            {"Address", n.address}, {"Datacenter", n.datacenter},
            {"Meta", n.meta},       {"TaggedAddresses", n.tagged_addresses},
            {"Services", services}, {"Checks", checks}};
  if (!n.zone.empty()) j["Zone"] = n.zone;
  return j.dump();
}

Result<Node> NodeFromJson(const std::string& text) {
  if (JsonNestingDepth(text) > kMaxJsonDepth)
    return Status(StatusCode::kInvalidArgument,
                  "node document: nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return Status(StatusCode::kInvalidArgument, "node document: not a JSON object");
  CatalogLimits lim;
  lim.max_services_per_node = SIZE_MAX;  // stored documents were checked when written
  Node n;
  if (Status s = ReadName(j, "Node", "", &n.name); !s.ok()) return s;
  if (Status s = ReadString(j, "ID", "", &n.id); !s.ok()) return s;
  if (Status s = ReadString(j, "Address", "", &n.address); !s.ok()) return s;
  if (Status s = ReadString(j, "Datacenter", "", &n.datacenter); !s.ok()) return s;
  if (Status s = ReadString(j, "Zone", "", &n.zone); !s.ok()) return s;
  if (Status s = ReadStringMap(j, "Meta", "", lim, &n.meta); !s.ok()) return s;
  if (Status s = ReadStringMap(j, "TaggedAddresses", "", lim, &n.tagged_addresses); !s.ok())
    return s;
  if (auto it = j.find("Services"); it != j.end() && it->is_array()) {
    for (const auto& sj : *it) {
      ServiceInstance s;
      if (Status st = ParseService(sj, lim, &s); !st.ok()) return st;
      n.services[s.id] = std::move(s);
    }
  }
  if (auto it = j.find("Checks"); it != j.end() && it->is_array()) {
    for (const auto& cj : *it) {
      Check c;
      if (Status st = ParseCheck(cj, "Checks[].", &c); !st.ok()) return st;
      if (Status st = ReadString(cj, "ServiceName", "", &c.service_name); !st.ok()) return st;
      n.checks[c.id] = std::move(c);
    }
  }
  return n;
}

std::string InstanceHealth(const Node& n, const ServiceInstance& s) {
  int worst = 0;
  for (const auto& [id, c] : n.checks)
    if (c.service_id.empty() || c.service_id == s.id) worst = std::max(worst, Severity(c.status));
  return worst == 2 ? "critical" : worst == 1 ? "warning" : "passing";
}

json NodeJson(const Node& n) {
  return {{"ID", n.id},
          {"Node", n.name},
          {"Address", n.address},
          {"Datacenter", n.datacenter},
          {"TaggedAddresses", n.tagged_addresses},
          {"Meta", n.meta},
          {"CreateIndex", n.create_index},
          {"ModifyIndex", n.modify_index}};
}

json InstanceJson(const ServiceInstance& s) { return ServiceToJson(s); }

json CheckToJson(const Node& n, const Check& c) {
  json j = CheckStored(c);
  j["Node"] = n.name;
  j["ServiceTags"] = json::array();
  if (!c.service_id.empty()) {
    auto it = n.services.find(c.service_id);
    if (it != n.services.end()) j["ServiceTags"] = it->second.tags;
  }
  j["CreateIndex"] = n.create_index;
  j["ModifyIndex"] = n.modify_index;
  return j;
}

}  // namespace weft::mesh
