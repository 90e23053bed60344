// Fuzzes the request head parser, then the chunked decoder on what follows,
// feeding the input in two arbitrary pieces to exercise the incremental path.
#include <cstdint>
#include <string>

#include "http/http1/parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace weft::http1;
  Limits limits;
  limits.max_header_bytes = 4096;
  limits.max_request_line = 1024;
  limits.max_headers = 32;
  std::string in(reinterpret_cast<const char*>(data), size);
  Head head;
  Error err;
  size_t scanned = 0;
  size_t split = size ? data[0] % (size + 1) : 0;
  ParseResult r = ParseRequest(in.data(), split, limits, &scanned, &head, &err);
  if (r == ParseResult::kIncomplete)
    r = ParseRequest(in.data(), in.size(), limits, &scanned, &head, &err);
  if (r != ParseResult::kComplete) return 0;
  if (head.head_bytes > in.size()) __builtin_trap();
  for (const Header& h : head.headers) {
    if (h.name.empty() || h.name.data() < in.data() ||
        h.name.data() + h.name.size() > in.data() + in.size()) {
      __builtin_trap();
    }
  }
  if (head.framing == Framing::kChunked) {
    ChunkedDecoder d(limits);
    std::vector<std::string_view> spans;
    d.Feed(in.data() + head.head_bytes, in.size() - head.head_bytes, &spans, &err);
  }
  return 0;
}
