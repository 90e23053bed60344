// Connection pools: idle upstream connections per cluster and endpoint,
// reused for the next exchange (HTTP/1.1: one exchange per connection at a
// time), and shared HTTP/2 connections (any number of exchanges at once, up
// to the peer's stream limit). A connection is pooled only after a clean exchange. Idle ones are
// watched from the next tick on, so one the upstream closes is dropped
// before a request is sent down it. Worker thread only.
//
// HttpUpstream is the connection manager's handle on upstream exchanges:
// pick-free (the caller picks the endpoint), it checks a connection out of
// the pool or connects one, and gives it back with the verdict.
#pragma once

#include <asio.hpp>
#include <functional>
#include <memory>
#include <string>

#include "http/http1/codec.h"
#include "http/http2/codec.h"
#include "http/stream.h"
#include "proxy/upstream/cluster.h"

namespace weft::proxy {

class Worker;
class Deadline;

namespace upstream {

// Takes an idle connection to endpoint `ep` (counted as reused and in
// flight), or null when there is none.
std::unique_ptr<UpstreamConn> TakeIdle(ClusterRuntime& cr, size_t ep);
// Gives back a connection in use after a clean exchange. It is pooled, or
// closed when the pool is full, the cluster retired, or `closing`.
void ReturnIdle(const std::shared_ptr<ClusterRuntime>& cr, std::unique_ptr<UpstreamConn> conn,
                bool closing);
// Closes a connection in use (counts it closed and its request done).
void Discard(ClusterRuntime& cr, std::unique_ptr<UpstreamConn> conn);
// Arms the close-watch on connections pooled since the last tick.
void WatchIdle(const std::shared_ptr<ClusterRuntime>& cr);
// Closes every idle connection (the cluster was retired by a reload).
void CloseIdle(ClusterRuntime& cr);

// One exchange's upstream connection, for the HTTP connection manager.
class HttpUpstream {
 public:
  virtual ~HttpUpstream() = default;
  struct Lease {
    http::ClientStream* stream = nullptr;
    size_t endpoint = 0;
    bool reused = false;  // an idle connection: a failure before any response byte is retried
  };
  // A pooled connection to endpoint `ep` of `cr`, without waiting; false
  // when none is idle (then Acquire).
  virtual bool TakePooled(const std::shared_ptr<ClusterRuntime>& cr, size_t ep,
                          const http1::Limits& limits, Lease* out) = 0;
  // A connection to endpoint `ep` of `cr`: from the pool, or connected now
  // (`dl` armed with the connect timeout; its OnDeadline calls Cancel()).
  virtual asio::awaitable<bool> Acquire(const std::shared_ptr<ClusterRuntime>& cr, size_t ep,
                                        const http1::Limits& limits, Deadline* dl,
                                        const bool* timed_out, Lease* out, std::string* err) = 0;
  // Ends the exchange: `reusable` pools the connection, else it closes.
  virtual void Release(bool reusable) = 0;
  // Cancels the current connection's I/O (a deadline fired).
  virtual void Cancel() = 0;
  // Cancel, and for good: an HTTP/1.1 connection is shut down, so that a
  // read that starts after this fails too (an attempt given up for another
  // one; its connection is not reused).
  virtual void Abort() { Cancel(); }
  // Between exchanges: gives back what it holds for the next one (kept
  // for reuse, it may wait long).
  virtual void Free() {}
};

// The worker's pools behind HttpUpstream: an HTTP/1.1 cluster checks a
// connection out of its idle pool (or connects one) for the exchange; an
// HTTP/2 cluster opens a stream on a shared connection to the endpoint (or
// opens one, or waits for the one being opened).
class PoolUpstream final : public HttpUpstream {
 public:
  explicit PoolUpstream(Worker* w) : w_(w) {}
  ~PoolUpstream() override { Release(false); }
  asio::awaitable<bool> Acquire(const std::shared_ptr<ClusterRuntime>& cr, size_t ep,
                                const http1::Limits& limits, Deadline* dl, const bool* timed_out,
                                Lease* out, std::string* err) override;
  bool TakePooled(const std::shared_ptr<ClusterRuntime>& cr, size_t ep, const http1::Limits& limits,
                  Lease* out) override;
  void Release(bool reusable) override;
  void Cancel() override;
  void Abort() override;
  void Free() override;

 private:
  void Bound(Lease* out);
  // HTTP/2: a stream on `h2_`; false when it has no room.
  bool OpenStream(Lease* out);
  Worker* const w_;
  http1::Limits limits_;
  std::shared_ptr<ClusterRuntime> cluster_;
  std::unique_ptr<UpstreamConn> conn_;
  http1::ClientConnection codec_;
  // HTTP/2.
  std::shared_ptr<http2::ClientConnection> h2_;
  http::ClientStream* h2_stream_ = nullptr;
  size_t h2_endpoint_ = 0;
  UpstreamConn* connecting_ = nullptr;  // a connection being opened for us (Cancel)
  Http2Pool* waiting_ = nullptr;        // waiting for another's connect (Cancel)
};

// An HTTP/2 connection to endpoint `ep` of `cr` with room for a stream:
// an open one, else a new one; when one is being opened already, waits for
// it rather than opening another. `dl` is armed with the connect timeout
// (its OnDeadline calls PoolUpstream::Cancel, which cancels *connecting or
// wakes the wait on *waiting). Counts what Connect counts, and cx_http2.
asio::awaitable<bool> AcquireHttp2(Worker* w, std::shared_ptr<ClusterRuntime> cr, size_t ep,
                                   Deadline* dl, const bool* timed_out,
                                   std::shared_ptr<http2::ClientConnection>* out,
                                   UpstreamConn** connecting, Http2Pool** waiting, std::string* err,
                                   std::function<void(bool)> then);
// An open HTTP/2 connection to `ep` with room for a stream, or null
// (dead ones are dropped on the way).
std::shared_ptr<http2::ClientConnection> FindHttp2(ClusterRuntime& cr, size_t ep);

}  // namespace upstream
}  // namespace weft::proxy
