// /v1/health: Consul's health reads (blocking), and /v1/weft/prometheus-sd,
// the healthy instances as Prometheus HTTP service discovery targets.
#include <algorithm>
#include <cctype>
#include <string>

#include "base/net.h"
#include "control/api.h"
#include "control/api_internal.h"

namespace weft::control {

using json = nlohmann::json;
using http::Request;
using http::Response;
using internal::StartsWith;

asio::awaitable<Response> Api::HealthRequest(Request& req, std::string_view rest) {
  const bool get = req.method == "GET" || req.method == "HEAD";
  if (!get) co_return Error(405, "use GET");
  if (StartsWith(rest, "service/")) {
    std::string name(rest.substr(8));
    const std::string* passing = req.Query("passing");
    const bool only = passing && *passing != "false" && *passing != "0";
    if (req.HasQuery("index")) {  // a blocking query
      const std::function<int64_t()> ix = [this, &name] { return catalog_.service_index(name); };
      co_await Block(req, ix);
    }
    const std::string* tag = req.Query("tag");
    const int64_t index = catalog_.service_index(name);
    co_return ReplyCached("h|" + name + (only ? "|p" : "") + (tag ? "|t|" + *tag : ""), index, [&] {
      json out = catalog_.HealthService(name, only);
      if (tag) {
        json f = json::array();
        for (auto& e : out) {
          const auto& tags = e["Service"]["Tags"];
          if (std::find(tags.begin(), tags.end(), *tag) != tags.end()) f.push_back(std::move(e));
        }
        out = std::move(f);
      }
      return out.dump();
    });
  }
  if (StartsWith(rest, "checks/")) {
    std::string name(rest.substr(7));
    if (req.HasQuery("index")) {  // a blocking query
      const std::function<int64_t()> ix = [this, &name] { return catalog_.service_index(name); };
      co_await Block(req, ix);
    }
    json out = json::array();
    for (const auto& r : catalog_.Instances(name))
      for (const auto& [id, c] : r.node->checks)
        if (c.service_id == r.instance->id) out.push_back(mesh::CheckToJson(*r.node, c));
    co_return Reply(out, catalog_.service_index(name));
  }
  if (StartsWith(rest, "node/")) {
    std::string name(rest.substr(5));
    if (req.HasQuery("index")) {  // a blocking query
      const std::function<int64_t()> ix = [this] { return catalog_.nodes_index(); };
      co_await Block(req, ix);
    }
    json out = json::array();
    if (const mesh::Node* n = catalog_.FindNode(name))
      for (const auto& [id, c] : n->checks) out.push_back(mesh::CheckToJson(*n, c));
    co_return Reply(out, catalog_.nodes_index());
  }
  if (StartsWith(rest, "state/")) {
    std::string state(rest.substr(6));
    if (state != "any" && state != "passing" && state != "warning" && state != "critical")
      co_return Error(400, "health state \"" + state + "\": use any, passing, warning or critical");
    if (req.HasQuery("index")) {  // a blocking query
      const std::function<int64_t()> ix = [this] { return catalog_.nodes_index(); };
      co_await Block(req, ix);
    }
    json out = json::array();
    for (const auto& [name, n] : catalog_.nodes())
      for (const auto& [id, c] : n.checks)
        if (state == "any" || c.status == state) out.push_back(mesh::CheckToJson(n, c));
    // A check is the node's, and also its service's when it has one.
    co_return FilteredReply(std::move(out), catalog_.nodes_index(), [&](const json& c) {
      const std::string svc = c.value("ServiceName", "");
      return MayRead(req, acl::Resource::kNode, c.value("Node", "")) &&
             (svc.empty() || MayRead(req, acl::Resource::kService, svc));
    });
  }
  co_return Error(404, "unknown health endpoint " + req.path);
}

Response Api::PrometheusSd(const Request& req) {
  // Prometheus HTTP service discovery (http_sd_configs): one target group
  // per healthy instance, with __meta_weft_* labels for relabelling.
  const std::string* only = req.Query("service");
  json out = json::array();
  auto label_name = [](const std::string& k) {
    std::string n;
    for (char c : k) n += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    return n;
  };
  for (const auto& [name, n] : catalog_.nodes()) {
    for (const auto& [id, s] : n.services) {
      if (s.kind == "connect-proxy" || (only && s.service != *only) || s.port == 0) continue;
      const std::string health = mesh::InstanceHealth(n, s);
      if (health == "critical") continue;
      const std::string& addr = s.address.empty() ? n.address : s.address;
      std::string tags = ",";
      for (const auto& t : s.tags) tags += t + ",";
      json labels = {{"__meta_weft_service", s.service},
                     {"__meta_weft_service_id", s.id},
                     {"__meta_weft_namespace", s.ns},
                     {"__meta_weft_node", n.name},
                     {"__meta_weft_health", health},
                     {"__meta_weft_tags", tags},
                     {"__meta_weft_zone", s.zone.empty() ? n.zone : s.zone}};
      for (const auto& [k, v] : s.meta) labels["__meta_weft_service_metadata_" + label_name(k)] = v;
      const std::string target = JoinHostPort(addr, s.port);
      out.push_back({{"targets", json::array({target})}, {"labels", labels}});
    }
  }
  return FilteredReply(std::move(out), catalog_.services_index(), [&](const json& group) {
    return MayRead(req, acl::Resource::kService, group["labels"].value("__meta_weft_service", ""));
  });
}

}  // namespace weft::control
