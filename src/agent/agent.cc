#include "agent/agent.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "agent/checks.h"
#include "agent/dns_resolver.h"
#include "agent/local.h"
#include "base/file.h"
#include "base/log.h"
#include "base/prometheus.h"
#include "base/time.h"
#include "control/api.h"
#include "control/store/memory_store.h"
#include "control/stream_server.h"
#include "http/server.h"
#include "identity/cert_manager.h"
#include "io/asio.h"
#include "weft/v1/config.grpc.pb.h"
#include "xds/stream_client.h"

namespace weft::agent {
namespace {

namespace pb = weft::v1;
using tcp = asio::ip::tcp;
using udp = asio::ip::udp;

// Where a streamed resource lives in the agent's copy of the store.
std::string KeyOf(const pb::Resource& r) {
  if (r.type() == "node") return std::string(mesh::kNodePrefix) + r.name();
  if (r.type() == "config") return std::string(control::kConfigPrefix) + r.name();
  return "";
}

const std::string& ValueOf(const pb::Resource& r) {
  return r.type() == "node" ? r.node().json() : r.config().json();
}

class Agent {
 public:
  explicit Agent(AgentOptions o)
      : opts_(std::move(o)),
        local_(opts_.node, opts_.address, opts_.zone, opts_.data_dir + "/local.json"),
        checks_(
            io_,
            [this](const std::string& id, const std::string& status, const std::string& output) {
              if (local_.SetCheckStatus(id, status, output)) {
                LOG_INFO("agent: check {} is now {}: {}", id, status, output);
                LocalChanged();
              }
            }),
        save_timer_(io_),
        sync_timer_(io_),
        signals_(io_) {}

  int Run() {
    std::error_code fec;
    std::filesystem::create_directories(opts_.data_dir, fec);
    if (fec) {
      std::fprintf(stderr, "weft agent: --data-dir %s: %s\n", opts_.data_dir.c_str(),
                   fec.message().c_str());
      return 1;
    }
    if (Status s = local_.Load(); !s.ok()) {
      std::fprintf(stderr, "weft agent: %s\n", s.message().c_str());
      return 1;
    }
    auto store = std::make_unique<control::store::MemoryStore>();
    cache_ = store.get();
    const bool loaded = LoadCache();
    if (!loaded) Install({});  // at least this node's own services

    control::ApiOptions ao;
    ao.name = opts_.node;
    ao.agent_mode = true;
    ao.write_threads = 1;
    ao.freshness = [this] {
      control::Freshness f;
      f.known_leader = stream_ && stream_->connected();
      f.last_contact_ms = f.known_leader ? 0 : MonoMillis() - last_contact_ms_.load();
      f.stale = !f.known_leader;
      return f;
    };
    api_ = std::make_unique<control::Api>(io_, std::move(store), ao);
    if (Status s = api_->Start(); !s.ok()) {
      std::fprintf(stderr, "weft agent: %s\n", s.message().c_str());
      return 1;
    }
    api_->AddMetricsSource([this](prom::Writer& w) { DnsMetrics(w); });
    http::ServerOptions ho;
    ho.name = "agent http";
    http_ = std::make_unique<http::Server>(
        io_, [this](http::Request& r) { return Handle(r); }, ho);
    if (Status s = http_->Listen(opts_.http_addr); !s.ok()) {
      std::fprintf(stderr, "weft agent: %s\n", s.message().c_str());
      return 1;
    }
    std::string dns_bound;
    if (Status s = StartDns(&dns_bound); !s.ok()) {
      std::fprintf(stderr, "weft agent: %s\n", s.message().c_str());
      return 1;
    }
    // Local proxies get their configuration here, compiled from this cache:
    // one upstream subscription per node, however many proxies it runs.
    const std::string sock =
        opts_.socket_path.empty() ? opts_.data_dir + "/weft.sock" : opts_.socket_path;
    std::error_code rm;
    std::filesystem::remove(sock, rm);
    control::StreamOptions so;
    so.accept_node_sync = false;
    // Local proxies' identities: a key made here, a certificate from the
    // servers, both handed over this node-local socket, renewed in time.
    std::vector<std::pair<std::string, std::string>> md;
    if (!opts_.join_token.empty()) md.emplace_back("x-weft-join-token", opts_.join_token);
    signer_ = std::make_unique<xds::SignClient>(opts_.servers, md, trust_);
    certs_ = std::make_unique<identity::CertManager>(
        [this](const std::string& csr, const std::string& ns, const std::string& service) {
          return signer_->Issue(csr, ns, service, opts_.node);
        },
        [this](const std::string& ns, const std::string& service, const std::string& key_pem,
               const identity::Issued& cert) {
          pb::Resource r;
          r.set_type("secret");
          r.set_name("workload");
          *r.mutable_secret() = xds::ToSecret(key_pem, cert);
          r.set_version(control::ResourceVersion(r));
          auto res = std::make_shared<const pb::Resource>(std::move(r));
          asio::post(io_, [this, ns, service, res] { local_stream_->SetSecret(ns, service, res); });
        });
    so.on_subscribe = [this](const control::Identity& id) {
      if (id.role == "proxy" && !id.service.empty()) certs_->Want(id.ns, id.service);
    };
    local_stream_ = std::make_unique<control::StreamServer>(io_, *api_, so);
    if (Status s = local_stream_->Start("unix:" + sock); !s.ok()) {
      std::fprintf(stderr, "weft agent: --socket %s: %s\n", sock.c_str(), s.message().c_str());
      return 1;
    }
    api_->AddMetricsSource([this](prom::Writer& w) { local_stream_->Metrics(w); });
    api_->SetAddresses(http_->bound(), local_stream_->bound());
    if (bundle_) ApplyBundle(bundle_);
    certs_->Start();
    StartStream();
    sync_thread_ = std::thread([this] { SyncLoop(); });
    MarkDirty();  // tell the servers what this node runs
    AntiEntropyTick();
    checks_.Sync(local_.checks());

    std::printf("weft agent listening http=%s dns=%s socket=%s node=%s\n", http_->bound().c_str(),
                dns_bound.c_str(), sock.c_str(), opts_.node.c_str());
    std::fflush(stdout);
    LOG_INFO("agent {} up: http {}, dns {}, servers {}, cache {}", opts_.node, http_->bound(),
             dns_bound, opts_.servers.size(),
             loaded ? "restored from disk" : "empty until the first server answers");

    signals_.add(SIGTERM);
    signals_.add(SIGINT);
    signals_.async_wait([this](const asio::error_code& ec, int sig) {
      if (ec) return;
      LOG_INFO("{}: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      if (save_pending_) SaveCache();
      http_->Close();
      local_stream_->Stop();
      asio::error_code ignored;
      if (udp_) udp_->close(ignored);
      if (dns_tcp_) dns_tcp_->close(ignored);
      api_->Stop();
      io_.stop();
    });
    io_.run();
    std::fflush(nullptr);
    std::_Exit(0);  // the stream thread may be inside a blocking read
  }

 private:
  std::string CachePath() const { return opts_.data_dir + "/cache.pb"; }

  // Restores the last state seen from the servers, if any.
  bool LoadCache() {
    std::ifstream in(CachePath(), std::ios::binary);
    if (!in) return false;
    pb::StreamResponse saved;
    if (!saved.ParseFromIstream(&in)) {
      LOG_WARN("agent cache {} is unreadable; starting empty", CachePath());
      return false;
    }
    xds::ResourceMap state;
    for (auto& r : *saved.mutable_resources()) {
      const std::string key = r.type() + "/" + r.name();
      state[key] = std::make_shared<const pb::Resource>(std::move(r));
    }
    Install(state);
    initial_ = std::move(state);
    initial_version_ = saved.version_info();
    LOG_INFO("restored {} resources (version {}) from {}", initial_.size(), initial_version_,
             CachePath());
    return true;
  }

  // Writes the state atomically: a crash leaves the old file or the new.
  void SaveCache() {
    save_pending_ = false;
    last_save_ms_ = MonoMillis();
    pb::StreamResponse out;
    out.set_full_state(true);
    out.set_version_info(version_);
    for (const auto& [k, r] : state_) *out.add_resources() = *r;
    std::string bytes;
    if (!out.SerializeToString(&bytes)) {
      LOG_ERROR("writing the agent cache {}: cannot serialize", CachePath());
      return;
    }
    // 0600: the cache holds the private keys of the node's workloads.
    if (Status s = WriteFileAtomic(CachePath(), bytes); !s.ok())
      LOG_ERROR("writing the agent cache: {}", s.message());
  }

  // Saves at once when the last save is older than 200 ms, else once the
  // 200 ms are up: bursts cost a few writes, a single change is on disk
  // before the next one can arrive.
  void SaveCacheSoon() {
    if (save_pending_) return;
    save_pending_ = true;
    const int64_t since = MonoMillis() - last_save_ms_;
    if (since >= 200) {
      SaveCache();
      return;
    }
    save_timer_.expires_after(std::chrono::milliseconds(200 - since));
    save_timer_.async_wait([this](const asio::error_code& ec) {
      if (!ec && save_pending_) SaveCache();
    });
  }

  // Makes the cache hold exactly `state` (one revision of the memory store),
  // with this node's own document taken from the local state: the agent is
  // authoritative for it. A server copy that differs is put right.
  void Install(const xds::ResourceMap& state) {
    std::map<std::string, std::string> kvs;
    for (const auto& [k, r] : state) {
      std::string key = KeyOf(*r);
      if (!key.empty()) kvs.emplace(std::move(key), ValueOf(*r));
    }
    const std::string own = std::string(mesh::kNodePrefix) + opts_.node;
    auto it = kvs.find(own);
    const std::string doc = local_.Document();
    if (stream_ && stream_->connected() && (it == kvs.end() || it->second != doc)) MarkDirty();
    kvs[own] = doc;
    cache_->ReplacePrefix("", kvs);
    state_ = state;
    if (auto b = state.find("bundle/roots"); b != state.end()) {
      bundle_ = b->second;
      TrustBundle(bundle_->bundle());
      if (local_stream_) ApplyBundle(bundle_);
    }
  }

  // The servers' config-stream certificates come from the same CA: verify
  // them against the bundle from now on (it arrived over a verified stream),
  // so a rotated root needs no new --server-ca file.
  void TrustBundle(const pb::Bundle& b) {
    if (trust_ && trust_->SetFromBundle(b))
      LOG_INFO("servers' certificates now checked against the streamed bundle ({} roots)",
               b.roots_pem_size());
  }

  // The servers' trust bundle: to local proxies, and to the certificate
  // manager (a new signing root renews every local certificate).
  void ApplyBundle(const std::shared_ptr<const pb::Resource>& b) {
    local_stream_->SetBundle(b);
    certs_->SetBundle(b->bundle().trust_domain(), b->bundle().active_root_id());
  }

  // Local API: the agent endpoints, then everything else from the cache.
  asio::awaitable<http::Response> Handle(http::Request& r) {
    using nlohmann::json;
    const std::string_view path = r.path;
    if (path == "/v1/agent/services")
      co_return http::Response::Json(200, local_.AgentServices().dump());
    if (path == "/v1/agent/checks")
      co_return http::Response::Json(200, local_.AgentChecks().dump());
    if (path == "/v1/agent/service/register") {
      if (r.method != "PUT" && r.method != "POST")
        co_return http::Response::Text(405, "use PUT /v1/agent/service/register");
      json body = json::parse(r.body, nullptr, false);
      std::string id;
      Status s = body.is_discarded() ? Status(StatusCode::kInvalidArgument, "the body must be JSON")
                                     : local_.Register(body, &id);
      if (!s.ok()) {
        LOG_WARN("agent: service registration refused: {}", s.message());
        co_return http::Response::Text(s.code() == StatusCode::kInvalidArgument ? 400 : 500,
                                       "service registration: " + s.message());
      }
      LOG_INFO("agent: service {} registered", id);
      LocalChanged();
      co_return http::Response::Text(200, "");
    }
    constexpr std::string_view kDereg = "/v1/agent/service/deregister/";
    if (path.substr(0, kDereg.size()) == kDereg) {
      // PUT as Consul documents it; GET as older Consul versions (and their
      // clients, python-consul among them) still send it.
      if (r.method != "PUT" && r.method != "POST" && r.method != "GET")
        co_return http::Response::Text(405, "use PUT /v1/agent/service/deregister/ID");
      const std::string id(path.substr(kDereg.size()));
      Status s = local_.Deregister(id);
      if (!s.ok())
        co_return http::Response::Text(s.code() == StatusCode::kNotFound ? 404 : 500, s.message());
      LOG_INFO("agent: service {} deregistered", id);
      LocalChanged();
      co_return http::Response::Text(200, "");
    }
    co_return co_await api_->Handle(r);
  }

  // The local state moved: show it in the local cache now, and push it.
  void LocalChanged() {
    Install(state_);
    MarkDirty();
    checks_.Sync(local_.checks());
  }

  // Hands the current node document to the sync thread.
  void MarkDirty() {
    {
      std::lock_guard<std::mutex> l(sync_mu_);
      sync_doc_ = local_.Document();
      sync_dirty_ = true;
    }
    sync_cv_.notify_all();
  }

  // Anti-entropy: push the whole node every 30 s whatever happened.
  void AntiEntropyTick() {
    sync_timer_.expires_after(std::chrono::seconds(30));
    sync_timer_.async_wait([this](const asio::error_code& ec) {
      if (ec) return;
      MarkDirty();
      AntiEntropyTick();
    });
  }

  // Pushes node documents to a server (round robin over --server), retrying
  // every second while none answers.
  void SyncLoop() {
    size_t next = 0;
    for (;;) {
      std::string doc;
      {
        std::unique_lock<std::mutex> l(sync_mu_);
        sync_cv_.wait(l, [this] { return sync_dirty_; });
        doc = sync_doc_;
        sync_dirty_ = false;
      }
      for (;;) {
        const std::string& server = opts_.servers[next % opts_.servers.size()];
        auto channel = xds::DialServer(server, trust_.get());
        auto stub = pb::ConfigStream::NewStub(channel);
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
        if (!opts_.join_token.empty()) ctx.AddMetadata("x-weft-join-token", opts_.join_token);
        pb::SyncNodeRequest req;
        req.set_node(opts_.node);
        req.set_json(doc);
        pb::SyncNodeResponse resp;
        grpc::Status s = stub->SyncNode(&ctx, req, &resp);
        if (s.ok()) {
          ++syncs_;
          if (resp.changed())
            LOG_INFO("node {} synced to {} (index {})", opts_.node, server, resp.index());
          break;
        }
        ++sync_failures_;
        if (s.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
          LOG_ERROR("node sync refused by {}: {} (pass the server's join token with --join-token)",
                    server, s.error_message());
        }
        if (s.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
          LOG_ERROR("node sync refused by {}: {}", server, s.error_message());
          break;  // retrying the same document cannot help
        }
        LOG_DEBUG("node sync to {}: {}", server, s.error_message());
        ++next;
        std::unique_lock<std::mutex> l(sync_mu_);
        sync_cv_.wait_for(l, std::chrono::seconds(1));
        if (sync_dirty_) {  // a newer document replaces this one
          doc = sync_doc_;
          sync_dirty_ = false;
        }
      }
    }
  }

  void StartStream() {
    xds::StreamClientOptions so;
    so.servers = opts_.servers;
    so.server_trust = trust_;
    so.info.set_role("agent");
    so.info.set_node(opts_.node);
    so.info.set_id("agent/" + opts_.node);
    so.info.set_version(WEFT_VERSION);
    // Where `weft stat` and `weft check` find this agent's API (and through
    // it the node's proxies): the bound port on the node's address when the
    // API listens on all addresses.
    std::string api = http_->bound();
    if (api.rfind("0.0.0.0:", 0) == 0) api = opts_.address + api.substr(7);
    so.info.set_admin(api);
    if (!opts_.join_token.empty()) so.metadata.emplace_back("x-weft-join-token", opts_.join_token);
    last_contact_ms_ = MonoMillis();
    stream_ = std::make_unique<xds::StreamClient>(
        so, [this](const xds::ResourceMap& state, const pb::StreamResponse& resp) {
          last_contact_ms_ = MonoMillis();
          asio::post(io_, [this, state, version = resp.version_info()] {
            Install(state);
            version_ = version;
            SaveCacheSoon();
          });
          return std::string();
        });
    if (!initial_.empty()) stream_->SetInitialState(initial_, initial_version_);
    stream_->Start();
  }

  Status StartDns(std::string* bound) {
    auto ep = io::ParseEndpoint(opts_.dns_addr);
    if (!ep)
      return {StatusCode::kInvalidArgument, "--dns \"" + opts_.dns_addr + "\": expected HOST:PORT"};
    // UDP and TCP on the same port. With port 0 the kernel picks a UDP port
    // whose TCP twin may be taken: try again with another.
    asio::error_code ec;
    for (int attempt = 0; attempt < (ep->port() == 0 ? 20 : 1); ++attempt) {
      ec.clear();
      udp_.emplace(io_);
      udp_->open(ep->protocol().family() == AF_INET ? udp::v4() : udp::v6(), ec);
      if (!ec) udp_->bind(udp::endpoint(ep->address(), ep->port()), ec);
      if (ec)
        return {StatusCode::kUnavailable, "dns " + opts_.dns_addr + " (udp): " + ec.message()};
      const uint16_t port = udp_->local_endpoint().port();
      dns_tcp_.emplace(io_);
      tcp::endpoint tep(ep->address(), port);
      dns_tcp_->open(tep.protocol(), ec);
      if (!ec) dns_tcp_->set_option(tcp::acceptor::reuse_address(true), ec);
      if (!ec) dns_tcp_->bind(tep, ec);
      if (!ec) dns_tcp_->listen(128, ec);
      if (!ec) {
        *bound = io::FormatEndpoint(tep);
        asio::co_spawn(io_, ServeUdp(), asio::detached);
        asio::co_spawn(io_, AcceptTcp(), asio::detached);
        return {};
      }
      asio::error_code ignored;
      udp_->close(ignored);
      dns_tcp_->close(ignored);
    }
    return {StatusCode::kUnavailable, "dns " + opts_.dns_addr + " (tcp): " + ec.message()};
  }

  asio::awaitable<void> ServeUdp() {
    std::vector<uint8_t> buf(65536);
    dns_opts_.domain = opts_.domain;
    dns_opts_.ttl_s = opts_.dns_ttl_s;
    for (;;) {
      udp::endpoint from;
      auto [ec, n] = co_await udp_->async_receive_from(asio::buffer(buf), from, kNoThrow);
      if (ec) {
        if (!udp_->is_open()) co_return;
        continue;
      }
      std::string out = Resolve(buf.data(), n, false, api_->catalog(), dns_opts_, rng_,
                                &dns_counters_, &dns_cache_);
      if (out.empty()) continue;
      auto [sec, sent] = co_await udp_->async_send_to(asio::buffer(out), from, kNoThrow);
      (void)sec;
      (void)sent;
    }
  }

  asio::awaitable<void> AcceptTcp() {
    for (;;) {
      auto [ec, sock] = co_await dns_tcp_->async_accept(kNoThrow);
      if (!dns_tcp_->is_open()) co_return;
      if (ec) continue;
      if (dns_tcp_active_ >= opts_.max_dns_tcp_connections) {
        ++dns_tcp_refused_;
        LOG_WARN("dns: tcp connection refused: {} open (max_dns_tcp_connections)", dns_tcp_active_);
        continue;  // the socket closes as it goes out of scope
      }
      asio::co_spawn(io_, ServeTcp(std::move(sock)), asio::detached);
    }
  }

  // Length-prefixed messages (RFC 7766), several per connection, 10 s idle.
  asio::awaitable<void> ServeTcp(tcp::socket s) {
    ++dns_tcp_active_;
    auto timer = std::make_shared<asio::steady_timer>(io_);
    std::vector<uint8_t> buf;
    for (;;) {
      timer->expires_after(std::chrono::seconds(10));
      timer->async_wait([&s, t = timer](const asio::error_code& ec) {
        if (!ec) {
          asio::error_code ignored;
          s.close(ignored);
        }
      });
      uint8_t len_bytes[2];
      auto [ec, n] = co_await asio::async_read(s, asio::buffer(len_bytes), kNoThrow);
      if (ec) break;
      const size_t len = (len_bytes[0] << 8) | len_bytes[1];
      buf.resize(len);
      auto [ec2, n2] = co_await asio::async_read(s, asio::buffer(buf), kNoThrow);
      if (ec2) break;
      timer->cancel();
      std::string out = Resolve(buf.data(), len, true, api_->catalog(), dns_opts_, rng_,
                                &dns_counters_, &dns_cache_);
      if (out.empty()) break;
      uint8_t prefix[2] = {static_cast<uint8_t>(out.size() >> 8),
                           static_cast<uint8_t>(out.size() & 0xff)};
      std::array<asio::const_buffer, 2> bufs{asio::buffer(prefix), asio::buffer(out)};
      auto [ec3, n3] = co_await asio::async_write(s, bufs, kNoThrow);
      if (ec3) break;
    }
    timer->cancel();
    --dns_tcp_active_;
  }

  void DnsMetrics(prom::Writer& w) const {
    const char* help = "DNS queries by outcome.";
    auto line = [&](const char* outcome, uint64_t v) {
      w.Counter("weft_agent_dns_queries_total", help, {{"outcome", outcome}}, v);
    };
    line("answered", dns_counters_.answered);
    line("nxdomain", dns_counters_.nxdomain);
    line("refused", dns_counters_.refused);
    line("formerr", dns_counters_.formerr);
    line("notimp", dns_counters_.notimp);
    line("dropped", dns_counters_.dropped);
    const char* cache = "Service answers served from encoded records (hit) or built (miss).";
    w.Counter("weft_agent_dns_cache_total", cache, {{"result", "hit"}}, dns_cache_.hits);
    w.Counter("weft_agent_dns_cache_total", cache, {{"result", "miss"}}, dns_cache_.misses);
    w.Counter("weft_agent_dns_truncated_total",
              "UDP answers truncated (the client retries over TCP).", {}, dns_counters_.truncated);
    w.Counter("weft_agent_dns_tcp_refused_total", "DNS TCP connections refused over the limit.", {},
              dns_tcp_refused_);
    w.Gauge("weft_agent_connected", "1 while the config stream to a server is up.", {},
            stream_ && stream_->connected() ? 1 : 0);
  }

  const AgentOptions opts_;
  asio::io_context io_{1};
  LocalState local_;  // io thread
  CheckRunner checks_;
  control::store::MemoryStore* cache_ = nullptr;  // owned by api_
  std::unique_ptr<control::Api> api_;
  std::unique_ptr<http::Server> http_;
  std::optional<udp::socket> udp_;
  std::optional<tcp::acceptor> dns_tcp_;
  std::unique_ptr<xds::StreamClient> stream_;
  std::unique_ptr<control::StreamServer> local_stream_;
  std::unique_ptr<xds::SignClient> signer_;
  // TLS to the servers (--server-ca, then the streamed bundle); null: plaintext.
  const std::shared_ptr<xds::ServerTrust> trust_ =
      opts_.server_ca_pem.empty() ? nullptr
                                  : std::make_shared<xds::ServerTrust>(opts_.server_ca_pem);
  std::unique_ptr<identity::CertManager> certs_;
  std::shared_ptr<const pb::Resource> bundle_;
  xds::ResourceMap state_;    // io thread: what the cache holds
  xds::ResourceMap initial_;  // from disk, to resume the stream
  std::string initial_version_, version_;
  std::atomic<int64_t> last_contact_ms_{0};
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
  std::thread sync_thread_;
  std::mutex sync_mu_;
  std::condition_variable sync_cv_;
  std::string sync_doc_;     // guarded by sync_mu_
  bool sync_dirty_ = false;  // guarded by sync_mu_
  std::atomic<uint64_t> syncs_{0}, sync_failures_{0};
  asio::signal_set signals_;
};

}  // namespace

int RunAgent(const AgentOptions& opts) {
  if (opts.servers.empty()) {
    std::fprintf(stderr, "weft agent: --server GRPC_ADDR[,...] is required\n");
    return 2;
  }
  if (opts.node.empty() || !mesh::ValidName(opts.node)) {
    std::fprintf(stderr, "weft agent: --node NAME is required (letters, digits, . _ - : @)\n");
    return 2;
  }
  if (opts.data_dir.empty()) {
    std::fprintf(stderr,
                 "weft agent: --data-dir DIR is required (the cache survives restarts there)\n");
    return 2;
  }
  std::signal(SIGPIPE, SIG_IGN);
  auto* a = new Agent(opts);  // lives until the process exits
  return a->Run();
}

}  // namespace weft::agent
