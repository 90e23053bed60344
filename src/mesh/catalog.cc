#include "mesh/catalog.h"

#include <strings.h>

#include <algorithm>
#include <cstring>

#include "mesh/names.h"

namespace weft::mesh {
namespace {

using json = nlohmann::json;

Status Invalid(const std::string& field, const std::string& what) {
  return {StatusCode::kInvalidArgument, field + ": " + what};
}

// Typed field readers: absent fields leave *out alone; a wrong type is an
// error naming the field.
Status ReadString(const json& obj, const char* key, const std::string& path, std::string* out,
                  size_t max_len = 1024) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return {};
  if (!it->is_string()) return Invalid(path + key, "expected a string");
  const auto& s = it->get_ref<const std::string&>();
  if (s.size() > max_len)
    return Invalid(path + key, "longer than " + std::to_string(max_len) + " bytes");
  *out = s;
  return {};
}

Status ReadPort(const json& obj, const char* key, const std::string& path, uint32_t* out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return {};
  if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > 65535)
    return Invalid(path + key, "expected a port number 0-65535");
  *out = static_cast<uint32_t>(it->get<int64_t>());
  return {};
}

Status ReadUint(const json& obj, const char* key, const std::string& path, uint32_t* out,
                uint32_t max) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return {};
  if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > max)
    return Invalid(path + key, "expected an integer 0-" + std::to_string(max));
  *out = static_cast<uint32_t>(it->get<int64_t>());
  return {};
}

Status ReadStringMap(const json& obj, const char* key, const std::string& path,
                     const CatalogLimits& lim, std::map<std::string, std::string>* out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return {};
  if (!it->is_object()) return Invalid(path + key, "expected an object of strings");
  if (it->size() > lim.max_meta)
    return Invalid(path + key, "more than " + std::to_string(lim.max_meta) + " entries");
  out->clear();
  for (const auto& [k, v] : it->items()) {
    if (!v.is_string()) return Invalid(path + key + "." + k, "expected a string");
    if (k.empty() || k.size() > lim.max_meta_key)
      return Invalid(path + key + "." + k,
                     "keys are 1-" + std::to_string(lim.max_meta_key) + " bytes");
    if (v.get_ref<const std::string&>().size() > lim.max_meta_value)
      return Invalid(path + key + "." + k,
                     "values are at most " + std::to_string(lim.max_meta_value) + " bytes");
    (*out)[k] = v.get<std::string>();
  }
  return {};
}

Status ReadName(const json& obj, const char* key, const std::string& path, std::string* out) {
  if (Status s = ReadString(obj, key, path, out, 256); !s.ok()) return s;
  if (!out->empty() && !ValidName(*out))
    return Invalid(path + key, "\"" + *out + "\" is not a valid name: " + kIdentifierRule);
  return {};
}

Status ReadStatus(const json& obj, const std::string& path, std::string* out) {
  if (Status s = ReadString(obj, "Status", path, out, 16); !s.ok()) return s;
  if (*out != "passing" && *out != "warning" && *out != "critical")
    return Invalid(path + "Status", "\"" + *out + "\": use passing, warning or critical");
  return {};
}

Status ParseCheck(const json& j, const std::string& path, Check* c) {
  if (!j.is_object()) return Invalid(path.substr(0, path.size() - 1), "expected an object");
  if (Status s = ReadName(j, "CheckID", path, &c->id); !s.ok()) return s;
  if (Status s = ReadString(j, "Name", path, &c->name, 256); !s.ok()) return s;
  if (c->id.empty()) c->id = c->name;
  if (c->id.empty()) return Invalid(path + "CheckID", "a check needs a CheckID or a Name");
  if (!ValidName(c->id)) return Invalid(path + "CheckID", "\"" + c->id + "\" is not a valid id");
  if (c->name.empty()) c->name = c->id;
  if (Status s = ReadStatus(j, path, &c->status); !s.ok()) return s;
  if (Status s = ReadString(j, "Notes", path, &c->notes, 4096); !s.ok()) return s;
  if (Status s = ReadString(j, "Output", path, &c->output, 4096); !s.ok()) return s;
  if (Status s = ReadName(j, "ServiceID", path, &c->service_id); !s.ok()) return s;
  if (Status s = ReadString(j, "Type", path, &c->type, 64); !s.ok()) return s;
  return {};
}

Status ParseProxy(const json& j, const std::string& path, const CatalogLimits& lim,
                  SidecarProxy* p) {
  if (!j.is_object()) return Invalid(path.substr(0, path.size() - 1), "expected an object");
  if (Status s = ReadName(j, "DestinationServiceName", path, &p->destination_service_name); !s.ok())
    return s;
  if (Status s = ReadName(j, "DestinationServiceID", path, &p->destination_service_id); !s.ok())
    return s;
  if (Status s = ReadString(j, "LocalServiceAddress", path, &p->local_service_address, 256);
      !s.ok())
    return s;
  if (Status s = ReadPort(j, "LocalServicePort", path, &p->local_service_port); !s.ok()) return s;
  if (Status s = ReadString(j, "Mode", path, &p->mode, 32); !s.ok()) return s;
  if (p->mode == "direct") p->mode.clear();
  if (!p->mode.empty() && p->mode != "transparent")
    return Invalid(path + "Mode", "\"" + p->mode + "\": use direct or transparent");
  if (auto tp = j.find("TransparentProxy"); tp != j.end() && !tp->is_null()) {
    const std::string tpath = path + "TransparentProxy.";
    if (!tp->is_object()) return Invalid(tpath.substr(0, tpath.size() - 1), "expected an object");
    if (Status s = ReadPort(*tp, "OutboundListenerPort", tpath, &p->outbound_listener_port);
        !s.ok())
      return s;
    if (p->outbound_listener_port == 0) p->outbound_listener_port = 15001;
    if (auto m = tp->find("MeshDestinationsOnly"); m != tp->end() && !m->is_null()) {
      if (!m->is_boolean())
        return Invalid(tpath + "MeshDestinationsOnly", "expected true or false");
      p->mesh_destinations_only = m->get<bool>();
    }
  }
  auto it = j.find("Upstreams");
  if (it != j.end() && !it->is_null()) {
    if (!it->is_array()) return Invalid(path + "Upstreams", "expected a list");
    if (it->size() > lim.max_upstreams)
      return Invalid(path + "Upstreams", "more than " + std::to_string(lim.max_upstreams));
    p->upstreams.clear();
    std::set<uint32_t> ports;
    for (size_t i = 0; i < it->size(); ++i) {
      const json& u = (*it)[i];
      std::string up = path + "Upstreams[" + std::to_string(i) + "].";
      if (!u.is_object()) return Invalid(up.substr(0, up.size() - 1), "expected an object");
      Upstream x;
      if (Status s = ReadName(u, "DestinationName", up, &x.destination_name); !s.ok()) return s;
      if (x.destination_name.empty())
        return Invalid(up + "DestinationName", "required: the service this upstream calls");
      if (Status s = ReadName(u, "DestinationNamespace", up, &x.destination_namespace); !s.ok())
        return s;
      if (x.destination_namespace.empty()) x.destination_namespace = "default";
      if (Status s = ReadString(u, "LocalBindAddress", up, &x.local_bind_address, 256); !s.ok())
        return s;
      if (x.local_bind_address.empty()) x.local_bind_address = "127.0.0.1";
      if (Status s = ReadPort(u, "LocalBindPort", up, &x.local_bind_port); !s.ok()) return s;
      if (x.local_bind_port == 0)
        return Invalid(up + "LocalBindPort", "required: the local port the app calls");
      if (!ports.insert(x.local_bind_port).second)
        return Invalid(up + "LocalBindPort",
                       std::to_string(x.local_bind_port) + " is used by another upstream");
      p->upstreams.push_back(std::move(x));
    }
  }
  return {};
}

Status ParseService(const json& j, const CatalogLimits& lim, ServiceInstance* s) {
  const std::string path = "Service.";
  if (!j.is_object()) return Invalid("Service", "expected an object");
  if (Status st = ReadName(j, "Service", path, &s->service); !st.ok()) return st;
  if (s->service.empty()) return Invalid("Service.Service", "required: the service name");
  if (Status st = ReadName(j, "ID", path, &s->id); !st.ok()) return st;
  if (s->id.empty()) s->id = s->service;
  if (Status st = ReadName(j, "Namespace", path, &s->ns); !st.ok()) return st;
  if (s->ns.empty()) s->ns = "default";
  if (Status st = ReadString(j, "Kind", path, &s->kind, 32); !st.ok()) return st;
  if (!s->kind.empty() && s->kind != "connect-proxy")
    return Invalid("Service.Kind", "\"" + s->kind + "\": use \"\" (a workload) or connect-proxy");
  if (Status st = ReadString(j, "Address", path, &s->address, 256); !st.ok()) return st;
  if (Status st = ReadPort(j, "Port", path, &s->port); !st.ok()) return st;
  auto tags = j.find("Tags");
  if (tags != j.end() && !tags->is_null()) {
    if (!tags->is_array()) return Invalid("Service.Tags", "expected a list of strings");
    if (tags->size() > lim.max_tags)
      return Invalid("Service.Tags", "more than " + std::to_string(lim.max_tags) + " tags");
    s->tags.clear();
    for (const auto& t : *tags) {
      if (!t.is_string() || t.get_ref<const std::string&>().size() > 256)
        return Invalid("Service.Tags", "expected strings of at most 256 bytes");
      s->tags.push_back(t.get<std::string>());
    }
  }
  if (Status st = ReadStringMap(j, "Meta", path, lim, &s->meta); !st.ok()) return st;
  auto w = j.find("Weights");
  if (w != j.end() && !w->is_null()) {
    if (!w->is_object()) return Invalid("Service.Weights", "expected {Passing, Warning}");
    if (Status st = ReadUint(*w, "Passing", "Service.Weights.", &s->weight_passing, 65535);
        !st.ok())
      return st;
    if (Status st = ReadUint(*w, "Warning", "Service.Weights.", &s->weight_warning, 65535);
        !st.ok())
      return st;
  }
  auto loc = j.find("Locality");
  if (loc != j.end() && !loc->is_null()) {
    if (!loc->is_object()) return Invalid("Service.Locality", "expected {Region, Zone}");
    if (Status st = ReadString(*loc, "Zone", "Service.Locality.", &s->zone, 128); !st.ok())
      return st;
  }
  auto px = j.find("Proxy");
  if (px != j.end() && !px->is_null()) {
    SidecarProxy p;
    if (Status st = ParseProxy(*px, "Service.Proxy.", lim, &p); !st.ok()) return st;
    s->proxy = std::move(p);
  }
  if (s->kind == "connect-proxy") {
    if (!s->proxy || s->proxy->destination_service_name.empty())
      return Invalid("Service.Proxy.DestinationServiceName",
                     "required for a connect-proxy: the service this sidecar fronts");
    if (s->port == 0)
      return Invalid("Service.Port", "required for a connect-proxy: its inbound port");
  }
  return {};
}

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
    for (const auto& u : s.proxy->upstreams)
      ups.push_back({{"DestinationName", u.destination_name},
                     {"DestinationNamespace", u.destination_namespace},
                     {"LocalBindAddress", u.local_bind_address},
                     {"LocalBindPort", u.local_bind_port}});
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

int Severity(const std::string& status) {
  return status == "critical" ? 2 : status == "warning" ? 1 : 0;
}

// Node-level facts every instance's health and shape depend on.
bool SameNodeLevel(const Node& a, const Node& b) {
  if (a.address != b.address || a.meta != b.meta || a.tagged_addresses != b.tagged_addresses ||
      a.id != b.id || a.datacenter != b.datacenter || a.zone != b.zone)
    return false;
  auto a_it = a.checks.begin();
  auto b_it = b.checks.begin();
  // Node checks (no ServiceID) must match one for one.
  for (;;) {
    while (a_it != a.checks.end() && !a_it->second.service_id.empty()) ++a_it;
    while (b_it != b.checks.end() && !b_it->second.service_id.empty()) ++b_it;
    if (a_it == a.checks.end() || b_it == b.checks.end())
      return a_it == a.checks.end() && b_it == b.checks.end();
    if (a_it->first != b_it->first || !(a_it->second == b_it->second)) return false;
    ++a_it;
    ++b_it;
  }
}

// The checks of one instance are the same in both documents.
bool SameServiceChecks(const Node& a, const Node& b, const std::string& id) {
  std::vector<const Check*> x, y;
  for (const auto& [cid, c] : a.checks)
    if (c.service_id == id) x.push_back(&c);
  for (const auto& [cid, c] : b.checks)
    if (c.service_id == id) y.push_back(&c);
  if (x.size() != y.size()) return false;
  for (size_t i = 0; i < x.size(); ++i)
    if (!(*x[i] == *y[i])) return false;
  return true;
}

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

bool ValidName(std::string_view s) { return IsIdentifier(s); }

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

void CatalogView::Touch(const std::string& service, int64_t revision) {
  service_index_[service] = revision;
}

void CatalogView::Apply(const std::string& node_name, const std::string* text, int64_t revision,
                        int64_t create_revision) {
  std::optional<Node> parsed;
  if (text) {
    auto r = NodeFromJson(*text);
    // Unreadable documents count as absent (the writer validated them).
    if (r.ok()) parsed = std::move(r).value();
  }
  ApplyParsed(node_name, std::move(parsed), revision, create_revision);
}

void CatalogView::ApplyParsed(const std::string& node_name, std::optional<Node> parsed,
                              int64_t revision, int64_t create_revision) {
  const bool present = parsed.has_value();
  Node next = present ? std::move(*parsed) : Node{};
  auto old_it = nodes_.find(node_name);
  const Node* old = old_it == nodes_.end() ? nullptr : &old_it->second;
  if (!present && !old) return;
  nodes_index_ = revision;

  // Which services changed: compare fingerprints instance by instance.
  std::set<std::string> changed_names;
  bool service_set_changed = false;
  const bool node_level_same = old && present && SameNodeLevel(*old, next);
  if (old) {
    for (const auto& [id, s] : old->services) {
      auto nit = present ? next.services.find(id) : next.services.end();
      if (!present || nit == next.services.end()) {
        changed_names.insert(s.service);
        service_set_changed = true;
        by_service_[s.service].erase({node_name, id});
        if (by_service_[s.service].empty()) by_service_.erase(s.service);
      } else if (!node_level_same || !s.SameAs(nit->second) || !SameServiceChecks(*old, next, id)) {
        changed_names.insert(s.service);
        if (nit->second.service != s.service || nit->second.tags != s.tags) {
          changed_names.insert(nit->second.service);
          service_set_changed = true;
          by_service_[s.service].erase({node_name, id});
          if (by_service_[s.service].empty()) by_service_.erase(s.service);
        }
        nit->second.create_index = s.create_index;
        nit->second.modify_index = revision;
      } else {
        nit->second.create_index = s.create_index;
        nit->second.modify_index = s.modify_index;
      }
    }
  }
  if (present) {
    next.create_index = old ? old->create_index : create_revision;
    next.modify_index = revision;
    for (auto& [id, s] : next.services) {
      if (!old || !old->services.count(id)) {
        s.create_index = s.modify_index = revision;
        changed_names.insert(s.service);
        service_set_changed = true;
      }
      by_service_[s.service].insert({node_name, id});
    }
  }
  // Sidecar index: drop the old node's sidecars, add the new ones; a
  // sidecar's change counts as a change of the service it fronts.
  if (old) {
    for (const auto& [id, s] : old->services) {
      if (!s.proxy) continue;
      auto& set = proxies_by_dest_[s.proxy->destination_service_name];
      set.erase({node_name, id});
      if (set.empty()) proxies_by_dest_.erase(s.proxy->destination_service_name);
      if (changed_names.count(s.service)) changed_names.insert(s.proxy->destination_service_name);
    }
  }
  if (present) {
    for (const auto& [id, s] : next.services) {
      if (!s.proxy) continue;
      proxies_by_dest_[s.proxy->destination_service_name].insert({node_name, id});
      if (changed_names.count(s.service)) changed_names.insert(s.proxy->destination_service_name);
    }
  }
  changed_nodes_.insert(node_name);
  changed_services_.insert(changed_names.begin(), changed_names.end());
  for (const auto& n : changed_names) {
    // A name with no instances left reports the services index, so per-name
    // state stays bounded by the live services.
    if (by_service_.count(n)) {
      Touch(n, revision);
    } else {
      service_index_.erase(n);
    }
  }
  if (service_set_changed) services_index_ = revision;
  if (present) {
    nodes_[node_name] = std::move(next);
  } else {
    nodes_.erase(node_name);
  }
}

void CatalogView::Clear(int64_t revision) {
  // Everything that was there changed.
  for (const auto& [name, n] : nodes_) {
    changed_nodes_.insert(name);
    for (const auto& [id, s] : n.services) {
      changed_services_.insert(s.service);
      if (s.proxy) changed_services_.insert(s.proxy->destination_service_name);
    }
  }
  nodes_.clear();
  by_service_.clear();
  proxies_by_dest_.clear();
  service_index_.clear();
  services_index_ = nodes_index_ = revision;
}

const Node* CatalogView::FindNode(const std::string& name) const {
  auto it = nodes_.find(name);
  return it == nodes_.end() ? nullptr : &it->second;
}

int64_t CatalogView::service_index(const std::string& service) const {
  auto it = service_index_.find(service);
  return it == service_index_.end() ? services_index_ : it->second;
}

std::vector<CatalogView::InstanceRef> CatalogView::Resolve(
    const std::map<std::string, std::set<std::pair<std::string, std::string>>>& index,
    const std::string& service) const {
  std::vector<InstanceRef> out;
  auto it = index.find(service);
  if (it == index.end()) return out;
  for (const auto& [node, id] : it->second) {
    auto n = nodes_.find(node);
    if (n == nodes_.end()) continue;
    auto s = n->second.services.find(id);
    if (s == n->second.services.end()) continue;
    out.push_back({&n->second, &s->second});
  }
  return out;
}

std::vector<std::string> CatalogView::ServiceNames() const {
  std::vector<std::string> out;
  out.reserve(by_service_.size());
  for (const auto& [name, set] : by_service_)
    if (!set.empty()) out.push_back(name);
  return out;
}

std::vector<CatalogView::InstanceRef> CatalogView::Instances(const std::string& service) const {
  return Resolve(by_service_, service);
}

std::vector<CatalogView::InstanceRef> CatalogView::ProxiesFor(const std::string& service) const {
  return Resolve(proxies_by_dest_, service);
}

json CatalogView::CatalogServices() const {
  json out = json::object();
  for (const auto& [name, refs] : by_service_) {
    std::set<std::string> tags;
    for (const auto& r : Instances(name))
      for (const auto& t : r.instance->tags) tags.insert(t);
    out[name] = json(std::vector<std::string>(tags.begin(), tags.end()));
  }
  return out;
}

json CatalogView::CatalogNodes() const {
  json out = json::array();
  for (const auto& [name, n] : nodes_) out.push_back(NodeJson(n));
  return out;
}

json CatalogView::CatalogService(const std::string& name) const {
  json out = json::array();
  for (const auto& r : Instances(name)) {
    const Node& n = *r.node;
    const ServiceInstance& s = *r.instance;
    json j = {{"ID", n.id},
              {"Node", n.name},
              {"Address", n.address},
              {"Datacenter", n.datacenter},
              {"TaggedAddresses", n.tagged_addresses},
              {"NodeMeta", n.meta},
              {"ServiceKind", s.kind},
              {"ServiceID", s.id},
              {"ServiceName", s.service},
              {"ServiceNamespace", s.ns},
              {"ServiceTags", s.tags},
              {"ServiceAddress", s.address},
              {"ServicePort", s.port},
              {"ServiceMeta", s.meta},
              {"ServiceWeights", {{"Passing", s.weight_passing}, {"Warning", s.weight_warning}}},
              {"ServiceEnableTagOverride", false},
              {"ServiceLocality", s.zone.empty() ? json(nullptr) : json({{"Zone", s.zone}})},
              {"CreateIndex", s.create_index},
              {"ModifyIndex", s.modify_index}};
    if (s.proxy) j["ServiceProxy"] = ServiceToJson(s)["Proxy"];
    out.push_back(std::move(j));
  }
  return out;
}

json CatalogView::HealthService(const std::string& name, bool passing_only) const {
  json out = json::array();
  for (const auto& r : Instances(name)) {
    const Node& n = *r.node;
    const ServiceInstance& s = *r.instance;
    if (passing_only && InstanceHealth(n, s) != "passing") continue;
    json checks = json::array();
    for (const auto& [id, c] : n.checks)
      if (c.service_id.empty() || c.service_id == s.id) checks.push_back(CheckToJson(n, c));
    json svc = ServiceToJson(s);
    svc["CreateIndex"] = s.create_index;
    svc["ModifyIndex"] = s.modify_index;
    svc["EnableTagOverride"] = false;
    out.push_back({{"Node", NodeJson(n)}, {"Service", svc}, {"Checks", checks}});
  }
  return out;
}

}  // namespace weft::mesh
