// Sniffing a captured connection's first bytes (transparent interception):
// is it an HTTP/1.x request, and which Host does it name. The bytes come
// from any application on the node, so both take anything (fuzzed).
#pragma once

#include <string>
#include <string_view>

namespace weft::proxy {

// 1: the bytes start an HTTP/1.x request; 0: too few bytes to tell; -1: not
// HTTP/1.x. CONNECT and the HTTP/2 preface count as not: they pass as TCP.
int HttpRequestStart(std::string_view bytes);

// The Host of a (possibly partial) request head: lower-case, without its
// port or a trailing dot; "" when absent, after the end of the head, or an
// IPv6 literal.
std::string HostOfRequestHead(std::string_view head);

}  // namespace weft::proxy
