// Request paths as the router and authorization see them: one spelling per
// resource, so that a rule on /admin cannot be walked around with //admin,
// /%61dmin or /./admin (RFC 3986 6.2.2, as Envoy's normalize_path and
// merge_slashes do).
#pragma once

#include <string>
#include <string_view>

namespace weft::http {

enum class PathVerdict {
  kUnchanged,   // already normal: use the target as it is
  kNormalized,  // *out holds the normal form (query kept as sent)
  kRejected,    // ambiguous: *out says why (answer 400)
};

// For an origin-form target ("/a/b?q"): percent-escapes of unreserved
// characters decoded and the others' hex upper-cased, "." and ".." segments
// removed, runs of '/' merged. Escaped '/', '\' and NUL, a raw '\' and
// control bytes make the path ambiguous: different servers read them
// differently. An absolute-form target becomes its origin form, normalized;
// "*" is left alone.
PathVerdict NormalizePath(std::string_view target, std::string* out);

}  // namespace weft::http
