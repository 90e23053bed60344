// What a tap hands out is built from request fields a client chose (method,
// path, authority, route names): any bytes must come out as valid JSON,
// without the query, within the path limit.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "proxy/tap.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 16384) return 0;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  // Fields split at NUL bytes: method, path, authority, route, source.
  std::string_view f[5];
  for (auto& x : f) {
    const size_t at = in.find('\0');
    x = in.substr(0, at);
    in = at == std::string_view::npos ? std::string_view() : in.substr(at + 1);
  }
  weft::proxy::TapRecord r;
  r.method = f[0];
  r.path = f[1];
  r.authority = f[2];
  r.route = f[3];
  r.source = f[4];
  r.status = static_cast<int>(size);
  weft::proxy::TapHub hub;
  std::string out, err;
  size_t taken = 0;
  uint64_t dropped = 0;
  hub.Poll("f", weft::proxy::TapFilter{"", "", std::string(f[1].substr(0, 3))}, 0, &out, &taken,
           &dropped, &err);
  hub.Offer(r, 1);
  out.clear();
  hub.Poll("f", weft::proxy::TapFilter{"", "", std::string(f[1].substr(0, 3))}, 0, &out, &taken,
           &dropped, &err);
  auto j = nlohmann::json::parse("[" + out + "]", nullptr, false);
  if (j.is_discarded() || j.size() != taken) __builtin_trap();
  for (const auto& ev : j) {
    const std::string p = ev["path"].get<std::string>();
    if (p.find('?') != std::string::npos && f[1].find('?') != std::string_view::npos &&
        p.size() > 0 && f[1].substr(0, f[1].find('?')).size() <= weft::proxy::TapLimits::kMaxPath)
      __builtin_trap();
  }
  return 0;
}
