// The agent's node identity: it joins the cluster once with a join token and
// gets a node certificate (spiffe://TD/ns/weft/node/NODE), kept in
// DATA_DIR/node-key.pem and node-cert.pem (0600) and renewed after two
// thirds of its life over mutual TLS with the certificate itself. Every
// call to the servers (the config stream, node syncs, workload
// certificates) presents it; the servers let it act for this node only.
#include <chrono>
#include <ctime>

#include "agent/agent_internal.h"
#include "base/file.h"
#include "base/log.h"
#include "identity/ca.h"

namespace weft::agent {

namespace pb = weft::v1;

namespace {

int64_t NowS() { return static_cast<int64_t>(std::time(nullptr)); }

}  // namespace

bool Agent::LoadNodeIdentity() {
  std::string err;
  const std::string key = ReadWholeFile(NodeKeyPath(), &err);
  const std::string cert = err.empty() ? ReadWholeFile(NodeCertPath(), &err) : "";
  if (!err.empty()) return false;
  auto id = identity::VerifyWorkload(cert, trust_->pem());
  auto not_after = identity::NotAfterUnix(cert);
  if (!id.ok() || !not_after.ok() ||
      identity::NodeOf(id.value(), identity::TrustDomainOf(id.value())) != opts_.node) {
    LOG_WARN(
        "agent: the node certificate in {} is not node {}'s from this cluster's CA ({}): "
        "joining again",
        NodeCertPath(), opts_.node, id.ok() ? id.value() : id.status().message());
    return false;
  }
  if (not_after.value() <= NowS() + 60) {
    LOG_WARN("agent: the node certificate in {} has expired: joining again", NodeCertPath());
    return false;
  }
  trust_->SetIdentity(key, cert);
  node_cert_not_after_ = not_after.value();
  node_cert_issued_ = NowS();
  LOG_INFO("agent: node certificate {} from {}, valid until {}", id.value(), NodeCertPath(),
           not_after.value());
  return true;
}

Status Agent::RequestNodeIdentity(bool join) {
  auto key = identity::NewKey();
  if (!key.ok()) return key.status();
  // The CA decides what the certificate names; the CSR only carries the key.
  auto csr = identity::NewCsr(key.value(), "spiffe://weft/ns/weft/node/" + opts_.node);
  if (!csr.ok()) return csr.status();
  std::vector<std::pair<std::string, std::string>> md;
  if (join) md.emplace_back("x-weft-join-token", opts_.join_token);
  xds::SignClient client(opts_.servers, md, trust_);
  pb::SignRequest req;
  req.set_csr_pem(csr.value());
  req.set_node(opts_.node);
  req.set_node_identity(true);
  auto resp = client.Sign(req);
  if (!resp.ok()) return resp.status();
  if (Status s = WriteFileAtomic(NodeKeyPath(), key.value(), 0600); !s.ok()) return s;
  if (Status s = WriteFileAtomic(NodeCertPath(), resp->cert_chain_pem(), 0600); !s.ok()) return s;
  trust_->SetIdentity(key.value(), resp->cert_chain_pem());
  node_cert_not_after_ = resp->not_after_unix();
  node_cert_issued_ = NowS();
  LOG_INFO("agent: {} node certificate {} (serial {}), valid until {}",
           join ? "joined with the join token:" : "renewed the", resp->spiffe_id(),
           identity::SerialHex(resp->cert_chain_pem()), resp->not_after_unix());
  return {};
}

void Agent::IdentityLoop() {
  int64_t backoff_s = 1;
  bool told = false;
  for (;;) {
    const int64_t now = NowS();
    const bool have = trust_->has_identity() && node_cert_not_after_ > now + 60;
    Status st;
    if (have) {
      // Renew after two thirds of the certificate's life.
      const int64_t renew_at =
          node_cert_issued_ + (node_cert_not_after_ - node_cert_issued_) * 2 / 3;
      if (now < renew_at) {
        std::this_thread::sleep_for(std::chrono::seconds(std::min<int64_t>(renew_at - now, 60)));
        continue;
      }
      st = RequestNodeIdentity(false);
    } else if (opts_.join_token.empty()) {
      if (!told)
        LOG_WARN(
            "agent: no node certificate in {} and no join token: servers run without --dev "
            "refuse this agent; give one with --join-token-file FILE (the server writes "
            "DATA_DIR/join-token; `weft acl join-token create` makes more)",
            opts_.data_dir);
      told = true;
      std::this_thread::sleep_for(std::chrono::seconds(5));
      continue;
    } else {
      st = RequestNodeIdentity(true);
    }
    if (st.ok()) {
      backoff_s = 1;
      asio::post(io_, [this] { StartLinks(); });
      continue;
    }
    LOG_WARN("agent: node certificate {}: {} (again in {}s)", have ? "renewal" : "join",
             st.message(), backoff_s);
    std::this_thread::sleep_for(std::chrono::seconds(backoff_s));
    backoff_s = std::min<int64_t>(backoff_s * 2, 30);
  }
}

void Agent::StartLinks() {
  if (links_started_) return;
  links_started_ = true;
  StartStream();
  sync_thread_ = std::thread([this] { SyncLoop(); });
  MarkDirty();  // tell the servers what this node runs
}

}  // namespace weft::agent
