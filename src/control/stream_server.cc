// The config stream's server: the gRPC listener, the subscription registry,
// and the compile-and-push of snapshots when the catalog or config changes.
#include "control/stream_server.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/server_posix.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <charconv>

#include "base/log.h"
#include "base/net.h"
#include "base/prometheus.h"
#include "base/time.h"
#include "control/stream_internal.h"
#include "identity/ca.h"

namespace weft::control {

StreamServer::StreamServer(asio::io_context& io, Api& api, StreamOptions opts)
    : liveness_(io),
      io_(io),
      api_(api),
      opts_(std::move(opts)),
      compiler_(api.catalog(), api.config()),
      local_retry_(io),
      debounce_(io) {
  api_.OnChange([this] { OnStateChange(); });
  if (opts_.node_timeout_ms > 0) LivenessTick();
  api_.AddMemberSource([this](nlohmann::json* out) {
    for (const auto& [key, set] : subscribers_)
      for (const auto& s : set) out->push_back(s->Describe());
  });
}

StreamServer::~StreamServer() {
  try {
    Stop();
  } catch (...) {  // NOLINT(bugprone-empty-catch): nothing to do while tearing down
  }
}

Status StreamServer::Start(const std::string& addr) {
  service_ = std::make_unique<Service>(this);
  grpc::ServerBuilder b;
  int port = 0;
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!opts_.tls_cert_file.empty() && addr.rfind("unix:", 0) != 0) {
    // Clients check the server. Agents present their node certificate;
    // it is verified per call against the trust bundle of the moment
    // (CallerOf), so a rotated root is accepted without a restart. Proxies
    // and joining agents present none and prove themselves with a token.
    auto files = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        opts_.tls_key_file, opts_.tls_cert_file, kTlsRefreshS);
    grpc::experimental::TlsServerCredentialsOptions o(files);
    o.watch_identity_key_cert_pairs();
    o.set_cert_request_type(opts_.authenticate ? GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_BUT_DONT_VERIFY
                                               : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    creds = grpc::experimental::TlsServerCredentials(o);
  }
  const bool local = addr.rfind("unix:", 0) == 0;
  if (local) {
    // Accepted here (AcceptLocal), so each connection's peer credentials
    // can be read from its descriptor.
    using proto = asio::local::stream_protocol;
    auto acc = std::make_unique<proto::acceptor>(io_);
    asio::error_code ec;
    acc->open(proto(), ec);
    if (!ec) acc->bind(proto::endpoint(addr.substr(5)), ec);
    if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return {StatusCode::kUnavailable, addr + ": " + ec.message()};
    local_acceptor_ = std::move(acc);
  } else {
    b.AddListeningPort(addr, creds, &port);
  }
  b.RegisterService(service_.get());
  b.SetMaxReceiveMessageSize(4 << 20);
  b.SetMaxSendMessageSize(static_cast<int>(opts_.max_message_bytes));
  // Find dead clients (a node lost, a link cut): ping every 10 s, give up after
  // 5 s without an answer. Node liveness (--node-timeout) starts from there.
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  b.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  // Memory per stream: config responses are small and rare, so a small
  // receive window and no bandwidth probing are enough.
  b.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  b.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 16384);
  // A local connection that holds no call is closed after a while, so one
  // that never opens a stream does not keep its slot (AdmitLocal).
  if (local)
    b.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, static_cast<int>(opts_.local_idle_ms));
  server_ = b.BuildAndStart();
  if (!server_ || (port == 0 && !local))
    return {StatusCode::kUnavailable, "grpc " + addr + ": cannot listen"};
  if (local) {
    bound_ = addr;  // a local socket (the agent serving its node's proxies)
    AcceptLocal();
  } else {
    std::string host, why;
    uint16_t asked = 0;
    bound_ = SplitHostPort(addr, &host, &asked, &why)
                 ? JoinHostPort(host, static_cast<uint16_t>(port))
                 : addr;
  }
  return {};
}

void StreamServer::AcceptLocal() {
  local_acceptor_->async_accept(
      [this](const asio::error_code& ec, asio::local::stream_protocol::socket sock) {
        if (ec == asio::error::operation_aborted || !local_acceptor_) return;
        if (ec) {
          // Out of descriptors, most likely: try again shortly rather than spin.
          LOG_WARN_LIMITED("{}: accept: {}", bound_, ec.message());
          local_retry_.expires_after(std::chrono::milliseconds(100));
          local_retry_.async_wait([this](const asio::error_code& e) {
            if (!e && local_acceptor_) AcceptLocal();
          });
          return;
        }
        if (server_) {
          ucred cred{};
          socklen_t len = sizeof(cred);
          const int raw = sock.native_handle();
          if (::getsockopt(raw, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
              !AdmitLocal(raw, cred.uid)) {
            asio::error_code ignored;
            sock.close(ignored);
            AcceptLocal();
            return;
          }
          // gRPC owns the descriptor from here; it names the peer "fd:N".
          const int fd = sock.release();
          ::fcntl(fd, F_SETFD, FD_CLOEXEC);
          ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
          grpc::AddInsecureChannelFromFd(server_.get(), fd);
        }
        AcceptLocal();
      });
}

namespace {
uint64_t InodeOf(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) ? static_cast<uint64_t>(st.st_ino) : 0;
}
}  // namespace

bool StreamServer::AdmitLocal(int fd, uint32_t uid) {
  auto count = [&] {
    size_t mine = 0;
    for (const auto& c : local_conns_) mine += c.uid == uid;
    return mine;
  };
  auto over = [&] {
    return local_conns_.size() >= opts_.max_local_connections ||
           count() >= opts_.max_local_connections_per_uid;
  };
  if (over()) {
    // Forget the ones gRPC has closed since (their descriptor is gone or
    // names another socket now), then look again.
    std::erase_if(local_conns_, [](const LocalConn& c) { return InodeOf(c.fd) != c.inode; });
    if (over()) {
      counters_.local_conns_refused++;
      LOG_WARN_LIMITED(
          "{}: a connection from uid {} refused: {} open ({} from that uid; at most {} and {} "
          "per uid)",
          bound_, uid, local_conns_.size(), count(), opts_.max_local_connections,
          opts_.max_local_connections_per_uid);
      return false;
    }
  }
  local_conns_.push_back({fd, InodeOf(fd), uid});
  return true;
}

void StreamServer::Stop() {
  debounce_.cancel();
  liveness_.cancel();
  local_retry_.cancel();
  if (local_acceptor_) {
    asio::error_code ignored;
    local_acceptor_->close(ignored);
    local_acceptor_.reset();
  }
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
    server_.reset();
  }
}

Caller StreamServer::CallerOf(const grpc::CallbackServerContext* ctx) const {
  Caller c;
  c.peer = ctx->peer();
  c.open = !opts_.authenticate;
  if (std::string_view p = c.peer; p.substr(0, 3) == "fd:") {
    // A unix socket's connection (AcceptLocal). The descriptor stays open
    // while the call runs, so it still is this peer's.
    int fd = -1;
    std::from_chars(p.data() + 3, p.data() + p.size(), fd);
    struct ucred cr {};
    socklen_t len = sizeof cr;
    if (fd >= 0 && ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0) {
      c.uid = cr.uid;
      c.gid = cr.gid;
      c.pid = cr.pid;
    }
  }
  const auto& md = ctx->client_metadata();
  if (auto it = md.find("x-consul-token"); it != md.end()) {
    c.acl_token.assign(it->second.data(), it->second.size());
  } else if (auto a = md.find("authorization"); a != md.end()) {
    std::string_view v(a->second.data(), a->second.size());
    if (v.substr(0, 7) == "Bearer ") c.acl_token = std::string(v.substr(7));
  }
  if (!opts_.authenticate) return c;
  auto auth = ctx->auth_context();
  if (!auth) return c;
  auto pems = auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
  if (pems.empty()) return c;
  std::string roots, td;
  {
    std::lock_guard<std::mutex> l(roots_mu_);
    roots = roots_pem_;
    td = trust_domain_;
  }
  const std::string pem(pems.front().data(), pems.front().size());
  auto id = identity::VerifyWorkload(pem, roots);
  if (!id.ok()) {
    LOG_WARN_LIMITED("config stream: client certificate from {} refused: {}", c.peer,
                     id.status().message());
    return c;
  }
  c.node = identity::NodeOf(id.value(), td);
  return c;
}

bool StreamServer::TakePeer(const std::string& peer_ip) {
  std::lock_guard<std::mutex> l(peers_mu_);
  size_t& n = streams_per_peer_[peer_ip];
  if (n >= opts_.max_streams_per_peer) {
    if (n == 0) streams_per_peer_.erase(peer_ip);
    return false;
  }
  ++n;
  return true;
}

void StreamServer::ReleasePeer(const std::string& peer_ip) {
  std::lock_guard<std::mutex> l(peers_mu_);
  auto it = streams_per_peer_.find(peer_ip);
  if (it != streams_per_peer_.end() && --it->second == 0) streams_per_peer_.erase(it);
}

void StreamServer::SetBundle(ResourcePtr bundle) {
  if (bundle && bundle->has_bundle()) {
    std::string pem;
    for (const auto& r : bundle->bundle().roots_pem()) pem += r;
    std::lock_guard<std::mutex> l(roots_mu_);
    roots_pem_ = std::move(pem);
    trust_domain_ = bundle->bundle().trust_domain();
  }
  compiler_.SetBundle(std::move(bundle));
  PushChanged();
}

void StreamServer::SetSecret(const std::string& ns, const std::string& service,
                             ResourcePtr secret) {
  compiler_.SetSecret(ns, service, std::move(secret));
  PushChanged();
}

void StreamServer::PushChanged() {
  for (const auto& [key, snap] : compiler_.TakeChanged()) {
    auto it = subscribers_.find(key);
    if (it == subscribers_.end()) continue;
    for (const auto& s : it->second) s->Offer(snap);
  }
}

void StreamServer::Subscribe(const std::shared_ptr<Session>& s) {
  if (!s->caller().open && s->identity().role == "proxy" && s->caller().node.empty()) {
    // A proxy without an agent acts as its service: its token must be
    // allowed to (Consul's service token).
    std::string why = "an ACL token (x-consul-token) with service:write on \"" +
                      s->identity().service + "\" is needed";
    if (const acl::Token* t = api_.acl_state().TokenBySecret(s->caller().acl_token)) {
      why = api_.acl_state().AuthzFor(t).Denied(acl::Resource::kService, s->identity().service,
                                                acl::Access::kWrite);
    } else if (!s->caller().acl_token.empty()) {
      why = "ACL not found";
    }
    if (!why.empty()) {
      NoteUnauthenticated();
      LOG_WARN_LIMITED("stream from {} for proxy of {} refused: {}", s->caller().peer,
                       s->identity().service, why);
      s->Refuse(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, why));
      return;
    }
  }
  if (opts_.authorize) {
    if (std::string why = opts_.authorize(s->caller(), s->identity()); !why.empty()) {
      counters_.local_refused++;
      LOG_WARN_LIMITED("stream from {} (uid {}, pid {}) for {} of {} refused: {}", s->caller().peer,
                       s->caller().uid, s->caller().pid, s->identity().role, s->identity().service,
                       why);
      s->Refuse(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, why));
      return;
    }
  }
  if (opts_.on_subscribe) opts_.on_subscribe(s->identity());
  if (!s->agent_node().empty()) {
    AgentLink& a = agents_[s->agent_node()];
    if (a.marked) LOG_INFO("agent of node {} is back", s->agent_node());
    ++a.streams;
    a.marked = false;
    a.held = false;
  }
  // Changes still inside the debounce window must not be missing from the
  // newcomer's first snapshot: compile them now.
  Compile();
  subscribers_[s->identity_key()].insert(s);
  s->Offer(compiler_.Get(s->identity()));
}

void StreamServer::Unsubscribe(const std::shared_ptr<Session>& s) {
  if (!s->agent_node().empty()) {
    AgentLink& a = agents_[s->agent_node()];
    if (a.streams > 0 && --a.streams == 0) a.gone_since_ms = MonoMillis();
  }
  auto it = subscribers_.find(s->identity_key());
  if (it == subscribers_.end()) return;
  it->second.erase(s);
  if (it->second.empty()) {
    subscribers_.erase(it);
    compiler_.Forget(s->identity_key());
  }
}

void StreamServer::OnStateChange() {
  // Debounce: changes arriving within a few milliseconds compile and push
  // once (a burst of writes costs one recompile per window, not per write).
  if (compile_pending_) return;
  compile_pending_ = true;
  debounce_.expires_after(std::chrono::milliseconds(opts_.debounce_ms));
  debounce_.async_wait([this](const asio::error_code& ec) {
    compile_pending_ = false;
    if (!ec) Compile();
  });
}

void StreamServer::Compile() {
  std::set<std::string> services, nodes;
  bool config = false;
  api_.TakeChanges(&services, &nodes, &config);
  if (services.empty() && nodes.empty() && !config) return;
  compiler_.Invalidate(services, nodes, config);
  PushChanged();
}

void StreamServer::Metrics(prom::Writer& w) const {
  auto line = [&](const char* name, const char* type, const char* help, int64_t v) {
    if (type[0] == 'c') {
      w.Counter(name, help, {}, static_cast<uint64_t>(v));
    } else {
      w.Gauge(name, help, {}, v);
    }
  };
  line("weft_server_streams_total", "counter", "Config streams opened.",
       static_cast<int64_t>(counters_.streams_total.load()));
  line("weft_server_streams_active", "gauge", "Config streams open now.",
       counters_.streams_active.load());
  line("weft_server_stream_responses_total", "counter", "Config responses sent.",
       static_cast<int64_t>(counters_.responses.load()));
  line("weft_server_stream_acks_total", "counter", "Responses acknowledged.",
       static_cast<int64_t>(counters_.acks.load()));
  line("weft_server_stream_nacks_total", "counter", "Responses refused by clients.",
       static_cast<int64_t>(counters_.nacks.load()));
  line("weft_server_streams_tokenless_refused_total", "counter",
       "Streams without a node certificate refused: the last tenth of max_streams is for agents.",
       static_cast<int64_t>(counters_.tokenless_refused.load()));
  line("weft_server_streams_per_peer_refused_total", "counter",
       "Streams refused: their address had max_streams_per_peer open.",
       static_cast<int64_t>(counters_.per_peer_refused.load()));
  line("weft_server_endpoints_skipped_total", "counter",
       "Instances left out of endpoints: their address is not an IP address or a DNS name.",
       static_cast<int64_t>(compiler_.skipped_endpoints()));
  line("weft_server_sidecarless_endpoints_skipped_total", "counter",
       "Instances of mtls: strict Services left out of endpoints: they have no sidecar.",
       static_cast<int64_t>(compiler_.sidecarless_skipped()));
  for (const auto& k : compiler_.SidecarlessNow())
    w.Gauge("weft_server_sidecarless_instance",
            "An instance of an mtls: strict Service left out of its endpoints now: it has no "
            "sidecar (weft check names it).",
            prom::Labels{{"namespace", k.ns},
                         {"service", k.service},
                         {"instance", k.instance},
                         {"node", k.node}},
            1);
  line("weft_server_stream_resumed_total", "counter",
       "Streams that resumed from the versions the client held.",
       static_cast<int64_t>(counters_.resumed.load()));
  line("weft_server_stream_protocol_errors_total", "counter",
       "Streams ended because the client broke the protocol.",
       static_cast<int64_t>(counters_.bad_requests.load()));
  if (opts_.authorize) {
    line("weft_agent_socket_refused_total", "counter",
         "Streams on the agent's socket refused: the peer may not act as that proxy.",
         static_cast<int64_t>(counters_.local_refused.load()));
    line("weft_agent_socket_connections_refused_total", "counter",
         "Connections to the agent's socket closed at once: over its bounds (in all, per uid).",
         static_cast<int64_t>(counters_.local_conns_refused.load()));
  }
  line("weft_server_unauthenticated_total", "counter",
       "Calls refused for missing or bad credentials (node certificate, join token, ACL token).",
       static_cast<int64_t>(counters_.unauthenticated.load()));
  line("weft_server_last_unauthenticated_unix", "gauge",
       "When the last call refused for its credentials came (unix seconds; 0: never).",
       counters_.last_unauthenticated_s.load());
  line("weft_server_foreign_node_refused_total", "counter",
       "Calls refused for naming a node other than the one of the caller's certificate.",
       static_cast<int64_t>(counters_.foreign_node.load()));
  line("weft_server_certificates_issued_total", "counter", "Workload certificates signed.",
       static_cast<int64_t>(counters_.signed_certs.load()));
  line("weft_server_certificate_requests_refused_total", "counter",
       "Certificate requests refused (token, node, CSR).",
       static_cast<int64_t>(counters_.sign_refused.load()));
  line("weft_server_node_syncs_total", "counter", "Agents' node documents written.",
       static_cast<int64_t>(counters_.node_syncs.load()));
  line("weft_server_nodes_marked_critical_total", "counter",
       "Nodes marked critical because their agent was gone past --node-timeout.",
       static_cast<int64_t>(counters_.nodes_marked_critical.load()));
  line("weft_server_node_marks_reverted_total", "counter",
       "Nodes unmarked because most agents were lost at once (this server cut off).",
       static_cast<int64_t>(counters_.node_marks_reverted.load()));
  line("weft_server_snapshots_cached", "gauge", "Compiled snapshots held.",
       static_cast<int64_t>(compiler_.cached()));
}

}  // namespace weft::control
