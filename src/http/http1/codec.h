// The HTTP/1.1 codec: the stream interfaces of http/stream.h over one
// connection's byte stream, on the downstream (ServerConnection) and the
// upstream (ClientConnection) side, plus the byte-level encoders they use
// (testable without sockets).
//
// HTTP/1.1 carries one exchange at a time per connection: a ServerConnection
// hands out its next stream once the previous one is done; pipelined
// requests wait in the read buffer and are answered in order. Heads are
// parsed in place (http1/parser.h) and their views stay valid until the
// stream is done: body bytes that arrive later are read into a separate
// buffer, so the head's buffer never moves under them.
//
// Encoders drop connection-specific fields and write their own framing
// (Content-Length or chunked, Connection) from the neutral head.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "base/counter.h"
#include "http/http1/parser.h"
#include "http/message.h"
#include "http/stream.h"
#include "io/buffer.h"

namespace weft::io {
class Stream;
}

namespace weft::http1 {

// ---- Byte-level encoding (no I/O) ----

// The request line and fields of `h` as HTTP/1.1, with "host" from
// :authority, framing from h.body (chunked for kStream) and Connection:
// upgrade when h.upgrade is set. Appends to *out.
void EncodeRequestHead(const http::RequestHeaders& h, std::string* out);

// How a response head is framed towards an HTTP/1.x client.
struct ResponseFraming {
  bool chunked = false;     // the body goes out chunked (kStream body, HTTP/1.1 client)
  bool close = false;       // Connection: close (the connection ends after it)
  bool keep_alive = false;  // Connection: keep-alive (HTTP/1.0 client that stays)
};
// Decides the framing of `h` for a client that sent `req_version`;
// `want_close` when the server will close anyway.
ResponseFraming FrameResponse(const http::ResponseHeaders& h, http::Version req_version,
                              bool want_close);
void EncodeResponseHead(const http::ResponseHeaders& h, const ResponseFraming& f, std::string* out);

// Body output: appends the buffers for `data` (chunk-framed when `chunked`)
// to *gather; size lines go to *meta, which must not reallocate while the
// buffers are in use (EncodeBody reserves enough). `end` with chunked adds
// the last chunk and `trailers`.
void EncodeBody(std::span<const std::string_view> data, bool chunked, bool end,
                const http::HeaderList* trailers, std::vector<asio::const_buffer>* gather,
                std::string* meta);

// Fills `out` (request) from a parsed head. Swaps the field vector out of
// `head` (no copy). An upgrade to h2c is refused: `out` asks for no
// upgrade and has no Upgrade or HTTP2-Settings field.
void ToRequestHeaders(Head* head, http::RequestHeaders* out);
void ToResponseHeaders(Head* head, http::ResponseHeaders* out);

// ---- The body of one message, read incrementally ----

class BodyReader {
 public:
  explicit BodyReader(const Limits& limits) : chunked_(limits) {}
  // A body of `framing` whose first bytes may already sit in `head_buf`
  // from offset `at`. kNone ends at once.
  void Start(Framing framing, uint64_t length, io::Buffer* head_buf, size_t at);
  // The next event (see http::ServerStream::ReadBody). `ctr` counts bytes read.
  asio::awaitable<http::BodyEvent> Read(io::Stream& s, Counter* ctr);
  // The next event when it needs no read (see http::ServerStream::TryReadBody).
  bool TryRead(http::BodyEvent* ev);
  bool done() const { return done_; }
  // How far into head_buf the body went (the next message starts there).
  size_t head_end() const { return head_at_; }
  // Bytes read past the body's end into the body buffer (a pipelined next
  // message), once done.
  std::string_view leftover() const;
  void Release();  // gives the body buffer back when large

 private:
  void ConsumeHanded();
  Framing framing_ = Framing::kNone;
  uint64_t remaining_ = 0;
  bool done_ = true;
  bool failed_ = false;
  io::Buffer* head_buf_ = nullptr;
  size_t head_at_ = 0;              // next unread byte in head_buf_
  io::Buffer body_buf_{16 * 1024};  // bytes read after the head buffer ran out (lazily allocated)
  size_t handed_ = 0;               // bytes of the current source handed out by the last event
  bool handed_from_head_ = false;
  ChunkedDecoder chunked_;
  std::vector<std::string_view> spans_;
  http::HeaderList no_trailers_;
};

// ---- The sending half of one message ----

// A head held back for the first body bytes, then body data (chunk-framed
// when asked), in as few writes as it can: a small response is one write.
class MessageWriter {
 public:
  // Starts a new head: encode it into the string returned; `chunked` frames
  // the body that follows.
  std::string* StartHead(bool chunked) {
    head_.clear();
    chunked_ = chunked;
    pending_ = true;
    return &head_;
  }
  bool head_pending() const { return pending_; }
  void Clear() { pending_ = false; }
  // Writes the held head, if any, with `data` (and the last chunk with
  // `trailers` when `end` and chunked). False, and *failed set when given,
  // when the write failed. `data` and `trailers` must live until it completes.
  asio::awaitable<bool> Send(io::Stream& s, Counter* ctr, std::span<const std::string_view> data,
                             bool end, const http::HeaderList* trailers, bool* failed);

 private:
  std::string head_;
  std::string meta_;
  std::vector<asio::const_buffer> gather_;
  bool pending_ = false;
  bool chunked_ = false;
};

// ---- Downstream ----

class ServerConnection final : public http::ServerCodec, public http::ServerStream {
 public:
  struct Counters {
    Counter* bytes_in = nullptr;
    Counter* bytes_out = nullptr;
  };
  // `s` and `limits` must outlive this object; the owner may change the
  // limits between requests. `on_request_start` runs when the first byte
  // of a request head arrives (the connection manager switches from the
  // idle to the header timeout).
  ServerConnection(io::Stream& s, const Limits& limits, Counters ctr,
                   std::function<void()> on_request_start);

  // http::ServerCodec
  asio::awaitable<http::Accepted> NextStream() override;
  void StreamDone(http::ServerStream* s, bool reusable) override;
  void Drain() override { close_after_ = true; }
  bool open() const override { return !close_after_; }

  // http::ServerStream
  const http::RequestHeaders& request() const override { return req_; }
  asio::awaitable<http::BodyEvent> ReadBody() override;
  bool TryReadBody(http::BodyEvent* ev) override;
  asio::awaitable<bool> SendInterim(const http::ResponseHeaders& h) override;
  bool QueueHeaders(const http::ResponseHeaders& h) override;
  asio::awaitable<bool> SendHeaders(const http::ResponseHeaders& h, bool end_stream) override;
  asio::awaitable<bool> SendBody(std::span<const std::string_view> data, bool end_stream,
                                 const http::HeaderList* trailers) override;
  void Reset(http::ResetReason r) override;
  void CancelWaits() override;
  io::Stream* TakeTunnel(std::string_view* pending) override;

 private:
  void PrepareHead(const http::ResponseHeaders& h);

  io::Stream& s_;
  const Counters ctr_;
  const std::function<void()> on_request_start_;
  const Limits& limits_;
  io::Buffer in_;
  Head head_;
  http::RequestHeaders req_;
  BodyReader body_{limits_};
  size_t scanned_ = 0;
  bool in_stream_ = false;     // a stream is handed out and not done
  bool close_after_ = false;   // the connection ends after the current exchange
  bool body_started_ = false;  // the request body was read from (no 100 Continue any more)
  MessageWriter out_;
};

// ---- Upstream ----

// One exchange on an upstream connection. HTTP/1.1 connections carry no
// state between exchanges, so one object serves every exchange of a
// session: Bind() it to the connection an attempt uses.
class ClientConnection final : public http::ClientStream {
 public:
  struct Counters {
    Counter* bytes_out = nullptr;  // request bytes written
    Counter* bytes_in = nullptr;   // response bytes read
  };
  ClientConnection() = default;

  void Bind(io::Stream* s, Counters ctr, const Limits& limits);

  asio::awaitable<bool> SendHeaders(const http::RequestHeaders& h, bool end_stream) override;
  bool QueueHeaders(const http::RequestHeaders& h) override;
  asio::awaitable<bool> SendBody(std::span<const std::string_view> data, bool end_stream,
                                 const http::HeaderList* trailers) override;
  asio::awaitable<http::ResponseHeaders*> ReadHeaders(http::HeadError* err) override;
  asio::awaitable<http::BodyEvent> ReadBody() override;
  bool TryReadBody(http::BodyEvent* ev) override;
  io::Stream* TakeTunnel(std::string_view* pending) override;
  bool reusable() const override;
  // Drops the buffers' extra memory between exchanges.
  void Idle();
  // Drops all of the buffers' memory (an exchange that will not come soon).
  void Free();

 private:
  io::Stream* s_ = nullptr;
  Counters ctr_;
  Limits limits_;
  std::string_view method_;
  bool failed_ = false;
  bool got_bytes_ = false;  // any response byte of this exchange, interim heads included
  MessageWriter out_;
  io::Buffer in_{4096};
  Head head_;
  http::ResponseHeaders resp_;
  size_t scanned_ = 0;
  size_t consumed_head_ = 0;  // bytes of interim heads already handed out
  BodyReader body_{limits_};
};

}  // namespace weft::http1
