#include "control/server.h"

#include <sys/stat.h>
#include <unistd.h>

#include <asio/experimental/as_tuple.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "base/log.h"
#include "base/random.h"
#include "base/strings.h"
#include "control/api.h"
#include "control/store/open.h"
#include "control/stream_server.h"
#include "http/server.h"

namespace weft::control {

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
  http::Server http(
      io, [&api](http::Request& r) { return api.Handle(r); }, hopts);
  if (Status s = http.Listen(opts.http_addr); !s.ok()) {
    std::fprintf(stderr, "weft server: %s\n", s.message().c_str());
    return 1;
  }
  StreamServer stream(io, api);
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
