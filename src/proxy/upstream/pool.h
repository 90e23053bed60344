// Connection pools: idle upstream connections per cluster and endpoint,
// reused for the next exchange (HTTP/1.1: one exchange per connection at a
// time). A connection is pooled only after a clean exchange. Idle ones are
// watched from the next tick on, so one the upstream closes is dropped
// before a request is sent down it. Worker thread only.
//
// HttpUpstream is the connection manager's handle on upstream exchanges:
// pick-free (the caller picks the endpoint), it checks a connection out of
// the pool or connects one, and gives it back with the verdict.
#pragma once

#include <asio.hpp>
#include <memory>
#include <string>

#include "http/http1/codec.h"
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
};

// The HTTP/1.1 implementation over the cluster pools and upstream::Connect.
class Http1Upstream final : public HttpUpstream {
 public:
  explicit Http1Upstream(Worker* w) : w_(w) {}
  ~Http1Upstream() override { Release(false); }
  asio::awaitable<bool> Acquire(const std::shared_ptr<ClusterRuntime>& cr, size_t ep,
                                const http1::Limits& limits, Deadline* dl, const bool* timed_out,
                                Lease* out, std::string* err) override;
  bool TakePooled(const std::shared_ptr<ClusterRuntime>& cr, size_t ep, const http1::Limits& limits,
                  Lease* out) override;
  void Release(bool reusable) override;
  void Cancel() override {
    if (conn_) conn_->stream.Cancel();
  }

 private:
  void Bound(Lease* out);
  Worker* const w_;
  http1::Limits limits_;
  std::shared_ptr<ClusterRuntime> cluster_;
  std::unique_ptr<UpstreamConn> conn_;
  http1::ClientConnection codec_;
};

}  // namespace upstream
}  // namespace weft::proxy
