#include "control/server.h"

#include <fcntl.h>
#include <openssl/ssl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <asio/experimental/as_tuple.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>

#include "base/file.h"
#include "base/log.h"
#include "base/random.h"
#include "base/strings.h"
#include "control/api.h"
#include "control/ca_server.h"
#include "control/ca_state.h"
#include "control/join_token.h"
#include "control/store/open.h"
#include "control/stream_server.h"
#include "http/server.h"
#include "identity/ca.h"

namespace weft::control {

namespace {
// Written once, when the first join token is made.
constexpr std::string_view kJoinBootstrapKey = "acl/join-bootstrap";
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
  // Everything this process creates is its owner's alone (the database
  // holds the CA's key); the one public file, ca.pem, sets its own mode.
  ::umask(077);
  if (!opts.data_dir.empty()) {
    std::vector<std::string> fixed;
    if (Status s = SecureDataDir(opts.data_dir, {"ca.pem"}, &fixed); !s.ok()) {
      std::fprintf(stderr, "weft server: --data-dir: %s\n", s.message().c_str());
      return 1;
    }
    for (const auto& f : fixed)
      LOG_WARN(
          "{}: readable by others; now for its owner only (0700 for the directory, 0600 for files)",
          f);
  }
  const bool acl_on = !opts.dev;
  std::string preset_secret;
  if (acl_on && !opts.acl_bootstrap_token_file.empty()) {
    std::string err;
    preset_secret = std::string(TrimSpace(ReadWholeFile(opts.acl_bootstrap_token_file, &err)));
    if (!err.empty() || preset_secret.size() < 16) {
      std::fprintf(stderr, "weft server: --acl-bootstrap-token-file: %s\n",
                   err.empty() ? "the secret must be at least 16 characters" : err.c_str());
      return 2;
    }
  } else if (acl_on && opts.data_dir.empty()) {
    std::fprintf(stderr,
                 "weft server: ACLs need a place for the bootstrap token: --data-dir DIR (it goes "
                 "to DIR/bootstrap-token) or --acl-bootstrap-token-file FILE\n");
    return 2;
  }
  store::EtcdAccess etcd{opts.etcd_ca_file, opts.etcd_cert_file, opts.etcd_key_file, opts.etcd_user,
                         opts.etcd_password_file};
  auto st = store::OpenStore(opts.store, opts.data_dir, etcd);
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
  api_opts.max_blocking_queries_per_client = opts.max_blocking_queries_per_client;
  api_opts.limits.max_nodes = opts.max_nodes;
  api_opts.acl = acl_on;
  api_opts.allowed_hosts = opts.allowed_hosts;
  Api api(io, std::move(st).value(), api_opts);
  if (acl_on) {
    auto made = BootstrapAcl(api.store(), preset_secret);
    if (!made.ok()) {
      std::fprintf(stderr, "weft server: ACL bootstrap: %s\n", made.status().message().c_str());
      return 1;
    }
    if (!made->empty() && preset_secret.empty()) {
      const std::string path = opts.data_dir + "/bootstrap-token";
      if (Status s = WriteFileAtomic(path, made.value(), 0600); !s.ok()) {
        std::fprintf(stderr, "weft server: bootstrap token: %s\n", s.message().c_str());
        return 1;
      }
      LOG_WARN("ACLs on: the bootstrap management token is in {} (mode 0600); keep it safe", path);
    } else if (!made->empty()) {
      LOG_WARN("ACLs on: bootstrapped with the token from {}", opts.acl_bootstrap_token_file);
    } else {
      LOG_INFO(
          "ACLs on (bootstrapped before; the management token went to the bootstrap-token "
          "file then)");
    }
  }
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
  StreamOptions sopts;
  sopts.node_timeout_ms = opts.node_timeout_ms;
  sopts.max_streams = opts.max_streams;
  sopts.max_streams_per_peer = opts.max_streams_per_peer;
  sopts.authenticate = !opts.dev;
  if (!opts.dev) {
    // Agents join with a join token once, then prove their node with its
    // certificate. The store keeps hashes of join tokens only; the first
    // one is made on first start and written to DATA_DIR/join-token.
    auto moved = join::MigrateLegacy(api.store(), opts.join_token_ttl_s);
    if (!moved.ok()) {
      std::fprintf(stderr, "weft server: join token: %s\n", moved.status().message().c_str());
      return 1;
    }
    if (!moved->empty())
      LOG_WARN(
          "the join token stored in plaintext by an earlier version is now a hashed record, "
          "valid {}s from now",
          opts.join_token_ttl_s);
    std::string made;
    if (!opts.join_token.empty()) {
      if (opts.join_token.size() < 16) {
        std::fprintf(stderr, "weft server: the join token must be at least 16 characters\n");
        return 2;
      }
      auto t = join::Create(api.store(), opts.join_token_ttl_s, "the operator's, given at start",
                            opts.join_token);
      (void)api.store()->PutIf(kJoinBootstrapKey, "1", 0);
      if (!t.ok()) {
        std::fprintf(stderr, "weft server: join token: %s\n", t.status().message().c_str());
        return 1;
      }
    } else if (api.store()->PutIf(kJoinBootstrapKey, "1", 0).ok()) {
      auto t = join::Create(api.store(), opts.join_token_ttl_s, "made on first start");
      if (!t.ok()) {
        std::fprintf(stderr, "weft server: join token: %s\n", t.status().message().c_str());
        return 1;
      }
      made = t.value();
    }
    if (!made.empty() && !opts.data_dir.empty()) {
      const std::string path = opts.data_dir + "/join-token";
      if (Status s = WriteFileAtomic(path, made, 0600); !s.ok()) {
        std::fprintf(stderr, "weft server: join token: %s\n", s.message().c_str());
        return 1;
      }
      LOG_INFO(
          "agents join with the token in {} (mode 0600; it expires in {}s; more with `weft "
          "acl join-token create`)",
          path, opts.join_token_ttl_s);
    } else if (!made.empty()) {
      LOG_WARN(
          "a join token was made but there is no --data-dir to write it to: make one with "
          "`weft acl join-token create`");
    }
  }
  CaOptions ca_opts;
  ca_opts.trust_domain = opts.trust_domain;
  ca_opts.cert_ttl_s = opts.cert_ttl_s;
  if (!opts.ca_cert_file.empty() || !opts.ca_key_file.empty()) {
    if (opts.ca_cert_file.empty() || opts.ca_key_file.empty()) {
      std::fprintf(stderr, "weft server: --ca-cert and --ca-key go together\n");
      return 2;
    }
    std::string err;
    ca_opts.cert_pem = ReadWholeFile(opts.ca_cert_file, &err);
    if (err.empty()) ca_opts.key_pem = ReadWholeFile(opts.ca_key_file, &err);
    if (!err.empty()) {
      std::fprintf(stderr, "weft server: CA: %s\n", err.c_str());
      return 2;
    }
  }
  // The CA's keys are encrypted in the store with a key-encryption key:
  // the operator's (--ca-kek-file: every server sharing a store needs the
  // same one), or one made beside the database on first start.
  {
    std::string err;
    std::string path = opts.ca_kek_file;
    if (path.empty() && (api.store()->shared() || opts.data_dir.empty())) {
      std::fprintf(stderr,
                   "weft server: --ca-kek-file FILE is required with --store: every server "
                   "sharing the store must decrypt the CA's keys with the same key-encryption "
                   "key (at least %zu bytes; e.g. `openssl rand -hex 32 > FILE`, mode 0600)\n",
                   kMinKekBytes);
      return 2;
    }
    if (path.empty()) {
      path = opts.data_dir + "/ca-kek";
      if (::access(path.c_str(), F_OK) != 0) {
        unsigned char raw[32];
        std::random_device rd;
        for (auto& b : raw) b = static_cast<unsigned char>(rd());
        if (Status w = WriteFileAtomic(path, HexEncode(raw, sizeof(raw)), 0600); !w.ok()) {
          std::fprintf(stderr, "weft server: CA key-encryption key: %s\n", w.message().c_str());
          return 1;
        }
        LOG_INFO(
            "made the CA's key-encryption key {} (mode 0600; back it up with the database, "
            "or give --ca-kek-file)",
            path);
      }
    }
    ca_opts.kek = std::string(TrimSpace(ReadWholeFile(path, &err)));
    if (!err.empty() || ca_opts.kek.size() < kMinKekBytes) {
      std::fprintf(stderr, "weft server: CA key-encryption key %s: %s\n", path.c_str(),
                   err.empty() ? ("at least " + std::to_string(kMinKekBytes) + " bytes").c_str()
                               : err.c_str());
      return 2;
    }
    struct stat kst {};
    if (::stat(path.c_str(), &kst) == 0 && (kst.st_mode & 077) != 0)
      LOG_WARN("{}: the CA's key-encryption key is readable by others (mode {:o}): chmod 0600",
               path, kst.st_mode & 0777);
  }
  auto ca_doc = EnsureCaState(api.store(), ca_opts);
  if (!ca_doc.ok()) {
    std::fprintf(stderr, "weft server: CA: %s\n", ca_doc.status().message().c_str());
    return 1;
  }
  const bool grpc_tls = opts.grpc_tls || !opts.dev;
  std::string server_key;  // the server's own key: this run's, renewed certificates keep it
  ServerCert server_cert;  // from the mesh CA, for server.weft
  if (grpc_tls || !opts.https_addr.empty()) {
    // The config stream over TLS (always with a real store), and the REST
    // API over HTTPS (--https): this server's certificate from the mesh CA
    // (name server.weft), renewed while it runs (CaServer::KeepServerCert),
    // and the trust bundle in DATA_DIR/ca.pem for agents, proxies
    // (`--server-ca`) and the CLI (`--ca-file`).
    auto state = CaState::Parse(ca_doc.value(), ca_opts.kek);
    auto key = identity::NewKey();
    auto cert = !state.ok() ? Result<ServerCert>(state.status())
                : !key.ok() ? Result<ServerCert>(key.status())
                            : IssueServerCert(state.value(), key.value(),
                                              static_cast<int64_t>(std::time(nullptr)));
    if (!cert.ok()) {
      std::fprintf(stderr, "weft server: the server's certificate: %s\n",
                   cert.status().message().c_str());
      return 1;
    }
    server_key = key.value();
    server_cert = std::move(cert).value();
    if (grpc_tls) {
      // gRPC reads them from files it watches, so a renewed certificate is
      // taken without a restart (the key stays; only the chain changes).
      sopts.tls_key_file = opts.data_dir + "/server-key.pem";
      sopts.tls_cert_file = opts.data_dir + "/server-cert.pem";
      for (const auto& [path, pem] : {std::pair{sopts.tls_key_file, server_key},
                                      {sopts.tls_cert_file, server_cert.chain_pem}})
        if (Status s = WriteFileAtomic(path, pem, 0600); !s.ok()) {
          std::fprintf(stderr, "weft server: %s\n", s.message().c_str());
          return 1;
        }
    }
    LOG_INFO("config stream over TLS (name {}); agents verify it with {}/ca.pem",
             identity::kServerTlsName, opts.data_dir);
  }
  CaServer* ca_server = nullptr;  // set below; the stream server calls it on the io thread
  sopts.sign = [&ca_server](const Caller& caller, const weft::v1::SignRequest& req,
                            weft::v1::SignResponse* resp) {
    return ca_server ? ca_server->Sign(caller, req, resp)
                     : Status(StatusCode::kUnavailable, "the CA is starting");
  };
  StreamServer stream(io, api, sopts);
  CaServer ca(io, api, stream, ca_opts);
  if (Status st = ca.Start(ca_doc.value()); !st.ok()) {
    std::fprintf(stderr, "weft server: CA: %s\n", st.message().c_str());
    return 1;
  }
  ca_server = &ca;
  if (grpc_tls || !opts.https_addr.empty()) ca.WriteBundleTo(opts.data_dir + "/ca.pem");
  if (Status s = stream.Start(opts.grpc_addr); !s.ok()) {
    std::fprintf(stderr, "weft server: %s\n", s.message().c_str());
    return 1;
  }
  api.AddMetricsSource([&stream](prom::Writer& w) { stream.Metrics(w); });
  // The REST API over HTTPS as well (--https): the same handler and limits.
  std::unique_ptr<http::Server> https;
  struct CtxFree {
    void operator()(ssl_ctx_st* c) const { SSL_CTX_free(c); }
  };
  std::unique_ptr<ssl_ctx_st, CtxFree> https_ctx;
  if (!opts.https_addr.empty()) {
    std::string err;
    https_ctx.reset(http::NewServerTlsContext(server_cert.chain_pem, server_key, &err));
    if (!https_ctx) {
      std::fprintf(stderr, "weft server: --https: %s\n", err.c_str());
      return 1;
    }
    http::ServerOptions ho = hopts;
    ho.name = "https api";
    ho.tls_ctx = https_ctx.get();
    https = std::make_unique<http::Server>(
        io, [&api](http::Request& r) { return api.Handle(r); }, ho);
    if (Status s = https->Listen(opts.https_addr); !s.ok()) {
      std::fprintf(stderr, "weft server: --https: %s\n", s.message().c_str());
      return 1;
    }
    LOG_INFO("REST API over HTTPS on {} (certificate for {}; clients verify it with ca.pem)",
             https->bound(), identity::kServerTlsName);
  }
  if (grpc_tls || https_ctx) {
    const std::string cert_file = sopts.tls_cert_file;
    ca.KeepServerCert(
        server_key, server_cert, [&https_ctx, cert_file, server_key](const ServerCert& c) {
          if (!cert_file.empty())
            if (Status s = WriteFileAtomic(cert_file, c.chain_pem, 0600); !s.ok())
              LOG_ERROR("the server's renewed certificate not written: {}", s.message());
          std::string err;
          if (https_ctx &&
              !http::SetServerCertificate(https_ctx.get(), c.chain_pem, server_key, &err))
            LOG_ERROR("--https: the renewed certificate not taken: {}", err);
        });
  }
  api.SetAddresses(http.bound(), stream.bound());
  asio::co_spawn(io, api.RunMembership(), asio::detached);
  std::printf("weft server listening http=%s grpc=%s%s store=%s\n", http.bound().c_str(),
              stream.bound().c_str(), https ? (" https=" + https->bound()).c_str() : "",
              opts.store.empty() ? ("sqlite:" + opts.data_dir).c_str() : opts.store.c_str());
  std::fflush(stdout);
  if (!acl_on)
    LOG_WARN("ACLs are off (--dev): anyone who can reach {} may read and change everything",
             http.bound());
  LOG_INFO("server {} up: http {}, store {}", opts.name, http.bound(),
           opts.store.empty() ? opts.data_dir : opts.store);

  asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const asio::error_code& ec, int sig) {
    if (ec) return;
    LOG_INFO("{}: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    http.Close();
    if (https) https->Close();
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
