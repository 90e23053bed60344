// Node documents arrive from agents (SyncNode) and from the store: any
// bytes must be refused with a reason or parse into a node whose stored
// form is stable.
#include <cstdint>
#include <string>

#include "base/strings.h"
#include "mesh/catalog.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 65536) return 0;
  const std::string doc(reinterpret_cast<const char*>(data), size);
  auto node = weft::mesh::NodeFromJson(doc);
  if (!node.ok()) {
    if (node.status().message().empty()) __builtin_trap();  // every refusal says why
    return 0;
  }
  const std::string once = weft::mesh::NodeToJson(node.value());
  auto again = weft::mesh::NodeFromJson(once);
  if (!again.ok() || weft::mesh::NodeToJson(again.value()) != once) __builtin_trap();
  return 0;
}
