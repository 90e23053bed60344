#include <cstdint>
#include <string>

#include "http/http1/parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace weft::http1;
  Limits limits;
  limits.max_header_bytes = 4096;
  std::string in(reinterpret_cast<const char*>(data), size);
  Head head;
  Error err;
  size_t scanned = 0;
  const char* method = size && (data[0] & 1) ? "HEAD" : "GET";
  ParseResult r = ParseResponse(in.data(), in.size(), limits, &scanned, method, &head, &err);
  if (r == ParseResult::kComplete && (head.status < 100 || head.status > 999)) __builtin_trap();
  return 0;
}
