// Opening a connection to one endpoint of a cluster: TCP connect with the
// cluster's timeout, the proxy's SO_MARK, TCP_NODELAY, and mesh TLS (with
// the peer's identity checked) when the endpoint runs a sidecar. Shared by
// the HTTP pools and TCP proxying, so both count the same stats the same
// way.
#pragma once

#include <asio.hpp>
#include <functional>
#include <string>
#include <string_view>

#include "proxy/upstream/cluster.h"

namespace weft::proxy {

class Worker;
class Deadline;

namespace upstream {

// Connects `conn` (fresh, endpoint set) to endpoint `conn.endpoint` of `cr`.
// `dl` is armed with the connect timeout while it waits and disarmed after;
// its OnDeadline must cancel conn.stream and set *timed_out. On success counts
// cx_total and cx_active and the endpoint's in-flight request. On failure
// counts cx_connect_fail (and tls_fail) and sets *err (closing the socket).
asio::awaitable<bool> Connect(Worker* w, ClusterRuntime& cr, std::string_view alpn,
                              UpstreamConn& conn, Deadline* dl, const bool* timed_out,
                              std::string* err);

// An awaitable that completes at once with `v`.
asio::awaitable<bool> Ready(bool v);

// Connect, then `then(ok)` before the awaiting coroutine resumes.
asio::awaitable<bool> ConnectThen(Worker* w, ClusterRuntime& cr, std::string_view alpn,
                                  UpstreamConn& conn, Deadline* dl, const bool* timed_out,
                                  std::string* err, std::function<void(bool)> then);

}  // namespace upstream
}  // namespace weft::proxy
