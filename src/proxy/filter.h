// The HTTP filter chain: what happens to an exchange between the codec and
// the upstream. Each filter sees the request head (decode direction) and
// may let it continue or stop it with a local reply; on the way back each
// may adjust the response head (encode direction), in reverse order.
//
// The chain of an HTTP listener, in order:
//   authorization    (filters.cc: the listener's AuthorizationPolicies)
//   router           (filters.cc: route, traffic split, cluster; the
//                     connection manager forwards upstream once the
//                     chain is through)
//   fault injection  (filters.cc: the route's delays and aborts)
//   rate limiting    (slot, empty)
//   mirroring        (slot, empty)
//
// Filters hold no per-exchange state: one instance serves every worker and
// exchange, and all they decide is written into the Exchange. They run on
// the worker thread that owns the exchange.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "base/random.h"
#include "http/message.h"
#include "proxy/config.h"

namespace weft::proxy {

struct Snapshot;
struct WorkerState;
struct RouteStats;
struct GoldenStats;
struct ClusterRuntime;

// One exchange as the filters see it. Views live as long as the exchange.
struct Exchange {
  // Inputs.
  const http::RequestHeaders* request = nullptr;
  std::string_view peer;         // the caller's verified SPIFFE ID; "" for plaintext
  std::string_view client_addr;  // "IP:PORT" of the downstream connection
  const ListenerConfig* lc = nullptr;
  size_t listener_index = 0;
  WorkerState* state = nullptr;  // the worker's view of the snapshot in force
  size_t worker = 0;
  Rng* rng = nullptr;
  int64_t start_ns = 0;

  // Decisions.
  const RouteConfig* route = nullptr;
  RouteStats* route_stats = nullptr;
  size_t cluster_index = 0;
  GoldenStats* golden = nullptr;  // the route's requests to that cluster (null: not counted)
  int64_t fault_delay_ms = 0;     // wait this long before forwarding (fault injection)

  // A local reply (a filter stopped the exchange).
  int reply_status = 0;
  int reply_grpc_status = 0;  // a gRPC call's grpc-status for it; 0: the one reply_status maps to
  int64_t reply_retry_after_s = 0;  // > 0: a retry-after header (and x-weft-ratelimited)
  std::string reply_body;
  bool reply_close = false;  // close the connection after it, whatever the request

  void Reply(int status, std::string body, bool close = false) {
    reply_status = status;
    reply_body = std::move(body);
    reply_close = close;
  }
};

enum class FilterStatus : uint8_t { kContinue, kStop };

class Filter {
 public:
  virtual ~Filter() = default;
  virtual std::string_view name() const = 0;
  // Decode: kStop after x.Reply().
  virtual FilterStatus OnRequestHeaders(Exchange& x) const = 0;
  // Encode: may change the response head before it goes out.
  virtual void OnResponseHeaders(Exchange&, http::ResponseHeaders&) const {}
};

// The chain every HTTP listener runs (see the top of this file).
std::span<const Filter* const> HttpFilterChain();

}  // namespace weft::proxy
