#include <cstdint>
#include <string>

#include "proxy/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 16384) return 0;
  std::string err;
  auto cfg = weft::proxy::ParseConfig(std::string(reinterpret_cast<const char*>(data), size),
                                      "fuzz", &err);
  if (!cfg && err.rfind("config error: ", 0) != 0) __builtin_trap();
  // What /config_dump serves must render for any config that loads.
  if (cfg && weft::proxy::ConfigToJson(*cfg).empty()) __builtin_trap();
  return 0;
}
