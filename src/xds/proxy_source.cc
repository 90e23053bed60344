#include "xds/proxy_source.h"

#include <unistd.h>

#include <mutex>

#include "base/log.h"
#include "base/strings.h"
#include "identity/cert_manager.h"
#include "weft/v1/config.pb.h"
#include "xds/proxy_config.h"
#include "xds/stream_client.h"

namespace weft::xds {
namespace {

namespace pb = weft::v1;

class ProxySource final : public proxy::ConfigSource {
 public:
  explicit ProxySource(proxy::ProxyOptions opts) : opts_(std::move(opts)) {}
  ~ProxySource() override { Stop(); }

  void Start(proxy::ConfigSink* sink, std::shared_ptr<const proxy::ProxyConfig> base,
             const std::string& admin) override {
    sink_ = sink;
    StreamClientOptions so;
    so.servers = SplitCommas(opts_.server);
    const bool behind_agent = opts_.server.rfind("unix:", 0) == 0;
    if (!behind_agent && !opts_.server_ca_pem.empty())
      so.server_trust = std::make_shared<ServerTrust>(opts_.server_ca_pem);
    trust_ = so.server_trust;
    // The servers' service token, or behind an agent the Token of this
    // sidecar's registration (needed when not running as root or as the
    // agent's user).
    if (!opts_.token.empty()) so.metadata.emplace_back("x-consul-token", opts_.token);
    so.info.set_role("proxy");
    so.info.set_service(opts_.service);
    so.info.set_namespace_(opts_.ns);
    so.info.set_proxy_id(opts_.proxy_id);
    so.info.set_node(opts_.node);
    so.info.set_version(WEFT_VERSION);
    so.info.set_admin(admin);
    char host[128] = {};
    gethostname(host, sizeof(host) - 1);
    so.info.set_id(std::string("proxy/") + opts_.service + "/" + host + "-" +
                   std::to_string(getpid()));
    // Without an agent, this proxy makes its own key and asks the servers
    // for its certificate; behind an agent, the certificate comes with the
    // stream (the agent made the key on this node).
    if (!behind_agent) {
      std::vector<std::pair<std::string, std::string>> md;
      if (!opts_.token.empty()) md.emplace_back("x-consul-token", opts_.token);
      signer_ = std::make_unique<SignClient>(so.servers, md, trust_);
      certs_ = std::make_unique<identity::CertManager>(
          [this](const std::string& csr, const std::string& ns, const std::string& service) {
            return signer_->Issue(csr, ns, service, "");
          },
          [this](const std::string&, const std::string&, const std::string& key_pem,
                 const identity::Issued& cert) {
            std::lock_guard<std::mutex> l(mu_);
            own_secret_ = ToSecret(key_pem, cert);
            PushIdentityLocked();
          });
      certs_->Want(opts_.ns, opts_.service);
      certs_->Start();
    }
    stream_ = std::make_unique<StreamClient>(
        so, [this, base](const ResourceMap& state, const pb::StreamResponse& resp) {
          return OnState(*base, state, resp);
        });
    stream_->Start();
  }

  void Stop() override {
    if (stream_) stream_->Stop();
    if (certs_) certs_->Stop();
  }

 private:
  // The stream's thread: a candidate state. Returns "" to ACK, else the
  // reason to NACK.
  std::string OnState(const proxy::ProxyConfig& base, const ResourceMap& state,
                      const pb::StreamResponse& resp) {
    pb::Bundle bundle;
    pb::Secret secret;
    if (auto b = state.find("bundle/roots"); b != state.end()) bundle = b->second->bundle();
    // The servers' certificates come from this CA too: trust the streamed
    // bundle from now on (no new --server-ca after a rotation).
    if (trust_) trust_->SetFromBundle(bundle);
    if (auto sc = state.find("secret/workload"); sc != state.end()) secret = sc->second->secret();
    // A response that only renews the certificate or the bundle leaves the
    // config (and the connection pools) as they are.
    bool identity_only = !resp.full_state() && resp.removed_size() == 0;
    for (const auto& r : resp.resources())
      identity_only &= r.type() == "secret" || r.type() == "bundle";
    if (identity_only && resp.resources_size() > 0 && applied_) {
      TakeIdentity(bundle, secret);
      return "";
    }
    std::string err;
    auto cfg = ConfigFromResources(base, state, &err);
    if (!cfg) {
      sink_->Refused(err);
      return "invalid config: " + err;
    }
    // The identity first: the new config may need it (mesh TLS).
    TakeIdentity(bundle, secret);
    std::string verdict = sink_->Install(cfg, resp.version_info());
    applied_ = applied_ || verdict.empty();
    return verdict;
  }

  void TakeIdentity(const pb::Bundle& bundle, const pb::Secret& secret) {
    {
      std::lock_guard<std::mutex> l(mu_);
      bundle_ = bundle;
      if (!certs_) own_secret_ = secret;
      PushIdentityLocked();
    }
    // Outside mu_: the certificate manager calls back into this source.
    if (certs_ && !bundle.trust_domain().empty())
      certs_->SetBundle(bundle.trust_domain(), bundle.active_root_id());
  }

  // Hands the sink the identity the bundle and secret make, if complete.
  // Under mu_, so identities reach the sink in the order they were made.
  void PushIdentityLocked() {
    if (auto id = IdentityFrom(bundle_, own_secret_)) sink_->SetIdentity(std::move(id));
  }

  // Constant after construction (the sink and trust_ after Start).
  const proxy::ProxyOptions opts_;
  proxy::ConfigSink* sink_ = nullptr;
  std::shared_ptr<ServerTrust> trust_;  // TLS to the servers; null: plaintext
  std::unique_ptr<SignClient> signer_;
  std::unique_ptr<identity::CertManager> certs_;
  std::unique_ptr<StreamClient> stream_;

  bool applied_ = false;  // the stream's thread only: a config from the stream is installed
  std::mutex mu_;         // guards bundle_ and own_secret_ (stream and certificate threads)
  pb::Bundle bundle_;     // the trust bundle from the stream
  // Our certificate: from the stream (behind an agent) or from certs_.
  pb::Secret own_secret_;
};

}  // namespace

std::unique_ptr<proxy::ConfigSource> NewProxySource(const proxy::ProxyOptions& opts) {
  return std::make_unique<ProxySource>(opts);
}

}  // namespace weft::xds
