// `weft server` flags, and the commands that talk to a server's REST API:
// apply, get, delete, members.
#include "cli/ctl.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "agent/agent.h"
#include "base/file.h"
#include "base/log.h"
#include "base/strings.h"
#include "cli/flags.h"
#include "cli/stat.h"
#include "control/server.h"
#include "demo/demo_app.h"
#include "http/client.h"
#include "http/server.h"
#include "mesh/manifest.h"
#include "xds/stream_client.h"

namespace weft::cli {

int BadUsage(const std::string& msg, const char* usage) {
  std::fprintf(stderr, "weft: %s\n\nusage: %s\n", msg.c_str(), usage);
  return 2;
}

namespace {

using json = nlohmann::json;

int Fail(const std::string& msg) {
  std::fprintf(stderr, "weft: %s\n", msg.c_str());
  return 1;
}

bool LogLevelFlag(const Args& args, size_t* i, std::string* err) {
  std::string v;
  if (!FlagValue(args, i, "--log-level", &v)) return false;
  log::Level l;
  if (!log::ParseLevel(v, &l)) {
    *err = "--log-level \"" + v + "\": use trace, debug, info, warn, error or off";
  } else {
    log::SetLevel(l);
  }
  return true;
}

// The server's HOST:PORT from --server / WEFT_SERVER (an http:// URL or
// HOST:PORT), default 127.0.0.1:8500.
std::string ServerAddress(const std::string& flag) {
  std::string s = flag;
  if (s.empty()) {
    const char* env = std::getenv("WEFT_SERVER");
    if (env) s = env;
  }
  if (s.empty()) s = "127.0.0.1:8500";
  if (s.rfind("http://", 0) == 0) s = s.substr(7);
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

// Common flags of the API commands: --server, --log-level.
struct CtlFlags {
  std::string server;
  std::string ns = "default";
  bool all_namespaces = false;
  std::string output;
  std::vector<std::string> files;
  std::vector<std::string> positional;
};

int ParseCtlFlags(const Args& args, CtlFlags* f, const char* usage) {
  for (size_t i = 0; i < args.size(); ++i) {
    std::string v, err;
    if (FlagValue(args, &i, "--server", &v)) {
      f->server = v;
    } else if (FlagValue(args, &i, "-f", &v) || FlagValue(args, &i, "--filename", &v)) {
      f->files.push_back(v);
    } else if (FlagValue(args, &i, "-n", &v) || FlagValue(args, &i, "--namespace", &v)) {
      f->ns = v;
    } else if (args[i] == "-A" || args[i] == "--all-namespaces") {
      f->all_namespaces = true;
    } else if (FlagValue(args, &i, "-o", &v) || FlagValue(args, &i, "--output", &v)) {
      if (v != "yaml" && v != "json" && v != "table")
        return BadUsage("-o \"" + v + "\": use yaml, json or table", usage);
      f->output = v;
    } else if (LogLevelFlag(args, &i, &err)) {
      if (!err.empty()) return BadUsage(err, usage);
    } else if (args[i] == "--help" || args[i] == "-h") {
      std::printf("usage: %s\n", usage);
      return 0;
    } else if (!args[i].empty() && args[i][0] == '-' && args[i] != "-") {
      return BadUsage("unknown or incomplete flag \"" + std::string(args[i]) + "\"", usage);
    } else {
      f->positional.emplace_back(args[i]);
    }
  }
  return -1;
}

// "service", "Services", "route" ... -> the manifest kind; "" when unknown.
std::string CanonicalKind(std::string_view s) {
  std::string l;
  for (char c : s) l += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& k : mesh::Kinds()) {
    std::string kl;
    for (char c : k) kl += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (l == kl || l == kl + "s" || (kl.back() == 'y' && l == kl.substr(0, kl.size() - 1) + "ies"))
      return k;
  }
  return "";
}

std::string KindList() {
  std::string s;
  for (const auto& k : mesh::Kinds()) s += (s.empty() ? "" : ", ") + k;
  return s;
}

// Reads the documents of -f FILE|DIR|- into (source, text) pairs.
bool ReadSources(const std::vector<std::string>& files,
                 std::vector<std::pair<std::string, std::string>>* out, std::string* err) {
  namespace fs = std::filesystem;
  for (const auto& f : files) {
    if (f == "-") {
      std::stringstream ss;
      ss << std::cin.rdbuf();
      out->emplace_back("stdin", ss.str());
      continue;
    }
    std::error_code ec;
    if (fs::is_directory(f, ec)) {
      std::vector<std::string> names;
      for (const auto& e : fs::directory_iterator(f, ec)) {
        auto ext = e.path().extension().string();
        if (e.is_regular_file() && (ext == ".yaml" || ext == ".yml" || ext == ".json"))
          names.push_back(e.path().string());
      }
      std::sort(names.begin(), names.end());
      if (names.empty()) {
        *err = f + ": no .yaml, .yml or .json files in this directory";
        return false;
      }
      for (const auto& n : names) {
        std::string text = ReadWholeFile(n, err);
        if (!err->empty()) return false;
        out->emplace_back(n, std::move(text));
      }
      continue;
    }
    std::string text = ReadWholeFile(f, err);
    if (!err->empty()) return false;
    out->emplace_back(f, std::move(text));
  }
  return true;
}

// JSON -> YAML (block style), for `get -o yaml`.
void EmitYaml(YAML::Emitter& out, const json& j) {
  if (j.is_object()) {
    out << YAML::BeginMap;
    for (const auto& [k, v] : j.items()) {
      out << YAML::Key << k << YAML::Value;
      EmitYaml(out, v);
    }
    out << YAML::EndMap;
  } else if (j.is_array()) {
    out << YAML::BeginSeq;
    for (const auto& v : j) EmitYaml(out, v);
    out << YAML::EndSeq;
  } else if (j.is_string()) {
    // Quote strings that YAML would read back as something else.
    const std::string& v = j.get_ref<const std::string&>();
    YAML::Node probe;
    bool plain = !v.empty();
    if (plain) {
      try {
        probe = YAML::Load(v);
        plain = probe.IsScalar() && probe.Tag() != "!" && !probe.as<std::string>().empty() &&
                probe.as<std::string>() == v;
        bool b;
        double d;
        if (plain && (YAML::convert<bool>::decode(probe, b) ||
                      YAML::convert<double>::decode(probe, d) || v == "null" || v == "~"))
          plain = false;
      } catch (const YAML::Exception&) {
        plain = false;
      }
    }
    if (plain) {
      out << v;
    } else {
      out << YAML::DoubleQuoted << v;
    }
  } else if (j.is_null()) {
    out << YAML::Null;
  } else {
    out << j.dump();
  }
}

std::string ToYaml(const json& j) {
  YAML::Emitter out;
  EmitYaml(out, j);
  return out.c_str();
}

json StripIndexes(json j) {
  if (j.is_object()) {
    j.erase("CreateIndex");
    j.erase("ModifyIndex");
  }
  return j;
}

std::string ApiError(const http::ClientResponse& r) {
  std::string b = r.body;
  while (!b.empty() && (b.back() == '\n' || b.back() == '\r')) b.pop_back();
  return b.empty() ? ("HTTP " + std::to_string(r.status)) : b;
}

constexpr const char* kApplyUsage = "weft apply -f FILE|DIR|- [-f ...] [--server URL]";
constexpr const char* kGetUsage =
    "weft get KIND [NAME] [-n NAMESPACE | -A] [-o table|yaml|json] [--server URL]";
constexpr const char* kDeleteUsage = "weft delete KIND NAME [-n NAMESPACE] [--server URL]";
constexpr const char* kMembersUsage = "weft members [-o table|json] [--server URL]";
constexpr const char* kCheckUsage = "weft check [--server URL]";
constexpr const char* kStatUsage =
    "weft stat [SERVICE] [--window DUR] [-o table|json] [--server URL]";
constexpr const char* kDemoUsage =
    "weft demo-app --name NAME [--version V] [--listen ADDR] [--latency DUR] [--jitter DUR] "
    "[--error-rate 0..1] [--call HOST:PORT[/PATH]]... [--call-timeout DUR]";
constexpr const char* kCaUsage =
    "weft ca roots [-o table|json] [--server URL]\n"
    "       weft ca rotate [--propagate DUR] [--overlap DUR] [--ca-cert FILE --ca-key FILE] "
    "[--server URL]";
constexpr const char* kServerUsage =
    "weft server --data-dir DIR [--http ADDR] [--grpc ADDR] [--store etcd://H:P,...] [--dev] "
    "[--name NAME] [--join-token T] [--trust-domain TD] [--ca-cert FILE --ca-key FILE] [--cert-ttl "
    "DUR] [--node-timeout DUR] [--grpc-tls] "
    "[--http-max-connections N] [--http-header-timeout DUR] [--max-blocking-queries N] "
    "[--log-level LEVEL]";

}  // namespace

int ServerMain(const Args& args) {
  control::ServerOptions o;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string v, err;
    if (FlagValue(args, &i, "--data-dir", &v)) {
      o.data_dir = v;
    } else if (FlagValue(args, &i, "--http", &v)) {
      o.http_addr = v;
    } else if (FlagValue(args, &i, "--grpc", &v)) {
      o.grpc_addr = v;
    } else if (FlagValue(args, &i, "--store", &v)) {
      o.store = v;
    } else if (FlagValue(args, &i, "--name", &v)) {
      o.name = v;
    } else if (FlagValue(args, &i, "--join-token", &v)) {
      o.join_token = v;
    } else if (FlagValue(args, &i, "--trust-domain", &v)) {
      o.trust_domain = v;
    } else if (FlagValue(args, &i, "--ca-cert", &v)) {
      o.ca_cert_file = v;
    } else if (FlagValue(args, &i, "--ca-key", &v)) {
      o.ca_key_file = v;
    } else if (FlagValue(args, &i, "--cert-ttl", &v)) {
      auto ms = ParseDurationMs(v);
      if (!ms || *ms < 60000 || *ms > 366LL * 86400 * 1000)
        return BadUsage("--cert-ttl \"" + v + "\": use a duration from 1m to 8784h (a year)",
                        kServerUsage);
      o.cert_ttl_s = *ms / 1000;
    } else if (args[i] == "--grpc-tls") {
      o.grpc_tls = true;
    } else if (FlagValue(args, &i, "--node-timeout", &v)) {
      auto ms = ParseDurationMs(v);
      if (!ms || *ms < 1000 || *ms > 3600 * 1000)
        return BadUsage("--node-timeout \"" + v + "\": use a duration from 1s to 1h", kServerUsage);
      o.node_timeout_ms = *ms;
    } else if (FlagValue(args, &i, "--http-max-connections", &v)) {
      auto n = ParseDecimal(v);
      if (!n || *n == 0 || *n > 1000000)
        return BadUsage("--http-max-connections \"" + v + "\": use 1-1000000", kServerUsage);
      o.max_connections = *n;
    } else if (FlagValue(args, &i, "--max-blocking-queries", &v)) {
      auto n = ParseDecimal(v);
      if (!n || *n == 0 || *n > 1000000)
        return BadUsage("--max-blocking-queries \"" + v + "\": use 1-1000000", kServerUsage);
      o.max_blocking_queries = *n;
    } else if (FlagValue(args, &i, "--http-header-timeout", &v)) {
      auto ms = ParseDurationMs(v);
      if (!ms || *ms <= 0)
        return BadUsage("--http-header-timeout \"" + v + "\": use a duration such as 10s",
                        kServerUsage);
      o.header_read_timeout_ms = *ms;
    } else if (args[i] == "--dev") {
      o.dev = true;
    } else if (LogLevelFlag(args, &i, &err)) {
      if (!err.empty()) return BadUsage(err, kServerUsage);
    } else if (args[i] == "--help" || args[i] == "-h") {
      std::printf("usage: %s\n", kServerUsage);
      return 0;
    } else {
      return BadUsage("server: unknown or incomplete flag \"" + std::string(args[i]) + "\"",
                      kServerUsage);
    }
  }
  return control::RunServer(o);
}

int AgentMain(const Args& args) {
  agent::AgentOptions o;
  static constexpr const char* kAgentUsage =
      "weft agent --server GRPC_ADDR[,...] --node NAME --data-dir DIR [--http ADDR] [--dns ADDR] "
      "[--zone Z] [--domain D] [--dns-max-tcp N] [--join-token T] [--server-ca FILE] "
      "[--log-level LEVEL]";
  for (size_t i = 0; i < args.size(); ++i) {
    std::string v, err;
    if (FlagValue(args, &i, "--server", &v)) {
      o.servers = SplitCommas(v);
    } else if (FlagValue(args, &i, "--node", &v)) {
      o.node = v;
    } else if (FlagValue(args, &i, "--data-dir", &v)) {
      o.data_dir = v;
    } else if (FlagValue(args, &i, "--http", &v)) {
      o.http_addr = v;
    } else if (FlagValue(args, &i, "--dns", &v)) {
      o.dns_addr = v;
    } else if (FlagValue(args, &i, "--dns-max-tcp", &v)) {
      auto n = ParseDecimal(v);
      if (!n || *n == 0 || *n > 100000)
        return BadUsage("--dns-max-tcp \"" + v + "\": use 1-100000", kAgentUsage);
      o.max_dns_tcp_connections = *n;
    } else if (FlagValue(args, &i, "--socket", &v)) {
      o.socket_path = v;
    } else if (FlagValue(args, &i, "--zone", &v)) {
      o.zone = v;
    } else if (FlagValue(args, &i, "--address", &v)) {
      o.address = v;
    } else if (FlagValue(args, &i, "--server-ca", &v)) {
      o.server_ca_pem = xds::ReadServerCa(v, &err);
      if (!err.empty()) return BadUsage("--server-ca \"" + v + "\": " + err, kAgentUsage);
    } else if (FlagValue(args, &i, "--join-token", &v)) {
      o.join_token = v;
    } else if (FlagValue(args, &i, "--domain", &v)) {
      o.domain = v;
    } else if (LogLevelFlag(args, &i, &err)) {
      if (!err.empty()) return BadUsage(err, kAgentUsage);
    } else if (args[i] == "--help" || args[i] == "-h") {
      std::printf("usage: %s\n", kAgentUsage);
      return 0;
    } else {
      return BadUsage("agent: unknown or incomplete flag \"" + std::string(args[i]) + "\"",
                      kAgentUsage);
    }
  }
  if (o.join_token.empty()) {
    if (const char* t = std::getenv("WEFT_JOIN_TOKEN")) o.join_token = t;
  }
  return agent::RunAgent(o);
}

int ApplyMain(const Args& args) {
  CtlFlags f;
  if (int rc = ParseCtlFlags(args, &f, kApplyUsage); rc >= 0) return rc;
  if (f.files.empty()) return BadUsage("apply: -f FILE|DIR|- is required", kApplyUsage);
  if (!f.positional.empty())
    return BadUsage("apply: unexpected \"" + f.positional[0] + "\"", kApplyUsage);
  std::vector<std::pair<std::string, std::string>> sources;
  std::string err;
  if (!ReadSources(f.files, &sources, &err)) return Fail(err);
  // Validate everything before writing anything.
  std::vector<mesh::Manifest> manifests;
  for (const auto& [src, text] : sources) {
    auto r = mesh::ParseManifests(text);
    if (!r.ok()) return Fail(src + ": " + r.status().message());
    for (auto& m : r.value()) manifests.push_back(std::move(m));
  }
  if (manifests.empty()) return Fail("apply: no manifests found");
  return ApplyManifests(ServerAddress(f.server), manifests, stdout);
}

int ApplyManifests(const std::string& server, const std::vector<mesh::Manifest>& manifests,
                   std::FILE* out) {
  http::Client c(server);
  int failures = 0;
  for (const auto& m : manifests) {
    std::string target = "/v1/config/" + m.kind + "/" + http::PercentEncode(m.name) +
                         "?ns=" + http::PercentEncode(m.ns);
    auto r = c.Do("PUT", target, mesh::ToJson(m), {{"content-type", "application/json"}});
    if (!r.ok()) return Fail("apply: " + r.status().message());
    if (r->status != 200) {
      std::fprintf(stderr, "%s %s/%s: %s\n", m.kind.c_str(), m.ns.c_str(), m.name.c_str(),
                   ApiError(r.value()).c_str());
      ++failures;
      continue;
    }
    json j = json::parse(r->body, nullptr, false);
    std::string result =
        j.is_object() && j.contains("Result") ? j["Result"].get<std::string>() : "?";
    if (out)
      std::fprintf(out, "%s %s/%s %s\n", m.kind.c_str(), m.ns.c_str(), m.name.c_str(),
                   result.c_str());
  }
  return failures ? 1 : 0;
}

int GetMain(const Args& args) {
  CtlFlags f;
  if (int rc = ParseCtlFlags(args, &f, kGetUsage); rc >= 0) return rc;
  if (f.positional.empty() || f.positional.size() > 2)
    return BadUsage("get: expected KIND [NAME]", kGetUsage);
  std::string kind = CanonicalKind(f.positional[0]);
  if (kind.empty())
    return BadUsage("get: unknown kind \"" + f.positional[0] + "\": use one of " + KindList(),
                    kGetUsage);
  std::string target = "/v1/config/" + kind;
  const bool one = f.positional.size() == 2;
  if (one) target += "/" + http::PercentEncode(f.positional[1]);
  target += "?ns=" + (f.all_namespaces && !one ? std::string("*") : http::PercentEncode(f.ns));
  http::Client c(ServerAddress(f.server));
  auto r = c.Do("GET", target);
  if (!r.ok()) return Fail("get: " + r.status().message());
  if (r->status != 200) return Fail(ApiError(r.value()));
  json j = json::parse(r->body, nullptr, false);
  if (j.is_discarded()) return Fail("get: the server sent a body that is not JSON");
  if (f.output == "json") {
    if (j.is_array()) {
      for (auto& e : j) e = StripIndexes(e);
    } else {
      j = StripIndexes(j);
    }
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  if (f.output == "yaml") {
    json list = j.is_array() ? j : json::array({j});
    bool first = true;
    for (const auto& e : list) {
      if (!first) std::printf("---\n");
      first = false;
      std::printf("%s\n", ToYaml(StripIndexes(e)).c_str());
    }
    return 0;
  }
  json list = j.is_array() ? j : json::array({j});
  if (list.empty()) {
    std::printf("no %s found in %s\n", kind.c_str(),
                f.all_namespaces ? "any namespace" : ("namespace " + f.ns).c_str());
    return 0;
  }
  std::printf("%-12s %-32s %s\n", "NAMESPACE", "NAME", "INDEX");
  for (const auto& e : list) {
    std::printf("%-12s %-32s %lld\n", e["metadata"]["namespace"].get<std::string>().c_str(),
                e["metadata"]["name"].get<std::string>().c_str(),
                static_cast<long long>(e.value("ModifyIndex", 0)));
  }
  return 0;
}

int DeleteMain(const Args& args) {
  CtlFlags f;
  if (int rc = ParseCtlFlags(args, &f, kDeleteUsage); rc >= 0) return rc;
  if (f.positional.size() != 2) return BadUsage("delete: expected KIND NAME", kDeleteUsage);
  std::string kind = CanonicalKind(f.positional[0]);
  if (kind.empty())
    return BadUsage("delete: unknown kind \"" + f.positional[0] + "\": use one of " + KindList(),
                    kDeleteUsage);
  http::Client c(ServerAddress(f.server));
  auto r = c.Do("DELETE", "/v1/config/" + kind + "/" + http::PercentEncode(f.positional[1]) +
                              "?ns=" + http::PercentEncode(f.ns));
  if (!r.ok()) return Fail("delete: " + r.status().message());
  if (r->status != 200) return Fail(ApiError(r.value()));
  std::printf("%s %s/%s deleted\n", kind.c_str(), f.ns.c_str(), f.positional[1].c_str());
  return 0;
}

int MembersMain(const Args& args) {
  CtlFlags f;
  if (int rc = ParseCtlFlags(args, &f, kMembersUsage); rc >= 0) return rc;
  http::Client c(ServerAddress(f.server));
  auto r = c.Do("GET", "/v1/agent/members");
  if (!r.ok()) return Fail("members: " + r.status().message());
  if (r->status != 200) return Fail(ApiError(r.value()));
  json j = json::parse(r->body, nullptr, false);
  if (!j.is_array()) return Fail("members: the server sent a body that is not a JSON list");
  if (f.output == "json") {
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("%-28s %-24s %-8s %-8s %s\n", "NAME", "ADDRESS", "ROLE", "STATUS", "DETAIL");
  for (const auto& m : j) {
    const json tags = m.value("Tags", json::object());
    std::printf("%-28s %-24s %-8s %-8s %s\n", m.value("Name", "").c_str(),
                (m.value("Addr", "") + ":" + std::to_string(m.value("Port", 0))).c_str(),
                tags.value("role", "").c_str(), m.value("Status", 0) == 1 ? "alive" : "left",
                tags.value("detail", "").c_str());
  }
  return 0;
}

int CaMain(const Args& args) {
  if (args.empty() || (args[0] != "roots" && args[0] != "rotate"))
    return BadUsage("ca: expected roots or rotate", kCaUsage);
  const std::string what(args[0]);
  // rotate's own flags first; the rest are the common ones.
  std::string propagate, overlap, cert_file, key_file;
  Args rest;
  for (size_t i = 1; i < args.size(); ++i) {
    std::string v;
    if (what == "rotate" && FlagValue(args, &i, "--propagate", &v)) {
      propagate = v;
    } else if (what == "rotate" && FlagValue(args, &i, "--overlap", &v)) {
      overlap = v;
    } else if (what == "rotate" && FlagValue(args, &i, "--ca-cert", &v)) {
      cert_file = v;
    } else if (what == "rotate" && FlagValue(args, &i, "--ca-key", &v)) {
      key_file = v;
    } else {
      rest.push_back(args[i]);
    }
  }
  CtlFlags f;
  if (int rc = ParseCtlFlags(rest, &f, kCaUsage); rc >= 0) return rc;
  if (!f.positional.empty())
    return BadUsage("ca: unexpected \"" + f.positional[0] + "\"", kCaUsage);
  http::Client c(ServerAddress(f.server));
  if (what == "roots") {
    auto r = c.Do("GET", "/v1/connect/ca/roots");
    if (!r.ok()) return Fail("ca roots: " + r.status().message());
    if (r->status != 200) return Fail(ApiError(r.value()));
    json j = json::parse(r->body, nullptr, false);
    if (!j.is_object()) return Fail("ca roots: the server sent a body that is not a JSON object");
    if (f.output == "json") {
      std::printf("%s\n", j.dump(2).c_str());
      return 0;
    }
    std::printf("trust domain %s\n", j.value("TrustDomain", "").c_str());
    std::printf("%-8s %-12s %-12s %s\n", "ACTIVE", "ACTIVATE_AT", "RETIRE_AT", "ID");
    for (const auto& root : j.value("Roots", json::array())) {
      std::printf("%-8s %-12lld %-12lld %s\n", root.value("Active", false) ? "yes" : "",
                  static_cast<long long>(root.value("ActivateAt", int64_t{0})),
                  static_cast<long long>(root.value("RetireAt", int64_t{0})),
                  root.value("ID", "").c_str());
    }
    return 0;
  }
  std::string query;
  auto add = [&](const char* name, const std::string& v) {
    if (v.empty()) return;
    query += (query.empty() ? "?" : "&") + std::string(name) + "=" + http::PercentEncode(v);
  };
  add("propagate", propagate);
  add("overlap", overlap);
  std::string body;
  if (!cert_file.empty() || !key_file.empty()) {
    if (cert_file.empty() || key_file.empty())
      return BadUsage("ca rotate: --ca-cert and --ca-key go together", kCaUsage);
    std::string err;
    json b = {{"RootCert", ReadWholeFile(cert_file, &err)}};
    if (err.empty()) b["Key"] = ReadWholeFile(key_file, &err);
    if (!err.empty()) return Fail("ca rotate: " + err);
    body = b.dump();
  }
  auto r = c.Do("PUT", "/v1/connect/ca/rotate" + query, body);
  if (!r.ok()) return Fail("ca rotate: " + r.status().message());
  if (r->status != 200) return Fail(ApiError(r.value()));
  json j = json::parse(r->body, nullptr, false);
  if (!j.is_object()) return Fail("ca rotate: the server sent a body that is not a JSON object");
  std::printf("new root %s: trusted now, signs from %lld, the old root retires at %lld\n",
              j.value("NextRootID", "").c_str(),
              static_cast<long long>(j.value("ActivateAt", int64_t{0})),
              static_cast<long long>(j.value("RetireAt", int64_t{0})));
  return 0;
}

int DemoMain(const Args& args) {
  demo::DemoOptions o;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string v, err;
    auto duration = [&](const char* flag, int64_t* out) -> int {
      auto ms = ParseDurationMs(v);
      if (!ms || *ms < 0 || *ms > 3600 * 1000)
        return BadUsage(std::string(flag) + " \"" + v + "\": use a duration up to 1h", kDemoUsage);
      *out = *ms;
      return -1;
    };
    if (FlagValue(args, &i, "--name", &v)) {
      o.name = v;
    } else if (FlagValue(args, &i, "--version", &v)) {
      o.version = v;
    } else if (FlagValue(args, &i, "--listen", &v)) {
      o.listen = v;
    } else if (FlagValue(args, &i, "--latency", &v)) {
      if (int rc = duration("--latency", &o.latency_ms); rc >= 0) return rc;
    } else if (FlagValue(args, &i, "--jitter", &v)) {
      if (int rc = duration("--jitter", &o.jitter_ms); rc >= 0) return rc;
    } else if (FlagValue(args, &i, "--call-timeout", &v)) {
      if (int rc = duration("--call-timeout", &o.call_timeout_ms); rc >= 0) return rc;
    } else if (FlagValue(args, &i, "--error-rate", &v)) {
      char* end = nullptr;
      const double r = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || r < 0 || r > 1)
        return BadUsage("--error-rate \"" + v + "\": use a number from 0 to 1", kDemoUsage);
      o.error_rate = r;
    } else if (FlagValue(args, &i, "--call", &v)) {
      o.calls.push_back(v);
    } else if (LogLevelFlag(args, &i, &err)) {
      if (!err.empty()) return BadUsage(err, kDemoUsage);
    } else if (args[i] == "--help" || args[i] == "-h") {
      std::printf("usage: %s\n", kDemoUsage);
      return 0;
    } else {
      return BadUsage("demo-app: unknown or incomplete flag \"" + std::string(args[i]) + "\"",
                      kDemoUsage);
    }
  }
  return demo::RunDemoApp(o);
}

int StatMain(const Args& args) {
  int64_t window_ms = 1000;
  Args rest;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string v;
    if (FlagValue(args, &i, "--window", &v)) {
      auto ms = ParseDurationMs(v);
      if (!ms || *ms < 100 || *ms > 60000)
        return BadUsage("--window \"" + v + "\": use a duration from 100ms to 1m", kStatUsage);
      window_ms = *ms;
    } else {
      rest.push_back(args[i]);
    }
  }
  CtlFlags f;
  if (int rc = ParseCtlFlags(rest, &f, kStatUsage); rc >= 0) return rc;
  if (f.positional.size() > 1) return BadUsage("stat: at most one SERVICE", kStatUsage);
  const std::string only = f.positional.empty() ? "" : f.positional[0];
  StatSampler sampler(ServerAddress(f.server), only);
  std::string err;
  if (!sampler.Sample(&err)) return Fail("stat: " + err);
  std::this_thread::sleep_for(std::chrono::milliseconds(window_ms));
  if (!sampler.Sample(&err)) return Fail("stat: " + err);
  const auto rows = sampler.Rows(static_cast<double>(window_ms) / 1000.0);
  if (f.output == "json") {
    json out = json::array();
    for (const auto& r : rows) {
      out.push_back({{"service", r.service},
                     {"proxies", r.proxies},
                     {"unreachable", r.unreachable},
                     {"rps", r.rps},
                     {"success", r.success},
                     {"p50_ms", r.p50_ms},
                     {"p99_ms", r.p99_ms},
                     {"mtls", r.mtls}});
    }
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::fputs(FormatStatTable(rows).c_str(), stdout);
  return 0;
}

// Diagnoses a running mesh from one server (or agent): each check prints ok
// or what is wrong and the fix; exit 1 when anything failed.
int CheckMain(const Args& args) {
  CtlFlags f;
  if (int rc = ParseCtlFlags(args, &f, kCheckUsage); rc >= 0) return rc;
  if (!f.positional.empty())
    return BadUsage("check: unexpected \"" + f.positional[0] + "\"", kCheckUsage);
  const std::string addr = ServerAddress(f.server);
  int failed = 0;
  auto report = [&](bool ok, const std::string& what, const std::string& fix) {
    std::printf("%s %s%s\n", ok ? "ok  " : "FAIL", what.c_str(),
                ok ? "" : ("\n     fix: " + fix).c_str());
    if (!ok) ++failed;
  };
  http::Client c(addr);
  auto ready = c.Do("GET", "/ready");
  report(ready.ok() && ready->status == 200, "server " + addr + " answers",
         "start `weft server` (or point --server / WEFT_SERVER at one)");
  if (!ready.ok() || ready->status != 200) return 1;
  auto roots = c.Do("GET", "/v1/connect/ca/roots");
  json rj = roots.ok() && roots->status == 200 ? json::parse(roots->body, nullptr, false) : json();
  const bool have_ca = rj.is_object() && !rj.value("ActiveRootID", "").empty();
  report(have_ca, "the mesh CA has an active root",
         "a server creates one on start; check its log for CA errors");
  std::vector<MeshMember> members;
  std::string err;
  if (!ListMembers(addr, &members, &err)) {
    report(false, "member list: " + err,
           "the server's /v1/agent/members did not answer a JSON list");
    return 1;
  }
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  size_t proxies = 0, agents = 0;
  for (const auto& m : members) {
    if (m.role == "agent") {
      ++agents;
      report(m.detail.rfind("unreachable", 0) != 0,
             "agent " + m.name + (m.admin.empty() ? "" : " at " + m.admin) + " answers",
             m.detail + ": is the agent running, and is its --http address reachable from here?");
      continue;
    }
    if (m.role != "proxy") continue;
    ++proxies;
    const std::string name =
        "proxy " + m.name + " (" + m.service + ")" + (m.via.empty() ? "" : " via " + m.via);
    const std::string& detail = m.detail;
    report(
        detail.find("acked -") == std::string::npos && detail.find("nacked") == std::string::npos,
        name + ": config acknowledged (" + detail + ")",
        "the proxy refused or has not applied its config: see its log for the reason");
    const std::string& admin = m.admin;
    if (admin.empty()) {
      report(false, name + ": admin address known", "start the proxy with --admin ADDR");
      continue;
    }
    http::Client pc(admin);
    auto pr = pc.Do("GET", "/ready");
    report(pr.ok() && pr->status == 200, name + ": ready at " + admin,
           pr.ok() ? "its /ready says: " + pr->body
                   : "the admin port does not answer: is it running?");
    auto cr = pc.Do("GET", "/certs");
    json cj = cr.ok() && cr->status == 200 ? json::parse(cr->body, nullptr, false) : json();
    if (!cj.is_object() || !cj.value("mtls_needed", false)) continue;
    const int64_t not_after = cj.value("not_after_unix", int64_t{0});
    report(not_after > now,
           name + ": has a valid workload certificate (" + cj.value("spiffe_id", "none") + ")",
           "the proxy has no current certificate: check the join token (--join-token) and the "
           "server's log for refused certificate requests");
    if (not_after > now) {
      report(not_after - now > 300,
             name + ": certificate valid for " + std::to_string((not_after - now) / 60) +
                 " more minutes",
             "renewal is overdue: check that the proxy (or its agent) reaches a server");
    }
  }
  std::printf("%zu agents and %zu proxies checked; %d problem(s)\n", agents, proxies, failed);
  return failed ? 1 : 0;
}

}  // namespace weft::cli
