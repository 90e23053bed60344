// /v1/catalog: Consul's catalog reads (blocking) and the writes that
// register and deregister nodes, instances and checks, each a
// compare-and-swap of one node document.
#include <optional>
#include <set>
#include <utility>

#include "control/api.h"
#include "control/api_internal.h"

namespace weft::control {

using json = nlohmann::json;
using http::Request;
using http::Response;
using internal::HttpStatusFor;
using internal::kMaxCasAttempts;
using internal::NodeKey;
using internal::StartsWith;

asio::awaitable<Response> Api::CatalogRequest(Request& req, std::string_view rest) {
  const bool get = req.method == "GET" || req.method == "HEAD";
  const bool put = req.method == "PUT" || req.method == "POST";
  if (rest == "register") {
    if (!put) co_return Error(405, "use PUT /v1/catalog/register");
    if (std::string why = role_->RefuseWrite(req); !why.empty()) co_return Error(405, why);
    co_return co_await CatalogRegister(req);
  }
  if (rest == "deregister") {
    if (!put) co_return Error(405, "use PUT /v1/catalog/deregister");
    if (std::string why = role_->RefuseWrite(req); !why.empty()) co_return Error(405, why);
    co_return co_await CatalogDeregister(req);
  }
  if (!get) co_return Error(405, "use GET");
  if (rest == "services") {
    if (req.HasQuery("index")) {  // a blocking query
      const std::function<int64_t()> ix = [this] { return catalog_.services_index(); };
      co_await Block(req, ix);
    }
    // {"name": [tags]}: each key is a service name.
    co_return FilteredReply(catalog_.CatalogServices(), catalog_.services_index(),
                            [&](const json& name) {
                              return MayRead(req, acl::Resource::kService, name.get<std::string>());
                            });
  }
  if (rest == "nodes") {
    if (req.HasQuery("index")) {  // a blocking query
      const std::function<int64_t()> ix = [this] { return catalog_.nodes_index(); };
      co_await Block(req, ix);
    }
    co_return FilteredReply(catalog_.CatalogNodes(), catalog_.nodes_index(), [&](const json& n) {
      return MayRead(req, acl::Resource::kNode, n.value("Node", ""));
    });
  }
  if (StartsWith(rest, "service/")) {
    std::string name(rest.substr(8));
    if (req.HasQuery("index")) {  // a blocking query
      const std::function<int64_t()> ix = [this, &name] { return catalog_.service_index(name); };
      co_await Block(req, ix);
    }
    const std::string* tag = req.Query("tag");
    const int64_t index = catalog_.service_index(name);
    co_return ReplyCached("c|" + name + (tag ? "|" + *tag : ""), index, [&] {
      json out = catalog_.CatalogService(name);
      if (tag) {
        json f = json::array();
        for (auto& e : out)
          for (const auto& t : e["ServiceTags"])
            if (t == *tag) {
              f.push_back(e);
              break;
            }
        out = std::move(f);
      }
      return out.dump();
    });
  }
  if (StartsWith(rest, "node/")) {
    std::string name(rest.substr(5));
    if (req.HasQuery("index")) {  // a blocking query
      const std::function<int64_t()> ix = [this] { return catalog_.nodes_index(); };
      co_await Block(req, ix);
    }
    const mesh::Node* n = catalog_.FindNode(name);
    if (!n) co_return Reply(nullptr, catalog_.nodes_index());
    json services = json::object();
    for (const auto& [id, s] : n->services) services[id] = mesh::InstanceJson(s);
    co_return Reply({{"Node", mesh::NodeJson(*n)}, {"Services", services}}, n->modify_index);
  }
  co_return Error(404, "unknown catalog endpoint " + req.path);
}

// A catalog write's body: a JSON object (field names as Consul spells them,
// in any case) naming a valid node. Returns "" or what is wrong.
static std::string ParseCatalogBody(const std::string& text, json* body, std::string* node_name) {
  *body = json::parse(text, nullptr, false);
  if (body->is_discarded() || !body->is_object()) return "the body must be a JSON object";
  mesh::CanonicalizeKeys(body);
  if (auto it = body->find("Node"); it != body->end() && it->is_string()) *node_name = *it;
  if (node_name->empty() || !mesh::ValidName(*node_name))
    return "Node: required, a valid node name";
  return "";
}

// Every service a catalog write touches, by name, for the ACL check: the
// service registered, the one whose instance ID it reuses, the one a
// sidecar fronts, and those whose checks it sets or removes (as stored on
// `node` when the body only names an ID).
static std::set<std::string> ServicesTouched(const json& body, const mesh::Node* node) {
  std::set<std::string> out;
  auto str = [](const json& j, const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  auto stored_service = [&](const std::string& id) {
    if (node) {
      if (auto it = node->services.find(id); it != node->services.end()) return it->second.service;
    }
    return id;  // not there: the ID is all there is to check
  };
  std::string body_id, body_name;
  if (auto svc = body.find("Service"); svc != body.end() && svc->is_object()) {
    body_name = str(*svc, "Service");
    body_id = str(*svc, "ID");
    if (body_id.empty()) body_id = body_name;
    out.insert(body_name);
    if (node && node->services.count(body_id)) out.insert(stored_service(body_id));
    if (auto proxy = svc->find("Proxy"); proxy != svc->end() && proxy->is_object())
      out.insert(str(*proxy, "DestinationServiceName"));
  }
  auto check_service = [&](const json& c) {
    if (!c.is_object()) return;
    const std::string sid = str(c, "ServiceID");
    if (!sid.empty()) out.insert(sid == body_id ? body_name : stored_service(sid));
  };
  if (auto c = body.find("Check"); c != body.end()) check_service(*c);
  if (auto cs = body.find("Checks"); cs != body.end() && cs->is_array())
    for (const auto& c : *cs) check_service(c);
  if (const std::string sid = str(body, "ServiceID"); !sid.empty()) out.insert(stored_service(sid));
  if (const std::string cid = str(body, "CheckID"); !cid.empty() && node) {
    if (auto it = node->checks.find(cid);
        it != node->checks.end() && !it->second.service_id.empty())
      out.insert(stored_service(it->second.service_id));
  }
  out.erase("");
  return out;
}

std::string Api::CatalogWriteDenied(const Request& req, const json& body,
                                    const std::string& node) const {
  if (std::string why = Deny(req, acl::Resource::kNode, node, acl::Access::kWrite); !why.empty())
    return why;
  // The services the IDs name on this node, as this replica sees them.
  for (const std::string& name : ServicesTouched(body, catalog_.FindNode(node))) {
    if (std::string why = Deny(req, acl::Resource::kService, name, acl::Access::kWrite);
        !why.empty())
      return why;
  }
  return "";
}

asio::awaitable<Response> Api::CatalogRegister(Request& req) {
  json body;
  std::string node_name;
  if (std::string err = ParseCatalogBody(req.body, &body, &node_name); !err.empty())
    co_return Error(400, "catalog register: " + err);
  if (std::string why = CatalogWriteDenied(req, body, node_name); !why.empty())
    co_return Denied(req, why);
  const std::string key = NodeKey(node_name);
  const mesh::CatalogLimits limits = opts_.limits;
  store::Store* st = store_.get();
  uint64_t conflicts = 0;
  // Read-modify-write of the node document with compare-and-swap, so
  // concurrent registrations on one node (from any replica) never lose one.
  // The first attempt starts from this replica's view (no read round trip);
  // if the view was behind, the swap fails and the next attempts read.
  std::optional<mesh::Node> cached;
  if (const mesh::Node* n = catalog_.FindNode(node_name)) cached = *n;
  const bool known_absent = !cached && catalog_.FindNode(node_name) == nullptr;
  if (known_absent && catalog_.nodes().size() >= limits.max_nodes)
    co_return Error(400, "catalog register: at most " + std::to_string(limits.max_nodes) +
                             " nodes (node \"" + node_name + "\" would be one more)");
  const auto work = [st, key, body, limits, &conflicts, &cached,
                     known_absent]() -> Result<int64_t> {
    for (int attempt = 0; attempt < kMaxCasAttempts; ++attempt) {
      mesh::Node node;
      int64_t expected = 0;
      if (attempt == 0 && (cached || known_absent)) {
        if (cached) {
          node = *cached;
          expected = cached->modify_index;
        }
        if (Status s = mesh::ApplyRegistration(body, limits, &node); !s.ok()) return s;
        auto w = st->PutIf(key, mesh::NodeToJson(node), expected);
        if (w.ok() || w.status().code() != StatusCode::kFailedPrecondition) return w;
        ++conflicts;
        continue;
      }
      auto cur = st->Get(key);
      if (cur.ok()) {
        auto parsed = mesh::NodeFromJson(cur->value);
        if (!parsed.ok()) return parsed.status();
        node = std::move(parsed).value();
        expected = cur->mod_revision;
      } else if (cur.status().code() != StatusCode::kNotFound) {
        return cur.status();
      }
      if (Status s = mesh::ApplyRegistration(body, limits, &node); !s.ok()) return s;
      auto w = st->PutIf(key, mesh::NodeToJson(node), expected);
      if (w.ok() || w.status().code() != StatusCode::kFailedPrecondition) return w;
      ++conflicts;
    }
    return Status(StatusCode::kUnavailable, "catalog register: too many concurrent writes to node");
  };
  Result<int64_t> r = co_await OffLoop(work);
  counters_.write_conflicts += conflicts;
  if (!r.ok())
    co_return Error(HttpStatusFor(r.status()), "catalog register: " + r.status().message());
  ++counters_.writes;
  co_await WaitApplied(r.value());
  co_return Reply(true, r.value());
}

asio::awaitable<Response> Api::CatalogDeregister(Request& req) {
  json body;
  std::string node_name;
  if (std::string err = ParseCatalogBody(req.body, &body, &node_name); !err.empty())
    co_return Error(400, "catalog deregister: " + err);
  if (std::string why = CatalogWriteDenied(req, body, node_name); !why.empty())
    co_return Denied(req, why);
  const std::string key = NodeKey(node_name);
  store::Store* st = store_.get();
  uint64_t conflicts = 0;
  const auto work = [st, key, body, &conflicts]() -> Result<int64_t> {
    for (int attempt = 0; attempt < kMaxCasAttempts; ++attempt) {
      auto cur = st->Get(key);
      if (!cur.ok()) return cur.status();
      auto parsed = mesh::NodeFromJson(cur->value);
      if (!parsed.ok()) return parsed.status();
      mesh::Node node = std::move(parsed).value();
      bool remove_node = false;
      if (Status s = mesh::ApplyDeregistration(body, &node, &remove_node); !s.ok()) return s;
      // Deleted only as it was read: a registration that came in between
      // makes this attempt start over, and survives.
      if (remove_node) {
        auto w = st->DeleteIf(key, cur->mod_revision);
        if (w.ok() || w.status().code() != StatusCode::kFailedPrecondition) return w;
        ++conflicts;
        continue;
      }
      auto w = st->PutIf(key, mesh::NodeToJson(node), cur->mod_revision);
      if (w.ok() || w.status().code() != StatusCode::kFailedPrecondition) return w;
      ++conflicts;
    }
    return Status(StatusCode::kUnavailable,
                  "catalog deregister: too many concurrent writes to node");
  };
  Result<int64_t> r = co_await OffLoop(work);
  counters_.write_conflicts += conflicts;
  if (!r.ok()) {
    if (r.status().code() == StatusCode::kNotFound)
      co_return Error(404, "catalog deregister: " + r.status().message());
    co_return Error(HttpStatusFor(r.status()), "catalog deregister: " + r.status().message());
  }
  ++counters_.writes;
  co_await WaitApplied(r.value());
  co_return Reply(true, r.value());
}

}  // namespace weft::control
