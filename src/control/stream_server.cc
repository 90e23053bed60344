#include "control/stream_server.h"

#include <grpcpp/grpcpp.h>

#include <mutex>

#include "base/log.h"
#include "base/prometheus.h"
#include "base/time.h"
#include "weft/v1/config.grpc.pb.h"

namespace weft::control {

namespace pb = weft::v1;

class StreamServer::Session : public grpc::ServerBidiReactor<pb::StreamRequest, pb::StreamResponse>,
                              public std::enable_shared_from_this<Session> {
 public:
  Session(StreamServer* server, std::string peer, bool token_ok)
      : server_(server), peer_(std::move(peer)), token_ok_(token_ok) {}

  void Begin() {
    self_ = shared_from_this();
    server_->counters_.streams_total++;
    server_->counters_.streams_active++;
    StartRead(&req_);
  }

  // A new snapshot for this session's identity (any thread).
  void Offer(const SnapshotPtr& snap) {
    std::lock_guard<std::mutex> l(mu_);
    if (done_) return;
    latest_ = snap;
    MaybeSendLocked();
  }

  const std::string& identity_key() const { return identity_key_; }
  const Identity& identity() const { return identity_; }
  // The node of an agent's stream ("" for anything else); set before the
  // session subscribes, constant after.
  const std::string& agent_node() const { return agent_node_; }

  // For /v1/agent/members.
  nlohmann::json Describe() {
    std::lock_guard<std::mutex> l(mu_);
    // gRPC names peers "ipv4:1.2.3.4:5678" / "ipv6:[::1]:5678".
    std::string addr = peer_.substr(peer_.find(':') + 1);
    int port = 0;
    if (size_t colon = addr.rfind(':'); colon != std::string::npos) {
      port = std::atoi(addr.c_str() + colon + 1);
      addr.resize(colon);
    }
    return {{"Name", client_.id().empty() ? peer_ : client_.id()},
            {"Addr", addr},
            {"Port", port},
            {"Status", 1},
            {"Tags",
             {{"role", client_.role()},
              {"service", client_.service()},
              {"node", client_.node()},
              {"admin", client_.admin()},
              {"detail", "acked " + (acked_ ? acked_->version : std::string("-")) +
                             (nacked_version_.empty() ? "" : ", nacked " + nacked_version_)}}}};
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The client half-closed or went away.
      std::lock_guard<std::mutex> l(mu_);
      FinishLocked(grpc::Status::OK);
      return;
    }
    std::unique_lock<std::mutex> l(mu_);
    if (!subscribed_) {
      if (!req_.has_client() || req_.client().role().empty()) {
        server_->counters_.bad_requests++;
        FinishLocked(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                  "the first request must name the client (client.role)"));
        return;
      }
      client_ = req_.client();
      identity_.role = client_.role();
      identity_.service = client_.service();
      identity_.ns = client_.namespace_().empty() ? "default" : client_.namespace_();
      identity_.proxy_id = client_.proxy_id();
      if (identity_.role != "proxy" && !token_ok_) {
        server_->counters_.unauthenticated++;
        LOG_WARN("stream from {} ({} {}) refused: missing or wrong join token", peer_,
                 client_.role(), client_.node());
        FinishLocked(grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                  "agents need this cluster's join token (--join-token)"));
        return;
      }
      if (identity_.role == "proxy" && identity_.service.empty()) {
        server_->counters_.bad_requests++;
        FinishLocked(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                  "a proxy must name the service it fronts (client.service)"));
        return;
      }
      if (identity_.role != "proxy") identity_ = Identity{"catalog", "", "default", ""};
      identity_key_ = identity_.Key();
      if (client_.role() == "agent") agent_node_ = client_.node();
      for (const auto& t : req_.resource_types()) types_.insert(t);
      if (!req_.resource_versions().empty()) {
        held_versions_.insert(req_.resource_versions().begin(), req_.resource_versions().end());
        server_->counters_.resumed++;
      }
      subscribed_ = true;
      LOG_INFO("stream from {}: {} {} (resuming {} resources)", peer_, client_.role(),
               client_.service().empty() ? client_.node() : client_.service(),
               held_versions_.size());
      auto self = shared_from_this();
      asio::post(server_->io_, [self] { self->server_->Subscribe(self); });
    } else if (!req_.response_nonce().empty()) {
      if (req_.response_nonce() != nonce_) {
        // An answer to a response superseded on reconnect; ignore.
      } else if (req_.has_error_detail()) {
        server_->counters_.nacks++;
        nacked_version_ = in_flight_ ? in_flight_->version : "";
        LOG_WARN("stream {}: {} NACKed version {}: {}", peer_, identity_key_, nacked_version_,
                 req_.error_detail().message());
        awaiting_ack_ = false;
        in_flight_.reset();
        MaybeSendLocked();
      } else {
        server_->counters_.acks++;
        acked_ = in_flight_;
        held_versions_.clear();
        nacked_version_.clear();
        awaiting_ack_ = false;
        in_flight_.reset();
        MaybeSendLocked();
      }
    }
    if (!done_) StartRead(&req_);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> l(mu_);
    writing_ = false;
    // Give the copy of the resources back at once: a thousand idle streams
    // must not each hold their last response.
    pb::StreamResponse().Swap(&resp_);
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed"));
      return;
    }
    MaybeSendLocked();
  }

  void OnCancel() override {
    std::lock_guard<std::mutex> l(mu_);
    FinishLocked(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    server_->counters_.streams_active--;
    std::shared_ptr<Session> self;
    {
      std::lock_guard<std::mutex> l(mu_);
      done_ = true;
      self = std::move(self_);
    }
    if (subscribed_) {
      asio::post(server_->io_, [self] { self->server_->Unsubscribe(self); });
    }
  }

 private:
  void FinishLocked(const grpc::Status& s) {
    if (finished_) return;
    finished_ = true;
    Finish(s);
  }

  // Sends the difference between what the client holds and the newest
  // snapshot, when nothing is in flight and there is something new.
  void MaybeSendLocked() {
    if (finished_ || writing_ || awaiting_ack_ || !latest_) return;
    if (acked_ && latest_->version == acked_->version) return;
    if (!nacked_version_.empty() && latest_->version == nacked_version_) return;
    resp_.Clear();
    resp_.set_version_info(latest_->version);
    nonce_ = std::to_string(++nonce_seq_);
    resp_.set_nonce(nonce_);
    if (acked_) {
      Diff(acked_->resources, latest_->resources);
    } else if (!held_versions_.empty()) {
      DiffVersions(held_versions_, latest_->resources);
    } else {
      resp_.set_full_state(true);
      for (const auto& [k, r] : latest_->resources)
        if (Wanted(*r)) *resp_.add_resources() = *r;
    }
    if (!resp_.full_state() && resp_.resources_size() == 0 && resp_.removed_size() == 0 && acked_) {
      acked_ = latest_;  // same resources, new version string: nothing to send
      return;
    }
    in_flight_ = latest_;
    writing_ = true;
    awaiting_ack_ = true;
    server_->counters_.responses++;
    StartWrite(&resp_);
  }

  // The client named the types it wants (none named: everything).
  bool Wanted(const pb::Resource& r) const { return types_.empty() || types_.count(r.type()) > 0; }

  void AddRemoved(const std::string& key) {
    size_t slash = key.find('/');
    auto* ref = resp_.add_removed();
    ref->set_type(key.substr(0, slash));
    ref->set_name(key.substr(slash + 1));
  }

  void Diff(const std::map<std::string, ResourcePtr>& from,
            const std::map<std::string, ResourcePtr>& to) {
    auto a = from.begin();
    auto b = to.begin();
    while (a != from.end() || b != to.end()) {
      if (b == to.end() || (a != from.end() && a->first < b->first)) {
        if (Wanted(*a->second)) AddRemoved(a->first);
        ++a;
      } else if (a == from.end() || b->first < a->first) {
        if (Wanted(*b->second)) *resp_.add_resources() = *b->second;
        ++b;
      } else {
        if (a->second != b->second && a->second->version() != b->second->version() &&
            Wanted(*b->second))
          *resp_.add_resources() = *b->second;
        ++a;
        ++b;
      }
    }
  }

  void DiffVersions(const std::map<std::string, std::string>& from,
                    const std::map<std::string, ResourcePtr>& to) {
    for (const auto& [k, v] : from)
      if (!to.count(k)) AddRemoved(k);
    for (const auto& [k, r] : to) {
      auto it = from.find(k);
      if ((it == from.end() || it->second != r->version()) && Wanted(*r))
        *resp_.add_resources() = *r;
    }
  }

  StreamServer* const server_;
  const std::string peer_;
  const bool token_ok_;            // the client presented the join token (or none is required)
  std::shared_ptr<Session> self_;  // keeps the session alive until OnDone

  std::mutex mu_;
  pb::StreamRequest req_;  // read buffer (gRPC thread)
  pb::StreamResponse resp_;
  pb::ClientInfo client_;
  Identity identity_;
  std::string identity_key_;
  std::string agent_node_;
  bool subscribed_ = false;
  bool writing_ = false;
  bool awaiting_ack_ = false;
  bool finished_ = false;
  bool done_ = false;
  uint64_t nonce_seq_ = 0;
  std::string nonce_;
  SnapshotPtr latest_;                                // newest snapshot for the identity
  SnapshotPtr in_flight_;                             // sent, not yet answered
  SnapshotPtr acked_;                                 // what the client runs
  std::map<std::string, std::string> held_versions_;  // resume: what the client said it holds
  std::set<std::string> types_;                       // subscribed resource types
  std::string nacked_version_;
};

class StreamServer::Service : public pb::ConfigStream::CallbackService {
 public:
  explicit Service(StreamServer* s) : server_(s) {}

  // A workload certificate from a CSR. Checked and signed on the io thread,
  // where the catalog lives.
  grpc::ServerUnaryReactor* Sign(grpc::CallbackServerContext* ctx, const pb::SignRequest* req,
                                 pb::SignResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (!server_->opts_.sign) {
      reactor->Finish(
          grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "certificates are issued by the servers"));
      return reactor;
    }
    if (!server_->TokenOk(ctx)) {
      server_->counters_.unauthenticated++;
      server_->counters_.sign_refused++;
      LOG_WARN("certificate request from {} for {}/{} refused: missing or wrong join token",
               ctx->peer(), req->namespace_(), req->service());
      reactor->Finish(grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                   "certificate requests need this cluster's join token"));
      return reactor;
    }
    if (req->csr_pem().size() > 64 * 1024) {
      server_->counters_.sign_refused++;
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "CSR over 64 KiB"));
      return reactor;
    }
    asio::post(server_->io_, [this, reactor, req, resp, peer = ctx->peer()] {
      Status st = server_->opts_.sign(*req, resp);
      if (st.ok()) {
        server_->counters_.signed_certs++;
        reactor->Finish(grpc::Status::OK);
        return;
      }
      server_->counters_.sign_refused++;
      LOG_WARN("certificate request from {} (node \"{}\") for {}/{} refused: {}", peer, req->node(),
               req->namespace_(), req->service(), st.message());
      grpc::StatusCode code = grpc::StatusCode::INTERNAL;
      if (st.code() == StatusCode::kPermissionDenied) code = grpc::StatusCode::PERMISSION_DENIED;
      if (st.code() == StatusCode::kInvalidArgument) code = grpc::StatusCode::INVALID_ARGUMENT;
      if (st.code() == StatusCode::kUnavailable) code = grpc::StatusCode::UNAVAILABLE;
      reactor->Finish(grpc::Status(code, st.message()));
    });
    return reactor;
  }

  // An agent's whole node document. Runs the (short) store write on the
  // gRPC thread; the store is thread-safe and the result reaches every
  // replica's view through the store's watch.
  grpc::ServerUnaryReactor* SyncNode(grpc::CallbackServerContext* ctx,
                                     const pb::SyncNodeRequest* req,
                                     pb::SyncNodeResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (!server_->opts_.accept_node_sync) {
      reactor->Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                                   "node documents go to a server, not to an agent"));
      return reactor;
    }
    if (!server_->TokenOk(ctx)) {
      server_->counters_.unauthenticated++;
      LOG_WARN("node sync from {} for {} refused: missing or wrong join token", ctx->peer(),
               req->node());
      reactor->Finish(grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                   "agents need this cluster's join token (--join-token)"));
      return reactor;
    }
    auto fail = [&](grpc::StatusCode code, const std::string& msg) {
      server_->counters_.bad_requests++;
      LOG_WARN("node sync from {} refused: {}", ctx->peer(), msg);
      reactor->Finish(grpc::Status(code, msg));
      return reactor;
    };
    if (req->json().size() > 4 * 1024 * 1024)
      return fail(grpc::StatusCode::INVALID_ARGUMENT, "node document over 4 MiB");
    auto node = mesh::NodeFromJson(req->json());
    if (!node.ok()) return fail(grpc::StatusCode::INVALID_ARGUMENT, node.status().message());
    if (node->name != req->node() || !mesh::ValidName(req->node()))
      return fail(
          grpc::StatusCode::INVALID_ARGUMENT,
          "the document names node \"" + node->name + "\", the request \"" + req->node() + "\"");
    mesh::CatalogLimits lim;
    if (node->services.size() > lim.max_services_per_node ||
        node->checks.size() > lim.max_checks_per_node)
      return fail(grpc::StatusCode::INVALID_ARGUMENT, "node over the services or checks limit");
    store::Store* st = server_->api_.store();
    const std::string key = std::string(mesh::kNodePrefix) + req->node();
    const std::string doc = mesh::NodeToJson(node.value());  // canonical form
    auto cur = st->Get(key);
    if (cur.ok() && cur->value == doc) {
      resp->set_changed(false);
      resp->set_index(cur->mod_revision);
      reactor->Finish(grpc::Status::OK);
      return reactor;
    }
    auto w = st->Put(key, doc);
    if (!w.ok()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, w.status().message()));
      return reactor;
    }
    server_->counters_.node_syncs++;
    resp->set_changed(true);
    resp->set_index(w.value());
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerBidiReactor<pb::StreamRequest, pb::StreamResponse>* Stream(
      grpc::CallbackServerContext* ctx) override {
    if (static_cast<size_t>(server_->counters_.streams_active.load()) >=
        server_->opts_.max_streams) {
      LOG_WARN("stream from {} refused: {} streams open (max_streams)", ctx->peer(),
               server_->counters_.streams_active.load());
      // A reactor that finishes at once with the error.
      class Refuse : public grpc::ServerBidiReactor<pb::StreamRequest, pb::StreamResponse> {
       public:
        Refuse() {
          Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                              "too many config streams on this server (max_streams)"));
        }
        void OnDone() override { delete this; }
      };
      return new Refuse();
    }
    auto s = std::make_shared<Session>(server_, ctx->peer(), server_->TokenOk(ctx));
    s->Begin();
    return s.get();
  }

 private:
  StreamServer* server_;
};

StreamServer::StreamServer(asio::io_context& io, Api& api, StreamOptions opts)
    : io_(io),
      api_(api),
      opts_(std::move(opts)),
      compiler_(api.catalog(), api.config()),
      debounce_(io),
      liveness_(io) {
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
  if (!opts_.tls_cert_pem.empty() && addr.rfind("unix:", 0) != 0) {
    // Clients check the server; agents and proxies prove themselves with
    // the join token inside the TLS session, not with certificates.
    grpc::SslServerCredentialsOptions o(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    o.pem_key_cert_pairs.push_back({opts_.tls_key_pem, opts_.tls_cert_pem});
    creds = grpc::SslServerCredentials(o);
  }
  b.AddListeningPort(addr, creds, &port);
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
  server_ = b.BuildAndStart();
  if (!server_ || port == 0) return {StatusCode::kUnavailable, "grpc " + addr + ": cannot listen"};
  if (addr.rfind("unix:", 0) == 0) {
    bound_ = addr;  // a local socket (the agent serving its node's proxies)
  } else {
    size_t colon = addr.rfind(':');
    bound_ = addr.substr(0, colon) + ":" + std::to_string(port);
  }
  return {};
}

void StreamServer::Stop() {
  debounce_.cancel();
  liveness_.cancel();
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
    server_.reset();
  }
}

bool StreamServer::TokenOk(const grpc::CallbackServerContext* ctx) const {
  if (opts_.join_token.empty()) return true;
  const auto& md = ctx->client_metadata();
  auto it = md.find("x-weft-join-token");
  if (it == md.end() || it->second.size() != opts_.join_token.size()) return false;
  // Constant time: how much of a guess was right must not show.
  unsigned char diff = 0;
  for (size_t i = 0; i < opts_.join_token.size(); ++i)
    diff |= static_cast<unsigned char>(it->second.data()[i] ^ opts_.join_token[i]);
  return diff == 0;
}

void StreamServer::SetBundle(ResourcePtr bundle) {
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

void StreamServer::LivenessTick() {
  liveness_.expires_after(std::chrono::seconds(1));
  liveness_.async_wait([this](const asio::error_code& ec) {
    if (ec) return;
    CheckLiveness();
    LivenessTick();
  });
}

namespace {

// Sets (critical) or removes the agent check in a node's document; false
// when the node is gone or the write failed.
bool WriteAgentCheck(store::Store* st, const std::string& node, const std::string* output) {
  const std::string key = std::string(mesh::kNodePrefix) + node;
  auto cur = st->Get(key);
  if (!cur.ok()) return false;  // deregistered meanwhile
  auto parsed = mesh::NodeFromJson(cur->value);
  if (!parsed.ok()) return false;
  mesh::Node doc = std::move(parsed).value();
  if (output) {
    mesh::Check c;
    c.id = std::string(mesh::kAgentCheckId);
    c.name = "Agent alive";
    c.status = "critical";
    c.output = *output;
    doc.checks[c.id] = c;
  } else if (doc.checks.erase(std::string(mesh::kAgentCheckId)) == 0) {
    return true;  // already without it (the agent re-synced)
  }
  return st->Put(key, mesh::NodeToJson(doc)).ok();
}

// Streams lost to one cut are detected up to a keepalive interval plus its
// timeout apart (10 s + 5 s; see Start), so losses this close together may
// be one event.
constexpr int64_t kLossSpreadMs = 20000;

}  // namespace

void StreamServer::CheckLiveness() {
  const int64_t now = MonoMillis();
  size_t gone = 0;
  int64_t newest_loss = 0;
  for (const auto& [node, a] : agents_) {
    if (a.streams > 0) continue;
    ++gone;
    newest_loss = std::max(newest_loss, a.gone_since_ms);
  }
  // Most agents gone looks like this server being cut off, not like that
  // many nodes failing: marking them would move traffic for nothing and
  // flap when the link returns. Streams die one keepalive at a time, so
  // nodes marked just before the pattern showed are part of it: unmark them.
  if (gone * 2 > agents_.size()) {
    if (!partition_warned_) {
      LOG_WARN(
          "{} of {} agents lost their stream to this server: the server may be cut off; "
          "not marking their nodes critical",
          gone, agents_.size());
      partition_warned_ = true;
    }
    for (auto& [node, a] : agents_) {
      if (a.streams > 0 || !a.marked || newest_loss - a.gone_since_ms > kLossSpreadMs) continue;
      if (!WriteAgentCheck(api_.store(), node, nullptr)) continue;
      a.marked = false;
      a.held = true;
      counters_.node_marks_reverted++;
      LOG_WARN("node {}: unmarked: its agent went with most others (this server cut off?)", node);
    }
    return;
  }
  partition_warned_ = false;
  for (auto& [node, a] : agents_) {
    if (a.held) {  // the pattern is over: a fresh timeout for those still gone
      a.held = false;
      a.gone_since_ms = now;
    }
    if (a.streams > 0 || a.marked || now - a.gone_since_ms < opts_.node_timeout_ms) continue;
    const std::string why = "the node's agent has had no stream to a server for " +
                            std::to_string((now - a.gone_since_ms) / 1000) + "s";
    if (!WriteAgentCheck(api_.store(), node, &why)) continue;  // try again next tick
    a.marked = true;
    counters_.nodes_marked_critical++;
    LOG_WARN("node {}: agent gone for {} ms: its instances are critical until it returns", node,
             now - a.gone_since_ms);
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
  line("weft_server_stream_resumed_total", "counter",
       "Streams that resumed from the versions the client held.",
       static_cast<int64_t>(counters_.resumed.load()));
  line("weft_server_stream_protocol_errors_total", "counter",
       "Streams ended because the client broke the protocol.",
       static_cast<int64_t>(counters_.bad_requests.load()));
  line("weft_server_unauthenticated_total", "counter",
       "Agent streams and node syncs refused for a missing or wrong join token.",
       static_cast<int64_t>(counters_.unauthenticated.load()));
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
