// The HTTP connection manager: one per downstream connection. It owns the
// connection's codec (HTTP/1.1 today), takes each stream the codec hands
// out, runs the filter chain on it (filter.h), forwards it upstream through
// an HttpUpstream (upstream/pool.h) under the route's retry policy
// (upstream/retry.h), relays the response, answers locally when a filter or
// the upstream says so, and reports every finished exchange to the stats
// and the access log (access_log.h). It owns the connection's timeouts
// (header read, idle, upstream request) and its drain.
//
// Threading: everything runs on the worker thread that accepted the
// connection; OnDeadline() is called there by the worker's watchdog.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "http/http1/parser.h"
#include "http/stream.h"
#include "proxy/filter.h"
#include "proxy/upstream/pool.h"
#include "proxy/upstream/retry.h"
#include "proxy/worker.h"

namespace weft::proxy {

class HttpConnectionManager : public Deadline,
                              public std::enable_shared_from_this<HttpConnectionManager> {
 public:
  // `upstream` defaults to the HTTP/1.1 pools of the worker.
  HttpConnectionManager(Worker* w, std::shared_ptr<ListenerRuntime> l, tcp::socket s,
                        std::unique_ptr<upstream::HttpUpstream> upstream = nullptr);
  ~HttpConnectionManager();

  // The connection's whole life: mesh TLS as the listener asks, then the
  // HTTP/1.1 codec until the connection ends.
  asio::awaitable<void> Run();
  // Serves the streams of `codec` until it closes (the unit tests drive it
  // with a codec of their own).
  asio::awaitable<void> Serve(http::ServerCodec& codec);

  void OnDeadline() override;

 private:
  // The per-request view of the current config, taken when a request starts.
  struct Ctx {
    std::shared_ptr<WorkerState> state;
    const ListenerConfig* lc = nullptr;
    ListenerStats* ls = nullptr;
    size_t listener_index = 0;
  };
  bool TakeConfig(Ctx* c);
  // The request id, then the filter chain: true to forward, false with
  // x->reply_* set for a local reply. (Not a coroutine: no frame per request.)
  bool Decide(const Ctx& c, http::ServerStream& s, Exchange* x);
  // The exchange after the filters: upstream attempts, response relay.
  asio::awaitable<bool> Forward(Ctx& c, Exchange& x, http::ServerStream& s);
  void BuildUpstreamRequest(const Ctx& c, const http::RequestHeaders& req);
  // Copies the request body upstream. 0 done; 1 downstream failed; 2
  // upstream failed; 400 malformed; 413 over the body limit.
  asio::awaitable<int> PumpRequestBody(const Ctx& c, http::ServerStream& down,
                                       http::ClientStream& up);
  // Copies the response body down, starting with `first` when set (an event
  // already taken). 0 done; 1 upstream failed; 2 downstream.
  asio::awaitable<int> PumpResponseBody(const Ctx& c, http::ClientStream& up,
                                        http::ServerStream& down, const http::BodyEvent* first);
  // Answers `status` with reply_body_ as text. `close`: the connection ends
  // after. (The body is a member, not an argument: GCC 12 mishandles
  // temporaries in the arguments of a co_await, destroying some twice.)
  asio::awaitable<void> LocalReply(const Ctx& c, http::ServerStream& s, int status, bool close);
  // Stats and the access log for a finished exchange.
  void Finish(const Ctx& c, const http::RequestHeaders* req, int status, std::string_view flags);
  void SetDeadline(int64_t ms);

  Worker* const w_;
  const std::shared_ptr<ListenerRuntime> listener_;
  io::Stream down_;
  std::unique_ptr<upstream::HttpUpstream> up_;
  http::ServerCodec* codec_ = nullptr;
  http1::Limits limits_;
  std::string client_ip_, client_addr_;
  std::string peer_;             // the caller's verified SPIFFE ID (mesh TLS), else ""
  ListenerStats* ls_ = nullptr;  // for cx_active of the listener that accepted us
  SourceStats* source_stats_ = nullptr;
  bool timed_out_ = false;
  bool first_request_ = true;
  int64_t header_timeout_ms_ = 0;

  // Per exchange, kept across exchanges for their capacity.
  http::RequestHeaders up_req_;
  std::string request_id_, forwarded_for_, client_cert_, reply_body_, reply_length_;
  int64_t start_ns_ = 0;
  int64_t upstream_ns_ = 0;
  uint64_t rq_bytes_ = 0, rs_bytes_ = 0;
  std::string_view upstream_addr_;
  std::optional<upstream::RetryState> retry_;
  upstream::HttpUpstream::Lease lease_;
  std::string err_;
  http::HeadError herr_;
  http::BodyEvent ev_;
};

}  // namespace weft::proxy
