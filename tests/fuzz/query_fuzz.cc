// REST request targets come from anyone who can reach the API: the path and
// query decoding, and the numbers and durations read from query values
// (index, wait, cas, TTLs), must take any bytes without crashing, and
// decoding must undo encoding.
#include <cstdint>
#include <string>

#include "base/strings.h"
#include "http/server.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 16384) return 0;
  const std::string target(reinterpret_cast<const char*>(data), size);
  weft::http::Request r;
  weft::http::ParseTarget(target, &r);
  for (const auto& [k, v] : r.query) {
    if (auto ms = weft::ParseDurationMs(v); ms && *ms < 0) __builtin_trap();
    (void)weft::ParseDecimal(v);
    (void)r.Query(k);
  }
  if (weft::http::PercentDecode(weft::http::PercentEncode(r.path)) != r.path) __builtin_trap();
  return 0;
}
