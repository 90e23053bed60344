// The server side of the config stream (proto/weft/v1/config.proto) over
// gRPC's callback API. Each stream is a Session; sessions subscribe to an
// identity's snapshot. The compiler and the subscription registry live on
// the server's io thread; sessions are driven by gRPC's threads and guard
// their own state with a mutex. At most one response is unacknowledged per
// stream: a newer snapshot waits for the ACK/NACK, then the session sends
// the difference between what the client holds and the newest snapshot.
#pragma once

#include <asio.hpp>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/time.h"
#include "control/api.h"
#include "control/compiler.h"

namespace grpc {
class Server;
class CallbackServerContext;
}  // namespace grpc

namespace weft::prom {
class Writer;
}

namespace weft::control {

// Atomics: written on gRPC and io threads, read anywhere.
struct StreamCounters {
  std::atomic<uint64_t> streams_total{0};
  std::atomic<int64_t> streams_active{0};
  std::atomic<uint64_t> responses{0};
  std::atomic<uint64_t> acks{0};
  std::atomic<uint64_t> nacks{0};
  std::atomic<uint64_t> resumed{0};                // streams that resumed from versions they held
  std::atomic<uint64_t> bad_requests{0};           // protocol errors: stream ended with an error
  std::atomic<uint64_t> node_syncs{0};             // agents' node documents written
  std::atomic<uint64_t> unauthenticated{0};        // no or bad credentials
  std::atomic<int64_t> last_unauthenticated_s{0};  // when the last such call came (unix s)
  std::atomic<uint64_t> foreign_node{0};           // a node certificate used for another node
  std::atomic<uint64_t> tokenless_refused{0};      // streams without the token, over their share
  std::atomic<uint64_t> per_peer_refused{0};       // over max_streams_per_peer
  std::atomic<uint64_t> local_refused{0};          // agent socket: not that proxy's peer
  std::atomic<uint64_t> local_conns_refused{0};    // agent socket: over its connection bounds
  std::atomic<uint64_t> signed_certs{0};
  std::atomic<uint64_t> sign_refused{0};
  std::atomic<uint64_t> nodes_marked_critical{0};  // agents gone past node_timeout
  std::atomic<uint64_t> node_marks_reverted{0};    // unmarked: lost with most agents at once
};

// Who made a call, as far as the server could check (Sign, SyncNode, Stream).
struct Caller {
  std::string peer;            // gRPC's name for the peer address
  std::string node;            // the node of a verified node certificate ("" none)
  std::string acl_token;       // x-consul-token or authorization: Bearer ("" none)
  bool join_token_ok = false;  // a valid, unexpired join token came with the call
  bool open = false;           // nothing is checked (--dev, an agent's socket)
  // On a unix socket: the peer process's credentials (SO_PEERCRED, taken
  // when the stream starts); -1 elsewhere.
  int64_t uid = -1, gid = -1, pid = -1;
};

// How often gRPC looks at the server's certificate files for a new chain.
inline constexpr unsigned kTlsRefreshS = 2;

struct StreamOptions {
  size_t max_streams = 10000;          // beyond: refused with RESOURCE_EXHAUSTED
  size_t max_streams_per_peer = 1000;  // from one IP address; beyond: RESOURCE_EXHAUSTED
  // A unix socket (an agent's, for its node's proxies): connections open at
  // once, in all and from one uid; beyond, a new one is closed at once.
  // Connections without a call for local_idle_ms are closed by gRPC.
  size_t max_local_connections = 1024;
  size_t max_local_connections_per_uid = 256;
  int64_t local_idle_ms = 60000;
  // Of max_streams, the last tenth (at least one) only for streams with the
  // join token: tokenless clients cannot take every slot from the agents.
  // The first message of a stream (the client's hello) is at most this big.
  size_t max_first_message_bytes = 64 * 1024;
  size_t max_message_bytes = 64 << 20;
  int64_t debounce_ms = 5;       // changes within this window are pushed together
  bool accept_node_sync = true;  // false on agents (they forward nothing)
  // A server with a real store: agents prove their node with its
  // certificate (mutual TLS; tls_cert_file must be set), a node certificate
  // is first obtained with a join token, and proxies without an agent
  // present an ACL token with service:write on their service. Off (--dev,
  // and an agent's local socket): callers are taken at their word.
  bool authenticate = false;
  // Issues certificates (Sign RPC), on the io thread, once per accepted
  // request; it can run after Stop() for a request accepted before, while
  // the io_context runs. Unset: the RPC is refused (an agent's local
  // socket: certificates come with the stream there).
  std::function<Status(const Caller&, const weft::v1::SignRequest&, weft::v1::SignResponse*)> sign;
  // Called on the io thread when a client subscribes (an agent starts
  // certificates for its local proxies here); it can run after Stop() for a
  // stream opened before, while the io_context runs. The Identity is valid
  // during the call only.
  std::function<void(const Identity&)> on_subscribe;
  // Called on the io thread before a stream subscribes: "" lets it in, any
  // other text refuses it with PERMISSION_DENIED and that reason (an
  // agent's socket: who may act as which local proxy).
  std::function<std::string(const Caller&, const Identity&)> authorize;
  // Servers: a node whose agent has had no stream for this long gets the
  // critical node check kAgentCheckId (0: never). Not while more than half
  // of the agents are gone at once (this server is likely the one cut off).
  int64_t node_timeout_ms = 0;
  // Serve TLS with the certificate chain and key in these PEM files (a
  // server's, from the mesh CA); empty: plaintext (and always on a unix
  // socket). gRPC re-reads them when they change (every kTlsRefreshS), so a
  // renewed certificate needs no restart; the key must not change while the
  // server runs.
  std::string tls_cert_file, tls_key_file;
};

// `api` must outlive the StreamServer, which registers an OnChange listener
// and a member source with it: neither may run once the StreamServer is gone
// (destroy it after the io_context stopped running). Public methods are for
// the io thread, except TokenOk (any thread).
class StreamServer {
 public:
  StreamServer(asio::io_context& io, Api& api, StreamOptions opts = {});
  ~StreamServer();

  // Binds `addr` ("HOST:PORT", port 0 allowed, or "unix:PATH") and starts
  // serving. A unix socket's connections are accepted here and handed to
  // gRPC, so that each stream knows its peer's credentials (Caller::uid).
  Status Start(const std::string& addr);
  std::string bound() const { return bound_; }
  // Stops the debounce and liveness timers and shuts gRPC down (open
  // streams get 500 ms). Streams' posted Subscribe/Unsubscribe and Sign
  // work can still run on the io thread afterwards.
  void Stop();

  void Metrics(prom::Writer& w) const;
  // Whether an agent of `node` has a config stream open to this server now.
  bool AgentConnected(const std::string& node) const {
    auto it = agents_.find(node);
    return it != agents_.end() && it->second.streams > 0;
  }
  // Identity material for the compiler.
  void SetBundle(ResourcePtr bundle);
  void SetSecret(const std::string& ns, const std::string& service, ResourcePtr secret);

  class Session;
  class Service;
  // Posted to the io thread by a Session.
  void Subscribe(const std::shared_ptr<Session>& s);
  // What a call proves (any thread): the node of a client certificate that
  // verifies against the current trust bundle, and the ACL token sent.
  Caller CallerOf(const grpc::CallbackServerContext* ctx) const;
  // Takes a stream slot for `peer_ip` (false: at max_streams_per_peer);
  // ReleasePeer gives it back (any thread).
  bool TakePeer(const std::string& peer_ip);
  void ReleasePeer(const std::string& peer_ip);
  // Counts a call refused for its credentials (any thread).
  void NoteUnauthenticated() {
    counters_.unauthenticated++;
    counters_.last_unauthenticated_s = WallMicros() / 1000000;
  }
  void Unsubscribe(const std::shared_ptr<Session>& s);

 private:
  void OnStateChange();
  void Compile();
  void PushChanged();
  void LivenessTick();
  void CheckLiveness();

  struct AgentLink {
    int streams = 0;            // open streams of this node's agent to this server
    int64_t gone_since_ms = 0;  // when the last one ended
    bool marked = false;        // the node check is written critical
    bool held = false;          // lost with most others: not marked until it returns
  };
  // Io thread only (node_liveness.cc).
  std::map<std::string, AgentLink> agents_;
  asio::steady_timer liveness_;
  bool partition_warned_ = false;

  // Constant after construction.
  asio::io_context& io_;
  Api& api_;
  const StreamOptions opts_;

  Compiler compiler_;  // io thread only
  // Set by Start(); Stop() resets server_.
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  std::string bound_;
  // A unix socket's listener (io thread); errors such as EMFILE retry after
  // local_retry_.
  void AcceptLocal();
  std::unique_ptr<asio::local::stream_protocol::acceptor> local_acceptor_;
  asio::steady_timer local_retry_;
  // The connections handed to gRPC (io thread): it closes them without
  // telling, so each is known by its descriptor and the socket's inode, and
  // one whose descriptor no longer names that socket is gone.
  struct LocalConn {
    int fd;
    uint64_t inode;
    uint32_t uid;
  };
  std::vector<LocalConn> local_conns_;
  // False (and counted, logged) when a connection from `uid` is over the bounds.
  bool AdmitLocal(int fd, uint32_t uid);
  // identity key -> sessions (io thread only)
  std::map<std::string, std::set<std::shared_ptr<Session>>> subscribers_;
  StreamCounters counters_;  // any thread
  // Open streams per peer IP address (entries leave at zero).
  std::mutex peers_mu_;
  std::map<std::string, size_t> streams_per_peer_;  // guarded by peers_mu_
  // The trust bundle's roots and trust domain, for client certificates
  // (guarded by roots_mu_; written on the io thread, read on gRPC's).
  mutable std::mutex roots_mu_;
  std::string roots_pem_, trust_domain_;
  asio::steady_timer debounce_;  // io thread only, with compile_pending_
  bool compile_pending_ = false;
  friend class Session;
  friend class Service;
};

}  // namespace weft::control
