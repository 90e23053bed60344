// A sidecar's /stats text as the dashboard's server reads it (and `weft
// stat`): any bytes, from a sidecar that may be hostile or broken, must
// parse without crashing, and the rates between two readings must stay
// numbers a dashboard can draw.
#include <cmath>
#include <cstdint>
#include <string_view>

#include "control/mesh_stats.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 65536) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const size_t half = text.size() / 2;
  const auto a = weft::control::ParseProxyStats(text.substr(0, half));
  const auto b = weft::control::ParseProxyStats(text.substr(half));
  auto check = [](const weft::control::Traffic& x, const weft::control::Traffic& y) {
    const auto r = weft::control::RatesBetween(x, y, 2.0);
    if (!(r.success >= 0 && r.success <= 1) || !(r.mtls >= 0 && r.mtls <= 1) || !(r.rps >= 0))
      __builtin_trap();
  };
  check(a.inbound, b.inbound);
  for (const auto& [dest, t] : b.outbound) {
    auto it = a.outbound.find(dest);
    check(it == a.outbound.end() ? weft::control::Traffic{} : it->second, t);
  }
  return 0;
}
