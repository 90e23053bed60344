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
    // At most 32 members, each key once.
    size_t members = t->empty() ? 0 : 1;
    for (char ch : *t) members += ch == ',';
    if (members > kMaxTracestateMembers) __builtin_trap();
  }
  int decision = 0;
  if (auto c = ParseB3Single(in, &decision)) {
    if (c->sampled != (decision == 1)) __builtin_trap();
    const std::string f = FormatTraceparent(*c);
    if (!ParseTraceparent(f)) __builtin_trap();  // what B3 gave translates to W3C
    // The ids are the ones sent (a 64-bit trace id as the low half).
    std::string_view b3 = in;
    while (!b3.empty() && (b3.front() == ' ' || b3.front() == '\t')) b3.remove_prefix(1);
    const size_t dash = b3.find('-');
    const std::string_view trace = b3.substr(0, dash);
    const std::string want = std::string(32 - trace.size(), '0') + std::string(trace);
    if (Hex(c->trace_id) != want || Hex(c->span_id) != b3.substr(dash + 1, 16)) __builtin_trap();
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
