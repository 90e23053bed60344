// The client side of the config stream: one thread that keeps a stream open
// to one of the servers, applies what arrives, answers ACK or NACK, and
// reconnects with jittered exponential backoff. It keeps the last state it
// accepted, so a reconnect resumes from the versions it holds and a server
// outage changes nothing locally (fail static).
#pragma once

#include <grpcpp/channel.h>
#include <grpcpp/support/channel_arguments.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/status.h"
#include "identity/cert_manager.h"
#include "weft/v1/config.pb.h"
#include "xds/resources.h"

namespace grpc {
class ClientContext;
}

namespace weft::xds {

// The roots clients verify servers' config-stream certificates with
// (servers run with --grpc-tls). It starts as --server-ca; an agent or a
// proxy then replaces it with the trust bundle the servers stream to it, so
// a root rotation reaches it without new files. Thread-safe.
class ServerTrust {
 public:
  explicit ServerTrust(std::string pem) : pem_(std::move(pem)) {}
  std::string pem() const {
    std::lock_guard<std::mutex> l(mu_);
    return pem_;
  }
  // The roots of a bundle the servers streamed; true when they changed.
  bool SetFromBundle(const weft::v1::Bundle& b) {
    std::string pem;
    for (const auto& r : b.roots_pem()) pem += r;
    return Set(std::move(pem));
  }
  // True when the roots changed.
  bool Set(std::string pem) {
    std::lock_guard<std::mutex> l(mu_);
    if (pem.empty() || pem == pem_) return false;
    pem_ = std::move(pem);
    return true;
  }
  // The client certificate presented to servers (an agent's node
  // certificate): used by every channel dialled from now on.
  void SetIdentity(std::string key_pem, std::string cert_pem) {
    std::lock_guard<std::mutex> l(mu_);
    key_pem_ = std::move(key_pem);
    cert_pem_ = std::move(cert_pem);
  }
  bool has_identity() const {
    std::lock_guard<std::mutex> l(mu_);
    return !cert_pem_.empty();
  }
  // Roots, and the client key and certificate ("" when none).
  void Get(std::string* roots, std::string* key_pem, std::string* cert_pem) const {
    std::lock_guard<std::mutex> l(mu_);
    *roots = pem_;
    *key_pem = key_pem_;
    *cert_pem = cert_pem_;
  }

 private:
  mutable std::mutex mu_;  // guards everything below
  std::string pem_;
  std::string key_pem_, cert_pem_;
};

// The PEM roots of a --server-ca FILE; "" with *err when the file cannot be
// read or holds no certificate.
std::string ReadServerCa(const std::string& path, std::string* err);

// A channel to a server's config stream: TLS verified against `trust` when
// there is one (presenting its client certificate, when it has one),
// plaintext otherwise. `trust` is read during the call only.
std::shared_ptr<grpc::Channel> DialServer(const std::string& target, const ServerTrust* trust,
                                          grpc::ChannelArguments args = {});

struct StreamClientOptions {
  // At least one: an empty list divides by zero on the client's thread.
  std::vector<std::string> servers;           // HOST:PORT of the servers' gRPC ports, tried in turn
  std::shared_ptr<ServerTrust> server_trust;  // TLS to the servers; null: plaintext
  weft::v1::ClientInfo info;
  int64_t backoff_min_ms = 100;
  int64_t backoff_max_ms = 5000;
  size_t max_message_bytes = 64 << 20;
  bool separate_connection = false;  // do not share a TCP connection with other clients
  std::vector<std::pair<std::string, std::string>> metadata;  // sent with the stream
};

// SetInitialState, then Start once, from the owner's thread. Stop and the
// accessors are thread-safe; Stop joins the client thread, so never call it
// from inside apply.
class StreamClient {
 public:
  // Applies a candidate state (everything the client would hold after the
  // response). Returns "" to ACK, or the reason to NACK (the state is then
  // not kept). Called on the client's thread, never after Stop() returns;
  // `state` and `resp` are valid only during the call.
  using ApplyFn =
      std::function<std::string(const ResourceMap& state, const weft::v1::StreamResponse& resp)>;

  StreamClient(StreamClientOptions opts, ApplyFn apply);
  ~StreamClient();

  // What the client already holds (a persisted cache), before Start: the
  // first request lists these versions so the server sends only the rest.
  void SetInitialState(ResourceMap state, std::string version);
  void Start();
  void Stop();

  bool connected() const { return connected_.load(); }
  std::string acked_version() const;
  uint64_t responses() const { return responses_.load(); }
  uint64_t nacks() const { return nacks_.load(); }
  uint64_t reconnects() const { return reconnects_.load(); }

 private:
  void Run();
  // One stream until it breaks. Returns true when something was received.
  bool RunOnce(const std::string& server);

  const StreamClientOptions opts_;
  const ApplyFn apply_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> connected_{false};
  std::atomic<uint64_t> responses_{0}, nacks_{0}, reconnects_{0};
  // Guards ctx_ and acked_version_; cv_ (with mu_) cuts the reconnect
  // backoff short on Stop.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  grpc::ClientContext* ctx_ = nullptr;  // guarded by mu_: the stream in progress
  ResourceMap state_;                   // client thread only
  std::string acked_version_;           // guarded by mu_
};

// Sign calls (workload certificates from CSRs), blocking, to the servers in
// turn until one answers. For a certificate manager's thread: not
// thread-safe (it rotates through the servers unguarded).
class SignClient {
 public:
  SignClient(std::vector<std::string> servers,
             std::vector<std::pair<std::string, std::string>> metadata,
             std::shared_ptr<ServerTrust> trust = nullptr);
  Result<weft::v1::SignResponse> Sign(const weft::v1::SignRequest& req, int64_t timeout_ms = 10000);
  // What a certificate manager asks for: a certificate for ns/service from
  // a CSR (`node`: the agent's node, "" for a proxy without one).
  Result<identity::Issued> Issue(const std::string& csr_pem, const std::string& ns,
                                 const std::string& service, const std::string& node);

 private:
  const std::vector<std::string> servers_;
  const std::vector<std::pair<std::string, std::string>> metadata_;
  const std::shared_ptr<ServerTrust> trust_;
  size_t next_ = 0;
};

// A workload's key and certificate as the stream carries them to a proxy.
weft::v1::Secret ToSecret(const std::string& key_pem, const identity::Issued& cert);

}  // namespace weft::xds
