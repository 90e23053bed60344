#include "xds/stream_client.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <random>

#include "base/file.h"
#include "base/log.h"
#include "base/strings.h"
#include "identity/ca.h"
#include "weft/v1/config.grpc.pb.h"

namespace weft::xds {

namespace pb = weft::v1;

StreamClient::StreamClient(StreamClientOptions opts, ApplyFn apply)
    : opts_(std::move(opts)), apply_(std::move(apply)) {}

StreamClient::~StreamClient() { Stop(); }

void StreamClient::SetInitialState(ResourceMap state, std::string version) {
  state_ = std::move(state);
  std::lock_guard<std::mutex> l(mu_);
  acked_version_ = std::move(version);
}

void StreamClient::Start() {
  thread_ = std::thread([this] { Run(); });
}

void StreamClient::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stop_.exchange(true)) {
      // already stopping
    }
    if (ctx_) ctx_->TryCancel();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::string StreamClient::acked_version() const {
  std::lock_guard<std::mutex> l(mu_);
  return acked_version_;
}

void StreamClient::Run() {
  std::mt19937_64 rng(std::random_device{}());
  int64_t backoff = opts_.backoff_min_ms;
  size_t next = 0;
  if (opts_.servers.empty()) {
    LOG_ERROR("config stream: no server address to connect to");
    return;
  }
  while (!stop_) {
    const std::string& server = opts_.servers[next % opts_.servers.size()];
    bool got = RunOnce(server);
    connected_ = false;
    if (stop_) break;
    ++reconnects_;
    if (got) backoff = opts_.backoff_min_ms;
    ++next;
    // Full jitter: sleep a random time up to the current backoff.
    const int64_t sleep = std::uniform_int_distribution<int64_t>(backoff / 2, backoff)(rng);
    backoff = std::min(backoff * 2, opts_.backoff_max_ms);
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, std::chrono::milliseconds(sleep), [this] { return stop_.load(); });
  }
}

bool StreamClient::RunOnce(const std::string& server) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(opts_.max_message_bytes));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  if (opts_.separate_connection) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto channel = DialServer(server, opts_.server_trust.get(), args);
  auto stub = pb::ConfigStream::NewStub(channel);
  grpc::ClientContext ctx;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stop_) return false;
    ctx_ = &ctx;
  }
  struct Clear {
    StreamClient* c;
    ~Clear() {
      std::lock_guard<std::mutex> l(c->mu_);
      c->ctx_ = nullptr;
    }
  } clear{this};

  for (const auto& [k, v] : opts_.metadata) ctx.AddMetadata(k, v);
  auto stream = stub->Stream(&ctx);
  pb::StreamRequest first;
  *first.mutable_client() = opts_.info;
  for (const auto& [k, r] : state_) (*first.mutable_resource_versions())[k] = r->version();
  {
    std::lock_guard<std::mutex> l(mu_);
    first.set_version_info(acked_version_);
  }
  bool got = false;
  if (stream->Write(first)) {
    pb::StreamResponse resp;
    while (stream->Read(&resp)) {
      got = true;
      connected_ = true;
      ++responses_;
      // The candidate state: the response applied to what we hold.
      ResourceMap next;
      if (!resp.full_state()) next = state_;
      for (const auto& ref : resp.removed()) next.erase(ref.type() + "/" + ref.name());
      for (auto& r : *resp.mutable_resources()) {
        std::string key = r.type() + "/" + r.name();
        next[key] = std::make_shared<const pb::Resource>(std::move(r));
      }
      std::string err = apply_(next, resp);
      pb::StreamRequest answer;
      answer.set_response_nonce(resp.nonce());
      if (err.empty()) {
        state_ = std::move(next);
        answer.set_version_info(resp.version_info());
        std::lock_guard<std::mutex> l(mu_);
        acked_version_ = resp.version_info();
      } else {
        ++nacks_;
        LOG_WARN("config version {} refused, keeping {}: {}", resp.version_info(), acked_version(),
                 err);
        answer.set_version_info(acked_version());
        answer.mutable_error_detail()->set_message(err);
      }
      if (!stream->Write(answer)) break;
    }
  }
  stream->WritesDone();
  grpc::Status s = stream->Finish();
  if (!stop_) {
    if (got) {
      LOG_WARN("config stream to {} ended: {}; reconnecting", server,
               s.ok() ? "closed by the server" : s.error_message());
    } else if (s.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
               s.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
      // Retrying will not help until someone changes a credential: say so.
      LOG_WARN_LIMITED("config stream to {} refused: {}", server, s.error_message());
    } else {
      LOG_DEBUG("config stream to {}: {}", server, s.error_message());
    }
  }
  return got;
}

std::string ReadServerCa(const std::string& path, std::string* err) {
  std::string pem = ReadWholeFile(path, err);
  if (err->empty() && pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos)
    *err = "no PEM certificate in it";
  return err->empty() ? pem : "";
}

std::shared_ptr<grpc::Channel> DialServer(const std::string& target, const ServerTrust* trust,
                                          grpc::ChannelArguments args) {
  if (!trust) return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  grpc::SslCredentialsOptions o;
  trust->Get(&o.pem_root_certs, &o.pem_private_key, &o.pem_cert_chain);
  args.SetSslTargetNameOverride(identity::kServerTlsName);
  return grpc::CreateCustomChannel(target, grpc::SslCredentials(o), args);
}

SignClient::SignClient(std::vector<std::string> servers,
                       std::vector<std::pair<std::string, std::string>> metadata,
                       std::shared_ptr<ServerTrust> trust)
    : servers_(std::move(servers)), metadata_(std::move(metadata)), trust_(std::move(trust)) {}

Result<pb::SignResponse> SignClient::Sign(const pb::SignRequest& req, int64_t timeout_ms) {
  if (servers_.empty()) return Status(StatusCode::kInvalidArgument, "no server to sign with");
  Status last(StatusCode::kUnavailable, "no server answered");
  for (size_t i = 0; i < servers_.size(); ++i) {
    const std::string& server = servers_[next_ % servers_.size()];
    auto channel = DialServer(server, trust_.get());
    auto stub = pb::ConfigStream::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
    for (const auto& [k, v] : metadata_) ctx.AddMetadata(k, v);
    pb::SignResponse resp;
    const grpc::Status st = stub->Sign(&ctx, req, &resp);
    if (st.ok()) return resp;
    const std::string msg = server + ": " + st.error_message();
    switch (st.error_code()) {
      case grpc::StatusCode::PERMISSION_DENIED:
      case grpc::StatusCode::UNAUTHENTICATED:
        return Status(StatusCode::kPermissionDenied, msg);
      case grpc::StatusCode::INVALID_ARGUMENT:
        return Status(StatusCode::kInvalidArgument, msg);
      default:
        last = Status(StatusCode::kUnavailable, msg);
        ++next_;  // try the next server
    }
  }
  return last;
}

Result<identity::Issued> SignClient::Issue(const std::string& csr_pem, const std::string& ns,
                                           const std::string& service, const std::string& node) {
  pb::SignRequest req;
  req.set_csr_pem(csr_pem);
  req.set_namespace_(ns);
  req.set_service(service);
  req.set_node(node);
  auto r = Sign(req);
  if (!r.ok()) return r.status();
  return identity::Issued{r->cert_chain_pem(), r->spiffe_id(), r->root_id(), r->not_after_unix()};
}

pb::Secret ToSecret(const std::string& key_pem, const identity::Issued& cert) {
  pb::Secret s;
  s.set_spiffe_id(cert.spiffe_id);
  s.set_cert_chain_pem(cert.cert_chain_pem);
  s.set_key_pem(key_pem);
  s.set_not_after_unix(cert.not_after_unix);
  s.set_root_id(cert.root_id);
  return s;
}

}  // namespace weft::xds
