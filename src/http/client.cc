#include "http/client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/net.h"
#include "http/http1/parser.h"

namespace weft::http {
namespace {

Status NetError(const std::string& where, const std::string& what) {
  return {StatusCode::kUnavailable, where + ": " + what};
}

}  // namespace

std::string ClientResponse::Header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return v;
  return {};
}

Client::Client(std::string host_port, ClientOptions opts)
    : host_port_(std::move(host_port)), opts_(opts) {}

Client::~Client() {
  Close();
  if (tls_ctx_) SSL_CTX_free(tls_ctx_);
}

void Client::Close() {
  if (ssl_) {
    SSL_free(ssl_);
    ssl_ = nullptr;
  }
  {
    std::lock_guard<std::mutex> l(fd_mu_);
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  buf_.clear();
  pos_ = 0;
}

void Client::Shutdown() {
  std::lock_guard<std::mutex> l(fd_mu_);
  shut_down_ = true;
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
}

Status Client::Connect() {
  std::string why;
  auto addr = ParseSocketAddress(host_port_, &why);
  if (!addr) return {StatusCode::kInvalidArgument, "address \"" + host_port_ + "\": " + why};
  int fd = ::socket(addr->storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return NetError(host_port_, strerror(errno));
  int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr->storage), addr->len);
  if (rc != 0 && errno != EINPROGRESS) {
    std::string e = strerror(errno);
    ::close(fd);
    return NetError(host_port_, e);
  }
  if (rc != 0) {
    pollfd p{fd, POLLOUT, 0};
    int n = ::poll(&p, 1, static_cast<int>(opts_.connect_timeout_ms));
    int err = 0;
    socklen_t len = sizeof(err);
    if (n <= 0) {
      ::close(fd);
      return NetError(host_port_, "connect timeout");
    }
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
      ::close(fd);
      return NetError(host_port_, strerror(err));
    }
  }
  int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  if (opts_.io_timeout_ms > 0) {
    timeval tv{static_cast<time_t>(opts_.io_timeout_ms / 1000),
               static_cast<suseconds_t>((opts_.io_timeout_ms % 1000) * 1000)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  {
    std::lock_guard<std::mutex> l(fd_mu_);
    if (shut_down_) {
      ::close(fd);
      return NetError(host_port_, "client shut down");
    }
    fd_ = fd;
  }
  if (opts_.tls) return StartTls();
  return {};
}

namespace {

std::string TlsError(const char* what) {
  unsigned long e = ERR_get_error();
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return std::string(what) + ": " + (e ? buf : "failed");
}

// Adds every certificate of `pem` to `store`; false when there is none.
bool AddRoots(X509_STORE* store, const std::string& pem) {
  BIO* b = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  int n = 0;
  while (X509* c = PEM_read_bio_X509(b, nullptr, nullptr, nullptr)) {
    X509_STORE_add_cert(store, c);
    X509_free(c);
    ++n;
  }
  BIO_free(b);
  ERR_clear_error();
  return n > 0;
}

}  // namespace

Status Client::StartTls() {
  if (!tls_ctx_) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) return NetError(host_port_, TlsError("TLS"));
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    bool ok = opts_.tls_ca_pem.empty() ? SSL_CTX_set_default_verify_paths(ctx) == 1
                                       : AddRoots(SSL_CTX_get_cert_store(ctx), opts_.tls_ca_pem);
    if (ok && !opts_.tls_cert_pem.empty()) {
      BIO* cb =
          BIO_new_mem_buf(opts_.tls_cert_pem.data(), static_cast<int>(opts_.tls_cert_pem.size()));
      X509* cert = PEM_read_bio_X509(cb, nullptr, nullptr, nullptr);
      BIO_free(cb);
      BIO* kb =
          BIO_new_mem_buf(opts_.tls_key_pem.data(), static_cast<int>(opts_.tls_key_pem.size()));
      EVP_PKEY* key = PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr);
      BIO_free(kb);
      ok = cert && key && SSL_CTX_use_certificate(ctx, cert) == 1 &&
           SSL_CTX_use_PrivateKey(ctx, key) == 1 && SSL_CTX_check_private_key(ctx) == 1;
      X509_free(cert);
      EVP_PKEY_free(key);
    }
    if (!ok) {
      std::string why = TlsError("TLS client setup (CA, certificate or key)");
      SSL_CTX_free(ctx);
      return {StatusCode::kInvalidArgument, host_port_ + ": " + why};
    }
    tls_ctx_ = ctx;
  }
  ssl_ = SSL_new(tls_ctx_);
  if (!ssl_) return NetError(host_port_, TlsError("TLS"));
  SSL_set_fd(ssl_, fd_);
  std::string host = opts_.tls_server_name;
  if (host.empty()) {
    std::string why;
    uint16_t port = 0;
    if (!SplitHostPort(host_port_, &host, &port, &why)) host = host_port_;
  }
  in6_addr a6{};
  in_addr a4{};
  const bool ip =
      inet_pton(AF_INET, host.c_str(), &a4) == 1 || inet_pton(AF_INET6, host.c_str(), &a6) == 1;
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
  if (ip) {
    X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl_, host.c_str());
    X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
  }
  if (SSL_connect(ssl_) != 1) {
    const long v = SSL_get_verify_result(ssl_);
    std::string why = v != X509_V_OK ? std::string("TLS: the server's certificate: ") +
                                           X509_verify_cert_error_string(v)
                                     : TlsError("TLS handshake");
    ERR_clear_error();
    Close();
    return NetError(host_port_, why);
  }
  return {};
}

Status Client::Send(std::string_view method, std::string_view target, std::string_view body,
                    const std::vector<std::pair<std::string, std::string>>& headers) {
  std::string req;
  req.reserve(256 + body.size());
  req.append(method).append(" ").append(target).append(" HTTP/1.1\r\nhost: ");
  req.append(host_port_).append("\r\n");
  for (const auto& [k, v] : opts_.headers) req.append(k).append(": ").append(v).append("\r\n");
  for (const auto& [k, v] : headers) req.append(k).append(": ").append(v).append("\r\n");
  if (!body.empty() || method == "PUT" || method == "POST")
    req.append("content-length: ").append(std::to_string(body.size())).append("\r\n");
  req.append("\r\n").append(body);
  size_t off = 0;
  while (off < req.size()) {
    ssize_t n = ssl_ ? SSL_write(ssl_, req.data() + off, static_cast<int>(req.size() - off))
                     : ::send(fd_, req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (ssl_ && n <= 0) {
      ERR_clear_error();
      return NetError(host_port_, "TLS write failed");
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      return NetError(host_port_, errno == EAGAIN ? "write timeout" : strerror(errno));
    }
    off += static_cast<size_t>(n);
  }
  return {};
}

Status Client::ReadMore() {
  if (pos_ > 0 && pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  }
  char tmp[16384];
  for (;;) {
    if (ssl_) {
      errno = 0;
      const int r = SSL_read(ssl_, tmp, sizeof(tmp));
      if (r > 0) {
        buf_.append(tmp, static_cast<size_t>(r));
        return {};
      }
      const int err = SSL_get_error(ssl_, r);
      if (err == SSL_ERROR_ZERO_RETURN) return {StatusCode::kNotFound, "closed"};
      if (err == SSL_ERROR_SYSCALL && errno == 0) return {StatusCode::kNotFound, "closed"};
      if (err == SSL_ERROR_SYSCALL && errno == EINTR) continue;
      if (err == SSL_ERROR_SYSCALL && errno == EAGAIN) return NetError(host_port_, "read timeout");
      // The peer's alert says why (a client certificate it wanted, say).
      return NetError(host_port_, TlsError("TLS read"));
    }
    ssize_t n = ::recv(fd_, tmp, sizeof(tmp), 0);
    if (n > 0) {
      buf_.append(tmp, static_cast<size_t>(n));
      return {};
    }
    if (n == 0) return {StatusCode::kNotFound, "closed"};  // EOF marker for callers
    if (errno == EINTR) continue;
    return NetError(host_port_, errno == EAGAIN ? "read timeout" : strerror(errno));
  }
}

Status Client::ReadResponse(ClientResponse* out,
                            const std::function<bool(std::string_view)>* on_data, bool* reusable) {
  http1::Limits limits;
  http1::Head head;
  for (;;) {
    size_t scanned = 0;
    http1::Error perr;
    head.Reset();
    http1::ParseResult r;
    while ((r = pos_ == buf_.size()
                    ? http1::ParseResult::kIncomplete
                    : http1::ParseResponse(buf_.data() + pos_, buf_.size() - pos_, limits, &scanned,
                                           "GET", &head, &perr)) ==
           http1::ParseResult::kIncomplete) {
      Status s = ReadMore();
      if (s.code() == StatusCode::kNotFound) return NetError(host_port_, "connection closed");
      if (!s.ok()) return s;
    }
    if (r == http1::ParseResult::kError)
      return NetError(host_port_, "bad response: " + std::string(perr.reason));
    if (head.status >= 100 && head.status < 200) {
      pos_ += head.head_bytes;
      continue;  // 100 Continue and friends
    }
    break;
  }
  out->status = head.status;
  out->headers.clear();
  for (const auto& h : head.headers) {
    std::string n(h.name);
    for (auto& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out->headers.emplace_back(std::move(n), std::string(h.value));
  }
  const http1::Framing framing = head.framing;
  const uint64_t length = head.content_length;
  *reusable = head.KeepAlive() && framing != http1::Framing::kUntilClose;
  pos_ += head.head_bytes;
  out->body.clear();
  auto deliver = [&](std::string_view piece) -> bool {
    if (on_data) return (*on_data)(piece);
    if (out->body.size() + piece.size() > opts_.max_body_bytes) return false;
    out->body.append(piece);
    return true;
  };
  if (framing == http1::Framing::kContentLength) {
    uint64_t left = length;
    while (left > 0) {
      if (pos_ == buf_.size()) {
        Status s = ReadMore();
        if (!s.ok()) return NetError(host_port_, "response body cut short");
      }
      size_t take = std::min<uint64_t>(left, buf_.size() - pos_);
      if (!deliver(std::string_view(buf_.data() + pos_, take))) {
        *reusable = false;
        return on_data ? Status() : NetError(host_port_, "response body too large");
      }
      pos_ += take;
      left -= take;
    }
  } else if (framing == http1::Framing::kChunked) {
    http1::ChunkedDecoder dec(limits);
    std::vector<std::string_view> spans;
    while (!dec.Done()) {
      if (pos_ == buf_.size()) {
        Status s = ReadMore();
        if (!s.ok())
          return s.code() == StatusCode::kNotFound ? NetError(host_port_, "response body cut short")
                                                   : s;
      }
      spans.clear();
      http1::Error cerr;
      long used = dec.Feed(buf_.data() + pos_, buf_.size() - pos_, &spans, &cerr);
      if (used < 0) return NetError(host_port_, "bad chunked body: " + std::string(cerr.reason));
      bool keep = true;
      for (auto sp : spans) keep = keep && deliver(sp);
      pos_ += static_cast<size_t>(used);
      if (!keep) {
        *reusable = false;
        return on_data ? Status() : NetError(host_port_, "response body too large");
      }
    }
  } else if (framing == http1::Framing::kUntilClose) {
    for (;;) {
      if (pos_ < buf_.size()) {
        if (!deliver(std::string_view(buf_.data() + pos_, buf_.size() - pos_))) {
          return on_data ? Status() : NetError(host_port_, "response body too large");
        }
        pos_ = buf_.size();
      }
      Status s = ReadMore();
      if (s.code() == StatusCode::kNotFound) break;
      if (!s.ok()) return s;
    }
  }
  return {};
}

Result<ClientResponse> Client::Do(std::string_view method, std::string_view target,
                                  std::string_view body,
                                  const std::vector<std::pair<std::string, std::string>>& headers) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    const bool reused = fd_ >= 0;
    if (!reused) {
      if (Status s = Connect(); !s.ok()) return s;
    }
    Status s = Send(method, target, body, headers);
    ClientResponse resp;
    bool reusable = false;
    if (s.ok()) s = ReadResponse(&resp, nullptr, &reusable);
    if (s.ok()) {
      if (!reusable) Close();
      return resp;
    }
    Close();
    if (!reused) return s;  // a fresh connection failed: report it
  }
  return NetError(host_port_, "connection lost");
}

Status Client::Stream(std::string_view method, std::string_view target, std::string_view body,
                      ClientResponse* head, const std::function<bool(std::string_view)>& on_data) {
  Close();
  if (Status s = Connect(); !s.ok()) return s;
  if (Status s = Send(method, target, body, {}); !s.ok()) {
    Close();
    return s;
  }
  bool reusable = false;
  Status s = ReadResponse(head, &on_data, &reusable);
  Close();
  return s;
}

}  // namespace weft::http
