// The HTTP/2 codec (RFC 9113): the stream interfaces of http/stream.h over
// one connection, on the downstream (ServerConnection) and the upstream
// (ClientConnection) side, with libnghttp2 doing the framing, HPACK, flow
// control and the protocol's own checks (pseudo-headers, connection-specific
// fields, content-length against DATA, stream states).
//
// One connection runs two coroutines of its own: a reader that feeds what
// arrives to the session, and a writer that sends what the session has
// queued. Streams talk to them through the session only.
//
// Backpressure: the window we grant a peer on a stream (and on the
// connection) is only given back when the stream's reader takes the bytes
// (automatic WINDOW_UPDATE is off). So a slow reader on one side stops the
// peer's sender, and a stream never holds more than its window of received
// body. On the sending side a stream holds at most Settings::send_buffer of
// body bytes not yet framed; SendBody waits above that.
//
// Lifetimes: a connection is shared (its coroutines hold it); a stream lives
// until both the protocol is done with it (closed) and its user is
// (ServerCodec::StreamDone / ClientConnection::Done). Views a stream hands
// out stay valid until the next call on that stream.
//
// Threading: one worker's event loop; nothing here is thread-safe.
#pragma once

#include <asio.hpp>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "base/counter.h"
#include "http/http2/settings.h"
#include "http/message.h"
#include "http/stream.h"

struct nghttp2_session;

namespace weft::io {
class Stream;
}

namespace weft::http2 {

// The client connection preface (RFC 9113 3.4): how a plaintext listener
// tells HTTP/2 with prior knowledge from HTTP/1.1.
inline constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
// The ALPN protocol name.
inline constexpr std::string_view kAlpn = "h2";

struct Counters {
  Counter* bytes_in = nullptr;
  Counter* bytes_out = nullptr;
};

class StreamBase;

// What both sides share: the session, the socket loops, the streams.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  virtual ~Connection();

  // Starts the reader and writer. `s` must outlive every coroutine of this
  // connection (the owner closes it after they end).
  void Start();
  // The connection can carry no more streams and its loops are ending.
  bool dead() const { return dead_; }
  // Streams open (handed out and not yet done).
  size_t active() const { return streams_.size(); }
  // Why the connection ended, for a log line ("" while it lives).
  const std::string& error() const { return error_; }
  // Cancels the socket: the loops end, every stream sees a reset.
  void Abort(std::string why);
  // Waits until both loops have ended (what was queued, a GOAWAY say, is
  // written first). A peer that stalls it is the owner's to cut (Abort, or
  // cancelling the socket from a deadline).
  asio::awaitable<void> Done();
  // Keeps `owner` (what holds the socket) alive as long as the connection,
  // and runs `on_dead` once when it ends.
  void Own(std::shared_ptr<void> owner, std::function<void()> on_dead) {
    owner_ = std::move(owner);
    on_dead_ = std::move(on_dead);
  }

 protected:
  Connection(io::Stream& s, const Settings& settings, Counters ctr, bool server);
  bool InitSession();
  virtual void OnDead() {}
  void Fail(std::string why);  // the connection is over: streams reset

  friend struct Callbacks;

 public:
  // The state below is the codec's own: its stream classes (codec.cc) use it.
  void Kick();                         // wake the writer: the session may have frames to send
  void Consume(int32_t id, size_t n);  // the reader took n bytes: window back
  void Remove(StreamBase* st);         // frees a stream both sides are done with
  io::Stream& io_;
  const Settings settings_;
  const Counters ctr_;
  const bool server_;
  nghttp2_session* session_ = nullptr;
  asio::steady_timer write_signal_;
  asio::steady_timer done_signal_;  // both loops ended (Done)
  std::unique_ptr<char[]> rbuf_;
  std::string wbuf_;
  std::string scratch_;  // lower-cased names for the frames we encode
  std::unordered_set<StreamBase*> streams_;
  bool dead_ = false;
  bool reading_ = false, writing_ = false;
  bool goaway_sent_ = false;
  bool goaway_received_ = false;
  bool destroying_ = false;
  std::string error_;
  std::shared_ptr<void> owner_;
  std::function<void()> on_dead_;

 private:
  asio::awaitable<void> ReadLoop(std::shared_ptr<Connection> self);
  asio::awaitable<void> WriteLoop(std::shared_ptr<Connection> self);
};

// ---- Downstream ----

class ServerConnection final : public Connection, public http::ServerCodec {
 public:
  ServerConnection(io::Stream& s, const Settings& settings, Counters ctr);
  // False when the session cannot be set up (out of memory).
  bool Init() { return InitSession(); }

  // http::ServerCodec
  asio::awaitable<http::Accepted> NextStream() override;
  void StreamDone(http::ServerStream* s, bool reusable) override;
  // GOAWAY with the last stream taken: those finish, no new ones start.
  void Drain() override;
  bool open() const override { return !dead_ && !goaway_sent_; }
  bool multiplexed() const override { return true; }

  // A stream whose head is complete (called by the session's callbacks).
  void Ready(StreamBase* st);

 private:
  void OnDead() override;
  std::deque<StreamBase*> ready_;
  asio::steady_timer accept_signal_;
};

// ---- Upstream ----

class ClientConnection final : public Connection {
 public:
  ClientConnection(io::Stream& s, const Settings& settings, Counters ctr)
      : Connection(s, settings, ctr, false) {}
  bool Init() { return InitSession(); }
  // A new stream, or null when the connection cannot take one now (dead,
  // told to go away, or at the peer's concurrent-stream limit).
  http::ClientStream* Open();
  // The user is done with `s`; an unfinished exchange is reset.
  void Done(http::ClientStream* s);
  // Resets `s` now (a deadline): its waits complete with a failure.
  void Cancel(http::ClientStream* s);
  // Whether Open() would succeed.
  bool can_open() const;
  // The peer sent GOAWAY: no new streams (those open finish).
  bool going_away() const { return goaway_received_; }
};

}  // namespace weft::http2
