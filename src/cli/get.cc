// `weft get`: config entries as a table, YAML or JSON.
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/ctl.h"
#include "cli/ctl_internal.h"
#include "http/server.h"

namespace weft::cli {
namespace {

using json = nlohmann::json;

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

constexpr const char* kGetUsage =
    "weft get KIND [NAME] [-n NAMESPACE | -A] [-o table|yaml|json] [--server URL]";

}  // namespace

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
  http::Client c(ServerAddress(f.server), ApiClientOptions());
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

}  // namespace weft::cli
