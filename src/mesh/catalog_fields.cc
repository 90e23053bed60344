// Validation of catalog documents and registrations: typed field readers
// that name the field they refuse, and the parsers of a check, a sidecar
// proxy block and a service instance.
#include <arpa/inet.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <utility>

#include "mesh/catalog_internal.h"
#include "mesh/names.h"

namespace weft::mesh {
namespace internal {

using json = nlohmann::json;

Status Invalid(const std::string& field, const std::string& what) {
  return {StatusCode::kInvalidArgument, field + ": " + what};
}

Status ReadString(const json& obj, const char* key, const std::string& path, std::string* out,
                  size_t max_len) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return {};
  if (!it->is_string()) return Invalid(path + key, "expected a string");
  const auto& s = it->get_ref<const std::string&>();
  if (s.size() > max_len)
    return Invalid(path + key, "longer than " + std::to_string(max_len) + " bytes");
  *out = s;
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

namespace {

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

Status ReadStatus(const json& obj, const std::string& path, std::string* out) {
  if (Status s = ReadString(obj, "Status", path, out, 16); !s.ok()) return s;
  if (*out != "passing" && *out != "warning" && *out != "critical")
    return Invalid(path + "Status", "\"" + *out + "\": use passing, warning or critical");
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
  if (!p->local_service_address.empty() && !ValidHost(p->local_service_address))
    return Invalid(path + "LocalServiceAddress",
                   "\"" + p->local_service_address + "\": expected an IP address or a DNS name");
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
      if (!ValidIp(x.local_bind_address))
        return Invalid(up + "LocalBindAddress",
                       "\"" + x.local_bind_address + "\": expected an IP address to listen on");
      if (auto pub = u.find("LocalBindPublic"); pub != u.end() && !pub->is_null()) {
        if (!pub->is_boolean()) return Invalid(up + "LocalBindPublic", "expected true or false");
        x.local_bind_public = pub->get<bool>();
      }
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

}  // namespace

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
  if (!s->address.empty() && !ValidHost(s->address))
    return Invalid("Service.Address",
                   "\"" + s->address + "\": expected an IP address or a DNS name");
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

}  // namespace internal

bool ValidName(std::string_view s) { return IsIdentifier(s); }

bool ValidIp(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  const std::string a(s);
  unsigned char buf[16];
  return inet_pton(AF_INET, a.c_str(), buf) == 1 || inet_pton(AF_INET6, a.c_str(), buf) == 1;
}

bool IsLoopbackIp(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  const std::string a(s);
  unsigned char buf[16];
  if (inet_pton(AF_INET, a.c_str(), buf) == 1) return buf[0] == 127;
  if (inet_pton(AF_INET6, a.c_str(), buf) != 1) return false;
  static constexpr unsigned char kLoop6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::equal(buf, buf + 16, kLoop6) ||
         (std::equal(buf, buf + 12, kMapped) && buf[12] == 127);
}

bool ValidHost(std::string_view s) {
  if (ValidIp(s)) return true;
  if (s.empty() || s.size() > 253) return false;
  size_t label = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '.') {
      if (label == 0 || s[i - 1] == '-') return false;
      label = 0;
      continue;
    }
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || (c == '-' && label > 0);
    if (!ok || ++label > 63) return false;
  }
  return label > 0 && s.back() != '-';
}

}  // namespace weft::mesh
