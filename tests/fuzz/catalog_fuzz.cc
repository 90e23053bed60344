// Catalog registrations arrive from anyone who can reach the API (and, as
// Consul's shapes, from Consul clients): any body must be refused cleanly or
// produce a node document that survives the stored-form round trip.
#include <cstdint>
#include <string>

#include "mesh/catalog.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 65536) return 0;
  auto j =
      nlohmann::json::parse(std::string(reinterpret_cast<const char*>(data), size), nullptr, false);
  if (j.is_discarded()) return 0;
  weft::mesh::CanonicalizeKeys(&j);
  weft::mesh::Node node;
  weft::mesh::CatalogLimits limits;
  limits.max_services_per_node = 8;
  limits.max_checks_per_node = 8;
  weft::Status s = weft::mesh::ApplyRegistration(j, limits, &node);
  if (s.ok()) {
    std::string doc = weft::mesh::NodeToJson(node);
    auto back = weft::mesh::NodeFromJson(doc);
    if (!back.ok() || weft::mesh::NodeToJson(back.value()) != doc) __builtin_trap();
    weft::mesh::CatalogView view;
    view.Apply(node.name, &doc, 2, 2);
    for (const auto& [id, svc] : node.services) {
      (void)view.HealthService(svc.service, true).dump();
      (void)view.CatalogService(svc.service).dump();
    }
    bool remove = false;
    (void)weft::mesh::ApplyDeregistration(j, &node, &remove);
    view.Apply(node.name, nullptr, 3, 0);
  } else if (s.message().empty()) {
    __builtin_trap();  // every refusal says why
  }
  return 0;
}
