// Trace context headers come from any client: the parsers must never
// crash, what they accept must format and parse back to the same context,
// and a normalized tracestate must be valid again, unchanged, and within
// its size bound.
#include <cstdint>
#include <string>
#include <string_view>

#include "http/trace_context.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace weft::http::trace;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  if (auto c = ParseTraceparent(in)) {
    const std::string f = FormatTraceparent(*c);
    auto again = ParseTraceparent(f);
    if (f.size() != kTraceparentSize || !again || !(*again == *c)) __builtin_trap();
  }
  if (auto t = NormalizeTracestate(in)) {
    auto again = NormalizeTracestate(*t);
    if (t->size() > kMaxTracestateBytes || !again || *again != *t) __builtin_trap();
  }
  int decision = 0;
  if (auto c = ParseB3Single(in, &decision)) {
    if (c->sampled != (decision == 1)) __builtin_trap();
    const std::string f = FormatTraceparent(*c);
    if (!ParseTraceparent(f)) __builtin_trap();  // what B3 gave translates to W3C
  }
  // The multi-header form: the input cut in four at '|'.
  std::string_view parts[4];
  std::string_view rest = in;
  for (auto& p : parts) {
    const size_t bar = rest.find('|');
    p = rest.substr(0, bar);
    rest = bar == std::string_view::npos ? std::string_view() : rest.substr(bar + 1);
  }
  if (auto c = ParseB3Multi(parts[0], parts[1], parts[2], parts[3], &decision)) {
    if (!ParseTraceparent(FormatTraceparent(*c))) __builtin_trap();
  }
  return 0;
}
