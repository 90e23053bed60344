// The config stream as a proxy's ConfigSource: follows the servers (or the
// node's agent on its unix socket), turns what arrives into ProxyConfigs
// and workload identities, and answers ACK or NACK with the proxy's verdict.
// Without an agent it also makes the proxy's key and asks the servers for
// its certificate.
#pragma once

#include <memory>

#include "proxy/config_source.h"
#include "proxy/proxy.h"

namespace weft::xds {

// A source for `weft proxy --server ...` as `opts` describe it. It calls the
// sink from the stream's thread (Install, Refused, SetIdentity) and, without
// an agent, from the certificate manager's (SetIdentity); Stop() joins both,
// so never call it from inside a sink method.
std::unique_ptr<proxy::ConfigSource> NewProxySource(const proxy::ProxyOptions& opts);

}  // namespace weft::xds
