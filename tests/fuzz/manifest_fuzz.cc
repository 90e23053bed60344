// Manifests arrive from users (weft apply, the API): parse anything without
// crashing, and whatever parses must survive a JSON round trip unchanged.
#include <cstdint>
#include <string>

#include "mesh/manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 16384) return 0;
  auto r = weft::mesh::ParseManifests(std::string(reinterpret_cast<const char*>(data), size));
  if (!r.ok()) {
    if (r.status().message().rfind("manifest error: ", 0) != 0) __builtin_trap();
    return 0;
  }
  for (const auto& m : r.value()) {
    std::string j = weft::mesh::ToJson(m);
    auto back = weft::mesh::FromJson(j);
    if (!back.ok() || weft::mesh::ToJson(back.value()) != j) __builtin_trap();
  }
  return 0;
}
