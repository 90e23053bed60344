// The agent's two links to the servers: the node sync (this node's document
// pushed on every local change and every 30 s, from a thread of its own) and
// the config stream that feeds the cache.
#include <grpcpp/grpcpp.h>

#include <chrono>

#include "agent/agent_internal.h"
#include "base/log.h"
#include "weft/v1/config.grpc.pb.h"

namespace weft::agent {

namespace pb = weft::v1;

void Agent::LocalChanged() {
  Install(state_);
  MarkDirty();
  checks_.Sync(local_.checks());
}

void Agent::MarkDirty() {
  if (adopt_pending_) return;  // the servers' copy first (AdoptFrom)
  {
    std::lock_guard<std::mutex> l(sync_mu_);
    sync_doc_ = local_.Document();
    sync_dirty_ = true;
  }
  sync_cv_.notify_all();
}

void Agent::AntiEntropyTick() {
  sync_timer_.expires_after(std::chrono::seconds(30));
  sync_timer_.async_wait([this](const asio::error_code& ec) {
    if (ec) return;
    MarkDirty();
    AntiEntropyTick();
  });
}

void Agent::SyncLoop() {
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
        LOG_ERROR("node sync refused by {}: {}", server, s.error_message());
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

void Agent::AdoptFrom(const xds::ResourceMap& state) {
  adopt_pending_ = false;
  auto it = state.find("node/" + opts_.node);
  if (it != state.end()) {
    auto n = local_.Adopt(it->second->node().json());
    if (!n.ok()) {
      LOG_WARN("agent: the servers' copy of node {} not adopted: {}", opts_.node,
               n.status().message());
    } else {
      LOG_WARN(
          "agent: started with an empty data dir; adopted {} service(s) of node {} from the "
          "servers instead of removing them",
          n.value(), opts_.node);
      checks_.Sync(local_.checks());
    }
  }
  MarkDirty();
}

void Agent::StartStream() {
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
  last_contact_ms_ = MonoMillis();
  stream_ = std::make_unique<xds::StreamClient>(
      so, [this](const xds::ResourceMap& state, const pb::StreamResponse& resp) {
        last_contact_ms_ = MonoMillis();
        asio::post(io_, [this, state, version = resp.version_info()] {
          if (adopt_pending_) AdoptFrom(state);
          Install(state);
          version_ = version;
          SaveCacheSoon();
        });
        return std::string();
      });
  if (!initial_.empty()) stream_->SetInitialState(initial_, initial_version_);
  stream_->Start();
}

}  // namespace weft::agent
