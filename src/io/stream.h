// A connection's byte stream: plain TCP, or TLS (OpenSSL) over the same
// socket. TLS runs on the socket's descriptor itself, with no memory BIOs and
// no extra copy: OpenSSL reads and writes the non-blocking fd, and when it
// needs the socket readable or writable the stream waits for that on the
// event loop. One reader and one writer may be in progress at once (a
// tunnel copies both ways), as with a plain socket.
#pragma once

#include <openssl/ssl.h>

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <string>
#include <system_error>
#include <tuple>
#include <vector>

namespace weft::io {

using tcp = asio::ip::tcp;

// Errors from OpenSSL as error codes (message: OpenSSL's reason).
const std::error_category& TlsCategory();

class Stream {
 public:
  using IoResult = std::tuple<asio::error_code, size_t>;

  explicit Stream(asio::io_context& io) : sock_(io) {}
  explicit Stream(tcp::socket s) : sock_(std::move(s)) {}
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  tcp::socket& socket() { return sock_; }
  SSL* ssl() const { return ssl_; }
  bool tls() const { return ssl_ != nullptr; }

  // Takes ownership of `ssl` (set up as client or server) and runs it on
  // this connected socket. False (and `ssl` freed) when that fails.
  bool AttachTls(SSL* ssl);
  // Runs the TLS handshake to completion.
  asio::awaitable<asio::error_code> Handshake();

  asio::awaitable<IoResult> ReadSome(void* p, size_t n);
  // Writes everything (or fails).
  asio::awaitable<IoResult> Write(const void* p, size_t n);
  asio::awaitable<IoResult> Write(const std::vector<asio::const_buffer>& bufs);

  // TLS: one non-blocking read of what is buffered or already on the
  // socket, for an idle connection that turned readable. Returns true when
  // the connection is still usable (only TLS housekeeping arrived, such as
  // a session ticket), false when it closed or sent application data.
  bool IdleReadable();

  // Ends our sending side (TLS: close_notify first). Both directions.
  void ShutdownSend();
  void ShutdownBoth();
  void Cancel();
  void Close();

 private:
  asio::error_code SslError(int ret);
  asio::awaitable<asio::error_code> WaitFor(int ssl_error);

  tcp::socket sock_;
  SSL* ssl_ = nullptr;
  std::string gather_;  // TLS: small gathered writes go out as one record
};

}  // namespace weft::io
