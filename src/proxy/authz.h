// Authorization in the proxy: the AuthorizationPolicy manifests that apply to
// the service a sidecar fronts, compiled once per config into matchers that
// evaluate a request (or a TCP connection) without allocating.
//
// The model (docs/security.md):
//   - a policy applies to its `service`, or with `service: "*"` to every
//     service in the mesh;
//   - any matching deny rule denies; else any matching allow rule allows;
//     else the default decides: the service's own policy's `default` when
//     one sets it (deny wins between two), else a mesh-wide policy's, else
//     allow;
//   - a rule matches when every condition it has matches: `from` (the
//     caller's verified SPIFFE ID: exact, "prefix*", or "*" for any mesh
//     identity; no `from` matches any caller, plaintext included), and for
//     HTTP `to.methods`, `to.paths` (exact or "prefix*") and `to.headers`
//     (exact, "prefix*", or "*" for present);
//   - on a TCP connection, an allow rule with HTTP conditions never matches
//     and a deny rule with HTTP conditions matches on `from` alone (both err
//     on the side of refusing).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "http/message.h"
#include "mesh/manifest.h"

namespace weft::proxy::authz {

struct StringMatch {
  enum Kind : uint8_t { kAny, kExact, kPrefix };
  Kind kind = kAny;
  std::string value;
  bool Match(std::string_view s) const;
  static StringMatch Parse(const std::string& pattern);  // "x", "x*", "*"
};

struct HeaderRule {
  std::string name;  // lower-case
  StringMatch value;
};

struct Rule {
  bool deny = false;
  size_t policy = 0;              // index into Policies::names
  std::vector<StringMatch> from;  // empty: any caller
  std::vector<std::string> methods;
  std::vector<StringMatch> paths;
  std::vector<HeaderRule> headers;
  bool http_only() const { return !methods.empty() || !paths.empty() || !headers.empty(); }
};

struct Decision {
  bool allow = true;
  int policy = -1;          // the deciding policy (-1: none applies)
  bool by_default = false;  // no rule matched: the policy's default decided
};

// The request facts a decision looks at. method/path empty for TCP. The views
// and `headers` need only outlive the Evaluate call.
struct Request {
  std::string_view peer;  // verified SPIFFE ID; "" for plaintext
  std::string_view method;
  std::string_view path;
  const http::HeaderList* headers = nullptr;
  bool tcp = false;
};

// Immutable once compiled: shared by every worker, Evaluate runs on any
// thread without locks.
class Policies {
 public:
  // One applicable policy as stored ("ns/name") with its spec.
  struct Input {
    std::string name;
    mesh::AuthorizationPolicySpec spec;
  };
  // `service` is the service being protected ("*" policies apply too).
  static std::shared_ptr<const Policies> Compile(const std::vector<Input>& in,
                                                 const std::string& service);

  Decision Evaluate(const Request& r) const;
  const std::vector<std::string>& names() const { return names_; }
  bool empty() const { return names_.empty(); }

 private:
  std::vector<std::string> names_;
  std::vector<Rule> deny_, allow_;
  int default_policy_ = -1;  // whose default decides; -1: allow with no policy
  bool default_deny_ = false;
};

}  // namespace weft::proxy::authz
