#include "proxy/conn_manager.h"

#include <fmt/format.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/net.h"
#include "base/strings.h"
#include "base/time.h"
#include "http/grpc.h"
#include "http/http1/codec.h"
#include "http/http2/codec.h"
#include "http/path.h"
#include "io/asio.h"
#include "proxy/access_log.h"
#include "proxy/mirror.h"
#include "proxy/router.h"
#include "proxy/tls.h"

namespace weft::proxy {
namespace {

using namespace std::string_view_literals;
using upstream::AttemptFailure;

// The reject reason a local reply is counted under; kCount: not a refusal
// of the request (the upstream failed).
Reject RejectFor(int status) {
  switch (status) {
    case 400:
      return Reject::kBadRequest;
    case 408:
      return Reject::kHeaderTimeout;
    case 413:
      return Reject::kBodyTooLarge;
    case 414:
      return Reject::kUriTooLong;
    case 431:
      return Reject::kHeadersTooLarge;
    case 404:
      return Reject::kNoRoute;
    case 403:
      return Reject::kDenied;
    case 405:
    case 501:
    case 505:
      return Reject::kUnsupported;
    default:
      return Reject::kCount;
  }
}

// A random (version 4) UUID, formatted without allocation once `out` has
// its capacity.
void MakeRequestId(Rng& rng, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  uint64_t a = rng.Next(), b = rng.Next();
  a = (a & ~0xf000ULL) | 0x4000ULL;              // version 4
  b = (b & ~(0xc0ULL << 56)) | (0x80ULL << 56);  // RFC 4122 variant
  out->resize(36);
  char* p = out->data();
  int n = 0;
  for (int i = 0; i < 32; ++i) {
    if (i == 8 || i == 12 || i == 16 || i == 20) p[n++] = '-';
    uint64_t word = i < 16 ? a : b;
    p[n++] = kHex[(word >> (60 - 4 * (i % 16))) & 15];
  }
}

const http::ResponseHeaders kContinue = [] {
  http::ResponseHeaders h;
  h.status = 100;
  return h;
}();

}  // namespace

HttpConnectionManager::HttpConnectionManager(Worker* w, std::shared_ptr<ListenerRuntime> l,
                                             tcp::socket s,
                                             std::unique_ptr<upstream::HttpUpstream> upstream)
    : w_(w), listener_(std::move(l)), down_(std::move(s)), serial_(this, std::move(upstream)) {
  w_->Track(this);
  w_->ConnectionOpened();
  ++listener_->active;
  asio::error_code ec;
  tcp::endpoint peer = down_.socket().remote_endpoint(ec);
  if (!ec) {
    client_ip_ = peer.address().to_string();
    client_addr_ = JoinHostPort(client_ip_, peer.port());
  }
}

HttpConnectionManager::~HttpConnectionManager() {
  w_->Untrack(this);
  w_->ConnectionClosed();
  --listener_->active;
  if (ls_) ls_->cx_active.Dec();
}

void HttpConnectionManager::OnDeadline() {
  if (codec_ && codec_->multiplexed() && !goaway_sent_) {
    // HTTP/2 idle or draining: GOAWAY first; the streams in flight finish,
    // and the connection ends with the last (or at the next deadline).
    goaway_sent_ = true;
    codec_->Drain();
    SetDeadline(idle_timeout_ms_);
    return;
  }
  timed_out_ = true;
  down_.Cancel();
}

void HttpConnectionManager::SetDeadline(int64_t ms) { deadline_ms = ms > 0 ? Now() + ms : kNever; }

HttpConnectionManager::ActiveStream::ActiveStream(HttpConnectionManager* cm,
                                                  std::unique_ptr<upstream::HttpUpstream> up)
    : cm_(cm), w_(cm->w_), up_(std::move(up)) {
  if (!up_) up_ = std::make_unique<upstream::PoolUpstream>(w_);
  w_->Track(this);
}

HttpConnectionManager::ActiveStream::~ActiveStream() {
  up_.reset();  // gives its connection back before the connection's counters go
  w_->Untrack(this);
}

void HttpConnectionManager::ActiveStream::OnDeadline() {
  timed_out_ = true;
  if (s_) s_->CancelWaits();
  up_->Cancel();
  if (hedge_) hedge_->Cancel();
}

void HttpConnectionManager::ActiveStream::Recycle() {
  Clear();
  up_->Free();  // a spare may wait long: its upstream buffers go back now
  deadline_ms = kNever;
  timed_out_ = false;
  s_ = nullptr;
  reply_body_.clear();
  retry_.reset();
  grpc_ = false;
  grpc_status_ = -1;
  grpc_timeout_ms_ = -1;
  grpc_deadline_at_ = kNever;
  grpc_timeout_field_ = 0;
  pump_running_ = false;
  release_after_pump_ = -1;
  pump_result_ = 0;
}

void HttpConnectionManager::ActiveStream::SetBodyDeadline(const Ctx& c) {
  SetDeadline(c.lc->idle_timeout_ms);
  if (grpc_deadline_at_ < deadline_ms) deadline_ms = grpc_deadline_at_;
}

asio::awaitable<bool> HttpConnectionManager::ActiveStream::GrpcDeadlineTrailers(
    const Ctx& c, http::ServerStream& s) {
  grpc_status_ = 4;  // DEADLINE_EXCEEDED
  reply_length_.assign("4");
  grpc_message_.clear();
  http::grpc::EncodeMessage(
      fmt::format("gRPC deadline of {} ms exceeded during the response from {}", grpc_timeout_ms_,
                  upstream_addr_),
      &grpc_message_);
  grpc_trailers_.clear();
  grpc_trailers_.push_back({"grpc-status"sv, reply_length_});
  grpc_trailers_.push_back({"grpc-message"sv, grpc_message_});
  timed_out_ = false;
  SetDeadline(c.lc->idle_timeout_ms);
  const bool ok = co_await s.SendBody({}, true, &grpc_trailers_);
  deadline_ms = kNever;
  co_return ok && !timed_out_;
}

void HttpConnectionManager::ActiveStream::SetDeadline(int64_t ms) {
  deadline_ms = ms > 0 ? Now() + ms : kNever;
}

bool HttpConnectionManager::TakeConfig(Ctx* c) {
  // Copy the snapshot pointer only when it changed (a reload): the request
  // path then touches no shared reference count.
  if (c->state != w_->state()) c->state = w_->state();
  const auto& listeners = c->state->snap->cfg->listeners;
  size_t index = listener_->index;
  if (listener_->removed) {
    // The socket that accepted us is gone (its address changed or it was
    // removed): keep serving under the listener of the same name, if any.
    index = listeners.size();
    for (size_t i = 0; i < listeners.size(); ++i) {
      if (listeners[i].name == listener_->name && listeners[i].protocol == Protocol::kHttp)
        index = i;
    }
    if (index == listeners.size()) return false;
  }
  c->listener_index = index;
  c->lc = &listeners[index];
  c->ls = &c->state->snap->listener_stats[index]->at(w_->id());
  return true;
}

asio::awaitable<bool> HttpConnectionManager::SniffPreface() {
  // An HTTP/1.1 request never starts with "PRI": the first bytes that differ
  // from the preface settle it. Peeked, so HTTP/1.1's codec reads them again.
  char buf[http2::kPreface.size()];
  for (;;) {
    auto [ec, n] = co_await down_.socket().async_receive(asio::buffer(buf, sizeof buf),
                                                         tcp::socket::message_peek, kNoThrow);
    if (ec || n == 0) co_return false;  // the HTTP/1.1 codec sees the close
    const std::string_view got(buf, n);
    if (got != http2::kPreface.substr(0, n)) co_return false;
    if (n == http2::kPreface.size()) co_return true;
    // A prefix of the preface: wait for the rest (rare: one segment brings it).
    asio::steady_timer t(down_.socket().get_executor(), std::chrono::milliseconds(1));
    co_await t.async_wait(kNoThrow);
    if (timed_out_) co_return false;
  }
}

asio::awaitable<void> HttpConnectionManager::Run() {
  auto self = shared_from_this();
  Ctx c;
  if (!TakeConfig(&c)) co_return;
  ls_ = c.ls;
  ls_->cx_total.Inc();
  ls_->cx_active.Inc();
  if (!co_await AcceptMeshTls(w_, *c.lc, *c.ls, down_, this, &peer_)) {
    down_.Close();
    co_return;
  }
  bool h2 = false;
  if (down_.tls()) {
    h2 = NegotiatedAlpn(down_.ssl()) == http2::kAlpn;
  } else {
    SetDeadline(c.lc->header_read_timeout_ms);
    h2 = co_await SniffPreface();
  }
  if (h2) {
    ls_->cx_http2.Inc();
    auto codec = std::make_shared<http2::ServerConnection>(
        down_, c.lc->http2,
        http2::Counters{&ls_->bytes_in, &ls_->bytes_out, ls_->http2_violations.data(),
                        &ls_->http2_goaways},
        client_addr_);
    if (empty_settings_sent_) codec->EmptySettingsSent();
    if (codec->Init()) {
      codec->Start();
      co_await Serve(*codec);
      // What is queued (a GOAWAY, the last responses) goes out before the
      // close; a peer that does not take it is cut at the next deadline.
      codec->Drain();
      goaway_sent_ = true;
      if (deadline_ms == kNever) SetDeadline(c.lc->idle_timeout_ms);
      co_await codec->Done();
      deadline_ms = kNever;
      codec->Abort("connection done");
    }
  } else {
    // The first byte of a request starts the header-read clock.
    http1::ServerConnection codec(down_, limits_, {&ls_->bytes_in, &ls_->bytes_out}, [this] {
      idle = false;
      SetDeadline(header_timeout_ms_);
    });
    co_await Serve(codec);
  }
  down_.ShutdownSend();
  down_.Close();
}

asio::awaitable<void> HttpConnectionManager::Serve(http::ServerCodec& codec) {
  codec_ = &codec;
  Ctx c;
  if (!TakeConfig(&c)) co_return;
  if (!peer_.empty() && c.state->snap->registry)
    source_stats_ = &c.state->snap->registry->Source(c.lc->name, peer_)->at(w_->id());
  if (codec.multiplexed()) {
    co_await ServeMultiplexed(codec);
    co_return;
  }
  ActiveStream& x_ = serial_;
  for (;;) {
    if (!TakeConfig(&c)) co_return;
    limits_ = c.lc->limits;
    header_timeout_ms_ = c.lc->header_read_timeout_ms;
    idle = true;
    timed_out_ = false;
    x_.Clear();
    SetDeadline(first_request_ ? c.lc->header_read_timeout_ms : c.lc->idle_timeout_ms);
    http::Accepted a = co_await codec.NextStream();
    deadline_ms = kNever;
    idle = false;
    if (a.stream == nullptr) co_return;
    if (a.error.reason != http::ResetReason::kNone) {
      // A head that never completed.
      int status = a.error.status;
      std::string body;
      if (status == 0) {
        if (!timed_out_) co_return;  // the client went away mid-head
        status = 408;
        body = "request header read timeout";
      } else if (a.error.reason == http::ResetReason::kOverflow) {
        body = std::string(a.error.detail);
      } else {
        LOG_DEBUG("listener {}: {} from {}: {}", c.lc->name, status, client_addr_, a.error.detail);
        body = fmt::format("bad request: {}", a.error.detail);
      }
      x_.reply_body_ = std::move(body);
      co_await x_.LocalReply(c, *a.stream, status, true);
      codec.StreamDone(a.stream, false);
      co_return;
    }
    // The config may have been reloaded while we waited: the request is
    // served under the config current when its head arrived.
    if (!TakeConfig(&c)) co_return;
    Exchange x;
    bool ok;
    if (!x_.Decide(c, *a.stream, &x)) {
      x_.reply_body_ = std::move(x.reply_body);
      x_.grpc_reply_code_ = x.reply_grpc_status;
      if (x.reply_retry_after_s > 0)
        AppendDecimal(&x_.retry_after_, static_cast<uint64_t>(x.reply_retry_after_s));
      co_await x_.LocalReply(c, *a.stream, x.reply_status, x.reply_close);
      ok = codec.open();
    } else {
      ok = co_await x_.Forward(c, x, *a.stream);
      // An exchange cut short before Finish (the client left) still has
      // its spans: the next hop's name this one's attempt as parent.
      if (x_.sampled_ && !x_.spans_emitted_) x_.EmitSpans(c, &a.stream->request(), 0, "DC");
    }
    codec.StreamDone(a.stream, ok);
    if (!ok || !codec.open() || w_->draining()) co_return;
    first_request_ = false;
  }
}

asio::awaitable<void> HttpConnectionManager::ServeMultiplexed(http::ServerCodec& codec) {
  auto self = shared_from_this();
  streams_done_ = std::make_unique<asio::steady_timer>(w_->io());
  streams_done_->expires_at(asio::steady_timer::time_point::max());
  Ctx c;
  for (;;) {
    if (!TakeConfig(&c)) break;
    limits_ = c.lc->limits;
    idle_timeout_ms_ = c.lc->idle_timeout_ms;
    // Always "idle" to the worker's drain: it may end a multiplexed
    // connection (with GOAWAY) whatever its streams are doing.
    idle = true;
    if (active_streams_ == 0) SetDeadline(c.lc->idle_timeout_ms);
    http::Accepted a = co_await codec.NextStream();
    if (a.stream == nullptr) break;
    if (!goaway_sent_) deadline_ms = kNever;
    ++active_streams_;
    std::shared_ptr<ActiveStream> x;
    if (spare_streams_.empty()) {
      x = std::make_shared<ActiveStream>(this, nullptr);
    } else {
      x = std::move(spare_streams_.back());
      spare_streams_.pop_back();
    }
    asio::co_spawn(w_->io(), RunStream(self, std::move(x), a.stream), asio::detached);
    if (w_->draining()) codec.Drain();
  }
  deadline_ms = kNever;
  // The streams in flight finish (a GOAWAY lets them; a dead connection
  // has reset them all).
  while (active_streams_ > 0) co_await streams_done_->async_wait(kNoThrow);
}

asio::awaitable<void> HttpConnectionManager::RunStream(std::shared_ptr<HttpConnectionManager> self,
                                                       std::shared_ptr<ActiveStream> x,
                                                       http::ServerStream* s) {
  Ctx c;
  bool ok = false;
  if (TakeConfig(&c)) {
    // The exchange, as Serve runs it (here rather than in a coroutine of
    // its own: one frame less per stream).
    Exchange ex;
    if (!x->Decide(c, *s, &ex)) {
      x->reply_body_ = std::move(ex.reply_body);
      x->grpc_reply_code_ = ex.reply_grpc_status;
      if (ex.reply_retry_after_s > 0)
        AppendDecimal(&x->retry_after_, static_cast<uint64_t>(ex.reply_retry_after_s));
      co_await x->LocalReply(c, *s, ex.reply_status, ex.reply_close);
      ok = true;
    } else {
      ok = co_await x->Forward(c, ex, *s);
      if (x->sampled_ && !x->spans_emitted_) x->EmitSpans(c, &s->request(), 0, "DC");  // see Serve
    }
  }
  if (x->pump_running_) co_await x->WaitPump();  // it reads from `s`
  codec_->StreamDone(s, ok);
  if (x.use_count() == 1 && spare_streams_.size() < kSpareStreams) {
    x->Recycle();
    spare_streams_.push_back(std::move(x));
  } else {
    x.reset();
  }
  if (--active_streams_ == 0) {
    streams_done_->cancel();
    if (w_->draining()) {
      codec_->Drain();
    } else if (!goaway_sent_) {
      SetDeadline(idle_timeout_ms_);
    }
  }
}

bool HttpConnectionManager::ActiveStream::Decide(const Ctx& c, http::ServerStream& s, Exchange* x) {
  const http::RequestHeaders& req = s.request();
  start_ns_ = MonoNanos();
  upstream_ns_ = 0;
  rq_bytes_ = rs_bytes_ = 0;
  upstream_addr_ = {};
  if (!req.request_id.empty() && req.request_id.size() <= 128) {
    request_id_.assign(req.request_id);
  } else {
    MakeRequestId(w_->rng(), &request_id_);
  }
  if (c.state->snap->spans) StartTrace(c, req);
  // gRPC runs on HTTP/2 only: HTTP/1.1 requests skip the field scan.
  grpc_ = req.version == http::Version::kHttp2 && http::grpc::IsGrpc(req);
  grpc_status_ = -1;
  grpc_timeout_ms_ = -1;
  if (grpc_) {
    for (const http::HeaderField& f : req.fields) {
      if (f.name == "grpc-timeout"sv) grpc_timeout_ms_ = http::grpc::ParseTimeout(f.value);
    }
  }
  if (req.method == "CONNECT"sv) {
    x->Reply(405, "CONNECT is not supported by this listener", true);
    return false;
  }
  // One spelling per path before routing and authorization: a rule on
  // /admin is not walked around with //admin, /%61dmin or /./admin.
  x->request = &req;
  switch (http::NormalizePath(req.path, &normal_path_)) {
    case http::PathVerdict::kUnchanged:
      break;
    case http::PathVerdict::kNormalized:
      normal_req_ = req;
      normal_req_.path = normal_path_;
      x->request = &normal_req_;
      break;
    case http::PathVerdict::kRejected:
      c.ls->Rejected(Reject::kAmbiguousPath);
      LOG_WARN_LIMITED("listener {}: {} from {} refused: {}", c.lc->name, req.method,
                       cm_->client_ip_, normal_path_);
      x->Reply(400, normal_path_);
      return false;
  }
  x->peer = cm_->peer_;
  x->client_addr = cm_->client_addr_;
  x->lc = c.lc;
  x->listener_index = c.listener_index;
  x->state = c.state.get();
  x->worker = w_->id();
  x->rng = &w_->rng();
  x->start_ns = start_ns_;
  for (const Filter* f : HttpFilterChain()) {
    if (f->OnRequestHeaders(*x) == FilterStatus::kStop) {
      route_ = x->route;
      return false;
    }
  }
  route_ = x->route;
  return true;
}

void HttpConnectionManager::ActiveStream::BuildUpstreamRequest(const Ctx& c,
                                                               const http::RequestHeaders& req) {
  up_req_.method = req.method;
  up_req_.scheme = req.scheme;
  up_req_.authority = req.authority;
  up_req_.path = req.path;
  up_req_.body = req.body;
  up_req_.content_length = req.content_length;
  up_req_.version = req.version;
  up_req_.upgrade = req.upgrade;
  // Fields the client's Connection names are dropped here, not by the
  // encoder: a client must not be able to strip the fields the proxy adds.
  up_req_.connection = {};
  const std::string_view named = http::ExtraConnectionNames(req.connection);
  up_req_.fields.clear();
  for (const http::HeaderField& f : req.fields) {
    const std::string_view n = f.name;
    if (!named.empty() && http::NamedInConnection(named, n)) continue;
    if (trace_ && IsTraceField(n)) continue;  // replaced below
    switch (n.size()) {
      case 6:
        if (IEquals(n, "expect")) continue;  // answered by the proxy itself
        break;
      case 12:
        if (IEquals(n, "x-request-id")) continue;
        if (grpc_timeout_ms_ >= 0 && n == "grpc-timeout"sv) continue;  // re-added, reduced
        break;
      case 14:
        if (IEquals(n, "x-weft-attempt")) continue;  // this proxy's count, not a client's
        break;
      case 15:
        if (IEquals(n, "x-forwarded-for")) continue;
        break;
      case 17:
        if (IEquals(n, "x-forwarded-proto")) continue;
        break;
      case 23:
        // Only this proxy vouches for a caller's identity, and only for a
        // peer it verified (below): a client's own XFCC never passes, on
        // any listener (mesh, permissive plaintext, loopback, edge).
        if (IEquals(n, "x-forwarded-client-cert")) continue;
        break;
      default:
        break;
    }
    up_req_.fields.push_back(f);
  }
  forwarded_for_.clear();
  if (!req.forwarded_for.empty()) forwarded_for_.append(req.forwarded_for).append(", "sv);
  forwarded_for_.append(cm_->client_ip_);
  up_req_.fields.push_back({"x-forwarded-for"sv, forwarded_for_});
  up_req_.fields.push_back({"x-forwarded-proto"sv, "http"sv});
  up_req_.fields.push_back({"x-request-id"sv, request_id_});
  if (trace_) AddTraceFields();
  // Which attempt this is (1 for the first), set per attempt (Forward); a
  // mirrored copy made before the first attempt carries the 1.
  attempt_field_ = up_req_.fields.size();
  up_req_.fields.push_back({"x-weft-attempt"sv, "1"sv});
  if (grpc_timeout_ms_ >= 0) {
    grpc_timeout_field_ = up_req_.fields.size();
    up_req_.fields.push_back({"grpc-timeout"sv, {}});  // set per attempt (Forward)
  }
  if (!cm_->peer_.empty()) {
    // The verified caller, for the application (Envoy's XFCC shape).
    client_cert_.assign("By="sv);
    if (const auto& tls = w_->tls()) client_cert_.append(tls->identity().spiffe_id);
    client_cert_.append(";URI="sv).append(cm_->peer_);
    up_req_.fields.push_back({"x-forwarded-client-cert"sv, client_cert_});
  }
}

asio::awaitable<bool> HttpConnectionManager::ActiveStream::Forward(Ctx& c, Exchange& x,
                                                                   http::ServerStream& s) {
  const http::RequestHeaders& req = s.request();
  s_ = &s;
  const std::shared_ptr<ClusterRuntime>& cluster = c.state->clusters[x.cluster_index];
  ClusterRuntime& cr = *cluster;
  RouteStats& rs = *x.route_stats;
  const int64_t timeout_ms = x.route->timeout_ms ? x.route->timeout_ms : c.lc->request_timeout_ms;
  // A gRPC caller's deadline, when it is the sooner one, bounds the wait
  // for the response head (and travels upstream reduced by the time spent).
  const bool grpc_deadline = grpc_timeout_ms_ >= 0 && grpc_timeout_ms_ < timeout_ms;
  const auto elapsed_us = [this] { return (MonoNanos() - start_ns_) / 1000; };
  grpc_deadline_at_ =
      grpc_deadline ? Now() + std::max<int64_t>(grpc_timeout_ms_ - elapsed_us() / 1000, 1) : kNever;
  // A failure the proxy answers itself (a gRPC caller gets 200 and the
  // matching grpc-status: that is what the counters see).
  const auto fail = [&](int status) {
    const int sent = grpc_ ? 200 : status;
    cr.stats->http.Record(sent, 0);
    rs.http.Record(sent, elapsed_us());
    if (x.golden) x.golden->http.Record(sent, elapsed_us());
    if (grpc_) {
      const int code = http::grpc::CodeForHttpStatus(status);
      cr.stats->http.RecordGrpc(code);
      rs.http.RecordGrpc(code);
      if (x.golden) x.golden->http.RecordGrpc(code);
    }
  };
  golden_ = x.golden;
  cluster_name_ = cr.cfg.name;  // spans and tap
  cluster_peer_id_ = cr.cfg.peer_id;
  BuildUpstreamRequest(c, *x.request);  // the normalized path, when it changed
  if (x.fault_delay_ms > 0) {
    // Fault injection: the route's delay, before anything goes upstream.
    if (!backoff_) backoff_ = std::make_unique<asio::steady_timer>(w_->io());
    backoff_->expires_after(std::chrono::milliseconds(x.fault_delay_ms));
    co_await backoff_->async_wait(kNoThrow);
  }

  // Pick, connect (or reuse), send, and read the response head, under the
  // retry policy (upstream/retry.h).
  // Per-exchange state lives in members, not in this frame: the frame stays
  // small enough for Asio's per-thread recycling (a larger one is a heap
  // allocation per request).
  {
    const upstream::RetryPolicy policy =
        upstream::RetryPolicy::For(*x.route, cr.cfg.endpoints.size());
    // Idempotent requests may be sent again; gRPC calls too when the policy
    // names gRPC statuses (a call that failed that way did not run). A body
    // is copied as it goes up, when it may fit the buffer.
    // (A route that hedges says its gRPC calls may run twice, as gRPC's own
    // hedging policy does.)
    method_replayable_ = upstream::Idempotent(req.method) ||
                         (grpc_ && ((policy.on & kRetryOnGrpc) || x.route->hedge.any()));
    // Mirroring: a share of the route's requests (their bodies copied too).
    const MirrorConfig& mirror = x.route->mirror;
    mirror_pending_ =
        mirror.any() && static_cast<double>(w_->rng().Below(1000000)) < mirror.percent * 10000.0;
    const uint64_t buffer = c.lc->retry_buffer_bytes;
    const bool fits =
        buffer > 0 && !(req.body == http::BodyKind::kLength && req.content_length > buffer);
    if (req.has_body() && fits && (method_replayable_ || mirror_pending_))
      replay_ = Replay::kCopying;
    retry_.emplace(policy, CanReplay(req.has_body()), &cr.budget);
    if (mirror_pending_) {
      mirror_cluster_ = mirror.cluster_index;
      mirror_timeout_ms_ = timeout_ms;
      mirror_authority_ = req.authority;
      if (!req.has_body()) {
        StartMirrorCopy(c);  // the head as it goes upstream (up_req_)
      } else if (!fits) {
        // Too large to copy: this one is not mirrored.
        mirror_pending_ = false;
        c.state->clusters[mirror_cluster_]->stats->mirror_dropped.Inc();
      }  // else CopyForReplay starts it once the body is whole
    }
  }
  cr.budget.Deposit(start_ns_ / 1000000000);  // the request's start: no clock read
  upstream::RetryState& retry = *retry_;
  // Consistent hashing: the request's key picks the endpoint (a retry goes
  // to the next one on the ring).
  if (cr.cfg.lb == LbPolicy::kRingHash || cr.cfg.lb == LbPolicy::kMaglev)
    has_hash_ = KeyHash(cr.cfg.hash, req);
  // Circuit breakers: requests in flight to this cluster, and of those the
  // ones being retried, counted until Forward returns.
  struct InFlight {
    uint32_t* n = nullptr;
    ~InFlight() {
      if (n) --*n;
    }
  };
  if (cr.rq_active >= cr.lim_requests)
    co_return co_await Overloaded(c, s, cr, rs, cr.stats->rq_overflow, "max_requests");
  ++cr.rq_active;
  InFlight in_flight{&cr.rq_active};
  InFlight retrying;
  struct HedgeGuard {  // a hedge never outlives the exchange
    ActiveStream* x;
    ~HedgeGuard() {
      if (x->hedge_) x->DropHedge();
    }
  } hedge_guard{this};
  upstream::HttpUpstream::Lease& lease = lease_;
  lease = {};
  http::ResponseHeaders* resp = nullptr;
  std::string& err = err_;
  err.clear();
  bool continue_sent = false;
  while (resp == nullptr && retry.attempts_left()) {
    if (retry.attempts() > 0 && retrying.n == nullptr) {
      if (cr.retries_active >= cr.lim_retries)
        co_return co_await Overloaded(c, s, cr, rs, cr.stats->rq_retry_overflow, "max_retries");
      ++cr.retries_active;
      retrying.n = &cr.retries_active;
    }
    if (retry.attempts() > 0) {
      // A retry: once the last attempt's request pump has stopped (it
      // releases that upstream), and after an exponential, jittered pause,
      // so that retries do not arrive in lockstep at an upstream that is
      // struggling. (One co_await for both: Forward's frame stays small.)
      int64_t pause = retry.BackoffMs(static_cast<double>(w_->rng().Below(1u << 20)) /
                                      static_cast<double>(1u << 20));
      for (;;) {
        asio::steady_timer* wait = nullptr;
        if (pump_running_) {
          wait = pump_done_.get();
        } else if (pause > 0) {
          if (!backoff_) backoff_ = std::make_unique<asio::steady_timer>(w_->io());
          backoff_->expires_after(std::chrono::milliseconds(pause));
          pause = 0;
          wait = backoff_.get();
        }
        if (!wait) break;
        co_await wait->async_wait(kNoThrow);
      }
    }
    retry.Started();
    attempts_ = retry.attempts() + hedged_;
    attempt_text_[0] = static_cast<char>('0' + std::min(attempts_, 9));
    up_req_.fields[attempt_field_].value = std::string_view(attempt_text_, 1);
    size_t ep = cr.Pick(retry.next_exclude(), has_hash_ ? &hash_ : nullptr);
    const SocketAddress& addr = cr.cfg.endpoints[ep].address;
    if (sampled_) {
      OpenAttemptSpan(addr.text, false);
      SetUpstreamParent(attempt_spans_[cur_attempt_].id);  // this attempt's span
    }
    timed_out_ = false;
    bool have = up_->TakePooled(cluster, ep, cm_->limits_, &lease);
    if (!have) {
      // A new connection (or a wait for one): within the circuit breakers.
      // (HTTP/1.1: each acquisition opens one; those being opened count.)
      const bool opens = !cr.speaks_h2[ep];
      if (opens && cr.stats->cx_active.Get() + cr.cx_opening >= cr.lim_connections)
        co_return co_await Overloaded(c, s, cr, rs, cr.stats->cx_overflow, "max_connections");
      if (cr.rq_pending >= cr.lim_pending)
        co_return co_await Overloaded(c, s, cr, rs, cr.stats->rq_pending_overflow,
                                      "max_pending_requests");
      ++cr.rq_pending;
      cr.cx_opening += opens;
      have = co_await up_->Acquire(cluster, ep, cm_->limits_, this, &timed_out_, &lease, &err);
      cr.cx_opening -= opens;
      --cr.rq_pending;
    }
    if (!have) {
      cr.Failed(ep, MonoNanos());
      if (cr.cfg.endpoints[ep].mtls) {
        LOG_WARN("listener {}: {}", c.lc->name, err);  // mesh TLS: an identity problem
      } else {
        LOG_DEBUG("listener {}: {}", c.lc->name, err);
      }
      if (retry.ShouldRetry(AttemptFailure::kConnect, ep, false)) {
        cr.stats->rq_retry.Inc();
        continue;
      }
      if (retry.budget_exhausted()) cr.stats->rq_retry_budget_exhausted.Inc();
      break;
    }
    // The balancer times the exchange from here: a new connection's
    // handshake is paid once and says little about how the endpoint answers.
    attempt_ns_ = MonoNanos();
    upstream_addr_ = addr.text;
    up_req_.authority = req.authority.empty() ? std::string_view(addr.text) : req.authority;
    if (!continue_sent && req.expect_continue && req.has_body()) {
      // The client waits for a go-ahead before its body; the upstream is ready.
      continue_sent = true;
      SetDeadline(c.lc->idle_timeout_ms);
      if (!co_await s.SendInterim(kContinue)) {
        ReleaseUpstream(s, false);
        co_return false;
      }
    }
    http::ClientStream& us = *lease.stream;
    int r = 0;
    if (grpc_timeout_ms_ >= 0) {
      const int64_t left = grpc_timeout_ms_ - elapsed_us() / 1000;
      if (left <= 0) {
        up_->Release(false);
        fail(504);
        reply_body_ = fmt::format("gRPC deadline of {} ms exceeded before the call was sent",
                                  grpc_timeout_ms_);
        co_await LocalReply(c, s, 504, false);
        co_return false;
      }
      http::grpc::FormatTimeout(left, &grpc_timeout_);
      up_req_.fields[grpc_timeout_field_].value = grpc_timeout_;
    }
    SetDeadline(c.lc->idle_timeout_ms);
    bool sent;
    if (!req.has_body()) {
      sent = co_await us.SendHeaders(up_req_, true);
    } else if (us.QueueHeaders(up_req_)) {
      sent = true;
    } else {
      sent = co_await us.SendHeaders(up_req_, false);
    }
    // A retry of a request whose body was (partly) taken from the client:
    // the body again from its copy, all of it, or what came so far with the
    // rest pumped from the client as on a first attempt.
    const bool replay_whole = replay_ == Replay::kWhole && rq_body_read_;
    if (sent && rq_body_read_ && (replay_whole || replay_ == Replay::kCopying)) {
      replay_view_[0] = replay_body_;
      sent = co_await us.SendBody(std::span<const std::string_view>(replay_view_, 1), replay_whole,
                                  nullptr);
    }
    if (!sent) {
      r = 2;
    } else if (replay_whole) {
      // The whole body went up from its copy.
    } else if (req.body == http::BodyKind::kStream && cm_->codec_->multiplexed()) {
      // A stream: its body goes up beside the response (see DuplexPump).
      if (!pump_done_) {
        pump_done_ = std::make_unique<asio::steady_timer>(w_->io());
        pump_done_->expires_at(asio::steady_timer::time_point::max());
      }
      pump_running_ = true;
      pump_result_ = 0;
      asio::co_spawn(w_->io(), DuplexPump(c, s, us), asio::detached);
    } else if (req.has_body()) {
      r = co_await PumpRequestBody(c, s, us, true);
    }
    if (r == 2 && !lease.reused) cr.Failed(ep, MonoNanos());
    retry.set_replayable(CanReplay(req.has_body()));
    if (r == 2 && retry.ShouldRetry(AttemptFailure::kResetOnSend, ep, lease.reused)) {
      // Nothing reached the upstream (a pooled connection it had just
      // closed, or a reset): the request head is intact, send it again.
      ReleaseUpstream(s, false);
      cr.stats->rq_retry.Inc();
      continue;
    }
    if (r == 2 && retry.budget_exhausted()) cr.stats->rq_retry_budget_exhausted.Inc();
    if (r != 0) {
      ReleaseUpstream(s, false);
      if (r == 1) co_return false;  // the client went away mid-body
      if (r == 2) {
        cr.stats->rq_reset.Inc();
        fail(503);
        reply_body_ = fmt::format("upstream reset while sending the request: {}", addr.text);
        co_await LocalReply(c, s, 503, true);
        co_return false;
      }
      if (r == 413) {
        reply_body_ =
            fmt::format("request body exceeds the limit of {} bytes", c.lc->max_request_body_bytes);
      } else {
        reply_body_ = "bad request: malformed chunked body";
      }
      co_await LocalReply(c, s, r, true);
      co_return false;
    }

    // The response head, relaying interim 1xx responses.
    timed_out_ = false;
    if (grpc_deadline) {
      SetDeadline(std::max<int64_t>(grpc_timeout_ms_ - elapsed_us() / 1000, 1));
    } else if (x.route->per_try_timeout_ms > 0 && x.route->per_try_timeout_ms < timeout_ms) {
      SetDeadline(x.route->per_try_timeout_ms);  // this attempt's share of the wait
    } else {
      SetDeadline(timeout_ms);
    }
    if (x.route->hedge.any() && retry.attempts() == 1 && method_replayable_ && req.upgrade.empty())
      ArmHedge(c, *x.route, x.cluster_index);  // (an upgrade would open two sessions)
    for (;;) {
      http::HeadError& herr = herr_;
      herr = {};
      http::ResponseHeaders* h = nullptr;
      if (!hedge_ || hedge_->state() != HedgeCall::State::kAnswered)
        h = co_await us.ReadHeaders(&herr);
      if (hedge_ && hedge_->sent() &&
          (h == nullptr || hedge_->state() == HedgeCall::State::kAnswered ||
           (!h->interim() && WouldRetry(*h)))) {
        // This attempt failed, gave way to the hedge's answer, or has one
        // the policy would retry: the hedge's outcome decides. What this
        // attempt came to on its own still counts for its endpoint (taken
        // now: its stream goes while the hedge is adopted).
        first_released_ = false;
        first_gave_way_ = hedge_->state() == HedgeCall::State::kAnswered;
        first_status_ = h != nullptr ? HedgeCall::OutcomeStatus(*h) : 0;
        if (sampled_ && h != nullptr && cur_attempt_ < attempt_spans_.size()) {
          attempt_spans_[cur_attempt_].status = h->status;  // as it came, not as it counts
          if (h->body == http::BodyKind::kNone)
            attempt_spans_[cur_attempt_].grpc_status = http::grpc::StatusOf(h->fields);
        }
        first_failed_ = h == nullptr && (!lease.reused || herr.bytes_received || timed_out_);
        while (asio::steady_timer* t = HedgeWait(s)) co_await t->async_wait(kNoThrow);
        if (hedge_->state() == HedgeCall::State::kAnswered) {
          h = AdoptHedge(cr, &ep);
          timed_out_ = false;
        }
      }
      if (hedge_ && (h == nullptr || !h->interim())) DropHedge();
      if (h != nullptr) {
        if (h->interim()) {
          if (!co_await s.SendInterim(*h)) {
            ReleaseUpstream(s, false);
            co_return false;
          }
          continue;
        }
        resp = h;
        if (sampled_ && cur_attempt_ < attempt_spans_.size())
          attempt_spans_[cur_attempt_].status = h->status;
        // The balancer's and outlier detection's view of this endpoint. A
        // gRPC call's status counts as its HTTP equivalent: a trailers-only
        // answer's now, otherwise once the trailers come.
        const int64_t answered = MonoNanos();
        const bool trailers_only = grpc_ && h->body == http::BodyKind::kNone;
        const int code = trailers_only ? http::grpc::StatusOf(h->fields) : -1;
        if (sampled_ && cur_attempt_ < attempt_spans_.size())
          attempt_spans_[cur_attempt_].grpc_status = code;
        ep_ = ep;
        outcome_later_ = grpc_ && !trailers_only && h->status == 200;
        cr.Answered(ep, code > 0 ? http::grpc::HttpStatusForCode(code) : h->status,
                    answered - attempt_ns_, answered, outcome_later_);
        retry.set_replayable(CanReplay(req.has_body()));
        if (code > 0 && retry.RetriableGrpc(code)) {
          if (retry.ShouldRetryGrpc(code, ep)) {
            ReleaseUpstream(s, false);
            cr.stats->rq_retry.Inc();
            outcome_later_ = false;
            resp = nullptr;
            break;
          }
          if (retry.budget_exhausted()) cr.stats->rq_retry_budget_exhausted.Inc();
        }
        if (h->status >= 400 && retry.Retriable(h->status)) {
          if (retry.ShouldRetryStatus(h->status, ep)) {
            // Tried again elsewhere: this answer is dropped with its
            // connection (its body is not read).
            ReleaseUpstream(s, false);
            cr.stats->rq_retry.Inc();
            resp = nullptr;
            break;
          }
          if (retry.budget_exhausted()) cr.stats->rq_retry_budget_exhausted.Inc();
        }
        break;
      }
      ReleaseUpstream(s, false);
      // Timed out, reset or broken: slow, as far as the balancer goes (a
      // pooled connection the upstream had closed says nothing about it).
      if (!lease.reused || herr.bytes_received || timed_out_) cr.Failed(ep, MonoNanos());
      retry.set_replayable(CanReplay(req.has_body()));
      if (pump_result_ == 413 || pump_result_ == 400) {
        // The request body broke a rule while it streamed.
        reply_body_ = pump_result_ == 413
                          ? fmt::format("request body exceeds the limit of {} bytes",
                                        c.lc->max_request_body_bytes)
                          : std::string("bad request: malformed body");
        co_await LocalReply(c, s, pump_result_, true);
        co_return false;
      }
      if (herr.reason == http::ResetReason::kProtocolError) {
        LOG_WARN("listener {}: invalid response from {}: {}", c.lc->name, upstream_addr_,
                 herr.detail);
        fail(502);
        reply_body_ =
            fmt::format("invalid response from upstream {}: {}", upstream_addr_, herr.detail);
        co_await LocalReply(c, s, 502, true);
        co_return false;
      }
      if (herr.reason == http::ResetReason::kOverflow) {
        reply_body_ = herr.detail;
        co_await LocalReply(c, s, 502, true);
        co_return false;
      }
      if (timed_out_ && !grpc_deadline && x.route->per_try_timeout_ms > 0 &&
          x.route->per_try_timeout_ms < timeout_ms) {
        // The attempt's own timeout: an answer it never gave counts as a
        // 504 from it, retried when the policy retries 504.
        cr.stats->rq_per_try_timeout.Inc();
        if (retry.ShouldRetryStatus(504, ep)) {
          cr.stats->rq_retry.Inc();
          break;  // next attempt
        }
        if (retry.budget_exhausted()) cr.stats->rq_retry_budget_exhausted.Inc();
      }
      if (timed_out_) {
        cr.stats->rq_timeout.Inc();
        fail(504);
        if (grpc_deadline) {
          reply_body_ = fmt::format("gRPC deadline of {} ms exceeded waiting for {}",
                                    grpc_timeout_ms_, upstream_addr_);
        } else {
          reply_body_ =
              fmt::format("upstream request timeout after {} ms: {}", timeout_ms, upstream_addr_);
        }
        co_await LocalReply(c, s, 504, true);
        co_return false;
      }
      // A stream the upstream refused (or dropped at its GOAWAY) counts as a
      // request on a closed pooled connection: it never reached anyone.
      if (!herr.bytes_received &&
          retry.ShouldRetry(AttemptFailure::kResetNoBytes, ep, lease.reused || herr.unprocessed)) {
        cr.stats->rq_retry.Inc();
        break;  // next attempt
      }
      if (retry.budget_exhausted()) cr.stats->rq_retry_budget_exhausted.Inc();
      cr.stats->rq_reset.Inc();
      fail(503);
      reply_body_ =
          fmt::format("upstream reset before response: {}: {}", upstream_addr_, herr.detail);
      co_await LocalReply(c, s, 503, true);
      co_return false;
    }
  }
  if (resp == nullptr) {
    fail(503);
    reply_body_ = err.empty() ? std::string("no upstream available") : err;
    co_await LocalReply(c, s, 503, true);
    co_return false;
  }
  deadline_ms = kNever;
  upstream_ns_ = MonoNanos() - start_ns_;
  const int status = resp->status;
  http::ClientStream& us = *lease.stream;

  // The response head as it goes down: the upstream's, with the request id.
  // (Fields its Connection names go first, so that it cannot drop ours.)
  http::DropConnectionNamed(resp->connection, &resp->fields);
  resp->connection = {};  // nothing left for the encoder to drop by name
  bool has_request_id = false;
  for (const http::HeaderField& f : resp->fields) {
    if (f.name.size() == 12 && IEquals(f.name, "x-request-id")) {
      has_request_id = true;
      break;
    }
  }
  if (!has_request_id && status >= 200 && status != 101)
    resp->fields.push_back({"x-request-id"sv, request_id_});
  if (!set_cookie_.empty()) resp->fields.push_back({"set-cookie"sv, set_cookie_});
  const auto chain = HttpFilterChain();
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) (*it)->OnResponseHeaders(x, *resp);

  // WebSocket and other upgrades: after 101 the connection is a tunnel.
  if (status == 101 && !req.upgrade.empty()) {
    if (co_await s.SendHeaders(*resp, true)) {
      const int64_t us_elapsed = upstream_ns_ / 1000;
      if (cm_->source_stats_) cm_->source_stats_->http.Record(101, us_elapsed);
      c.ls->http.Record(101, us_elapsed);
      rs.http.Record(101, us_elapsed);
      if (x.golden) x.golden->http.Record(101, us_elapsed);
      cr.stats->http.Record(101, us_elapsed);
      Finish(c, &req, 101, "-");
      std::string_view down_pending, up_pending;
      io::Stream* d = s.TakeTunnel(&down_pending);
      io::Stream* u = us.TakeTunnel(&up_pending);
      if (d && u) {
        co_await Tunnel(*d, *u, down_pending, up_pending, this, c.lc->idle_timeout_ms,
                        {&c.ls->bytes_in, &cr.stats->bytes_in},
                        {&cr.stats->bytes_out, &c.ls->bytes_out});
      }
    }
    ReleaseUpstream(s, false);
    co_return false;
  }

  if (w_->draining()) cm_->codec_->Drain();
  const bool end = resp->body == http::BodyKind::kNone;
  int r = 0;
  SetDeadline(c.lc->idle_timeout_ms);
  bool sent;
  if (grpc_ && end) grpc_status_ = http::grpc::StatusOf(resp->fields);  // trailers-only
  if (end) {
    sent = co_await s.SendHeaders(*resp, true);
  } else if (s.QueueHeaders(*resp)) {
    sent = true;
  } else {
    sent = co_await s.SendHeaders(*resp, false);
  }
  deadline_ms = kNever;
  if (!sent) {
    r = 2;
  } else if (!end) {
    // Small bodies arrive with the head: sent with it, in one write, without
    // a frame for the pump.
    http::BodyEvent& ev = ev_;
    const bool got = us.TryReadBody(&ev);
    if (got && ev.kind == http::BodyEvent::kData && ev.end) {
      for (std::string_view d : ev.data) rs_bytes_ += d.size();
      if (grpc_ && ev.trailers) grpc_status_ = http::grpc::StatusOf(*ev.trailers);
      SetBodyDeadline(c);
      if (!co_await s.SendBody(ev.data, true, ev.trailers)) r = 2;
      deadline_ms = kNever;
    } else {
      if (!got) {
        // Nothing of the body yet (a stream, a long poll): the head goes
        // out now, not with the first event.
        SetBodyDeadline(c);
        if (!co_await s.SendBody({}, false, nullptr)) r = 2;
      }
      if (r == 0) r = co_await PumpResponseBody(c, us, s, got ? &ev : nullptr);
    }
  }
  const int64_t elapsed = elapsed_us();
  // The caller's counters before the listener's: /stats reads the
  // listener's first, so a request it counts there is already counted by
  // caller (`weft stat`'s mTLS share never dips for a request caught
  // between the two).
  if (cm_->source_stats_) cm_->source_stats_->http.Record(status, elapsed);
  c.ls->http.Record(status, elapsed);
  rs.http.Record(status, elapsed);
  if (x.golden) x.golden->http.Record(status, elapsed);
  if (sampled_) {
    const int64_t wall_ms = WallMicros() / 1000;
    rs.exemplars.Record(elapsed, trace_id_.data(), wall_ms);
    if (x.golden) x.golden->exemplars.Record(elapsed, trace_id_.data(), wall_ms);
  }
  cr.stats->http.Record(status, elapsed);
  if (grpc_) {
    // No grpc-status: the call broke (the upstream's reset reaches the
    // client as UNAVAILABLE; a client that left cancelled it).
    if (grpc_status_ < 0 && r != 0) grpc_status_ = r == 1 ? 14 : 1;
    if (outcome_later_ && grpc_status_ >= 0)
      cr.Concluded(ep_, http::grpc::HttpStatusForCode(grpc_status_), MonoNanos());
    outcome_later_ = false;
    if (cm_->source_stats_) cm_->source_stats_->http.RecordGrpc(grpc_status_);
    c.ls->http.RecordGrpc(grpc_status_);
    rs.http.RecordGrpc(grpc_status_);
    if (x.golden) x.golden->http.RecordGrpc(grpc_status_);
    cr.stats->http.RecordGrpc(grpc_status_);
  }
  if (r == 3) cr.stats->rq_timeout.Inc();  // the gRPC deadline, mid-response
  ReleaseUpstream(s, r == 0);
  Finish(c, &req, status, r == 0 ? "-"sv : (r == 1 ? "UR"sv : (r == 3 ? "UT"sv : "DR"sv)));
  co_return r == 0;
}

asio::awaitable<int> HttpConnectionManager::ActiveStream::PumpRequestBody(const Ctx& c,
                                                                          http::ServerStream& down,
                                                                          http::ClientStream& up,
                                                                          bool timed) {
  const uint64_t limit = c.lc->max_request_body_bytes;
  http::BodyEvent ev;
  bool head_out = false;
  for (;;) {
    if (timed) SetDeadline(c.lc->idle_timeout_ms);
    if (!down.TryReadBody(&ev)) {
      // No body bytes yet: a head held back for them (QueueHeaders) goes
      // out now, so that the upstream sees the request while the client
      // waits (an HTTP/2 stream that opens before its first DATA).
      if (!head_out && !co_await up.SendBody({}, false, nullptr)) co_return 2;
      head_out = true;
      ev = co_await down.ReadBody();
    }
    head_out = true;
    if (ev.kind == http::BodyEvent::kReset) co_return ev.status ? ev.status : 1;
    rq_body_read_ = true;
    for (std::string_view d : ev.data) rq_bytes_ += d.size();
    if (replay_ == Replay::kCopying) CopyForReplay(c, ev);
    if (limit && rq_bytes_ > limit) co_return 413;
    if (timed) SetDeadline(c.lc->idle_timeout_ms);
    if (!co_await up.SendBody(ev.data, ev.end, ev.trailers)) co_return 2;
    if (ev.end) co_return 0;
  }
}

void HttpConnectionManager::ActiveStream::CopyForReplay(const Ctx& c, const http::BodyEvent& ev) {
  size_t n = 0;
  for (std::string_view d : ev.data) n += d.size();
  if (replay_body_.size() + n > c.lc->retry_buffer_bytes ||
      (ev.end && ev.trailers && !ev.trailers->empty())) {
    // Too large to keep (or with trailers, which are not kept): this
    // request is not sent again once it went up, nor mirrored.
    replay_ = Replay::kTooLarge;
    std::string().swap(replay_body_);
    if (mirror_pending_) {
      mirror_pending_ = false;
      c.state->clusters[mirror_cluster_]->stats->mirror_dropped.Inc();
    }
    return;
  }
  for (std::string_view d : ev.data) replay_body_.append(d);
  if (ev.end) {
    replay_ = Replay::kWhole;
    if (mirror_pending_) StartMirrorCopy(c);
  }
}

void HttpConnectionManager::ActiveStream::StartMirrorCopy(const Ctx& c) {
  mirror_pending_ = false;
  StartMirror(w_, c.state, mirror_cluster_, up_req_, mirror_authority_, replay_body_,
              mirror_timeout_ms_, cm_->limits_);
}

void HttpConnectionManager::ActiveStream::ArmHedge(const Ctx& c, const RouteConfig& route,
                                                   size_t cluster) {
  ClusterRuntime& cr = *c.state->clusters[cluster];
  if (cr.cfg.endpoints.size() < 2) return;  // nowhere else to send it
  int64_t delay_us = route.hedge.delay_ms * 1000;
  if (route.hedge.p95) {
    // The endpoint's recent p95: until it has answered enough, no hedge.
    const int64_t p95 = cr.RecentP95Ns(lease_.endpoint);
    if (p95 <= 0) return;
    delay_us = std::max<int64_t>(p95 / 1000, 100);
  }
  // A hedge the attempt's own deadline would beat is not armed.
  if (deadline_ms != kNever && Now() + delay_us / 1000 >= deadline_ms) return;
  hedge_ctx_ = &c;
  hedge_cluster_ = cluster;
  hedge_ = std::make_shared<HedgeCall>(w_, this);
  hedge_->Arm(delay_us);
}

void HttpConnectionManager::ActiveStream::OnHedgeDelay() {
  const Ctx& c = *hedge_ctx_;
  const std::shared_ptr<ClusterRuntime>& cluster = c.state->clusters[hedge_cluster_];
  ClusterRuntime& cr = *cluster;
  const size_t first = lease_.endpoint;
  // The hedge carries the whole request: a body still arriving is not
  // hedged. It is a retry as far as the budget and max_retries go.
  bool send = !up_req_.has_body() || replay_ == Replay::kWhole;
  send = send && cr.retries_active < cr.lim_retries;
  size_t ep = first;
  if (send) ep = cr.Pick(static_cast<long>(first), has_hash_ ? &hash_ : nullptr);
  send = send && ep != first;  // every other endpoint is out of service
  // A new HTTP/1.1 connection stays within max_connections.
  send =
      send && (cr.speaks_h2[ep] || cr.stats->cx_active.Get() + cr.cx_opening < cr.lim_connections);
  const int64_t elapsed_ms = (MonoNanos() - start_ns_) / 1000000;
  std::string grpc_timeout;
  if (send && grpc_timeout_ms_ >= 0) {
    // What is left of the caller's deadline travels with the hedge too.
    const int64_t left = grpc_timeout_ms_ - elapsed_ms;
    send = left > 0;
    if (send) http::grpc::FormatTimeout(left, &grpc_timeout);
  }
  send = send && cr.budget.Withdraw(MonoNanos() / 1000000000);
  if (!send) {
    cr.stats->hedge_skipped.Inc();
    return;
  }
  ++hedged_;
  ++attempts_;
  cr.stats->hedge_sent.Inc();
  if (sampled_) {  // the hedge names its own span upstream (its copy is taken now)
    OpenAttemptSpan(cr.cfg.endpoints[ep].address.text, true);
    SetUpstreamParent(attempt_spans_[hedge_attempt_].id);
  }
  hedge_->Send(c.state, cluster, ep, up_req_, s_->request().authority, replay_body_, deadline_ms,
               cm_->limits_, attempts_, attempt_field_,
               grpc_timeout_ms_ >= 0 ? grpc_timeout_field_ : 0, grpc_timeout);
  if (sampled_ && cur_attempt_ < attempt_spans_.size())
    SetUpstreamParent(attempt_spans_[cur_attempt_].id);
}

bool HttpConnectionManager::ActiveStream::WouldRetry(const http::ResponseHeaders& h) const {
  if (grpc_ && h.body == http::BodyKind::kNone) {
    const int code = http::grpc::StatusOf(h.fields);
    if (code > 0 && retry_->RetriableGrpc(code)) return true;
  }
  return h.status >= 400 && retry_->Retriable(h.status);
}

bool HttpConnectionManager::ActiveStream::OnHedgeAnswer(const http::ResponseHeaders& h) {
  if (WouldRetry(h)) return false;
  up_->Abort();  // the first attempt gives way: its wait ends, and any read after
  return true;
}

asio::steady_timer* HttpConnectionManager::ActiveStream::HedgeWait(http::ServerStream& s) {
  if (hedge_->state() == HedgeCall::State::kRunning) return &hedge_->done();
  if (hedge_->state() == HedgeCall::State::kAnswered) {
    // The first attempt goes; a duplex pump on it stops (and releases it)
    // before the hedge's upstream takes its place.
    if (!first_released_) {
      first_released_ = true;
      ReleaseUpstream(s, false);
    }
    if (pump_running_) return pump_done_.get();
  }
  return nullptr;
}

http::ResponseHeaders* HttpConnectionManager::ActiveStream::AdoptHedge(ClusterRuntime& cr,
                                                                       size_t* ep) {
  const int64_t now = MonoNanos();
  if (first_gave_way_) {
    cr.Abandoned(*ep, now - attempt_ns_, now);  // stopped for the hedge: only slower than this
  } else if (first_status_ > 0) {
    cr.Answered(*ep, first_status_, now - attempt_ns_, now);
  } else if (first_failed_) {
    cr.Failed(*ep, now);
  }
  if (sampled_) {
    CloseAttemptSpan(cur_attempt_, 0,
                     first_gave_way_ ? "cancelled" : (first_failed_ ? "no response" : nullptr),
                     now);
    cur_attempt_ = hedge_attempt_;
    hedge_attempt_ = SIZE_MAX;
  }
  std::swap(up_, hedge_->upstream());  // the hedge keeps the first attempt's, released
  lease_ = hedge_->lease();
  *ep = hedge_->endpoint();
  attempt_ns_ = hedge_->started_ns();
  upstream_addr_ = cr.cfg.endpoints[*ep].address.text;
  http::ResponseHeaders* h = hedge_->response();
  cr.stats->hedge_won.Inc();
  hedge_.reset();
  return h;
}

void HttpConnectionManager::ActiveStream::DropHedge() {
  if (hedge_attempt_ < attempt_spans_.size()) {
    CloseAttemptSpan(hedge_attempt_, 0, "cancelled", MonoNanos());
    hedge_attempt_ = SIZE_MAX;
  }
  hedge_->Drop();
  hedge_.reset();
}

asio::awaitable<void> HttpConnectionManager::ActiveStream::DuplexPump(const Ctx& c,
                                                                      http::ServerStream& down,
                                                                      http::ClientStream& up) {
  const int r = co_await PumpRequestBody(c, down, up, false);
  pump_result_ = r;
  pump_running_ = false;
  if (release_after_pump_ >= 0) {
    // The exchange ended while the pump ran: its upstream goes back now.
    up_->Release(release_after_pump_ == 1);
    release_after_pump_ = -1;
  } else if (r != 0) {
    up_->Cancel();  // the upstream must not wait for a body that will not come
  }
  pump_done_->cancel();
}

void HttpConnectionManager::ActiveStream::ReleaseUpstream(http::ServerStream& down, bool reusable) {
  if (!pump_running_) {
    up_->Release(reusable);
    return;
  }
  // A duplex pump still uses the upstream stream: stop it, and let it
  // release the stream when it returns (not a co_await here: each would
  // grow Forward's frame past Asio's recycled size).
  release_after_pump_ = reusable ? 1 : 0;
  down.CancelWaits();
  up_->Cancel();
}

asio::awaitable<void> HttpConnectionManager::ActiveStream::WaitPump() {
  while (pump_running_) co_await pump_done_->async_wait(kNoThrow);
}

asio::awaitable<int> HttpConnectionManager::ActiveStream::PumpResponseBody(
    const Ctx& c, http::ClientStream& up, http::ServerStream& down, const http::BodyEvent* first) {
  http::BodyEvent ev;
  for (;;) {
    SetBodyDeadline(c);
    if (first) {
      ev = *first;
      first = nullptr;
    } else if (!up.TryReadBody(&ev)) {
      ev = co_await up.ReadBody();
    }
    if (ev.kind == http::BodyEvent::kReset) {
      if (timed_out_ && grpc_ && Now() >= grpc_deadline_at_) {
        const bool queued = co_await GrpcDeadlineTrailers(c, down);
        if (queued) co_return 3;
        co_return 2;
      }
      co_return 1;
    }
    for (std::string_view d : ev.data) rs_bytes_ += d.size();
    if (grpc_ && ev.end && ev.trailers) grpc_status_ = http::grpc::StatusOf(*ev.trailers);
    SetBodyDeadline(c);
    if (!co_await down.SendBody(ev.data, ev.end, ev.trailers)) co_return 2;
    if (ev.end) {
      deadline_ms = kNever;
      co_return 0;
    }
  }
}

bool HttpConnectionManager::ActiveStream::KeyHash(const mesh::HashPolicy& h,
                                                  const http::RequestHeaders& req) {
  using upstream::LoadBalancer;
  if (h.source_ip) {
    hash_ = LoadBalancer::Hash(cm_->client_ip_);
    return true;
  }
  if (!h.header.empty()) {
    for (const http::HeaderField& f : req.fields) {
      if (IEquals(f.name, h.header)) {
        hash_ = LoadBalancer::Hash(f.value);
        return true;
      }
    }
    return false;  // no key: the balancer picks at random
  }
  // A cookie: the request's, else one made here and set on the response,
  // so that the client's next requests carry it.
  for (const http::HeaderField& f : req.fields) {
    if (!IEquals(f.name, "cookie")) continue;
    std::string_view v = f.value;
    while (!v.empty()) {
      const size_t semi = v.find(';');
      std::string_view pair = TrimOws(v.substr(0, semi));
      v = semi == std::string_view::npos ? std::string_view() : v.substr(semi + 1);
      const size_t eq = pair.find('=');
      if (eq != std::string_view::npos && pair.substr(0, eq) == h.cookie) {
        hash_ = LoadBalancer::Hash(pair.substr(eq + 1));
        return true;
      }
    }
  }
  const std::string value = fmt::format("{:016x}", w_->rng().Next());
  hash_ = LoadBalancer::Hash(value);
  set_cookie_ = fmt::format("{}={}; Path={}; HttpOnly", h.cookie, value, h.cookie_path);
  if (h.cookie_ttl_ms > 0) set_cookie_ += fmt::format("; Max-Age={}", h.cookie_ttl_ms / 1000);
  return true;
}

asio::awaitable<bool> HttpConnectionManager::ActiveStream::Overloaded(
    const Ctx& c, http::ServerStream& s, ClusterRuntime& cr, RouteStats& rs, Counter& overflow,
    const char* limit) {
  overflow.Inc();
  overloaded_ = true;
  // Counted as Forward's own answers are (a gRPC caller gets 200 and
  // UNAVAILABLE).
  const int sent = grpc_ ? 200 : 503;
  cr.stats->http.Record(sent, 0);
  rs.http.Record(sent, start_ns_ ? (MonoNanos() - start_ns_) / 1000 : 0);
  if (golden_) golden_->http.Record(sent, start_ns_ ? (MonoNanos() - start_ns_) / 1000 : 0);
  if (grpc_) {
    const int code = http::grpc::CodeForHttpStatus(503);
    cr.stats->http.RecordGrpc(code);
    rs.http.RecordGrpc(code);
    if (golden_) golden_->http.RecordGrpc(code);
  }
  reply_body_ = fmt::format("upstream overloaded: {} of cluster {} reached", limit, cr.cfg.name);
  LOG_WARN_LIMITED("listener {}: {}", c.lc->name, reply_body_);
  co_await LocalReply(c, s, 503, false);
  co_return false;
}

asio::awaitable<void> HttpConnectionManager::ActiveStream::LocalReply(const Ctx& c,
                                                                      http::ServerStream& s,
                                                                      int status, bool close) {
  // A multiplexed connection's other streams go on: only this one ends.
  if (close && !cm_->codec_->multiplexed()) cm_->codec_->Drain();
  const Reject reject = RejectFor(status);
  if (reject != Reject::kCount) c.ls->Rejected(reject);
  if (grpc_) {
    co_await GrpcReply(c, s, status);
    co_return;
  }
  reply_body_ += '\n';
  reply_length_.clear();
  AppendDecimal(&reply_length_, reply_body_.size());
  http::ResponseHeaders h;
  h.status = status;
  h.body = http::BodyKind::kLength;
  h.content_length = reply_body_.size();
  h.fields.reserve(6);
  h.fields.push_back({"content-type"sv, "text/plain"sv});
  h.fields.push_back({"content-length"sv, reply_length_});
  if (!request_id_.empty()) h.fields.push_back({"x-request-id"sv, request_id_});
  if (overloaded_) h.fields.push_back({"x-weft-overloaded"sv, "true"sv});
  if (!retry_after_.empty()) {
    h.fields.push_back({"retry-after"sv, retry_after_});
    h.fields.push_back({"x-weft-ratelimited"sv, "true"sv});
  }
  SetDeadline(c.lc->idle_timeout_ms);
  if (s.request().method == "HEAD"sv) {
    co_await s.SendHeaders(h, true);  // the length of the body a GET would get, no body
  } else if (co_await s.SendHeaders(h, false)) {
    const std::string_view data[1] = {reply_body_};
    co_await s.SendBody(data, true, nullptr);
  }
  deadline_ms = kNever;
  const int64_t us = start_ns_ ? (MonoNanos() - start_ns_) / 1000 : 0;
  if (cm_->source_stats_) cm_->source_stats_->http.Record(status, us);  // first: see Forward
  c.ls->http.Record(status, us);
  const http::RequestHeaders& req = s.request();
  Finish(c, req.method.empty() ? nullptr : &req, status, "LR");
}

asio::awaitable<void> HttpConnectionManager::ActiveStream::GrpcReply(const Ctx& c,
                                                                     http::ServerStream& s,
                                                                     int status) {
  // Trailers-only: one HEADERS frame with the outcome, which every gRPC
  // client reads as the call's status (a bare 503 it would not).
  grpc_status_ = grpc_reply_code_ > 0 ? grpc_reply_code_ : http::grpc::CodeForHttpStatus(status);
  reply_length_.clear();
  AppendDecimal(&reply_length_, static_cast<uint64_t>(grpc_status_));
  grpc_message_.clear();
  http::grpc::EncodeMessage(reply_body_, &grpc_message_);
  http::ResponseHeaders h;
  h.status = 200;
  h.body = http::BodyKind::kNone;
  h.fields.reserve(7);
  h.fields.push_back({"content-type"sv, "application/grpc"sv});
  h.fields.push_back({"grpc-status"sv, reply_length_});
  h.fields.push_back({"grpc-message"sv, grpc_message_});
  if (!request_id_.empty()) h.fields.push_back({"x-request-id"sv, request_id_});
  if (overloaded_) h.fields.push_back({"x-weft-overloaded"sv, "true"sv});
  if (!retry_after_.empty()) {
    h.fields.push_back({"retry-after"sv, retry_after_});
    h.fields.push_back({"x-weft-ratelimited"sv, "true"sv});
  }
  SetDeadline(c.lc->idle_timeout_ms);
  co_await s.SendHeaders(h, true);
  deadline_ms = kNever;
  const int64_t us = start_ns_ ? (MonoNanos() - start_ns_) / 1000 : 0;
  if (cm_->source_stats_) {  // first: see Forward
    cm_->source_stats_->http.Record(200, us);
    cm_->source_stats_->http.RecordGrpc(grpc_status_);
  }
  c.ls->http.Record(200, us);
  c.ls->http.RecordGrpc(grpc_status_);
  Finish(c, &s.request(), 200, "LR");
}

void HttpConnectionManager::ActiveStream::Finish(const Ctx& c, const http::RequestHeaders* req,
                                                 int status, std::string_view flags) {
  if (sampled_) EmitSpans(c, req, status, flags);
  // Live requests: nothing past one load while nobody taps.
  const std::string_view route_name = route_ ? std::string_view(route_->name) : std::string_view();
  if (TapHub* tap = req ? w_->Tap(route_name, req->method, RequestPath(req->path)) : nullptr)
    OfferTap(c, *tap, *req, status, flags);
  const auto& sink = c.state->snap->access_logs[c.listener_index];
  if (!sink) return;
  StreamInfo info;
  info.listener = c.lc->name;
  info.client = cm_->client_addr_;
  if (req) {
    info.method = req->method;
    info.path = RequestPath(req->path);
  }
  info.status = status;
  info.bytes_received = rq_bytes_;
  info.bytes_sent = rs_bytes_;
  info.start_ns = start_ns_;
  info.upstream_ns = upstream_ns_;
  info.upstream = upstream_addr_;
  info.peer = cm_->peer_;
  info.request_id = request_id_;
  info.flags = flags;
  info.grpc_status = grpc_ ? grpc_status_ : -1;
  info.attempts = attempts_;
  char trace_id[32];
  if (trace_) {
    http::trace::WriteHex(trace_id_.data(), trace_id_.size(), trace_id);
    info.trace_id = std::string_view(trace_id, sizeof(trace_id));
  }
  ObserveAccessLog(w_, sink, info);
}

void HttpConnectionManager::ActiveStream::OfferTap(const Ctx& c, TapHub& tap,
                                                   const http::RequestHeaders& req, int status,
                                                   std::string_view flags) {
  TapRecord r;
  // The caller's side of the mesh sends in the clear to its own sidecar.
  r.inbound = c.lc->mtls != MeshTlsMode::kOff;
  r.listener = c.lc->name;
  r.method = req.method;
  r.authority = req.authority;
  r.path = RequestPath(req.path);
  if (route_) r.route = route_->name;
  // (A local reply before any cluster was chosen: what the caller asked for.)
  r.destination = r.inbound               ? std::string_view(tap.service())
                  : cluster_name_.empty() ? std::string_view(req.authority)
                                          : cluster_name_;
  r.source = r.inbound ? (cm_->peer_.empty() ? std::string_view(cm_->client_addr_)
                                             : std::string_view(cm_->peer_))
                       : std::string_view(tap.service());
  r.upstream = upstream_addr_;
  r.flags = flags;
  r.status = status;
  r.grpc_status = grpc_ ? grpc_status_ : -1;
  r.duration_us = start_ns_ ? (MonoNanos() - start_ns_) / 1000 : 0;
  char trace_id[32];
  if (trace_) {
    http::trace::WriteHex(trace_id_.data(), trace_id_.size(), trace_id);
    r.trace_id = std::string_view(trace_id, sizeof(trace_id));
  }
  tap.Offer(r, Clock::Real().WallMillis());
}

void StartHttpSession(Worker* w, std::shared_ptr<ListenerRuntime> l, tcp::socket s,
                      bool empty_settings_sent) {
  auto session = std::make_shared<HttpConnectionManager>(w, std::move(l), std::move(s));
  if (empty_settings_sent) session->EmptySettingsSent();
  asio::co_spawn(
      w->io(), [session]() -> asio::awaitable<void> { co_await session->Run(); }, asio::detached);
}

}  // namespace weft::proxy
