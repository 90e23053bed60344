// A small blocking HTTP/1.1 client for the CLI and for talking to etcd's
// JSON gateway: keep-alive on one connection, timeouts on every read and
// write, Content-Length, chunked and close-delimited bodies, and a streaming
// mode that hands body bytes over as they arrive (etcd watches).
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

struct ssl_st;
struct ssl_ctx_st;

namespace weft::http {

struct ClientResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-case
  std::string body;
  std::string Header(std::string_view name) const;
};

struct ClientOptions {
  int64_t connect_timeout_ms = 3000;
  int64_t io_timeout_ms = 30000;     // each read/write; 0 waits forever
  size_t max_body_bytes = 64 << 20;  // larger answers fail
  // Sent with every request (an API token, say), before the call's own.
  std::vector<std::pair<std::string, std::string>> headers;
  // HTTPS: the server's certificate must chain to tls_ca_pem (PEM roots;
  // empty: the system's) and name tls_server_name (empty: the host of
  // host_port). A client certificate is presented when tls_cert_pem is set.
  bool tls = false;
  std::string tls_ca_pem, tls_cert_pem, tls_key_pem, tls_server_name;
};

// Not thread-safe, except Shutdown(): one thread makes the calls.
class Client {
 public:
  // `host_port` is "HOST:PORT" ("localhost" allowed).
  explicit Client(std::string host_port, ClientOptions opts = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // One request; reconnects once when a kept-alive connection turns out to
  // be closed before anything was sent back. Unavailable on network errors.
  Result<ClientResponse> Do(std::string_view method, std::string_view target,
                            std::string_view body = {},
                            const std::vector<std::pair<std::string, std::string>>& headers = {});

  // Sends a request and calls on_data with each piece of the response body
  // as it arrives until the body ends, on_data returns false, or an error.
  // The response head (status, headers) is in *head. on_data runs on the
  // calling thread, never after Stream returns; each piece is valid only
  // during its call (a view into the client's read buffer).
  Status Stream(std::string_view method, std::string_view target, std::string_view body,
                ClientResponse* head, const std::function<bool(std::string_view)>& on_data);

  // Closes the connection for good, from any thread: a Stream or Do in
  // progress fails, and so does every later one (also when it comes before
  // the connection is made).
  void Shutdown();
  const std::string& host_port() const { return host_port_; }

 private:
  Status Connect();
  Status Send(std::string_view method, std::string_view target, std::string_view body,
              const std::vector<std::pair<std::string, std::string>>& headers);
  Status ReadResponse(ClientResponse* out, const std::function<bool(std::string_view)>* on_data,
                      bool* reusable);
  Status ReadMore();
  Status StartTls();
  void Close();

  const std::string host_port_;
  const ClientOptions opts_;
  // Guards fd_'s changes and shut_down_: Shutdown reads fd_ from another
  // thread. The client's own thread reads fd_ without it.
  std::mutex fd_mu_;
  int fd_ = -1;
  bool shut_down_ = false;
  ssl_ctx_st* tls_ctx_ = nullptr;  // made on the first HTTPS connection
  ssl_st* ssl_ = nullptr;          // the connection's TLS session
  std::string buf_;
  size_t pos_ = 0;  // consumed prefix of buf_
};

}  // namespace weft::http
