// A small HTTP/1.1 server for APIs (the control plane's REST API, the proxy's
// admin endpoint, later the agent's local API): keep-alive, Content-Length
// and chunked request bodies, bounded everything, one coroutine per
// connection on the caller's io_context. Handlers are coroutines, so an
// endpoint can wait (blocking queries) without holding a thread.
//
// It is not the proxy's data path: requests are read whole (up to
// max_body_bytes) because API payloads are small documents.
#pragma once

#include <asio.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

struct ssl_ctx_st;

namespace weft::http {

struct Request {
  std::string method;
  std::string target;                                        // as sent
  std::string path;                                          // percent-decoded, without the query
  std::vector<std::pair<std::string, std::string>> query;    // decoded, in order
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-case
  std::string body;
  std::string peer;  // "ADDR:PORT"

  // The first value of query parameter `key`, or nullptr. A bare "?passing"
  // has the empty value. Query and Header point into this Request: valid
  // while it lives unmodified.
  const std::string* Query(std::string_view key) const;
  bool HasQuery(std::string_view key) const { return Query(key) != nullptr; }
  // The first value of header `name` (lower-case), or "".
  std::string_view Header(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  static Response Text(int status, std::string body);
  static Response Json(int status, std::string body);
};

// Called on the io_context's thread, once per request; the Request lives
// until the returned awaitable completes. A handler in progress at Close()
// runs to completion (its response is dropped).
using Handler = std::function<asio::awaitable<Response>(Request&)>;

struct ServerOptions {
  std::string name = "http";               // for log lines
  size_t max_body_bytes = 1024 * 1024;     // -> 413
  size_t max_connections = 1024;           // beyond: accepted and closed at once
  int64_t header_read_timeout_ms = 10000;  // head and body -> 408
  int64_t idle_timeout_ms = 60000;         // between keep-alive requests
  // HTTPS when set (a server context with its certificate and key); the
  // caller keeps it alive as long as the Server.
  ssl_ctx_st* tls_ctx = nullptr;
};

struct ServerCounters {
  uint64_t requests = 0;
  uint64_t rejected_connections = 0;  // over max_connections
  uint64_t bad_requests = 0;          // parse errors, too large, timeouts
  uint64_t tls_handshake_failures = 0;
};

// Not thread-safe: every call on the thread running `io`. Its coroutines
// resume after Close() and read the Server's members: destroy it only once
// `io` has stopped running.
class Server {
 public:
  Server(asio::io_context& io, Handler handler, ServerOptions opts = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and starts accepting. `addr` is "HOST:PORT" (port 0 allowed).
  Status Listen(const std::string& addr);
  // The bound address, "127.0.0.1:PORT".
  std::string bound() const;
  // Stops accepting and closes every connection.
  void Close();
  const ServerCounters& counters() const { return counters_; }
  size_t active_connections() const;

 private:
  struct Conn;
  asio::awaitable<void> Accept();
  asio::awaitable<void> Serve(std::shared_ptr<Conn> c);

  asio::io_context& io_;
  Handler handler_;
  const ServerOptions opts_;
  std::optional<asio::ip::tcp::acceptor> acceptor_;
  std::vector<std::weak_ptr<Conn>> conns_;
  ServerCounters counters_;
  bool closed_ = false;
};

// A server TLS context (TLS 1.2 or later) from a PEM certificate chain (leaf
// first) and its key, for ServerOptions::tls_ctx; free it with
// SSL_CTX_free. Null with *err when they do not load or do not match.
ssl_ctx_st* NewServerTlsContext(const std::string& cert_chain_pem, const std::string& key_pem,
                                std::string* err);
// Replaces the certificate chain and key of a server context (a renewed
// certificate): handshakes that start afterwards present it. On the thread
// that makes the context's connections. False with *err, and the context
// unchanged, when they do not load or do not match.
bool SetServerCertificate(ssl_ctx_st* ctx, const std::string& cert_chain_pem,
                          const std::string& key_pem, std::string* err);

// A request target into r->path (percent-decoded, without the query) and
// r->query (each name and value decoded, '+' as a space), in order.
void ParseTarget(std::string_view target, Request* r);

// `plus_as_space` for query strings (form encoding), not for paths.
std::string PercentDecode(std::string_view s, bool plus_as_space = false);
std::string PercentEncode(std::string_view s);

}  // namespace weft::http
