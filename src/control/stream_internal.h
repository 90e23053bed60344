// The config stream's gRPC pieces, shared by stream_server.cc,
// stream_session.cc, stream_service.cc and node_liveness.cc; not for use
// outside control/.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "control/stream_server.h"
#include "weft/v1/config.grpc.pb.h"

namespace weft::control {

// One client's stream (stream_session.cc). gRPC runs the On* reactions on
// its threads, a read's and a write's possibly at once; OnDone comes last
// (StreamServer::Stop() cancels streams still open). The session keeps
// itself alive until OnDone, then lives while the io thread's subscription
// or a posted Subscribe/Unsubscribe holds it; the StreamServer must outlive
// it.
class StreamServer::Session
    : public grpc::ServerBidiReactor<weft::v1::StreamRequest, weft::v1::StreamResponse>,
      public std::enable_shared_from_this<Session> {
 public:
  // Holds one of `peer_ip`'s stream slots (TakePeer), given back in OnDone.
  Session(StreamServer* server, Caller caller, std::string peer_ip);

  // Starts reading; once, on the gRPC thread that made the session.
  void Begin();
  // A new snapshot for this session's identity (any thread).
  void Offer(const SnapshotPtr& snap);

  // Set before the session subscribes, constant after: read them on the io
  // thread once it has (Subscribe and later).
  const std::string& identity_key() const { return identity_key_; }
  const Identity& identity() const { return identity_; }
  // The node of an agent's stream ("" for anything else).
  const std::string& agent_node() const { return agent_node_; }
  const Caller& caller() const { return caller_; }
  // Ends the stream with an error before it subscribed (io thread: the
  // subscription's own checks).
  void Refuse(const grpc::Status& s);

  // For /v1/agent/members (any thread).
  nlohmann::json Describe();

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  void FinishLocked(const grpc::Status& s);
  // Sends the difference between what the client holds and the newest
  // snapshot, when nothing is in flight and there is something new.
  void MaybeSendLocked();
  // The client named the types it wants (none named: everything).
  bool Wanted(const weft::v1::Resource& r) const;
  void AddRemoved(const std::string& key);
  void Diff(const std::map<std::string, ResourcePtr>& from,
            const std::map<std::string, ResourcePtr>& to);
  void DiffVersions(const std::map<std::string, std::string>& from,
                    const std::map<std::string, ResourcePtr>& to);

  // Constant after construction.
  StreamServer* const server_;
  const Caller caller_;  // what the stream's call proved
  const std::string peer_ip_;
  const std::string& peer_ = caller_.peer;
  // Keeps the session alive until OnDone: set in Begin(), taken in OnDone()
  // under mu_.
  std::shared_ptr<Session> self_;

  // Guards everything below. req_ and resp_ are gRPC's between
  // StartRead/StartWrite and the matching OnReadDone/OnWriteDone. client_,
  // identity_, identity_key_ and agent_node_ are written once under mu_
  // before the session subscribes and read without it after (accessors
  // above); OnDone, the last reaction, reads subscribed_ without it.
  std::mutex mu_;
  weft::v1::StreamRequest req_;  // read buffer
  weft::v1::StreamResponse resp_;
  weft::v1::ClientInfo client_;
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

// The ConfigStream gRPC service (stream_service.cc). gRPC calls its methods
// on its threads; it lives as long as the StreamServer (service_).
class StreamServer::Service : public weft::v1::ConfigStream::CallbackService {
 public:
  explicit Service(StreamServer* s) : server_(s) {}

  // A workload certificate from a CSR. Checked and signed on the io thread,
  // where the catalog lives.
  grpc::ServerUnaryReactor* Sign(grpc::CallbackServerContext* ctx, const weft::v1::SignRequest* req,
                                 weft::v1::SignResponse* resp) override;
  // An agent's whole node document. Runs the (short) store write on the
  // gRPC thread; the store is thread-safe and the result reaches every
  // replica's view through the store's watch.
  grpc::ServerUnaryReactor* SyncNode(grpc::CallbackServerContext* ctx,
                                     const weft::v1::SyncNodeRequest* req,
                                     weft::v1::SyncNodeResponse* resp) override;
  grpc::ServerBidiReactor<weft::v1::StreamRequest, weft::v1::StreamResponse>* Stream(
      grpc::CallbackServerContext* ctx) override;

 private:
  StreamServer* server_;
};

}  // namespace weft::control
