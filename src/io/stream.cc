#include "io/stream.h"

#include <openssl/err.h>

#include <algorithm>
#include <cstring>

#include "io/asio.h"

namespace weft::io {

int StreamBioRead(BIO* b, char* out, size_t n, size_t* got);

namespace {

constexpr size_t kGatherMax = 16 * 1024;   // one TLS record
constexpr size_t kReadBuffer = 64 * 1024;  // ciphertext per read(2): up to four full records

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

// The read side of a stream's TLS: OpenSSL takes ciphertext from the
// stream's buffer; an empty buffer asks it to retry (WANT_READ), and the
// stream refills the buffer from the event loop.
long StreamBioCtrl(BIO*, int cmd, long, void*) {
  switch (cmd) {
    case BIO_CTRL_FLUSH:
    case BIO_CTRL_PUSH:
    case BIO_CTRL_POP:
      return 1;
    default:
      return 0;
  }
}

BIO_METHOD* StreamBioMethod() {
  static BIO_METHOD* m = [] {
    BIO_METHOD* b = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "weft stream read");
    BIO_meth_set_read_ex(b, StreamBioRead);
    BIO_meth_set_ctrl(b, StreamBioCtrl);
    return b;
  }();
  return m;
}

}  // namespace

int StreamBioRead(BIO* b, char* out, size_t n, size_t* got) {
  auto* s = static_cast<Stream*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  const size_t have = s->rbuf_end_ - s->rbuf_begin_;
  if (have == 0) {
    *got = 0;
    if (s->rbuf_eof_) return 0;  // the peer closed
    BIO_set_retry_read(b);
    return 0;
  }
  const size_t take = std::min(have, n);
  std::memcpy(out, s->rbuf_.get() + s->rbuf_begin_, take);
  s->rbuf_begin_ += take;
  if (s->rbuf_begin_ == s->rbuf_end_) s->rbuf_begin_ = s->rbuf_end_ = 0;
  *got = take;
  return 1;
}

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
  BIO* wbio = ec ? nullptr : BIO_new_socket(sock_.native_handle(), BIO_NOCLOSE);
  BIO* rbio = wbio ? BIO_new(StreamBioMethod()) : nullptr;
  if (!rbio) {
    BIO_free(wbio);
    SSL_free(ssl);
    return false;
  }
  BIO_set_data(rbio, this);
  BIO_set_init(rbio, 1);
  SSL_set_bio(ssl, rbio, wbio);  // the SSL owns both now
  if (ssl_) SSL_free(ssl_);
  ssl_ = ssl;
  rbuf_.reset();  // allocated when a read needs it
  rbuf_begin_ = rbuf_end_ = 0;
  rbuf_eof_ = false;
  return true;
}

asio::awaitable<asio::error_code> Stream::Fill() {
  if (rbuf_end_ == kReadBuffer) co_return asio::error_code{};  // OpenSSL has not taken it yet
  if (!rbuf_) rbuf_.reset(new char[kReadBuffer]);
  auto [ec, n] = co_await sock_.async_read_some(
      asio::buffer(rbuf_.get() + rbuf_end_, kReadBuffer - rbuf_end_), kNoThrow);
  if (ec == asio::error::eof) {
    rbuf_eof_ = true;
    co_return asio::error_code{};
  }
  if (ec) co_return ec;
  rbuf_end_ += n;
  co_return asio::error_code{};
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
  if (ssl_error == SSL_ERROR_WANT_READ) co_return co_await Fill();
  auto [ec] = co_await sock_.async_wait(tcp::socket::wait_write, kNoThrow);
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
  if (!ssl_) return sock_.async_read_some(asio::buffer(p, n), kNoThrow);
  return TlsReadSome(p, n);
}

asio::awaitable<Stream::IoResult> Stream::Write(const void* p, size_t n) {
  if (!ssl_) return asio::async_write(sock_, asio::buffer(p, n), kNoThrow);
  return TlsWrite(p, n);
}

asio::awaitable<Stream::IoResult> Stream::Write(std::span<const asio::const_buffer> bufs) {
  if (!ssl_) return asio::async_write(sock_, bufs, kNoThrow);
  return TlsWrite(bufs);
}

asio::awaitable<Stream::IoResult> Stream::TlsReadSome(void* p, size_t n) {
  for (;;) {
    size_t got = 0;
    ERR_clear_error();
    errno = 0;
    const int r = SSL_read_ex(ssl_, p, n, &got);
    if (r == 1) {
      ReleaseIdleBuffer();
      co_return IoResult{asio::error_code{}, got};
    }
    const int e = SSL_get_error(ssl_, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) co_return IoResult{SslError(r), 0};
    if (auto ec = co_await WaitFor(e)) co_return IoResult{ec, 0};
    if (!ssl_) co_return IoResult{asio::error::operation_aborted, 0};
  }
}

asio::awaitable<Stream::IoResult> Stream::TlsWrite(const void* p, size_t n) {
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
    // A write that needs a read first (not in TLS 1.3 in practice): the
    // reader fills the buffer; wait for the socket instead of racing it.
    auto [ec] = co_await sock_.async_wait(
        e == SSL_ERROR_WANT_WRITE ? tcp::socket::wait_write : tcp::socket::wait_read, kNoThrow);
    if (ec) co_return IoResult{ec, done};
    if (!ssl_) co_return IoResult{asio::error::operation_aborted, done};
  }
  co_return IoResult{asio::error_code{}, done};
}

asio::awaitable<Stream::IoResult> Stream::TlsWrite(std::span<const asio::const_buffer> bufs) {
  size_t total = 0;
  for (const auto& b : bufs) total += b.size();
  if (total <= kGatherMax) {
    gather_.clear();
    for (const auto& b : bufs) gather_.append(static_cast<const char*>(b.data()), b.size());
    co_return co_await TlsWrite(gather_.data(), gather_.size());
  }
  size_t done = 0;
  for (const auto& b : bufs) {
    auto [ec, n] = co_await TlsWrite(b.data(), b.size());
    done += n;
    if (ec) co_return IoResult{ec, done};
  }
  co_return IoResult{asio::error_code{}, done};
}

Stream::IoResult Stream::TryReadSome(void* p, size_t n) {
  for (;;) {
    const ssize_t r = ::recv(sock_.native_handle(), p, n, MSG_DONTWAIT);
    if (r >= 0) return IoResult{asio::error_code{}, static_cast<size_t>(r)};
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return IoResult{asio::error::would_block, 0};
    return IoResult{asio::error_code(errno, asio::error::get_system_category()), 0};
  }
}

asio::awaitable<std::tuple<asio::error_code>> Stream::WaitReadable() {
  return sock_.async_wait(tcp::socket::wait_read, kNoThrow);
}

bool Stream::IdleReadable() {
  if (!ssl_) return false;
  if (!rbuf_) rbuf_.reset(new char[kReadBuffer]);
  if (rbuf_end_ < kReadBuffer) {
    asio::error_code ec;
    const size_t n =
        sock_.read_some(asio::buffer(rbuf_.get() + rbuf_end_, kReadBuffer - rbuf_end_), ec);
    if (ec == asio::error::eof) return false;
    if (ec && ec != asio::error::would_block) return false;
    rbuf_end_ += n;
  }
  char byte;
  size_t got = 0;
  ERR_clear_error();
  const int r = SSL_read_ex(ssl_, &byte, 1, &got);
  if (r == 1) return false;  // application data on an idle connection: out of step
  const int e = SSL_get_error(ssl_, r);
  ERR_clear_error();
  ReleaseIdleBuffer();
  return e == SSL_ERROR_WANT_READ;
}

void Stream::ReleaseIdleBuffer() {
  // Everything read has been taken: the buffer goes until the next read, so
  // an idle TLS connection holds no read buffer of ours (nor, with
  // SSL_MODE_RELEASE_BUFFERS, of OpenSSL's).
  if (rbuf_ && rbuf_begin_ == rbuf_end_) rbuf_.reset();
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
