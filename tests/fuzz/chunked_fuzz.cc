// Feeds the chunked decoder in pieces whose sizes come from the input itself,
// and checks that decoded bytes never exceed what was fed.
#include <cstdint>
#include <string>
#include <vector>

#include "http/http1/parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace weft::http1;
  Limits limits;
  limits.max_header_bytes = 2048;
  ChunkedDecoder d(limits);
  std::vector<std::string_view> spans;
  Error err;
  size_t off = 0, step = size ? (data[0] % 7) + 1 : 1, total = 0;
  while (off < size && !d.Done()) {
    size_t n = std::min(step, size - off);
    spans.clear();
    long r = d.Feed(reinterpret_cast<const char*>(data) + off, n, &spans, &err);
    if (r < 0) return 0;
    if (static_cast<size_t>(r) > n) __builtin_trap();
    for (auto s : spans) total += s.size();
    off += static_cast<size_t>(r);
    if (static_cast<size_t>(r) < n && !d.Done()) __builtin_trap();
  }
  if (total > size) __builtin_trap();
  return 0;
}
