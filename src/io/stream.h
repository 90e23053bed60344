// A connection's byte stream: plain TCP, or TLS (OpenSSL) over the same
// socket. OpenSSL writes straight to the non-blocking descriptor; reads go
// through the event loop's own speculative reads into a buffer OpenSSL then
// takes its records from (a readiness wait would cost an epoll_ctl per
// record, and this way one read(2) brings several records). One reader and
// one writer may be in progress at once (a tunnel copies both ways), as
// with a plain socket.
#pragma once

#include <openssl/ssl.h>

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <memory>
#include <span>
#include <string>
#include <system_error>
#include <tuple>
#include <vector>

namespace weft::io {

using tcp = asio::ip::tcp;

// Errors from OpenSSL as error codes (message: OpenSSL's reason).
const std::error_category& TlsCategory();

// Not thread-safe: every call on the thread running the socket's io_context.
// Pinned in memory: OpenSSL's read BIO points back at it.
class Stream {
 public:
  using IoResult = std::tuple<asio::error_code, size_t>;

  explicit Stream(asio::io_context& io) : sock_(io) {}
  explicit Stream(tcp::socket s) : sock_(std::move(s)) {}
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  tcp::socket& socket() { return sock_; }
  // Owned by the stream: valid until Close(), the next AttachTls or the
  // stream's destruction; nullptr for plain TCP.
  SSL* ssl() const { return ssl_; }
  bool tls() const { return ssl_ != nullptr; }

  // Takes ownership of `ssl` (set up as client or server) and runs it on
  // this connected socket. False (and `ssl` freed) when that fails.
  bool AttachTls(SSL* ssl);
  // Runs the TLS handshake to completion.
  asio::awaitable<asio::error_code> Handshake();

  // `p` (and, for the gathered Write, `bufs` itself and the bytes it points
  // to) must stay valid until the awaitable completes.
  // Plain TCP hands out Asio's own operation (no coroutine frame of ours
  // per read or write); TLS runs its record loop in a coroutine.
  asio::awaitable<IoResult> ReadSome(void* p, size_t n);
  // Writes everything (or fails).
  asio::awaitable<IoResult> Write(const void* p, size_t n);
  // A span, not a container: Asio copies the sequence into the operation.
  asio::awaitable<IoResult> Write(std::span<const asio::const_buffer> bufs);

  // Plain TCP: reads what is on the socket now, without waiting
  // (asio::error::would_block when nothing is), and waits for the socket to
  // turn readable. Together they let a caller read into a buffer it shares
  // with other connections: nothing is written into it while it waits.
  IoResult TryReadSome(void* p, size_t n);
  asio::awaitable<std::tuple<asio::error_code>> WaitReadable();

  // TLS: one non-blocking read of what is buffered or already on the
  // socket, for an idle connection that turned readable. Returns true when
  // the connection is still usable (only TLS housekeeping arrived, such as
  // a session ticket), false when it closed or sent application data.
  // Plain TCP: always false.
  bool IdleReadable();

  // Ends our sending side (TLS: close_notify first). Both directions.
  void ShutdownSend();
  void ShutdownBoth();
  // Cancel and Close make the reads and writes in progress complete with an
  // error; Close also frees the SSL.
  void Cancel();
  void Close();

 private:
  asio::error_code SslError(int ret);
  asio::awaitable<IoResult> TlsReadSome(void* p, size_t n);
  asio::awaitable<IoResult> TlsWrite(const void* p, size_t n);
  asio::awaitable<IoResult> TlsWrite(std::span<const asio::const_buffer> bufs);
  asio::awaitable<asio::error_code> WaitFor(int ssl_error);
  // TLS: more ciphertext from the socket into rbuf_ (the event loop's read).
  asio::awaitable<asio::error_code> Fill();
  void ReleaseIdleBuffer();
  friend int StreamBioRead(BIO* b, char* out, size_t n, size_t* got);

  tcp::socket sock_;
  SSL* ssl_ = nullptr;
  std::string gather_;  // TLS: small gathered writes go out as one record
  // TLS: ciphertext read from the socket that OpenSSL has not taken yet.
  std::unique_ptr<char[]> rbuf_;
  size_t rbuf_begin_ = 0, rbuf_end_ = 0;
  bool rbuf_eof_ = false;
};

}  // namespace weft::io
