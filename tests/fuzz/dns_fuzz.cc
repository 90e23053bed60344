// DNS queries come from anything that can reach the agent's port: every
// packet must get a well-formed answer, an error, or silence, never a crash,
// and never an answer larger than the client can take.
#include <cstdint>
#include <string>

#include "agent/dns_resolver.h"

namespace {

const weft::mesh::CatalogView& Catalog() {
  static weft::mesh::CatalogView* v = [] {
    auto* view = new weft::mesh::CatalogView();
    for (int i = 0; i < 20; ++i) {
      weft::mesh::Node n;
      nlohmann::json b = {
          {"Node", "n" + std::to_string(i)},
          {"Address", i % 3 ? "10.0.0." + std::to_string(i) : "fd00::" + std::to_string(i)},
          {"Service",
           {{"Service", "web"}, {"ID", "w" + std::to_string(i)}, {"Port", 80}, {"Tags", {"a"}}}}};
      (void)weft::mesh::ApplyRegistration(b, weft::mesh::CatalogLimits{}, &n);
      std::string doc = weft::mesh::NodeToJson(n);
      view->Apply(n.name, &doc, i + 1, i + 1);
    }
    return view;
  }();
  return *v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static weft::Rng rng(1);
  weft::agent::DnsOptions opts;
  weft::agent::DnsCounters counters;
  static weft::agent::DnsCache cache;
  for (bool tcp : {false, true}) {
    std::string out = weft::agent::Resolve(data, size, tcp, Catalog(), opts, rng, &counters,
                                           tcp ? &cache : nullptr);
    if (out.empty()) continue;
    if (out.size() < 12) __builtin_trap();
    if (!tcp && out.size() > 4096) __builtin_trap();
    // Answers echo the query id.
    if (size >= 2 &&
        (static_cast<uint8_t>(out[0]) != data[0] || static_cast<uint8_t>(out[1]) != data[1]))
      __builtin_trap();
  }
  return 0;
}
