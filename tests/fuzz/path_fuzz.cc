// Request targets come from any client: normalization must never crash,
// must be idempotent (a normal path stays as it is), and what it returns
// must hold no empty, "." or ".." segment and no escape of an unreserved
// character, so that routing and authorization see one spelling.
#include <cstdint>
#include <string>

#include "http/path.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string target(reinterpret_cast<const char*>(data), size);
  std::string out;
  const weft::http::PathVerdict v = weft::http::NormalizePath(target, &out);
  if (v == weft::http::PathVerdict::kRejected) return 0;
  const std::string normal = v == weft::http::PathVerdict::kNormalized ? out : target;
  if (normal.empty() || normal[0] != '/') return 0;  // "*" and the like
  std::string again;
  if (weft::http::NormalizePath(normal, &again) != weft::http::PathVerdict::kUnchanged)
    __builtin_trap();
  const std::string path = normal.substr(0, normal.find_first_of("?#"));
  if (path.find("//") != std::string::npos || path.find("/./") != std::string::npos ||
      path.find("/../") != std::string::npos)
    __builtin_trap();
  return 0;
}
