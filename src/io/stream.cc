#include "io/stream.h"

#include <openssl/err.h>

#include <cstring>

namespace weft::io {
namespace {

constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);
constexpr size_t kGatherMax = 16 * 1024;  // one TLS record

class TlsErrorCategory : public std::error_category {
 public:
  const char* name() const noexcept override { return "tls"; }
  std::string message(int code) const override {
    if (code == 0) return "TLS error";
    char buf[256];
    ERR_error_string_n(static_cast<unsigned long>(code), buf, sizeof(buf));
    // "error:0A000086:SSL routines::certificate verify failed" -> the reason.
    const char* r = std::strrchr(buf, ':');
    return r ? std::string(r + 1) : std::string(buf);
  }
};

}  // namespace

const std::error_category& TlsCategory() {
  static const TlsErrorCategory cat;
  return cat;
}

Stream::~Stream() {
  if (ssl_) SSL_free(ssl_);
}

bool Stream::AttachTls(SSL* ssl) {
  asio::error_code ec;
  sock_.non_blocking(true, ec);
  if (ec || SSL_set_fd(ssl, sock_.native_handle()) != 1) {
    SSL_free(ssl);
    return false;
  }
  if (ssl_) SSL_free(ssl_);
  ssl_ = ssl;
  return true;
}

asio::error_code Stream::SslError(int ret) {
  const int e = SSL_get_error(ssl_, ret);
  if (e == SSL_ERROR_ZERO_RETURN) return asio::error::eof;
  if (e == SSL_ERROR_SYSCALL) {
    const unsigned long code = ERR_get_error();
    if (code != 0) return {static_cast<int>(code), TlsCategory()};
    if (errno != 0) return {errno, asio::error::get_system_category()};
    return asio::error::eof;  // the peer closed without close_notify
  }
  const unsigned long code = ERR_get_error();
  return {static_cast<int>(code), TlsCategory()};
}

asio::awaitable<asio::error_code> Stream::WaitFor(int ssl_error) {
  auto [ec] = co_await sock_.async_wait(
      ssl_error == SSL_ERROR_WANT_WRITE ? tcp::socket::wait_write : tcp::socket::wait_read,
      kNoThrow);
  co_return ec;
}

asio::awaitable<asio::error_code> Stream::Handshake() {
  for (;;) {
    if (!ssl_) co_return asio::error::bad_descriptor;
    ERR_clear_error();
    const int r = SSL_do_handshake(ssl_);
    if (r == 1) co_return asio::error_code{};
    const int e = SSL_get_error(ssl_, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) co_return SslError(r);
    if (auto ec = co_await WaitFor(e)) co_return ec;
  }
}

asio::awaitable<Stream::IoResult> Stream::ReadSome(void* p, size_t n) {
  if (!ssl_) co_return co_await sock_.async_read_some(asio::buffer(p, n), kNoThrow);
  for (;;) {
    size_t got = 0;
    ERR_clear_error();
    errno = 0;
    const int r = SSL_read_ex(ssl_, p, n, &got);
    if (r == 1) co_return IoResult{asio::error_code{}, got};
    const int e = SSL_get_error(ssl_, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) co_return IoResult{SslError(r), 0};
    if (auto ec = co_await WaitFor(e)) co_return IoResult{ec, 0};
    if (!ssl_) co_return IoResult{asio::error::operation_aborted, 0};
  }
}

asio::awaitable<Stream::IoResult> Stream::Write(const void* p, size_t n) {
  if (!ssl_) co_return co_await asio::async_write(sock_, asio::buffer(p, n), kNoThrow);
  const char* c = static_cast<const char*>(p);
  size_t done = 0;
  while (done < n) {
    size_t wrote = 0;
    ERR_clear_error();
    errno = 0;
    const int r = SSL_write_ex(ssl_, c + done, n - done, &wrote);
    if (r == 1) {
      done += wrote;
      continue;
    }
    const int e = SSL_get_error(ssl_, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
      co_return IoResult{SslError(r), done};
    if (auto ec = co_await WaitFor(e)) co_return IoResult{ec, done};
    if (!ssl_) co_return IoResult{asio::error::operation_aborted, done};
  }
  co_return IoResult{asio::error_code{}, done};
}

asio::awaitable<Stream::IoResult> Stream::Write(const std::vector<asio::const_buffer>& bufs) {
  if (!ssl_) co_return co_await asio::async_write(sock_, bufs, kNoThrow);
  size_t total = 0;
  for (const auto& b : bufs) total += b.size();
  if (total <= kGatherMax) {
    gather_.clear();
    for (const auto& b : bufs) gather_.append(static_cast<const char*>(b.data()), b.size());
    co_return co_await Write(gather_.data(), gather_.size());
  }
  size_t done = 0;
  for (const auto& b : bufs) {
    auto [ec, n] = co_await Write(b.data(), b.size());
    done += n;
    if (ec) co_return IoResult{ec, done};
  }
  co_return IoResult{asio::error_code{}, done};
}

bool Stream::IdleReadable() {
  if (!ssl_) return false;
  char byte;
  size_t got = 0;
  ERR_clear_error();
  const int r = SSL_read_ex(ssl_, &byte, 1, &got);
  if (r == 1) return false;  // application data on an idle connection: out of step
  const int e = SSL_get_error(ssl_, r);
  ERR_clear_error();
  return e == SSL_ERROR_WANT_READ;
}

void Stream::ShutdownSend() {
  if (ssl_) {
    ERR_clear_error();
    SSL_shutdown(ssl_);  // queues close_notify; non-blocking, best effort
    ERR_clear_error();
  }
  asio::error_code ec;
  sock_.shutdown(tcp::socket::shutdown_send, ec);
}

void Stream::ShutdownBoth() {
  asio::error_code ec;
  sock_.shutdown(tcp::socket::shutdown_both, ec);
}

void Stream::Cancel() {
  asio::error_code ec;
  sock_.cancel(ec);
}

void Stream::Close() {
  if (ssl_) {
    // close_notify, best effort; then the fd goes, and OpenSSL must not
    // touch it (or its successor) again.
    if (SSL_is_init_finished(ssl_)) {
      ERR_clear_error();
      SSL_shutdown(ssl_);
      ERR_clear_error();
    }
    SSL_free(ssl_);
    ssl_ = nullptr;
  }
  asio::error_code ec;
  sock_.close(ec);
}

}  // namespace weft::io
