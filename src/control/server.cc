#include "control/server.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <asio/experimental/as_tuple.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>

#include "base/log.h"
#include "base/random.h"
#include "base/strings.h"
#include "control/api.h"
#include "control/store/open.h"
#include "control/stream_server.h"
#include "http/server.h"
#include "identity/ca.h"

namespace weft::control {

namespace {

// The cluster's join token: read from the store, or created there once.
Result<std::string> EnsureJoinToken(store::Store* st) {
  constexpr std::string_view kKey = "cluster/join-token";
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto cur = st->Get(kKey);
    if (cur.ok()) return cur->value;
    if (cur.status().code() != StatusCode::kNotFound) return cur.status();
    std::random_device rd;
    std::string token;
    static constexpr char kHex[] = "0123456789abcdef";
    for (int i = 0; i < 32; ++i) token.push_back(kHex[rd() & 15]);
    auto w = st->PutIf(kKey, token, 0);
    if (w.ok()) return token;  // else another replica won: read theirs
  }
  return Status(StatusCode::kUnavailable, "could not create or read the join token");
}

std::string ReadFile(const std::string& path, std::string* err) {
  std::ifstream in(path);
  if (!in) {
    *err = path + ": " + strerror(errno);
    return "";
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The mesh's CA root: the operator's (--ca-cert/--ca-key), else one made on
// first start. Kept in the store, so every replica serves the same trust
// domain and a restart keeps it.
Result<nlohmann::json> EnsureCa(store::Store* st, const ServerOptions& opts) {
  constexpr std::string_view kKey = "ca/root";
  if (auto id = identity::SpiffeId(opts.trust_domain, "default", "x"); !id.ok())
    return Status(StatusCode::kInvalidArgument, "--trust-domain: " + id.status().message());
  if (!opts.ca_cert_file.empty() || !opts.ca_key_file.empty()) {
    if (opts.ca_cert_file.empty() || opts.ca_key_file.empty())
      return Status(StatusCode::kInvalidArgument, "--ca-cert and --ca-key go together");
    std::string err;
    const std::string cert = ReadFile(opts.ca_cert_file, &err);
    if (!err.empty()) return Status(StatusCode::kInvalidArgument, "--ca-cert " + err);
    const std::string key = ReadFile(opts.ca_key_file, &err);
    if (!err.empty()) return Status(StatusCode::kInvalidArgument, "--ca-key " + err);
    auto ca = identity::Authority::Load(cert, key, opts.trust_domain);
    if (!ca.ok()) return ca.status();
    nlohmann::json j = {{"TrustDomain", opts.trust_domain}, {"RootCert", cert}, {"Key", key}};
    auto w = st->Put(kKey, j.dump());
    if (!w.ok()) return w.status();
    return j;
  }
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto cur = st->Get(kKey);
    if (cur.ok()) {
      auto j = nlohmann::json::parse(cur->value, nullptr, false);
      if (!j.is_object())
        return Status(StatusCode::kInternal, "ca/root in the store is unreadable");
      return j;
    }
    if (cur.status().code() != StatusCode::kNotFound) return cur.status();
    auto root = identity::NewRoot(opts.trust_domain);
    if (!root.ok()) return root.status();
    nlohmann::json j = {
        {"TrustDomain", opts.trust_domain}, {"RootCert", root->cert_pem}, {"Key", root->key_pem}};
    if (st->PutIf(kKey, j.dump(), 0).ok()) {
      LOG_INFO("created the mesh CA root for trust domain {}", opts.trust_domain);
      return j;
    }
  }
  return Status(StatusCode::kUnavailable, "could not create or read the CA root");
}

}  // namespace

int RunServer(const ServerOptions& in) {
  ServerOptions opts = in;
  if (opts.name.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    opts.name = std::string(host) + "-" + std::to_string(getpid());
  }
  std::string tmp_dir;
  if (opts.store.empty() && opts.data_dir.empty()) {
    if (!opts.dev) {
      std::fprintf(stderr,
                   "weft server: --data-dir DIR is required (or --store etcd://..., or --dev for a "
                   "throwaway store)\n");
      return 2;
    }
    char tmpl[] = "/tmp/weft-dev-XXXXXX";
    if (!mkdtemp(tmpl)) {
      std::fprintf(stderr, "weft server: cannot create a temporary data dir: %s\n",
                   strerror(errno));
      return 1;
    }
    opts.data_dir = tmp_dir = tmpl;
  }
  auto st = store::OpenStore(opts.store, opts.data_dir);
  if (!st.ok()) {
    std::fprintf(stderr, "weft server: %s\n", st.status().message().c_str());
    return 1;
  }
  std::signal(SIGPIPE, SIG_IGN);
  asio::io_context io(1);
  ApiOptions api_opts;
  api_opts.name = opts.name;
  api_opts.max_wait_ms = opts.max_wait_ms;
  api_opts.max_blocking_queries = opts.max_blocking_queries;
  Api api(io, std::move(st).value(), api_opts);
  if (Status s = api.Start(); !s.ok()) {
    std::fprintf(stderr, "weft server: %s\n", s.message().c_str());
    return 1;
  }
  http::ServerOptions hopts;
  hopts.name = "http api";
  hopts.max_body_bytes = opts.max_body_bytes;
  hopts.max_connections = opts.max_connections;
  hopts.header_read_timeout_ms = opts.header_read_timeout_ms;
  http::Server http(
      io, [&api](http::Request& r) { return api.Handle(r); }, hopts);
  if (Status s = http.Listen(opts.http_addr); !s.ok()) {
    std::fprintf(stderr, "weft server: %s\n", s.message().c_str());
    return 1;
  }
  // Agents join with a token: given, or made once and kept in the store (so
  // every replica shares it) and in DATA_DIR/join-token for operators.
  StreamOptions sopts;
  if (!opts.dev) {
    std::string token = opts.join_token;
    if (token.empty()) {
      auto t = EnsureJoinToken(api.store());
      if (!t.ok()) {
        std::fprintf(stderr, "weft server: join token: %s\n", t.status().message().c_str());
        return 1;
      }
      token = t.value();
    }
    sopts.join_token = token;
    if (!opts.data_dir.empty()) {
      const std::string path = opts.data_dir + "/join-token";
      int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd >= 0) {
        (void)!::write(fd, token.data(), token.size());
        ::close(fd);
        LOG_INFO("agents join with the token in {}", path);
      }
    }
  }
  auto ca = EnsureCa(api.store(), opts);
  if (!ca.ok()) {
    std::fprintf(stderr, "weft server: CA: %s\n", ca.status().message().c_str());
    return 1;
  }
  {
    const std::string root = ca.value()["RootCert"].get<std::string>();
    auto fp = identity::Fingerprint(root);
    api.SetCaRoots(
        {{"ActiveRootID", fp.ok() ? fp.value() : ""},
         {"TrustDomain", ca.value()["TrustDomain"]},
         {"Roots", nlohmann::json::array(
                       {{{"ID", fp.ok() ? fp.value() : ""},
                         {"Name", "weft root " + ca.value()["TrustDomain"].get<std::string>()},
                         {"RootCert", root},
                         {"Active", true},
                         {"TrustDomain", ca.value()["TrustDomain"]}}})}});
  }
  // The signing side of the CA, and the trust bundle every client gets.
  const std::string trust_domain = ca.value()["TrustDomain"].get<std::string>();
  const std::string root_pem = ca.value()["RootCert"].get<std::string>();
  auto authority = identity::Authority::Load(root_pem, ca.value()["Key"].get<std::string>(),
                                             trust_domain);
  if (!authority.ok()) {
    std::fprintf(stderr, "weft server: CA: %s\n", authority.status().message().c_str());
    return 1;
  }
  const std::string root_id = identity::Fingerprint(root_pem).value();
  const int64_t cert_ttl_s = opts.cert_ttl_s;
  sopts.sign = [&api, &authority, trust_domain, root_id, cert_ttl_s](
                   const weft::v1::SignRequest& req, weft::v1::SignResponse* resp) -> Status {
    const std::string ns = req.namespace_().empty() ? "default" : req.namespace_();
    auto id = identity::SpiffeId(trust_domain, ns, req.service());
    if (!id.ok()) return id.status();
    // Who may hold this identity: an agent only for services on its node;
    // a proxy without an agent only for a service that has a sidecar.
    const CatalogView& cat = api.catalog();
    bool allowed = false;
    if (!req.node().empty()) {
      const Node* node = cat.FindNode(req.node());
      if (node) {
        for (const auto& [sid, inst] : node->services) {
          if (inst.ns != ns) continue;
          if (inst.service == req.service() ||
              (inst.proxy && inst.proxy->destination_service_name == req.service()))
            allowed = true;
        }
      }
      if (!allowed)
        return Status(StatusCode::kPermissionDenied, "service " + ns + "/" + req.service() +
                                                         " is not registered on node " +
                                                         req.node());
    } else {
      for (const auto& p : cat.ProxiesFor(req.service())) allowed |= p.instance->ns == ns;
      if (!allowed)
        return Status(StatusCode::kPermissionDenied,
                      "service " + ns + "/" + req.service() + " has no sidecar registration");
    }
    auto cert = authority.value()->Sign(req.csr_pem(), id.value(), cert_ttl_s);
    if (!cert.ok()) return cert.status();
    auto not_after = identity::NotAfterUnix(cert.value());
    resp->set_cert_chain_pem(cert.value());
    resp->set_spiffe_id(id.value());
    resp->set_not_after_unix(not_after.ok() ? not_after.value() : 0);
    resp->set_root_id(root_id);
    return {};
  };
  StreamServer stream(io, api, sopts);
  {
    weft::v1::Resource b;
    b.set_type("bundle");
    b.set_name("roots");
    b.mutable_bundle()->set_trust_domain(trust_domain);
    b.mutable_bundle()->add_roots_pem(root_pem);
    b.mutable_bundle()->set_active_root_id(root_id);
    b.set_version(ResourceVersion(b));
    stream.SetBundle(std::make_shared<const weft::v1::Resource>(std::move(b)));
  }
  if (Status s = stream.Start(opts.grpc_addr); !s.ok()) {
    std::fprintf(stderr, "weft server: %s\n", s.message().c_str());
    return 1;
  }
  api.AddMetricsSource([&stream] { return stream.Metrics(); });
  api.SetAddresses(http.bound(), stream.bound());
  asio::co_spawn(io, api.RunMembership(), asio::detached);
  std::printf("weft server listening http=%s grpc=%s store=%s\n", http.bound().c_str(),
              stream.bound().c_str(),
              opts.store.empty() ? ("sqlite:" + opts.data_dir).c_str() : opts.store.c_str());
  std::fflush(stdout);
  LOG_INFO("server {} up: http {}, store {}", opts.name, http.bound(),
           opts.store.empty() ? opts.data_dir : opts.store);

  asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const asio::error_code& ec, int sig) {
    if (ec) return;
    LOG_INFO("{}: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    http.Close();
    stream.Stop();
    api.Stop();
    io.stop();
  });
  io.run();
  if (!tmp_dir.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(tmp_dir, ec);
  }
  std::fflush(nullptr);
  std::_Exit(0);
}

}  // namespace weft::control
