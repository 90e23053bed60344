// The ConfigStream gRPC service: certificate requests (Sign), agents' node
// documents (SyncNode) and new config streams (Stream), refused over
// max_streams.
#include <string>

#include "base/log.h"
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

grpc::ServerUnaryReactor* StreamServer::Service::SyncNode(grpc::CallbackServerContext* ctx,
                                                          const pb::SyncNodeRequest* req,
                                                          pb::SyncNodeResponse* resp) {
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
    explicit Refuse(const std::string& why) {
      Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, why));
    }
    void OnDone() override { delete this; }
  };
  const size_t active = static_cast<size_t>(server_->counters_.streams_active.load());
  const size_t max = server_->opts_.max_streams;
  if (active >= max) {
    LOG_WARN_LIMITED("stream from {} refused: {} streams open (max_streams)", ctx->peer(), active);
    return new Refuse("too many config streams on this server (max_streams)");
  }
  const bool token_ok = server_->TokenOk(ctx);
  if (!token_ok && active >= max - std::max<size_t>(1, max / 10)) {
    server_->counters_.tokenless_refused++;
    LOG_WARN_LIMITED(
        "stream from {} without the join token refused: the last tenth of max_streams "
        "({}) is kept for agents",
        ctx->peer(), max);
    return new Refuse(
        "config streams without the join token are at their limit: the last tenth of "
        "max_streams is kept for agents");
  }
  auto s = std::make_shared<Session>(server_, ctx->peer(), token_ok);
  s->Begin();
  return s.get();
}

}  // namespace weft::control
