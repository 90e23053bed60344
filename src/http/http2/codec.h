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
// body bytes not yet framed, and the streams of a connection together at
// most Settings::connection_send_buffer; SendBody waits above either.
//
// Lifetimes: a connection is shared (its coroutines hold it); a stream lives
// until both the protocol is done with it (closed) and its user is
// (ServerCodec::StreamDone / ClientConnection::Done). Views a stream hands
// out stay valid until the next call on that stream.
//
// Hostile peers: what nghttp2 checks (frame sizes, stream states, windows,
// HPACK, the HTTP messaging rules, SETTINGS / PING floods, CONTINUATION
// runs) and what the codec adds (a header list's decoded size, streams
// reset by or because of the peer, empty DATA frames) end in a RST_STREAM
// (or a 431) for a stream error and in GOAWAY then close for a connection
// error. Each is counted by Violation (Counters::violations) and logged,
// rate-limited, with the peer's address. A connection that sent an error
// GOAWAY is closed within kLingerMs even if the peer never reads it.
//
// Memory: a stream holds at most its window of received body, its head
// (max_header_list_bytes) and Settings::send_buffer (plus one SendBody's
// data) of body to send, all streams together at most
// connection_send_buffer (plus one SendBody's data) to send; a connection
// adds one write batch and up to kSpareStreams streams kept for reuse (its
// reads go into a buffer of the thread's). A peer that stops reading (TCP
// or flow-control window) stops the sender on our side, not the buffering.
//
// Threading: one worker's event loop; nothing here is thread-safe.
#pragma once

#include <asio.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/counter.h"
#include "base/sanitizers.h"
#include "http/http2/settings.h"
#include "http/http2/violation.h"
#include "http/http2/wire.h"
#include "http/message.h"
#include "http/stream.h"

struct nghttp2_session;

namespace weft::io {
class Stream;
}

namespace weft::http2 {

// Each may be null (not counted). Written on the connection's thread only.
struct Counters {
  Counter* bytes_in = nullptr;
  Counter* bytes_out = nullptr;
  Counter* violations = nullptr;  // kViolationCount counters, indexed by Violation
  Counter* goaways = nullptr;     // GOAWAYs sent with an error code (the peer's fault)
};

// Streams a connection keeps for reuse once done with (each with at most a
// few small buffers); none under AddressSanitizer (base/sanitizers.h).
inline constexpr size_t kSpareStreams = kAsan ? 0 : 16;

// How long a connection that sent an error GOAWAY waits for it to be taken
// before it is cut.
inline constexpr int kLingerMs = 2000;

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
  size_t active() const { return n_streams_; }
  // Why the connection ended, for a log line ("" while it lives).
  const std::string& error() const { return error_; }
  // The peer's address as given, or the socket's remote endpoint.
  const std::string& peer();
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
  Connection(io::Stream& s, const Settings& settings, Counters ctr, bool server, std::string peer);
  bool InitSession();
  virtual void OnDead() {}
  virtual void OnTerminate() {}  // an error GOAWAY is queued: no new streams
  void Fail(std::string why);    // the connection is over: streams reset

  friend struct Callbacks;

 public:
  // The state below is the codec's own: its stream classes (codec.cc) use it.
  void Kick();                         // wake the writer: the session may have frames to send
  void Consume(int32_t id, size_t n);  // the reader took n bytes: window back
  void Link(StreamBase* st);           // a new stream joins streams_
  void Remove(StreamBase* st);         // frees (or keeps) a stream both sides are done with
  StreamBase* Spare();                 // a stream to reuse, or null
  void Dequeued(size_t n);             // n body bytes queued by a stream left the queue
  // Counts `v` and logs it (rate-limited per kind, all connections together).
  void Violate(Violation v, std::string_view detail);
  // A connection error found by the codec: counts `v`, queues GOAWAY with
  // `code`; the connection closes once it is sent (or after kLingerMs).
  void Terminate(Violation v, uint32_t code, std::string_view detail);
  // A stream ended because of the peer (its RST_STREAM, or ours for its
  // error): past Settings::reset_* or max_reset_streams, Terminate.
  void ChargeReset();
  // RST_STREAM queued by the codec itself (not for a peer's error).
  void NoteLocalReset(int32_t id) { local_rst_.push_back(id); }
  // A token bucket: `burst` at first, `rate` more a second.
  struct Bucket {
    double tokens = -1;  // < 0: not started (full)
    int64_t last_ns = 0;
    bool Take(uint32_t burst, uint32_t rate, int64_t now_ns);
  };
  io::Stream& io_;
  const Settings settings_;
  const Counters ctr_;
  const bool server_;
  nghttp2_session* session_ = nullptr;
  asio::steady_timer write_signal_;
  asio::steady_timer done_signal_;  // both loops ended (Done)
  std::string wbuf_;
  std::string scratch_;  // lower-cased names for the frames we encode
  struct NvArray;
  std::unique_ptr<NvArray> nva_;   // the fields of a head being submitted
  StreamBase* streams_ = nullptr;  // open streams (handed out and not yet done), linked
  size_t n_streams_ = 0;
  size_t queued_ = 0;          // body bytes queued by all streams (connection_send_buffer)
  bool send_blocked_ = false;  // a SendBody waits for queued_ to drop
  // Streams done with, kept to be reused (up to kSpareStreams) so that a
  // busy connection does not build every stream's buffers anew.
  std::vector<StreamBase*> spare_;
  bool dead_ = false;
  bool reading_ = false, writing_ = false;
  bool goaway_sent_ = false;
  bool goaway_received_ = false;
  bool destroying_ = false;
  bool terminating_ = false;  // an error GOAWAY is queued (by us or by the session)
  // Server: EmptySettingsSent was called, and the writer has not yet
  // dropped that frame from the session's output.
  bool empty_settings_sent_ = false;
  std::string error_;
  std::string peer_;
  // Peer misbehaviour accounting.
  struct PendingTerminate {
    Violation violation;
    uint32_t code;
    std::string detail;
  };
  bool in_recv_ = false;                     // inside nghttp2_session_mem_recv
  std::optional<PendingTerminate> pending_;  // a Terminate asked for in there
  Bucket resets_, empty_data_;
  uint64_t resets_total_ = 0;
  uint32_t open_streams_ = 0;         // server: streams the session has open for the peer
  std::vector<int32_t> local_rst_;    // streams with a RST_STREAM of ours not yet sent
  uint8_t last_invalid_type_ = 0xff;  // the last frame the session found invalid ...
  int last_invalid_error_ = 0;        // ... and why (nghttp2_error)
  std::string last_error_;            // the session's last error message (sanitised) ...
  std::vector<std::pair<int32_t, std::string>> errors_;  // ... by the stream it was about
  asio::steady_timer linger_;
  std::shared_ptr<void> owner_;
  std::function<void()> on_dead_;

 private:
  asio::awaitable<void> ReadLoop(std::shared_ptr<Connection> self);
  asio::awaitable<void> WriteLoop(std::shared_ptr<Connection> self);
  void StartLinger();
};

// ---- Downstream ----

class ServerConnection final : public Connection, public http::ServerCodec {
 public:
  // `peer` names the client in log lines (its address when empty).
  ServerConnection(io::Stream& s, const Settings& settings, Counters ctr, std::string peer = {});
  // False when the session cannot be set up (out of memory).
  bool Init() { return InitSession(); }
  // Before Init: kEmptySettings already went to the client on this
  // connection (the capture listener sent it). The session counts it as its
  // first SETTINGS, in flight until the client's ACK, before the SETTINGS
  // with our limits (enforced once acknowledged, as always; but not
  // SETTINGS_NO_RFC7540_PRIORITIES, which only a first SETTINGS may carry),
  // and it is not written again. Should the session's first frame not be
  // exactly it, the connection fails (logged) rather than the client seeing
  // frames out of order.
  void EmptySettingsSent() { empty_settings_sent_ = true; }

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
  void OnTerminate() override;
  std::vector<StreamBase*> ready_;  // heads complete, from ready_at_ on
  size_t ready_at_ = 0;
  asio::steady_timer accept_signal_;
};

// ---- Upstream ----

class ClientConnection final : public Connection {
 public:
  ClientConnection(io::Stream& s, const Settings& settings, Counters ctr, std::string peer = {})
      : Connection(s, settings, ctr, false, std::move(peer)) {}
  bool Init() { return InitSession(); }
  // A new stream, or null when the connection cannot take one now (dead,
  // told to go away, closing for the peer's error, or at the peer's
  // concurrent-stream limit).
  http::ClientStream* Open();
  // The user is done with `s`; an unfinished exchange is reset.
  void Done(http::ClientStream* s);
  // Resets `s` now (a deadline): its waits complete with a failure.
  void Cancel(http::ClientStream* s);
  // Whether Open() would succeed.
  bool can_open() const;
};

}  // namespace weft::http2
