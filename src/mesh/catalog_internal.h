// What the catalog's files (catalog.cc, catalog_fields.cc,
// catalog_registration.cc, catalog_view.cc) share; not for use outside mesh/.
#pragma once

#include <cstddef>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "base/status.h"
#include "mesh/catalog.h"

namespace weft::mesh::internal {

// InvalidArgument "FIELD: WHAT".
Status Invalid(const std::string& field, const std::string& what);

// Typed field readers: absent fields leave *out alone; a wrong type is an
// error naming the field (`path` + `key`).
Status ReadString(const nlohmann::json& obj, const char* key, const std::string& path,
                  std::string* out, size_t max_len = 1024);
Status ReadStringMap(const nlohmann::json& obj, const char* key, const std::string& path,
                     const CatalogLimits& lim, std::map<std::string, std::string>* out);
// A string that is empty or a valid name (ValidName).
Status ReadName(const nlohmann::json& obj, const char* key, const std::string& path,
                std::string* out);

// A check and a service instance in Consul's registration shape; the error
// names the field. `path` prefixes field names ("Checks[2].").
Status ParseCheck(const nlohmann::json& j, const std::string& path, Check* c);
Status ParseService(const nlohmann::json& j, const CatalogLimits& lim, ServiceInstance* s);

// Stored forms (also Consul's response shapes): an instance as an agent
// service, a check without its node.
nlohmann::json ServiceToJson(const ServiceInstance& s);
nlohmann::json CheckStored(const Check& c);

}  // namespace weft::mesh::internal
