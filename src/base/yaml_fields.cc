#include "base/yaml_fields.h"

#include "base/strings.h"

namespace weft::yaml {

void Fail(const std::string& path, const std::string& what) { throw FieldError{path, what}; }

std::string Quoted(const YAML::Node& n) {
  if (n.IsScalar()) return "\"" + n.Scalar() + "\"";
  return "(not a scalar)";
}

std::string Scalar(const YAML::Node& n, const std::string& path) {
  if (!n.IsScalar()) Fail(path, "expected a single value");
  return n.Scalar();
}

void CheckKeys(const YAML::Node& n, const std::string& path, const std::set<std::string>& allowed) {
  if (!n.IsMap()) Fail(path, "expected a mapping");
  for (const auto& kv : n) {
    std::string k = kv.first.Scalar();
    if (!allowed.count(k)) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      Fail(path + "." + k, "unknown field (known: " + list + ")");
    }
  }
}

int64_t Duration(const YAML::Node& n, const std::string& path) {
  auto v = ParseDurationMs(Scalar(n, path));
  if (!v) Fail(path + " " + Quoted(n), "invalid duration (use e.g. 250ms, 5s, 2m)");
  return *v;
}

uint64_t Unsigned(const YAML::Node& n, const std::string& path, uint64_t min, uint64_t max) {
  auto v = ParseDecimal(Scalar(n, path));
  if (!v) Fail(path + " " + Quoted(n), "expected a non-negative integer");
  if (*v < min || *v > max) {
    Fail(path + " " + Quoted(n),
         "out of range (" + std::to_string(min) + ".." + std::to_string(max) + ")");
  }
  return *v;
}

std::string OneOf(const YAML::Node& n, const std::string& path,
                  const std::vector<std::string>& choices) {
  std::string v = Scalar(n, path);
  std::string list;
  for (const auto& c : choices) {
    if (v == c) return v;
    list += (list.empty() ? "" : ", ") + c;
  }
  Fail(path + " \"" + v + "\"", "unknown value (use " + list + ")");
}

}  // namespace weft::yaml
