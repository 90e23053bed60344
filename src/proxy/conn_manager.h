// The HTTP connection manager: one per downstream connection. It owns the
// connection's codec (HTTP/1.1, or HTTP/2 by ALPN or preface), takes each
// stream the codec hands out (one at a time, or side by side for HTTP/2), runs the filter chain on
// it (filter.h), forwards it upstream through an HttpUpstream (upstream/pool.h) under the route's
// retry policy (upstream/retry.h), relays the response, answers locally when a filter or the
// upstream says so, and reports every finished exchange to the stats and the access log
// (access_log.h). It owns the connection's timeouts (header read, idle, upstream request) and its
// drain.
//
// Threading: everything runs on the worker thread that accepted the
// connection; OnDeadline() is called there by the worker's watchdog.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "base/sanitizers.h"
#include "http/http1/parser.h"
#include "http/stream.h"
#include "http/trace_context.h"
#include "proxy/filter.h"
#include "proxy/hedge.h"
#include "proxy/upstream/pool.h"
#include "proxy/upstream/retry.h"
#include "proxy/worker.h"

namespace weft::proxy {

class HttpConnectionManager : public Deadline,
                              public std::enable_shared_from_this<HttpConnectionManager> {
 public:
  // `upstream` defaults to the worker's pools (HTTP/1.1 and HTTP/2); it
  // serves the exchanges of a serial codec (the unit tests pass their own).
  HttpConnectionManager(Worker* w, std::shared_ptr<ListenerRuntime> l, tcp::socket s,
                        std::unique_ptr<upstream::HttpUpstream> upstream = nullptr);
  ~HttpConnectionManager();

  // The connection's whole life: mesh TLS as the listener asks, then the
  // codec the connection speaks (HTTP/2 by ALPN or by its preface, else
  // HTTP/1.1) until the connection ends.
  asio::awaitable<void> Run();
  // Before Run: the capture listener sent the client an empty HTTP/2
  // SETTINGS frame (http2::kEmptySettings); the HTTP/2 codec takes it as
  // its own.
  void EmptySettingsSent() { empty_settings_sent_ = true; }
  // Serves the streams of `codec` until it closes (the unit tests drive it
  // with a codec of their own).
  asio::awaitable<void> Serve(http::ServerCodec& codec);

  // The connection's own deadline: the header read and keep-alive idle
  // timeouts between exchanges (an exchange has its own).
  void OnDeadline() override;

  // The per-request view of the current config, taken when a request starts.
  struct Ctx {
    std::shared_ptr<WorkerState> state;
    const ListenerConfig* lc = nullptr;
    ListenerStats* ls = nullptr;
    size_t listener_index = 0;
  };

 private:
  // One exchange: filters, upstream attempts, relay, local replies, stats.
  // A serial codec (HTTP/1.1) reuses one for every exchange of the
  // connection; a multiplexed one (HTTP/2) gets one per stream.
  class ActiveStream final : public Deadline, public HedgeOwner {
   public:
    ActiveStream(HttpConnectionManager* cm, std::unique_ptr<upstream::HttpUpstream> up);
    ~ActiveStream();
    // The request id, then the filter chain: true to forward, false with
    // x->reply_* set for a local reply. (Not a coroutine: no frame per request.)
    bool Decide(const Ctx& c, http::ServerStream& s, Exchange* x);
    // The exchange after the filters: upstream attempts, response relay.
    asio::awaitable<bool> Forward(Ctx& c, Exchange& x, http::ServerStream& s);
    // A circuit breaker tripped: 503 with x-weft-overloaded (gRPC:
    // UNAVAILABLE), counted in `overflow`. Returns false (Forward's result).
    asio::awaitable<bool> Overloaded(const Ctx& c, http::ServerStream& s, ClusterRuntime& cr,
                                     RouteStats& rs, Counter& overflow, const char* limit);
    // Answers `status` with reply_body_ as text. `close`: the connection ends
    // after (a serial codec). (The body is a member, not an argument: GCC 12
    // mishandles temporaries in the arguments of a co_await, destroying some
    // twice.)
    asio::awaitable<void> LocalReply(const Ctx& c, http::ServerStream& s, int status, bool close);
    // LocalReply to a gRPC caller: trailers-only, grpc-status for `status`
    // and reply_body_ as grpc-message.
    asio::awaitable<void> GrpcReply(const Ctx& c, http::ServerStream& s, int status);
    void OnDeadline() override;
    // Hedging (hedge.h): the delay passed; a hedge's head came.
    void OnHedgeDelay() override;
    bool OnHedgeAnswer(const http::ResponseHeaders& h) override;

    // Ready for another stream of a multiplexed connection (kept for reuse
    // with its buffers, as serial_ is for a serial codec).
    void Recycle();
    // Forgets the last exchange (a serial codec, before its next).
    void Clear() {
      start_ns_ = upstream_ns_ = 0;
      attempts_ = 0;
      overloaded_ = false;
      grpc_reply_code_ = 0;
      retry_after_.clear();
      has_hash_ = false;
      set_cookie_.clear();
      rq_bytes_ = rs_bytes_ = 0;
      upstream_addr_ = {};
      request_id_.clear();
      replay_ = Replay::kNone;
      rq_body_read_ = false;
      mirror_pending_ = false;
      outcome_later_ = false;
      hedged_ = 0;
      trace_ = sampled_ = spans_emitted_ = false;
      b3_form_ = 0;
      tracestate_.clear();
      attempt_spans_.clear();
      cur_attempt_ = hedge_attempt_ = SIZE_MAX;
      route_ = nullptr;
      cluster_name_ = cluster_peer_id_ = {};
      // A large copy is not kept for the next exchange.
      if (replay_body_.capacity() > 4096) {
        std::string().swap(replay_body_);
      } else {
        replay_body_.clear();
      }
    }
    void BuildUpstreamRequest(const Ctx& c, const http::RequestHeaders& req);
    // Copies the request body upstream. 0 done; 1 downstream failed; 2
    // upstream failed; 400 malformed; 413 over the body limit. `timed`:
    // the pump owns the exchange's deadline (not when it runs beside the
    // response relay).
    asio::awaitable<int> PumpRequestBody(const Ctx& c, http::ServerStream& down,
                                         http::ClientStream& up, bool timed);
    // The request body pumped beside the response (HTTP/2 streaming: the
    // upstream may answer before the request ends, and bidirectional
    // streams need both directions at once).
    asio::awaitable<void> DuplexPump(const Ctx& c, http::ServerStream& down,
                                     http::ClientStream& up);
    // Ends the upstream exchange (PoolUpstream::Release); with a duplex
    // pump still running, stops it and leaves the release to it.
    void ReleaseUpstream(http::ServerStream& down, bool reusable);
    // Waits for a duplex pump to return (before `down` is let go of).
    asio::awaitable<void> WaitPump();
    // Copies the response body down, starting with `first` when set (an event
    // already taken). 0 done; 1 upstream failed; 2 downstream; 3 a gRPC
    // deadline passed (DEADLINE_EXCEEDED trailers queued).
    asio::awaitable<int> PumpResponseBody(const Ctx& c, http::ClientStream& up,
                                          http::ServerStream& down, const http::BodyEvent* first);
    // Stats and the access log for a finished exchange.
    void Finish(const Ctx& c, const http::RequestHeaders* req, int status, std::string_view flags);
    // Hands the finished exchange to a tap session that wants it.
    void OfferTap(const Ctx& c, TapHub& tap, const http::RequestHeaders& req, int status,
                  std::string_view flags);
    void SetDeadline(int64_t ms);
    // The deadline while a response body flows: the idle timeout, or a
    // gRPC caller's deadline when that comes first.
    void SetBodyDeadline(const Ctx& c);
    // A gRPC call's deadline passed after its response head went down: the
    // call ends with DEADLINE_EXCEEDED trailers. False when they could not
    // be queued.
    asio::awaitable<bool> GrpcDeadlineTrailers(const Ctx& c, http::ServerStream& s);

    std::string reply_body_;
    bool timed_out_ = false;
    int64_t start_ns_ = 0;
    HttpConnectionManager* const cm_;
    Worker* const w_;
    std::unique_ptr<upstream::HttpUpstream> up_;
    http::ServerStream* s_ = nullptr;  // the exchange in progress

    // Per exchange, kept across exchanges for their capacity.
    http::RequestHeaders up_req_;
    // The request with its path normalized (http/path.h), when that changed
    // it; routing, authorization and the upstream see this one.
    http::RequestHeaders normal_req_;
    std::string normal_path_;
    std::string request_id_, forwarded_for_, client_cert_, reply_length_;
    int64_t upstream_ns_ = 0;
    int64_t attempt_ns_ = 0;   // when the current attempt started (the balancer's latency)
    int attempts_ = 0;         // upstream attempts made for this request (the access log's)
    bool overloaded_ = false;  // a circuit breaker answered: LocalReply says so in a header
    int grpc_reply_code_ = 0;  // a local reply's grpc-status for a gRPC call; 0: from the status
    std::string retry_after_;  // a rate limit answered: LocalReply sends retry-after
    // ring_hash and maglev: the request's key hash, and the cookie to set
    // when the policy's cookie was missing.
    uint64_t hash_ = 0;
    bool has_hash_ = false;
    std::string set_cookie_;
    // Takes the request's key as `h` says (header, cookie, caller address);
    // false when the request has none (a missing header).
    bool KeyHash(const mesh::HashPolicy& h, const http::RequestHeaders& req);
    uint64_t rq_bytes_ = 0, rs_bytes_ = 0;
    // The request body's copy for retries (ListenerConfig::retry_buffer_bytes):
    // kNone without a body or without a policy that could send it again;
    // kCopying while it goes up; kWhole once its end was copied; kTooLarge
    // once it outgrew the buffer (or had trailers).
    enum class Replay : uint8_t { kNone, kCopying, kWhole, kTooLarge };
    Replay replay_ = Replay::kNone;
    std::string replay_body_;
    std::string_view replay_view_[1];
    bool rq_body_read_ = false;       // some of the body was taken from the client
    bool method_replayable_ = false;  // the method (or the gRPC policy) allows sending it again
    // Copies what PumpRequestBody takes (kCopying only).
    void CopyForReplay(const Ctx& c, const http::BodyEvent& ev);
    // Whether the request can be sent again now (RetryState::set_replayable).
    bool CanReplay(bool has_body) const {
      if (!method_replayable_) return false;
      // kCopying: what came so far from the copy, then the rest from the
      // client (a retry waits for the last attempt's pump to stop first).
      return !has_body || replay_ == Replay::kWhole || replay_ == Replay::kCopying;
    }
    // Mirroring: this request's copy goes to cluster mirror_cluster_ once
    // its body has been copied whole (mirror.h).
    bool mirror_pending_ = false;
    size_t mirror_cluster_ = 0;
    int64_t mirror_timeout_ms_ = 0;
    std::string_view mirror_authority_;  // the request's (up_req_'s is set per attempt)
    void StartMirrorCopy(const Ctx& c);
    // gRPC calls with a body: the endpoint's outcome waits for the trailers.
    size_t ep_ = 0;
    bool outcome_later_ = false;
    std::string_view upstream_addr_;
    // Hedging: the second attempt (armed, out, or answered), what sending
    // it needs from Forward, and whether the first attempt's upstream was
    // let go of for it.
    std::shared_ptr<HedgeCall> hedge_;
    const Ctx* hedge_ctx_ = nullptr;
    size_t hedge_cluster_ = 0;
    bool first_released_ = false;
    // The first attempt's own outcome, for its endpoint when the hedge is
    // adopted: it gave way to the hedge (was stopped), answered
    // first_status_ (one the policy would retry), or failed.
    bool first_gave_way_ = false, first_failed_ = false;
    int first_status_ = 0;
    int hedged_ = 0;  // hedges sent for this request (0 or 1: they count as attempts)
    // Arms a hedge for the attempt on lease_.endpoint, when the route hedges
    // and the request may be sent twice.
    void ArmHedge(const Ctx& c, const RouteConfig& route, size_t cluster);
    // Whether the retry policy would retry an answer with this head.
    bool WouldRetry(const http::ResponseHeaders& h) const;
    // What to wait on before the hedge's outcome is known (null: known).
    asio::steady_timer* HedgeWait(http::ServerStream& s);
    // The hedge's answer becomes the exchange's: its upstream replaces the
    // first attempt's (on `*ep`, given up), and `*ep` is the hedge's.
    http::ResponseHeaders* AdoptHedge(ClusterRuntime& cr, size_t* ep);
    void DropHedge();

    // Tracing (conn_tracing.cc), when the config names a collector: the
    // trace context the request came with (W3C or B3) or a new one, head
    // sampling, the context that goes upstream with each attempt, and the
    // spans of a sampled exchange: a server span for the exchange, a client
    // span per attempt (hedges included), handed to the worker at Finish.
    struct AttemptSpan {
      http::trace::SpanId id{};
      int64_t start_ns = 0, end_ns = 0;  // monotonic; end 0: still open
      std::string_view endpoint;         // the instance's address (the config's)
      int status = 0;                    // the HTTP status it answered; 0: none
      int grpc_status = -1;              // a trailers-only answer's grpc-status; -1: none
      int number = 0;                    // its x-weft-attempt
      bool hedge = false;
      const char* error = nullptr;  // why it ended without an answer that counted
    };
    // Reads the request's context and decides sampling (Decide).
    void StartTrace(const Ctx& c, const http::RequestHeaders& req);
    // Whether BuildUpstreamRequest drops this field of the request (its trace
    // headers, replaced by AddTraceFields).
    bool IsTraceField(std::string_view name) const;
    void AddTraceFields();
    // The context sent upstream names span `id` (an attempt's) as parent.
    void SetUpstreamParent(const http::trace::SpanId& id);
    // An attempt starts on `endpoint` (the current one, or a hedge).
    void OpenAttemptSpan(std::string_view endpoint, bool hedge);
    void CloseAttemptSpan(size_t i, int status, const char* error, int64_t now_ns);
    void EmitSpans(const Ctx& c, const http::RequestHeaders* req, int status,
                   std::string_view flags);
    bool trace_ = false;    // tracing is on for this exchange (the config)
    bool sampled_ = false;  // and its spans are recorded
    bool spans_emitted_ = false;
    uint8_t b3_form_ = 0;  // the request's B3 headers: 0 none, 1 single, 2 multi
    http::trace::TraceId trace_id_{};
    http::trace::SpanId parent_span_{}, server_span_{};
    std::string tracestate_;
    // The values of the trace fields sent upstream (views into these).
    char traceparent_buf_[http::trace::kTraceparentSize] = {};
    char b3_buf_[51] = {};  // TRACEID32-SPANID16-S
    std::vector<AttemptSpan> attempt_spans_;
    size_t cur_attempt_ = SIZE_MAX;       // the attempt whose answer is relayed
    size_t hedge_attempt_ = SIZE_MAX;     // the hedge's, while it runs
    const RouteConfig* route_ = nullptr;  // the route the request took (null: none)
    GoldenStats* golden_ = nullptr;       // Exchange::golden, for Overloaded
    std::string_view cluster_name_, cluster_peer_id_;

    std::optional<upstream::RetryState> retry_;
    upstream::HttpUpstream::Lease lease_;
    std::string err_;
    http::HeadError herr_;
    http::BodyEvent ev_;
    // A duplex request pump: running, its result, its end signalled.
    // gRPC: the call (HTTP/2 with a gRPC content-type), its deadline, the
    // field carrying what is left of it upstream, and its outcome.
    bool grpc_ = false;
    int64_t grpc_timeout_ms_ = -1;
    size_t grpc_timeout_field_ = 0;
    size_t attempt_field_ = 0;  // x-weft-attempt in up_req_.fields
    char attempt_text_[4] = {'1', 0, 0, 0};
    std::unique_ptr<asio::steady_timer> backoff_;  // between retries (made on the first)
    int grpc_status_ = -1;
    int64_t grpc_deadline_at_ = kNever;  // the caller's deadline on the worker's clock, when sooner
    std::string grpc_timeout_, grpc_message_;
    http::HeaderList grpc_trailers_;
    bool pump_running_ = false;
    int release_after_pump_ = -1;  // ReleaseUpstream's verdict, for the pump to apply
    int pump_result_ = 0;
    std::unique_ptr<asio::steady_timer> pump_done_;
  };

  bool TakeConfig(Ctx* c);
  void SetDeadline(int64_t ms);
  // HTTP/2: each stream its own ActiveStream, side by side.
  asio::awaitable<void> ServeMultiplexed(http::ServerCodec& codec);
  asio::awaitable<void> RunStream(std::shared_ptr<HttpConnectionManager> self,
                                  std::shared_ptr<ActiveStream> x, http::ServerStream* s);
  // Plaintext: whether the client opens with the HTTP/2 preface.
  asio::awaitable<bool> SniffPreface();

  Worker* const w_;
  const std::shared_ptr<ListenerRuntime> listener_;
  io::Stream down_;
  http::ServerCodec* codec_ = nullptr;
  http1::Limits limits_;
  std::string client_ip_, client_addr_;
  std::string peer_;             // the caller's verified SPIFFE ID (mesh TLS), else ""
  ListenerStats* ls_ = nullptr;  // for cx_active of the listener that accepted us
  SourceStats* source_stats_ = nullptr;
  bool timed_out_ = false;
  bool goaway_sent_ = false;  // multiplexed: its deadline sent GOAWAY (the next one closes)
  bool first_request_ = true;
  bool empty_settings_sent_ = false;  // EmptySettingsSent
  int64_t header_timeout_ms_ = 0;
  int64_t idle_timeout_ms_ = 0;
  ActiveStream serial_;  // the exchange of a serial codec
  // Multiplexed: streams in flight, and the signal that the last ended.
  size_t active_streams_ = 0;
  std::unique_ptr<asio::steady_timer> streams_done_;
  // Multiplexed: ActiveStreams done with, kept for the next streams (at
  // most kSpareStreams; none under AddressSanitizer).
  static constexpr size_t kSpareStreams = kAsan ? 0 : 16;
  std::vector<std::shared_ptr<ActiveStream>> spare_streams_;
};

}  // namespace weft::proxy
