// Mirroring (a route's `mirror`): a copy of a request goes to another
// cluster, by a coroutine of its own, and its answer is read and dropped.
// It never delays or fails the request it copies: it starts once that
// request's body has been copied whole (at once without a body), owns
// copies of the head and body, holds none of the exchange's resources, and
// gives up at the route's timeout. Worker thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "http/http1/codec.h"
#include "http/message.h"

namespace weft::proxy {

class Worker;
struct WorkerState;

// Mirrored requests in flight on one worker, at most; beyond, a copy is
// dropped (counted in the mirror cluster's mirror_dropped).
inline constexpr size_t kMaxMirrorsInFlight = 256;

// Sends a copy of `req` (as it went upstream) with `body` (when
// req.has_body()) to an endpoint of cluster `cluster` of `state` (the
// request's snapshot, kept while the copy is out), with `authority` (the
// request's; none: the endpoint's address) suffixed
// "-shadow" as Envoy and Istio do, so that the mirror can tell copies
// apart. Counted in the cluster's mirror_sent (an answer came), mirror_failed
// (none did), mirror_dropped (over kMaxMirrorsInFlight, or no endpoint).
void StartMirror(Worker* w, const std::shared_ptr<WorkerState>& state, size_t cluster,
                 const http::RequestHeaders& req, std::string_view authority, std::string_view body,
                 int64_t timeout_ms, const http1::Limits& limits);

}  // namespace weft::proxy
