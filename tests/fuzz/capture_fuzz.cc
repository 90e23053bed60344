// The first bytes of a captured connection come from any application on the
// node: HTTP detection and Host extraction take anything, and what they
// return is always a plausible, normalised host.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "proxy/sniff.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const int h = weft::proxy::HttpRequestStart(in);
  if (h < -1 || h > 1) std::abort();
  const std::string host = weft::proxy::HostOfRequestHead(in);
  if (host.size() > in.size()) std::abort();
  for (char c : host) {
    if (c >= 'A' && c <= 'Z') std::abort();                // lower-cased
    if (c == ':' || c == '\r' || c == '\n') std::abort();  // no port, one line
  }
  if (!host.empty() && (host.back() == '.' || host.front() == ' ' || host.back() == ' '))
    std::abort();
  return 0;
}
