#include "mesh/tracing.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>

#include "base/yaml_fields.h"

namespace weft::mesh {

Tracing Tracing::Merge(const Tracing& over) const {
  Tracing t = *this;
  if (over.enabled) t.enabled = over.enabled;
  if (over.sampling) t.sampling = over.sampling;
  if (!over.otlp.empty()) t.otlp = over.otlp;
  if (!over.format.empty()) t.format = over.format;
  return t;
}

std::optional<OtlpTarget> ParseOtlpUrl(std::string_view url, std::string* error) {
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, kScheme.size()) != kScheme) {
    *error = url.substr(0, 8) == "https://"
                 ? "https collectors are not supported yet: use http:// (a collector on the node, "
                   "or one reached through the mesh)"
                 : "expected http://HOST:PORT[/PATH]";
    return std::nullopt;
  }
  if (url.size() > 512) {
    *error = "longer than 512 characters";
    return std::nullopt;
  }
  std::string_view rest = url.substr(kScheme.size());
  const size_t slash = rest.find('/');
  OtlpTarget t;
  t.host_port.assign(rest.substr(0, slash));
  t.path = slash == std::string_view::npos ? "/v1/traces" : std::string(rest.substr(slash));
  if (t.path == "/") t.path = "/v1/traces";
  const size_t colon = t.host_port.rfind(':');
  const bool bracketed = !t.host_port.empty() && t.host_port[0] == '[';
  if (t.host_port.empty() || colon == std::string::npos || colon == 0 ||
      (bracketed && t.host_port[colon - 1] != ']')) {
    *error = "expected http://HOST:PORT[/PATH] with a port (OTLP/HTTP's is 4318)";
    return std::nullopt;
  }
  const std::string port = t.host_port.substr(colon + 1);
  char* end = nullptr;
  const long p = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p < 1 || p > 65535) {
    *error = "the port must be a number from 1 to 65535";
    return std::nullopt;
  }
  for (char ch : url) {
    if (static_cast<unsigned char>(ch) <= 0x20 || ch == 0x7f || ch == '?' || ch == '#') {
      *error = "no spaces, control characters, query or fragment";
      return std::nullopt;
    }
  }
  return t;
}

Tracing ParseTracing(const YAML::Node& n, const std::string& at) {
  using namespace weft::yaml;
  Tracing t;
  if (!n.IsMap()) Fail(at, "expected a map: {sampling: 0.01, otlp: http://HOST:4318}");
  CheckKeys(n, at, {"enabled", "sampling", "otlp", "format"});
  if (const YAML::Node& e = n["enabled"]) {
    const std::string v = OneOf(e, at + ".enabled", {"true", "false"});
    t.enabled = v == "true";
  }
  if (const YAML::Node& s = n["sampling"]) {
    const std::string v = Scalar(s, at + ".sampling");
    char* end = nullptr;
    const double d = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || !(d >= 0 && d <= 1))
      Fail(at + ".sampling " + Quoted(s),
           "the share of new traces to record, from 0 to 1 (0.01 is 1 %)");
    t.sampling = d;
  }
  std::string format_at = at + ".format";
  YAML::Node format;  // (a missing key's node cannot be reset: it is checked first)
  bool has_format = false;
  if (n["format"]) {
    format.reset(n["format"]);
    has_format = true;
  }
  if (const YAML::Node& o = n["otlp"]) {
    std::string url_at = at + ".otlp";
    YAML::Node url = o;
    if (o.IsMap()) {
      CheckKeys(o, url_at, {"endpoint", "format"});
      if (!o["endpoint"]) Fail(url_at + ".endpoint", "required: http://HOST:PORT[/PATH]");
      url.reset(o["endpoint"]);
      if (o["format"]) {
        if (has_format) Fail(url_at + ".format", "give the format once, here or beside otlp");
        format.reset(o["format"]);
        has_format = true;
        format_at = url_at + ".format";
      }
      url_at += ".endpoint";
    }
    t.otlp = Scalar(url, url_at);
    std::string err;
    if (!ParseOtlpUrl(t.otlp, &err)) Fail(url_at + " " + Quoted(url), err);
  }
  if (has_format) t.format = OneOf(format, format_at, {"protobuf", "json"});
  // Naming a collector turns tracing on (a service can trace when the
  // mesh-wide one says enabled: false).
  if (!t.otlp.empty() && !t.enabled) t.enabled = true;
  // Whatever turns tracing on names where the spans go: nothing set here
  // is left waiting for a collector named elsewhere.
  if (t.enabled.value_or(true) && t.otlp.empty())
    Fail(at + ".otlp", "required: the collector's URL (http://HOST:4318), or enabled: false");
  return t;
}

}  // namespace weft::mesh
