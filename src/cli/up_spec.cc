// Parsing `weft up`'s LocalMesh document (see up_spec.h).
#include "cli/up_spec.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <set>

#include "base/net.h"
#include "base/yaml_fields.h"
#include "mesh/names.h"

namespace weft::cli {

// A LocalMesh file and the manifests beside it.
constexpr size_t kMaxUpDocuments = 1000;

uint16_t PortOf(const std::string& host_port) {
  std::string host, why;
  uint16_t port = 0;
  return SplitHostPort(host_port, &host, &port, &why) ? port : 0;
}

bool ParseUpFile(const std::string& text, UpSpec* spec, std::string* err) {
  std::vector<YAML::Node> docs;
  try {
    docs = yaml::LoadAll(text, kMaxUpDocuments);
  } catch (const YAML::Exception& e) {
    *err = std::string("not YAML: ") + e.what();
    return false;
  }
  std::string manifests;
  bool found = false;
  try {
    for (const auto& d : docs) {
      if (!d.IsMap()) continue;
      if (!(d["kind"] && d["kind"].IsScalar() && d["kind"].as<std::string>() == "LocalMesh")) {
        YAML::Emitter e;
        e << d;
        manifests += std::string("---\n") + e.c_str() + "\n";
        continue;
      }
      if (found) yaml::Fail("kind LocalMesh", "only one LocalMesh document per file");
      found = true;
      yaml::CheckKeys(d, "", {"kind", "spec"});
      const YAML::Node s = d["spec"];
      if (!s || !s.IsMap()) yaml::Fail("spec", "a map is required");
      yaml::CheckKeys(s, "spec", {"server", "agent", "portBase", "traffic", "services"});
      auto addr = [](const YAML::Node& n, const std::string& path, std::string* out) {
        if (!n) return;
        *out = yaml::Scalar(n, path);
        if (PortOf(*out) == 0) yaml::Fail(path + " " + yaml::Quoted(n), "use HOST:PORT");
      };
      if (const auto n = s["server"]) {
        yaml::CheckKeys(n, "spec.server", {"http", "grpc"});
        addr(n["http"], "spec.server.http", &spec->server_http);
        addr(n["grpc"], "spec.server.grpc", &spec->server_grpc);
      }
      if (const auto n = s["agent"]) {
        yaml::CheckKeys(n, "spec.agent", {"http", "dns"});
        addr(n["http"], "spec.agent.http", &spec->agent_http);
        addr(n["dns"], "spec.agent.dns", &spec->agent_dns);
      }
      if (s["portBase"])
        spec->port_base =
            static_cast<uint16_t>(yaml::Unsigned(s["portBase"], "spec.portBase", 1024, 64000));
      if (const auto n = s["traffic"]) {
        yaml::CheckKeys(n, "spec.traffic", {"to", "path", "rate"});
        if (n["to"]) spec->traffic_to = yaml::Scalar(n["to"], "spec.traffic.to");
        if (n["path"]) spec->traffic_path = yaml::Scalar(n["path"], "spec.traffic.path");
        if (n["rate"])
          spec->rate = static_cast<double>(yaml::Unsigned(n["rate"], "spec.traffic.rate", 1, 2000));
      }
      const YAML::Node svcs = s["services"];
      if (!svcs || !svcs.IsSequence() || svcs.size() == 0)
        yaml::Fail("spec.services", "a list of at least one service is required");
      if (svcs.size() > 50) yaml::Fail("spec.services", "at most 50 services");
      std::set<std::string> names;
      for (size_t i = 0; i < svcs.size(); ++i) {
        const std::string p = "spec.services[" + std::to_string(i) + "]";
        const YAML::Node n = svcs[i];
        yaml::CheckKeys(n, p,
                        {"name", "version", "port", "latency", "jitter", "errorRate", "calls"});
        UpService u;
        if (!n["name"]) yaml::Fail(p + ".name", "required");
        u.name = yaml::Scalar(n["name"], p + ".name");
        if (!mesh::IsDnsLabel(u.name) || u.name == "loadgen")
          yaml::Fail(p + ".name " + yaml::Quoted(n["name"]),
                     "use a DNS label other than loadgen (lower-case letters, digits, '-')");
        if (!names.insert(u.name).second) yaml::Fail(p + ".name", "\"" + u.name + "\" twice");
        if (n["version"]) u.version = yaml::Scalar(n["version"], p + ".version");
        if (n["port"])
          u.port = static_cast<uint16_t>(yaml::Unsigned(n["port"], p + ".port", 1, 65535));
        if (n["latency"]) u.latency_ms = yaml::Duration(n["latency"], p + ".latency");
        if (n["jitter"]) u.jitter_ms = yaml::Duration(n["jitter"], p + ".jitter");
        if (n["errorRate"]) {
          const std::string v = yaml::Scalar(n["errorRate"], p + ".errorRate");
          char* end = nullptr;
          u.error_rate = std::strtod(v.c_str(), &end);
          if (end == v.c_str() || *end || u.error_rate < 0 || u.error_rate > 1)
            yaml::Fail(p + ".errorRate " + yaml::Quoted(n["errorRate"]),
                       "use a number from 0 to 1");
        }
        if (const auto c = n["calls"]) {
          if (!c.IsSequence()) yaml::Fail(p + ".calls", "a list of SERVICE or SERVICE/PATH");
          for (size_t k = 0; k < c.size(); ++k) {
            const std::string v = yaml::Scalar(c[k], p + ".calls[" + std::to_string(k) + "]");
            UpCall call;
            const size_t slash = v.find('/');
            call.service = v.substr(0, slash);
            if (slash != std::string::npos) call.path = v.substr(slash);
            if (!mesh::IsDnsLabel(call.service))
              yaml::Fail(p + ".calls[" + std::to_string(k) + "] " + yaml::Quoted(c[k]),
                         "use SERVICE or SERVICE/PATH");
            u.calls.push_back(call);
          }
        }
        spec->services.push_back(std::move(u));
      }
    }
  } catch (const yaml::FieldError& e) {
    *err = e.Line("");
    return false;
  } catch (const YAML::Exception& e) {
    *err = std::string("not YAML: ") + e.what();
    return false;
  }
  if (!found) {
    *err = "no `kind: LocalMesh` document (see examples/quickstart.yaml)";
    return false;
  }
  if (spec->traffic_to.empty()) spec->traffic_to = spec->services[0].name;
  bool to_known = false;
  for (const auto& u : spec->services) to_known |= u.name == spec->traffic_to;
  if (!to_known) {
    *err = "spec.traffic.to \"" + spec->traffic_to + "\": not one of the services";
    return false;
  }
  if (!manifests.empty()) {
    auto r = mesh::ParseManifests(manifests);
    if (!r.ok()) {
      *err = r.status().message();
      return false;
    }
    spec->manifests = std::move(r.value());
  }
  // Ports: sidecars from portBase, admin ports from +100, upstreams from
  // +200, apps without a port from +300.
  uint16_t up = spec->port_base + 200;
  for (size_t i = 0; i < spec->services.size(); ++i) {
    UpService& u = spec->services[i];
    u.sidecar = static_cast<uint16_t>(spec->port_base + i);
    u.admin = static_cast<uint16_t>(spec->port_base + 100 + i);
    if (u.port == 0) u.port = static_cast<uint16_t>(spec->port_base + 300 + i);
    for (size_t k = 0; k < u.calls.size(); ++k) u.upstream_ports.push_back(up++);
  }
  spec->loadgen_sidecar = static_cast<uint16_t>(spec->port_base + 99);
  spec->loadgen_sidecar_admin = static_cast<uint16_t>(spec->port_base + 199);
  spec->loadgen_upstream = up++;
  return true;
}

}  // namespace weft::cli
