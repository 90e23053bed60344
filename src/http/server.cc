#include "http/server.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include <asio/experimental/as_tuple.hpp>
#include <chrono>

#include "base/log.h"
#include "base/net.h"
#include "base/strings.h"
#include "http/http1/parser.h"
#include "io/asio.h"
#include "io/buffer.h"
#include "io/stream.h"

namespace weft::http {
namespace {

using tcp = asio::ip::tcp;

int HexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void ParseQueryInto(std::string_view q, Request* r) {
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view kv = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    if (kv.empty()) continue;
    size_t eq = kv.find('=');
    std::string k = PercentDecode(kv.substr(0, eq), true);
    std::string v = eq == std::string_view::npos ? "" : PercentDecode(kv.substr(eq + 1), true);
    r->query.emplace_back(std::move(k), std::move(v));
  }
}

std::string RenderHead(const Response& r, size_t body_len, bool close) {
  std::string h = fmt::format("HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\n",
                              r.status, http1::ReasonPhrase(r.status), r.content_type, body_len);
  for (const auto& [k, v] : r.headers) {
    h += k;
    h += ": ";
    h += v;
    h += "\r\n";
  }
  if (close) h += "connection: close\r\n";
  h += "\r\n";
  return h;
}

}  // namespace

const std::string* Request::Query(std::string_view key) const {
  for (const auto& [k, v] : query)
    if (k == key) return &v;
  return nullptr;
}

std::string_view Request::Header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return v;
  return {};
}

Response Response::Text(int status, std::string body) {
  Response r;
  r.status = status;
  r.content_type = "text/plain; charset=utf-8";
  if (!body.empty() && body.back() != '\n') body += '\n';
  r.body = std::move(body);
  return r;
}

Response Response::Json(int status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

std::string PercentDecode(std::string_view s, bool plus_as_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && HexVal(s[i + 1]) >= 0 && HexVal(s[i + 2]) >= 0) {
      out += static_cast<char>(HexVal(s[i + 1]) * 16 + HexVal(s[i + 2]));
      i += 2;
    } else if (plus_as_space && s[i] == '+') {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string PercentEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

bool SetServerCertificate(ssl_ctx_st* ctx, const std::string& cert_chain_pem,
                          const std::string& key_pem, std::string* err) {
  // Everything is read first, so a chain that does not load leaves the
  // context as it was.
  BIO* cb = BIO_new_mem_buf(cert_chain_pem.data(), static_cast<int>(cert_chain_pem.size()));
  X509* leaf = PEM_read_bio_X509(cb, nullptr, nullptr, nullptr);
  STACK_OF(X509)* chain = sk_X509_new_null();
  while (X509* extra = PEM_read_bio_X509(cb, nullptr, nullptr, nullptr))
    if (!sk_X509_push(chain, extra)) X509_free(extra);
  BIO_free(cb);
  BIO* kb = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr);
  BIO_free(kb);
  bool ok = leaf && key && X509_check_private_key(leaf, key) == 1;
  // set0 takes the chain; the leaf and key are referenced, freed below.
  ok = ok && SSL_CTX_use_certificate(ctx, leaf) == 1 && SSL_CTX_use_PrivateKey(ctx, key) == 1 &&
       SSL_CTX_set0_chain(ctx, chain) == 1;
  if (ok) chain = nullptr;
  sk_X509_pop_free(chain, X509_free);
  X509_free(leaf);
  EVP_PKEY_free(key);
  ERR_clear_error();
  if (!ok) *err = "the certificate or key does not load, or they do not match";
  return ok;
}

ssl_ctx_st* NewServerTlsContext(const std::string& cert_chain_pem, const std::string& key_pem,
                                std::string* err) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) {
    *err = "SSL_CTX_new failed";
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (!SetServerCertificate(ctx, cert_chain_pem, key_pem, err)) {
    SSL_CTX_free(ctx);
    return nullptr;
  }
  return ctx;
}

void ParseTarget(std::string_view target, Request* r) {
  const size_t qm = target.find('?');
  r->path = PercentDecode(target.substr(0, qm));
  r->query.clear();
  if (qm != std::string_view::npos) ParseQueryInto(target.substr(qm + 1), r);
}

struct Server::Conn {
  explicit Conn(tcp::socket s) : stream(std::move(s)), timer(stream.socket().get_executor()) {}
  io::Stream stream;  // plain TCP, or TLS (https)
  tcp::socket& sock = stream.socket();
  asio::steady_timer timer;
  // The connection is closed when the clock passes this; max() while a
  // handler runs (a blocking query may legitimately take minutes).
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  bool timed_out = false;

  // No timer call here (this runs on every request): the watchdog never
  // sleeps longer than the shortest timeout, so a deadline set now is
  // checked in time.
  void SetDeadline(int64_t ms) {
    deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  }
  void ClearDeadline() { deadline = std::chrono::steady_clock::time_point::max(); }
  void Close() {
    stream.Close();
    timer.cancel();
  }
};

Server::Server(asio::io_context& io, Handler handler, ServerOptions opts)
    : io_(io), handler_(std::move(handler)), opts_(std::move(opts)) {}

Server::~Server() {
  try {
    Close();
  } catch (...) {  // NOLINT(bugprone-empty-catch): nothing to do while tearing down
  }
}

Status Server::Listen(const std::string& addr) {
  auto ep = io::ParseEndpoint(addr);
  if (!ep)
    return {StatusCode::kInvalidArgument,
            opts_.name + " address \"" + addr + "\": expected HOST:PORT"};
  acceptor_.emplace(io_);
  asio::error_code ec;
  acceptor_->open(ep->protocol(), ec);
  if (!ec) acceptor_->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_->bind(*ep, ec);
  if (!ec) acceptor_->listen(1024, ec);
  if (ec) {
    acceptor_.reset();
    return {StatusCode::kUnavailable, opts_.name + " " + addr + ": " + ec.message()};
  }
  asio::co_spawn(io_, Accept(), asio::detached);
  return {};
}

std::string Server::bound() const {
  if (!acceptor_) return "";
  asio::error_code ec;
  auto ep = acceptor_->local_endpoint(ec);
  return ec ? "" : io::FormatEndpoint(ep);
}

void Server::Close() {
  closed_ = true;
  asio::error_code ec;
  if (acceptor_) acceptor_->close(ec);
  for (auto& w : conns_)
    if (auto c = w.lock()) c->Close();
  conns_.clear();
}

size_t Server::active_connections() const {
  size_t n = 0;
  for (const auto& w : conns_) n += !w.expired();
  return n;
}

asio::awaitable<void> Server::Accept() {
  for (;;) {
    auto [ec, sock] = co_await acceptor_->async_accept(kNoThrow);
    if (closed_ || !acceptor_->is_open()) co_return;
    if (ec) continue;
    std::erase_if(conns_, [](const std::weak_ptr<Conn>& w) { return w.expired(); });
    if (conns_.size() >= opts_.max_connections) {
      ++counters_.rejected_connections;
      LOG_WARN("{}: connection refused: {} connections open (max_connections)", opts_.name,
               conns_.size());
      asio::error_code ignored;
      sock.close(ignored);
      continue;
    }
    auto c = std::make_shared<Conn>(std::move(sock));
    conns_.push_back(c);
    asio::co_spawn(io_, Serve(c), asio::detached);
    // Watchdog: closes the socket once the deadline passes.
    const auto wake = std::chrono::milliseconds(
        std::max<int64_t>(1, std::min(opts_.header_read_timeout_ms, opts_.idle_timeout_ms)));
    asio::co_spawn(
        io_,
        [c, wake]() -> asio::awaitable<void> {
          while (c->sock.is_open()) {
            c->timer.expires_at(std::min(c->deadline, std::chrono::steady_clock::now() + wake));
            co_await c->timer.async_wait(kNoThrow);
            if (!c->sock.is_open()) co_return;
            if (std::chrono::steady_clock::now() >= c->deadline) {
              c->timed_out = true;
              c->stream.ShutdownBoth();
              c->stream.Close();
              co_return;
            }
          }
        },
        asio::detached);
  }
}

asio::awaitable<void> Server::Serve(std::shared_ptr<Conn> c) {
  io::Buffer buf(4096);
  http1::Limits limits;
  http1::Head head;
  std::string peer;
  {
    asio::error_code ec;
    auto ep = c->sock.remote_endpoint(ec);
    if (!ec) peer = io::FormatEndpoint(ep);
  }
  if (opts_.tls_ctx) {
    // HTTPS: the handshake must finish within the head's time limit.
    c->SetDeadline(opts_.header_read_timeout_ms);
    SSL* ssl = SSL_new(opts_.tls_ctx);
    if (ssl) SSL_set_accept_state(ssl);
    if (!ssl || !c->stream.AttachTls(ssl)) {
      c->Close();
      co_return;
    }
    if (asio::error_code ec = co_await c->stream.Handshake()) {
      ++counters_.tls_handshake_failures;
      LOG_WARN_LIMITED("{}: TLS handshake with {} failed: {}", opts_.name, peer, ec.message());
      c->Close();
      co_return;
    }
  }
  bool first = true;
  for (;;) {
    c->SetDeadline(first ? opts_.header_read_timeout_ms : opts_.idle_timeout_ms);
    size_t scanned = 0;
    http1::Error perr;
    http1::ParseResult r = http1::ParseResult::kIncomplete;
    head.Reset();
    bool got_byte = !buf.empty();
    while ((r = buf.empty() ? http1::ParseResult::kIncomplete
                            : http1::ParseRequest(buf.data(), buf.size(), limits, &scanned, &head,
                                                  &perr)) == http1::ParseResult::kIncomplete) {
      if (!buf.Reserve(1024, limits.max_header_bytes + 1024)) break;
      auto [ec, n] = co_await c->stream.ReadSome(buf.write_ptr(), buf.writable());
      if (ec) {
        if (c->timed_out && got_byte) ++counters_.bad_requests;
        c->Close();
        co_return;
      }
      if (!got_byte) {
        got_byte = true;
        c->SetDeadline(opts_.header_read_timeout_ms);
      }
      buf.Commit(n);
    }
    first = false;
    Response resp;
    Request req;
    bool close = false;
    if (r != http1::ParseResult::kComplete) {
      ++counters_.bad_requests;
      resp = Response::Text(
          r == http1::ParseResult::kError ? perr.status : 431,
          r == http1::ParseResult::kError ? std::string(perr.reason) : "request head too large");
      close = true;
    } else {
      req.method = std::string(head.method);
      req.target = std::string(head.target);
      req.peer = peer;
      ParseTarget(head.target, &req);
      for (const auto& h : head.headers) {
        std::string n(h.name);
        for (auto& ch : n) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        req.headers.emplace_back(std::move(n), std::string(h.value));
      }
      close = !head.KeepAlive();
      buf.Consume(head.head_bytes);
      // Body, read whole and bounded.
      std::string err;
      int err_status = 0;
      if (head.framing == http1::Framing::kContentLength) {
        if (head.content_length > opts_.max_body_bytes) {
          err_status = 413;
          err = fmt::format("request body of {} bytes exceeds the limit of {} bytes",
                            head.content_length, opts_.max_body_bytes);
        } else {
          if (head.expect_continue && buf.size() < head.content_length) {
            static constexpr std::string_view k100 = "HTTP/1.1 100 Continue\r\n\r\n";
            auto [ec, n] = co_await c->stream.Write(k100.data(), k100.size());
            if (ec) co_return;
          }
          while (buf.size() < head.content_length) {
            if (!buf.Reserve(std::min<size_t>(head.content_length - buf.size(), 65536),
                             head.content_length + 65536))
              break;
            auto [ec, n] = co_await c->stream.ReadSome(buf.write_ptr(), buf.writable());
            if (ec) {
              c->Close();
              co_return;
            }
            buf.Commit(n);
          }
          req.body.assign(buf.data(), head.content_length);
          buf.Consume(head.content_length);
        }
      } else if (head.framing == http1::Framing::kChunked) {
        http1::ChunkedDecoder dec(limits);
        std::vector<std::string_view> spans;
        while (!dec.Done() && err_status == 0) {
          if (!buf.empty()) {
            spans.clear();
            http1::Error cerr;
            long used = dec.Feed(buf.data(), buf.size(), &spans, &cerr);
            if (used < 0) {
              err_status = 400;
              err = std::string(cerr.reason);
              break;
            }
            for (auto s : spans) req.body.append(s);
            buf.Consume(static_cast<size_t>(used));
            if (req.body.size() > opts_.max_body_bytes) {
              err_status = 413;
              err = fmt::format("request body exceeds the limit of {} bytes", opts_.max_body_bytes);
              break;
            }
            if (dec.Done()) break;
          }
          if (!buf.Reserve(4096, 256 * 1024)) {
            err_status = 400;
            err = "chunk framing too large";
            break;
          }
          auto [ec, n] = co_await c->stream.ReadSome(buf.write_ptr(), buf.writable());
          if (ec) {
            c->Close();
            co_return;
          }
          buf.Commit(n);
        }
      }
      if (err_status) {
        ++counters_.bad_requests;
        LOG_WARN("{}: {} {} from {}: {}", opts_.name, req.method, req.target, peer, err);
        resp = Response::Text(err_status, err);
        close = true;
      } else if (closed_) {
        co_return;  // closed while this request was read: no handler starts after Close()
      } else {
        ++counters_.requests;
        c->ClearDeadline();
        resp = co_await handler_(req);
        if (!c->sock.is_open()) co_return;
      }
    }
    if (closed_) close = true;
    std::string h = RenderHead(resp, resp.body.size(), close);
    const bool head_only = req.method == "HEAD";
    std::array<asio::const_buffer, 2> out{
        asio::buffer(h), asio::buffer(resp.body.data(), head_only ? 0 : resp.body.size())};
    c->SetDeadline(opts_.idle_timeout_ms);
    auto [ec, n] = co_await c->stream.Write(std::span<const asio::const_buffer>(out));
    if (!ec && close && resp.status >= 400) {
      // Lingering close: the client may still be sending a body we refused;
      // closing now would reset the connection before it reads the answer.
      c->stream.ShutdownSend();
      c->SetDeadline(1000);
      size_t drained = 0;
      char sink[16384];
      while (drained < 8 * 1024 * 1024) {
        auto [rec, rn] = co_await c->stream.ReadSome(sink, sizeof(sink));
        if (rec) break;
        drained += rn;
      }
    }
    if (ec || close) {
      c->Close();
      co_return;
    }
  }
}

}  // namespace weft::http
