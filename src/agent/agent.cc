// `weft agent`: startup (the cache, the local API, DNS, the local config
// socket, the links to the servers) and shutdown.
#include <grp.h>
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "agent/agent_internal.h"
#include "base/file.h"
#include "base/log.h"
#include "base/prometheus.h"
#include "base/strings.h"
#include "control/acl.h"

namespace weft::agent {

namespace pb = weft::v1;

Agent::Agent(AgentOptions o)
    : opts_(std::move(o)),
      local_(opts_.node, opts_.address, opts_.zone, opts_.data_dir + "/local.json"),
      checks_(io_,
              [this](const std::string& id, const std::string& status, const std::string& output) {
                if (local_.SetCheckStatus(id, status, output)) {
                  LOG_INFO("agent: check {} is now {}: {}", id, status, output);
                  LocalChanged();
                }
              }),
      save_timer_(io_),
      sync_timer_(io_),
      signals_(io_) {}

int Agent::Run() {
  // The data dir holds the node's key and the local services' state: its
  // owner's only (0700, files 0600), fixed with a warning when looser.
  ::umask(077);
  std::vector<std::string> fixed;
  if (Status s = SecureDataDir(opts_.data_dir, {}, &fixed); !s.ok()) {
    std::fprintf(stderr, "weft agent: --data-dir: %s\n", s.message().c_str());
    return 1;
  }
  for (const auto& f : fixed)
    LOG_WARN(
        "{}: readable by others; now for its owner only (0700 for the directory, 0600 for "
        "files)",
        f);
  if (Status s = local_.Load(); !s.ok()) {
    std::fprintf(stderr, "weft agent: %s\n", s.message().c_str());
    return 1;
  }
  if (Status s = LoadAgentToken(); !s.ok()) {
    std::fprintf(stderr, "weft agent: agent token: %s\n", s.message().c_str());
    return 1;
  }
  adopt_pending_ = !local_.loaded_file();
  auto store = std::make_unique<control::store::MemoryStore>();
  cache_ = store.get();
  const bool loaded = LoadCache();
  if (!loaded) Install({});  // at least this node's own services

  // The catalog API over the cache, in the agent's role (agent_api.cc); the
  // agent's own endpoints come first (Handle).
  control::ApiOptions ao;
  ao.name = opts_.node;
  ao.write_threads = 1;
  api_ = std::make_unique<control::Api>(io_, std::move(store), ao, MakeApiRole());
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
  so.max_local_connections = opts_.max_socket_connections;
  so.max_local_connections_per_uid = opts_.max_socket_connections_per_uid;
  // Local proxies' identities: a key made here, a certificate from the
  // servers, both handed over this node-local socket, renewed in time.
  // Workload certificates are asked for with this node's certificate: the
  // servers issue identities of services registered on this node only.
  signer_ = std::make_unique<xds::SignClient>(
      opts_.servers, std::vector<std::pair<std::string, std::string>>{}, trust_);
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
  so.authorize = [this](const control::Caller& c, const control::Identity& id) {
    return AuthorizeLocal(c, id);
  };
  so.on_subscribe = [this](const control::Identity& id) {
    if (id.role == "proxy" && !id.service.empty()) certs_->Want(id.ns, id.service);
  };
  local_stream_ = std::make_unique<control::StreamServer>(io_, *api_, so);
  if (Status s = local_stream_->Start("unix:" + sock); !s.ok()) {
    std::fprintf(stderr, "weft agent: --socket %s: %s\n", sock.c_str(), s.message().c_str());
    return 1;
  }
  if (Status s = SecureSocket(sock); !s.ok()) {
    std::fprintf(stderr, "weft agent: --socket %s: %s\n", sock.c_str(), s.message().c_str());
    return 1;
  }
  api_->AddMetricsSource([this](prom::Writer& w) { local_stream_->Metrics(w); });
  api_->SetAddresses(http_->bound(), local_stream_->bound());
  if (bundle_) ApplyBundle(bundle_);
  certs_->Start();
  // Over TLS the servers want this node's certificate on every call: the
  // links start once there is one (kept from an earlier run, or once the
  // identity thread has joined with the join token). Plaintext, or TLS
  // with no join token (a --dev server asks for neither): at once.
  if (!trust_ || LoadNodeIdentity() || opts_.join_token.empty()) StartLinks();
  if (trust_) identity_thread_ = std::thread([this] { IdentityLoop(); });
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

Status Agent::LoadAgentToken() {
  if (!opts_.agent_token.empty()) {
    agent_token_ = opts_.agent_token;
    return {};
  }
  const std::string path = opts_.data_dir + "/agent-token";
  std::string err;
  if (std::filesystem::exists(path)) {
    agent_token_ = TrimSpace(ReadWholeFile(path, &err));
    if (!err.empty()) return {StatusCode::kUnavailable, err};
    if (agent_token_.empty()) return {StatusCode::kInvalidArgument, path + " is empty"};
    return {};
  }
  agent_token_ = control::acl::NewUuid();
  if (Status s = WriteFileAtomic(path, agent_token_, 0600); !s.ok()) return s;
  LOG_WARN("the local API's agent token is in {} (mode 0600): writes to this agent need it", path);
  return {};
}

std::string Agent::AuthorizeLocal(const control::Caller& c, const control::Identity& id) const {
  if (c.uid == 0 || c.uid == static_cast<int64_t>(::geteuid())) return "";
  if (c.uid < 0) return "the peer's credentials could not be read";
  if (id.role != "proxy")
    return "uid " + std::to_string(c.uid) + " may open streams as a proxy only";
  if (c.acl_token.empty())
    return "uid " + std::to_string(c.uid) + " is not this agent's: present the Token of \"" +
           id.service + "\"'s registration (weft proxy --token-file)";
  if (!local_.ProxyTokenAllows(id.service, c.acl_token))
    return "the token presented is not the Token of a registration of \"" + id.service +
           "\" on this node";
  return "";
}

Status Agent::SecureSocket(const std::string& path) const {
  gid_t gid = static_cast<gid_t>(-1);
  if (!opts_.socket_group.empty()) {
    const std::string dir = std::filesystem::path(path).parent_path().lexically_normal();
    if (dir == std::filesystem::path(opts_.data_dir).lexically_normal().string())
      return Status(StatusCode::kInvalidArgument,
                    "--socket-group needs the socket outside the data dir (which is 0700): "
                    "give --socket PATH too, e.g. /run/weft/agent.sock");
    struct group* g = ::getgrnam(opts_.socket_group.c_str());
    if (!g) return Status(StatusCode::kInvalidArgument, "no group \"" + opts_.socket_group + "\"");
    gid = g->gr_gid;
  }
  if (gid != static_cast<gid_t>(-1) && ::chown(path.c_str(), static_cast<uid_t>(-1), gid) != 0)
    return Status(StatusCode::kUnavailable, std::string("chown: ") + strerror(errno));
  if (::chmod(path.c_str(), 0660) != 0)
    return Status(StatusCode::kUnavailable, std::string("chmod: ") + strerror(errno));
  return {};
}

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
