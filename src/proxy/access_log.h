// The access log: an observer of finished exchanges. The connection manager
// hands every finished exchange (proxied, answered locally, or cut off) to
// Observe(), which writes one JSON line when the listener has a log.
//
// Flags: "-" a complete exchange, "LR" a local reply (the proxy answered
// itself), "UR" the upstream broke off mid-response, "DR" the downstream
// went away mid-response, "UT" a gRPC caller's deadline passed
// mid-response (the call ended with DEADLINE_EXCEEDED trailers).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace weft::proxy {

class Worker;
struct AccessLogSink;

// What an exchange leaves behind. Views valid for the call only.
struct StreamInfo {
  std::string_view listener;
  std::string_view client;  // "IP:PORT"
  std::string_view method;  // "" before a request head was read
  std::string_view path;
  int status = 0;
  uint64_t bytes_received = 0;  // request body bytes
  uint64_t bytes_sent = 0;      // response body bytes
  int64_t start_ns = 0;         // monotonic; 0: no request started
  int64_t upstream_ns = 0;      // until the upstream response head; 0: none
  std::string_view upstream;    // the endpoint's address
  std::string_view peer;        // verified SPIFFE ID of the caller
  std::string_view request_id;
  std::string_view flags;
  int grpc_status = -1;       // a gRPC call's grpc-status; -1: not gRPC, or none arrived
  int attempts = 0;           // upstream attempts (retries + 1); 0: none made
  std::string_view trace_id;  // 32 hex digits, with tracing on; "": none
};

// One line of JSON, newline-terminated, for `info` finished at `now_ns`
// (monotonic) and `wall_us` (UNIX time). Appends to *line.
void FormatAccessLog(const StreamInfo& info, int64_t now_ns, int64_t wall_us, std::string* line);

// Writes the line for `info` to `sink` through the worker's buffer (null
// sink: the listener logs nothing). On `w`'s thread only: the buffer is
// unguarded, flushed by the worker's tick.
void ObserveAccessLog(Worker* w, const std::shared_ptr<AccessLogSink>& sink,
                      const StreamInfo& info);

}  // namespace weft::proxy
