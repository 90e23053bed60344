#include "http/path.h"

namespace weft::http {
namespace {

int Hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool Unreserved(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

// True when `path` needs no change: no escapes, backslashes or control
// bytes, no empty, "." or ".." segments.
bool IsNormal(std::string_view path) {
  char prev = 0;
  for (size_t i = 0; i < path.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(path[i]);
    if (c == '%' || c == '\\' || c < 0x20 || c == 0x7f) return false;
    if (c == '/' && prev == '/') return false;
    if (c == '.' && prev == '/') {
      // "/." or "/.." as a whole segment
      const size_t n = i + 1 < path.size() && path[i + 1] == '.' ? i + 2 : i + 1;
      if (n == path.size() || path[n] == '/') return false;
    }
    prev = static_cast<char>(c);
  }
  return true;
}

}  // namespace

PathVerdict NormalizePath(std::string_view target, std::string* out) {
  // A fragment is the client's own business and never part of a request
  // target (RFC 9112 3.2); servers disagree on what follows a raw '#'.
  if (target.find('#') != std::string_view::npos) {
    *out = "the request target holds a '#' (a fragment), which servers read differently";
    return PathVerdict::kRejected;
  }
  if (!target.empty() && target[0] != '/') {
    // absolute-form (scheme://authority/path?query): its origin form,
    // normalized, is what routing, authorization and the upstream see.
    const size_t scheme = target.find("://");
    if (scheme == std::string_view::npos) return PathVerdict::kUnchanged;  // "*"
    const size_t slash = target.find_first_of("/?#", scheme + 3);
    std::string origin = "/";
    if (slash != std::string_view::npos) {
      if (target[slash] != '/')
        origin.append(target.substr(slash));
      else
        origin = std::string(target.substr(slash));
    }
    const PathVerdict v = NormalizePath(origin, out);
    if (v == PathVerdict::kUnchanged) *out = std::move(origin);
    return v == PathVerdict::kRejected ? v : PathVerdict::kNormalized;
  }
  if (target.empty()) return PathVerdict::kUnchanged;
  const size_t q = target.find_first_of("?#");
  const std::string_view path = target.substr(0, q);
  const std::string_view rest = q == std::string_view::npos ? std::string_view() : target.substr(q);
  if (IsNormal(path)) return PathVerdict::kUnchanged;  // most requests: no copy

  // 1. Escapes: decode the unreserved, upper-case the rest, refuse the
  //    ambiguous ones.
  std::string decoded;
  decoded.reserve(path.size());
  for (size_t i = 0; i < path.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(path[i]);
    if (c == '\\' || c < 0x20 || c == 0x7f) {
      *out = "the path holds a backslash or a control character";
      return PathVerdict::kRejected;
    }
    if (c != '%') {
      decoded.push_back(static_cast<char>(c));
      continue;
    }
    const int hi = i + 2 < path.size() ? Hex(path[i + 1]) : -1;
    const int lo = hi >= 0 ? Hex(path[i + 2]) : -1;
    if (lo < 0) {
      *out = "the path holds a '%' that is not an escape (%XX)";
      return PathVerdict::kRejected;
    }
    const unsigned char v = static_cast<unsigned char>(hi * 16 + lo);
    if (v == '/' || v == '\\' || v == 0) {
      *out = "the path holds an escaped '/', '\\' or NUL, which servers read differently";
      return PathVerdict::kRejected;
    }
    if (Unreserved(v)) {
      decoded.push_back(static_cast<char>(v));
    } else {
      static constexpr char kHex[] = "0123456789ABCDEF";
      decoded.push_back('%');
      decoded.push_back(kHex[v >> 4]);
      decoded.push_back(kHex[v & 15]);
    }
    i += 2;
  }

  // 2. Segments: merge empty ones, drop ".", and let ".." remove the one
  //    before it (never above the root). A trailing "/" (or a last "." or
  //    "..") keeps the path a directory.
  std::string norm;
  norm.reserve(decoded.size());
  size_t i = 0;
  bool dir = false;
  while (i < decoded.size()) {
    while (i < decoded.size() && decoded[i] == '/') ++i;
    if (i == decoded.size()) break;  // trailing slashes: `dir` is already set
    size_t end = decoded.find('/', i);
    if (end == std::string::npos) end = decoded.size();
    const std::string_view seg(decoded.data() + i, end - i);
    dir = end < decoded.size() || seg == "." || seg == "..";
    if (seg.empty() || seg == ".") {
      // nothing
    } else if (seg == "..") {
      const size_t slash = norm.rfind('/');
      norm.resize(slash == std::string::npos ? 0 : slash);
    } else {
      norm.push_back('/');
      norm.append(seg);
    }
    i = end;
  }
  if (norm.empty() || dir) norm.push_back('/');
  if (norm == path) return PathVerdict::kUnchanged;
  norm.append(rest);
  *out = std::move(norm);
  return PathVerdict::kNormalized;
}

}  // namespace weft::http
