// The agent's parts, shared by agent.cc (startup and shutdown),
// agent_cache.cc, agent_sync.cc, agent_dns.cc and agent_api.cc; not for use
// outside agent/.
#pragma once

#include <asio.hpp>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "agent/agent.h"
#include "agent/checks.h"
#include "agent/dns_resolver.h"
#include "agent/local.h"
#include "base/random.h"
#include "base/status.h"
#include "base/time.h"
#include "control/api.h"
#include "control/store/memory_store.h"
#include "control/stream_server.h"
#include "http/server.h"
#include "identity/cert_manager.h"
#include "weft/v1/config.pb.h"
#include "xds/stream_client.h"

namespace weft::prom {
class Writer;
}

namespace weft::agent {

// The agent. Run() runs io_ on the main thread, the io thread, which owns
// nearly everything. Other threads feed it by posting to io_: the config
// stream client's (a new state for the cache), the certificate manager's
// (local proxies' certificates; its `sign` calls signer_ there) and gRPC's
// (the local socket's streams). The node sync thread (SyncLoop) takes
// documents through sync_mu_. The Agent is never destroyed (the process
// ends with _Exit), so no callback that captures it outlives it, and no
// thread is joined.
class Agent {
 public:
  explicit Agent(AgentOptions o);
  // Serves until SIGTERM/SIGINT; returns the exit code (ends the process on
  // success).
  int Run();

 private:
  using tcp = asio::ip::tcp;
  using udp = asio::ip::udp;

  // agent_cache.cc
  std::string CachePath() const { return opts_.data_dir + "/cache.pb"; }
  // Restores the last state seen from the servers, if any.
  bool LoadCache();
  // Writes the state atomically: a crash leaves the old file or the new.
  void SaveCache();
  // Saves at once when the last save is older than 200 ms, else once the
  // 200 ms are up: bursts cost a few writes, a single change is on disk
  // before the next one can arrive.
  void SaveCacheSoon();
  // Makes the cache hold exactly `state` (one revision of the memory store),
  // with this node's own document taken from the local state: the agent is
  // authoritative for it. A server copy that differs is put right.
  void Install(const xds::ResourceMap& state);
  // The servers' config-stream certificates come from the same CA: verify
  // them against the bundle from now on (it arrived over a verified stream),
  // so a rotated root needs no new --server-ca file.
  void TrustBundle(const weft::v1::Bundle& b);
  // The servers' trust bundle: to local proxies, and to the certificate
  // manager (a new signing root renews every local certificate).
  void ApplyBundle(const std::shared_ptr<const weft::v1::Resource>& b);

  // agent_api.cc
  // Local API: the agent endpoints, then everything else from the cache.
  asio::awaitable<http::Response> Handle(http::Request& r);
  // The catalog API's role on an agent: not a server, catalog and config
  // writes refused (they go to servers), reads as fresh as the config stream.
  class Role;
  std::unique_ptr<control::ApiRole> MakeApiRole() const;

  // The agent token's check (Consul's agent token): "" lets the request
  // through; else the 403's text. Without the token: reads of the catalog,
  // health, the node's services and checks, the CA roots and status only.
  std::string LocalDenied(const http::Request& r) const;
  // The agent token: --agent-token-file or WEFT_AGENT_TOKEN, else
  // DATA_DIR/agent-token (made once, 0600).
  Status LoadAgentToken();

  // The local socket: 0660, in --socket-group when given.
  Status SecureSocket(const std::string& path) const;
  // Who may open a stream on the local socket as which proxy: root and this
  // agent's user (they can read the node's key anyway); any other peer
  // (a member of --socket-group) only as a proxy of a service registered
  // here with a Token, presenting that token. "" allows; else the reason.
  std::string AuthorizeLocal(const control::Caller& c, const control::Identity& id) const;

  // agent_identity.cc
  std::string NodeKeyPath() const { return opts_.data_dir + "/node-key.pem"; }
  std::string NodeCertPath() const { return opts_.data_dir + "/node-cert.pem"; }
  // The node certificate kept from an earlier run, when it is still good
  // (io thread, before the identity thread starts).
  bool LoadNodeIdentity();
  // A node certificate: joining with the join token, or renewing with the
  // one held (identity thread).
  Status RequestNodeIdentity(bool join);
  // Joins, then renews before expiry (a thread of its own).
  void IdentityLoop();
  // The links to the servers (config stream, node sync), once this node can
  // prove who it is (io thread; once).
  void StartLinks();

  // agent_sync.cc
  // The local state moved: show it in the local cache now, and push it.
  void LocalChanged();
  // Hands the current node document to the sync thread.
  void MarkDirty();
  // A new or wiped data dir: takes the servers' copy of this node from the
  // first state they stream, before pushing anything (io thread).
  void AdoptFrom(const xds::ResourceMap& state);
  // Anti-entropy: push the whole node every 30 s whatever happened.
  void AntiEntropyTick();
  // Pushes node documents to a server (round robin over --server), retrying
  // every second while none answers.
  void SyncLoop();
  void StartStream();

  // agent_dns.cc
  Status StartDns(std::string* bound);
  asio::awaitable<void> ServeUdp();
  asio::awaitable<void> AcceptTcp();
  // Length-prefixed messages (RFC 7766), several per connection, 10 s idle.
  asio::awaitable<void> ServeTcp(tcp::socket s);
  void DnsMetrics(prom::Writer& w) const;

  // Constant after construction.
  const AgentOptions opts_;
  std::string agent_token_;  // set in Run() before anything serves
  asio::io_context io_{1};

  // Io thread only, unless marked; the pointers are set in Run() before io_
  // runs.
  LocalState local_;
  CheckRunner checks_;
  control::store::MemoryStore* cache_ = nullptr;  // owned by api_
  std::unique_ptr<control::Api> api_;
  std::unique_ptr<http::Server> http_;
  std::optional<udp::socket> udp_;
  std::optional<tcp::acceptor> dns_tcp_;
  std::unique_ptr<xds::StreamClient> stream_;  // connected(): any thread
  std::unique_ptr<control::StreamServer> local_stream_;
  std::unique_ptr<xds::SignClient> signer_;  // used on the certificate manager's thread
  // TLS to the servers (--server-ca, then the streamed bundle); null:
  // plaintext. Shared with the stream and sync threads (thread-safe).
  const std::shared_ptr<xds::ServerTrust> trust_ =
      opts_.server_ca_pem.empty() ? nullptr
                                  : std::make_shared<xds::ServerTrust>(opts_.server_ca_pem);
  std::unique_ptr<identity::CertManager> certs_;
  std::shared_ptr<const weft::v1::Resource> bundle_;
  xds::ResourceMap state_;    // what the cache holds
  xds::ResourceMap initial_;  // from disk, to resume the stream
  std::string initial_version_, version_;
  std::atomic<int64_t> last_contact_ms_{0};  // written by the stream client's thread
  DnsOptions dns_opts_;
  DnsCounters dns_counters_;
  DnsCache dns_cache_;
  Rng rng_{static_cast<uint64_t>(MonoMillis()) * 0x9e3779b97f4a7c15ULL};
  size_t dns_tcp_active_ = 0;
  uint64_t dns_tcp_refused_ = 0;
  asio::steady_timer save_timer_;
  bool save_pending_ = false;
  int64_t last_save_ms_ = 0;
  asio::steady_timer sync_timer_;

  // The node sync: io thread -> sync thread.
  std::thread sync_thread_;     // runs SyncLoop
  bool links_started_ = false;  // io thread
  bool adopt_pending_ = false;  // io thread: set in Run() on a data dir with no local state
  // The node certificate's life (identity thread; before it starts, Run()).
  std::thread identity_thread_;
  int64_t node_cert_not_after_ = 0, node_cert_issued_ = 0;
  std::mutex sync_mu_;  // guards sync_doc_ and sync_dirty_
  std::condition_variable sync_cv_;
  std::string sync_doc_;                               // guarded by sync_mu_
  bool sync_dirty_ = false;                            // guarded by sync_mu_
  std::atomic<uint64_t> syncs_{0}, sync_failures_{0};  // written by the sync thread

  asio::signal_set signals_;  // io thread
};

}  // namespace weft::agent
