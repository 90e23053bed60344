#include "mesh/hedge.h"

#include <yaml-cpp/yaml.h>

#include "base/yaml_fields.h"

namespace weft::mesh {

Hedge ParseHedge(const YAML::Node& n, const std::string& at) {
  using namespace weft::yaml;
  Hedge h;
  if (!n.IsMap()) Fail(at, "expected a map: {delay: 50ms} or {delay: p95}");
  CheckKeys(n, at, {"delay"});
  const YAML::Node& d = n["delay"];
  if (!d) Fail(at + ".delay", "required: a duration (50ms) or p95");
  if (d.IsScalar() && d.Scalar() == "p95") {
    h.p95 = true;
  } else {
    h.delay_ms = Duration(d, at + ".delay");
    if (h.delay_ms < 1 || h.delay_ms > kMaxHedgeDelayMs)
      Fail(at + ".delay", "use p95, or a duration of at least 1ms and at most 1h");
  }
  return h;
}

}  // namespace weft::mesh
