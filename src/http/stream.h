// Streams: one request/response exchange, as the connection manager drives
// it, independent of the protocol on the wire.
//
// The model is pull-based and made for coroutines: a reader asks for the
// next body event when it can take it, and a writer's Send completes when
// the bytes are accepted (written to the socket for HTTP/1.1; within the
// flow-control window for HTTP/2). Backpressure is the await itself: a slow
// reader on one side stops the reads on the other, and no stream buffers
// more than one read's worth. A codec for a multiplexed protocol hands out
// many streams per connection (ServerCodec::NextStream returns while
// earlier streams are still open); HTTP/1.1 hands out one at a time.
//
// Threading: a codec and its streams belong to one worker's event loop and
// are used from that thread only. Views returned by ReadBody() stay valid
// until the next call on the same stream.
#pragma once

#include <asio.hpp>
#include <span>
#include <string_view>

#include "http/message.h"

namespace weft::io {
class Stream;
}

namespace weft::http {

// One event from a stream's body direction: data (the last of it with
// `end`, and then `trailers`, possibly empty), or a reset.
struct BodyEvent {
  enum Kind : uint8_t { kData, kReset };
  Kind kind = kData;
  std::span<const std::string_view> data;   // payload spans (possibly none)
  bool end = false;                         // the body is complete after `data`
  const HeaderList* trailers = nullptr;     // with `end`: trailer fields (never null then)
  ResetReason reason = ResetReason::kNone;  // kReset
  int status = 0;  // kReset from a request decoder: the status to answer (400), else 0
};

// Why a head could not be read.
struct HeadError {
  ResetReason reason = ResetReason::kNone;
  int status = 0;               // the status to answer (server side), 502 (client side)
  std::string_view detail;      // a short human reason (static storage)
  bool bytes_received = false;  // something arrived before it failed
  // The peer says it did not act on the request (HTTP/2 REFUSED_STREAM, or
  // a stream past its GOAWAY): safe to send again, as after a failed connect.
  bool unprocessed = false;
};

// The downstream side of one exchange.
class ServerStream {
 public:
  virtual const RequestHeaders& request() const = 0;
  // The next piece of the request body. Nothing more is read from the peer
  // until this is called again.
  virtual asio::awaitable<BodyEvent> ReadBody() = 0;
  // The same without waiting: true with *ev set when the event needs no
  // read (bytes already buffered, or the end); false: call ReadBody. The
  // request path tries this first, a coroutine frame per event saved.
  virtual bool TryReadBody(BodyEvent* ev) = 0;
  // An interim response: "100 Continue" when the request expects it, or a
  // 1xx relayed from the upstream. False when the peer is gone.
  virtual asio::awaitable<bool> SendInterim(const ResponseHeaders& h) = 0;
  // The response head. With a body to follow, the codec may hold the head
  // back and send it with the first data (one write for small responses).
  virtual asio::awaitable<bool> SendHeaders(const ResponseHeaders& h, bool end_stream) = 0;
  // The head of a response with a body, held to go out with the first body
  // bytes, without waiting. False when the codec cannot hold it (then
  // SendHeaders).
  virtual bool QueueHeaders(const ResponseHeaders& h) = 0;
  // Body data; `end_stream` with `trailers` (may be null) ends the response.
  virtual asio::awaitable<bool> SendBody(std::span<const std::string_view> data, bool end_stream,
                                         const HeaderList* trailers) = 0;
  // Abandons the exchange: the peer sees a reset (HTTP/1.1: the connection
  // closes after what was sent).
  virtual void Reset(ResetReason r) = 0;
  // A deadline fired: the read or send this stream waits on, if any,
  // completes now with a failure (a reset event, or false). Later calls
  // work as usual, so the caller can still answer (a 504, say).
  virtual void CancelWaits() {}
  // After a 101 response to an upgrade: the raw connection and the bytes
  // already read past the request head. Null when the codec cannot tunnel.
  virtual io::Stream* TakeTunnel(std::string_view* pending) = 0;

 protected:
  ~ServerStream() = default;
};

// What NextStream() produced.
struct Accepted {
  ServerStream* stream = nullptr;  // set on success, and on `error` (to answer it)
  HeadError error;                 // error.status != 0: answer and close
};

// The downstream side of one connection.
class ServerCodec {
 public:
  virtual ~ServerCodec() = default;
  // Waits for the next request head. Null stream with no error: the peer
  // closed (or the read was cancelled) between requests.
  virtual asio::awaitable<Accepted> NextStream() = 0;
  // Called by the connection manager when `stream` is finished with (its
  // views die). `reusable`: the exchange ended cleanly.
  virtual void StreamDone(ServerStream* stream, bool reusable) = 0;
  // No new streams: the current response says so (HTTP/1.1 Connection:
  // close; HTTP/2 GOAWAY) and the connection ends after it.
  virtual void Drain() = 0;
  // Whether another stream may follow the current ones.
  virtual bool open() const = 0;
  // Whether streams run side by side (HTTP/2): NextStream may be called
  // again before the stream it returned is done, and a stream's own
  // failure or local reply does not end the connection.
  virtual bool multiplexed() const { return false; }
};

// The upstream side of one exchange.
class ClientStream {
 public:
  // The request head, and the body when `end_stream` is false (SendBody).
  // With a body to follow the codec may hold the head back for one write.
  virtual asio::awaitable<bool> SendHeaders(const RequestHeaders& h, bool end_stream) = 0;
  // As ServerStream::QueueHeaders, for a request with a body.
  virtual bool QueueHeaders(const RequestHeaders& h) = 0;
  virtual asio::awaitable<bool> SendBody(std::span<const std::string_view> data, bool end_stream,
                                         const HeaderList* trailers) = 0;
  // The next response head (interim 1xx heads included; read again after
  // one). Null with *err set on failure. The caller may edit it (add a
  // field) before relaying it; it is the codec's until the next read.
  virtual asio::awaitable<ResponseHeaders*> ReadHeaders(HeadError* err) = 0;
  virtual asio::awaitable<BodyEvent> ReadBody() = 0;
  // As ServerStream::TryReadBody.
  virtual bool TryReadBody(BodyEvent* ev) = 0;
  // After a 101: the raw upstream connection and the bytes read past the
  // response head. Null when the codec cannot tunnel.
  virtual io::Stream* TakeTunnel(std::string_view* pending) = 0;
  // Whether the connection can carry another exchange now (it is clean).
  virtual bool reusable() const = 0;

 protected:
  ~ClientStream() = default;
};

}  // namespace weft::http
