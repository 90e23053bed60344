#include "agent/local.h"

#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string_view>

#include "base/file.h"
#include "base/log.h"
#include "base/strings.h"
#include "control/acl.h"

namespace weft::agent {
namespace {

using json = nlohmann::json;

// An HTTP method: a token (RFC 9110 5.6.2), so it cannot end the request
// line early (CR/LF, spaces) when the check sends it.
bool IsMethod(std::string_view m) {
  if (m.empty() || m.size() > 32) return false;
  for (unsigned char c : m) {
    if (std::isalnum(c) == 0 &&
        std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) == std::string_view::npos)
      return false;
  }
  return true;
}

// HOST:PORT with a name or IP host ([v6]:port) and nothing else: no scheme,
// no unix: socket, no spaces or control bytes. `allow_path` lets a path
// ("/service" of a gRPC check, an HTTP check's path) follow; an HTTP
// check's URL may leave the port out.
bool IsHostPort(std::string_view s, bool allow_path, bool need_port = true) {
  if (allow_path) s = s.substr(0, s.find('/'));
  size_t colon = s.rfind(':');
  std::string with_port;
  if (!need_port && (colon == std::string_view::npos || s.back() == ']')) {
    with_port = std::string(s) + ":80";
    s = with_port;
    colon = s.rfind(':');
  }
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == s.size()) return false;
  std::string_view host = s.substr(0, colon), port = s.substr(colon + 1);
  if (host.front() == '[') {
    if (host.back() != ']') return false;
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty() || host.size() > 253 || port.size() > 5) return false;
  for (unsigned char c : port)
    if (std::isdigit(c) == 0) return false;
  if (std::stoi(std::string(port)) > 65535) return false;
  return mesh::ValidHost(host);
}

// An http:// URL the check may send as is: printable ASCII, no spaces.
bool IsCleanUrl(std::string_view u) {
  for (unsigned char c : u)
    if (c <= 0x20 || c >= 0x7f) return false;
  return true;
}

Status Invalid(const std::string& field, const std::string& what) {
  return {StatusCode::kInvalidArgument, field + ": " + what};
}

Status Duration(const json& j, const char* key, const std::string& path, int64_t* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return {};
  std::optional<int64_t> ms;
  if (it->is_string()) ms = ParseDurationMs(it->get<std::string>());
  if (it->is_number_integer()) ms = it->get<int64_t>() / 1000000;  // Go durations: nanoseconds
  if (!ms || *ms < 0) return Invalid(path + key, "expected a duration such as \"10s\"");
  *out = *ms;
  return {};
}

json DefinitionToJson(const CheckDefinition& d) {
  json j = {{"CheckID", d.id},
            {"ServiceID", d.service_id},
            {"IntervalMs", d.interval_ms},
            {"TimeoutMs", d.timeout_ms},
            {"SuccessBeforePassing", d.success_before_passing},
            {"FailuresBeforeCritical", d.failures_before_critical}};
  if (!d.http.empty()) j["HTTP"] = d.http, j["Method"] = d.method;
  if (!d.tcp.empty()) j["TCP"] = d.tcp;
  if (!d.grpc.empty()) j["GRPC"] = d.grpc;
  if (!d.ttl.empty()) j["TTL"] = d.ttl;
  return j;
}

CheckDefinition DefinitionFromJson(const json& j) {
  CheckDefinition d;
  d.id = j.value("CheckID", "");
  d.service_id = j.value("ServiceID", "");
  d.http = j.value("HTTP", "");
  d.method = j.value("Method", "GET");
  d.tcp = j.value("TCP", "");
  d.grpc = j.value("GRPC", "");
  d.ttl = j.value("TTL", "");
  d.interval_ms = j.value("IntervalMs", int64_t{10000});
  d.timeout_ms = j.value("TimeoutMs", int64_t{5000});
  d.success_before_passing = j.value("SuccessBeforePassing", 0u);
  d.failures_before_critical = j.value("FailuresBeforeCritical", 0u);
  return d;
}

}  // namespace

LocalState::LocalState(std::string node, std::string address, std::string zone, std::string path)
    : path_(std::move(path)) {
  node_.name = std::move(node);
  node_.address = std::move(address);
  node_.zone = std::move(zone);
}

Status LocalState::Load() {
  std::ifstream in(path_);
  if (!in) return {};
  loaded_file_ = true;
  std::stringstream ss;
  ss << in.rdbuf();
  json j = json::parse(ss.str(), nullptr, false);
  if (!j.is_object()) return {StatusCode::kInvalidArgument, path_ + ": not a JSON object"};
  // A damaged or hand-edited file: a field of the wrong type is refused
  // with a reason, like any other, not thrown out of the agent's start.
  try {
    return LoadFrom(j);
  } catch (const json::exception& e) {
    return {StatusCode::kInvalidArgument, path_ + ": " + e.what()};
  }
}

Status LocalState::LoadFrom(const json& j) {
  auto n = mesh::NodeFromJson(j.value("node", json::object()).dump());
  if (!n.ok()) return {StatusCode::kInvalidArgument, path_ + ": " + n.status().message()};
  // The flags decide the node's name and address; services and checks come from disk.
  mesh::Node loaded = std::move(n).value();
  node_.services = std::move(loaded.services);
  node_.checks = std::move(loaded.checks);
  for (const auto& d : j.value("checks", json::array())) {
    CheckDefinition def = DefinitionFromJson(d);
    if (!def.id.empty()) defs_[def.id] = def;
  }
  if (auto t = j.find("proxy_tokens"); t != j.end() && t->is_object()) {
    for (const auto& [sid, v] : t->items()) {
      // Entries that do not parse are dropped: the proxy re-registers.
      if (!v.is_object() || !node_.services.count(sid)) continue;
      auto svc = v.find("service"), hash = v.find("sha256");
      if (svc == v.end() || hash == v.end() || !svc->is_string() || !hash->is_string()) continue;
      ProxyToken pt{svc->get<std::string>(), hash->get<std::string>()};
      if (!pt.service.empty() && pt.sha256.size() == 64) proxy_tokens_[sid] = std::move(pt);
    }
  }
  LOG_INFO("restored {} local services and {} checks from {}", node_.services.size(),
           node_.checks.size(), path_);
  return {};
}

Result<size_t> LocalState::Adopt(const std::string& doc) {
  auto n = mesh::NodeFromJson(doc);
  if (!n.ok()) return n.status();
  size_t adopted = 0;
  for (auto& [id, svc] : n->services)
    if (node_.services.emplace(id, svc).second) ++adopted;
  for (auto& [id, c] : n->checks) node_.checks.emplace(id, c);
  if (Status s = Save(); !s.ok()) return s;
  return adopted;
}

Status LocalState::Save() const {
  json checks = json::array();
  for (const auto& [id, d] : defs_) checks.push_back(DefinitionToJson(d));
  json tokens = json::object();
  for (const auto& [sid, t] : proxy_tokens_)
    tokens[sid] = {{"service", t.service}, {"sha256", t.sha256}};
  const std::string text = json{
      {"node", json::parse(mesh::NodeToJson(node_))},
      {"checks", checks},
      {"proxy_tokens", tokens}}.dump(1);
  if (Status s = WriteFileAtomic(path_, text); !s.ok()) return s;
  return {};
}

Status LocalState::Register(const json& in, std::string* id) {
  if (!in.is_object()) return Invalid("body", "expected a JSON object");
  json body = in;
  mesh::CanonicalizeKeys(&body);
  const std::string name = body.value("Name", "");
  if (name.empty()) return Invalid("Name", "required: the service name");
  json svc = {{"Service", name}};
  for (const char* k : {"ID", "Tags", "Address", "Port", "Meta", "Weights", "Kind", "Proxy",
                        "Namespace", "Locality"}) {
    auto it = body.find(k);
    if (it != body.end() && !it->is_null()) svc[k] = *it;
  }
  if (!svc.contains("ID")) svc["ID"] = name;
  if (!svc.contains("Locality") && !node_.zone.empty()) svc["Locality"] = {{"Zone", node_.zone}};
  if (!svc["ID"].is_string()) return Invalid("ID", "expected a string");
  const std::string sid = svc["ID"].get<std::string>();
  // Token (Consul's service token): what this service's proxy presents on
  // the agent's socket when it does not run as root or as the agent's user.
  std::string token;
  if (auto it = body.find("Token"); it != body.end() && !it->is_null()) {
    if (!it->is_string()) return Invalid("Token", "expected a string");
    token = it->get<std::string>();
    if (token.size() < 16 || token.size() > 512)
      return Invalid("Token", "use 16 to 512 characters (a random secret, e.g. a UUID)");
  }

  // Checks defined with the service (Check, or Checks).
  std::vector<std::pair<json, std::string>> defs;
  if (auto it = body.find("Check"); it != body.end() && !it->is_null())
    defs.emplace_back(*it, "Check.");
  if (auto it = body.find("Checks"); it != body.end() && !it->is_null()) {
    if (!it->is_array()) return Invalid("Checks", "expected a list");
    for (size_t i = 0; i < it->size(); ++i)
      defs.emplace_back((*it)[i], "Checks[" + std::to_string(i) + "].");
  }
  json catalog_checks = json::array();
  std::map<std::string, CheckDefinition> new_defs;
  for (size_t i = 0; i < defs.size(); ++i) {
    const json& c = defs[i].first;
    const std::string& path = defs[i].second;
    if (!c.is_object()) return Invalid(path.substr(0, path.size() - 1), "expected an object");
    CheckDefinition d;
    d.service_id = sid;
    d.id = c.value("CheckID", defs.size() == 1 ? "service:" + sid
                                               : "service:" + sid + ":" + std::to_string(i + 1));
    d.http = c.value("HTTP", "");
    d.method = c.value("Method", "GET");
    d.tcp = c.value("TCP", "");
    d.grpc = c.value("GRPC", "");
    d.ttl = c.value("TTL", "");
    const int kinds = !d.http.empty() + !d.tcp.empty() + !d.grpc.empty() + !d.ttl.empty();
    if (kinds != 1)
      return Invalid(path + "HTTP", "a check needs exactly one of HTTP, TCP, GRPC or TTL");
    if (!d.http.empty() && d.http.rfind("http://", 0) != 0)
      return Invalid(path + "HTTP", "\"" + d.http + "\": use an http:// URL");
    if (!d.http.empty() && (!IsCleanUrl(d.http) || !IsHostPort(d.http.substr(7), true, false)))
      return Invalid(path + "HTTP",
                     "expected http://HOST:PORT/PATH with no spaces or control characters");
    if (!IsMethod(d.method))
      return Invalid(path + "Method", "expected an HTTP method (a token such as GET or HEAD)");
    if (!d.tcp.empty() && !IsHostPort(d.tcp, false))
      return Invalid(path + "TCP", "\"" + d.tcp + "\": expected HOST:PORT");
    if (!d.grpc.empty() && !IsHostPort(d.grpc, true))
      return Invalid(path + "GRPC", "\"" + d.grpc + "\": expected HOST:PORT or HOST:PORT/SERVICE");
    if (Status s = Duration(c, "Interval", path, &d.interval_ms); !s.ok()) return s;
    if (Status s = Duration(c, "Timeout", path, &d.timeout_ms); !s.ok()) return s;
    if (d.ttl.empty() && c.find("Interval") == c.end())
      return Invalid(path + "Interval", "required for HTTP, TCP and GRPC checks (e.g. \"10s\")");
    if (d.interval_ms < 100) return Invalid(path + "Interval", "at least 100ms");
    if (d.timeout_ms <= 0 || d.timeout_ms > d.interval_ms)
      d.timeout_ms = std::min<int64_t>(d.interval_ms, 10000);
    d.success_before_passing = c.value("SuccessBeforePassing", 0u);
    d.failures_before_critical = c.value("FailuresBeforeCritical", 0u);
    json cc = {{"CheckID", d.id},
               {"Name", c.value("Name", "Service '" + name + "' check")},
               {"Status", c.value("Status", "critical")},
               {"Notes", c.value("Notes", "")},
               {"ServiceID", sid},
               {"Type", !d.http.empty()   ? "http"
                        : !d.tcp.empty()  ? "tcp"
                        : !d.grpc.empty() ? "grpc"
                                          : "ttl"}};
    catalog_checks.push_back(std::move(cc));
    new_defs[d.id] = std::move(d);
  }

  // Validate and apply on a copy: nothing changes unless all of it is good.
  mesh::Node next = node_;
  // Re-registering replaces the service's checks.
  std::erase_if(next.checks, [&](const auto& kv) { return kv.second.service_id == sid; });
  json reg = {{"Node", node_.name},
              {"Address", node_.address},
              {"Service", svc},
              {"Checks", catalog_checks}};
  if (!node_.zone.empty()) reg["Zone"] = node_.zone;
  if (Status s = mesh::ApplyRegistration(reg, mesh::CatalogLimits{}, &next); !s.ok()) return s;
  node_ = std::move(next);
  std::erase_if(defs_, [&](const auto& kv) { return kv.second.service_id == sid; });
  defs_.insert(new_defs.begin(), new_defs.end());
  proxy_tokens_.erase(sid);
  if (!token.empty()) {
    const mesh::ServiceInstance& added = node_.services.at(sid);
    // A sidecar's token is for the service it fronts: that is the name its
    // proxy subscribes as.
    const bool sidecar = added.kind == "connect-proxy" && added.proxy &&
                         !added.proxy->destination_service_name.empty();
    const std::string fronted = sidecar ? added.proxy->destination_service_name : added.service;
    proxy_tokens_[sid] = {fronted, control::acl::HashSecret(token)};
  }
  *id = sid;
  return Save();
}

bool LocalState::ProxyTokenAllows(const std::string& service, std::string_view token) const {
  const std::string h = control::acl::HashSecret(token);
  for (const auto& [sid, t] : proxy_tokens_)
    if (t.service == service && t.sha256 == h) return true;
  return false;
}

Status LocalState::Deregister(const std::string& id) {
  if (!node_.services.erase(id))
    return {StatusCode::kNotFound, "service " + id + " is not registered on this agent"};
  proxy_tokens_.erase(id);
  std::erase_if(node_.checks, [&](const auto& kv) { return kv.second.service_id == id; });
  std::erase_if(defs_, [&](const auto& kv) { return kv.second.service_id == id; });
  return Save();
}

bool LocalState::SetCheckStatus(const std::string& check_id, const std::string& status,
                                const std::string& output) {
  auto it = node_.checks.find(check_id);
  if (it == node_.checks.end()) return false;
  if (it->second.status == status && it->second.output == output) return false;
  const bool status_changed = it->second.status != status;
  it->second.status = status;
  it->second.output = output.substr(0, 4096);
  if (status_changed) {
    if (Status s = Save(); !s.ok()) LOG_ERROR("agent: {}", s.message());
  }
  return status_changed;
}

json LocalState::AgentServices() const {
  json out = json::object();
  for (const auto& [id, s] : node_.services) {
    json j = mesh::InstanceJson(s);
    j["Datacenter"] = node_.datacenter;
    j["EnableTagOverride"] = false;
    out[id] = std::move(j);
  }
  return out;
}

json LocalState::AgentChecks() const {
  json out = json::object();
  for (const auto& [id, c] : node_.checks) out[id] = mesh::CheckToJson(node_, c);
  return out;
}

}  // namespace weft::agent
