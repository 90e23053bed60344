// The HTTP/1.1 connection manager: one coroutine per downstream connection,
// one exchange at a time (pipelined requests wait in the read buffer and are
// answered in order). Bodies stream through bounded buffers in both
// directions; nothing is ever buffered whole.
#include <fmt/format.h>
#include <openssl/ssl.h>

#include "base/log.h"
#include "base/strings.h"
#include "base/time.h"
#include "http/http1/parser.h"
#include "io/buffer.h"
#include "proxy/router.h"
#include "proxy/worker.h"

namespace weft::proxy {
namespace {

using namespace std::string_view_literals;

using http1::Framing;
using http1::Head;

constexpr size_t kInitialBuffer = 4096;
constexpr size_t kBodyBuffer = 64 * 1024;

Reject RejectFor(int status) {
  switch (status) {
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
      return Reject::kBadRequest;
  }
}

// Hop-by-hop fields (RFC 9110 7.6.1) that a proxy never forwards as is.
bool IsHopByHop(std::string_view n) {
  switch (n.size()) {
    case 2:
      return IEquals(n, "te");
    case 7:
      return IEquals(n, "upgrade");
    case 10:
      return IEquals(n, "connection") || IEquals(n, "keep-alive");
    case 16:
      return IEquals(n, "proxy-connection");
    case 17:
      return IEquals(n, "transfer-encoding");
    default:
      return false;
  }
}

bool NamedInConnection(std::string_view connection, std::string_view name) {
  bool found = false;
  ForEachListElement(connection, [&](std::string_view t) { found |= IEquals(t, name); });
  return found;
}

bool Idempotent(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "PUT" || m == "DELETE" || m == "TRACE";
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

void AppendHex(std::string* out, uint64_t v) {
  char tmp[17];
  int n = 0;
  do {
    tmp[n++] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v);
  while (n) out->push_back(tmp[--n]);
}

class HttpSession : public Deadline, public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(Worker* w, std::shared_ptr<ListenerRuntime> l, tcp::socket s)
      : w_(w),
        listener_(std::move(l)),
        down_(std::move(s)),
        in_(kInitialBuffer),
        up_buf_(kInitialBuffer) {
    w_->Track(this);
    w_->ConnectionOpened();
    ++listener_->active;
    asio::error_code ec;
    tcp::endpoint peer = down_.socket().remote_endpoint(ec);
    if (!ec) {
      client_ip_ = peer.address().to_string();
      client_addr_ = fmt::format("{}:{}", client_ip_, peer.port());
    }
  }
  ~HttpSession() {
    w_->Untrack(this);
    w_->ConnectionClosed();
    --listener_->active;
    if (ls_) ls_->cx_active.Dec();
    DropUpstream();
  }

  asio::awaitable<void> Run();
  void OnDeadline() override {
    timed_out_ = true;
    down_.Cancel();
    if (up_) up_->stream.Cancel();
  }

 private:
  // The per-request view of the current config, taken when a request starts.
  struct Ctx {
    std::shared_ptr<WorkerState> state;
    const ListenerConfig* lc = nullptr;
    ListenerStats* ls = nullptr;
    size_t listener_index = 0;
  };
  bool TakeConfig(Ctx* c);

  asio::awaitable<bool> ReadRequestHead(const Ctx& c);
  asio::awaitable<void> Serve(Ctx& c);
  // Answers with `status` and err_body_ as a short text body. (The body is a
  // member, not an argument: no temporaries live across the co_await.)
  asio::awaitable<void> SendError(const Ctx& c, int status, bool close);
  asio::awaitable<bool> Connect(const Ctx& c, ClusterRuntime& cr, size_t ep, std::string* err);
  void BuildUpstreamHead(const Ctx& c, const SocketAddress& ep);
  void BuildResponseHead(const Head& resp, bool chunked_out, bool close);
  asio::awaitable<int> PumpBody(io::Stream& src, io::Buffer& sbuf, io::Stream& dst,
                                std::string_view prefix, Framing framing, uint64_t length,
                                bool chunk_out, uint64_t limit, uint64_t* moved,
                                std::array<Counter*, 2> in_ctr, std::array<Counter*, 2> out_ctr,
                                int64_t idle_ms);
  void DropUpstream() {
    if (up_) {
      if (cluster_) {
        cluster_->active[up_->endpoint]--;
        cluster_->stats->cx_active.Dec();
      }
      up_.reset();
    }
  }
  void LogAccess(const Ctx& c, int status, std::string_view flags);
  void SetDeadline(int64_t ms) { deadline_ms = ms > 0 ? MonoMillis() + ms : kNever; }

  Worker* const w_;
  const std::shared_ptr<ListenerRuntime> listener_;
  io::Stream down_;
  io::Buffer in_;      // downstream bytes not yet consumed
  io::Buffer up_buf_;  // upstream bytes not yet consumed
  Head req_;
  Head resp_;
  http1::ChunkedDecoder chunked_{limits_};
  http1::Limits limits_;
  std::string head_out_;  // serialized head being sent
  std::string err_body_;  // body of the error response being sent
  std::string request_id_;
  std::string client_ip_, client_addr_;
  std::vector<std::string_view> spans_;
  std::vector<asio::const_buffer> gather_;
  std::string chunk_meta_;
  std::unique_ptr<UpstreamConn> up_;
  std::shared_ptr<ClusterRuntime> cluster_;
  ListenerStats* ls_ = nullptr;  // for cx_active of the listener that accepted us
  std::string peer_;             // the caller's verified SPIFFE ID (mesh TLS), else ""
  SourceStats* source_stats_ = nullptr;
  bool timed_out_ = false;
  // Per-request facts for logs.
  int64_t start_ns_ = 0;
  int64_t upstream_ns_ = 0;
  uint64_t rq_bytes_ = 0, rs_bytes_ = 0;
  std::string upstream_addr_;
  std::string method_copy_, path_copy_;
  bool first_request_ = true;
};

bool HttpSession::TakeConfig(Ctx* c) {
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

asio::awaitable<void> HttpSession::Run() {
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
  if (!peer_.empty() && c.state->snap->registry)
    source_stats_ = &c.state->snap->registry->Source(c.lc->name, peer_)->at(w_->id());
  co_await Serve(c);
  down_.ShutdownSend();
  down_.Close();
}

asio::awaitable<bool> HttpSession::ReadRequestHead(const Ctx& c) {
  size_t scanned = 0;
  idle = in_.empty();
  timed_out_ = false;
  start_ns_ = 0;
  method_copy_.clear();
  path_copy_.clear();
  rq_bytes_ = rs_bytes_ = 0;
  upstream_ns_ = 0;
  upstream_addr_.clear();
  SetDeadline(in_.empty() && !first_request_ ? c.lc->idle_timeout_ms
                                             : c.lc->header_read_timeout_ms);
  for (;;) {
    if (!in_.empty()) {
      idle = false;
      http1::Error err;
      auto r = http1::ParseRequest(in_.data(), in_.size(), limits_, &scanned, &req_, &err);
      if (r == http1::ParseResult::kComplete) {
        deadline_ms = kNever;
        co_return true;
      }
      if (r == http1::ParseResult::kError) {
        LOG_DEBUG("listener {}: {} from {}: {}", c.lc->name, err.status, client_addr_, err.reason);
        request_id_.clear();
        err_body_ = fmt::format("bad request: {}", err.reason);
        co_await SendError(c, err.status, true);
        co_return false;
      }
    }
    if (!in_.Reserve(1024, limits_.max_header_bytes + 1024)) {
      err_body_ = "request header section too large";
      co_await SendError(c, 431, true);
      co_return false;
    }
    auto [ec, n] = co_await down_.ReadSome(in_.write_ptr(), in_.writable());
    if (ec) {
      if (timed_out_ && !in_.empty()) {
        err_body_ = "request header read timeout";
        co_await SendError(c, 408, true);
      }
      co_return false;
    }
    if (in_.empty()) {
      // The first byte of a request starts the header-read clock.
      SetDeadline(c.lc->header_read_timeout_ms);
      idle = false;
    }
    in_.Commit(n);
    c.ls->bytes_in.Inc(n);
  }
}

asio::awaitable<void> HttpSession::SendError(const Ctx& c, int status, bool close) {
  const std::string& body = err_body_;
  c.ls->Rejected(RejectFor(status));
  head_out_.clear();
  fmt::format_to(std::back_inserter(head_out_),
                 "HTTP/1.1 {} {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n", status,
                 http1::ReasonPhrase(status), body.size() + 1);
  if (!request_id_.empty())
    fmt::format_to(std::back_inserter(head_out_), "x-request-id: {}\r\n", request_id_);
  if (close) head_out_ += "connection: close\r\n";
  head_out_ += "\r\n";
  head_out_ += body;
  head_out_ += '\n';
  SetDeadline(c.lc->idle_timeout_ms);
  auto [ec, n] = co_await down_.Write(head_out_.data(), head_out_.size());
  c.ls->bytes_out.Inc(n);
  int64_t us = start_ns_ ? (MonoNanos() - start_ns_) / 1000 : 0;
  c.ls->http.Record(status, us);
  if (source_stats_) source_stats_->http.Record(status, us);
  LogAccess(c, status, "LR");
}

void HttpSession::BuildUpstreamHead(const Ctx& c, const SocketAddress& ep) {
  head_out_.clear();
  head_out_.append(req_.method).append(" "sv).append(req_.target).append(" HTTP/1.1\r\n"sv);
  const bool upgrade = req_.conn_upgrade && !req_.upgrade.empty();
  const bool conn_names = !req_.connection.empty();
  for (const http1::Header& h : req_.headers) {
    std::string_view n = h.name;
    if (IsHopByHop(n)) continue;
    if (conn_names && NamedInConnection(req_.connection, n)) continue;
    switch (n.size()) {
      case 6:
        if (IEquals(n, "expect")) continue;  // answered by the proxy itself
        break;
      case 14:
        if (IEquals(n, "content-length")) continue;  // re-added below
        break;
      case 15:
        if (IEquals(n, "x-forwarded-for")) continue;
        break;
      case 17:
        if (IEquals(n, "x-forwarded-proto")) continue;
        break;
      case 23:
        // Only this proxy vouches for a caller's identity on a mesh port.
        if (c.lc->mtls != MeshTlsMode::kOff && IEquals(n, "x-forwarded-client-cert")) continue;
        break;
      case 12:
        if (IEquals(n, "x-request-id")) continue;
        break;
      default:
        break;
    }
    head_out_.append(n).append(": "sv).append(h.value).append("\r\n"sv);
  }
  if (req_.host.empty()) head_out_.append("host: "sv).append(ep.text).append("\r\n"sv);
  if (req_.framing == Framing::kContentLength) {
    head_out_.append("content-length: "sv);
    AppendDecimal(&head_out_, req_.content_length);
    head_out_.append("\r\n"sv);
  } else if (req_.framing == Framing::kChunked) {
    head_out_.append("transfer-encoding: chunked\r\n"sv);
  }
  if (upgrade) {
    head_out_.append("connection: upgrade\r\nupgrade: "sv).append(req_.upgrade).append("\r\n"sv);
  }
  head_out_.append("x-forwarded-for: "sv);
  if (!req_.x_forwarded_for.empty()) head_out_.append(req_.x_forwarded_for).append(", "sv);
  head_out_.append(client_ip_).append("\r\nx-forwarded-proto: http\r\nx-request-id: "sv);
  head_out_.append(request_id_).append("\r\n"sv);
  if (!peer_.empty()) {
    // The verified caller, for the application (Envoy's XFCC shape).
    head_out_.append("x-forwarded-client-cert: By="sv);
    if (const auto& tls = w_->tls()) head_out_.append(tls->identity().spiffe_id);
    head_out_.append(";URI="sv).append(peer_).append("\r\n"sv);
  }
  head_out_.append("\r\n"sv);
}

void HttpSession::BuildResponseHead(const Head& resp, bool chunked_out, bool close) {
  head_out_.clear();
  head_out_.append("HTTP/1.1 "sv);
  AppendDecimal(&head_out_, static_cast<uint64_t>(resp.status));
  head_out_.push_back(' ');
  head_out_.append(resp.reason.empty() ? http1::ReasonPhrase(resp.status) : resp.reason)
      .append("\r\n"sv);
  const bool switching = resp.status == 101;
  const bool conn_names = !resp.connection.empty();
  bool has_request_id = false;
  for (const http1::Header& h : resp.headers) {
    std::string_view n = h.name;
    if (switching && (IEquals(n, "upgrade"))) {
      head_out_.append(n).append(": "sv).append(h.value).append("\r\n"sv);
      continue;
    }
    if (IsHopByHop(n)) continue;
    if (conn_names && NamedInConnection(resp.connection, n)) continue;
    if (n.size() == 14 && resp.framing != Framing::kContentLength &&
        resp.framing != Framing::kNone && IEquals(n, "content-length")) {
      continue;
    }
    if (n.size() == 12 && IEquals(n, "x-request-id")) has_request_id = true;
    head_out_.append(n).append(": "sv).append(h.value).append("\r\n"sv);
  }
  if (!has_request_id && !request_id_.empty() && resp.status >= 200) {
    head_out_.append("x-request-id: "sv).append(request_id_).append("\r\n"sv);
  }
  if (switching) {
    head_out_.append("connection: upgrade\r\n"sv);
  } else if (resp.status >= 200) {
    if (chunked_out) head_out_.append("transfer-encoding: chunked\r\n"sv);
    if (close) {
      head_out_.append("connection: close\r\n"sv);
    } else if (req_.version_minor == 0) {
      head_out_.append("connection: keep-alive\r\n"sv);
    }
  }
  head_out_.append("\r\n"sv);
}

asio::awaitable<bool> HttpSession::Connect(const Ctx& c, ClusterRuntime& cr, size_t ep,
                                           std::string* err) {
  const SocketAddress& addr = cr.cfg.endpoints[ep].address;
  auto conn = std::make_unique<UpstreamConn>(w_->io());
  conn->endpoint = ep;
  timed_out_ = false;
  SetDeadline(cr.cfg.connect_timeout_ms);
  up_ = std::move(conn);  // so that OnDeadline can cancel it
  const tcp::endpoint to = ToEndpoint(addr);
  asio::error_code ec = PrepareUpstream(up_->stream.socket(), to);
  if (!ec) std::tie(ec) = co_await up_->stream.socket().async_connect(to, kNoThrow);
  deadline_ms = kNever;
  if (ec) {
    *err = fmt::format("upstream connect error: {}: {}", addr.text,
                       timed_out_ ? "connect timeout" : ec.message());
    cr.stats->cx_connect_fail.Inc();
    LOG_DEBUG("listener {}: {}", c.lc->name, *err);
    up_.reset();
    co_return false;
  }
  asio::error_code ignored;
  up_->stream.socket().set_option(tcp::no_delay(true), ignored);
  if (cr.cfg.endpoints[ep].mtls) {
    timed_out_ = false;
    if (!co_await ConnectMeshTls(w_, cr.cfg, ep, kAlpnHttp1, *up_, this, err)) {
      if (timed_out_) *err += " (connect timeout)";
      cr.stats->tls_fail.Inc();
      cr.stats->cx_connect_fail.Inc();
      LOG_WARN("listener {}: {}", c.lc->name, *err);
      up_.reset();
      co_return false;
    }
    cr.stats->tls_handshakes.Inc();
    if (SSL_session_reused(up_->stream.ssl())) cr.stats->tls_resumed.Inc();
  }
  cr.stats->cx_total.Inc();
  cr.stats->cx_active.Inc();
  cr.active[ep]++;
  co_return true;
}

// Moves one message body from src to dst. Returns 0 on success, or: 1 the
// source failed, 2 the destination failed, 400/413/502 framing and limits.
asio::awaitable<int> HttpSession::PumpBody(io::Stream& src, io::Buffer& sbuf, io::Stream& dst,
                                           std::string_view prefix, Framing framing,
                                           uint64_t length, bool chunk_out, uint64_t limit,
                                           uint64_t* moved, std::array<Counter*, 2> in_ctr,
                                           std::array<Counter*, 2> out_ctr, int64_t idle_ms) {
  uint64_t remaining = framing == Framing::kContentLength ? length : 0;
  bool done = framing == Framing::kNone;
  if (framing == Framing::kChunked) chunked_.Reset();
  for (;;) {
    gather_.clear();
    chunk_meta_.clear();
    if (!prefix.empty()) gather_.emplace_back(prefix.data(), prefix.size());
    size_t consume = 0;
    if (!done && !sbuf.empty()) {
      if (framing == Framing::kChunked) {
        spans_.clear();
        http1::Error err;
        long n = chunked_.Feed(sbuf.data(), sbuf.size(), &spans_, &err);
        if (n < 0) {
          LOG_DEBUG("chunked body refused: {}", err.reason);
          co_return err.status == 431 ? 400 : err.status;
        }
        consume = static_cast<size_t>(n);
        // Size lines go in chunk_meta_, reserved up front so views stay valid.
        chunk_meta_.reserve(spans_.size() * 20 + 8);
        for (std::string_view s : spans_) {
          *moved += s.size();
          if (chunk_out) {
            size_t at = chunk_meta_.size();
            AppendHex(&chunk_meta_, s.size());
            chunk_meta_ += "\r\n";
            gather_.emplace_back(chunk_meta_.data() + at, chunk_meta_.size() - at);
            gather_.emplace_back(s.data(), s.size());
            gather_.emplace_back("\r\n", 2);
          } else {
            gather_.emplace_back(s.data(), s.size());
          }
        }
        if (chunked_.Done()) {
          done = true;
          if (chunk_out) {
            size_t at = chunk_meta_.size();
            chunk_meta_ += "0\r\n";
            for (const http1::Header& t : chunked_.trailers()) {
              chunk_meta_.append(t.name).append(": "sv).append(t.value).append("\r\n"sv);
            }
            chunk_meta_ += "\r\n";
            gather_.emplace_back(chunk_meta_.data() + at, chunk_meta_.size() - at);
          }
        }
      } else {
        size_t take = sbuf.size();
        if (framing == Framing::kContentLength && take > remaining)
          take = static_cast<size_t>(remaining);
        gather_.emplace_back(sbuf.data(), take);
        consume = take;
        *moved += take;
        if (framing == Framing::kContentLength) {
          remaining -= take;
          done = remaining == 0;
        } else if (chunk_out && take > 0) {
          // Close-delimited upstream body re-framed as chunks for the client.
          AppendHex(&chunk_meta_, take);
          chunk_meta_ += "\r\n";
          gather_.insert(gather_.end() - 1,
                         asio::const_buffer(chunk_meta_.data(), chunk_meta_.size()));
          gather_.emplace_back("\r\n", 2);
        }
      }
    }
    if (limit && *moved > limit) co_return 413;
    if (!gather_.empty()) {
      SetDeadline(idle_ms);
      auto [ec, n] = co_await dst.Write(gather_);
      if (ec) co_return 2;
      for (Counter* ctr : out_ctr) ctr->Inc(n);
      prefix = {};
    }
    sbuf.Consume(consume);
    if (done) co_return 0;
    // Need more body bytes.
    if (!sbuf.Reserve(1, kBodyBuffer)) co_return 400;
    if (sbuf.writable() < kBodyBuffer / 2 && sbuf.capacity() < kBodyBuffer)
      sbuf.Reserve(kBodyBuffer, kBodyBuffer);
    SetDeadline(idle_ms);
    auto [ec, n] = co_await src.ReadSome(sbuf.write_ptr(), sbuf.writable());
    if (ec) {
      if (ec == asio::error::eof && framing == Framing::kUntilClose) {
        if (chunk_out) {
          auto [wec, wn] = co_await dst.Write("0\r\n\r\n", 5);
          if (wec) co_return 2;
          for (Counter* ctr : out_ctr) ctr->Inc(wn);
        }
        co_return 0;
      }
      co_return 1;
    }
    sbuf.Commit(n);
    for (Counter* ctr : in_ctr) ctr->Inc(n);
  }
}

// Serves requests on the connection, one exchange at a time, until it should
// close. One coroutine for the connection's whole life: its frame is
// allocated once, not once per request.
asio::awaitable<void> HttpSession::Serve(Ctx& c) {
  for (;;) {
    if (!TakeConfig(&c)) co_return;
    limits_ = c.lc->limits;
    if (!co_await ReadRequestHead(c)) co_return;
    // The config may have been reloaded while we waited: the request is
    // served under the config current when its head arrived.
    if (!TakeConfig(&c)) co_return;
    start_ns_ = MonoNanos();
    upstream_ns_ = 0;
    rq_bytes_ = rs_bytes_ = 0;
    upstream_addr_.clear();
    if (!req_.x_request_id.empty() && req_.x_request_id.size() <= 128) {
      request_id_.assign(req_.x_request_id);
    } else {
      MakeRequestId(w_->rng(), &request_id_);
    }
    const size_t head_bytes = req_.head_bytes;
    const bool client_keep_alive = req_.KeepAlive();
    // Keep the request facts that outlive the read buffer (logs, response framing).
    method_copy_.assign(req_.method);
    // The path outlives the read buffer only for the access log.
    if (c.state->snap->access_logs[c.listener_index]) path_copy_.assign(RequestPath(req_.target));

    if (req_.method == "CONNECT") {
      err_body_ = "CONNECT is not supported by this listener";
      co_await SendError(c, 405, true);
      co_return;
    }
    if (c.lc->authz) {
      // Authorization: the caller's verified identity and the request,
      // against the precompiled policies (no allocation when allowed).
      authz::Request ar;
      ar.peer = peer_;
      ar.method = req_.method;
      ar.path = RequestPath(req_.target);
      ar.headers = &req_.headers;
      const authz::Decision d = c.lc->authz->Evaluate(ar);
      if (d.policy >= 0) {
        AuthzStats& as =
            c.state->snap->authz_stats[c.listener_index][static_cast<size_t>(d.policy)]->at(
                w_->id());
        (d.allow ? as.allow : as.deny).Inc();
      }
      if (!d.allow) {
        const bool can_continue = req_.framing == Framing::kNone && client_keep_alive;
        err_body_ =
            fmt::format("denied by AuthorizationPolicy {}{}",
                        d.policy >= 0 ? c.lc->authz->names()[static_cast<size_t>(d.policy)] : "-",
                        d.by_default ? " (default: deny)" : "");
        LOG_INFO("listener {}: {} {} from {}: {}", c.lc->name, method_copy_,
                 RequestPath(req_.target), peer_.empty() ? client_addr_ : peer_, err_body_);
        in_.Consume(head_bytes);
        co_await SendError(c, 403, !can_continue);
        if (!can_continue) co_return;
        continue;
      }
    }
    const RouteConfig* route = MatchRoute(c.lc->routes, req_);
    if (route == nullptr) {
      // The request body (if any) was not read: close unless there is none.
      bool can_continue = req_.framing == Framing::kNone && client_keep_alive;
      in_.Consume(head_bytes);
      err_body_ = fmt::format("no route for {}", RequestPath(req_.target));
      co_await SendError(c, 404, !can_continue);
      if (!can_continue) co_return;
      continue;
    }
    const size_t route_index = static_cast<size_t>(route - c.lc->routes.data());
    RouteStats& rs = c.state->snap->route_stats[c.listener_index][route_index]->at(w_->id());
    const uint64_t body_limit = c.lc->max_request_body_bytes;
    if (body_limit && req_.framing == Framing::kContentLength && req_.content_length > body_limit) {
      err_body_ = fmt::format("request body of {} bytes exceeds the limit of {} bytes",
                              req_.content_length, body_limit);
      co_await SendError(c, 413, true);
      co_return;
    }
    size_t cluster_index = route->cluster_index;
    if (route->weighted.size() > 1) {
      // A traffic split: pick a cluster by weight.
      uint64_t total = 0;
      for (const auto& w : route->weighted) total += w.weight;
      uint64_t x = w_->rng().Below(total);
      for (const auto& w : route->weighted) {
        if (x < w.weight) {
          cluster_index = w.index;
          break;
        }
        x -= w.weight;
      }
    }
    cluster_ = c.state->clusters[cluster_index];
    ClusterRuntime& cr = *cluster_;
    if (cr.cfg.endpoints.empty()) {
      // A control-plane cluster whose service has no healthy instance.
      const bool can_continue = req_.framing == Framing::kNone && client_keep_alive;
      in_.Consume(head_bytes);
      cr.stats->cx_connect_fail.Inc();
      cr.stats->http.Record(503, 0);
      rs.http.Record(503, (MonoNanos() - start_ns_) / 1000);
      err_body_ = fmt::format("no healthy upstream for cluster {}", cr.cfg.name);
      cluster_.reset();
      co_await SendError(c, 503, !can_continue);
      if (!can_continue) co_return;
      continue;
    }
    const bool idempotent = Idempotent(req_.method);

    // Pick, connect (or reuse), send, and read the response head. A request is
    // tried again, once, on another endpoint when the upstream cannot have acted
    // on it: the connect failed, or (idempotent requests without a body) the
    // connection was reset before any response byte arrived.
    const bool replayable = idempotent && req_.framing == Framing::kNone;
    const bool upgrade_requested = req_.conn_upgrade && !req_.upgrade.empty();
    const int client_minor = req_.version_minor;
    const int64_t timeout_ms = route->timeout_ms ? route->timeout_ms : c.lc->request_timeout_ms;
    long exclude = -1;
    std::string err;
    bool head_consumed = false;
    bool have_response = false;
    int retries_left = route->retries >= 0 ? route->retries : (cr.cfg.endpoints.size() > 1 ? 1 : 0);
    for (int attempt = 0; attempt < retries_left + 3 && !have_response; ++attempt) {
      size_t ep = cr.lb.Pick(cr.active, exclude);
      exclude = static_cast<long>(ep);
      const SocketAddress& addr = cr.cfg.endpoints[ep].address;
      auto& pool = cr.idle[ep];
      if (!pool.empty()) {
        up_ = std::move(pool.back());
        pool.pop_back();
        if (up_->watching) {
          up_->stream.Cancel();
          up_->watching = false;
        }
        up_->reused = true;
        cr.stats->cx_reused.Inc();
        cr.active[ep]++;
      } else if (!co_await Connect(c, cr, ep, &err)) {
        if (retries_left-- > 0) {
          cr.stats->rq_retry.Inc();
          continue;
        }
        break;
      }
      const bool reused = up_->reused;
      upstream_addr_ = addr.text;
      BuildUpstreamHead(c, addr);
      if (!head_consumed) {
        if (req_.expect_continue && req_.framing != Framing::kNone && in_.size() == head_bytes &&
            client_minor >= 1) {
          // The client waits for a go-ahead before its body; the upstream is ready.
          auto [ec, n] = co_await down_.Write("HTTP/1.1 100 Continue\r\n\r\n", 25);
          if (ec) co_return;
          c.ls->bytes_out.Inc(n);
        }
        in_.Consume(head_bytes);
        head_consumed = true;
      }
      int r = co_await PumpBody(down_, in_, up_->stream, head_out_, req_.framing,
                                req_.content_length, req_.framing == Framing::kChunked, body_limit,
                                &rq_bytes_, {&c.ls->bytes_in, &c.ls->bytes_in},
                                {&cr.stats->bytes_in, &cr.stats->bytes_in}, c.lc->idle_timeout_ms);
      if (r == 2 && replayable && (reused || retries_left > 0)) {
        // Nothing reached the upstream (a pooled connection it had just closed,
        // or a reset): the parsed views are still intact, send again.
        DropUpstream();
        cr.stats->rq_retry.Inc();
        if (!reused)
          --retries_left;
        else
          exclude = -1;
        continue;
      }
      if (r != 0) {
        DropUpstream();
        cluster_.reset();
        if (r == 1) co_return;  // the client went away mid-body
        if (r == 2) {
          cr.stats->rq_reset.Inc();
          cr.stats->http.Record(503, 0);
          rs.http.Record(503, (MonoNanos() - start_ns_) / 1000);
          err_body_ = fmt::format("upstream reset while sending the request: {}", addr.text);
          co_await SendError(c, 503, true);
          co_return;
        }
        err_body_ = r == 413 ? fmt::format("request body exceeds the limit of {} bytes", body_limit)
                             : std::string("bad request: malformed chunked body");
        co_await SendError(c, r, true);
        co_return;
      }

      // Response head, relaying interim 1xx responses.
      timed_out_ = false;
      SetDeadline(timeout_ms);
      size_t scanned = 0;
      up_buf_.Clear();
      bool got_bytes = false;
      for (;;) {
        http1::Error perr;
        auto pr = up_buf_.empty() ? http1::ParseResult::kIncomplete
                                  : http1::ParseResponse(up_buf_.data(), up_buf_.size(), limits_,
                                                         &scanned, method_copy_, &resp_, &perr);
        if (pr == http1::ParseResult::kComplete) {
          if (resp_.status >= 100 && resp_.status < 200 && resp_.status != 101) {
            if (client_minor >= 1) {
              BuildResponseHead(resp_, false, false);
              auto [ec, n] = co_await down_.Write(head_out_.data(), head_out_.size());
              if (ec) {
                DropUpstream();
                co_return;
              }
            }
            up_buf_.Consume(resp_.head_bytes);
            scanned = 0;
            continue;
          }
          have_response = true;
          break;
        }
        if (pr == http1::ParseResult::kError) {
          LOG_WARN("listener {}: invalid response from {}: {}", c.lc->name, upstream_addr_,
                   perr.reason);
          DropUpstream();
          cr.stats->http.Record(502, 0);
          rs.http.Record(502, (MonoNanos() - start_ns_) / 1000);
          err_body_ =
              fmt::format("invalid response from upstream {}: {}", upstream_addr_, perr.reason);
          co_await SendError(c, 502, true);
          co_return;
        }
        if (!up_buf_.Reserve(1024, limits_.max_header_bytes + 1024)) {
          DropUpstream();
          err_body_ = "upstream response head too large";
          co_await SendError(c, 502, true);
          co_return;
        }
        auto [ec, n] = co_await up_->stream.ReadSome(up_buf_.write_ptr(), up_buf_.writable());
        if (!ec) {
          got_bytes = true;
          up_buf_.Commit(n);
          cr.stats->bytes_out.Inc(n);
          continue;
        }
        DropUpstream();
        if (timed_out_) {
          cr.stats->rq_timeout.Inc();
          cr.stats->http.Record(504, 0);
          rs.http.Record(504, (MonoNanos() - start_ns_) / 1000);
          err_body_ =
              fmt::format("upstream request timeout after {} ms: {}", timeout_ms, upstream_addr_);
          co_await SendError(c, 504, true);
          co_return;
        }
        if (!got_bytes && replayable && (reused || retries_left > 0)) {
          cr.stats->rq_retry.Inc();
          if (!reused)
            --retries_left;
          else
            exclude = -1;
          break;  // next attempt
        }
        cr.stats->rq_reset.Inc();
        cr.stats->http.Record(503, 0);
        rs.http.Record(503, (MonoNanos() - start_ns_) / 1000);
        err_body_ = fmt::format("upstream reset before response: {}: {}", upstream_addr_,
                                ec == asio::error::eof ? "connection closed" : ec.message());
        co_await SendError(c, 503, true);
        co_return;
      }
    }
    if (!have_response) {
      cluster_.reset();
      if (err.empty()) err = "no upstream available";
      cr.stats->http.Record(503, 0);
      rs.http.Record(503, (MonoNanos() - start_ns_) / 1000);
      err_body_ = err;
      co_await SendError(c, 503, true);
      co_return;
    }
    deadline_ms = kNever;
    upstream_ns_ = MonoNanos() - start_ns_;
    const int status_code = resp_.status;
    const int status = status_code;

    // WebSocket and other upgrades: after 101 the connection is a tunnel.
    if (status_code == 101 && upgrade_requested) {
      BuildResponseHead(resp_, false, false);
      up_buf_.Consume(resp_.head_bytes);
      auto [ec, n] = co_await down_.Write(head_out_.data(), head_out_.size());
      if (!ec) {
        c.ls->bytes_out.Inc(n);
        c.ls->http.Record(101, upstream_ns_ / 1000);
        rs.http.Record(101, upstream_ns_ / 1000);
        cr.stats->http.Record(101, upstream_ns_ / 1000);
        LogAccess(c, 101, "-");
        co_await Tunnel(down_, up_->stream, std::string_view(in_.data(), in_.size()),
                        std::string_view(up_buf_.data(), up_buf_.size()), this,
                        c.lc->idle_timeout_ms, {&c.ls->bytes_in, &cr.stats->bytes_in},
                        {&cr.stats->bytes_out, &c.ls->bytes_out});
      }
      DropUpstream();
      co_return;
    }

    // Response framing towards the client.
    const Framing rf = resp_.framing;
    bool close = !client_keep_alive || w_->draining();
    bool chunk_out = false;
    if (rf == Framing::kChunked || rf == Framing::kUntilClose) {
      if (client_minor >= 1)
        chunk_out = true;
      else
        close = true;  // HTTP/1.0 client: the close delimits the body
    }
    const bool upstream_reusable = resp_.KeepAlive() && rf != Framing::kUntilClose;
    BuildResponseHead(resp_, chunk_out, close);
    up_buf_.Consume(resp_.head_bytes);
    int r =
        co_await PumpBody(up_->stream, up_buf_, down_, head_out_, rf, resp_.content_length,
                          chunk_out, 0, &rs_bytes_, {&cr.stats->bytes_out, &cr.stats->bytes_out},
                          {&c.ls->bytes_out, &c.ls->bytes_out}, c.lc->idle_timeout_ms);
    const int64_t us = (MonoNanos() - start_ns_) / 1000;
    c.ls->http.Record(status, us);
    rs.http.Record(status, us);
    cr.stats->http.Record(status, us);
    if (source_stats_) source_stats_->http.Record(status, us);
    if (r == 0 && upstream_reusable && up_buf_.empty()) {
      cr.active[up_->endpoint]--;
      up_->reused = false;
      w_->ReleaseUpstream(cluster_, std::move(up_));
    } else {
      DropUpstream();
    }
    cluster_.reset();
    LogAccess(c, status, r == 0 ? "-" : (r == 1 ? "UR" : "DR"));
    up_buf_.Shrink(kInitialBuffer);
    if (r != 0 || close || w_->draining()) co_return;
    first_request_ = false;
  }
}

void HttpSession::LogAccess(const Ctx& c, int status, std::string_view flags) {
  const auto& sink = c.state->snap->access_logs[c.listener_index];
  if (!sink) return;
  int64_t now_us = WallMicros();
  time_t secs = static_cast<time_t>(now_us / 1000000);
  tm t;
  gmtime_r(&secs, &t);
  std::string line;
  line.reserve(384);
  fmt::format_to(std::back_inserter(line),
                 "{{\"time\":\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z\",\"listener\":\"",
                 t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                 (now_us / 1000) % 1000);
  AppendJsonEscaped(&line, c.lc->name);
  line += "\",\"client\":\"";
  AppendJsonEscaped(&line, client_addr_);
  line += "\",\"method\":\"";
  AppendJsonEscaped(&line,
                    method_copy_.empty() ? std::string_view("-") : std::string_view(method_copy_));
  line += "\",\"path\":\"";
  AppendJsonEscaped(&line, path_copy_);
  fmt::format_to(std::back_inserter(line),
                 "\",\"status\":{},\"bytes_received\":{},\"bytes_sent\":{},\"duration_ms\":{:.3f},"
                 "\"upstream_ms\":{:.3f},\"upstream\":\"",
                 status, rq_bytes_, rs_bytes_, start_ns_ ? (MonoNanos() - start_ns_) / 1e6 : 0.0,
                 upstream_ns_ / 1e6);
  AppendJsonEscaped(&line, upstream_addr_);
  line += "\",\"peer\":\"";
  AppendJsonEscaped(&line, peer_);
  line += "\",\"request_id\":\"";
  AppendJsonEscaped(&line, request_id_);
  line += "\",\"flags\":\"";
  line += flags;
  line += "\"}\n";
  w_->AccessLog(sink, line);
}

}  // namespace

void StartHttpSession(Worker* w, std::shared_ptr<ListenerRuntime> l, tcp::socket s) {
  auto session = std::make_shared<HttpSession>(w, std::move(l), std::move(s));
  asio::co_spawn(
      w->io(), [session]() -> asio::awaitable<void> { co_await session->Run(); }, asio::detached);
}

}  // namespace weft::proxy
