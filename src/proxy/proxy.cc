#include "proxy/proxy.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/log.h"
#include "base/prometheus.h"
#include "base/strings.h"
#include "base/time.h"
#include "http/server.h"
#include "io/buffer.h"
#include "proxy/config.h"
#include "proxy/config_source.h"
#include "proxy/stats.h"
#include "proxy/worker.h"

namespace weft::proxy {
namespace {

// Opens one listening socket per worker on `addr` with SO_REUSEPORT. Port 0
// is resolved by the first bind and reused by the rest.
bool OpenListener(const SocketAddress& addr, size_t workers, ListenerSockets* out,
                  std::string* err) {
  sockaddr_storage ss = addr.storage;
  for (size_t i = 0; i < workers; ++i) {
    int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      *err = std::string("socket: ") + strerror(errno);
      return false;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), addr.len) != 0 || ::listen(fd, 4096) != 0) {
      *err = std::string("bind ") + addr.text + ": " + strerror(errno);
      ::close(fd);
      for (int f : out->fds) ::close(f);
      out->fds.clear();
      return false;
    }
    if (i == 0) {
      socklen_t len = sizeof(ss);
      getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
      out->bound = FormatSockName(fd);
    }
    out->fds.push_back(fd);
  }
  return true;
}

class Proxy final : public ConfigSink {
 public:
  Proxy(std::string path, size_t workers, TapLimits tap, std::string service)
      : path_(std::move(path)), tap_(tap, std::move(service)), stats_(workers), signals_(io_) {
    for (size_t i = 0; i < workers; ++i) {
      workers_.push_back(std::make_unique<Worker>(i));
      workers_.back()->SetTap(&tap_);
    }
    stats_.SetTapCounts([this] {
      return StatsRegistry::TapCounts{tap_.sessions(), tap_.events(), tap_.dropped(),
                                      tap_.over_budget()};
    });
  }

  // Builds the snapshot and listener sockets for `cfg` and hands them to the
  // workers. On failure nothing changes and *err says why.
  bool Install(const std::shared_ptr<const ProxyConfig>& cfg, std::string* err) {
    if (static_cast<size_t>(cfg->workers) != workers_.size() && snap_) {
      LOG_WARN("reload: workers changed from {} to {}: takes effect on restart", workers_.size(),
               cfg->workers);
    }
    auto snap = std::make_shared<Snapshot>();
    snap->cfg = cfg;
    std::map<std::string, std::shared_ptr<AccessLogSink>> sinks;
    for (const auto& l : cfg->listeners) {
      snap->listener_stats.push_back(stats_.Listener(l.name));
      std::vector<PerWorker<RouteStats>*> rs;
      for (const auto& r : l.routes) rs.push_back(stats_.Route(l.name, r.name));
      snap->route_stats.push_back(std::move(rs));
      // The caller's side: each route's requests by destination. (The
      // inbound side counts its callers instead: weft_inbound_*.)
      std::vector<std::vector<std::pair<size_t, PerWorker<GoldenStats>*>>> golden;
      for (const auto& r : l.routes) {
        std::vector<std::pair<size_t, PerWorker<GoldenStats>*>> g;
        if (l.mtls == MeshTlsMode::kOff) {
          // (By the indexes ResolveConfig set; a split's weight-0 members
          // get no requests and no series.)
          auto add = [&](size_t index) {
            for (const auto& [i, blk] : g)
              if (i == index) return;
            g.emplace_back(index, stats_.Golden(l.name, r.name, cfg->clusters[index].name));
          };
          if (r.weighted.empty()) add(r.cluster_index);
          for (const auto& wc : r.weighted)
            if (wc.weight > 0) add(wc.index);
          if (g.empty()) add(r.cluster_index);
        }
        golden.push_back(std::move(g));
      }
      snap->golden.push_back(std::move(golden));
      std::shared_ptr<AccessLogSink> sink;
      if (!l.access_log.path.empty()) {
        auto& s = sinks[l.access_log.path];
        if (!s) {
          s = std::make_shared<AccessLogSink>();
          if (l.access_log.path == "stdout") {
            s->fd = STDOUT_FILENO;
          } else {
            s->fd =
                ::open(l.access_log.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
            s->owned = true;
            if (s->fd < 0) {
              *err = "config error: listeners." + l.name + ".access_log \"" + l.access_log.path +
                     "\": cannot open: " + strerror(errno);
              return false;
            }
          }
        }
        sink = s;
      }
      snap->access_logs.push_back(sink);
    }
    for (const auto& c : cfg->clusters) snap->cluster_stats.push_back(stats_.Cluster(c.name));
    // Outlier detection carries over what it knows of endpoints that stay
    // (an ejected endpoint stays out), by cluster name and address.
    std::map<std::string_view, const upstream::OutlierDetector*> before;
    if (snap_)
      for (size_t i = 0; i < snap_->outliers.size(); ++i)
        if (snap_->outliers[i]) before[snap_->cfg->clusters[i].name] = snap_->outliers[i].get();
    for (const auto& c : cfg->clusters) {
      if (!c.outlier.enabled) {
        snap->outliers.push_back(nullptr);
        stats_.SetEjectedGauge(c.name, nullptr);
        continue;
      }
      std::vector<std::string> addrs;
      for (const auto& e : c.endpoints) addrs.push_back(e.address.text);
      auto old = before.find(c.name);
      auto d = std::make_shared<upstream::OutlierDetector>(
          c.name, addrs, c.outlier, workers_.size(), old == before.end() ? nullptr : old->second,
          MonoNanos() / 1000000);
      std::weak_ptr<upstream::OutlierDetector> weak = d;
      stats_.SetEjectedGauge(c.name, [weak]() -> uint64_t {
        auto p = weak.lock();
        return p ? p->EjectedNow(MonoNanos() / 1000000) : 0;
      });
      snap->outliers.push_back(std::move(d));
    }
    for (const auto& l : cfg->listeners) {
      std::vector<PerWorker<AuthzStats>*> as;
      if (l.authz)
        for (const auto& name : l.authz->names()) as.push_back(stats_.Authz(name));
      snap->authz_stats.push_back(std::move(as));
    }
    // Rate limits: a route whose limit is unchanged keeps its buckets (a
    // config update does not refill them).
    for (const auto& l : cfg->listeners) {
      std::vector<std::shared_ptr<RateLimiter>> rls;
      for (const auto& r : l.routes) {
        std::shared_ptr<RateLimiter> rl;
        if (r.rate_limit.any()) {
          if (auto it = limiters_.find({l.name, r.name});
              it != limiters_.end() && it->second->config() == r.rate_limit) {
            rl = it->second;
          } else {
            rl = std::make_shared<RateLimiter>(r.rate_limit);
          }
        }
        rls.push_back(std::move(rl));
      }
      snap->rate_limiters.push_back(std::move(rls));
    }
    snap->registry = &stats_;

    // Listener sockets: keep those whose name and address are unchanged.
    std::map<std::string, ListenerSockets> next;
    std::vector<std::map<std::string, std::pair<int, bool>>> per_worker(workers_.size());
    for (const auto& l : cfg->listeners) {
      if (!l.capture_of.empty()) continue;  // virtual: reached through its capture listener
      std::string key = std::string(l.capture                       ? "capture "
                                    : l.protocol == Protocol::kHttp ? "http "
                                                                    : "tcp ") +
                        l.address.text;
      auto old = listeners_.find(l.name);
      ListenerSockets ls;
      bool reused = old != listeners_.end() && old->second.key == key;
      if (reused) {
        ls = old->second;
      } else {
        ls.key = key;
        if (!OpenListener(l.address, workers_.size(), &ls, err)) {
          *err = "listener " + l.name + ": " + *err;
          for (auto& [n, s] : next) {
            auto o = listeners_.find(n);
            if (o == listeners_.end() || o->second.key != s.key) {
              for (int f : s.fds) ::close(f);
            }
          }
          return false;
        }
      }
      for (size_t w = 0; w < workers_.size(); ++w) per_worker[w][l.name] = {ls.fds[w], reused};
      next[l.name] = std::move(ls);
    }
    listeners_ = std::move(next);
    SetUpTracing(cfg->tracing, snap.get());  // once nothing can fail
    snap_ = snap;
    limiters_.clear();
    for (size_t i = 0; i < cfg->listeners.size(); ++i)
      for (size_t k = 0; k < cfg->listeners[i].routes.size(); ++k)
        if (snap->rate_limiters[i][k])
          limiters_[{cfg->listeners[i].name, cfg->listeners[i].routes[k].name}] =
              snap->rate_limiters[i][k];
    for (size_t w = 0; w < workers_.size(); ++w) workers_[w]->Apply(snap, std::move(per_worker[w]));
    return true;
  }

  // ConfigSink: what the config source (the control plane) delivers.
  std::string Install(std::shared_ptr<const ProxyConfig> cfg, const std::string& version) override {
    // Install on the main loop; the source's thread waits for the verdict.
    auto done = std::make_shared<std::promise<std::string>>();
    auto verdict = done->get_future();
    asio::post(io_, [this, cfg = std::move(cfg), done, version] {
      std::string e;
      if (draining_) {
        done->set_value("draining");
        return;
      }
      if (Install(cfg, &e)) {
        stats_.config_reload_ok().Inc();
        // Ready once there is something to serve: an empty snapshot
        // means the sidecar is not registered (yet).
        have_config_ = !cfg->listeners.empty();
        LOG_INFO("config version {} applied: {} listeners, {} clusters", version,
                 cfg->listeners.size(), cfg->clusters.size());
        done->set_value("");
      } else {
        stats_.config_reload_fail().Inc();
        done->set_value(e);
      }
    });
    if (verdict.wait_for(std::chrono::seconds(30)) != std::future_status::ready)
      return "timed out applying the config";
    return verdict.get();
  }
  void Refused(const std::string& reason) override {
    // Called on the config stream's thread; the counter has one writer, the
    // main loop.
    asio::post(io_, [this] { stats_.config_reload_fail().Inc(); });
    LOG_WARN("config from the control plane refused: {}", reason);
  }
  void SetIdentity(std::shared_ptr<const MeshIdentity> id) override {
    asio::post(io_, [this, id = std::move(id)] { UpdateIdentity(id); });
  }
  // The admin listener's bound address ("" without one).
  std::string admin_address() {
    return admin_ ? FormatSockName(admin_->native_handle()) : std::string();
  }

  std::string Reload() {
    if (path_.empty()) return "this proxy's configuration comes from the control plane";
    std::string err;
    auto cfg = LoadConfigFile(path_, &err);
    if (cfg && Install(cfg, &err)) {
      stats_.config_reload_ok().Inc();
      LOG_INFO("config reloaded from {}", path_);
      return "";
    }
    stats_.config_reload_fail().Inc();
    LOG_ERROR("reload refused, still serving the previous config: {}", err);
    return err;
  }

  int Run(const std::shared_ptr<const ProxyConfig>& cfg,
          const std::function<void(Proxy*)>& started = nullptr) {
    std::string err;
    if (!Install(cfg, &err)) {
      LOG_ERROR("{}", err);
      return 1;
    }
    if (cfg->admin) {
      admin_.emplace(io_);
      asio::error_code ec;
      tcp::endpoint ep = ToEndpoint(*cfg->admin);
      admin_->open(ep.protocol(), ec);
      if (!ec) admin_->set_option(tcp::acceptor::reuse_address(true), ec);
      if (!ec) admin_->bind(ep, ec);
      if (!ec) admin_->listen(128, ec);
      if (ec) {
        LOG_ERROR("admin {}: {}", cfg->admin->text, ec.message());
        return 1;
      }
      asio::co_spawn(io_, AdminAccept(), asio::detached);
      asio::co_spawn(io_, TapReaper(), asio::detached);
    }
    for (auto& w : workers_) w->Start();

    std::string line = "weft proxy listening";
    if (admin_) line += " admin=" + FormatSockName(admin_->native_handle());
    for (const auto& l : cfg->listeners)
      if (l.capture_of.empty()) line += " " + l.name + "=" + listeners_[l.name].bound;
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
    LOG_INFO("{} workers, config {}", workers_.size(),
             path_.empty() ? "from the control plane" : path_);
    if (started) started(this);

    signals_.add(SIGTERM);
    signals_.add(SIGINT);
    signals_.add(SIGHUP);
    WaitSignal();
    io_.run();
    for (auto& w : workers_) w->Stop();
    LOG_INFO("drained, exiting");
    return 0;
  }

 private:
  void WaitSignal() {
    signals_.async_wait([this](const asio::error_code& ec, int sig) {
      if (ec) return;
      if (sig == SIGHUP) {
        LOG_INFO("SIGHUP: reloading {}", path_);
        Reload();
        WaitSignal();
        return;
      }
      LOG_INFO("{}: draining (up to {} ms)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
               snap_->cfg->drain_timeout_ms);
      BeginDrain();
    });
  }

  void BeginDrain() {
    if (draining_) return;
    draining_ = true;
    const int64_t grace = std::min<int64_t>(1000, snap_->cfg->drain_timeout_ms / 2);
    for (auto& w : workers_) w->BeginDrain(grace);
    drain_deadline_ = MonoMillis() + snap_->cfg->drain_timeout_ms;
    drain_timer_.emplace(io_);
    PollDrain();
  }

  void PollDrain() {
    int64_t active = 0;
    for (auto& w : workers_) active += w->active_connections();
    if (active == 0 || MonoMillis() >= drain_deadline_) {
      if (active) LOG_WARN("drain timeout: closing {} connections", active);
      asio::error_code ec;
      if (admin_) admin_->close(ec);
      signals_.cancel(ec);
      io_.stop();
      return;
    }
    drain_timer_->expires_after(std::chrono::milliseconds(20));
    drain_timer_->async_wait([this](const asio::error_code& ec) {
      if (!ec) PollDrain();
    });
  }

  asio::awaitable<void> AdminAccept() {
    for (;;) {
      auto [ec, sock] = co_await admin_->async_accept(kNoThrow);
      if (ec) {
        if (!admin_->is_open()) co_return;
        continue;
      }
      asio::co_spawn(io_, AdminSession(std::move(sock)), asio::detached);
    }
  }

  asio::awaitable<void> AdminSession(tcp::socket s) {
    io::Buffer buf(4096);
    http1::Limits limits;
    http1::Head req;
    for (;;) {
      size_t scanned = 0;
      http1::Error perr;
      http1::ParseResult r = http1::ParseResult::kIncomplete;
      while ((r = buf.empty() ? http1::ParseResult::kIncomplete
                              : http1::ParseRequest(buf.data(), buf.size(), limits, &scanned, &req,
                                                    &perr)) == http1::ParseResult::kIncomplete) {
        if (!buf.Reserve(1024, 128 * 1024)) co_return;
        auto [ec, n] =
            co_await s.async_read_some(asio::buffer(buf.write_ptr(), buf.writable()), kNoThrow);
        if (ec) co_return;
        buf.Commit(n);
      }
      int status = 200;
      std::string body, type = "text/plain";
      if (r == http1::ParseResult::kError) {
        status = perr.status;
        body = std::string(perr.reason) + "\n";
      } else {
        std::string_view path = req.target.substr(0, req.target.find('?'));
        if (path == "/ready") {
          const bool need_identity = NeedsIdentity() && !identity_;
          status = draining_ || !have_config_ || need_identity ? 503 : 200;
          body = draining_ ? "draining\n"
                 : !have_config_
                     ? "waiting for configuration from the control plane (no listeners yet: is "
                       "this sidecar registered?)\n"
                 : need_identity ? "waiting for this workload's certificate (mesh TLS)\n"
                                 : "ready\n";
        } else if (path == "/stats" || path == "/metrics") {
          // OpenMetrics (with exemplars) for a scraper that asks for it.
          bool om = false;
          for (const auto& h : req.headers)
            om = om || (IEquals(h.name, "accept") && prom::WantsOpenMetrics(h.value));
          type = om ? prom::kOpenMetricsContentType : prom::kTextContentType;
          body = stats_.RenderPrometheus(om);
        } else if (path == "/config_dump") {
          type = "application/json";
          body = ConfigToJson(*snap_->cfg) + "\n";
        } else if (path == "/certs") {
          // The workload identity in use (never the key).
          type = "application/json";
          nlohmann::json j = {{"mtls_needed", NeedsIdentity()}};
          if (identity_) {
            j["spiffe_id"] = identity_->spiffe_id;
            j["trust_domain"] = identity_->trust_domain;
            j["not_after_unix"] = identity_->not_after_unix;
            j["trusted_roots"] = identity_->roots_pem.size();
          }
          body = j.dump() + "\n";
        } else if (path == "/tap") {
          type = "application/json";
          co_await TapPoll(req.target, &status, &body);
        } else if (path == "/reload") {
          if (req.method != "POST") {
            status = 405;
            body = "use POST /reload\n";
          } else {
            std::string e = Reload();
            status = e.empty() ? 200 : 400;
            body = e.empty() ? "reloaded\n" : e + "\n";
          }
        } else {
          status = 404;
          body = "not found: try /ready, /stats, /config_dump, /certs, /tap, POST /reload\n";
        }
      }
      const bool close = r == http1::ParseResult::kError || !req.KeepAlive() ||
                         req.framing != http1::Framing::kNone;
      std::string head = fmt::format(
          "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\n{}\r\n", status,
          status == 200 ? "OK" : "Error", type, body.size(), close ? "connection: close\r\n" : "");
      if (req.method == "HEAD") body.clear();
      std::array<asio::const_buffer, 2> out{asio::buffer(head), asio::buffer(body)};
      auto [ec, n] = co_await asio::async_write(s, out, kNoThrow);
      if (ec || close) co_return;
      buf.Consume(req.head_bytes);
    }
  }

  // GET /tap?id=ID[&route=R][&method=M][&path=PREFIX][&wait_ms=W] (tap.h).
  asio::awaitable<void> TapPoll(std::string_view target, int* status, std::string* body) {
    http::Request q;
    http::ParseTarget(target, &q);
    auto arg = [&](std::string_view k) {
      const std::string* v = q.Query(k);
      return v ? *v : std::string();
    };
    const std::string id = arg("id");
    TapFilter f{arg("route"), arg("method"), arg("path")};
    auto bad = [&](const std::string& why) {
      *status = 400;
      *body = nlohmann::json({{"error", why}}).dump() + "\n";
    };
    if (tap_.limits().rate == 0) {
      *status = 403;
      *body = "{\"error\":\"tap is off on this sidecar (--tap-rate 0)\"}\n";
      co_return;
    }
    if (id.empty() || id.size() > 64 ||
        id.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") !=
            std::string::npos)
      co_return bad("id: 1 to 64 letters, digits, '-', '_' or '.' naming the tap session");
    if (f.route.size() > 256 || f.method.size() > 32 || f.path_prefix.size() > 1024)
      co_return bad("route, method or path too long (256, 32, 1024 bytes at most)");
    int64_t wait_ms = 0;
    if (const std::string w = arg("wait_ms"); !w.empty()) {
      char* end = nullptr;
      const long long n = std::strtoll(w.c_str(), &end, 10);
      if (*end || n < 0) co_return bad("wait_ms: a number of milliseconds");
      wait_ms = std::min<int64_t>(n, tap_.limits().max_wait_ms);
    }
    const int64_t until = MonoMillis() + wait_ms;
    std::string events;
    size_t taken = 0;
    uint64_t dropped = 0, lost = 0;
    for (;;) {
      std::string err;
      if (!tap_.Poll(id, f, MonoMillis(), &events, &taken, &dropped, &err)) {
        *status = 429;
        *body = nlohmann::json({{"error", err}}).dump() + "\n";
        co_return;
      }
      lost += dropped;
      if (taken > 0 || MonoMillis() >= until || draining_) break;
      asio::steady_timer t(io_, std::chrono::milliseconds(50));
      co_await t.async_wait(kNoThrow);
    }
    *body = "{\"events\":[" + events + "],\"dropped\":" + std::to_string(lost) +
            ",\"over_budget\":" + std::to_string(tap_.over_budget()) +
            ",\"rate\":" + std::to_string(tap_.limits().rate) + "}\n";
  }

  // Closes the tap sessions nobody polls any more, so that the data path
  // stops looking for them.
  asio::awaitable<void> TapReaper() {
    asio::steady_timer t(io_);
    while (!draining_) {
      t.expires_after(std::chrono::seconds(1));
      co_await t.async_wait(kNoThrow);
      tap_.Expire(MonoMillis());
    }
  }

  const std::string path_;
  TapHub tap_;
  asio::io_context io_{1};
  StatsRegistry stats_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::map<std::string, ListenerSockets> listeners_;
  std::shared_ptr<const Snapshot> snap_;
  // The rate limiters of the snapshot in force, by listener and route name.
  std::map<std::pair<std::string, std::string>, std::shared_ptr<RateLimiter>> limiters_;
  std::optional<tcp::acceptor> admin_;
  // Tracing (SetUpTracing). The main loop changes these; the lock keeps the
  // scrape's sums whole (the admin endpoint runs on that loop too).
  std::mutex sinks_mu_;
  std::shared_ptr<SpanSink> span_sink_;                   // guarded by sinks_mu_
  TracingConfig span_cfg_;                                // guarded by sinks_mu_
  std::vector<std::shared_ptr<SpanSink>> retired_sinks_;  // guarded by sinks_mu_
  StatsRegistry::SpanCounts retired_counts_;              // guarded by sinks_mu_
  bool counts_set_ = false;
  asio::signal_set signals_;
  std::optional<asio::steady_timer> drain_timer_;
  int64_t drain_deadline_ = 0;
  bool draining_ = false;
  bool have_config_ = true;  // false until the control plane's first config
  // Mesh identity (main loop): the latest the config source delivered.
  std::shared_ptr<const MeshIdentity> identity_;
  // Session-ticket keys, new whenever the trusted roots change: a session
  // resumed from before a root was retired would skip checking the peer's
  // certificate against the bundle that retired it.
  std::shared_ptr<const TicketKeys> ticket_keys_;

  void UpdateIdentity(const std::shared_ptr<const MeshIdentity>& id) {
    if (!id ||
        (identity_ && identity_->version == id->version && identity_->roots_pem == id->roots_pem))
      return;
    LOG_INFO("workload identity {} in use (certificate valid until {}, {} trusted roots)",
             id->spiffe_id, id->not_after_unix, id->roots_pem.size());
    if (!identity_ || identity_->roots_pem != id->roots_pem)
      ticket_keys_ = std::make_shared<const TicketKeys>(TicketKeys::Random());
    identity_ = id;
    stats_.SetSelf(id->spiffe_id);
    for (auto& w : workers_) w->SetIdentity(id, ticket_keys_);
  }

  // Tracing: the span sink for the config's collector, kept while its
  // settings stay (a new one when they change). Sinks let go of are ended
  // here, on the main loop, once no worker holds them: ending one may wait
  // for an export in progress.
  void SetUpTracing(const TracingConfig& t, Snapshot* snap) {
    if (!counts_set_) {
      counts_set_ = true;
      stats_.SetSpanCounts([this] { return SpanCounts(); });
    }
    std::lock_guard<std::mutex> l(sinks_mu_);
    const bool same = span_sink_ && t.host_port == span_cfg_.host_port &&
                      t.path == span_cfg_.path && t.json == span_cfg_.json &&
                      t.service_name == span_cfg_.service_name &&
                      t.service_namespace == span_cfg_.service_namespace;
    if (!t.enabled || !same) {
      if (span_sink_) retired_sinks_.push_back(std::move(span_sink_));
      span_sink_.reset();
    }
    if (t.enabled && !span_sink_) {
      SpanSinkOptions o;
      o.host_port = t.host_port;
      o.path = t.path;
      o.json = t.json;
      otlp::Resource r;
      r.service_name = t.service_name;
      if (!t.service_namespace.empty())
        r.attributes.push_back({"service.namespace", t.service_namespace});
      r.scope_version = WEFT_VERSION;
      span_sink_ = std::make_shared<SpanSink>(std::move(o), std::move(r));
      LOG_INFO("tracing: spans of {} to {} ({}), {} of new traces recorded", t.service_name, t.otlp,
               t.json ? "OTLP/JSON" : "OTLP/protobuf", t.sampling);
    }
    span_cfg_ = t;
    snap->spans = span_sink_;
    snap->trace_sampling = t.sampling;
    for (auto it = retired_sinks_.begin(); it != retired_sinks_.end();) {
      // Only the snapshot in force and this list can hold one now.
      if (it->use_count() == 1 && (!snap_ || snap_->spans != *it)) {
        (*it)->Stop();  // first: what it drops on the way out counts
        retired_counts_.exported += (*it)->exported();
        retired_counts_.dropped += (*it)->dropped();
        retired_counts_.failed += (*it)->failed();
        it = retired_sinks_.erase(it);
      } else {
        ++it;
      }
    }
  }

  // The spans of every sink, those let go of included (scrape).
  StatsRegistry::SpanCounts SpanCounts() {
    std::lock_guard<std::mutex> l(sinks_mu_);
    StatsRegistry::SpanCounts c = retired_counts_;
    std::vector<const SpanSink*> live;
    if (span_sink_) live.push_back(span_sink_.get());
    for (const auto& s : retired_sinks_) live.push_back(s.get());
    for (const SpanSink* s : live) {
      c.exported += s->exported();
      c.dropped += s->dropped();
      c.failed += s->failed();
    }
    return c;
  }

  // Whether the current config speaks mesh TLS anywhere.
  bool NeedsIdentity() const {
    if (!snap_) return false;
    for (const auto& l : snap_->cfg->listeners)
      if (l.mtls != MeshTlsMode::kOff) return true;
    for (const auto& c : snap_->cfg->clusters)
      for (const auto& e : c.endpoints)
        if (e.mtls) return true;
    return false;
  }

 public:
  void set_waiting_for_config() { have_config_ = false; }
};

}  // namespace

int RunProxy(const ProxyOptions& opts, std::unique_ptr<ConfigSource> source) {
  std::string err;
  SetUpstreamMark(opts.socket_mark);
  if (!opts.server.empty()) {
    if (opts.service.empty()) {
      std::fprintf(stderr,
                   "weft proxy: --server needs --service NAME (the service this proxy fronts)\n");
      return 2;
    }
    auto base = std::make_shared<ProxyConfig>();
    base->source_path = "control plane";
    base->tracing.service_name = opts.service;  // the spans' service, when a Telemetry traces it
    base->tracing.service_namespace = opts.ns;
    base->workers = opts.workers > 0
                        ? opts.workers
                        : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    if (!opts.admin.empty()) {
      auto a = ParseSocketAddress(opts.admin, &err);
      if (!a) {
        std::fprintf(stderr, "weft proxy: --admin \"%s\": %s\n", opts.admin.c_str(), err.c_str());
        return 2;
      }
      base->admin = *a;
    }
    if (!source) {
      std::fprintf(stderr, "weft proxy: --server: no config source for the control plane\n");
      return 2;
    }
    std::signal(SIGPIPE, SIG_IGN);
    auto* p = new Proxy("", static_cast<size_t>(base->workers), TapLimits{.rate = opts.tap_rate},
                        opts.service);
    p->set_waiting_for_config();
    // Like the proxy, the source is never destroyed: the process exits
    // once drained, with the source's threads still parked.
    ConfigSource* src = source.release();
    int rc = p->Run(base, [&](Proxy* px) { src->Start(px, base, px->admin_address()); });
    std::fflush(nullptr);
    std::_Exit(rc);
  }
  auto cfg = LoadConfigFile(opts.config_path, &err);
  if (!cfg) {
    std::fprintf(stderr, "%s\n", err.c_str());
    return 2;
  }
  if (opts.validate_only) {
    std::printf("config ok: %s (%zu listeners, %zu clusters)\n", opts.config_path.c_str(),
                cfg->listeners.size(), cfg->clusters.size());
    return 0;
  }
  std::signal(SIGPIPE, SIG_IGN);
  // The proxy is never destroyed: once drained, the process exits without
  // tearing down event loops that may still hold abandoned connections.
  auto* p = new Proxy(opts.config_path, static_cast<size_t>(cfg->workers),
                      TapLimits{.rate = opts.tap_rate}, cfg->tracing.service_name);
  int rc = p->Run(cfg);
  std::fflush(nullptr);
  std::_Exit(rc);
}

}  // namespace weft::proxy
