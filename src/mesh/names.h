// The mesh's two name rules, one place each.
//
// A DNS label (RFC 1123, as Kubernetes names): services, namespaces and
// manifest names. They become DNS names (SERVICE.service.weft) and SPIFFE
// IDs (spiffe://TD/ns/NS/sa/SERVICE), so nothing else fits.
//
// An identifier: catalog nodes, instance and check ids, the proxy's
// listener, route and cluster names. Consul's clients send ids such as
// "service:web-1" or "web@node-2", so these allow a few more characters,
// but never one with a meaning in a URL path or a label (/ ? # % space).
#pragma once

#include <string_view>

namespace weft::mesh {

bool IsDnsLabel(std::string_view s);
inline constexpr const char* kDnsLabelRule =
    "use 1-63 lower-case letters, digits and '-', starting and ending with a letter or digit";

bool IsIdentifier(std::string_view s);
inline constexpr const char* kIdentifierRule =
    "use 1-256 letters, digits and . _ - : @ (no / ? # % or spaces)";

}  // namespace weft::mesh
