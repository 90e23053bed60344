// CatalogView: the in-memory index of node documents, the per-service
// indexes of blocking queries, and the Consul-shaped reads.
#include <algorithm>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "mesh/catalog.h"
#include "mesh/catalog_internal.h"

namespace weft::mesh {

using json = nlohmann::json;
using internal::ServiceToJson;

namespace {

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

}  // namespace

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
