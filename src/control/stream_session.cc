// One config stream: the first request subscribes the client's identity,
// then each response waits for its ACK or NACK before the next is sent, as
// the difference between what the client holds and the newest snapshot.
#include <cstdlib>
#include <utility>

#include "base/log.h"
#include "base/net.h"
#include "control/stream_internal.h"

namespace weft::control {

namespace pb = weft::v1;

StreamServer::Session::Session(StreamServer* server, Caller caller, std::string peer_ip)
    : server_(server), caller_(std::move(caller)), peer_ip_(std::move(peer_ip)) {}

void StreamServer::Session::Refuse(const grpc::Status& s) {
  std::lock_guard<std::mutex> l(mu_);
  FinishLocked(s);
}

void StreamServer::Session::Begin() {
  self_ = shared_from_this();
  server_->counters_.streams_total++;
  server_->counters_.streams_active++;
  StartRead(&req_);
}

void StreamServer::Session::Offer(const SnapshotPtr& snap) {
  std::lock_guard<std::mutex> l(mu_);
  if (done_) return;
  latest_ = snap;
  MaybeSendLocked();
}

nlohmann::json StreamServer::Session::Describe() {
  std::lock_guard<std::mutex> l(mu_);
  // gRPC names peers "ipv4:1.2.3.4:5678" / "ipv6:[::1]:5678".
  std::string addr, why;
  uint16_t port = 0;
  if (!SplitHostPort(std::string_view(peer_).substr(peer_.find(':') + 1), &addr, &port, &why))
    addr = peer_;  // not an IP peer (a unix socket): shown as gRPC names it
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

void StreamServer::Session::OnReadDone(bool ok) {
  if (!ok) {
    // The client half-closed or went away.
    std::lock_guard<std::mutex> l(mu_);
    FinishLocked(grpc::Status::OK);
    return;
  }
  std::unique_lock<std::mutex> l(mu_);
  if (!subscribed_) {
    if (req_.ByteSizeLong() > server_->opts_.max_first_message_bytes) {
      server_->counters_.bad_requests++;
      LOG_WARN_LIMITED("stream from {} refused: a first message of {} bytes", peer_,
                       req_.ByteSizeLong());
      FinishLocked(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                "the first request is over " +
                                    std::to_string(server_->opts_.max_first_message_bytes) +
                                    " bytes"));
      return;
    }
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
    if (identity_.role != "proxy" && !caller_.open && caller_.node.empty()) {
      server_->NoteUnauthenticated();
      LOG_WARN_LIMITED("stream from {} ({} {}) refused: no node certificate", peer_, client_.role(),
                       client_.node());
      FinishLocked(grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                "agents present their node certificate (they get it by joining "
                                "with a join token)"));
      return;
    }
    if (identity_.role == "agent" && !caller_.open && client_.node() != caller_.node) {
      server_->counters_.foreign_node++;
      LOG_WARN_LIMITED("stream from {} refused: node \"{}\"'s certificate, naming node \"{}\"",
                       peer_, caller_.node, client_.node());
      FinishLocked(grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                                "this certificate is node \"" + caller_.node + "\"'s"));
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
             client_.service().empty() ? client_.node() : client_.service(), held_versions_.size());
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

void StreamServer::Session::OnWriteDone(bool ok) {
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

void StreamServer::Session::OnCancel() {
  std::lock_guard<std::mutex> l(mu_);
  FinishLocked(grpc::Status::CANCELLED);
}

void StreamServer::Session::OnDone() {
  server_->counters_.streams_active--;
  server_->ReleasePeer(peer_ip_);
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

void StreamServer::Session::FinishLocked(const grpc::Status& s) {
  if (finished_) return;
  finished_ = true;
  Finish(s);
}

void StreamServer::Session::MaybeSendLocked() {
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

bool StreamServer::Session::Wanted(const pb::Resource& r) const {
  return types_.empty() || types_.count(r.type()) > 0;
}

void StreamServer::Session::AddRemoved(const std::string& key) {
  size_t slash = key.find('/');
  auto* ref = resp_.add_removed();
  ref->set_type(key.substr(0, slash));
  ref->set_name(key.substr(slash + 1));
}

void StreamServer::Session::Diff(const std::map<std::string, ResourcePtr>& from,
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

void StreamServer::Session::DiffVersions(const std::map<std::string, std::string>& from,
                                         const std::map<std::string, ResourcePtr>& to) {
  for (const auto& [k, v] : from)
    if (!to.count(k)) AddRemoved(k);
  for (const auto& [k, r] : to) {
    auto it = from.find(k);
    if ((it == from.end() || it->second != r->version()) && Wanted(*r)) *resp_.add_resources() = *r;
  }
}

}  // namespace weft::control
