#include "control/ca_server.h"

#include <nlohmann/json.hpp>

#include "base/file.h"
#include "base/log.h"
#include "base/strings.h"
#include "base/time.h"
#include "control/compiler.h"
#include "control/join_token.h"
#include "mesh/catalog.h"

namespace weft::control {

namespace {

using nlohmann::json;

int64_t NowS() { return WallMicros() / 1000000; }

constexpr int64_t kDefaultPropagateS = 30;
constexpr int64_t kDefaultOverlapS = 3600;
constexpr int64_t kMaxPropagateS = 24 * 3600;
constexpr int64_t kMaxOverlapS = 30 * 24 * 3600;

}  // namespace

Result<std::string> EnsureCaState(store::Store* st, const CaOptions& opts) {
  if (auto id = identity::SpiffeId(opts.trust_domain, "default", "x"); !id.ok())
    return Status(StatusCode::kInvalidArgument, "--trust-domain: " + id.status().message());
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto cur = st->Get(kCaKey);
    if (!cur.ok() && cur.status().code() != StatusCode::kNotFound) return cur.status();
    if (cur.ok()) {
      auto had = CaState::Parse(cur->value, opts.kek);
      if (!had.ok())
        return Status(StatusCode::kInternal, "ca/root in the store: " + had.status().message());
      if (had->plaintext_keys && !opts.kek.empty()) {
        // Written by an earlier version with the keys in the clear: encrypt
        // them, and remove the clear copies from the store's history.
        const std::string doc = had->ToJson(opts.kek);
        auto w = st->PutIf(kCaKey, doc, cur->mod_revision);
        if (!w.ok()) continue;  // changed meanwhile: read again
        auto scrubbed = st->ScrubHistory(kCaKey);
        LOG_WARN(
            "the CA's keys were stored in the clear: now encrypted with the key-encryption "
            "key{}",
            scrubbed.ok() && scrubbed.value()
                ? "; the clear copies are gone from the store's history"
                : " (the store keeps its own history: compact it to drop the clear copies)");
        if (opts.cert_pem.empty()) return doc;
        cur = st->Get(kCaKey);
        if (!cur.ok()) return cur.status();
      }
    }
    if (cur.ok() && opts.cert_pem.empty()) {
      auto s = CaState::Parse(cur->value, opts.kek);
      if (!s.ok())
        return Status(StatusCode::kInternal, "ca/root in the store: " + s.status().message());
      if (s->trust_domain != opts.trust_domain)
        LOG_WARN("the stored CA serves trust domain {}, not --trust-domain {}: keeping {}",
                 s->trust_domain, opts.trust_domain, s->trust_domain);
      return cur->value;
    }
    CaState s;
    s.trust_domain = opts.trust_domain;
    CaRoot root;
    if (!opts.cert_pem.empty()) {
      // The operator's root: kept as is when it is already the signing one.
      if (cur.ok()) {
        auto had = CaState::Parse(cur->value, opts.kek);
        const CaRoot* signing = had.ok() ? had->Signing(NowS()) : nullptr;
        if (signing && signing->cert_pem == opts.cert_pem) return cur->value;
      }
      if (Status v = identity::ValidateRoot(opts.cert_pem); !v.ok())
        return Status(StatusCode::kInvalidArgument, "--ca-cert: " + v.message());
      auto ca = identity::Authority::Load(opts.cert_pem, opts.key_pem, opts.trust_domain);
      if (!ca.ok()) return ca.status();
      root.cert_pem = opts.cert_pem;
      root.key_pem = opts.key_pem;
    } else {
      auto made = identity::NewRoot(opts.trust_domain);
      if (!made.ok()) return made.status();
      root.cert_pem = made->cert_pem;
      root.key_pem = made->key_pem;
    }
    s.roots.push_back(std::move(root));
    const std::string doc = s.ToJson(opts.kek);
    auto w = st->PutIf(kCaKey, doc, cur.ok() ? cur->mod_revision : 0);
    if (w.ok()) {
      LOG_INFO("{} the mesh CA root for trust domain {}",
               opts.cert_pem.empty() ? "created" : "installed the operator's", opts.trust_domain);
      return doc;
    }
  }
  return Status(StatusCode::kUnavailable, "could not create or read the CA root");
}

Result<ServerCert> IssueServerCert(const CaState& state, const std::string& key_pem, int64_t now) {
  const CaRoot* signing = state.Signing(now);
  if (!signing) return Status(StatusCode::kUnavailable, "no root signs now");
  auto auth = identity::Authority::Load(signing->cert_pem, signing->key_pem, state.trust_domain);
  if (!auth.ok()) return auth.status();
  auto id = identity::SpiffeId(state.trust_domain, "weft", "server");
  if (!id.ok()) return id.status();
  auto csr = identity::NewCsr(key_pem, id.value());
  if (!csr.ok()) return csr.status();
  auto cert =
      auth.value()->Sign(csr.value(), id.value(), kServerCertTtlS, {identity::kServerTlsName});
  if (!cert.ok()) return cert.status();
  ServerCert out;
  out.chain_pem = cert.value() + signing->cert_pem;
  out.issuer_id = signing->id;
  out.renew_at = now + kServerCertTtlS * 2 / 3;
  return out;
}

CaServer::CaServer(asio::io_context& io, Api& api, StreamServer& stream, const CaOptions& opts)
    : io_(io), api_(api), stream_(stream), opts_(opts), timer_(io) {}

Status CaServer::Start(const std::string& doc) {
  if (Status s = Load(doc); !s.ok()) return s;
  api_.OnKey(std::string(kCaKey), [this](const std::string* value) {
    if (!value) return;
    if (Status s = Load(*value); !s.ok()) LOG_ERROR("CA state not applied: {}", s.message());
  });
  api_.AddRoute("/v1/connect/ca/rotate", [this](http::Request& r) { return Rotate(r); });
  Tick();
  return {};
}

Status CaServer::Load(const std::string& doc) {
  auto s = CaState::Parse(doc, opts_.kek);
  if (!s.ok()) return s.status();
  state_ = std::move(s).value();
  Refresh();
  return {};
}

void CaServer::Tick() {
  Refresh();
  timer_.expires_after(std::chrono::seconds(1));
  timer_.async_wait([this](const asio::error_code& ec) {
    if (!ec) Tick();
  });
}

void CaServer::KeepServerCert(std::string key_pem, ServerCert first,
                              std::function<void(const ServerCert&)> renewed) {
  server_key_pem_ = std::move(key_pem);
  server_cert_ = std::move(first);
  server_cert_renewed_ = std::move(renewed);
}

void CaServer::RenewServerCert(int64_t now) {
  if (!server_cert_renewed_ || now < server_cert_retry_at_) return;
  if (server_cert_.issuer_id == signer_id_ && now < server_cert_.renew_at) return;
  auto next = IssueServerCert(state_, server_key_pem_, now);
  if (!next.ok()) {
    server_cert_retry_at_ = now + 60;
    LOG_ERROR("CA: the server's own certificate was not renewed (next try in 60 s): {}",
              next.status().message());
    return;
  }
  LOG_INFO("CA: the server's own certificate ({}) renewed, signed by root {}{}",
           identity::kServerTlsName, next->issuer_id,
           server_cert_.issuer_id != next->issuer_id ? " (a new root signs)" : "");
  server_cert_ = std::move(next).value();
  server_cert_renewed_(server_cert_);
}

void CaServer::WriteBundleTo(std::string path) {
  bundle_path_ = std::move(path);
  WriteBundle(NowS());
}

void CaServer::WriteBundle(int64_t now) {
  if (bundle_path_.empty()) return;
  std::string pem;
  for (const CaRoot* r : state_.Trusted(now)) pem += r->cert_pem;
  // Public (the roots only): readable by every local agent and proxy.
  if (Status s = WriteFileAtomic(bundle_path_, pem, 0644); !s.ok())
    LOG_ERROR("CA: trust bundle not written to {}: {}", bundle_path_, s.message());
}

void CaServer::Refresh() {
  const int64_t now = NowS();
  if (!dropping_)
    for (const auto& r : state_.roots)
      if (r.retire_at != 0 && r.retire_at <= now) {
        dropping_ = true;
        asio::co_spawn(io_, DropRetired(), asio::detached);
        break;
      }
  const CaRoot* signing = state_.Signing(now);
  if (signing && signing->id != signer_id_) {
    auto ca = identity::Authority::Load(signing->cert_pem, signing->key_pem, state_.trust_domain);
    if (!ca.ok()) {
      LOG_ERROR("CA root {} cannot sign: {}", signing->id, ca.status().message());
    } else {
      if (!signer_id_.empty())
        LOG_INFO("CA: root {} signs workload certificates from now on", signing->id);
      signer_ = std::move(ca).value();
      signer_id_ = signing->id;
    }
  }
  RenewServerCert(now);
  std::string ids = signer_id_;
  for (const CaRoot* r : state_.Trusted(now)) ids += "," + r->id;
  if (ids == bundle_ids_) return;
  bundle_ids_ = ids;
  WriteBundle(now);
  weft::v1::Resource b;
  b.set_type("bundle");
  b.set_name("roots");
  b.mutable_bundle()->set_trust_domain(state_.trust_domain);
  b.mutable_bundle()->set_active_root_id(signer_id_);
  json roots = json::array();
  for (const CaRoot* r : state_.Trusted(now)) {
    b.mutable_bundle()->add_roots_pem(r->cert_pem);
    roots.push_back({{"ID", r->id},
                     {"Name", "weft root " + state_.trust_domain},
                     {"RootCert", r->cert_pem},
                     {"Active", r->id == signer_id_},
                     {"ActivateAt", r->activate_at},
                     {"RetireAt", r->retire_at},
                     {"TrustDomain", state_.trust_domain}});
  }
  b.set_version(ResourceVersion(b));
  LOG_INFO("CA: trust bundle has {} root(s), {} signs", roots.size(), signer_id_);
  stream_.SetBundle(std::make_shared<const weft::v1::Resource>(std::move(b)));
  api_.SetCaRoots(
      {{"ActiveRootID", signer_id_}, {"TrustDomain", state_.trust_domain}, {"Roots", roots}});
}

Status CaServer::Sign(const Caller& caller, const weft::v1::SignRequest& req,
                      weft::v1::SignResponse* resp) {
  if (!signer_) return Status(StatusCode::kUnavailable, "no CA root can sign");
  if (req.node_identity()) return SignNode(caller, req, resp);
  const std::string ns = req.namespace_().empty() ? "default" : req.namespace_();
  if (ns == "weft")
    return Status(StatusCode::kInvalidArgument,
                  "namespace weft is reserved for the mesh's own identities");
  auto id = identity::SpiffeId(state_.trust_domain, ns, req.service());
  if (!id.ok()) return id.status();
  // Who may hold this identity: an agent (its node certificate) only for
  // services on its node; a proxy without an agent only for its own
  // service, when that has a sidecar registration and its token has
  // service:write on it.
  std::string node = req.node();
  if (!caller.node.empty()) {
    if (!node.empty() && node != caller.node)
      return Status(StatusCode::kPermissionDenied, "this certificate is node \"" + caller.node +
                                                       "\"'s: it may not act for node \"" + node +
                                                       "\"");
    node = caller.node;
  } else if (!caller.open) {
    if (!node.empty())
      return Status(StatusCode::kPermissionDenied,
                    "naming a node needs that node's certificate (agents join with a join token)");
    const acl::AclState& acls = api_.acl_state();
    const acl::Token* t = acls.TokenBySecret(caller.acl_token);
    if (!t) return Status(StatusCode::kPermissionDenied, "ACL not found");
    if (std::string why =
            acls.AuthzFor(t).Denied(acl::Resource::kService, req.service(), acl::Access::kWrite);
        !why.empty())
      return Status(StatusCode::kPermissionDenied, why);
  }
  const mesh::CatalogView& cat = api_.catalog();
  bool allowed = false;
  if (!node.empty()) {
    if (const mesh::Node* n = cat.FindNode(node)) {
      for (const auto& [sid, inst] : n->services) {
        if (inst.ns != ns) continue;
        allowed |= inst.service == req.service() ||
                   (inst.proxy && inst.proxy->destination_service_name == req.service());
      }
    }
    if (!allowed)
      return Status(StatusCode::kPermissionDenied,
                    "service " + ns + "/" + req.service() + " is not registered on node " + node);
  } else {
    for (const auto& p : cat.ProxiesFor(req.service())) allowed |= p.instance->ns == ns;
    if (!allowed)
      return Status(StatusCode::kPermissionDenied,
                    "service " + ns + "/" + req.service() + " has no sidecar registration");
  }
  auto cert = signer_->Sign(req.csr_pem(), id.value(), opts_.cert_ttl_s);
  if (!cert.ok()) return cert.status();
  return Issued(caller, node, id.value(), cert.value(), resp);
}

Status CaServer::SignNode(const Caller& caller, const weft::v1::SignRequest& req,
                          weft::v1::SignResponse* resp) {
  const std::string& node = req.node();
  if (!mesh::ValidName(node))
    return Status(StatusCode::kInvalidArgument, "node \"" + node + "\": not a node name");
  auto id = identity::NodeSpiffeId(state_.trust_domain, node);
  if (!id.ok()) return id.status();
  if (!caller.open) {
    if (!caller.node.empty() && caller.node != node) {
      return Status(StatusCode::kPermissionDenied, "this certificate is node \"" + caller.node +
                                                       "\"'s, not node \"" + node + "\"'s");
    }
    if (caller.node.empty() && !caller.join_token_ok)
      return Status(StatusCode::kPermissionDenied, "joining needs a join token");
    // A join (not a renewal) for a node whose agent is connected: a second
    // agent claiming it. Refused; the first keeps the node.
    const mesh::CatalogView& cat = api_.catalog();
    if (caller.node.empty() && !cat.FindNode(node) && cat.nodes().size() >= api_.limits().max_nodes)
      return Status(StatusCode::kFailedPrecondition, "the catalog holds its maximum of " +
                                                         std::to_string(api_.limits().max_nodes) +
                                                         " nodes (--max-nodes)");
    if (caller.node.empty() && stream_.AgentConnected(node))
      return Status(StatusCode::kFailedPrecondition,
                    "node \"" + node +
                        "\" is held by an agent connected now: stop it, or pick another --node");
  }
  auto cert = signer_->Sign(req.csr_pem(), id.value(), join::kNodeCertTtlS);
  if (!cert.ok()) return cert.status();
  return Issued(caller, node, id.value(), cert.value(), resp);
}

Status CaServer::Issued(const Caller& caller, const std::string& node, const std::string& id,
                        const std::string& cert, weft::v1::SignResponse* resp) {
  auto not_after = identity::NotAfterUnix(cert);
  resp->set_cert_chain_pem(cert);
  resp->set_spiffe_id(id);
  resp->set_not_after_unix(not_after.ok() ? not_after.value() : 0);
  resp->set_root_id(signer_id_);
  LOG_INFO("certificate issued: {} node \"{}\" peer {} serial {} until {}{}", id, node, caller.peer,
           identity::SerialHex(cert), resp->not_after_unix(),
           caller.join_token_ok ? " (joined with a join token)" : "");
  return {};
}

asio::awaitable<void> CaServer::DropRetired() {
  store::Store* st = api_.store();
  const std::string kek = opts_.kek;
  int dropped = 0;
  bool scrubbed = false;
  const std::function<Result<int64_t>()> work = [&]() -> Result<int64_t> {
    for (int attempt = 0; attempt < 5; ++attempt) {
      auto cur = st->Get(kCaKey);
      if (!cur.ok()) return cur.status();
      auto parsed = CaState::Parse(cur->value, kek);
      if (!parsed.ok()) return parsed.status();
      CaState s = std::move(parsed).value();
      const size_t before = s.roots.size();
      if (!s.DropRetired(NowS()) || s.roots.empty()) return int64_t{0};
      auto w = st->PutIf(kCaKey, s.ToJson(kek), cur->mod_revision);
      if (w.ok()) {
        dropped = static_cast<int>(before - s.roots.size());
        auto sc = st->ScrubHistory(kCaKey);
        scrubbed = sc.ok() && sc.value();
        return w;
      }
      if (w.status().code() != StatusCode::kFailedPrecondition) return w.status();
    }
    return Status(StatusCode::kUnavailable, "the CA state kept changing");
  };
  Status s = co_await api_.RunWrite(work);
  if (!s.ok()) LOG_WARN("CA: retired roots not removed yet: {}", s.message());
  if (dropped > 0)
    LOG_INFO("CA: {} retired root(s) and their keys removed from the store{}", dropped,
             scrubbed ? " and its history" : " (the store keeps its history until it compacts)");
  // The write comes back through the watch (Load); until then, and after a
  // failure, wait a while before trying again.
  asio::steady_timer t(io_, std::chrono::seconds(s.ok() ? 2 : 30));
  co_await t.async_wait(asio::use_awaitable);
  dropping_ = false;
}

asio::awaitable<http::Response> CaServer::Rotate(http::Request& req) {
  if (req.method != "PUT" && req.method != "POST")
    co_return http::Response::Text(405, "use PUT /v1/connect/ca/rotate");
  auto seconds = [&](std::string_view name, int64_t def, int64_t lo, int64_t hi,
                     int64_t* out) -> std::string {
    const std::string* v = req.Query(name);
    if (!v) {
      *out = def;
      return "";
    }
    auto ms = ParseDurationMs(*v);
    if (!ms || *ms / 1000 < lo || *ms / 1000 > hi)
      return std::string(name) + " \"" + *v + "\": use a duration from " + std::to_string(lo) +
             "s to " + std::to_string(hi) + "s";
    *out = *ms / 1000;
    return "";
  };
  int64_t propagate = 0, overlap = 0;
  std::string bad = seconds("propagate", kDefaultPropagateS, 0, kMaxPropagateS, &propagate);
  if (bad.empty()) bad = seconds("overlap", kDefaultOverlapS, 1, kMaxOverlapS, &overlap);
  if (!bad.empty()) co_return http::Response::Text(400, bad);
  // The next root: the operator's (RootCert and Key in the body), or a new one.
  CaRoot next;
  if (!req.body.empty()) {
    json j = json::parse(req.body, nullptr, false);
    if (!j.is_object() || !j.contains("RootCert") || !j["RootCert"].is_string() ||
        !j.contains("Key") || !j["Key"].is_string())
      co_return http::Response::Text(400, "body: expected {\"RootCert\": PEM, \"Key\": PEM}");
    next.cert_pem = j["RootCert"].get<std::string>();
    next.key_pem = j["Key"].get<std::string>();
    if (Status v = identity::ValidateRoot(next.cert_pem); !v.ok())
      co_return http::Response::Text(400, "RootCert: " + v.message());
    auto ca = identity::Authority::Load(next.cert_pem, next.key_pem, state_.trust_domain);
    if (!ca.ok()) co_return http::Response::Text(400, "RootCert/Key: " + ca.status().message());
  } else {
    auto made = identity::NewRoot(state_.trust_domain);
    if (!made.ok()) co_return http::Response::Text(500, made.status().message());
    next.cert_pem = made->cert_pem;
    next.key_pem = made->key_pem;
  }
  auto fp = identity::Fingerprint(next.cert_pem);
  if (!fp.ok()) co_return http::Response::Text(400, fp.status().message());
  next.id = fp.value();
  store::Store* st = api_.store();
  std::string result;
  const std::function<Result<int64_t>()> work = [&]() -> Result<int64_t> {
    for (int attempt = 0; attempt < 5; ++attempt) {
      auto cur = st->Get(kCaKey);
      if (!cur.ok()) return cur.status();
      auto s = CaState::Parse(cur->value, opts_.kek);
      if (!s.ok()) return s.status();
      for (const auto& r : s->roots)
        if (r.id == next.id)
          return Status(StatusCode::kInvalidArgument, "that root is already in use");
      CaState rotated = std::move(s).value();
      const int64_t now = NowS();
      rotated.Rotate(next, now, propagate, overlap);
      auto w = st->PutIf(kCaKey, rotated.ToJson(opts_.kek), cur->mod_revision);
      if (w.ok()) {
        json out = {{"NextRootID", next.id},
                    {"ActivateAt", now + propagate},
                    {"RetireAt", now + propagate + overlap}};
        result = out.dump();
        return w;
      }
      if (w.status().code() != StatusCode::kFailedPrecondition) return w.status();
    }
    return Status(StatusCode::kUnavailable, "the CA state kept changing; try again");
  };
  Status s = co_await api_.RunWrite(work);
  if (!s.ok())
    co_return http::Response::Text(s.code() == StatusCode::kInvalidArgument ? 400 : 503,
                                   "ca rotate: " + s.message());
  LOG_INFO("CA rotation: {}", result);
  co_return http::Response::Json(200, result);
}

}  // namespace weft::control
