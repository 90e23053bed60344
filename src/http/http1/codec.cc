#include "http/http1/codec.h"

#include "base/strings.h"
#include "io/asio.h"
#include "io/stream.h"

namespace weft::http1 {
namespace {

using namespace std::string_view_literals;

constexpr size_t kHeadBuffer = 4096;
constexpr size_t kBodyBuffer = 64 * 1024;

void AppendHex(std::string* out, uint64_t v) {
  char tmp[17];
  int n = 0;
  do {
    tmp[n++] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v);
  while (n) out->push_back(tmp[--n]);
}

http::BodyKind KindOf(Framing f) {
  switch (f) {
    case Framing::kNone:
      return http::BodyKind::kNone;
    case Framing::kContentLength:
      return http::BodyKind::kLength;
    default:
      return http::BodyKind::kStream;
  }
}

asio::awaitable<bool> Ready(bool v) { co_return v; }

// Whether an Upgrade value offers h2c (alone or in a list).
bool NamesH2c(std::string_view upgrade) {
  bool found = false;
  ForEachListElement(upgrade, [&](std::string_view t) { found |= IEquals(t, "h2c"); });
  return found;
}

http::BodyEvent Failed(http::ResetReason r, int status = 0) {
  http::BodyEvent ev;
  ev.kind = http::BodyEvent::kReset;
  ev.reason = r;
  ev.status = status;
  return ev;
}

// Fields every HTTP/1.1 encoder writes itself or never forwards.
// `connection`: from http::ExtraConnectionNames.
bool SkipOnEncode(const http::HeaderField& f, std::string_view connection) {
  const std::string_view n = f.name;
  if (http::IsConnectionSpecific(n)) return true;
  if (n.size() == 14 && IEquals(n, "content-length")) return true;
  return !connection.empty() && http::NamedInConnection(connection, n);
}

}  // namespace

// ---- Encoding ----

void EncodeRequestHead(const http::RequestHeaders& h, std::string* out) {
  out->append(h.method).append(" "sv).append(h.path).append(" HTTP/1.1\r\n"sv);
  if (!h.authority.empty()) out->append("host: "sv).append(h.authority).append("\r\n"sv);
  const std::string_view named = http::ExtraConnectionNames(h.connection);
  for (const http::HeaderField& f : h.fields) {
    if (f.name.size() == 4 && IEquals(f.name, "host")) continue;  // from :authority
    if (SkipOnEncode(f, named)) continue;
    out->append(f.name).append(": "sv).append(f.value).append("\r\n"sv);
  }
  if (h.body == http::BodyKind::kLength) {
    out->append("content-length: "sv);
    AppendDecimal(out, h.content_length);
    out->append("\r\n"sv);
  } else if (h.body == http::BodyKind::kStream) {
    out->append("transfer-encoding: chunked\r\n"sv);
  }
  if (!h.upgrade.empty()) {
    out->append("connection: upgrade\r\nupgrade: "sv).append(h.upgrade).append("\r\n"sv);
  }
  out->append("\r\n"sv);
}

ResponseFraming FrameResponse(const http::ResponseHeaders& h, http::Version req_version,
                              bool want_close) {
  ResponseFraming f;
  f.close = want_close;
  if (h.body == http::BodyKind::kStream) {
    if (req_version == http::Version::kHttp10) {
      f.close = true;  // the close delimits the body for an HTTP/1.0 client
    } else {
      f.chunked = true;
    }
  }
  f.keep_alive = !f.close && req_version == http::Version::kHttp10;
  return f;
}

void EncodeResponseHead(const http::ResponseHeaders& h, const ResponseFraming& fr,
                        std::string* out) {
  out->append("HTTP/1.1 "sv);
  AppendDecimal(out, static_cast<uint64_t>(h.status));
  out->push_back(' ');
  out->append(h.reason.empty() ? std::string_view(ReasonPhrase(h.status)) : h.reason)
      .append("\r\n"sv);
  const bool switching = h.status == 101;
  const std::string_view named = http::ExtraConnectionNames(h.connection);
  for (const http::HeaderField& f : h.fields) {
    const std::string_view n = f.name;
    if (switching && n.size() == 7 && IEquals(n, "upgrade")) {
      out->append(n).append(": "sv).append(f.value).append("\r\n"sv);
      continue;
    }
    if (n.size() == 14 && h.body != http::BodyKind::kStream && IEquals(n, "content-length")) {
      // Kept as sent for a known length, and for bodiless answers (HEAD, 304)
      // where it describes the representation.
      out->append(n).append(": "sv).append(f.value).append("\r\n"sv);
      continue;
    }
    if (SkipOnEncode(f, named)) continue;
    out->append(n).append(": "sv).append(f.value).append("\r\n"sv);
  }
  if (switching) {
    out->append("connection: upgrade\r\n"sv);
  } else if (h.status >= 200) {
    if (fr.chunked) out->append("transfer-encoding: chunked\r\n"sv);
    if (fr.close) {
      out->append("connection: close\r\n"sv);
    } else if (fr.keep_alive) {
      out->append("connection: keep-alive\r\n"sv);
    }
  }
  out->append("\r\n"sv);
}

void EncodeBody(std::span<const std::string_view> data, bool chunked, bool end,
                const http::HeaderList* trailers, std::vector<asio::const_buffer>* gather,
                std::string* meta) {
  if (!chunked) {
    for (std::string_view s : data) {
      if (!s.empty()) gather->emplace_back(s.data(), s.size());
    }
    return;
  }
  // Size lines go in *meta, reserved up front so that the views stay valid.
  size_t need = meta->size() + data.size() * 20 + 8;
  if (end && trailers) {
    for (const http::HeaderField& t : *trailers) need += t.name.size() + t.value.size() + 4;
  }
  meta->reserve(need);
  for (std::string_view s : data) {
    if (s.empty()) continue;
    size_t at = meta->size();
    AppendHex(meta, s.size());
    meta->append("\r\n"sv);
    gather->emplace_back(meta->data() + at, meta->size() - at);
    gather->emplace_back(s.data(), s.size());
    gather->emplace_back("\r\n", 2);
  }
  if (end) {
    size_t at = meta->size();
    meta->append("0\r\n"sv);
    if (trailers) {
      for (const http::HeaderField& t : *trailers) {
        meta->append(t.name).append(": "sv).append(t.value).append("\r\n"sv);
      }
    }
    meta->append("\r\n"sv);
    gather->emplace_back(meta->data() + at, meta->size() - at);
  }
}

void ToRequestHeaders(Head* head, http::RequestHeaders* out) {
  out->method = head->method;
  out->scheme = "http"sv;
  out->authority = head->host;
  out->path = head->target;
  out->fields.swap(head->headers);
  out->body = KindOf(head->framing);
  out->content_length = head->content_length;
  out->version = head->version_minor >= 1 ? http::Version::kHttp11 : http::Version::kHttp10;
  out->request_id = head->x_request_id;
  out->forwarded_for = head->x_forwarded_for;
  out->upgrade = head->conn_upgrade ? head->upgrade : std::string_view();
  if (!head->upgrade.empty() && NamesH2c(head->upgrade)) {
    // HTTP/2 by upgrade (h2c, deprecated by RFC 9113 3.1) is not offered:
    // a 101 from the upstream would hand the client's HTTP/2 to it, past
    // this proxy's routing and limits. The request is served as plain
    // HTTP/1.1, without the upgrade's fields.
    out->upgrade = {};
    std::erase_if(out->fields, [](const http::HeaderField& f) {
      return IEquals(f.name, "upgrade") || IEquals(f.name, "http2-settings");
    });
  }
  out->connection = head->connection;
  out->expect_continue = head->expect_continue;
  out->keep_alive = head->KeepAlive();
}

void ToResponseHeaders(Head* head, http::ResponseHeaders* out) {
  out->status = head->status;
  out->reason = head->reason;
  out->fields.swap(head->headers);
  out->body = KindOf(head->framing);
  out->content_length = head->content_length;
  out->connection = head->connection;
  out->reusable = head->KeepAlive() && head->framing != Framing::kUntilClose;
}

// ---- BodyReader ----

void BodyReader::Start(Framing framing, uint64_t length, io::Buffer* head_buf, size_t at) {
  framing_ = framing;
  remaining_ = framing == Framing::kContentLength ? length : 0;
  done_ = framing == Framing::kNone || (framing == Framing::kContentLength && length == 0);
  failed_ = false;
  head_buf_ = head_buf;
  head_at_ = at;
  handed_ = 0;
  body_buf_.Clear();
  if (framing == Framing::kChunked) chunked_.Reset();
}

void BodyReader::ConsumeHanded() {
  if (handed_ == 0) return;
  if (handed_from_head_) {
    head_at_ += handed_;
  } else {
    body_buf_.Consume(handed_);
  }
  handed_ = 0;
}

std::string_view BodyReader::leftover() const {
  return std::string_view(body_buf_.data(), body_buf_.size());
}

void BodyReader::Release() {
  body_buf_.Clear();
  body_buf_.Shrink(16 * 1024);
}

bool BodyReader::TryRead(http::BodyEvent* ev) {
  ConsumeHanded();
  *ev = http::BodyEvent();
  if (failed_) {
    *ev = Failed(http::ResetReason::kProtocolError, 400);
    return true;
  }
  if (done_) {
    ev->end = true;
    ev->trailers = framing_ == Framing::kChunked ? &chunked_.trailers() : &no_trailers_;
    return true;
  }
  const bool from_head = head_buf_ && head_at_ < head_buf_->size();
  const char* p = from_head ? head_buf_->data() + head_at_ : body_buf_.data();
  const size_t avail = from_head ? head_buf_->size() - head_at_ : body_buf_.size();
  if (avail == 0) return false;
  handed_from_head_ = from_head;
  spans_.clear();
  if (framing_ == Framing::kChunked) {
    Error err;
    long n = chunked_.Feed(p, avail, &spans_, &err);
    if (n < 0) {
      failed_ = true;
      *ev = Failed(http::ResetReason::kProtocolError, err.status == 431 ? 400 : err.status);
      return true;
    }
    handed_ = static_cast<size_t>(n);
    done_ = chunked_.Done();
    if (done_) ev->trailers = &chunked_.trailers();
  } else {
    size_t take = avail;
    if (framing_ == Framing::kContentLength && take > remaining_) take = remaining_;
    spans_.emplace_back(p, take);
    handed_ = take;
    if (framing_ == Framing::kContentLength) {
      remaining_ -= take;
      done_ = remaining_ == 0;
    }
    if (done_) ev->trailers = &no_trailers_;
  }
  ev->data = spans_;
  ev->end = done_;
  // At the end, account for the bytes now: the views stay valid (no buffer
  // moves before the next read) and the caller may look at head_end() and
  // leftover() without another call.
  if (done_) ConsumeHanded();
  return true;
}

asio::awaitable<http::BodyEvent> BodyReader::Read(io::Stream& s, Counter* ctr) {
  http::BodyEvent ev;
  for (;;) {
    if (TryRead(&ev)) co_return ev;
    // Need more body bytes: they go to the body buffer, never the head's.
    if (!body_buf_.Reserve(1, kBodyBuffer)) {
      failed_ = true;
      co_return Failed(http::ResetReason::kOverflow, 400);
    }
    if (body_buf_.writable() < kBodyBuffer / 2 && body_buf_.capacity() < kBodyBuffer)
      body_buf_.Reserve(kBodyBuffer, kBodyBuffer);
    auto [ec, n] = co_await s.ReadSome(body_buf_.write_ptr(), body_buf_.writable());
    if (ec) {
      if (ec == asio::error::eof && framing_ == Framing::kUntilClose) {
        done_ = true;
        ev = http::BodyEvent();
        ev.end = true;
        ev.trailers = &no_trailers_;
        co_return ev;
      }
      failed_ = true;
      co_return Failed(http::ResetReason::kRemote);
    }
    body_buf_.Commit(n);
    if (ctr) ctr->Inc(n);
  }
}

// ---- MessageWriter ----

asio::awaitable<bool> MessageWriter::Send(io::Stream& s, Counter* ctr,
                                          std::span<const std::string_view> data, bool end,
                                          const http::HeaderList* trailers, bool* failed) {
  gather_.clear();
  meta_.clear();
  if (pending_) gather_.emplace_back(head_.data(), head_.size());
  EncodeBody(data, chunked_, end, trailers, &gather_, &meta_);
  if (gather_.empty()) co_return true;
  pending_ = false;
  auto [ec, n] = co_await s.Write(gather_);
  if (ctr) ctr->Inc(n);
  if (ec && failed) *failed = true;
  co_return !ec;
}

// ---- ServerConnection ----

ServerConnection::ServerConnection(io::Stream& s, const Limits& limits, Counters ctr,
                                   std::function<void()> on_request_start)
    : s_(s),
      ctr_(ctr),
      on_request_start_(std::move(on_request_start)),
      limits_(limits),
      in_(kHeadBuffer) {}

asio::awaitable<http::Accepted> ServerConnection::NextStream() {
  http::Accepted a;
  if (close_after_) co_return a;
  scanned_ = 0;
  if (!in_.empty() && on_request_start_) on_request_start_();
  for (;;) {
    if (!in_.empty()) {
      Error err;
      auto r = ParseRequest(in_.data(), in_.size(), limits_, &scanned_, &head_, &err);
      if (r == ParseResult::kComplete) {
        ToRequestHeaders(&head_, &req_);
        body_.Start(head_.framing, head_.content_length, &in_, head_.head_bytes);
        in_stream_ = true;
        body_started_ = false;
        out_.Clear();
        a.stream = this;
        co_return a;
      }
      if (r == ParseResult::kError) {
        close_after_ = true;
        req_ = http::RequestHeaders();
        a.stream = this;
        a.error = {http::ResetReason::kProtocolError, err.status, err.reason, true};
        co_return a;
      }
    }
    if (!in_.Reserve(1024, limits_.max_header_bytes + 1024)) {
      close_after_ = true;
      req_ = http::RequestHeaders();
      a.stream = this;
      a.error = {http::ResetReason::kOverflow, 431, "request header section too large", true};
      co_return a;
    }
    auto [ec, n] = co_await s_.ReadSome(in_.write_ptr(), in_.writable());
    if (ec) {
      close_after_ = true;
      if (!in_.empty()) {
        // Cut off mid-head: the caller answers 408 when its deadline did it.
        req_ = http::RequestHeaders();
        a.stream = this;
        a.error = {http::ResetReason::kRemote, 0, "connection ended inside the request head", true};
      }
      co_return a;
    }
    if (in_.empty() && on_request_start_) on_request_start_();
    in_.Commit(n);
    if (ctr_.bytes_in) ctr_.bytes_in->Inc(n);
  }
}

void ServerConnection::StreamDone(http::ServerStream*, bool reusable) {
  if (!in_stream_) {
    in_.Clear();
    return;
  }
  in_stream_ = false;
  if (!reusable || !body_.done()) close_after_ = true;
  if (close_after_) return;
  // The next message starts where this body ended: in the head buffer, or
  // in what the body reader read past its end.
  const std::string_view extra = body_.leftover();
  in_.Consume(body_.head_end());
  if (!extra.empty()) {
    if (!in_.Reserve(extra.size(), limits_.max_header_bytes + 1024 + kBodyBuffer)) {
      close_after_ = true;
      return;
    }
    memcpy(in_.write_ptr(), extra.data(), extra.size());
    in_.Commit(extra.size());
  }
  body_.Release();
  if (in_.empty()) in_.Shrink(kHeadBuffer);
}

asio::awaitable<http::BodyEvent> ServerConnection::ReadBody() {
  body_started_ = true;
  return body_.Read(s_, ctr_.bytes_in);
}

bool ServerConnection::TryReadBody(http::BodyEvent* ev) {
  body_started_ = true;
  return body_.TryRead(ev);
}

bool ServerConnection::QueueHeaders(const http::ResponseHeaders& h) {
  if (h.status == 101) return false;  // the tunnel starts after it: no body follows
  PrepareHead(h);
  return true;
}

void ServerConnection::PrepareHead(const http::ResponseHeaders& h) {
  // The connection stays only when the client wants it and the request was
  // read to its end (an unread body would be taken for the next request).
  const bool want_close = close_after_ || !req_.keep_alive || !body_.done();
  const ResponseFraming fr = FrameResponse(h, req_.version, want_close);
  if (fr.close) close_after_ = true;
  EncodeResponseHead(h, fr, out_.StartHead(fr.chunked));
}

asio::awaitable<bool> ServerConnection::SendInterim(const http::ResponseHeaders& h) {
  if (req_.version == http::Version::kHttp10) co_return true;  // 1.0 clients get no 1xx
  if (h.status == 100) {
    // Only as a go-ahead the client waits for: it asked, and sent no body yet.
    if (!req_.expect_continue || !req_.has_body() || body_started_ || body_.done() ||
        in_.size() > body_.head_end()) {
      co_return true;
    }
    auto [ec, n] = co_await s_.Write("HTTP/1.1 100 Continue\r\n\r\n", 25);
    if (ctr_.bytes_out) ctr_.bytes_out->Inc(n);
    co_return !ec;
  }
  EncodeResponseHead(h, ResponseFraming{}, out_.StartHead(false));
  co_return co_await out_.Send(s_, ctr_.bytes_out, {}, false, nullptr, nullptr);
}

// The send calls return the writer's awaitable itself (no coroutine of
// their own): one frame less per write on the request path.
asio::awaitable<bool> ServerConnection::SendHeaders(const http::ResponseHeaders& h,
                                                    bool end_stream) {
  PrepareHead(h);
  if (!end_stream && h.status != 101) return Ready(true);  // goes out with the first data
  return out_.Send(s_, ctr_.bytes_out, {}, false, nullptr, &close_after_);
}

asio::awaitable<bool> ServerConnection::SendBody(std::span<const std::string_view> data,
                                                 bool end_stream,
                                                 const http::HeaderList* trailers) {
  return out_.Send(s_, ctr_.bytes_out, data, end_stream, trailers, &close_after_);
}

void ServerConnection::Reset(http::ResetReason) {
  close_after_ = true;
  s_.ShutdownBoth();
}

// The connection carries this exchange only: its socket's pending I/O is
// the stream's.
void ServerConnection::CancelWaits() { s_.Cancel(); }

io::Stream* ServerConnection::TakeTunnel(std::string_view* pending) {
  close_after_ = true;
  // What came after the request: past its body in the head buffer, or, when
  // the body outgrew that, in what the body reader read past its end.
  const size_t at = body_.head_end();
  *pending = !body_.leftover().empty() ? body_.leftover()
                                       : std::string_view(in_.data() + at, in_.size() - at);
  return &s_;
}

// ---- ClientConnection ----

void ClientConnection::Bind(io::Stream* s, Counters ctr, const Limits& limits) {
  s_ = s;
  ctr_ = ctr;
  limits_ = limits;
  failed_ = false;
  out_.Clear();
  in_.Clear();
  consumed_head_ = 0;
  scanned_ = 0;
  body_.Start(Framing::kNone, 0, &in_, 0);
}

asio::awaitable<bool> ClientConnection::SendHeaders(const http::RequestHeaders& h,
                                                    bool end_stream) {
  QueueHeaders(h);
  if (!end_stream) return Ready(true);  // goes out with the first body bytes
  return out_.Send(*s_, ctr_.bytes_out, {}, false, nullptr, &failed_);
}

asio::awaitable<bool> ClientConnection::SendBody(std::span<const std::string_view> data,
                                                 bool end_stream,
                                                 const http::HeaderList* trailers) {
  return out_.Send(*s_, ctr_.bytes_out, data, end_stream, trailers, &failed_);
}

asio::awaitable<http::ResponseHeaders*> ClientConnection::ReadHeaders(http::HeadError* err) {
  // After an interim head, the next one starts past it.
  if (consumed_head_) {
    in_.Consume(consumed_head_);
    consumed_head_ = 0;
    scanned_ = 0;
  }
  if (!in_.empty()) got_bytes_ = true;
  for (;;) {
    if (!in_.empty()) {
      Error perr;
      auto pr = ParseResponse(in_.data(), in_.size(), limits_, &scanned_, method_, &head_, &perr);
      if (pr == ParseResult::kComplete) {
        ToResponseHeaders(&head_, &resp_);
        if (resp_.interim()) {
          consumed_head_ = head_.head_bytes;
        } else {
          body_.Start(head_.framing, head_.content_length, &in_, head_.head_bytes);
        }
        co_return &resp_;
      }
      if (pr == ParseResult::kError) {
        failed_ = true;
        *err = {http::ResetReason::kProtocolError, 502, perr.reason, true};
        co_return nullptr;
      }
    }
    if (!in_.Reserve(1024, limits_.max_header_bytes + 1024)) {
      failed_ = true;
      *err = {http::ResetReason::kOverflow, 502, "upstream response head too large", true};
      co_return nullptr;
    }
    auto [ec, n] = co_await s_->ReadSome(in_.write_ptr(), in_.writable());
    if (ec) {
      failed_ = true;
      *err = {http::ResetReason::kRemote, 503,
              ec == asio::error::eof ? std::string_view("connection closed")
                                     : std::string_view("connection reset"),
              got_bytes_};
      co_return nullptr;
    }
    got_bytes_ = true;
    in_.Commit(n);
    if (ctr_.bytes_in) ctr_.bytes_in->Inc(n);
  }
}

bool ClientConnection::TryReadBody(http::BodyEvent* ev) {
  if (!body_.TryRead(ev)) return false;
  if (ev->kind == http::BodyEvent::kReset) failed_ = true;
  return true;
}

bool ClientConnection::QueueHeaders(const http::RequestHeaders& h) {
  method_ = h.method;
  got_bytes_ = false;
  EncodeRequestHead(h, out_.StartHead(h.body == http::BodyKind::kStream));
  return true;
}

asio::awaitable<http::BodyEvent> ClientConnection::ReadBody() {
  // A failed body never completes, so reusable() refuses the connection
  // without a flag of its own: no wrapping coroutine here.
  return body_.Read(*s_, ctr_.bytes_in);
}

io::Stream* ClientConnection::TakeTunnel(std::string_view* pending) {
  failed_ = true;  // never pooled again
  const size_t at = body_.head_end();
  *pending = std::string_view(in_.data() + at, in_.size() - at);
  return s_;
}

bool ClientConnection::reusable() const {
  // Clean: the response was read to its end and nothing followed it.
  return !failed_ && !out_.head_pending() && resp_.reusable && body_.done() &&
         body_.head_end() == in_.size() && body_.leftover().empty();
}

void ClientConnection::Idle() {
  in_.Clear();
  in_.Shrink(kHeadBuffer);
  body_.Release();
}

void ClientConnection::Free() {
  Idle();
  in_.Free();
}

}  // namespace weft::http1
