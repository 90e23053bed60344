// The ConfigStream gRPC service: certificate requests (Sign), agents' node
// documents (SyncNode) and new config streams (Stream), refused over
// max_streams.
#include <string>

#include "base/log.h"
#include "base/time.h"
#include "control/join_token.h"
#include "control/stream_internal.h"
#include "mesh/catalog.h"

namespace weft::control {

namespace pb = weft::v1;

grpc::ServerUnaryReactor* StreamServer::Service::Sign(grpc::CallbackServerContext* ctx,
                                                      const pb::SignRequest* req,
                                                      pb::SignResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  if (!server_->opts_.sign) {
    reactor->Finish(
        grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "certificates are issued by the servers"));
    return reactor;
  }
  if (req->csr_pem().size() > 64 * 1024) {
    server_->counters_.sign_refused++;
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "CSR over 64 KiB"));
    return reactor;
  }
  Caller caller = server_->CallerOf(ctx);
  if (!caller.open && req->node_identity() && caller.node.empty()) {
    // Joining: the join token, checked against the store here (a short
    // read; the store is thread-safe).
    const auto& md = ctx->client_metadata();
    auto it = md.find("x-weft-join-token");
    const std::string_view secret = it == md.end()
                                        ? std::string_view()
                                        : std::string_view(it->second.data(), it->second.size());
    Status st = join::Check(server_->api_.store(), secret, WallMicros() / 1000000);
    if (!st.ok()) {
      server_->NoteUnauthenticated();
      server_->counters_.sign_refused++;
      LOG_WARN_LIMITED("node certificate for \"{}\" requested by {} refused: {}", req->node(),
                       caller.peer, st.message());
      reactor->Finish(grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                   "joining needs a valid join token: " + st.message()));
      return reactor;
    }
    caller.join_token_ok = true;
  }
  if (!caller.open && caller.node.empty() && !caller.join_token_ok && caller.acl_token.empty()) {
    server_->NoteUnauthenticated();
    server_->counters_.sign_refused++;
    LOG_WARN_LIMITED("certificate request from {} for {}/{} refused: no credentials", caller.peer,
                     req->namespace_(), req->service());
    reactor->Finish(
        grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                     "certificate requests need a node certificate (agents) or an ACL token with "
                     "service:write on the service (proxies without an agent)"));
    return reactor;
  }
  asio::post(server_->io_, [this, reactor, req, resp, caller = std::move(caller)] {
    Status st = server_->opts_.sign(caller, *req, resp);
    if (st.ok()) {
      server_->counters_.signed_certs++;
      reactor->Finish(grpc::Status::OK);
      return;
    }
    server_->counters_.sign_refused++;
    LOG_WARN_LIMITED(
        "certificate request from {} (node \"{}\", certificate of node \"{}\") for "
        "{} refused: {}",
        caller.peer, req->node(), caller.node,
        req->node_identity() ? "a node identity" : req->namespace_() + "/" + req->service(),
        st.message());
    grpc::StatusCode code = grpc::StatusCode::INTERNAL;
    if (st.code() == StatusCode::kPermissionDenied) code = grpc::StatusCode::PERMISSION_DENIED;
    if (st.code() == StatusCode::kInvalidArgument) code = grpc::StatusCode::INVALID_ARGUMENT;
    if (st.code() == StatusCode::kUnavailable) code = grpc::StatusCode::UNAVAILABLE;
    if (st.code() == StatusCode::kFailedPrecondition) code = grpc::StatusCode::FAILED_PRECONDITION;
    reactor->Finish(grpc::Status(code, st.message()));
  });
  return reactor;
}

grpc::ServerUnaryReactor* StreamServer::Service::SyncNode(grpc::CallbackServerContext* ctx,
                                                          const pb::SyncNodeRequest* req,
                                                          pb::SyncNodeResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  if (!server_->opts_.accept_node_sync) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                                 "node documents go to a server, not to an agent"));
    return reactor;
  }
  const Caller caller = server_->CallerOf(ctx);
  if (!caller.open && caller.node.empty()) {
    server_->NoteUnauthenticated();
    LOG_WARN_LIMITED("node sync from {} for \"{}\" refused: no node certificate", caller.peer,
                     req->node());
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                 "node documents need the node's certificate (an agent gets it "
                                 "by joining with a join token)"));
    return reactor;
  }
  if (!caller.open && caller.node != req->node()) {
    server_->counters_.foreign_node++;
    LOG_WARN_LIMITED(
        "node sync from {} refused: its certificate is node \"{}\"'s, the document "
        "names \"{}\"",
        caller.peer, caller.node, req->node());
    reactor->Finish(grpc::Status(
        grpc::StatusCode::PERMISSION_DENIED,
        "this certificate is node \"" + caller.node + "\"'s: it may write that node only"));
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
    return fail(grpc::StatusCode::INVALID_ARGUMENT, "the document names node \"" + node->name +
                                                        "\", the request \"" + req->node() + "\"");
  mesh::CatalogLimits lim;
  if (node->services.size() > lim.max_services_per_node ||
      node->checks.size() > lim.max_checks_per_node)
    return fail(grpc::StatusCode::INVALID_ARGUMENT, "node over the services or checks limit");
  store::Store* st = server_->api_.store();
  const std::string key = std::string(mesh::kNodePrefix) + req->node();
  const std::string doc = mesh::NodeToJson(node.value());  // canonical form
  // The agent's copy replaces the node's document, as of the revision it
  // read: a liveness mark or another write in between makes it read again
  // rather than overwrite something it never saw.
  Result<int64_t> w = Status(StatusCode::kUnavailable, "node document kept changing; retry");
  for (int attempt = 0; attempt < 8; ++attempt) {
    auto cur = st->Get(key);
    if (!cur.ok() && cur.status().code() != StatusCode::kNotFound) {
      w = cur.status();
      break;
    }
    if (cur.ok() && cur->value == doc) {
      resp->set_changed(false);
      resp->set_index(cur->mod_revision);
      reactor->Finish(grpc::Status::OK);
      return reactor;
    }
    w = st->PutIf(key, doc, cur.ok() ? cur->mod_revision : 0);
    if (w.ok() || w.status().code() != StatusCode::kFailedPrecondition) break;
  }
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

grpc::ServerBidiReactor<pb::StreamRequest, pb::StreamResponse>* StreamServer::Service::Stream(
    grpc::CallbackServerContext* ctx) {
  // A reactor that finishes at once with the error.
  class Refuse : public grpc::ServerBidiReactor<pb::StreamRequest, pb::StreamResponse> {
   public:
    Refuse(grpc::StatusCode code, const std::string& why) { Finish(grpc::Status(code, why)); }
    void OnDone() override { delete this; }
  };
  const size_t active = static_cast<size_t>(server_->counters_.streams_active.load());
  const size_t max = server_->opts_.max_streams;
  if (active >= max) {
    LOG_WARN_LIMITED("stream from {} refused: {} streams open (max_streams)", ctx->peer(), active);
    return new Refuse(grpc::StatusCode::RESOURCE_EXHAUSTED,
                      "too many config streams on this server (max_streams)");
  }
  Caller caller = server_->CallerOf(ctx);
  if (!caller.open && caller.node.empty() && caller.acl_token.empty()) {
    // Refused before anything is allocated for it.
    server_->NoteUnauthenticated();
    LOG_WARN_LIMITED("stream from {} refused: no node certificate and no ACL token", ctx->peer());
    return new Refuse(grpc::StatusCode::UNAUTHENTICATED,
                      "config streams need a node certificate (agents) or an ACL token "
                      "(x-consul-token; proxies without an agent)");
  }
  if (!caller.open && caller.node.empty() && active >= max - std::max<size_t>(1, max / 10)) {
    server_->counters_.tokenless_refused++;
    LOG_WARN_LIMITED(
        "stream from {} without a node certificate refused: the last tenth of max_streams "
        "({}) is kept for agents",
        ctx->peer(), max);
    return new Refuse(grpc::StatusCode::RESOURCE_EXHAUSTED,
                      "config streams without a node certificate are at their limit: the last "
                      "tenth of max_streams is kept for agents");
  }
  // gRPC names peers "ipv4:1.2.3.4:5678", "ipv6:[::1]:5678", "unix:...".
  std::string peer_ip = caller.peer.substr(0, caller.peer.rfind(':'));
  if (!server_->TakePeer(peer_ip)) {
    server_->counters_.per_peer_refused++;
    LOG_WARN_LIMITED("stream from {} refused: {} streams from that address (max_streams_per_peer)",
                     caller.peer, server_->opts_.max_streams_per_peer);
    return new Refuse(grpc::StatusCode::RESOURCE_EXHAUSTED,
                      "too many config streams from this address (max_streams_per_peer)");
  }
  auto s = std::make_shared<Session>(server_, std::move(caller), std::move(peer_ip));
  s->Begin();
  return s.get();
}

}  // namespace weft::control
